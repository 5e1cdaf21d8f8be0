"""The ledger: one SQLite database (WAL) holding runs, cycles, risk decisions, orders with their
state transitions, fills, equity snapshots and promotions.

Two journals write it for the engine: ``WriteAheadJournal`` (paper and live) commits every intent
before the order is sent and every broker answer as it arrives; ``BufferedJournal`` (backtests)
keeps the same records in memory and writes them in bulk when the run ends, because a simulated
order is not an action in the world. Both produce identical rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from framework.types import ExecutionReport, OrderBatch, OrderStatus, RiskDecision

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, config_hash TEXT, mode TEXT NOT NULL, broker TEXT NOT NULL,
  start TEXT, end TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL, initial_equity REAL, final_equity REAL,
  universe TEXT, settings TEXT, artifacts TEXT, signals TEXT);
CREATE TABLE IF NOT EXISTS cycles (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, batch_id TEXT NOT NULL, time TEXT NOT NULL, status TEXT NOT NULL,
  equity REAL, prices BLOB, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS decisions (
  run_id TEXT NOT NULL, cycle_seq INTEGER, time TEXT NOT NULL, symbol TEXT NOT NULL, rule TEXT NOT NULL,
  action TEXT NOT NULL, requested REAL, approved REAL, reason TEXT);
CREATE TABLE IF NOT EXISTS orders (
  run_id TEXT NOT NULL, cycle_seq INTEGER, client_order_id TEXT NOT NULL, broker_id TEXT, time TEXT NOT NULL,
  symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL, type TEXT NOT NULL, limit_price REAL,
  leg TEXT, ref_price REAL, status TEXT NOT NULL, filled_qty REAL NOT NULL DEFAULT 0, avg_price REAL,
  message TEXT, updated_at TEXT, PRIMARY KEY (run_id, client_order_id));
CREATE INDEX IF NOT EXISTS orders_cid ON orders (client_order_id);
CREATE TABLE IF NOT EXISTS order_events (
  run_id TEXT NOT NULL, client_order_id TEXT NOT NULL, time TEXT NOT NULL, status TEXT NOT NULL,
  filled_qty REAL, message TEXT);
CREATE TABLE IF NOT EXISTS fills (
  run_id TEXT NOT NULL, client_order_id TEXT NOT NULL, broker_order_id TEXT, trade_id TEXT, time TEXT NOT NULL,
  symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL,
  slippage REAL NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS fills_trade ON fills (run_id, trade_id) WHERE trade_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS fills_run ON fills (run_id);
CREATE TABLE IF NOT EXISTS equity (
  run_id TEXT NOT NULL, time TEXT NOT NULL, equity REAL NOT NULL, cash REAL NOT NULL,
  gross_exposure REAL NOT NULL, net_exposure REAL NOT NULL, PRIMARY KEY (run_id, time));
CREATE TABLE IF NOT EXISTS promotions (
  strategy TEXT NOT NULL, action TEXT NOT NULL, stage TEXT NOT NULL, config_hash TEXT NOT NULL, who TEXT,
  time TEXT NOT NULL, evidence TEXT, reason TEXT);
"""

SIDE = {1: "buy", -1: "sell"}
# How the bulk writer inserts into each table: the same conflict rules as the row writers.
BULK_VERBS = {"cycles": "INSERT OR REPLACE", "orders": "INSERT OR IGNORE", "fills": "INSERT OR IGNORE",
              "decisions": "INSERT", "order_events": "INSERT", "equity": "INSERT OR REPLACE"}


def iso(t: np.datetime64 | np.ndarray) -> str | list[str]:
    """ISO 8601 UTC with a Z (vectorised for arrays)."""
    if isinstance(t, np.ndarray):
        s = np.datetime_as_string(t.astype("datetime64[us]"), unit="us")
        return [x + "Z" for x in s.tolist()]
    return np.datetime_as_string(np.datetime64(t, "us"), unit="us") + "Z"


def now_iso() -> str:
    return iso(np.datetime64(time.time_ns(), "ns"))  # type: ignore[return-value]


