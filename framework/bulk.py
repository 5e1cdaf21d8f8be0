"""A backtest's records as whole columns: what ``BufferedJournal.flush`` writes to the ledger.

The journal keeps the pipeline's own values during a replay (reports of whole order batches,
decision tuples, cycle prices). ``RunTables.build`` turns them, once, into the ledger's tables as
columns (numpy arrays, lists, the client ids an Arrow-backed pandas ``str`` Series): the rows the
row-at-a-time journal writes, with every order in its final state (the broker updates and the
end-of-run cancels applied in memory, exactly as the SQL updates apply them). The same columns are
then

- bulk-written to the ledger (``Ledger.write_columns``, in chunks: no list of per-row tuples), and
- the input of the run's artifacts and report (``framework.artifacts.tables_frames``), so a
  backtest does not read back what it has just written. ``parity report RUN_ID`` builds the same
  frames from the ledger, and both feed the one ``run_data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from framework.bulk_columns import (
    Book,
    Joiner,
    column_of,
    fill_columns,
    message_codes,
    picked,
    rows_of,
    set_value,
    take_rows,
)
from framework.client_ids import ClientIds
from framework.ledger import Coded, IsoTimes, Ledger, now_iso
from framework.ledger.columns import PackedPrices
from framework.types import ExecutionReport, OrderStatus, RiskDecision

if TYPE_CHECKING:
    import pandas as pd

_LABELS = np.array([OrderStatus(k).label for k in range(len(OrderStatus))], dtype=object)
_SIDES = np.array(["sell", "buy"], dtype=object)   # index: side > 0


class _Texts:
    """A text column of many distinct values (the risk manager's reasons: 2.5 M on a 500-symbol run
    where max_positions binds), kept as Arrow text: about 80 bytes a row instead of a Python string's
    130, and no object per row, so a child forked to write the CSVs reads them without copying the
    pages their reference counts live on. Strings are taken in blocks of ``CHUNK`` and let go."""

    CHUNK = 1 << 16

    def __init__(self) -> None:
        self._done: list = []
        self._pending: list[str] = []

    def extend(self, texts: list[str]) -> None:
        self._pending.extend(texts)
        if len(self._pending) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._done.append(pa.array(self._pending, pa.large_string()))
            self._pending = []

    def series(self) -> pd.Series:
        """The texts in order, as pandas' Arrow-backed text (no copy of the Arrow data)."""
        import pyarrow as pa

        self._flush()
        done, self._done = self._done, []
        return pa.chunked_array(done, pa.large_string()).to_pandas()


def _repeat(value, n: int) -> list:
    return [value] * n


