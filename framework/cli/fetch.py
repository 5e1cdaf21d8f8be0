"""``parity data fetch``: market data from Alpaca or Coinbase into the local store.

This module is composition only: it reads the settings, builds the venue's SDK client with its
limiter and timeout, and hands the resulting ``BarSource`` to ``framework.fetch.fetch_to_store``,
which decides what is missing and writes chunk by chunk (see that module for the rules).

Keys: Alpaca market data uses the paper keys (``ALPACA_PAPER_KEY``/``ALPACA_PAPER_SECRET``) and
falls back to the live keys (reading data cannot trade); crypto bars need no key at all.
``execution.alpaca.data_url`` points at another data endpoint (a local test server). Coinbase
candles use the public endpoint when no Coinbase key is configured, the authenticated one
otherwise; ``execution.coinbase.base_url``/``ca_bundle`` point at a local server. The ``enabled``
flags concern trading and are not consulted here.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from framework.cli import _progress, _settings, config_option, data

if TYPE_CHECKING:
    from framework.config import Settings


def alpaca_source(settings: Settings, *, feed: str | None, adjustment: str):
    from brokers.alpaca.bars import AlpacaBars, make_data_clients
    from brokers.alpaca.client import AlpacaEndpoints
    from brokers.retry import RateLimiter

    a = settings.execution.alpaca
    if a.paper_api_key and a.paper_api_secret:
        key, secret = a.paper_api_key, a.paper_api_secret
    elif a.api_key and a.api_secret:
        key, secret = a.api_key, a.api_secret
    else:
        key = secret = ""                # no keys: crypto bars only (make_data_clients makes no stock client)
    ep = AlpacaEndpoints(key, secret, True, a.base_url, a.data_url, a.timeout_s)
    limiter = RateLimiter(a.requests_per_minute, 60.0)
    stock, crypto = make_data_clients(ep, limiter)
    return AlpacaBars(stock, crypto, limiter, feed=feed, adjustment=adjustment)


def coinbase_source(settings: Settings):
    from brokers.coinbase.candles import CoinbaseCandles
    from brokers.coinbase.client import CoinbaseEndpoints, make_client
    from brokers.retry import RateLimiter

    c = settings.execution.coinbase
    public = not (c.key_file or (c.api_key and c.api_secret))
    ep = CoinbaseEndpoints(None if public else c.api_key, None if public else c.api_secret,
                           None if public else c.key_file, c.base_url, c.ca_bundle, c.timeout_s)
    # public endpoints: 10 requests/s per IP; private: the configured rate (30/s)
    limiter = RateLimiter(10 if public else c.requests_per_second, 1.0)
    return CoinbaseCandles(make_client(ep, limiter), limiter, public=public)


@data.command("fetch")
@click.option("--source", type=click.Choice(["alpaca", "coinbase"]), required=True, help="the venue to fetch from")
@click.option("--symbols", multiple=True, required=True,
              help="symbols, comma-separated or repeated (AAPL,BTC/USD; BTC-USD, BTCUSD, X:BTCUSD work too)")
@click.option("--timeframe", required=True, help="bar size: 1m, 5m, 15m, 1h or 1d")
@click.option("--start", required=True, help="first bar (UTC date or ISO date-time, inclusive)")
@click.option("--end", default="now", show_default=True,
              help="last bar (inclusive; a date alone means the whole day)")
@click.option("--refetch", is_flag=True, help="fetch the whole range again, interior gaps included")
@click.option("--chunk-bars", type=click.IntRange(min=1), default=None,
              help="bar intervals per chunk, each written to the store as it arrives (default: the venue's)")
@click.option("--feed", type=click.Choice(["iex", "sip", "delayed_sip"]), default=None,
              help="Alpaca stock feed (default: Alpaca's choice for the account)")
@click.option("--adjustment", type=click.Choice(["raw", "split", "dividend", "all"]), default="raw",
              show_default=True, help="Alpaca stock price adjustment")
@click.option("--json", "json_out", is_flag=True, help="print the result as JSON only")
@config_option
@click.pass_context
def data_fetch(ctx: click.Context, source: str, symbols: tuple[str, ...], timeframe: str, start: str, end: str,
               refetch: bool, chunk_bars: int | None, feed: str | None, adjustment: str, json_out: bool) -> None:
    """Fetch bars into the local store: only what is missing, chunk by chunk, resumable."""
    from framework.cli.output import emit_json
    from framework.data import BarStore
    from framework.errors import UsageError
    from framework.fetch import TIMEFRAMES, fetch_to_store, parse_symbols, parse_time, parse_timeframe

    tf = parse_timeframe(timeframe)
    syms = parse_symbols(symbols)
    t0, t1 = parse_time(start, "--start"), parse_time(end, "--end", end=True)
    if t0 >= t1:
        raise UsageError(f"--start {start} is after --end {end}")
    settings = _settings(ctx)
    src = alpaca_source(settings, feed=feed, adjustment=adjustment) if source == "alpaca" else coinbase_source(settings)
    store = BarStore(settings.data_dir)
    bar = _progress_bar(_progress(json_out))
    try:
        report = fetch_to_store(store, src, syms, tf, t0, t1, refetch=refetch, chunk_bars=chunk_bars,
                                on_chunk=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    if json_out:
        emit_json(report.to_dict())
        return
    click.echo(f"{report.source} {tf} bars {start} .. {end} -> {report.store}")
    for r in report.symbols:
        where = "nothing stored" if r.first is None else \
            f"store {_day(r.first)} .. {_day(r.last)}, {r.stored_bars:,} bars"
        if not r.planned:
            what = "up to date"
        else:
            spans = ", ".join(f"{_day(s.start)} .. {_day(s.end - TIMEFRAMES[tf])}" for s in r.planned)
            what = f"{r.bars_fetched:,} new bars ({spans})"
        click.echo(f"  {r.symbol:<10} {what:<46} {where}")


def _day(ts) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if (ts.hour or ts.minute) else ts.strftime("%Y-%m-%d")


class _Bar:
    """A tqdm bar over chunks, re-sized per symbol."""

    def __init__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="chunk", file=sys.stderr, leave=False)

    def update(self, ev) -> None:
        if ev.done == 1:
            self.bar.reset(total=ev.total)
        self.bar.set_description(ev.symbol)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(enabled: bool) -> _Bar | None:
    return _Bar() if enabled else None
