"""CoinbaseBroker (brokers/coinbase) against the local HTTPS Coinbase server, through the real
coinbase-advanced-py SDK: accounts, products, prices, market/limit/quote-sized orders, cancels,
fills with trade ids, Decimal-exact sizes, the sell-everything rule, auth errors and timeouts.

Faults on order placement (rejections, 429, 5xx, dropped connections, rate limits) are in
``test_faults.py``; the CLI as a user runs it is in ``tests/test_cli_coinbase.py``.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from brokers.coinbase.broker import CoinbaseBroker
from brokers.coinbase.client import CoinbaseEndpoints
from brokers.live import LiveOptions
from brokers.retry import RetryPolicy
from framework.accounts import Account, Environment
from framework.errors import AuthenticationError, DataError, TransientBrokerError
from framework.types import OrderBatch, OrderStatus, OrderType
from tests.conftest import utc
from tests.servers import certs
from tests.servers.coinbase_server import API, DEFAULT_ACCOUNT_CURRENCIES, CoinbaseServer

D = Decimal
FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05)
ORDERS = API + "/orders"


# ------------------------------------------------------------------------------------------ helpers


def make_broker(srv: CoinbaseServer, *, timeout: float = 5.0, retry: RetryPolicy = FAST, key=None,
                rps: int = 30, sleep=None, order_timeout_s: float = 5.0) -> CoinbaseBroker:
    """A CoinbaseBroker on the local server (trusting its cert), polling fast."""
    name, pem = (srv.api_key_name, srv.private_key_pem) if key is None else (key.name, key.private_pem)
    ep = CoinbaseEndpoints(api_key=name, api_secret=pem, key_file=None, base_url=srv.base_url,
                           ca_bundle=srv.cert_path, timeout=timeout)
    kw = {} if sleep is None else {"sleep": sleep}
    return CoinbaseBroker(ep, requests_per_second=rps, retry=retry,
                          options=LiveOptions(order_timeout_s=order_timeout_s, poll_interval_s=0.01), **kw)


def make_batch(broker: CoinbaseBroker, legs, *, leg: str = "add", order_type=OrderType.MARKET, limit=None,
               notional=None, tag: str | None = None) -> OrderBatch:
    """An OrderBatch from ``[(symbol, side, qty), ...]`` on the broker's own universe for those symbols,
    sized at the venue's current prices, with a batch id unique to this call."""
    symbols = list(dict.fromkeys(s for s, _, _ in legs))
    univ = broker.instruments(symbols)
    px = broker.prices(univ)
    idx = np.array([univ.index[s] for s, _, _ in legs], np.int64)
    t = utc(pd.Timestamp.now(tz="UTC"))
    stamp = np.datetime_as_string(np.datetime64(t, "s"), unit="s").replace("-", "").replace(":", "")
    batch_id = f"{tag or 't' + uuid.uuid4().hex[:8]}@{stamp}Z"
    return OrderBatch(univ, t, batch_id, leg, idx, np.array([sd for _, sd, _ in legs], np.int8),
                      np.array([q for _, _, q in legs], float), px[idx], order_type,
                      None if limit is None else np.asarray(limit, float), None,
                      None if notional is None else np.asarray(notional, float))


def order_posts(srv: CoinbaseServer) -> list:
    return [r for r in srv.requests if r.method == "POST" and r.path == ORDERS]


def base_sizes(srv: CoinbaseServer) -> list[str]:
    out = []
    for r in order_posts(srv):
        conf = next(iter(r.body["order_configuration"].values()))
        out.append(conf.get("base_size"))
    return out


@pytest.fixture(scope="module")
def server():
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server):
    server.reset()
    server.configure(partial_fill_fraction=None, fee_rate=0.006, maker_fee_rate=0.004, fill_slippage_bps=0.0)
    yield
    server.clear_injections()


@pytest.fixture
def broker(server):
    b = make_broker(server)
    yield b
    b.close()


# ------------------------------------------------------------------------------------------ accounts


