"""The Deflated Sharpe Ratio (Bailey and López de Prado, "The Deflated Sharpe Ratio: Correcting for
Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 2014).

A sweep picks the best of N trials; even with no skill the best Sharpe ratio is high. The DSR is
the probability that the true Sharpe ratio exceeds the one expected from the best of N unskilled
trials, given the track record's length and the non-normality of its returns:

    SR0 = sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))            (expected maximum)
    DSR = Phi((SR - SR0) * sqrt(T - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2))

with SR the per-period (not annualised) Sharpe ratio, T the number of returns, skew and kurt the
skewness and (non-excess) kurtosis of the returns, V the variance of the trials' per-period
Sharpe ratios, g the Euler-Mascheroni constant, Z the standard normal quantile and Phi its CDF.
With one trial SR0 = 0 and the DSR is the Probabilistic Sharpe Ratio against zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


@dataclass(frozen=True, slots=True)
class ReturnStats:
    """Per-period Sharpe ratio (ddof=1, as framework.reports.metrics), skewness, kurtosis, count."""

    sr: float | None
    skew: float | None
    kurt: float | None
    n_obs: int

    def as_dict(self) -> dict:
        return {"sr": self.sr, "skew": self.skew, "kurt": self.kurt, "n_obs": self.n_obs}


def return_stats(returns: np.ndarray) -> ReturnStats:
    """Moments of a return series (population skewness and kurtosis); None where undefined."""
    r = np.asarray(returns, float)
    r = r[~np.isnan(r)]
    n = len(r)
    if n < 3:
        return ReturnStats(None, None, None, n)
    sd1 = float(np.std(r, ddof=1))
    sd0 = float(np.std(r))
    if sd1 == 0.0 or sd0 == 0.0:
        return ReturnStats(None, None, None, n)
    z = (r - r.mean()) / sd0
    return ReturnStats(float(r.mean()) / sd1, float(np.mean(z ** 3)), float(np.mean(z ** 4)), n)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """SR0: the expected maximum per-period Sharpe ratio of ``n_trials`` unskilled trials."""
    if n_trials <= 1 or variance <= 0:
        return 0.0
    a = _N.inv_cdf(1.0 - 1.0 / n_trials)
    b = _N.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b)


def probabilistic_sharpe(sr: float, benchmark: float, n_obs: int, skew: float, kurt: float) -> float:
    """PSR: the probability that the true Sharpe ratio exceeds ``benchmark`` (both per period)."""
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if n_obs < 2 or denom <= 0:
        return float("nan")
    return _N.cdf((sr - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom))


def deflated_sharpe(sr: float, n_obs: int, skew: float, kurt: float, n_trials: int, variance: float) -> float:
    """DSR of a per-period Sharpe ratio ``sr`` chosen out of ``n_trials`` trials whose per-period
    Sharpe ratios have variance ``variance``."""
    return probabilistic_sharpe(sr, expected_max_sharpe(n_trials, variance), n_obs, skew, kurt)


def trial_variance(srs: list[float]) -> float:
    """Sample variance of the trials' Sharpe ratios (0 for fewer than two)."""
    v = [x for x in srs if x is not None and not math.isnan(x)]
    return float(np.var(v, ddof=1)) if len(v) > 1 else 0.0
