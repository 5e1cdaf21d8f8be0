"""Compiled loops of the simulator: venue checks, fill booking and the bar-by-bar mark-to-market.

The SimulatedBroker and its Book call these on the arrays of one order batch, so a cycle costs a
few calls whatever its number of orders, and the equity curve is rebuilt from the change log in
one pass over the bars without an (n_bars x n_symbols) position matrix. Each loop applies, per
element and in order, the same arithmetic the array code it replaces applied, so results are the
same up to the order of floating-point sums. numba is imported here only; the simulator imports
this module when it is built, so ``import framework`` and ``parity --help`` never load numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# venue_check codes; the simulator turns non-zero codes into rejection messages
OK, SHORT, OFF_INCREMENT, TOO_SMALL = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def venue_check(sym, side, qty, ref, increment, min_notional, min_qty, shortable, pos, codes):
    """Per order: OK or why the venue refuses it (shorting, increment, minimum notional/quantity),
    written to ``codes`` (zeros on entry, one per order; made by the caller, as a compiled
    function's returned arrays cost more to hand back).

    A full close is exempt from the increment and minimum rules (venues accept closing a
    position below the minimum). Returns the number refused.
    """
    n = len(sym)
    n_bad = 0
    for i in range(n):
        s = sym[i]
        q = qty[i]
        r = ref[i]
        if np.isnan(r):
            r = 0.0
        elif np.isinf(r):
            r = 1.7976931348623157e308 if r > 0 else -1.7976931348623157e308
        p = pos[s]
        tol = 1e-9 * max(1.0, abs(p))
        full = (side[i] < 0 and abs(q - p) <= tol) or (side[i] > 0 and abs(q + p) <= tol)
        d = increment[s]
        off = abs(q - np.rint(q / d) * d) > max(d * 1e-6, q * 1e-12)
        small = (q * r < min_notional[s]) or (q < min_qty[s] - 1e-12)
        if side[i] < 0 and q > p + 1e-9 and not shortable[s]:
            codes[i] = SHORT
        elif off and not full:
            codes[i] = OFF_INCREMENT
        elif small and not full:
            codes[i] = TOO_SMALL
        if codes[i] != OK:
            n_bad += 1
    return n_bad


@njit(cache=True, nogil=True)
def fillable(codes, sym, qty, px_row, cap_row, cap_increment, cap_fraction, out):
    """Quantity each market order may fill on a bar, written to ``out`` (zeros on entry): nothing
    when refused or without a price, else at most ``cap_fraction`` of the bar's volume (floored to
    the increment) when capped. ``cap_fraction`` < 0 means no volume cap. Returns how many are > 0."""
    n = len(sym)
    k = 0
    for i in range(n):
        s = sym[i]
        if codes[i] != OK or np.isnan(px_row[s]):
            continue
        q = qty[i]
        if cap_fraction >= 0.0:
            v = cap_row[s]
            if np.isnan(v):
                v = 0.0
            c = np.floor(cap_fraction * v / cap_increment[s]) * cap_increment[s]
            q = min(q, c)
        out[i] = q
        if q > 0:
            k += 1
    return k


@njit(cache=True, nogil=True)
def execution_prices(ref, side, fraction, qty, px, cost):
    """Prices moved against each order by its slippage fraction (buys pay up, sells receive
    less), and the cost of that slippage in quote currency, written to ``px`` and ``cost``
    (arrays the caller makes: a compiled function's returned arrays cost more to hand back)."""
    for i in range(len(ref)):
        px[i] = ref[i] * (1.0 + side[i] * fraction[i])
        cost[i] = abs(px[i] - ref[i]) * qty[i]


@njit(cache=True, nogil=True)
def funds(cash, side, qty, price, fee):
    """Cash left once the sells of a set of fills are booked, and what its buys cost."""
    after_sells = cash
    cost = 0.0
    buys = 0
    for i in range(len(qty)):
        if side[i] < 0:
            after_sells += qty[i] * price[i] - fee[i]
        else:
            cost += qty[i] * price[i] + fee[i]
            buys += 1
    return after_sells, cost, buys


@njit(cache=True, nogil=True)
def book_fills(pos, avg_cost, realized, fees, cash, bar, sym, side, qty, price, fee,
               log_bar, log_sym, log_dq, log_dcash, n_log):
    """Book fills sells first, then buys (each group in its given order), one after the other.

    Realised P&L on the part that reduces |position|, average cost on the part that adds; every
    change goes to the log from which the equity curve is rebuilt. The log arrays must have room
    for ``len(qty)`` more rows. Returns (cash, log length, whether the booking order differs from
    the given order; it is then ``argsort(side, kind="stable")``).
    """
    n = len(qty)
    order = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        if side[i] < 0:
            order[k] = i
            k += 1
    for i in range(n):
        if side[i] >= 0:
            order[k] = i
            k += 1
    moved = False
    for i in range(n):
        if order[i] != i:
            moved = True
    for a in range(n):
        i = order[a]
        s = sym[i]
        signed = side[i] * qty[i]
        old = pos[s]
        new = old + signed
        reducing = old != 0.0 and np.sign(signed) != np.sign(old)
        closed = min(abs(signed), abs(old)) if reducing else 0.0
        realized[s] += closed * (price[i] - avg_cost[s]) * np.sign(old)
        opened = abs(signed) - closed
        keep_old = abs(old) - closed if reducing else abs(old)
        avg = 0.0
        if abs(new) > 1e-12:
            avg = (keep_old * avg_cost[s] + opened * price[i]) / max(keep_old + opened, 1e-300)
            pos[s] = new
        else:
            pos[s] = 0.0
        avg_cost[s] = avg
        dcash = -(signed * price[i]) - fee[i]
        cash += dcash
        fees[s] += fee[i]
        log_bar[n_log] = bar
        log_sym[n_log] = s
        log_dq[n_log] = signed
        log_dcash[n_log] = dcash
        n_log += 1
    return cash, n_log, moved


@njit(cache=True, nogil=True)
def order_outcome(codes, fill_pos, fill_qty, fill_price, qty, stopped, filled, rest, avg, status):
    """Filled quantity, what is left working, volume-weighted price and status code per order,
    written to ``filled`` (zeros on entry), ``rest``, ``avg`` and ``status`` (one entry per order;
    the caller makes them: a compiled function's returned arrays cost more to hand back).

    ``fill_pos`` maps each fill to its order; ``stopped`` marks orders cut short for lack of
    funds (canceled, nothing left working; empty: none). Status codes are those of ``OrderStatus``.
    Returns how many orders have something left working.
    """
    n = len(filled)
    notional = np.zeros(n)
    for f in range(len(fill_pos)):
        filled[fill_pos[f]] += fill_qty[f]
        notional[fill_pos[f]] += fill_qty[f] * fill_price[f]
    any_stopped = len(stopped) > 0
    n_working = 0
    for i in range(n):
        avg[i] = notional[i] / filled[i] if filled[i] != 0.0 else np.nan
        stop = any_stopped and stopped[i]
        r = 0.0 if codes[i] != OK or stop else qty[i] - filled[i]
        rest[i] = r
        if r > 1e-12:
            n_working += 1
        if codes[i] != OK:
            status[i] = 5                 # REJECTED
        elif stop:
            status[i] = 4                 # CANCELED
        elif filled[i] > 0 and r <= 1e-12:
            status[i] = 3                 # FILLED
        elif filled[i] > 0:
            status[i] = 2                 # PARTIAL
        else:
            status[i] = 1                 # NEW
    return n_working


@njit(cache=True, nogil=True)
def mark(cash, pos, px):
    """Cash plus the positions marked at ``px`` (a missing price marks at zero)."""
    v = 0.0
    for j in range(len(pos)):
        p = px[j]
        if not np.isnan(p):
            v += pos[j] * p
    return cash + v


@njit(cache=True, nogil=True)
def _mark_bar(b, c, pos, close_ff, cash, equity, gross, net):
    g = 0.0
    v = 0.0
    for j in range(len(pos)):
        p = close_ff[b, j]
        if not np.isnan(p) and pos[j] != 0.0:
            x = pos[j] * p
            v += x
            g += abs(x)
    cash[b] = c
    net[b] = v
    gross[b] = g
    equity[b] = c + v


@njit(cache=True, nogil=True)
def equity_sweep(pos, c, b, log_bar, log_sym, log_dq, log_dcash, close_ff, cash, equity, gross, net, end):
    """Rebuild cash, equity, gross and net exposure bar by bar from a stretch of the change log.

    ``pos`` and ``c`` hold positions and cash before the stretch, ``b`` the first bar not yet
    written; a bar is written once every change stamped on it has been applied, and the bars up
    to ``end`` are written after the stretch (pass 0 while more of the log follows). The log must
    be ordered by bar. Returns (cash, next bar to write), so memory stays one position vector
    whatever the size of the run.
    """
    for e in range(len(log_bar)):
        eb = log_bar[e]
        while b < eb:
            _mark_bar(b, c, pos, close_ff, cash, equity, gross, net)
            b += 1
        pos[log_sym[e]] += log_dq[e]
        c += log_dcash[e]
    while b < end:
        _mark_bar(b, c, pos, close_ff, cash, equity, gross, net)
        b += 1
    return c, b
