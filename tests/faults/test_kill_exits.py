"""SIGKILL ``parity execute`` around the protective exits of SPEC §20, restart, check.

Kill points (the server kills the client at the k-th OCO order of the cycle, k random):

- ``before_protect``: the entries have filled, the OCO's intent is in the ledger, its POST arrives
  and the client dies before the server stores it: the restart places it, once;
- ``after_protect``: the server stored the OCO, the client never heard back: the restart finds it
  (its stop leg by the pair's client order id) and sends nothing for it.

Each case: random fresh symbols and weights with levels 8% under / 12% over the price; after the
restart, every symbol holds exactly one OCO (the take-profit with its held stop leg) at the
signal's levels, no client order id twice, the ledger's stop and take orders working once each,
``check_ledger`` clean; a third run sends no order at all. ``PARITY_FAULT_RUNS`` cases per point
(at most 3 here: each case starts its own server and three processes).
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter

import pytest

from framework.ledger import Ledger
from framework.ledger.check import check_ledger
from tests.faults import runner
from tests.faults.venues import ENV, AlpacaVenue, now_stamp, write_strategy

pytestmark = pytest.mark.faults

POINTS = ("before_protect", "after_protect")
RUNS = min(3, int(os.environ.get("PARITY_FAULT_RUNS", "3")))
CASES = [(p, s) for p in POINTS for s in range(RUNS)]


def write_exit_signals(path, weights: dict[str, float], prices: dict[str, float]) -> dict[str, tuple[float, float]]:
    t = now_stamp()
    levels = {s: (round(prices[s] * 0.92, 2), round(prices[s] * 1.12, 2)) for s in weights}
    rows = ["symbol,time,side,weight,confidence,stop_loss,take_profit"]
    rows += [f"{s},{t},1,{w:.4f},0.9,{levels[s][0]},{levels[s][1]}" for s, w in weights.items()]
    path.write_text("\n".join(rows) + "\n")
    return levels


@pytest.mark.parametrize("point,seed", CASES, ids=[f"alpaca-{p}-{s}" for p, s in CASES])
def test_kill_around_the_protective_order_and_restart(tmp_path, point, seed):
    rng = random.Random(f"exits:{point}:{seed}")
    root = tmp_path / "case"
    v = AlpacaVenue(root, fill_after_polls=rng.choice([1, 2]))
    try:
        syms = rng.sample(sorted(s for s in v.symbols if s not in v.whole_shares), rng.randint(1, 3))
        weights = {s: round(rng.uniform(0.08, 0.25), 4) for s in syms}
        write_strategy(root)
        signals = root / "signals.csv"
        levels = write_exit_signals(signals, weights, v.symbols)
        n, k = len(syms), rng.randint(1, len(syms))
        kind = "kill_client_before" if point == "before_protect" else "kill_client_after"

        first = runner.start(v.execute_args(signals), root, ENV, "killed")
        v.inject(kind, method="POST", path="/v2/orders", pid=first.pid, skip=n + k - 1)
        first.go()
        code = first.wait()
        assert code == -9 and len(v.kills()) == 1, (code, v.kills(), first.output)
        v.clear_faults()
        ocos_before = [o for o in v.srv.orders_submitted() if o["order_class"] == "oco"]
        assert len(ocos_before) == (k - 1 if point == "before_protect" else k)

        code, again = runner.run(v.execute_args(signals), root, ENV, "recovery")
        assert code == 0, again.output
        sent = v.srv.orders_submitted()
        counts = Counter(o["client_order_id"] for o in sent)
        assert max(counts.values()) == 1, counts
        ocos = [o for o in sent if o["order_class"] == "oco"]
        assert sorted(o["symbol"] for o in ocos) == sorted(syms)        # one per position, placed once
        for o in ocos:
            stop, take = levels[o["symbol"]]
            assert o["status"] in ("new", "pending_new", "accepted") and float(o["limit_price"]) == take
            assert [(leg["type"], leg["status"], float(leg["stop_price"])) for leg in o["legs"]] == \
                [("stop", "held", stop)]
            assert float(o["qty"]) == int(v.srv.position_qty(o["symbol"]))
        db = sqlite3.connect(v.ledger)
        # per client order id its newest row (an intent the killed run never sent is closed in that run
        # and recorded again by the run that sends it, SPEC §11)
        rows = db.execute("SELECT leg, status FROM orders o WHERE leg IN ('stop','take') AND rowid = "
                          "(SELECT MAX(rowid) FROM orders p WHERE p.client_order_id = o.client_order_id)").fetchall()
        db.close()
        assert sorted(r[0] for r in rows) == sorted(["stop", "take"] * n)
        assert all(r[1] == "new" for r in rows), rows       # working, once each
        ledger = Ledger(v.ledger)
        assert check_ledger(ledger) == []
        ledger.close()

        posts = v.n_posts()
        code, third = runner.run(v.execute_args(signals), root, ENV, "again")
        assert code == 0, third.output
        assert v.n_posts() == posts, "a re-run of a protected batch sent orders again"
    finally:
        v.close()
