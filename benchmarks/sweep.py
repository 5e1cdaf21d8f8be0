"""Sweep throughput (SPEC §15, §19): backtests per minute of ``parity sweep`` on the medium workload
with 1 and 2 local workers and on a local Dask cluster (a scheduler and two single-threaded workers
started as separate processes on 127.0.0.1, stopped by PID).

    python -m benchmarks.sweep [--points 200] [--repeats 2] [--out benchmarks/out]

The workload's bars and target weights are written as a user's files (a long bar CSV and a signal
archive) with a strategy whose risk limits do not bind; the sweep varies
``rebalance.drift_threshold`` x ``simulation.slippage.bps`` over ``--points`` distinct configs (default
200, the size of sweep users run; ``grid``), each a full backtest (2,520 bars x 100 symbols, 504
rebalances). Every run is a fresh sweep id (a fresh ledger), ``--keep 0`` (no artifacts: the
throughput of the points themselves). The local runs go first, with no Dask process alive; the
local Dask cluster is started for its own runs only (``measure``).

Reported per setting: points per minute (points / wall time from pool start to the last result
recorded), the scaling of 2 workers over 1, and the sweep machinery's per-point overhead as a
fraction of the mean time inside run_point (that time is the backtest: build from the worker's
cache, replay, and the summary the plain ``parity backtest`` computes too): "all in" is
``(wall x workers - time inside run_point) / points``, start-up and the last result's trip
included; "steady" is each worker's idle time between finishing a point and starting its next one,
per point (``framework.sweep.sweep.gaps``: dispatch, results back, the ledger row); "start-up" is
the time from the sweep's start to the first point starting on a worker (locally: the warm-up
backtest in the sweep's process and forking the pool, ``framework.sweep.runner.run_local``; on
Dask: reaching the cluster and sending the data).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.workloads import DEFAULT_SEED, make_workload
from framework.sweep.sweep import gaps

REPO = Path(__file__).resolve().parent.parent
# what a user sweeps (issue 17 speaks of 200-point sweeps): start-up and the last points' tail weigh
# on throughput as they do for the user, not as in a 16-point sweep, where they are most of the wall
POINTS = 200
STRATEGY = """name: bench
bars: {{path: {bars}}}
signals: {{path: {signals}}}
risk: {{max_position_size_pct: 1.0, max_exposure_pct: 1.0, max_positions: 100, min_confidence: 0.0,
        max_daily_loss_pct: 1.0, min_account_balance: 0.0, max_leverage: 10.0}}
