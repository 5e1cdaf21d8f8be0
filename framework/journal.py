"""Journals: how the engine records a cycle in the ledger.

``WriteAheadJournal`` (paper/live) commits each record before the engine acts on it: the cycle and
its risk decisions, then every order intent (with its deterministic client order id) before the
order is sent, then every broker answer and fill as it arrives. ``BufferedJournal`` (backtest)
keeps references to the same values and writes identical rows in bulk at the end of the run.
"""

from __future__ import annotations

import numpy as np

from framework.ledger import Ledger, fill_rows, iso, now_iso, order_rows, pack_prices
from framework.types import ExecutionReport, OrderBatch, OrderStatus, RiskDecision, TargetPortfolio

_REJECTED = int(OrderStatus.REJECTED)


def _n_rejected(report: ExecutionReport) -> int:
    return int(np.count_nonzero(report.status == _REJECTED))


class BufferedJournal:
    """Collects a backtest's records in memory; ``flush`` writes them to the ledger in one transaction."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._cycles: list[tuple] = []
        self._decisions: list[tuple[int, tuple[RiskDecision, ...]]] = []
        self._reports: list[tuple[int, ExecutionReport]] = []
        self._updates: list[ExecutionReport] = []
        self._cancels: list[tuple[str, np.datetime64, str]] = []
        self.n_orders = 0
        self.n_fills = 0
        self.n_rejected = 0
        self.tables = None           # RunTables, once flushed

    def day_start_equity(self, t: np.datetime64) -> float | None:
        return None

    def begin_cycle(self, target: TargetPortfolio, prices: np.ndarray, equity: float) -> int:
        seq = len(self._cycles)
        self._cycles.append((seq, target.batch_id, target.time, prices, equity))
        return seq

    def end_cycle(self, seq: int, status: str) -> None:
        c = self._cycles[seq]
        self._cycles[seq] = c + (status,)

    def decisions(self, seq: int, decisions: tuple[RiskDecision, ...]) -> None:
        if decisions:
            self._decisions.append((seq, decisions))

    def intents(self, seq: int, batch: OrderBatch) -> None:
        """Buffered: the report that follows carries the same orders."""

    def report(self, seq: int, report: ExecutionReport) -> None:
        if len(report.batch):
            self._reports.append((seq, report))
            self.n_orders += len(report.batch)
            self.n_fills += len(report.fills)
            self.n_rejected += _n_rejected(report)

    def updates(self, reports: list[ExecutionReport]) -> None:
        for r in reports:
            self._updates.append(r)
            self.n_fills += len(r.fills)

    def cancels(self, client_ids: list[str], t: np.datetime64, reason: str) -> None:
        self._cancels.extend((c, t, reason) for c in client_ids)

    def flush(self, ledger: Ledger) -> None:
        """Write every buffered record to the ledger in one transaction, as columns (framework.bulk).

        The rows are those the write-ahead journal would have written, each order in its final
        state; ``self.tables`` keeps them for the run's artifacts, and the buffers are released."""
        tables = self.collect()
        with ledger.tx():
            tables.write(ledger)

    def collect(self):
        """The buffered records as the ledger's columns (``framework.bulk.RunTables``), kept in
        ``self.tables``; the buffers are released."""
        from framework.bulk import RunTables

        self.tables = RunTables.build(self.run_id, self._cycles, self._decisions, self._reports, self._updates,
                                      self._cancels)
        self._decisions, self._reports, self._updates, self._cancels = [], [], [], []
        return self.tables


def _apply_updates(ledger: Ledger, rid: str, reports: list[ExecutionReport]) -> None:
    rows, fills, events = [], [], []
    for r in reports:
        cids = r.batch.client_order_ids()
        for i, cid in enumerate(cids):
            st = OrderStatus(int(r.status[i])).label
            ap = None if np.isnan(r.avg_price[i]) else float(r.avg_price[i])
            bid = r.broker_ids[i] if r.broker_ids else None
            rows.append((st, float(r.filled_qty[i]), ap, bid, r.messages.get(i), now_iso(), rid, cid))
            t = iso(r.status_times[i]) if r.status_times is not None else now_iso()
            events.append((rid, cid, t, st, float(r.filled_qty[i]), r.messages.get(i)))
        fills.extend(fill_rows(rid, r))
    ledger.update_orders(rows)
    ledger.write_events(events)
    ledger.write_fills(fills)


class WriteAheadJournal:
    """Commits every record before the action it records (paper and live)."""

    def __init__(self, ledger: Ledger, run_id: str, history_runs: list[str] | None = None):
        self.ledger = ledger
        self.run_id = run_id
        self.history_runs = history_runs or [run_id]
        self.n_orders = 0
        self.n_fills = 0
        self.n_rejected = 0

    def day_start_equity(self, t: np.datetime64) -> float | None:
        return self.ledger.equity_before(self.history_runs, iso(np.datetime64(t, "D")))  # type: ignore[arg-type]

    def begin_cycle(self, target: TargetPortfolio, prices: np.ndarray, equity: float) -> int:
        db = self.ledger.db
        with self.ledger.tx():
            row = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM cycles WHERE run_id=?", (self.run_id,)).fetchone()
            seq = int(row[0])
            self.ledger.write_cycles([(self.run_id, seq, target.batch_id, iso(target.time), "running", equity,
                                       pack_prices(prices))])
        return seq

    def end_cycle(self, seq: int, status: str) -> None:
        with self.ledger.tx():
            self.ledger.db.execute("UPDATE cycles SET status=? WHERE run_id=? AND seq=?", (status, self.run_id, seq))

    def decisions(self, seq: int, decisions: tuple[RiskDecision, ...]) -> None:
        if decisions:
            with self.ledger.tx():
                self.ledger.write_decisions(self.run_id, seq, decisions)

    def intents(self, seq: int, batch: OrderBatch) -> None:
        if len(batch):
            with self.ledger.tx():
                rows = order_rows(self.run_id, seq, batch)
                self.ledger.write_orders(rows)
                self.ledger.write_events([(self.run_id, r[2], r[16], "planned", 0.0, None) for r in rows])

    def report(self, seq: int, report: ExecutionReport) -> None:
        if len(report.batch):
            self.n_orders += len(report.batch)
            self.n_fills += len(report.fills)
            self.n_rejected += _n_rejected(report)
            with self.ledger.tx():
                _apply_updates(self.ledger, self.run_id, [report])

    def updates(self, reports: list[ExecutionReport]) -> None:
        if reports:
            with self.ledger.tx():
                _apply_updates(self.ledger, self.run_id, reports)
            self.n_fills += sum(len(r.fills) for r in reports)

    def cancels(self, client_ids: list[str], t: np.datetime64, reason: str) -> None:
        if client_ids:
            with self.ledger.tx():
                upd = now_iso()
                self.ledger.db.executemany(
                    "UPDATE orders SET status='canceled', message=?, updated_at=? WHERE client_order_id=? "
                    "AND status IN ('planned','new','partially_filled')", [(reason, upd, c) for c in client_ids])
                self.ledger.write_events([(self.run_id, c, upd, "canceled", None, reason) for c in client_ids])
