"""Historical candles from Coinbase Advanced Trade, a ``framework.fetch.BarSource``.

Coinbase answers at most 350 candles per request, newest first, with ``start``/``end`` in unix
seconds (strings). A chunk is walked in windows of 350 × granularity; each request asks for
``[window start, window end - 1 s]`` so that exactly the window's candles come back whether the
venue treats ``end`` as inclusive or exclusive, and the answer is filtered to the window, sorted
oldest first and de-duplicated. Without keys the public endpoint (``/market/products/.../candles``,
10 requests/s per IP) is used, with keys the authenticated one. Every call goes through our limiter
and ``with_retries`` (the SDK never retries) with the client's timeout.

Throttling has been seen to surface as HTTP 401; on the public endpoint, which takes no
credentials, a 401 can only be that, so it is retried like a 429.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import pandas as pd

from brokers.coinbase.client import NotFound, translate
from brokers.coinbase.wire import product_id, to_dict
from brokers.retry import RateLimiter, RetryPolicy, with_retries
from framework.data import BAR_COLUMNS
from framework.errors import AuthenticationError, OrderRejected, TransientBrokerError, UsageError
from framework.symbols import is_crypto

MAX_CANDLES = 350
GRANULARITY = {"1m": ("ONE_MINUTE", 60), "5m": ("FIVE_MINUTE", 300), "15m": ("FIFTEEN_MINUTE", 900),
               "1h": ("ONE_HOUR", 3600), "1d": ("ONE_DAY", 86400)}


class CoinbaseCandles:
    """Coinbase spot candles for ``parity data fetch`` (public endpoint when no keys are configured)."""

    name = "coinbase"
    chunk_bars = 30 * MAX_CANDLES   # one store write every 30 requests

    def __init__(self, client, limiter: RateLimiter, *, public: bool, max_candles: int = MAX_CANDLES,
                 retry: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.limiter = limiter
        self.public = public
        self.max_candles = max_candles
        self.retry = retry
        self.sleep = sleep
        self.calls = 0
        # the SDK logs every HTTP error at ERROR on stderr; errors are translated and reported here
        logging.getLogger("coinbase.RESTClient").setLevel(logging.CRITICAL)

    def check(self, symbol: str) -> str | None:
        if not is_crypto(symbol):
            return "Coinbase lists crypto pairs only (BASE/QUOTE, e.g. BTC/USD)"
        return None

    def _window(self, pid: str, granularity: str, start: int, end: int) -> list[dict]:
        get = self.client.get_public_candles if self.public else self.client.get_candles

        def attempt():
            self.calls += 1
            try:
                resp = get(pid, str(start), str(end - 1), granularity)
            except Exception as e:  # noqa: BLE001 - translated at this boundary
                err = translate(e, f"candles of {pid}")
                if self.public and isinstance(err, AuthenticationError):
                    err = TransientBrokerError(f"Coinbase candles of {pid}: HTTP 401 on the public endpoint "
                                               "(throttling)")
                raise err from e
            return [to_dict(c) for c in (to_dict(resp).get("candles") or [])]

        try:
            return with_retries(attempt, self.limiter, self.retry, self.sleep)
        except NotFound as e:
            raise UsageError(f"Coinbase has no product {pid}: {e}") from e
        except OrderRejected as e:   # 400: the request itself is wrong
            raise UsageError(f"Coinbase refused the candles request for {pid}: {e}") from e

    def fetch(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        granularity, g = GRANULARITY[timeframe]
        pid = product_id(symbol)
        s, e = int(start.timestamp()), int(end.timestamp())
        rows: dict[int, dict] = {}
        t = s
        while t < e:
            w_end = min(e, t + self.max_candles * g)
            for c in self._window(pid, granularity, t, w_end):
                ts = int(float(c["start"]))
                if t <= ts < w_end:
                    rows[ts] = c
            t = w_end
        return candles_frame(symbol, [rows[k] for k in sorted(rows)])


def candles_frame(symbol: str, candles: list[dict]) -> pd.DataFrame:
    """Coinbase candle JSON (strings, unix-second ``start``) -> the long frame, oldest first."""
    if not candles:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    df = pd.DataFrame(candles)
    return pd.DataFrame({
        "timestamp": pd.to_datetime(df["start"].astype("int64"), unit="s", utc=True),
        "symbol": symbol,
        **{c: df[c].astype(float) for c in ("open", "high", "low", "close", "volume")},
    })
