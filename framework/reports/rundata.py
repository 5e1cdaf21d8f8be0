"""RunData: everything a report needs about one run, whatever the mode.

The ledger loader (backtest, paper and live alike) builds a ``RunData``; every report, figure and
comparison reads only this object, so nothing in ``framework.reports`` can depend on how the run
was produced. Tables are plain pandas frames with the columns of the run artifacts (SPEC §9):

===========  ==================================================================================
frame        columns
===========  ==================================================================================
equity       time (tz-aware UTC), equity, cash, gross_exposure, net_exposure — one row per
             observation (bar time or snapshot). Exposures are quote-currency amounts
             (gross = Σ|position value|, net = Σ position value), not fractions of equity.
fills        time, symbol, side ("buy"/"sell"), qty (> 0), price (executed, slippage included),
             fee (every charge, quote ccy), order_id, client_order_id; optional ``slippage``:
             the cost of slippage in quote currency, >= 0 when adverse (NaN or absent when the
             run cannot measure it, e.g. no reference price).
             Optional ``leg``: the part of a cycle the order was for (``reduce``, ``add``,
             ``stop``, ``take``: a protective exit that fired, SPEC §20).
orders       time, symbol, side, qty, type, status, client_order_id, filled_qty, avg_price; optional ``leg``
decisions    time, symbol, rule, action, requested, approved, reason
prices       wide: index time (UTC), one column per canonical symbol, the closes used for
             marking; may be empty (live runs without a bar feed).
===========  ==================================================================================

``summary`` holds the SPEC §9 ``summary.json`` keys. ``periods_per_year`` is the annualisation
factor the run decided (see :func:`periods_per_year_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EQUITY_COLUMNS = ("time", "equity", "cash", "gross_exposure", "net_exposure")
FILL_COLUMNS = ("time", "symbol", "side", "qty", "price", "fee", "order_id", "client_order_id")
ORDER_COLUMNS = ("time", "symbol", "side", "qty", "type", "status", "client_order_id", "filled_qty",
                 "avg_price")
DECISION_COLUMNS = ("time", "symbol", "rule", "action", "requested", "approved", "reason")

_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class RunData:
    """One run's artifacts, as read from the ledger; the only input of reports and comparisons."""

    summary: dict
    equity: pd.DataFrame
    fills: pd.DataFrame
    orders: pd.DataFrame
    decisions: pd.DataFrame
    prices: pd.DataFrame
    periods_per_year: float
    # An explicit benchmark (a price or equity series indexed by UTC time, e.g. SPY closes);
    # when None the report uses the equal-weight buy-and-hold of ``prices``.
    benchmark: pd.Series | None = None

    def __post_init__(self) -> None:
        for name, columns in (("equity", EQUITY_COLUMNS), ("fills", FILL_COLUMNS), ("orders", ORDER_COLUMNS),
                              ("decisions", DECISION_COLUMNS)):
            frame = getattr(self, name)
            _require(frame, columns, name)
            if len(frame) and not isinstance(frame["time"].dtype, pd.DatetimeTZDtype):
                dtype = frame["time"].dtype
                raise ValueError(f"RunData.{name}.time must be tz-aware UTC datetimes, got {dtype}")
        if not self.prices.empty and getattr(self.prices.index, "tz", None) is None:
            raise ValueError("RunData.prices must be indexed by tz-aware UTC times")
        if not (np.isfinite(self.periods_per_year) and self.periods_per_year > 0):
            raise ValueError(f"RunData.periods_per_year must be positive, got {self.periods_per_year!r}")

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id", ""))

    def equity_series(self) -> pd.Series:
        """Return equity indexed by time, sorted, one value per time (the last one wins)."""
        eq = self.equity.set_index("time")["equity"].astype(float).sort_index()
        return eq[~eq.index.duplicated(keep="last")]

    def initial_equity(self) -> float:
        """Return the summary's initial equity, or the first equity observation without it."""
        value = self.summary.get("initial_equity")
        if value is None:
            eq = self.equity_series()
            return float(eq.iloc[0]) if len(eq) else float("nan")
        return float(value)


def time_order(frame: pd.DataFrame, limit: int | None = None) -> np.ndarray:
    """Row positions of ``frame`` in ``time`` order, as ``sort_values("time", kind="stable")`` gives
    them (missing times last), without copying the frame; the first ``limit`` only when given."""
    t = frame["time"]
    values = t.to_numpy("datetime64[ns]") if isinstance(t.dtype, pd.DatetimeTZDtype) else pd.to_datetime(
        t, utc=True).to_numpy("datetime64[ns]")
    key = values.view(np.int64).copy()
    key[np.isnat(values)] = np.iinfo(np.int64).max
    order = np.argsort(key, kind="stable")
    return order if limit is None else order[:limit]


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"RunData.{name} lacks columns {missing}; it has {list(frame.columns)}")


def periods_per_year_for(times: pd.DatetimeIndex, crypto_only: bool) -> float:
    """Return the annualisation factor for an equity curve observed at ``times``.

    The factor is "observations per year" on the calendar the curve is observed on:

    - the bar spacing is the median gap between consecutive distinct times (robust to weekends,
      holidays and the odd missing bar);
    - 24/7 calendar (``crypto_only``, or any observation on a Saturday or Sunday UTC — a mixed
      equities + crypto run marked on the union of bar times trades every day): spacing under a
      day → ``365 × (1 day / spacing)`` (hourly → 8760, 5-minute → 105 120); daily → 365;
    - equity sessions: daily → 252; intraday → ``252 × bars per session``, bars per session being
      the median number of observations per UTC date (sessions never straddle UTC midnight);
    - spacing of several days (weekly, monthly) on either calendar → ``365.25 / spacing in days``
      (weekly ≈ 52.18, monthly ≈ 12).

    "Daily" means a spacing between 20 hours and 4 days. With fewer than two distinct times the
    spacing is unknown and the daily factor (252, or 365 on a 24/7 calendar) is returned.
    """
    idx = pd.DatetimeIndex(times).dropna().unique().sort_values()
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    all_week = crypto_only or bool((idx.dayofweek >= 5).any())
    if len(idx) < 2:
        return 365.0 if all_week else 252.0
    spacing = pd.Series(idx[1:] - idx[:-1]).median()
    if spacing > 4 * _DAY:
        return 365.25 / (spacing / _DAY)
    if spacing >= pd.Timedelta(hours=20):
        return 365.0 if all_week else 252.0
    if all_week:
        return 365.0 * (_DAY / spacing)
    bars_per_session = float(pd.Series(idx.normalize()).value_counts().median())
    return 252.0 * bars_per_session
