"""Issue 12: the local Coinbase server answers the real coinbase-advanced-py RESTClient the way Advanced
Trade does for the behaviours of catalogue rows 1-16 (sources in docs/venue_behaviours_confirmed.md)."""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal

import pytest
import requests

from tests.servers import certs
from tests.servers.coinbase_server import CoinbaseServer, StandaloneCoinbaseServer, trust

D = Decimal


@pytest.fixture
def server():
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None,
                        balances={"USDC": "10000", "BTC": "0.1"}) as srv:
        yield srv


@pytest.fixture
def client(server):
    return server.rest_client()


def all_accounts(client) -> list:
    out, cursor = [], None
    while True:
        page = client.get_accounts(limit=250, cursor=cursor)
        out += page.accounts
        if not page.has_next:
            return out
        cursor = page.cursor


def http_status(fn, *a, **k) -> int:
    with pytest.raises(requests.exceptions.HTTPError) as ei:
        fn(*a, **k)
    return ei.value.response.status_code


# ------------------------------------------------------------------------------------------ row 1


def test_usdc_and_vault_accounts_no_usdc_usd_product(server, client):
    server.add_vault("BTC", "1.5")
    accts = all_accounts(client)
    by_type = {}
    for a in accts:
        by_type.setdefault(a.type, []).append(a)
    (vault,) = by_type["ACCOUNT_TYPE_VAULT"]
    assert vault.currency == "BTC" and vault.available_balance["value"] == "1.5"
    usdc = next(a for a in accts if a.currency == "USDC" and a.type == "ACCOUNT_TYPE_CRYPTO")
    assert usdc.available_balance["value"] == "10000"
    assert client.get_account(vault.uuid).account.type == "ACCOUNT_TYPE_VAULT"
    # no USDC-USD market: USD<->USDC goes through Convert
    assert http_status(client.get_product, "USDC-USD") == 404
    assert http_status(client.get_best_bid_ask, product_ids=["USDC-USD"]) == 404
    # the portfolio's value holds USDC at par and leaves the vault out
    port = client.get_portfolios().portfolios[0]
    bal = client.get_portfolio_breakdown(port["uuid"]).breakdown.portfolio_balances
    assert D(bal["total_balance"]["value"]) == D("100000") + D("10000") + D("0.1") * 50_000
    # a vault is never spendable
    r = client.market_order_buy("p-b1-BTC-0", "BTC-USD", quote_size="200000")
    assert r.success is False and r.error_response["error"] == "INSUFFICIENT_FUND"


def test_btc_usdc_is_an_alias_of_btc_usd(server, client):
    usd, usdc = client.get_product("BTC-USD"), client.get_product("BTC-USDC")
    assert usdc.alias == "BTC-USD" and usd.alias_to == ["BTC-USDC"]
    assert usdc.quote_currency_id == "USDC" and usdc.price == usd.price
    server.set_price("BTC-USD", 61_000)
    assert client.get_product("BTC-USDC").price == "61000"
    r = client.market_order_buy("p-b1-BTC-1", "BTC-USDC", quote_size="1000")
    assert r.success is True
    assert server.balance("USDC")[0] == D("9000")


# ------------------------------------------------------------------------------------------ row 7


