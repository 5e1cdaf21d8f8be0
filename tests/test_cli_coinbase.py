"""``parity status / execute / close --broker coinbase`` as a new user runs them: the installed
``parity`` script in a subprocess, a working directory holding ``config/settings.yaml`` that points
``execution.coinbase`` at the local HTTPS Coinbase server (key file, ``base_url``, ``ca_bundle``),
and the ledger, data and reports in that directory.

Live: the status summary, a dry run that sends nothing, a real cycle that leaves the venue's
balances at the risk-approved targets (computed here independently, fees included), re-runs of the
same batch that send nothing, a close of a quote-sized position that leaves no sellable dust, and
the NOTE that the live gate is skipped off the production endpoint.
Shadow (``--paper``): nothing reaches Coinbase; fills at Coinbase's prices plus the configured
slippage and Coinbase's taker fee; positions carried in the ledger; the same orders as a backtest
of the same batch at the same prices.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, cli_env
from tests.servers import certs
from tests.servers.coinbase_server import API, CoinbaseServer

D = Decimal
INC = D("0.00000001")
PARITY = Path(sys.executable).with_name("parity")
NOTE_RE = re.compile(r"^NOTE: live gate skipped: .*not the venue's production endpoint", re.M)


# ------------------------------------------------------------------------------------------ helpers


@dataclass
class CliEnv:
    """A user's working directory wired to one local Coinbase server."""

    root: Path
    srv: CoinbaseServer
    runs: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        key_file = certs.write_key_file(str(self.root / "cdp_key.json"), self.srv.key())
        (self.root / "config").mkdir(exist_ok=True)
        (self.root / "config" / "settings.yaml").write_text(
            "execution:\n"
            f"  coinbase: {{enabled: true, key_file: {key_file}, base_url: \"{self.srv.base_url}\", "
            f"ca_bundle: {self.srv.cert_path}}}\n"
            f"ledger: {self.root / 'data' / 'parity.db'}\n"
            f"data_dir: {self.root / 'data'}/\n"
            f"reports_dir: {self.root / 'reports'}/\n")

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = cli_env()
        env["PARITY_POLL_INTERVAL"] = "0.02"
        cmd = [str(PARITY)] if PARITY.exists() else [sys.executable, "-m", "framework"]
        proc = subprocess.run([*cmd, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout, env=env)
        self.runs.append(proc)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    @property
    def ledger(self) -> Path:
        return self.root / "data" / "parity.db"

    def query(self, sql: str, *args) -> list[tuple]:
        con = sqlite3.connect(self.ledger)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


def server(**kw) -> CoinbaseServer:
    kw.setdefault("private_rate_limit", None)
    kw.setdefault("public_rate_limit", None)
    return CoinbaseServer(**kw).start()


def now_utc(offset_s: int = 0) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=offset_s)


def write_signals(path: Path, rows, t: dt.datetime | None = None) -> Path:
    """rows: (symbol, side, weight, confidence); one batch stamped ``t`` (default: now)."""
    stamp = (t or now_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["symbol", "time", "regime", "side", "weight", "confidence", "strategy"])
        for sym, side, weight, conf in rows:
            w.writerow([sym, stamp, "trend", side, weight, conf, ""])
    return path


def order_posts(srv: CoinbaseServer) -> list:
    return [r for r in srv.requests if r.method == "POST" and r.path == API + "/orders"]


def floor_inc(x: Decimal, inc: Decimal = INC) -> Decimal:
    return (x / inc).to_integral_value(rounding=ROUND_DOWN) * inc


def money(text: str, label: str) -> float:
    m = re.search(rf"^{re.escape(label)}:\s+\$\s*([-\d,\.]+)", text, re.M)
    assert m, f"no {label!r} line in:\n{text}"
    return float(m.group(1).replace(",", ""))


def ledger_problems(env: CliEnv) -> list[str]:
    """The project's own ledger consistency check (framework/ledger/check.py) over the whole file."""
    check = pytest.importorskip("framework.ledger.check").check_ledger
    return check(env.ledger)


def taker_rate() -> Decimal:
    """Coinbase's taker fee of the lowest tier, read from the venue file the simulator uses."""
    venue = yaml.safe_load((REPO / "config" / "venues" / "coinbase.yaml").read_text())
    return D(str(venue["asset_classes"]["crypto"]["fees"]["tiers"][0]["taker_bps"])) / D(10_000)


# ------------------------------------------------------------------------------------------ live: status, dry run, execute, re-runs

