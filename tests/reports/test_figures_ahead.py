"""The report's figures drawn ahead by a forked helper (``parity backtest``, issue 15): the PNGs
the helper draws are the ones the process draws, byte for byte; a helper that is gone, or fails,
costs time only (the process draws, and raises what drawing raises); and no helper outlives the
command, whether it ends with a report or with an error."""

from __future__ import annotations

import filecmp
import multiprocessing
import threading

import pandas as pd
import pytest
import yaml

from framework.reports import figures
from framework.reports.figures import FIGURES, FigureWorker, draw_figures, figure_inputs
from tests.conftest import rerun_without_threads
from tests.reports.synthetic import build_run

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="the helper needs fork; elsewhere the process draws (the plain path)")


def _helpers() -> list:
    return [p for p in multiprocessing.active_children() if p.name == "parity-figures"]


def _worker() -> FigureWorker:
    if threading.active_count() > 1:
        pytest.skip("another thread is running: the helper is (rightly) not forked (see the last test)")
    worker = FigureWorker.start()
    assert worker is not None
    return worker


def _refuse(_inputs):
    raise AssertionError("drawn in the process, not by the helper")


@pytest.fixture(scope="module")
def run_inputs():
    return figure_inputs(build_run(mode="backtest", n_bars=300))


def test_the_helper_draws_the_pngs_the_process_draws(run_inputs, monkeypatch):
    here = draw_figures(run_inputs)
    worker = _worker()
    monkeypatch.setattr(figures, "draw_figures", _refuse)   # from here on only the helper can draw
    worker.submit(run_inputs)
    got = worker.images(run_inputs)
    assert tuple(got) == FIGURES
    assert got == here
    assert not _helpers()


def _spilled() -> list:
    import glob
    import os
    import tempfile

    return glob.glob(os.path.join(tempfile.gettempdir(), figures.SPILL_PREFIX + "*"))


def test_the_helper_is_gone_once_it_has_drawn_and_leaves_no_file(run_inputs):
    import time

    before = set(_spilled())
    worker = _worker()
    worker.submit(run_inputs)
    deadline = time.monotonic() + 120
    while _helpers() and time.monotonic() < deadline:   # it exits without waiting to be read
        time.sleep(0.05)
    assert not _helpers()
    assert worker.images(run_inputs) == draw_figures(run_inputs)
    assert set(_spilled()) == before                      # its temporary PNG file is read and deleted
    failed = _worker()                                    # a command that fails before its report
    failed.submit(run_inputs)
    while _helpers() and time.monotonic() < deadline:
        time.sleep(0.05)
    failed.close()
    assert set(_spilled()) == before


def test_a_helper_that_is_gone_costs_time_only(run_inputs):
    worker = _worker()
    (helper,) = _helpers()
    helper.kill()
    helper.join()
    worker.submit(run_inputs)
    assert worker.images(run_inputs) == draw_figures(run_inputs)
    assert not _helpers()


def test_a_helper_that_never_answers_costs_its_wait_only(run_inputs, monkeypatch):
    import os
    import time

    parent, draw = os.getpid(), figures.draw_figures

    def stuck_in_the_helper(inputs):
        if os.getpid() != parent:                    # the forked helper: takes far longer than the wait
            time.sleep(60)
        return draw(inputs)

    monkeypatch.setattr(figures, "draw_figures", stuck_in_the_helper)
    monkeypatch.setattr(figures, "HELPER_WAIT", 0.5)
    worker = _worker()                               # forked after the patch: it inherits both
    worker.submit(run_inputs)
    t = time.monotonic()
    assert worker.images(run_inputs) == draw(run_inputs)   # drawn here once the wait is over
    assert time.monotonic() - t < 30
    assert not _helpers()                            # the stuck helper was stopped, not left behind


def test_a_figure_that_cannot_be_drawn_raises_in_the_process(run_inputs):
    bad = figures.FigureInputs(**{**run_inputs.__dict__, "equity": pd.DataFrame({"time": []})})
    with pytest.raises(KeyError, match="equity"):
        draw_figures(bad)
    worker = _worker()
    worker.submit(bad)
    with pytest.raises(KeyError, match="equity"):
        worker.images(bad)
    assert not _helpers()


@pytest.fixture(scope="module")
def backtest_files(tmp_path_factory):
    from benchmarks.whole import write_inputs
    from benchmarks.workloads import make_workload, prefix

    root = tmp_path_factory.mktemp("ahead")
    inp = write_inputs(prefix(make_workload("small"), 60, copy=True), root / "in")
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump({"ledger": str(root / "parity.db"), "data_dir": str(root / "data"),
                                        "reports_dir": str(root / "reports")}))
    strategy = root / "strategy.yaml"
    strategy.write_text(yaml.safe_dump({
        "name": "ahead", "signals": {"path": str(inp.signals)}, "bars": {"path": str(inp.bars)},
        "simulation": {"venue": "alpaca", "fill": "next_open", "cash": 1_000_000.0}}))
    return settings, strategy


def test_the_backtest_command_writes_the_same_files_with_figures_drawn_ahead(backtest_files, tmp_path):
    from framework.cli.wiring import run_backtest
    from framework.config import load_settings, load_strategy

    if threading.active_count() > 1:
        pytest.skip("another thread is running: the helper is (rightly) not forked (see the last test)")
    settings_path, strategy_path = backtest_files
    settings = load_settings(settings_path)
    strategy = load_strategy(str(strategy_path), str(settings_path))
    outs = {}
    for ahead in (False, True):
        run_id, _, outs[ahead] = run_backtest(settings, str(settings_path), strategy, draw_ahead=ahead,
                                              out_dir=str(tmp_path / str(ahead)))
        assert not _helpers()
    plain, ahead = outs[False], outs[True]
    names = sorted(p.name for p in plain.iterdir())
    assert names == sorted(p.name for p in ahead.iterdir())
    assert {f"{name}.png" for name in FIGURES} <= set(names)
    for name in names:
        if name.endswith(".png"):
            assert filecmp.cmp(plain / name, ahead / name, shallow=False), name
        else:                   # the same up to the run id (in order ids, the summary, the page)
            a = (plain / name).read_text().replace(plain.name, "RUN")
            b = (ahead / name).read_text().replace(ahead.name, "RUN")
            assert a == b, name


def test_no_helper_outlives_a_backtest_that_fails(backtest_files):
    from framework.cli.wiring import run_backtest
    from framework.config import load_settings, load_strategy
    from framework.errors import UsageError

    settings_path, strategy_path = backtest_files
    settings = load_settings(settings_path)
    strategy = load_strategy(str(strategy_path), str(settings_path))
    with pytest.raises(UsageError, match="--cash must be positive"):
        run_backtest(settings, str(settings_path), strategy, draw_ahead=True, cash=-1.0)
    assert not _helpers()


def test_the_module_in_a_process_without_threads():
    """In the whole suite other tests' local servers keep threads alive in this process (session
    fixtures), where the helper is rightly not forked and the tests above skip; then the module runs
    again in a fresh process, where they must all run and pass."""
    rerun_without_threads(__file__, "PARITY_FIGURES_CHILD")
