"""A large backtest's packed rows read exactly as rows through every Ledger reader (issue 15).

One backtest (partial fills, next-batch cancels, rejections and binding risk decisions) is run
twice into two ledgers: once with its rows written as rows (``PARITY_PACK_ROWS=0``) and once with
every bulk table packed (``PARITY_PACK_ROWS=1``). Every reader of the ledger object must answer the
same for both, ``parity report RUN_ID`` must write the same artifacts, and the consistency check
must find the packed ledger sound. Rows that break a table's uniqueness rules are never packed,
and a packed write rolled back leaves nothing behind.
"""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest

from tests.framework.test_whole_command import inputs  # noqa: F401 - the shared fixture

DROP = ["run_id", "updated_at", "account"]


def _run(inputs, tmp_path, monkeypatch, pack: str):  # noqa: F811
    from framework.cli.wiring import run_backtest
    from framework.config import load_settings, load_strategy
    from framework.ledger import Ledger

    _, settings_path, strategy_path = inputs
    monkeypatch.setenv("PARITY_PACK_ROWS", pack)
    settings = load_settings(settings_path).model_copy(update={"ledger": str(tmp_path / f"ledger-{pack}.db")})
    strategy = load_strategy(str(strategy_path), str(settings_path))
    run_id, summary, out = run_backtest(settings, str(settings_path), strategy, out_dir=str(tmp_path / f"a-{pack}"))
    return Ledger(settings.ledger), run_id, out


@pytest.fixture(scope="module")
def pair(inputs, tmp_path_factory):  # noqa: F811
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("packed")
    try:
        rows = _run(inputs, root, mp, "0")
        mp.setattr("framework.ledger.packed.PACK_CHUNK", 7)      # several parts per table
        packed = _run(inputs, root, mp, "1")
    finally:
        mp.undo()
    yield rows, packed
    rows[0].close()
    packed[0].close()


