"""The one function through which a sweep runs a backtest: the same ``build_backtest`` and ``replay``
as ``parity backtest`` (framework/cli/wiring.py), so a point's result equals a plain backtest of its
config to the last digit. Its summary is computed by the same code as the run artifacts' summary
(``framework.artifacts.load_run``) on an in-memory ledger, so nothing but the small summary row
reaches the sweep's ledger. (When run ownership moves, re-point this function; nothing else in the
sweep builds or replays.)
"""

from __future__ import annotations

import time

from framework.config import Settings, StrategyConfig


def run_point(settings: Settings, settings_path: str | None, strategy: StrategyConfig, *, start: str | None = None,
              end: str | None = None, cache: dict | None = None) -> dict:
    """Backtest one point; return {summary, stats (per-period Sharpe, skew, kurt, n_obs), seconds}."""
    from framework.artifacts import load_run
    from framework.backtest import persist, replay
    from framework.cli.wiring import build_backtest
    from framework.ledger import Ledger
    from framework.reports.metrics import returns_of
    from framework.sweep.dsr import return_stats

    t0 = time.perf_counter()
    setup = build_backtest(settings, settings_path, strategy, start=start, end=end, cache=cache)
    outcome = replay(setup.pipeline, setup.market, setup.signals,  # type: ignore[arg-type]
                     absent_hold=strategy.signals.absent == "hold")
    memory = Ledger(":memory:")
    try:
        persist(memory, setup.journal, outcome, setup.market,  # type: ignore[arg-type]
                run_id=setup.run_id, strategy=strategy.name, config_hash=strategy.config_hash(),
                universe=setup.pipeline.universe.symbols, initial_equity=setup.initial_cash,  # type: ignore[attr-defined]
                settings=setup.settings_dump, signals=setup.signals_source)
        data = load_run(memory, setup.run_id)
    finally:
        memory.close()
    stats = return_stats(returns_of(data.equity.set_index("time")["equity"]).to_numpy())
    summary = {k: v for k, v in data.summary.items() if k != "run_id"}
    return {"summary": summary, "stats": stats.as_dict(), "seconds": time.perf_counter() - t0,
            "replay_seconds": outcome.seconds}
