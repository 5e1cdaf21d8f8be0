"""``parity sweep --cluster`` on a real Dask cluster (scheduler and two workers as separate processes on
127.0.0.1): points equal plain backtests to the last digit, and a worker killed mid-sweep loses no point
(its points are re-run elsewhere and each is recorded once)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from tests.conftest import cli_env
from tests.sweep.conftest import STRATEGY, make_home, plain_backtest


def strip(rows: list[dict]) -> dict:
    """Point summaries by their params, without the config hash (which includes the bars path)."""
    return {r["params"]: {k: v for k, v in json.loads(r["summary"]).items() if k != "config_hash"} for r in rows}


def test_cluster_points_equal_plain_backtests(tmp_path, cluster):
    home = make_home(tmp_path / "home")
    out = home.json("sweep", "--strategy", STRATEGY, "--param", "generator.lookback=10,20",
                    "--param", "rebalance.drift_threshold=0.01,0.05", "--cluster", cluster.address, "--keep", "1")
    rows = home.sweep_rows(out["sweep_id"])
    assert len(rows) == 4 and out["recorded_now"] == 4
    for row in rows:
        assert json.loads(row["summary"]) == plain_backtest(home, row)
    local = make_home(tmp_path / "local")
    # the same sweep on the local pool (other bars path, so other ids) gives the same numbers
    ref = local.json("sweep", "--strategy", STRATEGY, "--param", "generator.lookback=10,20",
                     "--param", "rebalance.drift_threshold=0.01,0.05", "--workers", "2", "--keep", "0")
    assert strip(rows) == strip(local.sweep_rows(ref["sweep_id"]))


def test_a_worker_killed_mid_sweep_loses_no_point(tmp_path, cluster):
    home = make_home(tmp_path / "home")
    sweep = ["--config", str(home.settings), "sweep", "--strategy", STRATEGY, "--param",
             "rebalance.drift_threshold=0.0..0.1", "--random", "30", "--seed", "3", "--keep", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "framework", *sweep, "--cluster", cluster.address, "--json"],
                            cwd=home.root, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = cluster.workers[1]
    recorded_at_kill = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        n = 0
        if home.ledger.exists():
            try:
                con = sqlite3.connect(home.ledger)
                n = con.execute("SELECT COUNT(*) FROM sweep_points").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                n = 0
        if n >= 4:
            os.kill(victim.pid, signal.SIGKILL)            # a worker dies with points in flight
            victim.wait(timeout=30)
            recorded_at_kill = n
            break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=300)
    assert recorded_at_kill is not None and recorded_at_kill < 30, "the sweep ended before the worker was killed"
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout)
    assert out["recorded_now"] == 30 and out["n_backtests"] == 30
    rows = home.sweep_rows(out["sweep_id"])
    assert len(rows) == 30 and len({r["point_id"] for r in rows}) == 30      # every point, each once
    log = (cluster.logs / "scheduler.log").read_text()
    assert "Remove worker" in log and "name: w1" in log                       # the scheduler saw it die

    # and they are the right numbers: the same sweep on the local pool
    local = make_home(tmp_path / "local")
    ref = local.json(*sweep[2:], "--workers", "2")
    assert strip(rows) == strip(local.sweep_rows(ref["sweep_id"]))


def test_cluster_workers_use_the_data_sent_once_not_the_files(tmp_path, cluster, monkeypatch):
    """The strategy names its bars by a relative path that exists only in the user's directory, not in
    the workers' (they run elsewhere): the sweep still works, because the bars travel with the sweep
    (scattered once to every worker) and the workers never open the file."""
    home = make_home(tmp_path / "home")
    path = home.root / "strategies" / f"{STRATEGY}.yaml"
    path.write_text(path.read_text().replace(str(home.root / "bars.csv"), "bars.csv"))
    monkeypatch.chdir(home.root)
    assert not (cluster.logs / "bars.csv").exists()
    out = home.json("sweep", "--strategy", STRATEGY, "--param", "generator.lookback=10,30",
                    "--param", "simulation.slippage.bps=1,9", "--cluster", cluster.address, "--keep", "0")
    rows = home.sweep_rows(out["sweep_id"])
    assert len(rows) == 4
    for row in rows[:2]:
        assert json.loads(row["summary"]) == plain_backtest(home, row)
