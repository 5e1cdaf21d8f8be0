"""Inject venue faults into a live cycle: 429 storms, 5xx (JSON and HTML), timeouts before and
after the server committed the order, connections dropped before and after the commit, slow
fills, partial fills, fills that stop, orders that never fill, retries exhausted, a venue down.

Each case runs ``parity execute`` once with the faults armed, then once more without them, and
must show: the first run completed (exit 0) or stopped cleanly (exit 1 with an ``error:`` line,
no traceback); never a duplicate order; never a lost fill (every server fill in the ledger);
``check_ledger`` clean; nothing left "working" in the ledger; positions at the targets unless the
fault legitimately left an order cancelled (its client order id is then used up: documented).
"""

from __future__ import annotations

import random

import pytest

from tests.faults.checks import check_all
from tests.faults.scenario import STATS, make_case

pytestmark = pytest.mark.faults

ALL = None
POSTED = {"method": "POST", "path_prefix": "/v2/orders"}   # arm: after the sells (see _arm)


def f(kind, method, path, count, seconds=0.0, **extra):
    return dict(kind=kind, method=method, path=path, count=count, seconds=seconds, **extra)


# (name, server config, faults, strategy settings, targets reached?)
ALPACA = [
    ("429-storm", {}, [f("429", ALL, "/v2/", 2), f("429", "POST", "/v2/orders", 1)], "", True),
    ("500-on-post", {}, [f("500", "POST", "/v2/orders", 2)], "", True),
    ("502-html-on-polls", {}, [f("502_html", "GET", "/v2/orders", 3)], "", True),
    ("503-on-account", {}, [f("503", "GET", "/v2/account", 2)], "", True),
    ("504-after-accept", {}, [f("504_after_accept", "POST", "/v2/orders", 2)], "", True),
    ("timeout-before-commit", {}, [f("delay", "POST", "/v2/orders", 1, 1.2)], "", True),
    ("timeout-after-commit", {}, [f("delay_after", "POST", "/v2/orders", 1, 1.2)], "", True),
    ("drop-before-commit", {}, [f("drop_before", "POST", "/v2/orders", 2)], "", True),
    ("drop-after-commit", {}, [f("drop_after", "POST", "/v2/orders", 2)], "", True),
    ("drop-after-poll", {}, [f("drop_after", "GET", "/v2/orders", 2)], "", True),
    ("slow-fills", {"fill_after_polls": 6}, [], "", True),
    ("partial-fills", {"partial_fill_fraction": 0.5}, [], "", True),
    ("partial-then-stall", {"partial_fill_fraction": 0.5, "stall_after_partial": True}, [],
     "  order_timeout_s: 0.6\n", False),
    ("never-filled", {"fill_mode": "manual"}, [], "  order_timeout_s: 0.6\n", False),
    ("retries-exhausted-on-post", {}, [f("503", "POST", "/v2/orders", 6)], "", True),
    ("venue-down-at-start", {}, [f("503", "GET", "/v2/account", 6)], "", True),
    ("venue-down-between-legs", {}, [f("503", "GET", "/v2/account", 6, arm="after_sells")], "", True),
]
COINBASE = [
    ("429-storm", {}, [f("429", ALL, "/", 3), f("429", "POST", "/orders", 2, exact=True)], "", True),
    ("500-on-post", {}, [f("500", "POST", "/orders", 2, exact=True)], "", True),
    ("503-html-on-reads", {}, [f("503_html", "GET", "/orders/historical", 3)], "", True),
    ("504-on-accounts", {}, [f("504", "GET", "/accounts", 2, exact=True)], "", True),
    ("timeout-before-commit", {}, [f("delay", "POST", "/orders", 1, 1.2, exact=True)], "", True),
    ("timeout-after-commit", {}, [f("delay_after", "POST", "/orders", 1, 1.2, exact=True)], "", True),
    ("drop-before-commit", {}, [f("drop_before", "POST", "/orders", 2, exact=True)], "", True),
    ("drop-after-commit", {}, [f("drop_after", "POST", "/orders", 2, exact=True)], "", True),
    ("drop-after-fills-read", {}, [f("drop_after", "GET", "/orders/historical/fills", 2, exact=True)], "", True),
    # throttling seen as a bare 401 (BROKER_API_NOTES §0.12), in the middle of the cycle
    ("throttled-as-401", {}, [f("401_throttle", "GET", "/accounts", 1, exact=True, skip=3)], "", True),
    ("retries-exhausted-on-post", {}, [f("503", "POST", "/orders", 6, exact=True)], "", True),
]
CASES = [("alpaca", *c) for c in ALPACA] + [("coinbase", *c) for c in COINBASE]


