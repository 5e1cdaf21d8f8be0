"""Catalogue row 14: the venue sends an enum value alpaca-py does not know (a new exchange, asset class,
asset status, order status, order class or type, account status). alpaca-py's strict models fail on it
(tests/servers/test_alpaca_behaviours.py::test_a_new_enum_value_from_the_venue_breaks_the_sdk; here each
test first shows the SDK failing on the same answer); AlpacaBroker reads the JSON leniently and keeps
working: account, positions, instruments, open orders, execute, sync, and the order stream. An unknown
order status is read as still working, an unknown account status blocks, an unknown asset status
leaves the decision to the venue's ``tradable`` flag."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from alpaca.trading.client import TradingClient
from pydantic import ValidationError

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints
from brokers.alpaca.stream import AlpacaOrderStream
from brokers.live import LiveOptions, OrderRequest
from brokers.retry import RetryPolicy
from framework.engine import run_cycle
from framework.order_ids import batch_key, client_order_id
from framework.types import OrderBatch, OrderStatus
from framework.venue_checks import AccountBlocked
from tests.brokers.alpaca.test_stream import Recorder
from tests.brokers.alpaca.test_venue_rules import pipeline, target
from tests.servers.alpaca_server import AlpacaServer

KEY, SECRET = "PKNEWVALUES01", "SKNEWVALUESSECRET01"
# values no alpaca-py release knows (the venue's next additions are unknown: any value will do)
NEW_EXCHANGE, NEW_CLASS, NEW_STATUS = "NEWEXCHANGE", "us_equity_next", "queued_for_review"
RENAMED = {"pending_new": "queued_for_review", "accepted": "queued_for_review", "new": "queued_for_review"}


@pytest.fixture
def server():
    with AlpacaServer(key=KEY, secret=SECRET, rate_limit=None, data_rate_limit=None) as srv:
        yield srv


def make_broker(srv: AlpacaServer, *, order_timeout_s: float = 1.0, stream: bool = False) -> AlpacaBroker:
    ep = AlpacaEndpoints(KEY, SECRET, True, srv.url, srv.url, timeout=5.0,
                         stream_url=srv.stream_url if stream else None)
    return AlpacaBroker(ep, retry=RetryPolicy(attempts=4, base=0.01, cap=0.05),
                        options=LiveOptions(order_timeout_s=order_timeout_s, poll_interval_s=0.01))


def strict(srv: AlpacaServer) -> TradingClient:
    """alpaca-py as it comes (strict models): to show the answers below are ones it cannot read."""
    tc = TradingClient(KEY, SECRET, paper=True, url_override=srv.url)
    tc._retry = 0
    return tc


def batch(broker: AlpacaBroker, legs, batch_id: str) -> OrderBatch:
    u = broker.instruments(sorted({s for s, _, _ in legs}))
    idx = np.array([u.index[s] for s, _, _ in legs], np.int64)
    return OrderBatch(u, np.datetime64(time.time_ns(), "ns"), batch_id, "add", idx,
                      np.array([sd for _, sd, _ in legs], np.int8), np.array([q for _, _, q in legs], float),
                      broker.prices(u)[idx])


# ------------------------------------------------------------------ assets, positions, account


def test_positions_and_instruments_with_a_new_exchange_and_class_are_read(server):
    server.set_asset("NEWX", exchange=NEW_EXCHANGE, asset_class=NEW_CLASS, price=5.0)
    server.set_asset("AAPL", exchange=NEW_EXCHANGE)
    server.set_position("NEWX", 10, 4.0)
    with pytest.raises(ValidationError):
        strict(server).get_all_positions()
    with pytest.raises(ValidationError):
        strict(server).get_asset("AAPL")
    b = make_broker(server)
    snap = b.account()
    assert [(p.symbol, p.qty, p.avg_cost) for p in snap.positions] == [("NEWX", 10.0, 4.0)]
    assert snap.equity == pytest.approx(100_000.0 + 50.0) and snap.blocked == ""
    assert [p.symbol for p in b.positions()] == ["NEWX"]
    u = b.instruments(["AAPL", "NEWX"])
    assert u.tradable is not None and u.tradable.tolist() == [True, True]
    assert b.execute(batch(b, [("NEWX", -1, 10.0)], "newvals@sell")).status.tolist() == [int(OrderStatus.FILLED)]
    assert server.position_qty("NEWX") == 0.0


def test_a_new_asset_status_leaves_the_decision_to_the_tradable_flag(server, caplog):
    server.set_asset("ODDA", status="active_restricted_new", tradable=True, price=20.0)
    server.set_asset("ODDB", status="pending_delisting_new", tradable=False, price=20.0)
    server.set_asset("GONE", status="inactive", tradable=True, price=20.0)
    with pytest.raises(ValidationError):
        strict(server).get_asset("ODDA")
    with caplog.at_level(logging.WARNING, logger="parity.alpaca"):
        u = make_broker(server).instruments(["GONE", "ODDA", "ODDB"])
    assert u.tradable is not None
    tradable = {s: (bool(t), why) for s, t, why in zip(u.symbols, u.tradable, u.halt_reasons)}
    assert tradable["ODDA"] == (True, "")
    assert tradable["ODDB"] == (False, "Alpaca asset status pending_delisting_new, tradable false")
    assert tradable["GONE"][0] is False and "inactive" in tradable["GONE"][1]
    assert "asset status 'active_restricted_new'" in caplog.text


def test_a_new_account_status_is_read_and_blocks_every_order(server):
    server.set_account(status="UNDER_NEW_REVIEW")
    with pytest.raises(ValidationError):
        strict(server).get_account()
    b = make_broker(server)
    assert b.account().blocked == "status UNDER_NEW_REVIEW"
    assert b.account_id() == server.account()["id"]
    p = pipeline(b, ["AAPL"])
    with pytest.raises(AccountBlocked) as e:
        run_cycle(p, target(p.universe, {"AAPL": 0.1}))
    assert "UNDER_NEW_REVIEW" in str(e.value) and server.count_orders() == 0


# ------------------------------------------------------------------ orders: execute, open orders, sync


def test_orders_with_a_new_status_class_and_type_execute_and_are_booked(server, caplog):
    server.set_new_values(order_status=RENAMED, order_class="simple_next", order_type="market_next")
    b = make_broker(server)
    bt = batch(b, [("AAPL", 1, 3.0), ("BTC/USD", 1, 0.01)], "newvals@exec")
    with caplog.at_level(logging.WARNING, logger="parity.alpaca"):
        rep = b.execute(bt)
    assert rep.status.tolist() == [int(OrderStatus.FILLED), int(OrderStatus.FILLED)]
    assert rep.fills.qty.tolist() == [3.0, 0.01] and len(set(rep.fills.trade_ids or ())) == 2
    assert server.position_qty("AAPL") == 3.0 and server.count_orders() == 2
    assert "order status 'queued_for_review'" in caplog.text
    with pytest.raises(ValidationError):
        strict(server).get_order_by_client_id(bt.client_order_ids()[0])


def test_an_unknown_order_status_is_still_working_never_final(server):
    server.configure(fill_mode="manual")
    b = make_broker(server, order_timeout_s=0.1)
    cid = client_order_id(batch_key("newvals", np.datetime64("2024-01-01T00:00:00")), "AAPL", "add")
    st = b._submit(OrderRequest(cid, "AAPL", 1, 5, "limit", 100.0))
    server.set_new_values(order_status=RENAMED)
    got = b._get(st)
    assert (got.status, got.venue_status, got.filled_qty) == (int(OrderStatus.NEW), NEW_STATUS, 0.0)
    assert [o.client_order_id for o in b.open_orders()] == [cid]
    assert b.lookup([cid])[cid].status == int(OrderStatus.NEW)
    b.cancel([cid])
    assert server.get_order(cid)["status"] == "canceled"


def test_open_orders_and_sync_with_new_values_while_the_market_is_closed(server):
    server.set_market_open(False)
    user = server.add_user_order("AAPL", "buy", qty=5, type="limit", limit_price=1.0)   # the user's, by hand
    server.set_new_values(order_status=RENAMED, order_class="simple_next", order_type="limit_next")
    with pytest.raises(ValidationError):
        strict(server).get_orders()
    b = make_broker(server, order_timeout_s=0.2)
    assert [o.client_order_id for o in b.foreign_orders()] == [user["client_order_id"]]
    assert b.foreign_orders()[0].order_type == "limit_next"
    bt = batch(b, [("AAPL", 1, 2.0)], "newvals@closed")
    rep = b.execute(bt)
    assert rep.status.tolist() == [int(OrderStatus.NEW)]
    assert "waiting for the market to open" in rep.messages[0]
    cid = bt.client_order_ids()[0]
    assert [o.client_order_id for o in b.open_orders()] == [cid]
    server.set_market_open(True)
    updates = b.sync()
    assert [(r.batch.symbols(), int(r.status[0]), r.fills.qty.tolist()) for r in updates] == \
        [(["AAPL"], int(OrderStatus.FILLED), [2.0])]
    assert server.position_qty("AAPL") == 2.0


def test_listing_pages_are_followed_by_their_iso_timestamps(server):
    """``_get_many`` pages through GET /v2/orders by the last order's ``submitted_at``, which now comes
    as ISO text: three orders placed before 500 others are found on the second page, not one by one."""
    server.configure(fill_mode="manual")
    b = make_broker(server)
    states = [b._submit(OrderRequest(client_order_id(batch_key("page", np.datetime64("2024-01-01T00:00:00")),
                                                     s, "add"), s, 1, 1, "limit", 1.0))
              for s in ("AAPL", "MSFT", "IBM")]
    for _ in range(500):
        server.add_user_order("SPY", "buy", qty=1, type="limit", limit_price=1.0)
    server.clear_requests()
    got = b._get_many(states)
    assert [g.client_order_id for g in got] == [s.client_order_id for s in states]
    paths = [r.path for r in server.requests if r.method == "GET" and r.path.startswith("/v2/orders")]
    assert paths == ["/v2/orders", "/v2/orders"]


# ------------------------------------------------------------------ the order stream


def test_a_trade_update_with_new_values_is_delivered_not_dropped(caplog):
    rec = Recorder()
    with AlpacaServer(key=KEY, secret=SECRET, fill_mode="manual", rate_limit=None, data_rate_limit=None) as srv:
        s = AlpacaOrderStream(KEY, SECRET, url=srv.stream_url, on_update=rec.on_update, on_gap=rec.on_gap,
                              min_backoff=0.05, max_backoff=0.2).start()
        try:
            assert s.wait_connected(10), s.last_error
            b = make_broker(srv)
            cid = client_order_id(batch_key("newvals", np.datetime64("2024-01-02T00:00:00")), "AAPL", "add")
            srv.set_new_values(order_status=RENAMED, order_class="simple_next", order_type="market_next")
            with caplog.at_level(logging.ERROR, logger="parity.alpaca.stream"):
                b._submit(OrderRequest(cid, "AAPL", 1, 4, "market"))
                assert rec.wait(lambda r: any(u.state.venue_status == NEW_STATUS for u in r.events(cid)))
                srv.process_orders()
                assert rec.wait(lambda r: any(u.trade_id for u in r.events(cid)))
            first = next(u for u in rec.events(cid) if u.state.venue_status == NEW_STATUS)
            assert first.state.status == int(OrderStatus.NEW) and first.trade_id is None
            fill = next(u for u in rec.events(cid) if u.trade_id)
            assert (fill.event, fill.fill_qty, fill.state.status, fill.state.order_type) == \
                ("fill", 4.0, int(OrderStatus.FILLED), "market_next")
            assert "unreadable trade update" not in caplog.text
        finally:
            s.stop()


def test_execute_with_the_stream_books_fills_carrying_new_values(server):
    server.set_new_values(order_status=RENAMED, order_class="simple_next", order_type="market_next")
    b = make_broker(server, stream=True)
    try:
        rep = b.execute(batch(b, [("AAPL", 1, 2.0), ("MSFT", 1, 1.0)], "newvals@stream"))
        assert rep.status.tolist() == [int(OrderStatus.FILLED)] * 2
        assert rep.fills.qty.tolist() == [2.0, 1.0] and len(set(rep.fills.trade_ids or ())) == 2
    finally:
        b.close()
