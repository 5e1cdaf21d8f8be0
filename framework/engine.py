"""run_cycle(): the single path from a signal batch to orders, for backtest, paper and live.

signals -> target portfolio -> risk -> rebalancer -> broker -> journal. The drivers differ only
in the clock and the Broker they hand in; nothing here knows which one it runs under.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from framework import exits
from framework.broker import Broker
from framework.order_ids import smart_leg
from framework.rebalance import RebalancePlan, Rebalancer
from framework.risk import RiskManager, RiskResult, exposure_after_rounding
from framework.types import (
    AccountSnapshot,
    CycleStatus,
    ExecutionReport,
    OrderBatch,
    OrderStatus,
    OrderType,
    RiskDecision,
    TargetPortfolio,
    Universe,
)
from framework.venue_checks import (
    carry_decisions,
    check_plan,
    held_reductions,
    owned_opposite,
    require_tradable_account,
)

_OPEN = (int(OrderStatus.PLANNED), int(OrderStatus.NEW), int(OrderStatus.PARTIAL))


class Journal(Protocol):
    """What the engine records through (``framework.journal``): the one bookkeeper of a run."""

    def day_start_equity(self, t: np.datetime64) -> float | None: ...
    def begin_cycle(self, target: TargetPortfolio, prices: np.ndarray, equity: float) -> int: ...
    def end_cycle(self, seq: int, status: CycleStatus) -> None: ...
    def decisions(self, seq: int, decisions: Sequence[RiskDecision]) -> None: ...
    def intents(self, seq: int | None, batch: OrderBatch) -> None: ...
    def update(self, report: ExecutionReport) -> None: ...
    def updates(self, reports: list[ExecutionReport]) -> None: ...
    def report(self, seq: int | None, report: ExecutionReport) -> None: ...
    def cancels(self, client_ids: list[str], t: np.datetime64, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The parts of one run, wired by the composition root (the CLI or a test)."""

    broker: Broker
    risk: RiskManager
    rebalancer: Rebalancer
    journal: Journal           # BufferedJournal | WriteAheadJournal: the one bookkeeper
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
    require_tradable_account(acct, broker.name)          # one clear error before anything is sent
    positions = broker.position_vector(p.universe, acct)
    if p.unfilled == "carry":
        positions = positions + working_quantities(broker, p.universe)
    prices = broker.prices(p.universe)
    day_start = acct.day_start_equity
    if day_start is None:
        day_start = p.journal.day_start_equity(target.time)
    risk = p.risk.approve(target, positions, prices, acct.equity, day_start, p.universe)
    plan = None
    if not risk.halted:
        is_open, foreign = broker.market_open(p.universe), broker.foreign_orders()
        # quantity our own protective exits hold is released before any leg trades the symbol (SPEC §20)
        working = broker.open_orders()
        releasable = exits.held_by_exits(working, p.universe) if working else None
        plan = p.rebalancer.plan(target, risk.weights, positions, prices, acct.equity, p.universe, is_open)
        plan = check_plan(plan, acct, positions, p.universe, foreign, releasable)   # what the venue would refuse
        stuck = held_reductions(plan, p.universe) if plan.skipped else None
        if stuck is not None and stuck.any():
            # a position that cannot shrink this cycle: re-plan with it kept, so the limits count it
            risk = p.risk.approve(target, positions, prices, acct.equity, day_start, p.universe, keep=stuck)
            plan = carry_decisions(plan, check_plan(p.rebalancer.plan(target, risk.weights, positions, prices,
                                                                      acct.equity, p.universe, is_open),
                                                    acct, positions, p.universe, foreign, releasable))
        plan = exposure_after_rounding(plan, p.risk.limits, positions, prices, acct.equity)
    return CyclePlan(target, acct, positions, prices, risk, plan)


def working_quantities(broker: Broker, universe: Universe) -> np.ndarray:
    """Signed quantities still to fill on the orders working at the broker, aligned to ``universe``.

    With ``unfilled: carry`` they keep working into the next cycle, so that cycle plans from the
    positions they will make (otherwise it would order the same quantities a second time).
    """
    out = np.zeros(len(universe))
    for o in broker.open_orders():
        if exits.protective(o):      # a resting protective exit is not a quantity on its way
            continue
        k = universe.index.get(o.symbol)
        if k is not None:
            out[k] += o.side * max(o.qty - o.filled_qty, 0.0)
    return out


def settle_previous(p: Pipeline, now: np.datetime64) -> None:
    """Record fills that arrived since the last cycle; cancel leftovers when ``unfilled: cancel``."""
    j = p.journal
    updates = p.broker.sync()
    if updates:
        j.updates(updates)
    if p.unfilled == "cancel":
        # Parity's own orders only (SPEC §17); protective exits stay (framework.exits keeps them)
        working = [o for o in p.broker.open_orders() if not exits.protective(o)]
        if working:
            ids = [o.client_order_id for o in working]
            p.broker.cancel(ids)
            j.cancels(ids, now, "canceled: unfilled when the next batch arrived")


