"""Market calendars (exchange_calendars): trading sessions and whether a moment is in session."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd


@lru_cache(maxsize=8)
def calendar(name: str):
    import exchange_calendars as xcals

    return xcals.get_calendar(name)


def sessions(start: str, end: str, name: str = "XNYS") -> pd.DatetimeIndex:
    """Trading dates of ``name`` between ``start`` and ``end`` (tz-naive dates)."""
    return pd.DatetimeIndex(calendar(name).sessions_in_range(start, end))


def session_open_mask(hours: str, times: np.ndarray) -> np.ndarray:
    """Whether each UTC time falls inside a trading session of ``hours`` ("24/7" or a calendar name)."""
    if hours == "24/7":
        return np.ones(len(times), dtype=bool)
    cal = calendar(hours)
    idx = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    return np.array([cal.is_open_on_minute(t, ignore_breaks=True) for t in idx.floor("min")], dtype=bool)
