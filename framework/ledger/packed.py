"""A large backtest's bulk records packed inside the ledger (issue 15).

A backtest of 500 symbols over twenty years makes a million orders and as many fills. As SQLite
rows they cost more than the backtest itself (two indexed B-trees, every value bound one at a time,
a 0.5 GB file written twice by the WAL). So when one table of one finished backtest reaches
``PARITY_PACK_ROWS`` rows (100,000 by default), its rows are stored as ONE compressed Arrow IPC
block in the ``packed_parts`` table of the same SQLite file, in the same transaction as the run's
other rows: still one file, committed or not as a whole, never a file beside it to lose.

Every reader goes through the Ledger object. A reader whose scope (an account, some runs, the whole
file) holds packed parts runs its same SQL over a scratch in-memory database that holds the scope's
ordinary rows and the packed rows decoded, with the ledger's column types, so the answer is the one
the rows would have given in the file. Only tables of finished runs are packed (a backtest is
written once, when it is over), and only when the rows obey the table's uniqueness rules (client
order ids within the run, venue trade ids within the account): otherwise they go in as rows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from framework.ledger.columns import Coded, IsoTimes

PACKED_TABLES = ("orders", "fills", "order_events", "decisions")
# The tables a packed read copies into its scratch database (what the readers' SQL joins).
SCRATCH_TABLES = ("runs", "cycles", "orders", "fills", "order_events", "decisions", "equity")
# The tables' primary keys (the ledger's own named indexes are copied from the file).
_SCRATCH_INDEXES = (
    "CREATE INDEX s_orders_pk ON orders (run_id, client_order_id)",
    "CREATE INDEX s_cycles_pk ON cycles (run_id, seq)",
    "CREATE INDEX s_equity_pk ON equity (run_id, time)",
    "CREATE INDEX s_runs_pk ON runs (run_id)",
)
DEFAULT_PACK_ROWS = 100_000


def pack_rows() -> int:
    """Rows from which one table of one backtest is packed (``PARITY_PACK_ROWS``; 0 never packs)."""
    from framework.errors import UsageError

    raw = os.environ.get("PARITY_PACK_ROWS", "").strip()
    if not raw:
        return DEFAULT_PACK_ROWS
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"PARITY_PACK_ROWS={raw!r} is not a whole number of rows: set it (in the environment "
                         f"or .env) to e.g. {DEFAULT_PACK_ROWS}, or 0 to store every row as a row") from None


PACK_CHUNK = 100_000      # rows per packed part: what one part's conversion holds in memory at once


def _arrow_slices(col):
    """A function (lo, hi) -> rows lo..hi of one column (list, numpy array, IsoTimes, Coded, a
    pandas Series of text) as an Arrow array, or None when they have no single type. Dictionary
    columns share one dictionary."""
    import pyarrow as pa

    if isinstance(col, IsoTimes):
        uniq, inv = np.unique(col.times, return_inverse=True)
        codes = inv.reshape(-1).astype(np.int32)
        texts = pa.array(IsoTimes(uniq).strings(), pa.string())
        return lambda lo, hi: pa.DictionaryArray.from_arrays(pa.array(codes[lo:hi]), texts)
    if isinstance(col, Coded):
        codes = np.asarray(col.codes)
        codes = codes if codes.dtype.kind == "i" else codes.astype(np.int32)
        try:
            values = pa.array(list(col.values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            return lambda lo, hi: None
        return lambda lo, hi: pa.DictionaryArray.from_arrays(pa.array(codes[lo:hi]), values)

    def plain(lo: int, hi: int):
        try:
            if hasattr(col, "iloc"):      # a pandas Series of text (the client ids): its Arrow data
                part = pa.array(col.iloc[lo:hi])
                return (part.combine_chunks() if isinstance(part, pa.ChunkedArray) else part).cast(pa.string())
            if isinstance(col, np.ndarray):
                part = col[lo:hi]
                if part.dtype.kind == "f":
                    return pa.array(part.astype(np.float64), from_pandas=True)   # NaN -> NULL, as SQLite binds it
                if part.dtype.kind in "iu":
                    return pa.array(part.astype(np.int64))
                return pa.array(part.tolist())
            values = list(col[lo:hi])
            if values and all(type(v) is str for v in values[:64]):
                try:
                    return pa.array(values, pa.string())      # typed: no inference pass over a million ids
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                    pass
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            return None
    return plain


def _unique(col, n: int) -> bool:
    """Whether the column's non-NULL values are all different (what a unique index asks)."""
    from framework.ledger.columns import chunk_of

    if isinstance(col, Coded):
        first: dict = {}
        canon = np.array([first.setdefault(v, k) if v is not None else -1 for k, v in enumerate(col.values)] or [-1])
        codes = canon[np.asarray(col.codes, np.int64)]
        codes = codes[codes >= 0]
        return len(np.unique(codes)) == len(codes)
    if hasattr(col, "iloc"):             # a pandas Series of text (a backtest's client ids)
        return _unique_texts(col)
    if isinstance(col, np.ndarray) and col.dtype.kind in "iuf":
        v = col[~np.isnan(col)] if col.dtype.kind == "f" else col
        return len(np.unique(v)) == len(v)
    values = col if isinstance(col, list) else chunk_of(col, 0, n)
    distinct = set(values)              # no copy of a million ids, only the set's table
    return len(distinct) - (None in distinct) == len(values) - values.count(None)


