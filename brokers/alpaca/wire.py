"""Alpaca's shapes <-> Parity's values. Symbols: orders and assets use ``BTC/USD``, positions
report ``BTCUSD``; both become the canonical ``BTC/USD`` here and nowhere else.

The venue's answers come as ``brokers.alpaca.view.View`` (its JSON, not alpaca-py's strict models;
catalogue row 14): enum values are compared as strings, and a value this module does not know is
read the careful way and logged once: an order status as still working (never final: the order is
followed until it ends, its fills booked from the venue's fill activities), an asset's exchange or
class as irrelevant (only ``tradable`` and the status ``inactive`` hold an asset), an account
status as blocking every order (only ``ACTIVE`` trades)."""

from __future__ import annotations

import logging
from datetime import datetime

from framework.broker import OrderState
from framework.symbols import canonical, is_crypto
from framework.types import AssetClass, Instrument, OrderStatus, Position

_STATUS = {
    "new": OrderStatus.NEW, "accepted": OrderStatus.NEW, "pending_new": OrderStatus.NEW,
    "accepted_for_bidding": OrderStatus.NEW, "held": OrderStatus.NEW, "pending_replace": OrderStatus.NEW,
    "pending_cancel": OrderStatus.NEW, "calculated": OrderStatus.NEW, "pending_review": OrderStatus.NEW,
    "partially_filled": OrderStatus.PARTIAL, "filled": OrderStatus.FILLED, "done_for_day": OrderStatus.NEW,
    "canceled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED, "replaced": OrderStatus.NEW,
    "stopped": OrderStatus.NEW, "rejected": OrderStatus.REJECTED, "suspended": OrderStatus.NEW,
}
# alpaca-py AssetStatus: "active", "inactive"; any other value is new (alpaca-py#340)
_ASSET_STATUS = ("active", "inactive")

log = logging.getLogger("parity.alpaca")
_noted: set[tuple[str, str]] = set()


def _new_value(what: str, value: str, meaning: str) -> None:
    """Log, once per value, an enum value the venue sent that this adapter does not know."""
    if (what, value) not in _noted:
        _noted.add((what, value))
        log.warning("Alpaca sent %s %r, unknown to Parity: %s", what, value[:40], meaning)


def venue_symbol(symbol: str) -> str:
    """Canonical -> Alpaca order/asset symbol (crypto keeps BASE/QUOTE)."""
    return symbol


def _f(x) -> float | None:
    if x is None or x == "":
        return None
    return float(x)


def _enum(v) -> str:
    return str(getattr(v, "value", v))


def when(x) -> datetime | None:
    """A venue timestamp (ISO 8601 text, or already a datetime) as an aware datetime; None if absent."""
    if x is None or x == "" or isinstance(x, datetime):
        return x or None
    return datetime.fromisoformat(str(x).replace("Z", "+00:00"))


def order_state(o) -> OrderState:
    qty = _f(o.qty)
    filled = _f(o.filled_qty) or 0.0
    if qty is None:   # a notional order: the size is known only once filled
        qty = filled
    venue = _enum(o.status).lower()
    status = _STATUS.get(venue)
    if status is None:   # a status alpaca-py's OrderStatus lacks: still working, never final
        status = OrderStatus.PARTIAL if filled > 0 else OrderStatus.NEW
        _new_value("order status", venue, "the order is taken as still working")
    return OrderState(o.client_order_id, str(o.id), canonical(o.symbol), 1 if _enum(o.side) == "buy" else -1,
                      qty, filled, _f(o.filled_avg_price), int(status), _enum(o.type or o.order_type), "",
                      venue, stop_price=_f(getattr(o, "stop_price", None)),
                      limit_price=_f(getattr(o, "limit_price", None)))


def position(p) -> Position:
    qty = float(p.qty) * (-1 if _enum(p.side) == "short" else 1) if float(p.qty) > 0 else float(p.qty)
    return Position(canonical(p.symbol), qty, _f(p.avg_entry_price) or 0.0, _f(p.current_price) or 0.0,
                    _f(p.market_value) or 0.0, _f(p.unrealized_pl) or 0.0, _f(getattr(p, "qty_available", None)))


