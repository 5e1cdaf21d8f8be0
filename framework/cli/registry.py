"""The broker registry: every Broker is built here, complete, from typed options (STYLE 15).

Keys come from the environment or ``.env`` (through the settings), endpoints and venue rules from
the config files. Nothing sets a broker's attributes after its constructor. This module and the
rest of ``framework.cli`` are the only places in ``framework`` that import ``brokers``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from framework.accounts import Account, Environment, is_loopback
from framework.config import RebalanceSettings, Settings
from framework.errors import UsageError
from framework.venue_config import load_venue

SHADOW = "coinbase-shadow"


@dataclass(frozen=True, slots=True)
class BrokerRequest:
    """What to build: a venue (``alpaca``, ``coinbase`` or ``routed`` over both), paper or live, and
    the strategy's rebalance settings (how long to wait for a leg) and routing."""

    venue: str
    live: bool
    rebalance: RebalanceSettings | None = None
    route: Callable[[str], str] | None = None

    @property
    def environment(self) -> Environment:
        if self.live:
            return Environment.LIVE
        return Environment.SHADOW if self.venue == "coinbase" else Environment.PAPER


def _need(value: str | None, var: str) -> str:
    if not value:
        raise UsageError(f"{var} is not set: put it in the environment or in .env (see config/settings.yaml)")
    return value


def live_options(rebalance: RebalanceSettings | None):
    """How long the live loop waits for one leg: the whole timeout, or its share per smart step."""
    from brokers.live import LiveOptions

    poll = float(os.environ.get("PARITY_POLL_INTERVAL") or LiveOptions().poll_interval_s)
    if rebalance is None:
        return LiveOptions(poll_interval_s=poll)
    wait = rebalance.order_timeout_s
    if rebalance.execution == "smart":
        wait = rebalance.order_timeout_s / (rebalance.smart_reprices + 2)
    return LiveOptions(order_timeout_s=wait, poll_interval_s=poll)


def alpaca_broker(settings: Settings, settings_path: str | None, req: BrokerRequest):
    from brokers.alpaca.broker import AlpacaBroker
    from brokers.alpaca.client import AlpacaEndpoints
    from framework.costs import VenueFees

    a = settings.execution.alpaca
    key, secret, fallback = a.keys(req.live)
    key = _need(key, "ALPACA_API_KEY" if req.live else "ALPACA_PAPER_KEY")
    secret = _need(secret, "ALPACA_API_SECRET" if req.live else "ALPACA_PAPER_SECRET")
    if fallback:
        from framework.config import note

        note(fallback)
    venue = load_venue("alpaca", settings_path)
    eq = venue.asset_classes.get("equity")
    cr = venue.asset_classes.get("crypto")
    return AlpacaBroker(AlpacaEndpoints(key, secret, not req.live, a.base_url, a.data_url, a.timeout_s, a.stream_url,
                                        a.streaming),
                        fees=VenueFees.from_venue(venue), min_notional_equity=eq.min_notional if eq else 1.0,
                        min_notional_crypto=cr.min_notional if cr else 1.0,
                        requests_per_minute=a.requests_per_minute, options=live_options(req.rebalance))


def coinbase_venue(settings: Settings, settings_path: str | None, req: BrokerRequest):
    from brokers.coinbase.broker import CoinbaseBroker
    from brokers.coinbase.client import CoinbaseEndpoints
    from framework.costs import VenueFees

    c = settings.execution.coinbase
    if not c.key_file and not (c.api_key and c.api_secret):
        raise UsageError("COINBASE_API_KEY and COINBASE_API_SECRET are not set (a CDP key name and its PEM), and no "
                         "execution.coinbase.key_file is configured: put them in the environment or .env")
    endpoints = CoinbaseEndpoints(c.api_key, c.api_secret, c.key_file, c.base_url, c.ca_bundle, c.timeout_s,
                                  c.stream_url, c.streaming)
    return CoinbaseBroker(endpoints, requests_per_second=c.requests_per_second,
                          fees=VenueFees.from_venue(load_venue("coinbase", settings_path)),
                          options=live_options(req.rebalance))


