"""Where the whole command's time goes: ``parity backtest`` of a workload's CSV files, stage by stage.

    python -m benchmarks.stages WORKLOAD [--limits open|demo] [--seed N]

Runs ``framework.cli.wiring.run_backtest`` (what ``parity backtest`` runs, helpers forked as there)
in this process on the files of :mod:`benchmarks.whole`, with a wall clock around each stage, and
prints them in the order they started. Stages overlap where the command overlaps them: the CSV
child and the figure helper work while the ledger is written, so "waiting for the CSV child" is
only the time the command still waits for it at the end. Nothing in Parity is changed to be
measured: the stages are its own functions, wrapped here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.workloads import DEFAULT_SEED

# (module, attribute path, stage name): Parity's own functions, in the order a backtest runs them
STAGES = (
    ("framework.data", "load_bars", "read the bars CSV"),
    ("framework.signals", "load_signals", "read the signals CSV"),
    ("framework.backtest", "replay", "replay (engine, equity curve)"),
    ("framework.backtest", "collect_run", "collect the run's records as columns"),
    ("framework.artifacts", "ArtifactsAhead.start", "artifacts begun (report data, CSV child, figure inputs)"),
    ("framework.backtest", "store_run", "ledger write (one transaction)"),
    ("framework.reports.html", "render_report", "report (HTML, figures from the helper)"),
    ("framework.artifacts", "ArtifactsAhead.finish", "waiting for the CSV child"),
)


@dataclass(frozen=True)
class Stage:
    name: str
    start: float        # seconds since the command started (after the imports)
    seconds: float


def measure(workload: str, limits: str = "open", seed: int = DEFAULT_SEED) -> tuple[list[Stage], float, float]:
    """(stages, seconds of the imports, seconds of the command) of one in-process backtest."""
    t0 = time.perf_counter()
    import importlib

    from framework.cli import wiring
    from framework.config import load_settings, load_strategy

    for module, _, _ in STAGES:
        importlib.import_module(module)
    imports = time.perf_counter() - t0
    from benchmarks.whole import inputs_for

    _, inp = inputs_for(workload, seed)
    settings_path, strategy_path = inp.config(limits)
    stages: list[Stage] = []
    origin = [t0]                 # stages are timed from the command's start
    undo = [_wrap(module, path, name, stages, origin) for module, path, name in STAGES]
    cwd = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix=f"stages-{workload}-") as d:
            os.chdir(d)
            settings = load_settings(str(settings_path))
            strategy = load_strategy(str(strategy_path), str(settings_path))
            origin[0] = time.perf_counter()
            wiring.run_backtest(settings, str(settings_path), strategy, draw_ahead=True)
            command = time.perf_counter() - origin[0]
    finally:
        os.chdir(cwd)
        for restore in undo:
            restore()
    return sorted(stages, key=lambda s: s.start), imports, command


def _wrap(module: str, path: str, name: str, stages: list[Stage], origin: list[float]) -> Callable[[], None]:
    """Time every call of ``module.path`` into ``stages``; returns what puts the original back."""
    import importlib

    owner = importlib.import_module(module)
    *outer, attr = path.split(".")
    for part in outer:
        owner = getattr(owner, part)
    original = owner.__dict__[attr]
    func = original.__func__ if isinstance(original, (classmethod, staticmethod)) else original

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            stages.append(Stage(name, start - origin[0], time.perf_counter() - start))

    setattr(owner, attr, type(original)(timed) if isinstance(original, (classmethod, staticmethod)) else timed)
    return lambda: setattr(owner, attr, original)


def table(workload: str, stages: list[Stage], imports: float, command: float) -> str:
    lines = [f"Whole command, {workload}: where the time goes (wall clock, in order; helpers overlap the "
             "ledger write)", "", "| stage | starts at s | seconds |", "|---|---|---|",
             f"| imports (before the command) | | {imports:.2f} |"]
    lines += [f"| {s.name} | {s.start:.2f} | {s.seconds:.2f} |" for s in stages]
    lines.append(f"| **whole command** (after the imports) | | **{command:.2f}** |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__.splitlines()[0])
    ap.add_argument("workload")
    ap.add_argument("--limits", default="open", choices=("open", "demo"))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    a = ap.parse_args(argv)
    stages, imports, command = measure(a.workload, a.limits, a.seed)
    sys.stdout.write(table(a.workload, stages, imports, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())