# USD-quoted crypto buys under $10 cost basis are refused (403 40310000 "cost basis must be >= minimal
# amount of order 10"); sells below it are accepted (ccxt PR#30101, a paper-API probe; P).
CRYPTO_BUY_FLOOR_USD = 10.0


def instrument(a, min_notional_equity: float, min_notional_crypto: float, crypto_off: str = "") -> Instrument:
    """Alpaca's asset -> Parity's rules. An inactive or untradable asset (a delisting, a rename) is
    returned with ``tradable=False`` and the reason, so the planner can hold it and trade the rest
    (alpaca-py ``AssetStatus``); shorting needs a shortable AND easy-to-borrow name. A status the SDK
    does not know (alpaca-py#340) leaves the decision to the venue's ``tradable`` ("Some Assets are
    not tradable with Alpaca. These Assets are marked with the flag tradable=false", alpaca-py
    ``Asset``); the exchange and class are not read (the symbol says crypto or equity). ``crypto_off``
    (``crypto_disabled``) holds every crypto asset of an account that may not trade crypto."""
    sym = canonical(a.symbol)
    crypto = is_crypto(sym)
    frac = bool(a.fractionable)
    inc = _f(getattr(a, "min_trade_increment", None)) if crypto else (1e-9 if frac else 1.0)
    status = _enum(getattr(a, "status", None) or "active").lower()
    if status not in _ASSET_STATUS:
        _new_value("asset status", status, "the asset's tradable flag decides")
    tradable = bool(a.tradable) and status != "inactive"
    why = "" if tradable else f"Alpaca asset status {status}, tradable {str(bool(a.tradable)).lower()}"
    if crypto and tradable and crypto_off:
        tradable, why = False, crypto_off
    etb = bool(getattr(a, "easy_to_borrow", False))
    return Instrument(
        symbol=sym, asset_class=AssetClass.CRYPTO if crypto else AssetClass.EQUITY,
        qty_increment=inc or 1e-9, min_qty=_f(getattr(a, "min_order_size", None)) or 0.0,
        min_notional=min_notional_crypto if crypto else (min_notional_equity if frac else 0.0),
        price_increment=_f(getattr(a, "price_increment", None)) or 0.01, fractionable=frac,
        shortable=bool(a.shortable) and etb and not crypto, tradable=tradable, halt_reason=why,
        min_buy_notional=CRYPTO_BUY_FLOOR_USD if crypto and sym.endswith("/USD") else 0.0)


def blocked(a) -> str:
    """Why the account refuses every new order ("" when it does not): alpaca-py ``TradeAccount``
    ``trading_blocked``, ``account_blocked``, ``trade_suspended_by_user``, ``status``."""
    why = [f for f in ("trading_blocked", "account_blocked", "trade_suspended_by_user") if getattr(a, f, False)]
    status = _enum(getattr(a, "status", "ACTIVE") or "ACTIVE").upper()
    if status != "ACTIVE":    # any other status, a new one too (alpaca-py AccountStatus), blocks
        why.append(f"status {status}")
    return ", ".join(why)


def crypto_disabled(a) -> str:
    """Why the account may not trade crypto ("" when it may): alpaca-py ``TradeAccount.crypto_status``
    ("The status of the account in regards to trading crypto. Only present if crypto trading is
    enabled for your brokerage account"): absent, or anything but ACTIVE. The venue refuses such an
    account's crypto orders one by one (403), each after the buys were sized with it; held by the
    planner instead, the account's equities trade with the whole budget."""
    raw = getattr(a, "crypto_status", None)
    status = _enum(raw).upper() if raw else "absent"
    if status == "ACTIVE":
        return ""
    return (f"Alpaca account crypto_status {status}: crypto trading is not enabled for this account "
            "(enable it at Alpaca)")


def can_short(a) -> bool:
    """A margin account (multiplier above 1) with shorting enabled (Alpaca "Margin and short selling")."""
    return bool(getattr(a, "shorting_enabled", False)) and (_f(getattr(a, "multiplier", None)) or 1.0) > 1.0
