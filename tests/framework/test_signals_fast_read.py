"""The Arrow fast paths of signal reading (framework.signal_arrow) change nothing a user sees.

Every archive is loaded twice, with the fast paths and with them switched off (the pandas path
they replace), and the two outcomes must be identical: the same batches bit for bit (times,
symbols, weights, confidences, exit levels, batch ids), or the same problems (file, line, field,
message), and the same notes and warnings. The files are the earlier systems' fixtures (SPEC §21)
and synthetic files made to trip a CSV reader or a number parser.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import random
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import framework.signal_arrow as arrow
from framework.config import SignalSource
from framework.errors import DataError
from framework.signal_files import _numbers, _read_files, _record_lines
from framework.signals import load_signals

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "earlier_systems"
REGIME = FIXTURES / "regime"
CRYPTO = frozenset({"BTC", "ETH", "POL", "ATOM"})
HEADER = "symbol,time,side,weight,confidence"


@contextlib.contextmanager
def slow_path():
    """Switch the fast paths off: the pandas reader and numpy's cast run, as before them."""
    mp = pytest.MonkeyPatch()
    mp.setattr(arrow, "read_csv_fast", lambda data, records: None)
    mp.setattr(arrow, "numbers_fast", lambda text: None)
    try:
        yield
    finally:
        mp.undo()


def same(a: object, b: object) -> bool:
    """Equal, arrays bit for bit (NaN payloads and the sign of zero included)."""
    if isinstance(a, np.ndarray):
        if not isinstance(b, np.ndarray) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.kind in "biufcmM":
            return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8)))
        return bool(np.array_equal(a, b))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, tuple | list):
        return isinstance(b, tuple | list) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def outcome(path: Path, **kwargs) -> tuple:
    """Load once; return the batches (or the problems), the batch ids, stderr and warnings."""
    err = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            b = load_signals(path, **kwargs)
            result: object = b
            ids: object = [b.batch(i).batch_id for i in range(len(b))]
        except DataError as e:
            result, ids = e.problems, None
    return result, ids, err.getvalue(), [str(w.message) for w in caught]


def assert_unchanged(path: Path, **kwargs) -> tuple:
    fast = outcome(path, **kwargs)
    with slow_path():
        slow = outcome(path, **kwargs)
    assert same(fast[0], slow[0]), (fast[0], slow[0])
    assert fast[1:] == slow[1:]
    return fast


# ---------------------------------------------------------------------------- numbers

TRICKY = [" 1.5", "1.5 ", "\t1", "1\n", "1_000", "1_0.0_1", "1__0", "1e3", "1E-2", "0.1e+1", ".5", "-.5", "+.5e-3",
          "+1", "-0", "0e0", "00.5", "1.", ".", "-", "+", "e1", "1e", "1d3", "0x1p3", "1,5", "5%", "", "nan", "NaN",
          "-nan", "nan(1)", "inf", "-inf", "+inf", "INF", "Infinity", "infinity", "1e400", "-1e400", "1e-400",
          "4.9e-324", "2.4703282292062328e-324", "1.7976931348623157e308", "1.7976931348623159e308",
          "9007199254740993", "0.30000000000000004", "0." + "1" * 400, "1" * 400, "0." + "0" * 330 + "1",
          "١٢", "１", "true", "0.5\x00"]


@pytest.mark.parametrize("value", TRICKY)
def test_a_tricky_number_reads_as_before(value: str) -> None:
    for column in ([value], [value, "0.25"], ["0.25", value, "1"]):
        s = pd.Series(column, dtype="str")
        fast = _numbers(s)
        with slow_path():
            slow = _numbers(s)
        assert same(fast, slow), (column, fast, slow)


