"""Metrics against an independent implementation: vectorbt 1.2's returns accessor, to 1e-9 relative."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import vectorbt  # noqa: F401  (registers the .vbt accessor)

from framework.reports.metrics import (
    compute_metrics,
    daily_pnl,
    drawdown_series,
    monthly_returns,
    per_period_rate,
    returns_of,
    turnover,
)
from framework.reports.rundata import periods_per_year_for
from tests.reports.synthetic import build_run

REL = 1e-9


def random_curve(times: pd.DatetimeIndex, seed: int, vol: float) -> pd.Series:
    """Return a deterministic equity curve whose first return is positive."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0003, vol, size=len(times) - 1)
    r[0] = abs(r[0])
    return pd.Series(100_000.0 * np.concatenate([[1.0], np.cumprod(1.0 + r)]), index=times)


DAILY = random_curve(pd.bdate_range("2021-01-04", periods=400, tz="UTC"), seed=1, vol=0.012)
HOURLY = random_curve(pd.date_range("2024-01-01", periods=24 * 45, freq="h", tz="UTC"), seed=2, vol=0.004)
CASES = [(DAILY, 252.0, pd.Timedelta("1D")), (HOURLY, 8760.0, pd.Timedelta("1h"))]


def vbt_returns(equity: pd.Series, ppy: float, bar: pd.Timedelta):
    """vectorbt's accessor on the same simple returns, with year_freq = ppy bars."""
    return returns_of(equity).vbt.returns(freq=bar, year_freq=bar * ppy)


@pytest.mark.parametrize("rf", [0.0, 0.04])
@pytest.mark.parametrize(("equity", "ppy", "bar"), CASES, ids=["daily-252", "hourly-24x7-8760"])
def test_metrics_match_vectorbt(equity: pd.Series, ppy: float, bar: pd.Timedelta, rf: float) -> None:
    ours = compute_metrics(equity, ppy, risk_free_rate=rf)
    acc = vbt_returns(equity, ppy, bar)
    assert acc.ann_factor == pytest.approx(ppy, rel=1e-12)
    rf_p = per_period_rate(rf, ppy)

    assert ours["total_return"] == pytest.approx(acc.total(), rel=REL)
    assert ours["cagr"] == pytest.approx(acc.annualized(), rel=REL)
    assert ours["volatility"] == pytest.approx(acc.annualized_volatility(ddof=1), rel=REL)
    assert ours["sharpe"] == pytest.approx(acc.sharpe_ratio(risk_free=rf_p, ddof=1), rel=REL)
    assert ours["sortino"] == pytest.approx(acc.sortino_ratio(required_return=rf_p), rel=REL)
    assert ours["max_drawdown"] == pytest.approx(acc.max_drawdown(), rel=REL)
    assert ours["calmar"] == pytest.approx(acc.calmar_ratio(), rel=REL)


def test_max_drawdown_counts_the_starting_equity() -> None:
    """A run that loses from its first bar: the start is the first peak.

    vectorbt's accessor on returns starts its running peak after the first return; built with
    ``from_value(..., init_value=E_0)`` it includes the start, and then it agrees with ours.
    """
    equity = build_run().equity_series()
    assert equity.iloc[1] < equity.iloc[0]
    ours = compute_metrics(equity, 252.0)
    from_start = pd.Series.vbt.returns.from_value(
        equity, init_value=equity.iloc[0], freq="1D", year_freq="252D")
    acc = vbt_returns(equity, 252.0, pd.Timedelta("1D"))
    assert ours["max_drawdown"] == pytest.approx(from_start.max_drawdown(), rel=REL)
    assert ours["max_drawdown"] == pytest.approx(equity.vbt.drawdown().min(), rel=REL)
    assert ours["max_drawdown"] <= acc.max_drawdown()
    assert ours["calmar"] == pytest.approx(acc.annualized() / abs(from_start.max_drawdown()), rel=REL)
    assert ours["total_return"] == pytest.approx(acc.total(), rel=REL)
    assert ours["cagr"] == pytest.approx(acc.annualized(), rel=REL)
    assert ours["volatility"] == pytest.approx(acc.annualized_volatility(), rel=REL)
    assert ours["sharpe"] == pytest.approx(acc.sharpe_ratio(), rel=REL)
    assert ours["sortino"] == pytest.approx(acc.sortino_ratio(), rel=REL)


