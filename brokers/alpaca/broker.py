"""AlpacaBroker: the Broker port on Alpaca's trading and market-data APIs (paper by default)."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from functools import partial
from typing import Callable

import numpy as np

from brokers.alpaca import exits, wire
from brokers.alpaca.client import AlpacaEndpoints, DuplicateClientOrderId, NotFound, make_clients, translate
from brokers.live import (
    OPEN,
    LiveBroker,
    LiveOptions,
    OrderRequest,
    VenueFill,
    fill_batch,
)
from brokers.retry import RateLimiter, RetryPolicy
from framework.broker import OrderState
from framework.config import mask_secret
from framework.costs import CostInputs, VenueFees
from framework.errors import BrokerError, DataError, Problem, TransientBrokerError
from framework.order_ids import adjusting_trade_id, owned
from framework.symbols import is_crypto
from framework.types import AccountSnapshot, FillBatch, OrderBatch, Position, Universe


class AlpacaBroker(LiveBroker):
    name = "alpaca"

    def __init__(self, endpoints: AlpacaEndpoints, *, fees: VenueFees | None = None,
                 min_notional_equity: float = 1.0, min_notional_crypto: float = 1.0,
                 requests_per_minute: int = 200, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, options: LiveOptions = LiveOptions()):
        super().__init__(RateLimiter(requests_per_minute, 60.0), retry, sleep, options)
        self.endpoints = endpoints
        self.trading, self.stock_data, self.crypto_data = make_clients(endpoints, self.limiter)
        self.fees = fees
        self.min_notional = (min_notional_equity, min_notional_crypto)
        self._assets: dict[str, object] = {}
        self._chain: dict[str, list[str]] = {}      # replacement order id -> the ids it replaced
        self._had_fills: set[str] = set()           # orders seen filled (a later bust still reaches them)

    def describe(self) -> str:
        where = self.endpoints.trading_url or ("paper-api.alpaca.markets" if self.endpoints.paper else "api.alpaca.markets")
        masked = mask_secret(self.endpoints.key)
        return f"alpaca ({'paper' if self.endpoints.paper else 'live'}) at {where}, key {masked}"

    # ---- SDK calls through the boundary --------------------------------------------------------
    def _sdk(self, what: str, fn: Callable[[], object]):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - everything is translated at this boundary
            raise translate(e, what) from e

    def _do(self, what: str, fn: Callable[[], object]):
        return self.call(lambda: self._sdk(what, fn))

    # ---- Broker --------------------------------------------------------------------------------
    def instruments(self, symbols: list[str] | tuple[str, ...]) -> Universe:
        problems, out = [], []
        crypto_off = ""
        if any(is_crypto(s) for s in symbols):
            crypto_off = wire.crypto_disabled(self._do("account", self.trading.get_account))
        for s in symbols:
            if s not in self._assets:
                try:
                    self._assets[s] = self._do(f"asset {s}", partial(self.trading.get_asset, wire.venue_symbol(s)))
                except NotFound:
                    problems.append(Problem("<alpaca assets>", None, "symbol", f"{s} is not an Alpaca asset"))
                    continue
            # untradable (a delisting; crypto the account may not trade): held by the planner with the reason
            out.append(wire.instrument(self._assets[s], *self.min_notional, crypto_off=crypto_off))
        if problems:
            raise DataError(problems)
        return Universe.from_instruments(out)

    def account(self) -> AccountSnapshot:
        a = self._do("account", self.trading.get_account)
        positions = tuple(wire.position(p) for p in self._do("positions", self.trading.get_all_positions))
        last = wire._f(getattr(a, "last_equity", None))
        equity = float(a.equity)
        cash = float(a.cash)
        bp = wire._f(getattr(a, "non_marginable_buying_power", None)) or float(a.buying_power)
        return AccountSnapshot(np.datetime64(time.time_ns(), "ns"), equity, cash, min(bp, float(a.buying_power)),
                               last if last else None, "USD", positions, wire.blocked(a), wire.can_short(a),
                               wash_trade_rule=True)

    def positions(self) -> tuple[Position, ...]:
        return tuple(wire.position(p) for p in self._do("positions", self.trading.get_all_positions))

    def prices(self, universe: Universe) -> np.ndarray:
        from alpaca.data.requests import CryptoLatestTradeRequest, StockLatestTradeRequest

        out = np.full(len(universe), np.nan)
        eq = [s for s in universe.symbols if not is_crypto(s)]
        cr = [s for s in universe.symbols if is_crypto(s)]
        if eq:
            trades = self._do("latest trades", lambda: self.stock_data.get_stock_latest_trade(
                StockLatestTradeRequest(symbol_or_symbols=eq)))
            for s, t in trades.items():
                out[universe.index[s]] = float(t.price)
        if cr:
            trades = self._do("latest crypto trades", lambda: self.crypto_data.get_crypto_latest_trade(
                CryptoLatestTradeRequest(symbol_or_symbols=cr)))
            for s, t in trades.items():
                out[universe.index[wire.canonical(s)]] = float(t.price)
        return out

    def is_open(self) -> bool:
        return bool(self._do("clock", self.trading.get_clock).is_open)

    def market_open(self, universe: Universe) -> np.ndarray:
        if universe.crypto.all():
            return np.ones(len(universe), bool)
        return universe.crypto | self.is_open()

    def _make_stream(self, on_update, on_gap):
        where = self.endpoints.stream_endpoint
        if where is False:
            return None
        from brokers.alpaca.stream import AlpacaOrderStream

        return AlpacaOrderStream(self.endpoints.key, self.endpoints.secret, on_update=on_update, on_gap=on_gap,
                                 paper=self.endpoints.paper, url=where or None)

    def account_id(self) -> str:
        return str(self._do("account", self.trading.get_account).id)

    def _list_open(self) -> list[OrderState]:
        from alpaca.trading.requests import GetOrdersRequest

        # nested: an OCO exit's held stop leg comes with its parent (brokers/alpaca/exits.py); an order
        # the venue put in place of one of Parity's (a replace) is Parity's
        orders = self._do("open orders", lambda: self.trading.get_orders(GetOrdersRequest(status="open", limit=500,
                                                                                         nested=True)))
        out: list[OrderState] = []
        for o in orders:
            parent, *legs = exits.states(o)
            out += [st for st in (self._owner_of(o), *legs) if st.status in OPEN]
        return out

    # ---- venue-side replaces (alpaca-py OrderStatus.REPLACED: "replaced by another order, or updated due
    # to a market event such as corporate action"): followed to the replacement, never taken as final
    def _follow(self, o) -> OrderState:
        """The state of order ``o`` followed through any venue-side replacements: the replacement's
        status under the original's client order id, quantities summed over the chain."""
        st = wire.order_state(o)
        for _ in range(8):
            nxt_id = getattr(o, "replaced_by", None)
            if st.venue_status != "replaced" or not nxt_id:
                return st
            o = self._sdk("order", partial(self.trading.get_order_by_id, nxt_id))
            new = wire.order_state(o)
            self._chain.setdefault(new.broker_id or "", []).extend([st.broker_id or "",
                                                                    *self._chain.get(st.broker_id or "", [])])
            filled = st.filled_qty + new.filled_qty
            avg = ((st.avg_price or 0.0) * st.filled_qty + (new.avg_price or 0.0) * new.filled_qty) / filled \
                if filled > 0 else None
            st = OrderState(st.client_order_id, new.broker_id, st.symbol, st.side, st.filled_qty + new.qty, filled,
                            avg, new.status, new.order_type, new.message, new.venue_status)
        return st

    def _owner_of(self, o) -> OrderState:
        """An open order as Parity's when it replaced one of Parity's (the venue gave it a new id)."""
        replaces = getattr(o, "replaces", None)
        if replaces and not owned(o.client_order_id):
            try:
                first = self._sdk("order", lambda: self.trading.get_order_by_id(replaces))
            except NotFound:
                first = None
            if first is not None and owned(first.client_order_id):
                return self._follow(first)
        return wire.order_state(o)

    # ---- live-loop primitives ------------------------------------------------------------------
    def _submit(self, req: OrderRequest) -> OrderState:
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        crypto = is_crypto(req.symbol)
        args: dict[str, object] = dict(symbol=wire.venue_symbol(req.symbol), side="buy" if req.side > 0 else "sell",
                                       time_in_force="gtc" if crypto else "day", client_order_id=req.client_order_id)
        if req.notional is not None:
            args["notional"] = round(req.notional, 2)
        else:
            args["qty"] = float(f"{req.qty:.9f}")
        order_req = (LimitOrderRequest(limit_price=req.limit_price, **args) if req.order_type == "limit"
                     else MarketOrderRequest(**args))
        try:
            o = self._sdk(f"submit {req.symbol}", lambda: self.trading.submit_order(order_req))
        except DuplicateClientOrderId:
            o = self._sdk(f"order {req.client_order_id}",
                          lambda: self.trading.get_order_by_client_id(req.client_order_id))
        return wire.order_state(o)

    def _get(self, state: OrderState) -> OrderState:
        if state.broker_id:
            o = self._sdk("order", lambda: self.trading.get_order_by_id(state.broker_id))
        else:
            o = self._sdk("order", lambda: self.trading.get_order_by_client_id(state.client_order_id))
        st = self._follow(o)
        # an OCO exit's leg keeps the client order id Parity knows it by (exits.py)
        return st if st.client_order_id == state.client_order_id else replace(st, client_order_id=state.client_order_id)

    def _find(self, client_ids: list[str], since: np.datetime64) -> dict[str, OrderState]:
        found = self._find_orders(client_ids, since)
        missing = set(client_ids) - set(found)
        if missing:      # the stop leg of one of Parity's OCO exits is known by its parent (exits.py)
            found.update(exits.find_legs(self, missing))
        return found

    def _find_orders(self, client_ids: list[str], since: np.datetime64) -> dict[str, OrderState]:
        wanted = set(client_ids)
        found: dict[str, OrderState] = {}
        if len(wanted) <= 3 or since <= np.datetime64("1971-01-01"):
            for cid in wanted:
                try:
                    o = self._sdk("order by client id", partial(self.trading.get_order_by_client_id, cid))
                    found[cid] = self._follow(o)
                except NotFound:
                    pass
            return found
        from alpaca.trading.requests import GetOrdersRequest

        after = np.datetime_as_string(np.datetime64(since, "s"), unit="s") + "Z"
        until = None
        while True:
            req = GetOrdersRequest(status="all", limit=500, after=after, until=until, direction="desc")
            page = self._sdk("orders", partial(self.trading.get_orders, req))
            for o in page:
                if o.client_order_id in wanted:
                    found[o.client_order_id] = self._follow(o)
            if len(page) < 500 or len(found) == len(wanted):
                return found
            until = wire.when(page[-1].submitted_at or page[-1].created_at)   # ISO text in the JSON

    def _get_many(self, states: list[OrderState]) -> list[OrderState | None]:
        if len(states) <= 2:
            return [self._get(s) for s in states]
        from alpaca.trading.requests import GetOrdersRequest

        ids = {s.broker_id for s in states}
        got: dict[str, OrderState] = {}
        until = None
        while True:   # newest first; every order of this batch was created within the last pages
            req = GetOrdersRequest(status="all", limit=500, direction="desc", until=until)
            page = self._sdk("orders", partial(self.trading.get_orders, req))
            for o in page:
                if str(o.id) in ids:
                    got[str(o.id)] = self._follow(o)
            if len(got) == len(ids) or len(page) < 500:
                break
            until = wire.when(page[-1].submitted_at or page[-1].created_at)   # ISO text in the JSON
        return [got.get(s.broker_id or "") or self._get(s) for s in states]

    def _cancel(self, state: OrderState) -> None:
        try:
            self._sdk("cancel", lambda: self.trading.cancel_order_by_id(state.broker_id))
        except NotFound:
            pass
        except BrokerError as e:
            if "not cancelable" not in str(e):
                raise

    def market_hours_wait(self, state: OrderState) -> bool:
        return not is_crypto(state.symbol) and not self.is_open()

    def held_for_open(self, states: list[OrderState | None]) -> frozenset[int]:
        """Equity orders sent while the market is closed are queued for the next open (venue row 16):
        one clock request for all of them."""
        equities = [i for i, s in enumerate(states) if s is not None and s.status in OPEN and not is_crypto(s.symbol)]
        if not equities:
            return frozenset()
        try:
            return frozenset(equities) if not self.is_open() else frozenset()
        except TransientBrokerError:      # the orders are out: wait for them as usual rather than fail here
            return frozenset()

    def _cancel_pending(self, state: OrderState) -> bool:
        return state.venue_status == "pending_cancel"

    def _fills(self, batch: OrderBatch, states: list[OrderState | None]) -> FillBatch:
        """The venue's own fills of these orders: Alpaca's FILL account activities, one per execution,
        each with its activity id as the trade id (order states give only cumulative figures).
        Alpaca's fill events carry no fee: it is computed from the venue's fee schedule."""
        by_order = {s.broker_id: i for i, s in enumerate(states) if s is not None and s.broker_id
                    and (s.filled_qty > 0 or s.broker_id in self._had_fills)}   # a bust can take it to 0
        self._had_fills.update(by_order)
        for bid, i in list(by_order.items()):
            by_order.update({old: i for old in self._chain.get(bid, [])})     # fills before a replace
        if not by_order:
            return FillBatch.empty()
        out: list[VenueFill] = []
        seen: dict[str, tuple[float, float, str]] = {}       # activity id -> (qty, price, trade id) booked
        for act in self._fill_activities(set(by_order)):
            i = by_order[str(act["order_id"])]
            q, px = float(act["qty"]), float(act["price"])
            t = np.datetime64(str(act.get("transaction_time") or "").replace("Z", "").split("+")[0] or "NaT", "ns")
            t = t if not np.isnat(t) else np.datetime64(time.time_ns(), "ns")
            kind = str(act.get("type") or "fill")
            corrects = act.get("corrects")
            if kind in ("trade_correct", "trade_bust") and corrects:
                out.extend(self._adjusting(batch, i, seen.get(str(corrects)), q, px, kind, str(act["id"]), t))
                seen[str(act["id"])] = (q, px, str(act["id"]))
                seen[str(corrects)] = (q, px, str(corrects))
                continue
            book_q, fee = self._in_kind(batch, i, q, px)
            out.append(VenueFill(i, book_q, px, fee, str(act["id"]), t, q - book_q))
            seen[str(act["id"])] = (q, px, str(act["id"]))
        return fill_batch(batch, out)

    def _in_kind(self, batch: OrderBatch, i: int, q: float, px: float) -> tuple[float, float]:
        """(quantity to book, fee in USD) of one fill. Alpaca takes the crypto fee in the asset
        received ("Crypto Fees": "charged on the credited crypto asset/fiat (what you receive)"): a
        buy's coin fee is booked as a quantity reduction and its value as the fee (SPEC §17), so the
        ledger's position equals the venue's; the venue credits q x (1 - rate) floored to 1e-9."""
        j = int(batch.symbol_idx[i])
        if not (batch.universe.crypto[j] and batch.side[i] > 0) or self.fees is None:
            return q, self._fee(batch, i, q, px)
        rate = Decimal(repr(self.fees.crypto_bps)) / Decimal(10_000)
        net = (Decimal(repr(q)) * (1 - rate)).quantize(Decimal("1e-9"), ROUND_DOWN)
        return float(net), float((Decimal(repr(q)) - net) * Decimal(repr(px)))

    def _adjusting(self, batch: OrderBatch, i: int, old: tuple[float, float, str] | None, q: float, px: float,
                   kind: str, act_id: str, t: np.datetime64) -> list[VenueFill]:
        """A correction or bust of an earlier fill, booked as adjusting rows (never dropped): the
        original reversed (negative quantity) and, for a correction, the corrected fill; each row
        with its own trade id so the ledger's unique index keeps them all (SPEC §17)."""
        if old is None:
            return []
        oq, opx, _ = old
        rows = []
        bq, bfee = self._in_kind(batch, i, oq, opx)
        rows.append(VenueFill(i, -bq, opx, -bfee, adjusting_trade_id(act_id, kind, 0), t, -(oq - bq)))
        if kind == "trade_correct" and q > 0:
            cq, cfee = self._in_kind(batch, i, q, px)
            rows.append(VenueFill(i, cq, px, cfee, adjusting_trade_id(act_id, kind, 1), t, q - cq))
        return rows

    def _fill_activities(self, order_ids: set[str]) -> list[dict]:
        """FILL activities of ``order_ids``, oldest first, over as many pages as it takes."""
        found: list[dict] = []
        token = None
        while True:
            params = {"direction": "desc", "page_size": 100}
            if token:
                params["page_token"] = token
            page = self._do("fill activities", partial(self.trading.get, "/account/activities/FILL", params))
            page = page if isinstance(page, list) else []
            found.extend(a for a in page if str(a.get("order_id")) in order_ids)
            seen = {str(a["order_id"]) for a in found}
            if len(page) < 100 or seen >= order_ids:
                break
            token = page[-1].get("id")
        found.sort(key=lambda a: (str(a.get("transaction_time")), str(a.get("id"))))
        return found

    def _fee(self, batch: OrderBatch, i: int, q: float, px: float) -> float:
        if self.fees is None:
            return 0.0
        j = int(batch.symbol_idx[i])
        return float(self.fees.fees(CostInputs(np.array([q]), np.array([px]), np.array([int(batch.side[i])]),
                                               np.array([bool(batch.universe.crypto[j])])))[0])

    def close_position(self, symbol: str, qty: float | None) -> OrderState:
        """Market order closing ``qty`` (all when None) through Alpaca's close-position endpoint."""
        from alpaca.trading.requests import ClosePositionRequest

        opts = ClosePositionRequest(qty=str(qty)) if qty is not None else None
        o = self._do(f"close {symbol}", lambda: self.trading.close_position(symbol.replace("/", ""), opts))
        return wire.order_state(o)

    def cancel_all(self) -> None:
        self._do("cancel all", self.trading.cancel_orders)

    # ---- protective exits (SPEC §20): brokers/alpaca/exits.py ----------------------------------------
    def _submit_protective(self, stop: OrderRequest | None,
                           take: OrderRequest | None) -> tuple[OrderState | None, OrderState | None]:
        return exits.submit(self, stop, take)

    def unplaced_exits(self, universe: Universe, stops: np.ndarray, takes: np.ndarray) -> dict[tuple[str, str], str]:
        return exits.unplaced(universe, stops, takes)

