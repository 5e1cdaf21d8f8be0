"""Compiled loops of the reports (numba, loaded only when a report is made).

``average_cost`` replays one symbol's fills with the average-cost accounting of
``framework.reports.attribution``: a backtest can have a million fills, and the loop is sequential.
The arithmetic is the same IEEE double arithmetic as the Python it replaces, bit for bit (numba
without fastmath).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def average_cost(qtys: np.ndarray, prices: np.ndarray) -> tuple[float, float, float]:
    """(position, average cost, realised P&L) after the signed fill quantities ``qtys`` at ``prices``."""
    position, avg_cost, realised = 0.0, 0.0, 0.0
    for k in range(len(qtys)):
        d, p = qtys[k], prices[k]
        if position == 0.0 or np.sign(d) == np.sign(position):
            new_position = position + d
            avg_cost = (abs(position) * avg_cost + abs(d) * p) / abs(new_position)
            position = new_position
            continue
        closed = min(abs(d), abs(position))
        realised += closed * (p - avg_cost) * np.sign(position)
        if abs(d) > abs(position):
            avg_cost = p
        position += d
        if abs(position) < 1e-12:
            position, avg_cost = 0.0, 0.0
    return position, avg_cost, realised
