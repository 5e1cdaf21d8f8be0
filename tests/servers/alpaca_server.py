"""A local Alpaca trading + market-data server that the real alpaca-py SDK talks to over plain HTTP.

Stdlib only. It follows /work/shared/BROKER_API_NOTES.md section 1 (Alpaca); where the notes mark a
fact as GUESS, the behaviour here is configurable or documented below as a guess.

In-process use::

    with AlpacaServer(cash=100_000) as srv:
        tc = TradingClient("test-key", "test-secret", paper=True, url_override=srv.url)
        srv.set_price("AAPL", 190.0)
        srv.inject("504_after_accept", path_prefix="/v2/orders", method="POST")

Standalone (survives the death of its client; ``--state`` makes it survive its own death too)::

    python -m tests.servers.alpaca_server --port 18080 --state /tmp/alpaca_state.json

A test controls a standalone server through ``AlpacaServerControl(url)`` (same method names as
``AlpacaServer``, over the unauthenticated ``/__admin__/call`` endpoint) and can spawn / SIGKILL /
restart it with ``AlpacaServerProcess``.

Fill model (see ``AlpacaServer.__init__``): ``POST /v2/orders`` answers ``pending_new`` with
``filled_qty "0"``; a *fill event* then moves the order on.  Fill events happen
  * ``fill_mode="poll"`` (default): on the k-th and every later GET of that order
    (``GET /v2/orders/{id}``, ``:by_client_order_id`` and, if ``count_list_polls``, ``GET /v2/orders``
    listings that include it), k = ``fill_after_polls`` (default 1: the first GET already sees the fill);
  * ``fill_mode="tick"``: every ``tick_interval`` seconds on a background thread;
  * ``fill_mode="immediate"``: right after the POST response is built (and on every later GET);
  * ``fill_mode="manual"``: only when the test calls ``process_orders()``.
A fill event fills at ``price * (1 +/- fill_slippage_bps/1e4)`` (buys pay up), fills only
``partial_fill_fraction`` of the order on its first fill if that is set, keeps equity orders
``accepted`` while the clock is closed, fills limit orders only once the price crosses, and
cancels unfilled ioc/fok remainders.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import namedtuple
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.servers import alpaca_classes

try:  # New York time for the clock and daily bar stamps
    from zoneinfo import ZoneInfo

    _ET = ZoneInfo("America/New_York")
except Exception:  # pragma: no cover - no tz database
    _ET = timezone(timedelta(hours=-5))

D = Decimal
Q9 = D("0.000000001")
ZERO = D(0)
ONE = D(1)
UTC = timezone.utc
NAMESPACE = uuid.UUID("6c1d7a4e-4a61-4cbb-9f5a-8f0f1b8a0e11")

RequestRecord = namedtuple("RequestRecord", "method path query body")

OPEN_STATUSES = {
    "new", "accepted", "pending_new", "partially_filled", "accepted_for_bidding", "held",
    "pending_cancel", "pending_replace", "pending_review",
}
EQUITY_TIFS = {"day", "gtc", "opg", "cls", "ioc", "fok"}
CRYPTO_TIFS = {"gtc", "ioc", "fok"}
ORDER_TYPES = {"market", "limit", "stop", "stop_limit", "trailing_stop"}
CRYPTO_TYPES = {"market", "limit", "stop_limit"}
FAULT_KINDS = {
    "429", "500", "502", "503", "504", "502_html", "504_html", "504_after_accept",
    "drop_before", "drop_after", "delay", "delay_after", "reject_after_accept",
    "kill_client_before", "kill_client_after",
}

DEFAULT_PRICES = {
    "AAPL": 190.0, "SPY": 470.0, "MSFT": 370.0, "IBM": 160.0, "BAC": 34.0, "AIG": 68.0,
    "BRK.A": 600000.0, "BTC/USD": 45000.0, "ETH/USD": 2300.0, "SOL/USD": 100.0,
}


# --------------------------------------------------------------------------------------------
# small helpers


class ApiError(Exception):
    """An API error answer: HTTP status + JSON body."""

    def __init__(self, status: int, body: Any, headers: Optional[dict] = None):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def _err(status: int, code: int, message: str, **extra) -> ApiError:
    body = {"code": code, "message": message}
    body.update(extra)
    return ApiError(status, body)


def _d(v: Any, field: str = "value") -> Decimal:
    """Decimal from a JSON number/string; 422 on anything else."""
    try:
        if isinstance(v, bool) or v is None:
            raise ValueError
        if isinstance(v, Decimal):
            out = v
        elif isinstance(v, int):
            out = D(v)
        elif isinstance(v, float):
            out = D(repr(v))
        elif isinstance(v, str):
            out = D(v.strip())
        else:
            raise ValueError
        if not out.is_finite():
            raise ValueError
        return out
    except (ValueError, InvalidOperation):
        raise _err(422, 40010001, f"invalid {field}")


def _fmt(v: Optional[Decimal]) -> Optional[str]:
    """Decimal -> Alpaca-style numeric string ("100000", "0.5", "-3.25")."""
    if v is None:
        return None
    q = v.quantize(Q9) if v.as_tuple().exponent < -9 else v
    s = format(q.normalize(), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _decimals(v: Decimal) -> int:
    return max(0, -v.normalize().as_tuple().exponent)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: Optional[datetime]) -> Optional[str]:
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(s: Any, field: str = "timestamp") -> datetime:
    if isinstance(s, datetime):
        dt = s
    elif isinstance(s, date):
        dt = datetime(s.year, s.month, s.day)
    else:
        txt = str(s).strip()
        try:
            if len(txt) == 10:
                dt = datetime.strptime(txt, "%Y-%m-%d")
            else:
                if txt.endswith("Z"):
                    txt = txt[:-1] + "+00:00"
                # fromisoformat copes with at most 6 fractional digits: trim nanoseconds
                if "." in txt:
                    head, rest = txt.split(".", 1)
                    frac = ""
                    i = 0
                    while i < len(rest) and rest[i].isdigit():
                        frac += rest[i]
                        i += 1
                    txt = head + "." + frac[:6].ljust(6, "0") + rest[i:]
                dt = datetime.fromisoformat(txt)
        except ValueError:
            raise _err(422, 40010001, f"invalid {field}: {s}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _bar_ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def _arm(arm: Optional[dict]) -> Optional[dict]:
    """Normalise a fault's arming condition {method, path_prefix, count}."""
    if not arm:
        return None
    return {"method": str(arm["method"]).upper() if arm.get("method") else None,
            "path_prefix": arm.get("path_prefix") or "/", "count": int(arm.get("count", 1))}


