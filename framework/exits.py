"""Protective exits: the engine step that keeps a stop-loss and a take-profit on every held
position whose target names them (SPEC §20).

One code path for backtest, paper and live: after a cycle's legs, ``protect_positions`` compares
the protective orders working at the broker (owned orders of legs ``stop`` and ``take``, SPEC §17)
with what the target asks for, cancels those that no longer fit and hands the missing ones to
``Broker.protect`` — the simulator links them as one-cancels-the-other working orders, the venues
place their own protective orders. Before the legs, ``release`` cancels the protective orders of
symbols the cycle trades, because a venue holds their quantity (an Alpaca sell of a quantity a
stop holds is refused) and the quantity they protect is about to change.

Levels: a price, or a distance from the entry fill (``3%``), where the entry fill is the
position's average cost at the broker after the legs. Equities are protected in whole shares (the
venues' protective orders take no fractional quantity); crypto in full. Orders are placed under the client order
ids ``client_order_id(batch, symbol, "stop" | "take")`` of the batch that placed them, journaled
before they are sent; a re-run of that batch (crash recovery) finds them working with the same
levels and sends nothing. A later batch with the same levels and quantity keeps them; one that
moves a level or changes the quantity replaces them; one that no longer holds the position cancels
them. A level on the wrong side of the current price (it would fire at once) is not placed: a
decision says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from framework.broker import OrderState, Protection
from framework.order_ids import PROTECTIVE_LEGS, Leg, client_order_id, leg_of, paired_exit_id
from framework.types import ExitLevels, OrderBatch, OrderType, RiskDecision, TargetPortfolio, Universe

if TYPE_CHECKING:
    from framework.engine import Pipeline

_REL = 1e-9


def protective(o: OrderState) -> bool:
    """Whether an order is one of Parity's protective exits (leg ``stop`` or ``take``)."""
    return leg_of(o.client_order_id) in PROTECTIVE_LEGS


def working_exits(p: Pipeline) -> list[OrderState]:
    return [o for o in p.broker.open_orders() if protective(o)]


def release(p: Pipeline, legs: tuple[OrderBatch, ...], t: np.datetime64) -> None:
    """Cancel the protective orders of the symbols ``legs`` trade (the cycle is about to trade them)."""
    have = working_exits(p)
    if not have:                # the usual case without exit levels: nothing to look up
        return
    symbols = {s for leg in legs for s in leg.symbols()}
    ids = [o.client_order_id for o in have if o.symbol in symbols]
    if ids:
        p.broker.cancel(ids)
        p.journal.cancels(ids, t, "canceled: the position it protects is being traded")


