"""alpaca-py clients with the safety the SDK lacks: a timeout on every HTTP call, the venue's
rate-limit headers fed to our limiter, the SDK's fixed-sleep retry turned off (the live loop
retries with backoff and jitter), trading answers read without the SDK's strict models
(``brokers.alpaca.view``: a new enum value from the venue does not stop Parity), and SDK errors
translated into ``framework.errors``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import requests

from brokers.alpaca.view import LenientTrading
from brokers.retry import RateLimiter
from framework.errors import (
    AuthenticationError,
    BrokerError,
    InsufficientFunds,
    OrderRejected,
    TransientBrokerError,
)


class DuplicateClientOrderId(BrokerError):
    """The venue already has an order with this client order id: look it up, do not resend."""


class NotFound(BrokerError):
    """404 from the venue."""


class TimeoutSession(requests.Session):
    """A session that always passes a timeout and reports rate-limit headers."""

    def __init__(self, timeout: float, limiter: RateLimiter):
        super().__init__()
        self._timeout = timeout
        self._limiter = limiter
        limiter.per_request = True
        self.trust_env = False

    def request(self, method, url, **kw):
        kw.setdefault("timeout", self._timeout)
        self._limiter.acquire()          # one token per HTTP request, at the venue's published rate
        resp = super().request(method, url, **kw)
        remaining = resp.headers.get("X-Ratelimit-Remaining")
        reset = resp.headers.get("X-Ratelimit-Reset")
        if remaining is not None:
            try:
                reset_in = float(reset) - time.time() if reset else None
                self._limiter.observe(int(remaining), reset_in)
            except ValueError:
                pass
        return resp


@dataclass(frozen=True, slots=True)
class AlpacaEndpoints:
    key: str
    secret: str
    paper: bool
    trading_url: str | None   # None = the venue's own endpoint
    data_url: str | None
    timeout: float = 10.0
    stream_url: str | None = None   # trade_updates WebSocket; None = the venue's (used only with its own
                                    # trading endpoint: a test server without a stream is polled)
    streaming: bool = True

    @property
    def stream_endpoint(self) -> str | None | bool:
        """Where to stream from: a URL, None for the venue's own, or False for no stream."""
        if not self.streaming:
            return False
        if self.stream_url:
            return self.stream_url
        return None if self.trading_url is None else False


def make_clients(ep: AlpacaEndpoints, limiter: RateLimiter):
    from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
    from alpaca.trading.client import TradingClient

    # raw_data: the venue's JSON, not alpaca-py's strict models (one enum value the SDK does not know
    # fails the whole answer, alpaca-py#276/#340/#624); read through brokers.alpaca.view
    trading = TradingClient(ep.key, ep.secret, paper=ep.paper, url_override=ep.trading_url, raw_data=True)
    stock = StockHistoricalDataClient(ep.key, ep.secret, url_override=ep.data_url)
    crypto = CryptoHistoricalDataClient(ep.key, ep.secret, url_override=ep.data_url)
    for c in (trading, stock, crypto):
        c._session = TimeoutSession(ep.timeout, limiter)   # alpaca-py has no timeout knob (0.44)
        c._retry = 0                                        # our loop retries with backoff + jitter
    return LenientTrading(trading), stock, crypto


def _body(e) -> dict:
    text = getattr(e, "_error", None) or str(e)
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {"message": str(data)}
    except (TypeError, ValueError):
        return {"message": (text or "")[:200]}


def translate(e: Exception, what: str) -> Exception:
    """Map an alpaca-py / requests exception to the framework's error tree."""
    from alpaca.common.exceptions import APIError

    if isinstance(e, (requests.exceptions.Timeout, requests.exceptions.ConnectionError)):
        return TransientBrokerError(f"Alpaca {what}: connection problem ({type(e).__name__})")
    if isinstance(e, APIError):
        status = e.status_code or 0
        body = _body(e)
        msg = str(body.get("message", "")).strip() or f"HTTP {status}"
        if status == 429 or status >= 500:
            return TransientBrokerError(f"Alpaca {what}: HTTP {status} {msg}")
        if status == 401 or (status == 403 and "not authorized" in msg.lower()):
            return AuthenticationError(f"Alpaca {what}: credentials refused (HTTP {status}: {msg}); "
                                       "check ALPACA_PAPER_KEY/ALPACA_PAPER_SECRET or ALPACA_API_KEY/ALPACA_API_SECRET")
        if status == 404:
            return NotFound(f"Alpaca {what}: {msg}")
        if status == 422 and "client_order_id must be unique" in msg:
            return DuplicateClientOrderId(msg)
        if status == 403 and ("insufficient" in msg.lower() or "buying power" in msg.lower()):
            extra = {k: v for k, v in body.items() if k not in ("code", "message")}
            return InsufficientFunds(f"{msg} {extra}" if extra else msg, code=str(body.get("code", "")))
        return OrderRejected(f"HTTP {status}: {msg}", code=str(body.get("code", "")))
    if isinstance(e, BrokerError):
        return e
    return BrokerError(f"Alpaca {what}: {type(e).__name__}: {e}")

