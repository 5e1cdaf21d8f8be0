"""Paper track records on the local Alpaca server, shared by the operations tests.

Each session fixture starts an ``AlpacaServer`` in a thread, writes a user's working directory
(config/settings.yaml pointing at the server, a .env with keys, config/strategies/opsdemo.yaml)
and trades three cycles with ``parity execute`` in subprocesses, changing the server's prices
between cycles. The directory is a template: a test that changes it copies it first
(``clone``); the server keeps running for the session, so the copy still reaches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.servers.alpaca_server import AlpacaServer

KEY, SECRET = "PKOPSTESTKEY0042", "SKOPSTESTSECRET0042"
STRATEGY = "opsdemo"
SIM_BPS = 5.0
STRATEGY_YAML = f"""# Operations test strategy
name: {STRATEGY}
description: three equities, fixed weights per batch
stage: research   # research -> paper -> live through parity promote
risk:
  max_position_size_pct: 0.40
simulation:
  venue: alpaca
  slippage: {{model: fixed_bps, bps: {SIM_BPS:g}}}   # the simulator's guess
  cash: 100000
promotion:
  paper: {{min_sharpe: 0.5, max_drawdown: 0.30, min_trades: 5}}
  live: {{min_paper_days: 1, max_tracking_error: 0.001}}
"""
# (weights per symbol, server prices set before the cycle)
CYCLES = [
    ({"AAPL": 0.30, "MSFT": 0.20, "SPY": 0.20}, {"AAPL": 190.0, "MSFT": 370.0, "SPY": 470.0}),
    ({"AAPL": 0.10, "MSFT": 0.30, "SPY": 0.15}, {"AAPL": 195.0, "MSFT": 366.0, "SPY": 472.5}),
    ({"AAPL": 0.25, "MSFT": 0.05, "SPY": 0.30}, {"AAPL": 193.0, "MSFT": 375.0, "SPY": 469.0}),
]


@dataclass
class Home:
    """A user's working directory next to a running local Alpaca server."""

    root: Path
    srv: AlpacaServer

    @property
    def ledger(self) -> Path:
        return self.root / "data" / "parity.db"

    @property
    def strategy_file(self) -> Path:
        return self.root / "config" / "strategies" / f"{STRATEGY}.yaml"

    def parity(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ALPACA_", "COINBASE_")) and k != "PYTHONPATH"}
        env["PARITY_POLL_INTERVAL"] = "0.02"
        p = subprocess.run([str(REPO / ".venv" / "bin" / "parity"), *args], cwd=self.root, env=env,
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           check=False)
        assert "Traceback" not in p.stderr, p.stderr
        assert SECRET not in p.stdout + p.stderr
        return p

    def cli(self, monkeypatch, *args: str):
        """``parity ARGS`` in this process (faster than a subprocess), from this directory."""
        from click.testing import CliRunner

        from framework.cli import main

        monkeypatch.chdir(self.root)
        for var in ("ALPACA_PAPER_KEY", "ALPACA_API_KEY"):
            monkeypatch.setenv(var, KEY)
        for var in ("ALPACA_PAPER_SECRET", "ALPACA_API_SECRET"):
            monkeypatch.setenv(var, SECRET)
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert SECRET not in result.output
        return result

    def json(self, monkeypatch, *args: str) -> dict:
        r = self.cli(monkeypatch, *args, "--json")
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    def clone(self, dest: Path) -> Home:
        shutil.copytree(self.root, dest)
        return Home(dest, self.srv)


def write_home(root: Path, url: str) -> None:
    (root / "config" / "strategies").mkdir(parents=True, exist_ok=True)
    (root / "config" / "settings.yaml").write_text(
        "execution:\n"
        "  alpaca: {enabled: true, api_key: ${ALPACA_API_KEY}, api_secret: ${ALPACA_API_SECRET},\n"
        "           paper_api_key: ${ALPACA_PAPER_KEY}, paper_api_secret: ${ALPACA_PAPER_SECRET},\n"
        f"           base_url: {url}, data_url: {url}}}\n"
        "ledger: data/parity.db\ndata_dir: data/\nreports_dir: reports/\n")
    (root / ".env").write_text(f"ALPACA_PAPER_KEY={KEY}\nALPACA_PAPER_SECRET={SECRET}\n"
                               f"ALPACA_API_KEY={KEY}\nALPACA_API_SECRET={SECRET}\n")
    (root / "config" / "strategies" / f"{STRATEGY}.yaml").write_text(STRATEGY_YAML)


def signal_file(root: Path, name: str, weights: dict[str, float], when: datetime) -> str:
    t = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = "".join(f"{s},{t},bull,1,{w},0.9,{STRATEGY}\n" for s, w in weights.items())
    (root / name).write_text("symbol,time,regime,side,weight,confidence,strategy\n" + rows)
    return name


def paper_session(root: Path, fill_slippage_bps: float):
    srv = AlpacaServer(key=KEY, secret=SECRET, cash=100_000, fill_slippage_bps=fill_slippage_bps,
                       rate_limit=None, data_rate_limit=None)
    srv.start()
    write_home(root, srv.url)
    home = Home(root, srv)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=len(CYCLES) + 1)
    for k, (weights, prices) in enumerate(CYCLES):
        srv.set_prices(prices)
        name = signal_file(root, f"signals-{k}.csv", weights, start + timedelta(minutes=k))
        p = home.parity("execute", "--signals", name, "--strategy", STRATEGY)
        assert p.returncode == 0, p.stdout + p.stderr
    return home


