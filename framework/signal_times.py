"""Parse the time column of a signal archive to UTC nanoseconds, saying which values cannot be used.

Times are ISO 8601 strings (or typed timestamps in Parquet); a zone is ``Z`` or ``±HH[:MM]``.
Epoch numbers are rejected as ambiguous. With ``timezone`` (``signals.timezone``), a time written
without a zone is read there; a local time that does not exist or is ambiguous there (DST change)
is a problem, not a guess. Distinct values are parsed once (archives repeat each time per symbol).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from framework.errors import Problem
from framework.signal_files import _as_text, _is_blank, _Rows, _show

_NAT = np.iinfo(np.int64).min
_ZONE = re.compile(r"\d[Tt ]\d{2}.*?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
_T_OK, _T_EMPTY, _T_BAD, _T_NAIVE, _T_LOCAL = range(5)


def check_times(col: pd.Series, rows: _Rows, timezone: str | None,
                 problems: list[Problem], home: str = "the strategy file") -> tuple[np.ndarray, np.ndarray]:
    """Parse times to UTC nanoseconds (int64 per row) and report the ones that cannot be used.

    ``home`` is the file where ``signals.timezone`` goes, named in the message about a naive time.
    """
    codes, uniq = pd.factorize(col)
    u_ns, u_state = _parse_times(uniq, timezone)
    ok_code = codes >= 0
    safe = np.maximum(codes, 0)
    ns = np.where(ok_code, u_ns[safe] if len(uniq) else _NAT, _NAT)
    state = np.where(ok_code, u_state[safe] if len(uniq) else _T_EMPTY, _T_EMPTY)

    def say(i: int) -> str:
        s = int(state[i])
        shown = _show(col.iloc[i])
        if s == _T_EMPTY or _is_blank(col.iloc[i]):
            return "time is empty"
        if s == _T_NAIVE:
            return (f"time {shown} has no zone; add one (e.g. Z or +00:00) or set signals.timezone "
                    f"(e.g. America/New_York) in {home}")
        if s == _T_LOCAL:
            return f"time {shown} does not exist or is ambiguous in {timezone}"
        return f"unparseable time {shown} (use ISO 8601 with a zone, e.g. 2024-01-02T15:30:00Z)"

    rows.report(np.flatnonzero(state != _T_OK), "time", say, "a bad time", problems)
    return ns, state == _T_OK


def _parse_times(uniq: pd.Index, timezone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Parse distinct time values; return UTC nanoseconds and a state per value."""
    n = len(uniq)
    ns = np.full(n, _NAT, dtype=np.int64)
    state = np.full(n, _T_BAD, dtype=np.int8)
    if pd.api.types.is_datetime64_any_dtype(uniq.dtype):
        idx = pd.DatetimeIndex(uniq)
        if idx.tz is not None:
            ns[:], state[:] = _utc_ns(idx.tz_convert("UTC"))
        elif timezone is None:
            state[:] = _T_NAIVE
        else:
            ns[:], state[:] = _utc_ns(idx.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT"), _T_LOCAL)
        return ns, state
    text = _as_text(uniq).str.strip()
    zoned = text.str.contains(_ZONE, na=False).to_numpy(bool)
    if zoned.any():
        parsed = pd.DatetimeIndex(pd.to_datetime(text[zoned], format="ISO8601", utc=True, errors="coerce"))
        ns[zoned], state[zoned] = _utc_ns(parsed)
    naive = np.flatnonzero(~zoned)
    if len(naive):
        try:
            parsed = pd.DatetimeIndex(pd.to_datetime(text.iloc[naive], format="ISO8601", errors="coerce"))
        except (ValueError, TypeError):  # a zone form the pattern missed, mixed with naive ones
            return ns, state
        if parsed.tz is not None:
            return ns, state
        readable = ~parsed.isna()
        if timezone is None:
            state[naive[readable]] = _T_NAIVE
        else:
            local = parsed.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
            got_ns, got_state = _utc_ns(local, _T_LOCAL)
            got_state[~readable] = _T_BAD
            ns[naive], state[naive] = got_ns, got_state
    return ns, state


def _utc_ns(idx: pd.DatetimeIndex, missing: int = _T_BAD) -> tuple[np.ndarray, np.ndarray]:
    """Return int64 UTC nanoseconds and states; NaT or out of the nanosecond range gives ``missing``."""
    values = (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).to_numpy()
    ok = ~np.isnat(values) & (values >= np.datetime64("1678-01-01")) & (values < np.datetime64("2262-01-01"))
    ns = np.where(ok, values, np.datetime64(0, "s")).astype("datetime64[ns]").view(np.int64)
    return np.where(ok, ns, _NAT), np.where(ok, _T_OK, missing).astype(np.int8)