def _wait_dead(pid: int, timeout: float = 5.0) -> None:
    """Wait until ``pid`` no longer runs (gone, or a zombie waiting for its parent)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.001)


class _StateEncoder(json.JSONEncoder):
    def default(self, o):  # noqa: D401
        if isinstance(o, Decimal):
            return {"__dec__": str(o)}
        return super().default(o)


def _state_hook(obj: dict):
    if len(obj) == 1 and "__dec__" in obj:
        return D(obj["__dec__"])
    return obj


def make_asset(symbol: str, asset_class: str = "us_equity", *, exchange: Optional[str] = None,
               name: Optional[str] = None, fractionable: bool = True, shortable: Optional[bool] = None,
               easy_to_borrow: Optional[bool] = None, marginable: Optional[bool] = None,
               tradable: bool = True, status: str = "active", min_order_size: Optional[str] = None,
               min_trade_increment: Optional[str] = None, price_increment: Optional[str] = None,
               **extra) -> dict:
    """An asset JSON object as GET /v2/assets returns it (parses with alpaca-py's ``Asset``)."""
    crypto = asset_class == "crypto"
    a = {
        "id": str(uuid.uuid5(NAMESPACE, "asset:" + symbol)),
        "class": asset_class,
        "exchange": exchange or ("CRYPTO" if crypto else "NASDAQ"),
        "symbol": symbol,
        "name": name or (f"{symbol.split('/')[0]} / US Dollar" if crypto else f"{symbol} Test Inc. Common Stock"),
        "status": status,
        "tradable": tradable,
        "marginable": (not crypto) if marginable is None else marginable,
        "maintenance_margin_requirement": 100 if crypto else 30,
        "margin_requirement_long": "100" if crypto else "30",
        "margin_requirement_short": "100",
        "shortable": (not crypto) if shortable is None else shortable,
        "easy_to_borrow": (not crypto) if easy_to_borrow is None else easy_to_borrow,
        "fractionable": fractionable,
        "attributes": ["fractional_eh_enabled"] if (fractionable and not crypto) else [],
    }
    if crypto:
        a["min_order_size"] = min_order_size or "0.0001"
        a["min_trade_increment"] = min_trade_increment or "0.000000001"
        a["price_increment"] = price_increment or "0.01"
    else:
        for k, v in (("min_order_size", min_order_size), ("min_trade_increment", min_trade_increment),
                     ("price_increment", price_increment)):
            if v is not None:
                a[k] = v
    a.update(extra)
    return a


def default_assets() -> List[dict]:
    return [
        make_asset("AAPL", exchange="NASDAQ", name="Apple Inc. Common Stock"),
        make_asset("SPY", exchange="ARCA", name="SPDR S&P 500 ETF Trust"),
        make_asset("MSFT", exchange="NASDAQ", name="Microsoft Corporation Common Stock"),
        make_asset("IBM", exchange="NYSE", name="International Business Machines Corporation Common Stock"),
        make_asset("BAC", exchange="NYSE", name="Bank of America Corporation Common Stock"),
        make_asset("AIG", exchange="NYSE", name="American International Group, Inc. New Common Stock"),
        # the non-fractionable test asset
        make_asset("BRK.A", exchange="NYSE", name="Berkshire Hathaway Inc. Class A", fractionable=False),
        make_asset("BTC/USD", "crypto", name="Bitcoin  / US Dollar", min_order_size="0.0001",
                   min_trade_increment="0.000000001", price_increment="1"),
        make_asset("ETH/USD", "crypto", name="Ethereum  / US Dollar", min_order_size="0.001",
                   min_trade_increment="0.000000001", price_increment="0.1"),
        make_asset("SOL/USD", "crypto", name="Solana  / US Dollar", min_order_size="0.01",
                   min_trade_increment="0.000000001", price_increment="0.01"),
    ]


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: "AlpacaServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AlpacaTestServer/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - silence stdout/stderr by default
        if self.server.app.verbose:
            sys.stderr.write("alpaca_server: " + (format % args) + "\n")

    def setup(self):
        super().setup()
        self.server.app._conn_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.app._conn_closed(self.connection)

    def _go(self):
        self.server.app._handle(self)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _go


# --------------------------------------------------------------------------------------------
# venue behaviours (issue 12): the real Alpaca's rules the first servers did not model.
# Each rule cites the source it was confirmed from; "P" marks a third-party-only report, "GUESS" an
# unconfirmed detail (exact text or status). Switches are constructor/``configure`` knobs or control
# methods (also in ADMIN_METHODS, so they work on a standalone server); defaults are as strict as the
# venue. See docs/venue_behaviours_confirmed.md.

# Crypto fee tiers by 30-day volume, Trading API column, in bps (Alpaca "Crypto Activities / Crypto Fees"
# page, alpaca.markets/docs/crypto/activities): tier 1 = 25 bps ... tier 8 = 8 bps.
CRYPTO_FEE_TIERS_BPS = {1: 25.0, 2: 22.0, 3: 20.0, 4: 18.0, 5: 15.0, 6: 13.0, 7: 10.0, 8: 8.0}
# alpaca-py TradeAccount fields the venue sets on an account (alpaca-py alpaca/trading/models.py TradeAccount)
ACCOUNT_FLAGS = {"status", "crypto_status", "trading_blocked", "account_blocked", "trade_suspended_by_user",
                 "shorting_enabled", "multiplier", "transfers_blocked"}
# Not final, but not "open" in a listing either (GUESS on the listing): alpaca-py OrderStatus docs say a
# done_for_day order "will not receive further updates until the next trading day".
NOT_FINAL_STATUSES = OPEN_STATUSES | {"done_for_day"}


class _VenueBehaviours:
    """Mixed into AlpacaServer: account flags, shorting, wash-trade and buy-floor rules, cancel races,
    fees in the coin with CFEE activities, venue-side replace / done_for_day, fill corrections and busts,
    and orders the user placed by hand."""

    # ---- account flags (alpaca-py TradeAccount: status, crypto_status, trading_blocked, account_blocked,
    # trade_suspended_by_user, shorting_enabled, multiplier; models.py docstrings: "trading_blocked: If true,
    # the account is not allowed to place orders", multiplier 1 = cash account: buying_power = cash)

    def set_account(self, **flags) -> dict:
        """Set account flags, e.g. ``trading_blocked=True``, ``multiplier="1"``, ``status="INACTIVE"``."""
        with self._lock:
            for k, v in flags.items():
                if k not in ACCOUNT_FLAGS:
                    raise ValueError(f"unknown account flag {k!r}; known: {sorted(ACCOUNT_FLAGS)}")
                self._account.setdefault("flags", {})[k] = str(v) if k == "multiplier" else v
            self._mark()
            self._flush()
            return self._account_json()

    def _flag(self, name: str, default: Any) -> Any:
        return self._account.get("flags", {}).get(name, default)

    def _multiplier(self) -> str:
        # An account with shorting enabled is a margin account (Alpaca "Margin and short selling": shorts need
        # margin); ``allow_short`` alone therefore reports multiplier "2" unless set_account says otherwise.
        return str(self._flag("multiplier", "2" if self.allow_short else "1"))

    def _shorting_enabled(self) -> bool:
        return bool(self._flag("shorting_enabled", self.allow_short))

    def _account_flag_fields(self) -> dict:
        # crypto_status: "Only present if crypto trading is enabled for your brokerage account" (alpaca-py
        # TradeAccount docstring): set_account(crypto_status=None) answers null, and crypto orders are refused
        return {
            "status": self._flag("status", "ACTIVE"),
            "crypto_status": self._flag("crypto_status", "ACTIVE"),
            "trading_blocked": bool(self._flag("trading_blocked", False)),
            "account_blocked": bool(self._flag("account_blocked", False)),
            "trade_suspended_by_user": bool(self._flag("trade_suspended_by_user", False)),
            "transfers_blocked": bool(self._flag("transfers_blocked", False)),
            "shorting_enabled": self._shorting_enabled(),
            "multiplier": self._multiplier(),
        }

    def _check_account_can_trade(self, crypto: bool) -> None:
        """A blocked, suspended or inactive account refuses every new order (403 40310000)."""
        if self._flag("account_blocked", False) or self._flag("trading_blocked", False):
            # GUESS on the text; 403 40310000 is Alpaca's forbidden code (BROKER_API_NOTES 1.4)
            raise _err(403, 40310000, "account is not authorized to trade")
        if self._flag("trade_suspended_by_user", False):
            # P: lumibot#373 quotes {"code":40310000,"message":"new orders are rejected by user request"}
            raise _err(403, 40310000, "new orders are rejected by user request")
        status = self._flag("crypto_status" if crypto else "status", "ACTIVE")
        if status != "ACTIVE":
            raise _err(403, 40310000, f"account is not active (status {status})")  # GUESS text

    # ---- shorting (Alpaca "Margin and short selling"; alpaca-py Asset.shortable / easy_to_borrow)

    def _short_refusal(self, a: dict, qty: Decimal | None) -> ApiError | None:
        """Why the venue refuses this short sale (None: it is allowed)."""
        if self._multiplier() == "1" or not self._shorting_enabled():
            # P: alpaca-trade-api-js#57: 403 {"code":40310000,"message":"account is not allowed to short"}
            return _err(403, 40310000, "account is not allowed to short")
        if qty is None or qty != qty.to_integral_value():
            # P: alpaca-trade-api-python#405 quotes "fractional orders are not allowed to short" (status
            # GUESS)
            return _err(403, 40310000, "fractional orders are not allowed to short")
        if not a.get("shortable"):
            return _err(403, 40310000, f"asset {a['symbol']} is not shortable")  # GUESS text
        if not a.get("easy_to_borrow"):
            # Alpaca-API#211: Alpaca does not short hard-to-borrow names at all (text GUESS)
            return _err(403, 40310000, f"asset {a['symbol']} is not easy to borrow")
        return None

    # ---- wash trades (Alpaca "User Protection" page, docs.alpaca.markets/docs/user-protection: "Preventing
    # Wash Trades does apply to crypto trading"; 403 40310000 "potential wash trade detected. use complex
    # orders" quoted on forum.alpaca.markets t/13817; Alpaca-API#82: buy and sell open together are refused)

    def _check_wash_trade(self, a: dict, side: str) -> None:
        if not self.wash_trade_check:
            return
        for o in self._orders.values():
            if o["symbol"] == a["symbol"] and o["side"] != side and o["status"] in NOT_FINAL_STATUSES:
                raise _err(403, 40310000, "potential wash trade detected. use complex orders")

    # ---- crypto buy floor (ccxt PR#30101, a paper-API probe matrix: USD-quoted crypto BUYS below $10 cost
    # basis get 403 {"code":40310000,"message":"cost basis must be >= minimal amount of order 10"};
    # sells below it are accepted; BTC-quoted pairs have no $10 floor) -- P

    def _crypto_buy_floor_applies(self, a: dict) -> bool:
        return a["symbol"].endswith("/USD")

    # ---- crypto fees in the coin (Alpaca "Crypto Fees": "charged on the credited crypto asset/fiat (what
    # you receive)": a BTC/USD buy receives BTC minus the fee; volume tiers; fees are posted as CFEE
    # activities, "calculated and posted end of day", so FILL activities carry no fee)

    def _crypto_fee_bps_now(self) -> float:
        if self.crypto_fee_tier is not None:
            return CRYPTO_FEE_TIERS_BPS[int(self.crypto_fee_tier)]
        return float(self.crypto_fee_bps)

    def _note_crypto_fee(self, a: dict, o: dict, fee_qty: Decimal, currency: str, price: Decimal) -> None:
        if fee_qty <= 0:
            return
        self._account.setdefault("pending_cfee", []).append({
            "symbol": a["symbol"].replace("/", ""), "currency": currency, "qty": fee_qty, "price": price,
            "order_id": o["id"]})

    def post_crypto_fees(self) -> int:
        """End of day: post the day's crypto fees as CFEE activities (``new_day`` calls this).
        Returns how many."""
        with self._lock:
            pending = self._account.pop("pending_cfee", [])
            day = _now().astimezone(_ET).date().isoformat()
            for f in pending:
                # shape of the CFEE example on the "Crypto Fees" page: qty negative in the coin, net_amount 0
                usd = f["currency"] == "USD"
                self._fills.append({
                    "id": f"{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}::{uuid.uuid4()}",
                    "account_id": self._account["id"], "activity_type": "CFEE", "date": day,
                    "net_amount": _fmt(-f["qty"]) if usd else "0",
                    "description": "Coin Pair Transaction Fee (" + ("USD)" if usd else "Non USD)"),
                    "symbol": f["symbol"], "qty": "0" if usd else _fmt(-f["qty"]), "price": _fmt(f["price"]),
                    "status": "executed"})
            self._mark()
            self._flush()
            return len(pending)

    # ---- a cancel can lose the race (Alpaca order lifecycle: pending_cancel is "waiting to be cancelled";
    # trade events order_cancel_rejected with reason TOO_LATE_TO_CANCEL, Alpaca changelog 2026-08-12
    # "reason" on trade events). With async_cancel=True and pending_cancel_fill_prob p, the fill event after
    # a cancel fills the remainder with probability p (if the order could fill now) before it can cancel.

    def _race_fill(self, o: dict) -> bool:
        p = float(self.pending_cancel_fill_prob or 0.0)
        if p <= 0 or self._race_rng.random() >= p:
            return False
        a = self._assets.get(o["symbol"])
        price = self._prices.get(o["symbol"]) if a else None
        if a is None or price is None:
            return False
        if not self._is_crypto(a) and not self._session_open_for(o):
            return False
        buy = o["side"] == "buy"
        if o["type"] in ("stop", "stop_limit") and not o["_stop_triggered"]:
            return False
        if o["type"] in ("limit", "stop_limit"):   # a market order has no limit price: it can always fill
            crossed = price <= o["limit_price"] if buy else price >= o["limit_price"]
            if not crossed:
                return False
        slip = D(str(self.fill_slippage_bps)) / D(10000)
        fp = price * (ONE + slip) if buy else price * (ONE - slip)
        if o["type"] in ("limit", "stop_limit"):
            fp = min(fp, o["limit_price"]) if buy else max(fp, o["limit_price"])
        fp = fp.quantize(Q9)
        frac = self.pending_cancel_fill_fraction
        part = frac is not None and 0 < float(frac) < 1   # only part fills, then the cancel goes through
        fd = D(str(frac)) if part else ONE
        if o["notional"] is not None:
            rem_n = ((o["notional"] - o["_filled_notional"]) * fd).quantize(Q9, ROUND_DOWN)
            q = (rem_n / fp).quantize(Q9, ROUND_DOWN)
            o["_filled_notional"] += rem_n
        else:
            rem = o["qty"] - o["filled_qty"]
            whole = rem == rem.to_integral_value()
            step, rounding = (ONE, ROUND_FLOOR) if whole else (Q9, ROUND_DOWN)
            q = (rem * fd).quantize(step, rounding) if part else rem
        if not buy and o["position_intent"] == "sell_to_close":
            pos = self._positions.get(self._poskey(a))
            q = min(q, max(ZERO, pos["qty"] if pos else ZERO))
        if q <= 0:
            return False
        self._apply_fill(a, o, q, fp)
        now = _iso(self._ts())
        o["filled_avg_price"] = (o["_filled_cost"] / o["filled_qty"]).quantize(Q9)
        if part:
            o["status"], o["canceled_at"], o["updated_at"] = "canceled", now, now
            self._fills[-1]["type"], self._fills[-1]["order_status"] = "partial_fill", "canceled"
        else:
            o["status"], o["filled_at"], o["updated_at"] = "filled", now, now
            self._fills[-1]["type"], self._fills[-1]["order_status"] = "fill", "filled"
        self._mark()
        return True

    # ---- market sessions (Alpaca "Orders" / orders-at-alpaca: equity orders sent while the market is closed
    # are queued for the next session; extended hours needs type limit + time_in_force day + extended_hours)

    def _session_open_for(self, o: dict) -> bool:
        return self._market_open or (self.extended_session and bool(o.get("extended_hours")))

    # ---- venue-side order states (alpaca-py OrderStatus: replaced "was replaced by another order, or was
    # updated due to a market event such as corporate action"; done_for_day "will not receive further updates
    # until the next trading day"; trade event "canceled" with reason CORPORATE_ACTION, changelog 2026-08-12)

    def venue_replace(self, id_or_client_order_id: str, **changes) -> dict:
        """The venue replaces an open order (a corporate action): the old one becomes ``replaced`` and a new
        order (new client_order_id, ``replaces`` = old id) carries ``changes`` (qty, limit_price,
        stop_price)."""
        with self._lock:
            o = self._find(id_or_client_order_id)
            new = self._replace(o, dict(changes))
            self._flush()
            return new

    def set_done_for_day(self, id_or_client_order_id: str) -> dict:
        """The order is done for the day: no fills until ``new_day()``, which reopens a gtc order and
        expires a day order."""
        with self._lock:
            o = self._find(id_or_client_order_id)
            if o["status"] not in OPEN_STATUSES:
                raise ValueError(f"order {o['id']} is {o['status']}, not open")
            o["status"], o["updated_at"] = "done_for_day", _iso(self._ts())
            self._mark()
            self._flush()
            return self._order_json(o)

    def _resume_done_for_day(self) -> None:
        now = _iso(self._ts())
        for o in self._orders.values():
            if o["status"] == "done_for_day":
                if o["time_in_force"] == "day":
                    o["status"], o["expired_at"] = "expired", now
                else:
                    o["status"] = "new"
                o["updated_at"] = now

    def _find(self, id_or_client_order_id: str) -> dict:
        id_or_client_order_id = str(id_or_client_order_id)  # the SDK hands out uuid.UUID ids
        o = self._orders.get(id_or_client_order_id)
        if o is None and id_or_client_order_id in self._by_cid:
            o = self._orders[self._by_cid[id_or_client_order_id]]
        if o is None:
            raise ValueError(f"unknown order {id_or_client_order_id}")
        return o

    # ---- fill corrections and busts (Alpaca trade events: trade_bust with reason TRADE_BUST, changelog
    # 2026-08-12; activity events execution_type fill / partial_fill / trade_correct / trade_bust, changelog
    # 2026-11-06). GUESS: the exact shape of such rows in GET /v2/account/activities is unconfirmed; here they
    # are FILL activities whose ``type`` is "trade_correct" / "trade_bust" and whose id is new.

    def correct_fill(self, activity_id: str, qty: float | None = None, price: float | None = None) -> dict:
        """Correct a fill: the position and cash move from the old (qty, price) to the new one."""
        return self._adjust_fill(activity_id, "trade_correct", qty, price)

    def bust_fill(self, activity_id: str) -> dict:
        """Bust a fill: it never happened; position and cash are restored."""
        return self._adjust_fill(activity_id, "trade_bust", 0, None)

    def _adjust_fill(self, activity_id: str, kind: str, qty, price) -> dict:
        with self._lock:
            f = next((x for x in self._fills if x["id"] == activity_id and x["activity_type"] == "FILL"),
                     None)
            if f is None:
                raise ValueError(f"unknown fill activity {activity_id}")
            o = self._orders[f["order_id"]]
            a = self._assets[o["symbol"]]
            old_q, old_p = D(f["qty"]), D(f["price"])
            new_q = old_q if qty is None else _d(qty, "qty")
            new_p = old_p if price is None else _d(price, "price")
            sign = ONE if o["side"] == "buy" else -ONE
            key = self._poskey(a)
            pos = self._positions.get(key)
            have = pos["qty"] if pos else ZERO
            left = have + sign * (new_q - old_q)
            self._account["cash"] -= sign * (new_q * new_p - old_q * old_p)
            if left == 0:
                self._positions.pop(key, None)
            else:
                avg = pos["avg_entry_price"] if pos else new_p
                self._positions[key] = {"asset": a["symbol"], "qty": left, "avg_entry_price": avg}
            o["filled_qty"] += new_q - old_q
            o["_filled_cost"] += new_q * new_p - old_q * old_p
            o["filled_avg_price"] = ((o["_filled_cost"] / o["filled_qty"]).quantize(Q9) if o["filled_qty"]
                                     else None)
            row = dict(f, id=f"{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}::{uuid.uuid4()}", type=kind,
                       transaction_time=_iso(self._ts()), qty=_fmt(new_q), price=_fmt(new_p),
                       corrects=activity_id)
            self._fills.append(row)
            self._mark()
            self._flush()
            return dict(row)

    # ---- orders the user placed by hand (Alpaca GET /v2/orders lists every open order of the account,
    # whatever placed it; SPEC section 17: their client ids lack Parity's "p-" prefix)

    def add_user_order(self, symbol: str, side: str, qty: float | None = None, type: str = "limit",
                       time_in_force: str = "gtc", limit_price: float | None = None,
                       stop_price: float | None = None, notional: float | None = None,
                       client_order_id: str | None = None) -> dict:
        """Place an order as the user would by hand (dashboard): the venue's rules apply, the client order
        id is a random uuid unless given. Returns the order JSON."""
        body = {"symbol": symbol, "side": side, "type": type, "time_in_force": time_in_force,
                "qty": qty, "notional": notional, "limit_price": limit_price, "stop_price": stop_price,
                "client_order_id": client_order_id or str(uuid.uuid4())}
        with self._lock:
            o = self._submit({k: v for k, v in body.items() if v is not None})
            self._flush()
            return self._order_json(o)

    # ---- values alpaca-py does not know yet (catalogue row 14). The venue adds enum values before the SDK
    # knows them, and alpaca-py's response models are closed enums, so every answer carrying one fails to
    # parse (pydantic ValidationError): a new asset exchange (alpaca-py#276), a new asset status (#340), the
    # asset class "crypto_perp" and exchange "ASCX" (#624), a new activity type (#296). Assets take any value
    # through ``set_asset(exchange=, status=, asset_class=)`` and a position shows its asset's exchange and
    # class; the account any ``status`` through ``set_account``. Orders through ``set_new_values``: the
    # order enums grew the same way (OrderClass "mleg" came with multi-leg options, alpaca-py PR #552);
    # which values come next is a GUESS, so the switch takes any.

    def set_new_values(self, order_status: dict | None = None, order_class: str | None = None,
                       order_type: str | None = None) -> dict:
        """Show orders with values the SDK does not know, as the venue would once it adds them:
        ``order_status`` renames statuses in every order answer and trade update (e.g. ``{"new":
        "queued"}``: an order the venue holds as "new" is reported "queued"; it fills as before);
        ``order_class``/``order_type`` replace every order's class/type in answers (the order still
        behaves as placed). No argument: back to the known values. Returns the setting."""
        with self._lock:
            nv = {"order_status": dict(order_status or {}), "order_class": order_class, "order_type": order_type}
            self._account["new_values"] = {k: v for k, v in nv.items() if v}
            self._mark()
            self._flush()
            return dict(self._account["new_values"])

    def _shown(self, j: dict) -> dict:
        """An order's JSON with the values set by ``set_new_values``."""
        nv = self._account.get("new_values")
        if not nv:
            return j
        j["status"] = nv.get("order_status", {}).get(j["status"], j["status"])
        if nv.get("order_class"):
            j["order_class"] = nv["order_class"]
        if nv.get("order_type"):
            j["type"] = j["order_type"] = nv["order_type"]
        return j


# --------------------------------------------------------------------------------------------
# the server


class AlpacaServer(_VenueBehaviours):
    """Local Alpaca trading + market-data API (see module docstring)."""

    _stream = None   # streaming: the trade_updates server (tests/servers/alpaca_stream.py), started on use

    def __init__(
        self,
        port: int = 0,
        key: str = "test-key",
        secret: str = "test-secret",
        cash: float = 100_000.0,
        *,
        host: str = "127.0.0.1",
        prices: Optional[Dict[str, float]] = None,
        assets: Optional[Iterable[dict]] = None,
        default_asset_set: bool = True,
        market_open: bool = True,
        fill_mode: str = "poll",
        fill_after_polls: int = 1,
        count_list_polls: bool = True,
        tick_interval: float = 0.05,
        fill_slippage_bps: float = 0.0,
        partial_fill_fraction: Optional[float] = None,
        stall_after_partial: bool = False,
        crypto_fee_bps: float = 25.0,
        crypto_min_cost: float = 10.0,
        equity_min_notional: float = 1.0,
        bp_markup_bps: float = 0.0,
        allow_short: bool = False,
        async_cancel: bool = False,
        rate_limit: Optional[int] = 200,
        data_rate_limit: Optional[int] = 200,
        rate_limit_window: float = 60.0,
        bars_page_max: int = 10_000,
        quote_spread_bps: float = 2.0,
        oauth_token: Optional[str] = None,
        account_number: str = "PA3PARITY0001",
        state_file: Optional[str] = None,
        verbose: bool = False,
        wash_trade_check: bool = True,
        pending_cancel_fill_prob: float = 0.0,
        pending_cancel_fill_fraction: float | None = None,
        race_seed: int = 0,
        crypto_fee_tier: int | None = None,
        extended_session: bool = False,
        enforce_crypto_price_increment: bool = False,
    ):
        """
        Args (all keyword after ``cash``; every knob can be changed later with ``configure``):
            port: 0 = pick a free port (see ``.url`` after ``start()``).
            key/secret: the only credentials accepted (401 otherwise). ``oauth_token`` adds Bearer auth.
            cash: starting cash of the (cash, multiplier "1") account.
            prices: {symbol: price} merged over DEFAULT_PRICES (crypto as "BTC/USD" or "BTCUSD").
            assets: extra/overriding asset dicts (``make_asset(...)`` output or partial dicts with
                "symbol"); ``default_asset_set=False`` drops the built-in list.
            market_open: initial state of the equity market clock (crypto ignores it).
            fill_mode: "poll" | "tick" | "immediate" | "manual"; ``fill_after_polls`` = k for "poll";
                ``count_list_polls``: GET /v2/orders listings count as polls of each open order listed;
                ``tick_interval`` seconds for "tick".
            fill_slippage_bps: fills at price*(1+s) for buys, price*(1-s) for sells.
            partial_fill_fraction: e.g. 0.5 -> first fill event fills half ("partially_filled").
            stall_after_partial: an order that got a fill gets no more (a thin market): it stays
                "partially_filled" until it is cancelled.
            crypto_fee_bps: crypto fee on the credited side (buy: qty received, sell: USD received).
            crypto_min_cost: 403 "cost basis must be >= minimal amount of order 10" below this.
            equity_min_notional: notional equity orders below this -> 422 (GUESS).
            bp_markup_bps: market qty buys are costed at price*(1+markup) for the buying power check
                and open-order reservation (Alpaca collars market buys; 0 by default).
            allow_short: equity sells without a long position open a short (shortable assets).
            async_cancel: DELETE leaves "pending_cancel"; the next fill event makes it "canceled".
            rate_limit/data_rate_limit: requests per ``rate_limit_window`` s per key (None = off),
                trading (/v2/...) and market data (/v2/stocks, /v1beta3) counted separately.
            bars_page_max: the server's own page cap for bars (the real one is 10000).
            state_file: persist the whole state there after every mutation, load it at start.
            (venue behaviours, issue 12 -- see ``_VenueBehaviours``)
            wash_trade_check: refuse an order opposite to an open order on the symbol (the venue does).
            pending_cancel_fill_prob: with ``async_cancel``, the chance that a pending_cancel order fills
                its remainder on the next fill event instead of cancelling; ``race_seed`` seeds it;
                ``pending_cancel_fill_fraction`` (0..1): only that part of the remainder fills, then it
                cancels.
            crypto_fee_tier: 1..8 = the venue's volume tier (25 .. 8 bps); overrides ``crypto_fee_bps``.
            extended_session: while the market is closed, extended_hours orders can fill (pre/post market).
            enforce_crypto_price_increment: crypto limit prices off the asset's price_increment -> 422
                (GUESS).
        """
        if fill_mode not in ("poll", "tick", "immediate", "manual"):
            raise ValueError(f"bad fill_mode {fill_mode!r}")
        self.host = host
        self.port = int(port)
        self.key = key
        self.secret = secret
        self.oauth_token = oauth_token
        self.account_number = account_number
        self.state_file = state_file
        self.verbose = verbose
        # configuration (see configure())
        self.fill_mode = fill_mode
        self.fill_after_polls = int(fill_after_polls)
        self.count_list_polls = bool(count_list_polls)
        self.tick_interval = float(tick_interval)
        self.fill_slippage_bps = float(fill_slippage_bps)
        self.partial_fill_fraction = partial_fill_fraction
        self.stall_after_partial = bool(stall_after_partial)
        self.crypto_fee_bps = float(crypto_fee_bps)
        self.crypto_min_cost = float(crypto_min_cost)
        self.equity_min_notional = float(equity_min_notional)
        self.bp_markup_bps = float(bp_markup_bps)
        self.allow_short = bool(allow_short)
        self.async_cancel = bool(async_cancel)
        self.rate_limit = rate_limit
        self.data_rate_limit = data_rate_limit
        self.rate_limit_window = float(rate_limit_window)
        self.bars_page_max = int(bars_page_max)
        self.quote_spread_bps = float(quote_spread_bps)
        self.wash_trade_check = bool(wash_trade_check)
        self.pending_cancel_fill_prob = float(pending_cancel_fill_prob)
        self.pending_cancel_fill_fraction = pending_cancel_fill_fraction
        self.race_seed = int(race_seed)
        self._race_rng = random.Random(self.race_seed)
        self.crypto_fee_tier = crypto_fee_tier
        self.extended_session = bool(extended_session)
        self.enforce_crypto_price_increment = bool(enforce_crypto_price_increment)

        self._initial = {
            "cash": cash, "prices": dict(prices or {}), "assets": list(assets or []),
            "default_asset_set": default_asset_set, "market_open": market_open,
        }
        self._lock = threading.RLock()
        self._stop_evt = threading.Event()
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._ticker: Optional[threading.Thread] = None
        self._conns: set = set()
        self._faults: List[dict] = []
        self._kills: List[dict] = []
        self._rl: Dict[Tuple[str, str], list] = {}
        self.requests: List[RequestRecord] = []
        self.statuses: List[Optional[int]] = []   # the answer to each of ``requests`` (None: no answer)
        self._dirty = False
        self._last_ts: Optional[datetime] = None
        self._init_state()
        if state_file and os.path.exists(state_file):
            self._load_state_file(state_file)

    # ------------------------------------------------------------------ state

    def _init_state(self) -> None:
        ini = self._initial
        self._assets: Dict[str, dict] = {}
        for a in (default_assets() if ini["default_asset_set"] else []):
            self._assets[a["symbol"]] = a
        for a in ini["assets"]:
            self._put_asset(dict(a))
        self._prices: Dict[str, Decimal] = {}
        merged = dict(DEFAULT_PRICES)
        merged.update(ini["prices"])
        for sym, p in merged.items():
            canon = self._canon(sym)
            if canon in self._assets or sym in ini["prices"]:
                self._prices[canon] = _d(p, "price")
        self._lastday: Dict[str, Decimal] = dict(self._prices)
        self._market_open = bool(ini["market_open"])
        self._account = {
            "id": str(uuid.uuid5(NAMESPACE, "account:" + self.account_number)),
            "account_number": self.account_number,
            "created_at": _iso(_now() - timedelta(days=30)),
            "cash": _d(ini["cash"], "cash"),
            "last_equity": None,
        }
        self._positions: Dict[str, dict] = {}
        self._orders: Dict[str, dict] = {}
        self._by_cid: Dict[str, str] = {}
        self._fills: List[dict] = []
        self._bars: Dict[str, List[dict]] = {}
        self._account["last_equity"] = self._equity()

    def _put_asset(self, a: dict) -> dict:
        sym = a["symbol"]
        base = self._assets.get(sym) or make_asset(sym, a.get("class") or a.get("asset_class") or (
            "crypto" if "/" in sym else "us_equity"))
        if "asset_class" in a:
            a["class"] = a.pop("asset_class")
        base.update(a)
        self._assets[sym] = base
        return base

    def _mark(self) -> None:
        self._dirty = True

    def _flush(self) -> None:
        if self._dirty and self.state_file:
            self._save_state_file(self.state_file)
        if self._dirty and self._stream is not None:   # streaming: publish what changed
            self._stream.on_change()
        self._dirty = False

    def export_state(self) -> dict:
        """The whole mutable state as a JSON-able dict (Decimals as {"__dec__": str})."""
        with self._lock:
            st = {
                "version": 1,
                "account": self._account, "positions": self._positions, "orders": list(self._orders.values()),
                "fills": self._fills, "prices": self._prices, "lastday_prices": self._lastday,
                "market_open": self._market_open, "assets": self._assets, "bars": self._bars,
            }
            return json.loads(json.dumps(st, cls=_StateEncoder))

    def load_state(self, st: dict) -> None:
        """Replace the state with one from ``export_state()`` (or a state file)."""
        st = json.loads(json.dumps(st), object_hook=_state_hook)
        with self._lock:
            self._account = st["account"]
            self._positions = st["positions"]
            self._orders = {o["id"]: o for o in st["orders"]}
            self._by_cid = {o["client_order_id"]: o["id"] for o in st["orders"]}
            self._fills = st.get("fills", [])
            self._prices = st["prices"]
            self._lastday = st.get("lastday_prices", dict(self._prices))
            self._market_open = st["market_open"]
            self._assets = st["assets"]
            self._bars = st.get("bars", {})
            self._mark()
            self._flush()

    def _save_state_file(self, path: str) -> None:
        st = {
            "version": 1,
            "account": self._account, "positions": self._positions, "orders": list(self._orders.values()),
            "fills": self._fills, "prices": self._prices, "lastday_prices": self._lastday,
            "market_open": self._market_open, "assets": self._assets, "bars": self._bars,
        }
        data = json.dumps(st, cls=_StateEncoder, separators=(",", ":"))
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".alpaca_state.", dir=d)
        try:
            os.chmod(tmp, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _load_state_file(self, path: str) -> None:
        with open(path) as f:
            st = json.load(f)
        self.load_state(st)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "AlpacaServer":
        self._stop_evt.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.app = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"alpaca-server-{self.port}", daemon=True)
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="alpaca-server-ticker", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        if self._stream is not None:   # streaming
            self._stream.stop()
            self._stream = None
        self._stop_evt.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:  # kill kept-alive connections so clients see a dead server
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        for t in (self._thread, self._ticker):
            if t is not None:
                t.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> "AlpacaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- streaming (tests/servers/alpaca_stream.py): the trade_updates WebSocket beside the HTTP API

    @property
    def stream(self):
        """The ``/stream`` WebSocket server of this venue (started on first use, stopped by ``stop``)."""
        if self._stream is None:
            from tests.servers.alpaca_stream import AlpacaStreamServer

            self._stream = AlpacaStreamServer(self).start()
        return self._stream

    @property
    def stream_url(self) -> str:
        """``ws://127.0.0.1:PORT/stream`` for ``TradingStream(url_override=...)``."""
        return self.stream.url

    def _conn_opened(self, c) -> None:
        with self._lock:
            self._conns.add(c)

    def _conn_closed(self, c) -> None:
        with self._lock:
            self._conns.discard(c)

    def _tick_loop(self) -> None:
        while not self._stop_evt.wait(max(0.005, self.tick_interval)):
            if self.fill_mode == "tick":
                try:
                    self.process_orders()
                except Exception:  # pragma: no cover - never kill the ticker
                    pass

    # ------------------------------------------------------------------ public test API

    def configure(self, **kw) -> None:
        """Change any constructor knob at runtime (fill_mode, fill_slippage_bps, rate_limit, ...)."""
        allowed = {
            "fill_mode", "fill_after_polls", "count_list_polls", "tick_interval", "fill_slippage_bps",
            "partial_fill_fraction", "stall_after_partial", "crypto_fee_bps", "crypto_min_cost", "equity_min_notional",
            "bp_markup_bps", "allow_short", "async_cancel", "rate_limit", "data_rate_limit",
            "rate_limit_window", "bars_page_max", "quote_spread_bps", "key", "secret", "oauth_token",
            "verbose", "wash_trade_check", "pending_cancel_fill_prob", "pending_cancel_fill_fraction",
            "race_seed", "crypto_fee_tier", "extended_session", "enforce_crypto_price_increment",
        }
        with self._lock:
            for k, v in kw.items():
                if k not in allowed:
                    raise ValueError(f"unknown setting {k!r}")
                if k == "fill_mode" and v not in ("poll", "tick", "immediate", "manual"):
                    raise ValueError(f"bad fill_mode {v!r}")
                setattr(self, k, v)
                if k == "race_seed":
                    self._race_rng = random.Random(int(v))
                if k == "crypto_fee_tier" and v is not None and int(v) not in CRYPTO_FEE_TIERS_BPS:
                    raise ValueError(f"crypto_fee_tier must be one of {sorted(CRYPTO_FEE_TIERS_BPS)}")

    def set_price(self, symbol: str, price: float) -> None:
        with self._lock:
            canon = self._canon(symbol)
            p = _d(price, "price")
            if p <= 0:
                raise ValueError("price must be > 0")
            self._prices[canon] = p
            self._lastday.setdefault(canon, p)
            self._mark()
            self._flush()

    def set_prices(self, prices: Dict[str, float]) -> None:
        for s, p in prices.items():
            self.set_price(s, p)

    def get_price(self, symbol: str) -> Optional[float]:
        with self._lock:
            p = self._prices.get(self._canon(symbol))
            return None if p is None else float(p)

    def set_market_open(self, is_open: bool) -> None:
        with self._lock:
            self._market_open = bool(is_open)
            self._mark()
            self._flush()

    def set_cash(self, cash: float) -> None:
        with self._lock:
            self._account["cash"] = _d(cash, "cash")
            self._mark()
            self._flush()

    def set_asset(self, symbol: str, **fields) -> dict:
        """Create or update an asset (fields as in ``make_asset``/the Asset JSON; ``price=`` sets a price)."""
        with self._lock:
            price = fields.pop("price", None)
            if symbol in self._assets:
                a = self._assets[symbol]
                if "asset_class" in fields:
                    fields["class"] = fields.pop("asset_class")
                a.update(fields)
            else:
                cls = fields.pop("asset_class", fields.pop("class", "crypto" if "/" in symbol else "us_equity"))
                a = make_asset(symbol, cls, **fields)
                self._assets[symbol] = a
            if price is not None:
                self._prices[symbol] = _d(price, "price")
                self._lastday.setdefault(symbol, self._prices[symbol])
            self._mark()
            self._flush()
            return dict(a)

    def set_position(self, symbol: str, qty: float, avg_entry_price: Optional[float] = None) -> None:
        """Seed a position directly (no cash change). qty 0 removes it."""
        with self._lock:
            a = self._asset(symbol)
            if a is None:
                raise ValueError(f"unknown asset {symbol}")
            key = self._poskey(a)
            q = _d(qty, "qty")
            if q == 0:
                self._positions.pop(key, None)
            else:
                px = _d(avg_entry_price, "price") if avg_entry_price is not None else self._prices[a["symbol"]]
                self._positions[key] = {"asset": a["symbol"], "qty": q, "avg_entry_price": px}
            self._mark()
            self._flush()

    def set_bars(self, symbol: str, bars: List[dict], timeframe: Optional[str] = None) -> None:
        """Bars for a symbol (and optionally only one timeframe string such as "1Day").

        Each bar dict may use the API keys (t,o,h,l,c,v,n,vw) or long names (timestamp, open, ...);
        ``t`` may be a datetime/date/ISO string.
        """
        norm = []
        for b in bars:
            g = lambda short, long_, default=None: b.get(short, b.get(long_, default))  # noqa: E731
            ts = g("t", "timestamp")
            if ts is None:
                raise ValueError("bar without timestamp")
            bar = {"t": _bar_ts(_parse_ts(ts)), "o": float(g("o", "open")), "h": float(g("h", "high")),
                   "l": float(g("l", "low")), "c": float(g("c", "close")), "v": float(g("v", "volume", 0))}
            n = g("n", "trade_count")
            vw = g("vw", "vwap")
            bar["n"] = int(n) if n is not None else 0
            bar["vw"] = float(vw) if vw is not None else round((bar["o"] + bar["h"] + bar["l"] + bar["c"]) / 4, 6)
            norm.append(bar)
        norm.sort(key=lambda x: x["t"])
        with self._lock:
            self._bars[f"{self._canon(symbol)}|{timeframe or '*'}"] = norm
            self._mark()
            self._flush()

    def generate_bars(self, symbol: str, start: str = "2024-01-02", n: int = 20, price: float = 100.0,
                      timeframe: Optional[str] = None, drift: float = 0.001, seed: int = 0) -> List[dict]:
        """Deterministic daily bars (weekdays at NY midnight for equities, every day 00:00Z for crypto)."""
        import random

        rnd = random.Random(f"{symbol}:{seed}")
        a = self._asset(symbol)
        crypto = bool(a and a["class"] == "crypto") or "/" in symbol
        d0 = _parse_ts(start).date()
        out, p, day = [], float(price), d0
        while len(out) < n:
            if crypto or day.weekday() < 5:
                if crypto:
                    ts = datetime(day.year, day.month, day.day, tzinfo=UTC)
                else:
                    ts = datetime(day.year, day.month, day.day, tzinfo=_ET).astimezone(UTC)
                o = p
                c = round(p * (1 + drift + rnd.uniform(-0.01, 0.01)), 4)
                h = round(max(o, c) * (1 + rnd.uniform(0, 0.005)), 4)
                lo = round(min(o, c) * (1 - rnd.uniform(0, 0.005)), 4)
                out.append({"t": ts, "o": round(o, 4), "h": h, "l": lo, "c": c,
                            "v": float(rnd.randint(1000, 100000)), "n": rnd.randint(10, 1000)})
                p = c
            day += timedelta(days=1)
        self.set_bars(symbol, out, timeframe)
        return out

    def inject(self, kind: str, path_prefix: str = "/", method: Optional[str] = None, count: int = 1,
               seconds: float = 0.0, pid: Optional[int] = None, skip: int = 0,
               arm: Optional[dict] = None) -> None:
        """Queue a fault for the next ``count`` matching requests.

        kinds: "429" (with rate-limit headers), "500", "502", "503", "504" (JSON body),
        "502_html"/"504_html" (HTML gateway body, not JSON), "504_after_accept" (process, store, THEN
        answer 504), "drop_before" (close the socket without processing), "drop_after" (process, then
        close without answering), "delay" (sleep ``seconds`` then process and answer), "delay_after"
        (process, sleep ``seconds``, then answer), "reject_after_accept" (POST /v2/orders is accepted,
        the order then turns "rejected" on its first fill event), "kill_client_before" (SIGKILL the
        client process ``pid`` when the request arrives, then close without processing it) and
        "kill_client_after" (process and persist the request, SIGKILL ``pid``, close without answering):
        a crash of the client at a precise moment.

        Timing: ``skip`` lets that many matching requests through first; ``arm`` =
        ``{"method": M, "path_prefix": P, "count": N}`` keeps the fault dormant until N requests
        matching (M, P) have arrived (counted before the request being matched), e.g. "the first GET
        after the 3rd POST /v2/orders". Kills are recorded in ``kills()``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if kind.startswith("kill_client") and not pid:
            raise ValueError(f"{kind} needs the pid of the client to kill")
        with self._lock:
            self._faults.append({"kind": kind, "path_prefix": path_prefix,
                                 "method": method.upper() if method else None,
                                 "count": int(count), "seconds": float(seconds), "pid": pid,
                                 "skip": int(skip), "arm": _arm(arm), "armed_seen": 0})

    def kills(self) -> List[dict]:
        """Client kills done by kill_client_* faults: {kind, pid, method, path, time}, oldest first."""
        with self._lock:
            return [dict(k) for k in self._kills]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> List[dict]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def get_requests(self) -> List[list]:
        with self._lock:
            return [list(r) for r in self.requests]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()

    def get_statuses(self) -> List[Optional[int]]:
        """HTTP status of the answer to each recorded request (None: dropped or client killed)."""
        with self._lock:
            return list(self.statuses)

    def _answered(self, i: int, status: Optional[int]) -> None:
        with self._lock:
            if i < len(self.statuses):
                self.statuses[i] = status

    def orders_submitted(self) -> List[dict]:
        """Every order the server accepted (API JSON), oldest first; a complex order's legs inside it."""
        with self._lock:
            return [{**self._order_json(o), "legs": alpaca_classes.legs_json(self, o)}
                    for o in self._orders.values() if not o.get("_parent")]

    def count_orders(self, client_order_id: Optional[str] = None, symbol: Optional[str] = None,
                     side: Optional[str] = None, status: Optional[str] = None) -> int:
        with self._lock:
            canon = self._canon(symbol) if symbol else None
            return sum(
                1 for o in self._orders.values()
                if (client_order_id is None or o["client_order_id"] == client_order_id)
                and (canon is None or o["symbol"] == canon)
                and (side is None or o["side"] == side)
                and (status is None or o["status"] == status)
            )

    def get_order(self, id_or_client_order_id: str) -> Optional[dict]:
        with self._lock:
            o = self._orders.get(id_or_client_order_id)
            if o is None and id_or_client_order_id in self._by_cid:
                o = self._orders[self._by_cid[id_or_client_order_id]]
            return None if o is None else {**self._order_json(o), "legs": alpaca_classes.legs_json(self, o)}

    def positions(self) -> Dict[str, dict]:
        """{position symbol ("AAPL", "BTCUSD"): Position JSON as GET /v2/positions returns it}."""
        with self._lock:
            return {k: self._position_json(k) for k in sorted(self._positions)}

    def position_qty(self, symbol: str) -> float:
        with self._lock:
            a = self._asset(symbol)
            p = self._positions.get(self._poskey(a)) if a else self._positions.get(symbol)
            return float(p["qty"]) if p else 0.0

    def account(self) -> dict:
        with self._lock:
            return self._account_json()

    def fills(self) -> List[dict]:
        with self._lock:
            return [dict(f) for f in self._fills]

    def process_orders(self) -> None:
        """Run one fill event on every open order (any fill_mode)."""
        with self._lock:
            for o in list(self._orders.values()):
                if o["status"] in OPEN_STATUSES:
                    self._event(o)
            self._flush()

    def new_day(self) -> None:
        """Start a new trading day: last_equity = equity, lastday prices = current prices."""
        with self._lock:
            self._resume_done_for_day()  # venue behaviour: done_for_day orders resume (gtc) or expire (day)
            self.post_crypto_fees()  # venue behaviour: crypto fees are posted end of day as CFEE activities
            self._lastday = dict(self._prices)
            self._account["last_equity"] = self._equity()
            self._mark()
            self._flush()

    def expire_day_orders(self) -> int:
        """End of session: open "day" orders become "expired". Returns how many."""
        n = 0
        with self._lock:
            for o in self._orders.values():
                if o["status"] in OPEN_STATUSES and o["time_in_force"] == "day":
                    o["status"] = "expired"
                    o["expired_at"] = o["updated_at"] = _iso(self._ts())
                    n += 1
            self._mark()
            self._flush()
        return n

    def reset(self) -> None:
        """Back to the constructor state: account, positions, orders, prices, assets, bars, clock,
        faults, recorded requests and rate-limit windows."""
        with self._lock:
            self._init_state()
            self._faults.clear()
            self._kills.clear()
            self.requests.clear()
            self.statuses.clear()
            self._rl.clear()
            self._mark()
            self._flush()

    # ------------------------------------------------------------------ model helpers

    def _ts(self) -> datetime:
        """Strictly increasing 'now' (orders sort deterministically)."""
        t = _now()
        if self._last_ts is not None and t <= self._last_ts:
            t = self._last_ts + timedelta(microseconds=1)
        self._last_ts = t
        return t

    def _asset(self, sym_or_id: Optional[str]) -> Optional[dict]:
        if not sym_or_id:
            return None
        s = sym_or_id.strip()
        if s in self._assets:
            return self._assets[s]
        u = s.upper()
        for a in self._assets.values():
            if a["symbol"].upper() == u or a["id"] == s or a["symbol"].replace("/", "").upper() == u.replace("/", ""):
                return a
        return None

    def _canon(self, sym: str) -> str:
        a = self._asset(sym)
        return a["symbol"] if a else sym

    @staticmethod
    def _poskey(a: dict) -> str:
        return a["symbol"].replace("/", "")

    @staticmethod
    def _is_crypto(a: dict) -> bool:
        return a["class"] == "crypto"

    def _price_of(self, a: dict) -> Decimal:
        p = self._prices.get(a["symbol"])
        if p is None:
            raise _err(422, 40010001, f"no price available for {a['symbol']} (test server: call set_price)")
        return p

    def _remaining_qty(self, o: dict, price: Optional[Decimal] = None) -> Decimal:
        if o["qty"] is not None:
            return o["qty"] - o["filled_qty"]
        rem_notional = o["notional"] - o["_filled_notional"]
        if price is None:
            price = self._prices.get(o["symbol"]) or ONE
        return (rem_notional / price).quantize(Q9, ROUND_DOWN)

    def _est_cost(self, o: dict) -> Decimal:
        """Cash reserved by an open buy order."""
        if o["notional"] is not None:
            return o["notional"] - o["_filled_notional"]
        rem = o["qty"] - o["filled_qty"]
        if o["type"] in ("limit", "stop_limit") and o["limit_price"] is not None:
            return rem * o["limit_price"]
        p = self._prices.get(o["symbol"], ZERO)
        if o["type"] == "stop" and o["stop_price"] is not None:
            p = max(p, o["stop_price"])
        return rem * p * (ONE + D(str(self.bp_markup_bps)) / D(10000))

    def _open_orders(self) -> List[dict]:
        return [o for o in self._orders.values() if o["status"] in OPEN_STATUSES]

    def _buying_power(self) -> Decimal:
        reserved = sum((self._est_cost(o) for o in self._open_orders() if o["side"] == "buy"), ZERO)
        return self._account["cash"] - reserved

    def _held_for_orders(self, a: dict) -> Tuple[Decimal, List[str]]:
        held, ids = ZERO, []
        for o in [o for o in self._orders.values() if o["status"] in NOT_FINAL_STATUSES]:
            if o.get("_shares_qty") or alpaca_classes.waiting(o):
                continue   # an exit pair holds the quantity once; a bracket's exits hold none before the entry fills
            if o["symbol"] == a["symbol"] and o["side"] == "sell":
                held += self._remaining_qty(o)
                ids.append(o["id"])
        return held, ids

    def _market_values(self) -> Tuple[Decimal, Decimal]:
        long_mv = short_mv = ZERO
        for p in self._positions.values():
            price = self._prices.get(p["asset"], p["avg_entry_price"])
            mv = p["qty"] * price
            if mv >= 0:
                long_mv += mv
            else:
                short_mv += mv
        return long_mv, short_mv

    def _equity(self) -> Decimal:
        lm, sm = self._market_values()
        return self._account["cash"] + lm + sm

    # ------------------------------------------------------------------ JSON views

    def _account_json(self) -> dict:
        acct = self._account
        lm, sm = self._market_values()
        equity = acct["cash"] + lm + sm
        bp = max(ZERO, self._buying_power())
        return {
            "id": acct["id"],
            "admin_configurations": {},
            "user_configurations": None,
            "account_number": acct["account_number"],
            "status": "ACTIVE",
            "crypto_status": "ACTIVE",
            "options_approved_level": 0,
            "options_trading_level": 0,
            "currency": "USD",
            "buying_power": _fmt(bp),
            "regt_buying_power": _fmt(bp),
            "daytrading_buying_power": "0",
            "effective_buying_power": _fmt(bp),
            "non_marginable_buying_power": _fmt(bp),
            "options_buying_power": _fmt(bp),
            "bod_dtbp": "0",
            "cash": _fmt(acct["cash"]),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": _fmt(equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": acct["created_at"],
            "trade_suspended_by_user": False,
            "multiplier": "1",
            "shorting_enabled": self.allow_short,
            "equity": _fmt(equity),
            "last_equity": _fmt(acct["last_equity"]),
            "long_market_value": _fmt(lm),
            "short_market_value": _fmt(sm),
            "position_market_value": _fmt(lm - sm),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "balance_asof": _now().astimezone(_ET).date().isoformat(),
            "crypto_tier": 1,
            "intraday_adjustments": "0",
            "pending_reg_taf_fees": "0",
            **self._account_flag_fields(),  # venue behaviours: flags set by set_account()
        }

    def _position_json(self, key: str) -> dict:
        p = self._positions[key]
        a = self._assets[p["asset"]]
        qty, avg = p["qty"], p["avg_entry_price"]
        price = self._prices.get(a["symbol"], avg)
        lastday = self._lastday.get(a["symbol"], price)
        mv = qty * price
        cb = qty * avg
        upl = mv - cb
        held, _ = self._held_for_orders(a)
        avail = qty - held if qty > 0 else qty
        intraday = qty * (price - lastday)
        return {
            "asset_id": a["id"],
            "symbol": key,
            "exchange": a["exchange"],
            "asset_class": a["class"],
            "asset_marginable": bool(a.get("marginable")),
            "qty": _fmt(qty),
            "avg_entry_price": _fmt(avg),
            "side": "long" if qty > 0 else "short",
            "market_value": _fmt(mv),
            "cost_basis": _fmt(cb),
            "unrealized_pl": _fmt(upl),
            "unrealized_plpc": _fmt(upl / abs(cb)) if cb else "0",
            "unrealized_intraday_pl": _fmt(intraday),
            "unrealized_intraday_plpc": _fmt(intraday / abs(qty * lastday)) if lastday and qty else "0",
            "current_price": _fmt(price),
            "lastday_price": _fmt(lastday),
            "change_today": _fmt((price - lastday) / lastday) if lastday else "0",
            "qty_available": _fmt(avail),
        }

    def _order_json(self, o: dict) -> dict:
        return self._shown({
            "id": o["id"],
            "client_order_id": o["client_order_id"],
            "created_at": o["created_at"],
            "updated_at": o["updated_at"],
            "submitted_at": o["submitted_at"],
            "filled_at": o["filled_at"],
            "expired_at": o["expired_at"],
            "expires_at": o["expires_at"],
            "canceled_at": o["canceled_at"],
            "failed_at": o["failed_at"],
            "replaced_at": o["replaced_at"],
            "replaced_by": o["replaced_by"],
            "replaces": o["replaces"],
            "asset_id": o["asset_id"],
            "symbol": o["symbol"],
            "asset_class": o["asset_class"],
            "notional": _fmt(o["notional"]),
            "qty": _fmt(o["qty"]),
            "filled_qty": _fmt(o["filled_qty"]),
            "filled_avg_price": _fmt(o["filled_avg_price"]),
            "order_class": o["order_class"],
            "order_type": o["type"],
            "type": o["type"],
            "side": o["side"],
            "position_intent": o["position_intent"],
            "time_in_force": o["time_in_force"],
            "limit_price": _fmt(o["limit_price"]),
            "stop_price": _fmt(o["stop_price"]),
            "status": o["status"],
            "extended_hours": o["extended_hours"],
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
        })

    # ------------------------------------------------------------------ orders

    def _validate_price_field(self, a: dict, body: dict, field: str) -> Optional[Decimal]:
        v = body.get(field)
        if v is None:
            return None
        p = _d(v, field)
        if p <= 0:
            raise _err(422, 40010001, f"{field} must be > 0")
        if not self._is_crypto(a):
            # sub-penny rule: >= $1 -> 2 decimals, < $1 -> 4 decimals
            if _decimals(p) > (2 if p >= 1 else 4):
                raise _err(422, 42210000, f"invalid {field} {_fmt(p)}. sub-penny increment does not fulfill "
                                          f"minimum pricing criteria")
        elif self.enforce_crypto_price_increment and a.get("price_increment"):
            inc = D(str(a["price_increment"]))  # GUESS: status and text for crypto are unconfirmed
            if inc > 0 and p % inc != 0:
                raise _err(422, 42210000, f"invalid {field} {_fmt(p)}. price increment is {_fmt(inc)}")
        return p

    def _submit(self, body: Any, reject_later: bool = False) -> dict:
        if not isinstance(body, dict):
            raise _err(400, 40010000, "request body format is invalid")
        cid = body.get("client_order_id")
        if cid is not None:
            cid = str(cid)
            if len(cid) > 128:
                raise _err(422, 40010001, "client_order_id must be no more than 128 characters")  # GUESS text
            if cid in self._by_cid:
                raise _err(422, 40010001, "client_order_id must be unique")
        for f in ("symbol", "side", "type", "time_in_force"):
            if not body.get(f):
                raise _err(422, 40010001, f"{f} is required")
        a = self._asset(str(body["symbol"]))
        if a is None:
            raise _err(422, 40010001, f"asset \"{body['symbol']}\" not found")  # GUESS text
        if not a.get("tradable", True) or a.get("status") != "active":
            raise _err(422, 40010001, f"asset {a['symbol']} is not tradable")
        crypto = self._is_crypto(a)
        self._check_account_can_trade(crypto)  # venue behaviour: account flags
        side = str(body["side"]).lower()
        otype = str(body["type"]).lower()
        tif = str(body["time_in_force"]).lower()
        if side not in ("buy", "sell"):
            raise _err(422, 40010001, "invalid side")
        if otype not in ORDER_TYPES:
            raise _err(422, 40010001, "invalid order type")
        if otype == "trailing_stop":
            raise _err(422, 40010001, "trailing_stop orders are not supported by this test server")
        # bracket / oco / oto (equities): tests/servers/alpaca_classes.py, with its sources
        spec = alpaca_classes.parse(self, body, a, crypto, otype, side, _err)
        if spec is not None and spec.order_class == "oco" and body.get("limit_price") is None:
            body = {**body, "limit_price": str(spec.take)}   # the blog's OCO names its limit in take_profit only
        if tif not in EQUITY_TIFS:
            raise _err(422, 40010001, "invalid time_in_force")
        if crypto and tif not in CRYPTO_TIFS:
            raise _err(422, 42210000, "invalid crypto time_in_force")
        if crypto and otype not in CRYPTO_TYPES:
            raise _err(422, 42210000, "invalid crypto order type")
        qty_raw, notional_raw = body.get("qty"), body.get("notional")
        if qty_raw is not None and notional_raw is not None:
            raise _err(422, 40010001, "qty and notional cannot both be specified")  # GUESS text
        if qty_raw is None and notional_raw is None:
            raise _err(422, 40010001, "qty or notional is required")
        qty = notional = None
        if qty_raw is not None:
            qty = _d(qty_raw, "qty")
            if qty <= 0:
                raise _err(422, 40010001, "qty must be > 0")
            if _decimals(qty) > 9:
                raise _err(422, 40010001, "qty must have at most 9 decimal places")
        else:
            notional = _d(notional_raw, "notional")
            if notional <= 0:
                raise _err(422, 40010001, "notional must be > 0")
            if _decimals(notional) > 9:
                raise _err(422, 40010001, "notional must have at most 9 decimal places")
        limit_price = self._validate_price_field(a, body, "limit_price")
        stop_price = self._validate_price_field(a, body, "stop_price")
        if otype in ("limit", "stop_limit") and limit_price is None:
            raise _err(422, 40010001, "limit_price is required for limit orders")
        if otype in ("stop", "stop_limit") and stop_price is None:
            raise _err(422, 40010001, "stop_price is required for stop orders")
        if otype in ("market", "stop"):
            limit_price = None
        if otype in ("market", "limit"):
            stop_price = None
        extended = bool(body.get("extended_hours") or False)
        if not crypto:
            fractional = notional is not None or (qty is not None and qty != qty.to_integral_value())
            if fractional:
                if not a.get("fractionable"):
                    raise _err(422, 40010001, f"asset {a['symbol']} is not fractionable")  # GUESS text
                if tif != "day":
                    raise _err(422, 40010001, "fractional orders must be DAY orders")
                if otype not in ("market", "limit") or (notional is not None and otype != "market"):
                    raise _err(422, 40010001, "fractional orders must be market or limit orders; "
                                              "notional orders must be market orders")
            if notional is not None and notional < D(str(self.equity_min_notional)):
                raise _err(422, 40010001, f"notional must be >= {self.equity_min_notional:g}")  # GUESS
            if extended and not (otype == "limit" and tif == "day"):
                raise _err(422, 42210000, "extended hours order must be DAY limit orders")
        price = self._price_of(a)
        self._check_wash_trade(a, side)  # venue behaviour: opposite open order -> potential wash trade

        # ---- money / inventory checks
        pos = self._positions.get(self._poskey(a))
        pos_qty = pos["qty"] if pos else ZERO
        if side == "buy":
            if notional is not None:
                cost = notional
            elif otype in ("limit", "stop_limit"):
                cost = qty * limit_price
            else:
                ref = max(price, stop_price) if stop_price is not None else price
                cost = qty * ref * (ONE + D(str(self.bp_markup_bps)) / D(10000))
            if crypto and self._crypto_buy_floor_applies(a) and cost < D(str(self.crypto_min_cost)):
                raise _err(403, 40310000, f"cost basis must be >= minimal amount of order {self.crypto_min_cost:g}")
            bp = self._buying_power()
            if cost > bp:
                if crypto:
                    raise _err(403, 40310000, f"insufficient balance for USD (requested: {_fmt(cost.quantize(Q9))}, "
                                              f"available: {_fmt(max(ZERO, bp).quantize(Q9))})")
                raise _err(403, 40310000, "insufficient buying power",
                           buying_power=_fmt(max(ZERO, bp).quantize(D('0.01'))),
                           cost_basis=_fmt(cost.quantize(D("0.01"))))
            intent = "buy_to_close" if pos_qty < 0 else "buy_to_open"
        else:
            want = qty if qty is not None else (notional / price).quantize(Q9, ROUND_DOWN)
            # venue behaviour: the $10 floor is for buys only, sells below it are accepted (ccxt PR#30101, P)
            held, related = self._held_for_orders(a)
            avail = max(ZERO, pos_qty) - held
            if want > avail:
                pure_short = not crypto and pos_qty <= 0 and held == 0
                refusal = self._short_refusal(a, qty) if pure_short else None  # venue behaviour: shorting
                if refusal is not None:
                    raise refusal
                if not pure_short:
                    if crypto:
                        base = a["symbol"].split("/")[0]
                        raise _err(403, 40310000, f"insufficient balance for {base} (requested: {_fmt(want)}, "
                                                  f"available: {_fmt(max(ZERO, avail))})")
                    raise _err(403, 40310000,
                               f"insufficient qty available for order (requested: {_fmt(want)}, "
                               f"available: {_fmt(max(ZERO, avail))})",
                               available=_fmt(max(ZERO, avail)), existing_qty=_fmt(pos_qty),
                               held_for_orders=_fmt(held), symbol=a["symbol"], related_orders=related)
                cost = want * price
                if cost > self._buying_power():
                    raise _err(403, 40310000, "insufficient buying power",
                               buying_power=_fmt(max(ZERO, self._buying_power()).quantize(D("0.01"))),
                               cost_basis=_fmt(cost.quantize(D("0.01"))))
                intent = "sell_to_open"
            else:
                intent = "sell_to_close"
        o = self._create_order(a, side=side, otype=otype, tif=tif, qty=qty, notional=notional,
                               limit_price=limit_price, stop_price=stop_price, cid=cid,
                               extended=extended, intent=intent, reject_later=reject_later)
        if spec is not None:
            alpaca_classes.attach(self, o, spec, a)
        return o

    def _create_order(self, a: dict, *, side: str, otype: str, tif: str, qty: Optional[Decimal],
                      notional: Optional[Decimal], limit_price=None, stop_price=None, cid=None,
                      extended=False, intent=None, reject_later=False, replaces=None) -> dict:
        now = self._ts()
        crypto = self._is_crypto(a)
        if tif == "day":
            nc = self._next_open_close(now)[1]
            expires = nc.astimezone(UTC)
        else:
            expires = now + timedelta(days=90)
        o = {
            "id": str(uuid.uuid4()),
            "client_order_id": cid or str(uuid.uuid4()),
            "created_at": _iso(now), "updated_at": _iso(now), "submitted_at": _iso(now),
            "filled_at": None, "expired_at": None, "expires_at": _iso(expires), "canceled_at": None,
            "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": replaces,
            "asset_id": a["id"], "symbol": a["symbol"], "asset_class": a["class"],
            "notional": notional, "qty": qty, "filled_qty": ZERO, "filled_avg_price": None,
            "order_class": "" if crypto else "simple", "type": otype, "side": side,
            "position_intent": intent or ("buy_to_open" if side == "buy" else "sell_to_close"),
            "time_in_force": tif, "limit_price": limit_price, "stop_price": stop_price,
            "status": "pending_new", "extended_hours": bool(extended),
            # internal
            "_polls": 0, "_filled_notional": ZERO, "_filled_cost": ZERO, "_reject": bool(reject_later),
            "_stop_triggered": False,
        }
        self._orders[o["id"]] = o
        self._by_cid[o["client_order_id"]] = o["id"]
        self._mark()
        return o

    def _event(self, o: dict) -> None:
        """One fill event for an open order."""
        if o["status"] not in OPEN_STATUSES or alpaca_classes.waiting(o):
            return
        now = _iso(self._ts())
        self._mark()
        if o["status"] == "pending_cancel":
            if self._race_fill(o):  # venue behaviour: the cancel lost the race, the remainder filled
                return
            o["status"], o["canceled_at"], o["updated_at"] = "canceled", now, now
            return
        if o["_reject"]:
            o["status"], o["failed_at"], o["updated_at"] = "rejected", now, now
            return
        if self.stall_after_partial and o["filled_qty"] > 0:
            return
        a = self._assets.get(o["symbol"])
        if a is None:
            return
        crypto = self._is_crypto(a)
        if not crypto and not self._session_open_for(o):  # venue behaviour: queued until the session opens
            if o["status"] == "pending_new":
                o["status"], o["updated_at"] = "accepted", now
            return
        price = self._prices.get(a["symbol"])
        if price is None:
            return
        buy = o["side"] == "buy"
        # stop trigger
        if o["type"] in ("stop", "stop_limit") and not o["_stop_triggered"]:
            if (buy and price >= o["stop_price"]) or (not buy and price <= o["stop_price"]):
                o["_stop_triggered"] = True
            else:
                if o["status"] == "pending_new":
                    o["status"], o["updated_at"] = "new", now
                return
        if o["type"] in ("limit", "stop_limit"):
            crossed = price <= o["limit_price"] if buy else price >= o["limit_price"]
            if not crossed:
                if o["time_in_force"] in ("ioc", "fok"):
                    o["status"], o["canceled_at"], o["updated_at"] = "canceled", now, now
                elif o["status"] == "pending_new":
                    o["status"], o["updated_at"] = "new", now
                return
        slip = D(str(self.fill_slippage_bps)) / D(10000)
        fp = price * (ONE + slip) if buy else price * (ONE - slip)
        if o["type"] in ("limit", "stop_limit"):
            fp = min(fp, o["limit_price"]) if buy else max(fp, o["limit_price"])
        fp = fp.quantize(Q9)
        frac = self.partial_fill_fraction
        partial = bool(frac) and 0 < float(frac) < 1 and o["filled_qty"] == 0 and o["time_in_force"] != "fok"
        fracd = D(str(frac)) if partial else ONE
        if o["notional"] is not None:
            rem_n = o["notional"] - o["_filled_notional"]
            part = (rem_n * fracd).quantize(Q9, ROUND_DOWN) if partial else rem_n
            q = (part / fp).quantize(Q9, ROUND_DOWN)
            o["_filled_notional"] += part
            done = not partial
        else:
            rem = o["qty"] - o["filled_qty"]
            if partial:
                whole = rem == rem.to_integral_value()
                q = (rem * fracd).quantize(ONE if whole else Q9, ROUND_FLOOR if whole else ROUND_DOWN)
                if q <= 0:
                    q = rem
            else:
                q = rem
            done = q == rem
        if not buy:  # never sell more than held (notional sells, slippage)
            pos = self._positions.get(self._poskey(a))
            have = pos["qty"] if pos else ZERO
            if o["position_intent"] == "sell_to_close" and q > have:
                q = max(ZERO, have)
        if q > 0:
            self._apply_fill(a, o, q, fp)
        if o["filled_qty"] > 0:
            o["filled_avg_price"] = (o["_filled_cost"] / o["filled_qty"]).quantize(Q9)
        if done:
            o["status"], o["filled_at"] = "filled", now
        elif o["time_in_force"] in ("ioc",):
            o["status"], o["canceled_at"] = "canceled", now
        else:
            o["status"] = "partially_filled"
        o["updated_at"] = now
        if q > 0:  # the activity record of this fill
            self._fills[-1]["type"] = "fill" if done else "partial_fill"
            self._fills[-1]["order_status"] = o["status"]
            alpaca_classes.after_event(self, o)   # bracket/oco/oto: arm the exits, or cancel the other exit

    def _apply_fill(self, a: dict, o: dict, q: Decimal, fp: Decimal) -> None:
        crypto = self._is_crypto(a)
        fee_rate = D(str(self._crypto_fee_bps_now())) / D(10000) if crypto else ZERO
        buy = o["side"] == "buy"
        gross = (q * fp).quantize(Q9)
        if buy:
            self._account["cash"] -= gross
            delta = (q * (ONE - fee_rate)).quantize(Q9, ROUND_DOWN)
            fee = (q - delta) * fp
        else:
            net = (gross * (ONE - fee_rate)).quantize(Q9)
            self._account["cash"] += net
            delta = -q
            fee = gross - net
        key = self._poskey(a)
        pos = self._positions.get(key)
        old_q = pos["qty"] if pos else ZERO
        old_avg = pos["avg_entry_price"] if pos else fp
        new_q = old_q + delta
        if new_q == 0:
            self._positions.pop(key, None)
        else:
            if old_q == 0 or (old_q > 0) == (delta > 0):
                avg = ((old_q * old_avg + delta * fp) / new_q).quantize(Q9)
            elif (old_q > 0) != (new_q > 0):
                avg = fp  # flipped side
            else:
                avg = old_avg  # reduced
            self._positions[key] = {"asset": a["symbol"], "qty": new_q, "avg_entry_price": avg}
        o["filled_qty"] += q
        o["_filled_cost"] += q * fp
        now = _iso(self._ts())
        self._fills.append({
            "id": f"{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}::{uuid.uuid4()}",
            "account_id": self._account["id"], "activity_type": "FILL",
            "transaction_time": now,
            "type": "partial_fill",
            "price": _fmt(fp), "qty": _fmt(q), "side": o["side"], "symbol": o["symbol"],
            "leaves_qty": _fmt(self._remaining_qty(o, fp)), "order_id": o["id"],
            "cum_qty": _fmt(o["filled_qty"]), "order_status": "filled",
        })
        if crypto:  # venue behaviour: FILL activities carry no fee; it is posted later as a CFEE activity
            coin = a["symbol"].split("/")[0]
            self._note_crypto_fee(a, o, (q - delta) if buy else fee, coin if buy else "USD", fp)

    def _cancel(self, o: dict) -> None:
        now = _iso(self._ts())
        if self.async_cancel:
            o["status"], o["updated_at"] = "pending_cancel", now
        else:
            o["status"], o["canceled_at"], o["updated_at"] = "canceled", now, now
        alpaca_classes.cancel_group(self, o)   # a complex order is cancelled as a whole (GUESS)
        self._mark()

    def _poll(self, o: dict) -> None:
        """A GET of this order: counts toward fill_after_polls."""
        if o["status"] not in OPEN_STATUSES:
            return
        o["_polls"] += 1
        self._mark()
        if self.fill_mode in ("poll", "immediate") and o["_polls"] >= self.fill_after_polls:
            self._event(o)

    # ------------------------------------------------------------------ clock

    def _next_open_close(self, now: datetime) -> Tuple[datetime, datetime]:
        et = now.astimezone(_ET)

        def at(d: date, h: int, m: int) -> datetime:
            return datetime(d.year, d.month, d.day, h, m, tzinfo=_ET)

        def next_weekday(d: date) -> date:
            d += timedelta(days=1)
            while d.weekday() >= 5:
                d += timedelta(days=1)
            return d

        today = et.date()
        if self._market_open:
            close_day = today if (today.weekday() < 5 and et < at(today, 16, 0)) else next_weekday(today)
            return at(next_weekday(close_day), 9, 30), at(close_day, 16, 0)
        if today.weekday() < 5 and et < at(today, 9, 30):
            od = today
        else:
            od = next_weekday(today)
        return at(od, 9, 30), at(od, 16, 0)

    # ------------------------------------------------------------------ HTTP handling

    def _rate(self, ident: str, group: str, consume: bool) -> Tuple[bool, dict]:
        limit = self.rate_limit if group == "trading" else self.data_rate_limit
        if not limit:
            return True, {}
        now = time.time()
        b = self._rl.get((ident, group))
        if b is None or now >= b[0] + self.rate_limit_window:
            b = [now, 0]
            self._rl[(ident, group)] = b
        ok = b[1] < limit
        if ok and consume:
            b[1] += 1
        at = b[0] + self.rate_limit_window
        # epoch seconds; a sub-second window (time-compressed tests) gets milliseconds, since rounding
        # up to the next second would stretch its reset by up to 1 s
        reset = str(int(math.ceil(at))) if self.rate_limit_window >= 1 else f"{math.ceil(at * 1000) / 1000:.3f}"
        hdr = {"X-Ratelimit-Limit": str(limit), "X-Ratelimit-Remaining": str(max(0, limit - b[1])),
               "X-Ratelimit-Reset": reset}
        return ok, hdr

    def _take_fault(self, method: str, path: str) -> Optional[dict]:
        hit = None
        for f in list(self._faults):
            if hit is None and f["count"] > 0 and path.startswith(f["path_prefix"]) \
                    and (f["method"] in (None, method)) and self._armed(f):
                if f.get("skip", 0) > 0:
                    f["skip"] -= 1
                else:
                    f["count"] -= 1
                    if f["count"] <= 0:
                        self._faults.remove(f)
                    hit = dict(f)
            arm = f.get("arm")
            if arm and path.startswith(arm["path_prefix"]) and arm["method"] in (None, method):
                f["armed_seen"] += 1
        return hit

    @staticmethod
    def _armed(f: dict) -> bool:
        arm = f.get("arm")
        return not arm or f["armed_seen"] >= arm["count"]

    def _kill_client(self, fault: dict, method: str, path: str) -> None:
        """SIGKILL the client and wait until it is gone (or a zombie), so nothing else of it runs."""
        pid = int(fault["pid"])
        with self._lock:
            self._kills.append({"kind": fault["kind"], "pid": pid, "method": method, "path": path,
                                "time": time.time()})
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_dead(pid)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: Any = None, headers: Optional[dict] = None,
              raw: Optional[bytes] = None, content_type: str = "application/json; charset=UTF-8") -> None:
        try:
            if status == 204:
                h.send_response(204)
                for k, v in (headers or {}).items():
                    h.send_header(k, v)
                h.end_headers()
                return
            data = raw if raw is not None else json.dumps(payload).encode()
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            h.send_header("X-Request-ID", uuid.uuid4().hex)
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True

    @staticmethod
    def _html(status: int, reason: str) -> bytes:
        return (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} "
                f"{reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command.upper()
        split = urlsplit(h.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        if path.startswith("/__admin__"):
            return self._admin(h, method, path, raw)
        body, bad_json = None, False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        group = "data" if (path.startswith("/v2/stocks") or path.startswith("/v1beta3")) else "trading"
        ident = h.headers.get("APCA-API-KEY-ID") or h.headers.get("Authorization") or "anonymous"
        with self._lock:
            self.requests.append(RequestRecord(method, path, query, body))
            self.statuses.append(None)
            seq = len(self.statuses) - 1
            fault = self._take_fault(method, path)
            _, rl_peek = self._rate(ident, group, consume=False)
        kind = fault["kind"] if fault else None
        if kind == "kill_client_before":
            self._kill_client(fault, method, path)
            h.close_connection = True
            return
        if kind == "drop_before":
            h.close_connection = True
            return
        if kind == "delay":
            self._stop_evt.wait(fault["seconds"])
        if kind in ("429", "500", "502", "503", "504"):
            st = int(kind)
            hdr = dict(rl_peek)
            self._answered(seq, st)
            if st == 429:
                hdr["X-Ratelimit-Remaining"] = "0"
                return self._send(h, 429, {"code": 42910000, "message": "rate limit exceeded"}, hdr)
            msg = {500: "internal server error", 502: "bad gateway", 503: "service unavailable",
                   504: "gateway timeout"}[st]
            return self._send(h, st, {"code": st * 100000 + 10000, "message": msg}, hdr)
        if kind in ("502_html", "504_html"):
            st = int(kind[:3])
            self._answered(seq, st)
            return self._send(h, st, raw=self._html(st, "Bad Gateway" if st == 502 else "Gateway Time-out"),
                              content_type="text/html")
        # ---- normal processing (state mutations persisted before anything is answered)
        with self._lock:
            rl = rl_peek
            try:
                ok, rl = self._rate(ident, group, consume=True)
                if not ok:
                    raise ApiError(429, {"code": 42910000, "message": "rate limit exceeded"})
                self._auth(h, path)
                if bad_json:
                    raise _err(400, 40010000, "request body format is invalid")
                status, payload, post = self._route(method, path, query, body,
                                                    reject_later=(kind == "reject_after_accept"))
            except ApiError as e:
                status, payload, post = e.status, e.body, None
            self._flush()
        if post is not None:  # e.g. "immediate" fills after the response body was built
            with self._lock:
                post()
                self._flush()
        if kind == "kill_client_after":
            self._kill_client(fault, method, path)
            h.close_connection = True
            return
        if kind == "drop_after":
            h.close_connection = True
            return
        if kind == "504_after_accept":
            self._answered(seq, 504)
            return self._send(h, 504, raw=self._html(504, "Gateway Time-out"), content_type="text/html")
        if kind == "delay_after":
            self._stop_evt.wait(fault["seconds"])
        self._answered(seq, status)
        self._send(h, status, payload, rl)

    def _auth(self, h: BaseHTTPRequestHandler, path: str) -> None:
        kid = h.headers.get("APCA-API-KEY-ID")
        sec = h.headers.get("APCA-API-SECRET-KEY")
        authz = h.headers.get("Authorization") or ""
        if authz.startswith("Basic "):
            try:
                kid, sec = base64.b64decode(authz[6:]).decode().split(":", 1)
            except Exception:
                kid = sec = None
        elif authz.startswith("Bearer "):
            if self.oauth_token and authz[7:] == self.oauth_token:
                return
            raise _err(401, 40110000, "request is not authorized")
        if kid is None and sec is None and path.startswith("/v1beta3/crypto"):
            return  # crypto market data needs no keys
        if kid != self.key or sec != self.secret:
            raise _err(401, 40110000, "request is not authorized")

    def _admin(self, h, method: str, path: str, raw: bytes) -> None:
        if path == "/__admin__/health":
            return self._send(h, 200, {"ok": True, "pid": os.getpid(), "url": self.url})
        if path == "/__admin__/call" and method == "POST":
            try:
                req = json.loads(raw or b"{}")
                name = req.get("method")
                if name not in ADMIN_METHODS:
                    return self._send(h, 404, {"error": f"unknown admin method {name!r}"})
                result = getattr(self, name)(*req.get("args", []), **req.get("kwargs", {}))
                return self._send(h, 200, {"result": json.loads(json.dumps(result, cls=_StateEncoder))})
            except Exception as e:  # report, never crash the server
                return self._send(h, 500, {"error": f"{type(e).__name__}: {e}"})
        return self._send(h, 404, {"error": "unknown admin endpoint"})

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, path: str, q: dict, body: Any, reject_later: bool = False):
        """-> (status, payload, post_callable_or_None)."""
        segs = [s for s in path.split("/") if s]
        if not segs:
            raise _err(404, 40410000, "endpoint not found")
        if segs[0] == "v2" and len(segs) >= 2 and segs[1] != "stocks":
            return self._route_trading(method, segs[1:], q, body, reject_later)
        if segs[0] == "v2" and len(segs) >= 3 and segs[1] == "stocks" and method == "GET":
            return (200, self._route_stock_data(segs[2:], q), None)
        if segs[0] == "v1beta3" and len(segs) >= 4 and segs[1] == "crypto" and method == "GET":
            return (200, self._route_crypto_data(segs[3:], q), None)
        raise _err(404, 40410000, "endpoint not found")

    def _route_trading(self, method: str, r: List[str], q: dict, body: Any, reject_later: bool):
        head = r[0]
        if head == "account" and len(r) == 1 and method == "GET":
            return 200, self._account_json(), None
        if head == "account" and r[1:] == ["configurations"] and method == "GET":
            return 200, {"dtbp_check": "entry", "trade_confirm_email": "all",
                         "suspend_trade": bool(self._flag("trade_suspended_by_user", False)),
                         "no_shorting": not self._shorting_enabled(), "fractional_trading": True,
                         "max_margin_multiplier": self._multiplier(), "max_options_trading_level": 0,
                         "pdt_check": "entry",
                         "ptp_no_exception_entry": False}, None
        if head == "account" and len(r) >= 2 and r[1] == "activities" and method == "GET":
            wanted = r[2] if len(r) > 2 else q.get("activity_types")
            types = set(wanted.upper().split(",")) if wanted else None  # no filter: every activity type
            acts = [dict(f) for f in self._fills if types is None or f["activity_type"] in types]
            if q.get("direction", "desc") == "desc":
                acts.reverse()
            return 200, acts, None
        if head == "clock" and method == "GET":
            now = _now()
            no, nc = self._next_open_close(now)
            return 200, {"timestamp": now.astimezone(_ET).isoformat(), "is_open": self._market_open,
                         "next_open": no.isoformat(), "next_close": nc.isoformat()}, None
        if head == "calendar" and method == "GET":
            return 200, self._calendar(q), None
        if head == "assets" and method == "GET":
            if len(r) == 1:
                out = []
                for a in self._assets.values():
                    if q.get("status") and a.get("status") != q["status"]:
                        continue
                    if q.get("asset_class") and a["class"] != q["asset_class"]:
                        continue
                    if q.get("exchange") and a["exchange"] != q["exchange"]:
                        continue
                    if q.get("attributes") and not set(q["attributes"].split(",")) & set(a.get("attributes") or []):
                        continue
                    out.append(dict(a))
                return 200, out, None
            a = self._asset("/".join(r[1:]))
            if a is None:
                raise _err(404, 40410000, "asset not found")
            return 200, dict(a), None
        if head == "positions":
            return self._route_positions(method, r, q)
        if head == "orders:by_client_order_id" and method == "GET":
            cid = q.get("client_order_id")
            oid = self._by_cid.get(cid) if cid is not None else None
            if oid is None:
                raise _err(404, 40410000, "order not found")
            o = self._orders[oid]
            self._poll(o)
            return 200, {**self._order_json(o), "legs": alpaca_classes.legs_json(self, o)}, None
        if head == "orders":
            return self._route_orders(method, r, q, body, reject_later)
        raise _err(404, 40410000, "endpoint not found")

    def _route_orders(self, method: str, r: List[str], q: dict, body: Any, reject_later: bool):
        if len(r) == 1:
            if method == "POST":
                o = self._submit(body, reject_later=reject_later)
                payload = self._order_json(o)
                payload["legs"] = alpaca_classes.legs_json(self, o)
                post = (lambda: self._event(o)) if self.fill_mode == "immediate" else None
                return 200, payload, post
            if method == "GET":
                return 200, self._list_orders(q), None
            if method == "DELETE":
                out = []
                for o in self._open_orders():
                    if o["status"] == "pending_cancel":
                        continue
                    self._cancel(o)
                    out.append({"id": o["id"], "status": 200, "body": self._order_json(o)})
                return 207, out, None
            raise _err(405, 40510000, "method not allowed")
        oid = "/".join(r[1:])
        try:
            uuid.UUID(oid)
        except ValueError:
            raise _err(422, 40010001, "order_id is missing")  # what Alpaca answers for a malformed id [OBS]
        o = self._orders.get(oid)
        if o is None:
            raise _err(404, 40410000, "order not found")
        if method == "GET":
            self._poll(o)
            return 200, {**self._order_json(o), "legs": alpaca_classes.legs_json(self, o)}, None
        if method == "DELETE":
            if o["status"] not in OPEN_STATUSES or o["status"] == "pending_cancel":
                raise _err(422, 42210000, "order is not cancelable")
            self._cancel(o)
            return 204, None, None
        if method == "PATCH":
            return 200, self._replace(o, body or {}), None
        raise _err(405, 40510000, "method not allowed")

    def _replace(self, o: dict, body: dict) -> dict:
        """Basic PATCH /v2/orders/{id}: old order -> "replaced", new order carries the changes."""
        if o["status"] not in OPEN_STATUSES or o["status"] == "pending_cancel":
            raise _err(422, 42210000, "order is not replaceable")
        a = self._assets[o["symbol"]]
        cid = body.get("client_order_id")
        if cid is not None and cid in self._by_cid:
            raise _err(422, 40010001, "client_order_id must be unique")
        qty = _d(body["qty"], "qty") if body.get("qty") is not None else (
            None if o["qty"] is None else o["qty"] - o["filled_qty"])
        limit_price = self._validate_price_field(a, body, "limit_price") or o["limit_price"]
        stop_price = self._validate_price_field(a, body, "stop_price") or o["stop_price"]
        tif = str(body.get("time_in_force") or o["time_in_force"]).lower()
        new = self._create_order(a, side=o["side"], otype=o["type"], tif=tif, qty=qty,
                                 notional=None if qty is not None else o["notional"] - o["_filled_notional"],
                                 limit_price=limit_price, stop_price=stop_price, cid=cid,
                                 extended=o["extended_hours"], intent=o["position_intent"], replaces=o["id"])
        now = _iso(self._ts())
        o["status"], o["replaced_at"], o["replaced_by"], o["updated_at"] = "replaced", now, new["id"], now
        return self._order_json(new)

    def _list_orders(self, q: dict) -> List[dict]:
        status = (q.get("status") or "open").lower()
        if status not in ("open", "closed", "all"):
            raise _err(422, 40010001, "invalid status")
        try:
            limit = int(q.get("limit") or 50)
        except ValueError:
            raise _err(422, 40010001, "invalid limit")
        limit = max(1, min(limit, 500))
        direction = (q.get("direction") or "desc").lower()
        after = _parse_ts(q["after"], "after") if q.get("after") else None
        until = _parse_ts(q["until"], "until") if q.get("until") else None
        syms = None
        if q.get("symbols"):
            syms = {self._canon(s.strip()) for s in q["symbols"].split(",") if s.strip()}
        side = (q.get("side") or "").lower() or None
        cands = []
        for o in self._orders.values():
            sub = _parse_ts(o["submitted_at"])
            if after is not None and not sub > after:
                continue
            if until is not None and not sub < until:
                continue
            if syms is not None and o["symbol"] not in syms:
                continue
            if side and o["side"] != side:
                continue
            cands.append(o)
        if self.count_list_polls and status in ("open", "all"):
            for o in cands:
                self._poll(o)
        if status == "open":
            cands = [o for o in cands if o["status"] in OPEN_STATUSES]
        elif status == "closed":
            cands = [o for o in cands if o["status"] not in OPEN_STATUSES]
        cands.sort(key=lambda o: o["submitted_at"], reverse=(direction == "desc"))
        if _truthy(q.get("nested")):   # legs rolled up into their parent (the documented ``nested`` parameter)
            listed = {o["id"] for o in cands}
            cands = [o for o in cands if not o.get("_parent") or o["_parent"] not in listed]
            return [{**self._order_json(o), "legs": alpaca_classes.legs_json(self, o)} for o in cands[:limit]]
        return [self._order_json(o) for o in cands[:limit]]

    def _route_positions(self, method: str, r: List[str], q: dict):
        if len(r) == 1:
            if method == "GET":
                return 200, [self._position_json(k) for k in sorted(self._positions)], None
            if method == "DELETE":
                if _truthy(q.get("cancel_orders", "false")):
                    for o in self._open_orders():
                        o["status"], o["canceled_at"] = "canceled", _iso(self._ts())
                        o["updated_at"] = o["canceled_at"]
                    self._mark()
                out = []
                for key in sorted(self._positions):
                    try:
                        o = self._close(key, None, None)
                        out.append({"symbol": key, "status": 200, "body": self._order_json(o)})
                    except ApiError as e:
                        out.append({"symbol": key, "status": e.status, "body": e.body})
                return 207, out, None
            raise _err(405, 40510000, "method not allowed")
        sym = "/".join(r[1:])
        a = self._asset(sym)
        key = self._poskey(a) if a else sym.replace("/", "")
        if method == "GET":
            if key not in self._positions:
                raise _err(404, 40410000, "position does not exist")
            return 200, self._position_json(key), None
        if method == "DELETE":
            if key not in self._positions:
                raise _err(404, 40410000, f"position not found: {sym}")
            o = self._close(key, q.get("qty"), q.get("percentage"))
            return 200, self._order_json(o), None
        raise _err(405, 40510000, "method not allowed")

    def _close(self, key: str, qty_s: Optional[str], pct_s: Optional[str]) -> dict:
        p = self._positions[key]
        a = self._assets[p["asset"]]
        crypto = self._is_crypto(a)
        pq = p["qty"]
        if qty_s not in (None, ""):
            want = _d(qty_s, "qty")
        elif pct_s not in (None, ""):
            pct = _d(pct_s, "percentage")
            if not (0 < pct <= 100):
                raise _err(422, 40010001, "percentage must be in (0, 100]")
            want = (abs(pq) * pct / D(100)).quantize(Q9, ROUND_DOWN)
            if not crypto and not a.get("fractionable"):
                want = want.to_integral_value(ROUND_FLOOR)
        else:
            want = abs(pq)
        if want <= 0:
            raise _err(422, 40010001, "qty must be > 0")
        side = "sell" if pq > 0 else "buy"
        if side == "sell":
            held, related = self._held_for_orders(a)
            avail = pq - held
            if want > avail:
                if crypto:
                    base = a["symbol"].split("/")[0]
                    raise _err(403, 40310000, f"insufficient balance for {base} (requested: {_fmt(want)}, "
                                              f"available: {_fmt(max(ZERO, avail))})")
                raise _err(403, 40310000, f"insufficient qty available for order (requested: {_fmt(want)}, "
                                          f"available: {_fmt(max(ZERO, avail))})",
                           available=_fmt(max(ZERO, avail)), existing_qty=_fmt(pq), held_for_orders=_fmt(held),
                           symbol=a["symbol"], related_orders=related)
        elif want > abs(pq):
            raise _err(403, 40310000, "insufficient qty available for order")
        return self._create_order(a, side=side, otype="market", tif="gtc" if crypto else "day", qty=want,
                                  notional=None, intent="sell_to_close" if side == "sell" else "buy_to_close")

    def _calendar(self, q: dict) -> List[dict]:
        today = _now().astimezone(_ET).date()
        start = _parse_ts(q["start"]).date() if q.get("start") else today - timedelta(days=30)
        end = _parse_ts(q["end"]).date() if q.get("end") else today + timedelta(days=30)
        out, d = [], start
        while d <= end:
            if d.weekday() < 5:
                out.append({"date": d.isoformat(), "open": "09:30", "close": "16:00",
                            "session_open": "0400", "session_close": "2000", "settlement_date": d.isoformat()})
            d += timedelta(days=1)
        return out

    # ------------------------------------------------------------------ market data

    def _symbols_param(self, q: dict) -> List[str]:
        s = q.get("symbols")
        if not s:
            raise _err(400, 40010001, "symbols is required")  # data API answers 400 for bad params
        return [x.strip() for x in s.split(",") if x.strip()]

    def _route_stock_data(self, r: List[str], q: dict) -> dict:
        if r == ["bars"]:
            return self._bars_page(q, crypto=False)
        if len(r) == 2 and r[1] == "latest" and r[0] in ("trades", "quotes", "bars"):
            return self._latest(r[0], q, crypto=False)
        raise _err(404, 40410000, "endpoint not found")

    def _route_crypto_data(self, r: List[str], q: dict) -> dict:
        if r == ["bars"]:
            return self._bars_page(q, crypto=True)
        if len(r) == 2 and r[0] == "latest" and r[1] in ("trades", "quotes", "bars"):
            return self._latest(r[1], q, crypto=True)
        raise _err(404, 40410000, "endpoint not found")

    def _latest(self, what: str, q: dict, crypto: bool) -> dict:
        out = {}
        now = _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for s in self._symbols_param(q):
            canon = self._canon(s)
            p = self._prices.get(canon)
            if p is None:
                continue
            pf = float(p)
            if what == "trades":
                t = {"t": now, "p": pf, "s": 1.0 if crypto else 100, "i": int(time.time() * 1000)}
                t.update({"tks": "B"} if crypto else {"x": "V", "c": ["@"], "z": "C"})
                out[s] = t
            elif what == "quotes":
                half = pf * self.quote_spread_bps / 2e4
                qq = {"t": now, "bp": round(pf - half, 6), "bs": 1.0 if crypto else 100,
                      "ap": round(pf + half, 6), "as": 1.0 if crypto else 100}
                if not crypto:
                    qq.update({"bx": "V", "ax": "V", "c": ["R"], "z": "C"})
                out[s] = qq
            else:
                bars = self._bars_for(canon, q.get("timeframe") or "1Min")
                if bars:
                    out[s] = dict(bars[-1])
                else:
                    out[s] = {"t": now, "o": pf, "h": pf, "l": pf, "c": pf, "v": 0.0, "n": 0, "vw": pf}
        return {what: out}

    def _bars_for(self, canon: str, tf: Optional[str]) -> Optional[List[dict]]:
        return self._bars.get(f"{canon}|{tf}") or self._bars.get(f"{canon}|*")

    def _bars_page(self, q: dict, crypto: bool) -> dict:
        syms = self._symbols_param(q)
        tf = q.get("timeframe")
        if not tf:
            raise _err(400, 40010001, "timeframe is required")
        try:
            limit = int(q.get("limit") or 1000)
        except ValueError:
            raise _err(400, 40010001, "invalid limit")
        if limit < 1 or limit > 10000:
            raise _err(400, 40010001, f"invalid limit: {limit}")
        page = min(limit, self.bars_page_max)
        start = _parse_ts(q["start"], "start") if q.get("start") else None
        end = _parse_ts(q["end"], "end") if q.get("end") else None
        desc = (q.get("sort") or "asc").lower() == "desc"
        items = []  # (symbol as requested, epoch_us, bar)
        for s in sorted(set(syms)):
            for b in self._bars_for(self._canon(s), tf) or []:
                t = _parse_ts(b["t"])
                if start is not None and t < start:
                    continue
                if end is not None and t > end:
                    continue
                items.append((s, int(t.timestamp() * 1_000_000), b))
        items.sort(key=lambda x: (x[0], -x[1] if desc else x[1]))
        begin = 0
        tok = q.get("page_token")
        if tok:
            try:
                ts_sym, _tf, ts_s = base64.b64decode(tok.encode()).decode().split("|", 2)
                tkey = (ts_sym, int(_parse_ts(ts_s).timestamp() * 1_000_000))
            except Exception:
                raise _err(400, 40010001, "invalid page_token")
            k = (tkey[0], -tkey[1] if desc else tkey[1])
            begin = len(items)
            for i, it in enumerate(items):
                if (it[0], -it[1] if desc else it[1]) > k:
                    begin = i
                    break
        chunk = items[begin:begin + page]
        bars: Dict[str, List[dict]] = {}
        for s, _, b in chunk:
            bars.setdefault(s, []).append(dict(b))
        nxt = None
        if begin + page < len(items) and chunk:
            last = chunk[-1]
            t_last = datetime.fromtimestamp(last[1] / 1_000_000, UTC)
            nxt = base64.b64encode(f"{last[0]}|{tf}|{t_last.strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z".encode()).decode()
        out = {"bars": bars, "next_page_token": nxt}
        if not crypto:
            out["currency"] = "USD"
        return out


