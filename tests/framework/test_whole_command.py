"""The whole backtest command's fast paths write exactly what the plain ones wrote (issue 15).

- the ledger rows of a backtest, written as columns, are the rows the row-at-a-time writer wrote
  (partial fills, next-batch cancels, rejections and risk decisions included);
- the artifacts a backtest writes from its in-memory columns are byte for byte the ones
  ``parity report RUN_ID`` writes from the ledger;
- the CSV writer is pandas' ``to_csv`` byte for byte; the compiled average-cost loop is the
  Python one bit for bit; risk decisions kept as columns read as the records they stand for.
"""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.whole import write_inputs
from benchmarks.workloads import make_workload, prefix


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """30 days of the small benchmark workload as CSV files, with a volume cap that makes partial
    fills (then next-batch cancels), fees, and max_positions 3 binding at every batch."""
    root = tmp_path_factory.mktemp("whole")
    w = prefix(make_workload("small"), 120, copy=True)
    inp = write_inputs(w, root / "in")
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump({
        "execution": {"max_positions": 3, "max_position_size_pct": 0.3, "max_exposure_pct": 0.95,
                      "min_confidence": 0.5, "max_daily_loss_pct": 1.0, "min_account_balance": 0.0,
                      "max_leverage": 1.0},
        "ledger": str(root / "parity.db"), "data_dir": str(root / "data"), "reports_dir": str(root / "reports")}))
    strategy = root / "strategy.yaml"
    strategy.write_text(yaml.safe_dump({
        "name": "bulk", "signals": {"path": str(inp.signals)}, "bars": {"path": str(inp.bars)},
        "rebalance": {"drift_threshold": 0.0, "unfilled": "cancel"},
        "simulation": {"venue": "alpaca", "fill": "next_open", "volume_cap": 0.0003, "cash": 1_000_000.0}}))
    return root, settings, strategy


def _setup(settings_path, strategy_path):
    from framework.cli.wiring import build_backtest
    from framework.config import load_settings, load_strategy

    settings = load_settings(settings_path)
    strategy = load_strategy(str(strategy_path), str(settings_path))
    return settings, strategy, build_backtest(settings, str(settings_path), strategy)


def _reference_flush(ledger, journal) -> None:
    """The row-at-a-time writer the columnar one replaced (kept here as the reference)."""
    from framework.journal import _state_rows
    from framework.ledger import fill_rows, iso, now_iso, order_rows, pack_prices

    rid, acct = journal.run_id, journal.account.key
    with ledger.tx():
        ledger.write_cycles([(rid, seq, bid, iso(t), c[5] if len(c) > 5 else "done", eq, pack_prices(px))
                             for c in journal._cycles for seq, bid, t, px, eq in [c[:5]]])
        for seq, ds in journal._decisions:
            ledger.write_decisions(rid, seq, ds)
        for seq, r in journal._reports:
            ledger.write_orders(order_rows(rid, seq, r.batch, r.status, r.filled_qty, r.avg_price, r.broker_ids,
                                           r.messages, acct))
            ledger.book_fills(fill_rows(rid, r, acct))
        for r in journal._updates:
            rows, events = _state_rows(r, {}, rid)
            ledger.update_orders(rows)
            ledger.write_events(events)
            ledger.book_fills(fill_rows(rid, r, acct))
        upd = now_iso()
        ledger.db.executemany("UPDATE orders SET status='canceled', message=?, updated_at=? "
                              "WHERE run_id=? AND client_order_id=?",
                              [(reason, upd, rid, cid) for cid, _, reason in journal._cancels])
        ledger.write_events([(rid, cid, iso(t), "canceled", None, reason) for cid, t, reason in journal._cancels])
        ledger.db.executemany("UPDATE orders SET filled_qty=(SELECT COALESCE(SUM(qty),0) FROM fills f WHERE "
                              "f.run_id=orders.run_id AND f.client_order_id=orders.client_order_id) "
                              "WHERE run_id=? AND client_order_id=?", [(rid, c) for c, _, _ in journal._cancels])


def _rows(ledger, run_id: str) -> dict[str, list[tuple]]:
    out = {}
    with ledger.reading(run_ids=[run_id]) as db:       # packed rows (PARITY_PACK_ROWS) read as rows
        for table in ("cycles", "decisions", "orders", "fills", "order_events"):
            cur = db.execute(f"SELECT * FROM {table} WHERE run_id=? ORDER BY rowid", (run_id,))
            keep = [k for k, c in enumerate(cur.description) if c[0] not in ("run_id", "updated_at", "account")]
            out[table] = [tuple(row[k] for k in keep) for row in cur.fetchall()]     # NULL stays None
    return out