class Ledger:
    """The SQLite file. Every method commits before it returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def tx(self):
        return _Tx(self.db)

    # ------------------------------------------------------------ runs
    def start_run(self, run_id: str, strategy: str, config_hash: str, mode: str, broker: str,
                  initial_equity: float | None, universe: Iterable[str], settings: dict, signals: str = "") -> None:
        with self.tx():
            self.db.execute(
                "INSERT INTO runs (run_id, strategy, config_hash, mode, broker, status, created_at, initial_equity,"
                " universe, settings, signals) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, strategy, config_hash, mode, broker, "running", now_iso(), initial_equity,
                 json.dumps(list(universe)), json.dumps(settings, default=str), signals))

    def finish_run(self, run_id: str, status: str, start: str | None, end: str | None,
                   final_equity: float | None, artifacts: str | None = None) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET status=?, start=?, end=?, final_equity=?, artifacts=? WHERE run_id=?",
                            (status, start, end, final_equity, artifacts, run_id))

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY created_at", self.db)

    def run(self, run_id: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row))

    def latest_run_id(self) -> str | None:
        row = self.db.execute("SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------ reads
    def frame(self, table: str, run_id: str, order: str = "rowid") -> pd.DataFrame:
        return pd.read_sql_query(f"SELECT * FROM {table} WHERE run_id=? ORDER BY {order}", self.db, params=(run_id,))

    def order_by_client_id(self, client_order_id: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM orders WHERE client_order_id=? ORDER BY rowid DESC LIMIT 1",
                              (client_order_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row))

    def fill_totals(self, client_order_id: str) -> tuple[float, float]:
        """Quantity and notional already booked for an order (any run): what a venue's cumulative
        fill report is compared with, so a fill is never booked twice."""
        row = self.db.execute("SELECT COALESCE(SUM(qty),0), COALESCE(SUM(qty*price),0) FROM fills "
                              "WHERE client_order_id=?", (client_order_id,)).fetchone()
        return float(row[0]), float(row[1])

    def open_orders(self, broker: str, mode: str) -> list[dict]:
        """Orders this ledger still believes are working at ``broker`` in ``mode``."""
        cur = self.db.execute(
            "SELECT o.* FROM orders o JOIN runs r ON r.run_id=o.run_id WHERE r.broker=? AND r.mode=? "
            "AND o.status IN ('planned','new','partially_filled')", (broker, mode))
        return [dict(zip([c[0] for c in cur.description], row)) for row in cur.fetchall()]

    def runs_of(self, broker: str, mode: str, strategy: str | None = None) -> list[str]:
        q = "SELECT run_id FROM runs WHERE broker=? AND mode=?" + (" AND strategy=?" if strategy else "")
        args = (broker, mode, strategy) if strategy else (broker, mode)
        return [r[0] for r in self.db.execute(q, args).fetchall()]

    def ledger_positions(self, broker: str, mode: str) -> dict[str, float]:
        cur = self.db.execute(
            "SELECT f.symbol, SUM(CASE WHEN f.side='buy' THEN f.qty ELSE -f.qty END) FROM fills f "
            "JOIN runs r ON r.run_id=f.run_id WHERE r.broker=? AND r.mode=? GROUP BY f.symbol", (broker, mode))
        return {s: float(q) for s, q in cur.fetchall() if abs(q) > 1e-12}

    def equity_before(self, run_ids: list[str], t: str) -> float | None:
        q = ",".join("?" * len(run_ids))
        row = self.db.execute(f"SELECT equity FROM equity WHERE run_id IN ({q}) AND time < ? ORDER BY time DESC LIMIT 1",
                              (*run_ids, t)).fetchone()
        return None if row is None else float(row[0])

    # ------------------------------------------------------------ bulk writes
    def write_cycles(self, rows: list[tuple]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO cycles VALUES (?,?,?,?,?,?,?)", rows)

    def write_decisions(self, run_id: str, seq: int | None, decisions: Iterable[RiskDecision]) -> None:
        self.db.executemany(
            "INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?)",
            [(run_id, seq, iso(d.time), d.symbol, d.rule, d.action, d.requested, d.approved, d.reason)
             for d in decisions])

    def write_orders(self, rows: list[tuple]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO orders (run_id, cycle_seq, client_order_id, broker_id, time, symbol,"
                            " side, qty, type, limit_price, leg, ref_price, status, filled_qty, avg_price, message,"
                            " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def update_orders(self, rows: list[tuple]) -> None:
        """rows: (status, filled_qty, avg_price, broker_id, message, updated_at, run_id, client_order_id)."""
        self.db.executemany("UPDATE orders SET status=?, filled_qty=?, avg_price=?, broker_id=COALESCE(?, broker_id),"
                            " message=COALESCE(?, message), updated_at=? WHERE run_id=? AND client_order_id=?", rows)

    def write_events(self, rows: list[tuple]) -> None:
        self.db.executemany("INSERT INTO order_events VALUES (?,?,?,?,?,?)", rows)

    def write_fills(self, rows: list[tuple]) -> int:
        before = self.db.total_changes
        self.db.executemany("INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        return self.db.total_changes - before

    def snapshot(self, run_id: str, t: np.datetime64, equity: float, cash: float, positions) -> None:
        """Record one equity observation of a paper/live account (exposures from its positions)."""
        gross = float(sum(abs(p.market_value) for p in positions))
        net = float(sum(p.market_value for p in positions))
        with self.tx():
            self.db.execute("INSERT OR REPLACE INTO equity VALUES (?,?,?,?,?,?)",
                            (run_id, iso(np.datetime64(t, "ns")), float(equity), float(cash), gross, net))

    def write_equity(self, run_id: str, df: pd.DataFrame) -> None:
        times = iso(df["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]"))
        self.db.executemany("INSERT OR REPLACE INTO equity VALUES (?,?,?,?,?,?)",
                            zip([run_id] * len(df), times, df["equity"].tolist(), df["cash"].tolist(),
                                df["gross_exposure"].tolist(), df["net_exposure"].tolist()))

    # ------------------------------------------------------------ columnar bulk writes (issue 15)
    # A backtest's records arrive as whole columns (framework.bulk). They are written in chunks
    # straight from the columns, so no list of per-row tuples for a million orders is ever held.
    # Columns are named, so a table that gains a column with a default still takes these rows.
    def write_columns(self, table: str, columns: dict[str, object], chunk: int = 50_000) -> None:
        """Insert the rows of ``columns`` ({column name: sequence}, equal lengths) into ``table``.

        A sequence is a list, a numpy array (floats: NaN is stored as NULL, as SQLite does for a
        bound NaN) or an ``IsoTimes`` (written as the ISO 8601 text every ledger time uses)."""
        verb = BULK_VERBS[table]
        names = list(columns)
        n = len(next(iter(columns.values()))) if names else 0
        if n == 0:
            return
        sql = f"{verb} INTO {table} ({', '.join(names)}) VALUES ({','.join('?' * len(names))})"
        cols = list(columns.values())
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            self.db.executemany(sql, zip(*(_chunk(c, lo, hi) for c in cols)))


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


def _chunk(col, lo: int, hi: int) -> list:
    if isinstance(col, IsoTimes):
        return col.strings(lo, hi)
    if isinstance(col, Coded):
        return col.rows(lo, hi)
    if isinstance(col, np.ndarray):
        return col[lo:hi].tolist()
    return col[lo:hi]  # type: ignore[index]


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


# ---------------------------------------------------------------- rows from pipeline values
def order_rows(run_id: str, seq: int | None, batch: OrderBatch, status: np.ndarray | None = None,
               filled: np.ndarray | None = None, avg: np.ndarray | None = None,
               broker_ids: tuple | None = None, messages: dict[int, str] | None = None) -> list[tuple]:
    n = len(batch)
    if n == 0:
        return []
    cids = batch.client_order_ids()
    syms = batch.symbols()
    t = iso(batch.time)
    st = [OrderStatus(int(x)).label for x in (status if status is not None else np.zeros(n, np.int8)).tolist()]
    fq = (filled if filled is not None else np.zeros(n)).tolist()
    ap = [None if np.isnan(x) else x for x in (avg if avg is not None else np.full(n, np.nan)).tolist()]
    lim = batch.limit_price.tolist() if batch.limit_price is not None else [None] * n
    sides = [SIDE[int(s)] for s in batch.side.tolist()]
    msgs = messages or {}
    bids = broker_ids or (None,) * n
    upd = now_iso()
    return [(run_id, seq, cids[i], bids[i], t, syms[i], sides[i], float(batch.qty[i]), str(batch.order_type), lim[i],
             batch.leg, float(batch.ref_price[i]), st[i], fq[i], ap[i], msgs.get(i), upd) for i in range(n)]


def fill_rows(run_id: str, report: ExecutionReport) -> list[tuple]:
    f = report.fills
    if len(f) == 0:
        return []
    cids = report.batch.client_order_ids()
    syms = report.batch.universe.symbols
    bids = report.broker_ids
    times = iso(f.time)
    tids = f.trade_ids or (None,) * len(f)
    return [(run_id, cids[p], bids[p] if bids else None, tids[i], times[i], syms[s], SIDE[int(sd)], q, px, fee, sl)
            for i, (p, s, sd, q, px, fee, sl) in enumerate(zip(
                f.order_pos.tolist(), f.symbol_idx.tolist(), f.side.tolist(), f.qty.tolist(), f.price.tolist(),
                f.fee.tolist(), f.slippage.tolist()))]


def pack_prices(prices: np.ndarray) -> bytes:
    return zlib.compress(np.asarray(prices, np.float64).tobytes(), 1)


def unpack_prices(blob: bytes) -> np.ndarray:
    return np.frombuffer(zlib.decompress(blob), np.float64)
