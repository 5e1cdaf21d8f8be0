"""``make bench`` / ``python -m benchmarks``: Parity vs vectorbt vs backtrader (SPEC §15).

    python -m benchmarks [--workloads small,medium,large,crypto] [--engines parity,vectorbt,backtrader]
                         [--skip-backtrader] [--fill close|next_open] [--max-seconds 600]
                         [--seed N] [--out benchmarks/out] [--sweep-points 200] [--sweep-repeats 2]
                         [--whole medium,large] [--stages large]

Parity's engine is also timed at its first release (``benchmarks/baseline.py``: that commit's code
from this repository's history, run by today's harness; ``--no-first-release`` skips it), so
"no slower than the first release" is measured in the same run.

Then the whole command of each ``--stages`` workload stage by stage (benchmarks/stages.py: where the
time goes), then sweep throughput (benchmarks/sweep.py): backtests per minute of ``parity sweep`` on
the medium workload with 1 and 2 local workers and on a local Dask cluster, a sweep of 200 points by default
(the size users run; with a few points the start-up is most of the wall time).

For every workload, each engine runs in its own fresh subprocess (``python -m benchmarks.one``),
one after the other, so peak memory, JIT caches and imports are never shared and runs never
compete for the CPU. vectorbt runs first: its final equity is the reference the other rows are
compared with.

Time budget: a budgeted engine (backtrader, and Parity until it is known to be fast) is first
timed on a prefix (5 % of the bars, at least 200). If the linear estimate for the full size is
under ``--max-seconds`` it then runs in full; otherwise the prefix result is extrapolated
(time and memory linearly in bars) and the table says "extrapolated from N bars". An extrapolated
row has no full-size final equity; its equity is compared with vectorbt on the SAME prefix.

Writes ``OUT/results.json`` and ``OUT/results.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.baseline import FIRST_RELEASE
from benchmarks.baseline import tree as baseline_tree
from benchmarks.peers import PeerResult, extrapolate, probe_bars
from benchmarks.workloads import DEFAULT_SEED, WORKLOADS, workload_shape

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("parity", "vectorbt", "backtrader")
BUDGETED = ("parity", "backtrader")

# Reference timings quoted in the performance issue (seconds, peak bytes).
ISSUE_REFERENCE = {
    ("vectorbt", "medium"): (0.071, None),
    ("vectorbt", "large"): (1.04, 1.5e9),
    ("vectorbt", "crypto"): (0.41, None),
    ("backtrader", "medium"): (6.3, None),
    ("backtrader", "large"): (245.0, 7e9),
    ("backtrader", "crypto"): (44.0, None),
}

FIRST_REPEAT = 5        # replays per side in the comparison with the first release

HEAVY_MODULES = ("vectorbt", "numba", "matplotlib", "alpaca", "coinbase", "backtrader", "pandas",
                 "pyarrow")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# subprocess runs
# --------------------------------------------------------------------------------------------

def spawn(engine: str, workload: str, fill: str, seed: int, bars: int | None = None,
          timeout: float | None = None, limits: str = "open", root: Path = REPO, repeat: int = 1) -> dict:
    """Run ``benchmarks.one`` in a fresh interpreter (over the code under ``root``: this checkout,
    or ``benchmarks.baseline``'s first release). Returns {"status": "ok"|"n/a"|"error"|
    "timeout", "result": PeerResult | None, "message": str, "wall": float}."""
    fd, out = tempfile.mkstemp(prefix=f"bench-{engine}-{workload}-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "benchmarks.one", engine, workload, "--fill", fill,
           "--seed", str(seed), "--out", out]
    if bars:
        cmd += ["--bars", str(bars)]
    if limits != "open":
        cmd += ["--limits", limits]
    if repeat > 1:
        cmd += ["--repeat", str(repeat)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.unlink(out)
        return {"status": "timeout", "result": None, "wall": time.perf_counter() - t0,
                "message": f"killed after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    try:
        with open(out) as f:
            payload = json.loads(f.read() or "{}")
    except (OSError, json.JSONDecodeError):
        payload = {}
    finally:
        if os.path.exists(out):
            os.unlink(out)
    if payload.get("ok"):
        return {"status": "ok", "result": PeerResult.from_dict(payload["result"]), "wall": wall,
                "message": ""}
    if payload.get("error") == "NotImplementedError":
        return {"status": "n/a", "result": None, "wall": wall,
                "message": payload.get("message") or "not implemented"}
    msg = payload.get("message") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if payload.get("traceback"):
        log(payload["traceback"])
    elif proc.returncode:
        log(proc.stderr[-4000:])
    return {"status": "error", "result": None, "wall": wall,
            "message": f"{payload.get('error', 'exit ' + str(proc.returncode))}: {msg}"}


def run_budgeted(engine: str, workload: str, fill: str, seed: int, max_seconds: float) -> dict:
    """Probe on a prefix, then the full size if the estimate fits in ``max_seconds``."""
    full = workload_shape(workload)
    n = probe_bars(full)
    if n >= full.n_bars:
        return spawn(engine, workload, fill, seed, timeout=2 * max_seconds + 120)
    part = workload_shape(workload, n)
    log(f"  {engine}: probing {n:,} of {full.n_bars:,} bars")
    probe = spawn(engine, workload, fill, seed, bars=n, timeout=max_seconds + 120)
    if probe["status"] != "ok":
        return probe
    r: PeerResult = probe["result"]
    estimate = r.engine_seconds * full.n_bars / n
    log(f"  {engine}: {r.engine_seconds:.2f} s on the prefix -> estimate {estimate:.1f} s for the full size")
    if estimate < max_seconds:
        res = spawn(engine, workload, fill, seed, timeout=max(2 * max_seconds, 3 * estimate) + 120)
        if res["status"] != "timeout":
            res["probe"] = r
            return res
        note = f"full run {res['message']}"
    else:
        note = f"estimated {estimate:.0f} s > budget {max_seconds:.0f} s"
    # a second, much shorter prefix separates fixed memory from memory that grows with bars
    tiny = max(2, n // 10)
    log(f"  {engine}: second probe on {tiny:,} bars for the memory extrapolation")
    small = spawn(engine, workload, fill, seed, bars=tiny, timeout=max_seconds + 120)
    if small["status"] == "ok":
        x = extrapolate(r, full, part, small["result"], workload_shape(workload, tiny))
    else:
        x = extrapolate(r, full, part)
    x.notes = x.notes + [note]
    return {"status": "ok", "result": x, "wall": probe["wall"], "message": "", "probe": r}


# --------------------------------------------------------------------------------------------
# parity --help start-up
# --------------------------------------------------------------------------------------------

def parity_help_startup(runs: int = 5) -> dict:
    exe = Path(sys.executable).parent / "parity"
    cmd = [str(exe)] if exe.exists() else ([shutil.which("parity")] if shutil.which("parity") else None)
    if cmd is None:
        return {"median_seconds": None, "status": "n/a", "message": "no `parity` command"}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd + ["--help"], cwd=REPO, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            last = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
            return {"median_seconds": None, "status": "n/a", "message": f"`parity --help` failed: {last}"}
        times.append(dt)
    probe = (
        "import sys, json\n"
        "sys.argv = ['parity', '--help']\n"
        "from framework.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]))\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    try:
        heavy = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        heavy = None
    return {"median_seconds": statistics.median(times), "runs": times, "status": "ok",
            "heavy_modules_imported": heavy, "command": " ".join(cmd + ["--help"])}


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------

def _f(x, fmt="{:.3g}", na="n/a"):
    return na if x is None else fmt.format(x)


def _secs(x):
    if x is None:
        return "n/a"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _rate(x):
    if x is None:
        return "n/a"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g}"


def build_rows(results: dict) -> list[dict]:
    """results[workload][engine] -> spawn() dicts (plus "vbt_prefix": {bars: equity})."""
    rows = []
    for wl, per in results.items():
        shape = workload_shape(wl)
        vbt = per.get("vectorbt", {}).get("result")
        par = per.get("parity", {}).get("result")
        for eng in ENGINES:
            if eng not in per:
                continue
            run = per[eng]
            r: PeerResult | None = run.get("result")
            row = {"workload": wl, "engine": eng, "status": run["status"], "message": run.get("message", ""),
                   "n_bars": shape.n_bars, "n_symbols": shape.n_symbols}
            if r is not None:
                row.update(r.to_dict())
                row["cells_per_s"] = shape.cells / r.engine_seconds if r.engine_seconds else None
                row["orders_per_s"] = r.n_orders / r.engine_seconds if r.engine_seconds else None
                # equity vs vectorbt: full run vs full run, prefix vs the same prefix
                ref = None
                if r.extrapolated_from:
                    ref = per.get("vbt_prefix", {}).get(r.extrapolated_from)
                    eq = r.prefix_final_equity
                else:
                    ref = vbt.final_equity if vbt is not None else None
                    eq = r.final_equity
                row["equity_rel_diff_vs_vectorbt"] = (
                    (eq - ref) / ref if (eq is not None and ref) else None)
                row["equity_compared_on"] = (f"prefix {r.extrapolated_from} bars" if r.extrapolated_from
                                             else "full")
                # Parity's time ratio vs this peer
                if eng != "parity" and par is not None and r.engine_seconds:
                    row["parity_time_ratio"] = par.engine_seconds / r.engine_seconds
                else:
                    row["parity_time_ratio"] = None
            rows.append(row)
    return rows


def markdown(rows: list[dict], meta: dict, help_info: dict, fill: str) -> str:
    head = ("| workload | engine | engine s | warm-up s | load s | bars×symbols/s | orders/s | orders "
            "| peak MB | final equity | Parity time ratio (parity/peer) | equity rel. diff vs vectorbt "
            "| notes |")
    sep = "|" + "---|" * 13
    out = [f"# Parity benchmark ({meta['date']})", "",
           f"fill: `{fill}`, fees 10 bps, slippage 5 bps, fractional quantities, sells first; "
           f"seed {meta['seed']}. Machine: {meta['machine']}. Load average (1/5/15 min) at start "
           f"{meta.get('load_average_start_end', [None])[0]}, at end {meta.get('load_average_start_end', [None, None])[1]}"
           " (other work on the machine inflates the timings).", "", head, sep]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['workload']} | {r['engine']} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a "
                       f"| n/a | n/a | {r['status']}: {r['message'][:80]} |")
            continue
        notes = "; ".join(r.get("notes") or [])
        eq = r["final_equity"]
        eq_s = f"{eq:,.6f}" if eq is not None else f"n/a (prefix: {r['prefix_final_equity']:,.6f})"
        diff = r.get("equity_rel_diff_vs_vectorbt")
        if r["engine"] == "vectorbt" and not r.get("extrapolated_from"):
            diff_s = "(reference)"
        else:
            diff_s = _f(diff, "{:+.1e}") + (" (prefix)" if r.get("extrapolated_from") and diff is not None else "")
        peak = r["peak_mem_bytes"] / 2**20
        peak_s = f"{peak:,.0f}" + ("*" if r.get("extrapolated_from") else "")
        secs_s = _secs(r["engine_seconds"]) + ("*" if r.get("extrapolated_from") else "")
        ratio_s = "—" if r["engine"] == "parity" else _f(r.get("parity_time_ratio"), "{:.3g}")
        out.append(
            f"| {r['workload']} | {r['engine']} | {secs_s} | {_secs(r['warmup_seconds'])} "
            f"| {_secs(r['load_seconds'])} | {_rate(r['cells_per_s'])} | {_rate(r['orders_per_s'])} "
            f"| {r['n_orders']:,} | {peak_s} | {eq_s} | {ratio_s} "
            f"| {diff_s} | {notes} |")
    out += ["", "`*` extrapolated linearly from a prefix (see notes). Peak MB is the engine process's "
            "resident high-water mark over load + warm-up + run (interpreter, imports and the workload "
            "arrays included); each engine runs in its own process. Engine s excludes data loading and "
            "JIT warm-up, reported separately.", ""]
    # reference timings from the issue
    ref_lines = []
    for r in rows:
        key = (r["engine"], r["workload"])
        if r["status"] == "ok" and key in ISSUE_REFERENCE:
            t_ref, m_ref = ISSUE_REFERENCE[key]
            ref_lines.append(
                f"| {r['workload']} | {r['engine']} | {_secs(r['engine_seconds'])} | {t_ref:g} "
                f"| {r['engine_seconds'] / t_ref:.2f} | {r['peak_mem_bytes'] / 1e9:.2f} "
                f"| {_f(m_ref and m_ref / 1e9, '{:.1f}')} |")
    if ref_lines:
        out += ["Peers against the reference timings quoted in the performance issue:", "",
                "| workload | engine | measured s | issue s | measured/issue | peak GB | issue peak GB |",
                "|---|---|---|---|---|---|---|", *ref_lines, ""]
    if help_info.get("median_seconds") is not None:
        heavy = help_info.get("heavy_modules_imported")
        out.append(f"`parity --help` start-up: median {help_info['median_seconds'] * 1000:.0f} ms over "
                   f"{len(help_info['runs'])} runs; modules imported by --help among {', '.join(HEAVY_MODULES)}: "
                   f"{', '.join(heavy) if heavy else 'none' if heavy == [] else 'unknown'}.")
    else:
        out.append(f"`parity --help` start-up: n/a ({help_info.get('message')}).")
    return "\n".join(out) + "\n"


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def views_table(results: dict, whole: dict) -> str:
    """SPEC §15's two views side by side per workload: engine time and the whole command (Parity
    from the CSV files vs vectorbt's whole process on the same files), each with its peak memory;
    then the crypto workload's per-cycle overhead."""
    note = ("Engine: the replay alone, in-process (fill as above, open risk limits; `demo limits` = the "
           "demo strategy's, max_positions 10 binding at every batch, same vectorbt row as the reference). "
           "Whole command: `parity backtest` (python -m framework) from the long bar CSV and the signal CSV "
           "to summary, ledger, CSV artifacts and report, against vectorbt's whole process reading the same "
           "files with pandas (`from_orders` targetpercent, next-open fills, equity curve and `stats()`); "
           "fees off, 5 bps slippage. Each in its own process, alternating, timed spawn to exit. Memory, in GB: "
           "`max RSS` = the largest single process of the command's tree (`ru_maxrss`), `all` = the peak of "
           "the PSS summed over the tree (Parity's forked helpers, the figures and the CSV writer, included; "
           "sampled every 0.1 s). Medians over the runs; the machine is shared, so compare ratios within this run.")
    head = ("| workload | Parity engine s | vectorbt engine s | ratio | Parity engine, demo limits s | ratio "
            "| Parity whole s (max RSS / all GB) | vectorbt whole s (max RSS / all GB) | ratio "
            "| Parity whole, demo limits s (max RSS / all GB) "
            "| runs (Parity/vectorbt s) | whole equity rel. diff |")
    out = ["## Engine and whole command, side by side", "", note, "", head, "|" + "---|" * 12]
    for wl, per in results.items():
        vbt = per.get("vectorbt", {}).get("result")
        par = per.get("parity", {}).get("result")
        dem = per.get("parity_demo", {}).get("result")
        w = whole.get(wl)
        cells = [wl, _secs(par.engine_seconds) if par else "n/a", _secs(vbt.engine_seconds) if vbt else "n/a",
                 f"{par.engine_seconds / vbt.engine_seconds:.2f}" if par and vbt else "n/a",
                 _secs(dem.engine_seconds) if dem else "—",
                 f"{dem.engine_seconds / vbt.engine_seconds:.2f}" if dem and vbt else "—"]
        if w:
            runs = w["runs"]
            ok = {e: [r for r in runs.get(e, []) if r["code"] == 0] for e in ("parity", "vectorbt")}
            ps, vs = _median([r["seconds"] for r in ok["parity"]]), _median([r["seconds"] for r in ok["vectorbt"]])
            pm = max((r["peak_bytes"] for r in ok["parity"]), default=None)
            vm = max((r["peak_bytes"] for r in ok["vectorbt"]), default=None)
            pt = max((r.get("tree_pss_bytes", 0) for r in ok["parity"]), default=0)
            vt = max((r.get("tree_pss_bytes", 0) for r in ok["vectorbt"]), default=0)
            demo = [r for r in w.get("demo", []) if r["code"] == 0]
            pe = ok["parity"][0]["final_equity"] if ok["parity"] else None
            ve = ok["vectorbt"][0]["final_equity"] if ok["vectorbt"] else None
            per_run = "; ".join(f"{p['seconds']:.1f}/{v['seconds']:.1f}" for p, v in zip(ok["parity"], ok["vectorbt"]))
            cells += [f"{_secs(ps)} ({pm / 1e9:.2f} / {pt / 1e9:.2f})" if ps else "n/a",
                      f"{_secs(vs)} ({vm / 1e9:.2f} / {vt / 1e9:.2f})" if vs else "n/a",
                      f"{ps / vs:.2f}" if ps and vs else "n/a",
                      f"{_secs(demo[0]['seconds'])} ({demo[0]['peak_bytes'] / 1e9:.2f} / "
                      f"{demo[0].get('tree_pss_bytes', 0) / 1e9:.2f})" if demo else "n/a",
                      per_run or "n/a", f"{(pe - ve) / ve:+.1e}" if pe and ve else "n/a"]
        else:
            cells += ["—"] * 6
        out.append("| " + " | ".join(cells) + " |")
    cr = results.get("crypto", {})
    par, vbt = cr.get("parity", {}).get("result"), cr.get("vectorbt", {}).get("result")
    if par is not None and not par.extrapolated_from:
        n = (par.extra or {}).get("n_rebalances") or workload_shape("crypto").n_rebalances
        line = (f"Crypto per-cycle overhead: Parity {par.engine_seconds / n * 1e6:.0f} µs per cycle "
                f"({n:,} cycles, {par.engine_seconds:.3f} s engine)")
        if vbt is not None:
            line += (f"; vectorbt {vbt.engine_seconds / n * 1e6:.0f} µs per rebalance on the same bars "
                     f"({vbt.engine_seconds:.3f} s), ratio {par.engine_seconds / vbt.engine_seconds:.2f}")
        out += ["", line + "."]
    return "\n".join(out) + "\n"


