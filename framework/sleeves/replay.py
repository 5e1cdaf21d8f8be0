"""The sleeves' batches on the account's universe, and the portfolio backtest driver.

A portfolio cycle happens at every time any sleeve has a batch; each sleeve then trades its newest
batch at or before that time (the live cycle does the same with the newest batch of each archive).
``replay_portfolio`` is ``framework.backtest.replay`` with ``PortfolioCycle.run`` in place of
``run_cycle``: the same simulated broker, the same end of the data.
"""

from __future__ import annotations

import gc
import time

import numpy as np

from framework.backtest import Replayable, ReplayOutcome
from framework.order_ids import batch_key, batch_keys
from framework.sleeves.cycle import PortfolioCycle
from framework.types import SignalBatches, TargetPortfolio, Universe


def sleeve_batch(signals: SignalBatches, i: int, universe: Universe, absent_hold: bool) -> TargetPortfolio:
    """Batch ``i`` of one sleeve as a target on the account's universe (symbols it does not name: absent)."""
    w = np.full(len(universe), np.nan)
    c = np.full(len(universe), np.nan)
    cols = [universe.index[s] for s in signals.symbols]
    w[cols] = signals.weights[i]
    c[cols] = signals.confidence[i]
    return TargetPortfolio(signals.times[i], batch_key(signals.strategy, signals.times[i]), w, c, absent_hold)


def union_times(signals: dict[str, SignalBatches]) -> np.ndarray:
    parts = [s.times for s in signals.values() if len(s)]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, "datetime64[ns]")


def targets_at(t: np.datetime64, signals: dict[str, SignalBatches], universe: Universe,
               absent_hold: dict[str, bool]) -> dict[str, TargetPortfolio | None]:
    """Each sleeve's newest batch at or before ``t`` (None before its first)."""
    out: dict[str, TargetPortfolio | None] = {}
    for name, sig in signals.items():
        i = int(np.searchsorted(sig.times, t, side="right")) - 1
        out[name] = sleeve_batch(sig, i, universe, absent_hold.get(name, False)) if i >= 0 else None
    return out


def replay_portfolio(pc: PortfolioCycle, market: Replayable, signals: dict[str, SignalBatches],
                     absent_hold: dict[str, bool]) -> ReplayOutcome:
    """Every portfolio cycle in time order, then working orders finish on the remaining bars."""
    out = ReplayOutcome()
    t0 = time.perf_counter()
    times = union_times(signals)
    ids = batch_keys(pc.name, times)
    u = pc.pipeline.universe
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        for t, bid in zip(times, ids):
            market.advance_to(t)
            res = pc.run(t, bid, targets_at(t, signals, u, absent_hold))
            out.n_cycles += 1
            out.n_halted += bool(res.cycle is not None and res.cycle.halted)
    finally:
        if freeze:
            gc.unfreeze()
    if len(market.times) and (len(times) == 0 or market.times[-1] > times[-1]):
        market.advance_to(market.times[-1])
    j = pc.pipeline.journal
    updates = market.sync()
    if updates:
        j.updates(updates)
    leftovers = market.open_orders()
    if leftovers:
        cids = [o.client_order_id for o in leftovers]
        market.cancel(cids)
        j.cancels(cids, market.times[-1], "canceled: still working at the end of the data")
    if len(market.times):
        pc.mark(market.times[-1])
    out.seconds = time.perf_counter() - t0
    curve = market.equity_curve()
    if len(times):
        curve = curve.iloc[max(market.bar_at(times[0]), 0):].reset_index(drop=True)
    out.equity = curve
    return out
