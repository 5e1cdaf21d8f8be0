"""SIGKILL ``parity execute`` around the protective exits of SPEC §20, restart, check.

Kill points (the server kills the client at the k-th protective order of the cycle, k random: an
Alpaca OCO, a Coinbase ``trigger_bracket_gtc``):

- ``before_protect``: the entries have filled, the OCO's intent is in the ledger, its POST arrives
  and the client dies before the server stores it: the restart places it, once;
- ``after_protect``: the server stored the OCO, the client never heard back: the restart finds it
  (its stop leg by the pair's client order id) and sends nothing for it.

Each case: random fresh symbols and weights with levels 8% under / 12% over the price; after the
restart, every symbol holds exactly one protective order (Alpaca: the take-profit with its held stop
leg; Coinbase: one bracket) at the signal's levels, no client order id twice, the ledger's stop and take orders working once each,
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
from tests.faults.venues import ENV, AlpacaVenue, CoinbaseVenue, now_stamp, write_strategy

pytestmark = pytest.mark.faults

POINTS = ("before_protect", "after_protect")
RUNS = min(3, int(os.environ.get("PARITY_FAULT_RUNS", "3")))
CASES = [(v, p, s) for v in ("alpaca", "coinbase") for p in POINTS for s in range(RUNS)]


def protective(v) -> list[dict]:
    """The venue's protective orders as (symbol, status, stop, take, qty, client order id)."""
    out = []
    if v.name == "alpaca":
        for o in v.srv.orders_submitted():
            if o["order_class"] == "oco":
                legs = [(leg["type"], leg["status"]) for leg in o["legs"]]
                assert legs == [("stop", "held")], legs
                out.append(dict(symbol=o["symbol"], open=o["status"] in ("new", "pending_new", "accepted"),
                                stop=float(o["legs"][0]["stop_price"]), take=float(o["limit_price"]),
                                qty=float(o["qty"]), cid=o["client_order_id"]))
        return out
    for o in v.srv.orders():
        cfg = o["order_configuration"].get("trigger_bracket_gtc")
        if cfg:
            out.append(dict(symbol=o["product_id"].replace("-", "/"), open=o["status"] == "OPEN",
                            stop=float(cfg["stop_trigger_price"]), take=float(cfg["limit_price"]),
                            qty=float(cfg["base_size"]), cid=o["client_order_id"]))
    return out


def write_exit_signals(path, weights: dict[str, float], prices: dict[str, float]) -> dict[str, tuple[float, float]]:
    t = now_stamp()
    levels = {s: (round(prices[s] * 0.92, 2), round(prices[s] * 1.12, 2)) for s in weights}
    rows = ["symbol,time,side,weight,confidence,stop_loss,take_profit"]
    rows += [f"{s},{t},1,{w:.4f},0.9,{levels[s][0]},{levels[s][1]}" for s, w in weights.items()]
    path.write_text("\n".join(rows) + "\n")
    return levels


@pytest.mark.parametrize("venue,point,seed", CASES, ids=[f"{v}-{p}-{s}" for v, p, s in CASES])
def test_kill_around_the_protective_order_and_restart(tmp_path, venue, point, seed):
    rng = random.Random(f"exits:{venue}:{point}:{seed}")
    root = tmp_path / "case"
    if venue == "alpaca":
        v = AlpacaVenue(root, fill_after_polls=rng.choice([1, 2]))
        pool = sorted(s for s in v.symbols if s not in v.whole_shares)
    else:
        v = CoinbaseVenue(root, rate=300)
        pool = ["BTC/USD", "ETH/USD", "SOL/USD"]
    try:
        syms = rng.sample(pool, rng.randint(1, len(pool)))
        weights = {s: round(rng.uniform(0.08, 0.25), 4) for s in syms}
        write_strategy(root)
        signals = root / "signals.csv"
        levels = write_exit_signals(signals, weights, v.symbols)
        n, k = len(syms), rng.randint(1, len(syms))
        kind = "kill_client_before" if point == "before_protect" else "kill_client_after"

        first = runner.start(v.execute_args(signals), root, ENV, "killed")
        v.inject(kind, method="POST", path="/v2/orders" if venue == "alpaca" else "/orders", pid=first.pid,
                 skip=n + k - 1, exact=venue == "coinbase")
        first.go()
        code = first.wait()
        assert code == -9 and len(v.kills()) == 1, (code, v.kills(), first.output)
        v.clear_faults()
        assert len(protective(v)) == (k - 1 if point == "before_protect" else k)

        code, again = runner.run(v.execute_args(signals), root, ENV, "recovery")
        assert code == 0, again.output
        counts = Counter(o.client_order_id for o in v.orders())
        assert max(counts.values()) == 1, counts
        placed = protective(v)
        assert sorted(o["symbol"] for o in placed) == sorted(syms)     # one per position, placed once
        held = v.positions()
        for o in placed:
            assert o["open"] and (o["stop"], o["take"]) == levels[o["symbol"]], o
            want = int(held[o["symbol"]]) if venue == "alpaca" else held[o["symbol"]]
            assert abs(o["qty"] - want) <= v.increment(o["symbol"]), (o, held)
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
