"""framework/fetch.py on its own: what is missing, in which order it is fetched, what is kept.

A fake in-memory source stands in for a venue; the venue adapters have their own tests against
the local servers (test_fetch_alpaca.py, test_fetch_coinbase.py).
"""

from __future__ import annotations

import pandas as pd
import pytest

from framework.data import BarStore
from framework.errors import TransientBrokerError, UsageError
from framework.fetch import (
    ChunkDone,
    FetchInterrupted,
    FetchLog,
    Span,
    chunk,
    fetch_to_store,
    missing_spans,
    parse_symbols,
    parse_time,
    parse_timeframe,
)

H = pd.Timedelta(hours=1)
NOW = pd.Timestamp("2025-06-01T12:34:00Z")


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC") if "Z" not in s and "+" not in s else pd.Timestamp(s)


class FakeSource:
    """Hourly bars for every hour in ``[first, last]``; records every request; can fail on demand."""

    name = "fake"
    chunk_bars = 24

    def __init__(self, first="2024-01-01", last="2025-12-31", crypto_only=False):
        self.first, self.last = ts(first), ts(last)
        self.requests: list[Span] = []
        self.fail_after: int | None = None
        self.crypto_only = crypto_only

    def check(self, symbol):
        return "crypto only" if self.crypto_only and "/" not in symbol else None

    def fetch(self, symbol, timeframe, start, end):
        if self.fail_after is not None and len(self.requests) >= self.fail_after:
            raise TransientBrokerError("venue down (HTTP 503)")
        self.requests.append(Span(start, end))
        t = pd.date_range(max(start, self.first), min(end - H, self.last), freq="1h")
        px = 100 + (t - self.first) / H
        return pd.DataFrame({"timestamp": t, "symbol": symbol, "open": px, "high": px + 1, "low": px - 1,
                             "close": px + 0.5, "volume": 10.0})


@pytest.fixture
def store(tmp_path):
    return BarStore(tmp_path / "data")


def stored(store, symbol="BTC/USD", tf="1h") -> pd.DataFrame:
    return store.read(tf, [symbol])


# ------------------------------------------------------------------------------------ arguments

def test_timeframe_names_and_aliases():
    assert [parse_timeframe(x) for x in ("1m", "5Min", "15m", "1Hour", "1h", "1D", "1day")] == \
        ["1m", "5m", "15m", "1h", "1h", "1d", "1d"]
    with pytest.raises(UsageError, match="unknown timeframe '2d'"):
        parse_timeframe("2d")


def test_times_are_utc_and_a_date_alone_as_end_covers_the_day():
    assert parse_time("2024-03-01", "--start") == ts("2024-03-01")
    assert parse_time("2024-03-01T10:00:00-05:00", "--start") == ts("2024-03-01T15:00:00")
    assert parse_time("2024-03-31", "--end", end=True) == ts("2024-04-01")
    assert parse_time("2024-03-31T15:00", "--end", end=True) == ts("2024-03-31T15:00") + pd.Timedelta(1, "ns")
    now = pd.Timestamp.now(tz="UTC")
    assert abs(parse_time("now", "--end", end=True) - now) < pd.Timedelta(seconds=5)
    assert parse_time("today", "--end", end=True) == now.normalize() + pd.Timedelta(days=1)
    with pytest.raises(UsageError, match="--start 'yesterday-ish' is not a date"):
        parse_time("yesterday-ish", "--start")


def test_symbols_are_canonical_and_bad_forms_are_usage_errors():
    assert parse_symbols(("AAPL,btc-usd", "X:ETHUSD  SOL/USD", "AAPL")) == ["AAPL", "BTC/USD", "ETH/USD", "SOL/USD"]
    with pytest.raises(UsageError, match="not a symbol"):
        parse_symbols(("BTC/",))


# ------------------------------------------------------------------------------------ planning

def test_missing_spans_are_the_edges_outside_stored_and_fetched():
    want = Span(ts("2024-01-01"), ts("2024-02-01"))
    stored_block = Span(ts("2024-01-10"), ts("2024-01-20"))
    assert missing_spans(want, None, []) == [want]
    assert missing_spans(want, stored_block, []) == [Span(ts("2024-01-01"), ts("2024-01-10")),
                                                      Span(ts("2024-01-20"), ts("2024-02-01"))]
    fetched = [Span(ts("2024-01-01"), ts("2024-01-05")), Span(ts("2024-01-25"), ts("2024-03-01"))]
    assert missing_spans(want, stored_block, fetched) == [Span(ts("2024-01-05"), ts("2024-01-10")),
                                                          Span(ts("2024-01-20"), ts("2024-01-25"))]


def test_chunks_go_forwards_or_backwards_and_cover_the_span_exactly():
    span = Span(ts("2024-01-01"), ts("2024-01-01T10:00"))
    fwd = chunk(span, H, 4)
    assert [(c.start.hour, c.end.hour) for c in fwd] == [(0, 4), (4, 8), (8, 10)]
    back = chunk(span, H, 4, backwards=True)
    assert [(c.start.hour, c.end.hour) for c in back] == [(6, 10), (2, 6), (0, 2)]


