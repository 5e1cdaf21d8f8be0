"""Coinbase's shapes <-> Parity's values. Products are ``BTC-USD``; canonical symbols ``BTC/USD``."""

from __future__ import annotations

from framework.broker import OrderState
from framework.symbols import canonical
from framework.types import AssetClass, Instrument, OrderStatus


def product_id(symbol: str) -> str:
    return symbol.replace("/", "-")


def to_dict(obj) -> dict:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dict(obj)


def _f(x) -> float | None:
    if x is None or x == "":
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


_STATUS = {"PENDING": OrderStatus.NEW, "OPEN": OrderStatus.NEW, "QUEUED": OrderStatus.NEW,
           "CANCEL_QUEUED": OrderStatus.NEW, "FILLED": OrderStatus.FILLED, "CANCELLED": OrderStatus.CANCELED,
           "EXPIRED": OrderStatus.EXPIRED, "FAILED": OrderStatus.REJECTED, "UNKNOWN_ORDER_STATUS": OrderStatus.NEW}


def order_state(o: dict) -> OrderState:
    conf: dict = next(iter((o.get("order_configuration") or {}).values()), {}) or {}
    filled = _f(o.get("filled_size")) or 0.0
    base = _f(conf.get("base_size"))
    status = _STATUS.get(str(o.get("status", "")).upper(), OrderStatus.NEW)
    if status == OrderStatus.NEW and filled > 0:
        status = OrderStatus.PARTIAL
    if status == OrderStatus.CANCELED and filled > 0:
        status = OrderStatus.CANCELED
    qty = base if base is not None else filled
    msg = o.get("reject_message") or o.get("cancel_message") or ""
    otype = str(o.get("order_type", "MARKET")).lower()
    return OrderState(o.get("client_order_id", ""), o.get("order_id"), canonical(o["product_id"]),
                      1 if str(o.get("side", "")).upper() == "BUY" else -1, qty, filled,
                      _f(o.get("average_filled_price")) if filled > 0 else None, int(status), otype, msg,
                      str(o.get("status", "")).upper())


_HALTS = ("trading_disabled", "cancel_only", "view_only", "is_disabled")


def instrument(p: dict) -> Instrument:
    """Coinbase's product -> Parity's rules (coinbase-advanced-py ``GetProductResponse``): a product not
    ``online`` or in a no-entry mode is returned untradable with the reason (the planner holds it and
    trades the rest); ``limit_only`` / ``post_only`` products take limit orders only."""
    sym = canonical(p["product_id"])
    status = str(p.get("status", "online") or "online").lower()
    why = [f for f in _HALTS if p.get(f)] + ([f"status {status}"] if status != "online" else [])
    return Instrument(symbol=sym, asset_class=AssetClass.CRYPTO, qty_increment=_f(p.get("base_increment")) or 1e-8,
                      min_qty=_f(p.get("base_min_size")) or 0.0, min_notional=_f(p.get("quote_min_size")) or 0.0,
                      price_increment=_f(p.get("price_increment")) or 0.01, fractionable=True, shortable=False,
                      tradable=not why, halt_reason=("Coinbase product " + ", ".join(why)) if why else "",
                      limit_only=bool(p.get("limit_only") or p.get("post_only")))
