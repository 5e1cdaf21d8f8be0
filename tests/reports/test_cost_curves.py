"""The costs figure's inputs are its curves as drawn, not the fills (issue 15): a backtest of a
million fills hands the figure process a few thousand points, and the picture keeps every extreme."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd

from framework.reports import plots
from framework.reports.plots import MAX_POINTS, CostCurves, Curve, costs_figure


def _fills(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range("2020-01-01", periods=n // 50, freq="D", tz="UTC")
    t = rng.choice(times, n)                       # fills of a day arrive in any order
    slip = rng.normal(0.01, 0.05, n)               # a limit's price improvement is a negative cost
    slip[rng.random(n) < 0.01] = np.nan
    return pd.DataFrame({"time": t, "fee": rng.random(n) * 0.2, "slippage": slip,
                         "qty": rng.random(n), "price": rng.random(n) * 100})


def test_a_curve_keeps_the_extremes_and_counts_every_point():
    fills = _fills(300_000)
    ordered = fills.sort_values("time", kind="stable")
    full = ordered["slippage"].fillna(0.0).cumsum().to_numpy()
    curve = CostCurves.of(fills).slippage
    assert curve is not None and curve.points == len(fills)
    assert len(curve.y) <= MAX_POINTS
    assert curve.y[0] == full[0] and curve.y[-1] == full[-1]
    assert curve.y.min() == full.min() and curve.y.max() == full.max()
    assert curve.x[0] == ordered["time"].iloc[0].tz_localize(None).to_datetime64()


def test_the_figure_from_curves_is_the_figure_from_the_fills_and_far_smaller_to_send():
    fills = _fills(200_000)
    costs = CostCurves.of(fills)
    assert costs_figure(costs) == costs_figure(fills)
    assert len(pickle.dumps(costs)) < len(pickle.dumps(fills[["time", "fee", "slippage"]])) / 20


def test_a_short_series_is_drawn_whole_and_no_fills_draw_a_placeholder():
    s = pd.Series([1.0, 3.0, 2.0], index=pd.date_range("2021-01-01", periods=3, freq="D", tz="UTC"))
    c = Curve.of(s)
    assert c.points == 3 and c.y.tolist() == [1.0, 3.0, 2.0]
    empty = CostCurves.of(pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "fee": []}))
    assert empty.fee is None
    assert costs_figure(empty)[:8] == b"\x89PNG\r\n\x1a\n"
    no_slip = CostCurves.of(_fills(1_000).drop(columns="slippage"))
    assert no_slip.fee is not None and no_slip.slippage is None
    assert plots.costs_figure(no_slip) != plots.costs_figure(CostCurves.of(_fills(1_000)))
