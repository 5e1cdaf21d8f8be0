"""ShadowBroker: paper trading on Coinbase, which has no paper account.

A real Broker: the SimulatedBroker (the backtest's own cost models and book-keeping) over a
one-bar market at Coinbase's live product prices. Nothing reaches Coinbase but price requests.
The shadow account's holdings, their cost and its cash are handed in when it is built (the
composition root reads them from the ledger's shadow account); the broker itself reads no ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from brokers.simulated import SimulatedBroker
from framework.broker import Broker, OnUpdate, OrderState
from framework.clock import SimClock
from framework.costs import FeeModel, FixedBps
from framework.data import BarArrays
from framework.types import AccountSnapshot, ExecutionReport, Position, Universe


@dataclass(frozen=True, slots=True)
class ShadowBook:
    """The shadow account as the ledger holds it: holdings, their average cost, its cash and the
    equity it had at the start of the UTC day."""

    holdings: dict[str, float]
    cost: dict[str, float]
    cash: float
    day_start_equity: float | None


class ShadowBroker(Broker):
    name = "coinbase-shadow"

    def __init__(self, prices_from: Broker, book: ShadowBook, *, fees: FeeModel, slippage_bps: float):
        self.venue = prices_from
        self.book = book
        self.fees = fees
        self.slippage_bps = slippage_bps
        self._sim: SimulatedBroker | None = None

    def close(self) -> None:
        self.venue.close()

    def describe(self) -> str:
        return (f"coinbase SHADOW (paper): simulated fills at Coinbase's live prices from "
                f"{self.venue.describe()}; no order reaches Coinbase")

    def _market(self, symbols: list[str] | tuple[str, ...] = ()) -> SimulatedBroker:
        wanted = set(symbols) | set(self.book.holdings)
        if self._sim is not None and wanted <= set(self._sim.universe.symbols):
            return self._sim
        universe = self.venue.instruments(sorted(wanted))
        px = self.venue.prices(universe)
        now = np.datetime64(time.time_ns(), "ns")
        one = px.reshape(1, -1)
        bars = BarArrays(np.array([now]), universe.symbols, one, one, one, one, np.full_like(one, np.inf))
        held = self.book.holdings
        paid = sum(q * self.book.cost.get(s, 0.0) for s, q in held.items())
        sim = SimulatedBroker(bars, universe, SimClock(now), cash=self.book.cash + paid, fill="close",
                              fees=self.fees, slippage=FixedBps(self.slippage_bps))
        sim.seed(held, now, self.book.cost)   # the shadow account already owns these
        self._sim = sim
        return sim

    def instruments(self, symbols: list[str] | tuple[str, ...]) -> Universe:
        return self._market(symbols).instruments(list(symbols))

    def account(self) -> AccountSnapshot:
        return replace(self._market().account(), day_start_equity=self.book.day_start_equity)

    def positions(self) -> tuple[Position, ...]:
        return self._market().positions()

    def position_vector(self, universe: Universe, account: AccountSnapshot | None = None) -> np.ndarray:
        return self._market(universe.symbols).position_vector(universe, account)

    def prices(self, universe: Universe) -> np.ndarray:
        return self._market(universe.symbols).prices(universe)

    def market_open(self, universe: Universe) -> np.ndarray:
        return np.ones(len(universe), bool)

    def execute(self, batch, on_update: OnUpdate | None = None) -> ExecutionReport:
        return self._market(batch.universe.symbols).execute(batch, on_update)

    def sync(self) -> list[ExecutionReport]:
        return self._market().sync()

    def lookup(self, client_ids: list[str]) -> dict[str, OrderState]:
        return self._sim.lookup(client_ids) if self._sim is not None else {}

    def open_orders(self) -> list[OrderState]:
        return self._sim.open_orders() if self._sim is not None else []

    def cancel(self, client_ids: list[str]) -> list[OrderState]:
        return self._sim.cancel(client_ids) if self._sim is not None else []
