"""The exit columns of a signal archive (SPEC §20): ``stop_loss`` and ``take_profit`` as prices or
``%`` distances from the entry, carried per batch and symbol; every bad value named by file, line
and field."""

from __future__ import annotations

import numpy as np

from tests.framework.test_signals import HEADER, T1, T2, csv_file, load_signals, problems_of, where

H = HEADER + ",stop_loss,take_profit"


def test_levels_are_carried_per_batch_and_symbol_with_a_percent_flag(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},bull,1,0.4,0.9,,95.5,110", f"MSFT,{T1},bear,-1,0.3,0.8,,3%,5 %",
                    f"AAPL,{T2},bull,1,0.4,0.9,,,", header=H)
    b = load_signals(path)
    lv = b.levels
    assert b.symbols == ("AAPL", "MSFT")
    assert lv.stop[0].tolist() == [95.5, 0.03] and lv.stop_pct[0].tolist() == [False, True]
    assert lv.take[0].tolist() == [110.0, 0.05] and lv.take_pct[0].tolist() == [False, True]
    assert np.isnan(lv.stop[1]).all() and not lv.stop_pct[1].any()       # blank: no level
    t = b.batch(0)
    assert t.levels.stop.tolist() == [95.5, 0.03]


def test_an_archive_without_the_columns_has_no_levels(tmp_path):
    assert load_signals(csv_file(tmp_path, f"AAPL,{T1},bull,1,0.4,0.9,")).levels is None


def test_every_bad_level_is_named_with_file_line_and_field(tmp_path):
    path = csv_file(tmp_path,
                    f"AAPL,{T1},,1,0.1,0.9,,-3,",          # negative
                    f"MSFT,{T1},,1,0.1,0.9,,NaN,",         # NaN
                    f"NVDA,{T1},,1,0.1,0.9,,,0%",          # a distance of 0
                    f"AMZN,{T1},,1,0.1,0.9,,100%,",        # a distance of 100%
                    f"TSLA,{T1},,1,0.1,0.9,,120,110",      # a long's stop above its take-profit
                    f"META,{T1},,-1,0.1,0.9,,90,110",      # a short the wrong way round
                    f"GOOG,{T1},,1,0.1,0.9,,abc,",
                    header=H)
    probs = problems_of(path)
    assert where(probs) == [("signals.csv", 2, "stop_loss"), ("signals.csv", 3, "stop_loss"),
                            ("signals.csv", 4, "take_profit"), ("signals.csv", 5, "stop_loss"),
                            ("signals.csv", 6, "stop_loss"), ("signals.csv", 7, "stop_loss"),
                            ("signals.csv", 8, "stop_loss")]
    assert "got '-3'" in probs[0].message and "got 'NaN'" in probs[1].message
    assert "percentage in (0, 100)" in probs[2].message


def test_levels_are_checked_against_the_price_the_row_was_computed_at(tmp_path):
    path = csv_file(tmp_path, f"AAPL,{T1},,1,0.1,0.9,,101,120,100", f"MSFT,{T1},,1,0.1,0.9,,90,99,100",
                    f"NVDA,{T1},,-1,0.1,0.9,,110,95,100", header=H + ",close")
    probs = problems_of(path)
    assert where(probs) == [("signals.csv", 2, "stop_loss"), ("signals.csv", 3, "take_profit")]
    assert "stop_loss 101 is above the price 100 of a long" in probs[0].message


def test_a_flat_row_carries_no_levels(tmp_path):
    b = load_signals(csv_file(tmp_path, f"AAPL,{T1},,0,0,0.9,,95,110", header=H))
    assert np.isnan(b.levels.stop).all() and np.isnan(b.levels.take).all()