PRICES = {"BTC-USD": D("43210.55"), "ETH-USD": D("2345.67"), "SOL-USD": D("150")}
SOL_HELD = D(10)
# BTC 15% passes; ETH asks 30% and is clipped to max_position_size_pct 20%; SOL's confidence 0.3 is
# under min_confidence 0.5, so its position is kept as it is (10 SOL), whatever the signal says.
LIVE_SIGNALS = [("BTC/USD", 1, 0.15, 0.9), ("ETH/USD", 1, 0.30, 0.8), ("SOL/USD", 0, 0.0, 0.3)]


@dataclass
class LiveFlow:
    env: CliEnv
    status: subprocess.CompletedProcess
    dry: subprocess.CompletedProcess
    posts_after_dry: int
    first: subprocess.CompletedProcess
    posts_after_first: int
    balances_after_first: dict
    again: subprocess.CompletedProcess
    posts_after_again: int
    moved: subprocess.CompletedProcess
    posts_after_moved: int
    balances_after_moved: dict
    server_orders: list


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveFlow:
    srv = server(balances={"SOL": str(SOL_HELD)})
    try:
        for pid, px in PRICES.items():
            srv.set_price(pid, px)
        env = CliEnv(tmp_path_factory.mktemp("cb-live"), srv)
        write_signals(env.root / "s.csv", LIVE_SIGNALS)
        ex = ("execute", "--signals", "s.csv", "--broker", "coinbase", "--live")
        status = env.run("status", "--broker", "coinbase", "--live")
        dry = env.run(*ex, "--dry-run")
        n_dry = len(order_posts(srv))
        first = env.run(*ex, "--yes")
        n_first, bal_first = len(order_posts(srv)), {c: srv.balance(c) for c in ("USD", "BTC", "ETH", "SOL")}
        again = env.run(*ex, "--yes")
        n_again = len(order_posts(srv))
        # the price moves 10%: the same batch now "wants" more BTC, but its legs were already sent
        srv.set_price("BTC-USD", PRICES["BTC-USD"] * D("0.9"))
        moved = env.run(*ex, "--yes")
        n_moved, bal_moved = len(order_posts(srv)), {c: srv.balance(c) for c in ("USD", "BTC", "ETH", "SOL")}
        yield LiveFlow(env, status, dry, n_dry, first, n_first, bal_first, again, n_again, moved, n_moved, bal_moved,
                       srv.orders())
    finally:
        srv.stop()


def expected_live_targets() -> dict[str, Decimal]:
    equity = D(100_000) + SOL_HELD * PRICES["SOL-USD"]
    return {"BTC": floor_inc(D("0.15") * equity / PRICES["BTC-USD"]),
            "ETH": floor_inc(D("0.20") * equity / PRICES["ETH-USD"]),
            "SOL": SOL_HELD}


def test_status_live_prints_the_portfolio_summary_from_the_venue(live):
    p = live.status
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "PORTFOLIO SUMMARY  (coinbase, live)" in out
    assert money(out, "Account Equity") == pytest.approx(101_500.00)
    assert money(out, "Cash") == pytest.approx(100_000.00)
    assert money(out, "Buying Power") == pytest.approx(100_000.00)
    assert money(out, "Portfolio Value") == pytest.approx(1_500.00)
    assert re.search(r"^Positions:\s+1$", out, re.M)
    assert re.search(r"SOL/USD \| Qty:\s+10\.0000 \| Value: \$\s+1,500\.00", out)


def test_dry_run_prints_the_plan_says_the_gate_is_skipped_and_sends_nothing(live):
    p = live.dry
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert NOTE_RE.search(out), out
    assert live.env.srv.base_url in NOTE_RE.search(out).group(0)
    assert "DRY RUN: nothing was sent" in out
    assert re.search(r"BUY\s+[\d.]+ BTC/USD", out) and re.search(r"BUY\s+[\d.]+ ETH/USD", out)
    assert not re.search(r"(BUY|SELL)\s+[\d.]+ SOL/USD", out)
    assert "max_position_size_pct" in out and "min_confidence" in out       # the clip and the hold, with reasons
    assert live.posts_after_dry == 0, "a dry run sent an order"


