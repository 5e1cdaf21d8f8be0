"""``parity sweep`` from start to end: points, tasks, the resumable run, DSR, best K runs, report."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from framework.config import Settings, StrategyConfig
from framework.errors import UsageError
from framework.sweep import points as pts
from framework.sweep.point import Backtests


@dataclass(frozen=True, slots=True)
class SweepRequest:
    params: tuple[str, ...]
    random: int | None = None
    seed: int = 0
    walk_forward: str | None = None
    metric: str = "sharpe"
    keep: int = 3
    workers: int | None = None
    cluster: str | None = None


METRICS = ("sharpe", "sortino", "calmar", "cagr", "total_return", "max_drawdown", "final_equity")


def run_sweep(settings: Settings, settings_path: str | None, strategy: StrategyConfig, req: SweepRequest,
              backtests: Backtests, *, progress: bool = False, echo=lambda s: None) -> dict:
    """Run (or resume) the sweep with the composition root's ``backtests``; return its JSON summary
    (also written to reports/SWEEP_ID/sweep.json)."""
    from framework.ledger import Ledger
    from framework.sweep import report, runner

    if req.metric not in METRICS:
        raise UsageError(f"--metric {req.metric!r}: choose one of {', '.join(METRICS)}")
    if req.keep < 0:
        raise UsageError("--keep K needs K >= 0")
    if req.workers is not None and req.cluster:
        raise UsageError("--workers and --cluster exclude each other")
    if req.workers is not None and req.workers < 1:
        raise UsageError("--workers N needs N >= 1")
    axes = pts.parse_axes(req.params)
    points = pts.make_points(strategy, axes, req.random, req.seed)
    wf = pts.parse_walk_forward(req.walk_forward)
    cache: dict = {}
    base = backtests.build(settings, settings_path, strategy, cache=cache)     # validates data before any worker
    wins = None
    if wf is not None:
        import pandas as pd

        first = pd.Timestamp(base.signals.times[0], tz="UTC")
        last = pd.Timestamp(base.market.times[-1], tz="UTC")
        wins = pts.windows(first, last, *wf)
    tasks = pts.tasks_for(points, wins)
    sid = pts.sweep_id(strategy, points, wins, {"bars": strategy.bars.model_dump(), "signals": base.signals_source,
                                                "data": data_digest(cache, base.signals)})
    spec = {"params": list(req.params), "random": req.random, "seed": req.seed, "walk_forward": req.walk_forward,
            "windows": wins, "metric": req.metric, "points": {p.point_id: p.params for p in points}}
    ledger = Ledger(settings.ledger)
    try:
        ledger.start_sweep(sid, strategy.name, strategy.config_hash(), spec, len(points))
        done = ledger.sweep_recorded(sid)
        todo = [t for t in tasks if t.key not in done]
        echo(f"sweep {sid}: {len(points)} point(s), {len(tasks)} backtest(s), {len(tasks) - len(todo)} already "
             f"recorded, {len(todo)} to run on " + (f"the Dask cluster at {req.cluster}" if req.cluster else
                                                    f"{req.workers or runner.default_workers()} local worker(s)"))
        by_id = {p.point_id: p for p in points}
        pack = runner.Pack(sid, backtests.build, without_secrets(settings), settings_path, cache,
                           {p.point_id: p.strategy for p in points})
        stream = (runner.run_cluster(pack, todo, req.cluster, sid) if req.cluster
                  else runner.run_local(pack, todo, req.workers or runner.default_workers(),
                                        warm=lambda: warm_up(backtests.build, settings, settings_path, strategy,
                                                             base, cache)))
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="sweep", unit="backtest", leave=False)
        recorded, busy, replayed, cpu, spans = 0, 0.0, 0.0, 0.0, []
        t_run, wall_start = time.perf_counter(), time.time()
        try:
            for task, res in (stream if todo else ()):
                busy += res["task_seconds"]
                replayed += res["replay_seconds"]
                cpu += res["cpu_seconds"]
                spans.append(res["span"])
                p = by_id[task.point_id]
                recorded += ledger.record_sweep_point(sid, p.point_id, task.window, task.segment, strategy.name,
                                                      p.point_id, p.params, task.start, task.end, res["summary"],
                                                      res["stats"], res["task_seconds"])
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        t_run = time.perf_counter() - t_run
        table = report.point_table(ledger.sweep_points(sid), req.metric, bool(wins))
        best = [pid for pid in table["point_id"].tolist()[: req.keep]]
        runs = _best_runs(backtests.run, ledger, settings, settings_path, sid, best, by_id, table, cache)
        table = report.point_table(ledger.sweep_points(sid), req.metric, bool(wins))
        ledger.finish_sweep(sid, "done")
        out = Path(settings.reports_dir) / sid
        summary = report.write(ledger, sid, out, table, axes=[a.key for a in axes], metric=req.metric,
                               strategy=strategy.name, runs=runs, spec=spec, windows=wins)
    finally:
        ledger.close()
    summary["recorded_now"] = recorded
    summary["skipped"] = len(tasks) - len(todo)
    # wall time of the backtests run now (pool start to last result recorded), the time the workers
    # spent inside run_point, and the replay alone: what ``make bench`` reports as throughput and overhead
    workers = None if req.cluster else req.workers or runner.default_workers()
    summary["timing"] = {"run_seconds": t_run, "point_seconds": busy, "replay_seconds": replayed, "cpu_seconds": cpu,
                         "n_run": len(todo), "workers": workers, "wall_start": wall_start, "spans": spans}
    return summary


def gaps(spans: list[tuple[str, float, float]], wall_start: float) -> tuple[float | None, float | None]:
    """From each task's (worker, start, end): the machinery's per-point overhead once workers are busy
    (each worker's idle time between the end of a point and the start of its next one, per point after
    its first) and the start-up (sweep start to the first point starting on any worker)."""
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for w, a, b in spans:
        by_worker.setdefault(w, []).append((a, b))
    idle, n = 0.0, 0
    for runs in by_worker.values():
        runs.sort()
        for (_, end), (start, _) in itertools.pairwise(runs):
            idle += max(start - end, 0.0)
            n += 1
    first = min((a for _, a, _ in spans), default=None)
    return (idle / n if n else None), (None if first is None else first - wall_start)


def _best_runs(run_backtest, ledger, settings, settings_path, sid, best, by_id, table, cache) -> dict[str, str]:
    """Full runs (ledger rows and reports/RUN_ID artifacts) of the best points over the whole period, once."""
    have = {r["point_id"]: r["run_id"] for r in table.to_dict(orient="records") if isinstance(r.get("run_id"), str)}
    runs = {}
    for pid in best:
        if pid in have and ledger.run(have[pid]) is not None:
            runs[pid] = have[pid]
            continue
        run_id, _summary, _out = run_backtest(settings, settings_path, by_id[pid].strategy, cache=cache)
        ledger.set_sweep_point_run(sid, pid, run_id)
        runs[pid] = run_id
    return runs


def warm_up(build, settings: Settings, settings_path: str | None, strategy: StrategyConfig, base,
            cache: dict) -> None:
    """A backtest of the base config over its first three signal batches, in the sweep's own process,
    before the local workers fork (``runner.run_local``): it loads what every point's first backtest
    loads once per process, so the workers inherit it. Its result is not kept; the cache is copied, so
    the points see the same cache as without it."""
    import pandas as pd

    from framework.sweep.point import run_point

    times = base.signals.times
    if len(times) == 0:
        return
    run_point(build, settings, settings_path, strategy, end=pd.Timestamp(times[min(2, len(times) - 1)]).isoformat(),
              cache=dict(cache))


def data_digest(cache: dict, signals) -> str:
    """A hash of the bars and the base archive's content: the same files edited make another sweep, so a
    re-run never resumes points computed on other data."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for key in sorted((k for k in cache if k[0] == "bars"), key=repr):
        b = cache[key]
        h.update(repr(b.symbols).encode())
        for a in (b.times, b.open, b.high, b.low, b.close, b.volume):
            h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(signals.symbols).encode())
    for a in (signals.times, signals.weights, signals.confidence):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def without_secrets(settings: Settings) -> Settings:
    """The settings a worker needs: a backtest uses no broker, so no key travels to a worker."""
    from framework.config import AlpacaSettings, CoinbaseSettings

    execution = settings.execution.model_copy(update={"alpaca": AlpacaSettings(), "coinbase": CoinbaseSettings()})
    return settings.model_copy(update={"execution": execution})
