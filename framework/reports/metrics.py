"""Performance metrics: the one place they are computed, for every mode.

Definitions (``E_0 … E_n`` are the equity observations in time order, ``P`` the run's
``periods_per_year``, ``rf`` the annual risk-free rate):

Returns
    ``r_i = E_i / E_{i-1} − 1`` for ``i = 1 … n``: simple returns between consecutive equity
    observations. Gaps (weekends, holidays, missing bars, a paper run that was not snapshotted
    for a day) are not filled: the return across a gap is one period. Observations with a NaN
    equity are dropped, never forward-filled. The curve must start with the initial equity.
total_return
    ``E_n / E_0 − 1``.
cagr
    ``(E_n / E_0) ^ (P / n) − 1``: annualised by the number of periods, not by calendar time, so
    a year of daily equity sessions is 252 periods whatever the holidays (vectorbt's
    ``annualized``).
volatility
    ``std(r, ddof=1) × √P``: annualised sample standard deviation of per-period returns.
Risk-free rate
    ``rf`` is an annual rate, converted to the per-period rate ``rf_p = (1 + rf)^(1/P) − 1``
    (geometric, so compounding ``rf_p`` over ``P`` periods gives ``rf``). Default 0.
sharpe
    ``mean(r − rf_p) / std(r − rf_p, ddof=1) × √P``.
sortino
    ``mean(r − rf_p) × P / (√mean(min(r − rf_p, 0)²) × √P)``: the downside deviation averages
    over ALL periods (positive excess returns count as zero), the usual target-downside
    definition (vectorbt's ``sortino_ratio`` with ``required_return = rf_p``).
max_drawdown
    ``min_t (E_t / max_{s≤t} E_s − 1)``: a fraction ≤ 0 (−0.25 is a 25 % fall), measured on
    the equity observations, starting equity included. Same sign convention as vectorbt.
calmar
    ``cagr / |max_drawdown|``.
turnover
    ``Σ |qty × price|`` over all fills ``/ mean(E)``: total (not annualised) one-way turnover,
    so buying a position and selling it later counts both legs.
fees_paid, slippage_cost
    Sums of the fills' ``fee`` and ``slippage`` columns (quote currency). Slippage is already
    inside the fill price; it is reported, not deducted twice.

Undefined values (fewer than two returns, zero volatility or downside, no drawdown) are
``None`` — never NaN or ±inf — so they serialise to ``null`` in ``summary.json``. The test
suite checks these definitions against vectorbt's returns accessor to 1e-9 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

METRIC_KEYS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar")


def returns_of(equity: pd.Series) -> pd.Series:
    """Return simple returns between consecutive non-NaN equity observations (no fill)."""
    eq = equity.dropna().astype(float)
    return (eq / eq.shift(1) - 1.0).iloc[1:]


def per_period_rate(annual_rate: float, periods_per_year: float) -> float:
    """Convert an annual rate into the per-period rate that compounds back to it."""
    return (1.0 + annual_rate) ** (1.0 / periods_per_year) - 1.0


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Return the drawdown at each observation: equity over its running peak, minus one (≤ 0)."""
    eq = equity.dropna().astype(float)
    return eq / eq.cummax() - 1.0


def compute_metrics(equity: pd.Series, periods_per_year: float, risk_free_rate: float = 0.0) -> dict:
    """Compute the return and risk metrics of an equity curve (definitions in the module doc)."""
    eq = equity.dropna().astype(float)
    out: dict = dict.fromkeys(METRIC_KEYS)
    if len(eq) < 2 or eq.iloc[0] <= 0:
        return out
    r = returns_of(eq).to_numpy()
    n = len(r)
    growth = float(eq.iloc[-1] / eq.iloc[0])
    out["total_return"] = growth - 1.0
    out["cagr"] = growth ** (periods_per_year / n) - 1.0 if growth > 0 else -1.0
    excess = r - per_period_rate(risk_free_rate, periods_per_year)
    if n >= 2:
        std = float(np.std(r, ddof=1))
        out["volatility"] = std * math.sqrt(periods_per_year)
        ex_std = float(np.std(excess, ddof=1))
        if ex_std > 0:
            out["sharpe"] = float(np.mean(excess)) / ex_std * math.sqrt(periods_per_year)
        downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2))) * math.sqrt(periods_per_year)
        if downside > 0:
            out["sortino"] = float(np.mean(excess)) * periods_per_year / downside
    mdd = float(drawdown_series(eq).min())
    out["max_drawdown"] = mdd
    if mdd < 0:
        out["calmar"] = out["cagr"] / abs(mdd)
    return {k: _clean(v) for k, v in out.items()}


