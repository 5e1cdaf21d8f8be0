"""Replay a paper or live track record through the simulator (SPEC §12).

What is replayed: the window of a paper/live run — every run of the same strategy, broker, mode
and config hash up to and including it (each ``parity execute`` is one run of one cycle). Each
cycle's batch is read back from the signal archive the run recorded (``runs.signals``), found by
the cycle's batch time, and keeps the cycle's batch id, so the simulated orders carry the same
deterministic client order ids as the paper ones. A batch traded twice (a re-run) is replayed once.

Starting state: the simulator starts with the equity the first cycle was sized with, holding the
positions the ledger's earlier fills at this broker and mode leave in the replayed symbols
(holdings outside them count as cash). It then runs freely, the way a backtest of the same
batches would: differences accumulate, and the tracking error measures them.

Bars: the strategy's bars (its CSV or the local store) or ``--bars`` when they cover the
period; otherwise one bar per cycle built from the prices that cycle was sized with, filled at
that bar's close (``fill: close``), so the simulated fill price is the sizing price plus the
simulator's slippage — the paper fill differs from it by exactly the venue's shortfall.

Composition: the simulated broker comes from a ``MarketFactory`` that the CLI hands in; the
replay itself is ``framework.backtest.replay`` — the backtest's own driver, not a second one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from framework.config import SlippageSettings, StrategyConfig
from framework.data import BarArrays
from framework.errors import UsageError
from framework.ledger import Ledger, unpack_prices
from framework.ops.track import ledger_runs
from framework.order_ids import strategy_of_batch
from framework.types import ExitLevels, SignalBatches
from framework.venue_config import VenueConfig


class MarketFactory(Protocol):
    """Build a simulated broker over ``bars`` holding ``positions`` and worth ``equity`` at ``start``."""

    def __call__(self, bars: BarArrays, universe, *, equity: float, positions: dict[str, float],
                 start: np.datetime64, fill: str, fees, slippage, volume_cap: float | None,
                 lookback: int): ...


@dataclass(frozen=True, slots=True)
class PaperCycle:
    """One replayed cycle as the paper/live run recorded it."""

    run_id: str
    seq: int
    batch_id: str
    time: np.datetime64
    equity: float                  # the equity the cycle was sized with
    prices: dict[str, float]       # the prices it was sized with
    signals: str                   # the archive the run read


@dataclass(frozen=True, slots=True, eq=False)
class ReplayPlan:
    """What to replay: the window of paper runs, their cycles, batches and starting state."""

    target_run: dict
    runs: tuple[dict, ...]
    cycles: tuple[PaperCycle, ...]
    batches: SignalBatches
    start_positions: dict[str, float]
    final_equity: float | None     # the paper account's last snapshot in the window

    @property
    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.runs]

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.batches.symbols

    @property
    def strategy(self) -> str:
        return str(self.target_run["strategy"])


def resolve_run(ledger: Ledger, run_or_strategy: str) -> dict:
    """Return the paper/live run named, or the newest paper/live run of a strategy of that name."""
    run = ledger.run(run_or_strategy)
    if run is None:
        runs = [r for r in ledger_runs(ledger, strategy=run_or_strategy, modes=("paper", "live"))
                if not str(r["run_id"]).startswith("nightly-")]
        if not runs:
            raise UsageError(f"no run and no paper/live runs of a strategy called {run_or_strategy!r} in "
                             f"{ledger.path} (see `parity runs`)")
        run = runs[-1]
    if run["mode"] not in ("paper", "live"):
        raise UsageError(f"run {run['run_id']} is a {run['mode']} run: the reconciliation replays a paper or "
                         "live run (to compare two runs side by side, name both: "
                         "`parity compare RUN_A RUN_B`)")
    return run


def window(ledger: Ledger, run: dict) -> list[dict]:
    """Return the runs of the track record ending with ``run`` (same strategy, broker, mode, config hash)."""
    runs = ledger_runs(ledger, strategy=run["strategy"], modes=(run["mode"],), broker=run["broker"],
                       config_hash=run["config_hash"])
    out = []
    for r in runs:
        out.append(r)
        if r["run_id"] == run["run_id"]:
            break
    return [r for r in out if not str(r["run_id"]).startswith("nightly-")]


def _cycles(ledger: Ledger, runs: list[dict]) -> list[PaperCycle]:
    out: dict[str, PaperCycle] = {}
    for r in runs:
        universe = json.loads(r["universe"] or "[]")
        for seq, bid, t, status, eq, blob in ledger.cycle_rows(r["run_id"]):
            if status == "mark" or bid in out:
                continue
            px = unpack_prices(blob) if blob is not None else np.full(len(universe), np.nan)
            prices = dict(zip(universe, px.tolist())) if len(px) == len(universe) else {}
            time = np.datetime64(pd.Timestamp(t).tz_convert("UTC").tz_localize(None).to_datetime64(), "ns")
            equity = float(eq) if eq is not None else np.nan
            out[bid] = PaperCycle(r["run_id"], int(seq), bid, time, equity, prices, r["signals"] or "")
    return sorted(out.values(), key=lambda c: c.time)


def _archive_path(path: str, override: str | None) -> Path:
    p = Path(override or path)
    if not p.exists():
        raise UsageError(f"the signal archive {str(p)!r} recorded by the paper run is not there any more "
                         "(paths are relative to the directory the run was started in): pass --signals PATH")
    return p


def _batches(cycles: list[PaperCycle], strategy: StrategyConfig, signals_override: str | None,
             read: Callable[..., SignalBatches]) -> SignalBatches:
    """Read each cycle's batch back from its archive; keep the cycle's batch id."""
    prefix = cycles[0].batch_id.split("@")[0]      # strategy and the account's scope: kept in the replay's ids
    name = strategy_of_batch(cycles[0].batch_id)
    cache: dict[str, SignalBatches] = {}
    symbols: list[str] = []
    rows: list[tuple[dict[str, float], dict[str, float]]] = []
    levels: list = []
    for c in cycles:
        path = str(_archive_path(c.signals, signals_override))
        if path not in cache:
            cache[path] = read(path, strategy=name, timezone=strategy.signals.timezone,
                               duplicates=strategy.signals.duplicates)
        sb = cache[path]
        hit = np.flatnonzero(sb.times == c.time)
        if len(hit) == 0:
            raise UsageError(f"batch {c.batch_id} of run {c.run_id} is not in {path}: pass --signals with "
                             "the archive that run traded")
        i = int(hit[0])
        for s in sb.symbols:
            if s not in symbols:
                symbols.append(s)
        for s in c.prices:
            if s not in symbols:
                symbols.append(s)
        w = {s: float(v) for s, v in zip(sb.symbols, sb.weights[i].tolist())}
        k = {s: float(v) for s, v in zip(sb.symbols, sb.confidence[i].tolist())}
        rows.append((w, k))
        levels.append(None if sb.levels is None else (sb.symbols, sb.levels.row(i)))
    weights = np.array([[w.get(s, np.nan) for s in symbols] for w, _ in rows])
    conf = np.array([[k.get(s, np.nan) for s in symbols] for _, k in rows])
    times = np.array([c.time for c in cycles], dtype="datetime64[ns]")
    return SignalBatches(prefix, tuple(symbols), times, weights, conf, levels=_levels(levels, symbols))


def _levels(per_cycle: list, symbols: list[str]) -> ExitLevels | None:
    """Each cycle's exit levels (SPEC §20) over the replay's symbols; None when no archive has any."""
    if all(x is None for x in per_cycle):
        return None
    shape = (len(per_cycle), len(symbols))
    stop, take = np.full(shape, np.nan), np.full(shape, np.nan)
    stop_pct, take_pct = np.zeros(shape, bool), np.zeros(shape, bool)
    col = {s: j for j, s in enumerate(symbols)}
    for r, x in enumerate(per_cycle):
        if x is None:
            continue
        syms, lv = x
        js = [col[s] for s in syms]
        stop[r, js], take[r, js], stop_pct[r, js], take_pct[r, js] = lv.stop, lv.take, lv.stop_pct, lv.take_pct
    return ExitLevels(stop, take, stop_pct, take_pct)


def _prior_positions(ledger: Ledger, first: dict, symbols: tuple[str, ...]) -> dict[str, float]:
    held = ledger.positions_before(first["account"], first["run_id"]) if first.get("account") else {}
    return {s: q for s, q in held.items() if s in symbols}


def plan_replay(ledger: Ledger, run_or_strategy: str, strategy: StrategyConfig, *,
                signals_override: str | None = None,
                read: Callable[..., SignalBatches] | None = None) -> ReplayPlan:
    """Collect the paper window ending at ``run_or_strategy`` and read its batches back."""
    if read is None:
        from framework.signals import load_signals

        read = load_signals
    run = resolve_run(ledger, run_or_strategy)
    runs = window(ledger, run)
    cycles = _cycles(ledger, runs)
    if not cycles:
        raise UsageError(f"run {run['run_id']} and the runs before it with the same config have no cycles "
                         "to replay")
    batches = _batches(cycles, strategy, signals_override, read)
    final = ledger.last_equity([r["run_id"] for r in runs])
    held = _prior_positions(ledger, runs[0], batches.symbols)
    return ReplayPlan(run, tuple(runs), tuple(cycles), batches, held, final)


# ---------------------------------------------------------------- bars
def cycle_bars(plan: ReplayPlan) -> BarArrays:
    """One bar per cycle at its batch time: open = high = low = close = the cycle's sizing prices."""
    syms = plan.symbols
    px = pd.DataFrame([[c.prices.get(s, np.nan) for s in syms] for c in plan.cycles], dtype=float).ffill()
    mat = px.to_numpy()
    times = np.array([c.time for c in plan.cycles], dtype="datetime64[ns]")
    return BarArrays(times, syms, mat, mat, mat, mat, np.where(np.isnan(mat), np.nan, np.inf))


