"""Market calendars (exchange_calendars): trading sessions."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd


@lru_cache(maxsize=8)
def calendar(name: str):
    import exchange_calendars as xcals

    return xcals.get_calendar(name)


def sessions(start: str, end: str, name: str = "XNYS") -> pd.DatetimeIndex:
    """Trading dates of ``name`` between ``start`` and ``end`` (tz-naive dates)."""
    return pd.DatetimeIndex(calendar(name).sessions_in_range(start, end))
