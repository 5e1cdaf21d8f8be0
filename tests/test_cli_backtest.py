"""The ``parity`` command as a user runs it (subprocesses, settings in tmp_path): the demo and its
artifacts (SPEC §9), a start-up that imports nothing heavy (§1), every bad input of §4 and broken
configuration files (§3, §16) -> exit 2 with file, line and field, no traceback, nothing recorded."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FAKE_SECRET, REPO, cli_env, ledger_counts, long_csv, run_parity, write_settings

SUMMARY_KEYS = ["run_id", "strategy", "mode", "broker", "config_hash", "start", "end", "initial_equity",
                "final_equity", "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar",
                "turnover", "n_cycles", "n_orders", "n_fills", "n_rejected", "fees_paid", "slippage_cost"]
COLUMNS = {
    "equity.csv": ["time", "equity", "cash", "gross_exposure", "net_exposure"],
    "fills.csv": ["time", "symbol", "side", "qty", "price", "fee", "order_id", "client_order_id"],
    "orders.csv": ["time", "symbol", "side", "qty", "type", "status", "client_order_id", "filled_qty", "avg_price"],
    "decisions.csv": ["time", "symbol", "rule", "action", "requested", "approved", "reason"],
}
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
HEAVY = ("vectorbt", "matplotlib", "numba", "alpaca", "coinbase", "pandas")


# ---------------------------------------------------------------------------- parity demo


@pytest.fixture(scope="module")
def demo_text(tmp_path_factory):
    """``parity demo`` with human output, from an empty directory."""
    root = tmp_path_factory.mktemp("demo-text")
    proc = run_parity("--config", str(write_settings(root)), "demo", cwd=root)
    return root, proc


def test_demo_prints_a_summary_and_the_report_path(demo_text):
    root, proc = demo_text
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for label in ("BACKTEST SUMMARY", "Final equity:", "Total return:", "Sharpe / Sortino:", "Max drawdown:",
                  "Fees / slippage:", "Report:"):
        assert label in out
    report = Path(re.search(r"^Report:\s+(\S+)$", out, re.M).group(1))
    assert report.is_file() and report.name == "report.html" and str(report).startswith(str(root))
    assert "Traceback" not in proc.stderr


def test_demo_writes_every_artifact_with_the_spec_keys_and_columns(demo_run):
    art = demo_run.artifacts
    for name in ("summary.json", *COLUMNS, "report.html"):
        assert (art / name).is_file() and (art / name).stat().st_size > 0, name
    summary = json.loads((art / "summary.json").read_text())
    assert list(summary) == SUMMARY_KEYS
    assert summary["mode"] == "backtest" and summary["broker"] == "sim" and summary["strategy"] == "demo"
    for name, cols in COLUMNS.items():
        assert list(pd.read_csv(art / name, nrows=0).columns) == cols, name
    html = (art / "report.html").read_text()
    assert "<html" in html.lower() and "data:image/png;base64" in html


def test_demo_json_is_the_summary_plus_the_artifacts_path(demo_run):
    assert list(demo_run.summary) == SUMMARY_KEYS + ["artifacts"]
    assert demo_run.artifacts.is_dir()
    assert json.loads((demo_run.artifacts / "summary.json").read_text()) == {
        k: v for k, v in demo_run.summary.items() if k != "artifacts"}


def test_demo_artifacts_agree_with_each_other(demo_run):
    art = demo_run.artifacts
    s = json.loads((art / "summary.json").read_text())
    eq, fills, orders = (pd.read_csv(art / n) for n in ("equity.csv", "fills.csv", "orders.csv"))
    assert s["n_fills"] == len(fills) > 50 and s["n_orders"] == len(orders) > 50
    assert s["n_rejected"] == int((orders["status"] == "rejected").sum())
    assert s["final_equity"] == pytest.approx(eq["equity"].iloc[-1], rel=1e-12)
    assert s["initial_equity"] == 100_000 and eq["equity"].iloc[0] == 100_000
    assert s["fees_paid"] == pytest.approx(fills["fee"].sum(), rel=1e-9)
    assert s["total_return"] == pytest.approx(s["final_equity"] / s["initial_equity"] - 1, rel=1e-9)
    filled = fills.groupby("client_order_id")["qty"].sum()
    o = orders.set_index("client_order_id")
    assert (o.loc[filled.index, "filled_qty"] - filled).abs().max() < 1e-9


def test_demo_csvs_use_iso_utc_times_canonical_symbols_and_positive_quantities(demo_run):
    art = demo_run.artifacts
    for name in COLUMNS:
        df = pd.read_csv(art / name)
        assert df["time"].map(lambda t: bool(ISO_UTC.match(str(t)))).all(), name
    fills, orders = pd.read_csv(art / "fills.csv"), pd.read_csv(art / "orders.csv")
    for df in (fills, orders):
        assert set(df["side"]) <= {"buy", "sell"} and (df["qty"] > 0).all()
        assert set(df["symbol"]) <= {"SPY", "AAPL", "MSFT", "IBM", "BTC/USD", "ETH/USD"}
    assert {"BTC/USD", "ETH/USD"} & set(fills["symbol"])


def test_no_secret_from_the_environment_reaches_output_ledger_or_reports(demo_run):
    assert FAKE_SECRET not in demo_run.stdout
    for f in demo_run.root.rglob("*"):
        if f.is_file():
            assert FAKE_SECRET.encode() not in f.read_bytes(), f


def test_runs_lists_the_demo_run(demo_run):
    proc = run_parity("--config", str(demo_run.settings), "runs", "--json", cwd=demo_run.root)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert [r["run_id"] for r in runs] == [demo_run.summary["run_id"]]
    assert runs[0]["status"] == "done" and runs[0]["mode"] == "backtest"


# ---------------------------------------------------------------------------- start-up cost


@pytest.mark.parametrize("argv", [["parity", "--help"], ["parity", "backtest", "--help"]])
def test_help_imports_no_heavy_library(argv):
    code = ("import sys\n"
            f"sys.argv = {argv!r}\n"
            "from framework.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=cli_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------- bad input, run as a user would

T = "2024-01-10T00:00:00Z"
H = "symbol,time,regime,side,weight,confidence,strategy"
# name -> (signal file content or None for an empty directory, expected line, expected field)
BAD_SIGNALS = {
    "empty_archive": (None, None, None),
    "empty_file": ("", None, None),
    "no_rows": (f"{H}\n", None, None),
    "missing_column": (f"symbol,time,side,weight\nAAPL,{T},1,0.5\n", 1, "confidence"),
    "unparseable_time": (f"{H}\nAAPL,{T},,1,0.2,0.9,\nMSFT,yesterday,,1,0.2,0.9,\n", 3, "time"),
    "time_without_zone": (f"{H}\nAAPL,2024-01-10T00:00:00,,1,0.5,0.9,\n", 2, "time"),
    "side_2": (f"{H}\nAAPL,{T},,1,0.2,0.9,\nMSFT,{T},,2,0.2,0.9,\n", 3, "side"),
    "weight_1.5": (f"{H}\nAAPL,{T},,1,1.5,0.9,\n", 2, "weight"),
    "confidence_nan": (f"{H}\nAAPL,{T},,1,0.5,NaN,\n", 2, "confidence"),
    "unknown_symbol": (f"{H}\nAAPL,{T},,1,0.2,0.9,\nZZZZ,{T},,1,0.2,0.9,\n", 3, "symbol"),
    "gross_above_1": (f"{H}\nAAPL,{T},,1,0.6,0.9,\nMSFT,{T},,1,0.5,0.9,\n", 2, "weight"),
    "duplicate_time_symbol": (f"{H}\nAAPL,{T},,1,0.2,0.9,\nAAPL,{T},,1,0.3,0.8,\n", 3, "symbol"),
    # exit levels (SPEC §20): a long's stop above its price, a NaN level, a distance of 150%
    "stop_above_a_long": (f"{H},stop_loss,take_profit,close\nAAPL,{T},,1,0.2,0.9,,95,110,100\n"
                          f"MSFT,{T},,1,0.2,0.9,,105,110,100\n", 3, "stop_loss"),
    "take_profit_nan": (f"{H},stop_loss,take_profit\nAAPL,{T},,1,0.2,0.9,,95,NaN\n", 2, "take_profit"),
    "stop_150_percent": (f"{H},stop_loss\nAAPL,{T},,-1,0.2,0.9,,150%\n", 2, "stop_loss"),
}
BAD_CONFIG = {
    # name -> (settings.yaml text, file named in the message, key named in the message)
    "unknown_key": ("ledger: {root}/data/parity.db\nreports_dir: {root}/reports/\nledgr: x.db\n", "settings.yaml", "ledgr"),
    "unknown_nested_key": ("ledger: {root}/data/parity.db\nexecution:\n  max_positionz: 3\n", "settings.yaml",
                           "execution.max_positionz"),
    "wrong_type": ("ledger: {root}/data/parity.db\nexecution:\n  max_positions: many\n", "settings.yaml",
                   "execution.max_positions"),
    "bad_yaml": ("ledger: {root}/data/parity.db\nexecution:\n  max_positions: [1,\n", "settings.yaml:4", None),
}


def good_bars(root: Path) -> Path:
    from strategies.sample_market import sample_bars

    return long_csv(root / "bars.csv", sample_bars("2024-01-02", "2024-02-09"))


def _bad_signals_case(root: Path, bars: Path, content: str | None):
    root.mkdir(parents=True)
    settings = write_settings(root)
    if content is None:
        signals = root / "archive"
        signals.mkdir()
    else:
        signals = root / "signals.csv"
        signals.write_text(content)
    proc = run_parity("--config", str(settings), "backtest", "--strategy", "demo", "--signals", str(signals),
                      "--bars", str(bars), cwd=root)
    return proc, signals


def _bad_config_case(root: Path, bars: Path, text: str, strategy: str = "demo"):
    root.mkdir(parents=True)
    (root / "settings.yaml").write_text(text.format(root=root))
    (root / "signals.csv").write_text(f"{H}\nAAPL,{T},,1,0.5,0.9,\n")
    proc = run_parity("--config", str(root / "settings.yaml"), "backtest", "--strategy", strategy, "--signals",
                      str(root / "signals.csv"), "--bars", str(bars), cwd=root)
    return proc, root / "settings.yaml"


def _unknown_strategy_case(root: Path, bars: Path):
    root.mkdir(parents=True)
    settings = write_settings(root)
    (root / "signals.csv").write_text(f"{H}\nAAPL,{T},,1,0.5,0.9,\n")
    return run_parity("--config", str(settings), "backtest", "--strategy", "no_such_strategy", "--signals",
                      str(root / "signals.csv"), "--bars", str(bars), cwd=root), settings


def _bad_strategy_file_case(root: Path, bars: Path):
    root.mkdir(parents=True)
    settings = write_settings(root)
    (root / "strategies").mkdir()
    (root / "strategies" / "broken.yaml").write_text("name: broken\nsimulation:\n  fill: sometimes\n  cassh: 5\n")
    (root / "signals.csv").write_text(f"{H}\nAAPL,{T},,1,0.5,0.9,\n")
    return run_parity("--config", str(settings), "backtest", "--strategy", "broken", "--signals",
                      str(root / "signals.csv"), "--bars", str(bars), cwd=root), root / "strategies" / "broken.yaml"


def _untradable_case(root: Path, bars: Path):
    """AAPL has bars but the strategy simulates Coinbase, which trades no equities."""
    root.mkdir(parents=True)
    settings = write_settings(root)
    (root / "cb.yaml").write_text("name: cb\nsimulation: {venue: coinbase}\n")
    (root / "signals.csv").write_text(f"{H}\nBTC/USD,{T},,1,0.2,0.9,\nAAPL,{T},,1,0.2,0.9,\n")
    return run_parity("--config", str(settings), "backtest", "--strategy", str(root / "cb.yaml"), "--signals",
                      str(root / "signals.csv"), "--bars", str(bars), cwd=root), root / "signals.csv"


def _last_bar_case(root: Path, bars: Path):
    """A batch stamped at the last bar: its orders have no bar to fill on and must end canceled."""
    root.mkdir(parents=True)
    settings = write_settings(root)
    last = pd.read_csv(bars)["timestamp"].max()
    (root / "signals.csv").write_text(f"{H}\nAAPL,2024-01-10T00:00:00Z,,1,0.3,0.9,\nBTC/USD,{last},,1,0.3,0.9,\n")
    return run_parity("--config", str(settings), "backtest", "--strategy", "demo", "--signals",
                      str(root / "signals.csv"), "--bars", str(bars), "--json", cwd=root), settings


@pytest.fixture(scope="module")
def cli_cases(tmp_path_factory):
    """Run every CLI case once, four at a time (each is a separate `parity` process)."""
    base = tmp_path_factory.mktemp("cli")
    bars = good_bars(base)
    jobs = {f"signals:{k}": (_bad_signals_case, base / f"s-{i}", bars, v[0]) for i, (k, v) in enumerate(BAD_SIGNALS.items())}
    jobs.update({f"config:{k}": (_bad_config_case, base / f"c-{i}", bars, v[0]) for i, (k, v) in enumerate(BAD_CONFIG.items())})
    jobs["config:unknown_strategy"] = (_unknown_strategy_case, base / "u", bars)
    jobs["config:bad_strategy_file"] = (_bad_strategy_file_case, base / "b", bars)
    jobs["last_bar"] = (_last_bar_case, base / "last", bars)
    jobs["signals:untradable"] = (_untradable_case, base / "cb", bars)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {k: pool.submit(fn, *args) for k, (fn, *args) in jobs.items()}
        return {k: (f.result(), dict(bars=bars, root=jobs[k][1])) for k, f in futures.items()}


def assert_clean_usage_error(proc: subprocess.CompletedProcess, root: Path) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.startswith("error: ")
    assert proc.stdout == ""
    counts = ledger_counts(root / "data" / "parity.db")
    assert counts.get("runs", 0) == 0 and counts.get("orders", 0) == 0 and counts.get("fills", 0) == 0


@pytest.mark.parametrize("case", sorted(BAD_SIGNALS))
def test_bad_signal_archive_exits_2_naming_file_line_and_field(cli_cases, case):
    (proc, signals), ctx = cli_cases[f"signals:{case}"]
    _, line, field = BAD_SIGNALS[case]
    assert_clean_usage_error(proc, ctx["root"])
    assert str(signals) in proc.stderr
    if line is not None:
        assert f"{signals}:{line} [{field}]" in proc.stderr, proc.stderr


def test_a_symbol_the_venue_does_not_trade_exits_2_naming_the_line(cli_cases):
    (proc, signals), ctx = cli_cases["signals:untradable"]
    assert_clean_usage_error(proc, ctx["root"])
    assert f"{signals}:3 [symbol]" in proc.stderr and "coinbase does not trade equity" in proc.stderr


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_broken_settings_file_exits_2_naming_file_and_key(cli_cases, case):
    (proc, settings), ctx = cli_cases[f"config:{case}"]
    _, where, key = BAD_CONFIG[case]
    assert_clean_usage_error(proc, ctx["root"])
    assert where in proc.stderr and str(settings.parent) in proc.stderr
    if key is not None:
        assert f"[{key}]" in proc.stderr, proc.stderr


def test_unknown_strategy_name_exits_2_naming_it(cli_cases):
    (proc, _), ctx = cli_cases["config:unknown_strategy"]
    assert_clean_usage_error(proc, ctx["root"])
    assert "no_such_strategy" in proc.stderr and "strategies/no_such_strategy.yaml" in proc.stderr


def test_broken_strategy_file_exits_2_naming_file_and_keys(cli_cases):
    (proc, path), ctx = cli_cases["config:bad_strategy_file"]
    assert_clean_usage_error(proc, ctx["root"])
    assert f"{path} [simulation.fill]" in proc.stderr and f"{path} [simulation.cassh]" in proc.stderr


def test_orders_without_a_bar_to_fill_on_end_canceled_and_the_run_succeeds(cli_cases):
    """A batch stamped at the last bar (e.g. today's signals on data up to today)."""
    (proc, settings), ctx = cli_cases["last_bar"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    orders = pd.read_csv(Path(summary["artifacts"]) / "orders.csv")
    last = orders[orders["symbol"] == "BTC/USD"].iloc[-1]
    assert last["status"] == "canceled" and last["filled_qty"] == 0


# ---------------------------------------------------------------------------- a good backtest, --json


def test_backtest_json_prints_only_the_summary_object(tmp_path):
    bars = good_bars(tmp_path)
    sig = tmp_path / "signals.csv"
    sig.write_text(f"{H}\nAAPL,{T},,1,0.3,0.9,\nBTC/USD,{T},,1,0.3,0.9,\n"
                   "AAPL,2024-01-20T00:00:00Z,,1,0.1,0.9,\nBTC/USD,2024-01-20T00:00:00Z,,0,0,0.9,\n")
    out = tmp_path / "elsewhere"
    proc = run_parity("--config", str(write_settings(tmp_path)), "backtest", "--strategy", "demo", "--signals",
                      str(sig), "--bars", str(bars), "--cash", "50000", "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert list(s) == SUMMARY_KEYS + ["artifacts"]
    assert Path(s["artifacts"]).parent == out and s["initial_equity"] == 50_000
    assert s["n_cycles"] == 2 and s["n_fills"] >= 3
    counts = ledger_counts(tmp_path / "data" / "parity.db")
    assert counts["runs"] == 1 and counts["fills"] == s["n_fills"]
