"""The Broker port: what the pipeline needs from a venue, real or simulated.

Adapter checklist (every Broker implements the required methods; the contract suite in
``tests/contract/`` runs each of them against the simulator and the local venue servers):

| method                     | required | what it does                                                        |
|----------------------------|----------|---------------------------------------------------------------------|
| ``name``                   | yes      | short venue name (``sim``, ``alpaca``, ``coinbase``)                |
| ``instruments(symbols)``   | yes      | venue rules per canonical symbol -> ``Universe`` (unknown -> DataError) |
| ``account()``              | yes      | ``AccountSnapshot`` (positions in canonical symbols, or empty when  |
|                            |          | ``positions()`` is overridden to provide them)                       |
| ``positions()``            | optional | holdings; the default reads them from ``account()``                  |
| ``prices(universe)``       | yes      | sizing prices aligned to the universe (NaN where none)             |
| ``execute(batch, on_update)`` | yes   | send every order of one leg, hand each answer (an order's new state |
|                            |          | with the fills it brings, venue trade ids included) to ``on_update``|
|                            |          | as it arrives, wait up to the configured time, return the final     |
|                            |          | ``ExecutionReport`` (never raises for a rejected order: a status    |
|                            |          | with a message)                                                    |
| ``sync()``                 | yes      | fills and state changes of orders still working since the last call |
| ``lookup(client_ids)``     | yes      | orders the venue knows by client order id (crash recovery)          |
| ``open_orders()``          | yes      | Parity's own orders still working at the venue (SPEC §17: client    |
|                            |          | order id with the ``p-`` prefix); ``foreign_orders()`` the others   |
| ``cancel(client_ids)``     | yes      | cancel working orders; returns their final states                   |
| ``account_id()``           | optional | the venue's id of the account the keys trade (ledger scoping)       |
| ``market_open(universe)``  | yes      | bool array: may each symbol trade now (equity sessions, 24/7 crypto) |
| ``describe()``             | optional | one line for status output (masked keys, endpoint, paper/live)      |
| ``sizing_fees()``          | optional | fee schedule for buying-power headroom (the venue's tier if known)  |
| ``protect(orders, ...)``   | optional | place protective stops/take-profits (default: none, each reported)  |
| ``unplaced_exits(...)``    | optional | which of those ``protect`` would not place, and why (``--dry-run``) |

Rules: canonical symbols in and out (venue symbols stay inside the adapter); SDK errors are
translated into ``framework.errors`` at the boundary; every HTTP call has a timeout. Adapters
report what the venue says and never read the ledger: the journal (``framework.journal``) is the
only component that books fills, once per (account, venue trade id). A broker is built complete by
its constructor (``framework.cli.registry``); nothing sets its attributes afterwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import numpy as np

from framework.costs import VenueFees
from framework.order_ids import owned
from framework.types import AccountSnapshot, ExecutionReport, FillBatch, OrderBatch, Position, Universe

OnUpdate = Callable[[ExecutionReport], None]


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order as the venue reports it, in canonical symbols."""

    client_order_id: str
    broker_id: str | None
    symbol: str
    side: int
    qty: float
    filled_qty: float
    avg_price: float | None
    status: int        # OrderStatus code
    order_type: str = "market"
    message: str = ""
    venue_status: str = ""   # the venue's own word for the state (``pending_cancel``, ``CANCEL_QUEUED``)
    stop_price: float | None = None    # a stop order's trigger (protective exits, SPEC §20)
    limit_price: float | None = None

    @property
    def owned(self) -> bool:
        """Whether Parity placed this order (SPEC §17)."""
        return owned(self.client_order_id)


