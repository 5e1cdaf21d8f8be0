"""The Rebalancer: approved target weights + positions + prices + equity -> orders, as arrays.

Two legs per cycle: ``reduce`` (orders that shrink |position|: sells of longs, buys covering
shorts) goes first; ``add`` (orders that grow |position|) is re-sized by ``resize_adds`` to the
buying power actually available once the reductions have filled, scaled down pro rata when cash is
short. Trades under ``drift_threshold`` x equity are skipped, except a full close of a position the
target no longer holds (so no stale remainder lingers). Quantities are floored to the venue's
increment (a sell is never rounded up past the position) and orders under the venue's minimum
notional or minimum quantity are dropped (a full close is kept: venues accept closing a position
below the minimum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.config import RebalanceSettings
from framework.types import OrderBatch, RiskDecision, TargetPortfolio, Universe

EPS = 1e-12


@dataclass(frozen=True, slots=True, eq=False)
class RebalancePlan:
    reduce: OrderBatch
    add: OrderBatch
    target_qty: np.ndarray       # per symbol, after snapping
    skipped: tuple[RiskDecision, ...] = ()


def floor_to(qty: np.ndarray, increment: np.ndarray) -> np.ndarray:
    """Floor positive quantities to a multiple of ``increment`` (tolerant to float noise)."""
    steps = np.floor(qty / increment + 1e-9)
    return np.round(steps * increment, 12)


class Rebalancer:
    """Turns approved weights into orders; pure apart from its settings."""

    def __init__(self, settings: RebalanceSettings, fee_rate: np.ndarray | float = 0.0):
        self.s = settings
        self.fee_rate = fee_rate     # expected fee fraction per symbol, for buying-power headroom

    def plan(self, target: TargetPortfolio, weights: np.ndarray, positions: np.ndarray, prices: np.ndarray,
             equity: float, universe: Universe, tradable: np.ndarray | None = None) -> RebalancePlan:
        s = self.s
        priced = np.isfinite(prices) & (prices > 0)
        if tradable is not None:
            priced &= tradable
        invest = equity * (1.0 - s.cash_buffer_pct)
        safe_px = np.where(priced, prices, 1.0)
        target_qty = np.where(priced, weights * invest / safe_px, positions)
        delta = target_qty - positions
        notional = np.abs(delta) * safe_px
        full_close = (np.abs(target_qty) <= EPS) & (np.abs(positions) > EPS) & priced
        trade = priced & (np.abs(delta) > EPS) & ((notional >= s.drift_threshold * equity) | full_close)

        # reductions shrink |position| towards zero; a sign flip is a close plus an add
        reducing = trade & (np.sign(delta) != np.sign(positions)) & (np.abs(positions) > EPS)
        red_qty = np.where(reducing, np.minimum(np.abs(delta), np.abs(positions)), 0.0)
        add_qty = np.where(trade, np.abs(delta) - red_qty, 0.0)

        inc = universe.qty_increment
        red_snap = np.where(full_close, np.abs(positions), floor_to(red_qty, inc))
        add_snap = floor_to(add_qty, inc)
        ok_red = (red_snap > EPS) & (full_close | ((red_snap * safe_px >= universe.min_notional)
                                                   & (red_snap >= universe.min_qty)))
        ok_add = (add_snap > EPS) & (add_snap * safe_px >= universe.min_notional) & (add_snap >= universe.min_qty)

        side = np.sign(delta).astype(np.int8)
        r_idx = np.flatnonzero(ok_red)
        a_idx = np.flatnonzero(ok_add)
        reduce = OrderBatch(universe, target.time, target.batch_id, "reduce", r_idx, side[r_idx],
                            red_snap[r_idx], prices[r_idx])
        add = OrderBatch(universe, target.time, target.batch_id, "add", a_idx, side[a_idx],
                         add_snap[a_idx], prices[a_idx])
        final_qty = positions + side * (np.where(ok_red, red_snap, 0.0) + np.where(ok_add, add_snap, 0.0))
        return RebalancePlan(reduce, add, final_qty)

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
        fee = self.fee_rate[idx] if isinstance(self.fee_rate, np.ndarray) else self.fee_rate
        unit_cost = adds.ref_price * (1.0 + fee + self.s.price_buffer_bps * 1e-4)
        need = float((adds.qty * unit_cost).sum())
        budget = max(buying_power, 0.0)
        if need <= budget + 1e-9:
            return adds, ()
        factor = budget / need if need > 0 else 0.0
        qty = floor_to(adds.qty * factor, u.qty_increment[idx])
        ok = (qty * adds.ref_price >= u.min_notional[idx]) & (qty >= u.min_qty[idx]) & (qty > EPS)
        qty = np.where(ok, qty, 0.0)
        decision = RiskDecision(adds.time, "*", "buying_power", "scale", need, float((qty * unit_cost).sum()),
                                f"buys need {need:,.2f} but {budget:,.2f} is available after sells: "
                                f"scaled by {factor:.4f}")
        return adds.with_qty(qty), (decision,)