def test_columnar_ledger_rows_are_the_row_writers_rows(inputs, tmp_path):
    from framework.backtest import replay
    from framework.ledger import Ledger

    _, settings_path, strategy_path = inputs
    rows = []
    for k, flush in enumerate(("columns", "rows")):
        _, _, setup = _setup(settings_path, strategy_path)
        replay(setup.pipeline, setup.market, setup.signals)
        ledger = Ledger(tmp_path / f"{flush}.db")
        if flush == "columns":
            setup.journal.flush(ledger)
        else:
            _reference_flush(ledger, setup.journal)
        rows.append(_rows(ledger, setup.run_id))
        ledger.close()
    got, want = rows
    assert len(want["order_events"]) > 0 and len(want["decisions"]) > 0     # the test exercises them
    assert any(d[3] == "max_positions" for d in want["decisions"])
    statuses = {r[11] for r in want["orders"]}
    assert "canceled" in statuses and "filled" in statuses
    for table in want:
        assert got[table] == want[table], table


def test_a_backtests_artifacts_are_the_ones_the_ledger_gives(inputs, tmp_path):
    from framework.artifacts import write_artifacts
    from framework.cli.wiring import run_backtest
    from framework.config import load_settings, load_strategy
    from framework.ledger import Ledger

    _, settings_path, strategy_path = inputs
    settings = load_settings(settings_path)
    strategy = load_strategy(str(strategy_path), str(settings_path))
    run_id, summary, out = run_backtest(settings, str(settings_path), strategy, out_dir=str(tmp_path / "a"))
    ledger = Ledger(settings.ledger)
    try:
        again = write_artifacts(ledger, run_id, tmp_path / "b", report=False, record=False)
        run = ledger.run(run_id)
    finally:
        ledger.close()
    assert run["status"] == "done" and run["artifacts"] == str(out)
    assert run["final_equity"] == summary["final_equity"]
    for name in ("summary.json", "equity.csv", "orders.csv", "fills.csv", "decisions.csv"):
        assert filecmp.cmp(out / name, again / name, shallow=False), name
    assert json.loads((out / "summary.json").read_text())["n_orders"] > 0
    assert (out / "report.html").is_file()


