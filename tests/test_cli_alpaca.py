"""``parity status / execute / close`` as a new user runs them: the console script in a fresh
directory holding config/settings.yaml and a .env with paper keys, pointed at a local Alpaca
server (in a thread of the test; the CLI is another process talking HTTP to it).

The server runs with ``crypto_fee_bps=0`` where positions are compared with targets: Alpaca takes
its crypto fee in the coin received, so with a fee a BTC position ends the fee short of its target
(tested in tests/brokers/alpaca). Its rate limit is off so that a long test never meets a 60 s
Reset window.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from tests.servers.alpaca_server import AlpacaServer

PARITY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "parity"
KEY, SECRET = "PKCLITESTKEY0042", "SKCLITESTSECRET0042"
HEADER = "symbol,time,regime,side,weight,confidence,strategy\n"
LIMITS = dict(max_position_size_pct=0.20, max_exposure_pct=0.95, max_positions=10, min_confidence=0.50)


def stamp(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Home:
    """A user's working directory with settings, .env and the signal files they write."""

    root: Path
    srv: AlpacaServer

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ALPACA_", "COINBASE_")) and k != "PYTHONPATH"}
        env["PARITY_POLL_INTERVAL"] = "0.02"
        p = subprocess.run([str(PARITY), *args], cwd=self.root, capture_output=True, text=True, env=env,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        for text in (p.stdout, p.stderr):
            assert SECRET not in text, f"the secret leaked into the output of parity {' '.join(args)}"
            assert "Traceback" not in text, p.stderr
        return p

    def signals(self, rows: list[tuple], name: str = "s.csv", when: datetime | None = None) -> str:
        """Write a signal CSV; rows are (symbol, side, weight, confidence[, strategy])."""
        t = stamp(when or now_utc())
        lines = [f"{r[0]},{t},bull,{r[1]},{r[2]},{r[3]},{r[4] if len(r) > 4 else ''}\n" for r in rows]
        (self.root / name).write_text(HEADER + "".join(lines))
        return name

    def posts(self) -> int:
        return sum(1 for r in self.srv.requests if r.method == "POST" and r.path == "/v2/orders")


def write_home(root: Path, url: str, env_lines: str, extra_alpaca: str = "") -> None:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "settings.yaml").write_text(
        "execution:\n"
        "  alpaca: {enabled: true, api_key: ${ALPACA_API_KEY}, api_secret: ${ALPACA_API_SECRET},\n"
        "           paper_api_key: ${ALPACA_PAPER_KEY}, paper_api_secret: ${ALPACA_PAPER_SECRET},\n"
        f"           base_url: {url}, data_url: {url}{extra_alpaca}}}\n"
        + "".join(f"  {k}: {v}\n" for k, v in LIMITS.items())
        + "  max_daily_loss_pct: 0.05\n  min_account_balance: 1000\n  max_leverage: 1.0\n"
        "ledger: data/parity.db\ndata_dir: data/\nreports_dir: reports/\n")
    (root / ".env").write_text(env_lines)


PAPER_ENV = f"ALPACA_PAPER_KEY={KEY}\nALPACA_PAPER_SECRET={SECRET}\n"
LIVE_ENV = f"ALPACA_API_KEY={KEY}\nALPACA_API_SECRET={SECRET}\n"


@pytest.fixture
def srv():
    with AlpacaServer(key=KEY, secret=SECRET, cash=100_000.0, crypto_fee_bps=0.0, rate_limit=None,
                      data_rate_limit=None) as s:
        yield s


@pytest.fixture
def home(tmp_path, srv) -> Home:
    write_home(tmp_path, srv.url, PAPER_ENV + LIVE_ENV)
    return Home(tmp_path, srv)


# ------------------------------------------------------------------------------ status


