"""Signal archives: formats, line numbers, every validation rule, duplicates, strategies, layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.errors import DataError, Problem
from framework.signals import load_signals, read_archive

HEADER = "symbol,time,regime,side,weight,confidence,strategy"
T1 = "2024-01-02T15:00:00Z"
T2 = "2024-01-03T15:00:00Z"


def write(path: Path, text: str, newline: str = "\n", bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.replace("\n", newline).encode()
    path.write_bytes(b"\xef\xbb\xbf" + data if bom else data)
    return path


def csv_file(tmp_path: Path, *rows: str, name: str = "signals.csv", header: str = HEADER, **kw) -> Path:
    return write(tmp_path / name, "\n".join([header, *rows]) + "\n", **kw)


def problems_of(path: Path, **kw) -> list[Problem]:
    with pytest.raises(DataError) as info:
        load_signals(path, **kw)
    return info.value.problems


def where(problems: list[Problem]) -> list[tuple[str, int | None, str | None]]:
    return [(Path(p.file).name, p.line, p.field) for p in problems]


# ---------------------------------------------------------------------------- formats


def test_csv_gives_dense_matrices_of_side_times_weight(tmp_path):
    path = csv_file(tmp_path,
                    f"AAPL,{T1},bull,1,0.4,0.9,",
                    f"X:BTCUSD,{T1},bull,-1,0.3,0.8,",
                    f"MSFT,{T2},bear,0,0.2,0.7,")

    b = load_signals(path)

    assert b.strategy == "default"
    assert b.symbols == ("AAPL", "BTC/USD", "MSFT")
    assert b.times.dtype == np.dtype("datetime64[ns]")
    assert list(b.times) == [np.datetime64("2024-01-02T15:00:00", "ns"),
                             np.datetime64("2024-01-03T15:00:00", "ns")]
    np.testing.assert_array_equal(b.weights, [[0.4, -0.3, np.nan], [np.nan, np.nan, 0.0]])
    np.testing.assert_array_equal(b.confidence, [[0.9, 0.8, np.nan], [np.nan, np.nan, 0.7]])
    assert b.sources == (str(path),)
    assert b.batch(0).batch_id == "default@20240102T150000Z"


def test_json_list_and_signals_object(tmp_path):
    rows = [{"Symbol": "BTC-USD", "time": T1, "side": 1, "weight": 0.5, "confidence": "0.6"},
            {"Symbol": "ETHUSD", "time": T1, "side": "-1", "weight": "0.25", "confidence": 1.0}]
    write(tmp_path / "a.json", json.dumps(rows))
    write(tmp_path / "b.json", json.dumps({"signals": rows}))

    for name in ("a.json", "b.json"):
        b = load_signals(tmp_path / name)
        assert b.symbols == ("BTC/USD", "ETH/USD")
        np.testing.assert_array_equal(b.weights, [[0.5, -0.25]])
        np.testing.assert_array_equal(b.confidence, [[0.6, 1.0]])


def test_json_problem_names_the_element_as_row(tmp_path):
    rows = [{"symbol": "AAPL", "time": T1, "side": 1, "weight": 0.5, "confidence": 0.5},
            {"symbol": "MSFT", "time": T1, "side": 1, "weight": 0.5, "confidence": None}]
    path = write(tmp_path / "s.json", json.dumps(rows, indent=2))

    [p] = problems_of(path)

    assert (p.file, p.line, p.field) == (str(path), 2, "confidence")
    assert p.message.startswith("row 2: ")


def test_json_that_is_not_a_list_of_rows(tmp_path):
    path = write(tmp_path / "s.json", '{"rows": []}')
    assert "list of rows" in problems_of(path)[0].message
    path = write(tmp_path / "t.json", '[{"symbol": "A"}, 3]')
    assert where(problems_of(path)) == [("t.json", 2, None)]
    path = write(tmp_path / "u.json", '[\n{"symbol": }\n]')
    assert where(problems_of(path)) == [("u.json", 2, None)]


def test_parquet_with_typed_times_and_numbers(tmp_path):
    df = pd.DataFrame({"symbol": ["AAPL", "SOL/USD"],
                       "time": pd.to_datetime([T1, T1]),
                       "side": [1, -1], "weight": [0.5, 0.5], "confidence": [0.9, 0.1],
                       "extra": ["kept", "ignored"]})
    df.to_parquet(tmp_path / "s.parquet")

    b = load_signals(tmp_path / "s.parquet")

    assert b.symbols == ("AAPL", "SOL/USD")
    np.testing.assert_array_equal(b.weights, [[0.5, -0.5]])


def test_parquet_problem_line_is_the_row(tmp_path):
    df = pd.DataFrame({"symbol": ["AAPL", "MSFT", "TSLA"], "time": [T1] * 3,
                       "side": [1, 1, 1], "weight": [0.1, 0.1, 7.0], "confidence": [0.5] * 3})
    df.to_parquet(tmp_path / "s.parquet")

    [p] = problems_of(tmp_path / "s.parquet")

    assert (Path(p.file).name, p.line, p.field) == ("s.parquet", 3, "weight")
    assert p.message.startswith("row 3: ")


def test_parquet_naive_timestamps_need_a_zone(tmp_path):
    df = pd.DataFrame({"symbol": ["AAPL"], "time": [pd.Timestamp("2024-01-02 10:00")],
                       "side": [1], "weight": [0.5], "confidence": [0.5]})
    df.to_parquet(tmp_path / "s.parquet")

    assert where(problems_of(tmp_path / "s.parquet")) == [("s.parquet", 1, "time")]
    b = load_signals(tmp_path / "s.parquet", timezone="America/New_York")
    assert b.times[0] == np.datetime64("2024-01-02T15:00:00", "ns")


def test_directory_is_read_recursively_in_sorted_order(tmp_path):
    csv_file(tmp_path, f"AAPL,{T1},,1,0.5,0.5,", name="b/2.csv")
    csv_file(tmp_path, f"MSFT,{T2},,1,0.5,0.5,", name="a/deep/1.csv")
    write(tmp_path / "a" / "1.json", json.dumps([{"symbol": "TSLA", "time": T2, "side": 1, "weight": 0.1,
                                                  "confidence": 0.1}]))
    csv_file(tmp_path, "garbage,,,,,,", name=".hidden/x.csv")
    csv_file(tmp_path, "garbage,,,,,,", name=".skip.csv")
    write(tmp_path / "notes.txt", "not signals")

    b = load_signals(tmp_path)

    sources = [Path(s).relative_to(tmp_path).as_posix() for s in b.sources]
    assert sources == ["a/1.json", "a/deep/1.csv", "b/2.csv"]
    assert b.symbols == ("AAPL", "MSFT", "TSLA")
    assert len(b) == 2
    raw = read_archive(tmp_path)
    assert list(raw["symbol"]) == ["TSLA", "MSFT", "AAPL"]
    assert list(raw["_line"]) == [1, 2, 2]
    assert [Path(f).name for f in raw["_file"]] == ["1.json", "1.csv", "2.csv"]


# ---------------------------------------------------------------------------- encodings and lines


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", [False, True])
def test_bom_and_line_endings_keep_physical_line_numbers(tmp_path, newline, bom):
    path = csv_file(tmp_path,
                    f"AAPL,{T1},,1,0.5,0.5,",
                    "",
                    f"MSFT,{T1},,1,0.1,2,",
                    newline=newline, bom=bom)

    [p] = problems_of(path)

    assert (p.line, p.field) == (4, "confidence")
    raw = read_archive(path)
    assert list(raw.columns[:2]) == ["symbol", "time"]
    assert list(raw["_line"]) == [2, 4]


def test_quoted_multiline_field_counts_physical_lines(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes((f'{HEADER}\r\nAAPL,{T1},"two\nlines",1,0.5,0.5,\r\n'
                      f'MSFT,{T1},"three\r\nphysical\rlines",1,0.1,0.5,\r\n'
                      f"TSLA,{T1},,1,0.1,-0.5,\r\n").encode())

    [p] = problems_of(path)

    assert (p.line, p.field) == (7, "confidence")
    assert list(read_archive(path)["_line"]) == [2, 4, 7]


def test_unbalanced_quotes_fall_back_to_the_csv_module(tmp_path):
    path = csv_file(tmp_path, f'AAPL,{T1},a"b,1,0.5,0.5,', f"MSFT,{T1},,1,0.5,nan,")

    assert where(problems_of(path)) == [("signals.csv", 3, "confidence")]


def test_row_with_too_many_fields_names_its_physical_line(tmp_path):
    path = csv_file(tmp_path, f'AAPL,{T1},"a\nb",1,0.5,0.5,', f"MSFT,{T1},,1,0.5,0.5,,extra")

    [p] = problems_of(path)

    assert (p.line, p.field) == (4, None)
    assert "cannot parse CSV" in p.message


def test_not_utf8(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(f"{HEADER}\nA\xe9PL,{T1},,1,0.5,0.5,\n".encode("latin-1"))

    assert where(problems_of(path)) == [("s.csv", 2, None)]


def test_column_names_are_trimmed_and_case_insensitive_extras_kept(tmp_path):
    path = csv_file(tmp_path, f"aapl,{T1},1,0.5,0.5,x", header=" Symbol ,TIME, Side,Weight ,CONFIDENCE,Note")

    b = load_signals(path)

    assert b.symbols == ("AAPL",)
    assert "note" in read_archive(path).columns


# ---------------------------------------------------------------------------- archive-level problems


def test_missing_path_empty_directory_and_empty_files(tmp_path):
    assert where(problems_of(tmp_path / "nope")) == [("nope", None, None)]
    (tmp_path / "empty").mkdir()
    assert where(problems_of(tmp_path / "empty")) == [("empty", None, None)]
    assert "unsupported" in problems_of(write(tmp_path / "s.txt", "x"))[0].message

    write(tmp_path / "d" / "zero.csv", "")
    csv_file(tmp_path / "d", name="header_only.csv")
    write(tmp_path / "d" / "blank.csv", HEADER + "\n\n\n")
    write(tmp_path / "d" / "none.json", "[]")
    csv_file(tmp_path / "d", f"AAPL,{T1},,1,0.5,0.5,", name="ok.csv")

    problems = problems_of(tmp_path / "d")

    assert where(problems) == [("blank.csv", None, None), ("header_only.csv", None, None),
                               ("none.json", None, None), ("zero.csv", None, None)]
    assert all("no rows" in p.message or "empty file" in p.message for p in problems)


def test_missing_columns_name_the_file(tmp_path):
    csv_file(tmp_path, f"AAPL,{T1},1", name="a.csv", header="symbol,time,side")
    csv_file(tmp_path, f"AAPL,{T1},,1,0.5,x,", name="b.csv")

    problems = problems_of(tmp_path)

    assert where(problems) == [("a.csv", 1, "weight"), ("a.csv", 1, "confidence"), ("b.csv", 2, "confidence")]
    assert "missing column 'weight'" in problems[0].message


# ---------------------------------------------------------------------------- row rules


def test_every_row_rule_is_reported_with_file_line_and_field(tmp_path):
    path = csv_file(tmp_path,
                    f"AAPL,{T1},,1,0.5,0.5,",             # 2 fine
                    f"BT$,{T1},,1,0.1,0.5,",               # 3 symbol
                    f",{T1},,1,0.1,0.5,",                  # 4 empty symbol
                    "MSFT,yesterday,,1,0.1,0.5,",          # 5 time
                    "TSLA,2024-01-02 15:00,,1,0.1,0.5,",   # 6 no zone
                    f"NVDA,{T1},,long,0.1,0.5,",           # 7 side
                    f"AMD,{T1},,2,0.1,0.5,",               # 8 side
                    f"IBM,{T1},,NaN,0.1,0.5,",             # 9 side
                    f"ORCL,{T1},,1,1.5,0.5,",              # 10 weight
                    f"INTC,{T1},,1,,0.5,",                 # 11 weight empty
                    f"META,{T1},,1,0.1,-0.1,",             # 12 confidence
                    f"NFLX,{T1},,1,0.1,NaN,")              # 13 confidence

    problems = problems_of(path)

    assert where(problems) == [
        ("signals.csv", 3, "symbol"), ("signals.csv", 4, "symbol"), ("signals.csv", 5, "time"),
        ("signals.csv", 6, "time"), ("signals.csv", 7, "side"), ("signals.csv", 8, "side"),
        ("signals.csv", 9, "side"), ("signals.csv", 10, "weight"), ("signals.csv", 11, "weight"),
        ("signals.csv", 12, "confidence"), ("signals.csv", 13, "confidence")]
    text = [p.message for p in problems]
    assert "no zone" in text[3] and "unparseable" in text[2]
    assert "'long'" in text[4] and "1.5" in text[7] and "empty" in text[8]


def test_side_accepts_integer_forms_only(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},,1.0,0.2,0.5,", f"MSFT,{T1},, -1 ,0.2,0.5,",
                    f"TSLA,{T1},,0,0.2,0.5,", f"NVDA,{T1},,0.5,0.2,0.5,")

    assert where(problems_of(path)) == [("signals.csv", 5, "side")]
    rows = [{"symbol": "AAPL", "time": T1, "side": 1.0, "weight": 0.2, "confidence": 0.5},
            {"symbol": "MSFT", "time": T1, "side": True, "weight": 0.2, "confidence": 0.5},
            {"symbol": "TSLA", "time": T1, "side": None, "weight": 0.2, "confidence": 0.5}]
    assert where(problems_of(write(tmp_path / "s.json", json.dumps(rows)))) == [("s.json", 2, "side"),
                                                                               ("s.json", 3, "side")]


def test_times_are_converted_to_utc_and_zoneless_ones_need_a_timezone(tmp_path):
    path = csv_file(tmp_path, "AAPL,2024-01-02T10:00:00-05:00,,1,0.2,0.5,",
                    "MSFT,2024-01-02 15:00:00+0000,,1,0.2,0.5,",
                    "TSLA,2024-01-02 10:00,,1,0.2,0.5,")

    assert where(problems_of(path)) == [("signals.csv", 4, "time")]
    b = load_signals(path, timezone="America/New_York")
    assert list(b.times) == [np.datetime64("2024-01-02T15:00:00", "ns")]
    np.testing.assert_array_equal(b.weights, [[0.2, 0.2, 0.2]])


def test_local_time_that_does_not_exist_in_the_timezone(tmp_path):
    path = csv_file(tmp_path, "AAPL,2024-03-10 02:30,,1,0.2,0.5,")

    [p] = problems_of(path, timezone="America/New_York")

    assert (p.line, p.field) == (2, "time")
    assert "America/New_York" in p.message


def test_bad_options_are_data_errors(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},,1,0.2,0.5,")
    assert where(problems_of(path, duplicates="first")) == [("signals.csv", None, "duplicates")]
    assert where(problems_of(path, timezone="Mars/Olympus")) == [("signals.csv", None, "timezone")]


def test_gross_weight_above_one_names_the_batch_and_its_lines(tmp_path):
    path = csv_file(tmp_path,
                    f"AAPL,{T1},,1,0.6,0.5,",
                    f"MSFT,{T2},,1,0.6,0.5,",
                    f"TSLA,{T1},,-1,0.5,0.5,",
                    f"NVDA,{T2},,-1,0.4,0.5,")

    [p] = problems_of(path)

    assert (p.line, p.field) == (2, "weight")
    assert "2024-01-02T15:00:00" in p.message and "line 2, line 4" in p.message and "1.1" in p.message


def test_gross_weight_of_exactly_one_passes(tmp_path):
    path = csv_file(tmp_path, *(f"{s},{T1},,1,0.1,0.5," for s in
                                ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J")))
    assert load_signals(path).weights.shape == (1, 10)


def test_many_bad_rows_are_capped_with_a_summary(tmp_path):
    path = csv_file(tmp_path, *(f"S{i},{T1},,1,0.001,9," for i in range(250)))

    problems = problems_of(path)

    assert len(problems) == 101
    assert problems[-1].line is None and "150 more" in problems[-1].message


# ---------------------------------------------------------------------------- symbols


def test_symbol_forms_resolve_to_one_canonical_symbol(tmp_path):
    path = csv_file(tmp_path, f"X:BTCUSD,{T1},,1,0.1,0.5,", f"BTC-USD,{T2},,1,0.2,0.5,",
                    "btcusd,2024-01-04T00:00Z,,1,0.3,0.5,", "BTC/USD,2024-01-05T00:00Z,,1,0.4,0.5,")

    b = load_signals(path)

    assert b.symbols == ("BTC/USD",)
    np.testing.assert_array_equal(b.weights[:, 0], [0.1, 0.2, 0.3, 0.4])


def test_symbol_check_is_called_once_and_reports_each_symbol(tmp_path):
    rows = [f"AAPL,2024-01-{d:02d}T00:00Z,,1,0.1,0.5," for d in range(1, 9)]
    rows += [f"ZZZZ,2024-01-{d:02d}T00:00Z,,1,0.1,0.5," for d in range(1, 3)]
    rows += ["MSFT,2024-01-01T00:00Z,,1,0.1,0.5,"]
    path = csv_file(tmp_path, *rows)
    calls = []

    def check(symbols: list[str]) -> dict[str, str]:
        calls.append(symbols)
        return {"AAPL": "no bars", "ZZZZ": "not tradable at alpaca"}

    problems = problems_of(path, symbol_check=check)

    assert calls == [["AAPL", "MSFT", "ZZZZ"]]
    assert [p.line for p in problems] == [2, 3, 4, 5, 6, 10, 11, None]
    assert {p.field for p in problems} == {"symbol"}
    assert "no bars" in problems[0].message and "not tradable" in problems[5].message
    assert "3 more rows" in problems[-1].message


def test_universe_orders_columns_and_rejects_other_symbols(tmp_path):
    path = csv_file(tmp_path, f"MSFT,{T1},,1,0.1,0.5,", f"X:ETHUSD,{T1},,1,0.2,0.5,")

    b = load_signals(path, universe=["ETH/USD", "AAPL", "MSFT"])

    assert b.symbols == ("ETH/USD", "AAPL", "MSFT")
    np.testing.assert_array_equal(b.weights, [[0.2, np.nan, 0.1]])
    [p] = problems_of(path, universe=["MSFT"])
    assert (p.line, p.field) == (3, "symbol") and "ETH/USD" in p.message and "universe" in p.message


# ---------------------------------------------------------------------------- duplicates


def dup_file(tmp_path: Path) -> Path:
    return csv_file(tmp_path,
                    f"AAPL,{T1},1h,1,0.2,0.9,",
                    f"MSFT,{T1},1h,1,0.1,0.5,",
                    f"AAPL,{T1},1d,-1,0.4,0.6,",
                    f"AAPL,{T1},4h,1,0.3,0.9,")


def test_duplicates_are_an_error_naming_both_lines(tmp_path):
    problems = problems_of(dup_file(tmp_path))

    assert [(p.line, p.field) for p in problems] == [(4, "symbol"), (5, "symbol")]
    assert "line 2" in problems[0].message and "line 2" in problems[1].message
    assert "AAPL" in problems[0].message


def test_duplicates_across_files_name_the_other_file(tmp_path):
    csv_file(tmp_path, f"AAPL,{T1},,1,0.2,0.9,", name="a.csv")
    csv_file(tmp_path, f"AAPL,{T1},,1,0.3,0.9,", name="b.csv")   # conflicting (identical rows collapse)

    [p] = problems_of(tmp_path)

    assert (Path(p.file).name, p.line) == ("b.csv", 2)
    assert "a.csv line 2" in p.message


@pytest.mark.parametrize(("rule", "weight", "confidence"), [
    ("last", 0.3, 0.9),
    ("max_confidence", 0.3, 0.9),     # tie between lines 2 and 5: the later one wins
    ("mean", (0.2 - 0.4 + 0.3) / 3, (0.9 + 0.6 + 0.9) / 3),
])
def test_duplicate_rules(tmp_path, rule, weight, confidence):
    b = load_signals(dup_file(tmp_path), duplicates=rule)

    assert b.symbols == ("AAPL", "MSFT")
    assert b.weights[0, 0] == pytest.approx(weight)
    assert b.confidence[0, 0] == pytest.approx(confidence)
    assert b.weights[0, 1] == 0.1


def test_max_confidence_picks_the_most_confident_row(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},,1,0.2,0.95,", f"AAPL,{T1},,-1,0.4,0.6,")

    assert load_signals(path, duplicates="max_confidence").weights[0, 0] == 0.2
    assert load_signals(path, duplicates="last").weights[0, 0] == -0.4


def test_duplicates_are_found_on_canonical_symbol_and_utc_time(tmp_path):
    path = csv_file(tmp_path, "BTCUSD,2024-01-02T15:00:00Z,,1,0.2,0.9,",
                    "X:BTCUSD,2024-01-02T10:00:00-05:00,,1,0.2,0.9,")

    assert where(problems_of(path)) == [("signals.csv", 3, "symbol")]


def test_gross_weight_is_checked_after_the_duplicate_rule(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},,1,0.9,0.5,", f"AAPL,{T1},,1,0.8,0.5,")

    assert load_signals(path, duplicates="last").weights[0, 0] == 0.8


# ---------------------------------------------------------------------------- strategies


def strategies_file(tmp_path: Path) -> Path:
    return csv_file(tmp_path,
                    f"AAPL,{T1},,1,0.5,0.5,alpha",
                    f"MSFT,{T1},,1,0.7,0.5,beta",
                    f"TSLA,{T1},,1,0.2,0.5,",
                    f"NVDA,{T2},,1,0.3,0.5, beta ",
                    f"AMD,{T2},,1,0.3,bad,gamma")


def test_strategy_filter_keeps_its_rows_and_untagged_rows(tmp_path):
    b = load_signals(strategies_file(tmp_path), strategy="beta")

    assert b.strategy == "beta"
    assert b.symbols == ("MSFT", "NVDA", "TSLA")
    np.testing.assert_array_equal(b.weights, [[0.7, np.nan, 0.2], [np.nan, 0.3, np.nan]])
    assert b.batch(1).batch_id == "beta@20240103T150000Z"


def test_unknown_strategy_lists_the_ones_found(tmp_path):
    [p] = problems_of(strategies_file(tmp_path), strategy="delta")

    assert p.field == "strategy"
    assert p.message.startswith("no rows for strategy delta (found: alpha, beta, gamma); ")
    assert "signals.strategies: label" in p.message


def test_several_strategies_need_a_name(tmp_path):
    [p] = problems_of(strategies_file(tmp_path))

    assert p.field == "strategy" and "alpha, beta, gamma" in p.message


def test_single_strategy_in_the_archive_names_the_batches(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},,1,0.5,0.5,alpha", f"MSFT,{T1},,1,0.1,0.5,")

    assert load_signals(path).strategy == "alpha"
    assert "found: alpha" in problems_of(path, strategy="other")[0].message


def test_archive_without_strategy_column_takes_the_given_name(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},1,0.5,0.5", header="symbol,time,side,weight,confidence")

    assert load_signals(path, strategy="mine").strategy == "mine"
    assert load_signals(path).strategy == "default"


def test_rows_of_other_strategies_are_not_validated(tmp_path):
    b = load_signals(strategies_file(tmp_path), strategy="alpha")

    assert b.symbols == ("AAPL", "TSLA")


# ---------------------------------------------------------------------------- more formats and layout


def test_json_with_bom_and_parquet_with_another_zone(tmp_path):
    rows = [{"symbol": "AAPL", "time": "2024-01-02T16:00:00+01:00", "side": 1, "weight": 0.5,
             "confidence": 0.5}]
    write(tmp_path / "a.json", json.dumps(rows), bom=True)
    pd.DataFrame({"symbol": ["MSFT"], "time": [pd.Timestamp("2024-01-02 10:00", tz="America/New_York")],
                  "side": [-1], "weight": [0.25], "confidence": [0.5]}).to_parquet(tmp_path / "b.parquet")

    b = load_signals(tmp_path)

    assert list(b.times) == [np.datetime64("2024-01-02T15:00:00", "ns")]
    np.testing.assert_array_equal(b.weights, [[0.5, -0.25]])


def test_times_are_sorted_whatever_the_file_order(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T2},,1,0.2,0.5,", f"AAPL,{T1},,1,0.1,0.5,", f"MSFT,{T2},,-1,0.3,0.5,")

    b = load_signals(path)

    assert list(b.times) == [np.datetime64(T1[:-1], "ns"), np.datetime64(T2[:-1], "ns")]
    np.testing.assert_array_equal(b.weights, [[0.1, np.nan], [0.2, -0.3]])


def test_read_archive_refuses_unreadable_files(tmp_path):
    write(tmp_path / "a.json", "{not json")
    with pytest.raises(DataError) as info:
        read_archive(tmp_path)
    assert where(info.value.problems) == [("a.json", 1, None)]
    with pytest.raises(DataError):
        read_archive(tmp_path / "missing.csv")
