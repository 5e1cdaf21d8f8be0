"""Protective exits at a live venue (SPEC §20): what ``LiveBroker.protect`` does.

The engine (``framework.exits``) hands over a ``Protection``: per symbol a stop and/or a take-profit
for the held quantity, with deterministic client order ids, already journaled as intents. Here
they are placed the way the execute loop places any order — idempotently: the venue is asked
first which of those client order ids it knows (a restart after a crash finds them and sends
nothing), a duplicate-id answer means "look it up", a transient failure is looked up before it is
reported unconfirmed. They are not waited for: protective orders rest until a level is reached;
their fills come back through ``sync()`` (the same process) or the next command's reconcile.

A venue adapter decides how one symbol's pair is sent (``LiveBroker._submit_protective``): by
default as two separate orders; Alpaca sends one OCO order for equities and a stop-limit for
crypto, Coinbase one ``trigger_bracket_gtc`` order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from brokers.live import OPEN, OrderRequest
from framework.broker import OnUpdate, OrderState, Protection
from framework.errors import OrderRejected, TransientBrokerError
from framework.types import ExecutionReport, OrderBatch, OrderStatus

if TYPE_CHECKING:
    from brokers.live import LiveBroker


def request(batch: OrderBatch, i: int, cid: str) -> OrderRequest:
    """The live loop's request for protective order ``i`` of ``batch`` (a stop or a limit)."""
    return OrderRequest(cid, batch.universe.symbols[int(batch.symbol_idx[i])], int(batch.side[i]), float(batch.qty[i]),
                        str(batch.order_type),
                        None if batch.limit_price is None else float(batch.limit_price[i]),
                        stop_price=None if batch.stop_price is None else float(batch.stop_price[i]))


def place(broker: LiveBroker, orders: Protection, on_update: OnUpdate | None) -> list[ExecutionReport]:
    stops, takes = orders.stops, orders.takes
    s_ids, t_ids = stops.client_order_ids(), takes.client_order_ids()
    if not s_ids and not t_ids:
        return []
    broker._streaming()
    since = (stops if len(stops) else takes).time - np.timedelta64(2, "D")
    known: dict[str, OrderState] = broker.call(lambda: broker._find(s_ids + t_ids, since))
    states: dict[str, OrderState | None] = {}
    messages: dict[str, str] = {}
    by_sym: dict[str, list] = {}
    for b, ids, k in ((stops, s_ids, 0), (takes, t_ids, 1)):
        for i, cid in enumerate(ids):
            by_sym.setdefault(b.universe.symbols[int(b.symbol_idx[i])], [None, None])[k] = (b, i, cid)
    for pair in by_sym.values():
        reqs: list[OrderRequest | None] = [None, None]
        for k, item in enumerate(pair):
            if item is None:
                continue
            b, i, cid = item
            if cid in known:
                states[cid] = known[cid]
                messages[cid] = "already at the venue (same client order id): not sent again"
            else:
                reqs[k] = request(b, i, cid)
        if reqs[0] is None and reqs[1] is None:
            continue
        got = _send_pair(broker, reqs[0], reqs[1], messages)
        for req, st in zip(reqs, got, strict=True):
            if req is not None:
                states[req.client_order_id] = st
    reports = []
    for b, ids in ((stops, s_ids), (takes, t_ids)):
        if not ids:
            continue
        sts = [states.get(c) for c in ids]
        msgs = {i: messages[c] for i, c in enumerate(ids) if c in messages}
        for i, st in enumerate(sts):
            if st is not None and st.status in OPEN:
                broker._working[st.client_order_id] = (b, i, st)
        rep = broker._report(b, sts, msgs)
        if on_update is not None:
            on_update(rep)
        reports.append(rep)
    return reports


def _send_pair(broker: LiveBroker, stop: OrderRequest | None, take: OrderRequest | None,
               messages: dict[str, str]) -> tuple[OrderState | None, OrderState | None]:
    reqs = [r for r in (stop, take) if r is not None]
    try:
        return broker.call(lambda: broker._submit_protective(stop, take))
    except OrderRejected as e:
        out: list[OrderState | None] = []
        for r in (stop, take):
            if r is None:
                out.append(None)
                continue
            messages[r.client_order_id] = f"rejected: {e}"
            out.append(OrderState(r.client_order_id, None, r.symbol, r.side, r.qty, 0.0, None,
                                  int(OrderStatus.REJECTED), r.order_type, str(e)))
        return out[0], out[1]
    except TransientBrokerError as e:
        try:
            found = broker.call(lambda: broker._find([r.client_order_id for r in reqs], np.datetime64("1970-01-01")))
        except TransientBrokerError:
            found = {}
        for r in reqs:
            if r.client_order_id not in found:
                messages[r.client_order_id] = (f"not confirmed after {broker.retry.attempts} tries ({e}); the next "
                                               "run looks the order up by its client order id before sending")
        return (None if stop is None else found.get(stop.client_order_id),
                None if take is None else found.get(take.client_order_id))


def not_placed(req: OrderRequest, why: str) -> OrderState:
    """A protective order the venue cannot hold next to its sibling (e.g. Alpaca crypto: no OCO)."""
    return OrderState(req.client_order_id, None, req.symbol, req.side, req.qty, 0.0, None, int(OrderStatus.CANCELED),
                      req.order_type, f"not placed: {why}")