def shadow_broker(settings: Settings, settings_path: str | None, req: BrokerRequest, ledger):
    """Coinbase paper: the simulator at Coinbase's live prices, its book read from the ledger's
    shadow account (``coinbase:shadow:default``)."""
    from brokers.shadow import ShadowBook, ShadowBroker
    from framework.config import SimulationSettings, load_strategy
    from framework.costs import VenueFees
    from framework.ledger import iso

    try:
        sim = load_strategy("default", settings_path).simulation
    except UsageError:
        sim = SimulationSettings()
    account = Account("coinbase", Environment.SHADOW)
    held = ledger.positions(account.key)
    cost = {s: ledger.average_cost(account.key, s) for s in held}
    cash = sim.cash + ledger.cash_flow(account.key)
    runs = ledger.runs_of(account.key)
    today = np.datetime64(time.time_ns(), "ns").astype("datetime64[D]")
    before = ledger.equity_before(runs, iso(today)) if runs else None
    book = ShadowBook(held, cost, cash, before if before is not None else sim.cash)
    return ShadowBroker(coinbase_venue(settings, settings_path, req), book,
                        fees=VenueFees.from_venue(load_venue("coinbase", settings_path)), slippage_bps=sim.slippage.bps)


def _enabled(name: str, settings: Settings, settings_path: str | None) -> None:
    """Refuse a broker that settings.yaml disables (``execution.NAME.enabled: false``)."""
    if not getattr(settings.execution, name).enabled:
        where = settings_path or settings.source
        raise UsageError(f"{name} is disabled: execution.{name}.enabled is false in {where}; set it to true "
                         f"there to use {name}")


def build_broker(req: BrokerRequest, settings: Settings, settings_path: str | None, ledger=None):
    """The Broker for ``req``, complete."""
    for name in venue_urls(settings, req.venue):
        _enabled(name, settings, settings_path)
    if req.venue == "routed":
        from brokers.routed import RoutedBroker

        subs = {n: build_broker(BrokerRequest(n, req.live, req.rebalance), settings, settings_path, ledger)
                for n in ("alpaca", "coinbase")}
        return RoutedBroker(subs, req.route or (lambda s: "coinbase" if "/" in s else "alpaca"), req.rebalance)
    if req.venue == "alpaca":
        return alpaca_broker(settings, settings_path, req)
    if req.venue == "coinbase":
        if req.live:
            return coinbase_venue(settings, settings_path, req)
        return shadow_broker(settings, settings_path, req, ledger)
    raise UsageError(f"unknown broker {req.venue!r}: choose alpaca or coinbase")


def account_of(broker, req: BrokerRequest) -> Account:
    """The account ``broker`` trades (asks the venue for its account id; shadow has one account)."""
    env = req.environment
    if env == Environment.SHADOW:
        return Account("coinbase", env)
    return Account(broker.name, env, broker.account_id())


# ---------------------------------------------------------------- the live gate (SPEC §13)
def venue_urls(settings: Settings, venue: str) -> dict[str, str | None]:
    """Each venue a command would trade at, with its configured ``base_url`` (None: the venue's own)."""
    names = ("alpaca", "coinbase") if venue == "routed" else (venue,)
    return {n: getattr(settings.execution, n).base_url for n in names}


def production_venues(settings: Settings, venue: str) -> list[str]:
    """The venues whose endpoint is production: every one not on a loopback address."""
    return [n for n, url in venue_urls(settings, venue).items() if not is_loopback(url)]


def gate_note(settings: Settings, venue: str) -> str:
    urls = ", ".join(f"{n} base_url {u}" for n, u in venue_urls(settings, venue).items())
    return (f"NOTE: live gate skipped: {urls} is a loopback address (a local test server), "
            "not the venue's production endpoint")
