"""CoinbaseBroker under the venue's failures, against the local server: an HTTP-200 rejection, 429,
5xx, a connection dropped after the order was accepted, a timeout after acceptance, persistent
failures and the private rate limit. Each ends without a duplicate order (the server counts orders
per client order id) and with a clear message in the ExecutionReport."""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
import pytest

from brokers.retry import RetryPolicy
from framework.types import OrderStatus
from tests.brokers.coinbase.test_adapter import FAST, make_batch, make_broker, order_posts
from tests.servers.coinbase_server import CoinbaseServer

D = Decimal


@pytest.fixture(scope="module")
def server():
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server):
    server.reset()
    yield
    server.clear_injections()


@pytest.fixture
def broker(server):
    b = make_broker(server, retry=FAST)
    yield b
    b.close()


def test_insufficient_funds_is_a_rejection_with_its_reason_and_no_order(server, broker):
    server.set_balance("USD", "1000")
    batch = make_batch(broker, [("BTC/USD", 1, 0.5), ("ETH/USD", 1, 0.1)])
    rep = broker.execute(batch)
    btc, eth = batch.client_order_ids()
    # the rejected order is recorded with the venue's reason; the rest of the batch goes on
    assert rep.status.tolist() == [OrderStatus.REJECTED, OrderStatus.FILLED]
    assert rep.n_rejected == 1
    msg = rep.messages[0]
    assert "INSUFFICIENT_FUND" in msg and "Insufficient balance" in msg and "BTC/USD" in msg
    assert server.count_orders(client_order_id=btc) == 0
    assert server.count_orders(client_order_id=eth) == 1
    # a rejection is final: sent once, not retried
    assert [r.body["client_order_id"] for r in order_posts(server)] == [btc, eth]
    assert [r["client_order_id"] for r in server.rejections()] == [btc]
    assert rep.filled_qty[0] == 0 and np.isnan(rep.avg_price[0])


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "504", "503_html"])
def test_a_transient_answer_to_the_order_post_is_retried_without_a_duplicate(server, broker, kind):
    server.inject(kind, path="/orders", method="POST", count=2)
    batch = make_batch(broker, [("BTC/USD", 1, 0.01)])
    rep = broker.execute(batch)
    (cid,) = batch.client_order_ids()
    assert rep.status[0] == OrderStatus.FILLED
    assert rep.filled_qty[0] == pytest.approx(0.01)
    assert server.count_orders(client_order_id=cid) == 1
    posts = order_posts(server)
    assert len(posts) == 3 and [p.status for p in posts] == [int(kind[:3]), int(kind[:3]), 200]
    assert len(rep.fills) == 1


def test_a_connection_dropped_after_the_order_was_accepted_does_not_duplicate_it(server, broker):
    server.inject("drop_after", path="/orders", method="POST", count=1)
    batch = make_batch(broker, [("ETH/USD", 1, 0.5)])
    rep = broker.execute(batch)
    (cid,) = batch.client_order_ids()
    posts = order_posts(server)
    assert posts[0].fault == "drop_after" and posts[0].status is None     # accepted, then no answer
    assert server.count_orders(client_order_id=cid) == 1
    assert rep.status[0] == OrderStatus.FILLED and rep.filled_qty[0] == pytest.approx(0.5)
    assert len(rep.fills) == 1
    assert server.balance("ETH") == (D("0.5"), D(0))


def test_every_answer_dropped_the_order_is_found_by_its_client_id(server, broker):
    server.inject("drop_after", path="/orders", method="POST", count=None)
    batch = make_batch(broker, [("ETH/USD", 1, 0.5)])
    rep = broker.execute(batch)
    (cid,) = batch.client_order_ids()
    assert len(order_posts(server)) == FAST.attempts
    assert server.count_orders(client_order_id=cid) == 1
    assert rep.status[0] == OrderStatus.FILLED
    assert server.balance("ETH") == (D("0.5"), D(0))


def test_a_timeout_after_the_order_was_accepted_does_not_duplicate_it(server):
    b = make_broker(server, timeout=0.3, retry=FAST)
    server.inject("delay", path="/orders", method="POST", count=1, seconds=0.8)
    batch = make_batch(b, [("BTC/USD", 1, 0.01)])
    t0 = time.monotonic()
    rep = b.execute(batch)
    assert time.monotonic() - t0 < 5
    (cid,) = batch.client_order_ids()
    time.sleep(0.8)                     # let the delayed first request be processed too
    assert server.count_orders(client_order_id=cid) == 1
    assert rep.status[0] == OrderStatus.FILLED
    assert server.balance("BTC") == (D("0.01"), D(0))


def test_a_venue_down_for_every_try_reports_the_order_unconfirmed_and_sends_nothing_twice(server, broker):
    server.inject("503", path="/orders", method="POST", count=None)
    batch = make_batch(broker, [("BTC/USD", 1, 0.01)])
    rep = broker.execute(batch)
    (cid,) = batch.client_order_ids()
    assert server.count_orders(client_order_id=cid) == 0
    assert len(order_posts(server)) == FAST.attempts
    assert rep.status[0] not in (OrderStatus.FILLED, OrderStatus.NEW, OrderStatus.PARTIAL)
    msg = rep.messages[0]
    assert f"not confirmed after {FAST.attempts} tries" in msg and "503" in msg and "client order id" in msg
    # the next run looks it up first; with the venue back, one send creates exactly one order
    server.clear_injections()
    rep2 = broker.execute(batch)
    assert rep2.status[0] == OrderStatus.FILLED
    assert server.count_orders(client_order_id=cid) == 1


def test_a_rerun_of_the_same_batch_finds_the_orders_and_sends_nothing(server, broker):
    batch = make_batch(broker, [("BTC/USD", 1, 0.01), ("ETH/USD", 1, 0.2)])
    broker.execute(batch)
    n = len(order_posts(server))
    rep = broker.execute(batch)
    assert len(order_posts(server)) == n
    assert [server.count_orders(client_order_id=c) for c in batch.client_order_ids()] == [1, 1]
    assert rep.status.tolist() == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert all("already at the venue" in rep.messages[i] for i in range(2))


def test_transient_failures_while_polling_and_reading_are_retried(server, broker):
    server.inject("429", path_prefix="/accounts", count=1)
    server.inject("502", path_prefix="/orders/historical", count=2)
    batch = make_batch(broker, [("BTC/USD", 1, 0.01), ("ETH/USD", 1, 0.2), ("SOL/USD", 1, 3)])
    rep = broker.execute(batch)
    assert rep.status.tolist() == [OrderStatus.FILLED] * 3
    assert [server.count_orders(client_order_id=c) for c in batch.client_order_ids()] == [1, 1, 1]
    assert len(rep.fills) == 3


def test_the_private_rate_limit_is_respected_without_duplicates():
    with CoinbaseServer(private_rate_limit=5, public_rate_limit=None, rate_limit_window=0.5) as srv:
        b = make_broker(srv, retry=RetryPolicy(attempts=8, base=0.05, cap=0.5))
        batch = make_batch(b, [("BTC/USD", 1, 0.01), ("ETH/USD", 1, 0.2), ("SOL/USD", 1, 3)])
        t0 = time.monotonic()
        rep = b.execute(batch)
        took = time.monotonic() - t0
        assert rep.status.tolist() == [OrderStatus.FILLED] * 3, rep.messages
        assert [srv.count_orders(client_order_id=c) for c in batch.client_order_ids()] == [1, 1, 1]
        assert took < 10
        # the venue's x-ratelimit headers were honoured: the client-side limiter made us wait
        assert b.limiter.waited > 0