def test_the_packed_run_is_packed_and_the_other_is_not(pair):
    (rows, rid_r, _), (packed, rid_p, _) = pair
    assert rows.packed_rows("orders") == 0
    parts = packed.db.execute("SELECT COUNT(*) FROM packed_parts WHERE tbl='orders'").fetchone()[0]
    assert parts == -(-packed.count_rows("orders", rid_p) // 7) > 1
    for table in ("orders", "fills", "order_events", "decisions"):
        assert packed.packed_rows(table, rid_p) > 0, table
        assert packed.db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id=?", (rid_p,)).fetchone()[0] == 0
        assert packed.count_rows(table, rid_p) == rows.count_rows(table, rid_r) > 0, table


@pytest.mark.parametrize("table", ["orders", "fills", "order_events", "decisions"])
def test_frames_of_a_packed_run_equal_its_rows(pair, table):
    (rows, rid_r, _), (packed, rid_p, _) = pair
    want = rows.frame(table, rid_r).drop(columns=DROP, errors="ignore")
    got = packed.frame(table, rid_p).drop(columns=DROP, errors="ignore")
    pd.testing.assert_frame_equal(got, want)
    # the scratch path (any other order) answers the same
    order = "time, rowid"
    got2 = packed.frame(table, rid_p, order).drop(columns=DROP, errors="ignore")
    pd.testing.assert_frame_equal(got2, rows.frame(table, rid_r, order).drop(columns=DROP, errors="ignore"))
    both = packed.frames_of(table, [rid_p]).drop(columns=DROP, errors="ignore")
    pd.testing.assert_frame_equal(both, rows.frames_of(table, [rid_r]).drop(columns=DROP, errors="ignore"))


def test_account_and_run_readers_answer_the_same(pair):
    (rows, rid_r, _), (packed, rid_p, _) = pair
    acct_r, acct_p = f"sim:sim:{rid_r}", f"sim:sim:{rid_p}"
    pos = rows.positions(acct_r)
    assert pos and packed.positions(acct_p) == pos
    assert packed.positions_before(acct_p, rid_p) == rows.positions_before(acct_r, rid_r) == {}
    assert packed.cash_flow(acct_p) == rows.cash_flow(acct_r)
    sym = sorted(pos)[0]
    assert packed.average_cost(acct_p, sym) == rows.average_cost(acct_r, sym) > 0
    assert packed.count_filled_orders(rid_p) == rows.count_filled_orders(rid_r) > 0
    assert packed.count_decisions(rid_p, "rejected") == rows.count_decisions(rid_r, "rejected")
    assert packed.open_orders(acct_p) == rows.open_orders(acct_r) == []
    assert packed.orders_missing_fills(acct_p) == rows.orders_missing_fills(acct_r) == []
    cids = rows.frame("orders", rid_r)["client_order_id"].tolist()
    assert packed.orders_of_run(rid_p, cids[:700]) == rows.orders_of_run(rid_r, cids[:700])
    assert set(packed.order_runs(acct_p, cids[:5]).values()) == {rid_p}
    a, b = packed.order(acct_p, cids[3]), rows.order(acct_r, cids[3])
    assert a is not None and b is not None and a.status == b.status and a.filled_qty == b.filled_qty
    pd.testing.assert_frame_equal(packed.first_event_times([rid_p]), rows.first_event_times([rid_r]))
    n_fills = len(packed.fills_with_batches(acct_p))
    assert n_fills == len(rows.fills_with_batches(acct_r)) > 0
    assert len(packed.table_rows("orders")) == len(rows.table_rows("orders"))


def test_the_report_of_a_packed_run_is_the_one_of_its_rows(pair, tmp_path):
    from framework.artifacts import write_artifacts

    (rows, rid_r, _), (packed, rid_p, out_p) = pair
    again = write_artifacts(packed, rid_p, tmp_path / "p", report=False, record=False)
    ref = write_artifacts(rows, rid_r, tmp_path / "r", report=False, record=False)
    for name in ("orders.csv", "fills.csv", "decisions.csv", "equity.csv"):
        assert filecmp.cmp(again / name, out_p / name, shallow=False), name      # the backtest's own files
        assert filecmp.cmp(again / name, ref / name, shallow=False), name        # and the rows' ones


def test_the_consistency_check_reads_packed_rows(pair):
    from framework.ledger.check import check_ledger

    (_, _, _), (packed, rid_p, _) = pair
    assert check_ledger(packed) == []
    assert check_ledger(packed.path) == []


def test_rows_that_break_uniqueness_are_written_as_rows(tmp_path, monkeypatch):
    from framework.ledger import Coded, IsoTimes, Ledger

    monkeypatch.setenv("PARITY_PACK_ROWS", "1")
    ledger = Ledger(tmp_path / "l.db")
    try:
        n = 4
        t = IsoTimes(np.full(n, np.datetime64("2024-01-02T00:00:00", "ns")))
        cols = {"run_id": Coded.constant("r1", n), "client_order_id": ["a", "b", "a", "c"], "time": t,
                "symbol": Coded.constant("AAPL", n), "side": Coded.constant("buy", n), "qty": np.ones(n),
                "type": Coded.constant("market", n), "status": Coded.constant("filled", n),
                "account": Coded.constant("sim:sim:r1", n)}
        ledger.write_columns("orders", cols)
        assert ledger.packed_rows("orders") == 0
        assert ledger.count_rows("orders", "r1") == 3              # INSERT OR IGNORE kept the first "a"
        cols["client_order_id"] = ["a", "b", "c", "d"]
        cols["run_id"] = Coded.constant("r2", n)
        with pytest.raises(RuntimeError):
            with ledger.tx():
                ledger.write_columns("orders", cols)
                raise RuntimeError("crash mid-write")
        assert ledger.packed_rows("orders") == 0 and ledger.count_rows("orders", "r2") == 0
        ledger.write_columns("orders", cols)
        assert ledger.packed_rows("orders", "r2") == 4 and ledger.count_rows("orders", "r2") == 4
        assert ledger.frame("orders", "r2")["filled_qty"].tolist() == [0.0] * 4       # the table's default
        fills = {"run_id": Coded.constant("r2", n), "client_order_id": ["a", "b", "c", "d"], "time": t,
                 "trade_id": Coded(np.array([0, 1, 2, 1], np.int8), [None, "t1", "t2"]),
                 "symbol": Coded.constant("AAPL", n), "side": Coded.constant("buy", n), "qty": np.ones(n),
                 "price": np.full(n, 10.0), "fee": np.zeros(n), "account": Coded.constant("sim:sim:r2", n)}
        ledger.write_columns("fills", fills)               # trade t1 twice: the unique index folds it
        assert ledger.packed_rows("fills") == 0 and ledger.count_rows("fills", "r2") == 3
        fills["trade_id"] = Coded(np.array([0, 1, 2, 0], np.int8), [None, "t3", "t4"])
        fills["run_id"], fills["account"] = Coded.constant("r3", n), Coded.constant("sim:sim:r3", n)
        ledger.write_columns("fills", fills)               # NULL trade ids are not keys: packed
        assert ledger.packed_rows("fills", "r3") == 4
        # a run's table is packed whole, once: more rows for it are refused (they could repeat its keys)
        more = {**cols, "client_order_id": ["d", "e", "f", "g"]}
        with pytest.raises(ValueError, match="r2's orders are packed"):
            ledger.write_columns("orders", more)
        assert ledger.packed_rows("orders", "r2") == 4 and ledger.count_rows("orders", "r2") == 4
        # a run that already has rows of a table keeps adding rows, never a packed part beside them
        ledger.write_columns("orders", {**cols, "run_id": Coded.constant("r1", n),
                                        "client_order_id": ["c", "d", "e", "f"]})
        assert ledger.packed_rows("orders", "r1") == 0 and ledger.count_rows("orders", "r1") == 6
        # ... and so are an account's fills: r4 books into r3's account, whose trades are packed
        fills["run_id"] = Coded.constant("r4", n)
        ledger.write_columns("fills", fills)
        assert ledger.packed_rows("fills", "r4") == 0
    finally:
        ledger.close()


def test_a_bad_pack_threshold_is_named(tmp_path, monkeypatch):
    from framework.errors import UsageError
    from framework.ledger.packed import pack_rows

    monkeypatch.setenv("PARITY_PACK_ROWS", "lots")
    with pytest.raises(UsageError, match="PARITY_PACK_ROWS='lots' is not a whole number"):
        pack_rows()
    monkeypatch.setenv("PARITY_PACK_ROWS", "0")
    assert pack_rows() == 0



def test_cycle_prices_read_back_in_both_the_new_and_the_older_ledger_format():
    """A cycle's prices are stored as their bytes now; a ledger written before holds them
    zlib-compressed, and reads the same (``parity report`` of an old run)."""
    import zlib

    from framework.ledger import pack_prices, unpack_prices

    px = np.array([101.25, np.nan, 0.1 + 0.2, 5e-324, -0.0, 1e300])
    older = zlib.compress(px.tobytes(), 1)
    for blob in (pack_prices(px), older):
        back = unpack_prices(blob)
        assert back.dtype == np.float64 and back.tobytes() == px.tobytes()
    assert len(pack_prices(px)) == 1 + px.nbytes
