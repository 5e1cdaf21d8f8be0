"""AlpacaBroker at its boundary, against the local Alpaca server driven by the real alpaca-py:
SDK errors become framework errors, symbols become canonical, every HTTP call has a timeout, the
venue's rate-limit headers reach the limiter, and equity orders wait for a closed market."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints, NotFound
from brokers.live import LiveOptions, OrderRequest
from brokers.retry import RateLimiter, RetryPolicy
from framework.broker import OrderState
from framework.errors import (
    AuthenticationError,
    DataError,
    InsufficientFunds,
    OrderRejected,
    TransientBrokerError,
)
from framework.types import OrderBatch, OrderStatus
from tests.servers.alpaca_server import AlpacaServer

KEY, SECRET = "PKADAPTERKEY01", "SKADAPTERSECRET01"


@pytest.fixture
def server():
    # rate limit off by default: an injected 429 then carries no Reset far in the future
    with AlpacaServer(key=KEY, secret=SECRET, rate_limit=None, data_rate_limit=None) as srv:
        yield srv


def make_broker(srv, *, timeout: float = 5.0, attempts: int = 4, secret: str = SECRET, order_timeout_s: float = 1.0,
                **kw) -> AlpacaBroker:
    return AlpacaBroker(AlpacaEndpoints(KEY, secret, True, srv.url, srv.url, timeout=timeout),
                        retry=RetryPolicy(attempts=attempts, base=0.01, cap=0.05),
                        options=LiveOptions(order_timeout_s=order_timeout_s, poll_interval_s=0.01), **kw)


@pytest.fixture
def broker(server):
    return make_broker(server)


def hits(srv, method: str, path: str) -> int:
    return sum(1 for r in srv.requests if r.method == method and r.path == path)


def batch(broker: AlpacaBroker, legs, batch_id: str, leg: str = "add") -> OrderBatch:
    u = broker.instruments(sorted({s for s, _, _ in legs}))
    idx = np.array([u.index[s] for s, _, _ in legs], np.int64)
    return OrderBatch(u, np.datetime64(time.time_ns(), "ns"), batch_id, leg, idx,
                      np.array([sd for _, sd, _ in legs], np.int8), np.array([q for _, _, q in legs], float),
                      broker.prices(u)[idx])


# ------------------------------------------------------------------------------ error translation


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "504", "502_html", "504_html"])
def test_429_and_5xx_become_transient(server, kind):
    b = make_broker(server, attempts=1)
    server.inject(kind, path_prefix="/v2/account")
    with pytest.raises(TransientBrokerError) as ei:
        b.account()
    assert kind[:3] in str(ei.value)


def test_transient_errors_are_retried_until_success(server):
    b = make_broker(server, attempts=4)
    server.inject("503", path_prefix="/v2/account", count=2)
    assert b.account().equity == pytest.approx(100_000.0)
    assert hits(server, "GET", "/v2/account") == 3


def test_401_becomes_authentication_error_and_is_not_retried(server):
    b = make_broker(server, secret="wrong-secret", attempts=4)
    with pytest.raises(AuthenticationError) as ei:
        b.account()
    assert "ALPACA_PAPER_KEY" in str(ei.value) and "wrong-secret" not in str(ei.value)
    assert hits(server, "GET", "/v2/account") == 1


def test_403_insufficient_buying_power_becomes_insufficient_funds(broker, server):
    with pytest.raises(InsufficientFunds) as ei:
        broker._submit(OrderRequest("p-bp-1", "AAPL", 1, 10_000.0))
    assert "insufficient buying power" in str(ei.value)
    assert ei.value.code == "40310000"
    with pytest.raises(InsufficientFunds, match="insufficient balance for USD"):
        broker._submit(OrderRequest("p-bp-2", "BTC/USD", 1, 10.0))
    assert server.count_orders() == 0


def test_422_duplicate_client_order_id_is_looked_up_not_failed(broker, server):
    req = OrderRequest("p-dup-1", "AAPL", 1, 3.0)
    first = broker._submit(req)
    second = broker._submit(req)           # the venue answers 422 "client_order_id must be unique"
    assert second.broker_id == first.broker_id and second.client_order_id == "p-dup-1"
    assert server.count_orders(client_order_id="p-dup-1") == 1
    assert hits(server, "GET", "/v2/orders:by_client_order_id") >= 1


def test_other_422_is_an_order_rejection(broker, server):
    with pytest.raises(OrderRejected) as ei:
        broker._submit(OrderRequest("p-frac-1", "BRK.A", 1, 0.5))   # BRK.A is not fractionable
    assert not isinstance(ei.value, InsufficientFunds)
    assert "fractionable" in str(ei.value)


def test_404_becomes_not_found_and_unknown_ids_are_absent(broker):
    ghost = OrderState("p-ghost", str(uuid.uuid4()), "AAPL", 1, 1.0, 0.0, None, int(OrderStatus.NEW))
    with pytest.raises(NotFound):
        broker._get(ghost)
    assert broker.lookup(["p-ghost"]) == {}
    with pytest.raises(DataError) as ei:
        broker.instruments(["AAPL", "NOPE"])
    assert "NOPE is not an Alpaca asset" in str(ei.value)


def test_rejections_at_execute_are_statuses_not_exceptions(broker, server):
    b = batch(broker, [("AAPL", 1, 10_000.0), ("MSFT", 1, 1.0)], "adapter@reject")
    rep = broker.execute(b)
    assert rep.status.tolist() == [int(OrderStatus.REJECTED), int(OrderStatus.FILLED)]
    assert "insufficient buying power" in rep.messages[0]


# ------------------------------------------------------------------------------ symbols


def test_crypto_position_symbol_btcusd_becomes_btc_slash_usd(broker, server):
    server.set_position("BTC/USD", 0.5, 40_000.0)
    assert list(server.positions()) == ["BTCUSD"]          # the venue's position symbol
    pos = broker.positions()
    assert [p.symbol for p in pos] == ["BTC/USD"]
    assert pos[0].qty == pytest.approx(0.5) and pos[0].avg_cost == pytest.approx(40_000.0)
    assert pos[0].market_value == pytest.approx(0.5 * 45_000.0)
    assert [p.symbol for p in broker.account().positions] == ["BTC/USD"]
    u = broker.instruments(["AAPL", "BTC/USD"])
    np.testing.assert_allclose(broker.position_vector(u), [0.0, 0.5])


def test_crypto_orders_go_out_as_btc_slash_usd_and_come_back_canonical(broker, server):
    rep = broker.execute(batch(broker, [("BTC/USD", 1, 0.01)], "adapter@btc"))
    assert rep.status.tolist() == [int(OrderStatus.FILLED)]
    posts = [r.body for r in server.requests if r.method == "POST" and r.path == "/v2/orders"]
    assert [(p["symbol"], p["time_in_force"]) for p in posts] == [("BTC/USD", "gtc")]
    assert {s.symbol for s in broker.lookup(rep.batch.client_order_ids()).values()} == {"BTC/USD"}
    u = broker.instruments(["BTC/USD", "ETH/USD"])
    np.testing.assert_allclose(broker.prices(u), [45_000.0, 2_300.0])


def test_equity_orders_are_day_orders_with_a_client_id(broker, server):
    b = batch(broker, [("AAPL", 1, 2.0)], "adapter@day")
    broker.execute(b)
    posts = [r.body for r in server.requests if r.method == "POST" and r.path == "/v2/orders"]
    assert len(posts) == 1
    assert posts[0]["time_in_force"] == "day" and posts[0]["client_order_id"] == b.client_order_ids()[0]


def test_crypto_fee_taken_in_the_coin(server):
    """Alpaca takes the crypto fee from the coin received: the position is filled_qty minus the fee."""
    from framework.costs import VenueFees
    from framework.venue_config import load_venue

    b = make_broker(server, fees=VenueFees.from_venue(load_venue("alpaca")))
    rep = b.execute(batch(b, [("BTC/USD", 1, 0.1)], "adapter@fee"))
    assert rep.filled_qty[0] == pytest.approx(0.1)
    assert rep.fills.fee[0] == pytest.approx(0.1 * 45_000.0 * 25e-4)
    assert b.positions()[0].qty == pytest.approx(0.1 * (1 - 25e-4))


# ------------------------------------------------------------------------------ timeouts


def _call(what: str):
    # the order primitives do not retry themselves: the live loop calls them through ``call``
    def place(b):
        b.call(lambda: b._submit(OrderRequest("p-timeout-submit", "AAPL", 1, 1.0)))

    def cancel(b):
        b.call(lambda: b._cancel(OrderState("p-x", str(uuid.uuid4()), "AAPL", 1, 1.0, 0.0, None,
                                            int(OrderStatus.NEW))))

    return {
        "account": lambda b: b.account(),
        "positions": lambda b: b.positions(),
        "assets": lambda b: b.instruments(["IBM"]),
        "clock": lambda b: b.is_open(),
        "open_orders": lambda b: b.open_orders(),
        "lookup": lambda b: b.lookup(["p-timeout-lookup"]),
        "stock_prices": lambda b: b.prices(b.instruments(["AAPL"])),
        "crypto_prices": lambda b: b.prices(b.instruments(["BTC/USD"])),
        "submit": place,
        "cancel": cancel,
    }[what]


@pytest.mark.parametrize("what,path,method", [
    ("account", "/v2/account", "GET"),
    ("positions", "/v2/positions", "GET"),
    ("assets", "/v2/assets", "GET"),
    ("clock", "/v2/clock", "GET"),
    ("open_orders", "/v2/orders", "GET"),
    ("lookup", "/v2/orders:by_client_order_id", "GET"),
    ("stock_prices", "/v2/stocks", "GET"),
    ("crypto_prices", "/v1beta3/crypto", "GET"),
    ("submit", "/v2/orders", "POST"),
    ("cancel", "/v2/orders/", "DELETE"),
])
def test_every_http_call_has_a_timeout(server, what, path, method):
    b = make_broker(server, timeout=0.3, attempts=2)
    if what in ("stock_prices", "crypto_prices"):
        b.instruments(["AAPL", "BTC/USD"])      # assets cached before the data endpoint stalls
    server.inject("delay", path_prefix=path, method=method, count=10, seconds=5.0)
    t0 = time.monotonic()
    with pytest.raises(TransientBrokerError) as ei:
        _call(what)(b)
    assert time.monotonic() - t0 < 2.0, "a stalled venue must not hang the caller"
    assert "connection problem" in str(ei.value)
    tries = sum(1 for r in server.requests if r.method == method and r.path.startswith(path))
    assert tries == 2, "a timeout is transient: retried once with attempts=2"


def test_a_slow_answer_is_retried_and_succeeds(server):
    b = make_broker(server, timeout=0.3, attempts=4)
    server.inject("delay", path_prefix="/v2/account", count=1, seconds=3.0)
    t0 = time.monotonic()
    assert b.account().cash == pytest.approx(100_000.0)
    assert time.monotonic() - t0 < 2.0


def test_clients_have_no_sdk_retry_and_a_timeout_session(broker):
    for c in (broker.trading, broker.stock_data, broker.crypto_data):
        assert c._retry == 0
        assert c._session._timeout == pytest.approx(5.0)


# ------------------------------------------------------------------------------ rate limits


def test_rate_limit_headers_reach_the_limiter(server):
    server.configure(rate_limit=50)
    b = make_broker(server)
    for _ in range(3):
        b.account()     # account() = GET /v2/account + GET /v2/positions
    assert b.limiter.tokens <= 50 - 6 + 1e-6


def test_a_429_with_reset_blocks_the_limiter_until_the_reset(server):
    server.configure(rate_limit=200, rate_limit_window=60.0)
    b = make_broker(server, attempts=1)
    server.inject("429", path_prefix="/v2/account")
    with pytest.raises(TransientBrokerError):
        b.account()
    wait = b.limiter.blocked_until - time.monotonic()
    assert 0.0 < wait <= 61.0, "X-Ratelimit-Remaining 0 + Reset: nothing more until the window resets"


def test_rate_limiter_honours_remaining_zero_and_reset():
    now = [1000.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    rl = RateLimiter(200, 60.0, clock=lambda: now[0], sleep=sleep)
    rl.acquire()
    assert slept == []
    rl.observe(0, 2.5)                 # the venue: nothing left, window resets in 2.5 s
    rl.acquire()
    assert sum(slept) == pytest.approx(2.5, abs=0.31)
    slept.clear()
    rl.observe(3, None)                # a smaller remaining count caps our own tokens
    assert rl.tokens <= 3
    rl.observe(0, 3600.0)              # an absurd reset is capped at one minute
    rl.acquire()
    assert sum(slept) == pytest.approx(60.0, abs=0.31)


def test_rate_limiter_spaces_requests_at_the_published_rate():
    now = [0.0]
    rl = RateLimiter(200, 60.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(200):
        rl.acquire()
    assert now[0] == 0.0                # a full bucket of 200
    rl.acquire()
    assert now[0] == pytest.approx(60.0 / 200)


# ------------------------------------------------------------------------------ market hours


def test_equity_orders_wait_for_a_closed_market_with_a_clear_message(server):
    server.set_market_open(False)
    b = make_broker(server, order_timeout_s=0.2)
    u = b.instruments(["AAPL", "BTC/USD"])
    assert b.market_open(u).tolist() == [False, True]
    bt = batch(b, [("AAPL", 1, 2.0), ("BTC/USD", 1, 0.01)], "adapter@closed")
    rep = b.execute(bt)
    assert rep.status.tolist() == [int(OrderStatus.NEW), int(OrderStatus.FILLED)]
    assert "waiting for the market to open" in rep.messages[0]
    cid = bt.client_order_ids()[0]
    assert server.get_order(cid)["status"] == "accepted"        # still working, not cancelled
    assert [o.client_order_id for o in b.open_orders()] == [cid]
    server.set_market_open(True)
    updates = b.sync()
    assert [(r.batch.symbols(), int(r.status[0])) for r in updates] == [(["AAPL"], int(OrderStatus.FILLED))]
    assert server.count_orders(client_order_id=cid) == 1
