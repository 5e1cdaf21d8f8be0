"""The real alpaca-py SDK (0.44.0) against the local Alpaca server (tests/servers/alpaca_server.py)."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import datetime

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.requests import (
    CryptoBarsRequest,
    CryptoLatestTradeRequest,
    StockBarsRequest,
    StockLatestTradeRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass, OrderStatus, QueryOrderStatus
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetAssetsRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)

from tests.servers.alpaca_server import AlpacaServer, AlpacaServerProcess

KEY, SECRET = "test-key", "test-secret"
HDR = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}


@pytest.fixture
def server():
    with AlpacaServer(key=KEY, secret=SECRET) as srv:
        yield srv


def trading(srv, retry: int = 0) -> TradingClient:
    tc = TradingClient(KEY, SECRET, paper=True, url_override=srv.url)
    tc._retry = retry  # the SDK's fixed 3 s retry sleep would slow the suite
    return tc


@pytest.fixture
def tc(server):
    return trading(server)


def api_error(fn, *a, **k) -> APIError:
    with pytest.raises(APIError) as ei:
        fn(*a, **k)
    return ei.value


def buy_and_fill(tc, symbol="AAPL", qty=5, cid=None, tif="day"):
    o = tc.submit_order(MarketOrderRequest(symbol=symbol, qty=qty, side="buy", time_in_force=tif,
                                           client_order_id=cid))
    return tc.get_order_by_id(o.id)


# ------------------------------------------------------------------------------------------ account/auth


def test_account_parses_with_string_numbers(server, tc):
    acct = tc.get_account()
    assert acct.status.value == "ACTIVE" and acct.currency == "USD" and acct.multiplier == "1"
    assert acct.cash == "100000" and acct.equity == "100000" and acct.buying_power == "100000"
    assert acct.last_equity == "100000"
    raw = requests.get(server.url + "/v2/account", headers=HDR).json()
    assert all(isinstance(raw[k], str) for k in ("cash", "equity", "buying_power", "last_equity", "portfolio_value"))


def test_bad_credentials_401(server):
    bad = TradingClient(KEY, "wrong", paper=True, url_override=server.url)
    e = api_error(bad.get_account)
    assert e.status_code == 401 and e.code == 40110000 and e.message == "request is not authorized"


# ------------------------------------------------------------------------------------------ orders


def test_market_qty_order_pending_new_then_filled_on_poll(server, tc):
    o = tc.submit_order(MarketOrderRequest(symbol="AAPL", qty=5, side="buy", time_in_force="day",
                                           client_order_id="rebal-1-AAPL"))
    assert o.status == OrderStatus.PENDING_NEW and o.filled_qty == "0" and o.filled_avg_price is None
    assert server.get_order(str(o.id))["status"] == "pending_new"  # nothing fills without a poll
    assert server.positions() == {}
    got = tc.get_order_by_id(o.id)
    assert got.status == OrderStatus.FILLED and got.filled_qty == "5" and got.filled_avg_price == "190"
    pos = tc.get_open_position("AAPL")
    assert pos.qty == "5" and pos.avg_entry_price == "190" and pos.side.value == "long"
    assert pos.market_value == "950" and pos.qty_available == "5"
    acct = tc.get_account()
    assert acct.cash == "99050" and acct.equity == "100000" and acct.long_market_value == "950"


def test_notional_crypto_order_position_symbol_btcusd_and_fee(server, tc):
    o = tc.submit_order(MarketOrderRequest(symbol="BTC/USD", notional=1000, side="buy", time_in_force="gtc",
                                           client_order_id="rebal-1-BTC"))
    assert o.qty is None and o.notional == "1000" and o.status == OrderStatus.PENDING_NEW
    assert o.order_class.value == "simple"  # "" on the wire, mapped by the SDK
    got = tc.get_order_by_client_id("rebal-1-BTC")
    assert got.status == OrderStatus.FILLED and got.qty is None
    assert got.filled_qty == "0.022222222" and got.filled_avg_price == "45000"
    positions = tc.get_all_positions()
    assert [p.symbol for p in positions] == ["BTCUSD"]
    p = positions[0]
    assert p.asset_class == AssetClass.CRYPTO and p.exchange.value == "CRYPTO"
    # 25 bps fee taken from the credited side (the BTC received)
    assert float(p.qty) == pytest.approx(0.022222222 * (1 - 0.0025), abs=1e-9)
    assert tc.get_open_position("BTC/USD").qty == tc.get_open_position("BTCUSD").qty == p.qty


def test_get_order_by_client_id_and_duplicate_client_order_id_forever(server, tc):
    o = tc.submit_order(LimitOrderRequest(symbol="MSFT", qty=1, side="buy", time_in_force="day",
                                          limit_price=100, client_order_id="dup-1"))
    assert tc.get_order_by_client_id("dup-1").id == o.id
    tc.cancel_order_by_id(o.id)
    assert tc.get_order_by_id(o.id).status == OrderStatus.CANCELED
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="MSFT", qty=1, side="buy", time_in_force="day",
                                                      client_order_id="dup-1"))
    assert e.status_code == 422 and e.code == 40010001 and e.message == "client_order_id must be unique"
    assert server.count_orders(client_order_id="dup-1") == 1
    e = api_error(tc.get_order_by_client_id, "nope")
    assert e.status_code == 404 and e.message == "order not found"


def test_insufficient_buying_power_403(server, tc):
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=1000, side="buy", time_in_force="day"))
    body = json.loads(str(e))
    assert e.status_code == 403 and e.code == 40310000 and e.message == "insufficient buying power"
    assert body["buying_power"] == "100000" and body["cost_basis"] == "190000"
    # open buy orders reserve buying power (cash account)
    tc.submit_order(LimitOrderRequest(symbol="SPY", qty=100, side="buy", time_in_force="day", limit_price=400))
    assert tc.get_account().buying_power == "60000"
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=400, side="buy", time_in_force="day"))
    assert e.status_code == 403 and json.loads(str(e))["buying_power"] == "60000"


def test_validation_errors(server, tc):
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty=0.01, side="buy", time_in_force="day"))
    assert e.status_code == 422
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="BRK.A", qty=0.5, side="buy", time_in_force="day"))
    assert e.status_code == 422 and "fractionable" in e.message
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", notional=5, side="buy", time_in_force="gtc"))
    assert e.status_code == 403 and e.message == "cost basis must be >= minimal amount of order 10"
    # a sell without a position is a short: a cash account (multiplier 1, no shorting) refuses it
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=3, side="sell", time_in_force="day"))
    assert e.status_code == 403 and e.code == 40310000 and e.message == "account is not allowed to short"
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="ETH/USD", qty=1, side="sell", time_in_force="gtc"))
    assert e.status_code == 403 and e.message.startswith("insufficient balance for ETH")
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="BTC/USD", qty=5, side="buy", time_in_force="gtc"))
    assert e.status_code == 403 and e.message.startswith("insufficient balance for USD (requested: 225000")
    # qty and notional together (the SDK refuses client-side, so raw HTTP)
    r = requests.post(server.url + "/v2/orders", headers=HDR,
                      json={"symbol": "AAPL", "qty": 1, "notional": 100, "side": "buy", "type": "market",
                            "time_in_force": "day"})
    assert r.status_code == 422 and r.json()["code"] == 40010001
    assert server.orders_submitted() == []


def test_sell_held_by_open_order_is_403(server, tc):
    buy_and_fill(tc, "AAPL", 10)
    tc.submit_order(LimitOrderRequest(symbol="AAPL", qty=8, side="sell", time_in_force="day", limit_price=500))
    assert tc.get_open_position("AAPL").qty_available == "2"
    e = api_error(tc.close_position, "AAPL")
    body = json.loads(str(e))
    assert e.status_code == 403 and body["held_for_orders"] == "8" and body["available"] == "2"
    assert len(body["related_orders"]) == 1


def test_partial_fill_and_slippage(server, tc):
    server.configure(partial_fill_fraction=0.5, fill_slippage_bps=10)
    o = tc.submit_order(MarketOrderRequest(symbol="AAPL", qty=10, side="buy", time_in_force="day"))
    first = tc.get_order_by_id(o.id)
    assert first.status == OrderStatus.PARTIALLY_FILLED and first.filled_qty == "5"
    assert first.filled_avg_price == "190.19"  # buys pay up 10 bps
    assert tc.get_open_position("AAPL").qty == "5"
    second = tc.get_order_by_id(o.id)
    assert second.status == OrderStatus.FILLED and second.filled_qty == "10"


def test_fill_after_k_polls(server, tc):
    server.configure(fill_after_polls=3)
    o = tc.submit_order(MarketOrderRequest(symbol="IBM", qty=1, side="buy", time_in_force="day"))
    assert [tc.get_order_by_id(o.id).status for _ in range(3)] == [
        OrderStatus.PENDING_NEW, OrderStatus.PENDING_NEW, OrderStatus.FILLED]


def test_limit_order_fills_only_when_price_crosses_and_cancel(server, tc):
    o = tc.submit_order(LimitOrderRequest(symbol="MSFT", qty=2, side="buy", time_in_force="gtc", limit_price=360))
    assert tc.get_order_by_id(o.id).status == OrderStatus.NEW
    server.set_price("MSFT", 359.5)
    got = tc.get_order_by_id(o.id)
    assert got.status == OrderStatus.FILLED and got.filled_avg_price == "359.5"
    o2 = tc.submit_order(LimitOrderRequest(symbol="MSFT", qty=1, side="buy", time_in_force="day", limit_price=300))
    assert tc.cancel_order_by_id(o2.id) is None  # 204
    c = tc.get_order_by_id(o2.id)
    assert c.status == OrderStatus.CANCELED and c.canceled_at is not None
    e = api_error(tc.cancel_order_by_id, o2.id)
    assert e.status_code == 422 and e.code == 42210000
    e = api_error(tc.cancel_order_by_id, "00000000-0000-4000-8000-000000000000")
    assert e.status_code == 404


def test_market_closed_equity_waits_crypto_fills(server, tc):
    server.set_market_open(False)
    clock = tc.get_clock()
    assert clock.is_open is False and clock.next_open < clock.next_close
    eq = tc.submit_order(MarketOrderRequest(symbol="SPY", qty=1, side="buy", time_in_force="day"))
    cr = tc.submit_order(MarketOrderRequest(symbol="ETH/USD", qty=0.01, side="buy", time_in_force="gtc"))
    assert tc.get_order_by_id(eq.id).status == OrderStatus.ACCEPTED
    assert tc.get_order_by_id(eq.id).status == OrderStatus.ACCEPTED
    assert tc.get_order_by_id(cr.id).status == OrderStatus.FILLED
    server.set_market_open(True)
    assert tc.get_clock().is_open is True
    assert tc.get_order_by_id(eq.id).status == OrderStatus.FILLED


def test_get_orders_filters(server, tc):
    a = buy_and_fill(tc, "AAPL", 1)
    b = tc.submit_order(LimitOrderRequest(symbol="BAC", qty=1, side="buy", time_in_force="day", limit_price=1))
    c = buy_and_fill(tc, "BTC/USD", 0.001, tif="gtc")
    open_ = tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [o.id for o in open_] == [b.id]
    closed = tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert [o.id for o in closed] == [c.id, a.id]  # newest first
    asc = tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, direction="asc", limit=2))
    assert [o.id for o in asc] == [a.id, b.id]
    assert [o.id for o in tc.get_orders(GetOrdersRequest(status="all", symbols=["BTC/USD"]))] == [c.id]
    after = tc.get_orders(GetOrdersRequest(status="all", after=b.submitted_at))
    assert [o.id for o in after] == [c.id]


def test_close_position_and_close_all(server, tc):
    buy_and_fill(tc, "AAPL", 10)
    buy_and_fill(tc, "BTC/USD", 0.01, tif="gtc")
    half = tc.close_position("AAPL", ClosePositionRequest(percentage="50"))
    assert half.side.value == "sell" and half.qty == "5" and half.status == OrderStatus.PENDING_NEW
    assert tc.get_order_by_id(half.id).status == OrderStatus.FILLED
    assert tc.get_open_position("AAPL").qty == "5"
    full = tc.close_position("BTCUSD")
    assert full.symbol == "BTC/USD" and full.time_in_force.value == "gtc"
    tc.get_order_by_id(full.id)
    assert "BTCUSD" not in server.positions()
    r = requests.delete(server.url + "/v2/positions", headers=HDR, params={"cancel_orders": "true"})
    assert r.status_code == 207 and [x["symbol"] for x in r.json()] == ["AAPL"]
    tc.get_orders(GetOrdersRequest(status="open"))  # a listing counts as a poll -> fills
    assert tc.get_all_positions() == []
    e = api_error(tc.close_position, "AAPL")
    assert e.status_code == 404
    e = api_error(tc.get_open_position, "AAPL")
    assert e.status_code == 404 and e.message == "position does not exist"


def test_cancel_orders_207(server, tc):
    for px in (100, 101):
        tc.submit_order(LimitOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day", limit_price=px))
    res = tc.cancel_orders()
    assert len(res) == 2 and all(x.status == 200 for x in res)
    assert server.count_orders(status="canceled") == 2
    r = requests.delete(server.url + "/v2/orders", headers=HDR)
    assert r.status_code == 207 and r.json() == []


# ------------------------------------------------------------------------------------------ assets/clock


def test_assets_parse(server, tc):
    assets = {a.symbol: a for a in tc.get_all_assets()}
    assert {"AAPL", "SPY", "MSFT", "IBM", "BAC", "AIG", "BRK.A", "BTC/USD", "ETH/USD", "SOL/USD"} <= set(assets)
    assert assets["AAPL"].fractionable and assets["AAPL"].shortable and assets["AAPL"].easy_to_borrow
    assert not assets["BRK.A"].fractionable
    btc = tc.get_asset("BTC/USD")
    assert btc.asset_class == AssetClass.CRYPTO and btc.exchange.value == "CRYPTO" and not btc.shortable
    assert btc.min_order_size > 0 and btc.price_increment > 0
    assert tc.get_asset("BTCUSD").id == btc.id
    crypto = tc.get_all_assets(GetAssetsRequest(asset_class=AssetClass.CRYPTO))
    assert sorted(a.symbol for a in crypto) == ["BTC/USD", "ETH/USD", "SOL/USD"]
    assert api_error(tc.get_asset, "NOPE").status_code == 404


def test_clock(server, tc):
    c = tc.get_clock()
    assert c.is_open is True and c.timestamp.utcoffset() is not None and c.next_close > c.timestamp


# ------------------------------------------------------------------------------------------ rate limit / faults


def test_rate_limit_429_with_headers():
    with AlpacaServer(rate_limit=5) as srv:
        r = requests.get(srv.url + "/v2/clock", headers=HDR)
        assert r.headers["X-Ratelimit-Limit"] == "5" and r.headers["X-Ratelimit-Remaining"] == "4"
        assert int(r.headers["X-Ratelimit-Reset"]) >= int(time.time())
        tc = trading(srv)
        for _ in range(4):
            tc.get_clock()
        e = api_error(tc.get_clock)
        assert e.status_code == 429 and e.code == 42910000 and e.message == "rate limit exceeded"
        assert e.response.headers["X-Ratelimit-Remaining"] == "0"
        assert int(e.response.headers["X-Ratelimit-Reset"]) >= int(time.time())


def test_504_after_accept_sdk_retries_and_gets_422_duplicate(server):
    tc = trading(server, retry=3)  # the SDK's real retry loop (one fixed 3 s sleep here)
    server.inject("504_after_accept", path_prefix="/v2/orders", method="POST")
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                                      client_order_id="leg-504"))
    assert e.status_code == 422 and e.code == 40010001 and e.message == "client_order_id must be unique"
    assert [r.method for r in server.requests if r.path == "/v2/orders"] == ["POST", "POST"]
    assert server.count_orders(client_order_id="leg-504") == 1
    assert tc.get_order_by_client_id("leg-504").status == OrderStatus.FILLED


def test_transport_faults(server, tc):
    server.inject("500", path_prefix="/v2/account")
    assert api_error(tc.get_account).status_code == 500
    server.inject("502_html", path_prefix="/v2/account")
    e = api_error(tc.get_account)
    assert e.status_code == 502
    with pytest.raises(json.JSONDecodeError):
        e.code  # noqa: B018 - the SDK's .code needs a JSON body
    server.inject("429", path_prefix="/v2/clock")
    e = api_error(tc.get_clock)
    assert e.status_code == 429 and e.response.headers["X-Ratelimit-Remaining"] == "0"
    server.inject("drop_before", path_prefix="/v2/orders", method="POST")
    with pytest.raises(requests.exceptions.ConnectionError):
        tc.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                           client_order_id="dropped-before"))
    assert server.count_orders(client_order_id="dropped-before") == 0
    server.inject("drop_after", path_prefix="/v2/orders", method="POST")
    with pytest.raises(requests.exceptions.ConnectionError):
        tc.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                           client_order_id="dropped-after"))
    assert server.count_orders(client_order_id="dropped-after") == 1
    server.inject("delay", path_prefix="/v2/account", seconds=2)
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(server.url + "/v2/account", headers=HDR, timeout=0.3)
    assert tc.get_account().cash  # server still fine afterwards
    server.inject("reject_after_accept", path_prefix="/v2/orders", method="POST")
    o = tc.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                           client_order_id="rejected-1"))
    assert o.status == OrderStatus.PENDING_NEW
    assert tc.get_order_by_id(o.id).status == OrderStatus.REJECTED
    e = api_error(tc.submit_order, MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                                      client_order_id="rejected-1"))
    assert e.status_code == 422  # unique even after rejection


def test_tick_mode_fills_without_polling():
    with AlpacaServer(fill_mode="tick", tick_interval=0.02) as srv:
        o = trading(srv).submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day"))
        end = time.time() + 2
        while srv.get_order(str(o.id))["status"] != "filled" and time.time() < end:
            time.sleep(0.01)
        assert srv.get_order(str(o.id))["status"] == "filled"
        assert srv.position_qty("AAPL") == 1.0


# ------------------------------------------------------------------------------------------ market data


def test_stock_bars_pagination_via_sdk(server):
    server.configure(bars_page_max=7)
    server.generate_bars("AAPL", start="2024-01-02", n=10, price=185.0)
    server.generate_bars("SPY", start="2024-01-02", n=10, price=470.0)
    sc = StockHistoricalDataClient(KEY, SECRET, url_override=server.url)
    sc._retry = 0
    bars = sc.get_stock_bars(StockBarsRequest(symbol_or_symbols=["SPY", "AAPL"], timeframe=TimeFrame.Day,
                                              start=datetime(2024, 1, 1)))
    assert {k: len(v) for k, v in bars.data.items()} == {"AAPL": 10, "SPY": 10}
    ts = [b.timestamp for b in bars["AAPL"]]
    assert ts == sorted(ts) and ts[0].isoformat() == "2024-01-02T05:00:00+00:00"
    calls = [r for r in server.requests if r.path == "/v2/stocks/bars"]
    assert len(calls) == 3 and calls[0].query.get("page_token") is None
    tok = calls[1].query["page_token"]
    assert base64.b64decode(tok).decode().startswith("AAPL|1Day|2024-01-")  # opaque base64, symbol-then-time
    server.clear_requests()
    limited = sc.get_stock_bars(StockBarsRequest(symbol_or_symbols=["AAPL", "SPY"], timeframe=TimeFrame.Day,
                                                 start=datetime(2024, 1, 1), limit=15))
    assert sum(len(v) for v in limited.data.values()) == 15
    assert [r.query["limit"] for r in server.requests] == ["15", "8", "1"]


def test_crypto_bars_and_latest_trades(server):
    server.generate_bars("BTC/USD", start="2024-01-01", n=5, price=42000.0)
    cc = CryptoHistoricalDataClient(url_override=server.url)  # crypto data needs no keys
    bars = cc.get_crypto_bars(CryptoBarsRequest(symbol_or_symbols="BTC/USD", timeframe=TimeFrame.Day,
                                                start=datetime(2024, 1, 1)))
    assert len(bars["BTC/USD"]) == 5 and bars["BTC/USD"][0].open == 42000.0
    server.set_price("BTCUSD", 43210.5)
    assert cc.get_crypto_latest_trade(CryptoLatestTradeRequest(symbol_or_symbols="BTC/USD"))["BTC/USD"].price == 43210.5
    sc = StockHistoricalDataClient(KEY, SECRET, url_override=server.url)
    assert sc.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"].price == 190.0


# ------------------------------------------------------------------------------------------ persistence


def test_state_file_survives_in_process_restart(tmp_path):
    state = str(tmp_path / "alpaca.json")
    srv = AlpacaServer(state_file=state).start()
    port = srv.url.rsplit(":", 1)[1]
    tc = trading(srv)
    buy_and_fill(tc, "AAPL", 3, cid="persist-1")
    srv.set_price("AAPL", 200.0)
    srv.stop()
    assert os.path.exists(state)
    srv2 = AlpacaServer(port=int(port), state_file=state).start()
    try:
        tc2 = trading(srv2)
        assert tc2.get_order_by_client_id("persist-1").status == OrderStatus.FILLED
        assert tc2.get_open_position("AAPL").market_value == "600"
        assert api_error(tc2.submit_order, MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                                              client_order_id="persist-1")).status_code == 422
    finally:
        srv2.stop()


def test_standalone_process_sigkill_and_restart(tmp_path):
    state = str(tmp_path / "alpaca.json")
    proc = AlpacaServerProcess(state_file=state, config={"fill_mode": "poll"}).start()
    try:
        tc = TradingClient(KEY, SECRET, paper=True, url_override=proc.url)
        tc._retry = 0
        o = tc.submit_order(MarketOrderRequest(symbol="BTC/USD", notional=500, side="buy", time_in_force="gtc",
                                               client_order_id="kill-1"))
        assert proc.control.count_orders(client_order_id="kill-1") == 1
        proc.kill()
        with pytest.raises(requests.exceptions.ConnectionError):
            tc.get_order_by_id(o.id)
        proc.start()  # same port, state reloaded
        tc = TradingClient(KEY, SECRET, paper=True, url_override=proc.url)
        tc._retry = 0
        assert tc.get_order_by_client_id("kill-1").status == OrderStatus.FILLED
        assert "BTCUSD" in proc.control.positions()
        proc.control.inject("504_after_accept", path_prefix="/v2/orders", method="POST")
        with pytest.raises(APIError) as ei:
            tc.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day",
                                               client_order_id="kill-2"))
        assert ei.value.status_code == 504
        assert proc.control.count_orders(client_order_id="kill-2") == 1
        assert [r.method for r in proc.control.requests if r.path == "/v2/orders"] == ["POST"]
    finally:
        proc.close()


def test_reset(server, tc):
    buy_and_fill(tc, "AAPL", 1)
    server.set_price("AAPL", 1.0)
    server.inject("500")
    server.reset()
    assert server.orders_submitted() == [] and server.positions() == {} and server.pending_faults() == []
    assert tc.get_account().cash == "100000" and server.get_price("AAPL") == 190.0
