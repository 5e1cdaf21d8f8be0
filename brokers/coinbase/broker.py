"""CoinbaseBroker: the Broker port on Coinbase Advanced Trade (live crypto; no paper account)."""

from __future__ import annotations

import dataclasses
import time
from decimal import ROUND_DOWN, Decimal
from functools import partial
from typing import Callable

import numpy as np

from brokers.coinbase import exits, wire
from brokers.coinbase.client import CoinbaseEndpoints, NotFound, make_client, rejection, translate
from brokers.live import (
    LiveBroker,
    LiveOptions,
    OrderRequest,
    VenueFill,
    fill_batch,
)
from brokers.retry import RateLimiter, RetryPolicy
from framework.broker import OnUpdate, OrderState
from framework.config import mask_secret
from framework.costs import VenueFees
from framework.errors import AuthenticationError, BrokerError, DataError, Problem, TransientBrokerError
from framework.order_ids import adjusting_trade_id
from framework.symbols import split_pair
from framework.types import AccountSnapshot, ExecutionReport, FillBatch, OrderBatch, Position, Universe

QUOTE = "USD"
# USD stablecoins held at par: Coinbase has no USDC-USD product to price them (dali-rp2#112, ccxt#21905;
# docs/venue_behaviours_confirmed.md row 1a/1d), and they are spendable value (SPEC §17).
STABLE_AT_PAR = frozenset({"USDC"})
# List Accounts ``type`` ACCOUNT_TYPE_VAULT: savings vaults, not spendable (row 1c).
VAULT = "ACCOUNT_TYPE_VAULT"


def floor_str(qty: float, increment: float) -> str:
    """Floor ``qty`` to a multiple of ``increment`` and write it exactly as the venue wants it."""
    inc = Decimal(repr(float(increment))).normalize()
    q = (Decimal(repr(float(qty))) / inc).to_integral_value(rounding=ROUND_DOWN) * inc
    exponent = inc.as_tuple().exponent
    return format(q.quantize(inc) if isinstance(exponent, int) and exponent < 0 else q, "f")


