"""A small sweep home (settings, sample bars, a momentum strategy), the ``parity`` command in-process,
a plain ``parity backtest`` of a point's config, and a real Dask cluster started as separate processes.

The cluster: ``dask scheduler`` on 127.0.0.1 with a random port, no dashboard, a scheduler file, and
two ``dask worker`` processes (one thread each, no nanny, so the PID we kill is the worker itself);
all three are stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import cli_env, long_csv, write_settings

STRATEGY = "swp"
STRATEGY_YAML = """# sweep test strategy
name: swp
stage: research   # research -> paper -> live
bars: {{path: {bars}}}
generator: {{name: {generator}, params: {params}}}
risk: {{max_position_size_pct: 0.5}}
simulation: {{venue: alpaca, slippage: {{model: fixed_bps, bps: 5}}, cash: 100000}}
promotion:
  paper: {{min_sharpe: 0.3, min_deflated_sharpe: 0.95}}
"""


@dataclass
class SweepHome:
    root: Path
    settings: Path

    @property
    def ledger(self) -> Path:
        return self.root / "data" / "parity.db"

    def cli(self, *args: str):
        from framework.cli import main

        return CliRunner().invoke(main, ["--config", str(self.settings), *args], catch_exceptions=False)

    def json(self, *args: str) -> dict:
        r = self.cli(*args, "--json")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    def sweep_rows(self, sweep_id: str) -> list[dict]:
        con = sqlite3.connect(self.ledger)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM sweep_points WHERE sweep_id=? ORDER BY point_id, "
                                                 "window, segment", (sweep_id,))]
        finally:
            con.close()


def make_home(root: Path, *, generator: str = "momentum", params: str = "{lookback: 20, every: 5, top: 2}",
              start: str = "2022-01-03", end: str = "2022-12-30") -> SweepHome:
    from strategies.sample_market import sample_bars

    settings = write_settings(root)
    bars = long_csv(root / "bars.csv", sample_bars(start, end))
    (root / "strategies").mkdir(parents=True, exist_ok=True)
    (root / "strategies" / f"{STRATEGY}.yaml").write_text(
        STRATEGY_YAML.format(bars=bars, generator=generator, params=params))
    return SweepHome(root, settings)


@pytest.fixture
def home(tmp_path) -> SweepHome:
    return make_home(tmp_path / "home")


def point_yaml(home: SweepHome, row: dict, name: str) -> Path:
    """The config of a recorded sweep point, as a strategy file (its params applied to the base file)."""
    from framework.config import load_strategy
    from framework.sweep.points import apply

    base = load_strategy(STRATEGY, str(home.settings))
    s = apply(base, json.loads(row["params"]))
    assert s.config_hash() == row["config_hash"]
    path = home.root / "points" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(s.model_dump(exclude={"source"}), sort_keys=False))
    return path


def plain_backtest(home: SweepHome, row: dict) -> dict:
    """``parity backtest --json`` of the point's config (and window), minus the run id and artifacts."""
    path = point_yaml(home, row, f"{row['point_id']}-{row['window']}-{row['segment']}")
    args = ["backtest", "--strategy", str(path)]
    if row["start"]:
        args += ["--start", row["start"]]
    if row["end"]:
        args += ["--end", row["end"]]
    out = home.json(*args)
    return {k: v for k, v in out.items() if k not in ("run_id", "artifacts")}


def summaries(home: SweepHome, sweep_id: str) -> dict[tuple, dict]:
    return {(r["point_id"], r["window"], r["segment"]): json.loads(r["summary"]) for r in home.sweep_rows(sweep_id)}


# ---------------------------------------------------------------------------- a real Dask cluster


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    logs: Path


def _dask() -> str:
    return str(Path(sys.executable).parent / "dask")


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=15)


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    """A Dask scheduler and two single-threaded workers on 127.0.0.1, as separate processes."""
    work = tmp_path / "dask"
    work.mkdir()
    sched_file = work / "scheduler.json"
    env = cli_env()
    log = (work / "scheduler.log").open("w")
    procs: list[subprocess.Popen] = []
    try:
        sched = subprocess.Popen([_dask(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(sched_file)], cwd=work, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        procs.append(sched)
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            assert sched.poll() is None, (work / "scheduler.log").read_text()
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        workers = []
        for i in range(2):
            wlog = (work / f"worker{i}.log").open("w")
            w = subprocess.Popen([_dask(), "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                  "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                                  "--local-directory", str(work / f"w{i}")], cwd=work, env=env, stdout=wlog,
                                 stderr=subprocess.STDOUT)
            procs.append(w)
            workers.append(w)
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        yield Cluster(address, sched, workers, work)
    finally:
        for p in reversed(procs):
            _stop(p)
        log.close()
