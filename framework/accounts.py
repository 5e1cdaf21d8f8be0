"""Accounts (SPEC §17): which venue account a run, an order, a fill or a lease belongs to.

An account is (venue, environment, the venue's account id). Every ledger read that decides what to
send or what was filled is scoped to one account, so a backtest, a paper run and a live run of the
same strategy never share client order ids, fills or open orders.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class Environment(StrEnum):
    """Where orders of an account go: nowhere (sim), a paper venue, a live venue, or the simulator
    priced from a live venue (shadow)."""

    SIM = "sim"
    PAPER = "paper"
    LIVE = "live"
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class Account:
    """One venue account: ``key`` is how the ledger stores it."""

    venue: str
    environment: Environment
    account_id: str = "default"

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.environment.value}:{self.account_id}"

    @property
    def scope(self) -> str:
        """The part of every client order id that keeps this environment's ids apart from the others'.

        Empty for the simulator (a backtest's ids are what they always were); ``paper``, ``live``,
        ``shadow`` otherwise, so a paper order can never carry a backtest's or a live order's id."""
        return "" if self.environment == Environment.SIM else self.environment.value

    @staticmethod
    def parse(key: str) -> Account:
        venue, env, acct = key.split(":", 2)
        return Account(venue, Environment(env), acct)

    def __str__(self) -> str:
        return self.key


def is_loopback(url: str | None) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ``localhost``, ``::1``): a local test
    server. ``None`` (the venue's default endpoint) and every other host are production."""
    if not url:
        return False
    text = url.strip()
    if "//" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return False
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
