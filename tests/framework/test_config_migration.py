"""settings.yaml and strategy files as users of the earlier systems bring them (SPEC §21)."""

from __future__ import annotations

import pytest

from framework.config import AlpacaSettings, load_settings, load_strategy
from framework.errors import ConfigError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_error(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    return str(info.value)


def test_other_top_level_sections_are_named_once_in_one_note(tmp_path, capsys):
    p = write(tmp_path / "settings.yaml", "symbols: [X:BTCUSD]\ntelegram: {chat_id: 1}\nrisk: {stop: 2}\n"
                                          "execution:\n  max_positions: 4\n")
    s = load_settings(p)
    err = capsys.readouterr().err
    assert s.execution.max_positions == 4
    assert err.count("\n") == 1
    assert err.startswith(f"note: {p}: ignoring top-level section(s) Parity does not use: symbols, telegram, risk")


def test_unknown_keys_inside_what_parity_reads_are_still_errors(tmp_path):
    p = write(tmp_path / "settings.yaml", "telegram: {}\nexecution:\n  alpaca:\n    paper: true\n")
    assert f"{p} [execution.alpaca.paper]: Extra inputs are not permitted" in config_error(load_settings, p)
    q = write(tmp_path / "typo.yaml", "reports_dri: out/\n")
    assert f"{q} [reports_dri]: unknown key; did you mean 'reports_dir'?" in config_error(load_settings, q)


@pytest.mark.parametrize(("key", "value", "meant"), [
    ("max_position_size_pct", "20", "0.20"),
    ("max_daily_loss_pct", "5", "0.05"),
    ("max_exposure_pct", "95", "0.95"),
    ("min_confidence", "50", "0.50"),
    ("max_position_size_pct", "2.5", "0.025"),
])
def test_a_limit_written_as_a_percentage_is_refused_with_the_fraction_meant(tmp_path, key, value, meant):
    p = write(tmp_path / "settings.yaml", f"execution:\n  {key}: {value}\n")
    msg = config_error(load_settings, p)
    # max_exposure_pct is checked against max_leverage, so it is reported on the block, naming the key
    assert f"{p} [execution.{key}]" in msg or f"{p} [execution]: {key}: " in msg
    assert f"{value} looks like a percentage" in msg and f"is written {meant}" in msg


def test_exposure_above_1_is_allowed_up_to_the_leverage(tmp_path):
    p = write(tmp_path / "settings.yaml", "execution:\n  max_exposure_pct: 1.5\n  max_leverage: 2\n")
    assert load_settings(p).execution.max_exposure_pct == 1.5


def test_strategy_risk_overrides_are_checked_the_same_way(tmp_path):
    p = write(tmp_path / "strategies" / "s.yaml", "risk: {max_position_size_pct: 35}\n")
    msg = config_error(load_strategy, str(p))
    assert f"{p} [risk]" in msg and "35 looks like a percentage" in msg and "0.35" in msg


def test_paper_falls_back_to_api_key_with_a_note_and_live_never_uses_paper_keys():
    only_api = AlpacaSettings(api_key="PKAPI", api_secret="SKAPI")
    key, secret, note = only_api.keys(live=False)
    assert (key, secret) == ("PKAPI", "SKAPI") and "using api_key/api_secret for the paper account" in note
    both = AlpacaSettings(api_key="PKAPI", api_secret="SKAPI", paper_api_key="PKP", paper_api_secret="SKP")
    assert both.keys(live=False) == ("PKP", "SKP", None)
    assert AlpacaSettings(paper_api_key="PKP", paper_api_secret="SKP").keys(live=True) == (None, None, None)


def test_signal_settings_are_validated_in_the_strategy_file(tmp_path):
    ok = write(tmp_path / "strategies" / "ok.yaml",
               "signals:\n  format: alchemiser-alerts\n  columns: {time: Timestamp}\n  batch_window: 90s\n"
               "  gross_tolerance: 0.01\n  strategies: label\n")
    sig = load_strategy(str(ok)).signals
    assert sig.columns == {"time": "timestamp"} and sig.window_ns() == 90 * 10**9
    assert load_strategy(str(write(tmp_path / "strategies" / "alerts.yaml", "signals: {format: alchemiser-alerts}\n"))
                         ).signals.window_ns() == 5 * 60 * 10**9

    for text, key in [("signals: {batch_window: soon}\n", "signals.batch_window"),
                      ("signals: {columns: {ticker: sym}}\n", "signals.columns"),
                      ("signals: {strategies: merge}\n", "signals.strategies"),
                      ("signals: {format: tradingview}\n", "signals.format")]:
        p = write(tmp_path / "strategies" / "bad.yaml", text)
        assert f"{p} [{key}]" in config_error(load_strategy, str(p)), text


def test_the_new_signal_settings_leave_existing_config_hashes_alone():
    from framework.config import SignalSource, StrategyConfig

    # the hash StrategyConfig(name="x") had before SPEC §21 (promotions record it)
    assert StrategyConfig(name="x").config_hash() == "c6bf6733f5438a2f"
    assert StrategyConfig(name="x", signals=SignalSource(batch_window="5m")).config_hash() != "c6bf6733f5438a2f"
