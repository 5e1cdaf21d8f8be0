"""The Deflated Sharpe Ratio against the worked example of Bailey and López de Prado (2014).

The paper's numerical example ("The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
Overfitting and Non-Normality", J. Portfolio Management 40(5), section "A numerical example"): a
strategy with an annualised Sharpe ratio of 2.5 over five years of daily returns (T = 1,250,
250 observations a year) was the best of N = 100 independent trials whose annualised Sharpe
ratios have variance 1/2; its returns have skewness -3 and kurtosis 10. The paper finds an
expected maximum Sharpe ratio of SR0 = 0.1132 per period (≈ 1.79 annualised) and DSR = 0.9004
("the probability that the true SR is positive ... roughly 90 %"). vectorbt's own implementation
of the paper reproduces both figures independently (checked below).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from framework.sweep import dsr

ANNUAL = 250


def test_the_papers_worked_example():
    sr = 2.5 / math.sqrt(ANNUAL)                       # 0.1581 per day
    var = 0.5 / ANNUAL                                 # variance of the daily Sharpe ratios
    sr0 = dsr.expected_max_sharpe(100, var)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr0 * math.sqrt(ANNUAL) == pytest.approx(1.79, abs=0.005)
    value = dsr.deflated_sharpe(sr, 1250, -3.0, 10.0, 100, var)
    assert value == pytest.approx(0.9004, abs=5e-4)


def test_the_same_numbers_as_an_independent_implementation():
    """vectorbt (a peer this project depends on) implements the same paper on its own
    (``vectorbt.returns.metrics``): it gives the worked example's 0.1132 and 0.9004 too, and agrees
    with ours on other cases (vectorbt takes the number of observations and non-excess kurtosis)."""
    from vectorbt.returns import metrics as vbt

    sr, var = 2.5 / math.sqrt(ANNUAL), 0.5 / ANNUAL
    assert vbt.approx_exp_max_sharpe(0, var, 100) == pytest.approx(0.1132, abs=5e-5)
    assert vbt.deflated_sharpe_ratio(est_sharpe=sr, var_sharpe=var, nb_trials=100, backtest_horizon=1250,
                                     skew=-3, kurtosis=10) == pytest.approx(0.9004, abs=5e-4)
    rng = np.random.default_rng(7)
    for _ in range(20):
        sr, var, n, t = rng.uniform(0.0, 0.2), rng.uniform(1e-4, 5e-3), int(rng.integers(2, 500)), \
            int(rng.integers(100, 3000))
        skew, kurt = rng.uniform(-2, 1), rng.uniform(3, 12)
        ours = dsr.deflated_sharpe(sr, t, skew, kurt, n, var)
        theirs = vbt.deflated_sharpe_ratio(est_sharpe=sr, var_sharpe=var, nb_trials=n, backtest_horizon=t,
                                           skew=skew, kurtosis=kurt)
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_more_trials_deflate_more_and_one_trial_is_the_psr_against_zero():
    sr, var = 0.08, 0.002
    values = [dsr.deflated_sharpe(sr, 500, 0.0, 3.0, n, var) for n in (1, 10, 100, 1000)]
    assert values == sorted(values, reverse=True) and values[0] > 0.95 > values[-1]
    assert values[0] == pytest.approx(dsr.probabilistic_sharpe(sr, 0.0, 500, 0.0, 3.0))
    # normal returns: PSR against zero is Phi(SR * sqrt(T - 1) / sqrt(1 + SR^2 / 2))
    assert values[0] == pytest.approx(0.5 * (1 + math.erf(sr * math.sqrt(499) / math.sqrt(1 + sr * sr / 2)
                                                          / math.sqrt(2))))


def test_return_stats_match_their_definitions():
    r = np.random.default_rng(1).standard_t(5, 2000) * 0.01 + 0.0004
    st = dsr.return_stats(r)
    z = (r - r.mean()) / r.std()
    assert st.n_obs == 2000 and st.sr == pytest.approx(r.mean() / r.std(ddof=1))
    assert st.skew == pytest.approx(np.mean(z ** 3)) and st.kurt == pytest.approx(np.mean(z ** 4)) and st.kurt > 3
    assert dsr.return_stats(np.zeros(10)).sr is None and dsr.return_stats(np.ones(2)).n_obs == 2
