"""A backtest's CSVs written by a child forked beside the ledger write (``framework.artifacts.
ArtifactsAhead``, ``framework.forked``), as ``parity backtest`` does (issue 15):

- the files are byte for byte the ones the ledger gives (``parity report``), none left ``.partial``;
- a child that fails only costs time: the command writes the same CSVs itself;
- a ledger write that fails stops the child and leaves nothing half written, and no child running.

The child is only forked in a process with no other thread (``Forked.start``). In the whole suite
other tests' local servers keep threads alive in this process (session fixtures): there these tests
skip, and the last one runs the module again in a fresh process, where they must all run and pass.
"""

from __future__ import annotations

import filecmp
import os
import threading

import pytest

from tests.conftest import rerun_without_threads
from tests.framework.test_whole_command import inputs  # noqa: F401 - the module's fixture

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the child needs fork; elsewhere the process writes")

CSVS = ("equity.csv", "orders.csv", "fills.csv", "decisions.csv")


@pytest.fixture
def forks(monkeypatch):
    """Every child ``Forked.start`` made (None where it declined), for the test to look at."""
    from framework.forked import Forked

    if threading.active_count() > 1:
        pytest.skip("another thread is running: the child is (rightly) not forked (see the last test)")
    made: list = []
    start = Forked.start

    def recorded(work):
        child = start(work)
        made.append(child)
        return child

    monkeypatch.setattr(Forked, "start", staticmethod(recorded))
    return made


def _config(inputs):  # noqa: F811 - the fixture's value
    from framework.config import load_settings, load_strategy

    _, settings_path, strategy_path = inputs
    settings = load_settings(settings_path)
    return settings, str(settings_path), load_strategy(str(strategy_path), str(settings_path))


def test_csvs_written_by_the_child_are_the_ones_the_ledger_gives(inputs, tmp_path, forks):  # noqa: F811
    from framework.artifacts import write_artifacts
    from framework.cli.wiring import run_backtest
    from framework.ledger import Ledger

    settings, settings_path, strategy = _config(inputs)
    run_id, _, out = run_backtest(settings, settings_path, strategy, out_dir=str(tmp_path / "a"), draw_ahead=True)
    assert len(forks) == 1 and forks[0] is not None          # the CSVs were the child's
    ledger = Ledger(settings.ledger)
    try:
        again = write_artifacts(ledger, run_id, tmp_path / "b", report=False, record=False)
    finally:
        ledger.close()
    for name in ("summary.json", *CSVS):
        assert filecmp.cmp(out / name, again / name, shallow=False), name
    assert (out / "report.html").is_file()
    assert not list(out.glob("*.partial"))


def test_csvs_are_written_here_when_the_forked_child_fails(inputs, tmp_path, monkeypatch, forks):  # noqa: F811
    """The child only speeds things up: when it fails, the command writes the same CSVs itself."""
    import framework.artifacts as artifacts
    from framework.cli.wiring import run_backtest

    settings, settings_path, strategy = _config(inputs)
    parent, real = os.getpid(), artifacts.write_csvs

    def fail_in_child(frames, *a):
        if os.getpid() != parent:
            raise OSError("disk full (in the child)")
        real(frames, *a)

    monkeypatch.setattr(artifacts, "write_csvs", fail_in_child)
    _, _, out = run_backtest(settings, settings_path, strategy, out_dir=str(tmp_path / "a"), draw_ahead=True)
    assert len(forks) == 1 and forks[0] is not None
    monkeypatch.setattr(artifacts, "write_csvs", real)
    _, _, ref = run_backtest(settings, settings_path, strategy, out_dir=str(tmp_path / "b"))
    for name in CSVS:
        assert filecmp.cmp(out / name, ref / name, shallow=False), name
    assert not list(out.glob("*.partial"))


def test_a_failed_ledger_write_leaves_no_csvs_and_no_child(inputs, tmp_path, monkeypatch, forks):  # noqa: F811
    """The ledger write fails after the CSV child started: the child is stopped, nothing half
    written stays in the run's folder, and the error reaches the caller."""
    import framework.backtest as backtest
    from framework.cli.wiring import run_backtest

    settings, settings_path, strategy = _config(inputs)

    def broken(ledger, tables, outcome, **kw):
        raise OSError("database or disk is full")

    monkeypatch.setattr(backtest, "store_run", broken)
    with pytest.raises(OSError, match="disk is full"):
        run_backtest(settings, settings_path, strategy, out_dir=str(tmp_path / "a"), draw_ahead=True)
    assert [p for p in (tmp_path / "a").rglob("*") if p.is_file()] == []
    assert len(forks) == 1 and forks[0] is not None
    with pytest.raises(ChildProcessError):          # stopped and reaped: not left running
        os.waitpid(forks[0].pid, os.WNOHANG)


def test_the_parent_collects_its_garbage_again_once_the_child_is_done(forks):
    """While the child runs, the parent's collector leaves the objects it shares with the child
    alone (touching them would copy their pages); once the child is done, garbage made before the
    fork is collected as usual, so nothing leaks for the rest of the command."""
    import gc
    import weakref

    from framework.forked import Forked

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a                      # a cycle: only the collector frees it
    gone = weakref.ref(a)
    child = Forked.start(lambda: None)
    assert child is not None
    del a, b
    gc.collect()
    assert gone() is not None                    # frozen beside the child
    assert child.wait()
    gc.collect()
    assert gone() is None


def test_the_module_in_a_process_without_threads():
    """Where threads kept the tests above from forking (the whole suite), they run again in a fresh
    process, and must all run and pass there."""
    rerun_without_threads(__file__, "PARITY_AHEAD_CHILD")