def coverage_problem(bars: BarArrays, plan: ReplayPlan, fill: str) -> str | None:
    """Why ``bars`` cannot stand for the paper period (None when they can)."""
    missing = [s for s in plan.symbols if s not in bars.symbols]
    if missing:
        return f"no bars for {', '.join(missing)}"
    t0, t1 = plan.cycles[0].time, plan.cycles[-1].time
    if len(bars.times) == 0 or bars.times[0] > t0:
        return f"the bars start after the first cycle ({np.datetime_as_string(t0, unit='s')}Z)"
    after = bars.times[bars.times > t1]
    if fill != "close" and len(after) == 0:
        return f"no bar after the last cycle ({np.datetime_as_string(t1, unit='s')}Z) to fill it on"
    if fill == "close" and bars.times[-1] < t1:
        return f"the bars end before the last cycle ({np.datetime_as_string(t1, unit='s')}Z)"
    return None


# ---------------------------------------------------------------- the replay
@dataclass(frozen=True, slots=True, eq=False)
class SimReplay:
    """The simulated side: its ledger rows (an in-memory ledger) and the settings it ran with."""

    ledger: Ledger
    run_id: str
    bars: BarArrays
    bars_source: str
    fill: str
    slippage: SlippageSettings
    orders: pd.DataFrame
    fills: pd.DataFrame
    cycles: pd.DataFrame
    equity: pd.DataFrame
    final_equity: float

    def run_data(self):
        from framework.artifacts import load_run

        return load_run(self.ledger, self.run_id)


