"""Recovery: the ledger brought up to date with a broker before anything is sent (SPEC §11, §17).

Used by every command that touches a broker (``execute``, ``close``, ``status``) and by the nightly
report, through the session (``framework.session``). Works with any Broker through the port
(``lookup``, ``positions``, ``instruments``) and, for fill recovery, the live adapters' ``resume``;
a routed broker is settled venue by venue. Every read is scoped to one account, and every state and
fill found goes to the ledger through the journal, the one bookkeeper.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from framework.accounts import Account
from framework.ledger import Ledger, OrderRecord
from framework.order_ids import PROTECTIVE_LEGS, Leg, leg_of
from framework.types import OrderBatch, OrderStatus

_NEVER_SENT = "never reached the venue (found at reconcile)"


def reconcile(ledger: Ledger, broker, account: Account, journal, echo: Callable[[str], None] = print,
              resume_batch: str | None = None, check_positions: bool = True) -> list[str]:
    """Bring ``account``'s orders in the ledger up to date with the broker; report what differed.

    Every order the ledger still holds as working (an intent without a final answer, or an order
    still working), and every finished order whose fills the ledger lacks, is looked up at the
    broker by its client order id:

    * not at the venue: an intent that never reached it is closed ("never reached the venue"); a
      re-run of its batch sends it — same client order id — exactly once;
    * at the venue: its state and the venue's fills are handed to the journal, which books what
      it lacks (what happened while no process was watching, e.g. after a crash) in the run that
      sent the order. Orders of ``resume_batch`` (the batch being re-run) that are still working are
      first polled until done or the order timeout, so an interrupted cycle resumes where it
      stopped instead of having its own orders cancelled as leftovers and re-planned.

    Positions that differ between the account's booked fills and the broker are reported; the plan
    always starts from the broker's positions and open orders, which is how differences are folded in.
    """
    notes: list[str] = []
    stale = {o.client_order_id: o for o in ledger.open_orders(account.key)}
    for o in ledger.orders_missing_fills(account.key):
        stale.setdefault(o.client_order_id, o)
    if stale:
        found = broker.lookup(list(stale))
        at_venue: list[tuple[OrderRecord, object]] = []
        never = []
        for cid, o in stale.items():
            st = found.get(cid)
            if st is None:
                if o.status == OrderStatus.PLANNED.label:
                    never.append(cid)
                    notes.append(f"order {cid} was recorded but never reached {broker.name}: closed "
                                 "(a re-run of its batch sends it)")
                continue
            at_venue.append((o, st))
        if never:
            ledger.cancel_orders(None, never, _NEVER_SENT, account=account.key)
        if at_venue:
            notes += _settle_found(ledger, broker, journal, at_venue, resume_batch)
    if check_positions:
        try:
            notes += position_differences(ledger, account, broker.name, broker.positions())
        except Exception:  # noqa: BLE001 - a report, never a reason to stop
            pass
    for n in notes:
        echo(f"reconcile: {n}")
    return notes


def venues_of(broker) -> list:
    """The venue adapters behind ``broker`` (the sub-brokers of a routed one, else itself)."""
    subs = getattr(broker, "brokers", None)
    return list(subs.values()) if isinstance(subs, dict) else [broker]


def _owner(broker, symbol: str):
    subs = getattr(broker, "brokers", None)
    if isinstance(subs, dict) and callable(getattr(broker, "route", None)):
        return subs.get(broker.route(symbol), broker)
    return broker


def _settle_found(ledger: Ledger, broker, journal, found: list[tuple[OrderRecord, object]],
                  resume_batch: str | None) -> list[str]:
    notes: list[str] = []
    groups: dict[int, tuple[object, list]] = {}
    for o, st in found:
        venue = _owner(broker, o.symbol)
        groups.setdefault(id(venue), (venue, []))[1].append((o, st))
    for venue, part in groups.values():
        notes += _settle_at(ledger, venue, journal, part, resume_batch)
    return notes


def _settle_at(ledger: Ledger, venue, journal, found: list[tuple[OrderRecord, object]],
               resume_batch: str | None) -> list[str]:
    from framework.errors import DataError

    resume = getattr(venue, "resume", None)
    universe = None
    if resume is not None:
        try:
            universe = venue.instruments(sorted({o.symbol for o, _ in found}))
        except DataError:
            resume = None
    if resume is None or universe is None:   # an adapter without fill recovery: states only
        return [_state_note(o, st, venue.name) for o, st in found if _changed(o, st)]
    rows = [o for o, _ in found]
    states = [st for _, st in found]
    n = len(rows)
    # one batch per reconcile; each order keeps its own client order id (the report carries them)
    batch = _recovered_batch(universe, rows)
    # protective exits (SPEC §20) rest until a level is reached: found, never waited for
    wait = [i for i in range(n) if resume_batch is not None and OrderStatus(states[i].status).is_open  # type: ignore[attr-defined]
            and leg_of(rows[i].client_order_id) not in PROTECTIVE_LEGS
            and ledger.batch_of_cycle(rows[i].run_id, rows[i].cycle_seq) == resume_batch]
    notes: list[str] = []
    if wait:
        notes.append(f"resuming batch {resume_batch}: waiting for {len(wait)} order(s) it left working")
        sub = batch.subset(np.isin(np.arange(n), wait))
        rep = resume(sub, [states[i] for i in wait], venue.order_timeout_s)
        for j, i in enumerate(wait):
            states[i] = _state_from_report(states[i], rep, j)
    rep = resume(batch, states, 0.0)
    before = journal.n_fills
    journal.update(rep)
    booked = journal.n_fills - before
    for o, st in zip(rows, states):
        if _changed(o, st):
            notes.append(_state_note(o, st, venue.name))
    if booked:
        notes.append(f"booked {booked} fill(s) the ledger lacked")
    return notes


def _recovered_batch(universe, rows: list[OrderRecord]) -> OrderBatch:
    """Orders found at the venue as one OrderBatch that keeps each order's recorded client order id."""
    return OrderBatch(universe, np.datetime64(time.time_ns(), "ns"), "reconcile", Leg.RECONCILE.value,
                      np.array([universe.index[o.symbol] for o in rows], np.int64),
                      np.array([o.side_sign for o in rows], np.int8),
                      np.array([float(o.qty) for o in rows]),
                      np.array([float(o.ref_price or np.nan) for o in rows]),
                      client_ids=tuple(o.client_order_id for o in rows))


