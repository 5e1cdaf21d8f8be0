"""The nightly sync: the ledger brought up to date with a broker (working orders and their fills), and
the broker's positions checked against what the ledger's fills add up to.

The broker is handed in by the CLI: any Broker with ``lookup`` and ``instruments``; live adapters
also give fills through ``_fills``, the primitive their execute loop uses, which books only what
the ledger does not hold yet. Only what changed is written — order state, one event, new fills —
so a second sync of the same state writes nothing.
"""

from __future__ import annotations

import numpy as np

OPEN = ("planned", "new", "partially_filled")


def _stale_orders(ledger, runs: list[str]) -> list[dict]:
    q = ",".join("?" * len(runs))
    cur = ledger.db.execute(
        "SELECT o.*, c.batch_id FROM orders o LEFT JOIN cycles c ON c.run_id=o.run_id AND c.seq=o.cycle_seq "
        f"WHERE o.run_id IN ({q}) AND o.status IN ({','.join('?' * len(OPEN))}) ORDER BY o.rowid",
        (*runs, *OPEN))
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _order_batch(broker, o: dict):
    """The one-order OrderBatch the ledger row was sent as (its client order id must come out the same)."""
    from framework.types import OrderBatch

    universe = broker.instruments([o["symbol"]])
    t = np.datetime64(o["time"].rstrip("Z"), "ns")
    side = np.array([1 if o["side"] == "buy" else -1], np.int8)
    ref = np.array([np.nan if o["ref_price"] is None else float(o["ref_price"])])
    batch = OrderBatch(universe, t, o["batch_id"] or "", o["leg"] or "", np.array([0]), side,
                       np.array([float(o["qty"])]), ref)
    return batch if batch.client_order_ids()[0] == o["client_order_id"] else None


def sync_orders(ledger, broker, mode: str, strategy: str) -> list[str]:
    """Update the working orders of ``strategy`` at ``broker`` from the venue; return one note per change."""
    from framework.journal import WriteAheadJournal
    from framework.ledger import now_iso
    from framework.ops.track import ledger_runs
    from framework.types import ExecutionReport, FillBatch, OrderStatus

    runs = [r["run_id"] for r in ledger_runs(ledger, strategy=strategy, modes=(mode,), broker=broker.name)]
    stale = _stale_orders(ledger, runs) if runs else []
    if not stale:
        return []
    found = broker.lookup([o["client_order_id"] for o in stale])
    notes = []
    for o in stale:
        cid, st = o["client_order_id"], found.get(o["client_order_id"])
        if st is None:
            if o["status"] == "planned":
                with ledger.tx():
                    ledger.db.execute("UPDATE orders SET status='canceled', message=?, updated_at=? WHERE "
                                      "run_id=? AND client_order_id=?",
                                      ("never reached the venue (found by the nightly sync)", now_iso(),
                                       o["run_id"], cid))
                notes.append(f"{cid}: never reached {broker.name}; closed")
            continue
        label = OrderStatus(st.status).label
        if label == o["status"] and abs(st.filled_qty - (o["filled_qty"] or 0)) <= 1e-12:
            continue
        batch = _order_batch(broker, o)
        if batch is None:
            notes.append(f"{cid}: cannot rebuild the order from the ledger; {broker.name} says {label}, "
                         "not synced")
            continue
        fills = broker._fills(batch, [st]) if hasattr(broker, "_fills") else FillBatch.empty()
        avg = np.array([np.nan if st.avg_price is None else st.avg_price])
        rep = ExecutionReport(batch, np.array([st.status], np.int8), np.array([st.filled_qty]), avg, fills,
                              (st.broker_id,), {0: st.message} if st.message else {})
        WriteAheadJournal(ledger, o["run_id"]).updates([rep])
        notes.append(f"{cid}: {o['status']} -> {label}, filled {st.filled_qty:g}, {len(fills)} new fill(s)")
    return notes


def position_differences(ledger, broker_name: str, mode: str, positions, rel: float = 0.005) -> list[str]:
    """Symbols where the broker's position and the ledger's fills (every run at this broker and mode)
    disagree by more than ``rel`` of the position (a venue's fee taken in the coin stays inside)."""
    held = {p.symbol: float(p.qty) for p in positions}
    booked = ledger.ledger_positions(broker_name, mode)
    out = []
    for sym in sorted(set(held) | set(booked)):
        a, b = held.get(sym, 0.0), booked.get(sym, 0.0)
        if abs(a - b) > max(1e-9, rel * max(abs(a), abs(b))):
            out.append(f"position {sym}: {broker_name} holds {a:g}, the ledger's fills add up to {b:g}")
    return out
