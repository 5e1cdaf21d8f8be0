"""Sweeps (SPEC §19): the named queries of the ``sweeps`` and ``sweep_points`` tables.

One row per sweep, one row per backtest of a point (a whole-period point, or one train/test window
of a walk-forward point). A point's row is its config hash and summary, small; only the best K
points also get a full run (runs, orders, fills, ...) whose id ``run_id`` holds.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pandas as pd

from framework.ledger.rows import now_iso


class SweepQueries:
    """Mixed into ``Ledger``: every query about sweeps."""

    db: sqlite3.Connection

    def tx(self) -> Any:  # provided by Ledger
        raise NotImplementedError

    def start_sweep(self, sweep_id: str, strategy: str, config_hash: str, spec: dict, n_points: int) -> bool:
        """Record a sweep unless it exists (a re-run resumes it); True when it is new."""
        with self.tx():
            cur = self.db.execute("INSERT OR IGNORE INTO sweeps VALUES (?,?,?,?,?,?,?)",
                                  (sweep_id, strategy, config_hash, json.dumps(spec, sort_keys=True, default=str),
                                   now_iso(), "running", n_points))
        return cur.rowcount == 1

    def finish_sweep(self, sweep_id: str, status: str) -> None:
        with self.tx():
            self.db.execute("UPDATE sweeps SET status=? WHERE sweep_id=?", (status, sweep_id))

    def sweep(self, sweep_id: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM sweeps WHERE sweep_id=?", (sweep_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row))

    def sweep_recorded(self, sweep_id: str) -> set[tuple[str, int, str]]:
        """(point_id, window, segment) of every backtest already recorded under ``sweep_id``."""
        return set(self.db.execute("SELECT point_id, window, segment FROM sweep_points WHERE sweep_id=?",
                                   (sweep_id,)).fetchall())

    def record_sweep_point(self, sweep_id: str, point_id: str, window: int, segment: str, strategy: str,
                           config_hash: str, params: dict, start: str | None, end: str | None, summary: dict,
                           stats: dict, seconds: float) -> bool:
        """Record one point's backtest once (a duplicate report of it is ignored); True when recorded."""
        with self.tx():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO sweep_points VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (sweep_id, point_id, window, segment, strategy, config_hash, json.dumps(params, sort_keys=True),
                 start, end, json.dumps(summary, sort_keys=True, default=str), stats.get("sr"), stats.get("skew"),
                 stats.get("kurt"), stats.get("n_obs"), seconds, None, now_iso()))
        return cur.rowcount == 1

    def set_sweep_point_run(self, sweep_id: str, point_id: str, run_id: str) -> None:
        """Attach the full run (artifacts) written for one of the best points."""
        with self.tx():
            self.db.execute("UPDATE sweep_points SET run_id=? WHERE sweep_id=? AND point_id=?",
                            (run_id, sweep_id, point_id))

    def sweep_points(self, sweep_id: str) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM sweep_points WHERE sweep_id=? ORDER BY rowid", self.db,
                                 params=(sweep_id,))

    def sweep_trials(self, strategy: str) -> list[float]:
        """Per-period Sharpe ratio of every trial of every sweep of ``strategy``: each point of a sweep
        over the whole period, each training window of a walk-forward one (test windows are not
        selections)."""
        rows = self.db.execute("SELECT sr FROM sweep_points WHERE strategy=? AND segment != 'test' "
                               "AND sr IS NOT NULL", (strategy,)).fetchall()
        return [float(r[0]) for r in rows]
