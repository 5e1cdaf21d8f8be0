"""What the venue will refuse, checked before anything is sent and recorded as risk decisions
(SPEC §17), instead of orders sent only to collect rejections.

Called from the engine's plan step, so a backtest, a dry run and a live cycle run the same code;
what differs between venues is data (the ``Universe``'s and the ``AccountSnapshot``'s fields), never
a mode switch. The checks, in order, per planned order:

- ``venue_halt``        the venue does not trade the symbol now (inactive, delisted, trading_disabled,
                        cancel_only): the order is held and the other symbols trade.
- ``wash_trade``        an open order of the user's (not Parity's) on the opposite side: the venue would
                        refuse this one as a potential wash trade, so it is held, naming that order.
                        An opposite-side order of Parity's own is cancelled first (``owned_opposite``).
- ``qty_available``     a sell of more than is available (shares held by open orders cannot be sold):
                        clipped to what is available.
- ``short_not_allowed`` a short sale on an account that may not short, or of a name the venue does
                        not lend (not shortable / hard to borrow): not sent.
- ``fractional_short``  short sales in whole shares only: floored.
- ``min_buy_notional``  a buy under the venue's floor (Alpaca crypto $10 cost basis; sells are fine).

An account the venue blocks (``AccountSnapshot.blocked``) is one clear error before anything is sent.
"""

from __future__ import annotations

import numpy as np

from framework.broker import OrderState
from framework.errors import BrokerError
from framework.rebalance import RebalancePlan, floor_to
from framework.types import AccountSnapshot, OrderBatch, RiskAction, RiskDecision, Universe

EPS = 1e-12


class AccountBlocked(BrokerError):
    """The venue refuses every new order on this account: nothing is sent (exit 1)."""


def require_tradable_account(acct: AccountSnapshot, venue: str) -> None:
    """One clear error before any order when the venue blocks the account."""
    if acct.blocked:
        raise AccountBlocked(f"{venue}: the account cannot trade ({acct.blocked}); nothing was sent. "
                             "Check the account at the venue (or the key's permissions) and run again")


def available_vector(acct: AccountSnapshot, universe: Universe, positions: np.ndarray) -> np.ndarray:
    """Quantity of each long the venue lets Parity sell now: the position minus what open orders hold
    (Alpaca ``qty_available``, Coinbase's available balance); the whole position where the venue
    does not say."""
    out = np.abs(positions).astype(float)
    for p in acct.positions:
        k = universe.index.get(p.symbol)
        if k is not None and p.available_qty is not None:
            out[k] = max(min(abs(p.available_qty), abs(p.qty)), 0.0)
    return out


def owned_opposite(plan: RebalancePlan, working: list[OrderState], acct: AccountSnapshot) -> list[str]:
    """Client ids of Parity's own open orders opposite to a planned order on the same symbol: the
    venue would refuse the new order as a potential wash trade, so they are cancelled first."""
    if not acct.wash_trade_rule:
        return []
    sides = _planned_sides(plan)
    return [o.client_order_id for o in working if o.owned and -o.side in sides.get(o.symbol, set())]


def _planned_sides(plan: RebalancePlan) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for leg in (plan.reduce, plan.add):
        for s, side in zip(leg.symbols(), leg.side.tolist()):
            out.setdefault(s, set()).add(int(side))
    return out


def check_plan(plan: RebalancePlan, acct: AccountSnapshot, positions: np.ndarray, universe: Universe,
               foreign: list[OrderState], releasable: np.ndarray | None = None) -> RebalancePlan:
    """The plan with every order the venue would refuse held, clipped or dropped, and a decision for
    each (appended to ``plan.skipped``, which the journal records and ``--dry-run`` prints).

    ``releasable``: quantity per symbol that Parity's own orders hold and that the cycle frees before
    it trades (its protective exits): available to sell."""
    avail = available_vector(acct, universe, positions)
    if releasable is not None:
        avail = np.minimum(avail + releasable, np.abs(positions))
    if not (acct.wash_trade_rule and foreign):
        red, add = plan.reduce, plan.add
        if _kernels().plan_clear(positions, avail, red.symbol_idx, red.side, red.qty, red.ref_price, add.symbol_idx,
                                 add.side, add.qty, add.ref_price, universe.can_trade(), universe.buy_floor()):
            return plan                   # the usual case: no order meets a check below, screened at once
    decisions: list[RiskDecision] = []
    reduce = _check_leg(plan.reduce, acct, avail, foreign, decisions, reducing=True)
    add = plan.add
    if len(add):
        left = positions.astype(float)          # what each position is once the reductions fill
        if _kernels().flips_after(left, reduce.symbol_idx, reduce.side, reduce.qty, add.symbol_idx, add.side):
            add = _unflipped(add, left, decisions)
        elif not (add.qty > 0).all():
            add = add.with_qty(add.qty.copy())
    add = _check_leg(add, acct, avail, foreign, decisions, reducing=False)
    if not decisions:
        return plan
    return RebalancePlan(reduce, add, plan.target_qty, plan.skipped + tuple(decisions))


HOLDS = ("venue_halt", "wash_trade")


def held_reductions(plan: RebalancePlan, universe: Universe) -> np.ndarray:
    """Symbols whose reduction the pre-checks held in full (a halted symbol, the user's opposite order):
    their positions stay this cycle, and the limits must count them (the planner re-plans with them kept)."""
    out = np.zeros(len(universe), bool)
    for d in plan.skipped:
        if (d.rule in HOLDS or d.rule == "qty_available" and d.approved <= 0) and d.symbol in universe.index:
            out[universe.index[d.symbol]] = True
    return out


