"""Protective exits at Coinbase (SPEC §20): the engine's stop and take-profit become one
``trigger_bracket_gtc`` order on the local Coinbase server (its client order id is the stop's; the
take-profit is known by the pair's id), nothing is sent twice, the half that fires is booked under
its own leg, moved levels replace the bracket and a dropped target cancels it."""

from __future__ import annotations

import numpy as np
import pytest

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
from tests.brokers.coinbase.test_adapter import make_broker
from tests.servers.coinbase_server import CoinbaseServer

LIMITS = RiskLimits(max_position_size_pct=1.0, max_exposure_pct=1.0, max_positions=10, min_confidence=0.0,
                    max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=1.0)
LIVE = Account("coinbase", Environment.LIVE, "test")
T0 = np.datetime64("2026-11-21T15:00:00", "ns")


def target(weight, stop, take, k=0):
    lv = ExitLevels(np.array([stop], float), np.array([take], float), np.zeros(1, bool), np.zeros(1, bool))
    return TargetPortfolio(T0 + np.timedelta64(k, "m"), f"ex.live@2026112115{k:02d}00Z", np.array([weight]),
                           np.ones(1), False, lv)


@pytest.fixture
def srv():
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None, fee_rate=0.0, maker_fee_rate=0.0,
                        fill_slippage_bps=0.0) as s:
        s.set_price("BTC-USD", "50000")
        yield s


class Run:
    def __init__(self, srv, tmp_path):
        self.srv, self.broker = srv, make_broker(srv)
        self.u = self.broker.instruments(["BTC/USD"])
        self.ledger = Ledger(tmp_path / "l.db")
        self.n = 0

    def cycle(self, tgt):
        self.n += 1
        rid = f"run{self.n}"
        self.ledger.start_run(rid, "ex", "h", "live", "coinbase", 100_000.0, self.u.symbols, {})
        p = Pipeline(self.broker, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0)),
                     WriteAheadJournal(self.ledger, rid, LIVE), self.u)
        return run_cycle(p, tgt)

    def brackets(self):
        return [o for o in self.srv.orders() if "trigger_bracket_gtc" in o["order_configuration"]]


def test_one_trigger_bracket_per_position_and_a_rerun_sends_nothing(srv, tmp_path):
    r = Run(srv, tmp_path)
    r.cycle(target(0.2, 47_500.0, 55_000.0))
    (b,) = r.brackets()
    stop_id, take_id = exit_ids("ex.live@20261121150000Z", "BTC/USD")
    cfg = b["order_configuration"]["trigger_bracket_gtc"]
    assert b["client_order_id"] == stop_id and b["side"] == "SELL" and b["order_type"] == "BRACKET"
    assert (cfg["limit_price"], cfg["stop_trigger_price"]) == ("55000.00", "47500.00")
    assert b["status"] == "OPEN" and b["trigger_status"] == "STOP_PENDING"
    assert {o.client_order_id for o in r.broker.open_orders()} == {stop_id, take_id}
    n = len(srv.orders())
    r.cycle(target(0.2, 47_500.0, 55_000.0))                   # the same batch again
    assert len(srv.orders()) == n
    assert check_ledger(r.ledger) == []


@pytest.mark.parametrize("price,fired,other", [("47000", "stop", "take"), ("56000", "take", "stop")])
def test_the_half_that_fires_is_booked_under_its_own_leg(srv, tmp_path, price, fired, other):
    r = Run(srv, tmp_path)
    r.cycle(target(0.2, 47_500.0, 55_000.0))
    srv.set_price("BTC-USD", price)
    srv.tick()
    (b,) = r.brackets()
    assert b["status"] == "FILLED"
    r.cycle(target(0.0, np.nan, np.nan, k=1))                 # the next cycle books what happened
    rows = dict(r.ledger.db.execute("SELECT leg, status FROM orders WHERE leg IN ('stop','take')").fetchall())
    assert rows == {fired: "filled", other: "canceled"}
    legs = r.ledger.db.execute("SELECT o.leg, f.price FROM fills f JOIN orders o "
                               "ON o.client_order_id=f.client_order_id ORDER BY f.rowid").fetchall()
    assert legs[-1] == (fired, 47_000.0 if fired == "stop" else 55_000.0)
    assert check_ledger(r.ledger) == []


def test_moved_levels_replace_the_bracket_and_a_dropped_target_cancels_it(srv, tmp_path):
    r = Run(srv, tmp_path)
    r.cycle(target(0.2, 47_500.0, 55_000.0))
    r.cycle(target(0.2, 48_000.0, 55_000.0, k=1))
    first, second = r.brackets()
    assert first["status"] == "CANCELLED" and second["status"] == "OPEN"
    assert second["order_configuration"]["trigger_bracket_gtc"]["stop_trigger_price"] == "48000.00"
    r.cycle(target(0.0, np.nan, np.nan, k=2))
    assert r.brackets()[1]["status"] == "CANCELLED" and r.broker.open_orders() == []
    assert check_ledger(r.ledger) == []