def test_live_execute_ends_at_the_risk_approved_targets(live):
    p = live.first
    assert p.returncode == 0, p.stderr
    assert NOTE_RE.search(p.stdout), p.stdout
    assert live.posts_after_first == 2                      # BTC and ETH; SOL untouched
    bal = live.balances_after_first
    exp = expected_live_targets()
    for cur in ("BTC", "ETH", "SOL"):
        held = bal[cur][0] + bal[cur][1]
        assert abs(held - exp[cur]) <= INC, f"{cur}: held {held}, risk-approved target {exp[cur]}"
    # market buys by base size at the venue's price; Coinbase's fee (server fee_rate 0.6%) comes out of cash
    fee = D(str(live.env.srv.fee_rate))
    spent = sum(exp[c] * PRICES[f"{c}-USD"] * (1 + fee) for c in ("BTC", "ETH"))
    assert abs(bal["USD"][0] - (D(100_000) - spent)) < D("0.01")
    assert "filled" in p.stdout


def test_the_same_batch_again_sends_no_new_order(live):
    assert live.again.returncode == 0, live.again.stderr
    assert NOTE_RE.search(live.again.stdout), "the live-gate NOTE must be shown on every run"
    assert live.posts_after_again == live.posts_after_first
    assert "no orders" in live.again.stdout or "already at the venue" in live.again.stdout


def test_the_same_batch_after_a_price_move_sends_nothing_for_legs_already_sent(live):
    p = live.moved
    assert p.returncode == 0, p.stderr
    assert NOTE_RE.search(p.stdout)
    assert live.posts_after_moved == live.posts_after_first
    assert "already at the venue" in p.stdout
    assert live.balances_after_moved == live.balances_after_first
    counts: dict[str, int] = {}
    for o in live.server_orders:
        counts[o["client_order_id"]] = counts.get(o["client_order_id"], 0) + 1
    assert set(counts.values()) == {1}


def test_a_venue_fill_is_booked_once_in_the_ledger_across_runs(live):
    """The re-run that found its legs already at the venue must not book their fills again: the
    ledger's positions, fills.csv and P&L would count the same Coinbase trade twice."""
    rows = live.env.query("SELECT trade_id, COUNT(*), GROUP_CONCAT(run_id) FROM fills WHERE trade_id IS NOT NULL "
                          "GROUP BY trade_id HAVING COUNT(*) > 1")
    assert rows == [], f"Coinbase trades booked more than once: {rows}"
    assert ledger_problems(live.env) == []


# ------------------------------------------------------------------------------------------ live: close


@dataclass
class CloseFlow:
    env: CliEnv
    proc: subprocess.CompletedProcess
    held_before: Decimal
    left: Decimal
    sent: list


@pytest.fixture(scope="module")
def closed(tmp_path_factory) -> CloseFlow:
    srv = server()
    try:
        # a position bought by quote size: fees inside quote_size leave a 16-decimal BTC balance
        r = srv.rest_client().market_order_buy("setup-quote-buy", "BTC-USD", quote_size="1234.56")
        assert r["success"] is True
        held = sum(srv.balance("BTC"))
        env = CliEnv(tmp_path_factory.mktemp("cb-close"), srv)
        proc = env.run("close", "--symbol", "BTC-USD", "--broker", "coinbase", "--live", "--yes")
        sent = [r.body for r in order_posts(srv)][1:]
        yield CloseFlow(env, proc, held, sum(srv.balance("BTC")), sent)
    finally:
        srv.stop()


def test_close_of_a_quote_sized_position_leaves_no_sellable_dust(closed):
    assert closed.proc.returncode == 0, closed.proc.stdout + closed.proc.stderr
    assert closed.held_before != floor_inc(closed.held_before)            # premise: not a multiple of 1e-8
    (body,) = closed.sent
    assert body["side"] == "SELL" and body["product_id"] == "BTC-USD"
    assert D(body["order_configuration"]["market_market_ioc"]["base_size"]) == floor_inc(closed.held_before)
    # BTC-USD has base_min_size == base_increment (1e-8): the bound is the base increment. What is
    # left is below it, so no order could ever sell it.
    assert D(0) <= closed.left < INC
    assert "close BTC/USD: filled" in closed.proc.stdout


def test_close_leaves_a_consistent_ledger(closed):
    rows = closed.env.query("SELECT side, qty, status, filled_qty FROM orders")
    assert len(rows) == 1 and rows[0][0] == "sell" and rows[0][2] == "filled"
    assert rows[0][3] == pytest.approx(float(floor_inc(closed.held_before)), abs=1e-12)
    assert ledger_problems(closed.env) == []


