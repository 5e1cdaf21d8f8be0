"""SIGKILL ``parity execute --portfolio`` at every step of a portfolio cycle, restart it, check.

Three sleeves (0.3 / 0.5 / 0.2) with overlapping symbols on one Alpaca paper account that also
holds the user's own shares. A first cycle (no fault) builds the sleeves' positions; the second
batch moves every sleeve (sells and buys, some crossing inside the account) and is the one killed
at the kill points of ``test_kill.py`` (``PARITY_FAULT_RUNS`` random cases each), restarted, and
— every 4th case — run once more. Checks: the harness's own (no duplicate order, positions at the
plan's targets, every server fill in the ledger, ``check_ledger`` clean, nothing left working),
and the sleeves' books: every fill allocated once (the sleeves' quantities and cash add up to the
account's fills), the sleeves plus the user's own shares are the server's positions, and the
user's shares are untouched.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3

import pytest

from tests.faults import runner
from tests.faults.checks import check_all, targets_from_plan
from tests.faults.scenario import KILL_COUNTS, KILL_POINTS, STATS, kill_fault
from tests.faults.venues import ENV, AlpacaVenue, now_stamp, write_signals

pytestmark = pytest.mark.faults

SLEEVES = {"alpha": 0.3, "beta": 0.5, "gamma": 0.2}
USER = ("AIG", 25.0)
SYMS = ["AAPL", "MSFT", "SPY", "BAC"]


def _runs() -> int:
    return int(os.environ.get("PARITY_FAULT_RUNS_ALPACA", os.environ.get("PARITY_FAULT_RUNS", "20")))


def _weights(rng: random.Random) -> dict[str, dict[str, float]]:
    out = {}
    for name in SLEEVES:
        picks = rng.sample(SYMS, rng.randint(2, 3))
        out[name] = {s: (round(rng.uniform(0.05, 0.18), 4) if s in picks else 0.0) for s in SYMS}
    return out


class PortfolioCase:
    def __init__(self, root, rng: random.Random, server_kw: dict):
        self.v = AlpacaVenue(root, **server_kw)
        self.v.hold(*USER)
        (root / "strategies").mkdir(parents=True, exist_ok=True)
        (root / "portfolios").mkdir(parents=True, exist_ok=True)
        for name in SLEEVES:
            (root / "strategies" / f"{name}.yaml").write_text(
                f"name: {name}\nsignals: {{path: {root / (name + '.csv')}}}\nrebalance: {{drift_threshold: 0.0}}\n")
        (root / "portfolios" / "three.yaml").write_text(
            f"sleeves: {json.dumps(SLEEVES)}\nrebalance: {{order_timeout_s: 10}}\n")
        self.root = root
        self.rng = rng
        self.runs: list = []

    def write(self, weights: dict[str, dict[str, float]], stamp: str) -> None:
        for name, w in weights.items():
            write_signals(self.root / f"{name}.csv", w, stamp)

    def args(self, *extra: str) -> list[str]:
        return ["--config", str(self.v.settings), "execute", "--portfolio", "three", "--paper", *extra]

    def run(self, name: str, *extra: str) -> tuple[int, runner.Run]:
        STATS["client_runs"] += 1
        code, r = runner.run(self.args(*extra), self.root, ENV, name, 90.0)
        self.runs.append((name, code, r))
        return code, r

    def transcript(self) -> str:
        return "\n".join(f"===== {n} (exit {c})\n{r.output}" for n, c, r in self.runs)


def sleeve_problems(v: AlpacaVenue) -> list[str]:
    """The sleeves' books against the ledger's fills and the server's positions."""
    db = sqlite3.connect(str(v.ledger))
    try:
        fills = db.execute("SELECT symbol, SUM(CASE WHEN side='buy' THEN qty ELSE -qty END), "
                           "SUM(CASE WHEN side='buy' THEN -qty*price ELSE qty*price END - fee) FROM fills "
                           "GROUP BY symbol").fetchall()
        books = dict(db.execute("SELECT symbol, SUM(qty) FROM sleeve_trades WHERE kind != 'fund' "
                                "GROUP BY symbol").fetchall())
        cash = db.execute("SELECT COALESCE(SUM(cash), 0) FROM sleeve_trades WHERE kind != 'fund'").fetchone()[0]
        dup = db.execute("SELECT COUNT(*) FROM (SELECT key FROM sleeve_trades WHERE kind='fill' GROUP BY sleeve, key "
                         "HAVING COUNT(*) > 1)").fetchone()[0]
    finally:
        db.close()
    problems = []
    flow = 0.0
    for sym, q, c in fills:
        flow += c
        if abs((books.get(sym) or 0.0) - q) > 1e-6:
            problems.append(f"{sym}: the account's fills add up to {q:.9g}, the sleeves' books to {books.get(sym)}")
    if abs(cash - flow) > 0.005:
        problems.append(f"the sleeves' cash moved {cash:.4f}, the account's fills {flow:.4f}")
    if dup:
        problems.append(f"{dup} fill(s) allocated twice")
    held = v.positions()
    if held.get(USER[0]) != USER[1]:
        problems.append(f"the user's {USER[0]} changed: {held.get(USER[0])}")
    for sym in SYMS:
        if abs(held.get(sym, 0.0) - (books.get(sym) or 0.0)) > 1e-6:
            problems.append(f"{sym}: server holds {held.get(sym, 0.0):.9g}, the sleeves {books.get(sym)}")
    return problems