def turnover(fills: pd.DataFrame, equity: pd.Series) -> float | None:
    """Return total traded notional over mean equity (one-way, not annualised)."""
    eq = equity.dropna().astype(float)
    if eq.empty or eq.mean() == 0:
        return None
    if fills.empty:
        return 0.0
    notional = (fills["qty"].astype(float) * fills["price"].astype(float)).abs().sum()
    return _clean(float(notional / eq.mean()))


def summary_metrics(equity: pd.Series, fills: pd.DataFrame, periods_per_year: float,
                    risk_free_rate: float = 0.0) -> dict:
    """Return the metric and cost keys of ``summary.json`` for one run.

    The ledger writer should fill ``summary.json`` from this, so the report, the comparison and
    the promotion gates all read numbers computed here.
    """
    eq = equity.dropna().astype(float)
    out = {
        "initial_equity": _clean(float(eq.iloc[0])) if len(eq) else None,
        "final_equity": _clean(float(eq.iloc[-1])) if len(eq) else None,
    }
    out.update(compute_metrics(eq, periods_per_year, risk_free_rate))
    out["turnover"] = turnover(fills, eq)
    out["fees_paid"] = float(fills["fee"].astype(float).sum()) if len(fills) else 0.0
    out["slippage_cost"] = slippage_total(fills)
    return out


def slippage_total(fills: pd.DataFrame) -> float | None:
    """Return the summed slippage cost, or None when the fills do not measure slippage."""
    if "slippage" not in fills.columns:
        return None if len(fills) else 0.0
    s = fills["slippage"].astype(float)
    if len(s) and s.isna().all():
        return None
    return float(s.sum())


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Return compounded returns per calendar month (UTC): rows are years, columns 1–12 + "year".

    A month's return is its last equity over the last equity before the month (the first
    observation of the curve for the first month), minus one. A month without observations is
    NaN and the following month's return spans the gap; "year" compounds the same way.
    """
    eq = equity.dropna().astype(float).sort_index()
    columns = [*range(1, 13), "year"]
    if len(eq) < 2:
        return pd.DataFrame(columns=columns, dtype=float)
    idx = pd.DatetimeIndex(eq.index)
    idx = idx.tz_convert("UTC") if idx.tz is not None else idx
    naive = pd.Series(eq.to_numpy(), index=idx.tz_localize(None))
    table = pd.DataFrame(index=sorted(set(naive.index.year)), columns=columns, dtype=float)
    for freq, assign in (("M", _assign_month), ("Y", _assign_year)):
        ends = naive.groupby(naive.index.to_period(freq)).last()
        bases = ends.shift(1)
        bases.iloc[0] = naive.iloc[0]
        for period, value in (ends / bases - 1.0).items():
            assign(table, period, float(value))
    table.index.name = "year"
    return table


def _assign_month(table: pd.DataFrame, period: pd.Period, value: float) -> None:
    table.loc[period.year, period.month] = value


def _assign_year(table: pd.DataFrame, period: pd.Period, value: float) -> None:
    table.loc[period.year, "year"] = value


def daily_pnl(equity: pd.Series) -> pd.Series:
    """Return the P&L per UTC calendar day: last equity of the day minus the previous day's.

    The first day is measured from the first observation; days without observations are absent.
    """
    eq = equity.dropna().astype(float).sort_index()
    if eq.empty:
        return pd.Series(dtype=float)
    idx = pd.DatetimeIndex(eq.index)
    days = (idx.tz_convert("UTC") if idx.tz is not None else idx).normalize()
    last = eq.groupby(days).last()
    pnl = last.diff()
    pnl.iloc[0] = last.iloc[0] - eq.iloc[0]
    pnl.index.name = "date"
    return pnl


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
