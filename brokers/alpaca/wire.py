"""Alpaca's shapes <-> Parity's values. Symbols: orders and assets use ``BTC/USD``, positions
report ``BTCUSD``; both become the canonical ``BTC/USD`` here and nowhere else."""

from __future__ import annotations

from framework.broker import OrderState
from framework.symbols import canonical, is_crypto
from framework.types import AssetClass, Instrument, OrderStatus, Position

_STATUS = {
    "new": OrderStatus.NEW, "accepted": OrderStatus.NEW, "pending_new": OrderStatus.NEW,
    "accepted_for_bidding": OrderStatus.NEW, "held": OrderStatus.NEW, "pending_replace": OrderStatus.NEW,
    "pending_cancel": OrderStatus.NEW, "calculated": OrderStatus.NEW, "pending_review": OrderStatus.NEW,
    "partially_filled": OrderStatus.PARTIAL, "filled": OrderStatus.FILLED, "done_for_day": OrderStatus.NEW,
    "canceled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED, "replaced": OrderStatus.CANCELED,
    "stopped": OrderStatus.NEW, "rejected": OrderStatus.REJECTED, "suspended": OrderStatus.NEW,
}


def venue_symbol(symbol: str) -> str:
    """Canonical -> Alpaca order/asset symbol (crypto keeps BASE/QUOTE)."""
    return symbol


def _f(x) -> float | None:
    if x is None or x == "":
        return None
    return float(x)


def _enum(v) -> str:
    return str(getattr(v, "value", v))


def order_state(o) -> OrderState:
    status = _STATUS.get(_enum(o.status).lower(), OrderStatus.NEW)
    qty = _f(o.qty)
    filled = _f(o.filled_qty) or 0.0
    if qty is None:   # a notional order: the size is known only once filled
        qty = filled
    return OrderState(o.client_order_id, str(o.id), canonical(o.symbol), 1 if _enum(o.side) == "buy" else -1,
                      qty, filled, _f(o.filled_avg_price), int(status), _enum(o.type or o.order_type), "",
                      _enum(o.status).lower(), stop_price=_f(getattr(o, "stop_price", None)),
                      limit_price=_f(getattr(o, "limit_price", None)))


def position(p) -> Position:
    qty = float(p.qty) * (-1 if _enum(p.side) == "short" else 1) if float(p.qty) > 0 else float(p.qty)
    return Position(canonical(p.symbol), qty, _f(p.avg_entry_price) or 0.0, _f(p.current_price) or 0.0,
                    _f(p.market_value) or 0.0, _f(p.unrealized_pl) or 0.0, _f(getattr(p, "qty_available", None)))


def instrument(a, min_notional_equity: float, min_notional_crypto: float) -> Instrument:
    sym = canonical(a.symbol)
    crypto = is_crypto(sym)
    frac = bool(a.fractionable)
    inc = _f(getattr(a, "min_trade_increment", None)) if crypto else (1e-9 if frac else 1.0)
    return Instrument(
        symbol=sym, asset_class=AssetClass.CRYPTO if crypto else AssetClass.EQUITY,
        qty_increment=inc or 1e-9, min_qty=_f(getattr(a, "min_order_size", None)) or 0.0,
        min_notional=min_notional_crypto if crypto else (min_notional_equity if frac else 0.0),
        price_increment=_f(getattr(a, "price_increment", None)) or 0.01, fractionable=frac,
        shortable=bool(a.shortable) and not crypto, tradable=bool(a.tradable))