@pytest.mark.parametrize("venue,name,server_kw,faults,strategy_extra,reach", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_fault(tmp_path, venue, name, server_kw, faults, strategy_extra, reach):
    rng = random.Random(f"fault:{venue}:{name}")
    kw = dict(server_kw)
    extra = ""
    if venue == "alpaca":
        # An injected 429 says "wait for the window, then pace at the published rate": compress
        # both (a 0.25 s window; 12000/min) so a storm costs milliseconds, not minutes. The real
        # rates are what test_load checks.
        kw.setdefault("rate_limit_window", 0.25)
        extra = "    requests_per_minute: 12000\n"
    case = make_case(venue, tmp_path / "case", rng, server_kw=kw, settings_extra=extra,
                     venue_kw={"rate": 300} if venue == "coinbase" else None)
    v = case.venue
    try:
        # the client's HTTP timeout below the injected delays
        v.settings.write_text(v.settings.read_text().replace("timeout_s: 5\n", "timeout_s: 0.5\n"))
        if strategy_extra:
            p = v.root / "strategies" / "default.yaml"
            p.write_text(p.read_text().replace("  order_timeout_s: 10\n", strategy_extra))
        case.plan_it()
        armed = [v.inject(**_arm(fault, venue, case.n_reduce)) for fault in faults]
        code, first = case.run("faulted", timeout=120)
        fired = _fired(v, faults, armed)
        STATS["fault_runs"] += 1
        STATS["faults_injected"] += fired
        assert code in (0, 1), case.transcript()
        if code == 1:   # stopped: a clear message, not a traceback
            assert "error:" in first.stderr and "Traceback" not in first.stderr, case.transcript()
        assert fired == sum(x["count"] for x in faults), f"only {fired} of the faults fired\n{case.transcript()}"
        v.clear_faults()
        code, _ = case.run("recovery")
        assert code == 0, case.transcript()
        out = check_all(v, targets=case.targets if reach else None, allowed_cids=case.cids)
        STATS["duplicates"] += out.duplicates
        STATS["lost_fills"] += sum("ledger holds" in p or "not in the ledger" in p for p in out.problems)
        assert not out.problems, "\n".join(out.problems) + "\n" + case.transcript()
        if not reach:   # the cancelled remainder is recorded as such
            _assert_cancel_recorded(v, partial=bool(server_kw.get("stall_after_partial")))
    finally:
        v.close()


def _arm(fault: dict, venue: str, n_reduce: int) -> dict:
    """Turn ``arm="after_sells"`` into the server's arming condition (after the sell leg's POSTs)."""
    out = dict(fault)
    if out.get("arm") == "after_sells":
        out["arm"] = ({**POSTED, "count": n_reduce} if venue == "alpaca"
                      else {"method": "POST", "path": "/orders", "count": n_reduce})
    return out


def _fired(v, faults, armed) -> int:
    """How many requests the armed faults hit."""
    if v.name == "alpaca":
        return sum(x["count"] for x in faults) - sum(p["count"] for p in v.srv.pending_faults())
    return sum(inj.hits for inj in armed)


def _assert_cancel_recorded(v, partial: bool) -> None:
    import sqlite3

    db = sqlite3.connect(str(v.ledger))
    try:
        rows = db.execute("SELECT status, filled_qty, qty, message FROM orders WHERE status='canceled' "
                          "AND message LIKE 'canceled: not filled within%'").fetchall()
    finally:
        db.close()
    assert rows, "no order was recorded as cancelled after the timeout: " + repr(_all_orders(v))
    if partial:
        assert all(0 < f < q for _, f, q, _ in rows), rows
        assert all("partially filled" in m for *_, m in rows), rows


@pytest.mark.parametrize("venue", ["alpaca", "coinbase"])
def test_rerun_of_a_finished_batch_books_no_fill_twice(tmp_path, venue):
    """With fees and slippage the equity moves, so a re-run of a finished batch plans the same legs
    again; their orders are already at the venue ("not sent again") and their fills already in the
    ledger: nothing may be booked twice (Coinbase re-reads an order's fills by order id)."""
    from tests.faults.venues import write_signals

    rng = random.Random(f"rerun:{venue}")
    kw = {"fill_slippage_bps": 30.0} if venue == "alpaca" else {"fee_rate": 0.006, "fill_slippage_bps": 30.0}
    case = make_case(venue, tmp_path / "case", rng, server_kw=kw, venue_kw={"rate": 300} if venue == "coinbase" else None)
    v = case.venue
    try:
        first = next(iter(case.held))
        px = v.symbols[first]
        equity = 100_000.0 + sum(q * v.symbols[s] for s, q in case.held.items())
        case.weights[first] = round(case.held[first] * px / equity * 0.5, 4)   # a partial sell
        write_signals(case.signals, case.weights)
        for name in ("first", "rerun"):
            code, _ = case.run(name)
            assert code == 0, case.transcript()
        assert "already at the venue" in case.transcript(), case.transcript()
        out = check_all(v, targets=None, allowed_cids=None)
        STATS["duplicates"] += out.duplicates
        assert not out.problems, "\n".join(out.problems) + "\n" + case.transcript()
    finally:
        v.close()


def _all_orders(v) -> list:
    import sqlite3

    db = sqlite3.connect(str(v.ledger))
    try:
        return db.execute("SELECT client_order_id, status, filled_qty, qty, message FROM orders").fetchall()
    finally:
        db.close()
