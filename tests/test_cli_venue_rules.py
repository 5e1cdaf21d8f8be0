"""Issue 12 as a user sees it through ``parity``: the venue as it really is (local servers with the
behaviour switched on; sources in docs/venue_behaviours_confirmed.md).

- A user's stop-loss survives ``execute`` and ``status`` lists it as not Parity's (row 2).
- USDC + BTC on Coinbase: ``status --json`` equity within 0.01% of the true value, vault left out (row 1).
- An archive whose old batches name a delisted symbol trades its newest batch; when the newest batch
  names it, the others trade and the plan says why it was held (row 7).
- After a crypto buy and a full close on Alpaca the venue position is 0 and reconcile is clean (row 4).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from tests.servers.alpaca_server import AlpacaServer
from tests.test_cli_alpaca import HEADER, KEY, LIVE_ENV, PAPER_ENV, SECRET, Home, now_utc, stamp, write_home
from tests.test_cli_coinbase import CliEnv
from tests.test_cli_coinbase import server as coinbase_server


@pytest.fixture
def srv():
    with AlpacaServer(key=KEY, secret=SECRET, cash=100_000.0, rate_limit=None, data_rate_limit=None) as s:
        yield s


@pytest.fixture
def home(tmp_path, srv) -> Home:
    write_home(tmp_path, srv.url, PAPER_ENV + LIVE_ENV)
    return Home(tmp_path, srv)


def archive(home: Home, batches: list[tuple[int, list[tuple]]], name: str = "a.csv") -> str:
    """A signal archive of several batches: (minutes ago, rows of (symbol, side, weight, confidence))."""
    lines = []
    for ago, rows in batches:
        t = stamp(now_utc() - timedelta(minutes=ago))
        lines += [f"{r[0]},{t},bull,{r[1]},{r[2]},{r[3]},\n" for r in rows]
    (home.root / name).write_text(HEADER + "".join(lines))
    return name


def test_a_users_stop_loss_survives_execute_and_status_lists_it_as_not_parity(home, srv):
    srv.set_position("AAPL", 20, 180.0)
    stop = srv.add_user_order("AAPL", "sell", qty=20, type="stop", stop_price=150.0)
    f = home.signals([("MSFT", 1, 0.05, 0.9)])
    p = home.run("execute", "--signals", f, "--paper")
    assert p.returncode == 0, p.stderr
    assert srv.get_order(stop["id"])["status"] in ("new", "accepted"), "the user's stop is still working"
    assert srv.position_qty("MSFT") > 0 and srv.position_qty("AAPL") == 20
    again = home.run("execute", "--signals", home.signals([("MSFT", 1, 0.06, 0.9)], name="s2.csv"), "--paper")
    assert again.returncode == 0, again.stderr
    assert srv.get_order(stop["id"])["status"] in ("new", "accepted"), "a second cycle leaves it too"
    st = home.run("status", "--paper")
    assert st.returncode == 0, st.stderr
    assert re.search(r"Open orders not Parity's \(1; left alone\):\n\s+SELL\s+20 AAPL\s+stop", st.stdout), st.stdout
    assert stop["client_order_id"] in st.stdout
    js = json.loads(home.run("status", "--json").stdout)
    assert [o["client_order_id"] for o in js["not_parity_orders"]] == [stop["client_order_id"]]
    dry = home.run("execute", "--signals", f, "--paper", "--dry-run")
    assert "Open orders not Parity's" in dry.stdout and stop["client_order_id"] in dry.stdout


def test_a_delisted_symbol_in_old_batches_stops_nothing_and_in_the_newest_batch_is_held(home, srv):
    srv.set_asset("MSFT", status="inactive", tradable=False)
    old = archive(home, [(600, [("MSFT", 1, 0.1, 0.9), ("AAPL", 1, 0.1, 0.9)]),
                         (1, [("AAPL", 1, 0.1, 0.9), ("SPY", 1, 0.1, 0.9)])])
    p = home.run("execute", "--signals", old, "--paper")
    assert p.returncode == 0, p.stderr
    assert srv.position_qty("AAPL") > 0 and srv.position_qty("SPY") > 0
    newest = archive(home, [(600, [("AAPL", 1, 0.1, 0.9)]),
                            (0, [("MSFT", 1, 0.1, 0.9), ("AAPL", 1, 0.15, 0.9)])], name="b.csv")
    dry = home.run("execute", "--signals", newest, "--paper", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"\[venue_halt\] MSFT: hold .*inactive.*held, the other symbols trade", dry.stdout), dry.stdout
    assert re.search(r"BUY\s+[\d.]+ AAPL", dry.stdout) and not re.search(r"BUY\s+[\d.]+ MSFT", dry.stdout)
    p = home.run("execute", "--signals", newest, "--paper")
    assert p.returncode == 0, p.stderr
    assert "venue_halt" in p.stdout and srv.count_orders(symbol="MSFT") == 0
    assert srv.position_qty("AAPL") == pytest.approx(0.15 * 100_000 / 190.0, rel=0.01)


def test_after_a_crypto_buy_and_a_full_close_the_venue_holds_nothing_and_reconcile_is_clean(home, srv):
    """Alpaca takes the crypto fee in the coin (default server: 25 bps)."""
    p = home.run("execute", "--signals", home.signals([("BTC/USD", 1, 0.1, 0.9)]), "--paper")
    assert p.returncode == 0, p.stderr
    assert 0 < srv.position_qty("BTC/USD") < 10_000 / 45_000
    st = home.run("status", "--paper")
    assert "differ" not in st.stdout + st.stderr, st.stderr
    c = home.run("close", "--symbol", "BTC/USD", "--paper")
    assert c.returncode == 0, c.stdout + c.stderr
    assert srv.position_qty("BTC/USD") == 0.0
    st = home.run("status", "--paper")
    assert st.returncode == 0 and "differ" not in st.stdout + st.stderr, st.stderr


def test_coinbase_status_counts_usdc_at_par_and_leaves_vaults_out(tmp_path):
    with coinbase_server(cash_usd=0) as cb:
        cb.set_balance("USDC", "10000")
        cb.set_balance("BTC", "0.1")
        cb.add_vault("BTC", "3")
        env = CliEnv(tmp_path / "cb", cb)
        p = env.run("status", "--broker", "coinbase", "--live", "--json")
        assert p.returncode == 0, p.stderr
        data = json.loads(p.stdout)
        true_value = 10_000 + 0.1 * 50_000
        assert abs(data["equity"] - true_value) <= 1e-4 * true_value, data
        assert data["cash"] == pytest.approx(10_000.0)
        cb.set_balance("ZZZ", "5")
        p = env.run("status", "--broker", "coinbase", "--live", "--json")
        assert p.returncode != 0 and "ZZZ" in p.stderr and "Traceback" not in p.stderr
