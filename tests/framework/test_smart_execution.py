"""execution: smart — marketable limits, re-priced, then market — through the one run_cycle.

Each step is its own journaled leg (add, add-r1, ..., add-m) with deterministic client order ids,
so nothing is sent twice and every step's fills land in the ledger.
"""

from __future__ import annotations

import numpy as np

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints
from brokers.live import LiveOptions
from brokers.retry import RetryPolicy
from brokers.simulated import SimulatedBroker
from framework.accounts import Account, Environment
from framework.clock import SimClock
from framework.config import RebalanceSettings, RiskLimits
from framework.costs import FixedBps
from framework.data import BarArrays
from framework.engine import Pipeline, marketable_limit, run_cycle
from framework.journal import BufferedJournal, WriteAheadJournal
from framework.ledger import Ledger
from framework.ledger.check import check_ledger
from framework.rebalance import Rebalancer
from framework.risk import RiskManager
from framework.types import AssetClass, Instrument, TargetPortfolio, Universe
from tests.servers.alpaca_server import AlpacaServer

LIMITS = RiskLimits(max_position_size_pct=1.0, max_exposure_pct=1.0, max_positions=10, min_confidence=0.0,
                    max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=2.0)


def _universe(symbols):
    return Universe.from_instruments([Instrument(s, AssetClass.of(s), 1e-9, 0.0, 1.0, 0.01, True, False)
                                      for s in symbols])


def _target(universe, t, weights, batch="smart@20240102T000000Z"):
    w = np.array(weights, float)
    return TargetPortfolio(np.datetime64(t, "ns"), batch, w, np.ones_like(w))


def _sim(next_open: float):
    times = np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="datetime64[ns]")
    close = np.array([[100.0], [100.0], [next_open]])
    opens = np.array([[100.0], [100.0], [next_open]])
    bars = BarArrays(times, ("AAPL",), opens, np.maximum(opens, close), np.minimum(opens, close), close,
                     np.full_like(close, 1e9))
    u = _universe(["AAPL"])
    clock = SimClock(times[0])
    sim = SimulatedBroker(bars, u, clock, cash=100_000.0, fill="next_open", slippage=FixedBps(0.0))
    return sim, u, times


def test_marketable_limits_sit_through_the_price_on_whole_cents():
    px = np.array([100.001, 100.0, 0.5])
    side = np.array([1, -1, 1], np.int8)
    lim = marketable_limit(px, side, 10.0, np.array([0.01, 0.01, 0.0001]))
    assert lim[0] == 100.11 and lim[1] == 99.9       # buys above, sells below, cents away from the price
    assert lim[2] == 0.5005                          # under $1: four decimals, Alpaca's sub-penny rule


def test_a_limit_the_open_gaps_through_is_re_priced_then_sent_at_market_in_the_simulator():
    sim, u, times = _sim(next_open=101.0)            # the open gaps 1% above the 10 bps limit
    journal = BufferedJournal("r")
    p = Pipeline(sim, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)), journal, u,
                 "cancel", "smart", 2, 10.0)
    sim.advance_to(times[1])
    res = run_cycle(p, _target(u, times[1], [0.5]))
    legs = [r.batch.leg for r in res.reports if len(r.batch)]
    assert legs == ["add", "add-r1", "add-r2", "add-m"]           # two re-priced limits, then market
    filled = sum(float(r.filled_qty.sum()) for r in res.reports)
    assert abs(filled - 500.0) < 1e-6                              # 50% of 100k at the sizing close 100
    assert abs(sim.book.pos[0] - 500.0) < 1e-6
    ids = [c for r in res.reports for c in r.batch.client_order_ids()]
    assert len(ids) == len(set(ids))                               # every step its own client order id


def test_a_limit_inside_the_bar_fills_at_the_first_step_in_the_simulator():
    sim, u, times = _sim(next_open=100.05)           # within the 10 bps limit
    p = Pipeline(sim, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)), BufferedJournal("r"),
                 u, "cancel", "smart", 2, 10.0)
    sim.advance_to(times[1])
    res = run_cycle(p, _target(u, times[1], [0.5]))
    assert [r.batch.leg for r in res.reports if len(r.batch)] == ["add"]
    assert abs(sim.book.pos[0] - 500.0) < 1e-6


PAPER = Account("alpaca", Environment.PAPER, "test")


def _alpaca(srv, order_timeout_s: float = 0.15):
    return AlpacaBroker(AlpacaEndpoints("k", "s", True, srv.url, srv.url, timeout=5.0),
                        retry=RetryPolicy(attempts=3, base=0.01, cap=0.05),
                        options=LiveOptions(order_timeout_s=order_timeout_s, poll_interval_s=0.01))


