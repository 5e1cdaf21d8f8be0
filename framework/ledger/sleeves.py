"""Sleeves (SPEC §18): the named queries of the ``sleeve_*`` tables.

``sleeve_accounts``: the account's equity when its portfolio started (the base of the account's
P&L). ``sleeve_plans``: each portfolio cycle's per-sleeve targets, crossings and residuals, written
before any order of the cycle is sent. ``sleeve_trades``: each sleeve's book, one row per funding,
internal crossing and allocated share of a venue fill, keyed so that a row is booked once.
``sleeve_equity``: each sleeve's, the unallocated rest's and the account's equity at each cycle.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pandas as pd

_PLAN_COLUMNS = "account, batch_id, sleeve, symbol, time, price, equity, held, target, crossed, residual"
_TRADE_COLUMNS = "account, sleeve, kind, key, batch_id, time, symbol, qty, price, fee, cash"


class SleeveQueries:
    """Mixed into ``Ledger``: every query about sleeves."""

    db: sqlite3.Connection

    def tx(self) -> Any:  # provided by Ledger
        raise NotImplementedError

    def _dicts(self, sql: str, args: tuple | list = (), db: sqlite3.Connection | None = None) -> list[dict]:
        raise NotImplementedError        # provided by Ledger

    def reading(self, *, account: str | None = None, run_ids: list[str] | None = None,
                every: bool = False) -> Any:
        raise NotImplementedError        # provided by Ledger (framework.ledger.packed)

    def write_sleeve_rows(self, accounts: list[tuple], plans: list[tuple], trades: list[tuple],
                          equity: list[tuple]) -> None:
        """Book sleeve rows in one transaction; a row already booked (same key) is kept as it was."""
        with self.tx():
            self.db.executemany("INSERT OR IGNORE INTO sleeve_accounts VALUES (?,?,?,?)", accounts)
            self.db.executemany(f"INSERT OR IGNORE INTO sleeve_plans ({_PLAN_COLUMNS}) VALUES "
                                "(?,?,?,?,?,?,?,?,?,?,?)", plans)
            self.db.executemany(f"INSERT OR IGNORE INTO sleeve_trades ({_TRADE_COLUMNS}) VALUES "
                                "(?,?,?,?,?,?,?,?,?,?,?)", trades)
            self.db.executemany("INSERT OR REPLACE INTO sleeve_equity VALUES (?,?,?,?,?,?,?)", equity)

    def sleeve_start(self, account: str) -> tuple[str, float, str] | None:
        """(portfolio, the account's equity when it started, time) or None."""
        row = self.db.execute("SELECT portfolio, start_equity, time FROM sleeve_accounts WHERE account=?",
                              (account,)).fetchone()
        return (row[0], float(row[1]), row[2]) if row else None

    def sleeve_trades(self, account: str) -> pd.DataFrame:
        return pd.read_sql_query(f"SELECT {_TRADE_COLUMNS} FROM sleeve_trades WHERE account=? ORDER BY rowid",
                                 self.db, params=(account,))

    def sleeve_plan(self, account: str, batch_id: str) -> pd.DataFrame:
        return pd.read_sql_query(f"SELECT {_PLAN_COLUMNS} FROM sleeve_plans WHERE account=? AND batch_id=? "
                                 "ORDER BY rowid", self.db, params=(account, batch_id))

    def sleeve_plans(self, account: str) -> pd.DataFrame:
        return pd.read_sql_query(f"SELECT {_PLAN_COLUMNS} FROM sleeve_plans WHERE account=? ORDER BY rowid",
                                 self.db, params=(account,))

    def sleeve_equity(self, account: str) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM sleeve_equity WHERE account=? ORDER BY time, sleeve", self.db,
                                 params=(account,))

    def fills_with_batches(self, account: str) -> list[dict]:
        """The account's fills with the batch of the cycle that recorded their order (None for an
        order of no cycle), oldest first: what a portfolio allocates to its sleeves."""
        with self.reading(account=account) as db:
            return self._dicts(
                "SELECT f.client_order_id, f.trade_id, f.time, f.symbol, f.side, f.qty, f.price, f.fee, "
                "(SELECT c.batch_id FROM orders o JOIN cycles c ON c.run_id=o.run_id AND c.seq=o.cycle_seq "
                " WHERE o.account=f.account AND o.client_order_id=f.client_order_id LIMIT 1) AS batch_id "
                "FROM fills f WHERE f.account=? ORDER BY f.rowid", (account,), db)
