"""The whole command (SPEC §15, second view): ``parity backtest`` from CSV files to summary, ledger,
artifacts and report, beside the peers' whole processes reading the SAME files.

    python -m benchmarks.whole WORKLOAD [--limits open|demo] [--repeat N] [--engines parity,vectorbt]

Inputs (written once per workload and seed, then reused, under ``benchmarks/out/inputs/``):

* ``bars.csv``: the long bar format of SPEC §14 (``timestamp,symbol,open,high,low,close,volume``,
  ISO 8601 UTC), every symbol on every bar;
* ``signals.csv``: the signal format of SPEC §4 (``symbol,time,side,weight,confidence``), one row
  per symbol with a non-zero target in each batch (an absent symbol is closed, SPEC §4), stamped at
  the batch's bar time;
* a settings file and a strategy file: venue ``alpaca`` with its fees switched off
  (``simulation.fees: false``: the peer has no regulatory fees either), 5 bps slippage on both
  sides, ``fill: next_open``, drift threshold, cash buffer and price buffer 0, $1,000,000. Risk
  limits ``open`` never bind; ``demo`` are the demo strategy's (``max_positions: 10``,
  ``max_position_size_pct: 0.35``, ``max_exposure_pct: 0.95``), which bind on every batch.

Each side runs in its own process, timed from spawn to exit; its peak memory is the child's
``ru_maxrss`` from ``wait4``. The vectorbt peer (:mod:`benchmarks.vbt_csv`) reads both CSV files
with pandas, runs ``Portfolio.from_orders`` (``targetpercent``, next-open fills) and computes its
equity curve and stats; under ``demo`` limits it has no risk manager, so its equity is not
comparable there and only Parity's row is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.workloads import DEFAULT_SEED, Workload, make_workload

REPO = Path(__file__).resolve().parent.parent
INPUTS = REPO / "benchmarks" / "out" / "inputs"

LIMITS = {
    "open": {"max_position_size_pct": 1.0, "max_exposure_pct": 1.0, "max_positions": 100_000,
             "min_confidence": 0.0, "max_daily_loss_pct": 1.0, "min_account_balance": 0.0, "max_leverage": 10.0},
    "demo": {"max_position_size_pct": 0.35, "max_exposure_pct": 0.95, "max_positions": 10,
             "min_confidence": 0.5, "max_daily_loss_pct": 1.0, "min_account_balance": 1000.0,
             "max_leverage": 1.0},
}


@dataclass(frozen=True)
class Inputs:
    root: Path
    bars: Path
    signals: Path

    def config(self, limits: str) -> tuple[Path, Path]:
        """(settings.yaml, strategy.yaml) for ``limits``; ledger and reports in a fresh directory."""
        return self.root / f"settings-{limits}.yaml", self.root / "strategy.yaml"


def _iso(times: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(times.astype("datetime64[s]"), unit="s"), "Z")


def write_inputs(w: Workload, root: Path) -> Inputs:
    """Write the workload's bars and signals as CSV files (once: reused when already there)."""
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    bars, signals = root / "bars.csv", root / "signals.csv"
    n, m = w.close.shape
    if not bars.is_file():
        stamps = _iso(w.times)
        df = pd.DataFrame({
            "timestamp": np.repeat(stamps, m), "symbol": np.tile(np.array(w.symbols, dtype=object), n),
            **{c: getattr(w, c).reshape(-1) for c in ("open", "high", "low", "close", "volume")}})
        tmp = bars.with_suffix(".tmp")
        df.to_csv(tmp, index=False, float_format="%.17g")
        tmp.replace(bars)
    if not signals.is_file():
        k, j = np.nonzero(w.weights > 0)
        df = pd.DataFrame({"symbol": np.array(w.symbols, dtype=object)[j], "time": _iso(w.times[w.rebalance_idx])[k],
                           "side": 1, "weight": w.weights[k, j], "confidence": 1.0})
        tmp = signals.with_suffix(".tmp")
        df.to_csv(tmp, index=False, float_format="%.17g")
        tmp.replace(signals)
    out = Inputs(root, bars, signals)
    for name, lim in LIMITS.items():
        _write_config(out, w, name, lim)
    return out


