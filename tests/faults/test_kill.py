"""SIGKILL ``parity execute`` at every step of a cycle, restart it, and check the outcome.

For each venue and kill point, ``PARITY_FAULT_RUNS`` randomized cases (default 20 for Alpaca and
Coinbase): random symbols, holdings and weights (sells and buys in every batch), a random order of
the batch at which the kill happens, random fill speed. Each case:

1. ``--dry-run --json`` gives the risk-approved plan, its client order ids and the targets;
2. ``execute`` runs until the server SIGKILLs it at the kill point (exit -9, one kill recorded);
3. the same ``execute`` again (recovery): exit 0;
4. (every 4th case) once more: exit 0 and not a single new order request (idempotent);
5. checks: no duplicate order on the server, positions at the targets within one increment, every
   server fill in the ledger, ``check_ledger`` clean, nothing left "working" in the ledger.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.faults.checks import check_all
from tests.faults.scenario import KILL_COUNTS, KILL_POINTS, STATS, kill_fault, make_case

pytestmark = pytest.mark.faults


def _runs(venue: str) -> int:
    return int(os.environ.get(f"PARITY_FAULT_RUNS_{venue.upper()}", os.environ.get("PARITY_FAULT_RUNS", "20")))


AGAIN_EVERY = 4
CASES = [(v, p, s) for v in ("alpaca", "coinbase") for p in KILL_POINTS for s in range(_runs(v))]


@pytest.mark.parametrize("venue,point,seed", CASES, ids=[f"{v}-{p}-{s:02d}" for v, p, s in CASES])
def test_kill_and_restart(tmp_path, venue, point, seed):
    rng = random.Random(f"{venue}:{point}:{seed}")
    server_kw: dict = {}
    if venue == "alpaca":
        server_kw["fill_after_polls"] = rng.choice([1, 2, 3])
        if point == "during_fills":
            server_kw.update(fill_after_polls=1, partial_fill_fraction=rng.choice([0.25, 0.5, 0.7]))
    case = make_case(venue, tmp_path / "case", rng, server_kw=server_kw,
                     venue_kw={"rate": 300} if venue == "coinbase" else None)
    v = case.venue
    try:
        case.plan_it()
        assert case.n_reduce >= 1 and case.n_add >= 1, case.plan
        fault = kill_fault(venue, point, rng, case.n_reduce, case.n_add)

        first = case.start("killed")
        v.inject(pid=first.pid, **fault)
        first.go()
        code = first.wait()
        kills = v.kills()
        assert code == -9 and len(kills) == 1, (f"expected one SIGKILL at {point} ({fault}), got exit {code}, "
                                                f"kills {kills}\n{case.transcript()}")
        v.clear_faults()
        STATS["kill_runs"] += 1
        KILL_COUNTS[f"{venue}:{point}"] = KILL_COUNTS.get(f"{venue}:{point}", 0) + 1

        code, _ = case.run("recovery")
        assert code == 0, case.transcript()
        if seed % AGAIN_EVERY == 0:   # a third run of the finished batch: nothing may be sent
            posts = v.n_posts()
            code, _ = case.run("again")
            assert code == 0, case.transcript()
            assert v.n_posts() == posts, "a re-run of a completed batch sent orders again\n" + case.transcript()

        out = check_all(v, targets=case.targets, allowed_cids=case.cids)
        STATS["duplicates"] += out.duplicates
        STATS["lost_fills"] += sum("ledger holds" in p or "not in the ledger" in p for p in out.problems)
        assert not out.problems, "\n".join(out.problems) + f"\nfault {fault}\nplan {case.plan}\n" + case.transcript()
    finally:
        v.close()


@pytest.mark.parametrize("venue,point", [("alpaca", "after_send")])
def test_kill_and_restart_as_cron_runs_it(tmp_path, monkeypatch, venue, point):
    """The same, with ``python -m framework`` processes instead of forks of a warm process."""
    monkeypatch.setenv("PARITY_FAULT_CLIENT", "subprocess")
    test_kill_and_restart(tmp_path, venue, point, 1001)
