"""Run a sweep's backtests on a local process pool or an existing Dask cluster, resumably.

Local (default): a ``concurrent.futures.ProcessPoolExecutor`` over ``--workers`` processes (default:
the machine's cores). Chosen over a Dask ``LocalCluster`` because it starts no scheduler, nanny or
dashboard and adds no per-task scheduling round trip; the data goes to each process once through
the pool's initializer. ``--cluster tcp://HOST:PORT``: the user's own Dask cluster via
``distributed``; the data is scattered once with ``broadcast=True`` (one copy per worker), every
task carries only a point id and a window. A worker that dies takes its running tasks with it; the
scheduler re-runs them elsewhere, and each result is recorded once (the ledger's primary key).

Each worker process keeps one cache per sweep (bars, venue, parsed and generated archives, see
``build_backtest(cache=...)``), so a point costs its backtest and no re-reading. Results are written
to the ledger by this process as they arrive, one small row each, committed: an interrupted sweep
loses at most the points that were running, and a re-run records only the missing ones. (That row
costs this process ~0.07 ms, under 0.1 % of a point: batching the rows would save nothing worth the
points an interrupt would lose.)

Threads: a worker runs its point on one thread. Numba's kernels are not ``parallel``; the idle
threads a worker inherits or starts (OpenBLAS's pool, pyarrow's, jemalloc's) took no CPU time over
20 medium-workload points, so there is nothing to pin to one thread.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from framework.config import Settings, StrategyConfig
from framework.errors import UsageError
from framework.sweep.points import Task


@dataclass(frozen=True)
class Pack:
    """What every worker needs, sent once: settings, the primed cache and each point's config."""

    token: str
    build: Callable            # framework.cli.wiring.build_backtest, handed in by the CLI (point.Backtests)
    settings: Settings
    settings_path: str | None
    cache: dict
    strategies: dict[str, StrategyConfig] = field(default_factory=dict)


_CACHES: dict[str, dict] = {}
_PACK: Pack | None = None


def run_task(pack: Pack, task: Task) -> tuple[Task, dict]:
    """Worker side: one backtest of one point, with the worker's cache for this sweep."""
    from framework.sweep.point import run_point

    cache = _CACHES.get(pack.token)
    if cache is None:
        while len(_CACHES) >= 2:            # a long-lived Dask worker keeps the two newest sweeps only
            _CACHES.pop(next(iter(_CACHES)))
        cache = _CACHES[pack.token] = dict(pack.cache)
    wall0, t0, cpu0 = time.time(), time.perf_counter(), time.process_time()
    res = run_point(pack.build, pack.settings, pack.settings_path, pack.strategies[task.point_id], start=task.start,
                    end=task.end, cache=cache)
    res["task_seconds"] = time.perf_counter() - t0
    res["cpu_seconds"] = time.process_time() - cpu0
    res["span"] = (f"{socket.gethostname()}:{os.getpid()}", wall0, wall0 + res["task_seconds"])
    return task, res


def _init_pool(pack: Pack) -> None:
    global _PACK
    _PACK = pack


def _pool_task(task: Task) -> tuple[Task, dict]:
    assert _PACK is not None
    return run_task(_PACK, task)


def run_local(pack: Pack, tasks: list[Task], workers: int, warm: Callable[[], None] | None = None):
    """Yield (task, result) as the pool finishes them.

    ``warm`` runs in this process first when the workers are forked: whatever a point's first
    backtest loads once per process (~0.4 s on the medium workload, most of it scipy.linalg, which
    numba's arraymath imports, then the modules ``run_point`` imports and the kernels numba reads
    from its cache) is then in memory before the fork, and every worker inherits it: it is paid once
    instead of once per worker (the same wall time on free cores, N times less CPU, and less on cores
    shared with other work). (With ``spawn`` a worker re-imports everything, so warming this process
    would not help; each worker warms at its first point.)

    When the last result is in, the workers are told to exit and the caller goes on (the best runs,
    the report) while they do; on an error or an interrupt the pending points are cancelled and the
    running ones awaited."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    if warm is not None and method == "fork":
        warm()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method), initializer=_init_pool,
                               initargs=(pack,))
    futures = [pool.submit(_pool_task, t) for t in tasks]
    try:
        for f in as_completed(futures):
            yield f.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=False)


def run_cluster(pack: Pack, tasks: list[Task], address: str, sweep_id: str):
    """Yield (task, result) as the Dask cluster at ``address`` finishes them."""
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError(f"--cluster {address}: cannot reach a Dask scheduler there ({e})") from None
    try:
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=30)
        shared = client.scatter(pack, broadcast=True, hash=False)
        futures = [client.submit(run_task, shared, t, key=f"parity-{sweep_id}-{t.point_id}-{t.window}-{t.segment}",
                                 pure=False) for t in tasks]
        for f in as_completed(futures):
            result = f.result()
            f.release()           # recorded: a worker lost later need not recompute it
            yield result
    finally:
        client.close()


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
