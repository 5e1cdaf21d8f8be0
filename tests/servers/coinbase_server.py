"""A local HTTPS Coinbase Advanced Trade server for the real ``coinbase-advanced-py`` SDK.

It speaks the ``/api/v3/brokerage`` REST API the way ``coinbase.rest.RESTClient`` (1.8.4) calls it
and the way the real service answers (see ``/work/shared/BROKER_API_NOTES.md`` section 2): ES256/EdDSA
JWT per request (``uri`` claim checked), per-currency accounts with available/hold, market IOC and
limit GTC orders with fees, HTTP-200 rejections, duplicate ``client_order_id`` returning the existing
order, candles newest-first with the 350 limit, rate limits with an HTML 429 and fault injection.

In-thread::

    with CoinbaseServer() as srv:                  # generates a CDP key and a TLS cert
        client = srv.rest_client(timeout=5)         # the real RESTClient, trusting srv.cert_path
        srv.set_price("BTC-USD", 50_000)
        client.market_order_buy("cid-1", "BTC-USD", quote_size="100")

Standalone (survives and reloads across restarts; a client may be SIGKILLed at any point)::

    python -m tests.servers.coinbase_server --port 18443 --state st.json \
        --key-file cdp_key.json --cert-dir tlsdir

It prints ``COINBASE_SERVER_READY 127.0.0.1:PORT CERT_PATH`` once listening.  A standalone server
is steered through unauthenticated ``/_admin/*`` endpoints (``StandaloneCoinbaseServer`` wraps
them): ``POST /_admin/price {"product_id","price"}``, ``/_admin/tick``, ``/_admin/balance``,
``/_admin/inject``, ``/_admin/config``, ``/_admin/candles``, ``/_admin/reset``;
``GET /_admin/orders``, ``/_admin/balances``, ``/_admin/requests``, ``/_admin/fills``,
``/_admin/kills`` (clients SIGKILLed by ``kill_client_*`` faults, see ``inject``).

Modelled points that are guesses (not confirmed against production) are marked GUESS below and
kept configurable where it matters.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import http.server
import json
import logging
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Context, Decimal, InvalidOperation, localcontext
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.servers import certs, coinbase_brackets

log = logging.getLogger("parity.tests.coinbase_server")
log.addHandler(logging.NullHandler())

API = "/api/v3/brokerage"
ADMIN = "/_admin"
_NS = uuid.UUID("6f0e3c1e-9d1a-4b7e-8a57-0c0ba5e5e001")

GRANULARITY_SECONDS = {
    "ONE_MINUTE": 60, "FIVE_MINUTE": 300, "FIFTEEN_MINUTE": 900, "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600, "TWO_HOUR": 7200, "FOUR_HOUR": 14400, "SIX_HOUR": 21600, "ONE_DAY": 86400,
}

# Real accounts list every supported currency, held or not -> pagination (limit 49) matters.
DEFAULT_ACCOUNT_CURRENCIES = (
    "1INCH AAVE ADA ALGO ANKR APE ATOM AVAX AXS BAL BAT BCH BNT BTC CHZ COMP CRV DAI DOGE DOT ENS EOS "
    "ETC ETH FET FIL GALA GRT HBAR ICP IMX INJ LDO LINK LRC LTC MANA MASK MATIC MKR NEAR OCEAN OP PEPE "
    "QNT RNDR SAND SHIB SNX SOL STX SUI SUSHI TIA UNI USD USDC USDT WIF XLM XRP XTZ YFI ZEC ZRX"
).split()
FIAT = {"USD", "EUR", "GBP"}

DEFAULT_PRODUCTS: dict[str, dict[str, str]] = {
    "BTC-USD": {"base_increment": "0.00000001", "quote_increment": "0.01", "price_increment": "0.01",
                "base_min_size": "0.00000001", "base_max_size": "3400", "quote_min_size": "1",
                "quote_max_size": "150000000", "base_name": "Bitcoin"},
    "ETH-USD": {"base_increment": "0.00000001", "quote_increment": "0.01", "price_increment": "0.01",
                "base_min_size": "0.00000001", "base_max_size": "38000", "quote_min_size": "1",
                "quote_max_size": "150000000", "base_name": "Ethereum"},
    "SOL-USD": {"base_increment": "0.001", "quote_increment": "0.01", "price_increment": "0.01",
                "base_min_size": "0.001", "base_max_size": "300000", "quote_min_size": "1",
                "quote_max_size": "25000000", "base_name": "Solana"},
}
DEFAULT_PRICES = {"BTC-USD": 50_000, "ETH-USD": 3_000, "SOL-USD": 150}

INJECT_KINDS = (
    "429", "500", "502", "503", "504", "503_html", "401_throttle",
    "drop_before", "drop_after", "delay", "delay_after", "kill_client_before", "kill_client_after",
)

HTML_429 = (
    "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    "<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)
HTML_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)

_CTX = Context(prec=50)
Q16 = Decimal("1e-16")


# --------------------------------------------------------------------------------------------- helpers

def D(x: Any) -> Decimal:
    if isinstance(x, Decimal):
        return x
    if isinstance(x, float):
        return Decimal(repr(x))
    return Decimal(str(x))


def fmt(d: Decimal | int | float | str) -> str:
    """Decimal -> plain string without exponent or trailing zeros ("100", "0.0017", "0")."""
    d = D(d)
    if d == 0:
        return "0"
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _is_multiple(x: Decimal, inc: Decimal) -> bool:
    if inc == 0:
        return True
    with localcontext(_CTX):
        return (x % inc) == 0


def _quant(x: Decimal, inc: Decimal, rounding=ROUND_DOWN) -> Decimal:
    with localcontext(_CTX):
        return (x / inc).to_integral_value(rounding=rounding) * inc


def iso(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(s: str) -> float:
    return _dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class ApiError(Exception):
    """Turns into an HTTP error answer (status, JSON or text body)."""

    def __init__(self, status: int, error: str = "INVALID_ARGUMENT", message: str = "",
                 text: str | None = None, content_type: str = "application/json"):
        super().__init__(message or error)
        self.status, self.error, self.message = status, error, message
        self.text, self.content_type = text, content_type

    def body(self) -> bytes:
        if self.text is not None:
            return self.text.encode()
        return json.dumps({"error": self.error, "error_details": self.message,
                           "message": self.message}).encode()


def bad_request(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def not_found(message: str) -> ApiError:
    # GUESS on the exact text; the status and the "NOT_FOUND" code are what clients rely on.
    return ApiError(404, "NOT_FOUND", message)


@dataclass
class RequestRecord:
    """One request as the server saw it (``server.requests``)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]
    time: float
    status: int | None = None       # None when the connection was dropped without an answer
    fault: str | None = None        # the injected fault that hit this request, if any


@dataclass
class Injection:
    kind: str
    path_prefix: str | None = None
    path: str | None = None
    method: str | None = None
    count: int | None = 1           # None = until cleared
    seconds: float = 1.0            # for delay / delay_after
    hits: int = 0
    pid: int | None = None          # for kill_client_before / kill_client_after
    skip: int = 0                   # matching requests let through before the fault fires
    arm_method: str | None = None   # dormant until arm_count requests matching (arm_method,
    arm_path_prefix: str | None = None  # arm_path_prefix or the exact arm_path) have arrived
    arm_path: str | None = None
    arm_count: int = 0
    arm_seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.path is not None and path != self.path:
            return False
        if self.path_prefix is not None and not path.startswith(self.path_prefix):
            return False
        return True

    def arms_on(self, method: str, path: str) -> bool:
        if not self.arm_count:
            return False
        if self.arm_method and self.arm_method.upper() != method:
            return False
        if self.arm_path is not None and path != self.arm_path:
            return False
        return self.arm_path_prefix is None or path.startswith(self.arm_path_prefix)


def _api_path(p: str | None) -> str | None:
    """'/orders' -> '/api/v3/brokerage/orders'; full paths pass through."""
    if p is None:
        return None
    if p.startswith("/api/") or p.startswith(ADMIN):
        return p
    return API + (p if p.startswith("/") else "/" + p)


class _RateWindow:
    """Sliding one-window log per key."""

    def __init__(self) -> None:
        self._log: dict[str, deque] = {}

    def hit(self, key: str, limit: int | None, window: float) -> tuple[bool, int, float]:
        """Return (allowed, remaining, reset_epoch_seconds)."""
        now = time.time()
        q = self._log.setdefault(key, deque())
        while q and q[0] <= now - window:
            q.popleft()
        if limit is None:
            return True, 1_000_000, int(now + window)
        at = (q[0] + window) if q else (now + window)
        # epoch seconds; a sub-second window (time-compressed load tests) gets milliseconds, since
        # rounding up to the next second would stretch its reset by up to 1 s
        reset = int(math.ceil(at)) if window >= 1 else math.ceil(at * 1000) / 1000
        if len(q) >= limit:
            return False, 0, reset
        q.append(now)
        return True, max(0, limit - len(q)), reset

    def clear(self) -> None:
        self._log.clear()


# ------------------------------------------------------------------------------------------ venue behaviours
# Issue 12: the real Advanced Trade's behaviours the first server did not model. Each cites the source it
# was confirmed from; "P" marks a third-party-only report, "GUESS" an unconfirmed detail. Switches are
# constructor/``configure`` knobs or control methods (also under /_admin for a standalone server).
# See docs/venue_behaviours_confirmed.md.

# USD stablecoins held at par: there is no USDC-USD product (dali-rp2#112: "Coinbase doesn't have a USDCUSD
# market"; ccxt#21905 / #21431: USD<->USDC goes through Convert), so nothing can price USDC but par.
STABLE_AT_PAR = {"USDC"}

# Product modes (coinbase-advanced-py GetProductResponse: trading_disabled, cancel_only, limit_only,
# post_only, view_only, is_disabled, status). The failure enums are documented (ORDER_ENTRY_DISABLED,
# UNSUPPORTED_ORDER_CONFIGURATION, INVALID_LIMIT_PRICE_POST_ONLY, UNTRADABLE_PRODUCT,
# PREVIEW_UNTRADABLE_PRODUCT); which one each mode answers is GUESS.
_MODES_NO_ENTRY = ("trading_disabled", "is_disabled", "cancel_only", "view_only")