def test_product_modes_and_their_refusals(server, client):
    server.set_product("SOL-USD", limit_only=True)
    p = client.get_product("SOL-USD")
    assert p.limit_only is True and p.trading_disabled is False and p.view_only is False
    r = client.market_order_buy("p-sol-0", "SOL-USD", quote_size="100")
    assert r.success is False and r.error_response["error"] == "UNSUPPORTED_ORDER_CONFIGURATION"
    assert client.limit_order_gtc_buy("p-sol-1", "SOL-USD", base_size="1", limit_price="140").success is True
    resting = client.limit_order_gtc_buy("p-eth-0", "ETH-USD", base_size="0.01", limit_price="2000")
    for mode in ("trading_disabled", "cancel_only", "view_only"):
        server.set_product("ETH-USD", **{mode: True})
        r = client.market_order_buy(f"p-eth-{mode}", "ETH-USD", quote_size="100")
        assert r.success is False and r.error_response["error"] == "ORDER_ENTRY_DISABLED", mode
        server.set_product("ETH-USD", **{mode: False})
    server.set_product("ETH-USD", cancel_only=True)
    (res,) = client.cancel_orders([resting.success_response["order_id"]]).results
    assert res["success"] is True                                       # cancels still work
    server.set_product("ETH-USD", cancel_only=False, status="offline")
    assert client.market_order_buy("p-eth-off", "ETH-USD", quote_size="100").success is False
    server.set_product("ETH-USD", status="online", post_only=True)
    assert client.market_order_buy("p-eth-po0", "ETH-USD", quote_size="100").success is False
    r = client.limit_order_gtc_buy("p-eth-po1", "ETH-USD", base_size="0.01", limit_price="3100")
    assert r.success is False and r.error_response["error"] == "INVALID_LIMIT_PRICE_POST_ONLY"
    assert client.limit_order_gtc_buy("p-eth-po2", "ETH-USD", base_size="0.01", limit_price="2900").success


# ------------------------------------------------------------------------------------------ row 5


def test_fill_reversal_and_correction_reuse_the_trade_id(server, client):
    r = client.market_order_buy("p-b1-BTC-0", "BTC-USD", base_size="0.01")
    oid = r.success_response["order_id"]
    (fill,) = client.get_fills(order_ids=[oid]).fills
    usd_before = server.balance("USD")[0]
    server.correct_fill(fill["trade_id"], size="0.02")
    fills = client.get_fills(order_ids=[oid]).fills
    assert [f["trade_type"] for f in fills] == ["CORRECTION", "REVERSAL", "FILL"]     # newest first
    assert {f["trade_id"] for f in fills} == {fill["trade_id"]}
    assert len({f["entry_id"] for f in fills}) == 3
    assert server.balance("BTC")[0] == D("0.1") + D("0.02")
    assert server.balance("USD")[0] == usd_before - D("0.01") * 50_000 * D("1.006")
    assert client.get_order(oid).order["filled_size"] == "0.02"
    # a reversal alone (a bust): the sell never happened
    r = client.market_order_sell("p-b2-BTC-0", "BTC-USD", base_size="0.05")
    (sell,) = client.get_fills(order_ids=[r.success_response["order_id"]]).fills
    assert server.balance("BTC")[0] == D("0.07")
    (rev,) = server.reverse_fill(sell["trade_id"])
    assert rev["trade_type"] == "REVERSAL" and rev["trade_id"] == sell["trade_id"]
    assert server.balance("BTC")[0] == D("0.12")


# ------------------------------------------------------------------------------------------ row 3


def test_cancel_queued_is_live_until_the_next_market_event():
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None, cancel_queued=True) as server:
        client = server.rest_client()
        a = client.limit_order_gtc_buy("p-a", "BTC-USD", base_size="0.01", limit_price="49000")
        oid = a.success_response["order_id"]
        assert client.cancel_orders([oid]).results[0]["success"] is True
        o = client.get_order(oid).order
        assert o["status"] == "CANCEL_QUEUED" and o["pending_cancel"] is True
        server.set_price("BTC-USD", 48_000)                      # the market reaches it first: it fills
        assert client.get_order(oid).order["status"] == "FILLED"
        b = client.limit_order_gtc_buy("p-b", "BTC-USD", base_size="0.01", limit_price="40000")
        oid = b.success_response["order_id"]
        client.cancel_orders([oid])
        server.tick()
        o = client.get_order(oid).order
        assert o["status"] == "CANCELLED" and o["outstanding_hold_amount"] == "0"
        assert server.balance("USD")[1] == 0                     # every hold released


# ------------------------------------------------------------------------------------------ row 18