class CoinbaseBroker(LiveBroker):
    name = "coinbase"

    def __init__(self, endpoints: CoinbaseEndpoints, *, requests_per_second: int = 30, fees: VenueFees | None = None,
                 retry: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep,
                 options: LiveOptions = LiveOptions()):
        super().__init__(RateLimiter(requests_per_second, 1.0), retry, sleep, options)
        self.endpoints = endpoints
        self.client = make_client(endpoints, self.limiter)
        self._products: dict[str, dict] = {}
        self.fees = fees            # the venue's schedule: buys leave room for the fee
        self._held: dict[str, float] = {}
        self._can_trade: bool | None = None     # the key's Trade permission, once the venue said

    # Coinbase can answer throttling with 401 (coinbase-advanced-py#60, #132; P): a 401 is retried this many
    # times in all before the key is blamed
    unauthorized_tries: int = 3

    def call(self, fn):
        for k in range(self.unauthorized_tries):
            try:
                return super().call(fn)
            except AuthenticationError as e:
                if "401" not in str(e):
                    raise
                if k == self.unauthorized_tries - 1:
                    raise AuthenticationError(f"{e} (answered 401 {k + 1} times in a row; Coinbase sometimes answers "
                                              "throttling with 401, so it was retried before blaming the key)") from e
                self.sleep(0.5 * 2 ** k)
        raise AssertionError("unreachable")

    def sizing_fees(self) -> VenueFees | None:
        """The taker rate of the user's own fee tier (Advanced Trade ``transaction_summary``
        ``fee_tier.taker_fee_rate``), so buys leave the headroom the venue will really charge; the
        configured schedule when the venue does not say."""
        try:
            resp = wire.to_dict(self._do("fee tier", self.client.get_transaction_summary))
        except (BrokerError, TransientBrokerError):
            return self.fees
        tier = wire.to_dict(resp.get("fee_tier") or {})
        rate = wire._f(tier.get("taker_fee_rate"))
        if rate is None:
            return self.fees
        base = self.fees or VenueFees(0.0, 0.0)
        return dataclasses.replace(base, crypto_bps=rate * 1e4)

    def _key_blocked(self) -> str:
        """Why this API key cannot trade ("" when it can, or when the venue does not say): Advanced
        Trade "Get API Key Permissions" ``can_trade``. A key is created view-only unless Trade is
        ticked, and such a key's orders are answered 401 Unauthorized (Coinbase.AdvancedTrade#23),
        which would read as refused credentials after the first order of a cycle; asked once per
        broker, it blocks the account before anything is sent."""
        if self._can_trade is None:
            try:
                resp = wire.to_dict(self._do("key permissions", self.client.get_api_key_permissions))
            except (BrokerError, TransientBrokerError):
                return ""                # not known now: the orders themselves will say
            self._can_trade = resp.get("can_trade") is not False
        return "" if self._can_trade else ("the API key is view-only (can_trade: false); create a key with the "
                                           "Trade permission in the Coinbase Developer Platform")

    def describe(self) -> str:
        where = self.endpoints.base_url or "api.coinbase.com"
        masked = mask_secret(self.endpoints.api_key or self.endpoints.key_file)
        return f"coinbase (live) at {where}, key {masked}"

    def _do(self, what: str, fn: Callable[[], object]):
        def once():
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - translated at this boundary
                raise translate(e, what) from e
        return self.call(once)

    # ---- products, account, prices ---------------------------------------------------------------
    def product(self, symbol: str, refresh: bool = False) -> dict:
        if refresh or symbol not in self._products:
            self._products[symbol] = wire.to_dict(self._do(f"product {symbol}",
                                                           lambda: self.client.get_product(wire.product_id(symbol))))
        return self._products[symbol]

    def instruments(self, symbols: list[str] | tuple[str, ...]) -> Universe:
        problems, out = [], []
        for s in symbols:
            if "/" not in s:
                problems.append(Problem("<coinbase products>", None, "symbol", f"{s} is not a crypto pair: Coinbase "
                                        "trades crypto only"))
                continue
            try:
                out.append(wire.instrument(self.product(s, refresh=True)))   # untradable: held, with why
            except NotFound:
                problems.append(Problem("<coinbase products>", None, "symbol", f"{s} is not a Coinbase product"))
        if problems:
            raise DataError(problems)
        return Universe.from_instruments(out)

    def balances(self) -> dict[str, tuple[float, float]]:
        """Currency -> (available, hold), over every page of accounts; vaults are not spendable and
        are left out."""
        out: dict[str, tuple[float, float]] = {}
        cursor = None
        while True:
            resp = wire.to_dict(self._do("accounts", partial(self.client.get_accounts, limit=250, cursor=cursor)))
            for a in resp.get("accounts", []):
                a = wire.to_dict(a)
                if str(a.get("type") or "") == VAULT:
                    continue
                avail = float((a.get("available_balance") or {}).get("value", 0) or 0)
                hold = float((a.get("hold") or {}).get("value", 0) or 0)
                cur = str(a.get("currency") or "")
                prev = out.get(cur, (0.0, 0.0))
                out[cur] = (prev[0] + avail, prev[1] + hold)
            if not resp.get("has_next") or not resp.get("cursor"):
                return out
            cursor = resp["cursor"]

    def _make_stream(self, on_update, on_gap):
        where = self.endpoints.stream_endpoint
        if where is False:
            return None
        from brokers.coinbase.stream import CoinbaseOrderStream

        ep = self.endpoints
        return CoinbaseOrderStream(on_update=on_update, on_gap=on_gap, api_key=ep.api_key, api_secret=ep.api_secret,
                                   key_file=ep.key_file, url=where or None)

    def account_id(self) -> str:
        """The portfolio the key trades (each Coinbase API key is scoped to one portfolio)."""
        try:
            ports = wire.to_dict(self._do("portfolios", self.client.get_portfolios)).get("portfolios", [])
        except DataError:
            return "default"
        uuids = [wire.to_dict(p).get("uuid") for p in ports]
        default = next((wire.to_dict(p).get("uuid") for p in ports if wire.to_dict(p).get("type") == "DEFAULT"), None)
        return str(default or (uuids[0] if len(uuids) == 1 else "default"))

    def _cost_basis(self) -> dict[str, float]:
        try:
            ports = wire.to_dict(self._do("portfolios", self.client.get_portfolios)).get("portfolios", [])
            default = next((wire.to_dict(p) for p in ports if wire.to_dict(p).get("type") == "DEFAULT"), None)
            if default is None:
                return {}
            bd = wire.to_dict(self._do("breakdown", lambda: self.client.get_portfolio_breakdown(default["uuid"])))
            out = {}
            for sp in (bd.get("breakdown") or {}).get("spot_positions", []):
                sp = wire.to_dict(sp)
                price = (sp.get("average_entry_price") or {}).get("value")
                if price is not None and not sp.get("is_cash"):
                    out[sp["asset"]] = float(price)
            return out
        except Exception:  # noqa: BLE001 - cost basis is informative only
            return {}

    def account(self) -> AccountSnapshot:
        """Equity and cash as the venue's whole spendable value (SPEC §17): USD, USD stablecoins at
        par (USDC) and every coin priced in USD; vault accounts left out. A holding that cannot be
        priced is an error naming it: a silently dropped balance would put every risk limit and the
        daily-loss halt on the wrong equity. Buying power is the USD available, which is what the
        ``X-USD`` orders Parity sends spend."""
        bal = self.balances()
        cash_avail, cash_hold = bal.get(QUOTE, (0.0, 0.0))
        stable = sum(a + h for c, (a, h) in bal.items() if c in STABLE_AT_PAR)
        basis = self._cost_basis()
        positions, problems = [], []
        for cur, (avail, hold) in sorted(bal.items()):
            total = avail + hold
            if cur == QUOTE or cur in STABLE_AT_PAR or total <= 0:
                continue
            sym = f"{cur}/{QUOTE}"
            try:
                price = float(self.product(sym, refresh=True).get("price") or 0)
            except NotFound:
                price = 0.0
            if not price > 0:
                problems.append(Problem("<coinbase accounts>", None, "currency",
                                        f"{total:g} {cur} cannot be priced in USD (no {cur}-USD product with a "
                                        "price): equity would be wrong without it; sell or convert it at Coinbase"))
                continue
            value = total * price
            cost = basis.get(cur, price)
            positions.append(Position(sym, total, cost, price, value, value - total * cost, avail))
        if problems:
            raise DataError(problems)
        cash = cash_avail + cash_hold + stable
        equity = cash + sum(p.market_value for p in positions)
        return AccountSnapshot(np.datetime64(time.time_ns(), "ns"), equity, cash, cash_avail, None,
                               QUOTE, tuple(positions), blocked=self._key_blocked())

    def prices(self, universe: Universe) -> np.ndarray:
        return np.array([float(self.product(s, refresh=True).get("price") or np.nan) for s in universe.symbols])

    def market_open(self, universe: Universe) -> np.ndarray:
        return np.ones(len(universe), bool)

    def _list_open(self) -> list[OrderState]:
        resp = wire.to_dict(self._do("open orders", lambda: self.client.list_orders(order_status=["OPEN"], limit=250)))
        # a bracket is Parity's stop and take-profit (brokers/coinbase/exits.py)
        return [st for o in resp.get("orders", []) for st in exits.states(wire.to_dict(o))]

    # ---- live-loop primitives ---------------------------------------------------------------------
    def execute(self, batch: OrderBatch, on_update: OnUpdate | None = None) -> ExecutionReport:
        self._held = {c: a + h for c, (a, h) in self.balances().items()} if len(batch) else {}
        return super().execute(batch, on_update)

    def _cancel_pending(self, state: OrderState) -> bool:
        return state.venue_status == "CANCEL_QUEUED"

    def _sell_size(self, req: OrderRequest, inc: float, min_size: float, min_notional: float = 0.0,
                   price: float = 0.0) -> str:
        """Floor to the increment; sell everything when the rest could not be sold on its own
        (under the minimum base size or the minimum notional)."""
        base, _ = split_pair(req.symbol)
        held = self._held.get(base)
        size = Decimal(floor_str(req.qty, inc))
        if held is not None:
            all_of_it = Decimal(floor_str(held, inc))
            rest = Decimal(repr(held)) - size
            too_small = rest < Decimal(repr(max(min_size, inc))) or (
                price > 0 and rest * Decimal(repr(price)) < Decimal(repr(min_notional)))
            if size > all_of_it or (Decimal(0) < rest and too_small):
                size = all_of_it
        return format(size, "f")

    limit_only_offset_bps: float = 50.0

    def _as_limit(self, req: OrderRequest, p: dict) -> OrderRequest:
        """A market order on a ``limit_only`` product becomes a limit through the price by
        ``limit_only_offset_bps`` (a ``post_only`` one a limit one increment on its own side of the
        price, which cannot cross); the product refuses market orders (row 7b)."""
        inc = Decimal(str(p.get("price_increment") or "0.01"))
        px = Decimal(str(p.get("price") or 0))
        if p.get("post_only"):
            steps = (px / inc).to_integral_value(rounding="ROUND_FLOOR" if req.side > 0 else "ROUND_CEILING")
            limit = (steps - req.side) * inc
        else:
            raw = px * (1 + Decimal(req.side) * Decimal(repr(self.limit_only_offset_bps)) / Decimal(10_000))
            limit = (raw / inc).to_integral_value(rounding="ROUND_CEILING" if req.side > 0 else "ROUND_FLOOR") * inc
        qty = req.qty if req.notional is None or not limit > 0 else float(Decimal(repr(req.notional)) / limit)
        return OrderRequest(req.client_order_id, req.symbol, req.side, qty, "limit", float(limit), None)

    def _submit(self, req: OrderRequest) -> OrderState:
        p = self.product(req.symbol)
        if req.order_type != "limit" and (p.get("limit_only") or p.get("post_only")):
            p = self.product(req.symbol, refresh=True)
            req = self._as_limit(req, p)
        inc = float(p.get("base_increment") or 1e-8)
        pid = wire.product_id(req.symbol)
        if req.side > 0:
            if req.notional is not None:
                quote_inc = float(p.get("quote_increment") or 0.01)
                kw = {"quote_size": floor_str(req.notional, quote_inc)}
            else:
                kw = {"base_size": floor_str(req.qty, inc)}
        else:
            kw = {"base_size": self._sell_size(req, inc, float(p.get("base_min_size") or 0),
                                               float(p.get("quote_min_size") or 0), float(p.get("price") or 0))}
        if req.order_type == "limit":
            price = floor_str(req.limit_price or 0.0, float(p.get("price_increment") or 0.01))
            size = kw.get("base_size") or floor_str(req.qty, inc)
            fn = (lambda: self.client.limit_order_gtc_buy(req.client_order_id, pid, base_size=size, limit_price=price)) \
                if req.side > 0 else \
                (lambda: self.client.limit_order_gtc_sell(req.client_order_id, pid, base_size=size, limit_price=price))
        else:
            fn = (lambda: self.client.market_order_buy(req.client_order_id, pid, **kw)) if req.side > 0 else \
                (lambda: self.client.market_order_sell(req.client_order_id, pid, kw["base_size"]))
        try:
            resp = wire.to_dict(fn())
        except Exception as e:  # noqa: BLE001
            raise translate(e, f"order {req.symbol}") from e
        if not resp.get("success", False):
            raise rejection(resp, f"{'BUY' if req.side > 0 else 'SELL'} {req.symbol}")
        oid = (resp.get("success_response") or {}).get("order_id") or resp.get("order_id")
        return self._get(OrderState(req.client_order_id, oid, req.symbol, req.side, req.qty, 0.0, None, 1))

    def _get(self, state: OrderState) -> OrderState:
        try:
            o = wire.to_dict(self.client.get_order(state.broker_id))
        except Exception as e:  # noqa: BLE001
            raise translate(e, "order") from e
        found = exits.states(wire.to_dict(o.get("order", o)))
        return exits.pick(found, state.client_order_id) or found[0]

    def _get_many(self, states: list[OrderState]) -> list[OrderState | None]:
        if len(states) <= 2:
            return [self._get(s) for s in states]
        try:
            resp = wire.to_dict(self.client.list_orders(order_ids=[s.broker_id for s in states], limit=250))
        except Exception as e:  # noqa: BLE001
            raise translate(e, "orders") from e
        got = {st.client_order_id: st for o in map(wire.to_dict, resp.get("orders", [])) for st in exits.states(o)}
        return [got.get(s.client_order_id) for s in states]

    def _find(self, client_ids: list[str], since: np.datetime64) -> dict[str, OrderState]:
        wanted = set(client_ids)
        found: dict[str, OrderState] = {}
        start = np.datetime_as_string(np.datetime64(since, "s"), unit="s") + "Z"
        cursor = None
        while True:
            try:
                resp = wire.to_dict(self.client.list_orders(start_date=start, limit=250, cursor=cursor))
            except Exception as e:  # noqa: BLE001
                raise translate(e, "orders") from e
            for o in resp.get("orders", []):
                for st in exits.states(wire.to_dict(o)):     # a bracket: its stop and its take-profit
                    if st.client_order_id in wanted:
                        found[st.client_order_id] = st
            if not resp.get("has_next") or not resp.get("cursor") or len(found) == len(wanted):
                return found
            cursor = resp["cursor"]

    def _cancel(self, state: OrderState) -> None:
        try:
            self.client.cancel_orders([state.broker_id])
        except Exception as e:  # noqa: BLE001
            raise translate(e, "cancel") from e

    def _fills(self, batch: OrderBatch, states: list[OrderState | None]) -> FillBatch:
        by_order = {s.broker_id: i for i, s in enumerate(states) if s is not None and s.broker_id and s.filled_qty > 0}
        if not by_order:
            return FillBatch.empty()
        rows = []
        cursor = None
        while True:
            resp = wire.to_dict(self._do("fills", partial(self.client.get_fills, order_ids=list(by_order), limit=250,
                                                          cursor=cursor)))
            for f in resp.get("fills", []):
                f = wire.to_dict(f)
                i = by_order.get(str(f.get("order_id")))
                if i is not None:
                    rows.append((i, *_signed(f), f.get("trade_time")))
            if not resp.get("cursor") or len(resp.get("fills", [])) < 250:
                break
            cursor = resp["cursor"]
        now = np.datetime64(time.time_ns(), "ns")
        return fill_batch(batch, [VenueFill(i, q, px, fee, tid, np.datetime64(str(t).replace("Z", ""), "ns") if t else now)
                                  for i, q, px, fee, tid, t in rows])

    # ---- protective exits (SPEC §20): brokers/coinbase/exits.py ----------------------------------------
    def _submit_protective(self, stop: OrderRequest | None,
                           take: OrderRequest | None) -> tuple[OrderState | None, OrderState | None]:
        return exits.submit(self, stop, take)

    def place(self, fn: Callable[[], object], what: str) -> str:
        """Send one create-order call; return the venue's order id (a refusal raises OrderRejected)."""
        try:
            resp = wire.to_dict(fn())
        except Exception as e:  # noqa: BLE001
            raise translate(e, f"order {what}") from e
        if not resp.get("success", False):
            raise rejection(resp, what)
        return str((resp.get("success_response") or {}).get("order_id") or resp.get("order_id"))

    def order_dict(self, order_id: str) -> dict:
        """The venue's order ``order_id`` as a plain dict."""
        o = wire.to_dict(self._do("order", lambda: self.client.get_order(order_id)))
        return wire.to_dict(o.get("order", o))


def _signed(f: dict) -> tuple[float, float, float, str]:
    """(quantity, price, fee, trade id) of one Coinbase fill row. ``trade_type`` FILL is a fill; an
    adjusted fill (REVERSAL, CORRECTION, SYNTHETIC) reuses the original's ``trade_id`` (List Fills:
    "not unique for adjusted fills"), so it is booked as an adjusting row under an id of its own
    (its ``entry_id``), and a REVERSAL takes the original back (negative quantity and fee)."""
    kind = str(f.get("trade_type") or "FILL").upper()
    q, px, fee = float(f["size"]), float(f["price"]), float(f.get("commission") or 0)
    tid = str(f.get("trade_id") or f.get("entry_id"))
    if kind == "FILL":
        return q, px, fee, tid
    sign = -1.0 if kind == "REVERSAL" else 1.0
    return sign * q, px, sign * fee, adjusting_trade_id(tid, kind, f.get("entry_id") or 0)