def test_many_decimals_read_bit_for_bit_as_numpy_reads_them() -> None:
    rng = random.Random(7)
    values = []
    for _ in range(20000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
        cut = rng.randint(0, len(digits))
        text = digits[:cut] + "." + digits[cut:] if rng.random() < 0.8 else digits
        if rng.random() < 0.5:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 330))
        values.append(rng.choice(["", "-", "+"]) + text if text != "." else "0.5")
    s = pd.Series(values, dtype="str")
    fast = arrow.numbers_fast(s)
    with slow_path():
        slow = _numbers(s)
    if np.isfinite(slow).all():
        assert fast is not None            # the fast path is taken for plain numbers
    assert same(_numbers(s), slow)


def test_plain_numbers_take_the_fast_path_and_others_do_not() -> None:
    assert same(arrow.numbers_fast(pd.Series(["0.5", "1", "-0", "1e-3"], dtype="str")),
                np.array([0.5, 1.0, -0.0, 1e-3]))
    for odd in ([" 0.5"], ["1_0"], ["nan"], ["inf"], ["x"], ["0.5", None]):
        assert arrow.numbers_fast(pd.Series(odd, dtype="str")) is None, odd
    assert arrow.numbers_fast(pd.Series([0.5, 1.0])) is None     # not text: the numeric branch reads it
    out = arrow.numbers_fast(pd.Series(["0.5"] * 3, dtype="str"))
    assert out is not None and out.flags.writeable


# ---------------------------------------------------------------------------- the earlier systems' files

REGIME_SETTINGS = dict(timezone="UTC", duplicates="max_confidence", strategies="label")


@pytest.mark.parametrize("path", sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("signals.csv")))
@pytest.mark.parametrize("settings", [REGIME_SETTINGS, dict(REGIME_SETTINGS, duplicates=None),
                                      dict(REGIME_SETTINGS, duplicates="mean", batch_window="5m"),
                                      dict(strategies="label")])
def test_an_earlier_system_file_loads_as_before(path: str, settings: dict) -> None:
    assert_unchanged(FIXTURES / path, source=SignalSource(**settings), crypto_bases=CRYPTO)


@pytest.mark.parametrize("directory", ["regime/data/signals", "regime/per_symbol/data/signals", "regime/guide"])
def test_an_earlier_system_archive_loads_as_before(directory: str) -> None:
    settings = dict(REGIME_SETTINGS, batch_window="5m") if "per_symbol" in directory else REGIME_SETTINGS
    result = assert_unchanged(FIXTURES / directory, source=SignalSource(**settings), crypto_bases=CRYPTO)[0]
    assert not isinstance(result, list), result        # these archives load (so batches are compared)


def test_the_fast_reader_reads_the_fixtures_and_gives_pandas_frame() -> None:
    for path in sorted(FIXTURES.rglob("signals.csv")):
        fast, problems = _read_files(path)
        with slow_path():
            slow, slow_problems = _read_files(path)
        assert problems == slow_problems == []
        assert list(fast[0].frame.dtypes) == list(slow[0].frame.dtypes)
        pd.testing.assert_frame_equal(fast[0].frame, slow[0].frame, check_exact=True)
        assert same(fast[0].lines, slow[0].lines)
        data = path.read_bytes()
        assert arrow.read_csv_fast(data, len(_record_lines(data))) is not None, path   # taken for these files


# ---------------------------------------------------------------------------- tricky files