def first_table(results: dict, first_why: str = "") -> str:
    """Today's engine against the first release's, timed in this run by the same harness (issue 15:
    the engine no worse than at the first release, with the demo's limits binding and not)."""
    out = ["## Engine now and at the first release, same run", "",
           f"The first release ({FIRST_RELEASE}) is run by today's harness and wiring (`benchmarks/baseline.py`); "
           f"each side is the best of {FIRST_REPEAT} replays in its own process, the two alternating; "
           "ratio = now / first release (below 1: faster now). Open limits, then the demo's (max_positions 10 binds).",
           "", "| workload | now s | first release s | ratio | now, demo limits s | first release, demo limits s "
           "| ratio | vectorbt s (one run, as above) | first release / vectorbt |", "|" + "---|" * 9]
    rows = 0
    for wl, per in results.items():
        now, old = per.get("parity_now", {}).get("result"), per.get("parity_first", {}).get("result")
        dnow, dold = per.get("parity_now_demo", {}).get("result"), per.get("parity_first_demo", {}).get("result")
        vbt = per.get("vectorbt", {}).get("result")
        if "parity_first" not in per:
            continue
        rows += 1
        if now is None or old is None:
            why = "; ".join(f"{side}: {per.get(key, {}).get('message') or per.get(key, {}).get('status')}"
                            for side, key in (("now", "parity_now"), ("first release", "parity_first"))
                            if per.get(key, {}).get("result") is None)
            out.append(f"| {wl} | n/a ({why}) |" + " |" * 7)
            continue
        out.append("| " + " | ".join([
            wl, _secs(now.engine_seconds), _secs(old.engine_seconds), f"{now.engine_seconds / old.engine_seconds:.2f}",
            _secs(dnow.engine_seconds) if dnow else "—", _secs(dold.engine_seconds) if dold else "—",
            f"{dnow.engine_seconds / dold.engine_seconds:.2f}" if dnow and dold else "—",
            _secs(vbt.engine_seconds) if vbt else "n/a",
            f"{old.engine_seconds / vbt.engine_seconds:.2f}" if vbt else "n/a"]) + " |")
    if not rows:
        out.append(f"| (not measured: {first_why or 'no Parity row'}) |" + " |" * 8)
    return "\n".join(out) + "\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except Exception:
        ram = "RAM unknown"
    return f"{cpu}, {os.cpu_count()} CPUs, {ram}, Python {platform.python_version()}, {platform.system()}"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("numpy", "pandas", "numba", "vectorbt", "backtrader", "psutil", "parity"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="small,medium,large,crypto")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--skip-backtrader", action="store_true")
    ap.add_argument("--fill", default="close", choices=("close", "next_open"))
    ap.add_argument("--max-seconds", type=float, default=600.0,
                    help="budget per engine and size before falling back to prefix + extrapolation")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--help-runs", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    ap.add_argument("--sweep-points", type=int, default=200,
                    help="points of the sweep-throughput runs on the medium workload (benchmarks/sweep.py; "
                         "default 200, the size users sweep); 0 skips them")
    ap.add_argument("--sweep-repeats", type=int, default=2)
    ap.add_argument("--whole", default="medium,large",
                    help="workloads also timed as whole commands from CSV files (SPEC §15); '' for none")
    ap.add_argument("--stages", default="large",
                    help="workloads whose whole command is also timed stage by stage (benchmarks/stages.py)")
    ap.add_argument("--no-first-release", dest="first_release", action="store_false",
                    help="do not time the first release's engine beside today's (benchmarks/baseline.py)")
    ap.add_argument("--whole-repeat", type=int, default=1,
                    help="alternating Parity / vectorbt whole-process runs per workload")
    a = ap.parse_args(argv)

    wls = [x.strip() for x in a.workloads.split(",") if x.strip()]
    bad = [x for x in wls if x not in WORKLOADS]
    engines = [x.strip() for x in a.engines.split(",") if x.strip()]
    bad += [x for x in engines if x not in ENGINES]
    if bad:
        ap.error(f"unknown workload/engine: {', '.join(bad)}")
    if a.skip_backtrader and "backtrader" in engines:
        engines.remove("backtrader")
    # vectorbt first: it is the equity reference
    engines = sorted(engines, key=lambda e: {"vectorbt": 0, "parity": 1, "backtrader": 2}[e])

    t_start = time.perf_counter()
    load_start = _loadavg()
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seed": a.seed,
            "fill": a.fill, "machine": machine(), "versions": versions(), "max_seconds": a.max_seconds,
            "workloads": {w: workload_shape(w).__dict__ for w in wls}}
    log(f"benchmark: {', '.join(wls)} x {', '.join(engines)} (fill {a.fill}) on {meta['machine']}")

    first = baseline_tree(Path(a.out)) if a.first_release else "not asked for (--no-first-release)"
    if not isinstance(first, Path):
        log(f"the first release's engine is not timed: {first}")
    results: dict = {}
    for wl in wls:
        per: dict = {}
        results[wl] = per
        for eng in engines:
            log(f"[{wl}] {eng} ...")
            if eng in BUDGETED:
                res = run_budgeted(eng, wl, a.fill, a.seed, a.max_seconds)
            else:
                res = spawn(eng, wl, a.fill, a.seed, timeout=2 * a.max_seconds + 120)
            per[eng] = res
            r = res.get("result")
            if r is not None:
                log(f"[{wl}] {eng}: engine {r.engine_seconds:.3f} s, {r.n_orders:,} orders, "
                    f"equity {r.final_equity if r.final_equity is not None else r.prefix_final_equity}"
                    + (f" (extrapolated from {r.extrapolated_from} bars)" if r.extrapolated_from else ""))
            else:
                log(f"[{wl}] {eng}: {res['status']} ({res['message']})")
        if "parity" in engines and wl in ("medium", "large"):
            log(f"[{wl}] parity with the demo's risk limits (max_positions 10 binds) ...")
            per["parity_demo"] = spawn("parity", wl, a.fill, a.seed, timeout=2 * a.max_seconds + 120, limits="demo")
        if "parity" in engines and isinstance(first, Path):
            # best of FIRST_REPEAT replays on each side, alternating: one replay moves by +-10 %
            log(f"[{wl}] parity now and at the first release ({FIRST_RELEASE}), best of {FIRST_REPEAT} ...")
            for limits in ("open", "demo") if wl in ("medium", "large") else ("open",):
                tag = "" if limits == "open" else "_demo"
                for key, root in ((f"parity_now{tag}", REPO), (f"parity_first{tag}", first)):
                    per[key] = spawn("parity", wl, a.fill, a.seed, timeout=2 * a.max_seconds + 120, limits=limits,
                                     root=root, repeat=FIRST_REPEAT)
        # like-for-like equity for extrapolated rows: vectorbt on the same prefix
        prefixes = {res["result"].extrapolated_from for res in per.values()
                    if isinstance(res, dict) and res.get("result") is not None and res["result"].extrapolated_from}
        if prefixes and "vectorbt" in engines:
            per["vbt_prefix"] = {}
            for n in sorted(prefixes):
                res = spawn("vectorbt", wl, a.fill, a.seed, bars=n, timeout=a.max_seconds)
                if res["status"] == "ok":
                    per["vbt_prefix"][n] = res["result"].final_equity

    whole: dict = {}
    for wl in [x.strip() for x in a.whole.split(",") if x.strip()]:
        from benchmarks.whole import measure

        whole[wl] = measure(wl, "open", a.whole_repeat, ("parity", "vectorbt"), a.seed, log=log)
        whole[wl]["demo"] = measure(wl, "demo", 1, ("parity",), a.seed, log=log)["runs"]["parity"]

    stage_tables = []
    for wl in [x.strip() for x in a.stages.split(",") if x.strip()]:
        log(f"[{wl}] whole command stage by stage (python -m benchmarks.stages {wl}) ...")
        got = subprocess.run([sys.executable, "-m", "benchmarks.stages", wl, "--seed", str(a.seed)], cwd=REPO,
                             capture_output=True, text=True)
        stage_tables.append(got.stdout if got.returncode == 0 else
                            f"Stages of {wl}: failed (exit {got.returncode}): {got.stderr[-800:]}\n")

    help_info = parity_help_startup(a.help_runs)
    sweep = None
    if a.sweep_points > 0:
        from benchmarks import sweep as sweep_bench

        log(f"sweep throughput: {a.sweep_points} points, 1 and 2 local workers and a local Dask cluster ...")
        sweep = sweep_bench.measure(a.sweep_points, a.sweep_repeats, log=log)
    meta["load_average_start_end"] = [load_start, _loadavg()]
    rows = build_rows(results)
    md = markdown(rows, meta, help_info, a.fill) + "\n" + views_table(results, whole) + "\n" + first_table(results, "" if isinstance(first, Path) else first)
    for text in stage_tables:
        md += "\n" + text
    if sweep is not None:
        md += "\n" + sweep_bench.markdown(sweep)
    meta["total_seconds"] = time.perf_counter() - t_start

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "parity_help": help_info, "rows": rows, "sweep": sweep, "whole": whole,
         "parity_demo_limits": {wl: per["parity_demo"]["result"].to_dict() for wl, per in results.items()
                                if per.get("parity_demo", {}).get("result") is not None},
         "parity_first_release": {"rev": FIRST_RELEASE, **{
             f"{wl}{suffix}": per[key]["result"].to_dict() for wl, per in results.items()
             for key, suffix in (("parity_first", ""), ("parity_first_demo", ":demo"), ("parity_now", ":now"),
                                 ("parity_now_demo", ":now:demo"))
             if per.get(key, {}).get("result") is not None}},
         "issue_reference": [{"engine": e, "workload": w, "seconds": s, "peak_bytes": m}
                             for (e, w), (s, m) in ISSUE_REFERENCE.items()]},
        indent=2, default=float))
    (out / "results.md").write_text(md)
    print(md)
    log(f"wrote {out / 'results.md'} and {out / 'results.json'} in {meta['total_seconds']:.0f} s")
    failed = [r for r in rows if r["status"] in ("error", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
