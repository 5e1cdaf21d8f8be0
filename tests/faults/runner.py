"""Run ``parity`` as a separate process that a local venue server can SIGKILL at a precise moment.

Two ways, same command line, same code path (``framework.cli.main``):

* ``fork`` (default): a fork of a pre-warmed process (multiprocessing ``forkserver`` with the CLI,
  pandas and both broker SDKs preloaded), so a run costs tens of milliseconds of start-up instead
  of a second and a half of imports — that is what makes hundreds of kill runs fit in the budget.
  The child has a pid of its own, its own sockets and its own SQLite connection: a SIGKILL is a
  real crash of a real process.
* ``subprocess``: ``python -m framework ...`` exactly as cron would run it
  (``PARITY_FAULT_CLIENT=subprocess``); slower, used to show the two behave the same.

A run starts paused: the caller learns its pid, arms the server's ``kill_client_*`` fault with
it, then lets it go, so the kill can never race the start.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRELOAD = ["framework.cli", "framework.cli.live", "framework.cli.registry", "framework.session", "framework.recovery",
           "framework.engine", "framework.journal", "framework.signals", "framework.config", "framework.risk",
           "framework.rebalance", "brokers.live", "brokers.alpaca.broker", "brokers.coinbase.broker",
           "alpaca.trading.client", "alpaca.trading.requests", "alpaca.data.historical", "alpaca.data.requests",
           "coinbase.rest", "tenacity", "pandas", "numpy", "yaml", "pydantic", "dotenv", "click",
           "framework.backtest", "pyarrow.pandas_compat", "encodings.utf_8_sig", "encodings.unicode_escape",
           "tests.faults.warm"]
SCRUB = ("ALPACA_", "COINBASE_", "PARITY_")

_ctx = None


def mode() -> str:
    return os.environ.get("PARITY_FAULT_CLIENT", "fork")


def _context():
    global _ctx
    if _ctx is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _ctx = ctx
    return _ctx


def _child(args: list[str], cwd: str, env: dict[str, str], out: str, err: str, go) -> None:
    rusage = os.environ.get("PARITY_FAULT_RUSAGE")
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    os.chdir(cwd)
    for k in [k for k in os.environ if k.startswith(SCRUB)]:
        del os.environ[k]
    os.environ.update(env)
    if not go.wait(60):
        os._exit(97)
    from framework.cli import main

    if rusage:   # debugging aid (PARITY_FAULT_RUSAGE=FILE): CPU seconds of each run, appended to FILE
        import multiprocessing.util as mpu
        import resource

        def _cpu() -> None:
            r = resource.getrusage(resource.RUSAGE_SELF)
            with open(rusage, "a") as f:
                f.write(f"{r.ru_utime + r.ru_stime}\n")
        mpu.Finalize(None, _cpu, exitpriority=-100)   # multiprocessing's exit runs these, not atexit
    if env.get("PARITY_FAULT_PROFILE"):   # debugging aid: cProfile of the run, to stderr
        import cProfile
        import pstats

        prof = cProfile.Profile()
        try:
            prof.runcall(main, args=list(args), prog_name="parity")
        finally:
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    main(args=list(args), prog_name="parity")


@dataclass
class Run:
    """One ``parity`` process. ``pid`` is valid as soon as it exists; it waits for ``go()``."""

    args: list[str]
    out_path: Path
    err_path: Path
    pid: int = 0
    _proc: object = None
    _go: object = None
    started: float = field(default_factory=time.monotonic)

    def go(self) -> "Run":
        if self._go is not None:
            self._go.set()
        return self

    def wait(self, timeout: float = 90.0) -> int:
        p = self._proc
        if isinstance(p, subprocess.Popen):
            try:
                return p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError(f"parity {' '.join(self.args)} did not finish in {timeout:g}s:\n{self.output}")
        p.join(timeout)  # type: ignore[union-attr]
        if p.exitcode is None:  # type: ignore[union-attr]
            p.kill()  # type: ignore[union-attr]
            p.join()  # type: ignore[union-attr]
            raise AssertionError(f"parity {' '.join(self.args)} did not finish in {timeout:g}s:\n{self.output}")
        return int(p.exitcode)  # type: ignore[union-attr]

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    @property
    def output(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def start(args: list[str], cwd: Path, env: dict[str, str], name: str) -> Run:
    """Start ``parity ARGS`` in ``cwd`` with ``env`` added, paused until ``go()``."""
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    if mode() == "subprocess":
        full = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}
        full.update(env)
        full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = subprocess.Popen([sys.executable, "-m", "framework", *args], cwd=cwd, env=full, stdout=fo,
                                 stderr=fe, stdin=subprocess.DEVNULL)
        return Run(list(args), out, err, p.pid, p, None)
    ctx = _context()
    go = ctx.Event()
    p = ctx.Process(target=_child, args=(list(args), str(cwd), dict(env), str(out), str(err), go), daemon=True)
    # The child needs nothing from the test runner's __main__ (pytest's script): without this,
    # multiprocessing re-imports it in every child.
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        p.start()
    finally:
        sys.modules["__main__"] = main
    return Run(list(args), out, err, p.pid, p, go)


def run(args: list[str], cwd: Path, env: dict[str, str], name: str, timeout: float = 90.0) -> tuple[int, Run]:
    r = start(args, cwd, env, name).go()
    return r.wait(timeout), r