class Broker(ABC):
    """A venue the pipeline can trade at. See the module docstring for the checklist."""

    name: str = "broker"

    @abstractmethod
    def instruments(self, symbols: list[str] | tuple[str, ...]) -> Universe: ...

    @abstractmethod
    def account(self) -> AccountSnapshot: ...

    @abstractmethod
    def prices(self, universe: Universe) -> np.ndarray: ...

    @abstractmethod
    def execute(self, batch: OrderBatch, on_update: OnUpdate | None = None) -> ExecutionReport: ...

    @abstractmethod
    def sync(self) -> list[ExecutionReport]: ...

    @abstractmethod
    def lookup(self, client_ids: list[str]) -> dict[str, OrderState]: ...

    @abstractmethod
    def open_orders(self) -> list[OrderState]: ...

    @abstractmethod
    def cancel(self, client_ids: list[str]) -> list[OrderState]: ...

    @abstractmethod
    def market_open(self, universe: Universe) -> np.ndarray: ...

    def positions(self) -> tuple[Position, ...]:
        """Holdings in canonical symbols (the account snapshot's, unless the broker keeps them apart)."""
        return self.account().positions

    def position_vector(self, universe: Universe, account: AccountSnapshot | None = None) -> np.ndarray:
        """Signed quantities aligned to ``universe`` (zeros where nothing is held)."""
        held = account.positions if account is not None and account.positions else self.positions()
        out = np.zeros(len(universe))
        for p in held:
            k = universe.index.get(p.symbol)
            if k is not None:
                out[k] = p.qty
        return out

    def describe(self) -> str:
        return self.name

    def account_id(self) -> str:
        """The venue's id of the account these keys trade (``default`` where the venue has none)."""
        return "default"

    def sizing_fees(self) -> VenueFees | None:
        """The fee schedule buys leave buying-power headroom for: the venue's own tier where the
        adapter can ask for it (Coinbase ``transaction_summary``), else its configured ``fees``."""
        return getattr(self, "fees", None)

    def foreign_orders(self) -> list[OrderState]:
        """Working orders at the venue that Parity did not place (the user's own): never cancelled,
        never counted as Parity's; listed by ``status`` and ``--dry-run``."""
        return []

    def close(self) -> None:
        """Release connections; the default has none."""

    # ---- protective exits (SPEC §20, issue 16) --------------------------------------------------------
    def protect(self, orders: Protection, on_update: OnUpdate | None = None) -> list[ExecutionReport]:
        """Place protective exits for held positions: ``orders.stops`` (stop orders) and
        ``orders.takes`` (limit orders), a stop and a take-profit on one symbol being one-cancels-
        the-other, left working; returns a report per batch. The simulator and the venue adapters
        place them; the default places nothing and says so in each order's message (a broker that
        cannot hold a stop must never turn it into a market order)."""
        from framework.types import OrderStatus

        out = []
        for b in (orders.stops, orders.takes):
            if len(b):
                n = len(b)
                rep = ExecutionReport(b, np.full(n, int(OrderStatus.CANCELED), np.int8), np.zeros(n), np.full(n, np.nan),
                                      FillBatch.empty(), None,
                                      dict.fromkeys(range(n), f"not placed: {self.name} places no protective orders"))
                if on_update is not None:
                    on_update(rep)
                out.append(rep)
        return out

    def unplaced_exits(self, universe: Universe, stops: np.ndarray, takes: np.ndarray) -> dict[tuple[str, str], str]:
        """Which protective orders ``protect`` would not place, asked before anything is sent (the
        plan of ``--dry-run``): ``stops``/``takes`` mark the symbols of ``universe`` that want one;
        the answer maps (symbol, ``"stop"`` | ``"take"``) to why. The default places none."""
        why = f"not placed: {self.name} places no protective orders"
        return {(universe.symbols[j], leg): why for leg, want in (("stop", stops), ("take", takes))
                for j in np.flatnonzero(want).tolist()}


@dataclass(frozen=True, slots=True, eq=False)
class Protection:
    """Protective exits of one cycle (``framework.exits``): sells of longs / buys of shorts for
    the held quantity, with the client order ids of legs ``stop`` and ``take`` of the batch that
    placed them. ``stops.stop_price`` and ``takes.limit_price`` are the levels."""

    stops: OrderBatch
    takes: OrderBatch


# ---- streaming (issue 16): what a venue's order stream hands to its consumer -----------------------


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """One order update from a venue's stream (``brokers/*/stream.py``), in canonical symbols.

    ``state`` is the order as the venue reports it after this event; ``state.filled_qty`` is
    cumulative. For an execution, ``fill_qty`` and ``fill_price`` are that execution's own size and
    price (``fill_qty`` is 0.0 for a state change without a fill, negative when the venue took fills
    back: event "correction"). ``trade_id`` is the venue's
    execution id where the stream carries one (Alpaca ``execution_id``); Coinbase's user channel
    carries cumulative figures only, so there it is None and the fill is the growth of the order's
    cumulative quantity since the stream last reported it (book it against ``state.filled_qty``).
    ``fee`` is this execution's fee in the quote currency when the stream says it (Coinbase:
    growth of ``total_fees``), None when it does not (Alpaca's stream carries no fee).
    ``snapshot`` marks updates from a (re)subscription snapshot rather than a live event.
    """

    state: OrderState
    event: str                      # the venue's event name: "fill", "partial_fill", "canceled", "update", ...
    time: datetime                  # the venue's timestamp (UTC)
    trade_id: str | None = None
    fill_qty: float = 0.0
    fill_price: float | None = None
    fee: float | None = None
    snapshot: bool = False
