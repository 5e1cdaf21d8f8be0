"""Users of the two earlier systems switch without writing a converter (SPEC §21, issue 13).

Each test copies a fixture directory of tests/fixtures/earlier_systems (written in the earlier
systems' own formats) into tmp_path, as the user's working directory, and runs the real ``parity``
command there. Local servers stand in for Alpaca paper and Coinbase (prices only: a dry run and the
Coinbase shadow account send nothing).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import cli_env

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "earlier_systems"
NOTE_SECTIONS = ("note: config/settings.yaml: ignoring top-level section(s) Parity does not use: symbols, data, "
                 "regime, tiers, signals, risk, telegram, logging")


def parity(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = cli_env()
    e.update(env or {})
    e["PARITY_POLL_INTERVAL"] = "0.02"
    p = subprocess.run([sys.executable, "-m", "framework", *args], cwd=root, capture_output=True, text=True,
                       timeout=180, env=e, stdin=subprocess.DEVNULL, check=False)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def home(tmp_path: Path, system: str) -> Path:
    root = tmp_path / system
    shutil.copytree(FIXTURES / system, root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new))


def summary(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def artifacts(root: Path, s: dict, name: str) -> pd.DataFrame:
    out = Path(s["artifacts"])
    return pd.read_csv((out if out.is_absolute() else root / out) / name)


# ------------------------------------------------------------------ the regime framework: backtest


@pytest.fixture
def regime(tmp_path) -> Path:
    return home(tmp_path, "regime")


def test_the_regime_frameworks_files_backtest_with_one_note_about_its_other_sections(regime):
    p = parity(regime, "backtest", "--strategy", "default", "--json")
    s = summary(p)

    assert p.stderr.count("ignoring top-level section") == 1
    assert NOTE_SECTIONS in p.stderr
    # 6 analysis runs plus the latest/ copy of the newest: 6 batches; 3 tiers per symbol resolved to one
    assert s["n_cycles"] == 6
    assert "9 row(s) repeat identical rows of an earlier file and are counted once" in p.stderr
    orders = artifacts(regime, s, "orders.csv")
    exits = orders["leg"].isin(["stop", "take"])       # the files' stop_loss/take_profit (SPEC §20)
    assert s["n_orders"] == len(orders) and (~exits).sum() == 6
    assert set(orders.loc[exits, "symbol"]) == {"BTC/USD", "POL/USD", "ATOM/USD"}
    fills = artifacts(regime, s, "fills.csv")
    assert not fills["leg"].isin(["stop", "take"]).any()   # levels 20% under / 30% over: never reached
    orders = orders[~exits]
    first = orders[orders["time"] == "2025-01-06T09:00:00Z"].set_index("symbol")
    assert set(first.index) == {"BTC/USD", "POL/USD", "ATOM/USD"}
    assert (first["side"] == "buy").all()


def test_polusd_and_atomusd_trade_as_crypto_on_15_minute_bars_with_coinbase_fees(regime):
    s = summary(parity(regime, "backtest", "--strategy", "default", "--json"))
    fills = artifacts(regime, s, "fills.csv")
    pol = fills[fills["symbol"] == "POL/USD"].iloc[0]

    assert set(fills["symbol"]) <= {"BTC/USD", "POL/USD", "ATOM/USD"}     # never POLUSD the ticker
    assert pol["time"] == "2025-01-06T09:15:00Z"          # the next 15-minute bar, not an equity open at 04:00Z
    # Coinbase's first-tier taker fee (config/venues/coinbase.yaml: 120 bps), not equity's zero commission
    assert pol["fee"] / (pol["qty"] * pol["price"]) == pytest.approx(0.012, rel=1e-6)
    assert pol["qty"] != round(pol["qty"])                # fractional, as crypto


def test_tiered_files_without_a_rule_name_the_duplicates_setting_and_its_file(regime):
    edit(regime / "config/strategies/default.yaml", "  duplicates: max_confidence", "  # duplicates: (removed)")
    p = parity(regime, "backtest", "--strategy", "default")

    assert p.returncode == 2
    assert re.search(r"run_20250106_0900/signals\.csv:3 \[symbol\]: duplicate of line 2 \(time "
                     r"2025-01-06T09:00:00\+00:00, symbol BTC/USD, tiers LT and MT\); set signals\.duplicates: "
                     r"last, max_confidence or mean in \S*config/strategies/default\.yaml", p.stderr), p.stderr


def test_naive_times_without_a_zone_name_the_timezone_setting(regime):
    edit(regime / "config/strategies/default.yaml", "  timezone: UTC", "  # timezone: (removed)")
    p = parity(regime, "backtest", "--strategy", "default")

    assert p.returncode == 2
    assert re.search(r"run_20250106_0900/signals\.csv:2 \[time\]: time '2025-01-06 09:00:00' has no zone; .*"
                     r"set signals\.timezone \(e\.g\. America/New_York\) in \S*default\.yaml", p.stderr), p.stderr


def test_per_symbol_run_directories_warn_and_batch_window_makes_one_portfolio_per_round(regime):
    before = parity(regime, "backtest", "--strategy", "default", "--signals", "per_symbol/data/signals", "--json")
    b = summary(before)
    trades = artifacts(regime, b, "orders.csv")["leg"].isin(["reduce", "add"])
    assert (b["n_cycles"], trades.sum()) == (6, 10)    # each run closed the others' positions
    assert re.search(r"warning: 6 of 6 batches hold a single symbol while the archive holds 3: .*set "
                     r"signals\.batch_window \(e\.g\. 5m\) in \S*default\.yaml", before.stderr), before.stderr

    edit(regime / "config/strategies/default.yaml", "  strategies: label", "  strategies: label\n  batch_window: 5m")
    after = parity(regime, "backtest", "--strategy", "default", "--signals", "per_symbol/data/signals", "--json")
    a = summary(after)
    orders = artifacts(regime, a, "orders.csv")
    orders = orders[orders["leg"].isin(["reduce", "add"])]
    assert (a["n_cycles"], len(orders)) == (2, 6)     # 3 buys, then BTC down, POL up, ATOM closed
    assert "batch_window" not in after.stderr
    # stamped at the last run of each round (09:02:29 and 11:02:29)
    assert sorted(set(orders["time"])) == ["2025-01-06T09:02:29Z", "2025-01-06T11:02:29Z"]


def test_the_guides_example_is_one_portfolio_with_strategy_as_a_label(regime):
    p = parity(regime, "backtest", "--strategy", "default", "--signals", "guide/signals.csv", "--json")
    s = summary(p)
    assert s["n_cycles"] == 3
    assert set(artifacts(regime, s, "orders.csv")["symbol"]) == {"BTC/USD", "ETH/USD", "POL/USD"}

    edit(regime / "config/strategies/default.yaml", "  strategies: label", "")
    p = parity(regime, "backtest", "--strategy", "default", "--signals", "guide/signals.csv")
    assert p.returncode == 2
    assert "several strategies in the archive (donchian, ma_cross): set signals.strategies: label" in p.stderr
    assert "signals.strategies: sleeves" in p.stderr and "config/strategies/default.yaml" in p.stderr


def test_signals_before_the_bars_exit_2_naming_both_spans(regime):
    text = (regime / "guide/signals.csv").read_text().replace("2025-01-06", "2024-01-06")
    (regime / "guide/restamped.csv").write_text(text)
    p = parity(regime, "backtest", "--strategy", "default", "--signals", "guide/restamped.csv")

    assert p.returncode == 2
    assert "cannot go back" not in p.stderr
    assert ("the signal archive starts before the first bar: signals 2024-01-06T09:00:00Z .. 2024-01-06T17:00:00Z "
            "(3 batches, guide/restamped.csv); bars 2025-01-06T00:00:00Z .. 2025-01-07T23:45:00Z "
            "(data/bars_15m.csv)") in p.stderr


def test_a_limit_written_as_a_percentage_exits_2_with_the_fraction_meant(regime):
    edit(regime / "config/settings.yaml", "max_position_size_pct: 0.20", "max_position_size_pct: 20")
    p = parity(regime, "backtest", "--strategy", "default")

    assert p.returncode == 2
    assert ("config/settings.yaml [execution.max_position_size_pct]: 20 looks like a percentage: limits are "
            "fractions of equity, so 20% is written 0.20") in p.stderr


# ------------------------------------------------------------------ the regime framework: paper, on local servers


def bar_open_just_closed() -> datetime:
    """The open of the 15-minute bar that completed last: the framework's cron stamps the batch there."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % 15 + 15)


def fresh_latest(root: Path) -> None:
    """The newest analysis run, rewritten as the cron job writes it right after a bar completes."""
    latest = root / "data/signals/latest/signals.csv"
    df = pd.read_csv(latest, dtype=str)
    df["time"] = bar_open_just_closed().strftime("%Y-%m-%d %H:%M:%S")    # naive, as the framework writes
    df.to_csv(latest, index=False)


@pytest.fixture
def coinbase_home(regime):
    from tests.servers import certs
    from tests.servers.coinbase_server import CoinbaseServer

    srv = CoinbaseServer(private_rate_limit=None, public_rate_limit=None,
                         products={"BTC-USD": {}, "POL-USD": {"base_increment": "0.1", "base_min_size": "1"},
                                   "ATOM-USD": {"base_increment": "0.001", "base_min_size": "0.1"}},
                         prices={"BTC-USD": 100_000, "POL-USD": 0.5, "ATOM-USD": 5.0}).start()
    try:
        key_file = certs.write_key_file(str(regime / "cdp_key.json"), srv.key())
        edit(regime / "config/settings.yaml",
             "    api_key: ${COINBASE_API_KEY}\n    api_secret: ${COINBASE_API_SECRET}\n",
             f"    key_file: {key_file}\n    base_url: \"{srv.base_url}\"\n    ca_bundle: {srv.cert_path}\n")
        fresh_latest(regime)
        yield regime, srv
    finally:
        srv.stop()


def test_the_cron_line_plans_on_paper_what_the_user_meant(coinbase_home):
    root, srv = coinbase_home
    p = parity(root, "execute", "--signals", "data/signals/latest/signals.csv", "--paper", "--dry-run")

    assert p.returncode == 0, p.stderr
    assert "DRY RUN: nothing was sent" in p.stdout
    assert not [r for r in srv.requests if r.method == "POST"]
    buys = {sym: float(q) for q, sym in re.findall(r"BUY\s+([\d.]+) (\S+/USD)", p.stdout)}
    # newest run: the most confident tiers are BTC LT 0.10, POL LT 0.15, ATOM LT 0.10 of $100,000
    assert set(buys) == {"BTC/USD", "POL/USD", "ATOM/USD"}
    assert buys["POL/USD"] * 0.5 == pytest.approx(15_000, rel=0.02)
    assert buys["BTC/USD"] * 100_000 == pytest.approx(10_000, rel=0.02)
    assert buys["ATOM/USD"] * 5.0 == pytest.approx(10_000, rel=0.02)


def test_the_batch_age_counts_from_the_end_of_its_bar(coinbase_home):
    root, _ = coinbase_home
    # without the bar interval the batch is 15-30 minutes old at its open: refused, as before
    edit(root / "config/strategies/default.yaml", "  timeframe: 15m", "")
    p = parity(root, "execute", "--signals", "data/signals/latest/signals.csv", "--paper", "--dry-run")
    assert p.returncode == 2
    assert "max_signal_age_minutes=15" in p.stderr and "bars.timeframe" in p.stderr


def test_a_disabled_broker_exits_2_saying_so(coinbase_home):
    root, srv = coinbase_home
    edit(root / "config/settings.yaml", "  coinbase:\n    enabled: true", "  coinbase:\n    enabled: false")
    p = parity(root, "execute", "--signals", "data/signals/latest/signals.csv", "--paper", "--dry-run")

    assert p.returncode == 2
    assert "coinbase is disabled: execution.coinbase.enabled is false in" in p.stderr
    assert not srv.requests


def test_paper_keys_kept_under_api_key_are_used_with_a_note(regime):
    from tests.servers.alpaca_server import AlpacaServer

    with AlpacaServer(key="PKREGIME0001", secret="SKREGIME0001", rate_limit=None, data_rate_limit=None) as srv:
        edit(regime / "config/settings.yaml", "    api_secret: ${ALPACA_API_SECRET}\n",
             f"    api_secret: ${{ALPACA_API_SECRET}}\n    base_url: {srv.url}\n    data_url: {srv.url}\n")
        p = parity(regime, "status", "--paper",
                   env={"ALPACA_API_KEY": "PKREGIME0001", "ALPACA_API_SECRET": "SKREGIME0001"})

    assert p.returncode == 0, p.stderr
    assert "PORTFOLIO SUMMARY  (alpaca, paper)" in p.stdout
    assert "note: no paper keys" in p.stderr and "using api_key/api_secret for the paper account" in p.stderr
    assert "SKREGIME0001" not in p.stdout + p.stderr


# ------------------------------------------------------------------ the multi-strategy system's alert log


@pytest.fixture
def alchemiser(tmp_path) -> Path:
    return home(tmp_path, "alchemiser")


