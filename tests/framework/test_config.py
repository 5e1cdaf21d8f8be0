"""Configuration (SPEC §3): settings.yaml in the earlier framework's shape, ${VAR} from the
environment or .env, validated frozen models that name file and key, strategy and venue files."""

from __future__ import annotations

import warnings

import pytest

from framework.config import (
    RiskLimits,
    Settings,
    StrategyConfig,
    load_settings,
    load_strategy,
    mask_secret,
)
from framework.errors import ConfigError
from framework.venue_config import load_venue
from tests.conftest import REPO


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_error(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return str(info.value)


# ---------------------------------------------------------------------------- settings.yaml


def test_the_repository_settings_load_with_the_earlier_frameworks_limits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no literal secret in the shipped file
        s = load_settings(REPO / "config" / "settings.yaml")
    e = s.execution
    assert (e.max_position_size_pct, e.max_exposure_pct, e.max_positions, e.min_confidence, e.max_daily_loss_pct,
            e.min_account_balance, e.max_leverage) == (0.20, 0.95, 10, 0.50, 0.05, 1000, 1.0)
    assert e.alpaca.enabled and not e.coinbase.enabled
    assert (s.ledger, s.data_dir, s.reports_dir) == ("data/parity.db", "data/", "reports/")


def test_without_a_settings_file_the_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(None)
    assert s == Settings() and s.execution.limits() == RiskLimits()


def test_env_variables_fill_placeholders_and_missing_ones_become_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARITY_TEST_KEY", "PK12345678")
    monkeypatch.delenv("PARITY_TEST_MISSING", raising=False)
    p = write(tmp_path / "s.yaml", "execution:\n  alpaca:\n    api_key: ${PARITY_TEST_KEY}\n"
                                   "    api_secret: ${PARITY_TEST_MISSING}\n")
    a = load_settings(p).execution.alpaca
    assert a.api_key == "PK12345678" and a.api_secret is None


def test_dotenv_in_the_working_directory_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARITY_TEST_DOTENV", "placeholder")
    monkeypatch.delenv("PARITY_TEST_DOTENV")               # recorded: removed again after the test
    write(tmp_path / ".env", "PARITY_TEST_DOTENV=from-dotenv-file\n")
    p = write(tmp_path / "s.yaml", "execution:\n  coinbase:\n    api_key: ${PARITY_TEST_DOTENV}\n")
    assert load_settings(p).execution.coinbase.api_key == "from-dotenv-file"


def test_a_literal_secret_works_but_warns(tmp_path):
    p = write(tmp_path / "s.yaml", "execution:\n  alpaca:\n    paper_api_key: PKLITERAL\n")
    with pytest.warns(UserWarning, match=r"execution\.alpaca\.paper_api_key holds a literal secret"):
        s = load_settings(p)
    assert s.execution.alpaca.paper_api_key == "PKLITERAL"


@pytest.mark.parametrize("text,where", [
    ("ledger: x.db\nledgr: y.db\n", "[ledgr]"),          # a near-miss of a Parity key; others are ignored (§21)
    ("execution:\n  max_positons: 3\n", "[execution.max_positons]"),
    ("execution:\n  alpaca:\n    base_urll: http://x\n", "[execution.alpaca.base_urll]"),
    ("execution:\n  max_positions: many\n", "[execution.max_positions]"),
    ("execution:\n  max_position_size_pct: -0.1\n", "[execution.max_position_size_pct]"),
    ("execution:\n  min_confidence: 1.5\n", "[execution.min_confidence]"),
    ("ledger: [1, 2]\n", "[ledger]"),
])
def test_unknown_keys_and_wrong_types_name_the_file_and_the_key(tmp_path, text, where):
    p = write(tmp_path / "settings.yaml", text)
    msg = config_error(load_settings, p)
    assert f"{p} {where}" in msg


def test_bad_yaml_names_the_file_and_line(tmp_path):
    p = write(tmp_path / "settings.yaml", "ledger: x.db\nexecution:\n  max_positions: [1,\n")
    assert f"{p}:4: not valid YAML" in config_error(load_settings, p)
    q = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    assert "expected a mapping" in config_error(load_settings, q)
    assert "file not found" in config_error(load_settings, tmp_path / "nope.yaml")


def test_settings_are_frozen():
    with pytest.raises(Exception):
        Settings().ledger = "elsewhere.db"  # type: ignore[misc]


def test_mask_secret_shows_only_the_ends():
    assert mask_secret("PKABCDEFGH7Q") == "PK…7Q"
    assert mask_secret(None) == "(not set)" and mask_secret("abc") == "…"


# ---------------------------------------------------------------------------- strategies


def test_the_demo_strategy_loads_by_name_from_the_package_config():
    s = load_strategy("demo")
    assert s.name == "demo" and s.simulation.fill == "next_open" and s.simulation.slippage.bps == 5
    assert s.limits(RiskLimits()).max_position_size_pct == 0.35
    assert s.limits(RiskLimits()).max_positions == 10            # not overridden: from settings


def test_a_strategy_beside_the_settings_file_wins_and_its_name_defaults_to_the_file_stem(tmp_path):
    settings = write(tmp_path / "settings.yaml", "ledger: x.db\n")
    write(tmp_path / "strategies" / "mine.yaml", "simulation: {venue: coinbase, volume_cap: 0.1}\n")
    s = load_strategy("mine", settings)
    assert s.name == "mine" and s.simulation.venue == "coinbase" and s.simulation.volume_cap == 0.1
    assert s.source.endswith("mine.yaml")


def test_unknown_strategy_name_is_a_config_error_and_default_is_the_settings_limits(tmp_path):
    msg = config_error(load_strategy, "nope", tmp_path / "settings.yaml")
    assert "strategy 'nope' not found" in msg and "strategies/nope.yaml" in msg
    assert load_strategy("default", tmp_path / "settings.yaml") == StrategyConfig(name="default")


@pytest.mark.parametrize("text,where", [
    ("risk: {max_positons: 3}\n", "[risk]"),
    ("simulation: {fill: sometimes}\n", "[simulation.fill]"),
    ("simulation: {volume_cap: 2}\n", "[simulation.volume_cap]"),
    ("rebalance: {unfilled: later}\n", "[rebalance.unfilled]"),
    ("signals: {duplicates: first}\n", "[signals.duplicates]"),
    ("stage: production\n", "[stage]"),
    ("slippage: {bps: 3}\n", "[slippage]"),
])
def test_strategy_file_errors_name_the_file_and_the_key(tmp_path, text, where):
    p = write(tmp_path / "s.yaml", text)
    msg = config_error(load_strategy, str(p))
    assert f"{p} {where}" in msg


def test_config_hash_changes_with_behaviour_not_with_stage_or_description(tmp_path):
    base = "name: h\nrisk: {max_positions: 3}\nsimulation: {cash: 5000}\n"
    a = load_strategy(str(write(tmp_path / "a.yaml", base)))
    b = load_strategy(str(write(tmp_path / "b.yaml", base + "stage: paper\ndescription: words\n")))
    c = load_strategy(str(write(tmp_path / "c.yaml", base.replace("3}", "4}"))))
    assert a.config_hash() == b.config_hash() != c.config_hash()
    assert len(a.config_hash()) == 16


def test_broker_routing_by_symbol_then_asset_class():
    s = StrategyConfig(name="r", routing={"equity": "alpaca", "crypto": "coinbase", "ETH/USD": "alpaca"})
    assert (s.broker_for("AAPL"), s.broker_for("BTC/USD"), s.broker_for("ETH/USD")) == ("alpaca", "coinbase", "alpaca")


# ---------------------------------------------------------------------------- venues


def test_venue_files_validate_and_describe_what_each_venue_trades():
    from framework.venue import instruments_for, untradable

    alpaca, coinbase = load_venue("alpaca"), load_venue("coinbase")
    assert set(alpaca.asset_classes) == {"equity", "crypto"} and set(coinbase.asset_classes) == {"crypto"}
    assert alpaca.rules("equity").shorting and not alpaca.rules("crypto").shorting
    assert not coinbase.rules("crypto").shorting
    assert alpaca.rules("equity").hours == "XNYS" and coinbase.rules("crypto").hours == "24/7"
    assert untradable(coinbase, ["AAPL", "BTC/USD"]) == {"AAPL": "coinbase does not trade equity"}
    aapl, btc = instruments_for(coinbase, ["AAPL", "BTC/USD"])
    assert not aapl.tradable and btc.qty_increment == 1e-8 and btc.min_notional == 1.0
    assert "does not trade equity" in config_error(coinbase.rules, "equity")