def test_account_reads_usd_cash_although_usd_is_beyond_the_first_default_page(server, broker):
    # the premise: with the SDK's default page size (49), USD is not on the first page of ~63 accounts
    first = server.rest_client().get_accounts().to_dict()
    assert first["has_next"] is True
    assert "USD" not in [a["currency"] for a in first["accounts"]]
    assert len(DEFAULT_ACCOUNT_CURRENCIES) > 49

    server.set_balance("USD", "12345.67")
    server.set_balance("BTC", "0.25")
    acct = broker.account()
    assert acct.cash == pytest.approx(12345.67, abs=1e-9)
    assert acct.buying_power == pytest.approx(12345.67, abs=1e-9)
    assert acct.equity == pytest.approx(12345.67 + 0.25 * 50_000, abs=1e-6)
    assert [(p.symbol, p.qty) for p in acct.positions] == [("BTC/USD", 0.25)]
    bal = broker.balances()
    assert set(DEFAULT_ACCOUNT_CURRENCIES) <= set(bal)


def test_accounts_pagination_follows_the_cursor_to_the_last_page():
    # 300 extra currencies sort before BTC and USD: both end up past the first page even at limit 250
    many = list(DEFAULT_ACCOUNT_CURRENCIES) + [f"AA{i:03d}" for i in range(300)]
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None, account_currencies=many,
                        balances={"BTC": "0.5", "ETH": "2"}, cash_usd="777.77") as srv:
        b = make_broker(srv)
        acct = b.account()
        assert acct.cash == pytest.approx(777.77)
        held = {p.symbol: p.qty for p in acct.positions}
        assert held == {"BTC/USD": 0.5, "ETH/USD": 2.0}
        assert acct.equity == pytest.approx(777.77 + 0.5 * 50_000 + 2 * 3_000)
        pages = [r for r in srv.requests if r.path == API + "/accounts"]
        assert len(pages) >= 2, "only one page of accounts was read"
        assert any(r.query.get("cursor") for r in pages[1:]), "the second page was not asked with the cursor"
        assert len(b.balances()) == len(set(many) | {"USD", "SOL"})


# ------------------------------------------------------------------------------------------ products


def test_products_give_increments_and_minimums_in_the_universe(server, broker):
    server.set_product("DOGE-USD", base_increment="0.1", base_min_size="1", quote_min_size="5",
                       price_increment="0.00001")
    server.set_price("DOGE-USD", "0.12345")
    u = broker.instruments(["BTC/USD", "SOL/USD", "DOGE/USD"])
    assert u.symbols == ("BTC/USD", "SOL/USD", "DOGE/USD")
    np.testing.assert_allclose(u.qty_increment, [1e-8, 1e-3, 0.1])
    np.testing.assert_allclose(u.min_qty, [1e-8, 1e-3, 1.0])
    np.testing.assert_allclose(u.min_notional, [1.0, 1.0, 5.0])
    assert u.crypto.all() and u.fractionable.all() and not u.shortable.any()
    np.testing.assert_allclose(broker.prices(u), [50_000, 150, 0.12345])


def test_unknown_products_are_data_errors_untradable_ones_carry_the_reason(server, broker):
    with pytest.raises(DataError) as e:
        broker.instruments(["BTC/USD", "FOO/USD"])
    assert "FOO/USD" in str(e.value) and "not a Coinbase product" in str(e.value)
    with pytest.raises(DataError) as e:
        broker.instruments(["AAPL"])
    assert "AAPL" in str(e.value) and "crypto" in str(e.value)
    # SPEC §17: a product the venue does not trade now is held by the planner with the reason, and the
    # other symbols trade (no error for the whole universe)
    server.set_product("ETH-USD", trading_disabled=True)
    server.set_product("SOL-USD", cancel_only=True)
    server.set_product("BTC-USD", limit_only=True)
    u = broker.instruments(["ETH/USD", "SOL/USD", "BTC/USD"])
    assert u.can_trade().tolist() == [False, False, True]
    assert "trading_disabled" in u.halt_reason(0) and "cancel_only" in u.halt_reason(1)
    assert u.limit_only is not None and u.limit_only.tolist() == [False, False, True]


def test_prices_follow_the_server(server, broker):
    u = broker.instruments(["BTC/USD", "ETH/USD"])
    server.set_price("BTC-USD", "43210.55")
    server.set_price("ETH-USD", "2345.67")
    np.testing.assert_allclose(broker.prices(u), [43210.55, 2345.67])


# ------------------------------------------------------------------------------------------ market orders and fills


