"""Shared fixtures: tiny hand-made markets, a simulator factory, a settings file in tmp_path, the
``parity`` command run as a subprocess, one demo run shared by the session, and the real data in
``../shared/data`` (tests that need it skip, saying so, when it is absent)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FAKE_SECRET = "PKFAKESECRET0123456789"    # put in the environment of CLI runs; must never be written anywhere


# ---------------------------------------------------------------------------- markets


def bar_arrays(times, symbols, open_, close=None, high=None, low=None, volume=1e9, split_ratio=None):
    """BarArrays from small matrices (rows = times, columns = symbols); NaN = no bar for that symbol.

    ``close`` defaults to ``open_``; ``high``/``low`` default to the max/min of open and close.
    """
    from framework.data import BarArrays

    o = np.asarray(open_, float).reshape(len(times), len(symbols))
    c = o.copy() if close is None else np.asarray(close, float).reshape(o.shape)
    h = np.fmax(o, c) if high is None else np.asarray(high, float).reshape(o.shape)
    lo = np.fmin(o, c) if low is None else np.asarray(low, float).reshape(o.shape)
    v = np.asarray(volume, float)
    v = np.where(np.isnan(o), np.nan, v.reshape(o.shape) if v.size == o.size else np.broadcast_to(v, o.shape))
    t = np.array([utc(x) for x in times])
    sr = None if split_ratio is None else np.asarray(split_ratio, float).reshape(o.shape)
    return BarArrays(t, tuple(symbols), o, h, lo, c, v, sr)


def instrument(symbol, *, increment=1e-9, min_qty=0.0, min_notional=0.0, fractionable=True, shortable=False):
    from framework.types import AssetClass, Instrument

    return Instrument(symbol, AssetClass.of(symbol), increment, min_qty, min_notional, 0.01, fractionable, shortable)


def universe(*instruments_or_symbols):
    """A Universe from Instrument values or bare symbols (fractional, no minimums, no shorting)."""
    from framework.types import Universe

    return Universe.from_instruments([i if not isinstance(i, str) else instrument(i) for i in instruments_or_symbols])


def simulator(bars, univ, *, cash=100_000.0, fill="next_open", fees=None, slippage=None, volume_cap=None, start=None):
    """A SimulatedBroker on a SimClock set at ``start`` (default: the first bar)."""
    from brokers.simulated import SimulatedBroker
    from framework.clock import SimClock

    clock = SimClock(bars.times[0] if start is None else utc(start))
    return SimulatedBroker(bars, univ, clock, cash=cash, fill=fill, fees=fees, slippage=slippage,
                           volume_cap=volume_cap)


def order_batch(univ, t, legs, *, leg="add", batch_id="test@1", order_type=None, limit=None, stop=None, ref=None):
    """An OrderBatch from ``[(symbol, side, qty), ...]``; ``ref`` gives the sizing prices (default 100)."""
    from framework.types import OrderBatch, OrderType

    idx = np.array([univ.index[s] for s, _, _ in legs], np.int64)
    side = np.array([sd for _, sd, _ in legs], np.int8)
    qty = np.array([q for _, _, q in legs], float)
    ref_px = np.full(len(legs), 100.0) if ref is None else np.asarray(ref, float)
    return OrderBatch(univ, utc(t), batch_id, leg, idx, side, qty, ref_px, order_type or OrderType.MARKET,
                      None if limit is None else np.asarray(limit, float),
                      None if stop is None else np.asarray(stop, float))


def utc(t) -> np.datetime64:
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return np.datetime64(ts.tz_localize(None), "ns")


def long_csv(path: Path, df: pd.DataFrame) -> Path:
    """Write long bars (timestamp, symbol, OHLCV) as the CSV format of SPEC §14."""
    out = df.copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------------- settings and the CLI


def write_settings(root: Path, extra: str = "") -> Path:
    """A settings.yaml whose ledger, data and reports all live under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "settings.yaml"
    path.write_text(f"ledger: {root / 'data' / 'parity.db'}\n"
                    f"data_dir: {root / 'data'}/\n"
                    f"reports_dir: {root / 'reports'}/\n" + extra)
    return path


def cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "COINBASE_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["ALPACA_PAPER_KEY"] = FAKE_SECRET
    env["ALPACA_PAPER_SECRET"] = FAKE_SECRET + "S"
    return env


def run_parity(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``parity ARGS`` in a subprocess (``python -m framework``), with captured text output."""
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=cli_env())


def rerun_without_threads(test_file: str, flag: str) -> None:
    """Run ``test_file`` again in a fresh process when this one has other threads (the suite's
    session servers), where forked helpers are rightly not started and such tests skip; there they
    must all run and pass. Does nothing in that fresh process (``flag`` set) or without threads."""
    import threading

    if os.environ.get(flag) or threading.active_count() == 1:
        return                                    # the module's tests ran here, in a process without threads
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test_file],
                       capture_output=True, text=True, env={**os.environ, flag: "1"}, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "skipped" not in p.stdout.splitlines()[-1], p.stdout[-2000:]


def ledger_counts(db: Path) -> dict[str, int]:
    """Rows per table of a ledger file ({} when no ledger was created)."""
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        out = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
               for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "packed_parts" in out:       # a large backtest's packed rows count as the rows they are
            for t, n in con.execute("SELECT tbl, SUM(n_rows) FROM packed_parts GROUP BY tbl"):
                out[t] += n
        return out
    finally:
        con.close()


# ---------------------------------------------------------------------------- one demo run per session


@dataclass(frozen=True)
class DemoRun:
    root: Path
    settings: Path
    summary: dict
    artifacts: Path
    stdout: str
    ledger: Path
    bars_csv: Path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """``parity demo --json`` from a clean directory, as a user on a fresh clone would run it."""
    root = tmp_path_factory.mktemp("demo")
    settings = write_settings(root, "execution:\n  alpaca:\n    paper_api_key: ${ALPACA_PAPER_KEY}\n"
                                    "    paper_api_secret: ${ALPACA_PAPER_SECRET}\n")
    proc = run_parity("--config", str(settings), "demo", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    return DemoRun(root, settings, summary, Path(summary["artifacts"]), proc.stdout, root / "data" / "parity.db",
                   root / "data" / "demo" / "bars.csv")


# ---------------------------------------------------------------------------- real data


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market data not present at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA
