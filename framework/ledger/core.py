"""The Ledger object: the SQLite file behind named operations. All of Parity's SQL lives in this
package; callers ask for what they mean (``open_orders(account)``, ``book_fills(rows)``) and get
frozen records, frames or plain values back.

Reads that decide what to send or what was filled take an ``account`` key and read only that
account's rows (SPEC §17): a backtest never shares client order ids, fills or open orders with a
paper run, nor paper with live.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from framework.ledger.columns import BULK_VERBS, chunk_of
from framework.ledger.leases import LeaseQueries
from framework.ledger.packed import PACKED_TABLES, PackedQueries
from framework.ledger.records import OrderRecord
from framework.ledger.rows import iso, now_iso
from framework.ledger.runs import RunQueries
from framework.ledger.schema import migrate
from framework.ledger.sleeves import SleeveQueries
from framework.ledger.sweeps import SweepQueries
from framework.types import OrderStatus

_OPEN_LABELS = tuple(OrderStatus(s).label for s in (OrderStatus.PLANNED, OrderStatus.NEW, OrderStatus.PARTIAL))
_OPEN_SQL = "(" + ",".join(f"'{s}'" for s in _OPEN_LABELS) + ")"
_CANCELED = OrderStatus.CANCELED.label
_ORDER_COLUMNS = ("run_id, cycle_seq, client_order_id, broker_id, time, symbol, side, qty, type, limit_price, leg, "
                  "ref_price, status, filled_qty, avg_price, message, updated_at, account")


class Ledger(PackedQueries, RunQueries, LeaseQueries, SweepQueries, SleeveQueries):
    """The SQLite file (WAL). Every writing method commits before it returns unless called inside
    ``with ledger.tx():``, which makes several writes one transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one command uses it at a time; the live loop may book from its worker thread
        self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        migrate(self.db)
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    def tx(self) -> _Tx:
        return _Tx(self)

    def _one(self, sql: str, args: tuple | list = (), db: sqlite3.Connection | None = None) -> tuple | None:
        return (db or self.db).execute(sql, args).fetchone()

    def _dicts(self, sql: str, args: tuple | list = (), db: sqlite3.Connection | None = None) -> list[dict]:
        cur = (db or self.db).execute(sql, args)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    # ------------------------------------------------------------ orders
    def write_orders(self, rows: list[tuple]) -> None:
        """Insert order rows (``rows.order_rows``); an order already recorded for its run is kept."""
        with self.tx():
            self.db.executemany(f"INSERT OR IGNORE INTO orders ({_ORDER_COLUMNS}) VALUES "
                                "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def update_orders(self, rows: list[tuple]) -> None:
        """rows: (status, filled_qty, avg_price, broker_id, message, updated_at, run_id, client_order_id)."""
        with self.tx():
            self.db.executemany("UPDATE orders SET status=?, filled_qty=?, avg_price=?, broker_id=COALESCE(?, broker_id),"
                                " message=COALESCE(?, message), updated_at=? WHERE run_id=? AND client_order_id=?", rows)

    def update_account_orders(self, account: str, rows: list[tuple]) -> None:
        """An order's state for every row of its client order id in ``account`` (each run that
        recorded the order learns it); the message goes to one run's row only, the one named.
        rows: (status, filled_qty, avg_price, broker_id, message, updated_at, run_id, client_order_id)."""
        with self.tx():
            self.db.executemany("UPDATE orders SET status=?, filled_qty=?, avg_price=?, broker_id=COALESCE(?, broker_id),"
                                " updated_at=? WHERE account=? AND client_order_id=?",
                                [(r[0], r[1], r[2], r[3], r[5], account, r[7]) for r in rows])
            self.db.executemany("UPDATE orders SET message=? WHERE run_id=? AND client_order_id=?",
                                [(r[4], r[6], r[7]) for r in rows if r[4] is not None])

    def write_events(self, rows: list[tuple]) -> None:
        """rows: (run_id, client_order_id, time, status, filled_qty, message)."""
        with self.tx():
            self.db.executemany("INSERT INTO order_events VALUES (?,?,?,?,?,?)", rows)

    def cancel_orders(self, run_id: str | None, client_ids: list[str], reason: str, account: str | None = None,
                      only_open: bool = True) -> None:
        """Mark orders canceled with ``reason`` (in ``run_id``, or every run of ``account``) and log the event."""
        upd = now_iso()
        cond = f" AND status IN {_OPEN_SQL}" if only_open else ""
        with self.tx():
            if run_id is not None:
                self.db.executemany(f"UPDATE orders SET status='{_CANCELED}', message=?, updated_at=? WHERE run_id=? "
                                    f"AND client_order_id=?{cond}", [(reason, upd, run_id, c) for c in client_ids])
                self.write_events([(run_id, c, upd, _CANCELED, None, reason) for c in client_ids])
            else:
                self.db.executemany(f"UPDATE orders SET status='{_CANCELED}', message=?, updated_at=? WHERE account=? "
                                    f"AND client_order_id=?{cond}", [(reason, upd, account, c) for c in client_ids])

    def refresh_filled_qty(self, run_id: str, client_ids: list[str]) -> None:
        """Set each order's filled quantity from the fills booked for it in ``run_id``."""
        with self.tx():
            self.db.executemany("UPDATE orders SET filled_qty=(SELECT COALESCE(SUM(qty + fee_qty),0) FROM fills f WHERE "
                                "f.run_id=orders.run_id AND f.client_order_id=orders.client_order_id) "
                                "WHERE run_id=? AND client_order_id=?", [(run_id, c) for c in client_ids])

    def open_orders(self, account: str) -> list[OrderRecord]:
        """Orders of ``account`` this ledger still believes are working (or never answered)."""
        with self.reading(account=account) as db:
            return [OrderRecord.of(d) for d in self._dicts(
                f"SELECT * FROM orders WHERE account=? AND status IN {_OPEN_SQL}", (account,), db)]

    def orders_missing_fills(self, account: str) -> list[OrderRecord]:
        """Finished orders of ``account`` whose booked fills add up to less than their filled quantity
        (a venue that published the order's state before its fills): reconcile fetches the rest."""
        with self.reading(account=account) as db:
            return [OrderRecord.of(d) for d in self._dicts(
                "SELECT o.* FROM orders o WHERE o.account=? AND o.filled_qty > 0 AND o.filled_qty - 1e-9 > "
                "(SELECT COALESCE(SUM(f.qty + f.fee_qty), 0) FROM fills f WHERE f.account=o.account AND "
                "f.client_order_id=o.client_order_id)", (account,), db)]

    def order(self, account: str, client_order_id: str) -> OrderRecord | None:
        """The newest row of an order of ``account`` by its client order id."""
        with self.reading(account=account) as db:
            rows = self._dicts("SELECT * FROM orders WHERE account=? AND client_order_id=? ORDER BY rowid DESC LIMIT 1",
                               (account, client_order_id), db)
        return OrderRecord.of(rows[0]) if rows else None

    def order_runs(self, account: str, client_ids: list[str]) -> dict[str, str]:
        """The run that first recorded each client order id of ``account`` (where its fills are booked)."""
        out: dict[str, str] = {}
        with self.reading(account=account) as db:
            for k in range(0, len(client_ids), 500):
                chunk = client_ids[k:k + 500]
                q = ",".join("?" * len(chunk))
                for cid, rid in db.execute(f"SELECT client_order_id, run_id FROM orders WHERE account=? AND "
                                           f"client_order_id IN ({q}) ORDER BY rowid", (account, *chunk)):
                    out.setdefault(cid, rid)
        return out

    def orders_of_run(self, run_id: str, client_ids: list[str]) -> list[str]:
        """Which of ``client_ids`` ``run_id`` recorded."""
        out: list[str] = []
        with self.reading(run_ids=[run_id]) as db:
            for k in range(0, len(client_ids), 500):
                chunk = client_ids[k:k + 500]
                q = ",".join("?" * len(chunk))
                out += [r[0] for r in db.execute(f"SELECT client_order_id FROM orders WHERE run_id=? AND "
                                                 f"client_order_id IN ({q})", (run_id, *chunk))]
        return out

    def count_filled_orders(self, run_id: str) -> int:
        with self.reading(run_ids=[run_id]) as db:
            return int(self._one("SELECT COUNT(*) FROM orders WHERE run_id=? AND filled_qty > 0", (run_id,), db)[0])  # type: ignore[index]

    def first_event_times(self, run_ids: list[str]) -> pd.DataFrame:
        """Each order's first recorded event time (when it was journaled as an intent)."""
        q = ",".join("?" * len(run_ids))
        with self.reading(run_ids=list(run_ids)) as db:
            return pd.read_sql_query(f"SELECT client_order_id, MIN(time) AS t FROM order_events WHERE run_id IN ({q}) "
                                     "GROUP BY client_order_id", db, params=run_ids)

    # ------------------------------------------------------------ fills
    def book_fills(self, rows: list[tuple]) -> int:
        """Book fills (``rows.fill_rows``) once: a fill whose (account, venue trade id) is already
        booked is not booked again. Returns how many were new. The journal is the only caller. A row may end with
        ``fee_qty``: the part of the executed quantity the venue kept as its fee (0 when left out)."""
        with self.tx():
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO fills (run_id, client_order_id, broker_order_id, trade_id, time, symbol, side, "
                "qty, price, fee, slippage, account, fee_qty) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [r if len(r) == 13 else (*r, 0.0) for r in rows])
            return self.db.total_changes - before

    def positions(self, account: str) -> dict[str, float]:
        """Net quantity per symbol that ``account``'s booked fills add up to."""
        with self.reading(account=account) as db:
            cur = db.execute("SELECT symbol, SUM(CASE WHEN side='buy' THEN qty ELSE -qty END) FROM fills "
                             "WHERE account=? GROUP BY symbol", (account,))
            return {s: float(q) for s, q in cur.fetchall() if abs(q) > 1e-12}

    def positions_before(self, account: str, run_id: str) -> dict[str, float]:
        """Net quantity per symbol from ``account``'s fills booked by runs created before ``run_id``."""
        row = self._one("SELECT created_at, rowid FROM runs WHERE run_id=?", (run_id,))
        if row is None:
            return {}
        with self.reading(account=account) as db:
            cur = db.execute(
                "SELECT f.symbol, SUM(CASE WHEN f.side='buy' THEN f.qty ELSE -f.qty END) FROM fills f JOIN runs r "
                "ON r.run_id=f.run_id WHERE f.account=? AND (r.created_at < ? OR (r.created_at = ? AND r.rowid < ?)) "
                "GROUP BY f.symbol", (account, row[0], row[0], row[1]))
            return {s: float(q) for s, q in cur.fetchall() if abs(q) > 1e-12}

    def cash_flow(self, account: str) -> float:
        """Cash the account's fills moved: sells' proceeds minus buys' cost, minus every fee."""
        with self.reading(account=account) as db:
            row = self._one("SELECT COALESCE(SUM(CASE WHEN side='buy' THEN -qty*price ELSE qty*price END - fee), 0) "
                            "FROM fills WHERE account=?", (account,), db)
        return float(row[0])  # type: ignore[index]

    def average_cost(self, account: str, symbol: str) -> float:
        with self.reading(account=account) as db:
            row = self._one("SELECT SUM(qty*price)/SUM(qty) FROM fills WHERE account=? AND symbol=? AND side='buy'",
                            (account, symbol), db)
        return float((row or (None,))[0] or 0.0)

    # ------------------------------------------------------------ cycles and decisions
    def write_cycles(self, rows: list[tuple]) -> None:
        """rows: (run_id, seq, batch_id, time, status, equity, packed prices)."""
        with self.tx():
            self.db.executemany("INSERT OR REPLACE INTO cycles VALUES (?,?,?,?,?,?,?)", rows)

    def next_cycle_seq(self, run_id: str) -> int:
        return int(self._one("SELECT COALESCE(MAX(seq), -1) + 1 FROM cycles WHERE run_id=?", (run_id,))[0])  # type: ignore[index]

    def set_cycle_status(self, run_id: str, seq: int, status: str) -> None:
        with self.tx():
            self.db.execute("UPDATE cycles SET status=? WHERE run_id=? AND seq=?", (str(status), run_id, seq))

    def batch_of_cycle(self, run_id: str, seq: int | None) -> str | None:
        if seq is None:
            return None
        row = self._one("SELECT batch_id FROM cycles WHERE run_id=? AND seq=?", (run_id, seq))
        return row[0] if row else None

    def cycle_rows(self, run_id: str) -> list[tuple]:
        """(seq, batch_id, time, status, equity, packed prices) of every cycle of a run."""
        return self.db.execute("SELECT seq, batch_id, time, status, equity, prices FROM cycles WHERE run_id=? "
                               "ORDER BY seq", (run_id,)).fetchall()

    def count_cycles(self, run_id: str, statuses: tuple[str, ...]) -> int:
        q = ",".join("?" * len(statuses))
        return int(self._one(f"SELECT COUNT(*) FROM cycles WHERE run_id=? AND status IN ({q})",
                             (run_id, *[str(s) for s in statuses]))[0])  # type: ignore[index]

    def count_decisions(self, run_id: str, action: str) -> int:
        with self.reading(run_ids=[run_id]) as db:
            return int(self._one("SELECT COUNT(*) FROM decisions WHERE run_id=? AND action=?",  # type: ignore[index]
                                 (run_id, str(action)), db)[0])

    def write_decisions(self, run_id: str, seq: int | None, decisions: Iterable) -> None:
        with self.tx():
            self.db.executemany(
                "INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?)",
                [(run_id, seq, iso(d.time), d.symbol, d.rule, str(d.action), d.requested, d.approved, d.reason)
                 for d in decisions])

    # ------------------------------------------------------------ equity
    def snapshot(self, run_id: str, t: np.datetime64, equity: float, cash: float, positions) -> None:
        """Record one equity observation of a paper/live account (exposures from its positions)."""
        gross = float(sum(abs(p.market_value) for p in positions))
        net = float(sum(p.market_value for p in positions))
        with self.tx():
            self.db.execute("INSERT OR REPLACE INTO equity VALUES (?,?,?,?,?,?)",
                            (run_id, iso(np.datetime64(t, "ns")), float(equity), float(cash), gross, net))

    def write_equity(self, run_id: str, df: pd.DataFrame) -> None:
        times = iso(df["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]"))
        with self.tx():
            self.db.executemany("INSERT OR REPLACE INTO equity VALUES (?,?,?,?,?,?)",
                                zip([run_id] * len(df), times, df["equity"].tolist(), df["cash"].tolist(),
                                    df["gross_exposure"].tolist(), df["net_exposure"].tolist()))

    def equity_before(self, run_ids: list[str], t: str) -> float | None:
        if not run_ids:
            return None
        q = ",".join("?" * len(run_ids))
        row = self._one(f"SELECT equity FROM equity WHERE run_id IN ({q}) AND time < ? ORDER BY time DESC LIMIT 1",
                        (*run_ids, t))
        return None if row is None else float(row[0])

    def last_equity(self, run_ids: list[str]) -> float | None:
        if not run_ids:
            return None
        q = ",".join("?" * len(run_ids))
        row = self._one(f"SELECT equity FROM equity WHERE run_id IN ({q}) ORDER BY time DESC LIMIT 1", run_ids)
        return None if row is None else float(row[0])

    def has_equity(self, run_id: str) -> bool:
        return self._one("SELECT 1 FROM equity WHERE run_id=? LIMIT 1", (run_id,)) is not None

    # ------------------------------------------------------------ tables as frames (reports)
    def frame(self, table: str, run_id: str, order: str = "rowid") -> pd.DataFrame:
        """All rows of one run in ``table`` (one of the ledger's tables), ordered by ``order``."""
        _known_table(table)
        if table in PACKED_TABLES and order == "rowid":
            packed = self.packed_frame(table, run_id)
            if packed is not None:
                return packed
        with self.reading(run_ids=[run_id] if table in PACKED_TABLES else None) as db:
            return pd.read_sql_query(f"SELECT * FROM {table} WHERE run_id=? ORDER BY {order}", db, params=(run_id,))

    def frames_of(self, table: str, run_ids: list[str], until: str | None = None) -> pd.DataFrame:
        """Rows of several runs in ``table`` (times before ``until`` when given), by time."""
        _known_table(table)
        q = ",".join("?" * len(run_ids))
        sql = f"SELECT * FROM {table} WHERE run_id IN ({q})" + (" AND time < ?" if until else "")
        sql += " ORDER BY time, rowid"
        with self.reading(run_ids=list(run_ids) if table in PACKED_TABLES else None) as db:
            return pd.read_sql_query(sql, db, params=(*run_ids, *([until] if until else [])))

    def table_rows(self, table: str) -> list[dict]:
        """Every row of ``table`` (the consistency check reads whole tables)."""
        _known_table(table)
        with self.reading(every=table in PACKED_TABLES) as db:
            return self._dicts(f"SELECT rowid AS _rowid, * FROM {table}", (), db)

    def count_rows(self, table: str, run_id: str | None = None) -> int:
        _known_table(table)
        packed = self.packed_rows(table, run_id) if table in PACKED_TABLES else 0
        if run_id is None:
            return packed + int(self._one(f"SELECT COUNT(*) FROM {table}")[0])  # type: ignore[index]
        return packed + int(self._one(f"SELECT COUNT(*) FROM {table} WHERE run_id=?", (run_id,))[0])  # type: ignore[index]

    # ------------------------------------------------------------ columnar bulk writes (issue 15)
    def write_columns(self, table: str, columns: dict[str, object], chunk: int = 50_000) -> None:
        """Insert the rows of ``columns`` ({column name: sequence}, equal lengths) into ``table``.

        A sequence is a list, a numpy array (floats: NaN is stored as NULL, as SQLite does for a
        bound NaN), an ``IsoTimes`` (written as the ISO 8601 text every ledger time uses) or a
        ``Coded`` column. Columns are named, so a table that gains a column with a default still
        takes these rows. One run's rows of a bulk table from ``PARITY_PACK_ROWS`` rows on are
        stored packed (``framework.ledger.packed``); every reader here sees them as rows."""
        _known_table(table)
        verb = BULK_VERBS[table]
        names = list(columns)
        n = len(next(iter(columns.values()))) if names else 0  # type: ignore[arg-type]
        if n == 0:
            return
        sql = f"{verb} INTO {table} ({', '.join(names)}) VALUES ({','.join('?' * len(names))})"
        cols = list(columns.values())
        self.refuse_packed(table, columns, n)
        with self.tx():
            if self.write_packed(table, columns):      # one large backtest's rows as one block
                return
            for lo in range(0, n, chunk):
                hi = min(lo + chunk, n)
                self.db.executemany(sql, zip(*(chunk_of(c, lo, hi) for c in cols)))

    def settings_of(self, run_id: str) -> dict:
        row = self._one("SELECT settings FROM runs WHERE run_id=?", (run_id,))
        return json.loads(row[0]) if row and row[0] else {}


_TABLES = frozenset({"runs", "cycles", "decisions", "orders", "order_events", "fills", "equity", "promotions",
                     "leases", "sweeps", "sweep_points", "packed_parts"})


def _known_table(table: str) -> None:
    if table not in _TABLES:
        raise ValueError(f"not a ledger table: {table!r}")


class _Tx:
    """A transaction; nested ``tx()`` blocks join the outermost one."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def __enter__(self) -> sqlite3.Connection:
        if self.ledger._depth == 0:
            self.ledger.db.execute("BEGIN IMMEDIATE")
        self.ledger._depth += 1
        return self.ledger.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.ledger._depth -= 1
        if self.ledger._depth == 0:
            self.ledger.db.execute("ROLLBACK" if exc_type else "COMMIT")
