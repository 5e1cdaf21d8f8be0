"""Protective exits at Alpaca (SPEC §20): how ``AlpacaBroker`` places a position's stop-loss and
take-profit, and how it finds them again.

- Equities, both levels: one OCO order on the existing position — the take-profit limit is the
  order, the stop its one leg (alpaca-py ``OrderClass.OCO`` with ``TakeProfitRequest(limit_price)``
  and ``StopLossRequest(stop_price)``; the shape of the Alpaca blog "OCO & OTO Orders Are Now
  Available": ``type: limit, order_class: oco, take_profit: {limit_price}, stop_loss: {stop_price}``).
  Two separate sells of one position are refused (the second finds the quantity held by the
  first: "insufficient qty available"), so the pair has to be one complex order. A bracket would
  need the entry itself ("bracket orders must be entry orders", alpaca-trade-api-js#248): placing
  the exits on the filled position keeps one engine step for every venue.
- Equities, one level: a GTC stop (``StopOrderRequest``) or a GTC limit.
- Crypto: no complex orders (alpaca-py ``OrderClass``: "Crypto trading: simple"; a crypto order's
  ``stop_loss`` is silently dropped, alpaca-py#289) and the order types are market, limit and
  stop_limit (BROKER_API_NOTES §1.5): the stop is a GTC ``StopLimitOrderRequest`` whose limit sits
  ``CRYPTO_STOP_LIMIT_BPS`` through the trigger; a take-profit next to it is not placed (it would
  need the quantity the stop holds) and is reported so.

The OCO's leg gets a venue-generated client order id — Alpaca ignores ids sent for legs
(Alpaca-API#115) — so the leg is known here under its pair's id: ``paired_exit_id`` of the
parent's (our take-profit's) client order id. Listings ask for ``nested=true`` so the held stop
leg is seen with its parent (a held leg is not listed as open on its own, alpaca-trade-api-python#322).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from brokers.alpaca import wire
from brokers.alpaca.client import DuplicateClientOrderId, NotFound
from brokers.live import OrderRequest
from brokers.live_exits import not_placed
from framework.broker import OrderState
from framework.order_ids import PROTECTIVE_LEGS, leg_of, owned, paired_exit_id
from framework.symbols import is_crypto

if TYPE_CHECKING:
    from brokers.alpaca.broker import AlpacaBroker

CRYPTO_STOP_LIMIT_BPS = 100.0     # a crypto stop-limit's limit, through its trigger (fills in a fast market)
CRYPTO_TAKE_NOT_PLACED = "Alpaca crypto has no OCO orders; the stop-limit holds the position"


def unplaced(universe, stops: np.ndarray, takes: np.ndarray) -> dict[tuple[str, str], str]:
    """The take-profits ``submit`` does not place: a crypto position's, beside its stop."""
    return {(universe.symbols[j], "take"): f"not placed: {CRYPTO_TAKE_NOT_PLACED}"
            for j in np.flatnonzero(np.asarray(universe.crypto, bool) & stops & takes).tolist()}


def states(o) -> list[OrderState]:
    """An Alpaca order and its legs as Parity sees them: the leg of one of Parity's OCO exits under
    its pair's client order id (the leg's own id is the venue's)."""
    parent = wire.order_state(o)
    out = [parent]
    for leg in getattr(o, "legs", None) or []:
        st = wire.order_state(leg)
        if owned(parent.client_order_id) and leg_of(parent.client_order_id) in PROTECTIVE_LEGS:
            st = replace(st, client_order_id=paired_exit_id(parent.client_order_id))
        out.append(st)
    return out


def submit(b: AlpacaBroker, stop: OrderRequest | None,
           take: OrderRequest | None) -> tuple[OrderState | None, OrderState | None]:
    from alpaca.trading.enums import OrderClass
    from alpaca.trading.requests import (
        LimitOrderRequest,
        StopLimitOrderRequest,
        StopLossRequest,
        StopOrderRequest,
        TakeProfitRequest,
    )

    req = stop or take
    assert req is not None
    args = dict(symbol=wire.venue_symbol(req.symbol), side="buy" if req.side > 0 else "sell", time_in_force="gtc",
                qty=float(f"{req.qty:.9f}"))
    if is_crypto(req.symbol):
        s = t = None
        if stop is not None:
            lim = stop.stop_price * (1 + stop.side * CRYPTO_STOP_LIMIT_BPS * 1e-4)  # type: ignore[operator]
            lim = round(lim, 2) if lim >= 1 else round(lim, 6)
            s = _send(b, stop.client_order_id, StopLimitOrderRequest(stop_price=stop.stop_price, limit_price=lim,
                                                                     client_order_id=stop.client_order_id, **args))
        if take is not None:
            t = (not_placed(take, CRYPTO_TAKE_NOT_PLACED)
                 if stop is not None else
                 _send(b, take.client_order_id, LimitOrderRequest(limit_price=take.limit_price,
                                                                  client_order_id=take.client_order_id, **args)))
        return s, t
    if stop is not None and take is not None:
        order = LimitOrderRequest(limit_price=take.limit_price, order_class=OrderClass.OCO,
                                  take_profit=TakeProfitRequest(limit_price=take.limit_price),
                                  stop_loss=StopLossRequest(stop_price=stop.stop_price),
                                  client_order_id=take.client_order_id, **args)
        found = states(_raw(b, take.client_order_id, order))
        parent = found[0]
        leg = next((x for x in found[1:] if x.client_order_id == stop.client_order_id), None)
        return leg, parent
    if stop is not None:
        return _send(b, stop.client_order_id, StopOrderRequest(stop_price=stop.stop_price,
                                                               client_order_id=stop.client_order_id, **args)), None
    # no stop: the request is the take-profit
    return None, _send(b, req.client_order_id, LimitOrderRequest(limit_price=req.limit_price,
                                                                 client_order_id=req.client_order_id, **args))


def _raw(b: AlpacaBroker, cid: str, order):
    try:
        return b._sdk(f"submit {order.symbol}", lambda: b.trading.submit_order(order))
    except DuplicateClientOrderId:
        return b._sdk(f"order {cid}", lambda: b.trading.get_order_by_client_id(cid))


def _send(b: AlpacaBroker, cid: str, order) -> OrderState:
    return wire.order_state(_raw(b, cid, order))


def find_legs(b: AlpacaBroker, missing: set[str]) -> dict[str, OrderState]:
    """Protective stops among ``missing`` (client order ids the venue does not know) found as the
    leg of their pair's OCO order."""
    found: dict[str, OrderState] = {}
    for cid in missing:
        if leg_of(cid) != "stop":
            continue
        try:
            pair = paired_exit_id(cid)
            o = b._sdk("order by client id", lambda: b.trading.get_order_by_client_id(pair))
        except NotFound:
            continue
        for st in states(o)[1:]:
            if st.client_order_id == cid:
                found[cid] = st
    return found