class _VenueBehaviours:
    """Mixed into CoinbaseServer: vault accounts, USDC at par and USDC aliases, product modes, fill
    reversals/corrections, CANCEL_QUEUED, a configurable fee tier, throttling answered as 401 and orders the
    user placed by hand."""

    # ---- vault accounts (Advanced Trade "List Accounts" `type`: ACCOUNT_TYPE_UNSPECIFIED,
    # ACCOUNT_TYPE_CRYPTO, ACCOUNT_TYPE_FIAT, ACCOUNT_TYPE_VAULT, ACCOUNT_TYPE_PERP_FUTURES, as mirrored in
    # several client SDKs' Account types; a vault is cold storage, not spendable)

    def add_vault(self, currency: str, amount: Any) -> None:
        """A vault account of ``currency`` holding ``amount`` (listed by GET /accounts, never spendable)."""
        with self._lock:
            self._st.setdefault("vaults", {})[currency] = {"available": fmt(D(amount)), "created_at": iso()}
            self._save()

    def _vault_uuid(self, currency: str) -> str:
        return str(uuid.uuid5(_NS, "vault:" + currency))

    def _vault_view(self, currency: str) -> dict:
        v = self._st["vaults"][currency]
        return {
            "uuid": self._vault_uuid(currency), "name": f"{currency} Vault", "currency": currency,
            "available_balance": {"value": v["available"], "currency": currency}, "default": False,
            "active": True, "created_at": v["created_at"], "updated_at": v["created_at"], "deleted_at": None,
            "type": "ACCOUNT_TYPE_VAULT", "ready": True, "hold": {"value": "0", "currency": currency},
            "retail_portfolio_id": self._st["portfolio_uuid"], "platform": "ACCOUNT_PLATFORM_CONSUMER",
        }

    def _all_account_views(self) -> list[dict]:
        views = [self._account_view(c) for c in sorted(self._st["accounts"])]
        return views + [self._vault_view(c) for c in sorted(self._st.get("vaults", {}))]

    # ---- USDC aliases (ccxt#27394, a ccxt maintainer, 2025-11: BTC/USD and BTC/USDC "they're alias";
    # renegade-fi/renegade#564: "the markets are directly aliased in the Advanced Trade API";
    # GetProductResponse has `alias` and `alias_to`). P for the settlement detail: here an alias product
    # shares its target's price and settles in its own quote currency (USDC).

    def _add_usdc_aliases(self, prods: dict) -> None:
        for pid in list(prods):
            base, quote = pid.split("-", 1)
            alias = f"{base}-USDC"
            if quote != "USD" or alias in prods:
                continue
            spec = copy.deepcopy(prods[pid])
            spec.update(quote_currency_id="USDC", quote_name="USDC", alias=pid, alias_to=[])
            prods[alias] = spec
            prods[pid]["alias_to"] = [alias]

    def _alias_partners(self, pid: str) -> list[str]:
        spec = self._st["products"].get(pid, {})
        out = list(spec.get("alias_to") or [])
        if spec.get("alias"):
            target = spec["alias"]
            out.append(target)
            out += [p for p in self._st["products"].get(target, {}).get("alias_to") or [] if p != pid]
        return out

    # ---- product modes

    def _mode_refusal(self, body: dict, spec: dict, side: str, kind: str, params: dict) -> dict | None:
        if spec.get("status", "online") != "online" or any(spec.get(m) for m in _MODES_NO_ENTRY):
            return self._reject(body, "ORDER_ENTRY_DISABLED", "PREVIEW_UNTRADABLE_PRODUCT",
                                "Order entry is disabled for this product", "ORDER_ENTRY_DISABLED")
        if kind == "market_market_ioc" and (spec.get("limit_only") or spec.get("post_only")):
            # a limit_only / post_only book refuses market orders (Coinbase Pro status notices quoted in
            # coinbasepro-python#347: "Limit orders can be placed and cancelled ... Market orders cannot be
            # submitted"; the Advanced Trade answer shape is GUESS)
            return self._reject(body, "UNSUPPORTED_ORDER_CONFIGURATION", "PREVIEW_INVALID_ORDER_CONFIG",
                                "product is limit only" if spec.get("limit_only") else "product is post only",
                                "UNSUPPORTED_ORDER_CONFIGURATION")
        if kind == "limit_limit_gtc" and spec.get("post_only"):
            try:
                limit = D(params.get("limit_price"))
            except (InvalidOperation, ValueError, TypeError):
                return None
            px = D(self._st["prices"][body["product_id"]])
            if (side == "BUY" and limit >= px) or (side == "SELL" and limit <= px):
                return self._reject(body, "INVALID_LIMIT_PRICE_POST_ONLY",
                                    "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY",
                                    "Limit price would take liquidity on a post-only product",
                                    "INVALID_LIMIT_PRICE_POST_ONLY")
        return None

    # ---- fill reversals and corrections (Advanced Trade "List Fills" fields, e.g. as mirrored in docs.rs
    # coinbase-v3 Fill: trade_type "Regular fills have the value FILL. Adjusted fills have possible values
    # REVERSAL, CORRECTION, SYNTHETIC"; trade_id "unique for all FILL trade_types but not unique for adjusted
    # fills"). GUESS: a correction is published as a REVERSAL of the original then a CORRECTION carrying the
    # corrected size/price, both with the original trade_id; balances move accordingly.

    def reverse_fill(self, trade_id: str) -> list[dict]:
        """The venue reverses a fill: a REVERSAL row with the same trade_id; balances restored."""
        return self._adjust_fill(trade_id, None, None, correct=False)

    def correct_fill(self, trade_id: str, size: Any = None, price: Any = None) -> list[dict]:
        """The venue corrects a fill: REVERSAL of the original, then CORRECTION with the new size/price."""
        return self._adjust_fill(trade_id, size, price, correct=True)

    def _adjust_fill(self, trade_id: str, size: Any, price: Any, *, correct: bool) -> list[dict]:
        with self._lock:
            orig = next((f for f in self._st["fills"]
                         if f["trade_id"] == trade_id and f["trade_type"] == "FILL"), None)
            if orig is None:
                raise KeyError(f"no FILL with trade_id {trade_id}")
            out = [self._post_adjustment(orig, "REVERSAL", D(orig["size"]), D(orig["price"]), -1)]
            if correct:
                new_size = D(orig["size"]) if size is None else D(size)
                new_price = D(orig["price"]) if price is None else D(price)
                out.append(self._post_adjustment(orig, "CORRECTION", new_size, new_price, +1))
            self._save()
            return out

    def _post_adjustment(self, orig: dict, trade_type: str, size: Decimal, price: Decimal, sign: int) -> dict:
        o = self._find_order(orig["order_id"])
        spec = self._st["products"][orig["product_id"]]
        base_cur, quote_cur = spec["base_currency_id"], spec["quote_currency_id"]
        with localcontext(_CTX):
            old_value = D(orig["size"]) * D(orig["price"])
            value = size * price
            fee = D(orig["commission"]) * value / old_value if old_value else Decimal(0)
            s = Decimal(sign)
            if orig["side"] == "BUY":
                self._add(quote_cur, available=-s * (value + fee))
                self._add(base_cur, available=s * size)
            else:
                self._add(base_cur, available=-s * size)
                self._add(quote_cur, available=s * (value - fee))
            if o is not None:
                o["filled_size"] = fmt(D(o["filled_size"]) + s * size)
                o["filled_value"] = fmt(D(o["filled_value"]) + s * value)
                o["total_fees"] = fmt(D(o["total_fees"]) + s * fee)
        self._st["seq"] += 1
        row = dict(orig, entry_id=str(uuid.uuid4()), trade_type=trade_type, size=fmt(size), price=fmt(price),
                   commission=fmt(fee), trade_time=iso(), sequence_timestamp=iso(), _seq=self._st["seq"])
        self._st["fills"].append(row)
        return {k: v for k, v in row.items() if not k.startswith("_")}

    # ---- CANCEL_QUEUED (Advanced Trade order `status` values: PENDING, OPEN, FILLED, CANCELLED, EXPIRED,
    # FAILED, UNKNOWN_ORDER_STATUS, QUEUED, CANCEL_QUEUED, as mirrored verbatim in client SDK types). With
    # ``cancel_queued=True`` a cancel is accepted as CANCEL_QUEUED (pending_cancel true, still live): the next
    # market event (set_price/tick) may fill it; if it does not, it becomes CANCELLED.

    def _queue_cancel(self, o: dict) -> dict:
        o["status"] = "CANCEL_QUEUED"
        o["pending_cancel"] = True
        o["_cancel_epoch"] = self._st["epoch"]
        return {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": o["order_id"]}

    def _finish_queued_cancels(self) -> bool:
        changed = False
        for o in self._st["orders"]:
            if o["status"] == "CANCEL_QUEUED" and self._st["epoch"] > o.get("_cancel_epoch", -1):
                o["status"] = "OPEN"      # _cancel releases the hold of an OPEN order
                self._cancel(o["order_id"], queue=False)
                o["pending_cancel"] = False
                changed = True
        return changed

    # ---- fee tier (Advanced Trade "Get Transaction Summary": fee_tier {pricing_tier, usd_from, usd_to,
    # taker_fee_rate, maker_fee_rate, aop_from, aop_to}; coinbase-advanced-py fees_types.py)

    def _fee_tier(self) -> dict:
        return {"pricing_tier": self.pricing_tier, "usd_from": fmt(D(self.fee_tier_usd_from)),
                "usd_to": fmt(D(self.fee_tier_usd_to)), "taker_fee_rate": fmt(D(self.fee_rate)),
                "maker_fee_rate": fmt(D(self.maker_fee_rate)), "aop_from": "", "aop_to": ""}

    # ---- orders the user placed by hand (Advanced Trade "List Orders" lists every order of the portfolio;
    # SPEC section 17: their client ids lack Parity's "p-" prefix)

    def add_user_order(self, product_id: str, side: str, base_size: Any, limit_price: Any,
                       client_order_id: str | None = None) -> dict:
        """A resting GTC limit order placed by hand (venue rules apply). Returns the create-order answer."""
        body = {"client_order_id": client_order_id or str(uuid.uuid4()), "product_id": product_id,
                "side": side, "order_configuration": {"limit_limit_gtc": {"base_size": fmt(D(base_size)),
                                                            "limit_price": fmt(D(limit_price)),
                                                            "post_only": False}}}
        with self._lock:
            return self.h_create_order({}, body)[1]


# --------------------------------------------------------------------------------------------- server

class CoinbaseServer(_VenueBehaviours):
    """Local Coinbase Advanced Trade venue (see module docstring).

    Balances, prices and sizes are kept as ``Decimal``; the wire format uses strings, except the
    portfolio breakdown ``spot_positions`` numbers, which are JSON numbers as in production.
    """

    _stream = None   # streaming: the user/heartbeats WebSocket (tests/servers/coinbase_stream.py), on use

    # attributes settable at runtime (also through POST /_admin/config)
    CONFIG_KEYS = (
        "fee_rate", "maker_fee_rate", "fill_slippage_bps", "partial_fill_fraction",
        "private_rate_limit", "public_rate_limit", "rate_limit_window", "max_candles",
        "candle_end_inclusive", "enforce_min_notional", "jwt_leeway", "max_jwt_lifetime",
        "synthetic_candles",
        # venue behaviours (issue 12)
        "cancel_queued", "throttle_as_401", "pricing_tier", "fee_tier_usd_from", "fee_tier_usd_to",
        "key_can_trade",
    )

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        api_key_name: str | None = None,
        public_key_pem: str | None = None,
        private_key_pem: str | None = None,
        extra_keys: dict[str, str] | None = None,
        cash_usd: float | str | Decimal = 100_000.0,
        balances: dict[str, Any] | None = None,
        prices: dict[str, Any] | None = None,
        products: dict[str, dict[str, Any]] | None = None,
        account_currencies: Iterable[str] | None = None,
        fee_rate: float = 0.006,
        maker_fee_rate: float = 0.004,
        fill_slippage_bps: float = 0.0,
        partial_fill_fraction: float | None = None,
        private_rate_limit: int | None = 30,
        public_rate_limit: int | None = 10,
        rate_limit_window: float = 1.0,
        max_candles: int = 350,
        candle_end_inclusive: bool = False,
        synthetic_candles: bool = True,
        enforce_min_notional: bool = True,
        jwt_leeway: float = 5.0,
        max_jwt_lifetime: int = 120,
        state_path: str | None = None,
        cert_dir: str | None = None,
        cert_path: str | None = None,
        key_path: str | None = None,
        usdc_aliases: bool = True,
        cancel_queued: bool = False,
        throttle_as_401: bool = False,
        pricing_tier: str = "Advanced 1",
        fee_tier_usd_from: Any = "0",
        fee_tier_usd_to: Any = "10000",
        key_can_trade: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        # --- credentials
        if public_key_pem is None and private_key_pem is not None:
            public_key_pem = certs.public_pem_of(private_key_pem)
        if public_key_pem is None:
            k = certs.generate_cdp_key(api_key_name or certs.DEFAULT_KEY_NAME)
            public_key_pem, private_key_pem = k.public_pem, k.private_pem
        self.api_key_name = api_key_name or certs.DEFAULT_KEY_NAME
        self.private_key_pem = private_key_pem       # None if the caller only gave the public key
        self._keys: dict[str, Any] = {}
        for name, pem in {self.api_key_name: public_key_pem, **(extra_keys or {})}.items():
            self._keys[name] = serialization.load_pem_public_key(pem.encode())
        # --- TLS
        if cert_path and key_path:
            self.cert_path, self.key_path = cert_path, key_path
        elif cert_dir:
            self.cert_path, self.key_path = certs.ensure_cert(cert_dir)
        else:
            self.cert_path, self.key_path = certs.generate_cert()
        # --- config
        self.fee_rate = fee_rate
        self.maker_fee_rate = maker_fee_rate
        self.fill_slippage_bps = fill_slippage_bps
        self.partial_fill_fraction = partial_fill_fraction
        self.private_rate_limit = private_rate_limit
        self.public_rate_limit = public_rate_limit
        self.rate_limit_window = rate_limit_window
        self.max_candles = max_candles
        self.candle_end_inclusive = candle_end_inclusive
        self.synthetic_candles = synthetic_candles
        self.enforce_min_notional = enforce_min_notional
        self.jwt_leeway = jwt_leeway
        self.max_jwt_lifetime = max_jwt_lifetime
        self.state_path = state_path
        # venue behaviours (issue 12, see _VenueBehaviours)
        self.usdc_aliases = usdc_aliases            # X-USDC products aliasing X-USD
        self.cancel_queued = cancel_queued          # cancels answer CANCEL_QUEUED until the next market event
        self.throttle_as_401 = throttle_as_401      # rate limiting answered 401 "Unauthorized" (P)
        self.pricing_tier = pricing_tier
        self.fee_tier_usd_from = fee_tier_usd_from
        self.fee_tier_usd_to = fee_tier_usd_to
        # a CDP key is created "View" only unless Trade is ticked ("Get API Key Permissions": can_view,
        # can_trade, can_transfer); such a key's orders and cancels are answered 401 Unauthorized
        # (Coinbase.AdvancedTrade#23: "by default has Read only access ... The API call returns Unauthorized")
        self.key_can_trade = key_can_trade
        # --- state
        self._lock = threading.RLock()
        self._initial = self._make_initial_state(cash_usd, balances, prices, products, account_currencies)
        self._st: dict[str, Any] = copy.deepcopy(self._initial)
        if state_path and os.path.exists(state_path):
            self._load_state(state_path)
        self._requests: list[RequestRecord] = []
        self._injections: list[Injection] = []
        self._rejections: list[dict] = []
        self._kills: list[dict] = []
        self._private_rl = _RateWindow()
        self._public_rl = _RateWindow()
        self._httpd: _HTTPSServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "CoinbaseServer":
        if self._httpd is not None:
            return self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        httpd = _HTTPSServer((self.host, self._requested_port), _Handler, ctx, self)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"coinbase-server-{httpd.server_address[1]}", daemon=True)
        self._thread.start()
        self._requested_port = httpd.server_address[1]     # a restart binds the same port
        return self

    def stop(self) -> None:
        if self._stream is not None:   # streaming
            self._stream.stop()
            self._stream = None
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_all_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> "CoinbaseServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- streaming (tests/servers/coinbase_stream.py): the user-order WebSocket beside the REST API

    @property
    def stream(self):
        """The ``wss://`` user/heartbeats WebSocket of this venue (started on first use, stopped by ``stop``)."""
        if self._stream is None:
            from tests.servers.coinbase_stream import CoinbaseStreamServer

            self._stream = CoinbaseStreamServer(self).start()
        return self._stream

    @property
    def stream_url(self) -> str:
        """``wss://127.0.0.1:PORT``: the ``base_url`` of the SDK's ``WSUserClient``/``WSClient``."""
        return self.stream.url

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._requested_port
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``host:port`` as the SDK wants it (it prepends ``https://`` itself)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.base_url}"

    def rest_client(self, **kwargs):
        """A real ``coinbase.rest.RESTClient`` for this server, trusting its cert."""
        from coinbase.rest import RESTClient

        if self.private_key_pem is None:
            raise RuntimeError("server was built from a public key only; pass your own credentials")
        kwargs.setdefault("timeout", 5)
        client = RESTClient(api_key=self.api_key_name, api_secret=self.private_key_pem,
                            base_url=self.base_url, **kwargs)
        trust(client, self.cert_path)
        return client

    def key(self) -> certs.CdpKey:
        if self.private_key_pem is None:
            raise RuntimeError("private key unknown")
        return certs.CdpKey(self.api_key_name, self.private_key_pem,
                            certs.public_pem_of(self.private_key_pem))

    # ------------------------------------------------------------------ state construction / persistence

    def _make_initial_state(self, cash_usd, balances, prices, products, account_currencies) -> dict:
        prods = copy.deepcopy(DEFAULT_PRODUCTS) if products is None else {}
        for pid, spec in (products or {}).items():
            base = copy.deepcopy(DEFAULT_PRODUCTS.get(pid, DEFAULT_PRODUCTS["BTC-USD"]))
            base.update({k: (fmt(v) if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)
                             else v) for k, v in spec.items()})
            prods[pid] = base
        if self.usdc_aliases:
            self._add_usdc_aliases(prods)  # venue behaviour: BTC-USDC aliases BTC-USD
        for pid, spec in prods.items():
            self._complete_product(pid, spec)
        currencies = list(DEFAULT_ACCOUNT_CURRENCIES if account_currencies is None else account_currencies)
        for spec in prods.values():
            for c in (spec["base_currency_id"], spec["quote_currency_id"]):
                if c not in currencies:
                    currencies.append(c)
        bals = {"USD": D(cash_usd)}
        for c, v in (balances or {}).items():
            bals[c] = D(v)
            if c not in currencies:
                currencies.append(c)
        now = time.time()
        accounts = {}
        for c in sorted(set(currencies)):
            accounts[c] = {"available": fmt(bals.get(c, Decimal(0))), "hold": "0",
                           "cost_basis": fmt(bals.get(c, Decimal(0))) if c in FIAT else "0",
                           "created_at": iso(now)}
        px = {pid: fmt(D(v)) for pid, v in DEFAULT_PRICES.items() if pid in prods}
        for pid, v in (prices or {}).items():
            px[pid] = fmt(D(v))
        for pid, spec in prods.items():  # an alias shares its target's price
            if spec.get("alias") and spec["alias"] in px:
                px[pid] = px[spec["alias"]]
        return {
            "version": 1,
            "user_id": str(uuid.uuid5(_NS, "user")),
            "portfolio_uuid": str(uuid.uuid5(_NS, "portfolio:default")),
            "accounts": accounts,
            "products": prods,
            "prices": px,
            "orders": [],
            "fills": [],
            "candles": {},
            "epoch": 0,
            "seq": 0,
            "vaults": {},
        }

    @staticmethod
    def _complete_product(pid: str, spec: dict) -> None:
        base, quote = pid.split("-", 1)
        spec.setdefault("base_currency_id", base)
        spec.setdefault("quote_currency_id", quote)
        spec.setdefault("base_name", base)
        spec.setdefault("quote_name", "US Dollar" if quote == "USD" else quote)
        for k, v in (("base_increment", "0.00000001"), ("quote_increment", "0.01"),
                     ("price_increment", "0.01"), ("base_min_size", "0.00000001"),
                     ("base_max_size", "1000000000"), ("quote_min_size", "1"),
                     ("quote_max_size", "1000000000")):
            spec.setdefault(k, v)
        for k in ("is_disabled", "cancel_only", "limit_only", "post_only", "trading_disabled",
                  "auction_mode", "view_only", "new", "watched"):
            spec.setdefault(k, False)
        spec.setdefault("status", "online")
        spec.setdefault("alias", "")
        spec.setdefault("alias_to", [])

    def _load_state(self, path: str) -> None:
        with open(path) as f:
            st = json.load(f)
        if st.get("version") != 1:
            raise ValueError(f"{path}: unknown state version {st.get('version')!r}")
        self._st = st

    def _save(self) -> None:
        """Persist atomically (tmp file + os.replace) when a state_path is configured."""
        if self._stream is not None:   # streaming: publish what changed
            self._stream.on_change()
        if not self.state_path:
            return
        d = os.path.dirname(os.path.abspath(self.state_path)) or "."
        tmp = os.path.join(
            d, f".{os.path.basename(self.state_path)}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as f:
            json.dump(self._st, f)
            f.flush()
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------------ test-facing API

    def set_price(self, product_id: str, price: Any) -> None:
        """Set the market price. Resting limit orders are matched on ``tick()`` or the next request."""
        with self._lock:
            if product_id not in self._st["products"]:
                raise KeyError(product_id)
            self._st["prices"][product_id] = fmt(D(price))
            for other in self._alias_partners(product_id):  # venue behaviour: aliases share one book
                self._st["prices"][other] = self._st["prices"][product_id]
            self._st["epoch"] += 1
            self._save()

    def price(self, product_id: str) -> Decimal:
        with self._lock:
            return D(self._st["prices"][product_id])

    def tick(self) -> None:
        """A market event: match resting limit orders against the current prices now."""
        with self._lock:
            self._st["epoch"] += 1
            self._match()
            self._save()

    def set_balance(self, currency: str, available: Any, hold: Any = None) -> None:
        with self._lock:
            acct = self._account(currency, create=True)
            acct["available"] = fmt(D(available))
            if hold is not None:
                acct["hold"] = fmt(D(hold))
            if currency in FIAT:
                acct["cost_basis"] = fmt(D(acct["available"]) + D(acct["hold"]))
            self._save()

    def set_product(self, product_id: str, **fields: Any) -> None:
        """Add a product or change its rules/flags (e.g. ``trading_disabled=True``)."""
        with self._lock:
            spec = self._st["products"].setdefault(product_id, {})
            for k, v in fields.items():
                spec[k] = fmt(v) if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) else v
            self._complete_product(product_id, spec)
            for c in (spec["base_currency_id"], spec["quote_currency_id"]):
                self._account(c, create=True)
            self._st["prices"].setdefault(product_id, "1")
            self._save()

    def set_candles(self, product_id: str, candles: Iterable[Any], granularity: str = "ONE_DAY") -> None:
        """Candles as dicts ``{start, open, high, low, close, volume}`` or tuples in that order;
        ``start`` in unix seconds (int/str) or a datetime. Replaces that product+granularity set."""
        if granularity not in GRANULARITY_SECONDS:
            raise ValueError(f"unknown granularity {granularity!r}")
        out = {}
        for c in candles:
            if isinstance(c, dict):
                start = c["start"]
                vals = (c["open"], c["high"], c["low"], c["close"], c.get("volume", 0))
            else:
                start, *vals = c
                if len(vals) == 4:
                    vals.append(0)
            if isinstance(start, _dt.datetime):
                start = start.timestamp()
            start = int(float(start))
            o, h, lo, cl, v = (fmt(D(x)) for x in vals)
            out[str(start)] = {"start": str(start), "low": lo, "high": h, "open": o, "close": cl,
                               "volume": v}
        with self._lock:
            self._st["candles"].setdefault(product_id, {})[granularity] = out
            self._save()

    def inject(self, kind: str, path_prefix: str | None = None, method: str | None = None,
               count: int | None = 1, *, path: str | None = None, seconds: float = 1.0,
               pid: int | None = None, skip: int = 0, arm: dict | None = None) -> Injection:
        """Arm a fault for the next ``count`` matching requests (``count=None``: until cleared).

        ``path_prefix``/``path`` may be full (``/api/v3/brokerage/orders``) or relative to the API
        (``/orders``); ``path`` matches exactly, ``path_prefix`` as a prefix. Kinds: ``429`` (HTML
        body), ``500``/``502``/``503``/``504`` (JSON), ``503_html``, ``401_throttle`` (plain
        ``Unauthorized``), ``drop_before`` (close, nothing processed), ``drop_after`` (process, then
        close without an answer), ``delay`` (sleep ``seconds`` then process), ``delay_after``
        (process, sleep, then answer), ``kill_client_before`` (SIGKILL the client process ``pid`` when
        the request arrives, close, nothing processed) and ``kill_client_after`` (process and persist,
        SIGKILL ``pid``, close without an answer): a client crash at a precise moment.

        Timing: ``skip`` lets that many matching requests through first; ``arm`` =
        ``{"method", "path_prefix" or "path" (exact), "count"}`` keeps the fault dormant until ``count`` requests
        matching it have arrived (counted before the request being matched). Kills are listed by
        ``kills()`` (``GET /_admin/kills``).
        """
        if kind not in INJECT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {INJECT_KINDS}")
        if kind.startswith("kill_client") and not pid:
            raise ValueError(f"{kind} needs the pid of the client to kill")
        arm = arm or {}
        inj = Injection(kind=kind, path_prefix=_api_path(path_prefix), path=_api_path(path),
                        method=method.upper() if method else None, count=count, seconds=float(seconds),
                        pid=int(pid) if pid else None, skip=int(skip),
                        arm_method=arm.get("method"), arm_path_prefix=_api_path(arm.get("path_prefix")),
                        arm_path=_api_path(arm.get("path")), arm_count=int(arm.get("count", 0) or 0))
        with self._lock:
            self._injections.append(inj)
        return inj

    def kills(self) -> list[dict]:
        """Client kills done by kill_client_* faults: {kind, pid, method, path, time}, oldest first."""
        with self._lock:
            return [dict(k) for k in self._kills]

    def _kill_client(self, inj: Injection, method: str, path: str) -> None:
        """SIGKILL the client and wait until it is gone (or a zombie), so nothing else of it runs."""
        pid = int(inj.pid or 0)
        with self._lock:
            self._kills.append({"kind": inj.kind, "pid": pid, "method": method, "path": path,
                                "time": time.time()})
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_dead(pid)

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """Every API request received (admin calls excluded), oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def orders(self, *, client_order_id: str | None = None, product_id: str | None = None,
               status: str | None = None) -> list[dict]:
        """Orders as ``GET /orders/historical/{id}`` shows them, oldest first."""
        with self._lock:
            return [self._order_view(o) for o in self._st["orders"]
                    if (client_order_id is None or o["client_order_id"] == client_order_id)
                    and (product_id is None or o["product_id"] == product_id)
                    and (status is None or o["status"] == status)]

    def count_orders(self, *, client_order_id: str | None = None, product_id: str | None = None,
                     status: str | None = None) -> int:
        return len(self.orders(client_order_id=client_order_id, product_id=product_id, status=status))

    def fills(self, order_id: str | None = None) -> list[dict]:
        with self._lock:
            return [dict(f) for f in self._st["fills"] if order_id is None or f["order_id"] == order_id]

    def rejections(self) -> list[dict]:
        """Create-order answers with ``success: false`` (rejected orders are not stored as orders)."""
        with self._lock:
            return list(self._rejections)

    def balances(self) -> dict[str, tuple[float, float]]:
        """currency -> (available, hold) as floats: USD, every product currency and anything held."""
        wanted = set()
        with self._lock:
            for spec in self._st["products"].values():
                wanted.update((spec["base_currency_id"], spec["quote_currency_id"]))
            out = {}
            for c, a in self._st["accounts"].items():
                if c in wanted or D(a["available"]) != 0 or D(a["hold"]) != 0:
                    out[c] = (float(D(a["available"])), float(D(a["hold"])))
            return out

    def balance(self, currency: str) -> tuple[Decimal, Decimal]:
        """Exact (available, hold)."""
        with self._lock:
            a = self._st["accounts"].get(currency)
            return (D(a["available"]), D(a["hold"])) if a else (Decimal(0), Decimal(0))

    def reset(self) -> None:
        """Back to the constructor's state: balances, prices, products; no orders, fills, candles,
        requests, injections or rate-limit history. Keys, cert and config attributes stay."""
        with self._lock:
            self._st = copy.deepcopy(self._initial)
            self._requests.clear()
            self._injections.clear()
            self._rejections.clear()
            self._kills.clear()
            self._private_rl.clear()
            self._public_rl.clear()
            self._save()

    def configure(self, **kw: Any) -> None:
        for k, v in kw.items():
            if k not in self.CONFIG_KEYS:
                raise KeyError(f"not a config key: {k}")
            setattr(self, k, v)

    # ------------------------------------------------------------------ accounts

    def _account(self, currency: str, create: bool = False) -> dict:
        a = self._st["accounts"].get(currency)
        if a is None:
            if not create:
                raise KeyError(currency)
            a = self._st["accounts"][currency] = {"available": "0", "hold": "0", "cost_basis": "0",
                                                  "created_at": iso()}
        return a

    def _add(self, currency: str, available: Decimal = Decimal(0), hold: Decimal = Decimal(0)) -> None:
        a = self._account(currency, create=True)
        with localcontext(_CTX):
            a["available"] = fmt(D(a["available"]) + available)
            a["hold"] = fmt(D(a["hold"]) + hold)

    def _account_uuid(self, currency: str) -> str:
        return str(uuid.uuid5(_NS, "account:" + currency))

    def _account_view(self, currency: str) -> dict:
        a = self._st["accounts"][currency]
        fiat = currency in FIAT
        return {
            "uuid": self._account_uuid(currency),
            "name": f"{currency} Wallet",
            "currency": currency,
            "available_balance": {"value": a["available"], "currency": currency},
            "default": True,
            "active": True,
            "created_at": a["created_at"],
            "updated_at": a["created_at"],
            "deleted_at": None,
            "type": "ACCOUNT_TYPE_FIAT" if fiat else "ACCOUNT_TYPE_CRYPTO",
            "ready": True,
            "hold": {"value": a["hold"], "currency": currency},
            "retail_portfolio_id": self._st["portfolio_uuid"],
            "platform": "ACCOUNT_PLATFORM_CONSUMER",
        }

    def _usd_value(self, currency: str, amount: Decimal) -> Decimal:
        if currency in FIAT or currency in STABLE_AT_PAR:  # venue behaviour: no USDC-USD product, USDC at par
            return amount
        px = self._st["prices"].get(f"{currency}-USD")
        return amount * D(px) if px is not None else Decimal(0)

    # ------------------------------------------------------------------ orders: placement

    def _reject(self, body: dict, error: str, preview: str, message: str = "",
                new_order: str = "UNKNOWN_FAILURE_REASON") -> dict:
        resp = {
            "success": False,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": "",
            "error_response": {"error": error, "message": message, "error_details": "",
                               "preview_failure_reason": preview,
                               "new_order_failure_reason": new_order},
            "order_configuration": body.get("order_configuration") or {},
        }
        self._rejections.append({"client_order_id": body.get("client_order_id"), **resp})
        return resp

    @staticmethod
    def _parse_order_body(body: Any, *, need_client_id: bool) -> tuple[str, str, str, str, dict]:
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object")
        for k in (("client_order_id",) if need_client_id else ()) + ("product_id", "side",
                                                                       "order_configuration"):
            if k not in body or body[k] in (None, ""):
                raise bad_request(f"missing required field {k}")
        if need_client_id and not isinstance(body["client_order_id"], str):
            raise bad_request("client_order_id must be a string")
        if not isinstance(body["product_id"], str):
            raise bad_request("product_id must be a string")
        side = body["side"]
        if side not in ("BUY", "SELL"):
            # gRPC-gateway enum parsing failure -> 400 (GUESS: could also be INVALID_SIDE / 200)
            raise bad_request(f'invalid value for enum type: "{side}"')
        cfg = body["order_configuration"]
        if not isinstance(cfg, dict) or len(cfg) != 1:
            raise bad_request("order_configuration must hold exactly one configuration")
        (kind, params), = cfg.items()
        if not isinstance(params, dict):
            raise bad_request(f"order_configuration.{kind} must be an object")
        return body.get("client_order_id", ""), body["product_id"], side, kind, params

    def _num(self, params: dict, key: str, required: bool = True) -> Decimal | None:
        v = params.get(key)
        if v is None or v == "":
            if required:
                raise bad_request(f"missing required field {key}")
            return None
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise bad_request(f"{key} must be a decimal string")
        try:
            d = D(v)
        except (InvalidOperation, ValueError):
            raise bad_request(f"{key}: invalid decimal {v!r}") from None
        if not d.is_finite():
            raise bad_request(f"{key}: invalid decimal {v!r}")
        return d

    def _fill_price(self, pid: str, side: str) -> Decimal:
        spec = self._st["products"][pid]
        px = D(self._st["prices"][pid])
        slip = D(self.fill_slippage_bps) / Decimal(10_000)
        with localcontext(_CTX):
            if side == "BUY":
                return _quant(px * (1 + slip), D(spec["price_increment"]), ROUND_UP)
            return _quant(px * (1 - slip), D(spec["price_increment"]), ROUND_DOWN)

    def _check(self, body: dict, pid: str, side: str, kind: str, params: dict) -> tuple[dict | None, dict]:
        """Validate business rules. Returns (rejection or None, parsed sizes)."""
        spec = self._st["products"].get(pid)
        if spec is None:
            return self._reject(body, "INVALID_PRODUCT_ID", "PREVIEW_INVALID_PRODUCT_ID",
                                "Invalid product_id", "INVALID_PRODUCT_ID"), {}
        mode = self._mode_refusal(body, spec, side, kind, params)  # venue behaviour: product modes
        if mode is not None:
            return mode, {}
        if kind == "trigger_bracket_gtc":   # protective exits: tests/servers/coinbase_brackets.py (sources there)
            return coinbase_brackets.check(self, body, pid, side, params, spec)
        if kind not in ("market_market_ioc", "limit_limit_gtc"):
            return self._reject(body, "UNSUPPORTED_ORDER_CONFIGURATION", "PREVIEW_INVALID_ORDER_CONFIG",
                                f"{kind} is not supported by the local test server",
                                "UNSUPPORTED_ORDER_CONFIGURATION"), {}
        bi, qi, pi = D(spec["base_increment"]), D(spec["quote_increment"]), D(spec["price_increment"])
        sizes: dict[str, Any] = {}
        if kind == "market_market_ioc":
            quote = self._num(params, "quote_size", required=False)
            base = self._num(params, "base_size", required=False)
            if (quote is None) == (base is None):
                raise bad_request("market_market_ioc needs exactly one of quote_size or base_size")
            sizes.update(quote=quote, base=base)
        else:
            base = self._num(params, "base_size")
            limit = self._num(params, "limit_price")
            post_only = params.get("post_only", False)
            if not isinstance(post_only, bool):
                raise bad_request("post_only must be a boolean")
            sizes.update(quote=None, base=base, limit=limit, post_only=post_only)
            if limit <= 0:
                return self._reject(body, "INVALID_LIMIT_PRICE", "PREVIEW_INVALID_LIMIT_PRICE",
                                    "Invalid limit price", "INVALID_LIMIT_PRICE"), sizes
            if not _is_multiple(limit, pi):
                return self._reject(body, "INVALID_PRICE_PRECISION", "PREVIEW_INVALID_PRICE_PRECISION",
                                    "Invalid price precision", "INVALID_PRICE_PRECISION"), sizes
        quote, base = sizes["quote"], sizes["base"]
        if quote is not None:
            if quote <= 0 or quote < D(spec["quote_min_size"]):
                return self._reject(body, "UNKNOWN_FAILURE_REASON", "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL",
                                    "", "UNKNOWN_FAILURE_REASON"), sizes
            if not _is_multiple(quote, qi):
                return self._reject(body, "INVALID_SIZE_PRECISION", "PREVIEW_INVALID_QUOTE_SIZE_PRECISION",
                                    "Invalid order size precision", "INVALID_SIZE_PRECISION"), sizes
            if quote > D(spec["quote_max_size"]):
                return self._reject(body, "UNKNOWN_FAILURE_REASON", "PREVIEW_INVALID_QUOTE_SIZE_TOO_LARGE",
                                    "", "UNKNOWN_FAILURE_REASON"), sizes
        else:
            if base <= 0 or base < D(spec["base_min_size"]):
                return self._reject(body, "UNKNOWN_FAILURE_REASON", "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL",
                                    "", "UNKNOWN_FAILURE_REASON"), sizes
            if not _is_multiple(base, bi):
                return self._reject(body, "INVALID_SIZE_PRECISION", "PREVIEW_INVALID_SIZE_PRECISION",
                                    "Invalid order size precision", "INVALID_SIZE_PRECISION"), sizes
            if base > D(spec["base_max_size"]):
                return self._reject(body, "UNKNOWN_FAILURE_REASON", "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE",
                                    "", "UNKNOWN_FAILURE_REASON"), sizes
            ref = sizes.get("limit") or D(self._st["prices"][pid])
            if self.enforce_min_notional and base * ref < D(spec["quote_min_size"]):
                return self._reject(body, "UNKNOWN_FAILURE_REASON", "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL",
                                    "", "UNKNOWN_FAILURE_REASON"), sizes
        if kind == "limit_limit_gtc" and sizes["post_only"]:
            px = D(self._st["prices"][pid])
            if (side == "BUY" and sizes["limit"] >= px) or (side == "SELL" and sizes["limit"] <= px):
                return self._reject(body, "INVALID_LIMIT_PRICE_POST_ONLY",
                                    "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY",
                                    "Limit price would take liquidity on a post-only order",
                                    "INVALID_LIMIT_PRICE_POST_ONLY"), sizes
        # funds
        base_cur, quote_cur = spec["base_currency_id"], spec["quote_currency_id"]
        q_avail = D(self._account(quote_cur, create=True)["available"])
        b_avail = D(self._account(base_cur, create=True)["available"])
        fee = D(self.fee_rate)
        with localcontext(_CTX):
            if kind == "market_market_ioc":
                fpx = self._fill_price(pid, side)
                if side == "BUY":
                    need = quote if quote is not None else base * fpx * (1 + fee)
                    short = need > q_avail
                else:
                    need = base if base is not None else quote / fpx
                    short = need > b_avail
            else:
                if side == "BUY":
                    short = base * sizes["limit"] * (1 + fee) > q_avail
                else:
                    short = base > b_avail
        if short:
            return self._reject(body, "INSUFFICIENT_FUND", "PREVIEW_INSUFFICIENT_FUND",
                                "Insufficient balance in source account"), sizes
        return None, sizes

    def _new_order(self, cid: str, pid: str, side: str, kind: str, params: dict, sizes: dict) -> dict:
        now = time.time()
        self._st["seq"] += 1
        market = kind == "market_market_ioc"
        cfg_params = {k: v for k, v in params.items()}
        o = {
            "order_id": str(uuid.uuid4()),
            "product_id": pid,
            "user_id": self._st["user_id"],
            "order_configuration": {kind: cfg_params},
            "side": side,
            "client_order_id": cid,
            "status": "PENDING",
            "time_in_force": "IMMEDIATE_OR_CANCEL" if market else "GOOD_UNTIL_CANCELLED",
            "created_time": iso(now),
            "completion_percentage": "0",
            "filled_size": "0",
            "average_filled_price": "0",
            "fee": "",
            "number_of_fills": "0",
            "filled_value": "0",
            "pending_cancel": False,
            "size_in_quote": sizes.get("quote") is not None,
            "total_fees": "0",
            "size_inclusive_of_fees": sizes.get("quote") is not None and side == "BUY",
            "total_value_after_fees": "0",
            "trigger_status": "INVALID_ORDER_TYPE",
            "order_type": "MARKET" if market else "LIMIT",
            "reject_reason": "REJECT_REASON_UNSPECIFIED",
            "settled": False,
            "product_type": "SPOT",
            "reject_message": "",
            "cancel_message": "",
            "order_placement_source": "RETAIL_ADVANCED",
            "outstanding_hold_amount": "0",
            "is_liquidation": False,
            "last_fill_time": None,
            "edit_history": [],
            "leverage": "",
            "margin_type": "UNKNOWN_MARGIN_TYPE",
            "retail_portfolio_id": self._st["portfolio_uuid"],
            "originating_order_id": "",
            "attached_order_id": "",
            "attached_order_configuration": None,
            # private bookkeeping (never on the wire)
            "_seq": self._st["seq"],
            "_ts": now,
            "_last_fill_epoch": -1,
            "_hold_currency": "",
        }
        self._st["orders"].append(o)
        return o

    def _record_fill(self, o: dict, size: Decimal, price: Decimal, value: Decimal, commission: Decimal,
                     liquidity: str) -> None:
        now = time.time()
        self._st["seq"] += 1
        with localcontext(_CTX):
            filled = D(o["filled_size"]) + size
            fvalue = D(o["filled_value"]) + value
            fees = D(o["total_fees"]) + commission
        spec = self._st["products"][o["product_id"]]
        o["filled_size"] = fmt(filled)
        o["filled_value"] = fmt(fvalue)
        o["total_fees"] = fmt(fees)
        o["total_value_after_fees"] = fmt(fvalue + fees if o["side"] == "BUY" else fvalue - fees)
        o["number_of_fills"] = str(int(o["number_of_fills"]) + 1)
        with localcontext(_CTX):
            avg = _quant(fvalue / filled, D(spec["price_increment"]), ROUND_DOWN) if filled else Decimal(0)
        o["average_filled_price"] = fmt(avg)
        o["last_fill_time"] = iso(now)
        self._st["fills"].append({
            "entry_id": str(uuid.uuid4()),
            "trade_id": str(uuid.uuid4()),
            "order_id": o["order_id"],
            "trade_time": iso(now),
            "trade_type": "FILL",
            "price": fmt(price),
            "size": fmt(size),
            "commission": fmt(commission),
            "product_id": o["product_id"],
            "sequence_timestamp": iso(now),
            "liquidity_indicator": liquidity,
            "size_in_quote": o["size_in_quote"],
            "user_id": self._st["user_id"],
            "side": o["side"],
            "retail_portfolio_id": self._st["portfolio_uuid"],
            "_seq": self._st["seq"],
        })

    def _adjust_cost_basis(self, currency: str, cost: Decimal = Decimal(0),
                           sold: Decimal = Decimal(0)) -> None:
        a = self._account(currency, create=True)
        with localcontext(_CTX):
            cb = D(a.get("cost_basis", "0"))
            if sold:
                total_before = D(a["available"]) + D(a["hold"]) + sold
                cb = cb * (1 - sold / total_before) if total_before > 0 else Decimal(0)
            cb += cost
            a["cost_basis"] = fmt(_quant(cb, Q16) if cb else cb)

    def _execute_market(self, o: dict, sizes: dict) -> None:
        pid, side = o["product_id"], o["side"]
        spec = self._st["products"][pid]
        base_cur, quote_cur = spec["base_currency_id"], spec["quote_currency_id"]
        fpx = self._fill_price(pid, side)
        rate = D(self.fee_rate)
        quote, base = sizes["quote"], sizes["base"]
        with localcontext(_CTX):
            if side == "BUY":
                if quote is not None:            # fees inside quote_size
                    fee = _quant(quote * rate / (1 + rate), Q16)
                    value = quote - fee
                    size = _quant(value / fpx, Q16)
                else:
                    size, value = base, base * fpx
                    fee = value * rate
                self._add(quote_cur, available=-(value + fee))
                self._add(base_cur, available=size)
                self._adjust_cost_basis(base_cur, cost=value + fee)
            else:
                if quote is not None:
                    value = quote
                    size = _quant(quote / fpx, Q16)
                else:
                    size, value = base, base * fpx
                fee = value * rate
                self._add(base_cur, available=-size)
                self._adjust_cost_basis(base_cur, sold=size)
                self._add(quote_cur, available=value - fee)
        self._record_fill(o, size, fpx, value, fee, "TAKER")
        o["status"] = "FILLED"
        o["completion_percentage"] = "100"
        o["settled"] = True

    def _place_limit(self, o: dict, sizes: dict) -> None:
        spec = self._st["products"][o["product_id"]]
        base, limit = sizes["base"], sizes["limit"]
        with localcontext(_CTX):
            if o["side"] == "BUY":
                cur = spec["quote_currency_id"]
                hold = base * limit * (1 + D(self.fee_rate))
            else:
                cur = spec["base_currency_id"]
                hold = base
        self._add(cur, available=-hold, hold=hold)
        o["_hold_currency"] = cur
        o["outstanding_hold_amount"] = fmt(hold)
        o["status"] = "OPEN"
        self._match_order(o, taker=True)

    def _crossed(self, o: dict) -> bool:
        px = D(self._st["prices"][o["product_id"]])
        limit = D(o["order_configuration"]["limit_limit_gtc"]["limit_price"])
        return px <= limit if o["side"] == "BUY" else px >= limit

    def _match_order(self, o: dict, taker: bool = False) -> None:
        if o["status"] not in ("OPEN", "CANCEL_QUEUED") or o["order_type"] != "LIMIT" or not self._crossed(o):
            return
        if o["_last_fill_epoch"] == self._st["epoch"]:
            return                                  # at most one fill per market event
        spec = self._st["products"][o["product_id"]]
        cfg = o["order_configuration"]["limit_limit_gtc"]
        total, limit = D(cfg["base_size"]), D(cfg["limit_price"])
        bi = D(spec["base_increment"])
        remaining = total - D(o["filled_size"])
        if remaining <= 0:
            return
        frac = self.partial_fill_fraction
        with localcontext(_CTX):
            if frac is not None and 0 < frac < 1:
                size = max(_quant(total * D(frac), bi), bi)
                size = min(size, remaining)
            else:
                size = remaining
            if taker:    # crossed on arrival: taker at the (better) market price
                fpx = self._fill_price(o["product_id"], o["side"])
                price = min(fpx, limit) if o["side"] == "BUY" else max(fpx, limit)
                rate = D(self.fee_rate)
            else:        # resting order reached by the market: maker at its limit
                price, rate = limit, D(self.maker_fee_rate)
            value = size * price
            fee = value * rate
            last = size == remaining
            base_cur, quote_cur = spec["base_currency_id"], spec["quote_currency_id"]
            outstanding = D(o["outstanding_hold_amount"])
            if o["side"] == "BUY":
                release = outstanding if last else min(outstanding, size * limit * (1 + D(self.fee_rate)))
                self._add(quote_cur, available=release - value - fee, hold=-release)
                self._add(base_cur, available=size)
                self._adjust_cost_basis(base_cur, cost=value + fee)
            else:
                release = outstanding if last else min(outstanding, size)
                self._add(base_cur, available=release - size, hold=-release)
                self._adjust_cost_basis(base_cur, sold=size)
                self._add(quote_cur, available=value - fee)
            o["outstanding_hold_amount"] = fmt(outstanding - release)
        o["_last_fill_epoch"] = self._st["epoch"]
        self._record_fill(o, size, price, value, fee, "TAKER" if taker else "MAKER")
        with localcontext(_CTX):
            pct = D(o["filled_size"]) / total * 100
        o["completion_percentage"] = fmt(pct.quantize(Decimal("0.01")))
        if last:
            o["status"] = "FILLED"
            o["settled"] = True

    def _match(self) -> bool:
        changed = False
        for o in self._st["orders"]:
            if o["status"] in ("OPEN", "CANCEL_QUEUED"):  # venue behaviour: CANCEL_QUEUED is still live
                n = o["number_of_fills"]
                if o["order_type"] == "BRACKET":
                    coinbase_brackets.match(self, o)
                else:
                    self._match_order(o)
                changed |= n != o["number_of_fills"]
        changed |= self._finish_queued_cancels()
        return changed

    def _cancel(self, oid: str, queue: bool = True) -> dict:
        o = self._find_order(oid)
        if o is None:
            return {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": oid}
        if queue and self.cancel_queued and o["status"] == "OPEN":
            return self._queue_cancel(o)  # venue behaviour: CANCEL_QUEUED
        if o["status"] != "OPEN":
            # GUESS on the enum value for an order that is already done
            return {"success": False, "failure_reason": "INVALID_CANCEL_REQUEST", "order_id": oid}
        outstanding = D(o["outstanding_hold_amount"])
        if outstanding:
            self._add(o["_hold_currency"], available=outstanding, hold=-outstanding)
        o["outstanding_hold_amount"] = "0"
        o["status"] = "CANCELLED"
        o["cancel_message"] = "User requested cancel"
        o["settled"] = True
        return {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": oid}

    def _find_order(self, oid: str) -> dict | None:
        for o in self._st["orders"]:
            if o["order_id"] == oid:
                return o
        return None

    def _find_cid(self, cid: str) -> dict | None:
        for o in self._st["orders"]:
            if o["client_order_id"] == cid:
                return o
        return None

    @staticmethod
    def _order_view(o: dict) -> dict:
        return {k: copy.deepcopy(v) for k, v in o.items() if not k.startswith("_")}

    @staticmethod
    def _success(o: dict) -> dict:
        return {
            "success": True,
            "failure_reason": "UNKNOWN_FAILURE_REASON",
            "order_id": o["order_id"],
            "success_response": {"order_id": o["order_id"], "product_id": o["product_id"],
                                 "side": o["side"], "client_order_id": o["client_order_id"]},
            "order_configuration": copy.deepcopy(o["order_configuration"]),
        }

    # ------------------------------------------------------------------ request handlers (under lock)

    def h_create_order(self, q, body) -> tuple[int, Any]:
        cid, pid, side, kind, params = self._parse_order_body(body, need_client_id=True)
        existing = self._find_cid(cid)
        if existing is not None:                     # duplicate client_order_id -> existing order
            return 200, self._success(existing)
        rejection, sizes = self._check(body, pid, side, kind, params)
        if rejection is not None:
            return 200, rejection
        o = self._new_order(cid, pid, side, kind, params, sizes)
        if kind == "market_market_ioc":
            self._execute_market(o, sizes)
        elif kind == "trigger_bracket_gtc":
            coinbase_brackets.place(self, o, sizes)
        else:
            self._place_limit(o, sizes)
        self._save()
        return 200, self._success(o)

    def h_preview(self, q, body) -> tuple[int, Any]:
        _, pid, side, kind, params = self._parse_order_body(body, need_client_id=False)
        n_rej = len(self._rejections)
        rejection, sizes = self._check(body, pid, side, kind, params)
        del self._rejections[n_rej:]                 # previews are not order attempts
        spec = self._st["products"].get(pid)
        resp: dict[str, Any] = {"order_total": "0", "commission_total": "0", "errs": [], "warning": [],
                                "quote_size": "0", "base_size": "0", "best_bid": "0", "best_ask": "0",
                                "is_max": False, "order_margin_total": "0", "leverage": "1",
                                "long_leverage": "1", "short_leverage": "1", "slippage": "0",
                                "preview_id": str(uuid.uuid4())}
        if spec is not None:
            resp["best_bid"] = fmt(self._fill_price(pid, "SELL"))
            resp["best_ask"] = fmt(self._fill_price(pid, "BUY"))
            resp["slippage"] = fmt(D(self.fill_slippage_bps) / Decimal(10_000))
        if rejection is not None:
            resp["errs"] = [rejection["error_response"]["preview_failure_reason"]]
        if spec is None or not sizes:
            return 200, resp
        rate = D(self.fee_rate)
        with localcontext(_CTX):
            if kind == "market_market_ioc":
                fpx = self._fill_price(pid, side)
                quote, base = sizes["quote"], sizes["base"]
                if quote is not None and side == "BUY":
                    fee = _quant(quote * rate / (1 + rate), Q16)
                    value, size, total = quote - fee, _quant((quote - fee) / fpx, Q16), quote
                elif quote is not None:
                    value, size = quote, _quant(quote / fpx, Q16)
                    fee = value * rate
                    total = value - fee
                else:
                    size, value = base, base * fpx
                    fee = value * rate
                    total = value + fee if side == "BUY" else value - fee
            else:
                size, value = sizes["base"], sizes["base"] * sizes["limit"]
                fee = value * rate
                total = value + fee if side == "BUY" else value - fee
        resp.update(order_total=fmt(total), commission_total=fmt(fee), quote_size=fmt(value),
                    base_size=fmt(size))
        return 200, resp

    def h_list_orders(self, q, body) -> tuple[int, Any]:
        ids = set(q.get("order_ids", []))
        pids = set(q.get("product_ids", []))
        statuses = set(q.get("order_status", []))
        side = _one(q, "order_side")
        start, end = _one(q, "start_date"), _one(q, "end_date")
        t0 = _parse_iso(start) if start else None
        t1 = _parse_iso(end) if end else None
        limit = _int(q, "limit", 100, lo=1, hi=1000)     # default/max: GUESS
        offset = _cursor(q)
        rows = [o for o in reversed(self._st["orders"])   # newest first
                if (not ids or o["order_id"] in ids) and (not pids or o["product_id"] in pids)
                and (not statuses or o["status"] in statuses) and (not side or o["side"] == side)
                and (t0 is None or o["_ts"] >= t0) and (t1 is None or o["_ts"] <= t1)]
        page = rows[offset:offset + limit]
        has_next = offset + limit < len(rows)
        return 200, {"orders": [self._order_view(o) for o in page], "sequence": "0",
                     "has_next": has_next, "cursor": str(offset + limit) if has_next else ""}

    def h_get_order(self, q, body, oid) -> tuple[int, Any]:
        o = self._find_order(oid)
        if o is None:
            raise not_found("order with this orderID was not found")
        return 200, {"order": self._order_view(o)}

    def h_cancel(self, q, body) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("order_ids"), list) or not body["order_ids"]:
            raise bad_request("order_ids must be a non-empty list")
        if len(body["order_ids"]) > 100:
            raise bad_request("too many order_ids (max 100)")      # GUESS
        results = [self._cancel(str(oid)) for oid in body["order_ids"]]
        self._save()
        return 200, {"results": results}

    def h_fills(self, q, body) -> tuple[int, Any]:
        ids = set(q.get("order_ids", []))
        pids = set(q.get("product_ids", []))
        tids = set(q.get("trade_ids", []))
        limit = _int(q, "limit", 100, lo=1, hi=1000)
        offset = _cursor(q)
        rows = [f for f in reversed(self._st["fills"])
                if (not ids or f["order_id"] in ids) and (not pids or f["product_id"] in pids)
                and (not tids or f["trade_id"] in tids)]
        page = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return 200, {"fills": [{k: v for k, v in f.items() if not k.startswith("_")} for f in page],
                     "cursor": str(offset + limit) if more else ""}

    def h_accounts(self, q, body) -> tuple[int, Any]:
        limit = _int(q, "limit", 49, lo=1, hi=250)
        offset = _cursor(q)
        views = self._all_account_views()  # venue behaviour: vault accounts are listed too
        page = views[offset:offset + limit]
        has_next = offset + limit < len(views)
        return 200, {"accounts": page, "has_next": has_next,
                     "cursor": str(offset + limit) if has_next else "", "size": len(page)}

    def h_account(self, q, body, acct_uuid) -> tuple[int, Any]:
        for v in self._all_account_views():
            if v["uuid"] == acct_uuid:
                return 200, {"account": v}
        raise not_found("account not found")

    def _portfolio(self) -> dict:
        return {"name": "Default", "uuid": self._st["portfolio_uuid"], "type": "DEFAULT", "deleted": False}

    def h_portfolios(self, q, body) -> tuple[int, Any]:
        ptype = _one(q, "portfolio_type")
        ports = [self._portfolio()] if ptype in (None, "", "DEFAULT", "UNDEFINED") else []
        return 200, {"portfolios": ports}

    def h_breakdown(self, q, body, puuid) -> tuple[int, Any]:
        if puuid != self._st["portfolio_uuid"]:
            raise not_found("portfolio not found")
        ccy = _one(q, "currency") or "USD"
        rows = []
        cash = crypto = Decimal(0)
        with localcontext(_CTX):
            for c in sorted(self._st["accounts"]):
                a = self._st["accounts"][c]
                avail, hold = D(a["available"]), D(a["hold"])
                total = avail + hold
                if total == 0:
                    continue
                value = self._usd_value(c, total)
                if c in FIAT or c in STABLE_AT_PAR:  # GUESS: stablecoins count as cash equivalents
                    cash += value
                else:
                    crypto += value
                rows.append((c, a, avail, total, value))
            grand = cash + crypto
            positions = []
            for c, a, avail, total, value in rows:
                is_cash = c in FIAT
                cb = D(a.get("cost_basis", "0")) if not is_cash else total
                px = D(self._st["prices"].get(f"{c}-USD", "1")) if not is_cash else Decimal(1)
                positions.append({
                    "asset": c,
                    "account_uuid": self._account_uuid(c),
                    "total_balance_fiat": float(value),
                    "total_balance_crypto": float(total),
                    "available_to_trade_fiat": float(self._usd_value(c, avail)),
                    "allocation": float(value / grand) if grand else 0.0,
                    "cost_basis": {"value": fmt(_quant(cb, Decimal("0.01"))), "currency": ccy},
                    "asset_img_url": "",
                    "is_cash": is_cash,
                    "average_entry_price": {"value": fmt(_quant(cb / total, Decimal("0.01")) if total else 0),
                                            "currency": ccy},
                    "asset_uuid": str(uuid.uuid5(_NS, "asset:" + c)),
                    "available_to_trade_crypto": float(avail),
                    "unrealized_pnl": 0.0 if is_cash else float(value - cb),
                    "available_to_transfer_fiat": float(self._usd_value(c, avail)),
                    "available_to_transfer_crypto": float(avail),
                    "asset_color": "",
                    "account_type": "ACCOUNT_TYPE_FIAT" if is_cash else "ACCOUNT_TYPE_CRYPTO",
                    "funding_pnl": 0.0,
                    "price": float(px),
                })

        def amt(v: Decimal) -> dict:
            return {"value": fmt(_quant(v, Decimal("0.01"))) if v else "0", "currency": ccy}

        return 200, {"breakdown": {
            "portfolio": self._portfolio(),
            "portfolio_balances": {
                "total_balance": amt(grand),
                "total_futures_balance": amt(Decimal(0)),
                "total_cash_equivalent_balance": amt(cash),
                "total_crypto_balance": amt(crypto),
                "futures_unrealized_pnl": amt(Decimal(0)),
                "perp_unrealized_pnl": amt(Decimal(0)),
            },
            "spot_positions": positions,
            "perp_positions": [],
            "futures_positions": [],
        }}

    def _product_view(self, pid: str) -> dict:
        s = self._st["products"][pid]
        px = self._st["prices"].get(pid, "0")
        return {
            "product_id": pid, "price": px, "price_percentage_change_24h": "0", "volume_24h": "0",
            "volume_percentage_change_24h": "0",
            "base_increment": s["base_increment"], "quote_increment": s["quote_increment"],
            "quote_min_size": s["quote_min_size"], "quote_max_size": s["quote_max_size"],
            "base_min_size": s["base_min_size"], "base_max_size": s["base_max_size"],
            "base_name": s["base_name"], "quote_name": s["quote_name"], "watched": s["watched"],
            "is_disabled": s["is_disabled"], "new": s["new"], "status": s["status"],
            "cancel_only": s["cancel_only"], "limit_only": s["limit_only"], "post_only": s["post_only"],
            "trading_disabled": s["trading_disabled"], "auction_mode": s["auction_mode"],
            "product_type": "SPOT", "quote_currency_id": s["quote_currency_id"],
            "base_currency_id": s["base_currency_id"], "fcm_trading_session_details": None,
            "mid_market_price": "",
            "base_display_symbol": s["base_currency_id"], "quote_display_symbol": s["quote_currency_id"],
            "view_only": s["view_only"], "price_increment": s["price_increment"],
            "alias": s.get("alias", ""), "alias_to": list(s.get("alias_to") or []),
            "display_name": pid, "product_venue": "CBE", "approximate_quote_24h_volume": "0",
        }

    def h_products(self, q, body) -> tuple[int, Any]:
        pids = q.get("product_ids") or sorted(self._st["products"])
        ptype = _one(q, "product_type")
        if ptype and ptype != "SPOT":
            pids = []
        pids = [p for p in pids if p in self._st["products"]]
        offset = _int(q, "offset", 0, lo=0, hi=10**9)
        limit = _int(q, "limit", len(pids) or 1, lo=1, hi=10**6)
        page = pids[offset:offset + limit]
        return 200, {"products": [self._product_view(p) for p in page], "num_products": len(page)}

    def h_product(self, q, body, pid) -> tuple[int, Any]:
        if pid not in self._st["products"]:
            raise not_found(f"ProductID {pid} could not be found")
        return 200, self._product_view(pid)

    def h_candles(self, q, body, pid) -> tuple[int, Any]:
        if pid not in self._st["products"]:
            raise not_found(f"ProductID {pid} could not be found")
        start, end, gran = _one(q, "start"), _one(q, "end"), _one(q, "granularity")
        if not start or not end:
            raise bad_request("start and end are required (unix seconds)")
        if gran not in GRANULARITY_SECONDS:
            raise bad_request(f"invalid granularity {gran!r}")
        try:
            s, e = int(start), int(end)
        except ValueError:
            raise bad_request("start and end must be unix seconds") from None
        if e < s:
            raise bad_request("start must be before end")
        g = GRANULARITY_SECONDS[gran]
        limit = _int(q, "limit", 0, lo=0, hi=10**9) or None
        n = (e - s) // g
        if n > self.max_candles or (limit is not None and limit > self.max_candles):
            raise bad_request(f"number of candles requested should be less than {self.max_candles}")
        stored = self._st["candles"].get(pid, {}).get(gran)

        def inside(t: int) -> bool:
            return s <= t <= e if self.candle_end_inclusive else s <= t < e

        if stored is not None:
            rows = [c for t, c in stored.items() if inside(int(t))]
        elif self.synthetic_candles:
            rows = [_synthetic_candle(pid, t, g, D(self._st["prices"][pid]))
                    for t in range(-(-s // g) * g, e + 1, g) if inside(t)]
        else:
            rows = []
        rows.sort(key=lambda c: int(c["start"]), reverse=True)      # newest first
        if limit is not None:
            rows = rows[:limit]
        return 200, {"candles": rows}

    def h_time(self, q, body) -> tuple[int, Any]:
        now = time.time()
        return 200, {"iso": iso(now), "epochSeconds": str(int(now)), "epochMillis": str(int(now * 1000))}

    def h_best_bid_ask(self, q, body) -> tuple[int, Any]:
        pids = q.get("product_ids") or sorted(self._st["products"])
        books = []
        for p in pids:
            if p not in self._st["products"]:  # venue behaviour (GUESS on the exact answer): unknown product
                raise not_found(f"ProductID {p} could not be found")
            books.append({"product_id": p,
                          "bids": [{"price": fmt(self._fill_price(p, "SELL")), "size": "1"}],
                          "asks": [{"price": fmt(self._fill_price(p, "BUY")), "size": "1"}],
                          "time": iso()})
        return 200, {"pricebooks": books}

    def h_transaction_summary(self, q, body) -> tuple[int, Any]:
        vol = sum((D(f["price"]) * D(f["size"]) for f in self._st["fills"]), Decimal(0))
        fees = sum((D(f["commission"]) for f in self._st["fills"]), Decimal(0))
        return 200, {
            "total_volume": float(vol), "total_fees": float(fees),
            "fee_tier": self._fee_tier(),  # venue behaviour: configurable tier
            "margin_rate": None, "goods_and_services_tax": None,
            "advanced_trade_only_volumes": float(vol), "advanced_trade_only_fees": float(fees),
            "coinbase_pro_volume": 0.0, "coinbase_pro_fees": 0.0, "total_balance": "", "has_promo_fee": False,
        }

    def h_key_permissions(self, q, body) -> tuple[int, Any]:
        """Advanced Trade "Get API Key Permissions" (coinbase-advanced-py ``GetAPIKeyPermissionsResponse``)."""
        return 200, {"can_view": True, "can_trade": bool(self.key_can_trade), "can_transfer": False,
                     "portfolio_uuid": self._st["portfolio_uuid"], "portfolio_type": "DEFAULT"}

    # ------------------------------------------------------------------ admin (standalone control)

    def h_admin(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        b = body if isinstance(body, dict) else {}
        sub = path[len(ADMIN):]
        if method == "GET" and sub == "/orders":
            return 200, {"orders": self.orders()}
        if method == "GET" and sub == "/fills":
            return 200, {"fills": self.fills()}
        if method == "GET" and sub == "/balances":
            with self._lock:
                return 200, {"balances": {c: {"available": a["available"], "hold": a["hold"]}
                                          for c, a in self._st["accounts"].items()}}
        if method == "GET" and sub == "/requests":
            return 200, {"requests": [{"method": r.method, "path": r.path, "query": r.query, "body": r.body,
                                       "status": r.status, "fault": r.fault, "time": r.time}
                                      for r in self.requests]}
        if method == "GET" and sub == "/rejections":
            return 200, {"rejections": self.rejections()}
        if method == "GET" and sub == "/kills":
            return 200, {"kills": self.kills()}
        if method == "GET" and sub == "/health":
            return 200, {"ok": True, "base_url": self.base_url}
        if method != "POST":
            raise not_found("unknown admin endpoint")
        if sub == "/price":
            self.set_price(b["product_id"], b["price"])
        elif sub == "/tick":
            self.tick()
        elif sub == "/balance":
            self.set_balance(b["currency"], b["available"], b.get("hold"))
        elif sub == "/product":
            self.set_product(b.pop("product_id"), **b)
        elif sub == "/candles":
            self.set_candles(b["product_id"], b["candles"], b.get("granularity", "ONE_DAY"))
        elif sub == "/inject":
            self.inject(b["kind"], b.get("path_prefix"), b.get("method"), b.get("count", 1),
                        path=b.get("path"), seconds=b.get("seconds", 1.0), pid=b.get("pid"),
                        skip=b.get("skip", 0), arm=b.get("arm"))
        elif sub == "/clear_injections":
            self.clear_injections()
        elif sub == "/config":
            self.configure(**b)
        elif sub == "/reset":
            self.reset()
        elif sub == "/clear_requests":
            self.clear_requests()
        elif sub == "/vault":  # venue behaviours (issue 12)
            self.add_vault(b["currency"], b["amount"])
        elif sub == "/user_order":
            return 200, self.add_user_order(b["product_id"], b["side"], b["base_size"], b["limit_price"],
                                            b.get("client_order_id"))
        elif sub == "/reverse_fill":
            return 200, {"fills": self.reverse_fill(b["trade_id"])}
        elif sub == "/correct_fill":
            return 200, {"fills": self.correct_fill(b["trade_id"], b.get("size"), b.get("price"))}
        else:
            raise not_found("unknown admin endpoint")
        return 200, {"ok": True}

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, path: str):
        """-> (handler, args, public?) or None."""
        if not path.startswith(API + "/"):
            return None
        p = path[len(API):]
        parts = [x for x in p.split("/") if x]
        if method == "GET":
            if parts == ["time"]:
                return self.h_time, (), True
            if parts[:2] == ["market", "products"]:
                if len(parts) == 2:
                    return self.h_products, (), True
                if len(parts) == 3:
                    return self.h_product, (parts[2],), True
                if len(parts) == 4 and parts[3] == "candles":
                    return self.h_candles, (parts[2],), True
                return None
            if parts == ["accounts"]:
                return self.h_accounts, (), False
            if len(parts) == 2 and parts[0] == "accounts":
                return self.h_account, (parts[1],), False
            if parts == ["portfolios"]:
                return self.h_portfolios, (), False
            if len(parts) == 2 and parts[0] == "portfolios":
                return self.h_breakdown, (parts[1],), False
            if parts == ["orders", "historical", "batch"]:
                return self.h_list_orders, (), False
            if parts == ["orders", "historical", "fills"]:
                return self.h_fills, (), False
            if len(parts) == 3 and parts[:2] == ["orders", "historical"]:
                return self.h_get_order, (parts[2],), False
            if parts == ["products"]:
                return self.h_products, (), False
            if len(parts) == 2 and parts[0] == "products":
                return self.h_product, (parts[1],), False
            if len(parts) == 3 and parts[0] == "products" and parts[2] == "candles":
                return self.h_candles, (parts[1],), False
            if parts == ["best_bid_ask"]:
                return self.h_best_bid_ask, (), False
            if parts == ["transaction_summary"]:
                return self.h_transaction_summary, (), False
            if parts == ["key_permissions"]:
                return self.h_key_permissions, (), False
        elif method == "POST":
            if parts == ["orders"]:
                return self.h_create_order, (), False
            if parts == ["orders", "preview"]:
                return self.h_preview, (), False
            if parts == ["orders", "batch_cancel"]:
                return self.h_cancel, (), False
        return None

    def _verify_jwt(self, auth: str | None, method: str, host: str, path: str) -> str | None:
        """Return the API key name if the Bearer JWT is valid for this request, else None."""
        if not auth or not auth.startswith("Bearer "):
            return None
        token = auth[len("Bearer "):].strip()
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            pub = self._keys.get(kid)
            if pub is None:
                return None
            alg = "EdDSA" if isinstance(pub, ed25519.Ed25519PublicKey) else "ES256"
            if not isinstance(pub, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
                return None
            if header.get("alg") != alg:
                return None
            claims = jwt.decode(token, pub, algorithms=[alg], issuer="cdp", leeway=self.jwt_leeway,
                                options={"require": ["exp", "nbf", "sub", "iss"]})
        except jwt.PyJWTError:
            return None
        if claims.get("sub") != kid:
            return None
        if int(claims["exp"]) - int(claims["nbf"]) > self.max_jwt_lifetime:
            return None
        if claims.get("uri") != f"{method} {host}{path}":
            return None
        return kid

    def _take_injection(self, method: str, path: str) -> Injection | None:
        hit = None
        with self._lock:
            for inj in list(self._injections):
                if hit is None and inj.matches(method, path) and inj.arm_seen >= inj.arm_count:
                    if inj.skip > 0:
                        inj.skip -= 1
                    else:
                        inj.hits += 1
                        if inj.count is not None:
                            inj.count -= 1
                            if inj.count <= 0:
                                self._injections.remove(inj)
                        hit = inj
                if inj.arms_on(method, path):
                    inj.arm_seen += 1
        return hit


def _wait_dead(pid: int, timeout: float = 5.0) -> None:
    """Wait until ``pid`` no longer runs (gone, or a zombie waiting for its parent)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return
        except (OSError, IndexError):
            return
        time.sleep(0.001)


