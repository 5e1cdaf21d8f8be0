"""Deterministic benchmark workloads (SPEC §15, performance issue).

A :class:`Workload` is everything an engine needs to run the benchmark backtest: OHLCV bars
for every symbol on one common clock, the bar indices at which the strategy rebalances, the full
target-weight vector of each rebalance, the cost model and the starting cash.

Conventions every engine adapter follows (see ``benchmarks/README.md``):

* ``times`` are ``datetime64[ns]`` values, naive but meaning UTC. Daily equity bars are stamped
  on business days (Mon-Fri, no exchange holidays: the benchmark needs a fixed clock, not a
  calendar); crypto bars are consecutive one-minute bars.
* ``rebalance_idx[k]`` is the bar at which batch ``k`` is decided. Batch ``k`` is the COMPLETE
  target portfolio: ``weights[k, j]`` is the target fraction of equity in ``symbols[j]``; a zero
  means "hold none". Weights are ``>= 0`` and every row sums to at most 0.95, so with 10 bps of
  fees and 5 bps of slippage cash never binds and no engine has to scale buys down.
* Every rebalance bar is ``<= n_bars - 2``: there is always a later bar, so under
  ``fill: next_open`` every batch has a fill bar, and backtrader (which books even a
  cheat-on-close order in the following bar's broker step) executes every batch. The same
  rule holds for :func:`prefix`.
* ``fees`` is a fraction of the traded notional (10 bps) charged on the slipped price;
  ``slippage`` is a fraction of the price (5 bps): buys pay ``p * (1 + s)``, sells receive
  ``p * (1 - s)``.

Sizes (daily equities unless noted)::

    small   10 symbols x   1,000 bars, rebalance every 5 bars
    medium 100 symbols x   2,520 bars, every 5 bars
    large  500 symbols x   5,040 bars, every bar (~1.1 million orders)
    crypto   5 pairs   x 500,000 one-minute bars, every 60 bars

``make_workload(name, seed)`` is a pure function of its arguments (numpy ``Generator`` / PCG64
streams seeded from ``(seed, workload index, stream)``): same name and seed, same arrays, up to
the last ulp of ``np.exp`` across numpy builds and CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

DEFAULT_SEED = 20240615

__all__ = ["Workload", "WorkloadShape", "WORKLOADS", "DEFAULT_SEED", "make_workload", "prefix",
           "workload_shape"]


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    n_symbols: int
    n_bars: int
    every: int  # rebalance every `every` bars
    crypto: bool = False
    density: float = 0.43  # long-run fraction of symbols with a non-zero target
    churn: float = 0.02  # probability that a held symbol leaves the portfolio at a batch
    phi: float = 0.98  # persistence of the AR(1) weight scores (per batch)
    gross: float = 0.95  # sum of each batch's weights


# Every held symbol trades at every batch (see _weights), so orders ~= batches x symbols x
# (density + exits): on the large workload 5,039 x 500 x ~0.437 ~= 1.1 million, as the issue says.
WORKLOADS: dict[str, WorkloadSpec] = {
    "small": WorkloadSpec("small", 10, 1_000, 5),
    "medium": WorkloadSpec("medium", 100, 2_520, 5),
    "large": WorkloadSpec("large", 500, 5_040, 1),
    "crypto": WorkloadSpec("crypto", 5, 500_000, 60, crypto=True, density=0.6, churn=0.01, phi=0.995),
}

_CRYPTO_PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD", "LTC/USD", "AVAX/USD", "LINK/USD", "DOGE/USD",
                 "ADA/USD"]


@dataclass(frozen=True, eq=False)
class Workload:
    name: str
    times: np.ndarray  # datetime64[ns], shape (n_bars,), naive UTC
    symbols: list[str]
    open: np.ndarray  # float64, shape (n_bars, n_symbols)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    rebalance_idx: np.ndarray  # int64, shape (n_rebalances,), strictly increasing, <= n_bars - 2
    weights: np.ndarray  # float64, shape (n_rebalances, n_symbols), >= 0, rows sum <= 0.95
    fees: float = 0.001
    slippage: float = 0.0005
    init_cash: float = 1_000_000.0
    crypto: bool = False
    seed: int = DEFAULT_SEED
    meta: dict = field(default_factory=dict)

    @property
    def n_bars(self) -> int:
        return int(self.close.shape[0])

    @property
    def n_symbols(self) -> int:
        return int(self.close.shape[1])

    @property
    def n_rebalances(self) -> int:
        return int(self.rebalance_idx.shape[0])

    @property
    def cells(self) -> int:
        """bars x symbols, the throughput unit of the benchmark table."""
        return self.n_bars * self.n_symbols

    def target_matrix(self, shift: int = 0) -> np.ndarray:
        """(n_bars, n_symbols) matrix: NaN everywhere except the rows ``rebalance_idx + shift``,
        which hold the full target-weight vector of that batch (zeros included)."""
        m = np.full((self.n_bars, self.n_symbols), np.nan)
        m[self.rebalance_idx + shift] = self.weights
        return m

    def describe(self) -> str:
        kind = "1-minute crypto" if self.crypto else "daily equity"
        return (f"{self.name}: {self.n_symbols} symbols x {self.n_bars:,} {kind} bars, "
                f"{self.n_rebalances:,} rebalances")


def _rng(seed: int, name: str, stream: int) -> np.random.Generator:
    # A fixed index per workload name (not hash(name): str hashes are salted per process).
    idx = sorted(WORKLOADS).index(name) if name in WORKLOADS else sum(map(ord, name))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, idx, stream])))


def _times(spec: WorkloadSpec) -> np.ndarray:
    if spec.crypto:
        start = np.datetime64("2023-01-01T00:00:00", "ns")
        return start + np.arange(spec.n_bars, dtype=np.int64) * np.timedelta64(60, "s").astype("m8[ns]")
    # Business days from 2000-01-03 (a Monday), no holidays.
    days = np.busday_offset(np.datetime64("2000-01-03", "D"), np.arange(spec.n_bars), roll="forward")
    return days.astype("datetime64[ns]")


def _prices(spec: WorkloadSpec, rng: np.random.Generator):
    n, m = spec.n_bars, spec.n_symbols
    if spec.crypto:
        start = np.array([30_000.0, 2_000.0, 25.0, 90.0, 15.0, 7.0, 0.08, 0.35])[:m]
        if m > len(start):
            start = np.concatenate([start, rng.uniform(1, 100, m - len(start))])
        sigma = rng.uniform(0.0006, 0.0012, m)  # per minute (~20-45 % per day)
        mu = np.zeros(m)
        gap_frac = 0.05  # crypto trades 24/7: the open is (almost) the previous close
        vol_scale = 5.0
    else:
        start = np.exp(rng.uniform(np.log(10.0), np.log(500.0), m))
        sigma = rng.uniform(0.01, 0.03, m)  # daily
        mu = rng.normal(0.0003, 0.0002, m)
        gap_frac = 0.3
        vol_scale = 1e6
    # close-to-close log return = overnight gap + intraday move
    gap = rng.standard_normal((n, m)) * (sigma * gap_frac)
    intra = rng.standard_normal((n, m)) * (sigma * np.sqrt(1 - gap_frac**2)) + mu
    gap[0] = 0.0
    log_open = np.log(start) + np.cumsum(gap + np.vstack([np.zeros((1, m)), intra[:-1]]), axis=0)
    log_close = log_open + intra
    open_ = np.exp(log_open)
    close = np.exp(log_close)
    up = np.abs(rng.standard_normal((n, m))) * (sigma * 0.5)
    down = np.abs(rng.standard_normal((n, m))) * (sigma * 0.5)
    high = np.maximum(open_, close) * np.exp(up)
    low = np.minimum(open_, close) * np.exp(-down)
    volume = np.round(vol_scale * np.exp(rng.normal(0.0, 0.5, (n, m))) + 1.0)
    return open_, high, low, close, volume


def _weights(spec: WorkloadSpec, n_reb: int, rng: np.random.Generator) -> np.ndarray:
    """Target vectors of a slowly evolving long-only portfolio.

    Membership is a two-state Markov chain per symbol with stationary fraction ``density``
    (leave with probability ``churn`` per batch), and the weights of the members are
    proportional to ``exp(score)``, with an AR(1) score, scaled to ``gross``. Every held symbol
    gets a (slightly) new target in every batch, so it trades every batch, as a real daily
    rebalance does; entries and exits come from the churn. Independent random vectors per batch
    would turn over ~150 % of equity per batch and, at every bar for 20 years, burn the equity
    down to tens of dollars in fees.
    """
    m, f, q, phi = spec.n_symbols, spec.density, spec.churn, spec.phi
    join = q * f / (1.0 - f)
    sd = 0.5  # score AR(1): stationary sd 0.5, per-batch innovation sd * sqrt(1 - phi**2)
    member = rng.random(m) < f
    score = rng.standard_normal(m) * sd
    innov = rng.standard_normal((n_reb, m)) * (sd * np.sqrt(1.0 - phi**2))
    flips = rng.random((n_reb, m))
    w = np.zeros((n_reb, m))
    for k in range(n_reb):
        if k:
            member = np.where(member, flips[k] >= q, flips[k] < join)
            score = phi * score + innov[k]
        if not member.any():
            member[int(np.argmax(score))] = True
        e = np.where(member, np.exp(score), 0.0)
        w[k] = e * (spec.gross / e.sum())
    # Rounding can push a row sum one ulp above the gross limit (0.9500000000000001); shave
    # those rows by 1e-12 relative so "rows sum <= 0.95" holds exactly in float64.
    over = w.sum(axis=1) > spec.gross
    w[over] *= 1.0 - 1e-12
    assert (w.sum(axis=1) <= spec.gross).all()
    return w


def make_workload(name: str, seed: int = DEFAULT_SEED) -> Workload:
    """Build the named workload (``small``, ``medium``, ``large``, ``crypto``) deterministically."""
    try:
        spec = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}") from None
    rng_p = _rng(seed, name, 0)
    rng_w = _rng(seed, name, 1)
    times = _times(spec)
    open_, high, low, close, volume = _prices(spec, rng_p)
    rebalance_idx = np.arange(0, spec.n_bars - 1, spec.every, dtype=np.int64)  # never the last bar
    weights = _weights(spec, len(rebalance_idx), rng_w)
    if spec.crypto:
        symbols = (_CRYPTO_PAIRS + [f"C{i:03d}/USD" for i in range(spec.n_symbols)])[: spec.n_symbols]
    else:
        symbols = [f"EQ{i:03d}" for i in range(spec.n_symbols)]
    return Workload(
        name=name, times=times, symbols=symbols,
        open=open_, high=high, low=low, close=close, volume=volume,
        rebalance_idx=rebalance_idx, weights=weights,
        crypto=spec.crypto, seed=seed,
        meta={"every": spec.every, "density": spec.density, "churn": spec.churn, "phi": spec.phi,
              "gross": spec.gross},
    )


def prefix(w: Workload, n_bars: int, copy: bool = False) -> Workload:
    """The first ``n_bars`` bars of ``w`` with the batches that can still fill inside them
    (rebalance bars ``<= n_bars - 2``, the same rule as the full workload). Views of ``w``'s
    arrays unless ``copy`` (then the full workload can be freed)."""
    n_bars = int(n_bars)
    if n_bars >= w.n_bars:
        return w
    if n_bars < 2:
        raise ValueError("a prefix needs at least 2 bars")
    keep = w.rebalance_idx <= n_bars - 2
    c = np.array if copy else (lambda a: a)
    return replace(
        w,
        name=f"{w.name}[:{n_bars}]",
        times=c(w.times[:n_bars]),
        open=c(w.open[:n_bars]), high=c(w.high[:n_bars]), low=c(w.low[:n_bars]),
        close=c(w.close[:n_bars]), volume=c(w.volume[:n_bars]),
        rebalance_idx=w.rebalance_idx[keep], weights=w.weights[keep],
        meta={**w.meta, "prefix_of": w.name, "full_n_bars": w.n_bars},
    )


@dataclass(frozen=True)
class WorkloadShape:
    """Sizes of a workload (or of its prefix) without generating it - what the harness needs
    to plan and extrapolate runs. Consistent with :func:`make_workload` and :func:`prefix`."""

    name: str
    n_bars: int
    n_symbols: int
    n_rebalances: int

    @property
    def cells(self) -> int:
        return self.n_bars * self.n_symbols


def workload_shape(name: str, n_bars: int | None = None) -> WorkloadShape:
    spec = WORKLOADS[name]
    if n_bars is None or n_bars >= spec.n_bars:
        n_reb = len(range(0, spec.n_bars - 1, spec.every))
        return WorkloadShape(name, spec.n_bars, spec.n_symbols, n_reb)
    n_reb = len(range(0, min(spec.n_bars - 1, n_bars - 1), spec.every))
    return WorkloadShape(f"{name}[:{n_bars}]", n_bars, spec.n_symbols, n_reb)