def _write_config(inp: Inputs, w: Workload, name: str, limits: dict) -> None:
    import yaml

    settings, strategy = inp.config(name)
    settings.write_text(yaml.safe_dump({"execution": dict(limits), "ledger": "run/parity.db",
                                        "data_dir": "run/data/", "reports_dir": "run/reports/"}))
    strategy.write_text(yaml.safe_dump({
        "name": "bench", "signals": {"path": str(inp.signals)}, "bars": {"path": str(inp.bars)},
        "rebalance": {"drift_threshold": 0.0, "cash_buffer_pct": 0.0, "price_buffer_bps": 0.0,
                      "unfilled": "cancel"},
        "simulation": {"venue": "alpaca", "fill": "next_open", "fees": False,
                       "slippage": {"model": "fixed_bps", "bps": w.slippage * 1e4}, "cash": w.init_cash}}))


def inputs_for(workload: str, seed: int = DEFAULT_SEED) -> tuple[Workload, Inputs]:
    w = make_workload(workload, seed)
    return w, write_inputs(w, INPUTS / f"{workload}-{seed}")


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it (Linux ``/proc``)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    parent[int(d)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree and p not in tree}
        tree |= more
        grew = bool(more)
    return sorted(tree)


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class TreeMemory:
    """The most memory a process and its children held together, sampled every ``every`` seconds:
    the sum of their proportional set sizes (PSS: a page two processes share counts half in each),
    which a forked helper's pages shared with its parent do not inflate and its own pages do not
    escape. 0 where ``/proc/PID/smaps_rollup`` is missing (not Linux)."""

    def __init__(self, pid: int, every: float = 0.1):
        import threading

        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if not os.path.exists(f"/proc/{self.pid}/smaps_rollup"):
            return
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, sum(_pss(p) for p in _tree(self.pid)))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_process(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd`` to its end; wall seconds from spawn to exit, the child's peak RSS (``ru_maxrss``
    of the largest process of its tree), the tree's peak PSS summed over its processes, its stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        tree = TreeMemory(p.pid)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        tree_peak = tree.stop()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"seconds": wall, "peak_bytes": peak, "tree_pss_bytes": tree_peak, "code": p.returncode, "stdout": stdout,
            "stderr": stderr[-3000:]}


def run_parity(inp: Inputs, limits: str, workdir: Path) -> dict:
    settings, strategy = inp.config(limits)
    # ``python -m framework`` is the ``parity`` console script; run this way, the checkout the
    # harness lives in (first on PYTHONPATH) is the one measured, whatever is installed.
    cmd = [sys.executable, "-m", "framework",
           "backtest", "--config", str(settings), "--strategy", str(strategy), "--json"]
    r = run_process(cmd, workdir)
    r["final_equity"] = json.loads(r["stdout"])["final_equity"] if r["code"] == 0 else None
    return r


def run_vectorbt(inp: Inputs, w: Workload, workdir: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.vbt_csv", str(inp.bars), str(inp.signals), "--fees", "0",
           "--slippage", str(w.slippage), "--cash", str(w.init_cash)]
    r = run_process(cmd, workdir)
    r["final_equity"] = json.loads(r["stdout"].strip().splitlines()[-1])["final_equity"] if r["code"] == 0 else None
    return r


def measure(workload: str, limits: str = "open", repeat: int = 1, engines: tuple[str, ...] = ("parity", "vectorbt"),
            seed: int = DEFAULT_SEED, log=print) -> dict:
    """Alternate Parity and the peer ``repeat`` times on one workload; every run's figures."""
    w, inp = inputs_for(workload, seed)
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for k in range(repeat):
        for eng in engines:
            if eng == "vectorbt" and limits != "open":
                continue
            with tempfile.TemporaryDirectory(prefix=f"whole-{workload}-") as d:
                r = run_parity(inp, limits, Path(d)) if eng == "parity" else run_vectorbt(inp, w, Path(d))
            if r["code"] != 0:
                log(f"[{workload}] whole {eng}: exit {r['code']}: {r['stderr'][-800:]}")
            else:
                log(f"[{workload}] whole {eng} ({limits}) run {k + 1}: {r['seconds']:.2f} s, "
                    f"peak {r['peak_bytes'] / 2**30:.2f} GiB (all processes {r['tree_pss_bytes'] / 2**30:.2f} GiB PSS), "
                    f"equity {r['final_equity']}")
            r.pop("stdout", None)
            runs[eng].append(r)
    return {"workload": workload, "limits": limits, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.whole", description=__doc__.splitlines()[0])
    ap.add_argument("workload")
    ap.add_argument("--limits", default="open", choices=tuple(LIMITS))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--engines", default="parity,vectorbt")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    a = ap.parse_args(argv)
    res = measure(a.workload, a.limits, a.repeat, tuple(a.engines.split(",")), a.seed,
                  log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(res, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
