"""Alpaca's ``trade_updates`` WebSocket stream for the local ``AlpacaServer``.

``AlpacaServer.stream`` starts it on first use (``srv.stream_url`` is what
``TradingStream(url_override=...)`` takes); the server calls ``on_change()`` after every state
change (its ``_flush``), and this module turns what changed into the venue's events.

The protocol, as confirmed from sources (each point is cited where it is implemented):

* endpoint ``/stream`` (alpaca-py 0.44.0 ``BaseURL.TRADING_STREAM_PAPER``
  ``wss://paper-api.alpaca.markets/stream``); plain ``ws://`` here as the SDK accepts any URL;
* the client's first message authenticates: alpaca-py ``TradingStream._auth`` sends
  ``{"action": "authenticate", "data": {"key_id": ..., "secret_key": ...}}`` and reads ONE reply,
  failing unless ``reply["data"]["status"] == "authorized"``;
* then ``{"action": "listen", "data": {"streams": ["trade_updates"]}}`` (``_subscribe_trade_updates``),
  acknowledged with ``{"stream": "listening", "data": {"streams": [...]}}`` (Alpaca docs
  "Websocket Streaming": only available streams appear in the acknowledgement);
* events ``{"stream": "trade_updates", "data": {"event", "execution_id", "order", "timestamp",
  "position_qty", "price", "qty"}}`` (alpaca-py ``TradeUpdate`` model; events from ``TradeEvent`` and
  the docs: new, fill, partial_fill, canceled, expired, done_for_day, replaced, rejected,
  pending_new, pending_cancel, ...); ``order`` is the REST order object;
* frames are BINARY with JSON inside (docs: "The trade_updates stream coming from
  wss://paper-api.alpaca.markets/stream uses binary frames"); the SDK ``json.loads`` the bytes.
  MessagePack (asked for with ``Content-Type: application/msgpack``) is not modelled: the SDK never
  asks for it;
* nothing is replayed on (re)connect: events sent while a client is away are lost (forum thread
  "Send snapshot when (re)connecting to Alpaca websocket streamers" asks for it; it does not exist).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

from websockets.exceptions import ConnectionClosed

from tests.servers.stream_base import Connection, StreamServer

_FILL_STATUSES = ("filled", "partially_filled")


def _loads(raw: Any) -> dict:
    try:
        msg = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return msg if isinstance(msg, dict) else {}


def _frame(msg: dict) -> bytes:
    """Binary frame with JSON inside, as the paper/live trading stream sends (see module docstring)."""
    return json.dumps(msg).encode()


class AlpacaStreamServer(StreamServer):
    """``/stream`` of one ``AlpacaServer`` (see module docstring)."""

    path = "/stream"

    def __init__(self, app, *, auth_timeout: float = 30.0):
        super().__init__(host=app.host, name="alpaca-stream")
        self.app = app
        self.auth_timeout = auth_timeout
        self._seen: dict[str, tuple[str, Decimal]] = {}   # order id -> (status, filled_qty) last published
        self._fills_done = 0
        with app._lock:
            self._remember_all()

    # ------------------------------------------------------------------ server state -> events

    def _remember_all(self) -> None:
        self._seen = {oid: (o["status"], o["filled_qty"]) for oid, o in self.app._orders.items()}
        self._fills_done = len(self.app._fills)

    def on_change(self) -> None:
        """Called by ``AlpacaServer._flush`` (under its lock) after every mutation."""
        events = self._diff()
        self.publish(events, self._render)

    def _diff(self) -> list[dict]:
        from tests.servers.alpaca_server import _fmt

        app = self.app
        fills = app._fills
        if len(fills) < self._fills_done:        # reset() / load_state(): start over silently
            self._remember_all()
            return []
        out: list[dict] = []
        batch = fills[self._fills_done:]
        self._fills_done = len(fills)
        explained: set[str] = set()
        for i, f in enumerate(batch):
            o = app._orders.get(f["order_id"])
            if o is None:
                continue
            explained.add(o["id"])
            order = app._order_json(o)
            cum = Decimal(f["cum_qty"])
            done = f["type"] == "fill"
            mine = [g for g in fills[: self._fills_done - len(batch) + i + 1] if g["order_id"] == o["id"]]
            cost = sum((Decimal(g["qty"]) * Decimal(g["price"]) for g in mine), Decimal(0))
            qty = sum((Decimal(g["qty"]) for g in mine), Decimal(0))
            # the order as it stood right after this execution
            order["filled_qty"] = _fmt(cum)
            order["filled_avg_price"] = _fmt(cost / qty) if qty else None
            order["status"] = "filled" if done else "partially_filled"
            if not done:
                order["filled_at"] = None
            order = app._shown(order)             # values the SDK does not know (set_new_values)
            out.append({
                "event": f["type"],                 # "fill" | "partial_fill"
                # GUESS: the execution id is the uuid of the FILL activity id ("<time>::<uuid>"),
                # so the stream and the account-activities endpoint name the same execution.
                "execution_id": f["id"].split("::")[-1],
                "order": order,
                "timestamp": f["transaction_time"],
                "position_qty": _fmt(self._position_after(batch, i)),
                # this execution's own price and qty, not the order's average (Alpaca-API#103: "the
                # (partial) fill trade update message now includes a qty field ... filled in that
                # update along with price"); sample payload in alpaca-trade-api-go PR #140
                "price": f["price"],
                "qty": f["qty"],
            })
            self._seen[o["id"]] = ("filled" if done else "partially_filled", cum)
        for oid, o in app._orders.items():
            before = self._seen.get(oid)
            status = o["status"]
            if before is not None and before[0] == status:
                continue
            self._seen[oid] = (status, o["filled_qty"])
            if status in _FILL_STATUSES and oid in explained:
                continue                            # the fill event above already said it
            # Real status events carry the same keys, with price/qty/position_qty null; "new" and
            # later ones have an execution_id of their own, pending_new has none (payloads logged in
            # QuantConnect/Lean.Brokerages.Alpaca#41). It is not a trade id.
            out.append({"event": status, "order": app._order_json(o), "timestamp": o["updated_at"],
                        "execution_id": None if status == "pending_new" else str(uuid.uuid4()),
                        "price": None, "qty": None, "position_qty": None})
        return out

    def _position_after(self, batch: list[dict], i: int) -> Decimal:
        """Signed position of the fill's symbol right after fill ``i`` of this batch."""
        app = self.app
        f = batch[i]
        a = app._assets.get(f["symbol"])
        if a is None:
            return Decimal(0)
        pos = app._positions.get(app._poskey(a))
        qty = pos["qty"] if pos else Decimal(0)
        for g in batch[i + 1:]:                     # undo later executions of the same symbol
            if g["symbol"] != f["symbol"]:
                continue
            q, px, fee = Decimal(g["qty"]), Decimal(g["price"]), Decimal(g["fee"] or 0)
            if g["side"] == "buy":
                # crypto buys pay the fee in the coin received (see AlpacaServer._apply_fill)
                qty -= q - (fee / px if g["fee_currency"] != "USD" else 0)
            else:
                qty += q
        return qty

    @staticmethod
    def _render(conn: Connection, event: dict) -> bytes | None:
        if "trade_updates" not in conn.channels:
            return None
        return _frame({"stream": "trade_updates", "data": event})

    # ------------------------------------------------------------------ one connection

    async def session(self, conn: Connection) -> None:
        ws = conn.ws
        try:
            first = _loads(await asyncio.wait_for(ws.recv(), self.auth_timeout))
        except TimeoutError:
            await ws.close(1008, "authentication timeout")   # GUESS: code and reason
            return
        data = first.get("data") or {}
        # the trading stream's action is "authenticate" with data.key_id/secret_key (alpaca-py _auth);
        # {"action": "auth", "key", "secret"} is the market-data streams' shape, not accepted here
        ok = (first.get("action") == "authenticate"
              and data.get("key_id") == self.app.key and data.get("secret_key") == self.app.secret)
        if not ok:
            # Reply shape from ccxt's alpaca.ts handleAuthenticate (a comment quoting the venue):
            # {"stream":"authorization","data":{"action":"authenticate",
            #  "message":"access key verification failed","status":"unauthorized"}}.
            # GUESS: the venue then closes the connection.
            conn.send(_frame({"stream": "authorization", "data": {
                "action": "authenticate", "message": "access key verification failed",
                "status": "unauthorized"}}))
            await asyncio.sleep(0.05)
            await ws.close(1008, "unauthorized")
            return
        conn.authenticated = True
        conn.send(_frame({"stream": "authorization",
                          "data": {"action": "authenticate", "status": "authorized"}}))
        try:
            async for raw in ws:
                msg = _loads(raw)
                if msg.get("action") == "listen":
                    # the list REPLACES what the client listens to; unknown streams are left out
                    wanted = (msg.get("data") or {}).get("streams") or []
                    conn.channels = {s for s in wanted if s == "trade_updates"}
                    conn.send(_frame({"stream": "listening", "data": {"streams": sorted(conn.channels)}}))
                # anything else is ignored (the venue's answer to unknown actions is not documented)
        except ConnectionClosed:
            pass
