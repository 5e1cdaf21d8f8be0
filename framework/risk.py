"""The RiskManager: a filter from a target portfolio to an approved target portfolio.

The same object runs in backtest, paper and live. It works on weight arrays aligned to the
universe and returns a ``RiskResult`` (approved weights + decision records), never an exception.
Rules, in the order they apply:

1. ``min_account_balance``  equity below the minimum: the whole cycle is halted (no orders).
2. ``min_confidence``       a signal below the minimum changes nothing for that symbol (kept as is).
   ``venue_halt``           a symbol the venue does not trade now is kept as is too (SPEC §17).
3. ``no_shorting``          a short target where the venue forbids shorting becomes flat.
4. ``max_position_size_pct`` each |weight| is clipped to the limit.
5. ``max_positions``        at most N non-zero targets: the strongest by confidence x |weight| stay
                            (positions kept by rule 2 stay and take their slots).
6. ``max_exposure_pct``     gross exposure above the limit is scaled down pro rata.
7. ``max_leverage``         gross exposure above the leverage limit is scaled down pro rata.
8. ``max_daily_loss_pct``   equity below the day's starting equity by more than the limit: for the
                            rest of that day only risk-reducing changes pass (reduce-only).
The per-order gates live in the rebalancer: symbols whose market is closed (rule ``market_closed``)
and buying power after sells (``resize_adds``, rule ``buying_power``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.config import RiskLimits
from framework.decisions import DecisionBlock, Decisions
from framework.rebalance import RebalancePlan, scaled_adds
from framework.types import RiskDecision, TargetPortfolio, Universe

EPS = 1e-12


@dataclass(frozen=True, slots=True, eq=False)
class RiskResult:
    weights: np.ndarray                  # approved target weights, aligned to the universe
    decisions: Decisions                 # a sequence of RiskDecision (read like a tuple)
    halted: bool = False                 # the whole cycle is blocked (exit code 3 live)
    reduce_only: bool = False


def day_key(t: np.datetime64) -> np.datetime64:
    """The UTC calendar day of ``t`` (crypto days start at UTC midnight; equity sessions lie within one)."""
    return np.datetime64(t, "D")


_KERNELS = None


def _kernels():
    """The compiled screen (``framework.kernels``), loaded with the first approval so that importing
    this module does not load numba."""
    global _KERNELS
    if _KERNELS is None:          # an import statement costs a microsecond a call: taken once
        from framework import kernels

        _KERNELS = kernels
    return _KERNELS


class RiskManager:
    """Applies the limits of SPEC section 7; keeps only the daily-loss halt state."""

    def __init__(self, limits: RiskLimits):
        self.limits = limits
        self.halted_day: np.datetime64 | None = None

    def approve(self, target: TargetPortfolio, positions: np.ndarray, prices: np.ndarray, equity: float,
                day_start_equity: float | None, universe: Universe, keep: np.ndarray | None = None) -> RiskResult:
        """Apply the rules in order. A symbol the venue does not trade now (``universe.can_trade()``)
        is kept exactly as it is, like a low-confidence one, so every later limit counts the position
        it really keeps (rule ``venue_halt``); so is each symbol of ``keep`` (positions the venue's
        pre-checks found cannot be reduced this cycle, recorded there)."""
        L = self.limits
        t = target.time
        syms = universe.symbols
        decisions: list[RiskDecision | DecisionBlock] = []
        current_w: np.ndarray | None = None

        def current() -> np.ndarray:
            """Current weights (position values / equity); computed only when a rule needs them."""
            nonlocal current_w
            if current_w is None:
                current_w = (np.where(np.isnan(prices), 0.0, positions * prices) / equity if equity > 0
                             else np.zeros(len(positions)))
            return current_w

        if equity < L.min_account_balance:
            decisions.append(RiskDecision(t, "*", "min_account_balance", "halt", equity, L.min_account_balance,
                                          f"equity {equity:,.2f} below the minimum balance {L.min_account_balance:,.2f}: "
                                          "no orders this cycle"))
            return RiskResult(current(), Decisions(decisions), halted=True)

        if keep is None and _kernels().limits_idle(target.weights, target.confidence, L.min_confidence,
                                                   universe.can_trade(), L.max_position_size_pct, L.max_positions):
            # the usual case, screened at once: no symbol absent, under the confidence, halted, short,
            # above the cap or beyond the number of positions, so rules 2 to 5 change nothing
            approved = target.weights.copy()
            held: np.ndarray | None = None
            size = np.abs(approved)
        else:
            approved, held, size = self._per_symbol(target, universe, keep, current, decisions)

        # 6./7. gross exposure and leverage
        gross = float(size.sum())
        for rule, limit in (("max_exposure_pct", L.max_exposure_pct), ("max_leverage", L.max_leverage)):
            if gross > limit + 1e-9:
                fixed_mask = held if held is not None else np.zeros(len(approved), dtype=bool)
                fixed = float(np.abs(approved[fixed_mask]).sum())
                room = limit - fixed
                rest = gross - fixed
                if room > 0 and rest > 0:
                    factor = room / rest
                    approved[~fixed_mask] *= factor
                else:      # what cannot change at all (the venue does not trade it) stays; the rest scales
                    halted = ~universe.can_trade()
                    stuck = (halted if keep is None else halted | keep) & fixed_mask
                    stuck_gross = float(np.abs(approved[stuck]).sum())
                    factor = max(limit - stuck_gross, 0.0) / (gross - stuck_gross) if gross > stuck_gross else 0.0
                    approved[~stuck] *= factor
                new_gross = float(np.abs(approved).sum())
                decisions.append(RiskDecision(t, "*", rule, "scale", gross, new_gross,
                                              f"gross exposure {gross:.4f} above the limit {limit:.4f}: "
                                              f"targets scaled by {factor:.4f}"))
                gross = new_gross

        # 8. daily loss: reduce-only for the rest of the day
        reduce_only = self.halted_day is not None and self.halted_day == day_key(t)
        if not reduce_only and day_start_equity and day_start_equity > 0:
            loss = 1.0 - equity / day_start_equity
            if loss > L.max_daily_loss_pct:
                self.halted_day = day_key(t)
                reduce_only = True
                decisions.append(RiskDecision(t, "*", "max_daily_loss_pct", "halt", loss, L.max_daily_loss_pct,
                                              f"equity {equity:,.2f} is {loss:.2%} below the day's start "
                                              f"{day_start_equity:,.2f}: only risk-reducing orders until the day ends"))
        if reduce_only:
            cur = current()
            same_side = np.sign(approved) == np.sign(cur)
            reduced = np.where(same_side, np.sign(cur) * np.minimum(np.abs(approved), np.abs(cur)), 0.0)
            changed = np.abs(reduced - approved) > EPS
            for j in np.flatnonzero(changed):
                decisions.append(RiskDecision(t, syms[j], "max_daily_loss_pct", "reduce_only", float(approved[j]),
                                              float(reduced[j]), "daily loss limit hit: the position may only shrink"))
            approved = reduced
        return RiskResult(approved, Decisions(decisions), halted=False, reduce_only=reduce_only)

    def _per_symbol(self, target: TargetPortfolio, universe: Universe, keep: np.ndarray | None, current,
                    decisions: list) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Rules 2 to 5, symbol by symbol: (approved weights, symbols no later rule may change, |weights|)."""
        L = self.limits
        t = target.time
        syms = universe.symbols
        w = target.weights
        absent = np.isnan(w)
        any_absent = np.count_nonzero(absent) > 0
        approved = np.where(absent, current() if target.absent_hold else 0.0, w) if any_absent else w.copy()
        conf = target.confidence

        # 2. confidence: keep the position as it is
        low = conf < L.min_confidence
        if any_absent:
            low &= ~absent
        held: np.ndarray | None = None           # symbols no later rule may change
        if np.count_nonzero(low):
            cur = current()
            for j in np.flatnonzero(low):
                decisions.append(RiskDecision(t, syms[j], "min_confidence", "hold", float(w[j]), float(cur[j]),
                                              f"confidence {conf[j]:.2f} < min {L.min_confidence:.2f}: position kept as is"))
            approved[low] = cur[low]
            held = low
        if target.absent_hold and any_absent:
            held = absent if held is None else held | absent
        halted = ~universe.can_trade()
        if keep is not None and np.count_nonzero(keep):
            cur = current()
            approved[keep] = cur[keep]
            held = keep.copy() if held is None else held | keep
        if np.count_nonzero(halted):
            cur = current()
            for j in np.flatnonzero(halted & (np.abs(np.nan_to_num(approved) - cur) > EPS)):
                why = universe.halt_reason(int(j)) or "not tradable"
                decisions.append(RiskDecision(t, syms[j], "venue_halt", "hold", float(approved[j]), float(cur[j]),
                                              f"{syms[j]} is not traded at the venue now ({why}): held, the other "
                                              "symbols trade"))
            approved[halted] = cur[halted]
            held = halted if held is None else held | halted

        # 3. shorting
        short = approved < -EPS
        if np.count_nonzero(short):
            short &= ~universe.shortable
            if held is not None:
                short &= ~held
            for j in np.flatnonzero(short):
                decisions.append(RiskDecision(t, syms[j], "no_shorting", "clip", float(approved[j]), 0.0,
                                              f"the venue does not allow shorting {syms[j]}"))
            approved[short] = 0.0

        # 4. per-position cap
        cap = L.max_position_size_pct
        size = np.abs(approved)
        over = size > cap + EPS
        if np.count_nonzero(over):
            if held is not None:
                over &= ~held
            for j in np.flatnonzero(over):
                decisions.append(RiskDecision(t, syms[j], "max_position_size_pct", "clip", float(approved[j]),
                                              float(np.sign(approved[j]) * cap),
                                              f"|weight| {abs(approved[j]):.4f} above the limit {cap:.4f}"))
            approved[over] = np.sign(approved[over]) * cap
            size = np.abs(approved)

        # 5. number of positions
        nonzero = size > EPS
        if np.count_nonzero(nonzero) > L.max_positions:
            # held symbols keep their positions and their slots; the others compete for the rest
            free = nonzero if held is None else nonzero & ~held
            slots = max(L.max_positions - (np.count_nonzero(nonzero) - np.count_nonzero(free)), 0)
            score = np.where(free, np.nan_to_num(conf, nan=1.0) * size, -1.0)
            order = np.argsort(-score, kind="stable")
            drop = order[slots:]
            drop = drop[free[drop]]
            # one record per dropped symbol, kept as columns (hundreds a cycle on a wide universe)
            decisions.append(DecisionBlock(
                t, [syms[j] for j in drop.tolist()], "max_positions", "reject", approved[drop].astype(float),
                np.zeros(len(drop)), f"more than {L.max_positions} positions: weaker than the {L.max_positions} "
                "kept (confidence x weight ", score[drop].astype(float), ")"))
            approved[drop] = 0.0
            size = np.abs(approved)
        return approved, held, size