def _one(q: dict, key: str) -> str | None:
    v = q.get(key)
    return v[-1] if v else None


def _int(q: dict, key: str, default: int, lo: int, hi: int) -> int:
    v = _one(q, key)
    if v in (None, ""):
        return default
    try:
        n = int(v)
    except ValueError:
        raise bad_request(f"{key} must be an integer") from None
    if n < lo:
        raise bad_request(f"{key} must be >= {lo}")
    return min(n, hi)


def _cursor(q: dict) -> int:
    v = _one(q, "cursor")
    if not v:
        return 0
    try:
        n = int(v)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise bad_request("invalid cursor") from None


def _synthetic_candle(pid: str, t: int, g: int, price: Decimal) -> dict:
    """Deterministic candle around ``price`` (a slow wave), so fetch code has data by default."""
    phase = (sum(map(ord, pid)) % 97) / 97.0
    f = 1 + 0.05 * math.sin(t / (g * 20.0) + phase * 6.283)
    o = float(price) * f
    c = float(price) * (1 + 0.05 * math.sin((t + g) / (g * 20.0) + phase * 6.283))
    h, lo = max(o, c) * 1.002, min(o, c) * 0.998
    return {"start": str(t), "low": f"{lo:.2f}", "high": f"{h:.2f}", "open": f"{o:.2f}",
            "close": f"{c:.2f}", "volume": f"{100 + (t // g) % 50}.5"}