def test_market_buy_fills_with_the_venues_trade_ids_and_the_ledger_books_them_once(server, broker, tmp_path):
    from framework.journal import WriteAheadJournal
    from framework.ledger import Ledger

    batch = make_batch(broker, [("BTC/USD", 1, 0.1), ("ETH/USD", 1, 1.5)])
    rep = broker.execute(batch)
    assert rep.status.tolist() == [OrderStatus.FILLED, OrderStatus.FILLED]
    np.testing.assert_allclose(rep.filled_qty, [0.1, 1.5])
    np.testing.assert_allclose(rep.avg_price, [50_000, 3_000])
    cids = batch.client_order_ids()
    assert [server.count_orders(client_order_id=c) for c in cids] == [1, 1]
    venue_fills = {f["trade_id"]: f for f in server.fills()}
    assert len(rep.fills) == 2
    assert set(rep.fills.trade_ids) == set(venue_fills)
    for k, tid in enumerate(rep.fills.trade_ids):
        f = venue_fills[tid]
        assert rep.fills.qty[k] == pytest.approx(float(f["size"]))
        assert rep.fills.price[k] == pytest.approx(float(f["price"]))
        assert rep.fills.fee[k] == pytest.approx(float(f["commission"]))
    np.testing.assert_allclose(sorted(rep.fills.fee), sorted([0.1 * 50_000 * 0.006, 1.5 * 3_000 * 0.006]))
    assert broker.sync() == []          # nothing left working

    ledger = Ledger(tmp_path / "ledger.db")
    try:
        ledger.start_run("r1", "t", "", "live", "coinbase", 100_000.0, batch.universe.symbols, {})
        j = WriteAheadJournal(ledger, "r1", Account("coinbase", Environment.LIVE, "test"))
        j.intents(0, batch)
        j.update(rep)
        j.update(rep)                   # the same fills again (a re-sync): booked once
        rows = ledger.db.execute("SELECT trade_id, qty, fee FROM fills WHERE run_id='r1'").fetchall()
    finally:
        ledger.close()
    assert sorted(r[0] for r in rows) == sorted(venue_fills)


def test_quote_sized_buy_sends_the_notional_floored_to_the_quote_increment(server, broker):
    batch = make_batch(broker, [("BTC/USD", 1, 0.0247)], notional=[1234.567])
    rep = broker.execute(batch)
    assert rep.status[0] == OrderStatus.FILLED
    (post,) = order_posts(server)
    assert post.body["order_configuration"] == {"market_market_ioc": {"quote_size": "1234.56"}}
    (o,) = server.orders(client_order_id=batch.client_order_ids()[0])
    assert rep.filled_qty[0] == pytest.approx(float(o["filled_size"]), abs=1e-16)
    held, _ = server.balance("BTC")
    assert len(str(held).split(".")[1]) > 8        # the 16-decimal balance a quote-sized buy leaves


# ------------------------------------------------------------------------------------------ limit orders


def test_limit_gtc_rests_open_then_fills_after_the_price_moves(server):
    seen: list[str] = []

    def sleep(s: float) -> None:
        if not seen:
            (o,) = server.orders(product_id="BTC-USD")
            seen.append(o["status"])
            server.set_price("BTC-USD", "48900")
            server.tick()
        time.sleep(min(s, 0.01))

    b = make_broker(server, sleep=sleep)
    batch = make_batch(b, [("BTC/USD", 1, 0.01)], order_type=OrderType.LIMIT, limit=[49_000.004])
    rep = b.execute(batch)
    assert seen == ["OPEN"], "the limit order did not rest OPEN at the venue before the price moved"
    (post,) = order_posts(server)
    assert post.body["order_configuration"]["limit_limit_gtc"]["limit_price"] == "49000.00"
    assert rep.status[0] == OrderStatus.FILLED
    assert rep.filled_qty[0] == pytest.approx(0.01)
    assert rep.avg_price[0] == pytest.approx(49_000)          # a resting order fills at its limit (maker)
    (f,) = server.fills()
    assert f["liquidity_indicator"] == "MAKER"
    assert rep.fills.trade_ids == (f["trade_id"],)
    assert rep.fills.fee[0] == pytest.approx(0.01 * 49_000 * 0.004)
    assert server.balance("USD") == (D(100_000) - D("490") - D("1.96"), D(0))


def test_partial_fills_are_separate_fills_with_their_own_trade_ids(server):
    server.configure(partial_fill_fraction=0.5)
    calls = []

    def sleep(s: float) -> None:
        calls.append(s)
        if len(calls) == 1:
            server.set_price("BTC-USD", "48000")
        if len(calls) in (1, 3):
            server.tick()
        time.sleep(min(s, 0.01))

    b = make_broker(server, sleep=sleep)
    batch = make_batch(b, [("BTC/USD", 1, 0.02)], order_type=OrderType.LIMIT, limit=[49_000])
    rep = b.execute(batch)
    assert rep.status[0] == OrderStatus.FILLED
    assert rep.filled_qty[0] == pytest.approx(0.02)
    venue = server.fills()
    assert len(venue) == 2 and len(rep.fills) == 2
    assert set(rep.fills.trade_ids) == {f["trade_id"] for f in venue}
    np.testing.assert_allclose(rep.fills.qty, [0.01, 0.01])


