"""Protective exits in the simulator (SPEC §20): a stop and a take-profit on one position are
working orders linked one-cancels-the-other, triggered within bars like any stop or limit order.

Which one fires on a bar that reaches both levels: the open decides first — a gap through a level
fills that level's order at the open (a long that opens under its stop is stopped at the open; one
that opens over its take-profit takes it at the open); otherwise, when the bar's range reaches both
levels, the stop fires (the conservative reading of a bar whose path inside is unknown, as the
regime framework's guide and the peers' backtesters do). When one member of a pair fills, the other
is cancelled. The stop pays slippage like a market order (it becomes one when triggered); the
take-profit, a limit, fills at its price or better; both pay the venue's fees.
"""

from __future__ import annotations

from brokers.sim_orders import Working, cross_price
from framework.data import BarArrays
from framework.types import OrderType


def oco_key(batch_id: str, sym: int) -> str:
    """The link between the stop and the take-profit one batch placed on one symbol."""
    return f"{batch_id}|{sym}"


def trigger_price(bars: BarArrays, bar: int, w: Working, working: list[Working]) -> float | None:
    """Price at which protective order ``w`` fills on ``bar`` given its linked sibling in
    ``working`` (None: it does not fill on this bar, or the sibling fires instead)."""
    base = cross_price(bars, bar, w)
    if base is None or not w.oco:
        return base
    o = float(bars.open[bar, w.sym])
    if base == o:
        return base                       # the open gapped through this level: it fires first
    for s in working:
        if s is w or s.oco != w.oco:
            continue
        sb = cross_price(bars, bar, s)
        if sb is None:
            continue
        if sb == o:
            return None                   # the sibling fired at the open
        if s.batch.order_type == OrderType.STOP and w.batch.order_type != OrderType.STOP:
            return None                   # both reached within the bar: the stop first
    return base


def linked(working: list[Working], fired: set[str]) -> tuple[list[Working], list[Working]]:
    """Split ``working`` into the orders that keep working and the linked siblings of the
    protective orders that fired (``fired``: their OCO keys), which are cancelled."""
    keep: list[Working] = []
    gone: list[Working] = []
    for w in working:
        (gone if w.oco and w.oco in fired and not w.filled else keep).append(w)
    return keep, gone
