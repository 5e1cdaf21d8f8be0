"""coinbase-advanced-py's RESTClient with what the SDK lacks: a timeout on every call, our limiter
fed from the venue's rate-limit headers, trust of a local server's certificate, and SDK errors
translated into ``framework.errors``. The SDK never retries; the live loop does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from brokers.retry import RateLimiter
from framework.errors import (
    AuthenticationError,
    BrokerError,
    InsufficientFunds,
    OrderRejected,
    TransientBrokerError,
)


class NotFound(BrokerError):
    """404 from the venue."""


@dataclass(frozen=True, slots=True)
class CoinbaseEndpoints:
    api_key: str | None
    api_secret: str | None
    key_file: str | None
    base_url: str | None          # host[:port]; None = api.coinbase.com
    ca_bundle: str | None = None  # trust a local server's self-signed certificate
    timeout: float = 10.0
    stream_url: str | None = None  # user-channel WebSocket; None = the venue's (only with its own REST host)
    streaming: bool = True

    @property
    def stream_endpoint(self) -> str | None | bool:
        """Where to stream from: a URL, None for the venue's own, or False for no stream."""
        if not self.streaming:
            return False
        if self.stream_url:
            return self.stream_url
        return None if self.base_url is None else False


def make_client(ep: CoinbaseEndpoints, limiter: RateLimiter):
    from coinbase.rest import RESTClient

    kw: dict = {"timeout": ep.timeout}
    if ep.base_url:
        kw["base_url"] = ep.base_url
    if ep.key_file:
        client = RESTClient(api_key=None, api_secret=None, key_file=ep.key_file, **kw)
    else:
        client = RESTClient(api_key=ep.api_key, api_secret=ep.api_secret, **kw)
    session: requests.Session = client.session
    if ep.ca_bundle:
        session.trust_env = False        # REQUESTS_CA_BUNDLE would otherwise win over verify
        session.verify = ep.ca_bundle

    def observe(resp, *_a, **_k):
        remaining = resp.headers.get("x-ratelimit-remaining")
        reset = resp.headers.get("x-ratelimit-reset")
        if remaining is not None:
            try:
                limiter.observe(int(float(remaining)), float(reset) - time.time() if reset else None)
            except ValueError:
                pass
        return resp

    session.hooks["response"].append(observe)
    send = session.request

    def limited(method: str, url: str | bytes, *args: Any, **kw: Any) -> requests.Response:
        limiter.acquire()                # one token per HTTP request, at the venue's published rate
        return send(method, url, *args, **kw)

    # the SDK's session is made inside RESTClient: its request method is wrapped in place
    session.request = limited  # type: ignore[method-assign]
    limiter.per_request = True
    return client


def translate(e: Exception, what: str) -> Exception:
    """Map a coinbase-advanced-py / requests exception to the framework's error tree."""
    if isinstance(e, BrokerError):
        return e
    if isinstance(e, (requests.exceptions.Timeout, requests.exceptions.ConnectionError)):
        return TransientBrokerError(f"Coinbase {what}: connection problem ({type(e).__name__})")
    if isinstance(e, requests.exceptions.HTTPError) and e.response is not None:
        status = e.response.status_code
        text = (e.response.text or "")[:300]
        if status == 429 or status >= 500:
            return TransientBrokerError(f"Coinbase {what}: HTTP {status}")
        if status in (401, 403):
            return AuthenticationError(f"Coinbase {what}: HTTP {status} {text.strip()[:120]}; check COINBASE_API_KEY/"
                                       "COINBASE_API_SECRET (a CDP key name and its PEM) or the key file")
        if status == 404:
            return NotFound(f"Coinbase {what}: {text}")
        return OrderRejected(f"Coinbase {what}: HTTP {status} {text}")
    name = type(e).__name__
    if name == "AuthenticationError":
        return AuthenticationError(f"Coinbase {what}: {e}")
    return BrokerError(f"Coinbase {what}: {name}: {e}")


def rejection(resp: dict, what: str) -> OrderRejected:
    """An HTTP 200 answer with ``success: false`` is a rejection: say why, never ignore it."""
    er = resp.get("error_response") or {}
    code = er.get("error") or resp.get("failure_reason") or "UNKNOWN"
    detail = er.get("preview_failure_reason") or er.get("new_order_failure_reason") or ""
    msg = er.get("message") or er.get("error_details") or ""
    text = f"Coinbase rejected {what}: {code}" + (f" / {detail}" if detail and detail != code else "") + \
           (f": {msg}" if msg else "")
    cls = InsufficientFunds if "INSUFFICIENT_FUND" in f"{code} {detail}" else OrderRejected
    return cls(text, code=str(code))
