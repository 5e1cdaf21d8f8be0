"""``check_ledger`` finds each kind of inconsistency, and accepts what crash recovery writes."""

from __future__ import annotations

import pytest

from framework.ledger import Ledger
from framework.ledger.check import check_ledger

T = "2026-01-02T15:00:00.000000Z"


ACCOUNTS: dict[str, str] = {}


def _run(ledger: Ledger, run_id: str, mode: str = "paper", broker: str = "alpaca", seqs=(0,)) -> None:
    account = f"sim:sim:{run_id}" if mode == "backtest" else f"{broker}:{mode}:default"
    ACCOUNTS[run_id] = account
    ledger.start_run(run_id, "s", "", mode, broker, 100.0, ["AAPL"], {}, account=account)
    ledger.write_cycles([(run_id, s, "s@1", T, "done", 100.0, b"") for s in seqs])


def _order(ledger: Ledger, run_id: str, cid: str, status: str, filled: float, seq=0, qty: float = 10.0) -> None:
    ledger.write_orders([(run_id, seq, cid, "b-" + cid, T, "AAPL", "buy", qty, "market", None, "add", 100.0, status,
                          filled, 100.0 if filled else None, None, T, ACCOUNTS.get(run_id))])


def _fill(ledger: Ledger, run_id: str, cid: str, qty: float, trade: str | None) -> None:
    # written as any writer could have (a first-release file deduplicated trades per run only)
    ledger.db.execute("INSERT INTO fills (run_id, client_order_id, broker_order_id, trade_id, time, symbol, side, "
                      "qty, price, fee, slippage, account) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                      (run_id, cid, "b-" + cid, trade, T, "AAPL", "buy", qty, 100.0, 0.0, 0.0, ACCOUNTS.get(run_id)))


def test_the_ledger_books_a_trade_of_one_account_once(ledger):
    """The journal's one dedupe: (account, venue trade id) is unique; another account may reuse the id."""
    from framework.ledger import LeaseRecord  # noqa: F401  (the package's public names import)

    row = ("r1", "c1", "b-c1", "trade-1", T, "AAPL", "buy", 1.0, 100.0, 0.0, 0.0)
    assert ledger.book_fills([row + ("alpaca:paper:a",)]) == 1
    assert ledger.book_fills([("r2",) + row[1:] + ("alpaca:paper:a",)]) == 0     # a re-run reports it again
    assert ledger.book_fills([row + ("alpaca:live:b",)]) == 1                      # another account


@pytest.fixture
def ledger(tmp_path):
    lg = Ledger(tmp_path / "l.db")
    yield lg
    lg.close()


def test_a_sound_ledger_has_no_problem(ledger):
    _run(ledger, "r1")
    _order(ledger, "r1", "c1", "filled", 10.0)
    _fill(ledger, "r1", "c1", 4.0, "t1")
    _fill(ledger, "r1", "c1", 6.0, "t2")
    _order(ledger, "r1", "c2", "canceled", 0.0)
    assert check_ledger(ledger) == []
    assert check_ledger(str(ledger.path)) == []


def test_each_inconsistency_is_reported(ledger):
    _run(ledger, "r1")
    _order(ledger, "r1", "lost", "filled", 10.0)                 # filled, no fill
    _order(ledger, "r1", "short", "partially_filled", 5.0)
    _fill(ledger, "r1", "short", 3.0, "t1")                        # 5 claimed, 3 booked
    _fill(ledger, "r1", "nobody", 1.0, "t2")                       # fill of no order
    _order(ledger, "r1", "weird", "sort_of_done", 0.0)             # unknown status
    _order(ledger, "r1", "orphan", "new", 0.0, seq=7)              # cycle 7 does not exist
    _fill(ledger, "r1", "short", 0.0, "t3")                        # zero quantity
    text = "\n".join(check_ledger(ledger))
    assert "order lost (run r1): 'filled' without any fill" in text
    assert "order short: filled_qty 5 but its fills sum to 3" in text
    assert "fill t2 of nobody (run r1): no such order in that run" in text
    assert "unknown status 'sort_of_done'" in text
    assert "references cycle 7, which does not exist" in text
    assert "quantity 0.0 is not positive" in text


def test_a_trade_booked_by_two_runs_of_one_account_is_a_duplicate(ledger):
    ledger.db.execute("DROP INDEX fills_account_trade")   # a first-release file: no (account, trade id) index
    _run(ledger, "r1", mode="live", broker="coinbase")
    _run(ledger, "r2", mode="live", broker="coinbase")
    _order(ledger, "r1", "c1", "filled", 10.0)
    _order(ledger, "r2", "c1", "filled", 10.0)    # the re-run saw the same venue order
    _fill(ledger, "r1", "c1", 10.0, "trade-1")
    _fill(ledger, "r2", "c1", 10.0, "trade-1")    # ...and booked its fill again
    text = "\n".join(check_ledger(ledger))
    assert "trade trade-1: booked 2 times" in text
    assert "filled_qty 10 but its fills sum to 20" in text


def test_recovery_rows_across_runs_are_consistent(ledger):
    """A crashed run's row (fills booked at reconcile) and the re-run's row of the same venue order."""
    _run(ledger, "r1")
    _run(ledger, "r2")
    _order(ledger, "r1", "c1", "filled", 10.0)
    _fill(ledger, "r1", "c1", 10.0, "b-c1:10")
    _order(ledger, "r2", "c1", "filled", 10.0)      # "already at the venue: not sent again"
    _order(ledger, "r1", "c2", "canceled", 0.0)     # never reached the venue...
    _order(ledger, "r2", "c2", "filled", 5.0)       # ...sent by the re-run
    _fill(ledger, "r2", "c2", 5.0, "b-c2:5")
    assert check_ledger(ledger) == []


def test_backtests_replaying_the_same_batches_are_separate_worlds(ledger):
    for r in ("b1", "b2"):
        _run(ledger, r, mode="backtest", broker="sim")
        _order(ledger, r, "same-id", "filled", 10.0)
        _fill(ledger, r, "same-id", 10.0, None)
    assert check_ledger(ledger) == []


def test_run_ids_limit_the_report(ledger):
    _run(ledger, "r1")
    _run(ledger, "r2")
    _order(ledger, "r1", "bad", "filled", 10.0)
    _order(ledger, "r2", "good", "canceled", 0.0)
    assert check_ledger(ledger, run_ids=["r2"]) == []
    assert check_ledger(ledger, run_ids=["r1"])