def test_the_alert_log_backtests_one_batch_per_portfolio_with_weights_from_the_reasons(alchemiser):
    p = parity(alchemiser, "backtest", "--strategy", "alchemiser", "--json")
    s = summary(p)

    assert s["n_cycles"] == 15                     # one per trading day of the log: one portfolio each
    assert "12 batch(es) had a gross weight a little above 1 (at most 1.001" in p.stderr
    assert "warning" not in p.stderr
    orders = artifacts(alchemiser, s, "orders.csv")
    first = orders[orders["time"] == orders["time"].min()]
    # stamped at the portfolio's last row (NUCLEAR_PORTFOLIO, 11:18:00.3642 New York)
    assert first["time"].iloc[0] == "2025-07-01T15:18:00.364200Z"
    # the first portfolio: SMR (31.2%), LEU (39.5%), OKLO (29.4%), bought in those proportions
    assert sorted(first["symbol"]) == ["LEU", "OKLO", "SMR"]
    value = (first["qty"] * first["avg_price"]).set_axis(first["symbol"])
    assert value["LEU"] / value["SMR"] == pytest.approx(39.5 / 31.2, rel=1e-3)
    assert value["OKLO"] / value["SMR"] == pytest.approx(29.4 / 31.2, rel=1e-3)
    assert value.sum() == pytest.approx(100_000, rel=0.002)


def test_the_alert_log_row_by_row_is_what_the_user_had_and_is_warned_about(alchemiser):
    edit(alchemiser / "config/strategies/alchemiser.yaml", "  timezone: America/New_York",
         "  timezone: America/New_York\n  batch_window: 0s")
    p = parity(alchemiser, "backtest", "--strategy", "alchemiser", "--json")
    s = summary(p)

    assert s["n_cycles"] == 61 and s["n_orders"] > 26
    assert re.search(r"warning: 49 of 61 batches hold a single symbol while the archive holds 4: .*"
                     r"signals\.batch_window", p.stderr), p.stderr


def test_the_alert_log_without_its_zone_names_the_timezone_setting(alchemiser):
    edit(alchemiser / "config/strategies/alchemiser.yaml", "  timezone: America/New_York", "")
    p = parity(alchemiser, "backtest", "--strategy", "alchemiser")

    assert p.returncode == 2
    assert re.search(r"alerts\.json:1 \[time\]: time '2025-07-01T11:18:00\.\d+' has no zone; .*signals\.timezone "
                     r"\(e\.g\. America/New_York\) in \S*alchemiser\.yaml", p.stderr), p.stderr


def test_the_alert_log_plans_its_newest_portfolio_on_alpaca_paper(alchemiser):
    from tests.servers.alpaca_server import AlpacaServer, make_asset

    assets = [make_asset(s, exchange="NYSE") for s in ("SMR", "LEU", "OKLO", "BIL")]
    prices = {"SMR": 40.0, "LEU": 200.0, "OKLO": 50.0, "BIL": 91.5}
    with AlpacaServer(key="PKALCH0001", secret="SKALCH0001", assets=assets, prices=prices, rate_limit=None,
                      data_rate_limit=None) as srv:
        edit(alchemiser / "config/settings.yaml", "    paper_api_secret: ${ALPACA_PAPER_SECRET}\n",
             f"    paper_api_secret: ${{ALPACA_PAPER_SECRET}}\n    base_url: {srv.url}\n    data_url: {srv.url}\n")
        p = parity(alchemiser, "execute", "--signals", "alerts.json", "--strategy", "alchemiser", "--paper",
                   "--dry-run", "--force",
                   env={"ALPACA_PAPER_KEY": "PKALCH0001", "ALPACA_PAPER_SECRET": "SKALCH0001"})
        posts = [r for r in srv.requests if r.method == "POST"]

    assert p.returncode == 0, p.stderr
    assert not posts
    buys = {sym: float(q) for q, sym in re.findall(r"BUY\s+([\d.]+) (\S+)", p.stdout)}
    # the newest portfolio lists SMR (33.0%), LEU (37.6%), OKLO (29.5%): 100.1 % rescaled to 100 %
    assert set(buys) == {"SMR", "LEU", "OKLO"}
    assert buys["LEU"] * 200.0 == pytest.approx(100_000 * 0.376 / 1.001, rel=0.01)
    assert buys["SMR"] * 40.0 == pytest.approx(100_000 * 0.330 / 1.001, rel=0.01)
