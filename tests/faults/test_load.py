"""A rebalance of 200 orders (100 sells, 100 buys) stays under each venue's rate limit with not a
single failed request.

Time is compressed so the test runs in seconds, the same for the venue and for the client:

* Alpaca, 200 requests/min: the server allows 200 per 6 s window (trading and data each) and
  the client's own limiter — the product's ``RateLimiter(200, 60 s)`` built by
  ``AlpacaBroker(requests_per_minute=200)`` — runs on a clock ten times faster, so it paces
  200 requests per 6 real seconds with the same burst (bucket of 200) it has in production.
  Why not ``requests_per_minute=2000``? The rate would match (33 req/s) but the bucket would
  hold 2000 tokens: a burst of 2000 in the first window, kept under the limit only by the
  venue's ``X-Ratelimit-Remaining`` headers, which is not what production runs.
  The venue's reset header is in real seconds; the test scales it by the same factor.
* Coinbase, 30 private requests/s: the server allows 30 per 0.25 s (sliding window) and the
  client's ``RateLimiter(30, 1 s)`` (``CoinbaseBroker(requests_per_second=30)``) runs four times
  faster.

Compressing time makes the client's job harder, not easier (its per-request latency is real).
The checks: no 429 (no answer >= 400 at all) among the server's answers, every order filled,
positions at the targets, ``check_ledger`` clean.
"""

from __future__ import annotations

import string
import time
from collections import Counter
from itertools import product

import numpy as np
import pytest

from brokers.live import LiveOptions
from framework.accounts import Account, Environment
from framework.ledger.check import check_ledger

pytestmark = pytest.mark.faults

N_SELL, N_BUY = 100, 100


def _names(n: int) -> list[str]:
    return ["L" + "".join(p) for p in product(string.ascii_uppercase, repeat=3)][:n]


def _compress(limiter, scale: float) -> None:
    """Run the product's limiter ``scale`` times faster (clock, sleeps and the venue's reset times)."""
    limiter.clock = lambda: time.monotonic() * scale
    limiter.sleep = lambda s: time.sleep(s / scale)
    limiter.last = limiter.clock()
    observe = limiter.observe
    limiter.observe = lambda remaining, reset_in: observe(remaining, None if reset_in is None else reset_in * scale)


def _pipeline(broker, ledger_path, symbols, weights, venue: str):
    from framework.config import RebalanceSettings, RiskLimits
    from framework.engine import Pipeline
    from framework.journal import WriteAheadJournal
    from framework.ledger import Ledger
    from framework.order_ids import batch_key
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.types import TargetPortfolio

    universe = broker.instruments(symbols)
    ledger = Ledger(ledger_path)
    run_id = f"load-{venue}"
    ledger.start_run(run_id, "load", "", "paper" if venue == "alpaca" else "live", broker.name, None,
                     universe.symbols, {})
    limits = RiskLimits(max_position_size_pct=0.05, max_exposure_pct=0.99, max_positions=1000, min_confidence=0.0,
                        max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=1.0)
    journal = WriteAheadJournal(ledger, run_id, Account(broker.name, Environment.PAPER, "load"))
    p = Pipeline(broker, RiskManager(limits), Rebalancer(RebalanceSettings(drift_threshold=0.0, order_timeout_s=60)),
                 journal, universe)
    now = np.datetime64(time.time_ns(), "ns")
    w = np.array([weights[s] for s in universe.symbols])
    target = TargetPortfolio(now, batch_key("load", now), w, np.ones(len(w)))
    return p, target, ledger


def _check(broker, ledger, res, statuses, targets: dict[str, float], held: dict[str, float], inc) -> None:
    bad = Counter(s for s in statuses if s is None or s >= 400)
    assert not bad, f"failed requests (status: count): {dict(bad)}"
    reps = res.reports
    n = sum(len(r.batch) for r in reps)
    assert n == N_SELL + N_BUY, f"{n} orders instead of {N_SELL + N_BUY}"
    labels = Counter(int(x) for r in reps for x in r.status)
    assert labels == Counter({3: n}), f"not every order filled: {labels}"
    for s, want in targets.items():
        assert abs(held.get(s, 0.0) - want) <= inc(s) + 1e-9 * max(1.0, want), (s, held.get(s), want)
    assert check_ledger(ledger) == []