def test_close_live_says_the_live_gate_is_skipped_off_the_production_endpoint(closed):
    out = closed.proc.stdout + closed.proc.stderr
    assert NOTE_RE.search(out), f"no live-gate NOTE in the output of `close --live`:\n{out}"


# ------------------------------------------------------------------------------------------ live: errors reach the user


def test_a_rejected_order_reaches_the_output_and_the_rest_of_the_batch_goes_on(tmp_path):
    srv = server()
    try:
        for pid, px in (("AVAX-USD", "35.5"), ("LINK-USD", "14.25")):
            srv.set_product(pid)
            srv.set_price(pid, px)
        # the venue charges 12%: the fifth buy no longer fits in the cash left (HTTP 200, success false).
        # The fee tier cannot be read (transaction_summary answers 401 three times), so buys are sized with
        # the configured schedule (0.6%), not the venue's 12% (which would have left room for it)
        srv.configure(fee_rate=0.12)
        srv.inject("401_throttle", path="/transaction_summary", count=3)
        env = CliEnv(tmp_path, srv)
        syms = ("BTC/USD", "ETH/USD", "SOL/USD", "AVAX/USD", "LINK/USD")
        write_signals(tmp_path / "s.csv", [(s, 1, 0.18, 0.9) for s in syms])
        p = env.run("execute", "--signals", "s.csv", "--broker", "coinbase", "--live", "--yes", "--json")
        out = json.loads(p.stdout)
        rejected = [o for o in out["orders"] if o["status"] == "rejected"]
        filled = [o for o in out["orders"] if o["status"] == "filled"]
        assert len(rejected) == 1 and len(filled) == 4, out["orders"]
        assert "INSUFFICIENT_FUND" in rejected[0]["message"]
        assert srv.count_orders(client_order_id=rejected[0]["client_order_id"]) == 0
        assert all(srv.count_orders(client_order_id=o["client_order_id"]) == 1 for o in filled)
        assert len(order_posts(srv)) == 5                                   # the rejection was not retried
        status, message = env.query("SELECT status, message FROM orders WHERE client_order_id=?",
                                    rejected[0]["client_order_id"])[0]
        assert status == "rejected" and "INSUFFICIENT_FUND" in message
        assert ledger_problems(env) == []
    finally:
        srv.stop()


def test_a_refused_key_stops_with_a_clear_message_and_no_traceback(tmp_path):
    srv = server()
    try:
        env = CliEnv(tmp_path, srv)
        certs.write_key_file(str(tmp_path / "cdp_key.json"), certs.generate_cdp_key())    # not the server's key
        p = env.run("status", "--broker", "coinbase", "--live")
        assert p.returncode == 1
        assert "401" in p.stderr and "key" in p.stderr.lower()
        assert "PRIVATE KEY" not in p.stdout + p.stderr
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ shadow (paper)


@dataclass
class ShadowFlow:
    env: CliEnv
    first: subprocess.CompletedProcess
    status_text: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    status2: dict
    order_posts: int


@pytest.fixture(scope="module")
def shadow(tmp_path_factory) -> ShadowFlow:
    srv = server()
    try:
        env = CliEnv(tmp_path_factory.mktemp("cb-shadow"), srv)
        write_signals(env.root / "s1.csv", [("BTC/USD", 1, 0.15, 0.9), ("ETH/USD", 1, 0.10, 0.8)], now_utc(-60))
        write_signals(env.root / "s2.csv", [("BTC/USD", 1, 0.10, 0.9), ("ETH/USD", 1, 0.10, 0.8)], now_utc())
        first = env.run("execute", "--signals", "s1.csv", "--broker", "coinbase", "--paper")
        st_text = env.run("status", "--broker", "coinbase", "--paper")
        second = env.run("execute", "--signals", "s2.csv", "--broker", "coinbase", "--paper", "--json")
        st2 = env.run("status", "--broker", "coinbase", "--paper", "--json")
        yield ShadowFlow(env, first, st_text, second, json.loads(st2.stdout),
                         len(order_posts(srv)))
    finally:
        srv.stop()


def test_shadow_execute_says_shadow_and_no_order_reaches_coinbase(shadow):
    p = shadow.first
    assert p.returncode == 0, p.stderr
    assert "SHADOW" in p.stdout and "no order reaches Coinbase" in p.stdout
    assert shadow.order_posts == 0
    assert not [r for r in shadow.env.srv.requests if r.method == "POST"]