# ------------------------------------------------------------------------------------ fetching

def test_first_fetch_writes_every_bar_once_in_order(store):
    src = FakeSource()
    rep = fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-05"), now=NOW)
    df = stored(store)
    assert len(df) == 96 and df["timestamp"].is_monotonic_increasing and not df["timestamp"].duplicated().any()
    assert str(df["timestamp"].dt.tz) == "UTC" and df["close"].iloc[0] == 100.5
    assert len(src.requests) == 4 and rep.symbols[0].status == "complete"
    assert rep.to_dict()["symbols"][0]["store_last"] == "2024-01-04T23:00:00Z"


def test_second_fetch_of_the_same_range_asks_nothing_and_extending_asks_only_the_tail(store):
    src = FakeSource()
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-03"), now=NOW)
    src.requests.clear()
    rep = fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-03"), now=NOW)
    assert src.requests == [] and rep.symbols[0].status == "up to date"
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-04"), now=NOW)
    assert src.requests == [Span(ts("2024-01-03"), ts("2024-01-04"))]
    assert len(stored(store)) == 72


def test_extending_backwards_goes_newest_chunk_first(store):
    src = FakeSource()
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-03"), ts("2024-01-04"), now=NOW)
    src.requests.clear()
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-04"), now=NOW)
    assert src.requests == [Span(ts("2024-01-02"), ts("2024-01-03")), Span(ts("2024-01-01"), ts("2024-01-02"))]


def test_empty_edges_are_remembered_so_a_rerun_does_not_ask_again(store):
    src = FakeSource(first="2024-01-02", last="2024-01-03T23:00")       # venue has only two days
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-06"), now=NOW)
    assert len(stored(store)) == 48
    assert FetchLog(store, "1h").spans("BTC/USD") == [Span(ts("2024-01-01"), ts("2024-01-06"))]
    src.requests.clear()
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-06"), now=NOW)
    assert src.requests == []


def test_interior_gaps_are_kept_unless_refetch(store):
    src = FakeSource()
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-03"), now=NOW)
    df = stored(store)
    hole = df[(df["timestamp"] < ts("2024-01-01T10:00")) | (df["timestamp"] >= ts("2024-01-01T12:00"))]
    (store.root / "1h" / "BTC-USD.parquet").unlink()
    (store.root / "1h" / ".fetch-log.json").unlink()
    store.write(hole, "1h")
    src.requests.clear()
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-03"), now=NOW)
    assert src.requests == [] and len(stored(store)) == 46                  # documented: not refetched
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-03"), now=NOW, refetch=True)
    assert len(src.requests) == 2 and len(stored(store)) == 48


def test_incomplete_and_recent_bars(store):
    src = FakeSource()
    now = ts("2024-01-10T12:30")
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-09"), ts("2024-01-11"), now=now)
    assert stored(store)["timestamp"].max() == ts("2024-01-10T11:00")   # the 12:00 bar is still open
    assert FetchLog(store, "1h").spans("BTC/USD")[-1].end == ts("2024-01-09T12:00")   # the last day stays open
    src.requests.clear()
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-09"), ts("2024-01-11"), now=ts("2024-01-10T15:05"))
    assert src.requests == [Span(ts("2024-01-10T12:00"), ts("2024-01-10T15:00"))]


def test_interruption_keeps_the_written_chunks_and_a_rerun_completes(store):
    src = FakeSource()
    events: list[ChunkDone] = []
    src.fail_after = 3
    with pytest.raises(FetchInterrupted) as ei:
        fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-06"), now=NOW,
                       on_chunk=events.append)
    assert "Run the same command again" in str(ei.value) and "3 of 5 chunk(s)" in str(ei.value)
    assert isinstance(ei.value.__cause__, TransientBrokerError)
    assert [e.done for e in events] == [1, 2, 3] and len(stored(store)) == 72
    src.fail_after, done = None, len(src.requests)
    fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-01"), ts("2024-01-06"), now=NOW)
    assert src.requests[done:] == [Span(ts("2024-01-04"), ts("2024-01-05")), Span(ts("2024-01-05"), ts("2024-01-06"))]
    df = stored(store)
    assert len(df) == 120 and not df["timestamp"].duplicated().any()


def test_bad_span_and_unservable_symbol_stop_before_any_request(store):
    src = FakeSource(crypto_only=True)
    with pytest.raises(UsageError, match="not before"):
        fetch_to_store(store, src, ["BTC/USD"], "1h", ts("2024-01-02"), ts("2024-01-01"), now=NOW)
    with pytest.raises(UsageError, match="AAPL: crypto only"):
        fetch_to_store(store, src, ["BTC/USD", "AAPL"], "1h", ts("2024-01-01"), ts("2024-01-02"), now=NOW)
    assert src.requests == []
