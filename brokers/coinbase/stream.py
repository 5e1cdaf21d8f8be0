"""Coinbase's ``user`` WebSocket channel through coinbase-advanced-py's ``WSUserClient``, in a thread.

    stream = CoinbaseOrderStream(api_key=..., api_secret=..., symbols=["BTC/USD"], on_update=fn,
                                 on_gap=gap_fn, url=None).start()
    ...
    stream.stop()

The channel reports each order with cumulative figures (``cumulative_quantity``, ``filled_value``,
``total_fees``, ``avg_price``) and no trade ids. Every order message becomes one
``framework.broker.StreamUpdate`` for ``on_update`` (called on the stream's thread, as is ``on_gap``:
keep both short, e.g. queue the work): the state
through ``brokers.coinbase.wire.order_state`` (the REST path's conversion) and, when the cumulative
quantity grew since this stream last reported the order, a fill of that growth (``fill_qty``), at
the growth of ``filled_value`` over it (``fill_price``), with the growth of ``total_fees``
(``fee``), ``trade_id`` None. A cumulative quantity that falls (fills taken back) is an update
with event "correction" and a negative ``fill_qty``, never dropped. The first report of an order this process has not seen counts from
zero: book Coinbase stream fills against the order's cumulative ``state.filled_qty``, never add them
blindly to what REST already booked.

Connections are this class's, not the SDK's: the client is built with ``retry=False`` and this
loop reconnects with exponential backoff and jitter whenever the connection ends, for any reason.
(The SDK's own retry covers only an abnormal closure, gives up after 5 attempts, and a clean close,
code 1000/1001 as a server restart sends, ends its reader silently.) Also:

* ``connected`` is True from the ``user`` snapshot that answers the subscription until the
  connection ends; ``on_gap(reason)`` is called at each snapshot ("connect", then "reconnect"):
  orders that finished while nobody listened are not in a snapshot (it lists open orders), so the
  consumer fetches them over REST; and with "sequence" when ``sequence_num`` skips (messages lost);
* the ``heartbeats`` channel is subscribed too; no message for ``stale_after`` seconds means a dead
  (half-open) connection: it is closed and reopened;
* "authentication failure" from the venue is kept in ``last_error`` and the connection is closed
  and retried with backoff.

SDK internals relied on (coinbase-advanced-py 1.8.4, pinned in pyproject.toml): ``WSBase._task``
(the reader task ``open_async`` starts; it ends with the connection) and ``WSBase.websocket`` (to
abort a stale connection). Note: the SDK connects ``wss://`` with a bare ``ssl.SSLContext()``, which
verifies no certificate (so a local self-signed one works, and so would an impostor's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from brokers.coinbase import wire
from brokers.stream_support import deliver, parse_time
from framework.broker import StreamUpdate
from framework.errors import AuthenticationError
from framework.types import OrderStatus

if TYPE_CHECKING:
    from coinbase.websocket import WSUserClient

log = logging.getLogger("parity.coinbase.stream")

USER_URL = "wss://advanced-trade-ws-user.coinbase.com"   # SDK constants.WS_USER_BASE_URL


def _dec(x) -> Decimal:
    try:
        return Decimal(str(x)) if x not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def rest_shape(u: dict) -> dict:
    """A ``user``-channel order in the REST order's field names, for ``wire.order_state``."""
    size = _dec(u.get("cumulative_quantity")) + _dec(u.get("leaves_quantity"))
    return {"order_id": u.get("order_id"), "client_order_id": u.get("client_order_id", ""),
            "product_id": u.get("product_id", ""), "side": u.get("order_side", ""), "status": u.get("status", ""),
            "filled_size": u.get("cumulative_quantity"), "average_filled_price": u.get("avg_price"),
            "order_type": u.get("order_type") or "MARKET",
            "order_configuration": {"user_channel": {"base_size": format(size, "f")}},
            "cancel_message": u.get("cancel_reason") or "", "reject_message": u.get("reject_reason") or ""}


