"""Protective exits at Alpaca (SPEC §20) through the one engine step, on the local Alpaca server:
an OCO on an equity position (the stop leg known by its pair's client order id), a stop-limit
for crypto, nothing sent twice, replaced when the levels move, cancelled when the target drops
the position, and the stop's fill booked under leg ``stop``."""

from __future__ import annotations

import numpy as np

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints
from brokers.live import LiveOptions
from brokers.retry import RetryPolicy
from framework.accounts import Account, Environment
from framework.config import RebalanceSettings, RiskLimits
from framework.engine import Pipeline, run_cycle
from framework.exits import exit_ids
from framework.journal import WriteAheadJournal
from framework.ledger import Ledger
from framework.ledger.check import check_ledger
from framework.rebalance import Rebalancer
from framework.risk import RiskManager
from framework.types import ExitLevels, TargetPortfolio
from tests.servers.alpaca_server import AlpacaServer

LIMITS = RiskLimits(max_position_size_pct=1.0, max_exposure_pct=1.0, max_positions=10, min_confidence=0.0,
                    max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=2.0)
PAPER = Account("alpaca", Environment.PAPER, "test")
T0 = np.datetime64("2026-11-21T15:00:00", "ns")


def broker_for(srv):
    return AlpacaBroker(AlpacaEndpoints("k", "s", True, srv.url, srv.url, timeout=5.0),
                        retry=RetryPolicy(attempts=3, base=0.01, cap=0.05),
                        options=LiveOptions(order_timeout_s=5.0, poll_interval_s=0.01))


def target(t, weight, stop, take, k=0):
    w = np.array([weight], float)
    lv = ExitLevels(np.array([stop], float), np.array([take], float), np.zeros(1, bool), np.zeros(1, bool))
    return TargetPortfolio(t + np.timedelta64(k, "m"), f"ex.paper@2026112115{k:02d}00Z", w, np.ones(1), False, lv)


class Run:
    def __init__(self, srv, tmp_path, symbol="AAPL"):
        self.srv, self.broker = srv, broker_for(srv)
        self.u = self.broker.instruments([symbol])
        self.ledger = Ledger(tmp_path / "l.db")
        self.n = 0

    def cycle(self, tgt):
        self.n += 1
        rid = f"run{self.n}"
        self.ledger.start_run(rid, "ex", "h", "paper", "alpaca", 100_000.0, self.u.symbols, {})
        p = Pipeline(self.broker, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)),
                     WriteAheadJournal(self.ledger, rid, PAPER), self.u)
        return run_cycle(p, tgt)

    def orders(self):
        return self.ledger.db.execute("SELECT client_order_id, leg, status, filled_qty FROM orders "
                                      "ORDER BY rowid").fetchall()


def test_an_equity_position_gets_one_oco_and_a_rerun_sends_nothing(tmp_path):
    with AlpacaServer(key="k", secret="s", rate_limit=None, data_rate_limit=None) as srv:
        srv.set_price("AAPL", 100.0)
        r = Run(srv, tmp_path)
        r.cycle(target(T0, 0.2, 95.0, 110.0))
        sent = srv.orders_submitted()
        assert [o["order_class"] for o in sent] == ["simple", "oco"]
        oco = sent[1]
        stop_id, take_id = exit_ids("ex.paper@20261121150000Z", "AAPL")
        assert oco["client_order_id"] == take_id and float(oco["limit_price"]) == 110.0 and oco["qty"] == "200"
        legs = oco["legs"]
        assert len(legs) == 1 and legs[0]["type"] == "stop" and legs[0]["status"] == "held"
        assert float(legs[0]["stop_price"]) == 95.0 and legs[0]["client_order_id"] != stop_id   # Alpaca-API#115
        assert [(c, leg, st) for c, leg, st, _ in r.orders()][1:] == [(stop_id, "stop", "new"), (take_id, "take", "new")]
        assert {o.client_order_id for o in r.broker.open_orders()} == {stop_id, take_id}
        assert r.broker.foreign_orders() == []          # the leg is Parity's, not the user's

        r.cycle(target(T0, 0.2, 95.0, 110.0))          # the same batch again: found, nothing sent
        assert len(srv.orders_submitted()) == 2
        assert check_ledger(r.ledger) == []