T = "2024-01-02T15:00:00Z"
GOOD = [f"AAPL,{T},1,0.5,0.9", f"MSFT,{T},-1,0.25,0.8", "AAPL,2024-01-03T15:00:00Z,0,0,1"]
TRICKY_FILES = {
    "plain": "\n".join([HEADER, *GOOD]) + "\n",
    "no final newline": "\n".join([HEADER, *GOOD]),
    "bom": "\ufeff" + "\n".join([HEADER, *GOOD]) + "\n",
    "two boms": "\ufeff\ufeff" + "\n".join([HEADER, *GOOD]) + "\n",
    "crlf": "\r\n".join([HEADER, *GOOD]) + "\r\n",
    "lone cr": "\r".join([HEADER, *GOOD]) + "\r",
    "blank lines": "\n".join([HEADER, "", GOOD[0], "", "", GOOD[1], GOOD[2], ""]) + "\n",
    "blank lines, then bad rows": "\n".join([HEADER, "", GOOD[0], "", f"MSFT,{T},1,x,0.5", "", f"IBM,{T},3,0.1,1"]) + "\n",
    "blank fields row": "\n".join([HEADER, GOOD[0], ",,,,", " , ,,,", GOOD[1]]) + "\n",
    "quoted comma and newline": "\n".join([HEADER + ",note", GOOD[0] + ',"a, b"', GOOD[1] + ',"two\nlines"',
                                          GOOD[2] + ',"say ""hi"""']) + "\n",
    "unterminated quote": "\n".join([HEADER + ",note", GOOD[0] + ',"open', GOOD[1] + ",x"]) + "\n",
    "quote inside field": "\n".join([HEADER + ",note", GOOD[0] + ',a"b', GOOD[1] + ",x"]) + "\n",
    "trailing blank column": "\n".join([HEADER + ",", *(g + "," for g in GOOD)]) + "\n",
    "trailing comma rows only": "\n".join([HEADER, *(g + "," for g in GOOD)]) + "\n",
    "duplicate header": "\n".join([HEADER + ",weight", *(g + ",0.1" for g in GOOD)]) + "\n",
    "upper-case header": "\n".join([HEADER.upper(), *GOOD]) + "\n",
    "spaced header": "\n".join([" symbol , time,side,weight ,confidence", *GOOD]) + "\n",
    "ragged short": "\n".join([HEADER, GOOD[0], "MSFT,2024-01-02T15:00:00Z,1", GOOD[2]]) + "\n",
    "ragged long": "\n".join([HEADER, GOOD[0], GOOD[1] + ",extra", GOOD[2]]) + "\n",
    "missing values": "\n".join([HEADER, f"AAPL,{T},1,,0.9", f",{T},1,0.2,0.9", "MSFT,,1,0.2,", GOOD[2]]) + "\n",
    "non-numeric weight": "\n".join([HEADER, f"AAPL,{T},1,half,0.9", f"MSFT,{T},1,0.2,high", GOOD[2]]) + "\n",
    "numbers numpy reads": "\n".join([HEADER, f"AAPL,{T},1, 0.5,0.9 ", f"MSFT,{T},+1,2_5e-2,.8", GOOD[2]]) + "\n",
    "percentages": "\n".join([HEADER, f"AAPL,{T},1,31.2%,90%", f"MSFT,{T},1,0.2,0.5", GOOD[2]]) + "\n",
    "nan and inf": "\n".join([HEADER, f"AAPL,{T},1,nan,0.9", f"MSFT,{T},1,inf,0.5", f"IBM,{T},1,-0,1"]) + "\n",
    "bad side and time": "\n".join([HEADER, f"AAPL,{T},2,0.5,0.9", "MSFT,yesterday,1,0.2,0.5",
                                    "IBM,2024-01-02 15:00:00,1,0.1,1"]) + "\n",
    "gross over one": "\n".join([HEADER, f"AAPL,{T},1,0.7,0.9", f"MSFT,{T},1,0.6,0.5"]) + "\n",
    "duplicates": "\n".join([HEADER, f"AAPL,{T},1,0.3,0.9", f"AAPL,{T},1,0.2,0.5", GOOD[1]]) + "\n",
    "unsorted": "\n".join([HEADER, GOOD[2], GOOD[1], GOOD[0]]) + "\n",
    "header only": HEADER + "\n",
    "empty": "",
    "missing column": "\n".join(["symbol,time,side,weight", f"AAPL,{T},1,0.5"]) + "\n",
    "na words": "\n".join([HEADER + ",regime", GOOD[0] + ",NA", GOOD[1] + ",null", GOOD[2] + ",N/A"]) + "\n",
    "tabs and unicode": "\n".join([HEADER + ",note", GOOD[0] + ",\tcafé", GOOD[1] + ",\u00a0", GOOD[2] + ",x"]) + "\n",
    "nul byte": "\n".join([HEADER + ",note", GOOD[0] + ",a\x00b", GOOD[1] + ",x", GOOD[2] + ",y"]) + "\n",
}


