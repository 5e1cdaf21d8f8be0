"""Accounts, ownership and leases (SPEC §17) and the fail-closed live gate (§13), as a user meets them.

The first release booked a backtest's fill against a paper order of the same strategy (a negative
price, a negative fee), let two ``execute`` runs trade one account at once, and treated
``https://api.alpaca.markets:443`` as "not production". Each test here is one of those reports.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.servers.alpaca_server import AlpacaServer
from tests.test_cli_alpaca import (
    KEY,
    LIVE_ENV,
    PAPER_ENV,
    PARITY,
    SECRET,
    Home,
    make_parity_home,  # noqa: F401
    write_home,
)


def _db(home: Home) -> sqlite3.Connection:
    return sqlite3.connect(str(home.root / "data" / "parity.db"))


def _ledger_orders(home: Home) -> list[dict]:
    """Every order row, through the ledger object (a large backtest's rows may be packed)."""
    from framework.ledger import Ledger

    ledger = Ledger(home.root / "data" / "parity.db")
    try:
        return ledger.table_rows("orders")
    finally:
        ledger.close()


# ------------------------------------------------------------------------------ one bookkeeper


@pytest.fixture
def venue_fee_home(tmp_path):
    """parity_home with the venue's own crypto fee (25 bps, taken in the coin on buys)."""
    with make_parity_home(tmp_path, crypto_fee_bps=25.0) as h:
        yield h


def test_a_backtest_and_a_paper_run_of_one_strategy_never_share_fills(venue_fee_home):
    """The repro of issue 11: backtest, then paper-execute the same signals on the same ledger. Every
    paper fill carries the venue's price and quantity (a crypto buy's coin fee booked as a quantity
    reduction, SPEC §17) and a non-negative fee, and the ledger's paper positions equal the venue's."""
    h = venue_fee_home
    for _ in range(2):     # a second backtest of the same batch: the same ids again in the sim accounts
        p = h.run("backtest", "--strategy", "paritychk", "--signals", "s.csv", "--bars", "bars.csv", "--json")
        assert p.returncode == 0, p.stderr
    p = h.run("execute", "--signals", "s.csv", "--strategy", "paritychk", "--force", "--json")
    assert p.returncode == 0, p.stderr
    done = json.loads(p.stdout)
    assert {o["status"] for o in done["orders"]} == {"filled"}

    venue = {(f["symbol"], round(float(f["qty"]), 9), round(float(f["price"]), 6)) for f in h.srv.fills()}
    with _db(h) as db:
        (account,) = db.execute("SELECT account FROM runs WHERE run_id=?", (done["run_id"],)).fetchone()
        assert account.startswith("alpaca:paper:")
        rows = db.execute("SELECT symbol, qty + COALESCE(fee_qty, 0), price, fee, trade_id FROM fills WHERE account=?",
                          (account,)).fetchall()
        booked = {(s, round(q, 9), round(px, 6)) for s, q, px, _, _ in rows}
        assert booked == venue and len(rows) == len(venue)
        assert all(fee >= 0 and px > 0 and q > 0 for _, q, px, fee, _ in rows)
        assert all(tid for *_, tid in rows)                                  # each keyed by the venue's trade id
        held = dict(db.execute("SELECT symbol, SUM(CASE WHEN side='buy' THEN qty ELSE -qty END) FROM fills "
                               "WHERE account=? GROUP BY symbol", (account,)).fetchall())
        sim_ids = {r["client_order_id"] for r in _ledger_orders(h) if r["account"].startswith("sim:")}
        paper_ids = {c for (c,) in db.execute("SELECT client_order_id FROM orders WHERE account=?", (account,))}
    assert sim_ids and paper_ids and not sim_ids & paper_ids                 # id spaces never meet
    venue_pos = {s: float(v["qty"]) for s, v in h.srv.positions().items()}
    assert {s.replace("/", ""): q for s, q in held.items()} == pytest.approx(
        {s.replace("/", ""): q for s, q in venue_pos.items()})

    # running the same batch again sends nothing and books nothing twice
    p = h.run("execute", "--signals", "s.csv", "--strategy", "paritychk", "--force", "--json")
    assert p.returncode == 0, p.stderr
    with _db(h) as db:
        assert db.execute("SELECT COUNT(*) FROM fills WHERE account=?", (account,)).fetchone()[0] == len(rows)
    assert len(h.srv.orders_submitted()) == len(venue)


# ------------------------------------------------------------------------------ leases


def _strategy(home: Home, timeout_s: float) -> None:
    (home.root / "config" / "strategies").mkdir(exist_ok=True)
    (home.root / "config" / "strategies" / "slow.yaml").write_text(
        f"name: slow\nrebalance:\n  drift_threshold: 0.0\n  order_timeout_s: {timeout_s}\n")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "COINBASE_")) and k != "PYTHONPATH"}
    env.update(PARITY_POLL_INTERVAL="0.05", PARITY_LEASE_WAIT="1")
    return env


