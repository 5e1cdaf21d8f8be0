"""Randomized rebalance cases: a few symbols, some already held (so every batch has sells AND
buys), random target weights; and the kill points of a cycle expressed as server faults."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults import runner
from tests.faults.checks import targets_from_plan
from tests.faults.venues import ENV, AlpacaVenue, CoinbaseVenue, write_signals, write_strategy

KILL_POINTS = ("after_intent", "after_send", "after_ack", "between_legs", "during_fills")

STATS: dict[str, int] = {"kill_runs": 0, "fault_runs": 0, "faults_injected": 0, "duplicates": 0,
                         "lost_fills": 0, "client_runs": 0}
KILL_COUNTS: dict[str, int] = {}


@dataclass
class Case:
    venue: object
    signals: Path
    held: dict[str, float]
    weights: dict[str, float]
    plan: dict = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    cids: set[str] = field(default_factory=set)
    n_reduce: int = 0
    n_add: int = 0
    runs: list = field(default_factory=list)

    def run(self, name: str, *extra: str, timeout: float = 90.0) -> tuple[int, runner.Run]:
        STATS["client_runs"] += 1
        code, r = runner.run(self.venue.execute_args(self.signals, *extra), self.venue.root, ENV, name, timeout)
        self.runs.append((name, code, r))
        return code, r

    def start(self, name: str, *extra: str) -> runner.Run:
        STATS["client_runs"] += 1
        r = runner.start(self.venue.execute_args(self.signals, *extra), self.venue.root, ENV, name)
        self.runs.append((name, None, r))
        return r

    def transcript(self) -> str:
        parts = []
        for name, code, r in self.runs:
            parts.append(f"===== {name} (exit {code})\n{r.output}")
        return "\n".join(parts)

    def plan_it(self) -> None:
        """``--dry-run --json``: the approved plan, its client order ids and the final targets."""
        import json

        code, r = self.run("dry-run", "--dry-run", "--json")
        assert code == 0, r.output
        self.plan = json.loads(r.stdout)
        self.targets = targets_from_plan(self.plan, self.held)
        self.cids = {o["client_order_id"] for o in self.plan["orders"]}
        self.n_reduce = sum("-reduce-" in o["client_order_id"] for o in self.plan["orders"])
        self.n_add = sum("-add-" in o["client_order_id"] for o in self.plan["orders"])


def make_case(venue_name: str, root: Path, rng: random.Random, *, server_kw: dict | None = None,
              min_symbols: int = 2, max_symbols: int = 4, settings_extra: str = "", venue_kw: dict | None = None) -> Case:
    """A venue with random holdings and a signal file whose plan has at least one sell and one buy.

    Kill tests run Coinbase at 300 requests/s (server and client alike): its real 30/s would make
    every case wait on the limiter; the rate limits themselves are what the load tests check."""
    cls = AlpacaVenue if venue_name == "alpaca" else CoinbaseVenue
    cash = 100_000.0
    syms = rng.sample(sorted(cls.symbols if venue_name == "alpaca" else
                             [p.replace("-", "/") for p in CoinbaseVenue.products]),
                      rng.randint(min_symbols, max_symbols))
    n_held = rng.randint(1, len(syms) - 1)
    held_syms, fresh = syms[:n_held], syms[n_held:]
    prices = (cls.symbols if venue_name == "alpaca" else
              {p.replace("-", "/"): px for p, (_, px) in CoinbaseVenue.products.items()})
    held: dict[str, float] = {}
    venue = cls(root, cash=cash, settings_extra=settings_extra, **(venue_kw or {}), **(server_kw or {}))
    for s in held_syms:
        inc = venue.increment(s)
        q = math.floor(rng.uniform(6_000, 18_000) / prices[s] / inc) * inc
        q = float(f"{q:.9f}")
        venue.hold(s, q)
        held[s] = q
    equity = cash + sum(q * prices[s] for s, q in held.items())
    weights: dict[str, float] = {}
    first = held_syms[0]
    cur = held[first] * prices[first] / equity
    weights[first] = rng.choice([0.0, round(cur * rng.uniform(0.2, 0.6), 4)])
    for s in held_syms[1:]:
        weights[s] = round(rng.uniform(0.02, 0.18), 4)
    for s in fresh:
        weights[s] = round(rng.uniform(0.05, 0.18), 4)
    write_strategy(root)
    signals = write_signals(root / "signals.csv", weights)
    return Case(venue, signals, held, weights)


def kill_fault(venue_name: str, point: str, rng: random.Random, n_reduce: int, n_add: int) -> dict:
    """The server fault that SIGKILLs the client at ``point`` (a random order of the batch where
    the point allows a choice)."""
    n = n_reduce + n_add
    k = rng.randint(1, n)
    if venue_name == "alpaca":
        post = {"method": "POST", "path_prefix": "/v2/orders"}
        if point == "after_intent":       # the POST of order k arrives; its intent is in the ledger
            return dict(kind="kill_client_before", method="POST", path="/v2/orders", skip=k - 1)
        if point == "after_send":         # the server stored order k; the client never hears back
            return dict(kind="kill_client_after", method="POST", path="/v2/orders", skip=k - 1)
        if point == "after_ack":          # the client got the answer to order k: its next request
            return dict(kind="kill_client_before", method=None, path="/v2/", arm={**post, "count": k})
        if point == "between_legs":       # the account refresh after the sells
            return dict(kind=rng.choice(["kill_client_before", "kill_client_after"]), method="GET",
                        path="/v2/account", arm={**post, "count": n_reduce})
        if point == "during_fills":       # a poll that makes (partial) fills happen, answer never seen
            return dict(kind="kill_client_after", method="GET", path="/v2/orders",
                        arm={**post, "count": rng.choice([n_reduce, n])}, skip=rng.choice([0, 1]))
    else:
        post = {"method": "POST", "path": "/orders"}
        if point == "after_intent":
            return dict(kind="kill_client_before", method="POST", path="/orders", exact=True, skip=k - 1)
        if point == "after_send":         # market orders fill inside the POST: filled, answer lost
            return dict(kind="kill_client_after", method="POST", path="/orders", exact=True, skip=k - 1)
        if point == "after_ack":
            return dict(kind="kill_client_before", method=None, path="/", arm={**post, "count": k})
        if point == "between_legs":
            return dict(kind=rng.choice(["kill_client_before", "kill_client_after"]), method="GET",
                        path="/accounts", exact=True, arm={**post, "count": n_reduce})
        if point == "during_fills":       # while the client reads the fills of a leg
            return dict(kind=rng.choice(["kill_client_before", "kill_client_after"]), method="GET",
                        path="/orders/historical/fills", exact=True, arm={**post, "count": rng.choice([n_reduce, n])})
    raise ValueError(point)
