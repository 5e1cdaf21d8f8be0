"""Journals: the one bookkeeper of a run. Every order state and every fill reaches the ledger
through a journal, and nothing else books them.

Brokers report; journals book. A broker hands each answer (an order's new state with the fills it
brings) to ``update`` as it arrives — ``Broker.execute(batch, on_update=journal.update)`` — and
returns the final states of the leg, which ``report`` records. A fill is booked once, keyed by
(account, venue trade id): the ledger's unique index on that pair is the only place a fill is
deduplicated, so a venue that reports the same trade again (a poll, a re-run, a recovery after a
crash) changes nothing.

``WriteAheadJournal`` (paper, live, shadow) commits each record before the engine acts on it: the
cycle and its risk decisions, every order intent (with its deterministic client order id) before
the order is sent, then every answer with its fills in one transaction. ``BufferedJournal``
(backtest) keeps references to the same values and writes identical rows in bulk when the run
ends, because a simulated order is not an action in the world.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from framework.accounts import Account, Environment
from framework.ledger import Ledger, fill_rows, iso, now_iso, order_rows, pack_prices
from framework.memory import release_freed
from framework.types import (
    CycleStatus,
    ExecutionReport,
    FillBatch,
    OrderBatch,
    OrderStatus,
    RiskDecision,
    TargetPortfolio,
)

_REJECTED = int(OrderStatus.REJECTED)


_I8 = np.dtype(np.int8)
_REJECTED_BYTE = bytes([_REJECTED])


def _n_rejected(report: ExecutionReport) -> int:
    status = report.status
    if status.dtype == _I8:          # one status a byte: counted by bytes.count, a fifth of count_nonzero's cost
        return status.tobytes().count(_REJECTED_BYTE)
    return int(np.count_nonzero(status == _REJECTED))


def _state_rows(report: ExecutionReport, run_of: dict[str, str], default_run: str) -> tuple[list, list]:
    """(order updates, order events) for every order of a report; an update row is
    (status, filled_qty, avg_price, broker_id, message, updated_at, run_id, client_order_id)."""
    rows, events = [], []
    r = report
    stamp = now_iso()
    times = iso(r.status_times) if r.status_times is not None else None
    for i, cid in enumerate(r.batch.client_order_ids()):
        rid = run_of.get(cid, default_run)
        st = OrderStatus(int(r.status[i])).label
        ap = None if np.isnan(r.avg_price[i]) else float(r.avg_price[i])
        bid = r.broker_ids[i] if r.broker_ids else None
        rows.append((st, float(r.filled_qty[i]), ap, bid, r.messages.get(i), stamp, rid, cid))
        events.append((rid, cid, times[i] if times else stamp, st, float(r.filled_qty[i]), r.messages.get(i)))
    return rows, events


class BufferedJournal:
    """Collects a backtest's records in memory; ``flush`` writes them to the ledger in one transaction."""

    def __init__(self, run_id: str, account: Account | None = None):
        self.run_id = run_id
        self.account = account or Account("sim", Environment.SIM, run_id)   # every backtest its own account
        self._cycles: list[tuple] = []
        self._decisions: list[tuple[int, Sequence[RiskDecision]]] = []
        self._reports: list[tuple[int | None, ExecutionReport]] = []
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

    def end_cycle(self, seq: int, status: CycleStatus) -> None:
        c = self._cycles[seq]
        self._cycles[seq] = c + (status,)

    def decisions(self, seq: int, decisions: Sequence[RiskDecision]) -> None:
        if decisions:
            self._decisions.append((seq, decisions))

    def intents(self, seq: int | None, batch: OrderBatch) -> None:
        """Buffered: the report that follows carries the same orders."""

    def update(self, report: ExecutionReport) -> None:
        """An answer from the broker: its order states and fills (booked at ``flush``)."""
        self._updates.append(report)
        self.n_fills += len(report.fills)

    def updates(self, reports: list[ExecutionReport]) -> None:
        """Answers about orders of earlier cycles (fills of working orders)."""
        for r in reports:
            self.update(r)

    def report(self, seq: int | None, report: ExecutionReport) -> None:
        """The final answer to a leg. The simulator hands its answer to ``update`` and returns the
        same object: that answer is booked once, as the leg's orders with their fills."""
        if self._updates and self._updates[-1] is report:
            self._updates.pop()
        if len(report.batch):
            self._reports.append((seq, report))
            self.n_orders += len(report.batch)
            self.n_rejected += _n_rejected(report)

    def cancels(self, client_ids: list[str], t: np.datetime64, reason: str) -> None:
        self._cancels.extend((c, t, reason) for c in client_ids)

    # ---- what the run booked, read in memory (a sweep point's summary needs no ledger) ----------
    def fill_batches(self) -> list[FillBatch]:
        """Every fill booked, as the brokers reported them: the legs' then the later updates'."""
        return [r.fills for _, r in self._reports if len(r.fills)] + [r.fills for r in self._updates if len(r.fills)]

    def rejected(self) -> int:
        """Orders the broker refused: in the legs' answers and in later updates."""
        return self.n_rejected + sum(int(np.count_nonzero(r.status == _REJECTED)) for r in self._updates)

    def cycle_seqs(self) -> set[int]:
        """The cycles begun (a journal not yet collected: ``collect`` hands them to ``tables``)."""
        if self.tables is not None:
            raise RuntimeError("the journal was collected: its cycles are in journal.tables")
        return {c[0] for c in self._cycles}

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
                                      self._cancels, self.account.key)
        # the cycles' price rows (a 500-symbol run's 20 MB, now one matrix in the tables) go too
        self._cycles, self._decisions, self._reports, self._updates, self._cancels = [], [], [], [], []
        release_freed()      # the reports' many small arrays, now columns: their heap pages go back
        return self.tables


