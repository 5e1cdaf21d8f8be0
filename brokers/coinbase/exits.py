"""Protective exits at Coinbase (SPEC §20): one ``trigger_bracket_gtc`` order per position.

The order configuration (coinbase-advanced-py ``trigger_bracket_order_gtc_sell`` /
``trigger_bracket_order_gtc_buy``, which send ``{"trigger_bracket_gtc": {"base_size",
"limit_price", "stop_trigger_price"}}``): ``limit_price`` is the take-profit, "the specified price,
or better, that the Order should be executed at"; ``stop_trigger_price`` "the price level where the
position will be exited. When triggered, a stop limit order is automatically placed with a limit
price 5% higher for BUYS and 5% lower for SELLS" (the API's field descriptions, Advanced Trade
"Create Order"). Its ``order_type`` is ``BRACKET``; ``trigger_status`` goes from ``STOP_PENDING`` to
``STOP_TRIGGERED`` when the stop fires (BROKER_API_NOTES §2.4).

One venue order carries one client order id: the stop's. Parity knows the pair as two orders
(legs ``stop`` and ``take``): the take-profit is the same venue order under the pair's id
(``paired_exit_id``). While the order works both are working; once it is done, the half that
fired holds its fills (``STOP_TRIGGERED``: the stop; otherwise the take-profit) and the other is
cancelled. Only a stop (no take-profit level) is a ``stop_limit_stop_limit_gtc`` order with the
same 5% limit; only a take-profit a GTC limit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from brokers.coinbase import wire
from brokers.live import OrderRequest
from framework.broker import OrderState
from framework.order_ids import leg_of, owned, paired_exit_id
from framework.types import OrderStatus

if TYPE_CHECKING:
    from brokers.coinbase.broker import CoinbaseBroker

STOP_LIMIT_THROUGH = 0.05      # the venue's own bracket stop-limit: 5% through the trigger


def states(o: dict) -> list[OrderState]:
    """A venue order as Parity sees it: a bracket is its stop (the order's client order id) and its
    take-profit (the pair's id)."""
    st = wire.order_state(o)
    if str(o.get("order_type", "")).upper() != "BRACKET" or not owned(st.client_order_id) \
            or leg_of(st.client_order_id) != "stop":
        return [st]
    cfg = (o.get("order_configuration") or {}).get("trigger_bracket_gtc") or {}
    stop_px, take_px = wire._f(cfg.get("stop_trigger_price")), wire._f(cfg.get("limit_price"))
    fired_stop = str(o.get("trigger_status", "")).upper() == "STOP_TRIGGERED"
    take = replace(st, client_order_id=paired_exit_id(st.client_order_id), order_type="limit",
                   stop_price=None, limit_price=take_px)
    stop = replace(st, order_type="stop", stop_price=stop_px, limit_price=None)
    if st.status in (int(OrderStatus.NEW), int(OrderStatus.PARTIAL)):
        if fired_stop:
            take = replace(take, filled_qty=0.0, avg_price=None, status=int(OrderStatus.NEW))
        else:
            stop = replace(stop, filled_qty=0.0, avg_price=None, status=int(OrderStatus.NEW))
        return [stop, take]
    done = replace(st, filled_qty=0.0, avg_price=None, status=int(OrderStatus.CANCELED),
                   message="canceled: the other half of its bracket filled" if st.filled_qty > 0 else st.message)
    if fired_stop:
        return [stop, replace(take, **_fields(done))]
    return [replace(stop, **_fields(done)), take]


def _fields(st: OrderState) -> dict:
    return {"filled_qty": st.filled_qty, "avg_price": st.avg_price, "status": st.status, "message": st.message}


def pick(found: list[OrderState], cid: str) -> OrderState | None:
    return next((s for s in found if s.client_order_id == cid), None)


def submit(b: CoinbaseBroker, stop: OrderRequest | None,
           take: OrderRequest | None) -> tuple[OrderState | None, OrderState | None]:
    req = stop or take
    assert req is not None
    p = b.product(req.symbol)
    inc, pinc = float(p.get("base_increment") or 1e-8), float(p.get("price_increment") or 0.01)
    pid = wire.product_id(req.symbol)
    size = wire_floor(req.qty, inc)
    side = "BUY" if req.side > 0 else "SELL"
    if stop is not None and take is not None:
        fn = b.client.trigger_bracket_order_gtc_buy if side == "BUY" else b.client.trigger_bracket_order_gtc_sell
        oid = b.place(lambda: fn(stop.client_order_id, pid, base_size=size,
                                 limit_price=wire_floor(take.limit_price, pinc),
                                 stop_trigger_price=wire_floor(stop.stop_price, pinc)), f"{side} {req.symbol} bracket")
        found = states(b.order_dict(oid))
        return pick(found, stop.client_order_id), pick(found, take.client_order_id)
    if stop is not None:
        lim = stop.stop_price * (1 + stop.side * STOP_LIMIT_THROUGH)  # type: ignore[operator]
        fn = b.client.stop_limit_order_gtc_buy if side == "BUY" else b.client.stop_limit_order_gtc_sell
        oid = b.place(lambda: fn(stop.client_order_id, pid, base_size=size, limit_price=wire_floor(lim, pinc),
                                 stop_price=wire_floor(stop.stop_price, pinc),
                                 stop_direction="STOP_DIRECTION_STOP_DOWN" if side == "SELL" else "STOP_DIRECTION_STOP_UP"),
                      f"{side} {req.symbol} stop")
        return wire.order_state(b.order_dict(oid)), None
    fn = b.client.limit_order_gtc_buy if side == "BUY" else b.client.limit_order_gtc_sell
    oid = b.place(lambda: fn(take.client_order_id, pid, base_size=size,  # type: ignore[union-attr]
                             limit_price=wire_floor(take.limit_price, pinc)), f"{side} {req.symbol} take-profit")  # type: ignore[union-attr]
    return None, wire.order_state(b.order_dict(oid))


def wire_floor(x: float | None, inc: float) -> str:
    from brokers.coinbase.broker import floor_str

    return floor_str(float(x or 0.0), inc)