def test_alpaca_200_orders_under_200_requests_per_minute(tmp_path):
    from brokers.alpaca.broker import AlpacaBroker
    from brokers.alpaca.client import AlpacaEndpoints
    from framework.engine import run_cycle
    from tests.servers.alpaca_server import AlpacaServer

    scale = 10.0
    names = _names(N_SELL + N_BUY)
    srv = AlpacaServer(cash=1_000_000, rate_limit=200, data_rate_limit=200, rate_limit_window=60.0 / scale).start()
    try:
        rng = np.random.default_rng(7)
        for s in names:
            srv.set_asset(s, asset_class="us_equity", fractionable=True, price=float(rng.uniform(20, 400)))
        held = {s: round(float(rng.uniform(50, 150)), 3) for s in names[:N_SELL]}
        for s, q in held.items():
            srv.set_position(s, q)
        weights = {s: 0.0 for s in names[:N_SELL]}
        weights.update({s: 0.004 for s in names[N_SELL:]})
        broker = AlpacaBroker(AlpacaEndpoints("test-key", "test-secret", True, srv.url, srv.url, 10.0),
                              requests_per_minute=200, options=LiveOptions(poll_interval_s=0.05))
        _compress(broker.limiter, scale)
        p, target, ledger = _pipeline(broker, tmp_path / "parity.db", names, weights, "alpaca")
        res = run_cycle(p, target)
        statuses = srv.get_statuses()
        final = {k: float(v["qty"]) for k, v in srv.positions().items()}
        targets = {s: float(q) for s, q in zip(p.universe.symbols, res.plan.plan.target_qty) if s in weights}
        _check(broker, ledger, res, statuses, targets, final, lambda s: 1e-9)
        # more than one window's worth of requests went through, and none was refused
        assert len(statuses) > 200, len(statuses)
        ledger.close()
    finally:
        srv.stop()


def test_coinbase_200_orders_under_30_requests_per_second(tmp_path):
    from brokers.coinbase.broker import CoinbaseBroker
    from brokers.coinbase.client import CoinbaseEndpoints
    from framework.engine import run_cycle
    from tests.servers.coinbase_server import CoinbaseServer

    scale = 4.0
    names = [f"{n}/USD" for n in _names(N_SELL + N_BUY)]
    rng = np.random.default_rng(11)
    products = {s.replace("/", "-"): {"base_increment": "0.0001", "base_min_size": "0.0001", "quote_min_size": "1",
                                      "base_max_size": "100000000"} for s in names}
    prices = {s.replace("/", "-"): round(float(rng.uniform(5, 500)), 2) for s in names}
    held = {s: round(float(rng.uniform(20, 60)), 4) for s in names[:N_SELL]}
    srv = CoinbaseServer(cash_usd=1_000_000, products=products, prices=prices, fee_rate=0.0, maker_fee_rate=0.0,
                         balances={s.split("/")[0]: q for s, q in held.items()}, account_currencies=["USD"],
                         private_rate_limit=30, rate_limit_window=1.0 / scale).start()
    try:
        key = srv.key()
        broker = CoinbaseBroker(CoinbaseEndpoints(key.name, key.private_pem, None, srv.base_url, srv.cert_path, 10.0),
                                requests_per_second=30, options=LiveOptions(poll_interval_s=0.05))
        _compress(broker.limiter, scale)
        weights = {s: 0.0 for s in names[:N_SELL]}
        weights.update({s: 0.004 for s in names[N_SELL:]})
        p, target, ledger = _pipeline(broker, tmp_path / "parity.db", names, weights, "coinbase")
        res = run_cycle(p, target)
        statuses = [r.status for r in srv.requests]
        final = {f"{c}/USD": a + h for c, (a, h) in srv.balances().items() if c != "USD"}
        targets = {s: float(q) for s, q in zip(p.universe.symbols, res.plan.plan.target_qty)}
        _check(broker, ledger, res, statuses, targets, final, lambda s: 1e-4)
        fills = {f["trade_id"] for f in srv.fills()}
        booked = {r[0] for r in ledger.db.execute("SELECT trade_id FROM fills")}
        assert fills == booked
        ledger.close()
    finally:
        srv.stop()
