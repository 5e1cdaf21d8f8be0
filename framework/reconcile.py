"""Reconciliation: the ledger brought up to date with a broker before anything is sent.

Used by every command that touches a broker (``execute``, ``close``, ``status``) and by the nightly
report. Works with any Broker through the port (``lookup``, ``positions``, ``instruments``) and,
for fill recovery, the live adapters' ``resume``; a routed broker is settled venue by venue.
"""

from __future__ import annotations

import time

import numpy as np


def reconcile(ledger, broker, mode: str, echo=print, resume_batch: str | None = None,
              check_positions: bool = True) -> list[str]:
    """Bring the ledger up to date with the broker before anything is sent; report what differed.

    Every order the ledger still holds as working (an intent without a final answer, or an order
    still working) is looked up at the broker by its client order id:

    * not at the venue: an intent that never reached it is closed ("never reached the venue"); a
      re-run of its batch sends it — same client order id — exactly once;
    * at the venue: its state and every fill the ledger lacks (what happened while no process was
      watching, e.g. after a crash) are committed to the row of the run that sent it. Orders of
      ``resume_batch`` (the batch being re-run) that are still working are first polled until done
      or the order timeout, so an interrupted cycle resumes where it stopped instead of having its
      own orders cancelled as leftovers and re-planned.

    Positions that differ between the ledger's fills and the broker are reported; the plan always
    starts from the broker's positions and open orders, which is how differences are folded in.
    """
    from framework.ledger import now_iso

    notes = []
    stale = ledger.open_orders(broker.name, mode)
    if stale:
        found = broker.lookup([o["client_order_id"] for o in stale])
        at_venue = []
        for o in stale:
            st = found.get(o["client_order_id"])
            if st is None:
                if o["status"] == "planned":
                    with ledger.tx():
                        upd = now_iso()
                        ledger.db.execute("UPDATE orders SET status='canceled', message=?, updated_at=? WHERE run_id=? "
                                          "AND client_order_id=?", ("never reached the venue (found at reconcile)", upd,
                                                                    o["run_id"], o["client_order_id"]))
                        ledger.write_events([(o["run_id"], o["client_order_id"], upd, "canceled", 0.0,
                                              "never reached the venue (found at reconcile)")])
                    notes.append(f"order {o['client_order_id']} was recorded but never reached {broker.name}: closed "
                                 "(a re-run of its batch sends it)")
                continue
            at_venue.append((o, st))
        if at_venue:
            notes += _settle_found(ledger, broker, at_venue, resume_batch)
    if check_positions:
        try:
            notes += position_differences(ledger, broker.name, mode, broker.positions())
        except Exception:  # noqa: BLE001 - a report, never a reason to stop
            pass
    for n in notes:
        echo(f"reconcile: {n}")
    return notes


def _batch_of(ledger, run_id: str, seq) -> str | None:
    if seq is None:
        return None
    row = ledger.db.execute("SELECT batch_id FROM cycles WHERE run_id=? AND seq=?", (run_id, seq)).fetchone()
    return row[0] if row else None


def _venues_of(broker) -> list:
    """The venue adapters behind ``broker`` (the sub-brokers of a routed one, else itself)."""
    subs = getattr(broker, "brokers", None)
    return list(subs.values()) if isinstance(subs, dict) else [broker]


def _owner(broker, symbol: str):
    subs = getattr(broker, "brokers", None)
    if isinstance(subs, dict) and callable(getattr(broker, "route", None)):
        return subs.get(broker.route(symbol), broker)
    return broker


def _settle_found(ledger, broker, found: list[tuple[dict, object]], resume_batch: str | None) -> list[str]:
    """Commit the broker's state and the missing fills of ledger orders found at the venue."""
    notes: list[str] = []
    groups: dict[int, tuple[object, list]] = {}
    for o, st in found:
        venue = _owner(broker, o["symbol"])
        groups.setdefault(id(venue), (venue, []))[1].append((o, st))
    for venue, part in groups.values():
        notes += _settle_at(ledger, venue, part, resume_batch)
    return notes