def test_shadow_fills_at_coinbase_prices_plus_slippage_and_the_taker_fee(shadow):
    rows = shadow.env.query("SELECT f.symbol, f.side, f.qty, f.price, f.fee FROM fills f JOIN runs r ON "
                            "r.run_id=f.run_id WHERE r.broker='coinbase-shadow' ORDER BY r.created_at, f.symbol")
    first = {r[0]: r for r in rows[:2]}
    assert set(first) == {"BTC/USD", "ETH/USD"}
    slip = D("5") / D(10_000)                     # the default strategy's simulation.slippage.bps
    fee = taker_rate()
    assert fee == D("0.012")
    for sym, px, qty in (("BTC/USD", D(50_000), D("0.3")), ("ETH/USD", D(3_000), floor_inc(D(10_000) / D(3_000)))):
        _, side, q, price, f = first[sym]
        assert side == "buy"
        assert q == pytest.approx(float(qty), abs=1e-12)
        assert price == pytest.approx(float(px * (1 + slip)), rel=1e-12)
        assert f == pytest.approx(float(qty * px * (1 + slip) * fee), rel=1e-9)


# after the first shadow run: 0.3 BTC and 3.33333333 ETH bought at Coinbase's price + 5 bps, 1.2% fee
SHADOW_CASH1 = 100_000 - (0.3 * 50_025 + 3.33333333 * 3_001.5) * 1.012
SHADOW_EQUITY1 = SHADOW_CASH1 + 0.3 * 50_000 + 3.33333333 * 3_000


def test_shadow_status_shows_the_positions_carried_in_the_ledger(shadow):
    out = shadow.status_text.stdout
    assert shadow.status_text.returncode == 0, shadow.status_text.stderr
    assert "PORTFOLIO SUMMARY  (coinbase-shadow, paper)" in out
    assert re.search(r"BTC/USD \| Qty:\s+0\.3000 \| Value: \$\s+15,000\.00", out), out
    assert re.search(r"ETH/USD \| Qty:\s+3\.3333 \| Value: \$\s+10,000\.00", out), out
    assert re.search(r"^Positions:\s+2$", out, re.M)
    assert money(out, "Cash") == pytest.approx(SHADOW_CASH1, abs=0.006)
    assert money(out, "Account Equity") == pytest.approx(SHADOW_EQUITY1, abs=0.006)


def test_a_second_shadow_run_continues_from_the_carried_positions(shadow):
    p = shadow.second
    assert p.returncode == 0, p.stderr
    orders = json.loads(p.stdout)["orders"]
    want_sell = 0.3 - 0.10 * SHADOW_EQUITY1 / 50_000          # from 15% to 10% of the carried equity
    assert [(o["symbol"], o["side"]) for o in orders] == [("BTC/USD", "sell")], orders   # ETH is at its target
    assert orders[0]["qty"] == pytest.approx(want_sell, abs=1e-8)
    held = {q["symbol"]: q["qty"] for q in shadow.status2["positions"]}
    assert held["BTC/USD"] == pytest.approx(0.3 - orders[0]["qty"], abs=1e-12)
    assert held["ETH/USD"] == pytest.approx(3.33333333, abs=1e-12)
    assert shadow.order_posts == 0
    assert ledger_problems(shadow.env) == []


def test_shadow_day_start_equity_is_the_accounts_equity_at_the_start_of_the_day(shadow):
    """The shadow account started today with 100,000 in cash; its day-start equity is 100,000 (not
    the cash left after today's buys)."""
    out = shadow.status_text.stdout
    if "Day Start Equity" in out:
        assert money(out, "Day Start Equity") == pytest.approx(100_000.00, abs=0.01), out


def test_shadow_daily_loss_limit_allows_only_risk_reducing_orders(tmp_path):
    """After an 18% loss today (max_daily_loss_pct 5%), a new batch may not add to positions."""
    srv = server()
    try:
        env = CliEnv(tmp_path, srv)
        rows = [("BTC/USD", 1, 0.2, 0.9), ("ETH/USD", 1, 0.2, 0.9), ("SOL/USD", 1, 0.2, 0.9)]
        write_signals(tmp_path / "s1.csv", rows, now_utc(-60))
        write_signals(tmp_path / "s2.csv", rows, now_utc())
        p1 = env.run("execute", "--signals", "s1.csv", "--broker", "coinbase", "--paper", "--json")
        assert p1.returncode == 0, p1.stderr
        assert len(json.loads(p1.stdout)["orders"]) == 3
        for pid in ("BTC-USD", "ETH-USD", "SOL-USD"):
            srv.set_price(pid, srv.price(pid) * D("0.7"))
        p2 = env.run("execute", "--signals", "s2.csv", "--broker", "coinbase", "--paper", "--json")
        out = json.loads(p2.stdout)
        buys = [o for o in out["orders"] if o["side"] == "buy"]
        assert buys == [], f"buys after a {0.6 * 0.3:.0%} daily loss: {buys}; decisions {out['decisions']}"
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ shadow vs backtest