rebalance: {{drift_threshold: 0.0, price_buffer_bps: 0.0}}
simulation: {{venue: alpaca, fill: close, slippage: {{model: fixed_bps, bps: 5}}, cash: 1000000}}
"""


def write_inputs(root: Path, seed: int = DEFAULT_SEED) -> Path:
    """The medium workload as a bar CSV, a signal archive, settings.yaml and strategies/bench.yaml."""
    w = make_workload("medium", seed)
    n, m = w.close.shape
    ts = pd.to_datetime(np.repeat(w.times, m), utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    bars = pd.DataFrame({"timestamp": ts, "symbol": np.tile(w.symbols, n), "open": w.open.ravel(),
                         "high": w.high.ravel(), "low": w.low.ravel(), "close": w.close.ravel(),
                         "volume": w.volume.ravel()})
    root.mkdir(parents=True, exist_ok=True)
    bars.to_csv(root / "bars.csv", index=False)
    k = len(w.rebalance_idx)
    t = pd.to_datetime(np.repeat(w.times[w.rebalance_idx], m), utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    wt = w.weights.ravel()
    sig = pd.DataFrame({"symbol": np.tile(w.symbols, k), "time": t, "side": (wt > 0).astype(int), "weight": wt,
                        "confidence": 1.0, "strategy": "bench"})
    (root / "signals").mkdir(exist_ok=True)
    sig.to_csv(root / "signals" / "bench.csv", index=False)
    (root / "strategies").mkdir(exist_ok=True)
    (root / "strategies" / "bench.yaml").write_text(STRATEGY.format(bars=root / "bars.csv", signals=root / "signals"))
    settings = root / "settings.yaml"
    settings.write_text(f"ledger: {root / 'data' / 'parity.db'}\ndata_dir: {root / 'data'}/\n"
                        f"reports_dir: {root / 'reports'}/\n")
    return settings


def grid(points: int) -> list[str]:
    """``--param`` pairs of an a x b grid of ``points`` configs: exactly ``points`` when it has a divisor
    a with sqrt(points) / 2 <= a <= sqrt(points) (200 = 10 x 20, 96 = 8 x 12), else the smallest
    square-ish grid holding it."""
    root = math.isqrt(points)
    a = max(d for d in range(1, root + 1) if points % d == 0)
    if 2 * a < root:
        a = int(np.ceil(np.sqrt(points)))
    b = int(np.ceil(points / a))
    drift = ",".join(f"{x:g}" for x in np.round(np.linspace(0.0, 0.02, a), 4))
    bps = ",".join(f"{x:g}" for x in np.round(np.linspace(1.0, 10.0, b), 2))
    return ["--param", f"rebalance.drift_threshold={drift}", "--param", f"simulation.slippage.bps={bps}"]


def sweep_once(settings: Path, params: list[str], where: list[str], helpers: tuple[int, ...] = ()) -> dict:
    """One fresh sweep (its ledger removed first) through the real command; its timing block, and the
    cores other processes kept busy meanwhile (``others_cores``): the machine's busy CPU time less the
    sweep's own (its process and pool workers) and that of ``helpers`` (the Dask processes), over the
    command's wall time. On a shared machine it tells whether a run had the cores it asked for."""
    db = settings.parent / "data" / "parity.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "framework", "--config", str(settings), "sweep", "--strategy", "bench",
           *params, *where, "--keep", "0", "--json"]
    busy0, mine0, helpers0, t0 = _busy_seconds(), _children_seconds(), _cpu_seconds_of(helpers), time.perf_counter()
    done = subprocess.run(cmd, check=False, cwd=settings.parent, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    busy1, mine1, helpers1 = _busy_seconds(), _children_seconds(), _cpu_seconds_of(helpers)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    out = json.loads(done.stdout)
    others = None
    if busy0 is not None and busy1 is not None and helpers0 is not None and helpers1 is not None:
        others = max(0.0, (busy1 - busy0) - (mine1 - mine0) - (helpers1 - helpers0)) / wall
    return out["timing"] | {"n_points": out["n_points"], "others_cores": others}


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), else None."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")        # all but idle and iowait


def _children_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _cpu_seconds_of(pids: tuple[int, ...]) -> float | None:
    total = 0.0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


class LocalDask:
    """``dask scheduler`` + two ``dask worker --nthreads 1`` on 127.0.0.1 (no dashboard), stopped by PID."""

    def __init__(self, work: Path):
        self.work, self.procs = work, []

    def __enter__(self) -> str:
        dask = str(Path(sys.executable).parent / "dask")
        f = self.work / "scheduler.json"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        log = open(self.work / "dask.log", "w")
        self.procs.append(subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                            "--no-dashboard", "--scheduler-file", str(f)], cwd=self.work, env=env,
                                           stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while not f.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(f.read_text())["address"]
        for i in range(2):
            self.procs.append(subprocess.Popen([dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                                "--no-nanny", "--no-dashboard", "--local-directory",
                                                str(self.work / f"w{i}")], cwd=self.work, env=env, stdout=log,
                                               stderr=subprocess.STDOUT))
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        return address

    def __exit__(self, *exc) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()


