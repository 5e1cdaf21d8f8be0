"""Alpaca bars into the store through the real alpaca-py against the local Alpaca server."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from brokers.retry import RetryPolicy
from framework.cli.fetch import alpaca_source
from framework.config import AlpacaSettings, ExecutionSettings, Settings
from framework.data import BarStore
from framework.errors import UsageError
from framework.fetch import FetchInterrupted, fetch_to_store
from tests.conftest import FAKE_SECRET, run_parity, write_settings
from tests.servers.alpaca_server import AlpacaServer

KEY, SECRET = FAKE_SECRET, FAKE_SECRET + "S"      # what tests.conftest.cli_env exports as paper keys
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)
STOCK_PATH, CRYPTO_PATH = "/v2/stocks/bars", "/v1beta3/crypto/us/bars"


@pytest.fixture
def server():
    # a short rate-limit window: after a 429 the limiter waits for the window's reset header
    with AlpacaServer(key=KEY, secret=SECRET, bars_page_max=7, rate_limit_window=1.0) as srv:
        yield srv


def source(srv, **settings):
    st = Settings(execution=ExecutionSettings(alpaca=AlpacaSettings(
        **{"paper_api_key": KEY, "paper_api_secret": SECRET, "data_url": srv.url, "timeout_s": 5, **settings})))
    src = alpaca_source(st, feed=None, adjustment="raw")
    src.retry = FAST
    return src


def utc(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def bar_requests(srv, path=STOCK_PATH):
    return [r for r in srv.requests if r.path == path]


def test_daily_stock_bars_across_pages_and_chunks_are_labelled_by_trading_date(server, tmp_path):
    made = server.generate_bars("AAPL", start="2024-01-02", n=60, price=185.0)
    store = BarStore(tmp_path)
    rep = fetch_to_store(store, source(server), ["AAPL"], "1d", utc("2024-01-01"), utc("2024-04-01"), chunk_bars=20)
    df = store.read("1d", ["AAPL"])
    assert len(df) == 60 and rep.symbols[0].bars_fetched == 60
    # Alpaca stamps 2024-01-02T05:00:00Z (NY midnight, EST) and 2024-03-11T04:00:00Z (EDT): both -> 00:00Z labels
    assert made[0]["t"].isoformat() == "2024-01-02T05:00:00+00:00"
    assert df["timestamp"].iloc[0] == utc("2024-01-02")
    assert (df["timestamp"].dt.hour == 0).all() and df["timestamp"].is_monotonic_increasing
    expected = pd.DataFrame(made)
    for col, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("volume", "v")):
        assert df[col].tolist() == expected[key].astype(float).tolist()
    calls = bar_requests(server)
    assert len(calls) > rep.symbols[0].chunks_done          # several pages inside a chunk
    assert any(r.query.get("page_token") for r in calls)
    assert all(r.query.get("start") and r.query.get("symbols") == "AAPL" and r.query.get("timeframe") == "1Day"
               for r in calls)
    assert {r.query.get("adjustment") for r in calls} == {"raw"}


def test_crypto_bars_hourly_need_no_keys(server, tmp_path):
    t0 = utc("2024-02-01")
    bars = [{"t": t0 + pd.Timedelta(hours=i), "o": 100 + i, "h": 101 + i, "l": 99 + i, "c": 100.5 + i, "v": 2.5}
            for i in range(50)]
    server.set_bars("BTC/USD", bars, "1Hour")
    store = BarStore(tmp_path)
    src = source(server, paper_api_key=None, paper_api_secret=None)
    assert src.stock is None
    fetch_to_store(store, src, ["BTC/USD"], "1h", t0, t0 + pd.Timedelta(hours=50), chunk_bars=24)
    df = store.read("1h", ["BTC/USD"])
    assert len(df) == 50 and df["timestamp"].iloc[-1] == t0 + pd.Timedelta(hours=49)
    assert df["close"].tolist() == [100.5 + i for i in range(50)]
    assert (store.root / "1h" / "BTC-USD.parquet").is_file()
    assert all(r.query["symbols"] == "BTC/USD" for r in bar_requests(server, CRYPTO_PATH))
    with pytest.raises(UsageError, match="stock bars need Alpaca keys"):
        fetch_to_store(store, src, ["AAPL"], "1d", utc("2024-01-01"), utc("2024-02-01"))


def test_second_fetch_asks_nothing_and_a_later_end_asks_only_the_tail(server, tmp_path):
    server.generate_bars("AAPL", start="2024-01-02", n=60, price=185.0)      # 2024-01-02 .. 2024-03-25
    store = BarStore(tmp_path)
    src = source(server)
    fetch_to_store(store, src, ["AAPL"], "1d", utc("2024-01-01"), utc("2024-03-01"), chunk_bars=20)
    assert len(store.read("1d", ["AAPL"])) == 43                               # weekdays of Jan + Feb
    server.clear_requests()
    rep = fetch_to_store(store, src, ["AAPL"], "1d", utc("2024-01-01"), utc("2024-03-01"), chunk_bars=20)
    assert bar_requests(server) == [] and rep.symbols[0].status == "up to date"
    fetch_to_store(store, src, ["AAPL"], "1d", utc("2024-01-01"), utc("2024-04-01"), chunk_bars=20)
    calls = bar_requests(server)
    assert calls and all(pd.Timestamp(r.query["start"]) >= utc("2024-03-01") for r in calls)
    assert len(store.read("1d", ["AAPL"])) == 60


def test_interruption_beyond_retries_keeps_written_chunks_and_a_rerun_completes(server, tmp_path):
    server.generate_bars("SPY", start="2024-01-02", n=60, price=470.0)
    store = BarStore(tmp_path)
    src = source(server)

    def outage(ev):
        if ev.done == 2:      # after two chunks are stored, the venue fails longer than we retry
            server.inject("500", path_prefix=STOCK_PATH, count=FAST.attempts)

    with pytest.raises(FetchInterrupted) as ei:
        fetch_to_store(store, src, ["SPY"], "1d", utc("2024-01-01"), utc("2024-04-01"), chunk_bars=20,
                       on_chunk=outage)
    assert "HTTP 500" in str(ei.value) and "Run the same command again" in str(ei.value)
    kept = store.read("1d", ["SPY"])
    assert 0 < len(kept) < 60 and kept["timestamp"].max() < utc("2024-01-01") + pd.Timedelta(days=40)
    server.clear_requests()
    fetch_to_store(store, src, ["SPY"], "1d", utc("2024-01-01"), utc("2024-04-01"), chunk_bars=20)
    assert all(pd.Timestamp(r.query["start"]) > kept["timestamp"].max() for r in bar_requests(server))
    df = store.read("1d", ["SPY"])
    assert len(df) == 60 and not df["timestamp"].duplicated().any()


def test_429_and_a_dropped_connection_are_retried(server, tmp_path):
    server.generate_bars("AAPL", start="2024-01-02", n=10, price=185.0)
    server.inject("429", path_prefix=STOCK_PATH, count=1)
    server.inject("drop_before", path_prefix=STOCK_PATH, count=1)
    store = BarStore(tmp_path)
    src = source(server)
    fetch_to_store(store, src, ["AAPL"], "1d", utc("2024-01-01"), utc("2024-02-01"))
    assert len(store.read("1d", ["AAPL"])) == 10
    assert src.calls == 3 and server.pending_faults() == []


# ------------------------------------------------------------------------------------------- CLI

def settings_for(root, srv):
    return write_settings(root, "execution:\n  alpaca:\n    paper_api_key: ${ALPACA_PAPER_KEY}\n"
                                "    paper_api_secret: ${ALPACA_PAPER_SECRET}\n"
                                f"    data_url: {srv.url}\n")


def test_cli_fetch_human_and_json(server, tmp_path):
    server.generate_bars("AAPL", start="2024-01-02", n=30, price=185.0)
    server.generate_bars("BTC/USD", start="2024-01-01", n=31, price=42000.0)
    cfg = settings_for(tmp_path, server)
    args = ("--config", str(cfg), "data", "fetch", "--source", "alpaca", "--symbols", "AAPL,X:BTCUSD",
            "--timeframe", "1d", "--start", "2024-01-01", "--end", "2024-01-31")
    proc = run_parity(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "AAPL" in proc.stdout and "BTC/USD" in proc.stdout and "22 bars" in proc.stdout, proc.stdout
    assert FAKE_SECRET not in proc.stdout + proc.stderr
    proc = run_parity(*args, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["bars_fetched"] == 0 and {s["status"] for s in out["symbols"]} == {"up to date"}
    btc = next(s for s in out["symbols"] if s["symbol"] == "BTC/USD")
    assert (btc["store_first"], btc["store_last"], btc["store_bars"]) == ("2024-01-01T00:00:00Z",
                                                                          "2024-01-31T00:00:00Z", 31)
    df = BarStore(tmp_path / "data").read("1d", ["BTC/USD"])
    assert len(df) == 31


@pytest.mark.parametrize("change, message", [
    ({"--timeframe": "2h"}, "unknown timeframe '2h'"),
    ({"--start": "2024-02-01", "--end": "2024-01-01"}, "--start 2024-02-01 is after --end 2024-01-01"),
    ({"--symbols": "BTC/"}, "not a symbol"),
    ({"--start": "someday"}, "is not a date"),
])
def test_cli_bad_arguments_exit_2_without_traceback_or_request(server, tmp_path, change, message):
    cfg = settings_for(tmp_path, server)
    opts = {"--symbols": "AAPL", "--timeframe": "1d", "--start": "2024-01-01", "--end": "2024-01-31", **change}
    args = [x for kv in opts.items() for x in kv]
    proc = run_parity("--config", str(cfg), "data", "fetch", "--source", "alpaca", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert server.requests == []