def test_unfilled_limit_is_cancelled_after_the_timeout_and_its_hold_released(server):
    b = make_broker(server, order_timeout_s=0.15)
    batch = make_batch(b, [("BTC/USD", 1, 0.01)], order_type=OrderType.LIMIT, limit=[40_000])
    rep = b.execute(batch)
    assert rep.status[0] == OrderStatus.CANCELED
    assert "canceled" in rep.messages[0] and "0.15" in rep.messages[0]
    (o,) = server.orders(client_order_id=batch.client_order_ids()[0])
    assert o["status"] == "CANCELLED"
    assert server.balance("USD") == (D(100_000), D(0))
    assert len(rep.fills) == 0


def test_open_orders_lookup_and_cancel_by_client_order_id(server, broker):
    """Only Parity's own orders (``p-`` ids) are listed as working and cancelled (SPEC §17); the user's
    hand-placed order is listed apart and survives a cancel asked for by its id."""
    client = server.rest_client()
    server.set_balance("ETH", "2")
    r = client.limit_order_gtc_sell("manual-sell-2", "ETH-USD", base_size="0.5", limit_price="4000.00")
    assert r["success"] is True
    r = client.limit_order_gtc_sell("p-test-ETHUSD-add-0123456789", "ETH-USD", base_size="0.5", limit_price="4100.00")
    assert r["success"] is True
    working = broker.open_orders()
    assert [(o.client_order_id, o.symbol, o.side, o.qty, o.status) for o in working] == [
        ("p-test-ETHUSD-add-0123456789", "ETH/USD", -1, 0.5, OrderStatus.NEW)]
    assert [o.client_order_id for o in broker.foreign_orders()] == ["manual-sell-2"]
    found = broker.lookup(["manual-sell-2", "p-test-ETHUSD-add-0123456789", "never-sent"])
    assert set(found) == {"manual-sell-2", "p-test-ETHUSD-add-0123456789"}
    out = broker.cancel(["manual-sell-2", "p-test-ETHUSD-add-0123456789"])
    assert [(o.client_order_id, o.status) for o in out] == [("p-test-ETHUSD-add-0123456789", OrderStatus.CANCELED)]
    assert server.orders(client_order_id="p-test-ETHUSD-add-0123456789")[0]["status"] == "CANCELLED"
    assert server.orders(client_order_id="manual-sell-2")[0]["status"] == "OPEN"      # the user's: untouched
    assert broker.open_orders() == []


# ------------------------------------------------------------------------------------------ sizes


def test_sell_size_is_floored_to_the_base_increment_as_an_exact_decimal_string(server, broker):
    server.set_balance("BTC", "1")
    server.set_balance("SOL", "5")
    qty = 0.1 + 0.2                      # 0.30000000000000004
    assert repr(qty) == "0.30000000000000004"
    rep = broker.execute(make_batch(broker, [("BTC/USD", -1, qty), ("SOL/USD", -1, 0.7)], leg="reduce"))
    assert rep.status.tolist() == [OrderStatus.FILLED, OrderStatus.FILLED]
    sizes = base_sizes(server)
    assert D(sizes[0]) == D("0.3") and len(sizes[0].split(".")[1]) <= 8
    assert D(sizes[1]) == D("0.7") and len(sizes[1].split(".")[1]) <= 3      # 0.7 / 0.001 is 699.999... in floats
    assert server.balance("BTC") == (D("0.7"), D(0))
    assert server.balance("SOL") == (D("4.3"), D(0))


def test_buy_size_is_floored_to_the_base_increment_too(server, broker):
    rep = broker.execute(make_batch(broker, [("SOL/USD", 1, 1.23456789)]))
    assert rep.status[0] == OrderStatus.FILLED
    assert base_sizes(server) == ["1.234"]