def trust(client, cert_path: str) -> None:
    """Make a RESTClient (or a requests.Session) trust ``cert_path`` despite REQUESTS_CA_BUNDLE."""
    session = getattr(client, "session", client)
    session.trust_env = False          # else REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE win over .verify
    session.verify = cert_path


# --------------------------------------------------------------------------------------------- HTTP layer

class _HTTPSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, ctx: ssl.SSLContext, app: CoinbaseServer):
        self.app = app
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise
        # handshake in the handler thread (do_handshake_on_connect=False), never in accept()
        self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request, client_address) -> None:     # quiet
        log.debug("connection error from %s", client_address, exc_info=True)

    def track(self, conn, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def setup(self) -> None:
        super().setup()                        # applies self.timeout to the socket
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.connection.do_handshake()         # raises on a client that rejects the cert: quiet
        self.server.track(self.connection, True)

    def version_string(self) -> str:
        return "cloudflare"

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format, *args) -> None:      # quiet
        log.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # --------------------------------------------------------------

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, payload: Any = None, *, text: str | None = None,
              content_type: str | None = None, headers: dict | None = None) -> None:
        data = text.encode() if text is not None else json.dumps(payload).encode()
        if content_type is None:
            content_type = "text/plain; charset=utf-8" if text is not None else "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        # headers + body in ONE write: separate writes stall ~40 ms on Nagle/delayed ACK
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(data)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self, method: str) -> None:
        app: CoinbaseServer = self.server.app
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        raw = self._read_body()
        body: Any = None
        body_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, body_error = raw.decode("utf-8", "replace"), True

        if path.startswith(ADMIN + "/"):
            try:
                status, payload = app.h_admin(method, path, body)
            except ApiError as e:
                self._send(e.status, text=e.body().decode(), content_type=e.content_type)
                return
            except (KeyError, TypeError, ValueError) as e:
                self._send(400, {"error": "INVALID_ARGUMENT", "message": str(e), "error_details": str(e)})
                return
            self._send(status, payload)
            return

        rec = RequestRecord(method=method, path=path, query=query, body=body,
                            headers={k: v for k, v in self.headers.items()}, time=time.time())
        with app._lock:
            app._requests.append(rec)

        inj = app._take_injection(method, path)
        after: Injection | None = None
        if inj is not None:
            rec.fault = inj.kind
            k = inj.kind
            if k == "kill_client_before":
                app._kill_client(inj, method, path)
                self._drop()
                return
            if k == "drop_before":
                self._drop()
                return
            if k == "delay":
                time.sleep(inj.seconds)
            elif k in ("drop_after", "delay_after", "kill_client_after"):
                after = inj
            else:
                self._fault_response(rec, k)
                return

        status, payload, text, ctype, headers = self._process(app, method, path, query, body, body_error)

        if after is not None and after.kind == "kill_client_after":
            app._kill_client(after, method, path)
            self._drop()
            return
        if after is not None and after.kind == "drop_after":
            self._drop()
            return
        if after is not None and after.kind == "delay_after":
            time.sleep(after.seconds)
        rec.status = status
        try:
            self._send(status, payload, text=text, content_type=ctype, headers=headers)
        except OSError:
            pass

    def _fault_response(self, rec: RequestRecord, kind: str) -> None:
        if kind == "429":
            rec.status = 429
            self._send(429, text=HTML_429, content_type="text/html")
        elif kind == "503_html":
            rec.status = 503
            self._send(503, text=HTML_503, content_type="text/html")
        elif kind == "401_throttle":
            rec.status = 401
            self._send(401, text="Unauthorized", content_type="text/plain; charset=utf-8")
        else:
            code = int(kind)
            rec.status = code
            msg = {500: "internal error", 502: "bad gateway", 503: "service unavailable",
                   504: "gateway timeout"}[code]
            err = {500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}[code]
            self._send(code, {"error": err, "error_details": msg, "message": msg})

    def _process(self, app: CoinbaseServer, method, path, query, body, body_error):
        """-> (status, payload, text, content_type, headers)"""
        route = app._route(method, path)
        if route is None:
            return 404, None, "404 page not found", "text/plain; charset=utf-8", {}
        handler, args, public = route
        headers: dict[str, Any] = {}
        if public:
            who = self.client_address[0]
            with app._lock:
                ok, remaining, reset = app._public_rl.hit(who, app.public_rate_limit, app.rate_limit_window)
            limit = app.public_rate_limit
        else:
            host = self.headers.get("Host", "")
            key = app._verify_jwt(self.headers.get("Authorization"), method, host, path)
            if key is None:
                return 401, None, "Unauthorized", "text/plain; charset=utf-8", {}
            with app._lock:
                ok, remaining, reset = app._private_rl.hit(key, app.private_rate_limit,
                                                           app.rate_limit_window)
            limit = app.private_rate_limit
        if limit is not None:
            headers = {"x-ratelimit-limit": limit, "x-ratelimit-remaining": remaining,
                       "x-ratelimit-reset": reset}
        if not ok:
            if app.throttle_as_401:  # venue behaviour (P): coinbase-advanced-py#60, throttling seen as 401
                return 401, None, "Unauthorized", "text/plain; charset=utf-8", headers
            return 429, None, HTML_429, "text/html", headers
        if method == "POST" and not public and not app.key_can_trade:
            # a view-only key may not place or cancel orders (see key_can_trade); a preview is let through (GUESS)
            if path.rstrip("/").split("/")[-1] != "preview":
                return 401, None, "Unauthorized", "text/plain; charset=utf-8", headers
        if method in ("POST", "PUT") and body_error:
            return 400, {"error": "INVALID_ARGUMENT", "error_details": "invalid JSON body",
                         "message": "invalid JSON body"}, None, "application/json", headers
        if method == "GET":
            body = None            # the SDK sends "{}" on GETs; it means nothing
        try:
            with app._lock:
                if app._match():
                    app._save()
                status, payload = handler(query, body, *args)
        except ApiError as e:
            return e.status, None, e.body().decode(), e.content_type, headers
        except Exception as e:                             # a server bug must not look like a hang
            log.exception("handler failed")
            return 500, {"error": "INTERNAL", "error_details": repr(e), "message": "internal error"}, \
                None, "application/json", headers
        return status, payload, None, "application/json", headers