ADMIN_METHODS = {
    "configure", "set_price", "set_prices", "get_price", "set_market_open", "set_cash", "set_asset",
    "set_position", "set_bars", "generate_bars", "inject", "clear_faults", "pending_faults", "kills",
    "get_requests", "clear_requests", "get_statuses", "orders_submitted", "count_orders", "get_order", "positions",
    "position_qty", "account", "fills", "process_orders", "new_day", "expire_day_orders", "reset",
    "export_state", "load_state",
    # venue behaviours (issue 12)
    "set_account", "post_crypto_fees", "venue_replace", "set_done_for_day", "correct_fill", "bust_fill",
    "add_user_order", "set_new_values",
}


# --------------------------------------------------------------------------------------------
# controlling a standalone server from a test


class AlpacaServerControl:
    """Same test API as ``AlpacaServer`` (names in ADMIN_METHODS), for a server in another process."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, name: str, *args, **kwargs):
        data = json.dumps({"method": name, "args": list(args), "kwargs": kwargs}, default=str).encode()
        req = urllib.request.Request(self.url + "/__admin__/call", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"admin call {name} failed: {e.read().decode(errors='replace')}") from None

    def __getattr__(self, name: str) -> Callable:
        if name in ADMIN_METHODS:
            return lambda *a, **k: self._call(name, *a, **k)
        raise AttributeError(name)

    @property
    def requests(self) -> List[RequestRecord]:
        return [RequestRecord(*r) for r in self._call("get_requests")]

    def health(self) -> Optional[dict]:
        try:
            with urllib.request.urlopen(self.url + "/__admin__/health", timeout=2) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 10.0) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if self.health():
                return
            time.sleep(0.02)
        raise TimeoutError(f"alpaca server at {self.url} not ready")


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class AlpacaServerProcess:
    """Run the server as a separate process: ``start()``, ``kill()`` (SIGKILL), ``restart()`` on the same port.

    ``config`` = AlpacaServer keyword arguments (JSON-able). ``control`` is an ``AlpacaServerControl``.
    """

    def __init__(self, port: int = 0, state_file: Optional[str] = None, config: Optional[dict] = None,
                 python: str = sys.executable, log_file: Optional[str] = None):
        self.port = port
        self.state_file = state_file
        self.config = dict(config or {})
        self.python = python
        self.log_file = log_file
        self.proc: Optional[subprocess.Popen] = None
        self.url: Optional[str] = None
        self.control: Optional[AlpacaServerControl] = None
        self._tmpdir = tempfile.mkdtemp(prefix="alpaca_srv_")

    def start(self, timeout: float = 15.0) -> "AlpacaServerProcess":
        ready = os.path.join(self._tmpdir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        cmd = [self.python, "-m", "tests.servers.alpaca_server", "--port", str(self.port),
               "--ready-file", ready, "--config", json.dumps(self.config)]
        if self.state_file:
            cmd += ["--state", self.state_file]
        log = open(self.log_file or os.path.join(self._tmpdir, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alpaca server exited with {self.proc.returncode}; see {self._tmpdir}/server.log")
            if os.path.exists(ready):
                with open(ready) as f:
                    url = f.read().strip()
                if url:
                    self.url = url
                    self.port = int(url.rsplit(":", 1)[1])
                    self.control = AlpacaServerControl(url)
                    self.control.wait_ready(timeout=max(0.5, end - time.time()))
                    return self
            time.sleep(0.02)
        self.kill()
        raise TimeoutError("alpaca server process did not start")

    def kill(self) -> None:
        """SIGKILL, no cleanup (what a crash looks like)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout: float = 15.0) -> "AlpacaServerProcess":
        self.kill()
        return self.start(timeout=timeout)

    def close(self) -> None:
        """Stop and remove the helper's temp dir (ready file, server.log)."""
        self.stop()
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> "AlpacaServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# standalone entry point


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.servers.alpaca_server",
                                 description="Local Alpaca trading + market-data API for tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state", help="persist state to this JSON file after every mutation; reload at start")
    ap.add_argument("--key", default="test-key")
    ap.add_argument("--secret", default="test-secret")
    ap.add_argument("--cash", type=float, default=None)
    ap.add_argument("--fill-mode", choices=["poll", "tick", "immediate", "manual"], default=None)
    ap.add_argument("--fill-after-polls", type=int, default=None)
    ap.add_argument("--fill-slippage-bps", type=float, default=None)
    ap.add_argument("--partial-fill-fraction", type=float, default=None)
    ap.add_argument("--crypto-fee-bps", type=float, default=None)
    ap.add_argument("--rate-limit", type=int, default=None, help="requests/min per key; 0 = off")
    ap.add_argument("--market-closed", action="store_true")
    ap.add_argument("--config", default="{}", help="JSON object of extra AlpacaServer keyword arguments")
    ap.add_argument("--ready-file", help="write the server URL here once it listens")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)

    kw = json.loads(args.config or "{}")
    for name in ("cash", "fill_mode", "fill_after_polls", "fill_slippage_bps", "partial_fill_fraction",
                 "crypto_fee_bps"):
        v = getattr(args, name)
        if v is not None:
            kw[name] = v
    if args.rate_limit is not None:
        kw["rate_limit"] = args.rate_limit or None
    if args.market_closed:
        kw["market_open"] = False
    kw.setdefault("key", args.key)
    kw.setdefault("secret", args.secret)
    srv = AlpacaServer(port=args.port, host=args.host, state_file=args.state, verbose=args.verbose, **kw)
    srv.start()
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(srv.url)
        os.replace(tmp, args.ready_file)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
