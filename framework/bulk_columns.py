"""The parts ``framework.bulk.RunTables`` builds a backtest's columns from: codes for a column of
few values, per-report parts joined once, a report's fills and messages as columns, and the in-place
updates of a built table (a row's coded value, rows of a batch's orders, rows kept)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from framework.ledger import Coded, IsoTimes
from framework.types import ExecutionReport

_T = TypeVar("_T")


class Book:
    """Codes for the distinct values of a column (None included), in order of appearance."""

    def __init__(self) -> None:
        self.values: list = []
        self.index: dict = {}
        self._universes: dict[tuple[str, ...], np.ndarray] = {}

    def code(self, value) -> int:
        k = self.index.get(value)
        if k is None:
            k = self.index[value] = len(self.values)
            self.values.append(value)
        return k

    def codes(self, values: list) -> np.ndarray:
        return np.array([self.code(v) for v in values], np.int32)

    def universe(self, symbols: tuple[str, ...]) -> np.ndarray:
        """Codes of a universe's symbols, by position (made once per universe)."""
        key = symbols
        got = self._universes.get(key)
        if got is None:
            got = self._universes[key] = self.codes(list(symbols))
        return got

    def column(self, codes: np.ndarray) -> Coded:
        return Coded(codes.astype(np.int32, copy=False), self.values)


class Joiner:
    """Columns kept as lists of per-report parts, each joined once when asked for (and its parts
    dropped then, so a column is not held twice)."""

    def __init__(self, parts: dict[str, list]):
        self.parts = parts

    def __call__(self, name: str, dtype) -> np.ndarray:
        v = self.parts.pop(name)
        return (np.concatenate(v) if v else np.zeros(0)).astype(dtype, copy=False)


def message_codes(book: Book, messages: dict[int, str], n: int) -> np.ndarray:
    """The codes of a report's messages by order (None where an order has none), a new value
    coded when its first order comes (as coding them order by order would)."""
    if not messages:
        return np.full(n, book.code(None), np.int32)
    order = sorted(messages)
    first_without = next((k for k, i in enumerate(order) if k != i), len(order))   # an order with no message
    for i in order[:first_without]:
        book.code(messages[i])
    out = np.full(n, book.code(None) if first_without < n else 0, np.int32)
    for i in order:
        out[i] = book.code(messages[i])
    return out


def fill_columns(r: ExecutionReport, books: dict, nums: dict) -> None:
    """Append one report's fills to the fills columns (their client ids: the caller's)."""
    f = r.fills
    n = len(f)
    nums["broker_order_id"].append(books["broker_order_id"].codes([r.broker_ids[p] for p in f.order_pos.tolist()])
                                   if r.broker_ids else np.full(n, books["broker_order_id"].code(None), np.int32))
    nums["trade_id"].append(books["trade_id"].codes(list(f.trade_ids)) if f.trade_ids else
                            np.full(n, books["trade_id"].code(None), np.int32))
    nums["symbol"].append(books["symbol"].universe(r.batch.universe.symbols)[f.symbol_idx])
    nums["side"].append(f.side > 0)
    for k in ("time", "qty", "price", "fee", "slippage"):
        nums[k].append(np.asarray(getattr(f, k)))


def column_of(cols: dict[str, object], name: str, kind: type[_T]) -> _T:
    """Column ``name`` of a table, of the type ``RunTables`` builds it as (a list, a numpy array,
    ``Coded``, ``IsoTimes`` or a pandas Series): checked, so the code that updates it in place is typed."""
    col = cols[name]
    assert isinstance(col, kind), name
    return col


def set_value(col, j: int, value) -> None:
    """Row ``j`` of a ``Coded`` column takes ``value`` (a new value gets a new code)."""
    try:
        k = col.values.index(value)
    except ValueError:
        k = len(col.values)
        col.values.append(value)
    col.codes[j] = k


def rows_of(index: dict, batch_id: str, leg: str, symbol_idx: np.ndarray) -> list[int]:
    """Order-table rows of the orders (batch, leg, symbol), -1 where the run has no such order."""
    out = [-1] * len(symbol_idx)
    for start, syms in index.get((batch_id, leg), ()):
        where = {int(s): start + k for k, s in enumerate(syms.tolist())}
        for i, s in enumerate(symbol_idx.tolist()):
            if out[i] < 0 and s in where:
                out[i] = where[s]
    return out


def picked(ids, pos: np.ndarray):
    """The ids (an Arrow ChunkedArray) at positions ``pos``: a zero-copy slice when ``pos`` is a
    run of consecutive positions (a backtest's fills are its orders' in order), else a copy."""
    import pyarrow as pa

    m = len(pos)
    if m == 0:
        return pa.chunked_array([], ids.type)
    lo = int(pos[0])
    if lo >= 0 and lo + m <= len(ids) and int(pos[-1]) == lo + m - 1 and (m < 2 or bool((np.diff(pos) == 1).all())):
        return ids.slice(lo, m)
    return ids.take(pa.array(pos))


def take_rows(cols: dict, keep: list[int]) -> dict:
    out: dict = {}
    for k, v in cols.items():
        if hasattr(v, "iloc"):      # a pandas Series (the client ids): positions, a new RangeIndex
            out[k] = v.iloc[keep].reset_index(drop=True)
        elif isinstance(v, IsoTimes):
            out[k] = IsoTimes(v.times[keep])
        elif isinstance(v, Coded):
            out[k] = Coded(v.codes[keep], v.values)
        elif isinstance(v, np.ndarray):
            out[k] = v[keep]
        else:
            out[k] = [v[i] for i in keep]
    return out
