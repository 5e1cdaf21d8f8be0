"""Coinbase Advanced Trade's user-order WebSocket for the local ``CoinbaseServer``: the ``user`` and
``heartbeats`` channels over TLS (``wss://``), as ``coinbase-advanced-py`` 1.8.4's
``WSUserClient``/``WSClient`` speak them.

``CoinbaseServer.stream`` starts it on first use (``srv.stream_url`` is the ``base_url`` the SDK's
clients take); the server calls ``on_change()`` after every state change (its ``_save``).

The protocol, as confirmed from sources (cited where implemented):

* no handshake authentication: the client sends one ``subscribe`` per channel,
  ``{"type": "subscribe", "product_ids": [...], "channel": "user", "jwt": <ES256/EdDSA JWT>}``
  (SDK ``WSBase._build_subscription_message``; the JWT is ``jwt_generator.build_ws_jwt``: the REST
  claims without ``uri``, a fresh one per message);
* a private channel (``user``) with a bad JWT is answered
  ``{"type":"error","message":"authentication failure"}`` and the connection stays open
  (coinbase-advanced-py#19 and #64 logs); ``heartbeats`` needs no JWT (#92, maintainer's answer);
* "you are disconnected if no subscribe has been received within 5 seconds" (Advanced Trade
  "WebSocket Overview");
* every message is ``{"channel", "client_id", "timestamp", "sequence_num", "events": [...]}``
  (SDK ``WebsocketResponse``); ``user`` events are ``{"type": "snapshot"|"update", "orders": [...],
  "positions": {...}}`` with the order fields of the SDK's ``UserOrders`` (``cumulative_quantity``,
  ``avg_price``, ``filled_value``, ``leaves_quantity``, ``total_fees``, ``status``, ...), cumulative
  per order; ``heartbeats`` events are ``{"current_time", "heartbeat_counter"}`` every second
  (Advanced Trade "WebSocket Channels"); a ``subscriptions`` message acknowledges (un)subscribes;
* ``sequence_num`` counts the messages of one connection; nothing is replayed after a reconnect,
  the new ``user`` subscription starts with a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import ssl
from decimal import Decimal
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from websockets.exceptions import ConnectionClosed

from tests.servers.stream_base import Connection, StreamServer

PRIVATE_CHANNELS = {"user", "futures_balance_summary"}      # SDK constants.WS_AUTH_CHANNELS
OPEN_STATUSES = {"PENDING", "OPEN", "QUEUED", "CANCEL_QUEUED"}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _loads(raw: Any) -> dict:
    try:
        msg = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return msg if isinstance(msg, dict) else {}


def user_order(o: dict) -> dict:
    """A REST order of ``CoinbaseServer`` as the ``user`` channel shows it (SDK ``UserOrders`` fields)."""
    cfg = next(iter((o.get("order_configuration") or {}).values()), {}) or {}
    cum = Decimal(o.get("filled_size") or "0")
    base = cfg.get("base_size")
    leaves = Decimal(base) - cum if base is not None and o["status"] in OPEN_STATUSES else Decimal(0)
    return {
        "avg_price": o["average_filled_price"], "cancel_reason": o.get("cancel_message") or "",
        "client_order_id": o["client_order_id"], "completion_percentage": o["completion_percentage"],
        "contract_expiry_type": "UNKNOWN_CONTRACT_EXPIRY_TYPE", "cumulative_quantity": o["filled_size"],
        "filled_value": o["filled_value"], "leaves_quantity": format(max(leaves, Decimal(0)).normalize(), "f"),
        "limit_price": cfg.get("limit_price", "0"), "number_of_fills": o["number_of_fills"],
        "order_id": o["order_id"], "order_side": o["side"], "order_type": o["order_type"],
        "outstanding_hold_amount": o["outstanding_hold_amount"],
        "post_only": "true" if cfg.get("post_only") else "false", "product_id": o["product_id"],
        "product_type": o.get("product_type", "SPOT"), "reject_reason": o.get("reject_message") or "",
        "retail_portfolio_id": o.get("retail_portfolio_id", ""),
        "risk_managed_by": "UNKNOWN_RISK_MANAGEMENT_TYPE", "status": o["status"],
        "stop_price": cfg.get("stop_price", "0"), "time_in_force": o["time_in_force"],
        "total_fees": o["total_fees"], "total_value_after_fees": o["total_value_after_fees"],
        "trigger_status": o.get("trigger_status", "INVALID_ORDER_TYPE"), "creation_time": o["created_time"],
        "end_time": "0001-01-01T00:00:00Z", "start_time": "0001-01-01T00:00:00Z",
    }


class CoinbaseStreamServer(StreamServer):
    """``wss://`` user-order WebSocket of one ``CoinbaseServer`` (see module docstring)."""

    scheme = "wss"
    path = ""

    def __init__(self, app, *, heartbeat_interval: float = 1.0, subscribe_timeout: float = 5.0):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(app.cert_path, app.key_path)     # the REST server's self-signed cert
        super().__init__(host=app.host, ssl_context=ctx, name="coinbase-stream")
        self.app = app
        self.heartbeat_interval = heartbeat_interval
        self.subscribe_timeout = subscribe_timeout
        self.muted = False          # test control: send nothing (a half-open connection), see mute()
        self.auth_failures = 0
        self._seen: dict[str, tuple] = {}
        with app._lock:
            self._seen = {o["order_id"]: self._key(o) for o in app._st["orders"]}

    def mute(self, muted: bool) -> None:
        """Muted: connections stay open but receive nothing (no updates, no heartbeats)."""
        self.muted = bool(muted)

    def skip_sequence(self) -> None:
        """Test control: the next message of every connection skips one ``sequence_num`` (a lost message)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._skip)

    def _skip(self) -> None:
        for c in list(self._conns):
            c.sequence += 1

    # ------------------------------------------------------------------ server state -> events

    @staticmethod
    def _key(o: dict) -> tuple:
        return o["status"], o["filled_size"], o["total_fees"], o["number_of_fills"]

    def on_change(self) -> None:
        """Called by ``CoinbaseServer._save`` (under its lock) after every mutation."""
        events = []
        for o in self.app._st["orders"]:
            k = self._key(o)
            if self._seen.get(o["order_id"]) != k:
                self._seen[o["order_id"]] = k
                events.append(user_order(o))
        if not self.muted:
            self.publish(events, self._render_update)

    def _message(self, conn: Connection, channel: str, events: list) -> str:
        msg = {"channel": channel, "client_id": "", "timestamp": _now(), "sequence_num": conn.sequence,
               "events": events}
        conn.sequence += 1
        return json.dumps(msg)

    def _render_update(self, conn: Connection, order: dict) -> str | None:
        if "user" not in conn.channels or (conn.products and order["product_id"] not in conn.products):
            return None
        return self._message(conn, "user", [{"type": "update", "orders": [order]}])

    # ------------------------------------------------------------------ authentication

    def _verify(self, token: Any) -> bool:
        """A WebSocket JWT of a known key: the REST checks of ``CoinbaseServer._verify_jwt`` without
        the ``uri`` claim, which ``build_ws_jwt`` does not set."""
        app = self.app
        try:
            header = jwt.get_unverified_header(str(token))
            pub = app._keys.get(header.get("kid"))
            if not isinstance(pub, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
                return False
            alg = "EdDSA" if isinstance(pub, ed25519.Ed25519PublicKey) else "ES256"
            if header.get("alg") != alg:
                return False
            claims = jwt.decode(str(token), pub, algorithms=[alg], issuer="cdp", leeway=app.jwt_leeway,
                                options={"require": ["exp", "nbf", "sub", "iss"]})
        except jwt.PyJWTError:
            return False
        return (claims.get("sub") == header.get("kid")
                and int(claims["exp"]) - int(claims["nbf"]) <= app.max_jwt_lifetime)

    # ------------------------------------------------------------------ one connection

    async def session(self, conn: Connection) -> None:
        ws = conn.ws
        beats: asyncio.Task | None = None
        try:
            while True:
                try:
                    timeout = None if conn.channels else self.subscribe_timeout
                    msg = _loads(await asyncio.wait_for(ws.recv(), timeout))
                except TimeoutError:
                    # "disconnected if no subscribe has been received within 5 seconds" (docs);
                    # GUESS: close code 1008 (a normal 1000 would end the SDK's reader silently)
                    await ws.close(1008, "no subscribe received")
                    return
                kind, channel = msg.get("type"), msg.get("channel")
                products = [p for p in (msg.get("product_ids") or []) if p]
                if kind not in ("subscribe", "unsubscribe") or not channel:
                    conn.send(json.dumps({"type": "error", "message": "Failed to parse message"}))  # GUESS
                    continue
                if channel in PRIVATE_CHANNELS and not self._verify(msg.get("jwt")):
                    self.auth_failures += 1
                    conn.send(json.dumps({"type": "error", "message": "authentication failure"}))
                    continue
                if kind == "unsubscribe":
                    conn.channels.discard(channel)
                elif channel == "user":
                    conn.channels.add("user")
                    conn.products |= set(products)
                    conn.send(self._snapshot(conn))
                elif channel == "heartbeats":
                    conn.channels.add("heartbeats")
                    if beats is None:
                        beats = asyncio.create_task(self._heartbeats(conn))
                else:
                    conn.channels.add(channel)   # market channels: acknowledged, nothing published here
                subs = {c: (sorted(conn.products) if c == "user" else [c]) for c in sorted(conn.channels)}
                conn.send(self._message(conn, "subscriptions", [{"subscriptions": subs}]))
        except ConnectionClosed:
            pass
        finally:
            if beats is not None:
                beats.cancel()

    def _snapshot(self, conn: Connection) -> str:
        """The first ``user`` message: the open orders (GUESS: open ones only, all in one event)."""
        with self.app._lock:
            orders = [user_order(o) for o in self.app._st["orders"]
                      if o["status"] in OPEN_STATUSES and (not conn.products or o["product_id"] in conn.products)]
        return self._message(conn, "user", [{
            "type": "snapshot", "orders": orders,
            "positions": {"perpetual_futures_positions": [], "expiring_futures_positions": []}}])

    async def _heartbeats(self, conn: Connection) -> None:
        counter = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.muted or "heartbeats" not in conn.channels:
                continue
            counter += 1
            now = _dt.datetime.now(_dt.UTC)
            event = {"current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC"),
                     "heartbeat_counter": str(counter)}
            conn.send(self._message(conn, "heartbeats", [event]))
