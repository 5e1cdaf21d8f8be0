"""Coinbase candles into the store through the real coinbase-advanced-py against the local server."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from brokers.retry import RetryPolicy
from framework.cli.fetch import coinbase_source
from framework.config import CoinbaseSettings, ExecutionSettings, Settings
from framework.data import BarStore
from framework.errors import UsageError
from framework.fetch import FetchInterrupted, fetch_to_store
from tests.conftest import run_parity, write_settings
from tests.servers.coinbase_server import CoinbaseServer

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)
T0 = 1_704_067_200                      # 2024-01-01T00:00:00Z
HOUR = 3600
PUBLIC = "/api/v3/brokerage/market/products/BTC-USD/candles"
PRIVATE = "/api/v3/brokerage/products/BTC-USD/candles"


@pytest.fixture(scope="module")
def server():
    with CoinbaseServer(public_rate_limit=None, private_rate_limit=None) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server):
    server.reset()
    server.set_candles("BTC-USD", [(T0 + i * HOUR, 100 + i, 102 + i, 99 + i, 101 + i, 5 + i % 7) for i in range(1000)],
                       "ONE_HOUR")
    yield


def source(srv, **settings):
    st = Settings(execution=ExecutionSettings(coinbase=CoinbaseSettings(
        **{"base_url": srv.base_url, "ca_bundle": srv.cert_path, "timeout_s": 5, **settings})))
    src = coinbase_source(st)
    src.retry = FAST
    return src


def at(i: int) -> pd.Timestamp:
    return pd.Timestamp(T0 + i * HOUR, unit="s", tz="UTC")


def candle_requests(srv, path=PUBLIC):
    return [r for r in srv.requests if r.path == path]


def test_1000_hourly_candles_over_several_350_windows_complete_ordered_unique(server, tmp_path):
    store = BarStore(tmp_path)
    src = source(server)
    assert src.public
    rep = fetch_to_store(store, src, ["BTC-USD"], "1h", at(0), at(1000))
    df = store.read("1h", ["BTC/USD"])
    assert len(df) == 1000 and rep.symbols[0].bars_fetched == 1000
    assert df["timestamp"].tolist() == [at(i) for i in range(1000)]
    assert df["open"].tolist() == [100.0 + i for i in range(1000)]
    assert df["volume"].tolist() == [float(5 + i % 7) for i in range(1000)]
    calls = candle_requests(server)
    assert len(calls) == 3 and all(r.status == 200 for r in calls)
    for r in calls:
        s, e = int(r.query["start"][0]), int(r.query["end"][0])
        assert (e - s) // HOUR < 350 and r.query["granularity"] == ["ONE_HOUR"]
    assert [int(r.query["start"][0]) for r in calls] == [T0, T0 + 350 * HOUR, T0 + 700 * HOUR]


def test_rerun_asks_nothing_and_a_later_end_asks_only_the_tail(server, tmp_path):
    store = BarStore(tmp_path)
    src = source(server)
    fetch_to_store(store, src, ["BTC/USD"], "1h", at(0), at(600))
    server.clear_requests()
    rep = fetch_to_store(store, src, ["BTC/USD"], "1h", at(0), at(600))
    assert candle_requests(server) == [] and rep.symbols[0].status == "up to date"
    fetch_to_store(store, src, ["BTC/USD"], "1h", at(0), at(1000))
    calls = candle_requests(server)
    assert [int(r.query["start"][0]) for r in calls] == [T0 + 600 * HOUR, T0 + 950 * HOUR]
    df = store.read("1h", ["BTC/USD"])
    assert len(df) == 1000 and not df["timestamp"].duplicated().any()


def test_an_outage_beyond_retries_keeps_chunks_and_a_rerun_completes(server, tmp_path):
    store = BarStore(tmp_path)
    src = source(server)

    def outage(ev):
        if ev.done == 2:
            server.inject("503", path=PUBLIC, count=FAST.attempts)

    with pytest.raises(FetchInterrupted) as ei:
        fetch_to_store(store, src, ["BTC/USD"], "1h", at(0), at(1000), chunk_bars=200, on_chunk=outage)
    assert "HTTP 503" in str(ei.value) and "2 of 5 chunk(s)" in str(ei.value)
    assert len(store.read("1h", ["BTC/USD"])) == 400
    server.clear_requests()
    server.inject("drop_before", path=PUBLIC, count=1)           # and a dropped connection on the way
    fetch_to_store(store, src, ["BTC/USD"], "1h", at(0), at(1000), chunk_bars=200)
    assert int(candle_requests(server)[0].query["start"][0]) == T0 + 400 * HOUR
    df = store.read("1h", ["BTC/USD"])
    assert df["timestamp"].tolist() == [at(i) for i in range(1000)]


def test_429_and_public_401_throttling_are_retried(server, tmp_path):
    server.inject("429", path=PUBLIC, count=1)
    server.inject("401_throttle", path=PUBLIC, count=1)
    store = BarStore(tmp_path)
    src = source(server)
    fetch_to_store(store, src, ["BTC/USD"], "1h", at(0), at(100))
    assert len(store.read("1h", ["BTC/USD"])) == 100
    assert [r.status for r in candle_requests(server)] == [429, 401, 200]


def test_real_rate_limit_is_respected(tmp_path):
    with CoinbaseServer(public_rate_limit=3, rate_limit_window=1.0) as srv:   # 3 requests/s per IP
        srv.set_candles("BTC-USD", [(T0 + i * 60, 1, 2, 0.5, 1.5, 1) for i in range(350 * 5)], "ONE_MINUTE")
        src = source(srv)
        fetch_to_store(BarStore(tmp_path), src, ["BTC/USD"], "1m", pd.Timestamp(T0, unit="s", tz="UTC"),
                       pd.Timestamp(T0 + 350 * 5 * 60, unit="s", tz="UTC"))
        assert len(BarStore(tmp_path).read("1m", ["BTC/USD"])) == 1750


def test_keys_use_the_authenticated_endpoint(server, tmp_path):
    key = server.key()
    src = source(server, api_key=key.name, api_secret=key.private_pem)
    assert not src.public
    fetch_to_store(BarStore(tmp_path), src, ["BTC/USD"], "1h", at(0), at(10))
    assert len(candle_requests(server, PRIVATE)) == 1 and candle_requests(server) == []


def test_unknown_product_and_equities_are_usage_errors(server, tmp_path):
    src = source(server)
    with pytest.raises(UsageError, match="Coinbase has no product NOPE-USD"):
        fetch_to_store(BarStore(tmp_path), src, ["NOPE/USD"], "1h", at(0), at(10))
    with pytest.raises(UsageError, match="crypto pairs only"):
        fetch_to_store(BarStore(tmp_path), src, ["AAPL"], "1h", at(0), at(10))


# ------------------------------------------------------------------------------------------- CLI

def test_cli_fetch_public_candles(server, tmp_path):
    cfg = write_settings(tmp_path, f"execution:\n  coinbase:\n    base_url: {server.base_url}\n"
                                   f"    ca_bundle: {server.cert_path}\n")
    args = ("--config", str(cfg), "data", "fetch", "--source", "coinbase", "--symbols", "X:BTCUSD",
            "--timeframe", "1h", "--start", "2024-01-01", "--end", "2024-01-10T23:00:00Z", "--json")
    proc = run_parity(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["bars_fetched"] == 240 and out["symbols"][0]["store_last"] == "2024-01-10T23:00:00Z"
    assert len(candle_requests(server)) == 1
    proc = run_parity(*args[:-1], cwd=tmp_path)
    assert proc.returncode == 0 and "up to date" in proc.stdout, proc.stdout + proc.stderr
    assert len(candle_requests(server)) == 1
    proc = run_parity(*args[:-1], "--symbols", "DOGE/USD", cwd=tmp_path)
    assert proc.returncode == 2 and "Coinbase has no product DOGE-USD" in proc.stderr
    assert "Traceback" not in proc.stderr and "HTTP Error" not in proc.stderr