class CoinbaseOrderStream:
    """Coinbase order updates as ``StreamUpdate`` values (see module docstring)."""

    def __init__(self, *, on_update: Callable[[StreamUpdate], None], on_gap: Callable[[str], None] | None = None,
                 api_key: str | None = None, api_secret: str | None = None, key_file: str | None = None,
                 symbols: list[str] | tuple[str, ...] = (), url: str | None = None, min_backoff: float = 1.0,
                 max_backoff: float = 30.0, stale_after: float = 10.0, open_timeout: float = 10.0):
        """``symbols``: canonical symbols to follow (empty = every product). ``url``: the WebSocket
        (None = the venue's user-order endpoint); a local test server gives ``CoinbaseServer.stream_url``."""
        self._creds = {"api_key": api_key, "api_secret": api_secret, "key_file": key_file}
        self._products = [wire.product_id(s) for s in symbols]
        self._url = url or USER_URL
        self._on_update, self._on_gap = on_update, on_gap
        self._backoff = (float(min_backoff), float(max_backoff))
        self._stale_after, self._open_timeout = float(stale_after), open_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._client: WSUserClient | None = None
        self._connected = False
        self._seq: int | None = None
        self._why: str | None = None         # why this class ended the current connection
        self._last_msg = 0.0
        self._seen: dict[str, tuple[Decimal, Decimal, Decimal]] = {}   # order id -> (qty, value, fees)
        self.connects = 0                    # connections that reached the user snapshot
        self.gaps = 0
        self.last_gap: float | None = None   # time.time() of the last gap signal
        self.last_error: str | None = None
        self.updates = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> CoinbaseOrderStream:
        if self.running:
            return self
        from coinbase.websocket import WSUserClient

        try:   # the SDK checks the credentials' shape here: say so now, not from the thread
            self._client = client = WSUserClient(**self._creds, base_url=self._url,
                                                 timeout=self._open_timeout, on_message=self._on_message,
                                                 retry=False)
        except Exception as e:  # noqa: BLE001 - the SDK raises bare Exception for bad key input
            raise AuthenticationError(f"Coinbase stream: {e}; check COINBASE_API_KEY/COINBASE_API_SECRET (a CDP "
                                      "key name and its PEM) or the key file") from None
        if not client.is_authenticated:     # the user channel is private
            raise AuthenticationError("Coinbase stream: no credentials; set COINBASE_API_KEY/COINBASE_API_SECRET "
                                      "(a CDP key name and its PEM) or the key file")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready, client), name="parity-coinbase-stream",
                                        daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self._connected:
            time.sleep(0.01)
        return self._connected

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection and end the thread (waits up to ``timeout`` seconds for it)."""
        loop, thread = self._loop, self._thread
        if thread is None:
            return
        if loop is not None and self._stop is not None:
            try:
                loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:      # the loop ended meanwhile
                pass
        thread.join(timeout)
        if not thread.is_alive():
            self._thread = None

    # ------------------------------------------------------------------ the connection loop (own thread)

    def _run(self, ready: threading.Event, client: WSUserClient) -> None:
        asyncio.run(self._main(ready, client))

    async def _main(self, ready: threading.Event, client: WSUserClient) -> None:
        stopping = asyncio.Event()
        self._loop, self._stop = asyncio.get_running_loop(), stopping
        ready.set()
        failures = 0
        while not stopping.is_set():
            if await self._session(client, stopping):
                failures = 0
            failures += 1
            await self._pause(failures, stopping)
        self._connected = False

    async def _session(self, c: WSUserClient, stopping: asyncio.Event) -> bool:
        """One connection, from open to its end. True when it got as far as the user snapshot."""
        reached = self.connects
        self._seq, self._last_msg, self._why = None, time.monotonic(), None
        stop = asyncio.ensure_future(stopping.wait())
        opening = asyncio.ensure_future(self._open(c))
        await asyncio.wait({opening, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not opening.done():                    # stopped while connecting (up to open_timeout)
            opening.cancel()
            await asyncio.wait({opening})
        try:
            opening.result()
        except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - WSClientException, OSError, ...
            if not isinstance(e, asyncio.CancelledError):
                self.last_error = (f"Coinbase stream: cannot connect/subscribe to {self._url}: "
                                   f"{type(e).__name__}: {e}")
            stop.cancel()
            await self._close()
            return False
        try:
            while not stopping.is_set():
                done, _ = await asyncio.wait({c._task, stop}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                if c._task in done:
                    break
                if time.monotonic() - self._last_msg > self._stale_after:
                    self._abort(f"Coinbase stream: nothing received for {self._stale_after:g} s")
        finally:
            stop.cancel()
            self._connected = False
            await self._close()
        try:
            c.raise_background_exception()        # and clears it for the next connection
        except Exception as e:  # noqa: BLE001 - whatever ended the reader: kept for the operator
            self.last_error = f"Coinbase stream: {e}"
        if self._why:                             # we ended it, and say why
            self.last_error = self._why
        return self.connects > reached

    async def _open(self, c) -> None:
        await c.open_async()
        await c.subscribe_async([], ["heartbeats"])
        await c.subscribe_async(self._products, ["user"])

    async def _pause(self, failures: int, stopping: asyncio.Event) -> None:
        """Exponential backoff with equal jitter; returns early on stop."""
        lo, hi = self._backoff
        cap = min(hi, lo * 2 ** (failures - 1))
        try:
            await asyncio.wait_for(stopping.wait(), cap / 2 + random.uniform(0, cap / 2))
        except TimeoutError:
            pass

    async def _close(self) -> None:
        c = self._client
        if c is not None and c.websocket is not None and c.websocket.open:
            try:
                await c.close_async()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone either way
                self._abort(None)
        if c is not None and c._task is not None and not c._task.done():
            await asyncio.wait({c._task}, timeout=2)

    def _abort(self, why: str | None) -> None:
        """End the connection now, without a close handshake; ``why`` becomes ``last_error``."""
        if why:
            self._why = self.last_error = why
        ws = getattr(self._client, "websocket", None)
        if ws is not None and getattr(ws, "transport", None) is not None:
            ws.transport.abort()

    # ------------------------------------------------------------------ messages (loop thread)

    def _on_message(self, raw: str) -> None:
        self._last_msg = time.monotonic()
        try:
            msg = json.loads(raw)
        except ValueError:
            log.warning("Coinbase stream: unreadable message %r", raw[:200])
            return
        if msg.get("type") == "error":
            text = f"Coinbase stream: {msg.get('message', '')}"
            self.last_error = text
            if "authentication" in text.lower():   # reconnect with backoff rather than sit unsubscribed
                self._abort(text + "; check COINBASE_API_KEY/COINBASE_API_SECRET (a CDP key name and its "
                            "PEM) or the key file")
            return
        seq = msg.get("sequence_num")
        if isinstance(seq, int):
            if self._seq is not None and seq > self._seq + 1 and self._connected:
                self._gap("sequence")
            self._seq = seq
        if msg.get("channel") != "user":
            return
        for ev in msg.get("events") or []:
            snapshot = ev.get("type") == "snapshot"
            for o in ev.get("orders") or []:
                try:
                    update = self._convert(o, snapshot, msg.get("timestamp"))
                except Exception:
                    log.exception("Coinbase stream: unreadable order %r", str(o)[:300])
                    continue
                self.updates += 1
                deliver(log, "on_update", self._on_update, update)
            if snapshot:
                self._connected = True
                self.last_error = None
                self.connects += 1
                self._gap("connect" if self.connects == 1 else "reconnect")

    def _gap(self, reason: str) -> None:
        self.gaps += 1
        self.last_gap = time.time()
        deliver(log, "on_gap", self._on_gap, reason)

    def _convert(self, o: dict, snapshot: bool, stamp) -> StreamUpdate:
        state = wire.order_state(rest_shape(o))
        oid = str(o.get("order_id"))
        qty, value, fees = _dec(o.get("cumulative_quantity")), _dec(o.get("filled_value")), _dec(o.get("total_fees"))
        q0, v0, f0 = self._seen.get(oid, (Decimal(0), Decimal(0), Decimal(0)))
        if qty > q0:
            self._seen[oid] = (qty, value, fees)
            dq = qty - q0
            price = (value - v0) / dq if value > v0 else _dec(o.get("avg_price"))
            final = state.status == OrderStatus.FILLED
            return StreamUpdate(state, "fill" if final else "partial_fill", parse_time(stamp), None,
                                float(dq), float(price), float(fees - f0), snapshot)
        if qty < q0:                    # the venue took fills back (REVERSAL/CORRECTION): never drop that
            self._seen[oid] = (qty, value, fees)
            log.warning("Coinbase stream: order %s cumulative quantity fell from %s to %s", oid, q0, qty)
            return StreamUpdate(state, "correction", parse_time(stamp), None, float(qty - q0),
                                None, float(fees - f0), snapshot)
        return StreamUpdate(state, str(o.get("status", "")).lower(), parse_time(stamp), snapshot=snapshot)
