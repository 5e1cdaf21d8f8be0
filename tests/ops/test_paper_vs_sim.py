"""``parity compare PAPER_RUN`` and ``parity calibrate`` on paper runs made against the local Alpaca
server: zero shortfall when the server fills at the simulator's prices, the injected shortfall
when it fills with a known slippage, and a calibration that recovers that slippage."""

from __future__ import annotations

import sqlite3

import pytest

from tests.ops.conftest import SIM_BPS, STRATEGY

SERVER_BPS = 12.0


def expected_bps(side: str) -> float:
    """Shortfall of a server fill at p(1 ± 12 bp) against a simulated fill at p(1 ± 5 bp)."""
    s = 1 if side == "buy" else -1
    return s * ((1 + s * SERVER_BPS * 1e-4) / (1 + s * SIM_BPS * 1e-4) - 1) * 1e4


def paper_orders(home) -> int:
    con = sqlite3.connect(home.ledger)
    try:
        return con.execute("SELECT COUNT(DISTINCT client_order_id) FROM orders o JOIN runs r "
                           "ON r.run_id=o.run_id WHERE r.mode='paper'").fetchone()[0]
    finally:
        con.close()


def test_zero_shortfall_when_the_venue_fills_at_the_simulators_prices(exact_home, monkeypatch):
    r = exact_home.json(monkeypatch, "compare", STRATEGY)

    assert r["n_cycles"] == 3 and len(r["runs"]) == 3
    assert r["simulation"]["fill"] == "close" and "sizing prices" in r["simulation"]["bars"]
    o = r["orders"]
    assert o["paper"] == o["simulated"] == o["matched"] == o["matched_by_client_order_id"]
    assert o["paper"] == paper_orders(exact_home)
    assert o["matched"] >= 6 and o["only_paper"] == o["only_simulated"] == o["missed"] == o["partial"] == 0
    sides = {row["side"] for row in r["order_rows"]}
    assert sides == {"buy", "sell"}
    for row in r["order_rows"]:
        assert row["state"] == "filled"
        assert abs(row["shortfall_bps"]) < 1e-6, row
        assert row["paper_delay_s"] is not None and row["paper_delay_s"] >= 0
    assert abs(r["shortfall"]["weighted_bps"]) < 1e-6
    assert r["fees"]["paper"] == pytest.approx(r["fees"]["simulated"], abs=1e-4)
    # the server does not take the regulatory fees the broker books (the simulator does): equity differs
    # by those dollars only
    assert r["tracking"]["tracking_error"] < 1e-4
    assert 0 < r["tracking"]["final_difference"] < 2 * r["fees"]["simulated"] + 0.01
    page = (exact_home.root / "reports" / f"reconcile-{r['run_id']}" / "reconcile.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "Paper vs simulation" in page


def test_injected_slippage_shows_as_shortfall_to_a_tenth_of_a_basis_point(slipped_home, monkeypatch):
    r = slipped_home.json(monkeypatch, "compare", STRATEGY)

    assert r["orders"]["matched"] == r["orders"]["paper"] >= 6
    for row in r["order_rows"]:
        assert row["shortfall_bps"] == pytest.approx(expected_bps(row["side"]), abs=1e-6)
        assert abs(row["shortfall_bps"] - (SERVER_BPS - SIM_BPS)) < 0.1
    assert abs(r["shortfall"]["weighted_bps"] - (SERVER_BPS - SIM_BPS)) < 0.1
    assert r["shortfall"]["cost"] > 0
    text = slipped_home.cli(monkeypatch, "compare", STRATEGY).output
    assert "Shortfall:" in text and "+7.0" in text


def test_calibrate_recovers_the_venue_slippage_and_writes_only_with_write(slipped_home, monkeypatch,
                                                                          tmp_path):
    home = slipped_home.clone(tmp_path / "home")
    before = home.strategy_file.read_bytes()
    out = home.json(monkeypatch, "calibrate", STRATEGY)["calibration"][0]

    assert out["proposed"]["model"] == "fixed_bps"
    assert out["proposed"]["bps"] == pytest.approx(SERVER_BPS, rel=0.10)
    assert abs(out["shortfall_before"]["weighted_bps"] - (SERVER_BPS - SIM_BPS)) < 0.1
    assert abs(out["shortfall_after"]["weighted_bps"]) < 0.1
    assert [f["ok"] for f in out["fees"]] == [True]          # Alpaca equities: the venue file's fees
    assert home.strategy_file.read_bytes() == before        # nothing written without --write

    r = home.cli(monkeypatch, "calibrate", STRATEGY, "--write")
    assert r.exit_code == 0, r.output
    assert "Shortfall after" in r.output and "config hash changed" in r.output
    after = home.strategy_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before.decode().splitlines(), after) if a != b]
    assert len(after) == len(before.decode().splitlines()) and len(changed) == 1
    assert changed[0][1].startswith("  slippage: {model: fixed_bps, bps: 1")
    assert changed[0][1].endswith("}   # the simulator's guess")

    again = home.json(monkeypatch, "compare", STRATEGY)
    assert abs(again["shortfall"]["weighted_bps"]) < 0.1
    assert again["replay_config_hash"] != again["config_hash"]


