"""What every fault or kill case must show afterwards, venue-neutral:

* zero duplicate orders on the server: each client order id at most once, and no order whose id
  is not one of the batch's deterministic ids (a blind resend would carry a new id);
* final server positions equal the approved targets within one increment of the venue;
* every server-side fill is in the ledger (per client order id: quantity and notional; by trade id
  where the venue has trade ids), and nothing is in the ledger that the server did not fill;
* the ledger passes ``check_ledger`` and holds no order still marked working.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from framework.ledger.check import check_ledger


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0


def targets_from_plan(plan: dict, held: dict[str, float]) -> dict[str, float]:
    """Final quantities the risk-approved plan aims at: what is held plus every planned order."""
    out = dict(held)
    for o in plan["orders"]:
        out[o["symbol"]] = out.get(o["symbol"], 0.0) + (o["qty"] if o["side"] == "buy" else -o["qty"])
    return out


def duplicate_orders(venue, allowed_cids: set[str] | None) -> tuple[int, list[str]]:
    orders = venue.orders()
    counts = Counter(o.client_order_id for o in orders)
    problems = [f"client order id {c} is on the server {n} times" for c, n in counts.items() if n > 1]
    n = sum(k - 1 for k in counts.values() if k > 1)
    if allowed_cids is not None:
        strangers = [o for o in orders if o.client_order_id not in allowed_cids]
        n += len(strangers)
        problems += [f"server order {o.client_order_id} ({o.side} {o.symbol}) is not one of the batch's ids"
                     for o in strangers]
    return n, problems


def ledger_fills(path: Path) -> tuple[dict[str, tuple[float, float]], Counter]:
    db = sqlite3.connect(str(path))
    try:
        per = {c: (float(q), float(v)) for c, q, v in db.execute(
            "SELECT client_order_id, SUM(qty), SUM(qty*price) FROM fills GROUP BY client_order_id")}
        tids = Counter(t for (t,) in db.execute("SELECT trade_id FROM fills WHERE trade_id IS NOT NULL"))
        return per, tids
    finally:
        db.close()


def open_ledger_orders(path: Path) -> list[tuple]:
    db = sqlite3.connect(str(path))
    try:
        return db.execute("SELECT run_id, client_order_id, status FROM orders WHERE status IN "
                          "('planned','new','partially_filled')").fetchall()
    finally:
        db.close()


def fills_in_ledger(venue) -> list[str]:
    problems = []
    by_order = {o.order_id: o for o in venue.orders()}
    server: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    tids = []
    for f in venue.fills():
        o = by_order.get(f.order_id)
        if o is None:
            problems.append(f"server fill of unknown order {f.order_id}")
            continue
        server[o.client_order_id][0] += f.qty
        server[o.client_order_id][1] += f.qty * f.price
        if f.trade_id is not None:
            tids.append(f.trade_id)
    if not venue.ledger.exists():
        return problems + ([f"{len(server)} order(s) filled on the server but there is no ledger"] if server else [])
    booked, ledger_tids = ledger_fills(venue.ledger)
    for cid, (q, v) in server.items():
        bq, bv = booked.get(cid, (0.0, 0.0))
        if abs(bq - q) > 1e-9 * max(1.0, q):
            problems.append(f"order {cid}: server filled {q:.12g}, ledger holds {bq:.12g}")
        elif abs(bv - v) > 1e-6 * max(1.0, v):
            problems.append(f"order {cid}: server fill notional {v:.6f}, ledger {bv:.6f}")
    for cid, (bq, _) in booked.items():
        if cid not in server and bq > 0:
            problems.append(f"order {cid}: ledger holds fills of {bq:g} the server never made")
    missing = [t for t in tids if t not in ledger_tids]
    if missing:
        problems.append(f"{len(missing)} server trade id(s) not in the ledger, e.g. {missing[0]}")
    return problems


def positions_at_targets(venue, targets: dict[str, float]) -> list[str]:
    held = venue.positions()
    problems = []
    for s in sorted(set(targets) | set(held)):
        want, got = targets.get(s, 0.0), held.get(s, 0.0)
        if abs(want - got) > venue.increment(s) + 1e-9 * max(1.0, abs(want)):
            problems.append(f"{s}: server holds {got:.12g}, the approved target is {want:.12g}")
    return problems


def check_all(venue, *, targets: dict[str, float] | None, allowed_cids: set[str] | None,
              settled: bool = True) -> Outcome:
    out = Outcome()
    out.duplicates, dup = duplicate_orders(venue, allowed_cids)
    out.problems += dup
    if targets is not None:
        out.problems += positions_at_targets(venue, targets)
    out.problems += fills_in_ledger(venue)
    if venue.ledger.exists():
        out.problems += [f"check_ledger: {p}" for p in check_ledger(venue.ledger)]
        if settled:
            out.problems += [f"ledger still has {st} order {cid} (run {rid})"
                             for rid, cid, st in open_ledger_orders(venue.ledger)]
    return out
