"""How ``parity`` leaves (``framework.cli.entry``): at once when the command is over, with its whole
output and its exit code; the ordinary way, waiting, while a thread of its own is still working."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import cli_env, run_parity

LATE_THREAD = """
import sys, threading, time
from pathlib import Path

target = Path(sys.argv[1])

def late():
    time.sleep(0.5)
    target.write_text("done")

threading.Thread(target=late).start()
sys.argv = ["parity", "--help"]
from framework.cli import entry
entry()
"""


def test_output_and_exit_code_survive_the_quick_exit(tmp_path):
    ok = run_parity("--help", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "Usage:" in ok.stdout and "backtest" in ok.stdout
    bad = run_parity("backtest", "--strategy", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert bad.returncode == 2
    assert "missing.yaml" in bad.stderr and "Traceback" not in bad.stderr


def test_a_thread_still_working_is_waited_for(tmp_path):
    target = tmp_path / "late.txt"
    proc = subprocess.run([sys.executable, "-c", LATE_THREAD, str(target)], capture_output=True, text=True,
                          timeout=60, env=cli_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert target.read_text() == "done"
