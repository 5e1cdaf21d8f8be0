"""Coinbase composition: live Advanced Trade, or "shadow" paper trading.

Coinbase has no paper account, so ``--paper`` on Coinbase runs the live cycle against the
SimulatedBroker (the backtest's own cost models and book-keeping) priced from Coinbase's live
product prices: nothing reaches Coinbase. The shadow account's cash and positions are carried
from run to run in the ledger (runs with broker ``coinbase-shadow``).
"""

from __future__ import annotations

import time

import numpy as np

from framework.config import Settings, load_venue
from framework.errors import UsageError

SHADOW = "coinbase-shadow"


def _endpoints(settings: Settings):
    from brokers.coinbase.client import CoinbaseEndpoints

    c = settings.execution.coinbase
    if not c.key_file and not (c.api_key and c.api_secret):
        raise UsageError("COINBASE_API_KEY and COINBASE_API_SECRET are not set (a CDP key name and its PEM), and no "
                         "execution.coinbase.key_file is configured: put them in the environment or .env")
    return CoinbaseEndpoints(c.api_key, c.api_secret, c.key_file, c.base_url, c.ca_bundle, c.timeout_s)


def live_coinbase(settings: Settings, rebalance=None, settings_path: str | None = None):
    from brokers.coinbase.broker import CoinbaseBroker
    from framework.costs import VenueFees

    broker = CoinbaseBroker(_endpoints(settings), requests_per_second=settings.execution.coinbase.requests_per_second)
    broker.fees = VenueFees.from_venue(load_venue("coinbase", settings_path))   # buys leave room for the fee
    if rebalance is not None:
        from framework.cli.brokers import order_wait

        broker.order_timeout_s = order_wait(rebalance)
        broker.execution = rebalance.execution
    import os

    if os.environ.get("PARITY_POLL_INTERVAL"):
        broker.poll_interval_s = float(os.environ["PARITY_POLL_INTERVAL"])
    return broker


class ShadowBroker:
    """Builds, per command, a SimulatedBroker over a one-bar market at Coinbase's live prices."""

    name = SHADOW

    def __init__(self, venue_broker, settings: Settings, settings_path: str | None, ledger, cash: float,
                 slippage_bps: float):
        self.venue = venue_broker
        self.settings_path = settings_path
        self.ledger = ledger
        self.initial_cash = cash
        self.slippage_bps = slippage_bps
        self.endpoints = venue_broker.endpoints
        self._sim = None
        from framework.costs import VenueFees

        self.fees = VenueFees.from_venue(load_venue("coinbase", settings_path))

    def describe(self) -> str:
        return (f"coinbase SHADOW (paper): simulated fills at Coinbase's live prices from "
                f"{self.venue.endpoints.base_url or 'api.coinbase.com'}; no order reaches Coinbase")

    def _build(self, symbols: list[str]):
        from brokers.simulated import SimulatedBroker
        from framework.clock import SimClock
        from framework.costs import FixedBps
        from framework.data import BarArrays

        held = self.ledger.ledger_positions(SHADOW, "paper") if self.ledger is not None else {}
        symbols = sorted(set(symbols) | set(held))
        universe = self.venue.instruments(symbols)
        px = self.venue.prices(universe)
        now = np.datetime64(time.time_ns(), "ns")
        one = px.reshape(1, -1)
        bars = BarArrays(np.array([now]), universe.symbols, one, one, one, one, np.full_like(one, np.inf))
        cost = {s: self._avg_cost(s) for s in held}
        cash = self.initial_cash + self._cash_flow() + sum(q * cost[s] for s, q in held.items())
        sim = SimulatedBroker(bars, universe, SimClock(now), cash=cash, fill="close", fees=self.fees,
                              slippage=FixedBps(self.slippage_bps))
        sim.seed(held, now, cost)   # the shadow account already owns these: cash stays as the ledger says
        sim.name = SHADOW
        self._sim = sim
        return sim

    def _cash_flow(self) -> float:
        if self.ledger is None:
            return 0.0
        row = self.ledger.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN f.side='buy' THEN -f.qty*f.price ELSE f.qty*f.price END - f.fee), 0) "
            "FROM fills f JOIN runs r ON r.run_id=f.run_id WHERE r.broker=? AND r.mode='paper'", (SHADOW,)).fetchone()
        return float(row[0])

    def _avg_cost(self, symbol: str) -> float:
        row = self.ledger.db.execute(
            "SELECT SUM(f.qty*f.price)/SUM(f.qty) FROM fills f JOIN runs r ON r.run_id=f.run_id WHERE r.broker=? "
            "AND r.mode='paper' AND f.symbol=? AND f.side='buy'", (SHADOW, symbol)).fetchone()
        return float(row[0] or 0.0)

    def account(self):
        """The simulated account, with the day's starting equity from the ledger (UTC midnight)."""
        from dataclasses import replace

        sim = self._sim if self._sim is not None else self._build([])
        return replace(sim.account(), day_start_equity=self._day_start_equity())

    def _day_start_equity(self) -> float | None:
        """Last equity snapshot before today's UTC midnight, or the initial cash if the account began today."""
        from framework.ledger import iso

        if self.ledger is None:
            return None
        runs = self.ledger.runs_of(SHADOW, "paper")
        today = np.datetime64(time.time_ns(), "ns").astype("datetime64[D]")
        before = self.ledger.equity_before(runs, iso(today)) if runs else None
        return before if before is not None else self.initial_cash

    def sim_for(self, symbols: list[str]):
        return self._sim if self._sim is not None and set(symbols) <= set(self._sim.universe.symbols) \
            else self._build(symbols)

    # the Broker methods the CLI uses before a universe is known
    def instruments(self, symbols):
        return self.sim_for(list(symbols)).instruments(list(symbols))

    def __getattr__(self, item):
        sim = self._sim if self._sim is not None else self._build([])
        return getattr(sim, item)


def coinbase_broker(settings: Settings, settings_path: str | None, *, live: bool, ledger=None, rebalance=None):
    venue = live_coinbase(settings, rebalance, settings_path)
    if live:
        return venue
    from framework.config import load_strategy

    try:
        sim = load_strategy("default", settings_path).simulation
    except Exception:  # noqa: BLE001
        from framework.config import SimulationSettings

        sim = SimulationSettings()
    return ShadowBroker(venue, settings, settings_path, ledger, sim.cash, sim.slippage.bps)
