"""The first release's engine is timed beside today's (``benchmarks/baseline.py``): its code comes
from this repository's history, byte for byte, with today's harness linked in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.baseline import FIRST_RELEASE, REPO, tree


def test_the_first_release_is_checked_out_from_history_and_runs_todays_harness(tmp_path):
    have = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{FIRST_RELEASE}^{{commit}}"],
                          capture_output=True).returncode == 0
    got = tree(tmp_path)
    if not have:                      # a shallow clone: the table says why, nothing is made up
        assert isinstance(got, str) and FIRST_RELEASE in got
        return
    assert isinstance(got, Path)
    old = subprocess.run(["git", "-C", str(REPO), "show", f"{FIRST_RELEASE}:framework/engine.py"],
                         capture_output=True, text=True, check=True).stdout
    assert (got / "framework" / "engine.py").read_text() == old
    assert (got / "framework" / "engine.py").read_text() != (REPO / "framework" / "engine.py").read_text()
    assert (got / "benchmarks").resolve() == REPO / "benchmarks"
    assert tree(tmp_path) == got      # made once
    # today's wiring builds the old pipeline: the framework imported there is the old one
    probe = ("import framework.engine as e, benchmarks.run_parity as r; "
             "print(e.__file__); print(r.__file__)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=got, env={"PYTHONPATH": str(got), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]).is_relative_to(got) and Path(out[1]).name == "run_parity.py"
