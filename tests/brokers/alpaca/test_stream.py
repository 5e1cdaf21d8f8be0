"""Alpaca ``trade_updates`` through the real alpaca-py ``TradingStream`` (inside ``AlpacaOrderStream``)
against the local server's WebSocket: authentication, fills within 1 s of the server sending
them, partial fills as executions with their own ids, reconnect with a gap signal after a drop,
and a clean stop."""

from __future__ import annotations

import threading
import time

import pytest

from brokers.alpaca.stream import AlpacaOrderStream
from framework.broker import StreamUpdate
from framework.types import OrderStatus
from tests.servers.alpaca_server import AlpacaServer

KEY, SECRET = "PKSTREAMKEY01", "SKSTREAMSECRET01"


class Recorder:
    """The consumer: updates with their arrival time, and gap signals."""

    def __init__(self):
        self.updates: list[tuple[float, StreamUpdate]] = []
        self.gaps: list[str] = []
        self._cv = threading.Condition()

    def on_update(self, u: StreamUpdate) -> None:
        with self._cv:
            self.updates.append((time.time(), u))
            self._cv.notify_all()

    def on_gap(self, reason: str) -> None:
        with self._cv:
            self.gaps.append(reason)
            self._cv.notify_all()

    def wait(self, pred, timeout: float = 5.0) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: pred(self), timeout)

    def events(self, cid: str) -> list[StreamUpdate]:
        return [u for _, u in self.updates if u.state.client_order_id == cid]


@pytest.fixture
def server():
    with AlpacaServer(key=KEY, secret=SECRET, fill_mode="manual", rate_limit=None, data_rate_limit=None) as srv:
        yield srv


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def stream(server, rec):
    s = AlpacaOrderStream(KEY, SECRET, url=server.stream_url, on_update=rec.on_update, on_gap=rec.on_gap,
                          min_backoff=0.05, max_backoff=0.2).start()
    assert s.wait_connected(10), s.last_error
    yield s
    s.stop()


def submit(srv, cid: str, symbol: str = "AAPL", qty: float = 10) -> dict:
    from alpaca.trading.client import TradingClient
    from alpaca.trading.requests import MarketOrderRequest

    tc = TradingClient(KEY, SECRET, paper=True, url_override=srv.url)
    tif = "gtc" if "/" in symbol else "day"
    tc.submit_order(MarketOrderRequest(symbol=symbol, qty=qty, side="buy", time_in_force=tif,
                                       client_order_id=cid))
    return srv.get_order(cid)


def test_authenticates_listens_and_signals_the_first_gap(server, stream, rec):
    assert stream.connected
    assert rec.wait(lambda r: r.gaps == ["connect"])
    assert server.stream.handshakes == 1 and server.stream.connections == 1


def test_refused_credentials_are_named_and_retried_with_backoff(server, rec):
    s = AlpacaOrderStream(KEY, "wrong-secret", url=server.stream_url, on_update=rec.on_update,
                          on_gap=rec.on_gap, min_backoff=0.2, max_backoff=0.4).start()
    try:
        time.sleep(1.0)
        assert not s.connected
        assert "credentials refused" in (s.last_error or "")
        assert "wrong-secret" not in (s.last_error or "")
        # retried, but with backoff (0.1-0.4 s between attempts), not in a tight loop
        assert 2 <= server.stream.handshakes <= 8
        assert rec.gaps == [] and rec.updates == []
    finally:
        s.stop()
    assert not s.running


def test_a_fill_arrives_within_one_second_of_the_server_sending_it(server, stream, rec):
    submit(server, "p-fill-1")
    assert rec.wait(lambda r: r.events("p-fill-1"))          # pending_new
    n_sent = len(server.stream.messages)
    t0 = time.time()
    server.process_orders()                                   # the venue fills it
    assert rec.wait(lambda r: any(u.event == "fill" for u in r.events("p-fill-1")), timeout=2)
    arrived, fill = next((t, u) for t, u in rec.updates if u.event == "fill")
    sent_at = server.stream.messages[n_sent][0]
    assert arrived - sent_at < 1.0 and arrived - t0 < 1.0
    venue_fill = server.fills()[-1]
    assert fill.trade_id == venue_fill["id"].split("::")[-1]
    assert fill.state.status == OrderStatus.FILLED and fill.state.filled_qty == 10
    assert fill.fill_qty == 10 and fill.fill_price == pytest.approx(float(venue_fill["price"]))
    assert fill.state.symbol == "AAPL" and fill.state.side == 1 and fill.fee is None


def test_partial_fills_arrive_as_executions_with_their_own_ids(server, stream, rec):
    server.configure(partial_fill_fraction=0.5)
    submit(server, "p-part-1", symbol="BTC/USD", qty=0.5)
    server.process_orders()
    server.process_orders()
    assert rec.wait(lambda r: any(u.event == "fill" for u in r.events("p-part-1")))
    fills = [u for u in rec.events("p-part-1") if u.fill_qty > 0]
    assert [u.event for u in fills] == ["partial_fill", "fill"]
    assert [u.fill_qty for u in fills] == [0.25, 0.25]
    assert [u.state.filled_qty for u in fills] == [0.25, 0.5]
    assert fills[0].state.status == OrderStatus.PARTIAL and fills[1].state.status == OrderStatus.FILLED
    venue_ids = [f["id"].split("::")[-1] for f in server.fills()]
    assert [u.trade_id for u in fills] == venue_ids and len(set(venue_ids)) == 2
    assert all(u.state.symbol == "BTC/USD" for u in fills)