def test_backtest_and_shadow_of_the_same_batch_at_the_same_prices_give_the_same_orders(tmp_path):
    prices = {"BTC/USD": "43210.55", "ETH/USD": "2345.67"}
    srv = server()
    try:
        for sym, px in prices.items():
            srv.set_price(sym.replace("/", "-"), px)
        env = CliEnv(tmp_path, srv)
        t = now_utc()
        write_signals(tmp_path / "s.csv", [("BTC/USD", 1, 0.15, 0.9), ("ETH/USD", 1, 0.30, 0.8)], t)
        shadow = env.run("execute", "--signals", "s.csv", "--broker", "coinbase", "--paper", "--json")
        assert shadow.returncode == 0, shadow.stderr
        shadow_orders = json.loads(shadow.stdout)["orders"]
        assert len(order_posts(srv)) == 0
    finally:
        srv.stop()

    # bars whose last close per product is the server's price, stamped at the batch time
    with open(tmp_path / "bars.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        for when in (t - dt.timedelta(days=1), t):
            for sym, px in prices.items():
                w.writerow([when.strftime("%Y-%m-%dT%H:%M:%SZ"), sym, px, px, px, px, 1e6])
    strat = tmp_path / "cb_shadow_twin.yaml"
    strat.write_text("name: cb_shadow_twin\n"
                     "simulation: {venue: coinbase, fill: close, slippage: {model: fixed_bps, bps: 5}, "
                     "cash: 100000}\n")
    bt = env.run("backtest", "--strategy", str(strat), "--signals", "s.csv", "--bars", "bars.csv", "--json")
    assert bt.returncode == 0, bt.stderr
    with open(Path(json.loads(bt.stdout)["artifacts"]) / "orders.csv") as f:
        bt_orders = list(csv.DictReader(f))

    def key(rows, qty, price):
        return sorted((r["symbol"], r["side"], float(r[qty]), float(r[price] or "nan")) for r in rows)

    a, b = key(bt_orders, "qty", "avg_price"), key(shadow_orders, "qty", "avg_price")
    assert [(s, sd) for s, sd, _, _ in a] == [(s, sd) for s, sd, _, _ in b] == [("BTC/USD", "buy"), ("ETH/USD", "buy")]
    for (s, _, qa, pa), (_, _, qb, pb) in zip(a, b):
        assert abs(qa - qb) <= 1e-8, f"{s}: backtest {qa} vs shadow {qb}"
        assert pa == pytest.approx(pb, rel=1e-12), f"{s}: fill price backtest {pa} vs shadow {pb}"


def test_a_view_only_key_is_one_clear_error_before_any_order_and_status_still_works(tmp_path):
    """A Coinbase key is created view-only unless Trade is ticked, and its orders are answered 401,
    which would read as refused credentials after a retry or three. The key's permissions (Advanced
    Trade "Get API Key Permissions") block the account first: execute exits 1 naming the cause and
    the fix, nothing is sent; status, a read, still answers."""
    srv = server(key_can_trade=False)
    try:
        for pid, px in PRICES.items():
            srv.set_price(pid, px)
        env = CliEnv(tmp_path / "home", srv)
        write_signals(env.root / "s.csv", LIVE_SIGNALS)
        p = env.run("execute", "--signals", "s.csv", "--broker", "coinbase", "--live", "--yes")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "view-only" in p.stderr and "Trade permission" in p.stderr and "nothing was sent" in p.stderr
        assert order_posts(srv) == [] and srv.orders() == []
        look = env.run("status", "--broker", "coinbase", "--live")
        assert look.returncode == 0, look.stderr
        assert money(look.stdout, "Account Equity") == pytest.approx(100_000.00)
        srv.configure(key_can_trade=True)       # the same home with a trading key: the cycle runs
        p = env.run("execute", "--signals", "s.csv", "--broker", "coinbase", "--live", "--yes")
        assert p.returncode == 0, p.stdout + p.stderr
        assert len(order_posts(srv)) > 0
    finally:
        srv.stop()
