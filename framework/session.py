"""The one owner of a run's life, for every driver (STYLE 14).

A run is: an account, a run id, a journal, then the work, then its end. ``LiveSession`` owns the
paper, live and shadow runs (``execute``, ``close``): it takes the account's lease, reconciles the
ledger with the broker, records the run, snapshots equity before and after, and finishes the run
as done, halted or failed, whatever happens in between. ``simulate`` owns a backtest and the
paper-vs-simulation replay: it replays the batches through the simulated pipeline and persists
the run. The CLI only parses arguments and hands typed values in.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from framework.accounts import Account, Environment
from framework.errors import AccountBusy
from framework.ledger import Ledger
from framework.types import ExecutionReport, OrderBatch, RunStatus, TargetPortfolio

LEASE_TTL_S = 15 * 60.0        # a lease outlives a stuck process by at most this (renewed while working)


def lease_wait_s() -> float:
    """How long a second command on a busy account waits before it gives up (PARITY_LEASE_WAIT)."""
    return float(os.environ.get("PARITY_LEASE_WAIT", "5"))


@contextmanager
def account_lease(ledger: Ledger, account: Account, command: str, wait_s: float | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold ``account``'s lease for the block (SPEC §17): one process per account at a time.

    A lease held by a live process is waited for up to ``wait_s`` seconds, then ``AccountBusy``
    names the holder; a lease whose process is gone, or whose time ran out, is taken over."""
    wait = lease_wait_s() if wait_s is None else wait_s
    deadline = time.monotonic() + wait
    while True:
        taken, holder = ledger.try_lease(account.key, command, LEASE_TTL_S)
        if taken:
            break
        if time.monotonic() >= deadline:
            assert holder is not None
            held = (f"account {account.key} is in use by {holder.describe()} since "
                    f"{time.strftime('%H:%M:%S', time.gmtime(holder.acquired_at))}Z")
            raise AccountBusy(f"{held}: try again when it has finished (a lease whose process is gone is taken over)",
                              held)
        sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
    try:
        yield
    finally:
        ledger.release_lease(account.key)


def reap_dead_backtests(ledger: Ledger, reports_dir: str | Path) -> list[str]:
    """Backtests left ``running`` by a process that died while it recorded them, marked failed, and
    the CSVs it was writing (``*.partial``) removed; returns their run ids.

    A backtest is recorded from the end of its replay to its last artifact, holding its account's
    lease (``run_backtest``); a large run's memory peaks there, which is where an out-of-memory kill
    lands. A run whose lease a live process still holds is being written and is left alone."""
    out = []
    for r in ledger.running_runs("backtest"):
        account = r.get("account")
        if not account or ledger.lease_held(account):
            continue
        ledger.finish_run(r["run_id"], RunStatus.FAILED, None, None, None)
        for f in (Path(reports_dir) / r["run_id"]).glob("*.partial"):
            f.unlink(missing_ok=True)
        out.append(r["run_id"])
    return out


def new_run_id(strategy: str, mode: str) -> str:
    now = str(np.datetime_as_string(np.datetime64(time.time_ns(), "ns"), unit="ms"))
    stamp = now.replace("-", "").replace(":", "").replace(".", "")
    return f"{stamp}-{mode}-{strategy}"[:80]


@dataclass
class RunInfo:
    """What the ledger records about a run when it starts."""

    strategy: str
    config_hash: str
    mode: str                   # backtest | paper | live
    universe: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    signals: str = ""