def carry_decisions(first: RebalancePlan, second: RebalancePlan) -> RebalancePlan:
    """The re-made plan with the first plan's hold decisions it no longer repeats."""
    seen = {(d.symbol, d.rule) for d in second.skipped}
    extra = tuple(d for d in first.skipped if d.rule in HOLDS and (d.symbol, d.rule) not in seen)
    return RebalancePlan(second.reduce, second.add, second.target_qty, second.skipped + extra)


def _unflipped(leg: OrderBatch, left: np.ndarray, decisions: list[RiskDecision]) -> OrderBatch:
    """Additions that would grow a position the other way while the reduction before it could not
    close it (quantity held, a held symbol): the venue would take them as part of the old side."""
    qty = leg.qty.copy()
    for i, (j, side) in enumerate(zip(leg.symbol_idx.tolist(), leg.side.tolist())):
        if left[j] * side < -EPS:
            s = leg.universe.symbols[j]
            decisions.append(RiskDecision(leg.time, s, "flip_incomplete", RiskAction.HOLD, float(qty[i]), 0.0,
                                          f"the {abs(left[j]):g} of {s} still held could not be closed first: the "
                                          "position is not turned to the other side this cycle"))
            qty[i] = 0.0
    return leg.with_qty(qty)


_KERNELS = None


def _kernels():
    """The compiled screens (``framework.kernels``), loaded with the first plan checked, so that
    importing this module does not load numba."""
    global _KERNELS
    if _KERNELS is None:          # an import statement costs a microsecond a call: taken once
        from framework import kernels

        _KERNELS = kernels
    return _KERNELS


def _check_leg(leg: OrderBatch, acct: AccountSnapshot, avail: np.ndarray, foreign: list[OrderState],
               decisions: list[RiskDecision], *, reducing: bool) -> OrderBatch:
    """One leg: in the reduce leg a sell sells a long and a buy covers a short; in the add leg a sell
    is a short sale and a buy opens or grows a long."""
    if len(leg) == 0:
        return leg
    u = leg.universe
    tradable, floor = u.can_trade(), u.buy_floor()
    wash = acct.wash_trade_rule and bool(foreign)
    if not wash:        # the usual case, screened over the arrays at once: no order meets a check below
        done = _kernels().leg_clear(leg.symbol_idx, leg.side, leg.qty, leg.ref_price, tradable, floor, avail,
                                           reducing)
        if done:
            return leg if done == 1 else leg.with_qty(leg.qty.copy())
    qty = leg.qty.copy()
    n_before = len(decisions)

    def decide(i: int, s: str, rule: str, action: RiskAction, approved: float, reason: str) -> None:
        decisions.append(RiskDecision(leg.time, s, rule, action, float(leg.qty[i]), approved, reason))

    for i, (j, side) in enumerate(zip(leg.symbol_idx.tolist(), leg.side.tolist())):
        if not tradable[j]:
            s = u.symbols[j]
            why = u.halt_reason(j) or "not tradable"
            decide(i, s, "venue_halt", RiskAction.HOLD, 0.0, f"{s} is not traded at the venue now ({why}): held, "
                                                             "the other symbols trade")
            qty[i] = 0.0
            continue
        if wash:
            s = u.symbols[j]
            blocker = next((o for o in foreign if o.symbol == s and o.side == -side), None)
            if blocker is not None:
                decide(i, s, "wash_trade", RiskAction.HOLD, 0.0,
                       f"an open {'buy' if blocker.side > 0 else 'sell'} order not Parity's "
                       f"({blocker.client_order_id or blocker.broker_id}) is on {s}: the venue would refuse this "
                       "order as a potential wash trade; held until that order is gone")
                qty[i] = 0.0
                continue
        if reducing and side < 0:         # selling a long
            if qty[i] > avail[j] + EPS:
                can = float(floor_to(np.array([max(avail[j], 0.0)]), np.array([u.qty_increment[j]]))[0])
                decide(i, u.symbols[j], "qty_available", RiskAction.CLIP, can,
                       f"only {can:g} can be sold now (the rest of the position is held by open orders)")
                qty[i] = can
            avail[j] -= qty[i]
            continue
        if reducing:                      # covering a short
            continue
        if side < 0:                      # a short sale
            s = u.symbols[j]
            if not acct.can_short or not u.shortable[j]:
                why = ("the account may not sell short (a cash account, or shorting disabled)" if not acct.can_short
                       else f"the venue does not lend {s} (not shortable or hard to borrow)")
                decide(i, s, "short_not_allowed", RiskAction.REJECT, 0.0, f"{why}: short sale not sent")
                qty[i] = 0.0
                continue
            whole = float(np.floor(qty[i] + 1e-9))
            if whole < qty[i] - EPS:
                decide(i, s, "fractional_short", RiskAction.CLIP, whole,
                       f"short sales are whole shares only: {qty[i]:g} floored to {whole:g}")
                qty[i] = whole
            continue
        if floor[j] > 0:
            px = float(leg.ref_price[i])
            if qty[i] * px < floor[j] - 1e-9:
                decide(i, u.symbols[j], "min_buy_notional", RiskAction.REJECT, 0.0,
                       f"a buy of ${qty[i] * px:,.2f} is under the venue's minimum of ${floor[j]:,.2f}: not sent")
                qty[i] = 0.0
    if len(decisions) == n_before and (leg.qty > 0).all():
        return leg                        # nothing held, clipped or dropped
    return leg.with_qty(qty)