def test_gaps_are_not_filled() -> None:
    times = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-06"], tz="UTC")
    equity = pd.Series([100.0, 110.0, np.nan, 99.0], index=times)
    assert returns_of(equity).round(12).tolist() == [0.1, -0.1]
    assert compute_metrics(equity, 365.0)["total_return"] == pytest.approx(-0.01, rel=REL)


def test_undefined_metrics_are_none_and_json_safe() -> None:
    times = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    flat = compute_metrics(pd.Series(1000.0, index=times), 365.0)
    assert flat["total_return"] == 0.0 and flat["volatility"] == 0.0 and flat["max_drawdown"] == 0.0
    assert flat["sharpe"] is None and flat["sortino"] is None and flat["calmar"] is None
    single = compute_metrics(pd.Series([1000.0], index=times[:1]), 365.0)
    assert all(v is None for v in single.values())
    json.dumps(flat, allow_nan=False)
    json.dumps(compute_metrics(DAILY, 252.0), allow_nan=False)


def test_drawdown_series_is_relative_to_the_running_peak() -> None:
    equity = pd.Series([100.0, 120.0, 90.0, 130.0, 117.0])
    assert drawdown_series(equity).round(12).tolist() == [0.0, 0.0, -0.25, 0.0, -0.1]


def test_monthly_returns_compound_to_the_year_and_the_total() -> None:
    table = monthly_returns(DAILY)
    r = returns_of(DAILY)
    months = r.index.tz_localize(None).to_period("M")
    expected = (1.0 + r).groupby(months).prod() - 1.0
    for period, value in expected.items():
        assert table.loc[period.year, period.month] == pytest.approx(value, rel=REL)
    years = (1.0 + table["year"]).prod() - 1.0
    assert years == pytest.approx(compute_metrics(DAILY, 252.0)["total_return"], rel=REL)
    for _, row in table.iterrows():
        assert (1.0 + row[list(range(1, 13))].dropna()).prod() - 1.0 == pytest.approx(row["year"], rel=REL)


def test_daily_pnl_sums_to_total_pnl() -> None:
    pnl = daily_pnl(HOURLY)
    assert len(pnl) == 45
    assert pnl.sum() == pytest.approx(HOURLY.iloc[-1] - HOURLY.iloc[0], rel=REL)


def test_turnover_is_traded_notional_over_mean_equity() -> None:
    fills = pd.DataFrame({"qty": [10.0, 5.0], "price": [100.0, 100.0]})
    equity = pd.Series([900.0, 1100.0])
    assert turnover(fills, equity) == pytest.approx(1.5)
    assert turnover(fills.iloc[:0], equity) == 0.0


@pytest.mark.parametrize(("times", "crypto_only", "expected"), [
    (pd.bdate_range("2024-01-01", periods=30, tz="UTC"), False, 252.0),
    (pd.date_range("2024-01-01", periods=30, freq="D", tz="UTC"), True, 365.0),
    (pd.date_range("2024-01-01", periods=200, freq="h", tz="UTC"), True, 8760.0),
    (pd.date_range("2024-01-01", periods=100, freq="5min", tz="UTC"), True, 105_120.0),
    # a mixed book marked every day of the week is on the 24/7 calendar even if not crypto-only
    (pd.date_range("2024-01-01", periods=30, freq="D", tz="UTC"), False, 365.0),
    (pd.date_range("2024-01-01", periods=20, freq="W", tz="UTC"), False, 365.25 / 7),
    (pd.DatetimeIndex([], tz="UTC"), False, 252.0),
])
def test_periods_per_year_for(times: pd.DatetimeIndex, crypto_only: bool, expected: float) -> None:
    assert periods_per_year_for(times, crypto_only) == pytest.approx(expected)


def test_periods_per_year_for_intraday_equities_counts_bars_per_session() -> None:
    sessions = pd.bdate_range("2024-01-02", periods=10, tz="UTC")
    times = pd.DatetimeIndex([d + pd.Timedelta(hours=14, minutes=30) + pd.Timedelta(hours=h)
                              for d in sessions for h in range(7)])
    assert periods_per_year_for(times, crypto_only=False) == pytest.approx(252.0 * 7)
