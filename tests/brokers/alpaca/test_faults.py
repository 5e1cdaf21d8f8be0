"""Venue faults around sending an order (SPEC §11, BROKER_API_NOTES §0.1): whatever happens on the
wire, the execute loop ends without a duplicate order at the venue and says what happened."""

from __future__ import annotations

import time

import numpy as np
import pytest

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints
from brokers.live import LiveOptions
from brokers.retry import RetryPolicy
from framework.types import OrderBatch, OrderStatus
from tests.servers.alpaca_server import AlpacaServer

KEY, SECRET = "PKFAULTKEY0001", "SKFAULTSECRET0001"
FILLED, REJECTED, PLANNED = int(OrderStatus.FILLED), int(OrderStatus.REJECTED), int(OrderStatus.PLANNED)


@pytest.fixture
def server():
    with AlpacaServer(key=KEY, secret=SECRET, rate_limit=None, data_rate_limit=None) as srv:
        yield srv


def make_broker(srv, *, timeout: float = 5.0, requests_per_minute: int = 200) -> AlpacaBroker:
    b = AlpacaBroker(AlpacaEndpoints(KEY, SECRET, True, srv.url, srv.url, timeout=timeout),
                     retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
                     requests_per_minute=requests_per_minute,
                     options=LiveOptions(order_timeout_s=2.0, poll_interval_s=0.01))
    return b


def order_batch(broker: AlpacaBroker, legs, batch_id: str, leg: str = "add") -> OrderBatch:
    u = broker.instruments(sorted({s for s, _, _ in legs}))
    idx = np.array([u.index[s] for s, _, _ in legs], np.int64)
    return OrderBatch(u, np.datetime64(time.time_ns(), "ns"), batch_id, leg, idx,
                      np.array([sd for _, sd, _ in legs], np.int8), np.array([q for _, _, q in legs], float),
                      broker.prices(u)[idx])


def posts(srv, cid: str) -> int:
    """POST /v2/orders requests that carried this client order id (accepted or not)."""
    return sum(1 for r in srv.requests if r.method == "POST" and r.path == "/v2/orders"
               and isinstance(r.body, dict) and r.body.get("client_order_id") == cid)


def assert_one_each(srv, batch: OrderBatch) -> None:
    for cid in batch.client_order_ids():
        assert srv.count_orders(client_order_id=cid) == 1, f"{cid}: exactly one order at the venue"


# ------------------------------------------------------------------------------ reused client id


@pytest.mark.parametrize("n_orders", [1, 5])   # <= 3 ids: looked up one by one; more: one listing
def test_order_already_at_the_venue_from_an_earlier_run_is_not_sent_again(server, n_orders):
    legs = [(s, 1, 1.0) for s in ["AAPL", "MSFT", "SPY", "IBM", "BAC"][:n_orders]]
    earlier = make_broker(server)
    b = order_batch(earlier, legs, "faults@reused")
    assert earlier.execute(b).status.tolist() == [FILLED] * n_orders
    n_posts = sum(1 for r in server.requests if r.method == "POST")

    rerun = make_broker(server)                      # a new process: nothing in memory
    rep = rerun.execute(b)
    assert rep.status.tolist() == [FILLED] * n_orders
    np.testing.assert_allclose(rep.filled_qty, 1.0)
    for i in range(n_orders):
        assert "already at the venue" in rep.messages[i] and "not sent again" in rep.messages[i]
    assert sum(1 for r in server.requests if r.method == "POST") == n_posts, "no POST on a re-run"
    assert_one_each(server, b)
    assert server.position_qty("AAPL") == pytest.approx(1.0)


