"""Fills as they happen (SPEC §20): the live loop listens to the venue's order stream and books a
fill the moment the venue announces it, with REST polling only as the fallback.

The stream wakes the loop; the fill itself is read from the venue's REST fills with the trade ids
the journal always keys on, so an execution seen on the stream and again by a poll is booked once.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.client import AlpacaEndpoints
from brokers.coinbase.broker import CoinbaseBroker
from brokers.coinbase.client import CoinbaseEndpoints
from brokers.live import LiveOptions
from brokers.retry import RetryPolicy
from framework.accounts import Account, Environment
from framework.journal import WriteAheadJournal
from framework.ledger import Ledger
from framework.order_ids import batch_key
from framework.types import OrderBatch, OrderType
from tests.servers.alpaca_server import AlpacaServer
from tests.servers.coinbase_server import CoinbaseServer

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)
# polling every 60 s: a fill that reaches the ledger in under a second came through the stream
SLOW_POLL = LiveOptions(order_timeout_s=30.0, poll_interval_s=60.0, stream_poll_interval_s=60.0)


def _batch(broker, symbol: str, qty: float, tag: str) -> OrderBatch:
    u = broker.instruments([symbol])
    now = np.datetime64(time.time_ns(), "ns")
    return OrderBatch(u, now, batch_key(tag, now, "paper"), "add", np.array([0]), np.array([1], np.int8),
                      np.array([qty]), broker.prices(u))


def _fills_in(path, account: str) -> int:
    with sqlite3.connect(str(path)) as db:
        return db.execute("SELECT COUNT(*) FROM fills WHERE account=?", (account,)).fetchone()[0]


def _execute_in_thread(broker, batch, journal) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(broker.execute(batch, journal.update)), daemon=True)
    t.start()
    return t, out


def _wait(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_an_alpaca_fill_is_in_the_ledger_within_a_second_of_the_venue_sending_it(tmp_path):
    with AlpacaServer(key="k", secret="s", cash=100_000.0, fill_mode="manual", rate_limit=None,
                      data_rate_limit=None) as srv:
        srv.set_price("AAPL", 100.0)
        broker = AlpacaBroker(AlpacaEndpoints("k", "s", True, srv.url, srv.url, 5.0, stream_url=srv.stream_url),
                              retry=FAST, options=SLOW_POLL)
        account = Account("alpaca", Environment.PAPER, "test")
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("r", "s", "", "paper", "alpaca", None, ["AAPL"], {}, account=account.key)
        journal = WriteAheadJournal(ledger, "r", account)
        batch = _batch(broker, "AAPL", 10.0, "stream")
        journal.intents(0, batch)
        t, out = _execute_in_thread(broker, batch, journal)
        try:
            assert _wait(lambda: srv.orders_submitted() and broker._stream is not None and broker._stream.connected)
            time.sleep(0.2)                          # the loop is now asleep on its 60 s poll
            t0 = time.monotonic()
            srv.process_orders()                     # the venue fills it and says so on the stream
            assert _wait(lambda: _fills_in(tmp_path / "l.db", account.key) == 1, timeout=5.0)
            latency = time.monotonic() - t0
            assert latency < 1.0, f"fill booked {latency:.3f} s after the venue sent it"
            t.join(10)
            assert not t.is_alive() and out and int(out[0].status[0]) == 3
            assert broker.stream_updates >= 1
        finally:
            broker.close()
            ledger.close()
    assert not any(th.name.startswith("parity-alpaca-stream") and th.is_alive() for th in threading.enumerate())


def test_with_the_stream_dropped_mid_cycle_the_fills_still_arrive_once(tmp_path):
    with AlpacaServer(key="k", secret="s", cash=100_000.0, fill_mode="manual", partial_fill_fraction=0.5,
                      rate_limit=None, data_rate_limit=None) as srv:
        srv.set_price("AAPL", 100.0)
        opts = LiveOptions(order_timeout_s=30.0, poll_interval_s=0.05, stream_poll_interval_s=60.0)
        broker = AlpacaBroker(AlpacaEndpoints("k", "s", True, srv.url, srv.url, 5.0, stream_url=srv.stream_url),
                              retry=FAST, options=opts)
        account = Account("alpaca", Environment.PAPER, "test")
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("r", "s", "", "paper", "alpaca", None, ["AAPL"], {}, account=account.key)
        journal = WriteAheadJournal(ledger, "r", account)
        batch = _batch(broker, "AAPL", 10.0, "drop")
        journal.intents(0, batch)
        t, out = _execute_in_thread(broker, batch, journal)
        try:
            assert _wait(lambda: srv.orders_submitted() and broker._stream is not None and broker._stream.connected)
            srv.process_orders()                                  # half filled, announced on the stream
            assert _wait(lambda: _fills_in(tmp_path / "l.db", account.key) == 1)
            srv.stream.set_down(True)                             # the stream dies mid-cycle
            assert _wait(lambda: not broker._stream.connected)
            srv.process_orders()                                  # the rest fills while nobody streams
            assert _wait(lambda: _fills_in(tmp_path / "l.db", account.key) == 2, timeout=10.0)   # by polling
            srv.stream.set_down(False)                            # it comes back: a gap, a refresh
            t.join(15)
            assert not t.is_alive() and out and int(out[0].status[0]) == 3
        finally:
            broker.close()
            ledger.close()
        with sqlite3.connect(str(tmp_path / "l.db")) as db:
            rows = db.execute("SELECT trade_id, qty FROM fills").fetchall()
        venue = [(f["id"], float(f["qty"])) for f in srv.fills()]
        assert sorted(rows) == sorted(venue)                      # each execution once


def test_a_coinbase_fill_is_in_the_ledger_within_a_second_through_the_user_channel(tmp_path):
    with CoinbaseServer(cash_usd=100_000.0, private_rate_limit=None, fee_rate=0.0) as srv:
        srv.set_price("BTC-USD", 50_000.0)
        ep = CoinbaseEndpoints(srv.api_key_name, srv.private_key_pem, None, srv.base_url, srv.cert_path, 5.0,
                               stream_url=srv.stream_url)
        broker = CoinbaseBroker(ep, retry=FAST, options=SLOW_POLL)
        account = Account("coinbase", Environment.LIVE, "test")
        ledger = Ledger(tmp_path / "l.db")
        ledger.start_run("r", "s", "", "live", "coinbase", None, ["BTC/USD"], {}, account=account.key)
        journal = WriteAheadJournal(ledger, "r", account)
        b = _batch(broker, "BTC/USD", 0.01, "cbstream")      # a limit under the market: it rests
        batch = OrderBatch(b.universe, b.time, b.batch_id, b.leg, b.symbol_idx, b.side, b.qty, b.ref_price,
                           OrderType.LIMIT, np.array([49_000.0]))
        journal.intents(0, batch)
        t, out = _execute_in_thread(broker, batch, journal)
        try:
            assert _wait(lambda: srv.orders() and broker._stream is not None and broker._stream.connected)
            time.sleep(0.2)
            t0 = time.monotonic()
            srv.set_price("BTC-USD", 48_900.0)       # the market comes down to the limit...
            srv.tick()                               # ...and the venue fills it, on the user channel
            assert _wait(lambda: _fills_in(tmp_path / "l.db", account.key) >= 1, timeout=5.0)
            latency = time.monotonic() - t0
            assert latency < 1.0, f"fill booked {latency:.3f} s after the venue sent it"
            t.join(10)
            assert not t.is_alive() and out and int(out[0].status[0]) == 3
        finally:
            broker.close()
            ledger.close()
