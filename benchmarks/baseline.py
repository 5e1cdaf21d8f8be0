"""Parity's engine at its first release, timed in the same run as today's.

Issue 15 asks that the engine ratios be "no worse than today", quoting 0.84x (medium) and 0.71x
(large) against vectorbt's engine. Those ratios were measured once, in a run where vectorbt's
engine took 1.04 s on large; the same peer code takes 0.67-0.70 s on this machine now (see the
"issue s" column of the peers table), so a ratio from that run cannot be compared with one from
today's. Timing the first release's engine beside today's, with the same harness, workloads and
machine, says whether the engine got slower.

``tree(out)`` writes the first release's code (``git archive`` of ``FIRST_RELEASE``, this
repository's own history) to ``out/baseline-<rev>/`` once, with today's ``benchmarks`` package
linked in, so ``python -m benchmarks.one parity ...`` there runs today's harness and wiring
(``run_parity.build``: same workloads, same limits, the demo ones included) over the old pipeline.
The first release's pipeline takes the same constructor arguments, so nothing is adapted.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRST_RELEASE = "44efcb1"     # the last commit of the first release (2026-11-21), before issue 15


def tree(out: Path, rev: str = FIRST_RELEASE) -> Path | str:
    """The directory holding ``rev``'s code with today's benchmarks linked in, or why there is none
    (a shallow clone without that commit, no git). Made in a scratch directory beside it and renamed
    into place once complete, so an interrupted run never leaves half a tree to be reused."""
    dest = out / f"baseline-{rev}"
    if dest.is_dir():
        return dest
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as tar, tempfile.TemporaryDirectory(dir=out, prefix=".baseline-") as scratch:
            got = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "framework", "brokers"],
                                 stdout=tar, stderr=subprocess.PIPE, check=False)
            if got.returncode != 0:
                return f"git archive {rev} failed: {got.stderr.decode(errors='replace').strip()[:200]}"
            tar.seek(0)
            made = Path(scratch) / "tree"
            with tarfile.open(fileobj=tar) as t:
                try:
                    t.extractall(made, filter="data")
                except TypeError:           # Python before 3.11.4 has no filter (the archive is our own history)
                    t.extractall(made)
            (made / "benchmarks").symlink_to(REPO / "benchmarks", target_is_directory=True)
            made.rename(dest)
    except OSError as e:
        return f"no checkout of {rev}: {e}"
    return dest
