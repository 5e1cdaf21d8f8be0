"""Market data (SPEC §14): the long CSV format, dense bar arrays, the Parquet store, split ratios
from the vendor's factor table, and ``parity data import``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.data import (
    BarStore,
    bars_from_frame,
    infer_timeframe,
    load_bars,
    read_factor_table,
    read_long_csv,
    split_ratios,
)
from framework.errors import DataError
from tests.conftest import run_parity, utc, write_settings

HEADER = "timestamp,symbol,open,high,low,close,volume"


def csv(tmp_path, *rows, header=HEADER, name="bars.csv", bom=False):
    p = tmp_path / name
    text = "\n".join([header, *rows]) + "\n"
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return p


def problems(path):
    with pytest.raises(DataError) as info:
        read_long_csv(path)
    return [(p.line, p.field) for p in info.value.problems]


# ---------------------------------------------------------------------------- the long CSV


def test_read_long_csv_sorts_and_canonicalises(tmp_path):
    p = csv(tmp_path,
            "2024-01-02T00:00:00Z,BTCUSD,10,12,9,11,5",
            "2024-01-01T00:00:00Z,X:BTCUSD,9,10,8,10,4",
            "2024-01-01T00:00:00Z,AAPL,100,101,99,100.5,1000", bom=True)
    df = read_long_csv(p)
    assert list(df.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert df["symbol"].tolist() == ["AAPL", "BTC/USD", "BTC/USD"]
    assert str(df["timestamp"].dt.tz) == "UTC" and df["timestamp"].is_monotonic_increasing
    assert df["close"].tolist() == [100.5, 10.0, 11.0]


@pytest.mark.parametrize("row,line_field", [
    ("yesterday,AAPL,1,1,1,1,1", (3, "timestamp")),
    ("2024-01-02T00:00:00Z,AAPL,1,1,1,-1,1", (3, "close")),
    ("2024-01-02T00:00:00Z,AAPL,1,1,1,1,lots", (3, "volume")),
    ("2024-01-02T00:00:00Z,AAPL,1,1,2,1,1", (3, "high")),
    ("2024-01-01T00:00:00Z,AAPL,1,1,1,1,1", (3, "timestamp")),
    ("2024-01-02T00:00:00Z,A B C,1,1,1,1,1", (3, "symbol")),
])
def test_a_bad_row_names_its_line_and_field(tmp_path, row, line_field):
    p = csv(tmp_path, "2024-01-01T00:00:00Z,AAPL,1,1,1,1,1", row)
    assert line_field in problems(p)


def test_missing_column_empty_file_and_no_rows(tmp_path):
    assert problems(csv(tmp_path, "2024-01-01T00:00:00Z,AAPL,1,1,1,1", header="timestamp,symbol,open,high,low,close")) \
        == [(1, "volume")]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        read_long_csv(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="no rows"):
        read_long_csv(csv(tmp_path, name="header_only.csv"))
    with pytest.raises(DataError, match="not found"):
        read_long_csv(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------- arrays


def frame(rows):
    return pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"]).assign(
        timestamp=lambda d: pd.to_datetime(d["timestamp"], utc=True))


def test_bars_from_frame_is_dense_with_nan_where_a_symbol_has_no_bar():
    df = frame([("2024-01-05", "AAPL", 1, 2, 1, 2, 10), ("2024-01-05", "BTC/USD", 5, 6, 4, 5, 1),
                ("2024-01-06", "BTC/USD", 5, 7, 5, 6, 2)])
    b = bars_from_frame(df)
    assert b.symbols == ("AAPL", "BTC/USD") and b.shape == (2, 2)
    assert list(b.times) == [utc("2024-01-05"), utc("2024-01-06")]
    np.testing.assert_array_equal(b.close, [[2, 5], [np.nan, 6]])
    sel = b.select(["AAPL"])
    assert sel.shape == (1, 1)                                    # the row with no AAPL bar is dropped
    assert b.between(utc("2024-01-06"), None).shape == (1, 2)
    back = b.to_frame()
    assert len(back) == 3 and set(back["symbol"]) == {"AAPL", "BTC/USD"}


def test_selected_bars_are_row_major_or_the_same_arrays():
    """The simulator reads one bar's row of every symbol at a time: a selection is row-major (two
    sweep workers reading column-major copies slowed each other through the shared cache), and
    keeping every symbol shares the arrays instead of copying them."""
    rows = [(f"2024-01-0{d}", s, 1, 2, 1, 2, 10) for d in range(1, 6) for s in ("A", "B", "C")]
    b = bars_from_frame(frame(rows))
    assert b.select(["A", "B", "C"]) is b
    sel = b.select(["C", "A"])
    for a in (sel.open, sel.high, sel.low, sel.close, sel.volume):
        assert a.flags["C_CONTIGUOUS"] and a.shape == (5, 2)
    np.testing.assert_array_equal(sel.close, b.close[:, [2, 0]])


def test_infer_timeframe():
    hours = frame([(t, "BTC/USD", 1, 1, 1, 1, 1) for t in pd.date_range("2024-01-01", periods=5, freq="h")])
    days = frame([(t, "AAPL", 1, 1, 1, 1, 1) for t in pd.bdate_range("2024-01-01", periods=8)])
    assert infer_timeframe(hours) == "1h" and infer_timeframe(days) == "1d"


# ---------------------------------------------------------------------------- the store


def test_store_write_is_idempotent_and_newer_rows_win(tmp_path):
    store = BarStore(tmp_path)
    df = frame([(t, s, 1, 1, 1, 1, 1) for t in pd.date_range("2024-01-01", periods=3, freq="D")
                for s in ("AAPL", "BTC/USD")])
    assert store.write(df, "1d") == {"AAPL": 3, "BTC/USD": 3}
    assert store.write(df, "1d") == {"AAPL": 3, "BTC/USD": 3}
    newer = frame([("2024-01-03", "AAPL", 2, 2, 2, 2, 2), ("2024-01-04", "AAPL", 3, 3, 3, 3, 3)])
    assert store.write(newer, "1d") == {"AAPL": 4}
    assert (tmp_path / "bars" / "1d" / "BTC-USD.parquet").is_file()
    assert store.symbols("1d") == ["AAPL", "BTC/USD"] and store.timeframes() == ["1d"]
    back = store.read("1d", ["AAPL"]).sort_values("timestamp")
    assert back["close"].tolist() == [1, 1, 2, 3]
    lo, hi = store.coverage("1d", "AAPL")
    assert (lo, hi) == (pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-04", tz="UTC"))


def test_load_bars_from_csv_store_directory_and_configured_store(tmp_path):
    p = csv(tmp_path, "2024-01-01T00:00:00Z,AAPL,1,2,1,2,10", "2024-01-02T00:00:00Z,AAPL,2,3,2,3,10")
    from_csv = load_bars(p, tmp_path / "unused")
    BarStore(tmp_path / "data").write(read_long_csv(p), "1d")
    from_dir = load_bars(tmp_path / "data" / "bars", tmp_path / "unused", "1d")
    from_store = load_bars(None, tmp_path / "data")
    for b in (from_dir, from_store):
        np.testing.assert_array_equal(b.close, from_csv.close)
        assert list(b.times) == list(from_csv.times)
    with pytest.raises(DataError, match="not found"):
        load_bars(tmp_path / "missing.csv", tmp_path)
    with pytest.raises(DataError, match="store is empty"):
        load_bars(None, tmp_path / "empty")


# ---------------------------------------------------------------------------- splits (real factor table)


def test_split_ratios_from_the_vendor_factor_table(shared_data):
    bars = load_bars(shared_data / "equity_daily_lean_5sym.csv", shared_data)
    ratio = split_ratios(bars, read_factor_table(shared_data / "equity_daily_lean_5sym_factors.csv"))
    found = {(sym, str(np.datetime64(bars.times[i], "D"))): round(float(ratio[i, j]), 4)
             for j, sym in enumerate(bars.symbols) for i in np.flatnonzero(ratio[:, j] != 1.0)}
    assert found == {
        ("AAPL", "2000-06-21"): 2.0, ("AAPL", "2005-02-28"): 2.0, ("AAPL", "2014-06-09"): 7.0,
        ("AAPL", "2020-08-31"): 4.0, ("AIG", "1999-08-02"): 1.25, ("AIG", "2000-07-31"): 1.5,
        ("AIG", "2009-07-01"): 0.05, ("BAC", "2004-08-30"): 2.0, ("IBM", "1999-05-27"): 2.0,
    }


# ---------------------------------------------------------------------------- parity data import


def test_data_import_builds_the_parquet_store_and_reimport_is_idempotent(tmp_path, shared_data):
    src = shared_data / "crypto_1h_coinbase_btc_eth_usd.csv"
    settings = write_settings(tmp_path)
    first = run_parity("--config", str(settings), "data", "import", str(src), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "BTC/USD: 28,959 bars" in first.stdout and "ETH/USD: 28,959 bars" in first.stdout
    files = sorted((tmp_path / "data" / "bars" / "1h").glob("*.parquet"))
    assert [f.name for f in files] == ["BTC-USD.parquet", "ETH-USD.parquet"]
    before = {f.name: pd.read_parquet(f) for f in files}

    again = run_parity("--config", str(settings), "data", "import", str(src), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    for f in files:
        pd.testing.assert_frame_equal(pd.read_parquet(f), before[f.name])
    expected = read_long_csv(src)
    assert sum(len(v) for v in before.values()) == len(expected)
    btc = before["BTC-USD.parquet"]
    want = expected[expected["symbol"] == "BTC/USD"].reset_index(drop=True)
    np.testing.assert_array_equal(btc["close"].to_numpy(), want["close"].to_numpy())


def test_data_import_of_a_bad_row_exits_2_naming_line_and_field(tmp_path):
    bad = csv(tmp_path, "2024-01-01T00:00:00Z,AAPL,1,1,1,1,1", "2024-01-02T00:00:00Z,AAPL,1,1,1,oops,1",
              "2024-01-03T00:00:00Z,AAPL,1,1,1,1,1")
    proc = run_parity("--config", str(write_settings(tmp_path)), "data", "import", str(bad), cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{bad}:3 [close]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / "bars").exists()


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_bar_file_read_in_ranges_on_threads_is_the_file_read_whole(tmp_path, monkeypatch, newline):
    """A large bar file is cut at line breaks into ranges, each streamed on its own thread
    (``framework.csv_ranges``): the same bars, in the same order, and a bad row still names its
    own line, whichever range it falls in."""
    import framework.csv_ranges as ranges
    from framework.data import load_bars

    rng = np.random.default_rng(3)
    times = pd.date_range("2024-01-01", periods=400, freq="D", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [f"{t},{s},{o:.4f},{o * 1.01:.4f},{o * 0.99:.4f},{o:.4f},{v}" for t in times for s in ("AAPL", "MSFT", "SPY")
            for o, v in [(rng.uniform(50, 150), int(rng.integers(1, 10**6)))]]
    path = tmp_path / "bars.csv"
    path.write_bytes(newline.join(["timestamp,symbol,open,high,low,close,volume", *rows, ""]).encode())
    whole = load_bars(path, tmp_path)
    monkeypatch.setattr(ranges, "MIN_RANGE", 1000)            # this small file: several ranges
    cuts = ranges.cut_points(path, 4)
    assert len(cuts) == 5 and all(path.read_bytes()[c - 1:c] == b"\n" for c in cuts[1:-1])
    got = load_bars(path, tmp_path)
    assert got.symbols == whole.symbols and np.array_equal(got.times, whole.times)
    for c in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(got, c), getattr(whole, c), equal_nan=True), c
    bad = rows.copy()
    bad[1000] = bad[1000].replace(",MSFT,", ",A B C,")       # in the third range
    path.write_bytes(newline.join(["timestamp,symbol,open,high,low,close,volume", *bad, ""]).encode())
    with pytest.raises(DataError) as e:
        load_bars(path, tmp_path)
    assert (1002, "symbol") in [(p.line, p.field) for p in e.value.problems]
