"""Book-keeping of the simulator: cash, positions, average cost, realised P&L and the
state-change log from which the equity curve is rebuilt exactly, bar by bar, over arrays."""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 16     # change-log rows per chunk: the log grows without copying what it holds


class Book:
    """Cash and positions of a simulated account, plus every change with the bar it happened on.

    The change log (bar, symbol, signed quantity change, cash change) is kept in fixed-size chunks
    of arrays that the compiled booking loop writes into directly.
    """

    def __init__(self, n_symbols: int, cash: float):
        from brokers import sim_kernels

        self._k = sim_kernels
        self.n_symbols = n_symbols
        self.initial_cash = float(cash)
        self.cash = float(cash)
        self.pos = np.zeros(n_symbols)
        self.avg_cost = np.zeros(n_symbols)
        self.realized = np.zeros(n_symbols)
        self.fees = np.zeros(n_symbols)
        self.last_event_bar = -1
        self._full: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._n = 0
        self._cur = self._chunk(_CHUNK)

    @staticmethod
    def _chunk(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return np.empty(size, np.int32), np.empty(size, np.int32), np.empty(size), np.empty(size)

    def _room(self, n: int) -> None:
        if self._n + n > len(self._cur[0]):
            if self._n:
                self._full.append(tuple(a[:self._n] for a in self._cur))  # type: ignore[arg-type]
            self._cur, self._n = self._chunk(max(_CHUNK, n)), 0

    def apply_fills(self, bar: int, sym: np.ndarray, side: np.ndarray, qty: np.ndarray, price: np.ndarray,
                    fee: np.ndarray) -> np.ndarray | None:
        """Book fills on ``bar``, sells first, then buys, one after the other (a symbol may repeat).

        Returns the booking order (positions into the arguments), or None when it is the given order.
        """
        n = len(qty)
        if n == 0:
            return None
        self._room(n)
        lb, ls, lq, lc = self._cur
        self.cash, self._n, moved = self._k.book_fills(
            self.pos, self.avg_cost, self.realized, self.fees, self.cash, bar, sym, side, qty, price, fee,
            lb, ls, lq, lc, self._n)
        self.last_event_bar = max(self.last_event_bar, bar)
        return np.argsort(side, kind="stable") if moved else None

    def apply_split(self, bar: int, sym: np.ndarray, ratio: np.ndarray) -> None:
        """Multiply positions by ``ratio`` (new shares per old share); value and cash unchanged."""
        held = self.pos[sym] != 0
        if not held.any():
            return
        sym, ratio = sym[held], ratio[held]
        dq = self.pos[sym] * (ratio - 1.0)
        self.pos[sym] *= ratio
        self.avg_cost[sym] /= ratio
        self._log(bar, sym, dq, np.zeros(len(sym)))

    def _log(self, bar: int, sym: np.ndarray, dq: np.ndarray, dcash: np.ndarray) -> None:
        n = len(sym)
        self._room(n)
        s = slice(self._n, self._n + n)
        lb, ls, lq, lc = self._cur
        lb[s], ls[s], lq[s], lc[s] = bar, sym, dq, dcash
        self._n += n
        self.last_event_bar = max(self.last_event_bar, bar)

    def _stretches(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """The change log as bar-ordered stretches (one per chunk, or one sorted copy if needed)."""
        cur = self._cur
        parts = self._full + [(cur[0][:self._n], cur[1][:self._n], cur[2][:self._n], cur[3][:self._n])]
        last = -1
        for bars, *_ in parts:
            if len(bars) and (bars[0] < last or (len(bars) > 1 and (bars[1:] < bars[:-1]).any())):
                break
            if len(bars):
                last = int(bars[-1])
        else:
            return parts
        bars, syms, dq, dcash = (np.concatenate(c) for c in zip(*parts))
        o = np.argsort(bars, kind="stable")
        return [(bars[o], syms[o], dq[o], dcash[o])]

    def log(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The change log (bar, symbol, quantity change, cash change), ordered by bar."""
        parts = self._stretches()
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(c) for c in zip(*parts))  # type: ignore[return-value]

    def curve(self, close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cash, equity, gross and net exposure after each bar's changes, marked at ``close``
        (n_bars x n_symbols; a NaN price marks at zero)."""
        n_bars = close.shape[0]
        cash, equity, gross, net = (np.empty(n_bars) for _ in range(4))
        pos = np.zeros(self.n_symbols)
        c, b = self.initial_cash, 0
        parts = self._stretches()
        for k, (bars, syms, dq, dcash) in enumerate(parts):
            c, b = self._k.equity_sweep(pos, c, b, bars, syms, dq, dcash, close, cash, equity, gross, net,
                                        n_bars if k == len(parts) - 1 else 0)
        return cash, equity, gross, net

    def history(self, n_bars: int, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
        """Cash (n_bars,) and positions (n_bars, n_symbols) after the events of each bar."""
        cash = np.full(n_bars, self.initial_cash)
        pos = np.zeros((n_bars, n_symbols))
        bars, syms, dq, dcash = self.log()
        if len(bars):
            np.add.at(pos, (bars, syms), dq)
            cash += np.cumsum(np.bincount(bars, weights=dcash, minlength=n_bars))
            np.cumsum(pos, axis=0, out=pos)
        return cash, pos
