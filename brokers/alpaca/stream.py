"""Alpaca ``trade_updates`` through alpaca-py's own ``TradingStream``, in a background thread.

    stream = AlpacaOrderStream(key, secret, paper=True, url=None, on_update=fn, on_gap=gap_fn).start()
    ...
    stream.stop()

Every venue event becomes one ``framework.broker.StreamUpdate`` handed to ``on_update`` (called on
the stream's thread, as is ``on_gap``: keep both short, e.g. queue the work; a REST fetch
inside them holds up the stream). Fills (``fill``, ``partial_fill``) carry the
venue's ``execution_id`` as ``trade_id`` and the execution's own ``qty``/``price``; the order state
is read through ``brokers.alpaca.view`` and converted by ``brokers.alpaca.wire.order_state``, the
same code as the REST path (an enum value the SDK does not know is read, not dropped).

Connection handling is the SDK's (0.44.0 ``TradingStream._run_forever``): on a dropped connection
or a refused authentication it closes the socket and reconnects with exponential backoff and
jitter. This class adds what the SDK does not say:

* ``connected`` is True once the venue acknowledges ``listening`` to ``trade_updates`` and False
  as soon as the socket closes;
* ``on_gap(reason)`` is called each time the stream starts listening ("connect" the first time,
  "reconnect" after a loss): events the venue sent while nobody listened are gone (Alpaca does not
  replay them), so the consumer fetches over REST what changed since it last knew;
* ``last_error`` names a refused authentication or an unreachable endpoint (the SDK only logs
  them and retries);
* ``stop()`` returns once the thread has ended.

SDK internals relied on (alpaca-py 0.44.0, pinned in pyproject.toml): the overridden coroutines
``_connect``, ``_auth``, ``_dispatch`` and ``close``; the coroutine ``stop_ws``; the attributes
``_endpoint``, ``_loop`` (the stream's event loop) and ``_reconnect_min_backoff``/
``_reconnect_max_backoff`` (the backoff bounds, added in 0.44.0).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from brokers.alpaca import wire
from brokers.alpaca.view import view
from brokers.stream_support import deliver, parse_time
from framework.broker import StreamUpdate
from framework.errors import AuthenticationError

if TYPE_CHECKING:
    from alpaca.trading.stream import TradingStream

log = logging.getLogger("parity.alpaca.stream")

FILL_EVENTS = ("fill", "partial_fill")


class AlpacaOrderStream:
    """Alpaca order updates as ``StreamUpdate`` values (see module docstring)."""

    def __init__(self, key: str, secret: str, *, on_update: Callable[[StreamUpdate], None],
                 on_gap: Callable[[str], None] | None = None, paper: bool = True, url: str | None = None,
                 min_backoff: float = 1.0, max_backoff: float = 30.0, ping_interval: float = 10.0,
                 ping_timeout: float = 20.0):
        """``url``: the stream endpoint (None = the venue's, paper or live by ``paper``); a local test
        server gives ``AlpacaServer.stream_url``. ``ping_*``: the SDK's default waits 180 s for a pong,
        so a silently dead connection would go unnoticed for three minutes; 20 s here. websockets'
        ``close_timeout`` is 1 s (not 10) so that ``stop()`` during a hanging handshake is prompt."""
        self._key, self._secret, self._paper, self._url = key, secret, paper, url
        self._on_update, self._on_gap = on_update, on_gap
        self._backoff = (float(min_backoff), float(max_backoff))
        self._ws_params = {"ping_interval": ping_interval, "ping_timeout": ping_timeout, "max_queue": 1024,
                           "open_timeout": 10, "close_timeout": 1}
        self._sdk: TradingStream | None = None
        self._thread: threading.Thread | None = None
        self._connected = False
        self._stopping = False
        self._quiet = _QuietWhileStopping(self)
        self._cum: dict[str, float] = {}      # order id -> cumulative filled qty last reported
        self.gaps = 0                         # times on_gap was signalled
        self.last_gap: float | None = None    # time.time() of the last gap signal
        self.last_error: str | None = None
        self.updates = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> AlpacaOrderStream:
        if self.running:
            return self
        if not self._key or not self._secret:
            raise AuthenticationError("Alpaca stream: no credentials; set ALPACA_PAPER_KEY/ALPACA_PAPER_SECRET "
                                      "or ALPACA_API_KEY/ALPACA_API_SECRET")
        self._stopping = False
        logging.getLogger("alpaca.trading.stream").addFilter(self._quiet)
        self._sdk = sdk = _make_sdk_stream(self)
        sdk.subscribe_trade_updates(self._handle)
        self._thread = threading.Thread(target=self._run, args=(sdk,), name="parity-alpaca-stream",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self, sdk: TradingStream) -> None:
        try:
            sdk.run()
        except asyncio.CancelledError:   # stop() cancelled a hanging handshake: the end we asked for
            pass

    def wait_connected(self, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self._connected:
            time.sleep(0.01)
        return self._connected

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening and end the thread (waits up to ``timeout`` seconds for it)."""
        sdk, thread = self._sdk, self._thread
        if sdk is None or thread is None:
            return
        self._stopping = True
        end = time.monotonic() + timeout
        while sdk._loop is None and thread.is_alive() and time.monotonic() < end:
            time.sleep(0.01)           # the SDK sets its loop as the thread starts
        loop = sdk._loop
        if loop is not None and thread.is_alive():
            try:
                # the SDK's own stop (TradingStream.stop without its unbounded wait): no more reconnects
                asyncio.run_coroutine_threadsafe(sdk.stop_ws(), loop).result(max(0.1, end - time.monotonic()))
                # and close now: the SDK's read loop only looks at its stop queue every 5 s
                asyncio.run_coroutine_threadsafe(sdk.close(), loop).result(max(0.1, end - time.monotonic()))
            except (RuntimeError, TimeoutError, OSError):
                pass                   # the loop ended meanwhile
        thread.join(min(0.5, max(0.1, end - time.monotonic())))
        if thread.is_alive() and loop is not None:
            # still inside a connect or authentication (websockets waits up to open_timeout for a
            # handshake): cancel the SDK's tasks; the CancelledError ends its run() and the thread
            # (after websockets' close_timeout, 1 s here)
            try:
                loop.call_soon_threadsafe(_cancel_all, loop)
            except RuntimeError:
                pass
            thread.join(max(0.1, end - time.monotonic()))
        self._connected = False
        if not thread.is_alive():
            self._thread = None
            logging.getLogger("alpaca.trading.stream").removeFilter(self._quiet)

    # ------------------------------------------------------------------ SDK callbacks (stream thread)

    def _listening(self) -> None:
        first = self.gaps == 0
        self._connected = True
        self.last_error = None
        self.gaps += 1
        self.last_gap = time.time()
        deliver(log, "on_gap", self._on_gap, "connect" if first else "reconnect")

    def _closed(self) -> None:
        self._connected = False

    def _refused(self) -> None:
        self._connected = False
        self.last_error = ("Alpaca stream: credentials refused; check ALPACA_PAPER_KEY/ALPACA_PAPER_SECRET "
                           "or ALPACA_API_KEY/ALPACA_API_SECRET")

    async def _handle(self, msg: dict) -> None:
        """``trade_updates`` message (raw dict) -> ``StreamUpdate`` -> ``on_update``."""
        try:
            update = self._convert(msg.get("data") or {})
        except Exception:
            log.exception("Alpaca stream: unreadable trade update %r", str(msg)[:300])
            return
        self.updates += 1
        deliver(log, "on_update", self._on_update, update)

    def _convert(self, data: dict) -> StreamUpdate:
        # the order as the venue sent it, not alpaca-py's strict ``Order``: an enum value the SDK does
        # not know (catalogue row 14) must not drop the update (brokers/alpaca/view.py)
        state = wire.order_state(view(data["order"]))
        event = str(data.get("event", ""))
        oid = state.broker_id or state.client_order_id
        before = self._cum.get(oid, 0.0)
        self._cum[oid] = max(before, state.filled_qty)
        if event not in FILL_EVENTS:
            return StreamUpdate(state, event, parse_time(data.get("timestamp")))
        qty = _num(data.get("qty"))
        if qty is None:                # an older payload without the execution's qty: the growth
            qty = max(0.0, state.filled_qty - before)
        price = _num(data.get("price"))
        trade_id = data.get("execution_id")
        return StreamUpdate(state, event, parse_time(data.get("timestamp")),
                            trade_id=str(trade_id) if trade_id else None, fill_qty=qty,
                            fill_price=price if price is not None else state.avg_price)


class _QuietWhileStopping(logging.Filter):
    """Drops the SDK's "websocket error, restarting connection" warning caused by our own stop()."""

    def __init__(self, owner: AlpacaOrderStream):
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.owner._stopping


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


def _num(x) -> float | None:
    if x is None or x == "":
        return None
    return float(x)


def _make_sdk_stream(owner: AlpacaOrderStream) -> TradingStream:
    """alpaca-py's ``TradingStream`` with three hooks that tell ``owner`` what happened."""
    from alpaca.trading.stream import TradingStream

    class _Stream(TradingStream):
        async def _connect(self):
            try:
                await super()._connect()
            except Exception as e:
                owner.last_error = f"Alpaca stream: cannot connect to {self._endpoint}: {type(e).__name__}: {e}"
                raise

        async def _auth(self):
            try:
                await super()._auth()
            except ValueError:         # the SDK's "failed to authenticate"
                owner._refused()
                raise

        async def _dispatch(self, msg):
            if msg.get("stream") == "listening" and "trade_updates" in ((msg.get("data") or {}).get("streams")
                                                                       or []):
                owner._listening()
            await super()._dispatch(msg)

        async def close(self):
            try:
                await super().close()
            finally:
                owner._closed()

    # alpaca-py annotates ``url_override: str = None`` (None: the venue's endpoint), hence the ignore
    sdk = _Stream(owner._key, owner._secret, paper=owner._paper, raw_data=True,
                  url_override=owner._url,  # type: ignore[arg-type]
                  websocket_params=dict(owner._ws_params))
    sdk._reconnect_min_backoff, sdk._reconnect_max_backoff = owner._backoff
    return sdk
