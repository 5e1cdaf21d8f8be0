"""Column types of the ledger's bulk writes (issue 15): a backtest's records arrive as whole columns
and are written in chunks straight from them, so no list of per-row tuples for a million orders is
ever held."""

from __future__ import annotations

import numpy as np

# How the bulk writer inserts into each table: the same conflict rules as the row writers.
BULK_VERBS = {"cycles": "INSERT OR REPLACE", "orders": "INSERT OR IGNORE", "fills": "INSERT OR IGNORE",
              "decisions": "INSERT", "order_events": "INSERT", "equity": "INSERT OR REPLACE"}


class IsoTimes:
    """A column of times (datetime64) stored as ISO 8601 UTC text with microseconds and a Z.

    Repeated times (a batch's orders share its time) are formatted once each."""

    def __init__(self, times: np.ndarray):
        self.times = np.asarray(times).astype("datetime64[us]")

    def __len__(self) -> int:
        return len(self.times)

    def strings(self, lo: int = 0, hi: int | None = None) -> list[str]:
        part = self.times[lo:hi]
        if len(part) == 0:
            return []
        uniq, inv = np.unique(part, return_inverse=True)
        text = np.char.add(np.datetime_as_string(uniq, unit="us"), "Z").astype(object)
        return text[inv.reshape(-1)].tolist()


class Coded:
    """A column of few distinct values (a run id, sides, statuses, legs, symbols): small integer
    codes into ``values``, 1 to 4 bytes a row instead of a Python reference."""

    def __init__(self, codes: np.ndarray, values: list):
        self.codes = codes
        self.values = values

    @classmethod
    def constant(cls, value, n: int) -> Coded:
        return cls(np.zeros(n, np.int8), [value])

    def __len__(self) -> int:
        return len(self.codes)

    def rows(self, lo: int = 0, hi: int | None = None) -> list:
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.values
        return table[self.codes[lo:hi]].tolist()


class PackedPrices:
    """The cycles' ``prices`` column: each cycle's prices as the blob ``pack_prices`` makes, made a
    chunk at a time from the (cycles x symbols) matrix the run keeps anyway, not held beside it."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = matrix

    def __len__(self) -> int:
        return len(self.matrix)

    def blobs(self, lo: int = 0, hi: int | None = None) -> list[bytes]:
        from framework.ledger.rows import pack_prices

        return [pack_prices(row) for row in self.matrix[lo:hi]]


def chunk_of(col, lo: int, hi: int) -> list:
    """Rows ``lo..hi`` of a column as a list of Python values (what SQLite binds)."""
    if hasattr(col, "iloc"):        # a pandas Series (a backtest's client ids, Arrow-backed text)
        return col.iloc[lo:hi].tolist()
    if isinstance(col, IsoTimes):
        return col.strings(lo, hi)
    if isinstance(col, Coded):
        return col.rows(lo, hi)
    if isinstance(col, PackedPrices):
        return col.blobs(lo, hi)
    if isinstance(col, np.ndarray):
        return col[lo:hi].tolist()
    return col[lo:hi]