# --------------------------------------------------------------------------------------------- standalone

class StandaloneCoinbaseServer:
    """Run ``python -m tests.servers.coinbase_server`` as a child process and steer it via /_admin.

    ``start()`` waits for the READY line; ``kill()`` sends SIGKILL; ``terminate()`` SIGTERM;
    ``admin(method, sub_path, body)`` calls ``/_admin/<sub_path>``.
    """

    def __init__(self, port: int, state: str, key_file: str, cert_dir: str, *, extra_args: Iterable[str] = (),
                 python: str | None = None, cwd: str | None = None, env: dict | None = None):
        self.port, self.state, self.key_file, self.cert_dir = port, state, key_file, cert_dir
        self.extra_args = list(extra_args)
        self.python = python or sys.executable
        self.cwd = cwd or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.cert_path = os.path.join(cert_dir, certs.CERT_FILE)

    @property
    def base_url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "StandaloneCoinbaseServer":
        cmd = [self.python, "-m", "tests.servers.coinbase_server", "--port", str(self.port),
               "--state", self.state, "--key-file", self.key_file, "--cert-dir", self.cert_dir,
               *self.extra_args]
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        deadline = time.time() + timeout
        assert self.proc.stdout is not None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"coinbase server exited with {self.proc.returncode}")
                continue
            if line.startswith("COINBASE_SERVER_READY"):
                return self
        self.kill()
        raise TimeoutError("coinbase server did not become ready")

    def admin(self, method: str, sub: str, body: Any = None) -> Any:
        import requests

        s = requests.Session()
        trust(s, self.cert_path)
        r = s.request(method, f"https://{self.base_url}{ADMIN}/{sub.lstrip('/')}", json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def kill(self) -> None:
        """SIGKILL (no cleanup in the server: the state file is whatever the last atomic write left)."""
        self._end(signal.SIGKILL)

    def terminate(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()

    def __enter__(self) -> "StandaloneCoinbaseServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.terminate()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.servers.coinbase_server",
                                 description="Local Coinbase Advanced Trade test server (HTTPS).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state",
                    help="JSON state file: loaded at start, rewritten atomically after each change")
    ap.add_argument("--key-file", required=True,
                    help="CDP key_file JSON {name, privateKey}; generated there if missing")
    ap.add_argument("--cert-dir", required=True,
                    help="cert.pem/key.pem reused from here, generated if missing")
    ap.add_argument("--cash-usd", default="100000")
    ap.add_argument("--balance", action="append", default=[], metavar="CUR=AMOUNT")
    ap.add_argument("--price", action="append", default=[], metavar="PRODUCT=PRICE")
    ap.add_argument("--fee-rate", type=float, default=0.006)
    ap.add_argument("--maker-fee-rate", type=float, default=0.004)
    ap.add_argument("--slippage-bps", type=float, default=0.0)
    ap.add_argument("--partial-fill-fraction", type=float, default=None)
    ap.add_argument("--private-rate-limit", type=int, default=30, help="0 = unlimited")
    ap.add_argument("--public-rate-limit", type=int, default=10, help="0 = unlimited")
    ap.add_argument("--ready-file", help="also write 'host:port' here once listening")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING, stream=sys.stderr)
    if os.path.exists(a.key_file):
        key = certs.load_key_file(a.key_file)
    else:
        key = certs.generate_cdp_key()
        certs.write_key_file(a.key_file, key)
    srv = CoinbaseServer(
        a.port, host=a.host, api_key_name=key.name, public_key_pem=key.public_pem,
        private_key_pem=key.private_pem, cash_usd=a.cash_usd,
        balances=dict(x.split("=", 1) for x in a.balance), prices=dict(x.split("=", 1) for x in a.price),
        fee_rate=a.fee_rate, maker_fee_rate=a.maker_fee_rate, fill_slippage_bps=a.slippage_bps,
        partial_fill_fraction=a.partial_fill_fraction,
        private_rate_limit=a.private_rate_limit or None, public_rate_limit=a.public_rate_limit or None,
        state_path=a.state, cert_dir=a.cert_dir,
    )
    srv.start()
    if a.state and not os.path.exists(a.state):
        with srv._lock:
            srv._save()
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(srv.base_url)
        os.replace(tmp, a.ready_file)
    print(f"COINBASE_SERVER_READY {srv.base_url} {srv.cert_path}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