def test_the_stop_fills_at_the_venue_and_is_booked_as_leg_stop(tmp_path):
    with AlpacaServer(key="k", secret="s", rate_limit=None, data_rate_limit=None, fill_mode="manual") as srv:
        srv.set_price("AAPL", 100.0)
        srv.configure(fill_mode="immediate")
        r = Run(srv, tmp_path)
        r.cycle(target(T0, 0.2, 95.0, 110.0))
        srv.configure(fill_mode="manual")
        srv.set_price("AAPL", 94.5)
        srv.process_orders()                               # the stop triggers; the take-profit is cancelled
        assert srv.position_qty("AAPL") == 0.0
        r.cycle(target(T0, 0.0, np.nan, np.nan, k=1))     # the next cycle books what happened
        rows = {leg: (st, fq) for _, leg, st, fq in r.orders()}
        assert rows["stop"] == ("filled", 200.0) and rows["take"][0] == "canceled"
        fills = r.ledger.db.execute("SELECT o.leg, f.price, f.qty FROM fills f JOIN orders o "
                                    "ON o.client_order_id=f.client_order_id ORDER BY f.rowid").fetchall()
        assert fills == [("add", 100.0, 200.0), ("stop", 94.5, 200.0)]
        assert check_ledger(r.ledger) == []


def test_moved_levels_replace_the_oco_and_a_dropped_target_cancels_it(tmp_path):
    with AlpacaServer(key="k", secret="s", rate_limit=None, data_rate_limit=None) as srv:
        srv.set_price("AAPL", 100.0)
        r = Run(srv, tmp_path)
        r.cycle(target(T0, 0.2, 95.0, 110.0))
        r.cycle(target(T0, 0.2, 97.0, 110.0, k=1))       # the stop moves up: a new OCO, the old one cancelled
        sent = srv.orders_submitted()
        assert [o["order_class"] for o in sent] == ["simple", "oco", "oco"]
        assert srv.get_order(sent[1]["id"])["status"] == "canceled"
        new_legs = sent[2]["legs"]
        assert float(new_legs[0]["stop_price"]) == 97.0 and new_legs[0]["status"] == "held"
        r.cycle(target(T0, 0.2, 97.0, 110.0, k=2))       # unchanged: kept
        assert len(srv.orders_submitted()) == 3
        r.cycle(target(T0, 0.0, np.nan, np.nan, k=3))    # dropped: exits cancelled, then the position sold
        assert srv.get_order(sent[2]["id"])["status"] == "canceled"
        assert srv.position_qty("AAPL") == 0.0
        assert r.broker.open_orders() == []
        assert check_ledger(r.ledger) == []


def test_crypto_gets_a_stop_limit_and_the_take_profit_is_reported_not_placed(tmp_path):
    with AlpacaServer(key="k", secret="s", rate_limit=None, data_rate_limit=None) as srv:
        srv.set_price("BTC/USD", 50_000.0)
        r = Run(srv, tmp_path, "BTC/USD")
        r.cycle(target(T0, 0.2, 47_500.0, 55_000.0))
        sent = srv.orders_submitted()
        assert [o["type"] for o in sent] == ["market", "stop_limit"]
        assert float(sent[1]["stop_price"]) == 47_500.0 and float(sent[1]["limit_price"]) == 47_025.0
        assert sent[1]["time_in_force"] == "gtc" and sent[1]["order_class"] == ""
        take = r.ledger.db.execute("SELECT status, message FROM orders WHERE leg='take'").fetchone()
        assert take[0] == "canceled" and "no OCO" in take[1]
        # what a dry run is told beforehand is what happened (Broker.unplaced_exits)
        said = r.broker.unplaced_exits(r.u, np.array([True]), np.array([True]))
        assert said == {("BTC/USD", "take"): take[1]}
        assert r.broker.unplaced_exits(r.u, np.array([True]), np.array([False])) == {}
        assert r.broker.unplaced_exits(r.u, np.array([False]), np.array([True])) == {}    # a take alone is placed
        equity = r.broker.instruments(["AAPL"])
        assert r.broker.unplaced_exits(equity, np.array([True]), np.array([True])) == {}   # one OCO order