def simulate(plan: ReplayPlan, strategy: StrategyConfig, limits, venue: VenueConfig, factory: MarketFactory,
             bars: BarArrays, *, bars_source: str, fill: str,
             slippage: SlippageSettings | None = None) -> SimReplay:
    """Replay the plan's batches through a simulated broker from ``factory`` (SPEC §12)."""
    from framework.costs import NoFees, VenueFees, slippage_model
    from framework.engine import Pipeline
    from framework.journal import BufferedJournal
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.session import RunInfo, sim_account
    from framework.session import simulate as run_simulated
    from framework.venue import universe_for

    sim = strategy.simulation
    slip = slippage or sim.slippage
    universe = universe_for(venue, plan.symbols)
    bars = bars.select(list(universe.symbols))
    fees = VenueFees.from_venue(venue, sim.fee_tier) if sim.fees else NoFees()
    first = plan.cycles[0]
    market = factory(bars, universe, equity=first.equity, positions=plan.start_positions, start=first.time,
                     fill=fill, fees=fees, slippage=slippage_model(slip), volume_cap=sim.volume_cap,
                     lookback=slip.lookback)
    run_id = f"replay-{plan.target_run['run_id']}"
    journal = BufferedJournal(run_id, sim_account(run_id))
    fee_rate = fees.rate(universe.crypto) if isinstance(fees, VenueFees) else 0.0
    r = strategy.rebalance
    pipeline = Pipeline(market, RiskManager(limits), Rebalancer(r, fee_rate), journal, universe, r.unfilled,
                        r.execution, r.smart_reprices, r.smart_offset_bps)
    mem = Ledger(":memory:")
    info = RunInfo(strategy.name, strategy.config_hash(), "backtest",
                   settings={"replay_of": plan.run_ids, "bars": bars_source, "fill": fill, "slippage": slip.model_dump()},
                   signals="replay")
    outcome = run_simulated(mem, pipeline, market, plan.batches, run_id, info, initial_equity=first.equity,
                            absent_hold=strategy.signals.absent == "hold").outcome
    eq = outcome.equity
    final = float(eq["equity"].iloc[-1]) if eq is not None and len(eq) else first.equity
    return SimReplay(mem, run_id, bars, bars_source, fill, slip, mem.frame("orders", run_id),
                     mem.frame("fills", run_id), mem.frame("cycles", run_id, "seq"),
                     mem.frame("equity", run_id, "time"), final)