def test_client_id_used_outside_the_lookup_window_is_looked_up_after_the_422(server):
    """The pre-send listing only covers recent orders; if it misses an id the venue still knows,
    the venue's 422 'client_order_id must be unique' is answered by looking the order up."""
    b0 = make_broker(server)
    b = order_batch(b0, [(s, 1, 1.0) for s in ["AAPL", "MSFT", "SPY", "IBM"]], "faults@window")
    b0.execute(b.subset(np.array([True, False, False, False])))      # only AAPL is at the venue
    late = OrderBatch(b.universe, b.time + np.timedelta64(30, "D"), b.batch_id, b.leg, b.symbol_idx, b.side,
                      b.qty, b.ref_price)                           # same ids, listing starts 28 days later
    rep = make_broker(server).execute(late)
    assert rep.status.tolist() == [FILLED] * 4, rep.messages
    assert posts(server, b.client_order_ids()[0]) == 2               # the second answered 422
    assert_one_each(server, b)


# ------------------------------------------------------------------------------ buying power


def test_insufficient_buying_power_rejects_that_order_only(server):
    broker = make_broker(server)
    b = order_batch(broker, [("AAPL", 1, 1_000.0), ("MSFT", 1, 2.0), ("BTC/USD", 1, 0.01)], "faults@bp")
    rep = broker.execute(b)                           # 1000 AAPL = $190,000 > $100,000 cash
    assert rep.status.tolist() == [REJECTED, FILLED, FILLED]
    assert rep.messages[0].startswith("rejected: insufficient buying power")
    assert "cost_basis" in rep.messages[0]            # the venue's figures are kept
    aapl, msft, btc = b.client_order_ids()
    assert posts(server, aapl) == 1, "a 403 is final: not retried"
    assert server.count_orders(client_order_id=aapl) == 0
    assert server.count_orders(client_order_id=msft) == 1 and server.count_orders(client_order_id=btc) == 1
    assert server.position_qty("MSFT") == pytest.approx(2.0)


# ------------------------------------------------------------------------------ 429


def test_a_burst_of_429s_backs_off_and_succeeds_once(server):
    # one token = 200 ms after a Remaining: 0, longer than any retry backoff (at most 50 ms here), so
    # each retry must wait for the limiter; at 10 ms a token, a backoff and a slow answer could refill it
    broker = make_broker(server, requests_per_minute=300)
    b = order_batch(broker, [("AAPL", 1, 2.0)], "faults@429")
    server.inject("429", path_prefix="/v2/orders", method="POST", count=3)
    t0 = time.monotonic()
    rep = broker.execute(b)
    assert time.monotonic() - t0 < 3.0
    assert rep.status.tolist() == [FILLED], rep.messages
    cid = b.client_order_ids()[0]
    assert posts(server, cid) == 4
    assert server.count_orders(client_order_id=cid) == 1
    assert broker.limiter.waited > 0, "Remaining: 0 on each 429 made the limiter wait"


def test_429_with_reset_is_waited_out_before_the_retry(server):
    server.configure(rate_limit=1000, rate_limit_window=1.0)  # the venue's window resets within ~1 s
    broker = make_broker(server)
    b = order_batch(broker, [("MSFT", 1, 1.0)], "faults@reset")
    server.inject("429", path_prefix="/v2/orders", method="POST", count=1)
    t0 = time.time()
    rep = broker.execute(b)
    assert rep.status.tolist() == [FILLED]
    assert sum(1 for r in server.requests if r.method == "POST") == 2
    # Reset is the epoch second the venue's window ends; the retry waited for it, and no longer
    assert broker.limiter.waited > 0
    assert time.time() - t0 < 3.0
    assert server.count_orders(client_order_id=b.client_order_ids()[0]) == 1


def test_429s_that_never_end_leave_the_order_unsent_with_a_clear_message(server):
    broker = make_broker(server, requests_per_minute=6000)
    b = order_batch(broker, [("AAPL", 1, 2.0)], "faults@429forever")
    server.inject("429", path_prefix="/v2/orders", method="POST", count=100)
    rep = broker.execute(b)
    assert rep.status.tolist() == [PLANNED]
    assert "not confirmed after 4 tries" in rep.messages[0] and "429" in rep.messages[0]
    assert "looks the order up" in rep.messages[0]
    cid = b.client_order_ids()[0]
    assert server.count_orders(client_order_id=cid) == 0
    server.clear_faults()
    again = make_broker(server).execute(b)           # the next run sends it, once
    assert again.status.tolist() == [FILLED]
    assert server.count_orders(client_order_id=cid) == 1