@pytest.mark.parametrize("name", sorted(TRICKY_FILES))
@pytest.mark.parametrize("duplicates", [None, "max_confidence"])
def test_a_tricky_file_loads_as_before(tmp_path: Path, name: str, duplicates: str | None) -> None:
    path = tmp_path / "signals.csv"
    path.write_bytes(TRICKY_FILES[name].encode())
    assert_unchanged(path, duplicates=duplicates)


def test_not_utf8_is_reported_as_before(tmp_path: Path) -> None:
    path = tmp_path / "signals.csv"
    path.write_bytes(("\n".join([HEADER, *GOOD]) + "\n").encode() + b"AAPL,\xff\n")
    result = assert_unchanged(path)[0]
    assert isinstance(result, list) and "not UTF-8" in result[0].message


def test_a_directory_of_files_loads_as_before(tmp_path: Path) -> None:
    for name, text in [("a/signals.csv", "plain"), ("b/signals.csv", "crlf"), ("c.csv", "blank lines")]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(TRICKY_FILES[text].replace("2024-01-0", "2024-02-0").encode()
                                      if name == "c.csv" else TRICKY_FILES[text].encode())
    assert_unchanged(tmp_path, duplicates="last")


def test_a_large_file_loads_as_before(tmp_path: Path) -> None:
    """Large enough for several Arrow blocks and threads: 60 000 rows of numbers as writers print them."""
    rng = np.random.default_rng(3)
    symbols = [f"EQ{i:03d}" for i in range(200)]
    lines = [HEADER]
    for day in range(300):
        t = (np.datetime64("2020-01-01T14:30:00") + np.timedelta64(day, "D")).astype(str) + "Z"
        w = rng.dirichlet(np.ones(len(symbols))) * 0.999
        for s, x in zip(symbols, w, strict=True):
            lines.append(f"{s},{t},{rng.choice([-1, 1])},{float(x)!r},{rng.random():.{rng.integers(1, 18)}f}")
    path = tmp_path / "signals.csv"
    path.write_text("\n".join(lines) + "\n")
    result = assert_unchanged(path, symbol_check=lambda names: {})[0]
    assert not isinstance(result, list) and result.weights.shape == (300, 200)


# ---------------------------------------------------------------------------- sorting shortcuts


@pytest.mark.parametrize("seed", range(6))
def test_unique_and_row_order_are_numpys_whether_sorted_or_not(seed: int) -> None:
    from framework.signal_batches import lex_order, unique_inverse

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    key = rng.integers(0, 12, n)
    second = rng.integers(0, 3, n).astype(float) if seed % 2 else rng.integers(0, 3, n)
    for k, s in [(key, second), (np.sort(key), second), (np.sort(key), np.sort(second)),
                 *[(key[o], second[o]) for o in [np.lexsort((second, key))]]]:
        u, inv = unique_inverse(k)
        nu, ninv = np.unique(k, return_inverse=True)
        assert same(u, nu) and same(inv, ninv)
        assert same(lex_order(k, s), np.lexsort((np.arange(len(k)), s, k)))


def test_record_lines_counted_without_quotes_are_the_quote_aware_ones() -> None:
    from framework.signal_files import _record_lines_quoted

    rng = random.Random(5)
    for _ in range(3000):
        text = "".join(rng.choice(["a", ",", "\n", "\r", "\r\n", "\n\n", "é", " "]) for _ in range(rng.randint(0, 12)))
        data = text.encode()
        assert same(_record_lines(data), _record_lines_quoted(data)), text