def test_sell_everything_when_the_rest_would_be_below_base_min_size(server, broker):
    server.set_product("BTC-USD", base_min_size="0.001")
    server.set_balance("BTC", "0.5")
    rep = broker.execute(make_batch(broker, [("BTC/USD", -1, 0.4995)], leg="reduce"))
    assert rep.status[0] == OrderStatus.FILLED
    assert D(base_sizes(server)[0]) == D("0.5")            # 0.0005 left would be under base_min_size
    assert server.balance("BTC") == (D(0), D(0))
    # a rest that can be sold on its own is kept: no over-selling
    server.set_balance("BTC", "0.5")
    rep = broker.execute(make_batch(broker, [("BTC/USD", -1, 0.49)], leg="reduce"))
    assert rep.status[0] == OrderStatus.FILLED
    assert D(base_sizes(server)[1]) == D("0.49")
    assert server.balance("BTC") == (D("0.01"), D(0))


def test_sell_everything_when_the_rest_would_be_below_the_minimum_notional(server, broker):
    """BTC-USD here has base_min_size == base_increment (1e-8) but quote_min_size $1: selling 0.3 of
    0.30001 BTC at $50,000 would leave 0.00001 BTC ($0.50), which the venue refuses to sell on its
    own (PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL). The rest is unsellable, so the whole holding goes."""
    server.set_balance("BTC", "0.30001")
    rep = broker.execute(make_batch(broker, [("BTC/USD", -1, 0.3)], leg="reduce"))
    assert rep.status[0] == OrderStatus.FILLED
    left = sum(server.balance("BTC"))
    # prove the premise: what is left (if anything) can no longer be sold
    if left > 0:
        r = server.rest_client().market_order_sell("dust-1", "BTC-USD", base_size=format(left, "f"))
        assert r["success"] is False
        assert r["error_response"]["preview_failure_reason"] == "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL"
    assert left == 0, (f"{left} BTC (${float(left) * 50_000:.2f}) left: under quote_min_size $1 it can never be "
                       f"sold on its own; sent base_size {base_sizes(server)[0]}")


def test_selling_a_quote_sized_position_leaves_only_dust_under_the_base_increment(server, broker):
    r = server.rest_client().market_order_buy("setup-q", "BTC-USD", quote_size="1234.56")
    assert r["success"] is True
    held, _ = server.balance("BTC")
    assert held != held.quantize(D("1e-8"))                # 16 decimals: not a multiple of the increment
    (pos,) = broker.positions()
    assert pos.symbol == "BTC/USD" and pos.qty == pytest.approx(float(held), abs=1e-16)
    rep = broker.execute(make_batch(broker, [("BTC/USD", -1, pos.qty)], leg="close"))
    assert rep.status[0] == OrderStatus.FILLED
    assert D(base_sizes(server)[-1]) == held.quantize(D("1e-8"), rounding="ROUND_DOWN")
    left = sum(server.balance("BTC"))
    # base_min_size == base_increment for this product, so the base_increment bound is the binding one
    assert D(0) <= left < D("0.00000001")


# ------------------------------------------------------------------------------------------ auth and timeouts


def test_a_refused_key_is_an_authentication_error_with_a_clear_message(server):
    stranger = certs.generate_cdp_key("organizations/test-org/apiKeys/not-this-one")
    b = make_broker(server, key=stranger)
    with pytest.raises(AuthenticationError) as e:
        b.account()
    msg = str(e.value)
    assert "401" in msg and "key" in msg.lower()
    assert stranger.private_pem.splitlines()[1] not in msg     # never the secret
    # Coinbase can answer throttling with 401 (catalogue row 15): retried a bounded number of times, then
    # the key is blamed, and the message says so
    assert len([r for r in server.requests if r.path == API + "/accounts"]) == b.unauthorized_tries == 3
    assert "retried before blaming the key" in msg


def test_every_call_has_a_timeout(server):
    b = make_broker(server, timeout=0.25, retry=RetryPolicy(attempts=2, base=0.01, cap=0.02))
    u = b.instruments(["BTC/USD"])
    server.inject("delay", path_prefix="/", count=None, seconds=2.0)
    calls = {
        "account": b.account,
        "balances": b.balances,
        "instruments": lambda: b.instruments(["ETH/USD"]),
        "prices": lambda: b.prices(u),
        "open_orders": b.open_orders,
        "lookup": lambda: b.lookup(["nope"]),
        "cancel": lambda: b.cancel(["nope"]),
    }
    for name, fn in calls.items():
        t0 = time.monotonic()
        with pytest.raises(TransientBrokerError) as e:
            fn()
        took = time.monotonic() - t0
        assert took < 3.0, f"{name} waited {took:.2f}s: no timeout on its HTTP call"
        assert "Coinbase" in str(e.value), name
    server.clear_injections()
