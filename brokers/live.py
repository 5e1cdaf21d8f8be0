"""Shared plumbing of the live venue adapters (Alpaca, Coinbase): rate limiting, retries with
backoff and jitter, and the one execute loop every live Broker uses.

The execute loop makes sending an order idempotent: every order carries its deterministic client
order id; before sending, the venue's recent orders are listed and any id the venue already knows
is not sent again (a re-run, or a restart after a crash). A duplicate-id answer means "look it up".
A transient failure is retried with exponential backoff and jitter; if it persists, the order is
looked up by client id before it is reported as unconfirmed — never re-sent blindly. After
sending, orders are polled until done or ``order_timeout_s`` passes; what is still working is
then cancelled, and the cancel is done only when the venue says the order is final.

Adapters report, the journal books (SPEC §17): every answer — an order's new state with the
venue's fills for it, each carrying the venue's trade id — goes to ``on_update`` as it arrives.
The adapter reports what the venue says each time and never reads the ledger; the journal books a
fill once per (account, trade id), so a fill reported again (a poll, a re-run, a recovery) is
booked once. ``resume`` reports orders an earlier process left at the venue, for the recovery
(``framework.recovery``) to hand to the journal.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Callable, Protocol

import numpy as np

from brokers.retry import RateLimiter, RetryPolicy, with_retries
from framework.broker import Broker, OnUpdate, OrderState, Protection
from framework.errors import BrokerError, OrderRejected, TransientBrokerError
from framework.order_ids import owned
from framework.types import ExecutionReport, FillBatch, OrderBatch, OrderStatus, Universe

_S = OrderStatus
OPEN = (int(_S.PLANNED), int(_S.NEW), int(_S.PARTIAL))


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order as the live loop hands it to a venue adapter (canonical symbol)."""

    client_order_id: str
    symbol: str
    side: int
    qty: float
    order_type: str = "market"
    limit_price: float | None = None
    notional: float | None = None
    stop_price: float | None = None      # a protective stop's trigger (SPEC §20)


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How the live loop waits for one leg: ``order_timeout_s`` before what is still working is
    cancelled, polling every ``poll_interval_s`` (growing to 2 s)."""

    order_timeout_s: float = 60.0
    poll_interval_s: float = 0.2
    # while the venue's order stream is connected, REST polling only backs it up: every answer the
    # stream announces wakes the loop at once (SPEC §20)
    stream_poll_interval_s: float = 30.0


class OrderStream(Protocol):
    """A venue's order stream (``brokers/*/stream.py``) as the live loop uses it."""

    @property
    def connected(self) -> bool: ...
    def start(self) -> object: ...
    def stop(self, timeout: float = 10.0) -> None: ...


