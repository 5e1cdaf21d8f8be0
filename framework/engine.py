"""run_cycle(): the single path from a signal batch to orders, for backtest, paper and live.

signals -> target portfolio -> risk -> rebalancer -> broker -> journal. The drivers differ only
in the clock and the Broker they hand in; nothing here knows which one it runs under.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.broker import Broker
from framework.rebalance import RebalancePlan, Rebalancer
from framework.risk import RiskManager, RiskResult
from framework.types import AccountSnapshot, ExecutionReport, RiskDecision, TargetPortfolio, Universe


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The parts of one run, wired by the composition root (the CLI or a test)."""

    broker: Broker
    risk: RiskManager
    rebalancer: Rebalancer
    journal: object            # BufferedJournal | WriteAheadJournal
    universe: Universe
    unfilled: str = "cancel"   # what happens to orders still working when the next batch arrives


@dataclass(frozen=True, slots=True, eq=False)
class CyclePlan:
    target: TargetPortfolio
    account: AccountSnapshot
    positions: np.ndarray
    prices: np.ndarray
    risk: RiskResult
    plan: RebalancePlan | None


@dataclass(frozen=True, slots=True, eq=False)
class CycleResult:
    plan: CyclePlan
    reports: tuple[ExecutionReport, ...]
    gate_decisions: tuple[RiskDecision, ...]
    seq: int

    @property
    def halted(self) -> bool:
        return self.plan.risk.halted


def plan_cycle(p: Pipeline, target: TargetPortfolio) -> CyclePlan:
    """Everything up to the order plan; sends nothing (``--dry-run`` prints this)."""
    broker = p.broker
    acct = broker.account()
    positions = broker.position_vector(p.universe, acct)
    if p.unfilled == "carry":
        positions = positions + working_quantities(broker, p.universe)
    prices = broker.prices(p.universe)
    day_start = acct.day_start_equity
    if day_start is None:
        day_start = p.journal.day_start_equity(target.time)  # type: ignore[attr-defined]
    risk = p.risk.approve(target, positions, prices, acct.equity, day_start, p.universe)
    plan = None
    if not risk.halted:
        plan = p.rebalancer.plan(target, risk.weights, positions, prices, acct.equity, p.universe,
                                 broker.market_open(p.universe))
    return CyclePlan(target, acct, positions, prices, risk, plan)


def working_quantities(broker: Broker, universe: Universe) -> np.ndarray:
    """Signed quantities still to fill on the orders working at the broker, aligned to ``universe``.

    With ``unfilled: carry`` they keep working into the next cycle, so that cycle plans from the
    positions they will make (otherwise it would order the same quantities a second time).
    """
    out = np.zeros(len(universe))
    for o in broker.open_orders():
        k = universe.index.get(o.symbol)
        if k is not None:
            out[k] += o.side * max(o.qty - o.filled_qty, 0.0)
    return out


def settle_previous(p: Pipeline, now: np.datetime64) -> None:
    """Record fills that arrived since the last cycle; cancel leftovers when ``unfilled: cancel``."""
    j = p.journal
    updates = p.broker.sync()
    if updates:
        j.updates(updates)  # type: ignore[attr-defined]
    if p.unfilled == "cancel":
        working = p.broker.open_orders()
        if working:
            ids = [o.client_order_id for o in working]
            p.broker.cancel(ids)
            j.cancels(ids, now, "canceled: unfilled when the next batch arrived")  # type: ignore[attr-defined]


def run_cycle(p: Pipeline, target: TargetPortfolio) -> CycleResult:
    """Run one rebalance: reductions first, then additions re-sized to the buying power left."""
    j = p.journal
    settle_previous(p, target.time)
    cp = plan_cycle(p, target)
    seq = j.begin_cycle(target, cp.prices, cp.account.equity)  # type: ignore[attr-defined]
    j.decisions(seq, cp.risk.decisions)  # type: ignore[attr-defined]
    if cp.plan is None:
        j.end_cycle(seq, "halted")  # type: ignore[attr-defined]
        return CycleResult(cp, (), (), seq)
    broker = p.broker
    gate: tuple[RiskDecision, ...] = cp.plan.skipped      # per-order gates: market hours, then buying power
    j.decisions(seq, gate)  # type: ignore[attr-defined]
    j.intents(seq, cp.plan.reduce)  # type: ignore[attr-defined]
    r1 = broker.execute(cp.plan.reduce)
    j.report(seq, r1)  # type: ignore[attr-defined]
    adds = cp.plan.add
    if len(adds):
        acct = broker.account() if len(r1.batch) else cp.account
        adds, sized = p.rebalancer.resize_adds(adds, acct.buying_power)
        j.decisions(seq, sized)  # type: ignore[attr-defined]
        gate += sized
    j.intents(seq, adds)  # type: ignore[attr-defined]
    r2 = broker.execute(adds)
    j.report(seq, r2)  # type: ignore[attr-defined]
    j.end_cycle(seq, "done")  # type: ignore[attr-defined]
    return CycleResult(cp, (r1, r2), gate, seq)
