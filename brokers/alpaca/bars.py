"""Historical bars from Alpaca's market-data API (stocks and crypto), a ``framework.fetch.BarSource``.

One SDK call per chunk and symbol (alpaca-py follows ``next_page_token`` inside the call), always
with ``start`` and ``end`` (Alpaca's ``start`` otherwise defaults to today), through our limiter
and ``with_retries`` (429, 5xx, timeouts and dropped connections are retried with backoff and
jitter; the SDK's own fixed-sleep retry is off). Every HTTP call has the session timeout of
``brokers/alpaca/client.py``.

Timestamps: intraday bars are stamped with their open time in UTC and kept as they are. Daily
stock bars are stamped at midnight New York time (``T05:00:00Z`` in winter, ``T04:00:00Z`` in
summer); they are relabelled ``YYYY-MM-DDT00:00:00Z`` with their New York trading date, the label
the shared data and ``parity data import`` use. Daily crypto bars are labelled with their UTC date
(Alpaca stamps them within that UTC day).
"""

from __future__ import annotations

import time
from typing import Callable

import pandas as pd

from brokers.alpaca.client import AlpacaEndpoints, TimeoutSession, translate
from brokers.retry import RateLimiter, RetryPolicy, with_retries
from framework.data import BAR_COLUMNS
from framework.errors import OrderRejected, UsageError
from framework.symbols import is_crypto

NEW_YORK = "America/New_York"
CHUNK_BARS = 10_000   # one SDK page per chunk for one symbol


def _timeframe(name: str):
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    return {"1m": TimeFrame(1, TimeFrameUnit.Minute), "5m": TimeFrame(5, TimeFrameUnit.Minute),
            "15m": TimeFrame(15, TimeFrameUnit.Minute), "1h": TimeFrame(1, TimeFrameUnit.Hour),
            "1d": TimeFrame(1, TimeFrameUnit.Day)}[name]


def make_data_clients(ep: AlpacaEndpoints, limiter: RateLimiter):
    """(stock client or None without keys, crypto client): raw JSON, session timeout, no SDK retry.

    Crypto bars need no keys; stock bars do. The trading client is not needed for market data.
    """
    from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient

    have_keys = bool(ep.key and ep.secret)
    stock = StockHistoricalDataClient(ep.key, ep.secret, raw_data=True, url_override=ep.data_url) \
        if have_keys else None
    crypto = CryptoHistoricalDataClient(ep.key if have_keys else None, ep.secret if have_keys else None,
                                        raw_data=True, url_override=ep.data_url)
    for c in (stock, crypto):
        if c is not None:
            c._session = TimeoutSession(ep.timeout, limiter)   # alpaca-py has no timeout knob (0.44)
            c._retry = 0                                        # with_retries backs off with jitter
    return stock, crypto


class AlpacaBars:
    """Alpaca stock and crypto bars for ``parity data fetch``."""

    name = "alpaca"
    chunk_bars = CHUNK_BARS

    def __init__(self, stock_client, crypto_client, limiter: RateLimiter, *, feed: str | None = None,
                 adjustment: str = "raw", retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep):
        self.stock = stock_client
        self.crypto = crypto_client
        self.limiter = limiter
        self.feed = feed
        self.adjustment = adjustment
        self.retry = retry
        self.sleep = sleep
        self.calls = 0

    def check(self, symbol: str) -> str | None:
        if not is_crypto(symbol) and self.stock is None:
            return ("stock bars need Alpaca keys: set ALPACA_PAPER_KEY and ALPACA_PAPER_SECRET (or ALPACA_API_KEY "
                    "and ALPACA_API_SECRET) in the environment or .env")
        return None

    def _request(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp):
        from alpaca.data.enums import Adjustment, DataFeed
        from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest

        # Alpaca's end is inclusive; ours is exclusive. Daily stock bars stamped T04/T05:00Z of a
        # label date fall inside [label 00:00Z, next label 00:00Z - 1 s].
        kw = {"symbol_or_symbols": symbol, "timeframe": _timeframe(timeframe),
              "start": start.to_pydatetime(), "end": (end - pd.Timedelta(seconds=1)).to_pydatetime()}
        if is_crypto(symbol):
            return lambda: self.crypto.get_crypto_bars(CryptoBarsRequest(**kw))
        stock_kw: dict[str, Adjustment | DataFeed] = {"adjustment": Adjustment(self.adjustment)}
        if self.feed:
            stock_kw["feed"] = DataFeed(self.feed)
        return lambda: self.stock.get_stock_bars(StockBarsRequest(**kw, **stock_kw))

    def _call(self, what: str, fn: Callable[[], object]):
        def attempt():
            self.calls += 1
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - translated at this boundary
                raise translate(e, what) from e

        try:
            return with_retries(attempt, self.limiter, self.retry, self.sleep)
        except OrderRejected as e:  # a 4xx other than 401/403/429: the request itself is wrong
            raise UsageError(f"Alpaca refused {what}: {e}") from e

    def fetch(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        raw = self._call(f"{timeframe} bars of {symbol}", self._request(symbol, timeframe, start, end))
        rows = (raw or {}).get(symbol) or []
        return bars_frame(symbol, rows, daily=timeframe == "1d", stock=not is_crypto(symbol))


def bars_frame(symbol: str, rows: list[dict], *, daily: bool, stock: bool) -> pd.DataFrame:
    """Alpaca bar JSON (``t,o,h,l,c,v``) -> the long frame, with daily bars labelled by date."""
    if not rows:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    df = pd.DataFrame(rows)
    ts = pd.to_datetime(df["t"], utc=True, format="ISO8601")
    if daily:
        local = ts.dt.tz_convert(NEW_YORK) if stock else ts
        ts = local.dt.tz_localize(None).dt.normalize().dt.tz_localize("UTC")
    return pd.DataFrame({"timestamp": ts, "symbol": symbol, "open": df["o"].astype(float),
                         "high": df["h"].astype(float), "low": df["l"].astype(float),
                         "close": df["c"].astype(float), "volume": df["v"].astype(float)})
