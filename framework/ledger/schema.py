"""The ledger's tables, and the one migration from the first release's file (no accounts)."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, config_hash TEXT, mode TEXT NOT NULL, broker TEXT NOT NULL,
  start TEXT, end TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL, initial_equity REAL, final_equity REAL,
  universe TEXT, settings TEXT, artifacts TEXT, signals TEXT, account TEXT);
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
  message TEXT, updated_at TEXT, account TEXT, PRIMARY KEY (run_id, client_order_id));
CREATE TABLE IF NOT EXISTS order_events (
  run_id TEXT NOT NULL, client_order_id TEXT NOT NULL, time TEXT NOT NULL, status TEXT NOT NULL,
  filled_qty REAL, message TEXT);
CREATE TABLE IF NOT EXISTS fills (
  run_id TEXT NOT NULL, client_order_id TEXT NOT NULL, broker_order_id TEXT, trade_id TEXT, time TEXT NOT NULL,
  symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL,
  slippage REAL NOT NULL DEFAULT 0, account TEXT, fee_qty REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS fills_run ON fills (run_id);
CREATE TABLE IF NOT EXISTS equity (
  run_id TEXT NOT NULL, time TEXT NOT NULL, equity REAL NOT NULL, cash REAL NOT NULL,
  gross_exposure REAL NOT NULL, net_exposure REAL NOT NULL, PRIMARY KEY (run_id, time));
CREATE TABLE IF NOT EXISTS promotions (
  strategy TEXT NOT NULL, action TEXT NOT NULL, stage TEXT NOT NULL, config_hash TEXT NOT NULL, who TEXT,
  time TEXT NOT NULL, evidence TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS sweeps (
  sweep_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, config_hash TEXT NOT NULL, spec TEXT NOT NULL,
  created_at TEXT NOT NULL, status TEXT NOT NULL, n_points INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sweep_points (
  sweep_id TEXT NOT NULL, point_id TEXT NOT NULL, window INTEGER NOT NULL, segment TEXT NOT NULL,
  strategy TEXT NOT NULL, config_hash TEXT NOT NULL, params TEXT NOT NULL, start TEXT, end TEXT,
  summary TEXT NOT NULL, sr REAL, skew REAL, kurt REAL, n_obs INTEGER, seconds REAL, run_id TEXT,
  recorded_at TEXT NOT NULL, PRIMARY KEY (sweep_id, point_id, window, segment));
CREATE INDEX IF NOT EXISTS sweep_points_strategy ON sweep_points (strategy);
CREATE TABLE IF NOT EXISTS sleeve_accounts (
  account TEXT PRIMARY KEY, portfolio TEXT NOT NULL, start_equity REAL NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sleeve_plans (
  account TEXT NOT NULL, batch_id TEXT NOT NULL, sleeve TEXT NOT NULL, symbol TEXT NOT NULL, time TEXT NOT NULL,
  price REAL, equity REAL, held REAL NOT NULL, target REAL NOT NULL, crossed REAL NOT NULL, residual REAL NOT NULL,
  PRIMARY KEY (account, batch_id, sleeve, symbol));
CREATE TABLE IF NOT EXISTS sleeve_trades (
  account TEXT NOT NULL, sleeve TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, batch_id TEXT, time TEXT NOT NULL,
  symbol TEXT, qty REAL NOT NULL, price REAL, fee REAL NOT NULL, cash REAL NOT NULL,
  PRIMARY KEY (account, sleeve, kind, key));
CREATE TABLE IF NOT EXISTS sleeve_equity (
  account TEXT NOT NULL, run_id TEXT, time TEXT NOT NULL, sleeve TEXT NOT NULL, equity REAL NOT NULL,
  cash REAL NOT NULL, gross REAL NOT NULL, PRIMARY KEY (account, time, sleeve));
CREATE TABLE IF NOT EXISTS packed_parts (
  run_id TEXT NOT NULL, tbl TEXT NOT NULL, part INTEGER NOT NULL, account TEXT, n_rows INTEGER NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY (run_id, tbl, part));
CREATE INDEX IF NOT EXISTS packed_parts_account ON packed_parts (account);
CREATE TABLE IF NOT EXISTS leases (
  account TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, command TEXT, run_id TEXT,
  acquired_at REAL NOT NULL, expires_at REAL NOT NULL);
"""

# Indexes on the account columns come after the migration, which adds those columns to an old file.
INDEXES = """
CREATE INDEX IF NOT EXISTS orders_account_cid ON orders (account, client_order_id);
CREATE INDEX IF NOT EXISTS runs_account ON runs (account);
CREATE UNIQUE INDEX IF NOT EXISTS fills_account_trade ON fills (account, trade_id) WHERE trade_id IS NOT NULL;
"""

# Accounts the first release's runs belonged to: every backtest its own simulated account, paper
# and live runs the venue's only account as far as that release knew.
_LEGACY_ACCOUNT = ("CASE WHEN mode='backtest' THEN 'sim:sim:' || run_id "
                   "WHEN broker='coinbase-shadow' THEN 'coinbase:shadow:default' "
                   "ELSE broker || ':' || mode || ':default' END")


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables; bring a first-release file up to date (account columns, one fill index)."""
    db.executescript(SCHEMA)
    added = False
    for table in ("runs", "orders", "fills"):
        cols = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if "account" not in cols:
            db.execute(f"ALTER TABLE {table} ADD COLUMN account TEXT")
            added = True
        if table == "fills" and "fee_qty" not in cols:    # a fee taken in the asset received (SPEC §17)
            db.execute("ALTER TABLE fills ADD COLUMN fee_qty REAL NOT NULL DEFAULT 0")
    if added:
        db.execute("BEGIN IMMEDIATE")
        db.execute(f"UPDATE runs SET account = {_LEGACY_ACCOUNT} WHERE account IS NULL")
        for table in ("orders", "fills"):
            db.execute(f"UPDATE {table} SET account = (SELECT r.account FROM runs r WHERE r.run_id={table}.run_id) "
                       "WHERE account IS NULL")
        db.execute("DROP INDEX IF EXISTS fills_trade")
        db.execute("COMMIT")
    db.executescript(INDEXES)
