"""Parity's side of the benchmark: the real pipeline (risk -> rebalancer -> SimulatedBroker ->
journal) on a workload, with risk limits that do not bind, drift threshold 0 and no minimums.

Contract (used by the harness and tests/benchmarks/test_agreement.py):
``run(w, fill="close") -> PeerResult``. ``load_seconds`` covers turning the workload's arrays
into Parity's inputs (BarArrays, SignalBatches, Universe); ``warmup_seconds`` is a tiny run made
first (imports, first calls); ``engine_seconds`` is the replay of every batch through run_cycle,
mark-to-market over arrays included; writing the ledger and artifacts is not part of it.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.peers import MemProbe, PeerResult
from benchmarks.workloads import Workload, prefix

# The demo strategy's limits (config/settings.yaml + config/strategies/demo.yaml): on the wide
# workloads max_positions binds at every batch, which is the risk manager's slow path. The daily
# loss limit is left open (as in benchmarks.whole) so the synthetic prices never halt a day.
DEMO_LIMITS = {"max_position_size_pct": 0.35, "max_exposure_pct": 0.95, "max_positions": 10, "min_confidence": 0.5,
               "max_daily_loss_pct": 1.0, "min_account_balance": 1000.0, "max_leverage": 1.0}


def build(w: Workload, fill: str, limits: str = "open"):
    """Wire the backtest pipeline for a workload, exactly as the CLI does for a strategy.

    ``limits``: ``open`` (never bind) or ``demo`` (the demo strategy's, binding)."""
    from brokers.simulated import SimulatedBroker
    from framework.clock import SimClock
    from framework.config import RebalanceSettings, RiskLimits
    from framework.costs import FixedBps, FlatFees
    from framework.data import BarArrays
    from framework.engine import Pipeline
    from framework.journal import BufferedJournal
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.types import AssetClass, Instrument, SignalBatches, Universe

    syms = tuple(w.symbols)
    bars = BarArrays(w.times, syms, w.open, w.high, w.low, w.close, w.volume)
    universe = Universe.from_instruments([Instrument(s, AssetClass.EQUITY, 1e-9, 0.0, 0.0, 0.01, True, False)
                                          for s in syms])
    signals = SignalBatches("bench", syms, w.times[w.rebalance_idx], w.weights.astype(float),
                            np.ones_like(w.weights, dtype=float))
    risk = (RiskLimits(**DEMO_LIMITS) if limits == "demo" else
            RiskLimits(max_position_size_pct=1.0, max_exposure_pct=1.0, max_positions=len(syms),
                       min_confidence=0.0, max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=10.0))
    settings = RebalanceSettings(drift_threshold=0.0, cash_buffer_pct=0.0, price_buffer_bps=0.0)
    clock = SimClock(w.times[0])
    market = SimulatedBroker(bars, universe, clock, cash=w.init_cash, fill=fill, fees=FlatFees(w.fees * 1e4),
                             slippage=FixedBps(w.slippage * 1e4))
    journal = BufferedJournal("bench")
    pipeline = Pipeline(market, RiskManager(risk), Rebalancer(settings, w.fees), journal, universe, "cancel")
    return pipeline, market, signals, journal


def backtest(w: Workload, fill: str = "close", limits: str = "open"):
    from framework.backtest import replay

    pipeline, market, signals, journal = build(w, fill, limits)
    outcome = replay(pipeline, market, signals)
    return outcome, journal


def run(w: Workload, fill: str = "close", limits: str = "open", repeat: int = 1) -> PeerResult:
    """``repeat`` > 1: the engine time is the best of that many replays, each wired afresh (the
    memory figures are the first one's); for comparing two versions of Parity in one run."""
    from framework.backtest import replay

    t = time.perf_counter()
    tiny = prefix(w, min(w.n_bars, 60))
    backtest(tiny, fill, limits)
    warm = time.perf_counter() - t
    with MemProbe() as mem:
        t = time.perf_counter()
        pipeline, market, signals, journal = build(w, fill, limits)
        load = time.perf_counter() - t
        t = time.perf_counter()
        outcome = replay(pipeline, market, signals)
        engine = time.perf_counter() - t
    final = float(outcome.equity["equity"].iloc[-1])
    for _ in range(repeat - 1):
        again = build(w, fill, limits)
        t = time.perf_counter()
        replay(*again[:3])
        engine = min(engine, time.perf_counter() - t)
        del again
    return PeerResult("parity", engine, warm, load, final, journal.n_orders, mem.peak,
                      workload=w.name, fill=fill, n_bars=w.n_bars, n_symbols=w.n_symbols,
                      base_mem_bytes=mem.base, extra={"limits": limits, "n_cycles": outcome.n_cycles, "repeat": repeat})