class LiveSession:
    """One paper, live or shadow run on one account: lease, reconcile, record, trade, finish.

    Use as a context manager::

        with LiveSession(ledger, broker, account, info, command="execute") as s:
            s.reconcile(resume_batch=target.batch_id)
            s.start()
            result = s.cycle(pipeline, target)
            s.finish(RunStatus.DONE)

    Leaving the block by an exception finishes a started run as ``failed`` (its orders are
    reconciled by the next command) and always releases the lease.
    """

    def __init__(self, ledger: Ledger, broker, account: Account, info: RunInfo, *, command: str,
                 echo: Callable[[str], None] = print, history: bool = True, lease_wait_s: float | None = None):
        from framework.journal import WriteAheadJournal

        self.ledger = ledger
        self.broker = broker
        self.account = account
        self.info = info
        self.command = command
        self.echo = echo
        self.run_id = new_run_id(info.strategy, info.mode)
        past = ledger.runs_of(account.key, info.strategy) if history else []
        self.journal = WriteAheadJournal(ledger, self.run_id, account, past + [self.run_id])
        self._started = False
        self._finished = False
        self._lease = account_lease(ledger, account, command, lease_wait_s)

    def __enter__(self) -> LiveSession:
        self._lease.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._started and not self._finished:
                self.ledger.finish_run(self.run_id, RunStatus.FAILED, None, None, None)
        finally:
            self._lease.__exit__(exc_type, exc, tb)

    def reconcile(self, resume_batch: str | None = None, check_positions: bool = True) -> list[str]:
        """Bring the account's orders in the ledger up to date with the broker (SPEC §11)."""
        from framework.recovery import reconcile

        return reconcile(self.ledger, self.broker, self.account, self.journal, self.echo, resume_batch,
                         check_positions)

    def start(self, initial_equity: float | None = None) -> None:
        i = self.info
        self.ledger.start_run(self.run_id, i.strategy, i.config_hash, i.mode, self.broker.name, initial_equity,
                              i.universe, i.settings, i.signals, self.account.key)
        self.ledger.renew_lease(self.account.key, LEASE_TTL_S, self.run_id)
        self._started = True

    def snapshot(self):
        """Record the account's equity now; return the account snapshot."""
        acct = self.broker.account()
        self.ledger.snapshot(self.run_id, acct.time, acct.equity, acct.cash, acct.positions or self.broker.positions())
        return acct

    def cycle(self, pipeline, target: TargetPortfolio):
        from framework.engine import run_cycle

        return run_cycle(pipeline, target)

    def send(self, batch: OrderBatch) -> ExecutionReport:
        """Send a one-off batch (``close``) through the journal: intent first, answers as they come."""
        self.journal.intents(None, batch)
        rep = self.broker.execute(batch, self.journal.update)
        self.journal.report(None, rep)
        return rep

    def finish(self, status: RunStatus, final_equity: float | None = None) -> None:
        self.ledger.finish_run(self.run_id, status, None, None, final_equity)
        self._finished = True


def sim_account(run_id: str) -> Account:
    """Every backtest is its own simulated account."""
    return Account("sim", Environment.SIM, run_id)


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """A finished simulated run, persisted in ``ledger``."""

    run_id: str
    outcome: Any                # framework.backtest.ReplayOutcome
    ledger: Ledger


def simulate(ledger: Ledger, pipeline, market, signals, run_id: str, info: RunInfo, *, initial_equity: float,
             absent_hold: bool = False, progress: bool = False, while_storing=None) -> SimulatedRun:
    """Replay ``signals`` through the simulated ``pipeline`` and persist the run (backtest and the
    paper-vs-simulation replay). The pipeline's journal must be a ``BufferedJournal`` of ``run_id``;
    its columns stay in memory for the artifacts (``journal.tables``). ``signals`` are let go of
    once replayed (see ``BacktestSetup.without_signals``). The market is retired once the run is
    collected (its bars are not needed after). ``while_storing(tables, equity)``, if given, is
    called between collecting the run and writing it to the ledger: work on the same columns can
    start there (``framework.artifacts.ArtifactsAhead``)."""
    from framework.backtest import collect_run, replay, store_run

    outcome = replay(pipeline, market, signals, absent_hold=absent_hold, progress=progress)
    del signals          # replayed: a caller that handed them over alone frees them here
    tables = collect_run(ledger, pipeline.journal, outcome, market, run_id=run_id, strategy=info.strategy,
                         config_hash=info.config_hash, universe=pipeline.universe.symbols,
                         initial_equity=initial_equity, settings=info.settings, signals=info.signals)
    market.retire()
    if while_storing is not None:
        while_storing(tables, outcome.equity)
    store_run(ledger, tables, outcome, run_id=run_id, initial_equity=initial_equity)
    return SimulatedRun(run_id, outcome, ledger)
