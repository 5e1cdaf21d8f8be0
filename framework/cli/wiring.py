"""The composition root: the one place where brokers are wired into the pipeline.

Only ``framework.cli`` may import ``brokers``; the rest of ``framework`` defines the parts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from framework.config import Settings, StrategyConfig
from framework.errors import UsageError
from framework.venue_config import load_venue

if TYPE_CHECKING:
    from brokers.simulated import SimulatedBroker
    from framework.engine import Pipeline
    from framework.journal import BufferedJournal
    from framework.types import SignalBatches


@dataclass(frozen=True, slots=True)
class BacktestSetup:
    run_id: str
    strategy: StrategyConfig
    signals: SignalBatches
    market: SimulatedBroker
    pipeline: Pipeline
    journal: BufferedJournal
    initial_cash: float
    signals_source: str
    settings_dump: dict

    def without_signals(self) -> BacktestSetup:
        """This setup holding an empty archive instead of its signals. A caller that hands the
        signals to ``simulate`` and keeps only this makes the replay their last holder: their
        matrices (40 MB for 500 symbols over twenty years) are freed before the run is written."""
        return replace(self, signals=self.signals.rows(np.zeros(0, np.intp)))


def _as_time(value: str | None, what: str) -> np.datetime64 | None:
    if value is None:
        return None
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise UsageError(f"--{what}: not a date or time: {value!r}") from None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return np.datetime64(ts.tz_localize(None).to_datetime64(), "ns")


def _once(cache: dict | None, key: tuple, make):
    """``make()``, memoised in ``cache`` when one is given (a sweep worker keeps one per process)."""
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


def build_backtest(settings: Settings, settings_path: str | None, strategy: StrategyConfig, *,
                   signals_path: str | None = None, bars_path: str | None = None, start: str | None = None,
                   end: str | None = None, cash: float | None = None, cache: dict | None = None) -> BacktestSetup:
    """Load bars and signals, validate them against the venue, and wire a simulated pipeline.

    ``cache`` (sweeps): bars, venue and parsed archives by what they were read from, so the points of
    a sweep do not re-read them; without it everything is read afresh."""
    from brokers.simulated import SimulatedBroker
    from framework.clock import SimClock
    from framework.costs import NoFees, VenueFees, slippage_model
    from framework.data import load_bars
    from framework.engine import Pipeline
    from framework.journal import BufferedJournal
    from framework.memory import release_freed
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.session import new_run_id, sim_account
    from framework.signal_batches import check_spans
    from framework.signals import load_signals
    from framework.venue import crypto_bases, universe_for, untradable

    sim = strategy.simulation
    venue = _once(cache, ("venue", sim.venue, settings_path), lambda: load_venue(sim.venue, settings_path))
    src = signals_path or strategy.signals.path or ""   # "" only until the generator names the archive
    if not src and strategy.generator is None:
        raise UsageError(f"strategy {strategy.name!r} names no signal archive: pass --signals PATH "
                         f"or set signals.path or generator in {strategy.source}")
    bars_key = ("bars", bars_path or strategy.bars.path, settings.data_dir, strategy.bars.timeframe,
                strategy.bars.factors)
    bars = _once(cache, bars_key, lambda: load_bars(bars_path or strategy.bars.path, settings.data_dir,
                                                    strategy.bars.timeframe, factors=strategy.bars.factors))
    if not signals_path and strategy.generator is not None:
        from framework.generators import generate

        gen_key = ("generated", strategy.name, strategy.generator.model_dump_json(), bars_key)
        src = str(_once(cache, gen_key, lambda: generate(strategy, bars, settings.data_dir, repr(bars_key[1:]))))
    t0, t1 = _as_time(start, "start"), _as_time(end, "end")
    bar_syms = set(bars.symbols)
    bars_name = bars_path or strategy.bars.path or f"the local store ({settings.data_dir})"

    def check(symbols: list[str]) -> dict[str, str]:
        bad = {s: f"no bars for {s} in {bars_name}" for s in symbols if s not in bar_syms}
        bad.update({s: r for s, r in untradable(venue, symbols).items() if s not in bad})
        return bad

    universe_hint = None if signals_path else strategy.universe
    sig = strategy.signals
    signals = _once(cache, ("signals", src, signals_path is None, strategy.name, sig.model_dump_json(),
                            tuple(universe_hint or ()), sim.venue, bars_key),
                    lambda: load_signals(src, strategy=None if signals_path else strategy.name, source=sig,
                                         config_file=strategy.source, crypto_bases=crypto_bases(settings_path),
                                         symbol_check=check, universe=universe_hint))
    if t0 is not None or t1 is not None:
        keep = np.ones(len(signals.times), bool)
        if t0 is not None:
            keep &= signals.times >= t0
        if t1 is not None:
            keep &= signals.times <= t1
        signals = signals.rows(keep)      # exit levels included (SPEC §20)
        if len(signals.times) == 0:
            raise UsageError(f"no signal batches between {start} and {end}")
    universe = universe_for(venue, signals.symbols)
    bars = bars.select(list(universe.symbols)).between(None, t1)
    check_spans(signals, bars.times, str(src), str(bars_name), strategy.source)
    initial = float(cash if cash is not None else sim.cash)
    if initial <= 0:
        raise UsageError("--cash must be positive")
    clock = SimClock(bars.times[0] if len(bars.times) else signals.times[0])
    fees = VenueFees.from_venue(venue, sim.fee_tier) if sim.fees else NoFees()
    market = SimulatedBroker(bars, universe, clock, cash=initial, fill=sim.fill, fees=fees,
                             slippage=slippage_model(sim.slippage), volume_cap=sim.volume_cap,
                             lookback=sim.slippage.lookback)
    limits = strategy.limits(settings.execution.limits())
    fee_rate = fees.rate(universe.crypto) if isinstance(fees, VenueFees) else 0.0
    run_id = new_run_id(strategy.name, "backtest")
    journal = BufferedJournal(run_id, sim_account(run_id))
    pipeline = Pipeline(market, RiskManager(limits), Rebalancer(strategy.rebalance, fee_rate), journal, universe,
                        *execution_settings(strategy))
    dump = {"strategy": strategy.model_dump(exclude={"source"}), "limits": limits.model_dump(),
            "venue": venue.venue, "signals": str(src), "bars": str(bars_name)}
    release_freed()           # what reading the files freed is not held through the replay
    return BacktestSetup(run_id, strategy, signals, market, pipeline, journal, initial, str(src), dump)


def run_backtest(settings: Settings, settings_path: str | None, strategy: StrategyConfig, *,
                 out_dir: str | None = None, progress: bool = False, report: bool = True, draw_ahead: bool = False,
                 **kw) -> tuple[str, dict, Path]:
    """Build, replay, persist and write artifacts; return (run_id, summary, artifacts dir).

    ``draw_ahead`` (the ``backtest`` and ``demo`` commands): a helper process loads matplotlib
    while the backtest runs and draws the report's figures while the CSVs are written
    (``framework.reports.figures``), and a child forked once the run is collected writes the CSVs
    while the ledger is written (``framework.artifacts.ArtifactsAhead``); the files are the same either way."""
    import json

    from framework.artifacts import ArtifactsAhead, write_artifacts
    from framework.ledger import Ledger
    from framework.session import RunInfo, account_lease, reap_dead_backtests, simulate

    figures = None
    if report and draw_ahead:
        from framework.reports.figures import FigureWorker

        figures = FigureWorker.start()           # before any thread of ours exists: see start()
    ahead: list[ArtifactsAhead] = []
    reports_dir = out_dir or settings.reports_dir
    try:
        setup = build_backtest(settings, settings_path, strategy, **kw)
        archive = [setup.signals]                # handed to simulate alone: see without_signals
        setup = setup.without_signals()
        ledger = Ledger(settings.ledger)
        try:
            for dead in reap_dead_backtests(ledger, reports_dir):
                print(f"NOTE: backtest {dead} ended while it was being recorded (its process was killed): marked "
                      "failed, its half-written CSVs removed", file=sys.stderr)
            info = RunInfo(strategy.name, strategy.config_hash(), "backtest", settings=setup.settings_dump,
                           signals=setup.signals_source)

            def begin_artifacts(tables, equity) -> None:     # CSVs and figures made beside the ledger write
                ahead.append(ArtifactsAhead.start(ledger, setup.run_id, reports_dir, tables, equity, figures))

            # the run's own account is leased while it is recorded: a later command tells a backtest
            # still being written from one whose process died (reap_dead_backtests)
            with account_lease(ledger, setup.journal.account, "backtest", wait_s=0.0):
                run = simulate(ledger, setup.pipeline, setup.market, archive.pop(), setup.run_id, info,
                               initial_equity=setup.initial_cash, absent_hold=strategy.signals.absent == "hold",
                               progress=progress, while_storing=begin_artifacts if draw_ahead else None)
                # the artifacts are made from the columns the ledger was just given, not read back
                out = write_artifacts(ledger, setup.run_id, reports_dir, report=report,
                                      tables=setup.journal.tables, equity=run.outcome.equity, figures=figures,
                                      ahead=ahead[0] if ahead else None)
                ahead.clear()
        finally:
            for a in ahead:                      # the command failed: no half-written CSVs stay
                a.abandon()
            ledger.close()
    finally:
        if figures is not None:
            figures.close()
    summary = json.loads((out / "summary.json").read_text())
    return setup.run_id, summary, out


def execution_settings(strategy: StrategyConfig) -> tuple:
    """The Pipeline's execution fields from a strategy: unfilled, execution, smart re-prices and offset."""
    r = strategy.rebalance
    return r.unfilled, r.execution, r.smart_reprices, r.smart_offset_bps
