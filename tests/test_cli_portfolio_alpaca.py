"""``parity execute|status --portfolio`` as a user runs them: three sleeves (0.3 / 0.5 / 0.2) with
overlapping symbols on one local Alpaca paper account that also holds the user's own IBM shares.

Shows (SPEC §18): the account's exposure never exceeds the account limit and each sleeve's never
exceeds its strategy's; a symbol one sleeve sells while another buys is one order for the net;
partial fills are allocated in proportion to what each sleeve asked for; each sleeve's P&L plus the
unallocated rest is the account's P&L to the cent, in the ledger and in ``status --portfolio``; the
user's IBM is never touched.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import timedelta

import pandas as pd
import pytest

from tests.servers.alpaca_server import AlpacaServer
from tests.test_cli_alpaca import KEY, PAPER_ENV, SECRET, Home, now_utc, write_home

USER_IBM = 10.0
FILL_BPS = 20.0             # the venue fills 20 bp worse than the price the cycle was sized with
ACCOUNT_LIMIT = 0.5
SLEEVES = {"alpha": 0.3, "beta": 0.5, "gamma": 0.2}
# each sleeve's own limits (settings.yaml: max_position_size_pct 0.20, max_exposure_pct 0.95)
LIMITS = {"alpha": (0.35, 0.95), "beta": (0.40, 0.95), "gamma": (0.60, 0.90)}


@pytest.fixture
def srv():
    with AlpacaServer(key=KEY, secret=SECRET, cash=100_000.0, crypto_fee_bps=0.0, rate_limit=None,
                      data_rate_limit=None, fill_slippage_bps=FILL_BPS) as s:
        s.set_position("IBM", USER_IBM, 150.0)       # the user's own shares: no sleeve owns them
        yield s


@pytest.fixture
def home(tmp_path, srv) -> Home:
    write_home(tmp_path, srv.url, PAPER_ENV)
    cfg = tmp_path / "config"
    (cfg / "strategies").mkdir()
    (cfg / "portfolios").mkdir()
    for name, (pos, exp) in LIMITS.items():
        (cfg / "strategies" / f"{name}.yaml").write_text(
            f"name: {name}\nsignals: {{path: {tmp_path / (name + '.csv')}}}\n"
            f"risk: {{max_position_size_pct: {pos}, max_exposure_pct: {exp}}}\n"
            "rebalance: {drift_threshold: 0.0}\n")
    (cfg / "portfolios" / "three.yaml").write_text(
        "account: {broker: alpaca, environment: paper}\n"
        f"sleeves: {json.dumps(SLEEVES)}\n"
        f"risk: {{max_exposure_pct: {ACCOUNT_LIMIT}}}\n"
        "rebalance: {order_timeout_s: 2}\n")
    return Home(tmp_path, srv)


def write_sleeves(home: Home, weights: dict[str, dict[str, float]], minutes_ago: float) -> None:
    when = now_utc() - timedelta(minutes=minutes_ago)
    for name, w in weights.items():
        home.signals([(s, 1 if x > 0 else 0, abs(x), 0.9) for s, x in w.items()], name=f"{name}.csv", when=when)


def ledger(home: Home, sql: str, args: tuple = ()) -> pd.DataFrame:
    db = sqlite3.connect(str(home.root / "data" / "parity.db"))
    try:
        return pd.read_sql_query(sql, db, params=args)
    finally:
        db.close()


def sleeve_positions(home: Home) -> pd.DataFrame:
    t = ledger(home, "SELECT sleeve, symbol, SUM(qty) AS qty FROM sleeve_trades WHERE kind != 'fund' "
                     "GROUP BY sleeve, symbol")
    return t.pivot(index="sleeve", columns="symbol", values="qty").fillna(0.0)


def check_books(home: Home, srv: AlpacaServer, prices: dict[str, float]) -> dict:
    """Sleeves + the user's own = the server's positions; sleeve cash flows = the fills' cash flows;
    status --portfolio: sleeves' P&L + unallocated = account P&L to the cent."""
    held = {p["symbol"]: float(p["qty"]) for p in srv.positions().values()}
    assert held["IBM"] == USER_IBM
    books = sleeve_positions(home)
    for sym, q in held.items():
        mine = float(books[sym].sum()) if sym in books else 0.0
        assert mine + (USER_IBM if sym == "IBM" else 0.0) == pytest.approx(q, abs=1e-6), sym
    fills = ledger(home, "SELECT side, qty, price, fee FROM fills")
    flow = float(((fills["side"] == "sell") * 2 - 1).mul(fills["qty"] * fills["price"]).sum() - fills["fee"].sum())
    assert len(fills) > 0
    cash = ledger(home, "SELECT SUM(cash) AS c FROM sleeve_trades WHERE kind != 'fund'")["c"].iloc[0]
    assert abs(cash - flow) < 0.005
    p = home.run("status", "--portfolio", "three", "--paper", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    rep = out["portfolio"]
    parts = sum(s["pnl"] for s in rep["sleeves"].values()) + rep["unallocated"]["pnl"]
    assert abs(parts - rep["total"]["pnl"]) <= 0.011       # each figure rounded to the cent
    assert abs(rep["total"]["equity"] - out["equity"]) < 0.005
    start = 100_000.0 + USER_IBM * 160.0
    assert abs(rep["total"]["pnl"] - (out["equity"] - start)) < 0.005
    assert rep["unallocated"]["positions"] == {"IBM": USER_IBM}
    # the rest's P&L: the user's IBM, plus what the venue's cash moved beyond the booked fills (its
    # rounding of each fill's amount to the cent): nothing of a sleeve's ends up there
    ibm = USER_IBM * (prices.get("IBM", srv.get_price("IBM")) - 160.0)
    rounding = out["cash"] - 100_000.0 - flow
    assert abs(rounding) < 0.01 * max(len(fills), 1)
    assert abs(rep["unallocated"]["pnl"] - (ibm + rounding)) <= 0.011
    return rep


def test_three_sleeves_net_one_order_per_symbol_within_every_limit(home, srv):
    write_sleeves(home, {"alpha": {"AAPL": 0.30, "MSFT": 0.30},
                         "beta": {"AAPL": 0.20, "SPY": 0.35},
                         "gamma": {"AAPL": 0.50, "MSFT": 0.35}}, minutes_ago=3)
    dry = home.run("execute", "--portfolio", "three", "--paper", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert home.posts() == 0
    plan = json.loads(dry.stdout)
    assert sorted(o["symbol"] for o in plan["orders"]) == ["AAPL", "MSFT", "SPY"]

    p = home.run("execute", "--portfolio", "three", "--paper", "--json")
    assert p.returncode == 0, p.stderr + p.stdout
    done = json.loads(p.stdout)
    assert sorted(o["symbol"] for o in done["orders"]) == ["AAPL", "MSFT", "SPY"]
    assert sorted(done["portfolio"]["sleeves"]) == sorted(SLEEVES)
    posts = [r for r in srv.requests if r.method == "POST" and r.path == "/v2/orders"]
    assert len(posts) == 3                                 # one order per symbol for three sleeves
    held = {s["symbol"]: float(s["qty"]) for s in srv.positions().values()}
    equity = 100_000.0 + USER_IBM * 160.0
    prices = {"AAPL": 190.0, "MSFT": 370.0, "SPY": 470.0, "IBM": 160.0}
    gross = sum(abs(q) * prices[s] for s, q in held.items())
    assert gross <= ACCOUNT_LIMIT * equity + 0.01         # the user's IBM counts, and is left alone
    assert gross > 0.45 * equity                          # the account limit bound (the sleeves asked ~56%)
    plans = ledger(home, "SELECT sleeve, symbol, price, equity, target FROM sleeve_plans")
    books = sleeve_positions(home)
    for name, (pos_cap, exp_cap) in LIMITS.items():
        rows = plans[plans["sleeve"] == name]
        eq = float(rows["equity"].iloc[0])
        assert eq == pytest.approx(SLEEVES[name] * equity)
        values = {s: abs(float(books.loc[name].get(s, 0.0))) * prices[s] for s in books.columns}
        assert max(values.values()) <= pos_cap * eq + 0.01
        assert sum(values.values()) <= exp_cap * eq + 0.01
    rep1 = check_books(home, srv, prices)
    assert set(rep1["sleeves"]) == set(SLEEVES)

    # cycle 2: alpha sells most of its AAPL while beta buys more, gamma trades MSFT for SPY; the
    # venue fills half of each order, then nothing more (a thin market)
    srv.configure(partial_fill_fraction=0.5, stall_after_partial=True)
    before = len(posts)
    write_sleeves(home, {"alpha": {"AAPL": 0.10, "MSFT": 0.30},
                         "beta": {"AAPL": 0.40, "SPY": 0.35},
                         "gamma": {"AAPL": 0.50, "MSFT": 0.10, "SPY": 0.25}}, minutes_ago=1)
    p = home.run("execute", "--portfolio", "three", "--paper")
    assert p.returncode == 0, p.stderr + p.stdout
    assert "SLEEVES" in p.stdout and "(unallocated)" in p.stdout
    posts = [r for r in srv.requests if r.method == "POST" and r.path == "/v2/orders"]
    sent = [r.body if isinstance(r.body, dict) else json.loads(r.body) for r in posts[before:]]
    aapl = [o for o in sent if o["symbol"] == "AAPL"]
    assert len(aapl) == 1                                  # one order for the net
    plan2 = ledger(home, "SELECT sleeve, symbol, held, target, crossed, residual FROM sleeve_plans "
                         "WHERE batch_id = (SELECT MAX(batch_id) FROM sleeve_plans) AND symbol='AAPL'")
    crossed = plan2.set_index("sleeve")["crossed"]
    assert crossed["alpha"] < 0 and crossed["beta"] > 0    # alpha's shares went to beta inside the account
    net = float((plan2["target"] - plan2["held"]).sum())
    assert float(aapl[0]["qty"]) == pytest.approx(abs(net), rel=1e-6, abs=1e-6)
    assert aapl[0]["side"] == ("buy" if net > 0 else "sell")
    assert abs(net) < plan2["crossed"].abs().sum()         # most of what the sleeves traded never left
    partial = ledger(home, "SELECT client_order_id, qty, filled_qty FROM orders WHERE filled_qty > 0 AND "
                           "filled_qty < qty - 1e-9")
    assert len(partial) >= 1                               # the stalled partial fills were allocated too
    cross_rows = ledger(home, "SELECT sleeve, qty, fee, cash FROM sleeve_trades WHERE kind='cross'")
    assert abs(cross_rows["qty"].sum()) < 1e-9 and abs(cross_rows["cash"].sum()) < 1e-6
    assert cross_rows["fee"].sum() == 0.0
    check_books(home, srv, prices)

    # prices move: P&L per sleeve, the rest (the user's IBM) and the account still add up to the cent
    srv.set_prices({"AAPL": 201.37, "MSFT": 355.11, "SPY": 480.93, "IBM": 171.49})
    rep = check_books(home, srv, {})
    assert any(abs(s["pnl"]) > 1 for s in rep["sleeves"].values())
    assert {p["symbol"]: float(p["qty"]) for p in srv.positions().values()}["IBM"] == USER_IBM

    # paper vs simulation per sleeve, and the slippage each sleeve's fills imply
    c = home.run("compare", "--portfolio", "three", "--json")
    assert c.returncode == 0, c.stderr + c.stdout
    cmp = json.loads(c.stdout)
    assert cmp["cycles"] == 2 and set(cmp["sleeves"]) == set(SLEEVES)
    for name, r in cmp["sleeves"].items():
        assert r["shortfall_bps"] == pytest.approx(FILL_BPS, abs=0.5), name
        assert r["sim_slippage_bps"] == 5.0
        assert r["paper_pnl"] < r["sim_pnl"], name        # paper paid 20 bp, the simulator assumed 5
    cal = home.run("calibrate", "--portfolio", "three", "--json")
    assert cal.returncode == 0, cal.stderr + cal.stdout
    proposals = json.loads(cal.stdout)["proposals"]
    assert proposals["beta"]["simulation.slippage.bps"] == pytest.approx(FILL_BPS, abs=0.5)
    assert proposals["beta"]["file"] == "strategies/beta.yaml"

    # the nightly: one report for the account, one per sleeve; the parts add up there too
    n = home.run("report", "nightly")
    assert n.returncode == 0, n.stderr + n.stdout
    day = now_utc().strftime("%Y-%m-%d")
    folder = home.root / "reports" / "nightly" / day / "portfolio-three"
    acct = json.loads((folder / "account.json").read_text())
    assert abs(sum(s["pnl"] for s in acct["sleeves"].values()) + acct["unallocated"]["pnl"]
               - acct["total"]["pnl"]) <= 0.011
    assert abs(acct["total"]["pnl"] - rep["total"]["pnl"]) < 0.005
    for name in SLEEVES:
        sleeve = json.loads((folder / f"{name}.json").read_text())
        assert sleeve["sleeve"] == name and sleeve["pnl"] == acct["sleeves"][name]["pnl"]
        assert sleeve["equity_by_day"][day] == pytest.approx(sleeve["equity"], abs=0.01)
    index = json.loads((home.root / "reports" / "nightly" / day / "portfolios.json").read_text())
    assert [p["portfolio"] for p in index["portfolios"]] == ["three"]


def test_portfolio_errors_exit_2_naming_file_and_key(home):
    (home.root / "config" / "portfolios" / "bad.yaml").write_text("sleeves: {alpha: 0.7, beta: 0.5}\n")
    p = home.run("execute", "--portfolio", "bad", "--paper")
    assert p.returncode == 2
    assert "bad.yaml [sleeves]" in p.stderr and "sum to 1.2" in p.stderr
    assert home.posts() == 0


def test_a_sleeve_stop_loss_is_refused_before_anything_is_sent(home):
    """execute --portfolio with a stop_loss in a sleeve's archive: exit 2 naming the file, line and
    field and what to do instead; no order reaches the venue (sleeves place no protective orders)."""
    write_sleeves(home, {"alpha": {"AAPL": 0.3}, "beta": {"MSFT": 0.4}, "gamma": {"SPY": 0.5}}, minutes_ago=1)
    beta = pd.read_csv(home.root / "beta.csv")
    beta["stop_loss"] = "3%"
    beta.to_csv(home.root / "beta.csv", index=False)
    p = home.run("execute", "--portfolio", "three", "--paper")
    assert p.returncode == 2, p.stderr
    assert f"{home.root / 'beta.csv'}:2 [stop_loss]" in p.stderr and "runs as a sleeve of" in p.stderr
    assert "parity execute --strategy beta" in p.stderr and "Traceback" not in p.stderr
    assert home.posts() == 0


def test_status_of_a_portfolio_while_another_command_holds_the_account_reads_and_writes_nothing(home, srv):
    """A command running on the account (here: its lease, held by this test's live process) leaves
    status --portfolio read-only: it answers at once from the venue and the sleeves as last booked,
    says it did not reconcile, and writes nothing to the ledger."""
    from framework.ledger import Ledger

    write_sleeves(home, {"alpha": {"AAPL": 0.3}, "beta": {"MSFT": 0.3}, "gamma": {"SPY": 0.3}}, minutes_ago=1)
    assert home.run("execute", "--portfolio", "three", "--paper").returncode == 0
    account = ledger(home, "SELECT DISTINCT account FROM runs WHERE mode='paper'")["account"].tolist()
    assert len(account) == 1
    led = Ledger(home.root / "data" / "parity.db")
    try:
        taken, _ = led.try_lease(account[0], "execute", 600.0)
        assert taken
        before = {t: ledger(home, f"SELECT COUNT(*) AS n FROM {t}")["n"].iloc[0]
                  for t in ("runs", "orders", "fills", "sleeve_trades")}
        p = home.run("status", "--portfolio", "three", "--paper", "--json")
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert out["reconciled"] is False and sorted(out["portfolio"]["sleeves"]) == sorted(SLEEVES)
        assert f"pid {os.getpid()}" in out["not_reconciled_because"]
        assert "not reconciled" in p.stderr and "Traceback" not in p.stderr
        assert {t: ledger(home, f"SELECT COUNT(*) AS n FROM {t}")["n"].iloc[0] for t in before} == before
    finally:
        led.release_lease(account[0])
        led.close()
    p = home.run("status", "--portfolio", "three", "--paper", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["reconciled"] is True, p.stderr
