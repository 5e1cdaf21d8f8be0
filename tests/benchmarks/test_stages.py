"""``python -m benchmarks.stages``: the whole command's time, stage by stage (issue 15's profile).
The stages are Parity's own functions wrapped by name; a renamed or moved one must fail here, not
quietly drop out of the profile."""

from __future__ import annotations

import pytest


def test_every_stage_of_a_backtest_is_timed_once_in_the_order_it_runs(tmp_path, monkeypatch):
    from benchmarks import stages, whole

    monkeypatch.setattr(whole, "INPUTS", tmp_path / "inputs")      # the workload's CSVs, written here
    got, imports, command = stages.measure("small")
    assert [s.name for s in got] == [name for _, _, name in stages.STAGES]
    assert all(a.start <= b.start for a, b in zip(got, got[1:]))
    assert all(s.seconds >= 0 for s in got) and imports > 0
    ledger_write = next(s for s in got if s.name.startswith("ledger write"))
    assert ledger_write.start + ledger_write.seconds <= command + 1e-6
    text = stages.table("small", got, imports, command)
    assert text.count("\n| ") == len(got) + 3       # the header, imports, the stages, the total
    assert f"**{command:.2f}**" in text


def test_the_wrapped_functions_are_put_back(tmp_path, monkeypatch):
    import framework.artifacts
    import framework.backtest
    from benchmarks import stages, whole

    before = (framework.backtest.replay, framework.artifacts.ArtifactsAhead.__dict__["start"])
    monkeypatch.setattr(whole, "INPUTS", tmp_path / "inputs")
    monkeypatch.setattr(framework.backtest, "store_run", _fails)
    with pytest.raises(OSError, match="disk is full"):
        stages.measure("small")
    monkeypatch.undo()
    assert (framework.backtest.replay, framework.artifacts.ArtifactsAhead.__dict__["start"]) == before


def _fails(*args, **kwargs):
    raise OSError("database or disk is full")