def _unique_texts(col, chunk: int = 1 << 16) -> bool:
    """``_unique`` for a pandas Series of text (a million Arrow-backed ids): each text's Python hash
    taken a chunk at a time (no Python string per row held at once, no hash table of the texts),
    then only the rows whose hashes meet are compared by their text."""
    n = len(col)
    valid = col.notna().to_numpy(dtype=bool)
    fingerprint = np.empty(n, np.int64)
    for lo in range(0, n, chunk):
        part = col.iloc[lo:lo + chunk].tolist()
        fingerprint[lo:lo + len(part)] = np.fromiter(map(hash, part), np.int64, len(part))
    rows = np.flatnonzero(valid)
    fingerprint = fingerprint[rows]
    ordered = np.sort(fingerprint)
    if not (ordered[1:] == ordered[:-1]).any():
        return True
    order = np.argsort(fingerprint, kind="stable")
    met = fingerprint[order][1:] == fingerprint[order][:-1]
    suspects = rows[np.union1d(order[1:][met], order[:-1][met])]
    texts = [col.iloc[int(i)] for i in suspects]
    return len(set(texts)) == len(texts)


class PackedQueries:
    """The ledger's packed parts: writing them, and the scope a reader must read them in."""

    db: sqlite3.Connection

    # ------------------------------------------------------------ writing
    def write_packed(self, table: str, columns: dict[str, object]) -> bool:
        """Store ``columns`` (one run's rows of ``table``) as a packed part; False when they must go
        in as rows instead (too few, several runs, a column of no single type, or rows the table's
        uniqueness rules would fold). The caller holds the transaction."""
        import pyarrow as pa

        from framework.ledger.columns import chunk_of
        from framework.memory import release_freed

        names = list(columns)
        n = len(next(iter(columns.values()))) if names else 0  # type: ignore[arg-type]
        limit = pack_rows()
        if table not in PACKED_TABLES or limit <= 0 or n < limit or "run_id" not in columns:
            return False
        run = columns["run_id"]
        run_ids = run.values if isinstance(run, Coded) else set(chunk_of(run, 0, n))
        if len(run_ids) != 1:
            return False
        run_id = next(iter(run_ids))
        info = [(r[1], r[2], r[4]) for r in self.db.execute(f"PRAGMA table_info({table})")]
        unknown = set(names) - {name for name, _, _ in info}
        if unknown:
            raise ValueError(f"table {table} has no column(s) {sorted(unknown)}")
        account = self._account_of(run_id, columns)
        # only the whole of a run's table is packed, in one write: rows already recorded for the run
        # (or for the account's trades) would have to be checked against
        if self._has_rows(table, run_id, account):
            return False
        # the rows the table's keys would fold are not packed: one row per client order id and run,
        # a venue trade booked once per account
        key = {"orders": "client_order_id", "fills": "trade_id"}.get(table)
        if key in columns and not _unique(columns[key], n):
            return False
        slices = {name: _arrow_slices(columns[name]) for name, _, _ in info if name in columns}
        for k, lo in enumerate(range(0, n, PACK_CHUNK)):
            hi = min(lo + PACK_CHUNK, n)
            arrays = []
            for name, decl, default in info:
                if name not in slices:
                    arrays.append(_constant(default, decl, hi - lo))
                    continue
                arr = slices[name](lo, hi)
                if arr is None or not _affine(arr, decl):     # no single type: the rows go in as rows
                    self.db.execute("DELETE FROM packed_parts WHERE run_id=? AND tbl=?", (run_id, table))
                    return False
                if decl.upper() == "REAL" and pa.types.is_integer(arr.type):
                    arr = arr.cast(pa.float64())        # a REAL column stores a bound integer as REAL
                arrays.append(arr)
            batch = pa.RecordBatch.from_arrays(arrays, names=[name for name, _, _ in info])
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as w:
                w.write_batch(batch)
            del batch, arrays
            self.db.execute("INSERT INTO packed_parts (run_id, tbl, part, account, n_rows, data) VALUES (?,?,?,?,?,?)",
                            (run_id, table, k, account, hi - lo, memoryview(sink.getvalue())))
            del sink
            release_freed(heap=False)       # the caller trims the heap once the parts are written
        return True

    def refuse_packed(self, table: str, columns: dict[str, object], n: int) -> None:
        """Raise when rows are written to a run whose ``table`` is packed: a packed table is the whole
        of a finished backtest's rows, and more rows could not be checked against its keys."""
        from framework.ledger.columns import chunk_of

        if table not in PACKED_TABLES or "run_id" not in columns or n == 0:
            return
        run = columns["run_id"]
        run_ids = list(run.values) if isinstance(run, Coded) else sorted(set(chunk_of(run, 0, n)))
        q = ",".join("?" * len(run_ids))
        row = self.db.execute(f"SELECT run_id FROM packed_parts WHERE tbl=? AND run_id IN ({q}) LIMIT 1",
                              (table, *run_ids)).fetchone()
        if row is not None:
            raise ValueError(f"run {row[0]}'s {table} are packed (a finished backtest's, final): no rows are added")

    def _has_rows(self, table: str, run_id: str, account: str | None) -> bool:
        """Whether ``run_id`` already has rows of ``table`` (as rows or packed), or, for fills, its
        account has any."""
        if self.db.execute(f"SELECT 1 FROM {table} WHERE run_id=? LIMIT 1", (run_id,)).fetchone():
            return True
        if self.db.execute("SELECT 1 FROM packed_parts WHERE run_id=? AND tbl=? LIMIT 1", (run_id, table)).fetchone():
            return True
        if table == "fills" and account is not None:
            return self.db.execute("SELECT 1 FROM fills WHERE account=? LIMIT 1", (account,)).fetchone() is not None \
                or self.db.execute("SELECT 1 FROM packed_parts WHERE account=? AND tbl='fills' LIMIT 1",
                                   (account,)).fetchone() is not None
        return False

    def _account_of(self, run_id: str, columns: dict[str, object]) -> str | None:
        from framework.ledger.columns import chunk_of

        if "account" in columns:
            got = chunk_of(columns["account"], 0, 1)
            if got and got[0] is not None:
                return str(got[0])
        row = self.db.execute("SELECT account FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------ reading
    def packed_frame(self, table: str, run_id: str):
        """``table``'s rows of ``run_id`` as ``pd.read_sql_query`` gives them, decoded straight from
        the packed parts; None unless every row of it is packed (then the SQL path answers)."""
        import pyarrow as pa

        parts = [b for (b,) in self.db.execute("SELECT data FROM packed_parts WHERE run_id=? AND tbl=? ORDER BY part",
                                               (run_id, table))]
        if not parts or self.db.execute(f"SELECT 1 FROM {table} WHERE run_id=? LIMIT 1", (run_id,)).fetchone():
            return None
        whole = pa.concat_tables([pa.ipc.open_stream(b).read_all() for b in parts], promote_options="default")
        cols = []
        for name in whole.column_names:
            col = whole.column(name).combine_chunks()
            col = col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
            if col.null_count == len(col):
                col = pa.nulls(len(col))     # SQLite hands back a column of NULLs as None objects
            cols.append(col)
        return pa.Table.from_arrays(cols, names=whole.column_names).to_pandas()

    def packed_rows(self, table: str, run_id: str | None = None) -> int:
        """Rows of ``table`` held in packed parts (of ``run_id``, or of the whole file)."""
        if run_id is None:
            row = self.db.execute("SELECT COALESCE(SUM(n_rows), 0) FROM packed_parts WHERE tbl=?", (table,)).fetchone()
        else:
            row = self.db.execute("SELECT COALESCE(SUM(n_rows), 0) FROM packed_parts WHERE tbl=? AND run_id=?",
                                  (table, run_id)).fetchone()
        return int(row[0])

    @contextmanager
    def reading(self, *, account: str | None = None, run_ids: list[str] | None = None,
                every: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection a reader of ``account``, ``run_ids`` or the whole file (``every``) runs its
        SQL on: the ledger's own when no packed part is in scope, else a scratch database holding
        the scope's rows, packed ones decoded (closed when the block ends)."""
        packed = self._packed_in_scope(account, run_ids, every)
        if not packed:
            yield self.db
            return
        scratch = self._scratch(packed, account, run_ids, every)
        try:
            yield scratch
        finally:
            scratch.close()

    def _packed_in_scope(self, account: str | None, run_ids: list[str] | None, every: bool) -> list[tuple]:
        sql = "SELECT run_id, tbl, data FROM packed_parts"
        if every:
            return self.db.execute(sql + " ORDER BY rowid").fetchall()
        if account is not None:
            return self.db.execute(sql + " WHERE account=? ORDER BY rowid", (account,)).fetchall()
        if run_ids:
            q = ",".join("?" * len(run_ids))
            return self.db.execute(sql + f" WHERE run_id IN ({q}) ORDER BY rowid", list(run_ids)).fetchall()
        return []

    def _scratch(self, packed: list[tuple], account: str | None, run_ids: list[str] | None,
                 every: bool) -> sqlite3.Connection:
        import pyarrow as pa

        s = sqlite3.connect(":memory:")
        if account is not None and not every:
            scope_runs = [r for (r,) in self.db.execute("SELECT run_id FROM runs WHERE account=?", (account,))]
        else:
            scope_runs = list(run_ids or [])
        q = ",".join("?" * len(scope_runs))
        for t in SCRATCH_TABLES:
            info = list(self.db.execute(f"PRAGMA table_info({t})"))
            s.execute(f"CREATE TABLE {t} ({', '.join(f'{r[1]} {r[2]}' for r in info)})")
            if every or t == "runs":
                where, args = "", []
            elif account is not None and t in ("orders", "fills"):
                where, args = " WHERE account=?", [account]
            else:
                where, args = f" WHERE run_id IN ({q})", list(scope_runs)
            cur = self.db.execute(f"SELECT * FROM {t}{where} ORDER BY rowid", args)
            names = [d[0] for d in cur.description]
            s.executemany(f"INSERT INTO {t} ({', '.join(names)}) VALUES ({','.join('?' * len(names))})", cur)
        for _run_id, table, blob in packed:
            part = pa.ipc.open_stream(blob).read_all()
            names = part.column_names
            cols = [part.column(k).to_pylist() for k in names]
            s.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({','.join('?' * len(names))})",
                          zip(*cols))
        for ddl in _SCRATCH_INDEXES:
            s.execute(ddl)
        q = ",".join("?" * len(SCRATCH_TABLES))
        for (sql,) in self.db.execute(f"SELECT sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
                                      f"AND tbl_name IN ({q})", SCRATCH_TABLES):
            s.execute(sql.replace("UNIQUE INDEX", "INDEX"))   # the same plans; a broken file still loads
        return s


def _affine(arr, decl: str) -> bool:
    """Whether SQLite would store the array's values as they are in a column declared ``decl``
    (numbers in REAL/INTEGER columns, text in TEXT ones; NULLs anywhere)."""
    import pyarrow as pa

    t = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    if pa.types.is_null(t):
        return True
    d = decl.upper()
    if d in ("REAL", "INTEGER"):
        return pa.types.is_integer(t) or (pa.types.is_floating(t) and d == "REAL")
    if d == "TEXT":
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    return d == "BLOB" and pa.types.is_binary(t)


def _constant(default: str | None, decl: str, n: int):
    """A column the writer left out: the table's default for every row (SQLite's own rule)."""
    import pyarrow as pa

    if default is None or default.upper() == "NULL":
        return pa.nulls(n)
    text = default.strip("'\"")
    value: object = text
    for kind in ((float,) if decl.upper() == "REAL" else (int, float)):
        try:
            value = kind(text)
            break
        except ValueError:
            continue
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))