def run_cycle(p: Pipeline, target: TargetPortfolio) -> CycleResult:
    """Run one rebalance: reductions first, then additions re-sized to the buying power left."""
    j = p.journal
    settle_previous(p, target.time)
    cp = plan_cycle(p, target)
    if cp.plan is not None and cp.account.wash_trade_rule and p.unfilled != "cancel":
        stale = owned_opposite(cp.plan, p.broker.open_orders(), cp.account)
        if stale:      # the venue refuses an order opposite to an open one: cancel ours, wait, re-plan
            p.broker.cancel(stale)
            j.cancels(stale, target.time, "canceled: opposite to this cycle's order (the venue's wash-trade rule)")
            cp = plan_cycle(p, target)
    seq = j.begin_cycle(target, cp.prices, cp.account.equity)
    j.decisions(seq, cp.risk.decisions)
    if cp.plan is None:
        j.end_cycle(seq, CycleStatus.HALTED)
        return CycleResult(cp, (), (), seq)
    broker = p.broker
    gate: tuple[RiskDecision, ...] = cp.plan.skipped      # per-order gates: market hours, then buying power
    j.decisions(seq, gate)
    exits.release(p, (cp.plan.reduce, cp.plan.add), target.time)   # SPEC §20
    reports = send_leg(p, seq, cp.plan.reduce)
    adds = cp.plan.add
    if len(adds):
        acct = broker.account() if len(cp.plan.reduce) else cp.account
        adds, sized = p.rebalancer.resize_adds(adds, acct.buying_power)
        j.decisions(seq, sized)
        gate += sized
    reports += send_leg(p, seq, adds)
    reports += exits.protect_positions(p, seq, target)    # stop-loss / take-profit (SPEC §20)
    j.end_cycle(seq, CycleStatus.DONE)
    return CycleResult(cp, tuple(reports), gate, seq)


def send_leg(p: Pipeline, seq: int, batch: OrderBatch) -> list[ExecutionReport]:
    """Journal the intents, send, journal the answers. With ``execution: smart`` the leg starts as
    marketable limits; what is still open after the broker's wait is cancelled and re-priced
    ``smart_reprices`` times, then the rest goes at market. Every step is its own leg
    (``add``, ``add-r1``, ..., ``add-m``) with deterministic client order ids, journaled before it
    is sent, so crash recovery and fill booking treat it like any other order."""
    j = p.journal
    if p.execution != "smart" or len(batch) == 0 or batch.order_type != OrderType.MARKET:
        j.intents(seq, batch)
        rep = p.broker.execute(batch, j.update)
        j.report(seq, rep)
        return [rep]
    reports: list[ExecutionReport] = []
    todo = batch
    steps = p.smart_reprices + 2
    k = -1
    while k + 1 < steps:
        k += 1
        last = k == steps - 1
        ref = todo.ref_price if k == 0 else p.broker.prices(p.universe)[todo.symbol_idx]
        ref = np.where(np.isfinite(ref) & (ref > 0), ref, todo.ref_price)
        leg = smart_leg(batch.leg, k, last)
        order = OrderBatch(todo.universe, todo.time, todo.batch_id, leg, todo.symbol_idx, todo.side, todo.qty, ref,
                           OrderType.MARKET if last else OrderType.LIMIT,
                           None if last else marketable_limit(ref, todo.side, p.smart_offset_bps, tick(todo, ref)))
        j.intents(seq, order)
        rep = p.broker.execute(order, j.update)
        j.report(seq, rep)
        reports.append(rep)
        filled = rep.filled_qty.copy()
        cids = order.client_order_ids()
        working = [c for c, st in zip(cids, rep.status.tolist()) if st in _OPEN]
        if working and not last:
            # the next step is sized from what the cancelled orders finally filled: an order can
            # still fill while its cancel is pending (SPEC §17)
            final = {st.client_order_id: st for st in p.broker.cancel(working)}
            for i, c in enumerate(cids):
                if c in final:
                    filled[i] = max(filled[i], final[c].filled_qty)
            j.cancels(working, order.time, f"canceled: smart step {k + 1} not filled, re-priced")
        if last:
            break
        rejected = rep.status == int(OrderStatus.REJECTED)
        priced_out = rejected & np.array([_price_refusal(rep.messages.get(i, "")) for i in range(len(order))], bool)
        left = np.where(rejected & ~priced_out, 0.0, order.qty - filled)
        inc = order.universe.qty_increment[order.symbol_idx]
        left = np.floor(left / inc + 1e-6) * inc
        u = order.universe
        keep = (left > 1e-12) & (left * ref >= u.min_notional[order.symbol_idx]) & (left >= u.min_qty[order.symbol_idx])
        if not keep.any():
            break
        todo = OrderBatch(u, order.time, order.batch_id, batch.leg, order.symbol_idx[keep], order.side[keep],
                          left[keep], ref[keep])
        if priced_out[keep].any():
            steps = k + 2      # a limit refused for its price: the next step goes at market
    return reports


def _price_refusal(message: str) -> bool:
    """Whether a rejection was about the limit price (increment, sub-penny, price band)."""
    m = message.lower()
    return "price" in m and ("increment" in m or "sub-penny" in m or "tick" in m or "invalid" in m)


def tick(batch: OrderBatch, price: np.ndarray) -> np.ndarray:
    """The price increment of each order's limit: the venue's for the instrument, and for US
    equities a cent at $1 and above, a hundredth of a cent below (the sub-penny rule)."""
    u = batch.universe
    inc = u.ticks()[batch.symbol_idx]
    return np.where(u.crypto[batch.symbol_idx], inc, np.where(price >= 1.0, np.maximum(inc, 0.01), 0.0001))


def marketable_limit(price: np.ndarray, side: np.ndarray, offset_bps: float,
                     increment: np.ndarray | float = 0.01) -> np.ndarray:
    """A limit ``offset_bps`` through the price (buys above, sells below), on the price increment
    (rounded away from the price so it stays marketable)."""
    raw = price * (1.0 + side * offset_bps * 1e-4)
    inc = np.broadcast_to(np.asarray(increment, float), raw.shape)
    steps = np.where(side > 0, np.ceil(raw / inc - 1e-9), np.floor(raw / inc + 1e-9))
    return np.round(steps * inc, 10)
