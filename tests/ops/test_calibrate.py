"""The calibration fits and the fee check on their own (the end-to-end run is in test_paper_vs_sim)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.config import SlippageSettings
from framework.ops.calibrate import fee_check, fit_slippage
from framework.venue_config import load_venue


def test_fixed_bps_is_the_notional_weighted_mean():
    obs = pd.DataFrame({"y": [10.0, 4.0], "w": [3.0, 1.0], "x": [0.0, 0.0]})
    fit = fit_slippage(obs, SlippageSettings())
    assert fit.fixed_bps == pytest.approx(8.5) and not fit.k_fitted
    assert fit.settings("fixed_bps", SlippageSettings()).bps == pytest.approx(8.5)
    # without volume information the impact coefficient is kept and the spread takes the rest
    assert fit.k == SlippageSettings().k and fit.spread_bps == pytest.approx(17.0)


def test_spread_and_impact_are_recovered_from_observations():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 20.0, 200)
    obs = pd.DataFrame({"y": 1.5 + 0.4 * x, "w": rng.uniform(1e3, 1e5, 200), "x": x})
    fit = fit_slippage(obs, SlippageSettings())
    assert fit.k_fitted
    assert fit.spread_bps == pytest.approx(3.0, rel=1e-9) and fit.k == pytest.approx(0.4, rel=1e-9)
    s = fit.settings("spread_impact", SlippageSettings())
    assert (s.model, s.spread_bps, s.k) == ("spread_impact", 3.0, 0.4)


def test_price_improvement_never_proposes_negative_costs():
    obs = pd.DataFrame({"y": [-3.0, -1.0], "w": [1.0, 1.0], "x": [0.0, 0.0]})
    fit = fit_slippage(obs, SlippageSettings())
    assert fit.fixed_bps == 0.0 and fit.spread_bps == 0.0 and fit.mean_bps == pytest.approx(-2.0)


def test_fee_check_proposes_the_taker_rate_the_recorded_fees_imply():
    venue = load_venue("alpaca")
    fills = pd.DataFrame({"symbol": ["BTC/USD", "BTC/USD"], "side": ["buy", "sell"], "qty": [0.1, 0.1],
                          "price": [50_000.0, 50_000.0], "fee": [15.0, 15.0]})       # 30 bps charged
    [crypto] = fee_check(fills, venue, tier=0)
    assert crypto["configured_taker_bps"] == 25.0 and not crypto["ok"]
    assert crypto["implied_taker_bps"] == pytest.approx(30.0)
    fills["fee"] = 12.5                                                              # 25 bps: as configured
    assert fee_check(fills, venue, tier=0)[0]["ok"]