@dataclass
class RunTables:
    """Column dicts per ledger table, named as the ledger's columns (``run_id`` included)."""

    cycles: dict[str, object] = field(default_factory=dict)
    decisions: dict[str, object] = field(default_factory=dict)
    orders: dict[str, object] = field(default_factory=dict)
    fills: dict[str, object] = field(default_factory=dict)
    events: dict[str, object] = field(default_factory=dict)
    prices: np.ndarray | None = None      # (n_cycles, n_symbols) closes each cycle was sized with
    account: str | None = None            # the run's account key (SPEC §17)
    cycle_times: np.ndarray | None = None  # datetime64[ns] of each cycle row
    # each fill's order's leg, as a code of the orders' ``leg`` column (-1: no such order in the run),
    # which the run's artifacts show without looking the orders up by client id
    fill_legs: np.ndarray | None = None

    @staticmethod
    def build(run_id: str, cycles: list[tuple], decisions: list[tuple[int, tuple[RiskDecision, ...]]],
              reports: list[tuple[int, ExecutionReport]], updates: list[ExecutionReport],
              cancels: list[tuple[str, np.datetime64, str]], account: str | None = None) -> RunTables:
        t = RunTables()
        t.account = account
        upd = now_iso()
        t._cycles(run_id, cycles)
        t._decisions(run_id, decisions)
        index = t._orders(run_id, reports, updates, upd)
        t._updates(run_id, updates, index, upd)
        t._cancels(run_id, cancels, upd)
        return t

    def add_cycle(self, run_id: str, seq: int, batch_id: str, time: np.datetime64, status: str, equity: float,
                  prices: np.ndarray) -> None:
        """Append one cycle row (the final mark a backtest records after its last batch)."""
        c = self.cycles
        for k, v in (("run_id", run_id), ("seq", seq), ("batch_id", batch_id), ("status", status),
                     ("equity", equity)):
            c[k] = column_of(c, k, list) + [v]
        c["time"] = IsoTimes(np.append(column_of(c, "time", IsoTimes).times, np.datetime64(time, "us")))
        row = np.asarray(prices, np.float64)[None, :]
        self.prices = row if self.prices is None or not len(self.prices) else np.vstack([self.prices, row])
        c["prices"] = PackedPrices(self.prices)
        t_ns = np.datetime64(time, "ns")
        self.cycle_times = np.array([t_ns]) if self.cycle_times is None else np.append(self.cycle_times, t_ns)

    def write(self, ledger: Ledger) -> None:
        """Insert every table's rows (the caller holds the transaction)."""
        ledger.write_columns("cycles", self.cycles)
        ledger.write_columns("decisions", self.decisions)
        ledger.write_columns("orders", self.orders)
        ledger.write_columns("fills", self.fills)
        ledger.write_columns("order_events", self.events)

    # ------------------------------------------------------------------ tables
    def _cycles(self, rid: str, cycles: list[tuple]) -> None:
        n = len(cycles)
        times = np.array([c[2] for c in cycles], dtype="datetime64[ns]")
        self.cycle_times = times
        self.prices = (np.vstack([np.asarray(c[3], np.float64) for c in cycles]) if n else np.zeros((0, 0)))
        self.cycles = {"run_id": _repeat(rid, n), "seq": [c[0] for c in cycles], "batch_id": [c[1] for c in cycles],
                       "time": IsoTimes(times), "status": [c[5] if len(c) > 5 else "done" for c in cycles],
                       "equity": [c[4] for c in cycles], "prices": PackedPrices(self.prices)}

    def _decisions(self, rid: str, decisions: list[tuple[int, tuple[RiskDecision, ...]]]) -> None:
        """Decision rows in record order; blocks of a ``Decisions`` sequence go in as columns."""
        from framework.decisions import DecisionBlock, Decisions

        cols: dict[str, list] = {k: [] for k in ("cycle_seq", "symbol", "rule", "action")}
        reasons = _Texts()
        nums: dict[str, list] = {k: [] for k in ("time", "requested", "approved")}
        single: list[RiskDecision] = []
        single_seq: list[int] = []

        def add_single() -> None:
            if not single:
                return
            cols["cycle_seq"].extend(single_seq)
            cols["symbol"].extend([d.symbol for d in single])
            cols["rule"].extend([d.rule for d in single])
            cols["action"].extend([d.action for d in single])
            reasons.extend([d.reason for d in single])
            nums["time"].append(np.array([d.time for d in single], dtype="datetime64[ns]"))
            for k in ("requested", "approved"):
                nums[k].append(np.array([np.nan if getattr(d, k) is None else getattr(d, k) for d in single],
                                        np.float64))
            single.clear()
            single_seq.clear()

        for seq, group in decisions:
            parts = group.parts if isinstance(group, Decisions) else group
            for p in parts:
                if not isinstance(p, DecisionBlock):
                    single.append(p)
                    single_seq.append(seq)
                    continue
                add_single()
                n = len(p)
                cols["cycle_seq"].extend(_repeat(seq, n))
                cols["symbol"].extend(p.symbols)
                cols["rule"].extend(_repeat(p.rule, n))
                cols["action"].extend(_repeat(p.action, n))
                reasons.extend(p.reasons())
                nums["time"].append(np.full(n, p.time, dtype="datetime64[ns]"))
                nums["requested"].append(np.asarray(p.requested, np.float64))
                nums["approved"].append(np.asarray(p.approved, np.float64))
        add_single()
        n = len(cols["cycle_seq"])
        cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in nums.items()}
        self.decisions = {
            "run_id": _repeat(rid, n), "cycle_seq": cols["cycle_seq"],
            "time": IsoTimes(cat["time"].astype("datetime64[ns]")), "symbol": cols["symbol"], "rule": cols["rule"],
            "action": cols["action"], "requested": cat["requested"].astype(np.float64),
            "approved": cat["approved"].astype(np.float64), "reason": reasons.series()}

    def _orders(self, rid: str, reports: list, updates: list[ExecutionReport], upd: str) -> dict:
        """Orders as the reports left them, and every fill: the reports' in report order, then the
        updates' (the ledger's row order). Each report is released once read (``reports[k] = None``):
        its arrays are not held twice. Returns {(batch id, leg): [(first row, symbol_idx)]}.

        Built as whole columns: per report only its arrays (and, for a column of one value per
        report, that value and a count) are kept; they are joined once at the end. The client ids
        are made for all the orders at once (``framework.client_ids``) as an Arrow-backed pandas
        ``str`` Series, and the fills' are picked from them by position (the same buffers when the
        fills are the orders' in order, as a backtest's usually are)."""
        import pyarrow as pa

        index: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
        books = {k: Book() for k in ("broker_id", "symbol", "type", "leg", "message")}
        fbooks = {k: Book() for k in ("broker_order_id", "trade_id", "symbol")}
        ids = ClientIds()                  # every report's order ids, in report order
        n_ids = 0
        partial: list[tuple[int, np.ndarray]] = []   # (start in ids_all, orders kept) of reports seen twice
        fill_at: list[np.ndarray] = []     # each report's fills: their orders' positions in ids_all
        fill_legs: list[np.ndarray] = []
        nums: dict[str, list] = {k: [] for k in ("qty", "limit_price", "ref_price", "status", "filled_qty",
                                                 "avg_price", "side", "broker_id", "symbol", "message")}
        per: dict[str, list] = {k: [] for k in ("n", "cycle_seq", "time", "type", "leg")}   # one value a report
        fnums: dict[str, list] = {k: [] for k in ("time", "qty", "price", "fee", "slippage", "side",
                                                  "broker_order_id", "trade_id", "symbol")}
        row = 0
        for k in range(len(reports)):
            seq, r = reports[k]
            reports[k] = None
            b = r.batch
            n = len(b)
            start = n_ids
            ids.add(b)
            n_ids += n
            if len(r.fills):
                fill_columns(r, fbooks, fnums)
                fill_at.append(r.fills.order_pos.astype(np.int64) + start)
                fill_legs.append(np.full(len(r.fills), books["leg"].code(b.leg), np.int32))
            key = (b.batch_id, b.leg)
            keep = None
            if key in index:   # the same client order ids again: the ledger keeps the first row
                seen = np.concatenate([s for _, s in index[key]])
                keep = ~np.isin(b.symbol_idx, seen)
                partial.append((start, keep))
                if not keep.any():
                    continue
            sym = b.symbol_idx if keep is None else b.symbol_idx[keep]
            index.setdefault(key, []).append((row, sym))
            row += len(sym)
            arrays = {
                "qty": b.qty, "limit_price": b.limit_price if b.limit_price is not None else np.full(n, np.nan),
                "ref_price": b.ref_price, "status": r.status, "filled_qty": r.filled_qty, "avg_price": r.avg_price,
                "side": b.side > 0,
                "broker_id": books["broker_id"].codes(list(r.broker_ids)) if r.broker_ids else
                np.full(n, books["broker_id"].code(None), np.int32),
                "symbol": books["symbol"].universe(b.universe.symbols)[b.symbol_idx],
                "message": message_codes(books["message"], r.messages, n)}
            if keep is not None:
                arrays = {name: np.asarray(v)[keep] for name, v in arrays.items()}
            for name, a in arrays.items():
                nums[name].append(np.asarray(a))
            for name, v in (("n", len(sym)), ("cycle_seq", seq), ("time", b.time),
                            ("type", books["type"].code(str(b.order_type))), ("leg", books["leg"].code(b.leg))):
                per[name].append(v)
        ids_all = ids.array()
        del ids
        if partial:
            kept = np.ones(n_ids, np.bool_)
            for start, keep in partial:
                kept[start:start + len(keep)] = keep
            cids = ids_all.filter(pa.array(kept))
        else:
            cids = ids_all
        fcids = picked(ids_all, np.concatenate(fill_at) if fill_at else np.zeros(0, np.int64))
        del ids_all
        more: list[str] = []               # the ids of the updates' fills (a live run's, a few)
        for r in updates:
            if len(r.fills):
                fill_columns(r, fbooks, fnums)
                upd_ids = r.batch.client_order_ids()
                more.extend(map(upd_ids.__getitem__, r.fills.order_pos.tolist()))
                known = np.asarray(rows_of(index, r.batch.batch_id, r.batch.leg, r.batch.symbol_idx))[r.fills.order_pos] >= 0
                fill_legs.append(np.where(known, books["leg"].index.get(r.batch.leg, -1), -1).astype(np.int32))
        counts = np.asarray(per["n"], np.int64)

        def repeat(name: str, dtype) -> np.ndarray:
            return np.repeat(np.asarray(per[name], dtype), counts)

        if more:
            fcids = pa.chunked_array([*fcids.chunks, pa.array(more, pa.large_string())], pa.large_string())
        n = len(cids)
        # each column joined in turn, its parts let go as it is (no second copy of every column)
        cat = Joiner(nums)
        self.orders = {
            "run_id": Coded.constant(rid, n), "cycle_seq": repeat("cycle_seq", np.int64),
            "client_order_id": cids.to_pandas(), "broker_id": books["broker_id"].column(cat("broker_id", np.int32)),
            "time": IsoTimes(repeat("time", "datetime64[ns]")),
            "symbol": books["symbol"].column(cat("symbol", np.int32)),
            "side": Coded(cat("side", np.int8), list(_SIDES)), "qty": cat("qty", np.float64),
            "type": books["type"].column(repeat("type", np.int32)), "limit_price": cat("limit_price", np.float64),
            "leg": books["leg"].column(repeat("leg", np.int32)), "ref_price": cat("ref_price", np.float64),
            "status": Coded(cat("status", np.int8), list(_LABELS)),
            "filled_qty": cat("filled_qty", np.float64), "avg_price": cat("avg_price", np.float64),
            "message": books["message"].column(cat("message", np.int32)), "updated_at": Coded.constant(upd, n),
            "account": Coded.constant(self.account, n)}
        fcat = Joiner(fnums)
        m = len(fcids)
        self.fills = {"run_id": Coded.constant(rid, m), "client_order_id": fcids.to_pandas(),
                      **{name: fbooks[name].column(fcat(name, np.int32)) for name in ("broker_order_id", "trade_id")},
                      "time": IsoTimes(fcat("time", "datetime64[ns]")),
                      "symbol": fbooks["symbol"].column(fcat("symbol", np.int32)),
                      "side": Coded(fcat("side", np.int8), list(_SIDES)),
                      **{name: fcat(name, np.float64) for name in ("qty", "price", "fee", "slippage")},
                      "account": Coded.constant(self.account, m)}
        self.fill_legs = np.concatenate(fill_legs) if fill_legs else np.zeros(0, np.int32)
        self._dedupe_trades()
        return index

    def _dedupe_trades(self) -> None:
        """A venue trade id is booked once per run (the ledger's unique index): keep the first."""
        tids = self.fills["trade_id"]
        assert isinstance(tids, Coded)
        if all(v is None for v in tids.values):
            return
        seen: set = set()
        keep = []
        for i, t in enumerate(tids.rows()):
            if t is None or t not in seen:
                keep.append(i)
                if t is not None:
                    seen.add(t)
        if len(keep) < len(tids):
            self.fills = take_rows(self.fills, keep)
            if self.fill_legs is not None:
                self.fill_legs = self.fill_legs[keep]

    def _updates(self, rid: str, updates: list[ExecutionReport], index: dict, upd: str) -> None:
        """Broker updates: the order's new state (broker id and message kept when the update has
        none), one event row per order, in update order."""
        ev: dict[str, list] = {k: [] for k in ("client_order_id", "time", "status", "filled_qty", "message")}
        o = self.orders
        status, bids, msgs = (column_of(o, k, Coded) for k in ("status", "broker_id", "message"))
        filled, avg = (column_of(o, k, np.ndarray) for k in ("filled_qty", "avg_price"))
        for r in updates:
            b = r.batch
            n = len(b)
            rows = np.asarray(rows_of(index, b.batch_id, b.leg, b.symbol_idx), np.int64)
            hit = np.flatnonzero(rows >= 0)
            at = rows[hit]
            status.codes[at] = r.status[hit]
            filled[at] = r.filled_qty[hit]
            avg[at] = r.avg_price[hit]
            for i in hit.tolist():
                if r.broker_ids and r.broker_ids[i] is not None:
                    set_value(bids, int(rows[i]), r.broker_ids[i])
                if r.messages.get(i) is not None:
                    set_value(msgs, int(rows[i]), r.messages[i])
            ev["client_order_id"].extend(b.client_order_ids())
            ev["time"].extend(IsoTimes(r.status_times).strings() if r.status_times is not None else _repeat(upd, n))
            ev["status"].extend(_LABELS[r.status.astype(np.intp)].tolist())
            ev["filled_qty"].extend(np.asarray(r.filled_qty, np.float64).tolist())
            ev["message"].extend([r.messages.get(i) for i in range(n)] if r.messages else _repeat(None, n))
        self.events = {"run_id": _repeat(rid, len(ev["client_order_id"])), **ev}

    def _cancels(self, rid: str, cancels: list[tuple[str, np.datetime64, str]], upd: str) -> None:
        """End-of-run and next-batch cancels: status, reason, and the quantity the fills booked."""
        if not cancels:
            return
        import pandas as pd

        o, f, ev = self.orders, self.fills, self.events
        status, filled = column_of(o, "status", Coded), column_of(o, "filled_qty", np.ndarray)
        ev_run, ev_cid, ev_time, ev_status, ev_qty, ev_msg = (
            column_of(ev, k, list) for k in ("run_id", "client_order_id", "time", "status", "filled_qty", "message"))
        want = list({c: None for c, _, _ in cancels})
        # the rows of the cancelled ids, found by a hash lookup in C (a million ids, a few cancels)
        order_cids = column_of(o, "client_order_id", pd.Series)
        rows: dict[str, list[int]] = {}
        for j in np.flatnonzero(order_cids.isin(want).to_numpy()).tolist():
            rows.setdefault(order_cids.iloc[j], []).append(j)
        fill_cids = column_of(f, "client_order_id", pd.Series)
        qty = column_of(f, "qty", np.ndarray)
        booked: dict[str, float] = {}
        for j in np.flatnonzero(fill_cids.isin(want).to_numpy()).tolist():
            c = fill_cids.iloc[j]
            booked[c] = booked.get(c, 0.0) + float(qty[j])       # SQLite's SUM: in row order
        canceled = int(OrderStatus.CANCELED)
        for c, t, reason in cancels:
            for j in rows.get(c, ()):
                status.codes[j] = canceled
                set_value(o["message"], j, reason)
                filled[j] = booked.get(c, 0.0)
            ev_run.append(rid)
            ev_cid.append(c)
            ev_time.append(IsoTimes(np.array([t])).strings()[0])
            ev_status.append("canceled")
            ev_qty.append(None)
            ev_msg.append(reason)