def measure(points: int = POINTS, repeats: int = 2, log=lambda s: print(s, file=sys.stderr, flush=True)) -> dict:
    """Sweep throughput rows: 1 worker, 2 workers, the local Dask cluster; each the median of ``repeats``.

    The Dask cluster runs only while its own sweeps do: idle, its scheduler and two workers still take
    ~8 % of a core (heartbeats, monitors), which 2 local workers on 2 cores would lose to it."""
    with tempfile.TemporaryDirectory(prefix="parity-sweep-bench-") as tmp:
        root = Path(tmp)
        settings = write_inputs(root / "home")
        params = grid(points)
        runs: dict[str, list[dict]] = {"1 worker": [], "2 workers": [], "dask (2 workers)": []}

        def run(name: str, where: list[str], r: int, helpers: tuple[int, ...] = ()) -> None:
            t = sweep_once(settings, params, where, helpers)
            runs[name].append(t)
            log(f"sweep [{name}] run {r + 1}: {t['n_run']} points in {t['run_seconds']:.2f} s")

        for r in range(repeats):
            run("1 worker", ["--workers", "1"], r)
            run("2 workers", ["--workers", "2"], r)
        cluster = LocalDask(root)
        with cluster as address:
            for r in range(repeats):
                run("dask (2 workers)", ["--cluster", address], r, tuple(p.pid for p in cluster.procs))
    rows = []
    for name, ts in runs.items():
        workers = 1 if name == "1 worker" else 2
        per_min = [60.0 * t["n_run"] / t["run_seconds"] for t in ts]
        point = [t["point_seconds"] / t["n_run"] for t in ts]
        over = [(t["run_seconds"] * workers - t["point_seconds"]) / t["n_run"] for t in ts]
        steady = [gaps(t["spans"], t["wall_start"])[0] for t in ts]
        startup = [gaps(t["spans"], t["wall_start"])[1] for t in ts]
        rows.append({"setting": name, "workers": workers, "points": ts[0]["n_run"],
                     "points_per_minute": statistics.median(per_min), "all_points_per_minute": per_min,
                     "point_seconds": statistics.median(point),
                     "replay_seconds": statistics.median(t["replay_seconds"] / t["n_run"] for t in ts),
                     "cpu_seconds": statistics.median(t["cpu_seconds"] / t["n_run"] for t in ts),
                     "overhead_seconds": statistics.median(over),
                     "overhead_fraction": statistics.median(o / p for o, p in zip(over, point)),
                     "startup_seconds": statistics.median(startup),
                     "steady_overhead_seconds": statistics.median(steady),
                     "steady_overhead_fraction": statistics.median(o / p for o, p in zip(steady, point)),
                     "others_cores": _median_or_none([t["others_cores"] for t in ts])})
    base = rows[0]["points_per_minute"]
    for r in rows:
        r["scaling_vs_1"] = r["points_per_minute"] / base
    return {"workload": "medium", "repeats": repeats, "rows": rows, "load_average": os.getloadavg()}


def _median_or_none(xs: list[float | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return statistics.median(known) if len(known) == len(xs) and known else None


def markdown(res: dict) -> str:
    lines = [f"### Sweep throughput (medium workload, {res['rows'][0]['points']} points, median of {res['repeats']})",
             "", ("| setting | backtests / min | × 1 worker | s per point (replay) | CPU s per point | overhead / point, all in |"
                  " overhead / point, steady | start-up | other processes |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        others = r.get("others_cores")
        lines.append(f"| {r['setting']} | {r['points_per_minute']:.1f} | {r['scaling_vs_1']:.2f}× | "
                     f"{r['point_seconds']:.3f} ({r['replay_seconds']:.3f}) | {r['cpu_seconds']:.3f} | "
                     f"{r['overhead_seconds'] * 1000:.0f} ms ({r['overhead_fraction'] * 100:.1f} %) | "
                     f"{r['steady_overhead_seconds'] * 1000:.0f} ms ({r['steady_overhead_fraction'] * 100:.1f} %) | "
                     f"{r['startup_seconds']:.2f} s | {'n/a' if others is None else f'{others:.2f} cores'} |")
    la = res.get("load_average")
    if la:
        lines += ["", (f"Load average at the end: {la[0]:.2f} on {os.cpu_count()} cores. \"Other processes\": the cores "
                       "the rest of the machine kept busy during the runs (median); wall figures need a free core per "
                       "worker, so a scaling measured beside other work understates the sweep's. The CPU time per "
                       "point shows whether a point costs more with more workers.")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=POINTS)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    a = ap.parse_args(argv)
    res = measure(a.points, a.repeats)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(res, indent=2))
    md = markdown(res)
    (out / "sweep.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