class WriteAheadJournal:
    """Commits every record before the action it records (paper, live, shadow)."""

    def __init__(self, ledger: Ledger, run_id: str, account: Account, history_runs: list[str] | None = None):
        self.ledger = ledger
        self.run_id = run_id
        self.account = account
        self.history_runs = history_runs or [run_id]
        self.n_orders = 0
        self.n_fills = 0
        self.n_rejected = 0

    def day_start_equity(self, t: np.datetime64) -> float | None:
        return self.ledger.equity_before(self.history_runs, iso(np.datetime64(t, "D")))  # type: ignore[arg-type]

    def begin_cycle(self, target: TargetPortfolio, prices: np.ndarray, equity: float) -> int:
        with self.ledger.tx():
            seq = self.ledger.next_cycle_seq(self.run_id)
            self.ledger.write_cycles([(self.run_id, seq, target.batch_id, iso(target.time),
                                       CycleStatus.RUNNING.value, equity, pack_prices(prices))])
        return seq

    def end_cycle(self, seq: int, status: CycleStatus) -> None:
        self.ledger.set_cycle_status(self.run_id, seq, status)

    def decisions(self, seq: int, decisions: Sequence[RiskDecision]) -> None:
        if decisions:
            self.ledger.write_decisions(self.run_id, seq, decisions)

    def intents(self, seq: int | None, batch: OrderBatch) -> None:
        """Record the orders before they are sent (status ``planned``)."""
        if len(batch):
            rows = order_rows(self.run_id, seq, batch, account=self.account.key)
            with self.ledger.tx():
                self.ledger.write_orders(rows)
                self.ledger.write_events([(self.run_id, r[2], r[16], OrderStatus.PLANNED.label, 0.0, None)
                                          for r in rows])

    def update(self, report: ExecutionReport) -> None:
        """Book one answer: the orders' states and the fills it brings, in one transaction, each in
        the run that recorded the order (a recovered order of an earlier run stays in that run)."""
        if not len(report.batch):
            return
        cids = report.batch.client_order_ids()
        run_of = self.ledger.order_runs(self.account.key, cids)
        rows, events = _state_rows(report, self._message_runs(cids, run_of), self.run_id)
        fills = report.fills
        with self.ledger.tx():
            self.ledger.update_account_orders(self.account.key, rows)
            self.ledger.write_events(events)
            if len(fills):
                by_run: dict[str, list[int]] = {}
                for k, p in enumerate(fills.order_pos.tolist()):
                    by_run.setdefault(run_of.get(cids[p], self.run_id), []).append(k)
                for rid, ks in by_run.items():
                    sub = report if len(by_run) == 1 else _with_fills(report, np.array(ks))
                    self.n_fills += self.ledger.book_fills(fill_rows(rid, sub, self.account.key))

    def updates(self, reports: list[ExecutionReport]) -> None:
        for r in reports:
            self.update(r)

    def _message_runs(self, cids: list[str], first: dict[str, str]) -> dict[str, str]:
        """The row an answer's message and event belong to: this run's, when this run recorded the
        order; else the run that did (an order recovered from an earlier run)."""
        mine = set(self.ledger.orders_of_run(self.run_id, cids))
        return {c: (self.run_id if c in mine else first.get(c, self.run_id)) for c in cids}

    def report(self, seq: int | None, report: ExecutionReport) -> None:
        """The final answer to a leg: its orders' states (the fills came with ``update``)."""
        if len(report.batch):
            self.n_orders += len(report.batch)
            self.n_rejected += _n_rejected(report)
            cids = report.batch.client_order_ids()
            rows, events = _state_rows(report, self._message_runs(cids, self.ledger.order_runs(self.account.key, cids)),
                                       self.run_id)
            with self.ledger.tx():
                self.ledger.update_account_orders(self.account.key, rows)
                self.ledger.write_events(events)

    def cancels(self, client_ids: list[str], t: np.datetime64, reason: str) -> None:
        if client_ids:
            self.ledger.cancel_orders(None, client_ids, reason, account=self.account.key)


def _with_fills(report: ExecutionReport, keep: np.ndarray) -> ExecutionReport:
    from dataclasses import replace

    f = report.fills
    ids = None if f.trade_ids is None else tuple(f.trade_ids[k] for k in keep.tolist())
    sub = type(f)(f.time[keep], f.symbol_idx[keep], f.side[keep], f.qty[keep], f.price[keep], f.fee[keep],
                  f.slippage[keep], f.order_pos[keep], ids, None if f.fee_qty is None else f.fee_qty[keep])
    return replace(report, fills=sub)
