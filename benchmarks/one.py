"""Run ONE engine on ONE workload in this (fresh) process and write its PeerResult as JSON.

    python -m benchmarks.one ENGINE WORKLOAD [--fill close|next_open] [--bars N] [--seed S]
                                             [--out FILE]

ENGINE is ``parity``, ``vectorbt`` or ``backtrader``; ``--bars N`` runs the prefix of the first
N bars (used by the harness to time slow engines before committing to a full run). The JSON
(on ``--out``, else the last line of stdout) is ``{"ok": true, "result": {...}}`` or
``{"ok": false, "error": "NotImplementedError", "message": ...}``.
Exit codes: 0 ok, 3 engine not implemented, 1 any other failure.

The harness runs every measurement through this module so that each engine's peak memory, JIT
caches and imports belong to its own process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

ENGINES = ("parity", "vectorbt", "backtrader")


def run_one(engine: str, workload: str, fill: str = "close", bars: int | None = None,
            seed: int | None = None, limits: str = "open", repeat: int = 1):
    from benchmarks.workloads import DEFAULT_SEED, make_workload, prefix

    t0 = time.perf_counter()
    w = make_workload(workload, seed=DEFAULT_SEED if seed is None else seed)
    if bars:
        w = prefix(w, bars, copy=True)  # own arrays: the full workload is freed before measuring
    gen = time.perf_counter() - t0
    if engine == "vectorbt":
        from benchmarks.peers import run_vectorbt

        r = run_vectorbt(w, fill=fill)
    elif engine == "backtrader":
        from benchmarks.peers import _run_backtrader_once

        r = _run_backtrader_once(w, fill)  # no budget here: the harness decides on prefixes
    elif engine == "parity":
        from benchmarks.run_parity import run

        r = run(w, fill=fill, limits=limits, repeat=repeat)
    else:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    r.extra = {**(r.extra or {}), "generate_seconds": gen, "n_rebalances": w.n_rebalances}
    r.workload = r.workload or w.name
    r.n_bars = r.n_bars or w.n_bars
    r.n_symbols = r.n_symbols or w.n_symbols
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.one", description=__doc__.splitlines()[0])
    ap.add_argument("engine", choices=ENGINES)
    ap.add_argument("workload")
    ap.add_argument("--fill", default="close", choices=("close", "next_open"))
    ap.add_argument("--bars", type=int, default=None, help="run only the first N bars")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the JSON here instead of stdout")
    ap.add_argument("--limits", default="open", choices=("open", "demo"),
                    help="Parity's risk limits: open (never bind) or demo (max_positions 10 binds)")
    ap.add_argument("--repeat", type=int, default=1, help="Parity: the best engine time of N replays")
    a = ap.parse_args(argv)
    code = 0
    try:
        r = run_one(a.engine, a.workload, a.fill, a.bars, a.seed, a.limits, a.repeat)
        payload = {"ok": True, "result": r.to_dict()}
    except NotImplementedError as e:
        payload = {"ok": False, "error": "NotImplementedError", "message": str(e)}
        code = 3
    except Exception as e:  # reported to the harness, which prints the row as failed
        payload = {"ok": False, "error": type(e).__name__, "message": str(e),
                   "traceback": traceback.format_exc()}
        code = 1
    text = json.dumps(payload, default=float)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