@pytest.fixture(scope="session")
def paper_homes(tmp_path_factory):
    """Both track records, traded side by side (two servers, two directories) to keep the suite fast."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        exact = pool.submit(paper_session, tmp_path_factory.mktemp("exact"), SIM_BPS)
        slipped = pool.submit(paper_session, tmp_path_factory.mktemp("slipped"), 12.0)
        homes = {"exact": exact.result(), "slipped": slipped.result()}
    yield homes
    for h in homes.values():
        h.srv.stop()


@pytest.fixture(scope="session")
def exact_home(paper_homes):
    """Paper cycles on a server that fills at the simulator's prices (its slippage = the strategy's 5 bps)."""
    return paper_homes["exact"]


@pytest.fixture(scope="session")
def slipped_home(paper_homes):
    """Paper cycles on a server that fills 12 bps off the sizing price: 7 bps worse than the simulator."""
    return paper_homes["slipped"]


def backtest_inputs(root: Path) -> tuple[str, str]:
    """A rising daily market for the three symbols and weekly batches: a backtest passing the paper gates."""
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2024-01-02", periods=100, tz="UTC") + pd.Timedelta(hours=21)
    bars = []
    for sym, p0 in (("AAPL", 190.0), ("MSFT", 370.0), ("SPY", 470.0)):
        close = p0 * np.exp(np.cumsum(rng.normal(0.002, 0.008, len(days))))
        open_ = np.r_[p0, close[:-1]]
        bars += [(t.strftime("%Y-%m-%dT%H:%M:%SZ"), sym, o, max(o, c) * 1.001, min(o, c) * 0.999, c, 1e7)
                 for t, o, c in zip(days, open_, close)]
    pd.DataFrame(bars, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"]).to_csv(
        root / "bt-bars.csv", index=False)
    rows = [(s, t.strftime("%Y-%m-%dT%H:%M:%SZ"), "bull", 1, round(rng.uniform(0.15, 0.3), 3), 0.9, STRATEGY)
            for t in days[1::5] for s in ("AAPL", "MSFT", "SPY")]
    columns = ["symbol", "time", "regime", "side", "weight", "confidence", "strategy"]
    pd.DataFrame(rows, columns=columns).to_csv(root / "bt-signals.csv", index=False)
    return "bt-signals.csv", "bt-bars.csv"
