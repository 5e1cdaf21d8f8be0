"""The backtest driver: replays a signal archive through run_cycle on a simulated clock.

The driver knows nothing of the simulator's class: it receives a ``Replayable`` broker (a Broker
that can move through historical time and rebuild its equity curve) from the composition root.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from framework.bulk import RunTables
from framework.engine import Pipeline, run_cycle
from framework.journal import BufferedJournal
from framework.ledger import Ledger
from framework.types import SignalBatches


class Replayable(Protocol):
    """A Broker (see framework.broker) that can also move through historical time."""

    times: np.ndarray

    def sync(self) -> list: ...

    def open_orders(self) -> list: ...

    def cancel(self, client_ids: list[str]) -> list: ...

    def prices(self, universe): ...

    def instruments(self, symbols): ...

    def advance_to(self, t: np.datetime64) -> None: ...

    def bar_at(self, t: np.datetime64) -> int: ...

    def equity_curve(self) -> pd.DataFrame: ...

    def forget_sent(self) -> None: ...

    def retire(self) -> None: ...


@dataclass(slots=True)
class ReplayOutcome:
    n_cycles: int = 0
    n_halted: int = 0
    seconds: float = 0.0
    equity: pd.DataFrame | None = None
    timings: dict = field(default_factory=dict)


def replay(p: Pipeline, market: Replayable, signals: SignalBatches, *, absent_hold: bool = False,
           progress: bool = False) -> ReplayOutcome:
    """Run every batch of ``signals`` in time order, then let working orders finish on the remaining bars."""
    out = ReplayOutcome()
    t0 = time.perf_counter()
    steps = range(len(signals))
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="backtest", unit="batch", leave=False)
    ids = signals.batch_ids()
    # Objects that exist before the run (modules, bars, signals) outlive it: keep the cyclic
    # garbage collector's full passes, which the records kept by the journal trigger, off them.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        for i in steps:
            market.advance_to(signals.times[i])
            res = run_cycle(p, signals.batch(i, absent_hold, ids[i]))
            out.n_cycles += 1
            out.n_halted += res.halted
    finally:
        if freeze:
            gc.unfreeze()
    if len(market.times):
        last = market.times[-1]
        if len(signals) == 0 or last > signals.times[-1]:
            market.advance_to(last)
    updates = market.sync()
    if updates:
        p.journal.updates(updates)
    leftovers = market.open_orders()
    if leftovers:
        ids = [o.client_order_id for o in leftovers]
        market.cancel(ids)
        p.journal.cancels(ids, market.times[-1], "canceled: still working at the end of the data")
    out.seconds = time.perf_counter() - t0
    curve = market.equity_curve()
    if len(signals):
        first = max(market.bar_at(signals.times[0]), 0)
        curve = curve.iloc[first:].reset_index(drop=True)
    out.equity = curve
    return out


def persist(ledger: Ledger, journal: BufferedJournal, outcome: ReplayOutcome, market: Replayable, *,
            run_id: str, strategy: str, config_hash: str, universe: tuple[str, ...], initial_equity: float,
            settings: dict, signals: str) -> None:
    """Write a finished backtest to the ledger: ``collect_run`` then ``store_run``."""
    tables = collect_run(ledger, journal, outcome, market, run_id=run_id, strategy=strategy,
                         config_hash=config_hash, universe=universe, initial_equity=initial_equity,
                         settings=settings, signals=signals)
    store_run(ledger, tables, outcome, run_id=run_id, initial_equity=initial_equity)


def collect_run(ledger: Ledger, journal: BufferedJournal, outcome: ReplayOutcome, market: Replayable, *,
                run_id: str, strategy: str, config_hash: str, universe: tuple[str, ...], initial_equity: float,
                settings: dict, signals: str) -> RunTables:
    """Commit the run's row, turn the journal into columns (``journal.collect()``, kept for the
    artifacts as ``journal.tables``) with the final marks. The market is not read after this: a
    caller that is done with it ``retire``s it before ``store_run``."""
    ledger.start_run(run_id, strategy, config_hash, "backtest", "sim", initial_equity, universe, settings, signals,
                     journal.account.key)
    market.forget_sent()                 # the run is over: its reports live on in the journal only
    tables = journal.collect()
    eq = outcome.equity
    assert eq is not None
    if len(eq):
        t_end = eq["time"].iloc[-1].tz_convert("UTC").tz_localize(None).to_datetime64()
        marks = market.prices(market.instruments(list(universe)))
        tables.add_cycle(run_id, outcome.n_cycles, "final-mark", t_end, "mark", float(eq["equity"].iloc[-1]), marks)
    return tables


def store_run(ledger: Ledger, tables: RunTables, outcome: ReplayOutcome, *, run_id: str,
              initial_equity: float) -> None:
    """Write a collected run's records in one transaction (a large run's bulk tables are packed,
    ``framework.ledger.packed``) and mark the run done. The write runs in the caller's thread:
    packing is mostly Python work that a thread beside the artifacts would only take turns with."""
    from framework.memory import release_freed

    eq = outcome.equity
    assert eq is not None
    release_freed()        # a retired market's bars are not held under the write
    with ledger.tx():
        tables.write(ledger)
        ledger.write_equity(run_id, eq)
    release_freed()        # what packing the rows took is not held through the artifacts
    ledger.finish_run(run_id, "done", eq["time"].iloc[0].isoformat() if len(eq) else None,
                      eq["time"].iloc[-1].isoformat() if len(eq) else None,
                      float(eq["equity"].iloc[-1]) if len(eq) else initial_equity, None)


def new_run_id(strategy: str, mode: str) -> str:
    from framework.session import new_run_id as make

    return make(strategy, mode)
