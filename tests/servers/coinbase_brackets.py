"""``trigger_bracket_gtc`` orders for the local Coinbase server (SPEC §20).

Sources:
- coinbase-advanced-py ``trigger_bracket_order_gtc{,_buy,_sell}``: the configuration is
  ``{"trigger_bracket_gtc": {"base_size", "limit_price", "stop_trigger_price"}}`` (strings);
- the API's field descriptions (Advanced Trade "Create Order", mirrored by rCoinbase
  ``cb_trig_gtc_order``): ``limit_price`` "the specified price, or better, that the Order should be
  executed at"; ``stop_trigger_price`` "the price level where the position will be exited. When
  triggered, a stop limit order is automatically placed with a limit price 5% higher for BUYS and
  5% lower for SELLS"; the SDK docstring: "Trigger Bracket orders ... wait to trigger based on the
  movement of the last trade price";
- BROKER_API_NOTES §2.4: ``order_type`` ``BRACKET``; ``trigger_status`` values.

Behaviour: accepted as OPEN with ``trigger_status: STOP_PENDING``, holding the base (a SELL) or the
quote at the limit price (a BUY). On a market event: a price through ``limit_price`` fills the
order at its limit (maker), as the take-profit; a price through ``stop_trigger_price`` sets
``STOP_TRIGGERED`` and fills at the market price with the server's slippage, no worse than the 5%
stop-limit (taker). GUESS (documented, not observed): a SELL whose ``stop_trigger_price`` is not
below ``limit_price`` (a BUY: not above) is refused ``INVALID_LIMIT_PRICE``; so is one whose stop
the current price has already passed.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

THROUGH = Decimal("0.05")


def check(srv, body: dict, pid: str, side: str, params: dict, spec: dict) -> tuple[dict | None, dict]:
    from tests.servers.coinbase_server import _CTX, D, _is_multiple

    base = srv._num(params, "base_size")
    limit = srv._num(params, "limit_price")
    stop = srv._num(params, "stop_trigger_price")
    sizes: dict[str, Any] = {"quote": None, "base": base, "limit": limit, "stop": stop, "post_only": False}
    bi, pi = D(spec["base_increment"]), D(spec["price_increment"])
    if limit <= 0 or stop <= 0 or (stop >= limit if side == "SELL" else stop <= limit):
        return srv._reject(body, "INVALID_LIMIT_PRICE", "PREVIEW_INVALID_LIMIT_PRICE", "Invalid limit price",
                           "INVALID_LIMIT_PRICE"), sizes
    px = D(srv._st["prices"][pid])
    if (side == "SELL" and px <= stop) or (side == "BUY" and px >= stop):
        return srv._reject(body, "INVALID_LIMIT_PRICE", "PREVIEW_INVALID_STOP_PRICE", "Stop price already passed",
                           "INVALID_LIMIT_PRICE"), sizes
    if not (_is_multiple(limit, pi) and _is_multiple(stop, pi)):
        return srv._reject(body, "INVALID_PRICE_PRECISION", "PREVIEW_INVALID_PRICE_PRECISION",
                           "Invalid price precision", "INVALID_PRICE_PRECISION"), sizes
    if base <= 0 or base < D(spec["base_min_size"]) or not _is_multiple(base, bi):
        return srv._reject(body, "INVALID_SIZE_PRECISION", "PREVIEW_INVALID_SIZE_PRECISION",
                           "Invalid order size precision", "INVALID_SIZE_PRECISION"), sizes
    cur = spec["base_currency_id"] if side == "SELL" else spec["quote_currency_id"]
    avail = D(srv._account(cur, create=True)["available"])
    with localcontext(_CTX):
        need = base if side == "SELL" else base * limit * (1 + D(srv.fee_rate))
    if need > avail:
        return srv._reject(body, "INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND",
                           "Insufficient balance in source account"), sizes
    return None, sizes


def place(srv, o: dict, sizes: dict) -> None:
    from tests.servers.coinbase_server import _CTX, D, fmt

    spec = srv._st["products"][o["product_id"]]
    with localcontext(_CTX):
        if o["side"] == "SELL":
            cur, hold = spec["base_currency_id"], sizes["base"]
        else:
            cur, hold = spec["quote_currency_id"], sizes["base"] * sizes["limit"] * (1 + D(srv.fee_rate))
    srv._add(cur, available=-hold, hold=hold)
    o.update(_hold_currency=cur, outstanding_hold_amount=fmt(hold), status="OPEN", order_type="BRACKET",
             trigger_status="STOP_PENDING", time_in_force="GOOD_UNTIL_CANCELLED")


def match(srv, o: dict) -> None:
    """One market event for an open bracket: the take-profit or the stop fires, whole."""
    from tests.servers.coinbase_server import _CTX, D, fmt

    if o["status"] != "OPEN" or o["_last_fill_epoch"] == srv._st["epoch"]:
        return
    cfg = o["order_configuration"]["trigger_bracket_gtc"]
    base, limit, stop = D(cfg["base_size"]), D(cfg["limit_price"]), D(cfg["stop_trigger_price"])
    px = D(srv._st["prices"][o["product_id"]])
    sell = o["side"] == "SELL"
    if (px >= limit) if sell else (px <= limit):
        price, rate, liquidity = limit, D(srv.maker_fee_rate), "MAKER"
    elif (px <= stop) if sell else (px >= stop):
        o["trigger_status"] = "STOP_TRIGGERED"
        fpx = srv._fill_price(o["product_id"], o["side"])
        floor = stop * (1 - THROUGH) if sell else stop * (1 + THROUGH)
        if (fpx < floor) if sell else (fpx > floor):
            return                      # the stop-limit rests below the market (a gap beyond 5%)
        price, rate, liquidity = fpx, D(srv.fee_rate), "TAKER"
    else:
        return
    spec = srv._st["products"][o["product_id"]]
    base_cur, quote_cur = spec["base_currency_id"], spec["quote_currency_id"]
    with localcontext(_CTX):
        value = base * price
        fee = value * rate
        held = D(o["outstanding_hold_amount"])
        if sell:
            srv._add(base_cur, available=held - base, hold=-held)
            srv._adjust_cost_basis(base_cur, sold=base)
            srv._add(quote_cur, available=value - fee)
        else:
            srv._add(quote_cur, available=held - value - fee, hold=-held)
            srv._add(base_cur, available=base)
            srv._adjust_cost_basis(base_cur, cost=value + fee)
    o["outstanding_hold_amount"] = "0"
    o["_last_fill_epoch"] = srv._st["epoch"]
    srv._record_fill(o, base, price, value, fee, liquidity)
    o.update(status="FILLED", settled=True, completion_percentage=fmt(Decimal(100)))
