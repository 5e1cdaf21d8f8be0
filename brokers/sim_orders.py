"""Orders inside the simulator: the ones still working, the limit/stop crossing rule, and
batches built over another universe than the simulator's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.broker import OrderState
from framework.data import BarArrays
from framework.errors import DataError, Problem
from framework.types import ExecutionReport, FillBatch, OrderBatch, OrderStatus, OrderType, Universe


@dataclass(slots=True)
class Working:
    """An order still working in the simulator (waiting for a bar, volume-capped or resting)."""

    batch: OrderBatch
    pos: int                 # index of the order in its batch
    client_id: str
    sym: int
    side: int
    remaining: float
    filled: float = 0.0
    notional: float = 0.0
    from_bar: int = 0        # first bar on which it may fill
    ratio: float = 1.0       # split adjustment since it was sized
    oco: str = ""            # protective exits: the key linking a stop and its take-profit (sim_exits)

    def state(self, status: OrderStatus | None = None, message: str = "") -> OrderState:
        """The order as the venue reports it (working, unless ``status`` says otherwise)."""
        st = status if status is not None else (OrderStatus.PARTIAL if self.filled else OrderStatus.NEW)
        b = self.batch
        stop = None if b.stop_price is None else float(b.stop_price[self.pos]) / self.ratio
        lim = None if b.limit_price is None else float(b.limit_price[self.pos]) / self.ratio
        return OrderState(self.client_id, None, b.universe.symbols[self.sym], self.side,
                          self.filled + self.remaining, self.filled,
                          (self.notional / self.filled) if self.filled else None, int(st),
                          str(b.order_type), message, stop_price=stop, limit_price=lim)


def order_state(rep: ExecutionReport, i: int, cid: str, working: Working | None) -> OrderState:
    """Order ``i`` of ``rep`` as the venue reports it now (``working``: its entry if still working)."""
    b = rep.batch
    filled = working.filled if working else float(rep.filled_qty[i])
    st = (OrderStatus.PARTIAL if filled else OrderStatus.NEW) if working else OrderStatus(int(rep.status[i]))
    return OrderState(cid, None, b.universe.symbols[b.symbol_idx[i]], int(b.side[i]), float(b.qty[i]), filled,
                      None if np.isnan(rep.avg_price[i]) else float(rep.avg_price[i]), int(st), str(b.order_type),
                      rep.messages.get(i, ""))


def cross_price(bars: BarArrays, bar: int, w: Working) -> float | None:
    """Price at which a limit or stop order fills on ``bar``, None if the bar's range does not
    cross it; the open first, so a gap through the price fills at the open."""
    b = w.batch
    o, h, lo = bars.open[bar, w.sym], bars.high[bar, w.sym], bars.low[bar, w.sym]
    if np.isnan(o):
        return None
    if b.order_type == OrderType.LIMIT:
        lim = float(b.limit_price[w.pos]) / w.ratio  # type: ignore[index]
        if w.side > 0:
            return o if o <= lim else (lim if lo <= lim else None)
        return o if o >= lim else (lim if h >= lim else None)
    stop = float(b.stop_price[w.pos]) / w.ratio  # type: ignore[index]
    if w.side > 0:
        return o if o >= stop else (stop if h >= stop else None)
    return o if o <= stop else (stop if lo <= stop else None)


def refusals(batch: OrderBatch, codes: np.ndarray, position: np.ndarray) -> dict[int, str]:
    """Why the venue refuses each order with a non-zero ``sim_kernels.venue_check`` code, by order
    position; ``position`` is the holding per symbol when the batch arrived."""
    from brokers.sim_kernels import OFF_INCREMENT, SHORT

    u = batch.universe
    sym, qty = batch.symbol_idx, batch.qty
    ref = np.nan_to_num(batch.ref_price)
    out: dict[int, str] = {}
    for i in np.flatnonzero(codes).tolist():
        j = int(sym[i])
        if codes[i] == SHORT:
            out[i] = f"rejected: {u.symbols[j]} cannot be sold short at this venue (holding {position[j]:g})"
        elif codes[i] == OFF_INCREMENT:
            out[i] = f"rejected: quantity {qty[i]:g} is not a multiple of the increment {u.qty_increment[j]:g}"
        else:
            out[i] = (f"rejected: notional {qty[i] * ref[i]:.2f} under the minimum "
                      f"{u.min_notional[j]:g} (or quantity under {u.min_qty[j]:g})")
    return out


def in_universe(batch: OrderBatch, universe: Universe) -> tuple[OrderBatch, np.ndarray]:
    """``batch`` over ``universe`` (the same orders and client order ids), and the map from
    ``universe`` positions back to the batch's own (-1 where the batch has no such symbol)."""
    missing = [s for s in batch.universe.symbols if s not in universe.index]
    if missing:
        raise DataError(Problem("<bars>", None, "symbol", f"no bars for {missing}"))
    own = np.array([universe.index[s] for s in batch.universe.symbols], np.int64)
    ours = OrderBatch(universe, batch.time, batch.batch_id, batch.leg, own[batch.symbol_idx], batch.side, batch.qty,
                      batch.ref_price, batch.order_type, batch.limit_price, batch.stop_price, batch.notional)
    back = np.full(len(universe), -1, np.int64)
    back[own] = np.arange(len(own))
    return ours, back


def report_for(batch: OrderBatch, rep: ExecutionReport, back: np.ndarray) -> ExecutionReport:
    """``rep`` (made over another universe) as the report of ``batch``: fills in its symbols."""
    f = rep.fills
    fills = FillBatch(f.time, back[f.symbol_idx], f.side, f.qty, f.price, f.fee, f.slippage, f.order_pos, f.trade_ids)
    return ExecutionReport(batch, rep.status, rep.filled_qty, rep.avg_price, fills, rep.broker_ids, rep.messages,
                           rep.status_times)
