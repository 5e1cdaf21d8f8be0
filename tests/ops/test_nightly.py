"""``parity report nightly``: sync from the broker, one equity snapshot per date, a report per
paper/live strategy and an index; twice for the same date gives the same files and no new rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd

from tests.conftest import ledger_counts
from tests.ops.conftest import STRATEGY


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def without_generated(html: bytes) -> list[bytes]:
    return [line for line in html.splitlines() if b'id="generated"' not in line]


def order_states(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT client_order_id, status, filled_qty FROM orders")
        return {cid: (st, fq) for cid, st, fq in rows}
    finally:
        con.close()


def forget_last_fill(db: Path) -> dict[str, tuple]:
    """Put the newest filled order back to ``new`` and drop its fills, as a crash would leave them."""
    con = sqlite3.connect(db)
    try:
        run_id, cid = con.execute("SELECT run_id, client_order_id FROM orders WHERE status='filled' "
                                  "ORDER BY rowid DESC LIMIT 1").fetchone()
        with con:
            con.execute("UPDATE orders SET status='new', filled_qty=0, avg_price=NULL WHERE run_id=? AND "
                        "client_order_id=?", (run_id, cid))
            con.execute("DELETE FROM fills WHERE run_id=? AND client_order_id=?", (run_id, cid))
    finally:
        con.close()
    return {cid: ("new", 0.0)}


def test_nightly_twice_gives_the_same_files_and_no_new_rows(exact_home, monkeypatch, tmp_path):
    home = exact_home.clone(tmp_path / "home")
    home.strategy_file.write_text(home.strategy_file.read_text().replace("stage: research", "stage: paper"))
    # a crash between the venue's fill and its record: the ledger still says "new", without the fill
    working = forget_last_fill(home.ledger)

    today = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    counts0 = ledger_counts(home.ledger)
    r1 = home.cli(monkeypatch, "report", "nightly", "--date", today)
    assert r1.exit_code == 0, r1.output
    assert "sync" in r1.output and "recorded" in r1.output
    out = home.root / "reports" / "nightly" / today
    first = tree(out)
    counts1 = ledger_counts(home.ledger)
    synced = order_states(home.ledger)
    assert all(synced[c][0] == "filled" and synced[c][1] > 0 for c in working)
    assert counts1["fills"] == counts0["fills"] + len(working)
    assert counts1["equity"] == counts0["equity"] + 1 and counts1["runs"] == counts0["runs"] + 1

    r2 = home.cli(monkeypatch, "report", "nightly", "--date", today)
    assert r2.exit_code == 0, r2.output
    assert "kept" in r2.output and "sync" not in r2.output
    second = tree(out)
    assert ledger_counts(home.ledger) == counts1
    assert first.keys() == second.keys()
    for name in first:
        if name == "index.html":
            assert without_generated(first[name]) == without_generated(second[name])
        else:
            assert first[name] == second[name], name
    assert {f"{STRATEGY}/report.html", f"{STRATEGY}/summary.json", f"{STRATEGY}/equity.csv", "index.html",
            "nightly.json"} <= set(first)

    index = json.loads(first["nightly.json"])
    entry = index["strategies"][0]
    assert index["date"] == today and entry["strategy"] == STRATEGY and entry["stage"] == "paper"
    assert entry["summary"]["n_fills"] == counts1["fills"] and entry["report"] == f"{STRATEGY}/report.html"
    assert b"Nightly report" in first["index.html"] and STRATEGY.encode() in first["index.html"]


def test_nightly_for_a_past_date_reports_without_a_snapshot(exact_home, monkeypatch, tmp_path):
    home = exact_home.clone(tmp_path / "home")
    home.strategy_file.write_text(home.strategy_file.read_text().replace("stage: research", "stage: paper"))
    counts = ledger_counts(home.ledger)
    r = home.cli(monkeypatch, "report", "nightly", "--date", "2020-01-02")
    assert r.exit_code == 0, r.output
    assert "no equity snapshot" in r.output and ledger_counts(home.ledger) == counts
    index = json.loads((home.root / "reports" / "nightly" / "2020-01-02" / "nightly.json").read_text())
    entry = index["strategies"][0]
    assert entry["report"] is None and "no paper equity" in entry["notes"][0]
