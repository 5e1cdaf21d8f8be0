"""Coinbase's ``user`` channel through the real coinbase-advanced-py ``WSUserClient`` (inside
``CoinbaseOrderStream``) against the local server's ``wss://`` WebSocket: JWT authentication, fills
within 1 s of the server sending them, partial fills as deltas of the cumulative quantity,
reconnect with a gap signal after a drop or a silent connection, and a clean stop."""

from __future__ import annotations

import threading
import time

import pytest

from brokers.coinbase.stream import CoinbaseOrderStream
from framework.broker import StreamUpdate
from framework.types import OrderStatus
from tests.servers import certs
from tests.servers.coinbase_server import CoinbaseServer


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

    def fills(self, cid: str) -> list[StreamUpdate]:
        return [u for _, u in self.updates if u.state.client_order_id == cid and u.fill_qty > 0]


@pytest.fixture
def server():
    with CoinbaseServer(private_rate_limit=None, public_rate_limit=None) as srv:
        yield srv


@pytest.fixture
def rec():
    return Recorder()


def make_stream(srv, rec, **kw) -> CoinbaseOrderStream:
    kw.setdefault("api_key", srv.api_key_name)
    kw.setdefault("api_secret", srv.private_key_pem)
    return CoinbaseOrderStream(url=srv.stream_url, symbols=["BTC/USD", "ETH/USD"], on_update=rec.on_update,
                               on_gap=rec.on_gap, min_backoff=0.05, max_backoff=0.2, **kw)


@pytest.fixture
def stream(server, rec):
    s = make_stream(server, rec).start()
    assert s.wait_connected(10), s.last_error
    yield s
    s.stop()


def test_authenticates_subscribes_and_signals_the_first_gap(server, stream, rec):
    assert stream.connected and rec.gaps == ["connect"]
    assert server.stream.connections == 1 and server.stream.auth_failures == 0


def test_a_key_file_works_too(server, rec, tmp_path):
    path = certs.write_key_file(str(tmp_path / "cdp_key.json"), server.key())
    s = CoinbaseOrderStream(key_file=path, url=server.stream_url, on_update=rec.on_update, on_gap=rec.on_gap)
    try:
        assert s.start().wait_connected(10), s.last_error
    finally:
        s.stop()


def test_an_unknown_key_is_refused_named_and_retried_with_backoff(server, rec):
    other = certs.generate_cdp_key("organizations/test-org/apiKeys/someone-else")
    s = make_stream(server, rec, api_key=other.name, api_secret=other.private_pem).start()
    try:
        time.sleep(1.0)
        assert not s.connected and rec.gaps == [] and rec.updates == []
        assert "authentication failure" in (s.last_error or "") and "COINBASE_API_KEY" in s.last_error
        assert "PRIVATE KEY" not in s.last_error
        assert 2 <= server.stream.auth_failures <= 12       # retried, with backoff (0.025-0.2 s)
    finally:
        s.stop()
    assert not s.running


def test_a_fill_arrives_within_one_second_of_the_server_sending_it(server, stream, rec):
    client = server.rest_client()
    n_sent = len(server.stream.messages)
    t0 = time.time()
    client.market_order_buy("p-cb-fill-1", "BTC-USD", base_size="0.01")
    assert rec.wait(lambda r: r.fills("p-cb-fill-1"), timeout=2)
    arrived = next(t for t, u in rec.updates if u.state.client_order_id == "p-cb-fill-1")
    sent_at = next(t for t, m in server.stream.messages[n_sent:] if "p-cb-fill-1" in m)
    assert arrived - sent_at < 1.0 and arrived - t0 < 1.0
    [fill] = rec.fills("p-cb-fill-1")
    [venue] = server.fills()
    assert fill.event == "fill" and fill.trade_id is None and not fill.snapshot
    assert fill.state.symbol == "BTC/USD" and fill.state.side == 1 and fill.state.status == OrderStatus.FILLED
    assert fill.fill_qty == pytest.approx(0.01) and fill.state.filled_qty == pytest.approx(0.01)
    assert fill.fill_price == pytest.approx(float(venue["price"]))
    assert fill.fee == pytest.approx(float(venue["commission"]))


def test_partial_fills_arrive_as_deltas_of_the_cumulative_quantity(server, stream, rec):
    server.configure(partial_fill_fraction=0.3)
    client = server.rest_client()
    server.set_price("ETH-USD", 2000)
    client.limit_order_gtc_buy("p-cb-part-1", "ETH-USD", base_size="1", limit_price="1900")
    server.set_price("ETH-USD", 1890)
    for _ in range(4):
        server.tick()
        server.set_price("ETH-USD", 1890)                # a new market event for the next fill
    assert rec.wait(lambda r: any(u.event == "fill" for u in r.fills("p-cb-part-1")))
    fills = rec.fills("p-cb-part-1")
    venue = server.fills()
    assert [u.fill_qty for u in fills] == pytest.approx([float(f["size"]) for f in venue])
    assert [u.fill_qty for u in fills] == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert [u.event for u in fills] == ["partial_fill"] * 3 + ["fill"]
    assert [u.state.filled_qty for u in fills] == pytest.approx([0.3, 0.6, 0.9, 1.0])
    assert sum(u.fee for u in fills) == pytest.approx(sum(float(f["commission"]) for f in venue))
    assert all(u.fill_price == pytest.approx(1900) for u in fills)
    assert fills[0].state.status == OrderStatus.PARTIAL and fills[-1].state.status == OrderStatus.FILLED