def test_compare_of_two_runs_keeps_the_side_by_side_form(exact_home, monkeypatch, tmp_path):
    con = sqlite3.connect(exact_home.ledger)
    rows = con.execute("SELECT run_id FROM runs WHERE mode='paper' ORDER BY created_at LIMIT 2")
    a, b = [r[0] for r in rows]
    con.close()
    r = exact_home.json(monkeypatch, "compare", a, b, "--out", str(tmp_path))
    assert r["run_a"] == a and r["run_b"] == b and "metrics" in r
    assert (tmp_path / f"compare-{a}-vs-{b}" / "compare.html").is_file()


def test_compare_names_what_it_cannot_find(exact_home, monkeypatch):
    r = exact_home.cli(monkeypatch, "compare", "no-such-run")
    assert r.exit_code == 2 and "no run and no paper/live runs" in r.output


def test_compare_over_real_bars_fills_at_the_next_open(exact_home, monkeypatch, tmp_path):
    """Bars that cover the paper period replace the cycle prices; under ``next_open`` each order fills at
    the open of the bar after its batch, here the price the paper order was sized and filled with."""
    import pandas as pd

    from tests.ops.conftest import CYCLES

    con = sqlite3.connect(exact_home.ledger)
    times = [pd.Timestamp(t) for (t,) in con.execute("SELECT DISTINCT time FROM cycles ORDER BY time")]
    con.close()
    rows = []
    for k, t in enumerate(times):
        for offset, prices in ((pd.Timedelta(0), CYCLES[k][1]), (pd.Timedelta(seconds=30), CYCLES[k][1])):
            for sym, px in prices.items():
                rows.append(((t + offset).strftime("%Y-%m-%dT%H:%M:%SZ"), sym, px, px, px, px, 1e9))
    bars = pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"])
    bars.to_csv(tmp_path / "bars.csv", index=False)

    r = exact_home.json(monkeypatch, "compare", STRATEGY, "--bars", str(tmp_path / "bars.csv"),
                        "--out", str(tmp_path))
    assert r["simulation"]["bars"] == str(tmp_path / "bars.csv") and r["simulation"]["fill"] == "next_open"
    assert r["orders"]["matched"] == r["orders"]["paper"] and r["orders"]["only_simulated"] == 0
    assert abs(r["shortfall"]["weighted_bps"]) < 1e-6
    assert all(row["sim_delay_s"] == 30.0 for row in r["order_rows"])

    late = bars[pd.to_datetime(bars["timestamp"]) > times[0]]
    late.to_csv(tmp_path / "late.csv", index=False)
    bad = exact_home.cli(monkeypatch, "compare", STRATEGY, "--bars", str(tmp_path / "late.csv"))
    assert bad.exit_code == 2 and "start after the first cycle" in bad.output
