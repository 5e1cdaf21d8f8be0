"""The one function through which a sweep runs a backtest: the same ``build_backtest`` and ``replay``
as ``parity backtest``, so a point's result equals a plain backtest of its config to the last digit.
The composition root (``framework.cli``) hands the sweep its ``build_backtest`` and ``run_backtest``
(``Backtests``): nothing under ``framework/sweep`` imports the CLI or a broker. (When run ownership
moves, re-point ``run_point``; nothing else in the sweep builds or replays.)

The summary is ``framework.artifacts.summarize`` — the function that writes a plain backtest's
``summary.json`` — fed from the run's journal instead of from ledger rows: the same values in the
same order as ``BufferedJournal.flush`` and ``persist`` write them (fills of the reports in order,
then those of the later updates; equity times through the ledger's ISO form). Writing ~50,000 rows
to an in-memory ledger and reading them back costs three times the replay on the medium workload;
this costs a few milliseconds. The tests compare every point with a plain ``parity backtest``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from framework.config import Settings, StrategyConfig


@dataclass(frozen=True)
class Backtests:
    """How a sweep builds and runs a backtest, handed in by the composition root: ``build`` is
    ``framework.cli.wiring.build_backtest`` (a point's setup, on the workers) and ``run`` its
    ``run_backtest`` (the full runs of the best points). Module-level functions, so a Dask worker
    receives them by reference."""

    build: Callable
    run: Callable


def run_point(build: Callable, settings: Settings, settings_path: str | None, strategy: StrategyConfig, *,
              start: str | None = None, end: str | None = None, cache: dict | None = None) -> dict:
    """Backtest one point with ``build`` (``Backtests.build``); return {summary, stats (per-period
    Sharpe, skew, kurt, n_obs), seconds}."""
    from framework.backtest import replay
    from framework.reports.metrics import returns_of
    from framework.sweep.dsr import return_stats

    t0 = time.perf_counter()
    setup = build(settings, settings_path, strategy, start=start, end=end, cache=cache)
    outcome = replay(setup.pipeline, setup.market, setup.signals,
                     absent_hold=strategy.signals.absent == "hold")
    summary, equity = journal_summary(setup, outcome, strategy)
    stats = return_stats(returns_of(equity).to_numpy())
    return {"summary": summary, "stats": stats.as_dict(), "seconds": time.perf_counter() - t0,
            "replay_seconds": outcome.seconds}


def journal_summary(setup, outcome, strategy: StrategyConfig) -> tuple[dict, pd.Series]:
    """summary.json of the run (without run_id) and its equity series, from the journal in memory."""
    from framework.artifacts import _utc, summarize
    from framework.ledger import iso
    from framework.reports.rundata import periods_per_year_for

    journal = setup.journal
    eq = outcome.equity
    times = _utc(pd.Series(iso(eq["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]"))))
    equity = pd.DataFrame({"time": times, "equity": eq["equity"].to_numpy(float)})
    fills = journal.fill_batches()
    cols = {c: np.concatenate([getattr(f, c) for f in fills]).astype(float) if fills else np.zeros(0)
            for c in ("qty", "price", "fee", "slippage")}
    rejected = journal.rejected()
    orders = pd.DataFrame({"status": ["rejected"] * rejected + ["other"] * (journal.n_orders - rejected)})
    seqs = journal.cycle_seqs()
    if len(eq):
        seqs.discard(outcome.n_cycles)      # persist's final mark takes this seq
    cycles = pd.DataFrame({"status": ["done"] * len(seqs)})
    universe = list(setup.pipeline.universe.symbols)
    crypto_only = bool(universe) and all("/" in s for s in universe)
    ppy = periods_per_year_for(pd.DatetimeIndex(equity["time"]), crypto_only)
    run = {"run_id": None, "strategy": strategy.name, "mode": "backtest", "broker": "sim",
           "config_hash": strategy.config_hash(), "initial_equity": setup.initial_cash, "start": None, "end": None}
    summary = summarize(run, equity, pd.DataFrame(cols), orders, cycles, ppy)
    summary.pop("run_id")
    return summary, equity.set_index("time")["equity"]