def exposure_after_rounding(plan: RebalancePlan, limits: RiskLimits, positions: np.ndarray, prices: np.ndarray,
                            equity: float) -> RebalancePlan:
    """Rules 6/7 again, on the orders as the venue's increments left them.

    The weights respect the gross limit, but a reduction smaller than one increment (half a whole
    share) rounds away while the additions it made room for do not, so the legs could end above the
    limit. The additions are then scaled down (floored to their increments, venue minimums kept) so
    the gross after both legs stays within the limit, or within today's gross when that is already
    above it. Exact, cheap: a reduction shrinks |position| by its value and an addition grows it by
    its own (the venue pre-checks keep legs from flipping a position)."""
    add = plan.add
    if not len(add) or equity <= 0:
        return plan
    red = plan.reduce
    now, after, total = _kernels().gross_values(positions, prices, red.symbol_idx, red.qty, add.symbol_idx, add.qty)
    limit = min(limits.max_exposure_pct, limits.max_leverage) * equity
    excess = after - max(limit, now)
    if excess <= 1e-9 * max(equity, 1.0):
        return plan
    idx = add.symbol_idx
    px = np.where(np.isfinite(prices), prices, 0.0)
    factor = max(total - excess, 0.0) / total if total > 0 else 0.0
    qty = scaled_adds(add, factor)
    target_qty = plan.target_qty.copy()
    target_qty[idx] -= add.side * (add.qty - qty)
    new_after = after - total + float((qty * px[idx]).sum())
    rule = "max_exposure_pct" if limits.max_exposure_pct <= limits.max_leverage else "max_leverage"   # the one binding
    decision = RiskDecision(add.time, "*", rule, "scale", after / equity, new_after / equity,
                            f"the orders as rounded to the venue's increments would take gross exposure to "
                            f"{after / equity:.4f}, above the limit {limit / equity:.4f}: additions scaled by "
                            f"{factor:.4f}")
    return RebalancePlan(plan.reduce, add.with_qty(qty), target_qty, plan.skipped + (decision,))