class LiveBroker(Broker):
    """Base of live adapters: subclasses implement the venue primitives below."""

    def __init__(self, limiter: RateLimiter, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep, options: LiveOptions = LiveOptions()):
        self.limiter = limiter
        self.retry = retry
        self.sleep = sleep
        self.options = options
        self._working: dict[str, tuple[OrderBatch, int, OrderState]] = {}
        self._wake = threading.Event()          # set by the order stream on every update and gap
        self._stream: OrderStream | None = None
        self._stream_tried = False
        self.stream_updates = 0

    # ---- streaming (SPEC §20) -------------------------------------------------------------------
    def _make_stream(self, on_update: Callable[[object], None], on_gap: Callable[[str], None]) -> OrderStream | None:
        """The venue's order stream for these keys, or None (adapters override)."""
        return None

    def _streaming(self) -> bool:
        """Start the venue's order stream once (lazily, on the first leg); True while it is connected.

        The stream is a wake-up call, not a second book: an update makes the loop refresh the
        orders it waits for over REST at once, and their fills are booked from the venue's REST
        fills with the same trade ids as ever, so an execution seen on both paths is booked once.
        A gap (a reconnect) wakes it too; while the stream is down the loop polls as without one."""
        if not self._stream_tried:
            self._stream_tried = True
            try:
                self._stream = self._make_stream(self._on_stream_update, self._on_stream_gap)
                if self._stream is not None:
                    self._stream.start()
            except BrokerError:
                self._stream = None          # no stream (e.g. refused keys): REST polling as before
        return self._stream is not None and self._stream.connected

    def _on_stream_update(self, update: object) -> None:
        self.stream_updates += 1
        self._wake.set()

    def _on_stream_gap(self, reason: str) -> None:
        self._wake.set()

    def _pause(self, delay: float) -> None:
        """Wait ``delay`` seconds, or until the order stream announces something, or until a stream
        that was connected drops (then the loop falls back to polling at once)."""
        if self._stream is None:
            self.sleep(delay)
            return
        end = time.monotonic() + delay
        was_connected = self._stream.connected
        while True:
            left = end - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, 0.25)):
                break
            if was_connected and not self._stream.connected:
                break
        self._wake.clear()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None

    @property
    def order_timeout_s(self) -> float:
        return self.options.order_timeout_s

    @property
    def poll_interval_s(self) -> float:
        return self.options.poll_interval_s

    # ---- venue primitives ------------------------------------------------------------------
    @abstractmethod
    def _submit(self, req: OrderRequest) -> OrderState: ...

    @abstractmethod
    def _get(self, state: OrderState) -> OrderState: ...

    @abstractmethod
    def _find(self, client_ids: list[str], since: np.datetime64) -> dict[str, OrderState]: ...

    @abstractmethod
    def _cancel(self, state: OrderState) -> None: ...

    @abstractmethod
    def _fills(self, batch: OrderBatch, states: list[OrderState | None]) -> FillBatch: ...

    def _request(self, batch: OrderBatch, i: int, cid: str) -> OrderRequest:
        return OrderRequest(cid, batch.universe.symbols[int(batch.symbol_idx[i])], int(batch.side[i]),
                            float(batch.qty[i]), str(batch.order_type),
                            None if batch.limit_price is None else float(batch.limit_price[i]),
                            None if batch.notional is None else float(batch.notional[i]))

    def call(self, fn: Callable[[], object]):
        return with_retries(fn, self.limiter, self.retry, self.sleep)

    # ---- the execute loop -----------------------------------------------------------------------
    def execute(self, batch: OrderBatch, on_update: OnUpdate | None = None) -> ExecutionReport:
        n = len(batch)
        if n == 0:
            return ExecutionReport(batch, np.zeros(0, np.int8), np.zeros(0), np.zeros(0), FillBatch.empty())
        self._streaming()          # listening before the first order goes out
        cids = batch.client_order_ids()
        messages: dict[int, str] = {}
        since = batch.time - np.timedelta64(2, "D")
        known = self.call(lambda: self._find(cids, since))
        states: list[OrderState | None] = [None] * n
        for i, cid in enumerate(cids):
            if cid in known:
                states[i] = known[cid]
                messages[i] = "already at the venue (same client order id): not sent again"
                continue
            states[i] = self._send(self._request(batch, i, cid), messages, i)
            self._observe(on_update, batch, i, states[i], messages)
        held = self.held_for_open(states)
        states = self._wait(states, on_change=lambda i, st: self._observe(on_update, batch, i, st, messages),
                            skip=held)
        states = self._finish_open(batch, states, messages, on_update, held)
        for i, st in enumerate(states):
            if st is not None and st.status in OPEN:
                self._working[st.client_order_id] = (batch, i, st)
        return self._report(batch, states, messages)

    def _send(self, req: OrderRequest, messages: dict[int, str], i: int) -> OrderState | None:
        try:
            return self.call(lambda: self._submit(req))
        except OrderRejected as e:
            messages[i] = f"rejected: {e}"
            return OrderState(req.client_order_id, None, req.symbol, req.side, req.qty, 0.0, None, int(_S.REJECTED),
                              req.order_type, str(e))
        except TransientBrokerError as e:
            try:
                found = self.call(lambda: self._find([req.client_order_id], np.datetime64("1970-01-01")))
            except TransientBrokerError:
                found = {}
            st = found.get(req.client_order_id)
            if st is not None:
                return st
            messages[i] = (f"not confirmed after {self.retry.attempts} tries ({e}); nothing was filled as far as the "
                           "venue says. The next run looks the order up by its client order id before sending.")
            return None

    def _observe(self, on_update: OnUpdate | None, batch: OrderBatch, i: int, state: OrderState | None,
                 messages: dict[int, str]) -> None:
        """Hand one order's new state, with the venue's fills for it, to ``on_update`` as it arrives.

        The write-ahead journal commits the state and those fills in one transaction: an answer is
        never recorded without its fills, so a crash at any moment leaves the ledger either before
        or after the answer."""
        if on_update is None or state is None:
            return
        sub = batch.subset(np.arange(len(batch)) == i)
        on_update(self._report(sub, [state], {0: messages[i]} if i in messages else {}))

    def _wait(self, states: list[OrderState | None], timeout_s: float | None = None,
              on_change: Callable[[int, OrderState], None] | None = None,
              skip: frozenset[int] = frozenset()) -> list[OrderState | None]:
        """Poll until every order is done or the timeout; the orders ``skip`` names (held by the venue
        for the market's open) are not waited for."""
        deadline = time.monotonic() + (self.order_timeout_s if timeout_s is None else timeout_s)
        delay = self.poll_interval_s
        while any(s is not None and s.status in OPEN for i, s in enumerate(states) if i not in skip) \
                and time.monotonic() < deadline:
            streaming = self._streaming()
            self._pause(min(self.options.stream_poll_interval_s if streaming else delay,
                            max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 1.5, max(2.0, self.poll_interval_s))
            open_idx = [i for i, s in enumerate(states) if s is not None and s.status in OPEN]
            try:
                fresh = self.call(lambda: self._get_many([states[i] for i in open_idx]))  # type: ignore[misc]
            except TransientBrokerError:
                continue
            for i, new in zip(open_idx, fresh):
                if new is not None:
                    old = states[i]
                    states[i] = new
                    if on_change is not None and (old is None or new.status != old.status
                                                  or new.filled_qty != old.filled_qty):
                        on_change(i, new)
        return states

    def _get_many(self, states: list[OrderState]) -> list[OrderState | None]:
        """Refresh several orders; adapters override this with one list request per poll round."""
        out: list[OrderState | None] = []
        for s in states:
            try:
                out.append(self._get(s))
            except TransientBrokerError:
                out.append(None)
        return out

    def _finish_open(self, batch: OrderBatch, states: list[OrderState | None], messages: dict[int, str],
                     on_update: OnUpdate | None = None, held: frozenset[int] = frozenset()) -> list[OrderState | None]:
        """Orders still working after the timeout: cancel them (market) or escalate (smart). Those the
        venue holds for the open (``held``, known from when they were sent, or found so now) stay."""
        for i, s in enumerate(states):
            if s is None or s.status not in OPEN:
                continue
            if i in held or self.market_hours_wait(s):
                messages[i] = "waiting for the market to open (broker clock): order left working"
                continue
            try:
                final = self.cancel_and_wait(s)
                states[i] = final
                messages[i] = f"canceled: not filled within {self.order_timeout_s:g}s"
                if final.status in OPEN:
                    messages[i] = (f"cancel requested after {self.order_timeout_s:g}s; the venue has not "
                                   "confirmed it yet (the next run reconciles it)")
                if final.filled_qty > 0:
                    messages[i] += f" (partially filled {final.filled_qty:g})"
                self._observe(on_update, batch, i, final, messages)
            except TransientBrokerError as e:
                messages[i] = f"could not cancel after the timeout: {e}"
        return states

    def market_hours_wait(self, state: OrderState) -> bool:
        """Whether a working order is simply waiting for the market to open (equities at Alpaca)."""
        return False

    def held_for_open(self, states: list[OrderState | None]) -> frozenset[int]:
        """The working orders the venue holds until the market opens: not waited for (venue row 16)."""
        return frozenset(i for i, s in enumerate(states) if s is not None and s.status in OPEN
                         and self.market_hours_wait(s))

    def _report(self, batch: OrderBatch, states: list[OrderState | None], messages: dict[int, str]) -> ExecutionReport:
        n = len(batch)
        status = np.array([int(_S.PLANNED) if s is None else s.status for s in states], np.int8)
        filled = np.array([0.0 if s is None else s.filled_qty for s in states])
        avg = np.array([np.nan if s is None or s.avg_price is None else s.avg_price for s in states])
        for i, s in enumerate(states):
            if s is not None and s.message and i not in messages:
                messages[i] = s.message
        fills = self._fills(batch, states)
        return ExecutionReport(batch, status, filled, avg, fills, tuple(None if s is None else s.broker_id for s in states),
                               messages, np.full(n, np.datetime64(time.time_ns(), "ns")))

    def resume(self, batch: OrderBatch, states: list[OrderState | None], wait_s: float = 0.0) -> ExecutionReport:
        """Report orders an earlier (crashed) run left at the venue: their state now, after polling the
        working ones for up to ``wait_s`` seconds, and the fills the ledger does not hold yet.

        Sends nothing and cancels nothing: crash recovery books what happened while no process was
        watching, and lets an interrupted cycle's working orders finish before the cycle is re-planned."""
        states = list(states)
        if wait_s > 0:
            states = self._wait(states, wait_s)
        return self._report(batch, states, {})

    # ---- Broker methods built on the primitives -------------------------------------------------
    def sync(self) -> list[ExecutionReport]:
        out = []
        for cid, (batch, i, st) in list(self._working.items()):
            try:
                new = self.call(partial(self._get, st))
            except TransientBrokerError:
                continue
            if new.filled_qty != st.filled_qty or new.status != st.status:
                sub = batch.subset(np.arange(len(batch)) == i)
                out.append(self._report(sub, [new], {}))
            if new.status in OPEN:
                self._working[cid] = (batch, i, new)
            else:
                del self._working[cid]
        return out

    @abstractmethod
    def _list_open(self) -> list[OrderState]:
        """Every order working at the venue, Parity's or not."""

    def open_orders(self) -> list[OrderState]:
        """Parity's own working orders (SPEC §17): the user's are never listed as Parity's."""
        return [o for o in self._list_open() if o.owned]

    def foreign_orders(self) -> list[OrderState]:
        return [o for o in self._list_open() if not o.owned]

    def lookup(self, client_ids: list[str]) -> dict[str, OrderState]:
        return self.call(lambda: self._find(client_ids, np.datetime64("1970-01-01")))

    def cancel(self, client_ids: list[str]) -> list[OrderState]:
        """Cancel Parity's own working orders among ``client_ids``; return their final states.

        An order the user placed (no ``p-`` prefix) is never cancelled, whatever the caller asks."""
        found = self.lookup([c for c in client_ids if owned(c)])
        out = []
        for cid, st in found.items():
            if st.status in OPEN:
                out.append(self.cancel_and_wait(st))
            self._working.pop(cid, None)
        return out

    cancel_wait_s: float = 10.0

    def cancel_and_wait(self, state: OrderState) -> OrderState:
        """Ask the venue to cancel, then poll until it says the order is final (SPEC §17): an order
        can still fill while ``pending_cancel`` (Alpaca) or ``CANCEL_QUEUED`` (Coinbase), and the
        next step must be sized from the final filled quantity. Returns the last state seen."""
        self.call(lambda: self._cancel(state))
        deadline = time.monotonic() + self.cancel_wait_s
        delay = self.poll_interval_s
        st: OrderState = state
        while True:
            try:
                st = self.call(lambda: self._get(state))
            except TransientBrokerError:
                pass
            if st.status not in OPEN and not self._cancel_pending(st) or time.monotonic() >= deadline:
                return st
            self.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _cancel_pending(self, state: OrderState) -> bool:
        """Whether the venue still has a cancel of this order under way (adapters that see it say so)."""
        return False

    # ---- protective exits (SPEC §20; brokers/live_exits.py) ----------------------------------------
    def unplaced_exits(self, universe: Universe, stops: np.ndarray, takes: np.ndarray) -> dict[tuple[str, str], str]:
        return {}           # placed as the adapter sends them (``_submit_protective``); see the Alpaca adapter

    def protect(self, orders: Protection, on_update: OnUpdate | None = None) -> list[ExecutionReport]:
        """Place protective exits idempotently and leave them working (``brokers.live_exits``)."""
        from brokers.live_exits import place

        return place(self, orders, on_update)

    def _submit_protective(self, stop: OrderRequest | None,
                           take: OrderRequest | None) -> tuple[OrderState | None, OrderState | None]:
        """Send one symbol's stop and take-profit; the default sends two separate orders (adapters
        override it with the venue's linked orders)."""
        return (None if stop is None else self._submit(stop), None if take is None else self._submit(take))


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One fill as the venue reports it: the order's position in its batch, quantity booked (negative
    for an adjusting row reversing an earlier fill), price, fee in the quote currency, the venue's trade
    id and its time."""

    pos: int
    qty: float
    price: float
    fee: float
    trade_id: str
    time: np.datetime64
    fee_qty: float = 0.0      # the part of the executed quantity the venue kept as its fee (in kind)


def fill_batch(batch: OrderBatch, fills: list[VenueFill]) -> FillBatch:
    """A FillBatch from the venue's fills of orders of ``batch`` (slippage against the sizing price)."""
    if not fills:
        return FillBatch.empty()
    pos = np.array([f.pos for f in fills], np.int64)
    q = np.array([f.qty for f in fills])
    px = np.array([f.price for f in fills])
    side = batch.side[pos]
    ref = np.nan_to_num(batch.ref_price[pos], nan=0.0)
    slip = np.where(ref > 0, np.maximum((px - ref) * side, 0.0) * q, 0.0)
    fee_qty = np.array([f.fee_qty for f in fills])
    return FillBatch(np.array([f.time for f in fills], dtype="datetime64[ns]"), batch.symbol_idx[pos], side, q, px,
                     np.array([f.fee for f in fills]), slip, pos, tuple(f.trade_id for f in fills),
                     fee_qty if fee_qty.any() else None)
