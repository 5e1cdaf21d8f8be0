"""Signal files as the earlier systems wrote them (SPEC §21): JSON Lines, column names of their own,
percentages, batches written row by row, rounded allocations, several strategies, the alert-log
format, bare crypto pairs, run directories with a latest/ copy, and how old a batch is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from framework.config import SignalSource
from framework.errors import DataError, Problem, UsageError
from framework.signal_batches import bar_interval_ns, batch_age_minutes, window_batches
from framework.signals import load_signals

HEADER = "symbol,time,regime,side,weight,confidence,strategy"
T1 = "2024-01-02T15:00:00Z"
HOME = "config/strategies/mine.yaml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def csv_file(tmp_path: Path, *rows: str, name: str = "signals.csv", header: str = HEADER) -> Path:
    return write(tmp_path / name, "\n".join([header, *rows]) + "\n")


def load(path: Path, **settings) -> object:
    return load_signals(path, source=SignalSource(**settings), config_file=HOME)


def problems(path: Path, **settings) -> list[Problem]:
    with pytest.raises(DataError) as info:
        load(path, **settings)
    return info.value.problems


def utc(text: str) -> np.datetime64:
    return np.datetime64(text.rstrip("Z"), "ns")


# ---------------------------------------------------------------------------- JSON Lines, columns, %


def test_json_lines_are_read_with_physical_line_numbers(tmp_path):
    rows = [{"symbol": "AAPL", "time": T1, "side": 1, "weight": 0.4, "confidence": 0.9},
            {"symbol": "MSFT", "time": T1, "side": 1, "weight": 0.3, "confidence": 0.8}]
    text = json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n"
    for name in ("s.jsonl", "s.json"):           # JSON Lines under .json too ("Extra data" before)
        b = load(write(tmp_path / name, text))
        assert b.symbols == ("AAPL", "MSFT") and b.weights[0].tolist() == [0.4, 0.3]

    bad = write(tmp_path / "bad.jsonl", text + '{"symbol": "IBM", "time": "' + T1 + '", "side": 2, '
                                              '"weight": 0.1, "confidence": 0.5}\n')
    [p] = problems(bad)
    assert (p.line, p.field) == (4, "side") and p.message.startswith("side must be")   # line, not "row 3"


def test_columns_map_parity_names_to_the_files_names(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},1,0.4,0.9", header="ticker,timestamp,side,weight,confidence")
    b = load(path, columns={"symbol": "ticker", "time": "Timestamp"})
    assert b.symbols == ("AAPL",) and b.times[0] == utc(T1)

    p = problems(path, columns={"symbol": "ticker", "time": "when"})[0]
    assert p.field == "time" and "no column 'when', which signals.columns maps time to in " + HOME in p.message
    p = problems(path, columns={"symbol": "ticker"})[0]
    assert ("missing column 'time'" in p.message and "signals.columns: {time: NAME} in " + HOME in p.message)


def test_percentages_are_read_as_fractions(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},,1,31.2%,90%,", f"MSFT,{T1},,1,0.2,0.5,")
    b = load(path)
    assert b.weights[0].tolist() == pytest.approx([0.312, 0.2])
    assert b.confidence[0].tolist() == pytest.approx([0.9, 0.5])
    [p] = problems(csv_file(tmp_path, f"AAPL,{T1},,1,131.2%,90%,", name="over.csv"))
    assert (p.line, p.field) == (2, "weight")


# ---------------------------------------------------------------------------- batch_window


def test_batch_window_groups_from_the_first_row_and_stamps_the_last():
    s = 10**9
    t = np.array([100, 0, 250, 301, 705, 700], np.int64) * s
    times, batch = window_batches(t, 300 * s)
    # 0..300 s from the first row (0): 0, 100, 250; then 301 alone (700 is beyond 601); then 700, 705
    assert times.tolist() == [250 * s, 301 * s, 705 * s]
    assert batch.tolist() == [0, 0, 0, 1, 2, 2]
    assert window_batches(t, None)[0].tolist() == sorted(t.tolist())


def test_rows_written_one_by_one_warn_and_a_window_makes_one_batch_each(tmp_path):
    rows = []
    for day in range(1, 5):
        for k, sym in enumerate(("AAA", "BBB", "CCC")):
            rows.append(f"{sym},2024-01-0{day}T15:00:0{k}.{k}Z,,1,0.3,0.9,")
    path = csv_file(tmp_path, *rows)
    with pytest.warns(UserWarning, match=r"12 of 12 batches hold a single symbol while the archive holds 3: .*"
                                         r"signals\.batch_window \(e\.g\. 5m\) in " + HOME):
        assert len(load(path)) == 12
    b = load(path, batch_window="5m")
    assert len(b) == 4 and not np.isnan(b.weights).any()
    assert b.times[0] == utc("2024-01-01T15:00:02.2")


def test_batch_window_with_a_repeated_symbol_follows_duplicates_last_by_time(tmp_path):
    path = csv_file(tmp_path, "AAPL,2024-01-02T15:00:01Z,,1,0.3,0.9,", "AAPL,2024-01-02T15:00:00Z,,1,0.2,0.9,")
    assert load(path, batch_window="1m", duplicates="last").weights[0, 0] == 0.3    # the later time wins
    [p] = problems(path, batch_window="1m")
    assert "set signals.duplicates: last, max_confidence or mean in " + HOME in p.message


# ---------------------------------------------------------------------------- gross_tolerance


def test_a_batch_a_little_over_1_is_rescaled_with_a_note(tmp_path, capsys):
    path = csv_file(tmp_path, f"AAA,{T1},,1,31.2%,1,", f"BBB,{T1},,1,39.5%,1,", f"CCC,{T1},,1,29.4%,1,")
    b = load(path)
    assert np.nansum(b.weights) == pytest.approx(1.0)
    assert b.weights[0, 1] == pytest.approx(0.395 / 1.001)
    assert "rescaled to 1" in capsys.readouterr().err

    [p] = problems(path, gross_tolerance=0.0)
    assert "gross weight 1.001 > 1" in p.message and "signals.gross_tolerance (0, in " + HOME in p.message


# ---------------------------------------------------------------------------- strategies


def two_strategies(tmp_path: Path) -> Path:
    return csv_file(tmp_path, f"BTCUSD,{T1},,1,0.2,0.8,donchian", f"ETHUSD,{T1},,1,0.15,0.7,ma_cross")


def test_several_strategies_without_a_setting_name_both_settings_and_the_file(tmp_path):
    [p] = problems(two_strategies(tmp_path))
    assert p.field == "strategy"
    assert "set signals.strategies: label" in p.message and "signals.strategies: sleeves" in p.message
    assert HOME in p.message


def test_strategies_label_reads_one_portfolio(tmp_path):
    b = load(two_strategies(tmp_path), strategies="label")
    assert b.symbols == ("BTC/USD", "ETH/USD") and b.weights[0].tolist() == [0.2, 0.15]
    assert load_signals(two_strategies(tmp_path), strategy="mine", source=SignalSource(strategies="label")).strategy \
        == "mine"


def test_strategies_sleeves_reads_one_strategy_per_sleeve_never_the_whole_archive(tmp_path):
    with pytest.raises(UsageError, match=r"signals\.strategies: sleeves .* --portfolio NAME"):
        load(two_strategies(tmp_path), strategies="sleeves")
    b = load_signals(two_strategies(tmp_path), strategy="donchian", source=SignalSource(strategies="sleeves"))
    assert b.strategy == "donchian" and b.symbols == ("BTC/USD",)


# ---------------------------------------------------------------------------- symbols


def test_bare_crypto_pairs_are_crypto_and_unknown_ones_are_an_error(tmp_path):
    from framework.types import AssetClass

    b = load(csv_file(tmp_path, f"POLUSD,{T1},,1,0.2,0.8,", f"ATOMUSD,{T1},,1,0.2,0.8,", f"X:BTCUSD,{T1},,1,0.2,0.8,"))
    assert b.symbols == ("ATOM/USD", "BTC/USD", "POL/USD")
    assert {AssetClass.of(s) for s in b.symbols} == {AssetClass.CRYPTO}

    [p] = problems(csv_file(tmp_path, f"ZZZUSD,{T1},,1,0.2,0.8,", name="unknown.csv"))
    assert (p.line, p.field) == (2, "symbol")
    assert "cannot tell whether ZZZUSD is a stock ticker or the crypto pair ZZZ/USD" in p.message
    assert "crypto_assets" in p.message
    b = load_signals(tmp_path / "unknown.csv", crypto_bases=frozenset({"ZZZ"}))
    assert b.symbols == ("ZZZ/USD",)


def test_the_venue_files_list_their_crypto_assets():
    from framework.symbols import CRYPTO_BASES
    from framework.venue import crypto_bases, untradable
    from framework.venue_config import load_venue

    alpaca, coinbase = load_venue("alpaca"), load_venue("coinbase")
    assert {"POL", "ATOM"} <= set(coinbase.crypto_assets) and "POL" not in alpaca.crypto_assets
    assert crypto_bases() == frozenset(alpaca.crypto_assets) | frozenset(coinbase.crypto_assets)
    assert crypto_bases() <= CRYPTO_BASES      # the adapters' positions (POLUSD) read the same way
    assert "does not list the crypto asset POL" in untradable(alpaca, ["POL/USD"])["POL/USD"]
    assert untradable(coinbase, ["POL/USD", "BTC/USD"]) == {}


# ---------------------------------------------------------------------------- run directories


def test_identical_rows_in_a_run_directory_and_its_latest_copy_count_once(tmp_path, capsys):
    rows = (f"AAPL,{T1},,1,0.2,0.9,", f"MSFT,{T1},,1,0.3,0.8,")
    csv_file(tmp_path, *rows, name="run_0900/signals.csv")
    csv_file(tmp_path, *rows, name="latest/signals.csv")
    b = load(tmp_path)
    assert b.weights[0].tolist() == [0.2, 0.3]
    assert "2 row(s) repeat identical rows of an earlier file and are counted once" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the alert log


def alert(ts: str, symbol: str, action: str, reason: str) -> str:
    return json.dumps({"timestamp": ts, "symbol": symbol, "action": action, "price": 1.0, "reason": reason})


def test_the_alert_log_format(tmp_path):
    listed = "SMR (31.2%), LEU (39.5%), OKLO (29.4%)"
    path = write(tmp_path / "alerts.json", "\n".join([
        alert("2025-07-14T11:18:00.063759", "SMR", "BUY", f"Nuclear portfolio allocation: 31.2% (Bull - {listed})"),
        alert("2025-07-14T11:18:00.163759", "NUCLEAR_PORTFOLIO", "BUY", f"Bull market - Nuclear portfolio: {listed}"),
        alert("2025-07-14T11:18:00.263759", "BIL", "SELL", "Bull market - leave BIL"),
        alert("2025-07-14T11:18:00.363759", "TLT", "HOLD", "keep"),
        alert("2025-07-15T11:18:00.063759", "SMR", "BUY", "Nuclear portfolio allocation: 100.0%"),
    ]) + "\n")
    b = load(path, format="alchemiser-alerts", timezone="America/New_York")

    assert len(b) == 2                                                 # rows within 5 minutes: one portfolio
    assert b.times[0] == utc("2025-07-14T15:18:00.363759")             # its last row, New York -> UTC
    row = dict(zip(b.symbols, b.weights[0].tolist(), strict=True))
    assert row["SMR"] == pytest.approx(0.312 / 1.001) and row["LEU"] == pytest.approx(0.395 / 1.001)
    assert row["OKLO"] == pytest.approx(0.294 / 1.001) and row["BIL"] == 0.0
    conf = dict(zip(b.symbols, b.confidence[0].tolist(), strict=True))
    assert row["TLT"] == 0.0 and conf["TLT"] == 0.0                    # HOLD without a % keeps the position


def test_alert_log_rows_that_cannot_be_sized_name_their_line(tmp_path):
    path = write(tmp_path / "alerts.json", "\n".join([
        alert("2025-07-14T11:18:00", "SMR", "BUY", "no size here"),
        alert("2025-07-14T11:18:01", "X_PORTFOLIO", "BUY", "nothing listed"),
        alert("2025-07-14T11:18:02", "LEU", "SHORT", "10%"),
    ]) + "\n")
    ps = problems(path, format="alchemiser-alerts", timezone="America/New_York")
    assert [(p.line, p.field) for p in ps] == [(1, "reason"), (2, "reason"), (3, "action")]


# ---------------------------------------------------------------------------- age


def test_the_age_of_a_batch_counts_from_the_end_of_its_bar():
    t = np.datetime64("2025-01-06T09:00:00", "ns")
    now = int(np.datetime64("2025-01-06T09:15:30", "ns").astype(np.int64))
    assert batch_age_minutes(t, bar_interval_ns("15m", np.array([t])), now) == pytest.approx(0.5)
    assert batch_age_minutes(t, 0, now) == pytest.approx(15.5)
    # without bars.timeframe, the archive's most common batch spacing
    times = np.array(["2025-01-06T08:30", "2025-01-06T08:45", "2025-01-06T09:00"], "datetime64[ns]")
    assert bar_interval_ns(None, times) == 15 * 60 * 10**9
    assert bar_interval_ns(None, times[:1]) == 0
