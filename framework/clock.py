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
    """Simulated time that the backtest driver moves forward batch by batch.

    The time is also kept as integer nanoseconds (``now_ns``): comparing two ``datetime64`` scalars
    costs about a microsecond, two ints a hundredth of that, and the simulator asks at every cycle."""

    def __init__(self, start: np.datetime64):
        self._set(np.datetime64(start, "ns"))

    def _set(self, t: np.datetime64) -> None:
        self._now, self._ns = t, _ns(t)

    def now(self) -> np.datetime64:
        return self._now

    def now_ns(self) -> int:
        """The time as nanoseconds since the epoch (UTC)."""
        return self._ns

    def advance(self, t: np.datetime64) -> None:
        t = np.datetime64(t, "ns")
        ns = _ns(t)
        if ns < self._ns:
            raise ValueError(f"the simulated clock cannot go back from {self._now} to {t}")
        self._now, self._ns = t, ns

    def sleep(self, seconds: float) -> None:
        self._set(self._now + np.timedelta64(int(seconds * 1e9), "ns"))


def _ns(t: np.datetime64) -> int:
    """Nanoseconds since the epoch of a datetime64[ns] (``item()`` gives them as an int, four times
    faster than a cast; NaT has none)."""
    v = t.item()
    if not isinstance(v, int):
        raise ValueError(f"the simulated clock needs a time, not {t}")
    return v
