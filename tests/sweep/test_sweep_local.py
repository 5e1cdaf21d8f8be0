"""``parity sweep`` on the local process pool: every point equals a plain ``parity backtest`` of its
config to the last digit on 1 and 2 workers; an interrupted sweep re-run records only the missing
points; the report files; bad input is a usage error."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import cli_env
from tests.sweep.conftest import STRATEGY, make_home, plain_backtest

GRID = ("--param", "generator.lookback=10,20", "--param", "rebalance.drift_threshold=0.01,0.05")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_point_equals_a_plain_backtest(tmp_path, workers):
    home = make_home(tmp_path / "home")
    out = home.json("sweep", "--strategy", STRATEGY, *GRID, "--workers", workers, "--keep", "1")
    assert out["n_points"] == 4 and out["n_backtests"] == 4 and out["recorded_now"] == 4
    rows = home.sweep_rows(out["sweep_id"])
    assert len(rows) == 4 and len({r["point_id"] for r in rows}) == 4
    for row in rows:
        mine = json.loads(row["summary"])
        plain = plain_backtest(home, row)
        assert mine == plain, row["params"]            # every key, every digit (floats compared exactly)
        assert mine["n_fills"] > 0
    # the sweep's ranking and its best point's full run
    sharpe = [p["sharpe"] for p in out["best"]]
    assert sharpe == sorted(sharpe, reverse=True)
    best = out["best"][0]
    assert best["run_id"] and (tmp_path / "home" / "reports" / best["run_id"] / "summary.json").is_file()
    full = json.loads((tmp_path / "home" / "reports" / best["run_id"] / "summary.json").read_text())
    assert full["sharpe"] == best["sharpe"] and full["config_hash"] == best["point_id"]


def test_partial_fills_carried_orders_rejections_and_smart_execution_equal_plain_backtests(tmp_path):
    """The configs whose bookkeeping is hardest (orders carried across bars, later fills, orders
    rejected after they were working, smart limit steps) still equal the plain backtest."""
    home = make_home(tmp_path / "home")
    out = home.json("sweep", "--strategy", STRATEGY, "--param", "rebalance.unfilled=carry,cancel",
                    "--param", "simulation.volume_cap=0.00001,0.01", "--param", "rebalance.execution=market,smart",
                    "--workers", "2", "--keep", "0")
    rows = home.sweep_rows(out["sweep_id"])
    assert len(rows) == 8
    seen = [json.loads(r["summary"]) for r in rows]
    assert any(s["n_rejected"] > 0 for s in seen) and any(s["n_fills"] > s["n_orders"] for s in seen)
    for row, mine in zip(rows, seen):
        assert mine == plain_backtest(home, row), row["params"]


def test_one_and_two_workers_give_the_same_sweep(tmp_path):
    a, b = make_home(tmp_path / "a"), make_home(tmp_path / "b")
    # the same bars in two places: the config hashes differ (bars.path), the results may not
    one = a.json("sweep", "--strategy", STRATEGY, *GRID, "--workers", "1", "--keep", "0")
    two = b.json("sweep", "--strategy", STRATEGY, *GRID, "--workers", "2", "--keep", "0")

    def by_params(home, sweep_id):
        return {r["params"]: {k: v for k, v in json.loads(r["summary"]).items() if k != "config_hash"}
                for r in home.sweep_rows(sweep_id)}

    x, y = by_params(a, one["sweep_id"]), by_params(b, two["sweep_id"])
    assert len(x) == 4 and x == y


def test_walk_forward_windows_equal_plain_backtests_with_start_and_end(tmp_path):
    home = make_home(tmp_path / "home")
    out = home.json("sweep", "--strategy", STRATEGY, "--param", "generator.lookback=10,20", "--walk-forward",
                    "120D:60D", "--workers", "2", "--keep", "1")
    rows = home.sweep_rows(out["sweep_id"])
    windows = out["windows"]
    assert len(windows) >= 3 and len(rows) == 2 * 2 * len(windows)
    assert {r["segment"] for r in rows} == {"train", "test"}
    for row in rows[:4]:
        assert json.loads(row["summary"]) == plain_backtest(home, row)
    best = out["best"][0]
    assert best["in_sample"] is not None and best["out_of_sample"] == best["metric"]
    html = (tmp_path / "home" / "reports" / out["sweep_id"] / "sweep.html").read_text()
    assert "In sample vs out of sample" in html


def test_an_interrupted_sweep_rerun_records_only_the_missing_points(tmp_path):
    home = make_home(tmp_path / "home")
    args = [sys.executable, "-m", "framework", "--config", str(home.settings), "sweep", "--strategy", STRATEGY,
            "--param", "rebalance.drift_threshold=0.0..0.1", "--random", "24", "--seed", "5", "--workers", "1",
            "--keep", "0", "--json"]
    proc = subprocess.Popen(args, cwd=home.root, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    recorded = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if home.ledger.exists():
                try:
                    con = sqlite3.connect(home.ledger)
                    recorded = con.execute("SELECT COUNT(*) FROM sweep_points").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    recorded = 0
            if recorded >= 3:
                os.killpg(proc.pid, signal.SIGKILL)        # the sweep and its pool worker, mid-sweep
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be interrupted"
    con = sqlite3.connect(home.ledger)
    before = {r[0]: r[1] for r in con.execute("SELECT point_id, summary FROM sweep_points")}
    con.close()
    assert 3 <= len(before) < 24

    out = home.json("sweep", "--strategy", STRATEGY, "--param", "rebalance.drift_threshold=0.0..0.1",
                    "--random", "24", "--seed", "5", "--workers", "2", "--keep", "0")
    assert out["skipped"] == len(before) and out["recorded_now"] == 24 - len(before)
    rows = home.sweep_rows(out["sweep_id"])
    assert len(rows) == 24 and len({r["point_id"] for r in rows}) == 24
    assert all(json.loads(r["summary"]) == json.loads(before[r["point_id"]]) for r in rows if r["point_id"] in before)
    again = home.json("sweep", "--strategy", STRATEGY, "--param", "rebalance.drift_threshold=0.0..0.1",
                      "--random", "24", "--seed", "5", "--keep", "0")
    assert again["recorded_now"] == 0 and again["skipped"] == 24


def test_report_files(tmp_path):
    home = make_home(tmp_path / "home")
    out = home.json("sweep", "--strategy", STRATEGY, *GRID, "--workers", "2", "--keep", "2")
    folder = tmp_path / "home" / "reports" / out["sweep_id"]
    assert {p.name for p in folder.iterdir()} >= {"sweep.json", "points.csv", "sweep.html", "equity-top.png",
                                                   "heatmap-generator_lookback-rebalance_drift_threshold.png"}
    data = json.loads((folder / "sweep.json").read_text())
    assert [p["point_id"] for p in data["points"]][:2] == list(out["runs"])
    import pandas as pd

    csv = pd.read_csv(folder / "points.csv")
    assert list(csv["point_id"]) == [p["point_id"] for p in data["points"]]
    assert csv["sharpe"].is_monotonic_decreasing and csv["dsr"].between(0, 1).all()


@pytest.mark.parametrize("args, message", [
    (("--param", "rebalance.no_such_key=1,2"), "unknown key"),
    (("--param", "generator.nope=1,2"), "unknown parameter(s) ['nope']"),
    (("--param", "rebalance.drift_threshold=-1"), "rebalance.drift_threshold"),
    (("--param", "rebalance.drift_threshold"), "expected KEY=V1,V2"),
    (("--param", "rebalance.drift_threshold=0..1"), "use it with --random"),
    (("--param", "rebalance.drift_threshold=0.01", "--walk-forward", "2y"), "TRAIN:TEST"),
])
def test_bad_input_is_a_usage_error_naming_the_key(tmp_path, args, message):
    home = make_home(tmp_path / "home")
    r = home.cli("sweep", "--strategy", STRATEGY, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_no_broker_key_travels_to_a_worker(tmp_path, monkeypatch):
    """The settings sent to workers (possibly over a network to a Dask cluster) hold no credentials."""
    import pickle

    from framework.config import load_settings
    from framework.sweep.sweep import without_secrets

    home = make_home(tmp_path / "home")
    monkeypatch.setenv("SWEEP_TEST_KEY", "PKSWEEPSECRET123")
    home.settings.write_text(home.settings.read_text() + "execution:\n  alpaca: {paper_api_key: ${SWEEP_TEST_KEY}, "
                             "paper_api_secret: ${SWEEP_TEST_KEY}}\n  max_positions: 7\n")
    settings = load_settings(str(home.settings))
    assert settings.execution.alpaca.paper_api_key == "PKSWEEPSECRET123"
    shipped = without_secrets(settings)
    assert b"PKSWEEPSECRET123" not in pickle.dumps(shipped)
    assert shipped.execution.limits() == settings.execution.limits() and shipped.data_dir == settings.data_dir


def test_edited_data_is_another_sweep_not_a_resume(tmp_path):
    import pandas as pd

    home = make_home(tmp_path / "home")
    args = ("sweep", "--strategy", STRATEGY, "--param", "rebalance.drift_threshold=0.01,0.02", "--workers", "1",
            "--keep", "0")
    first = home.json(*args)
    bars = pd.read_csv(home.root / "bars.csv")
    bars.loc[bars.index[-50:], "close"] *= 1.01              # the same file, other prices
    bars.to_csv(home.root / "bars.csv", index=False)
    second = home.json(*args)
    assert second["sweep_id"] != first["sweep_id"] and second["recorded_now"] == 2 and second["skipped"] == 0
