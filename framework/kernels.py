"""Compiled loops of the rebalancer, and the screens of the risk manager and the venue pre-checks:
one pass over the symbols of a cycle instead of dozens of array operations, each costing more than
the arithmetic when a universe has a handful of symbols. A screen answers whether a rule has
anything to do; when it has, the rule's own array code runs, so decisions are made in one place.

The Rebalancer calls them the same way in backtest, paper and live. They apply, per symbol, the
exact arithmetic of the array rules described in ``framework.rebalance`` (``floor_to`` included,
bit for bit). numba is imported here only, and this module only when a Rebalancer is built or a
first approval or plan check runs, so ``import framework`` and ``parity --help`` never load it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EPS = 1e-12


@njit(cache=True, nogil=True)
def floor_to(qty: float, increment: float) -> float:
    """``framework.rebalance.floor_to`` for one quantity."""
    if qty == 0.0:        # most symbols of a cycle have nothing to floor on one of the legs
        return 0.0
    steps = qty / increment
    steps = np.floor(steps + max(1e-9, abs(steps) * 1e-12))
    return np.round(steps * increment, 12)


@njit(cache=True, nogil=True)
def plan_orders(weights, positions, prices, tradable, invest, min_trade, increment, min_notional, min_qty):
    """Orders that move ``positions`` to ``weights`` x ``invest`` at ``prices``, in two legs.

    Returns (reduce symbols, sides, quantities, prices; add symbols, sides, quantities, prices;
    the quantity each symbol ends with once both legs fill). ``min_trade`` is the drift threshold
    in quote currency; ``tradable`` may be empty (every symbol may trade).
    """
    n = len(weights)
    all_tradable = len(tradable) == 0
    side = np.zeros(n, np.int8)
    red = np.zeros(n)
    add = np.zeros(n)
    final = np.empty(n)
    n_red = 0
    n_add = 0
    for j in range(n):
        p = prices[j]
        pos = positions[j]
        priced = np.isfinite(p) and p > 0 and (all_tradable or tradable[j])
        safe = p if priced else 1.0
        target = weights[j] * invest / safe if priced else pos
        delta = target - pos
        size = abs(delta)
        held = abs(pos) > EPS
        full_close = abs(target) <= EPS and held and priced
        trade = priced and size > EPS and (size * safe >= min_trade or full_close)
        sd = np.sign(delta)
        reducing = trade and sd != np.sign(pos) and held
        red_qty = min(size, abs(pos)) if reducing else 0.0
        add_qty = size - red_qty if trade else 0.0
        inc = increment[j]
        r = abs(pos) if full_close else floor_to(red_qty, inc)
        a = floor_to(add_qty, inc)
        ok_red = r > EPS and (full_close or (r * safe >= min_notional[j] and r >= min_qty[j]))
        ok_add = a > EPS and a * safe >= min_notional[j] and a >= min_qty[j]
        if sd > 0:
            side[j] = 1
        elif sd < 0:
            side[j] = -1
        if ok_red:
            red[j] = r
            n_red += 1
        if ok_add:
            add[j] = a
            n_add += 1
        final[j] = pos + side[j] * (red[j] + add[j])
    r_idx = np.empty(n_red, np.int64)
    a_idx = np.empty(n_add, np.int64)
    kr = 0
    ka = 0
    for j in range(n):
        if red[j] > 0.0:
            r_idx[kr] = j
            kr += 1
        if add[j] > 0.0:
            a_idx[ka] = j
            ka += 1
    return (r_idx, side[r_idx], red[r_idx], prices[r_idx], a_idx, side[a_idx], add[a_idx], prices[a_idx], final)


@njit(cache=True, nogil=True)
def leg_clear(idx, side, qty, ref, tradable, floor, avail, reducing):
    """Whether a leg is clear of ``framework.venue_checks``' per-order checks: 0 when an order
    meets one (a symbol the venue does not trade, a sell beyond the quantity available, a short
    sale, a buy under the venue's floor) or a symbol repeats, and the per-order loop decides.

    Otherwise that loop would only take each sell from ``avail``: that is done here, and the
    answer is 1 when every quantity is positive (the leg stands as it is), else 2.
    """
    seen = np.zeros(len(avail), np.bool_)
    for i in range(len(idx)):
        j = idx[i]
        if seen[j] or not tradable[j]:
            return 0
        seen[j] = True
        if reducing:
            if side[i] < 0 and qty[i] > avail[j] + EPS:
                return 0
        elif side[i] < 0 or (floor[j] > 0 and qty[i] * ref[i] < floor[j] - 1e-9):
            return 0
    positive = True
    for i in range(len(idx)):
        if reducing and side[i] < 0:
            avail[idx[i]] -= qty[i]
        if not qty[i] > 0:
            positive = False
    return 1 if positive else 2


@njit(cache=True, nogil=True)
def flips_after(left, r_idx, r_side, r_qty, a_idx, a_side):
    """Book the reductions into ``left`` (positions, changed in place: what each is once they
    fill), then whether an addition would grow a position the other way (its reduction could not
    close it)."""
    for i in range(len(r_idx)):
        left[r_idx[i]] += r_side[i] * r_qty[i]
    for i in range(len(a_idx)):
        if left[a_idx[i]] * a_side[i] < -EPS:
            return True
    return False


@njit(cache=True, nogil=True)
def plan_clear(positions, avail, r_idx, r_side, r_qty, r_ref, a_idx, a_side, a_qty, a_ref, tradable, floor):
    """Whether a whole plan is clear of ``framework.venue_checks``' per-order checks, in one pass:
    ``leg_clear`` of the reductions (``avail`` taken as is: a symbol appears once in a clear leg),
    no addition turning a position the other way (``flips_after``), ``leg_clear`` of the additions,
    and every quantity positive. True: the plan stands as it is. False: the per-leg path decides."""
    n = len(positions)
    seen = np.zeros(n, np.bool_)
    left = positions.astype(np.float64)
    for i in range(len(r_idx)):
        j = r_idx[i]
        if seen[j] or not tradable[j] or not r_qty[i] > 0:
            return False
        seen[j] = True
        if r_side[i] < 0 and r_qty[i] > avail[j] + EPS:
            return False
        left[j] += r_side[i] * r_qty[i]
    seen[:] = False
    for i in range(len(a_idx)):
        j = a_idx[i]
        if seen[j] or not tradable[j] or not a_qty[i] > 0 or a_side[i] < 0:
            return False
        seen[j] = True
        if floor[j] > 0 and a_qty[i] * a_ref[i] < floor[j] - 1e-9:
            return False
        if left[j] * a_side[i] < -EPS:
            return False
    return True


@njit(cache=True, nogil=True)
def limits_idle(weights, confidence, min_confidence, tradable, cap, max_positions):
    """Whether the risk manager's per-symbol rules (``framework.risk``, 2 to 5) have nothing to do:
    no symbol absent (NaN), under ``min_confidence``, not traded by the venue, short, above ``cap``,
    and no more than ``max_positions`` non-zero weights. Each test is the rule's own."""
    n_nonzero = 0
    for j in range(len(weights)):
        w = weights[j]
        if np.isnan(w) or confidence[j] < min_confidence or not tradable[j] or w < -EPS:
            return False
        size = abs(w)
        if size > cap + EPS:
            return False
        if size > EPS:
            n_nonzero += 1
    return n_nonzero <= max_positions


@njit(cache=True, nogil=True)
def gross_values(positions, prices, r_idx, r_qty, a_idx, a_qty):
    """(gross position value now, after both legs, the additions' value): a reduction shrinks
    |position| by its value and an addition grows it by its own; unpriced symbols count 0 (the
    screen of ``framework.risk.exposure_after_rounding``)."""
    now = 0.0
    for j in range(len(positions)):
        p = prices[j]
        if np.isfinite(p):
            now += abs(positions[j] * p)
    red = 0.0
    for k in range(len(r_idx)):
        p = prices[r_idx[k]]
        if np.isfinite(p):
            red += r_qty[k] * p
    add = 0.0
    for k in range(len(a_idx)):
        p = prices[a_idx[k]]
        if np.isfinite(p):
            add += a_qty[k] * p
    return now, now - red + add, add
