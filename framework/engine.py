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
from framework.types import (AccountSnapshot, ExecutionReport, OrderBatch, OrderStatus, OrderType, RiskDecision,
                             TargetPortfolio, Universe)

_OPEN = (int(OrderStatus.PLANNED), int(OrderStatus.NEW), int(OrderStatus.PARTIAL))


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The parts of one run, wired by the composition root (the CLI or a test)."""

    broker: Broker
    risk: RiskManager
    rebalancer: Rebalancer
    journal: object            # BufferedJournal | WriteAheadJournal
    universe: Universe
    unfilled: str = "cancel"   # what happens to orders still working when the next batch arrives
    execution: str = "market"  # market | smart (marketable limit, re-priced, then market)
    smart_reprices: int = 3
    smart_offset_bps: float = 10.0


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
    reports = send_leg(p, seq, cp.plan.reduce)
    adds = cp.plan.add
    if len(adds):
        acct = broker.account() if len(cp.plan.reduce) else cp.account
        adds, sized = p.rebalancer.resize_adds(adds, acct.buying_power)
        j.decisions(seq, sized)  # type: ignore[attr-defined]
        gate += sized
    reports += send_leg(p, seq, adds)
    j.end_cycle(seq, "done")  # type: ignore[attr-defined]
    return CycleResult(cp, tuple(reports), gate, seq)


def send_leg(p: Pipeline, seq: int, batch: OrderBatch) -> list[ExecutionReport]:
    """Journal the intents, send, journal the answers. With ``execution: smart`` the leg starts as
    marketable limits; what is still open after the broker's wait is cancelled and re-priced
    ``smart_reprices`` times, then the rest goes at market. Every step is its own leg
    (``add``, ``add-r1``, ..., ``add-m``) with deterministic client order ids, journaled before it
    is sent, so crash recovery and fill booking treat it like any other order."""
    j = p.journal
    if p.execution != "smart" or len(batch) == 0 or batch.order_type != OrderType.MARKET:
        j.intents(seq, batch)  # type: ignore[attr-defined]
        rep = p.broker.execute(batch)
        j.report(seq, rep)  # type: ignore[attr-defined]
        return [rep]
    reports: list[ExecutionReport] = []
    todo = batch
    steps = p.smart_reprices + 2
    for k in range(steps):
        last = k == steps - 1
        ref = todo.ref_price if k == 0 else p.broker.prices(p.universe)[todo.symbol_idx]
        ref = np.where(np.isfinite(ref) & (ref > 0), ref, todo.ref_price)
        leg = batch.leg if k == 0 else (f"{batch.leg}-m" if last else f"{batch.leg}-r{k}")
        order = OrderBatch(todo.universe, todo.time, todo.batch_id, leg, todo.symbol_idx, todo.side, todo.qty, ref,
                           OrderType.MARKET if last else OrderType.LIMIT,
                           None if last else marketable_limit(ref, todo.side, p.smart_offset_bps))
        j.intents(seq, order)  # type: ignore[attr-defined]
        rep = p.broker.execute(order)
        j.report(seq, rep)  # type: ignore[attr-defined]
        reports.append(rep)
        working = [c for c, st in zip(order.client_order_ids(), rep.status.tolist()) if st in _OPEN]
        if working and not last:
            p.broker.cancel(working)
            j.cancels(working, order.time, f"canceled: smart step {k + 1} not filled, re-priced")  # type: ignore[attr-defined]
        if last:
            break
        left = np.where(rep.status == int(OrderStatus.REJECTED), 0.0, order.qty - rep.filled_qty)
        inc = order.universe.qty_increment[order.symbol_idx]
        left = np.floor(left / inc + 1e-6) * inc
        u = order.universe
        keep = (left > 1e-12) & (left * ref >= u.min_notional[order.symbol_idx]) & (left >= u.min_qty[order.symbol_idx])
        if not keep.any():
            break
        todo = OrderBatch(u, order.time, order.batch_id, batch.leg, order.symbol_idx[keep], order.side[keep],
                          left[keep], ref[keep])
    return reports


def marketable_limit(price: np.ndarray, side: np.ndarray, offset_bps: float) -> np.ndarray:
    """A limit ``offset_bps`` through the price (buys above, sells below), on whole cents above $1
    (rounded away from the price so it stays marketable)."""
    raw = price * (1.0 + side * offset_bps * 1e-4)
    cents = np.where(side > 0, np.ceil(raw * 100.0 - 1e-9), np.floor(raw * 100.0 + 1e-9)) / 100.0
    return np.where(price >= 1.0, cents, raw)