def test_status_prints_the_portfolio_summary_layout(home, srv):
    srv.set_cash(75_600.0)
    srv.set_position("BTC/USD", 0.5, 43_000.0)     # price 45,000: value 22,500, P&L 1,000
    srv.set_position("AAPL", 10, 180.0)            # price 190: value 1,900, P&L 100
    p = home.run("status", "--paper")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    eq, dash = "=" * 62, "-" * 62
    assert lines[:3] == [eq, "PORTFOLIO SUMMARY  (alpaca, paper)", eq]
    expected = [
        r"Account Equity:    \$\s+100,000\.00",
        r"Portfolio Value:   \$\s+24,400\.00",
        r"Cash:              \$\s+75,600\.00",
        r"Buying Power:      \$\s+75,600\.00",
        r"Total P&L:         \$\s+1,100\.00 \(\s*4\.72%\)",
        r"Net Exposure:      \$\s+24,400\.00 \(\s*24\.40%\)",
        r"Positions:         2",
    ]
    for pattern, line in zip(expected, lines[3:10]):
        assert re.fullmatch(pattern, line), (pattern, line)
    rows = lines[lines.index(dash) + 1:-1]
    assert lines[-1] == eq
    assert len(rows) == 2
    assert re.fullmatch(r"\s*BTC/USD \| Qty:\s+0\.5000 \| Value: \$\s*22,500\.00 \| P&L: \$\s*1,000\.00 "
                        r"\(\s*4\.65%\) \| Weight:\s*92\.2%", rows[0]), rows[0]
    assert re.fullmatch(r"\s*AAPL \| Qty:\s+10\.0000 \| Value: \$\s*1,900\.00 \| P&L: \$\s*100\.00 "
                        r"\(\s*5\.56%\) \| Weight:\s*7\.8%", rows[1]), rows[1]
    # the same columns line up as in the earlier framework's output
    assert rows[0].index("| Qty:") == rows[1].index("| Qty:")
    assert rows[0].index("| Weight:") == rows[1].index("| Weight:")


