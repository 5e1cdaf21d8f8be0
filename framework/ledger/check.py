"""A consistency check of the ledger: ``check_ledger(ledger) -> list[str]`` of problems (empty = sound).

Crash recovery is only as good as the ledger it starts from, so the fault tests (and anyone
after an incident) run this over the whole file. What an order *is* needs a definition first:

- In paper and live runs an order is a venue order, identified by its client order id within one
  account (the ``account`` column, SPEC §17): the venues refuse (Alpaca) or fold (Coinbase) a second order
  with the same id, and a re-run of the same batch — after a crash or on purpose — writes a new
  ledger row for the same venue order. Each row is what one run knew of that venue order; its fills
  are booked once, by whichever run saw them first. So the fills booked for a client order id over
  all runs of the account must equal the best-informed row's ``filled_qty`` (the largest), and no
  row may claim more than was booked.
- A backtest run is its own world: the same strategy replayed twice produces the same client
  order ids, and each replay's orders are checked against that replay's fills only.

Rules (each problem names the run, the client order id and the numbers):
  1. every fill belongs to an order row of its run;
  2. every order's ``filled_qty`` equals the sum of its fills as defined above (within 1e-9,
     relative above 1), and no row claims more;
  3. no order is ``filled`` without fills;
  4. no client order id appears twice within one run;
  5. no trade id appears twice within one account (or one backtest run);
  6. statuses are known values (orders, order events, cycles, runs);
  7. the cycles that orders and decisions reference exist, and every row's run exists;
  8. fills have a positive quantity and a positive finite price.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from pathlib import Path

from framework.order_ids import is_adjusting

TOLERANCE = 1e-9
ORDER_STATUSES = frozenset({"planned", "new", "partially_filled", "filled", "canceled", "rejected", "expired"})
# "mark": the final valuation row of a backtest
CYCLE_STATUSES = frozenset({"running", "done", "halted", "interrupted", "failed", "mark"})
RUN_STATUSES = frozenset({"running", "done", "halted", "interrupted", "failed", "snapshot"})


def check_ledger(ledger, run_ids: list[str] | None = None) -> list[str]:
    """Return every consistency problem of the ledger (a Ledger, a path or a connection).

    ``run_ids`` limits the report to rows of those runs (fills of earlier runs of the same account
    still count towards their orders). A Ledger (or a path, opened as one) is read whole, packed
    backtests included (``framework.ledger.packed``)."""
    only = set(run_ids) if run_ids is not None else None
    if isinstance(ledger, sqlite3.Connection):
        return _check(ledger, only)
    if isinstance(ledger, (str, Path)):
        from framework.ledger.core import Ledger

        own = Ledger(ledger)
        try:
            return check_ledger(own, run_ids)
        finally:
            own.close()
    if not hasattr(ledger, "reading"):
        raise TypeError(f"check_ledger needs a Ledger, a path or an sqlite3 connection, not {type(ledger).__name__}")
    with ledger.reading(every=True) as db:
        return _check(db, only)


def _check(db: sqlite3.Connection, only: set[str] | None) -> list[str]:
    problems: list[str] = []

    def wanted(run_id: str) -> bool:
        return only is None or run_id in only

    runs = {}
    for rowid, run_id, mode, broker, status, created, account in db.execute(
            "SELECT rowid, run_id, mode, broker, status, created_at, account FROM runs"):
        runs[run_id] = (mode, account or f"{broker}:{mode}", status, (created or "", rowid))
        if wanted(run_id) and status not in RUN_STATUSES:
            problems.append(f"run {run_id}: unknown status {status!r}")

    def scope(run_id: str) -> tuple:
        mode, account, _, _ = runs[run_id]
        return ("run", run_id) if mode == "backtest" else ("account", account)

    # ---- cycles
    cycles = set()
    for run_id, seq, status in db.execute("SELECT run_id, seq, status FROM cycles"):
        cycles.add((run_id, seq))
        if not wanted(run_id):
            continue
        if run_id not in runs:
            problems.append(f"cycle {run_id}#{seq}: its run does not exist")
        if status not in CYCLE_STATUSES:
            problems.append(f"cycle {run_id}#{seq}: unknown status {status!r}")

    # ---- orders
    orders: dict[tuple[str, str], tuple] = {}
    for run_id, cid, seq, status, filled in db.execute(
            "SELECT run_id, client_order_id, cycle_seq, status, filled_qty FROM orders"):
        if (run_id, cid) in orders and wanted(run_id):
            problems.append(f"order {cid}: appears twice in run {run_id}")
        orders[(run_id, cid)] = (seq, status, float(filled or 0.0))
        if not wanted(run_id):
            continue
        if run_id not in runs:
            problems.append(f"order {cid}: its run {run_id} does not exist")
        if status not in ORDER_STATUSES:
            problems.append(f"order {cid} (run {run_id}): unknown status {status!r}")
        if seq is not None and (run_id, seq) not in cycles:
            problems.append(f"order {cid} (run {run_id}): references cycle {seq}, which does not exist")
    for run_id, cid, n in db.execute("SELECT run_id, client_order_id, COUNT(*) FROM orders "
                                     "GROUP BY run_id, client_order_id HAVING COUNT(*) > 1"):
        if wanted(run_id):
            problems.append(f"order {cid}: {n} rows in run {run_id}")

    for run_id, cid, status in db.execute("SELECT run_id, client_order_id, status FROM order_events"):
        if wanted(run_id) and status not in ORDER_STATUSES:
            problems.append(f"order event of {cid} (run {run_id}): unknown status {status!r}")

    # ---- decisions
    for run_id, seq, n in db.execute("SELECT run_id, cycle_seq, COUNT(*) FROM decisions GROUP BY run_id, cycle_seq"):
        if not wanted(run_id):
            continue
        if run_id not in runs:
            problems.append(f"{n} decision(s) of run {run_id}, which does not exist")
        elif seq is not None and (run_id, seq) not in cycles:
            problems.append(f"{n} decision(s) of run {run_id} reference cycle {seq}, which does not exist")

    # ---- fills
    fill_qty: dict[tuple[str, str], float] = defaultdict(float)   # (run, cid) -> qty booked by that run
    trades: dict[tuple, list[str]] = defaultdict(list)
    for run_id, cid, tid, qty, price, fee_qty in db.execute(
            "SELECT run_id, client_order_id, trade_id, qty, price, fee_qty FROM fills"):
        qty, price = float(qty), float(price)
        fill_qty[(run_id, cid)] += qty + float(fee_qty or 0.0)
        if run_id in runs and tid is not None:
            trades[(scope(run_id), str(tid))].append(run_id)
        if not wanted(run_id):
            continue
        if (run_id, cid) not in orders:
            problems.append(f"fill {tid or '(no trade id)'} of {cid} (run {run_id}): no such order in that run")
        if not (qty > 0 and math.isfinite(qty)) and not (is_adjusting(tid) and math.isfinite(qty)):
            problems.append(f"fill {tid or '(no trade id)'} of {cid} (run {run_id}): quantity {qty!r} is not positive")
        if not (price > 0 and math.isfinite(price)):
            problems.append(f"fill {tid or '(no trade id)'} of {cid} (run {run_id}): price {price!r} is not positive")
    for (sc, tid), where in trades.items():
        if len(where) > 1 and any(wanted(r) for r in where):
            problems.append(f"trade {tid}: booked {len(where)} times (runs {', '.join(sorted(set(where)))})")

    # ---- filled_qty against the fills booked for the venue order over the runs of one account
    rows_by_order: dict[tuple, list[str]] = defaultdict(list)   # (scope, cid) -> runs with a row
    for (run_id, cid) in orders:
        if run_id in runs:
            rows_by_order[(scope(run_id), cid)].append(run_id)
    for (_, cid), where in rows_by_order.items():
        if not any(wanted(r) for r in where):
            continue
        booked = sum(fill_qty.get((r, cid), 0.0) for r in where)
        tol = TOLERANCE * max(1.0, abs(booked))
        best = max(orders[(r, cid)][2] for r in where)
        if abs(best - booked) > tol:
            runs_txt = ", ".join(sorted(where))
            problems.append(f"order {cid}: filled_qty {best:.12g} but its fills sum to {booked:.12g} "
                            f"(run{'s' if len(where) > 1 else ''} {runs_txt})")
        for r in where:
            _, status, filled = orders[(r, cid)]
            if not wanted(r):
                continue
            if best - booked <= tol and filled > booked + tol:
                problems.append(f"order {cid} (run {r}): filled_qty {filled:.12g} is more than its fills "
                                f"{booked:.12g}")
            if status == "filled" and (booked <= 0.0 or filled <= 0.0):
                problems.append(f"order {cid} (run {r}): 'filled' without any fill")
    return problems