def test_transaction_summary_reports_the_fee_tier(server, client):
    server.configure(pricing_tier="Advanced 2", fee_rate=0.004, maker_fee_rate=0.0025,
                     fee_tier_usd_from="10000", fee_tier_usd_to="50000")
    tier = client.get_transaction_summary().fee_tier
    assert tier["pricing_tier"] == "Advanced 2" and tier["taker_fee_rate"] == "0.004"
    assert tier["maker_fee_rate"] == "0.0025" and tier["usd_from"] == "10000"


# ------------------------------------------------------------------------------------------ row 15


def test_throttling_can_answer_401():
    with CoinbaseServer(private_rate_limit=2, rate_limit_window=60, throttle_as_401=True) as server:
        client = server.rest_client()
        client.get_accounts()
        client.get_accounts()
        assert http_status(client.get_accounts) == 401


def test_ed25519_and_ecdsa_keys_are_both_accepted():
    ed = certs.generate_cdp_key("organizations/o/apiKeys/ed", ed25519_key=True)
    with CoinbaseServer(private_rate_limit=None, extra_keys={ed.name: ed.public_pem}) as server:
        from coinbase.rest import RESTClient

        c = RESTClient(api_key=ed.name, api_secret=ed.private_pem, base_url=server.base_url, timeout=5)
        trust(c, server.cert_path)
        assert c.get_accounts().accounts
        assert server.rest_client().get_accounts().accounts        # the default ECDSA key


# ------------------------------------------------------------------------------------------ row 2


def test_orders_placed_by_hand_are_listed(server, client):
    mine = server.add_user_order("BTC-USD", "SELL", "0.05", "60000")
    assert mine["success"] is True
    client.limit_order_gtc_buy("p-b1-ETH-0", "ETH-USD", base_size="0.01", limit_price="2000")
    listed = client.list_orders(order_status=["OPEN"]).orders
    cids = {o["client_order_id"] for o in listed}
    assert cids == {mine["success_response"]["client_order_id"], "p-b1-ETH-0"}
    assert server.balance("BTC") == (D("0.05"), D("0.05"))       # the user's order holds the coin


def test_switches_work_on_a_standalone_server():
    with tempfile.TemporaryDirectory() as d:
        key_file, cert_dir = os.path.join(d, "key.json"), os.path.join(d, "tls")
        with StandaloneCoinbaseServer(_free_port(), os.path.join(d, "st.json"), key_file, cert_dir) as srv:
            srv.admin("POST", "vault", {"currency": "ETH", "amount": "2"})
            srv.admin("POST", "config", {"cancel_queued": True})
            srv.admin("POST", "product", {"product_id": "SOL-USD", "view_only": True})
            placed = srv.admin("POST", "user_order", {"product_id": "BTC-USD", "side": "BUY",
                                                      "base_size": "0.01", "limit_price": "40000"})
            key = certs.load_key_file(key_file)
            from coinbase.rest import RESTClient

            c = RESTClient(api_key=key.name, api_secret=key.private_pem, base_url=srv.base_url, timeout=5)
            trust(c, srv.cert_path)
            assert any(a.type == "ACCOUNT_TYPE_VAULT" for a in all_accounts(c))
            assert c.get_product("SOL-USD").view_only is True
            oid = placed["success_response"]["order_id"]
            c.cancel_orders([oid])
            assert c.get_order(oid).order["status"] == "CANCEL_QUEUED"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ view-only keys


def test_a_view_only_key_reads_but_its_orders_and_cancels_are_unauthorized(server, client):
    """A CDP key is created view-only unless Trade is ticked: "Get API Key Permissions" says
    can_trade false, and creating an order answers 401 Unauthorized (Coinbase.AdvancedTrade#23)."""
    assert client.get_api_key_permissions().can_trade is True
    server.configure(key_can_trade=False)
    perms = client.get_api_key_permissions()
    assert perms.can_view is True and perms.can_trade is False and perms.portfolio_uuid
    assert len(all_accounts(client)) > 0                       # reads still work
    assert http_status(client.market_order_buy, "c1", "BTC-USD", quote_size="10") == 401
    assert http_status(client.cancel_orders, ["nope"]) == 401
    assert server.orders() == []