def test_a_dropped_stream_reconnects_signals_the_gap_and_reports_growth_once(server, stream, rec):
    server.configure(partial_fill_fraction=0.5)
    client = server.rest_client()
    server.set_price("ETH-USD", 2000)
    client.limit_order_gtc_buy("p-cb-gap-1", "ETH-USD", base_size="1", limit_price="1900")
    server.stream.set_down(True)                          # drop, refuse reconnects
    deadline = time.time() + 5
    while stream.connected and time.time() < deadline:
        time.sleep(0.01)
    assert not stream.connected
    server.set_price("ETH-USD", 1890)
    server.tick()                                         # half filled while nobody listens
    time.sleep(0.3)
    assert rec.fills("p-cb-gap-1") == [] and server.stream.refused >= 1
    server.stream.set_down(False)
    assert rec.wait(lambda r: r.gaps == ["connect", "reconnect"])
    # the snapshot of the open order carries the missed half, once
    [missed] = rec.fills("p-cb-gap-1")
    assert missed.snapshot and missed.fill_qty == pytest.approx(0.5) and missed.state.filled_qty == pytest.approx(0.5)
    server.set_price("ETH-USD", 1890)
    server.tick()
    assert rec.wait(lambda r: len(r.fills("p-cb-gap-1")) == 2)
    assert [u.fill_qty for u in rec.fills("p-cb-gap-1")] == pytest.approx([0.5, 0.5])


def test_a_silent_connection_is_replaced(server, rec):
    s = make_stream(server, rec, stale_after=1.5).start()
    try:
        assert s.wait_connected(10)
        server.stream.mute(True)                          # half-open: no heartbeats, no updates
        assert rec.wait(lambda r: r.gaps[-1:] == ["reconnect"], timeout=6)
        assert "nothing received" in (s.last_error or "") or s.connected
    finally:
        server.stream.mute(False)
        s.stop()


def test_stop_leaves_no_thread_and_no_connection(server, rec):
    url = server.stream_url                               # starts the server's stream thread
    before = {t.ident for t in threading.enumerate()}
    s = make_stream(server, rec).start()
    assert url and s.wait_connected(10)
    t0 = time.time()
    s.stop()
    assert time.time() - t0 < 2.0
    assert not s.running and not s.connected
    assert [t for t in threading.enumerate() if t.ident not in before and t.is_alive()] == []
    deadline = time.time() + 2
    while server.stream.connections and time.time() < deadline:
        time.sleep(0.01)
    assert server.stream.connections == 0


def test_a_skipped_sequence_number_signals_a_gap(server, stream, rec):
    server.stream.skip_sequence()                         # one message lost on the wire
    server.rest_client().market_order_buy("p-cb-seq-1", "BTC-USD", base_size="0.01")
    assert rec.wait(lambda r: r.gaps == ["connect", "sequence"])
    assert rec.fills("p-cb-seq-1") and stream.connected   # the stream itself carries on


def test_an_unreachable_endpoint_is_named_and_stop_still_works(server, rec):
    import socket

    with socket.socket() as sock:                              # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = CoinbaseOrderStream(api_key=server.api_key_name, api_secret=server.private_key_pem,
                            url=f"wss://127.0.0.1:{port}", on_update=rec.on_update, min_backoff=0.05,
                            max_backoff=0.1).start()
    time.sleep(0.5)
    assert not s.connected and f"cannot connect/subscribe to wss://127.0.0.1:{port}" in (s.last_error or "")
    s.stop()
    assert not s.running


def test_fills_taken_back_are_reported_as_a_correction_never_dropped(rec):
    import json

    s = CoinbaseOrderStream(on_update=rec.on_update)           # not started: messages fed directly

    def order(cum, value, fees, status="OPEN"):
        return json.dumps({"channel": "user", "timestamp": "2026-12-07T10:00:00.123456789Z", "sequence_num": 1,
                           "events": [{"type": "update", "orders": [{
                               "order_id": "o-1", "client_order_id": "p-x", "product_id": "BTC-USD",
                               "order_side": "SELL", "status": status, "cumulative_quantity": cum,
                               "leaves_quantity": "0", "avg_price": "50000", "filled_value": value,
                               "total_fees": fees, "order_type": "LIMIT"}]}]})

    s._on_message(order("0.4", "20000", "8"))
    s._on_message(order("0.3", "15000", "6"))
    first, back = [u for _, u in rec.updates]
    assert first.event == "partial_fill" and first.fill_qty == pytest.approx(0.4) and first.state.side == -1
    assert back.event == "correction" and back.fill_qty == pytest.approx(-0.1) and back.fee == pytest.approx(-2)
    assert back.state.filled_qty == pytest.approx(0.3)
    assert back.time.microsecond == 123456 and back.time.tzinfo is not None


def test_incomplete_credentials_are_refused_at_start_without_a_thread(rec):
    from framework.errors import AuthenticationError

    s = CoinbaseOrderStream(api_key="organizations/o/apiKeys/k", on_update=rec.on_update)
    with pytest.raises(AuthenticationError, match="COINBASE_API_SECRET"):
        s.start()
    assert not s.running
    with pytest.raises(AuthenticationError, match="no credentials"):
        CoinbaseOrderStream(on_update=rec.on_update).start()


def test_stop_is_prompt_while_a_handshake_hangs(server, rec):
    import socket

    with socket.socket() as sock:                              # accepts TCP, never answers the handshake
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = CoinbaseOrderStream(api_key=server.api_key_name, api_secret=server.private_key_pem,
                                url=f"wss://127.0.0.1:{port}", on_update=rec.on_update, open_timeout=30).start()
        time.sleep(0.3)
        t0 = time.time()
        s.stop()
        assert time.time() - t0 < 2.0 and not s.running