def test_smart_steps_at_alpaca_are_journaled_orders_never_sent_twice(tmp_path):
    with AlpacaServer(key="k", secret="s", rate_limit=None, data_rate_limit=None, fill_after_polls=10_000) as srv:
        srv.set_price("AAPL", 100.0)
        broker = _alpaca(srv)
        u = broker.instruments(["AAPL"])
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("run1", "smart", "h", "paper", "alpaca", 100_000.0, u.symbols, {})
        p = Pipeline(broker, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)),
                     WriteAheadJournal(ledger, "run1", PAPER), u, "cancel", "smart", 2, 10.0)
        t = np.datetime64("2026-11-21T15:00:00", "ns")
        res = run_cycle(p, _target(u, t, [0.2], "smart@20261121T150000Z"))
        sent = srv.orders_submitted()
        cids = [o["client_order_id"] for o in sent]
        assert len(cids) == 4 and len(set(cids)) == 4            # add, add-r1, add-r2 (limits) and add-m
        assert [o["type"] for o in sent] == ["limit", "limit", "limit", "market"]
        assert all(float(o["limit_price"]) == 100.1 for o in sent[:3])
        rows = ledger.db.execute("SELECT leg, status FROM orders WHERE run_id='run1' ORDER BY rowid").fetchall()
        assert [r[0] for r in rows] == ["add", "add-r1", "add-r2", "add-m"]
        assert all(r[1] == "canceled" for r in rows)             # nothing filled: each step was cancelled
        # the same batch again sends nothing new
        ledger.start_run("run2", "smart", "h", "paper", "alpaca", 100_000.0, u.symbols, {})
        p2 = Pipeline(broker, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)),
                      WriteAheadJournal(ledger, "run2", PAPER), u, "cancel", "smart", 2, 10.0)
        run_cycle(p2, _target(u, t, [0.2], "smart@20261121T150000Z"))
        assert len(srv.orders_submitted()) == 4
        assert check_ledger(ledger) == []
        assert res.reports


def test_a_marketable_limit_that_fills_ends_the_ladder_at_alpaca(tmp_path):
    with AlpacaServer(key="k", secret="s", rate_limit=None, data_rate_limit=None) as srv:
        srv.set_price("AAPL", 100.0)
        broker = _alpaca(srv, order_timeout_s=5.0)
        u = broker.instruments(["AAPL"])
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("run1", "smart", "h", "paper", "alpaca", 100_000.0, u.symbols, {})
        p = Pipeline(broker, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)),
                     WriteAheadJournal(ledger, "run1", PAPER), u, "cancel", "smart", 2, 10.0)
        run_cycle(p, _target(u, np.datetime64("2026-11-21T15:00:00", "ns"), [0.2], "smart@20261121T150001Z"))
        sent = srv.orders_submitted()
        assert len(sent) == 1 and sent[0]["type"] == "limit"
        assert abs(srv.position_qty("AAPL") - 200.0) < 1e-6
        assert check_ledger(ledger) == []


def test_each_broker_answer_is_committed_with_its_fills_as_it_arrives(tmp_path):
    with AlpacaServer(key="k", secret="s", rate_limit=None, data_rate_limit=None, partial_fill_fraction=0.5) as srv:
        srv.set_price("AAPL", 100.0)
        broker = _alpaca(srv, order_timeout_s=5.0)
        u = broker.instruments(["AAPL"])
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("run1", "wal", "h", "paper", "alpaca", 100_000.0, u.symbols, {})
        seen: list[tuple] = []

        class Watched(WriteAheadJournal):
            def update(self, report):   # what the ledger holds once each answer is booked
                super().update(report)
                seen.append(ledger.db.execute("SELECT status, filled_qty, (SELECT COUNT(*) FROM fills) "
                                              "FROM orders").fetchone())

        journal = Watched(ledger, "run1", PAPER)
        p = Pipeline(broker, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)), journal, u)
        run_cycle(p, _target(u, np.datetime64("2026-11-21T15:00:00", "ns"), [0.2], "wal@20261121T150000Z"))
        statuses = [s[0] for s in seen]
        assert statuses[0] == "new"                                  # the acknowledgement, before any fill
        assert "partially_filled" in statuses and statuses[-1] == "filled"
        partial = seen[statuses.index("partially_filled")]
        assert abs(partial[1] - 100.0) < 1e-6 and partial[2] == 1     # half filled, and that fill is booked
        assert ledger.db.execute("SELECT COUNT(*), SUM(qty) FROM fills").fetchone() == (2, 200.0)
        assert check_ledger(ledger) == []
