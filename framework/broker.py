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

Rules: canonical symbols in and out (venue symbols stay inside the adapter); SDK errors are
translated into ``framework.errors`` at the boundary; every HTTP call has a timeout. Adapters
report what the venue says and never read the ledger: the journal (``framework.journal``) is the
only component that books fills, once per (account, venue trade id). A broker is built complete by
its constructor (``framework.cli.registry``); nothing sets its attributes afterwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np

from framework.costs import VenueFees
from framework.types import AccountSnapshot, ExecutionReport, OrderBatch, Position, Universe, owned

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
