"""Book-keeping of the simulator: cash, positions, average cost, realised P&L and the
state-change log from which the equity curve is rebuilt exactly, bar by bar, over arrays."""

from __future__ import annotations

import numpy as np


class Book:
    """Cash and positions of a simulated account, plus every change with the bar it happened on."""

    def __init__(self, n_symbols: int, cash: float):
        self.initial_cash = float(cash)
        self.cash = float(cash)
        self.pos = np.zeros(n_symbols)
        self.avg_cost = np.zeros(n_symbols)
        self.realized = np.zeros(n_symbols)
        self.fees = np.zeros(n_symbols)
        # change log: per event, bar index, symbol, signed quantity change, cash change
        self._bars: list[np.ndarray] = []
        self._syms: list[np.ndarray] = []
        self._dq: list[np.ndarray] = []
        self._dcash: list[np.ndarray] = []
        self.last_event_bar = -1

    def apply_fills(self, bar: int, sym: np.ndarray, side: np.ndarray, qty: np.ndarray, price: np.ndarray,
                    fee: np.ndarray) -> None:
        """Book fills on ``bar``; ``sym`` must not repeat within one call."""
        if len(qty) == 0:
            return
        signed = side * qty
        old = self.pos[sym]
        new = old + signed
        # realised P&L on the part that reduces |position|; average cost on the part that adds
        reducing = (old != 0) & (np.sign(signed) != np.sign(old))
        closed = np.where(reducing, np.minimum(np.abs(signed), np.abs(old)), 0.0)
        self.realized[sym] += closed * (price - self.avg_cost[sym]) * np.sign(old)
        opened = np.abs(signed) - closed
        keep_old = np.where(reducing, np.abs(old) - closed, np.abs(old))
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = np.where(np.abs(new) > 0,
                           (keep_old * self.avg_cost[sym] + opened * price) / np.maximum(keep_old + opened, 1e-300),
                           0.0)
        self.avg_cost[sym] = np.where(np.abs(new) > 1e-12, avg, 0.0)
        self.pos[sym] = np.where(np.abs(new) > 1e-12, new, 0.0)
        dcash = -(signed * price) - fee
        self.cash += float(dcash.sum())
        self.fees[sym] += fee
        self._log(bar, sym, signed, dcash)

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
        self._bars.append(np.full(len(sym), bar, np.int64))
        self._syms.append(np.asarray(sym, np.int64))
        self._dq.append(np.asarray(dq, float))
        self._dcash.append(np.asarray(dcash, float))
        self.last_event_bar = max(self.last_event_bar, bar)

    def history(self, n_bars: int, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
        """Cash (n_bars,) and positions (n_bars, n_symbols) after the events of each bar."""
        cash = np.full(n_bars, self.initial_cash)
        pos = np.zeros((n_bars, n_symbols))
        if self._bars:
            bars = np.concatenate(self._bars)
            syms = np.concatenate(self._syms)
            np.add.at(pos, (bars, syms), np.concatenate(self._dq))
            cash += np.cumsum(np.bincount(bars, weights=np.concatenate(self._dcash), minlength=n_bars))
            np.cumsum(pos, axis=0, out=pos)
        return cash, pos