def test_a_dropped_stream_reconnects_and_signals_the_gap(server, stream, rec):
    assert rec.wait(lambda r: r.gaps == ["connect"])
    server.stream.set_down(True)                              # drop and refuse reconnects
    deadline = time.time() + 5
    while stream.connected and time.time() < deadline:
        time.sleep(0.01)
    assert not stream.connected
    submit(server, "p-gap-1")
    server.process_orders()                                   # filled while nobody listens: lost
    time.sleep(0.3)
    assert rec.events("p-gap-1") == [] and server.stream.refused >= 1
    server.stream.set_down(False)
    assert rec.wait(lambda r: r.gaps == ["connect", "reconnect"])
    assert stream.connected
    # what the consumer does on the gap: ask REST, which knows the fill the stream missed
    assert server.get_order("p-gap-1")["status"] == "filled"
    # and the stream carries what happens after the reconnect
    submit(server, "p-gap-2")
    server.process_orders()
    assert rec.wait(lambda r: any(u.event == "fill" for u in r.events("p-gap-2")))
    assert rec.events("p-gap-1") == []                        # nothing replayed, nothing twice


def test_a_plain_drop_reconnects_by_itself(server, stream, rec):
    server.stream.drop_all()
    assert rec.wait(lambda r: r.gaps == ["connect", "reconnect"])
    assert server.stream.handshakes == 2


def test_stop_leaves_no_thread_and_no_connection(server, rec, caplog):
    url = server.stream_url                                    # starts the server's stream thread
    before = {t.ident for t in threading.enumerate()}
    s = AlpacaOrderStream(KEY, SECRET, url=url, on_update=rec.on_update).start()
    assert s.wait_connected(10)
    caplog.clear()
    t0 = time.time()
    s.stop()
    assert time.time() - t0 < 2.0                              # not the SDK's 5 s read timeout
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []   # no "websocket error" noise
    assert not s.running and not s.connected
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert leftover == []
    deadline = time.time() + 2
    while server.stream.connections and time.time() < deadline:
        time.sleep(0.01)
    assert server.stream.connections == 0


def test_a_consumer_exception_does_not_stop_the_stream(server, stream, rec):
    calls = []

    def bad(u):
        calls.append(u)
        raise RuntimeError("consumer bug")

    stream._on_update = bad
    submit(server, "p-bad-1")
    server.process_orders()
    deadline = time.time() + 3
    while len(calls) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert [u.event for u in calls] == ["pending_new", "fill"]   # both delivered despite the raise
    assert stream.connected


def test_an_unreachable_endpoint_is_named_and_stop_still_works(rec):
    import socket

    with socket.socket() as sock:                              # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = AlpacaOrderStream(KEY, SECRET, url=f"ws://127.0.0.1:{port}/stream", on_update=rec.on_update,
                          min_backoff=0.05, max_backoff=0.1).start()
    time.sleep(0.5)
    assert not s.connected and f"cannot connect to ws://127.0.0.1:{port}/stream" in (s.last_error or "")
    s.stop()
    assert not s.running


def test_missing_credentials_are_refused_at_start_without_a_thread(rec):
    from framework.errors import AuthenticationError

    s = AlpacaOrderStream(KEY, "", url="ws://127.0.0.1:9/stream", on_update=rec.on_update)
    with pytest.raises(AuthenticationError, match="ALPACA_PAPER_SECRET"):
        s.start()
    assert not s.running


def test_state_changes_arrive_without_a_trade_id(server, stream, rec):
    from alpaca.trading.client import TradingClient
    from alpaca.trading.requests import LimitOrderRequest

    tc = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    o = tc.submit_order(LimitOrderRequest(symbol="AAPL", qty=3, side="buy", time_in_force="day",
                                          limit_price=100.0, client_order_id="p-cancel-1"))
    server.process_orders()                                   # not crossed: it rests as "new"
    tc.cancel_order_by_id(o.id)
    assert rec.wait(lambda r: [u.event for u in r.events("p-cancel-1")] == ["pending_new", "new", "canceled"])
    canceled = rec.events("p-cancel-1")[-1]
    raw = [m for _, m in server.stream.messages if b'"canceled"' in m][-1]
    assert b'"execution_id": null' not in raw                 # the venue sends one on status events too
    assert canceled.trade_id is None and canceled.fill_qty == 0.0 and canceled.fill_price is None
    assert canceled.state.status == OrderStatus.CANCELED and canceled.state.filled_qty == 0.0


def test_stop_is_prompt_while_a_handshake_hangs(rec):
    import socket

    with socket.socket() as sock:                              # accepts TCP, never answers the handshake
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = AlpacaOrderStream(KEY, SECRET, url=f"ws://127.0.0.1:{port}/stream", on_update=rec.on_update).start()
        time.sleep(0.3)
        t0 = time.time()
        s.stop()
        assert time.time() - t0 < 3.0 and not s.running
