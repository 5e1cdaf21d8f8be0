"""The local Coinbase server against the REAL coinbase-advanced-py SDK (RESTClient 1.8.4)."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal

import jwt as pyjwt
import pytest
import requests
from coinbase import jwt_generator
from coinbase.rest import RESTClient

from tests.servers import certs
from tests.servers.coinbase_server import (
    API,
    CoinbaseServer,
    StandaloneCoinbaseServer,
    trust,
)

D = Decimal


@pytest.fixture(scope="module")
def server():
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server):
    server.reset()
    yield


@pytest.fixture(scope="module")
def key(server):
    return server.key()


def make_client(server, key=None, **kw) -> RESTClient:
    key = key or server.key()
    c = RESTClient(api_key=key.name, api_secret=key.private_pem, base_url=server.base_url,
                   timeout=kw.pop("timeout", 5), **kw)
    # REQUESTS_CA_BUNDLE is set on this machine and would win over session.verify
    c.session.trust_env = False
    c.session.verify = server.cert_path
    return c


@pytest.fixture(scope="module")
def client(server):
    return make_client(server)


# ------------------------------------------------------------------------------------------ accounts

def test_accounts_paginate_with_default_limit_49(server, client):
    first = client.get_accounts()
    assert len(first.accounts) == 49 and first.size == 49
    assert first.has_next is True and first.cursor
    seen = {a.currency: a for a in first.accounts}
    cursor = first.cursor
    while cursor:
        page = client.get_accounts(cursor=cursor)
        seen.update({a.currency: a for a in page.accounts})
        cursor = page.cursor if page.has_next else None
    assert "USD" not in {a.currency for a in first.accounts}   # cash is only found by paginating
    usd = seen["USD"]
    assert usd.available_balance == {"value": "100000", "currency": "USD"}
    assert usd.hold == {"value": "0", "currency": "USD"}
    assert usd.type == "ACCOUNT_TYPE_FIAT" and seen["BTC"].type == "ACCOUNT_TYPE_CRYPTO"
    one = client.get_account(usd.uuid).account
    assert one.currency == "USD" and one.uuid == usd.uuid
    assert len(client.get_accounts(limit=250).accounts) == len(seen)


def test_portfolio_breakdown_numbers(server, client):
    server.set_balance("BTC", "0.5")
    port = client.get_portfolios().portfolios[0]
    assert port.type == "DEFAULT"
    bd = client.get_portfolio_breakdown(port.uuid, currency="USD").breakdown
    bal = bd.portfolio_balances
    assert bal["total_balance"] == {"value": "125000", "currency": "USD"}
    assert bal["total_cash_equivalent_balance"]["value"] == "100000"
    assert bal["total_crypto_balance"]["value"] == "25000"
    pos = {p.asset: p for p in bd.spot_positions}
    btc = pos["BTC"]
    for f in ("total_balance_fiat", "total_balance_crypto", "available_to_trade_fiat",
              "available_to_trade_crypto", "allocation", "unrealized_pnl"):
        assert isinstance(getattr(btc, f), float), f          # JSON numbers, not strings
    assert btc.total_balance_crypto == 0.5 and btc.total_balance_fiat == 25000.0
    assert btc.allocation == pytest.approx(0.2)
    assert pos["USD"].is_cash is True


# ------------------------------------------------------------------------------------------ orders

def test_market_buy_by_quote_size_fees_inside(server, client):
    resp = client.market_order_buy("buy-q-1", "BTC-USD", quote_size="100")
    assert resp.success is True
    assert resp.success_response["client_order_id"] == "buy-q-1"
    assert not hasattr(resp, "status")                      # create answer is not the order
    order = client.get_order(resp.success_response["order_id"]).order
    assert order.status == "FILLED" and order.order_type == "MARKET"
    assert order.time_in_force == "IMMEDIATE_OR_CANCEL"
    assert order.size_in_quote is True and order.size_inclusive_of_fees is True
    assert D(order.filled_value) + D(order.total_fees) == D("100")
    assert D(order.total_value_after_fees) == D("100")
    assert D(order.total_fees) == pytest.approx(D("100") * D("0.006") / D("1.006"), abs=D("1e-15"))
    decimals = len(order.filled_size.split(".")[1])
    assert 8 < decimals <= 16                                # finer than base_increment
    assert order.average_filled_price == "50000"
    assert server.balance("USD") == (D("99900"), D("0"))
    assert server.balance("BTC")[0] == D(order.filled_size)


def test_sell_by_base_size_leaves_dust(server, client):
    buy = client.market_order_buy("buy-1", "BTC-USD", quote_size="100")
    held = server.balance("BTC")[0]
    sellable = (held // D("0.00000001")) * D("0.00000001")   # floor to base_increment
    sell = client.market_order_sell("sell-1", "BTC-USD", base_size=str(sellable))
    assert sell.success is True
    o = client.get_order(sell.success_response["order_id"]).order
    assert o.status == "FILLED" and o.size_in_quote is False
    assert D(o.filled_size) == sellable
    value = sellable * 50000
    assert D(o.filled_value) == value and D(o.total_fees) == value * D("0.006")
    assert D(o.total_value_after_fees) == value - value * D("0.006")
    dust = server.balance("BTC")[0]
    assert D(0) < dust < D("0.00000001")
    assert server.balance("USD")[0] == D("99900") + value * D("0.994")
    assert buy.success is True


def test_precision_rejection_is_http_200(server, client):
    r = client.market_order_sell("bad-prec", "BTC-USD", base_size="0.000000015")
    assert r.success is False
    assert r.error_response["error"] == "INVALID_SIZE_PRECISION"
    assert r.error_response["preview_failure_reason"] == "PREVIEW_INVALID_SIZE_PRECISION"
    r2 = client.limit_order_gtc_buy("bad-prec-sol", "SOL-USD", base_size="1.0005", limit_price="100")
    assert r2.success is False and r2.error_response["error"] == "INVALID_SIZE_PRECISION"
    r3 = client.limit_order_gtc_buy("bad-px", "BTC-USD", base_size="0.001", limit_price="40000.001")
    assert r3.success is False and r3.error_response["error"] == "INVALID_PRICE_PRECISION"
    assert server.count_orders() == 0


def test_insufficient_fund_and_minimums(server, client):
    r = client.market_order_buy("too-big", "BTC-USD", quote_size="1000000")
    assert r.success is False
    assert r.failure_reason == "UNKNOWN_FAILURE_REASON" and r.order_id == ""
    assert r.error_response == {
        "error": "INSUFFICIENT_FUND", "message": "Insufficient balance in source account",
        "error_details": "", "preview_failure_reason": "PREVIEW_INSUFFICIENT_FUND",
        "new_order_failure_reason": "UNKNOWN_FAILURE_REASON"}
    assert r.order_configuration.market_market_ioc.quote_size == "1000000"
    small = client.market_order_buy("too-small", "BTC-USD", quote_size="0.5")
    assert small.error_response["preview_failure_reason"] == "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"
    tiny = client.market_order_sell("tiny", "SOL-USD", base_size="0.0001")
    assert tiny.error_response["preview_failure_reason"] == "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL"
    bad = client.market_order_buy("bad-prod", "DOGE-EUR", quote_size="10")
    assert bad.success is False and bad.error_response["error"] == "INVALID_PRODUCT_ID"
    pv = client.preview_market_order_buy("BTC-USD", quote_size="1000000")
    assert pv.errs == ["PREVIEW_INSUFFICIENT_FUND"]
    assert server.count_orders() == 0 and server.balance("USD")[0] == D("100000")


def test_malformed_body_is_400(server, client):
    with pytest.raises(requests.exceptions.HTTPError) as ei:
        client.post(f"{API}/orders", data={"client_order_id": "x", "side": "BUY"})
    assert ei.value.response.status_code == 400
    assert ei.value.response.json()["error"] == "INVALID_ARGUMENT"


def test_duplicate_client_order_id_returns_existing_order(server, client):
    a = client.market_order_buy("dup-1", "ETH-USD", quote_size="50")
    usd = server.balance("USD")
    b = client.market_order_buy("dup-1", "ETH-USD", quote_size="50")
    assert b.success is True
    assert b.success_response["order_id"] == a.success_response["order_id"]
    assert server.count_orders(client_order_id="dup-1") == 1
    assert server.balance("USD") == usd


def test_limit_order_open_then_filled_after_cross(server, client):
    r = client.limit_order_gtc_buy("lim-1", "BTC-USD", base_size="0.01", limit_price="49000.00")
    oid = r.success_response["order_id"]
    o = client.get_order(oid).order
    assert o.status == "OPEN" and o.order_type == "LIMIT" and o.time_in_force == "GOOD_UNTIL_CANCELLED"
    hold = D("0.01") * 49000 * D("1.006")
    assert server.balance("USD") == (D("100000") - hold, hold)
    assert D(o.outstanding_hold_amount) == hold
    opened = client.list_orders(order_status=["OPEN"], product_ids=["BTC-USD"]).orders
    assert [x.order_id for x in opened] == [oid]
    server.set_price("BTC-USD", 48500)          # crosses; matched on the next request
    o = client.get_order(oid).order
    assert o.status == "FILLED" and o.completion_percentage == "100"
    assert o.average_filled_price == "49000"
    assert D(o.total_fees) == D("490") * D("0.004")  # maker fee at the limit price
    assert server.balance("USD") == (D("100000") - D("490") - D("1.96"), D("0"))
    assert server.balance("BTC") == (D("0.01"), D("0"))
    assert client.list_orders(order_status=["OPEN"]).orders == []


def test_partial_fills_then_complete(server, client):
    server.partial_fill_fraction = 0.5
    try:
        client.market_order_buy("eth-buy", "ETH-USD", base_size="2")
        r = client.limit_order_gtc_sell("lim-p", "ETH-USD", base_size="1", limit_price="3100")
        oid = r.success_response["order_id"]
        server.set_price("ETH-USD", 3200)
        o = client.get_order(oid).order
        assert o.status == "OPEN" and o.filled_size == "0.5" and o.completion_percentage == "50"
        server.tick()
        o = client.get_order(oid).order
        assert o.status == "FILLED" and o.filled_size == "1" and o.number_of_fills == "2"
        assert server.balance("ETH") == (D("1"), D("0"))
    finally:
        server.partial_fill_fraction = None


def test_cancel_releases_hold(server, client):
    r = client.limit_order_gtc_buy("lim-c", "BTC-USD", base_size="0.01", limit_price="40000")
    oid = r.success_response["order_id"]
    res = client.cancel_orders([oid]).results
    assert res[0].success is True and res[0].order_id == oid
    assert client.get_order(oid).order.status == "CANCELLED"
    assert server.balance("USD") == (D("100000"), D("0"))
    again = client.cancel_orders([oid, "no-such-order"]).results
    assert [x.success for x in again] == [False, False]


def test_fills_listing(server, client):
    a = client.market_order_buy("f-1", "BTC-USD", quote_size="100").success_response["order_id"]
    b = client.market_order_buy("f-2", "ETH-USD", quote_size="30").success_response["order_id"]
    fills = client.get_fills(order_ids=[a]).fills
    assert len(fills) == 1
    f = fills[0]
    assert f.order_id == a and f.trade_type == "FILL" and f.liquidity_indicator == "TAKER"
    assert f.size == client.get_order(a).order.filled_size           # base units
    assert D(f.commission) == D(client.get_order(a).order.total_fees)
    assert [x.order_id for x in client.get_fills(product_ids=["ETH-USD"]).fills] == [b]
    assert len(client.get_fills().fills) == 2


# ------------------------------------------------------------------------------------------ market data

def test_candles_newest_first_and_350_limit(server, client):
    day = 86400
    t0 = 1_700_000_000 // day * day
    server.set_candles("BTC-USD", [(t0 + i * day, 100 + i, 110 + i, 90 + i, 105 + i, 1000) for i in range(5)])
    got = client.get_candles("BTC-USD", str(t0), str(t0 + 5 * day), "ONE_DAY").candles
    assert [int(c.start) for c in got] == [t0 + i * day for i in range(4, -1, -1)]
    assert got[0].close == "109" and isinstance(got[0].volume, str)
    public = RESTClient(base_url=server.base_url, timeout=5)       # no keys: public endpoint
    trust(public, server.cert_path)
    pub = public.get_public_candles("BTC-USD", str(t0), str(t0 + 5 * day), "ONE_DAY").candles
    assert [c.start for c in pub] == [c.start for c in got]
    assert public.get_public_product("BTC-USD").base_increment == "0.00000001"
    with pytest.raises(requests.exceptions.HTTPError) as ei:
        client.get_candles("BTC-USD", str(t0), str(t0 + 351 * day), "ONE_DAY")
    assert ei.value.response.status_code == 400
    assert ei.value.response.json() == {
        "error": "INVALID_ARGUMENT", "error_details": "number of candles requested should be less than 350",
        "message": "number of candles requested should be less than 350"}


def test_products(client):
    p = client.get_product("BTC-USD")
    assert (p.base_increment, p.quote_increment, p.price_increment, p.quote_min_size) == \
        ("0.00000001", "0.01", "0.01", "1")
    assert p.status == "online" and p.trading_disabled is False and p.price == "50000"
    ids = {x.product_id for x in client.get_products().products}
    assert {"BTC-USD", "ETH-USD", "SOL-USD"} <= ids
    with pytest.raises(requests.exceptions.HTTPError) as ei:
        client.get_product("NOPE-USD")
    assert ei.value.response.status_code == 404


# ------------------------------------------------------------------------------ auth, limits, faults

def test_bad_jwt_is_401(server, client):
    stranger = certs.generate_cdp_key(server.api_key_name)          # right name, wrong key
    with pytest.raises(requests.exceptions.HTTPError) as ei:
        make_client(server, stranger).get_accounts()
    assert ei.value.response.status_code == 401 and ei.value.response.text == "Unauthorized"
    s = requests.Session()
    trust(s, server.cert_path)
    url = f"https://{server.base_url}{API}/accounts"
    key = server.key()
    wrong_uri = jwt_generator.build_rest_jwt(f"GET {server.base_url}{API}/portfolios", key.name,
                                             key.private_pem)
    assert s.get(url, headers={"Authorization": f"Bearer {wrong_uri}"}, timeout=5).status_code == 401
    now = int(time.time())
    expired = pyjwt.encode({"sub": key.name, "iss": "cdp", "nbf": now - 300, "exp": now - 180,
                            "uri": f"GET {server.base_url}{API}/accounts"},
                           certs_private(key), algorithm="ES256", headers={"kid": key.name, "nonce": "x"})
    assert s.get(url, headers={"Authorization": f"Bearer {expired}"}, timeout=5).status_code == 401
    assert s.get(url, timeout=5).status_code == 401
    assert client.get_accounts(limit=1).size == 1                   # the right key still works


def certs_private(key):
    from cryptography.hazmat.primitives import serialization
    return serialization.load_pem_private_key(key.private_pem.encode(), password=None)


def test_rate_limit_429_html():
    with CoinbaseServer(private_rate_limit=5, public_rate_limit=3) as srv:
        c = srv.rest_client(rate_limit_headers=True)
        first = c.get_portfolios()
        assert first.rate_limit_limit == "5" and first.rate_limit_remaining == "4"
        for _ in range(4):
            c.get_portfolios()
        with pytest.raises(requests.exceptions.HTTPError) as ei:
            c.get_portfolios()
        assert ei.value.response.status_code == 429
        assert ei.value.response.text.lstrip().startswith("<html>")
        pub = RESTClient(base_url=srv.base_url, timeout=5)
        trust(pub, srv.cert_path)
        for _ in range(3):
            pub.get_unix_time()
        with pytest.raises(requests.exceptions.HTTPError):
            pub.get_unix_time()
        time.sleep(1.05)
        assert c.get_portfolios().portfolios


def test_drop_after_on_post_orders_leaves_exactly_one_order(server, client):
    server.inject("drop_after", path="/orders", method="POST")
    with pytest.raises(requests.exceptions.ConnectionError):
        client.market_order_buy("drop-1", "BTC-USD", quote_size="100")
    assert server.count_orders(client_order_id="drop-1") == 1
    again = client.market_order_buy("drop-1", "BTC-USD", quote_size="100")   # same id: idempotent
    assert again.success is True and server.count_orders() == 1
    assert server.balance("USD")[0] == D("99900")


def test_other_faults(server, client):
    server.inject("drop_before", path="/orders", method="POST")
    with pytest.raises(requests.exceptions.ConnectionError):
        client.market_order_buy("db-1", "BTC-USD", quote_size="10")
    assert server.count_orders() == 0
    for kind, status in (("500", 500), ("503_html", 503), ("401_throttle", 401), ("429", 429)):
        server.inject(kind, path_prefix="/accounts", method="GET")
        with pytest.raises(requests.exceptions.HTTPError) as ei:
            client.get_accounts()
        assert ei.value.response.status_code == status, kind
    assert client.get_accounts().size == 49                         # count=1: faults are used up
    server.inject("delay", path="/orders", method="POST", seconds=1.0)
    slow = make_client(server, timeout=0.3)
    with pytest.raises(requests.exceptions.Timeout):
        slow.market_order_buy("late-1", "BTC-USD", quote_size="10")
    deadline = time.time() + 3
    while server.count_orders(client_order_id="late-1") == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert server.count_orders(client_order_id="late-1") == 1         # accepted after the client gave up
    faults = [r.fault for r in server.requests if r.fault]
    assert faults == ["drop_before", "500", "503_html", "401_throttle", "429", "delay"]


# ------------------------------------------------------------------------------------------ standalone

def test_standalone_persists_across_sigkill(tmp_path):
    state, key_file, cert_dir = tmp_path / "state.json", tmp_path / "cdp_key.json", tmp_path / "tls"
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = StandaloneCoinbaseServer(port, str(state), str(key_file), str(cert_dir)).start()
    try:
        c = RESTClient(key_file=str(key_file), base_url=proc.base_url, timeout=5)
        trust(c, proc.cert_path)
        oid = c.market_order_buy("sa-1", "BTC-USD", quote_size="100").success_response["order_id"]
        proc.admin("POST", "price", {"product_id": "BTC-USD", "price": "51000"})
        proc.kill()
        saved = json.loads(state.read_text())
        assert [o["client_order_id"] for o in saved["orders"]] == ["sa-1"]
        proc.start()
        c.session.close()
        again = c.market_order_buy("sa-1", "BTC-USD", quote_size="100")
        assert again.success_response["order_id"] == oid
        assert c.get_product("BTC-USD").price == "51000"
        assert proc.admin("GET", "balances")["balances"]["USD"]["available"] == "99900"
        assert len(proc.admin("GET", "orders")["orders"]) == 1
    finally:
        proc.terminate()
    assert os.path.exists(proc.cert_path)