CASES = [(p, s) for p in KILL_POINTS for s in range(_runs())]


@pytest.mark.parametrize("point,seed", CASES, ids=[f"portfolio-{p}-{s:02d}" for p, s in CASES])
def test_kill_portfolio_cycle_and_restart(tmp_path, point, seed):
    rng = random.Random(f"portfolio:{point}:{seed}")
    server_kw: dict = {"fill_after_polls": rng.choice([1, 2, 3])}
    if point == "during_fills":
        server_kw.update(fill_after_polls=1, partial_fill_fraction=rng.choice([0.25, 0.5, 0.7]))
    case = PortfolioCase(tmp_path / "case", rng, server_kw)
    v = case.v
    try:
        t1 = now_stamp()
        case.write(_weights(rng), t1)
        code, _ = case.run("first")
        assert code == 0, case.transcript()
        first_cids = {o.client_order_id for o in v.orders()}
        held = v.positions()
        while True:     # the second batch: sells and buys at the venue
            w2 = _weights(rng)
            case.write(w2, "2099-01-01T00:00:00Z")   # a later stamp than the first batch, never stale
            code, r = case.run("dry-run", "--dry-run", "--json", "--force")
            assert code == 0, case.transcript()
            plan = json.loads(r.stdout)
            n_reduce = sum("-reduce-" in o["client_order_id"] for o in plan["orders"])
            n_add = sum("-add-" in o["client_order_id"] for o in plan["orders"])
            if n_reduce and n_add:
                break
        targets = targets_from_plan(plan, held)
        cids = first_cids | {o["client_order_id"] for o in plan["orders"]}
        fault = kill_fault("alpaca", point, rng, n_reduce, n_add)
        STATS["client_runs"] += 1
        first = runner.start(case.args("--force"), case.root, ENV, "killed")
        case.runs.append(("killed", None, first))
        v.inject(pid=first.pid, **fault)
        first.go()
        code = first.wait()
        assert code == -9 and len(v.kills()) == 1, f"no kill at {point} ({fault}): exit {code}\n{case.transcript()}"
        v.clear_faults()
        STATS["kill_runs"] += 1
        KILL_COUNTS[f"alpaca-portfolio:{point}"] = KILL_COUNTS.get(f"alpaca-portfolio:{point}", 0) + 1
        code, _ = case.run("recovery", "--force")
        assert code == 0, case.transcript()
        if seed % 4 == 0:
            posts = v.n_posts()
            code, _ = case.run("again", "--force")
            assert code == 0, case.transcript()
            assert v.n_posts() == posts, "a re-run of a completed portfolio batch sent orders\n" + case.transcript()
        out = check_all(v, targets=targets, allowed_cids=cids)
        STATS["duplicates"] += out.duplicates
        STATS["lost_fills"] += sum("ledger holds" in p or "not in the ledger" in p for p in out.problems)
        problems = out.problems + sleeve_problems(v)
        assert not problems, "\n".join(problems) + f"\nfault {fault}\nplan {plan}\n" + case.transcript()
    finally:
        v.close()
