"""Runs and promotions: the named queries of the ``runs`` and ``promotions`` tables."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable

import pandas as pd

from framework.ledger.records import PromotionRecord
from framework.ledger.rows import now_iso
from framework.types import RunStatus


class RunQueries:
    """Mixed into ``Ledger``: every query about runs and promotions."""

    db: sqlite3.Connection

    def tx(self) -> Any:  # provided by Ledger
        raise NotImplementedError

    def _dicts(self, sql: str, args: tuple | list = ()) -> list[dict]:  # provided by Ledger
        raise NotImplementedError

    def start_run(self, run_id: str, strategy: str, config_hash: str, mode: str, broker: str,
                  initial_equity: float | None, universe: Iterable[str], settings: dict, signals: str = "",
                  account: str | None = None) -> None:
        with self.tx():
            self.db.execute(
                "INSERT INTO runs (run_id, strategy, config_hash, mode, broker, status, created_at, initial_equity,"
                " universe, settings, signals, account) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, strategy, config_hash, mode, broker, RunStatus.RUNNING.value, now_iso(), initial_equity,
                 json.dumps(list(universe)), json.dumps(settings, default=str), signals, account))

    def finish_run(self, run_id: str, status: RunStatus | str, start: str | None, end: str | None,
                   final_equity: float | None, artifacts: str | None = None) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET status=?, start=?, end=?, final_equity=?, artifacts=COALESCE(?, artifacts)"
                            " WHERE run_id=?", (str(status), start, end, final_equity, artifacts, run_id))

    def set_artifacts(self, run_id: str, path: str) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET artifacts=? WHERE run_id=?", (path, run_id))

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY created_at", self.db)

    def run(self, run_id: str) -> dict | None:
        rows = self._dicts("SELECT * FROM runs WHERE run_id=?", (run_id,))
        return rows[0] if rows else None

    def running_runs(self, mode: str) -> list[dict]:
        """Runs of ``mode`` still marked running, oldest first."""
        return self._dicts("SELECT * FROM runs WHERE mode=? AND status=? ORDER BY created_at, rowid",
                           (mode, RunStatus.RUNNING.value))

    def latest_run_id(self) -> str | None:
        row = self.db.execute("SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def runs_of(self, account: str, strategy: str | None = None) -> list[str]:
        """Run ids of ``account`` (of one strategy when given), oldest first."""
        q = "SELECT run_id FROM runs WHERE account=?" + (" AND strategy=?" if strategy else "")
        args = (account, strategy) if strategy else (account,)
        return [r[0] for r in self.db.execute(q + " ORDER BY created_at, rowid", args).fetchall()]

    def find_runs(self, *, strategy: str | None = None, modes: tuple[str, ...] | None = None,
                  broker: str | None = None, config_hash: str | None = None) -> list[dict]:
        """Runs matching every given filter, oldest first."""
        where, args = [], []
        for column, value in (("strategy", strategy), ("broker", broker), ("config_hash", config_hash)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if modes:
            where.append(f"mode IN ({','.join('?' * len(modes))})")
            args.extend(modes)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        return self._dicts(sql + " ORDER BY created_at, rowid", args)

    def universe_of(self, run_id: str) -> list[str]:
        row = self.db.execute("SELECT universe FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return json.loads((row[0] if row else None) or "[]")

    # ------------------------------------------------------------ promotions
    def last_promotion(self, strategy: str) -> PromotionRecord | None:
        rows = self._dicts("SELECT rowid AS id, * FROM promotions WHERE strategy=? ORDER BY rowid DESC LIMIT 1",
                           (strategy,))
        return PromotionRecord(**rows[0]) if rows else None

    def record_promotion(self, strategy: str, action: str, stage: str, config_hash: str, who: str, time: str,
                         evidence: dict, reason: str) -> None:
        with self.tx():
            self.db.execute("INSERT INTO promotions (strategy, action, stage, config_hash, who, time, "
                            "evidence, reason) VALUES (?,?,?,?,?,?,?,?)",
                            (strategy, action, stage, config_hash, who, time,
                             json.dumps(evidence, sort_keys=True, default=str), reason))
