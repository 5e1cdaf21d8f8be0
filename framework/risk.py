"""The RiskManager: a filter from a target portfolio to an approved target portfolio.

The same object runs in backtest, paper and live. It works on weight arrays aligned to the
universe and returns a ``RiskResult`` (approved weights + decision records), never an exception.
Rules, in the order they apply:

1. ``min_account_balance``  equity below the minimum: the whole cycle is halted (no orders).
2. ``min_confidence``       a signal below the minimum changes nothing for that symbol (kept as is).
3. ``no_shorting``          a short target where the venue forbids shorting becomes flat.
4. ``max_position_size_pct`` each |weight| is clipped to the limit.
5. ``max_positions``        at most N non-zero targets: the strongest by confidence x |weight| stay.
6. ``max_exposure_pct``     gross exposure above the limit is scaled down pro rata.
7. ``max_leverage``         gross exposure above the leverage limit is scaled down pro rata.
8. ``max_daily_loss_pct``   equity below the day's starting equity by more than the limit: for the
                            rest of that day only risk-reducing changes pass (reduce-only).
The per-order gate (buying power after sells) lives in the rebalancer's ``resize_adds`` and
records its decisions with the rule ``buying_power``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.config import RiskLimits
from framework.types import RiskDecision, TargetPortfolio, Universe

EPS = 1e-12


@dataclass(frozen=True, slots=True, eq=False)
class RiskResult:
    weights: np.ndarray                  # approved target weights, aligned to the universe
    decisions: tuple[RiskDecision, ...]
    halted: bool = False                 # the whole cycle is blocked (exit code 3 live)
    reduce_only: bool = False


def day_key(t: np.datetime64) -> np.datetime64:
    """The UTC calendar day of ``t`` (crypto days start at UTC midnight; equity sessions lie within one)."""
    return np.datetime64(t, "D")


class RiskManager:
    """Applies the limits of SPEC section 7; keeps only the daily-loss halt state."""

    def __init__(self, limits: RiskLimits):
        self.limits = limits
        self.halted_day: np.datetime64 | None = None

    def approve(self, target: TargetPortfolio, positions: np.ndarray, prices: np.ndarray, equity: float,
                day_start_equity: float | None, universe: Universe) -> RiskResult:
        L = self.limits
        t = target.time
        syms = universe.symbols
        decisions: list[RiskDecision] = []
        with np.errstate(divide="ignore", invalid="ignore"):
            current = np.where(np.isnan(prices), 0.0, positions * prices) / equity if equity > 0 else np.zeros(len(positions))

        if equity < L.min_account_balance:
            decisions.append(RiskDecision(t, "*", "min_account_balance", "halt", equity, L.min_account_balance,
                                          f"equity {equity:,.2f} below the minimum balance {L.min_account_balance:,.2f}: "
                                          "no orders this cycle"))
            return RiskResult(current, tuple(decisions), halted=True)

        w = target.weights
        absent = np.isnan(w)
        approved = np.where(absent, current if target.absent_hold else 0.0, w)
        conf = target.confidence

        # 2. confidence: keep the position as it is
        low = (~absent) & (conf < L.min_confidence)
        held = low.copy()
        if low.any():
            for j in np.flatnonzero(low):
                decisions.append(RiskDecision(t, syms[j], "min_confidence", "hold", float(w[j]), float(current[j]),
                                              f"confidence {conf[j]:.2f} < min {L.min_confidence:.2f}: position kept as is"))
            approved[low] = current[low]
        if target.absent_hold:
            held |= absent

        free = ~held
        # 3. shorting
        short = free & (approved < -EPS) & ~universe.shortable
        if short.any():
            for j in np.flatnonzero(short):
                decisions.append(RiskDecision(t, syms[j], "no_shorting", "clip", float(approved[j]), 0.0,
                                              f"the venue does not allow shorting {syms[j]}"))
            approved[short] = 0.0

        # 4. per-position cap
        cap = L.max_position_size_pct
        over = free & (np.abs(approved) > cap + EPS)
        if over.any():
            for j in np.flatnonzero(over):
                decisions.append(RiskDecision(t, syms[j], "max_position_size_pct", "clip", float(approved[j]),
                                              float(np.sign(approved[j]) * cap),
                                              f"|weight| {abs(approved[j]):.4f} above the limit {cap:.4f}"))
            approved[over] = np.sign(approved[over]) * cap

        # 5. number of positions
        nonzero = np.abs(approved) > EPS
        if nonzero.sum() > L.max_positions:
            score = np.where(nonzero, np.nan_to_num(conf, nan=1.0) * np.abs(approved), -1.0)
            order = np.argsort(-score, kind="stable")
            drop = order[L.max_positions:]
            drop = drop[nonzero[drop]]
            for j in drop:
                decisions.append(RiskDecision(t, syms[j], "max_positions", "reject", float(approved[j]), 0.0,
                                              f"more than {L.max_positions} positions: weaker than the {L.max_positions} "
                                              f"kept (confidence x weight {score[j]:.4f})"))
            approved[drop] = 0.0

        # 6./7. gross exposure and leverage
        for rule, limit in (("max_exposure_pct", L.max_exposure_pct), ("max_leverage", L.max_leverage)):
            gross = float(np.abs(approved).sum())
            if gross > limit + 1e-9:
                fixed = float(np.abs(approved[held]).sum())
                room = limit - fixed
                rest = gross - fixed
                if room > 0 and rest > 0:
                    factor = room / rest
                    approved[~held] *= factor
                else:
                    factor = limit / gross
                    approved *= factor
                decisions.append(RiskDecision(t, "*", rule, "scale", gross, float(np.abs(approved).sum()),
                                              f"gross exposure {gross:.4f} above the limit {limit:.4f}: "
                                              f"targets scaled by {factor:.4f}"))

        # 8. daily loss: reduce-only for the rest of the day
        day = day_key(t)
        reduce_only = self.halted_day == day
        if not reduce_only and day_start_equity and day_start_equity > 0:
            loss = 1.0 - equity / day_start_equity
            if loss > L.max_daily_loss_pct:
                self.halted_day = day
                reduce_only = True
                decisions.append(RiskDecision(t, "*", "max_daily_loss_pct", "halt", loss, L.max_daily_loss_pct,
                                              f"equity {equity:,.2f} is {loss:.2%} below the day's start "
                                              f"{day_start_equity:,.2f}: only risk-reducing orders until the day ends"))
        if reduce_only:
            same_side = np.sign(approved) == np.sign(current)
            reduced = np.where(same_side, np.sign(current) * np.minimum(np.abs(approved), np.abs(current)), 0.0)
            changed = np.abs(reduced - approved) > EPS
            for j in np.flatnonzero(changed):
                decisions.append(RiskDecision(t, syms[j], "max_daily_loss_pct", "reduce_only", float(approved[j]),
                                              float(reduced[j]), "daily loss limit hit: the position may only shrink"))
            approved = reduced
        return RiskResult(approved, tuple(decisions), halted=False, reduce_only=reduce_only)
