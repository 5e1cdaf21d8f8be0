"""CSV files byte for byte as pandas' ``to_csv(index=False)`` writes them, in a fraction of its time.

A run's artifacts hold a million orders and as many fills (SPEC §9). Every column becomes its text
as pandas writes it: times ISO 8601 UTC (``...T00:00:00Z``, microseconds only when there are some),
floats their shortest round-trip text (``repr``), NaN and None an empty field, other values
``str``; a field holding a comma, a quote or a line break is quoted with its quotes doubled (the
csv module's minimal quoting, which pandas uses).

Where the time goes is the text of each float (``repr``, one Python call a value) and the joining
of the fields. So:

- several files are written in lockstep, a chunk of rows of each in turn, and a float column whose
  chunk repeats the values of a column already made into text in that chunk (an order's filled
  quantity is its quantity, its fill's price is its average price) takes that text instead of
  formatting them again; a column of one value is formatted once;
- a column of strings that need no quoting is used as it is (Arrow-backed text made Python strings
  a chunk at a time, not all at once);
- a chunk's fields are laid out in one list with their separators and joined by one ``str.join``.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

_SPECIAL = frozenset(',"\r\n')
# None as a 0-d object array: what np.where makes of a None argument, spelled so numpy's stubs (which
# take no None there) see an array
_NONE = np.array(None, dtype=object)
_MEMO_SIZE = 8          # float columns of a chunk kept for reuse (a file has at most a few)


class _Memo:
    """The float columns made into text in the current chunk: (their bits, their fields)."""

    def __init__(self) -> None:
        self.entries: list[tuple[np.ndarray, list[str]]] = []

    def add(self, bits: np.ndarray, texts: list[str]) -> None:
        self.entries.append((bits, texts))
        del self.entries[:-_MEMO_SIZE]


Column = Callable[[int, int, _Memo], list[str]]


def write_csv(df: pd.DataFrame, path: Path, chunk: int = 50_000) -> None:
    """Write ``df`` as ``df.to_csv(path, index=False)`` would, byte for byte."""
    write_csvs([(df, path)], chunk)


def write_csvs(frames: list[tuple[pd.DataFrame, Path]], chunk: int = 50_000) -> None:
    """Write each frame to its path as ``to_csv(index=False)`` would, in lockstep chunks of rows (so
    the frames' float columns of equal values are formatted once: see the module's docstring)."""
    with ExitStack() as stack:
        jobs = []
        for df, path in frames:
            f = stack.enter_context(open(path, "w", newline="", encoding="utf-8"))
            f.write(",".join(_quoted([str(c) for c in df.columns])) + "\n")
            jobs.append((f, [_column(df[c]) for c in df.columns], len(df)))
        longest = max((n for _, _, n in jobs), default=0)
        for lo in range(0, longest, chunk):
            memo = _Memo()
            for f, cols, n in jobs:
                if lo < n:
                    f.write(_rows([c(lo, min(lo + chunk, n), memo) for c in cols]))


def _rows(fields: list[list[str]]) -> str:
    """The CSV text of rows given by column: fields and separators in one list, one join."""
    k, n = len(fields), len(fields[0]) if fields else 0
    if not n:
        return ""
    flat: list[str] = [""] * (2 * k * n)
    comma = [","] * n
    for j, texts in enumerate(fields):
        flat[2 * j::2 * k] = texts
        flat[2 * j + 1::2 * k] = comma if j < k - 1 else ["\n"] * n
    return "".join(flat)


def _quoted(texts: list[str]) -> list[str]:
    """``texts`` with the csv module's minimal quoting applied where a field needs it."""
    joined = "".join(texts)        # one scan in C for the rare field that needs quotes
    if not any(c in joined for c in _SPECIAL):
        return texts
    return ['"' + t.replace('"', '""') + '"' if _SPECIAL.intersection(t) else t for t in texts]


def _column(s: pd.Series) -> Column:
    """A function (lo, hi, memo) -> the column's fields for rows lo..hi, as pandas' CSV writer shows them."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return _times(s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]"))
    if isinstance(s.dtype, pd.CategoricalDtype):
        table = np.array(_quoted([repr(x) if type(x) is float else str(x) for x in s.cat.categories.tolist()]) + [""],
                         dtype=object)
        codes = s.cat.codes.to_numpy()          # -1 (missing) picks the empty field at the end
        return lambda lo, hi, memo: table[codes[lo:hi]].tolist()
    if s.dtype.kind == "f":
        return _floats(s.to_numpy(np.float64))
    if s.dtype.kind in "iub":
        v = s.to_numpy()
        return lambda lo, hi, memo: list(map(str, v[lo:hi].tolist()))
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow" and not s.hasnans:
        # Arrow-backed text (a backtest's client order ids): made Python strings a chunk at a time
        text = s.array.__arrow_array__()
        return lambda lo, hi, memo: _quoted(text.slice(lo, hi - lo).to_pylist())
    o = s.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(o, skipna=False) == "string":     # every field a str
        return lambda lo, hi, memo: _quoted(o[lo:hi].tolist())
    o = s.to_numpy(dtype=object, na_value=None)
    o = np.where(pd.isna(o), _NONE, o)

    def objects(lo: int, hi: int, memo: _Memo) -> list[str]:
        return _quoted(["" if x is None else (repr(x) if type(x) is float else str(x)) for x in o[lo:hi].tolist()])
    return objects


def _times(t: np.ndarray) -> Column:
    nat = np.isnat(t)

    def times(lo: int, hi: int, memo: _Memo) -> list[str]:
        part = t[lo:hi]
        if not len(part):
            return []
        uniq, inv = np.unique(part, return_inverse=True)
        text = np.array([x.replace(".000000", "") + "Z" for x in np.datetime_as_string(uniq, unit="us").tolist()],
                        dtype=object)
        out = text[inv.reshape(-1)]
        out[nat[lo:hi]] = ""
        return out.tolist()
    return times


def _floats(v: np.ndarray) -> Column:
    bits_all = v.view(np.int64)

    def floats(lo: int, hi: int, memo: _Memo) -> list[str]:
        part, bits = v[lo:hi], bits_all[lo:hi]
        n = len(part)
        if n and (bits == bits[0]).all():                       # one value (a fee of 0.0)
            out = [_text(float(part[0]))] * n
            memo.add(bits, out)
            return out
        for seen, texts in memo.entries:                        # the same values, already text
            if len(seen) != n:
                continue
            differ = np.flatnonzero(seen != bits)
            if len(differ) * 2 > n:
                continue
            if not len(differ):
                return texts
            out = texts.copy()
            for i, x in zip(differ.tolist(), part[differ].tolist()):
                out[i] = _text(x)
            memo.add(bits, out)
            return out
        out = list(map(repr, part.tolist()))
        for i in np.flatnonzero(np.isnan(part)).tolist():
            out[i] = ""
        memo.add(bits, out)
        return out
    return floats


def _text(x: float) -> str:
    return "" if x != x else repr(x)
