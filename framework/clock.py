"""Clocks: the only thing besides the Broker that differs between backtest, paper and live."""

from __future__ import annotations

import time

import numpy as np


class WallClock:
    """Real UTC time, for paper and live runs."""

    def now(self) -> np.datetime64:
        return np.datetime64(time.time_ns(), "ns")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SimClock:
    """Simulated time that the backtest driver moves forward batch by batch."""

    def __init__(self, start: np.datetime64):
        self._now = np.datetime64(start, "ns")

    def now(self) -> np.datetime64:
        return self._now

    def advance(self, t: np.datetime64) -> None:
        t = np.datetime64(t, "ns")
        if t < self._now:
            raise ValueError(f"the simulated clock cannot go back from {self._now} to {t}")
        self._now = t

    def sleep(self, seconds: float) -> None:
        self._now = self._now + np.timedelta64(int(seconds * 1e9), "ns")
