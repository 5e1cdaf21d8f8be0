"""Alpaca's complex order classes for the local Alpaca server: bracket, OCO and OTO (equities).

Sources, each fact cited where it is used:
- alpaca-py ``OrderClass`` docstring: "Equity trading: simple (or ""), oco, oto, bracket ... Crypto
  trading: simple (or "")"; ``TakeProfitRequest(limit_price)``, ``StopLossRequest(stop_price,
  limit_price=None)`` (a stop-limit leg when ``limit_price`` is given).
- Alpaca blog "OCO & OTO Orders Are Now Available" (alpaca.markets/blog/oco-oto/): an OCO exits an
  existing position — ``type: limit``, ``order_class: oco``, ``take_profit: {limit_price}``,
  ``stop_loss: {stop_price, limit_price?}``; an OTO is an entry with one exit leg.
- alpaca-trade-api-js#248: a bracket whose entry is not an entry order is refused
  ``422 {"code": 42210000, "message": "bracket orders must be entry orders"}``.
- TraderAlice/OpenAlice#342 (verified on paper): a bracket needs both legs
  (``422 bracket orders require take_profit.limit_price``); one leg is an OTO.
- Alpaca-API#115, alpaca-trade-api-csharp#617: leg orders get venue-generated client order ids;
  the ids a client sends for the legs are ignored.
- alpaca-trade-api-python#322, AutoTrader-AgentEdge#355: the stop-loss leg rests with status
  ``held`` (inactive until triggered) next to the take-profit leg (``new``); a bracket's legs are
  ``held`` until the entry fills; filling one exit cancels the other.

GUESS (documented, not observed): legs are included (``legs: [...]``) in the answer to POST and
to a GET of the parent, and in listings only with ``nested=true``; cancelling any member of an
exit pair (or a bracket's entry) cancels the whole group; exit legs hold the position's quantity
once (the pair, not each leg).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

CLASSES = ("bracket", "oco", "oto")


class ClassSpec:
    """A complex order's class and its exit levels, as parsed from the request body."""

    def __init__(self, order_class: str, take: Optional[Decimal], stop: Optional[Decimal],
                 stop_limit: Optional[Decimal]):
        self.order_class, self.take, self.stop, self.stop_limit = order_class, take, stop, stop_limit


def parse(srv, body: dict, a: dict, crypto: bool, otype: str, side: str, err) -> Optional[ClassSpec]:
    """Validate ``order_class`` and its legs; None for a simple order."""
    order_class = str(body.get("order_class") or "").lower()
    if order_class in ("", "simple"):
        return None
    if order_class not in CLASSES:
        raise err(422, 40010001, f"invalid order_class {order_class}")   # GUESS text (mleg: options only)
    if crypto:   # alpaca-py OrderClass: "Crypto trading: simple (or "")"
        raise err(422, 42210000, f"crypto orders only support order_class simple, got {order_class}")  # GUESS text
    tp, sl = body.get("take_profit") or {}, body.get("stop_loss") or {}
    take = srv._validate_price_field(a, tp, "limit_price") if tp else None
    stop = srv._validate_price_field(a, sl, "stop_price") if sl else None
    stop_limit = srv._validate_price_field(a, sl, "limit_price") if sl else None
    if order_class in ("bracket", "oco"):
        if take is None:   # OpenAlice#342
            raise err(422, 42210000, f"{order_class} orders require take_profit.limit_price")
        if stop is None:
            raise err(422, 42210000, f"{order_class} orders require stop_loss.stop_price")
    if order_class == "oto" and (take is None) == (stop is None):
        raise err(422, 42210000, "oto orders require one of take_profit or stop_loss")   # GUESS text
    if order_class == "oco" and otype != "limit":   # the blog's OCO: type limit (the take-profit)
        raise err(422, 42210000, "oco orders must be limit orders")   # GUESS text
    if order_class in ("bracket", "oto") and otype not in ("market", "limit"):   # alpaca-trade-api-js#248
        raise err(422, 42210000, f"{order_class} orders must be entry orders")
    exit_side = "sell" if (side == "buy") != (order_class == "oco") else "buy"
    ref = srv._price_of(a)
    if stop is not None and take is not None and ((stop >= take) if exit_side == "sell" else (stop <= take)):
        raise err(422, 42210000, "stop_loss.stop_price must be on the other side of take_profit.limit_price")  # GUESS
    if order_class == "oco" and stop is not None and (stop >= ref if exit_side == "sell" else stop <= ref):
        raise err(422, 42210000, "stop_loss.stop_price must be below the market for a sell")   # GUESS text
    return ClassSpec(order_class, take, stop, stop_limit)