def test_csv_writer_is_pandas_to_csv_byte_for_byte(tmp_path):
    from framework.csv_text import write_csv

    df = pd.DataFrame({
        "time": pd.to_datetime(["2020-01-01T00:00:00Z", "2020-01-01T00:00:00.5Z", None,
                                "2021-03-04T05:06:07.000001Z"], utc=True, format="ISO8601"),
        "f": [1.0, np.nan, 1e-05, 1234567890123456.0], "i": [1, 2, 3, 4], "b": [True, False, True, False],
        "s": ["a,b", 'q"x', None, "line\nbreak"], "o": pd.Series([None, 1.5, "x", np.nan], dtype=object),
        "cat": pd.Categorical(["buy", None, "sell, short", "buy"]), "a,b": [1e16, -0.0, 5e-324, 0.1 + 0.2],
        "ids": pd.Series(["p-x-1", 'q"x', "a,b", "é-2"], dtype=pd.StringDtype("pyarrow"))})   # Arrow-backed text
    expected = df.copy()
    expected["time"] = expected["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(".000000Z", "Z", regex=False)
    for frame, want in ((df, expected), (df.iloc[:0], expected.iloc[:0])):
        want.to_csv(tmp_path / "want.csv", index=False)
        write_csv(frame, tmp_path / "got.csv", chunk=3)
        assert (tmp_path / "got.csv").read_bytes() == (tmp_path / "want.csv").read_bytes()


def test_csv_files_written_together_are_each_pandas_to_csv(tmp_path):
    """Files written in lockstep reuse the text of equal floats (a fill's price is its order's
    average price): each file is still exactly what pandas writes, where values differ too."""
    from framework.csv_text import write_csvs

    rng = np.random.default_rng(7)
    price = rng.random(11) * 100
    price[[2, 9]] = np.nan
    qty = np.round(rng.random(11) * 1000, 9)
    qty[4] = -0.0
    orders = pd.DataFrame({"qty": qty, "filled_qty": np.where(np.arange(11) == 5, 0.0, qty), "avg_price": price,
                           "id": [f"p-x-{k}" for k in range(11)]})
    fill_price = price.copy()
    fill_price[[1, 2]] = [0.1 + 0.2, 7.0]
    fill_qty = qty.copy()
    fill_qty[4] = 0.0                                    # -0.0 and 0.0 are different text
    fills = pd.DataFrame({"qty": fill_qty, "price": fill_price, "fee": np.zeros(11),
                          "id": [f"p-x-{k}" for k in range(10)] + ['a,"b"']})
    other = pd.DataFrame({"x": price[:4] * 2, "y": [1, 2, 3, 4]})      # another length: nothing to reuse
    paths = [tmp_path / f"{k}.csv" for k in range(3)]
    write_csvs(list(zip((orders, fills, other), paths)), chunk=4)
    for frame, path in zip((orders, fills, other), paths):
        frame.to_csv(tmp_path / "want.csv", index=False)
        assert path.read_bytes() == (tmp_path / "want.csv").read_bytes(), path.name


def _average_cost_in_python(qtys, prices):
    position, avg_cost, realised = 0.0, 0.0, 0.0
    for d, p in zip(qtys, prices, strict=True):
        if position == 0.0 or np.sign(d) == np.sign(position):
            new_position = position + d
            avg_cost = (abs(position) * avg_cost + abs(d) * p) / abs(new_position)
            position = new_position
            continue
        closed = min(abs(d), abs(position))
        realised += closed * (p - avg_cost) * np.sign(position)
        if abs(d) > abs(position):
            avg_cost = p
        position += d
        if abs(position) < 1e-12:
            position, avg_cost = 0.0, 0.0
    return position, avg_cost, realised


def test_compiled_average_cost_is_the_python_loop_bit_for_bit():
    from framework.reports.attribution import _average_cost

    rng = np.random.default_rng(7)
    for _ in range(100):
        q = rng.normal(size=int(rng.integers(1, 50))) * rng.choice([1e-3, 1.0, 100.0])
        q = np.where(q == 0, 1.0, q)
        q[rng.random(len(q)) < 0.1] *= -1
        if len(q) > 3:
            q[3] = -q[:3].sum()                     # a fill that flattens the position exactly
        p = rng.uniform(1, 500, len(q))
        assert _average_cost(q, p) == _average_cost_in_python(q.tolist(), p.tolist())


def test_risk_decisions_kept_as_columns_read_as_their_records():
    from framework.config import RiskLimits
    from framework.risk import RiskManager
    from framework.types import AssetClass, Instrument, TargetPortfolio, Universe

    m = 40
    u = Universe.from_instruments([Instrument(f"S{i:02d}", AssetClass.EQUITY) for i in range(m)])
    w = np.linspace(0.001, 0.04, m)
    limits = RiskLimits(max_position_size_pct=0.05, max_exposure_pct=0.95, max_positions=5, min_confidence=0.5,
                        max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=1.0)
    t = np.datetime64("2024-01-02T00:00:00", "ns")
    r = RiskManager(limits).approve(TargetPortfolio(t, "b", w, np.ones(m)), np.zeros(m), np.full(m, 10.0), 1e6,
                                    1e6, u)
    rejected = [d for d in r.decisions if d.rule == "max_positions"]
    assert len(rejected) == m - 5 and len(r.decisions) == len(tuple(r.decisions)) == m - 5
    assert all(d.action == "reject" and d.approved == 0.0 and d.time == t for d in rejected)
    first = rejected[0]
    assert first.reason == (f"more than 5 positions: weaker than the 5 kept (confidence x weight "
                            f"{first.requested:.4f})")
    assert r.decisions == tuple(r.decisions) and r.decisions + () == tuple(r.decisions)
    assert sorted(np.flatnonzero(r.weights).tolist()) == list(range(m - 5, m))


def test_decision_reasons_are_kept_as_arrow_text_and_reach_the_ledger_and_csv_as_written(tmp_path):
    """2.5 M reasons on a wide run where max_positions binds: held as Arrow text, not a Python string
    each (issue 15), and read back unchanged, commas, quotes and line breaks included, in record order."""
    from framework.bulk import RunTables
    from framework.csv_text import write_csv
    from framework.decisions import DecisionBlock, Decisions
    from framework.ledger import Ledger
    from framework.types import RiskDecision

    t = np.datetime64("2024-01-02T00:00:00", "ns")
    one = RiskDecision(t, "*", "buying_power", "scale", 2.0, 1.0, 'buys need 1,234.50 but "900.00" is\navailable')
    block = DecisionBlock(t, ["A", "B"], "max_positions", "reject", np.array([0.1, 0.2]), np.zeros(2),
                          "weaker (", np.array([0.25, 0.125]), ")")
    tables = RunTables.build("r1", [(0, "b", t, np.ones(2), 1.0, "done")],
                             [(0, Decisions([one, block])), (0, (one,))], [], [], [], "sim:sim:r1")
    reasons = tables.decisions["reason"]
    assert isinstance(reasons.dtype, pd.StringDtype) and reasons.dtype.storage == "pyarrow"
    want = [one.reason, "weaker (0.2500)", "weaker (0.1250)", one.reason]
    assert reasons.tolist() == want
    write_csv(pd.DataFrame({"reason": reasons}), tmp_path / "d.csv")
    assert pd.read_csv(tmp_path / "d.csv")["reason"].tolist() == want
    ledger = Ledger(tmp_path / "l.db")
    ledger.start_run("r1", "s", "h", "backtest", "sim", 1.0, ("A", "B"), {}, account="sim:sim:r1")
    with ledger.tx():
        tables.write(ledger)
    assert ledger.frame("decisions", "r1")["reason"].tolist() == want
    ledger.close()


def test_a_batchs_client_ids_are_each_orders_own_and_made_once():
    """The ids of a batch, made for all its orders at once and kept on the batch, are the ids of
    its orders one by one (long names cut, ``/`` dropped); a batch made from it gets its own."""
    from dataclasses import replace

    from framework.order_ids import client_order_id, client_order_ids
    from tests.conftest import order_batch, universe

    long_name = "a-strategy-with-a-very-long-name@20240102T000000Z"
    syms = ["AAPL", "BTC/USD", "X" * 40, "ÉTÉ"]
    for batch_id in ("s@20240102T000000Z", long_name):
        for leg in ("add", "reduce", "add-r1", "stop", "K" * 47, "N" * 48, "L" * 60):
            assert client_order_ids(batch_id, syms, leg) == [client_order_id(batch_id, s, leg) for s in syms]
    b = order_batch(universe("AAPL", "MSFT", "BTC/USD"), "2024-01-02T00:00:00Z",
                    [("AAPL", 1, 1.0), ("MSFT", -1, 2.0), ("BTC/USD", 1, 3.0)])
    names = ("AAPL", "MSFT", "BTC/USD")
    ids = b.client_order_ids()
    assert ids == [client_order_id(b.batch_id, s, b.leg) for s in names]
    ids.append("changed by the caller")
    assert b.client_order_ids() == ids[:3]                     # the batch's own stay as they were
    other = replace(b, leg="take")                             # a new batch: its own ids
    assert other.client_order_ids() == [client_order_id(b.batch_id, s, "take") for s in names]
    assert b.subset(np.array([False, True, True])).client_order_ids() == ids[1:3]


def test_the_backtest_command_lets_go_of_its_signals_and_cycle_prices_before_the_ledger_write(
        inputs, tmp_path, monkeypatch):
    """What the replay alone needed is not held while the run is written and its CSVs and figures
    are made (the command's memory peak, issue 15): the signal archive's matrices (40 MB for 500
    symbols over twenty years) and the journal's per-cycle price rows (20 MB, one matrix in the
    run's tables by then). The run itself is complete."""
    import gc
    import weakref

    from framework import artifacts
    from framework.cli import wiring
    from framework.config import load_settings, load_strategy
    from framework.journal import BufferedJournal

    _, settings_path, strategy_path = inputs
    held: dict[str, weakref.ref] = {}
    build, begin, start = wiring.build_backtest, BufferedJournal.begin_cycle, artifacts.ArtifactsAhead.start

    def building(*args, **kwargs):
        setup = build(*args, **kwargs)
        held["weights"], held["confidence"] = weakref.ref(setup.signals.weights), weakref.ref(setup.signals.confidence)
        return setup

    def beginning(self, target, prices, equity):
        held.setdefault("prices", weakref.ref(prices))
        return begin(self, target, prices, equity)

    alive_while_storing: dict[str, bool] = {}

    def storing(*args, **kwargs):
        gc.collect()
        alive_while_storing.update({name: ref() is not None for name, ref in held.items()})
        return start(*args, **kwargs)

    monkeypatch.setattr(wiring, "build_backtest", building)
    monkeypatch.setattr(BufferedJournal, "begin_cycle", beginning)
    monkeypatch.setattr(artifacts.ArtifactsAhead, "start", storing)
    settings = load_settings(settings_path)
    strategy = load_strategy(str(strategy_path), str(settings_path))
    _, summary, out = wiring.run_backtest(settings, str(settings_path), strategy, out_dir=str(tmp_path / "a"),
                                          draw_ahead=True)
    assert alive_while_storing == {"weights": False, "confidence": False, "prices": False}
    assert summary["n_cycles"] > 0 and summary["n_fills"] == len(pd.read_csv(out / "fills.csv")) > 0


def test_a_collected_journal_says_so_instead_of_answering_from_released_buffers():
    from framework.journal import BufferedJournal

    journal = BufferedJournal("r")
    assert journal.cycle_seqs() == set()
    journal.collect()
    with pytest.raises(RuntimeError, match="collected"):
        journal.cycle_seqs()


def test_a_backtest_killed_while_recorded_is_marked_failed_by_the_next_one_and_its_partial_csvs_removed(
        inputs, tmp_path, capsys):
    """An out-of-memory kill lands where a large backtest peaks: while it is recorded. The run stayed
    ``running`` and its CSVs ``.partial`` for good; the next backtest marks it failed and removes them.
    One still being recorded (its process alive, holding its run's lease) is left alone."""
    import os
    import subprocess

    from framework.cli.wiring import run_backtest
    from framework.config import load_settings, load_strategy
    from framework.ledger import Ledger

    _, settings_path, strategy_path = inputs
    text = yaml.safe_load(open(settings_path))
    text.update(ledger=str(tmp_path / "parity.db"), reports_dir=str(tmp_path / "reports"))
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(text))
    gone = subprocess.Popen(["true"])
    gone.wait()                                          # a process that has ended
    ledger = Ledger(tmp_path / "parity.db")
    for run, holder in (("killed", gone.pid), ("legacy", None), ("writing", os.getpid())):
        ledger.start_run(run, "bulk", "h", "backtest", "sim", 1.0, ("A",), {}, account=f"sim:sim:{run}")
        if holder is not None:
            assert ledger.try_lease(f"sim:sim:{run}", "backtest", 900.0, pid=holder)[0]
        (tmp_path / "reports" / run).mkdir(parents=True)
        (tmp_path / "reports" / run / "orders.csv.partial").write_text("time,symbol\n")
    ledger.close()
    settings = load_settings(str(tmp_path / "settings.yaml"))
    strategy = load_strategy(str(strategy_path), str(tmp_path / "settings.yaml"))
    run_id, summary, out = run_backtest(settings, str(tmp_path / "settings.yaml"), strategy, report=False)
    ledger = Ledger(tmp_path / "parity.db")
    status = {r: ledger.run(r)["status"] for r in ("killed", "legacy", "writing", run_id)}
    ledger.close()
    assert status == {"killed": "failed", "legacy": "failed", "writing": "running", run_id: "done"}
    assert sorted(p.parent.name for p in (tmp_path / "reports").glob("*/*.partial")) == ["writing"]
    err = capsys.readouterr().err
    assert "backtest killed ended while it was being recorded" in err and "writing" not in err
    assert summary["n_fills"] > 0 and (out / "fills.csv").exists()


def test_a_simulated_run_lets_go_of_its_bars_once_collected(inputs, tmp_path):
    """The replay is the bars' last reader: once the run is collected the simulator retires them, so
    the ledger write and the artifacts do not hold them (150 MB on the large benchmark), and a late
    use of the retired simulator fails loudly instead of reading stale prices."""
    import gc
    import weakref

    from framework.ledger import Ledger
    from framework.session import RunInfo, simulate

    _, settings_path, strategy_path = inputs
    _, strategy, setup = _setup(settings_path, strategy_path)
    close = weakref.ref(setup.market.bars.close)
    ledger = Ledger(tmp_path / "l.db")
    try:
        simulate(ledger, setup.pipeline, setup.market, setup.signals, setup.run_id,
                 RunInfo(strategy.name, strategy.config_hash(), "backtest"), initial_equity=setup.initial_cash)
    finally:
        ledger.close()
    gc.collect()
    assert close() is None
    with pytest.raises(AttributeError):
        setup.market.prices(setup.pipeline.universe)