def test_status_json_matches_the_venue(home, srv):
    srv.set_position("AAPL", 10, 180.0)
    p = home.run("status", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["broker"] == "alpaca" and data["mode"] == "paper"
    assert data["equity"] == pytest.approx(float(srv.account()["equity"]))
    assert [(x["symbol"], x["qty"]) for x in data["positions"]] == [("AAPL", 10.0)]


# ------------------------------------------------------------------------------ execute


SIGNALS = [("AAPL", 1, 0.30, 0.9), ("X:BTCUSD", 1, 0.15, 0.8), ("MSFT", 1, 0.10, 0.4), ("SPY", 1, 0.10, 0.7)]


def expected_targets(equity: float, prices: dict[str, float]) -> dict[str, float]:
    """Weights x equity / price after the settings' limits, computed by hand for SIGNALS:
    AAPL 0.30 clipped to max_position_size_pct 0.20; MSFT below min_confidence keeps its (empty)
    position; gross 0.45 is under max_exposure_pct 0.95 and 3 positions under max_positions 10."""
    w = {"AAPL": min(0.30, LIMITS["max_position_size_pct"]), "BTC/USD": 0.15, "SPY": 0.10}
    assert sum(w.values()) <= LIMITS["max_exposure_pct"]
    return {s: wt * equity / prices[s] for s, wt in w.items()}


def test_dry_run_shows_the_protective_exits_the_fills_would_get(home, srv):
    """Exit levels in the batch (SPEC §20): the dry run lists the stop and take-profit each position
    would get once its order fills (a % level from today's price, said to be an estimate; AAPL in
    whole shares), and a level the price has already crossed as not placed; the take-profit Alpaca
    crypto cannot place beside a stop (no OCO) is named as not placed; nothing is sent."""
    t = stamp(now_utc())
    rows = [f"AAPL,{t},bull,1,0.30,0.9,,180,210", f"X:BTCUSD,{t},bull,1,0.15,0.8,,3%,50000",
            f"SPY,{t},bull,1,0.10,0.7,,,460"]
    (home.root / "x.csv").write_text(HEADER.strip() + ",stop_loss,take_profit\n" + "\n".join(rows) + "\n")
    p = home.run("execute", "--signals", "x.csv", "--paper", "--dry-run")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    aapl = int(0.20 * 100_000.0 / 190.0)
    assert re.search(rf"AAPL\s+sell {aapl} at stop 180\.0000  take 210\.0000\n", out), out
    btc = 0.15 * 100_000.0 / 45_000.0
    m = re.search(r"BTC/USD\s+sell ([\d.]+) at stop 43,650\.0000  take 50,000\.0000  \(entry estimated at "
                  r"today's price\)\n\s+take-profit not placed: Alpaca crypto has no OCO orders", out)
    assert m and float(m.group(1)) == pytest.approx(btc, rel=1e-5), out
    assert re.search(r"\[take_profit\] SPY: take_profit 460 is already crossed by the price 470", out), out
    assert "3 order(s) planned" in out and home.posts() == 0
    p = home.run("execute", "--signals", "x.csv", "--paper", "--dry-run", "--json")
    plan = json.loads(p.stdout)
    assert [(e["symbol"], e["side"], e["stop_loss"], e["take_profit"], e["estimated"], sorted(e["not_placed"]))
            for e in plan["exits"]] == [("AAPL", "sell", 180.0, 210.0, False, []),
                                        ("BTC/USD", "sell", 43_650.0, 50_000.0, True, ["take"])]
    assert [(e["symbol"], e["rule"]) for e in plan["exits_not_placed"]] == [("SPY", "take_profit")]
    assert home.posts() == 0


def test_dry_run_prints_the_plan_and_sends_nothing(home, srv):
    f = home.signals(SIGNALS)
    p = home.run("execute", "--signals", f, "--paper", "--dry-run")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "ORDER PLAN" in out and "DRY RUN: nothing was sent" in out
    shown = (("AAPL", "190.0000"), ("BTC/USD", "45,000.0000"), ("MSFT", "370.0000"), ("SPY", "470.0000"))
    for sym, px in shown:
        assert re.search(rf"{re.escape(sym)}\s+price\s+{px}", out), sym
    assert re.search(r"\[min_confidence\] MSFT: hold .*confidence 0\.40 < min 0\.50", out)
    assert re.search(r"\[max_position_size_pct\] AAPL: clip 0\.3 -> 0\.2 .*above the limit", out)
    targets = expected_targets(100_000.0, {"AAPL": 190.0, "BTC/USD": 45_000.0, "SPY": 470.0})
    for sym, q in targets.items():
        m = re.search(rf"BUY\s+([\d.]+) {re.escape(sym)}\s", out)
        assert m, sym
        assert float(m.group(1)) == pytest.approx(q, abs=1e-6)
    order_lines = [line for line in out.splitlines() if line.strip().startswith(("BUY", "SELL"))]
    assert not any("MSFT" in line for line in order_lines)
    assert "3 order(s) planned" in out
    assert home.posts() == 0
    assert not any(r.method in ("POST", "DELETE", "PATCH") for r in srv.requests)


def test_execute_reaches_the_risk_approved_targets_and_a_rerun_sends_nothing(home, srv):
    f = home.signals(SIGNALS)
    p = home.run("execute", "--signals", f, "--paper")
    assert p.returncode == 0, p.stderr
    targets = expected_targets(100_000.0, {"AAPL": 190.0, "BTC/USD": 45_000.0, "SPY": 470.0})
    held = {k: float(v["qty"]) for k, v in srv.positions().items()}
    assert set(held) == {"AAPL", "BTCUSD", "SPY"}
    for sym, q in targets.items():
        assert held[sym.replace("/", "")] == pytest.approx(q, abs=1e-9 * 1.01), sym   # one increment
    assert srv.count_orders() == 3 and srv.count_orders(status="filled") == 3
    assert "filled" in p.stdout and "max_position_size_pct" in p.stdout

    again = home.run("execute", "--signals", f, "--paper")
    assert again.returncode == 0, again.stderr
    assert srv.count_orders() == 3, "the same batch again sends no new order"
    assert "no orders" in again.stdout

    db = home.root / "data" / "parity.db"
    assert SECRET.encode() not in db.read_bytes()
    con = sqlite3.connect(db)
    try:
        modes = con.execute("SELECT mode, broker FROM runs").fetchall()
        n_orders = con.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    finally:
        con.close()
    assert set(modes) == {("paper", "alpaca")} and len(modes) == 2
    assert n_orders == 3


def test_close_partly_then_fully(home, srv):
    srv.set_position("BTC/USD", 0.5, 43_000.0)
    srv.set_position("AAPL", 10, 180.0)
    p = home.run("close", "--symbol", "X:BTCUSD", "--quantity", "0.2", "--paper")
    assert p.returncode == 0, p.stderr
    assert "BTC/USD" in p.stdout and "filled" in p.stdout
    assert srv.position_qty("BTC/USD") == pytest.approx(0.3, abs=1e-9)
    p = home.run("close", "--symbol", "AAPL")
    assert p.returncode == 0, p.stderr
    assert srv.position_qty("AAPL") == 0.0
    assert "AAPL" not in srv.positions()
    sells = [o for o in srv.orders_submitted() if o["side"] == "sell"]
    assert sorted((o["symbol"], float(o["qty"])) for o in sells) == [("AAPL", 10.0), ("BTC/USD", 0.2)]


def test_two_different_partial_closes_in_one_minute_are_both_sent(home, srv):
    """A second ``close`` with another quantity is a new request, not a re-run of the first."""
    srv.set_position("BTC/USD", 1.0, 43_000.0)
    for q in ("0.1", "0.3"):
        p = home.run("close", "--symbol", "X:BTCUSD", "--quantity", q, "--paper")
        assert p.returncode == 0, p.stderr
    assert srv.count_orders(symbol="BTC/USD", side="sell") == 2, p.stdout
    assert srv.position_qty("BTC/USD") == pytest.approx(0.6, abs=1e-9)


def test_close_dry_run_sends_nothing(home, srv):
    srv.set_position("AAPL", 10, 180.0)
    p = home.run("close", "--symbol", "AAPL", "--quantity", "4", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "DRY RUN" in p.stdout and "SELL 4 AAPL" in p.stdout
    assert home.posts() == 0 and srv.position_qty("AAPL") == 10.0


@pytest.mark.parametrize("missing,command", [("ALPACA_PAPER_KEY", "status"),
                                             ("ALPACA_PAPER_SECRET", "execute")])
def test_missing_keys_exit_2_naming_the_variable(tmp_path, srv, missing, command):
    lines = [f"ALPACA_PAPER_KEY={KEY}", f"ALPACA_PAPER_SECRET={SECRET}"]
    write_home(tmp_path, srv.url, "\n".join(x for x in lines if not x.startswith(missing + "=")) + "\n")
    h = Home(tmp_path, srv)
    args = (("status", "--paper") if command == "status"
            else ("execute", "--signals", h.signals(SIGNALS), "--paper"))
    p = h.run(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert missing in p.stderr
    assert srv.requests == [], "nothing reached the venue"


def test_unknown_symbol_exits_2_naming_file_line_and_field(home, srv):
    f = home.signals([("AAPL", 1, 0.1, 0.9), ("ZZZZ", 1, 0.1, 0.9)])
    p = home.run("execute", "--signals", f, "--paper")
    assert p.returncode == 2
    assert re.search(r"s\.csv:3 \[symbol\].*ZZZZ", p.stderr), p.stderr
    assert home.posts() == 0


def test_stale_batch_is_refused_unless_forced(home, srv):
    f = home.signals([("AAPL", 1, 0.1, 0.9)], when=now_utc() - timedelta(hours=2))
    p = home.run("execute", "--signals", f, "--paper")
    assert p.returncode == 2, p.stdout
    assert "max_signal_age_minutes" in p.stderr and "--force" in p.stderr
    assert home.posts() == 0
    p = home.run("execute", "--signals", f, "--paper", "--force")
    assert p.returncode == 0, p.stderr
    assert srv.position_qty("AAPL") == pytest.approx(0.1 * 100_000 / 190.0, abs=1e-9 * 1.01)


def test_live_against_a_local_server_runs_and_says_the_gate_was_skipped(home, srv):
    f = home.signals([("AAPL", 1, 0.1, 0.9)])
    p = home.run("execute", "--signals", f, "--live", "--yes")
    assert p.returncode == 0, p.stderr
    note = p.stdout + p.stderr
    assert "live gate skipped" in note and "not the venue's production endpoint" in note
    assert home.posts() == 1
    assert srv.position_qty("AAPL") > 0


def test_live_without_confirmation_sends_nothing(home, srv):
    f = home.signals([("AAPL", 1, 0.1, 0.9)])
    p = home.run("execute", "--signals", f, "--live")
    assert p.returncode == 2
    assert "--yes" in p.stderr
    assert home.posts() == 0


def test_closed_equity_market_is_said_not_silently_skipped(home, srv):
    """SPEC §11: with the equity market closed, equity orders wait or are skipped with a clear
    message; crypto trades 24/7."""
    srv.set_market_open(False)
    f = home.signals([("AAPL", 1, 0.1, 0.9), ("BTC/USD", 1, 0.1, 0.9)])
    p = home.run("execute", "--signals", f, "--paper")
    assert p.returncode == 0, p.stderr
    assert srv.position_qty("BTC/USD") > 0
    said = [line for line in p.stdout.splitlines()
            if "AAPL" in line and re.search(r"market|closed", line, re.I)]
    assert said, f"nothing says why AAPL was not traded:\n{p.stdout}"


def test_close_while_the_equity_market_is_closed_says_it_waits_for_the_open(home, srv):
    """Venue row 16: Alpaca queues an equity market order sent while the market is closed; it fills at
    the next open (gap risk). ``close`` says so, in the dry run and when it sends; crypto closes at once."""
    srv.set_market_open(False)
    srv.set_position("AAPL", 10, 180.0)
    srv.set_position("BTC/USD", 0.5, 43_000.0)
    p = home.run("close", "--symbol", "AAPL", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "market for AAPL is closed" in p.stdout and "next open" in p.stdout and "gap" in p.stdout
    assert home.posts() == 0
    clock_before = sum(1 for r in srv.requests if r.path == "/v2/clock")
    p = home.run("close", "--symbol", "AAPL", "--paper")
    assert p.returncode == 0, p.stderr
    assert "next open" in p.stdout and "close AAPL: queued for the next open, filled 0 of 10" in p.stdout
    # the clock is asked before sending and once for the sent order, not again per order at the end
    assert sum(1 for r in srv.requests if r.path == "/v2/clock") - clock_before <= 2
    assert srv.position_qty("AAPL") == 10.0 and srv.count_orders(symbol="AAPL", side="sell") == 1
    p = home.run("close", "--symbol", "X:BTCUSD", "--paper")
    assert p.returncode == 0, p.stderr
    assert "closed" not in p.stdout.split("close BTC/USD")[0] and srv.position_qty("BTC/USD") == 0.0
    srv.set_market_open(True)            # the queued order is released at the open
    srv.process_orders()
    assert srv.position_qty("AAPL") == 0.0


# ------------------------------------------------------------------------------ backtest vs execute


STRATEGY_YAML = """name: paritychk
risk: {max_position_size_pct: 0.3, max_exposure_pct: 0.7, max_positions: 3, min_confidence: 0.5}
rebalance: {drift_threshold: 0.01, cash_buffer_pct: 0.0}
simulation: {venue: alpaca, fill: close, slippage: {model: fixed_bps, bps: 0}, cash: 50000,
             fees: true, fee_tier: 0}
"""
PRICES = {"AAPL": 190.0, "MSFT": 370.0, "SPY": 470.0, "BTC/USD": 45_000.0, "ETH/USD": 2_300.0}
# AAPL clipped to 0.3; MSFT held (confidence); ETH dropped by max_positions; gross 0.75 scaled to 0.7
PARITY_SIGNALS = [("AAPL", 1, 0.40, 0.9, "paritychk"), ("BTC/USD", 1, 0.30, 0.8, "paritychk"),
                  ("MSFT", 1, 0.10, 0.4, "paritychk"), ("SPY", 1, 0.15, 0.7, "paritychk"),
                  ("ETH/USD", 1, 0.05, 0.6, "paritychk")]


@pytest.fixture
def parity_home(tmp_path):
    """Bars whose last close per symbol is the server's price, one batch stamped at that last bar,
    a strategy in config/strategies, and a server whose cash is the backtest's starting cash."""
    with make_parity_home(tmp_path, crypto_fee_bps=0.0) as h:
        yield h


@contextmanager
def make_parity_home(tmp_path, crypto_fee_bps: float):
    with AlpacaServer(key=KEY, secret=SECRET, cash=50_000.0, prices=PRICES, crypto_fee_bps=crypto_fee_bps,
                      rate_limit=None, data_rate_limit=None) as s:
        write_home(tmp_path, s.url, PAPER_ENV)
        (tmp_path / "config" / "strategies").mkdir()
        (tmp_path / "config" / "strategies" / "paritychk.yaml").write_text(STRATEGY_YAML)
        days = pd.date_range("2024-03-01", periods=5, freq="D", tz="UTC")
        rows = []
        for sym, last in PRICES.items():
            for k, t in enumerate(days):
                c = last * (1 + 0.01 * (k - 4))
                rows.append(dict(timestamp=stamp(t.to_pydatetime()), symbol=sym, open=c * 0.995,
                                 high=c * 1.01, low=c * 0.98, close=c, volume=1e6))
        pd.DataFrame(rows).to_csv(tmp_path / "bars.csv", index=False)
        h = Home(tmp_path, s)
        h.signals(PARITY_SIGNALS, when=days[-1].to_pydatetime())
        yield h


def _backtest(h: Home) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = h.run("backtest", "--strategy", "paritychk", "--signals", "s.csv", "--bars", "bars.csv", "--json")
    assert p.returncode == 0, p.stderr
    out = Path(json.loads(p.stdout)["artifacts"])
    out = out if out.is_absolute() else h.root / out
    return pd.read_csv(out / "decisions.csv"), pd.read_csv(out / "orders.csv")


def test_backtest_and_execute_make_the_same_decisions_and_orders(parity_home):
    """The same batch through ``parity backtest`` (fill: close at the last bar) and through
    ``parity execute`` on the server at the same prices and cash: same risk decisions, same orders.

    What may differ and is not compared: fill prices and fees (the simulator charges the venue
    file's fees in cash; the server takes none here), and the run ids. The batch is from 2024, so
    execute needs --force. The client order ids differ on purpose: paper's carry the account's
    environment, so they can never meet a backtest's (SPEC §17)."""
    h = parity_home
    decisions, orders = _backtest(h)
    assert h.posts() == 0

    p = h.run("execute", "--signals", "s.csv", "--strategy", "paritychk", "--force", "--dry-run", "--json")
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["equity"] == pytest.approx(50_000.0)
    assert plan["prices"] == pytest.approx(PRICES)

    def key_bt(df):
        return sorted((r.rule, r.symbol, r.action, round(float(r.approved), 9)) for r in df.itertuples())

    def key_ex(ds):
        return sorted((d["rule"], d["symbol"], d["action"], round(float(d["approved"]), 9)) for d in ds)

    assert key_ex(plan["decisions"]) == key_bt(decisions)
    assert {d["rule"] for d in plan["decisions"]} == {"min_confidence", "max_position_size_pct",
                                                      "max_positions", "max_exposure_pct"}
    bt_orders = sorted((r.symbol, r.side, float(r.qty), r.client_order_id) for r in orders.itertuples())
    ex_orders = sorted((o["symbol"], o["side"], float(o["qty"]), o["client_order_id"])
                       for o in plan["orders"])
    def leg(cid: str) -> str:
        return cid.rsplit("-", 2)[-2]

    assert [(s, sd, leg(c)) for s, sd, _, c in ex_orders] == [(s, sd, leg(c)) for s, sd, _, c in bt_orders]
    # the same intents, but paper's ids can never meet the backtest's (SPEC §17)
    assert not {c for *_, c in ex_orders} & {c for *_, c in bt_orders}
    assert all(".paper-" in c for *_, c in ex_orders)
    for (_, _, qe, _), (_, _, qb, _) in zip(ex_orders, bt_orders):
        assert qe == pytest.approx(qb, abs=1e-6)

    # and the real execute sends exactly those orders
    p = h.run("execute", "--signals", "s.csv", "--strategy", "paritychk", "--force", "--json")
    assert p.returncode == 0, p.stderr
    done = json.loads(p.stdout)
    sent = sorted((o["symbol"], o["side"], o["qty"], o["client_order_id"]) for o in done["orders"])
    assert [(s, sd, c) for s, sd, _, c in sent] == [(s, sd, c) for s, sd, _, c in ex_orders]
    for (_, _, qe, _), (_, _, qb, _) in zip(sent, bt_orders):
        assert qe == pytest.approx(qb, abs=1e-6)
    assert {o["status"] for o in done["orders"]} == {"filled"}
    assert set(done["decisions"]) == set(decisions["reason"])
    assert h.srv.count_orders() == len(bt_orders)


def test_execute_accepts_a_strategy_given_as_a_yaml_path(parity_home):
    """``--strategy`` takes a name or a YAML path (as ``backtest`` does); the archive's rows tagged
    with the strategy's name belong to it either way."""
    h = parity_home
    p = h.run("execute", "--signals", "s.csv", "--strategy", "config/strategies/paritychk.yaml", "--force",
              "--dry-run", "--json")
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["batch_id"].startswith("paritychk.paper@")   # paper ids never meet a backtest's
    assert len(plan["orders"]) == 3