# ------------------------------------------------------------------------------ lost answers


@pytest.mark.parametrize("kind", ["504_after_accept", "drop_after", "drop_before", "502", "504_html"])
def test_lost_or_failed_answer_to_post_never_duplicates(server, kind):
    broker = make_broker(server)
    b = order_batch(broker, [("AAPL", 1, 3.0), ("BTC/USD", 1, 0.01)], f"faults@{kind}")
    server.inject(kind, path_prefix="/v2/orders", method="POST", count=1)
    rep = broker.execute(b)
    assert rep.status.tolist() == [FILLED, FILLED], rep.messages
    np.testing.assert_allclose(rep.filled_qty, [3.0, 0.01])
    assert not any("not confirmed" in m for m in rep.messages.values())
    assert_one_each(server, b)
    assert server.position_qty("AAPL") == pytest.approx(3.0)
    stored_first = kind in ("504_after_accept", "drop_after")
    cid = b.client_order_ids()[0]
    # after a stored-then-lost answer the retry is refused as a duplicate and looked up
    assert posts(server, cid) == 2
    if stored_first:
        assert any(r.path == "/v2/orders:by_client_order_id" and r.query.get("client_order_id") == cid
                   for r in server.requests)


def test_504_after_accept_on_every_try_finds_the_order(server):
    broker = make_broker(server)
    b = order_batch(broker, [("SPY", 1, 1.0)], "faults@504always")
    server.inject("504_after_accept", path_prefix="/v2/orders", method="POST", count=100)
    rep = broker.execute(b)
    assert rep.status.tolist() == [FILLED], rep.messages
    cid = b.client_order_ids()[0]
    assert posts(server, cid) == 4
    assert server.count_orders(client_order_id=cid) == 1


def test_a_post_that_times_out_but_lands_later_is_not_duplicated(server):
    broker = make_broker(server, timeout=0.3)
    b = order_batch(broker, [("IBM", 1, 2.0)], "faults@slowpost")
    server.inject("delay", path_prefix="/v2/orders", method="POST", count=1, seconds=0.8)
    rep = broker.execute(b)
    time.sleep(0.9)                                   # the slow request is processed after the retry
    assert rep.status.tolist() == [FILLED], rep.messages
    cid = b.client_order_ids()[0]
    assert server.count_orders(client_order_id=cid) == 1
    assert server.position_qty("IBM") == pytest.approx(2.0)


def test_connection_drops_while_polling_do_not_lose_the_fill(server):
    broker = make_broker(server)
    b = order_batch(broker, [("AAPL", 1, 1.0)], "faults@pollfail")
    server.inject("drop_before", path_prefix="/v2/orders/", method="GET", count=2)
    rep = broker.execute(b)
    assert rep.status.tolist() == [FILLED], rep.messages
    assert server.count_orders(client_order_id=b.client_order_ids()[0]) == 1


def test_the_clock_failing_after_the_orders_went_out_does_not_fail_the_leg(server):
    """Whether the equity orders just sent wait for the open is asked of the clock (venue row 16); when
    that request keeps failing, the orders are out and are waited for as usual: the leg is reported
    (filled), not raised, and nothing is sent twice."""
    broker = make_broker(server)
    batch = order_batch(broker, [("AAPL", 1, 2.0)], "faults@clock")
    server.inject("503", path_prefix="/v2/clock", method="GET", count=100,
                  arm={"method": "POST", "path_prefix": "/v2/orders", "count": 1})
    rep = broker.execute(batch)
    assert int(rep.status[0]) == FILLED and rep.filled_qty[0] == pytest.approx(2.0)
    assert_one_each(server, batch)
    assert sum(1 for r in server.requests if r.path == "/v2/clock") >= 1, "the clock was asked"
