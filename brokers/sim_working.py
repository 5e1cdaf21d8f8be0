"""Orders that keep working on later bars in the simulator: what ``SimulatedBroker`` does with the
bars a clock move passes, and with an order that did not fill whole on its first bar.

``WorkingOrders`` is a part of ``SimulatedBroker`` (its one subclass), kept in its own module: a
market order cut short by the volume cap, a limit or stop order not yet crossed, and the protective
exits of SPEC §20 rest in ``_working`` and are tried bar by bar (splits first, the open before the
range, a stop before a take-profit when one bar reaches both, ``brokers.sim_exits``). Fills of
orders from the batch being executed go back to it; the others become reports for ``sync()``.
"""

from __future__ import annotations

import numpy as np

from brokers.sim_book import Book
from brokers.sim_exits import linked, trigger_price
from brokers.sim_orders import Working, cross_price
from framework.data import BarArrays
from framework.types import ExecutionReport, FillBatch, OrderBatch, OrderStatus, OrderType

_S = OrderStatus


class WorkingOrders:
    """The working-order part of ``SimulatedBroker`` (which sets these attributes and provides the
    fill, the volume cap and the day-start note)."""

    bars: BarArrays
    book: Book
    times: np.ndarray
    volume_cap: float | None
    _fill_px: np.ndarray
    _processed: int
    _working: list[Working]
    _unsynced: list[ExecutionReport]

    def _fill(self, bar: int, batch: OrderBatch, idx: np.ndarray | None, fq: np.ndarray,
              messages: dict[int, str], base: np.ndarray | None = None, slip: bool = True) -> FillBatch:
        raise NotImplementedError

    def _cap(self, bar: int, sym: np.ndarray, qty: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _note_day_start(self, bar: int) -> None:
        raise NotImplementedError

    def _process_through(self, k: int) -> None:
        if k <= self._processed:
            return
        start = self._processed + 1
        sr = self.bars.split_ratio
        if not self._working:
            if sr is not None:
                seg = sr[start:k + 1]
                for rel, j in zip(*np.nonzero(seg != 1.0)):
                    self._note_day_start(start + int(rel))
                    self.book.apply_split(start + int(rel), np.array([j]), np.array([seg[rel, j]]))
            self._processed = k
            return
        for b in range(start, k + 1):
            self._process_bar(b)

    def _process_bar(self, b: int, batch: OrderBatch | None = None) -> list[tuple[Working, FillBatch, float]]:
        """Apply bar ``b``'s splits, then try every working order on it; returns the fills of
        ``batch``'s orders (the others become reports for ``sync()``)."""
        sr = self.bars.split_ratio
        if sr is not None and (sr[b] != 1.0).any():
            js = np.flatnonzero(sr[b] != 1.0)
            self._note_day_start(b)
            self.book.apply_split(b, js, sr[b, js])
            for w in self._working:
                if sr[b, w.sym] != 1.0:
                    w.remaining *= sr[b, w.sym]
                    w.filled *= sr[b, w.sym]
                    w.ratio *= sr[b, w.sym]
        self._processed = b
        return self._fill_working(b, batch, only=False) if self._working else []

    def _keep_working(self, batch: OrderBatch, rest: np.ndarray, filled: np.ndarray, fills: FillBatch,
                      from_bar: int) -> None:
        working = np.flatnonzero(rest > 1e-12).tolist()
        if not working:
            return
        cids = batch.client_order_ids()
        value = fills.qty * fills.price
        for i in working:
            self._working.append(Working(batch, i, cids[i], int(batch.symbol_idx[i]), int(batch.side[i]),
                                          float(rest[i]), float(filled[i]), float(value[fills.order_pos == i].sum()),
                                          from_bar=from_bar))

    def _fill_working(self, bar: int, batch: OrderBatch | None = None,
                      only: bool = True) -> list[tuple[Working, FillBatch, float]]:
        """Try the working orders of ``batch`` (every working order unless ``only``) on ``bar``.

        Fills of orders from ``batch`` are returned; fills of older orders become reports for
        ``sync()``. Orders done (filled, or stopped by insufficient funds) stop working.
        """
        still: list[Working] = []
        got: list[tuple[Working, FillBatch, float]] = []
        fired: set[str] = set()        # protective pairs one of which filled on this bar
        gone: list[Working] = []
        for w in self._working:
            if (only and batch is not None and w.batch is not batch) or bar < w.from_bar:
                still.append(w)
                continue
            b = w.batch
            if np.isnan(self.bars.open[bar, w.sym]):
                still.append(w)            # no bar for this symbol now (closed session)
                continue
            base = None
            if w.oco and w.oco in fired:
                gone.append(w)             # its linked sibling fired earlier on this bar
                continue
            if b.order_type != OrderType.MARKET:
                base = trigger_price(self.bars, bar, w, self._working) if w.oco else cross_price(self.bars, bar, w)
                if base is None:
                    still.append(w)
                    continue
            elif np.isnan(self._fill_px[bar, w.sym]):
                still.append(w)
                continue
            q = w.remaining
            if self.volume_cap is not None:
                q = min(q, float(self._cap(bar, np.array([w.sym]), np.array([q]))[0]))
            if q <= 0:
                still.append(w)
                continue
            fq = np.zeros(len(b))
            fq[w.pos] = q
            msgs: dict[int, str] = {}
            fills = self._fill(bar, b, np.array([w.pos]), fq, msgs, None if base is None else np.array([base]),
                               slip=b.order_type != OrderType.LIMIT)
            g = float(fills.qty.sum())
            if w.oco and g > 0:
                fired.add(w.oco)
            w.filled += g
            w.remaining -= g
            w.notional += float((fills.qty * fills.price).sum())
            if w.remaining > 1e-12 and not msgs:
                still.append(w)
            if batch is not None and w.batch is batch:
                got.append((w, fills, g))
                continue
            st = _S.FILLED if w.remaining <= 1e-12 else (_S.CANCELED if msgs else _S.PARTIAL)
            sub = b.subset(np.arange(len(b)) == w.pos)
            self._unsynced.append(ExecutionReport(
                sub, np.array([int(st)], np.int8), np.array([w.filled]),
                np.array([w.notional / w.filled if w.filled else np.nan]),
                FillBatch(fills.time, fills.symbol_idx, fills.side, fills.qty, fills.price, fills.fee,
                          fills.slippage, np.zeros(len(fills), np.int64)),
                None, {0: msgs[w.pos]} if msgs else {}, np.array([self.times[bar]])))
        if fired:
            still, more = linked(still, fired)
            for w in gone + more:
                self._unsynced.append(self._cancelled(w, bar, "canceled: its linked stop-loss/take-profit filled"))
        self._working = still
        return got

    def _cancelled(self, w: Working, bar: int, message: str) -> ExecutionReport:
        sub = w.batch.subset(np.arange(len(w.batch)) == w.pos)
        return ExecutionReport(sub, np.array([int(_S.CANCELED)], np.int8), np.array([w.filled]),
                               np.array([w.notional / w.filled if w.filled else np.nan]), FillBatch.empty(),
                               None, {0: message}, np.array([self.times[bar]]))
