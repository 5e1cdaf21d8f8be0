"""The Rebalancer: approved target weights + positions + prices + equity -> orders, as arrays.

Two legs per cycle: ``reduce`` (orders that shrink |position|: sells of longs, buys covering
shorts) goes first; ``add`` (orders that grow |position|) is re-sized by ``resize_adds`` to the
buying power actually available once the reductions have filled, scaled down pro rata when cash is
short. Trades under ``drift_threshold`` x equity are skipped, except a full close of a position the
target no longer holds (so no stale remainder lingers). Quantities are floored to the venue's
increment (a sell is never rounded up past the position) and orders under the venue's minimum
notional or minimum quantity are dropped (a full close is kept: venues accept closing a position
below the minimum). A symbol whose market is closed gets no order and a ``market_closed`` record in
the plan's ``skipped``. The per-symbol arithmetic runs as one compiled loop (``framework.kernels``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.config import RebalanceSettings
from framework.costs import VenueFees
from framework.types import OrderBatch, RiskDecision, TargetPortfolio, Universe

EPS = 1e-12
_NO_MASK = np.zeros(0, dtype=bool)


@dataclass(frozen=True, slots=True, eq=False)
class RebalancePlan:
    reduce: OrderBatch
    add: OrderBatch
    target_qty: np.ndarray       # per symbol, after snapping
    skipped: tuple[RiskDecision, ...] = ()


def floor_to(qty: np.ndarray, increment: np.ndarray) -> np.ndarray:
    """Floor positive quantities to a multiple of ``increment`` (tolerant to float noise).

    The tolerance is 1e-9 of a step, or 1e-12 of the quantity in steps when that is larger: with
    a fine increment (Alpaca's 1e-9) an exact multiple such as 0.25 is 249999999.99999997 steps
    in floating point and must not lose one.
    """
    steps = qty / increment
    steps = np.floor(steps + np.maximum(1e-9, np.abs(steps) * 1e-12))
    return np.round(steps * increment, 12)


class Rebalancer:
    """Turns approved weights into orders; pure apart from its settings."""

    def __init__(self, settings: RebalanceSettings, fee_rate: np.ndarray | float = 0.0, fees: VenueFees | None = None):
        from framework import kernels

        self._k = kernels
        self.s = settings
        self.fee_rate = fee_rate     # expected fee fraction per symbol, for buying-power headroom
        self.fees = fees             # or the venue's schedule, for batches of any universe

    def plan(self, target: TargetPortfolio, weights: np.ndarray, positions: np.ndarray, prices: np.ndarray,
             equity: float, universe: Universe, tradable: np.ndarray | None = None) -> RebalancePlan:
        s = self.s
        (r_idx, r_side, r_qty, r_px, a_idx, a_side, a_qty, a_px, final_qty) = self._k.plan_orders(
            weights, positions, prices, _NO_MASK if tradable is None else tradable, equity * (1.0 - s.cash_buffer_pct),
            s.drift_threshold * equity, universe.qty_increment, universe.min_notional, universe.min_qty)
        reduce = OrderBatch(universe, target.time, target.batch_id, "reduce", r_idx, r_side, r_qty, r_px)
        add = OrderBatch(universe, target.time, target.batch_id, "add", a_idx, a_side, a_qty, a_px)
        skipped: tuple[RiskDecision, ...] = ()
        if tradable is not None and np.count_nonzero(tradable) < len(tradable):
            skipped = _closed(target, weights, positions, prices, equity, universe, tradable)
        return RebalancePlan(reduce, add, final_qty, skipped)

    def resize_adds(self, adds: OrderBatch, buying_power: float) -> tuple[OrderBatch, tuple[RiskDecision, ...]]:
        """Scale buys (and short sales) down pro rata to the buying power actually available.

        The cost of each add includes the expected fee and ``price_buffer_bps`` of headroom for the
        move between sizing and filling. Re-snapped quantities that fall under the venue minimums
        are dropped.
        """
        if len(adds) == 0:
            return adds, ()
        u = adds.universe
        idx = adds.symbol_idx
        fee: np.ndarray | float
        if self.fees is not None:
            fee = self.fees.rate(u.crypto[idx])
        else:
            fee = self.fee_rate[idx] if isinstance(self.fee_rate, np.ndarray) else self.fee_rate
        unit_cost = adds.ref_price * (1.0 + fee + self.s.price_buffer_bps * 1e-4)
        need = float((adds.qty * unit_cost).sum())
        budget = max(buying_power, 0.0)
        if need <= budget + 1e-9:
            return adds, ()
        factor = budget / need if need > 0 else 0.0
        qty = scaled_adds(adds, factor)
        decision = RiskDecision(adds.time, "*", "buying_power", "scale", need, float((qty * unit_cost).sum()),
                                f"buys need {need:,.2f} but {budget:,.2f} is available after sells: "
                                f"scaled by {factor:.4f}")
        return adds.with_qty(qty), (decision,)


def scaled_adds(adds: OrderBatch, factor: float) -> np.ndarray:
    """The additions' quantities scaled by ``factor``, floored to their increments (short sales in
    whole shares); 0 where that leaves one under the venue's minimums (buying power, and the gross
    limit on the rounded orders: ``framework.risk.exposure_after_rounding``)."""
    u, idx = adds.universe, adds.symbol_idx
    inc = np.where(adds.side < 0, np.maximum(u.qty_increment[idx], 1.0), u.qty_increment[idx])  # whole-share shorts
    qty = floor_to(adds.qty * factor, inc)
    ok = (qty * adds.ref_price >= u.min_notional[idx]) & (qty >= u.min_qty[idx]) & (qty > EPS)
    return np.where(ok, qty, 0.0)


def _closed(target: TargetPortfolio, weights: np.ndarray, positions: np.ndarray, prices: np.ndarray, equity: float,
            universe: Universe, tradable: np.ndarray) -> tuple[RiskDecision, ...]:
    """A record for each symbol whose target would trade but whose market is closed now."""
    px = np.where(np.isfinite(prices) & (prices > 0), prices, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        held = np.nan_to_num(positions * px / equity) if equity > 0 else np.zeros(len(positions))
    wants = ~np.asarray(tradable, bool) & np.isfinite(px) & (np.abs(weights - held) > EPS)
    return tuple(RiskDecision(target.time, universe.symbols[j], "market_closed", "hold", float(weights[j]),
                              float(held[j]), f"the market for {universe.symbols[j]} is closed: no order this cycle")
                 for j in np.flatnonzero(wants).tolist())

