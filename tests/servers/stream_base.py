"""A WebSocket server on its own event-loop thread, shared by the local venues' streams.

``tests/servers/alpaca_stream.py`` (``trade_updates``) and ``tests/servers/coinbase_stream.py``
(the ``user`` and ``heartbeats`` channels) subclass ``StreamServer`` and implement ``session``:
the protocol of one connection. This module only owns what both need:

* a ``websockets`` asyncio server (the package both SDKs already depend on), optionally over TLS;
* one outgoing queue and one writer task per connection, so messages published from the HTTP
  server's threads go out in order (``publish`` is thread-safe);
* test controls: ``drop_all()`` aborts every connection without a close frame (the client sees an
  abnormal closure, code 1006, as when a network path dies), ``set_down(True)`` also refuses new
  handshakes with HTTP 503 until ``set_down(False)``; messages published while a client is not
  connected are lost, exactly as on the venues (neither replays missed events).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Connection:
    """One client connection: its socket, its outgoing queue and what it listens to."""

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.queue: asyncio.Queue = asyncio.Queue()
        self.channels: set[str] = set()     # streams / channels this client listens to
        self.products: set[str] = set()     # Coinbase: product ids of the user channel ("" = all)
        self.authenticated = False
        self.sequence = 0                   # Coinbase: per-connection sequence_num
        self.opened = time.time()

    def send(self, message: Any) -> None:
        """Queue one frame (bytes = binary frame, str = text frame). Loop thread only."""
        self.queue.put_nowait(message)


class StreamServer:
    """Base class: start/stop a WebSocket server on 127.0.0.1 in a background thread."""

    scheme = "ws"
    path = "/"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ssl_context=None, name: str = "stream"):
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._conns: set[Connection] = set()
        self._down = False
        self.handshakes = 0          # accepted WebSocket handshakes (reconnects are counted)
        self.refused = 0             # handshakes refused while down
        self.messages: list[tuple[float, Any]] = []   # (time.time() when queued, message) of every publish
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    def start(self) -> StreamServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"{self._name} server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(self._shutdown)
        except RuntimeError:       # loop already closed
            pass
        thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except (OSError, RuntimeError) as e:   # e.g. the port is taken; start() reports it
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handle, self.host, self.port, ssl=self._ssl,
                         process_request=self._process_request, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            for c in list(self._conns):
                c.ws.transport.abort()
            server.close(close_connections=False)

    def _shutdown(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # ------------------------------------------------------------------ test controls

    def drop_all(self) -> None:
        """Abort every connection now (no close frame: the client sees code 1006)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._abort_all)

    def set_down(self, down: bool) -> None:
        """Down: drop every connection and refuse new handshakes (HTTP 503) until set up again."""
        self._down = bool(down)
        if down:
            self.drop_all()

    @property
    def connections(self) -> int:
        return len(self._conns)

    def wait_connections(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until ``n`` clients are connected and listening (``channels`` non-empty)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if sum(1 for c in list(self._conns) if c.channels) >= n:
                return True
            time.sleep(0.01)
        return False

    def _abort_all(self) -> None:
        for c in list(self._conns):
            c.ws.transport.abort()

    # ------------------------------------------------------------------ publishing

    def publish(self, events: list, render: Callable[[Connection, Any], Any]) -> None:
        """Thread-safe: on the loop, send ``render(conn, event)`` of each event to each connection
        (None = not for this connection). ``events`` must be plain copies (no shared state)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not events:
            return
        try:
            loop.call_soon_threadsafe(self._publish, list(events), render)
        except RuntimeError:       # loop closing
            pass

    def _publish(self, events: list, render: Callable[[Connection, Any], Any]) -> None:
        for c in list(self._conns):
            for ev in events:
                msg = render(c, ev)
                if msg is not None:
                    self.messages.append((time.time(), msg))
                    c.send(msg)

    # ------------------------------------------------------------------ connections

    def _process_request(self, connection, request):
        if self._down:
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "stream unavailable\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.handshakes += 1
        conn = Connection(ws)
        self._conns.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        try:
            await self.session(conn)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            writer.cancel()

    async def _writer(self, conn: Connection) -> None:
        try:
            while True:
                msg = await conn.queue.get()
                await conn.ws.send(msg)
        except (ConnectionClosed, asyncio.CancelledError):
            pass

    async def session(self, conn: Connection) -> None:   # pragma: no cover - abstract
        raise NotImplementedError