def _changed(o: OrderRecord, st) -> bool:
    return OrderStatus(st.status).label != o.status or abs(st.filled_qty - (o.filled_qty or 0)) > 1e-12


def _state_from_report(st, rep, j: int):
    from dataclasses import replace

    avg = rep.avg_price[j]
    return replace(st, status=int(rep.status[j]), filled_qty=float(rep.filled_qty[j]),
                   avg_price=None if np.isnan(avg) else float(avg))


def _state_note(o: OrderRecord, st, venue: str) -> str:
    return (f"order {o.client_order_id}: ledger said {o.status}, {venue} says "
            f"{OrderStatus(st.status).label} (filled {st.filled_qty:g})")


def position_differences(ledger: Ledger, account: Account, broker_name: str, positions,
                         rel: float = 0.0) -> list[str]:
    """Symbols where the broker's position and what the account's booked fills add up to disagree
    by more than ``rel`` of the position. Informative: plans always start from the broker's positions."""
    held = {p.symbol: float(p.qty) for p in positions}
    booked = ledger.positions(account.key)
    out = []
    for sym in sorted(set(held) | set(booked)):
        a, b = held.get(sym, 0.0), booked.get(sym, 0.0)
        if abs(a - b) > max(1e-9 * max(1.0, abs(a)), rel * max(abs(a), abs(b))):
            out.append(f"position {sym}: {broker_name} holds {a:g}, the ledger's fills add up to {b:g}")
    return out