def _settle_at(ledger, venue, found: list[tuple[dict, object]], resume_batch: str | None) -> list[str]:
    from framework.errors import DataError
    from framework.ledger import iso
    from framework.types import OrderBatch, OrderStatus

    notes: list[str] = []
    resume = getattr(venue, "resume", None)
    if resume is not None:
        try:
            universe = venue.instruments(sorted({o["symbol"] for o, _ in found}))
        except DataError:
            resume = None
    # one row per venue order books its fills: the latest run's (run ids start with their time)
    latest: dict[str, tuple[dict, object]] = {}
    for o, st in found:
        if o["client_order_id"] not in latest or o["run_id"] > latest[o["client_order_id"]][0]["run_id"]:
            latest[o["client_order_id"]] = (o, st)
    primary = list(latest.values())
    if resume is None:   # an adapter without fill recovery: state only
        primary = []
    keep = {id(o) for o, _ in primary}
    for o, st in found:
        if id(o) not in keep:
            _write_state(ledger, o, st, None, [])
            notes.append(_state_note(o, st, venue.name))
    if not primary:
        return notes
    rows = [o for o, _ in primary]
    states = [st for _, st in primary]
    n = len(rows)
    batch = OrderBatch(universe, np.datetime64(time.time_ns(), "ns"), "reconcile", "reconcile",  # type: ignore[arg-type]
                       np.array([universe.index[o["symbol"]] for o in rows], np.int64),
                       np.array([1 if o["side"] == "buy" else -1 for o in rows], np.int8),
                       np.array([float(o["qty"]) for o in rows]),
                       np.array([float(o["ref_price"] or np.nan) for o in rows]))
    wait = [i for i in range(n) if resume_batch is not None and OrderStatus(states[i].status).is_open
            and _batch_of(ledger, rows[i]["run_id"], rows[i]["cycle_seq"]) == resume_batch]
    if wait:
        notes.append(f"resuming batch {resume_batch}: waiting for {len(wait)} order(s) it left working")
        sub = batch.subset(np.isin(np.arange(n), wait))
        rep = resume(sub, [states[i] for i in wait], venue.order_timeout_s)
        for j, i in enumerate(wait):
            states[i] = _state_from_report(states[i], rep, j)
    rep = resume(batch, states, 0.0)
    f = rep.fills
    times = iso(f.time) if len(f) else []
    fills_by_order: dict[int, list[tuple]] = {}
    for k, pos in enumerate(f.order_pos.tolist()):
        o = rows[pos]
        fills_by_order.setdefault(pos, []).append(
            (o["run_id"], o["client_order_id"], states[pos].broker_id, f.trade_ids[k] if f.trade_ids else None,
             times[k], o["symbol"], o["side"], float(f.qty[k]), float(f.price[k]), float(f.fee[k]),
             float(f.slippage[k])))
    for i, (o, st) in enumerate(zip(rows, states)):
        new_fills = fills_by_order.get(i, [])
        changed = OrderStatus(st.status).label != o["status"] or abs(st.filled_qty - (o["filled_qty"] or 0)) > 1e-12
        if changed or new_fills:
            _write_state(ledger, o, st, rep.messages.get(i), new_fills)
            note = _state_note(o, st, venue.name)
            if new_fills:
                note += f"; booked {len(new_fills)} fill(s) of {sum(r[7] for r in new_fills):g} the ledger lacked"
            notes.append(note)
    return notes


def _state_from_report(st, rep, j: int):
    from dataclasses import replace

    avg = rep.avg_price[j]
    return replace(st, status=int(rep.status[j]), filled_qty=float(rep.filled_qty[j]),
                   avg_price=None if np.isnan(avg) else float(avg))


def _write_state(ledger, o: dict, st, message: str | None, fills: list[tuple]) -> None:
    from framework.ledger import now_iso
    from framework.types import OrderStatus

    label = OrderStatus(st.status).label
    upd = now_iso()
    with ledger.tx():
        ledger.update_orders([(label, st.filled_qty, st.avg_price, st.broker_id, message, upd, o["run_id"],
                               o["client_order_id"])])
        ledger.write_events([(o["run_id"], o["client_order_id"], upd, label, st.filled_qty,
                              "found at reconcile")])
        if fills:
            ledger.write_fills(fills)


def _state_note(o: dict, st, venue: str) -> str:
    from framework.types import OrderStatus

    return (f"order {o['client_order_id']}: ledger said {o['status']}, {venue} says "
            f"{OrderStatus(st.status).label} (filled {st.filled_qty:g})")


def position_differences(ledger, broker_name: str, mode: str, positions, rel: float = 0.0) -> list[str]:
    """Symbols where the broker's position and what the ledger's fills add up to (every run at this
    broker and mode) disagree by more than ``rel`` of the position (``rel`` leaves room for a
    venue's fee taken in the coin). Informative: plans always start from the broker's positions."""
    held = {p.symbol: float(p.qty) for p in positions}
    booked = ledger.ledger_positions(broker_name, mode)
    out = []
    for sym in sorted(set(held) | set(booked)):
        a, b = held.get(sym, 0.0), booked.get(sym, 0.0)
        if abs(a - b) > max(1e-9 * max(1.0, abs(a)), rel * max(abs(a), abs(b))):
            out.append(f"position {sym}: {broker_name} holds {a:g}, the ledger's fills add up to {b:g}")
    return out