def levels_for(levels: ExitLevels, qty: np.ndarray, entry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute stop and take-profit prices per symbol for signed holdings ``qty`` entered at
    ``entry`` (NaN where none): a percentage is a distance from the entry, against the position for
    the stop and with it for the take-profit."""
    d = np.sign(qty)
    stop = np.where(levels.stop_pct, entry * (1.0 - d * levels.stop), levels.stop)
    take = np.where(levels.take_pct, entry * (1.0 + d * levels.take), levels.take)
    return stop, take


def round_level(px: np.ndarray, universe: Universe) -> np.ndarray:
    """A level on the price increment: the venue's for crypto; for equities a cent at $1 and
    above, a hundredth of a cent below (the sub-penny rule)."""
    inc = np.where(universe.crypto, universe.ticks(), np.where(px >= 1.0, np.maximum(universe.ticks(), 0.01), 1e-4))
    return np.round(np.round(px / inc) * inc, 10)


def protect_positions(p: Pipeline, seq: int, target: TargetPortfolio) -> list:
    """After the legs: make the working protective orders what the target asks for; returns the
    reports of the orders placed (and records decisions for levels that cannot be placed)."""
    lv = target.levels
    u = p.universe
    have = working_exits(p)
    if lv is None and not have:
        return []
    held_qty = p.broker.position_vector(u)
    qty = protected_qty(held_qty, u)
    entry = np.full(len(u), np.nan)
    for pos in p.broker.positions():
        k = u.index.get(pos.symbol)
        if k is not None:
            entry[k] = pos.avg_cost
    prices = p.broker.prices(u)
    # absent from the batch and held as is: leave its exits alone
    keep_absent = target.absent_hold & np.isnan(target.weights) & (held_qty != 0)
    stop, take, decisions = wanted_levels(target, qty, entry, prices, u)
    if decisions:
        p.journal.decisions(seq, tuple(decisions))
    by_sym: dict[str, dict[str, OrderState]] = {}
    for o in have:
        by_sym.setdefault(o.symbol, {})[leg_of(o.client_order_id)] = o
    stale: list[str] = []
    want_stop = np.zeros(len(u), bool)
    want_take = np.zeros(len(u), bool)
    for j, sym in enumerate(u.symbols):
        cur = by_sym.pop(sym, {})
        if keep_absent[j]:
            continue
        q = abs(float(qty[j]))
        ok_stop = _same(cur.get(Leg.STOP_LOSS.value), q, stop[j], "stop")
        ok_take = _same(cur.get(Leg.TAKE_PROFIT.value), q, take[j], "take")
        if ok_stop and ok_take:
            continue
        stale += [o.client_order_id for o in cur.values()]     # linked: replace both
        want_stop[j], want_take[j] = np.isfinite(stop[j]), np.isfinite(take[j])
    for cur in by_sym.values():                                 # symbols outside the universe: not ours to keep
        stale += [o.client_order_id for o in cur.values()]
    if stale:
        p.broker.cancel(stale)
        p.journal.cancels(stale, target.time, "canceled: the target moved or dropped the levels it protects")
    if not (want_stop.any() or want_take.any()):
        return []
    orders = Protection(_batch(u, target, qty, prices, want_stop, Leg.STOP_LOSS, stop),
                        _batch(u, target, qty, prices, want_take, Leg.TAKE_PROFIT, take))
    for b in (orders.stops, orders.takes):
        p.journal.intents(seq, b)
    reports = p.broker.protect(orders, p.journal.update)
    for rep in reports:
        p.journal.report(seq, rep)
    return reports


def protected_qty(held: np.ndarray, universe: Universe) -> np.ndarray:
    """The signed quantity a protective order covers: whole shares for equities (Alpaca's complex
    and GTC orders take no fractional equity quantity, BROKER_API_NOTES §1.5: fractional only for
    market/limit day orders), crypto in full."""
    return np.where(universe.crypto, held, np.sign(held) * np.floor(np.abs(held) + 1e-9))


def wanted_levels(target: TargetPortfolio, qty: np.ndarray, entry: np.ndarray, prices: np.ndarray,
                  u: Universe) -> tuple[np.ndarray, np.ndarray, list[RiskDecision]]:
    """The stop and take-profit prices the target asks for on holdings ``qty`` entered at ``entry``
    (on the price increment; NaN where none: no level, or a position the target does not hold that
    way), and a decision for each level the price has already crossed (not placed, it would fire
    at once; NaN in its place)."""
    n = len(u)
    stop, take = np.full(n, np.nan), np.full(n, np.nan)
    decisions: list[RiskDecision] = []
    if target.levels is None:
        return stop, take, decisions
    w = target.weights
    held = np.isfinite(w) & (np.sign(w) == np.sign(qty)) & (qty != 0)
    stop, take = levels_for(target.levels, qty, entry)
    stop, take = (np.where(held & np.isfinite(x), round_level(np.nan_to_num(x, nan=1.0), u), np.nan)
                  for x in (stop, take))
    d = np.sign(qty)
    with np.errstate(invalid="ignore"):
        for name, x, wrong in (("stop_loss", stop, d * (stop - prices) >= 0),
                               ("take_profit", take, d * (take - prices) <= 0)):
            for j in np.flatnonzero(np.isfinite(x) & np.isfinite(prices) & wrong).tolist():
                decisions.append(RiskDecision(target.time, u.symbols[j], name, "hold", float(x[j]), float(prices[j]),
                                              f"{name} {x[j]:g} is already crossed by the price {prices[j]:g}: "
                                              "not placed (it would fire at once)"))
                x[j] = np.nan
    return stop, take, decisions


def planned_exits(target: TargetPortfolio, final_qty: np.ndarray, held: np.ndarray, held_cost: np.ndarray,
                  prices: np.ndarray, u: Universe) -> tuple[list[dict], list[RiskDecision]]:
    """What ``protect_positions`` would place once a plan's legs fill (``--dry-run``): per symbol
    the quantity covered and the levels, and the decisions for levels the price has crossed. The
    entry of a percentage level is the position's cost where the plan does not change the holding,
    else today's price (the fill's own price is not known before it fills): ``estimated`` says so."""
    qty = protected_qty(final_qty, u)
    same = np.abs(final_qty - held) <= 1e-9 * np.maximum(np.abs(held), 1.0)
    entry = np.where(same & np.isfinite(held_cost), held_cost, prices)
    stop, take, decisions = wanted_levels(target, qty, entry, prices, u)
    lv = target.levels
    out = []
    for j in np.flatnonzero(np.isfinite(stop) | np.isfinite(take)).tolist():
        pct = lv is not None and ((np.isfinite(stop[j]) and bool(lv.stop_pct[j]))
                                  or (np.isfinite(take[j]) and bool(lv.take_pct[j])))
        out.append({"symbol": u.symbols[j], "qty": float(qty[j]),
                    "stop_loss": float(stop[j]) if np.isfinite(stop[j]) else None,
                    "take_profit": float(take[j]) if np.isfinite(take[j]) else None,
                    "estimated": bool(pct and not same[j])})
    return out, decisions


def _same(o: OrderState | None, qty: float, level: float, leg: str) -> bool:
    """Whether working order ``o`` already is the protective order wanted (None wanted when
    ``level`` is NaN)."""
    if o is None:
        return not np.isfinite(level)
    if not np.isfinite(level):
        return False
    px = o.stop_price if leg == "stop" else o.limit_price
    left = o.qty - o.filled_qty
    return (px is not None and abs(px - level) <= _REL * max(abs(level), 1.0)
            and abs(left - qty) <= 1e-9 * max(qty, 1.0))


def exit_ids(batch_id: str, symbol: str) -> tuple[str, str]:
    """Client order ids of the stop and the take-profit one batch places on one symbol: the stop's
    is ``client_order_id(batch, symbol, "stop")``, the take-profit's its pair (``paired_exit_id``)."""
    stop = client_order_id(batch_id, symbol, Leg.STOP_LOSS.value)
    return stop, paired_exit_id(stop)


