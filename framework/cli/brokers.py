"""Composition of live brokers from settings: keys from the environment, endpoints, venue rules."""

from __future__ import annotations

import os

from framework.config import Settings, load_venue
from framework.errors import UsageError


def _need(value: str | None, var: str) -> str:
    if not value:
        raise UsageError(f"{var} is not set: put it in the environment or in .env (see config/settings.yaml)")
    return value


def alpaca_broker(settings: Settings, settings_path: str | None, *, live: bool, ledger=None, rebalance=None):
    from brokers.alpaca.broker import AlpacaBroker
    from brokers.alpaca.client import AlpacaEndpoints
    from framework.costs import VenueFees

    a = settings.execution.alpaca
    key, secret, fallback = a.keys(live)
    key = _need(key, "ALPACA_API_KEY" if live else "ALPACA_PAPER_KEY")
    secret = _need(secret, "ALPACA_API_SECRET" if live else "ALPACA_PAPER_SECRET")
    if fallback:
        from framework.config import note

        note(fallback)
    venue = load_venue("alpaca", settings_path)
    eq = venue.asset_classes.get("equity")  # type: ignore[call-overload]
    cr = venue.asset_classes.get("crypto")  # type: ignore[call-overload]
    broker = AlpacaBroker(AlpacaEndpoints(key, secret, not live, a.base_url, a.data_url, a.timeout_s),
                          fees=VenueFees.from_venue(venue), min_notional_equity=eq.min_notional if eq else 1.0,
                          min_notional_crypto=cr.min_notional if cr else 1.0,
                          requests_per_minute=a.requests_per_minute,
                          known_fills=ledger.fill_totals if ledger is not None else None)
    if rebalance is not None:
        broker.order_timeout_s = order_wait(rebalance)
        broker.execution = rebalance.execution
        broker.smart_reprices = rebalance.smart_reprices
    if os.environ.get("PARITY_POLL_INTERVAL"):
        broker.poll_interval_s = float(os.environ["PARITY_POLL_INTERVAL"])
    return broker


def order_wait(rebalance) -> float:
    """How long the broker waits for one leg: the whole timeout, or its share per smart step."""
    if rebalance.execution == "smart":
        return rebalance.order_timeout_s / (rebalance.smart_reprices + 2)
    return rebalance.order_timeout_s


def production_endpoint(broker) -> bool:
    ep = getattr(broker, "endpoints", None)
    return bool(getattr(ep, "production", True))


def _enabled(name: str, settings: Settings, settings_path: str | None) -> None:
    """Refuse a broker that settings.yaml disables (``execution.NAME.enabled: false``)."""
    if not getattr(settings.execution, name).enabled:
        where = settings_path or settings.source
        raise UsageError(f"{name} is disabled: execution.{name}.enabled is false in {where}; set it to true "
                         f"there to use {name}")


def make_broker(name: str, settings: Settings, settings_path: str | None, *, live: bool, ledger=None,
                rebalance=None, route=None):
    if name in ("alpaca", "coinbase"):
        _enabled(name, settings, settings_path)
    if name == "routed":
        from brokers.routed import RoutedBroker

        names = ("alpaca", "coinbase")
        subs = {n: make_broker(n, settings, settings_path, live=live, ledger=ledger, rebalance=rebalance)
                for n in names}
        return RoutedBroker(subs, route)
    if name == "alpaca":
        return alpaca_broker(settings, settings_path, live=live, ledger=ledger, rebalance=rebalance)
    if name == "coinbase":
        from framework.cli.coinbase_wiring import coinbase_broker

        return coinbase_broker(settings, settings_path, live=live, ledger=ledger, rebalance=rebalance)
    raise UsageError(f"unknown broker {name!r}: choose alpaca or coinbase")