def test_two_executes_on_one_account_the_second_names_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    with AlpacaServer(key=KEY, secret=SECRET, cash=100_000.0, fill_mode="manual", rate_limit=None,
                      data_rate_limit=None) as srv:
        write_home(tmp_path, srv.url, PAPER_ENV)
        home = Home(tmp_path, srv)
        _strategy(home, 30.0)
        home.signals([("AAPL", 1, 0.10, 0.9), ("MSFT", 1, 0.10, 0.9)])
        first = subprocess.Popen([str(PARITY), "execute", "--signals", "s.csv", "--strategy", "slow"], cwd=tmp_path,
                                 env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not srv.orders_submitted() and time.monotonic() < deadline:   # the first holds the lease
                time.sleep(0.05)
            assert srv.orders_submitted(), "the first execute never sent its orders"
            second = subprocess.run([str(PARITY), "execute", "--signals", "s.csv", "--strategy", "slow"],
                                    cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
                                    stdin=subprocess.DEVNULL)
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
            assert "Traceback" not in second.stderr
            # status is read-only while another command holds the account: shown at once as the venue
            # reports it, the ledger not reconciled by it, and it says so (SPEC §17 leases execute,
            # close and the nightly)
            t0 = time.monotonic()
            look = subprocess.run([str(PARITY), "status", "--json"], cwd=tmp_path, env=_env(), capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert look.returncode == 0, look.stdout + look.stderr
            shown = json.loads(look.stdout)
            assert shown["reconciled"] is False and f"pid {first.pid}" in shown["not_reconciled_because"]
            assert shown["equity"] == pytest.approx(100_000.0, abs=1.0)
            assert f"pid {first.pid}" in look.stderr and "not reconciled" in look.stderr
            assert time.monotonic() - t0 < 30 and "Traceback" not in look.stderr
            posted = len(srv.orders_submitted())
            os.kill(first.pid, signal.SIGKILL)                  # the holder dies with its lease held
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)
        srv.configure(fill_mode="poll")
        third = subprocess.run([str(PARITY), "execute", "--signals", "s.csv", "--strategy", "slow"],
                               cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
        assert third.returncode == 0, third.stdout + third.stderr
        after = subprocess.run([str(PARITY), "status", "--json"], cwd=tmp_path, env=_env(), capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert after.returncode == 0 and json.loads(after.stdout)["reconciled"] is True, after.stderr
        assert len(srv.orders_submitted()) == posted            # the takeover resumed; it sent nothing twice
        with sqlite3.connect(str(tmp_path / "data" / "parity.db")) as db:
            assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0     # released at the end
            assert db.execute("SELECT status FROM runs WHERE run_id LIKE '%-paper-slow' ORDER BY created_at"
                              ).fetchall()[-1] == ("done",)


# ------------------------------------------------------------------------------ the live gate


class _Recorder(ThreadingHTTPServer):
    """A local HTTP proxy that only counts: every request the CLI would send anywhere passes here."""

    def __init__(self):
        self.hits: list[str] = []

        class H(BaseHTTPRequestHandler):
            def _any(handler):  # noqa: N805
                self.hits.append(f"{handler.command} {handler.path}")
                handler.send_response(502)
                handler.end_headers()

            do_GET = do_POST = do_DELETE = do_CONNECT = _any

            def log_message(handler, *a):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), H)
        threading.Thread(target=self.serve_forever, daemon=True).start()


PRODUCTION = ["https://api.alpaca.markets", "https://api.alpaca.markets:443", "https://api.alpaca.markets/v2",
              "HTTPS://API.ALPACA.MARKETS", "https://paper-api.alpaca.markets", "http://proxy.example:8080",
              "api.alpaca.markets"]


@pytest.mark.parametrize("url", PRODUCTION)
def test_the_live_gate_refuses_every_production_spelling_before_any_request(tmp_path, url):
    proxy = _Recorder()
    try:
        write_home(tmp_path, url, LIVE_ENV)
        home = Home(tmp_path, None)  # type: ignore[arg-type]
        home.signals([("AAPL", 1, 0.10, 0.9)])
        env = _env()
        env.update(HTTP_PROXY=f"http://127.0.0.1:{proxy.server_port}", HTTPS_PROXY=f"http://127.0.0.1:"
                   f"{proxy.server_port}", NO_PROXY="")
        p = subprocess.run([str(PARITY), "execute", "--signals", "s.csv", "--live", "--yes"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "not promoted to live" in p.stderr and "Traceback" not in p.stderr
        assert "live gate skipped" not in p.stdout + p.stderr
        assert proxy.hits == []                                 # nothing reached any venue, not even a lookup
    finally:
        proxy.shutdown()


def test_the_live_gate_is_skipped_only_for_a_local_server_and_says_so(tmp_path):
    with AlpacaServer(key=KEY, secret=SECRET, cash=100_000.0, rate_limit=None, data_rate_limit=None) as srv:
        url = srv.url.replace("127.0.0.1", "localhost")
        write_home(tmp_path, url, LIVE_ENV)
        home = Home(tmp_path, srv)
        home.signals([("AAPL", 1, 0.10, 0.9)])
        p = home.run("execute", "--signals", "s.csv", "--live", "--yes")
        assert p.returncode == 0, p.stderr
        assert "live gate skipped" in p.stdout and "loopback" in p.stdout
        assert srv.count_orders() == 1