def _batch(u: Universe, target: TargetPortfolio, qty: np.ndarray, prices: np.ndarray, want: np.ndarray,
           leg: Leg, level: np.ndarray) -> OrderBatch:
    idx = np.flatnonzero(want)
    ids = tuple(exit_ids(target.batch_id, u.symbols[j])[0 if leg == Leg.STOP_LOSS else 1] for j in idx.tolist())
    side = (-np.sign(qty[idx])).astype(np.int8)
    px = level[idx]
    ref = np.where(np.isfinite(prices[idx]), prices[idx], px)
    stop = leg == Leg.STOP_LOSS
    return OrderBatch(u, target.time, target.batch_id, leg.value, idx.astype(np.int64), side, np.abs(qty[idx]), ref,
                      OrderType.STOP if stop else OrderType.LIMIT, None if stop else px, px if stop else None,
                      client_ids=ids)


def held_by_exits(working: list, universe) -> np.ndarray:
    """Quantity per symbol that Parity's resting protective exits hold at the venue (a stop and a
    take-profit of one position hold it once: the larger of the two)."""
    out = np.zeros(len(universe))
    for o in working:
        k = universe.index.get(o.symbol)
        if k is not None and protective(o):
            out[k] = max(out[k], max(o.qty - o.filled_qty, 0.0))
    return out