def attach(srv, o: dict, spec: ClassSpec, a: dict) -> None:
    """Create the legs of ``o`` (venue-generated client order ids, Alpaca-API#115) and link them."""
    o["order_class"] = spec.order_class
    o["_legs"] = []
    group = o["id"]
    qty = o["qty"]
    if spec.order_class == "oco":
        # the parent is the take-profit limit; the stop is its one leg, resting "held" (#322, #355)
        o["_group"] = group
        leg = srv._create_order(a, side=o["side"], otype="stop" if spec.stop_limit is None else "stop_limit",
                                tif=o["time_in_force"], qty=qty, notional=None, limit_price=spec.stop_limit,
                                stop_price=spec.stop, intent=o["position_intent"])
        _link(o, leg, group, armed=True)
        return
    exit_side = "sell" if o["side"] == "buy" else "buy"
    intent = "sell_to_close" if exit_side == "sell" else "buy_to_close"
    if spec.take is not None:
        leg = srv._create_order(a, side=exit_side, otype="limit", tif=o["time_in_force"], qty=qty, notional=None,
                                limit_price=spec.take, intent=intent)
        _link(o, leg, group, armed=False)
    if spec.stop is not None:
        leg = srv._create_order(a, side=exit_side, otype="stop" if spec.stop_limit is None else "stop_limit",
                                tif=o["time_in_force"], qty=qty, notional=None, limit_price=spec.stop_limit,
                                stop_price=spec.stop, intent=intent)
        _link(o, leg, group, armed=False)


def _link(parent: dict, leg: dict, group: str, armed: bool) -> None:
    leg["order_class"] = parent["order_class"]
    leg["status"] = "held" if (leg["type"] != "limit" or not armed) else "new"
    leg["_parent"] = parent["id"]
    leg["_group"] = group
    leg["_armed"] = armed
    leg["_shares_qty"] = leg["type"] != "limit" and len(parent["_legs"]) > 0 or parent["order_class"] == "oco"
    parent["_legs"].append(leg["id"])


def waiting(o: dict) -> bool:
    """A bracket/OTO leg whose entry has not filled yet: no fill event reaches it."""
    return bool(o.get("_parent")) and not o.get("_armed", True)


def after_event(srv, o: dict) -> None:
    """After a fill event on ``o``: a filled entry arms its legs; a filled exit cancels its siblings."""
    if o["filled_qty"] <= 0:
        return
    if o.get("_legs") and o["order_class"] in ("bracket", "oto") and o["status"] == "filled":
        for lid in o["_legs"]:
            leg = srv._orders[lid]
            if not leg["_armed"]:
                leg["_armed"] = True
                leg["qty"] = o["filled_qty"]
                if leg["type"] == "limit":
                    leg["status"] = "new"
        return
    group = o.get("_group")
    if group and (o.get("_parent") or o["order_class"] == "oco"):
        cancel_group(srv, o, "filled")


def members(srv, o: dict) -> list[dict]:
    group = o.get("_group")
    if not group:
        return []
    return [x for x in srv._orders.values() if x.get("_group") == group and x is not o]


def cancel_group(srv, o: dict, why: str = "canceled") -> None:
    """Cancel the other open members of ``o``'s group (an exit filled or was cancelled; a bracket's
    entry was cancelled). A bracket's entry is not cancelled when one of its exits fills."""
    from tests.servers.alpaca_server import OPEN_STATUSES, _iso

    now = _iso(srv._ts())
    for x in members(srv, o):
        if why == "filled" and x.get("_legs") and x["order_class"] in ("bracket", "oto"):
            continue
        if x["status"] in OPEN_STATUSES:
            x["status"], x["canceled_at"], x["updated_at"] = "canceled", now, now


def legs_json(srv, o: dict) -> Optional[list[dict[str, Any]]]:
    if not o.get("_legs"):
        return None
    return [srv._order_json(srv._orders[lid]) for lid in o["_legs"]]
