"""The nightly report (SPEC §10): every strategy at stage paper or live, for one UTC date.

For each such strategy (``strategies/*.yaml`` beside the settings file and in ``config/``), and each
broker it routes to, the CLI syncs the ledger with the broker (orders still working, their fills)
and — when the date is today — snapshots the account's equity once, into the run
``nightly-YYYYMMDD-STRATEGY``. Then, from the ledger only:

- ``reports/nightly/DATE/STRATEGY/``: the strategy's track record up to the end of DATE (every
  paper/live run of it at that broker, one equity point per UTC day) as the standard run report
  with its summary.json and CSVs;
- ``reports/nightly/DATE/index.html`` and ``nightly.json``: each strategy's metrics and P&L of
  the day next to its latest backtest (of the current config hash when there is one).

Idempotent per date: the snapshot is taken once (a second run keeps the first one), the sync
writes only what changed, and the pages depend only on the ledger — so running it twice gives
the same files, apart from the "Generated" line of ``index.html``, and no new ledger rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from framework.accounts import Account
from framework.config import StrategyConfig, load_all, load_strategy
from framework.errors import UsageError
from framework.ledger import Ledger
from framework.ops.track import ledger_runs, load_track


@dataclass(frozen=True, slots=True)
class Target:
    """One strategy at one broker to report on."""

    strategy: StrategyConfig
    broker: str          # the broker name to compose (alpaca, coinbase)

    @property
    def mode(self) -> str:
        return "live" if self.strategy.stage == "live" else "paper"


def parse_date(value: str | None) -> str:
    """The report date as YYYY-MM-DD (today in UTC when None)."""
    if value is None:
        return pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        raise UsageError(f"--date: not a date: {value!r} (use YYYY-MM-DD)") from None


def is_today(date: str) -> bool:
    return date == pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")


def discover(settings_path: str | None) -> tuple[list[StrategyConfig], list[str]]:
    """Strategies at stage paper or live, and the problems of strategy files that do not load."""
    strategies, problems = load_all("strategies", load_strategy, settings_path)
    return [s for s in strategies if s.stage in ("paper", "live")], problems


def targets(strategies: list[StrategyConfig]) -> list[Target]:
    out = []
    for s in strategies:
        names = sorted(set(s.routing.values()) - {"sim"}) or ["alpaca"]
        # a strategy routed across venues is one portfolio (its runs are recorded as "alpaca+coinbase"):
        # one routed target, whose log and notes also give each venue's equity
        out.extend([Target(s, "routed")] if len(names) > 1 else [Target(s, b) for b in names])
    return out


def run_id_for(date: str, strategy: str) -> str:
    return f"nightly-{date.replace('-', '')}-{strategy}"


def next_day(date: str) -> str:
    return (pd.Timestamp(date) + pd.Timedelta(days=1)).strftime("%Y-%m-%dT00:00:00.000000Z")


def snapshot_once(ledger: Ledger, run_id: str, target: Target, broker_name: str, account,
                  positions, account_key: str | None = None) -> float | None:
    """Record the account's equity in the date's nightly run unless it holds one already; return it."""
    if ledger.has_equity(run_id):
        return None
    s = target.strategy
    if ledger.run(run_id) is None:
        ledger.start_run(run_id, s.name, s.config_hash(), target.mode, broker_name, account.equity,
                         [p.symbol for p in positions], {"nightly": True}, "nightly snapshot", account_key)
    ledger.snapshot(run_id, account.time, account.equity, account.cash, positions)
    ledger.finish_run(run_id, "snapshot", None, None, account.equity)
    return float(account.equity)


def latest_backtest(ledger: Ledger, strategy: StrategyConfig) -> tuple[str | None, dict, bool, str | None]:
    """The newest finished backtest (of the current config hash when there is one)."""
    from framework.artifacts import load_run

    runs = ledger_runs(ledger, strategy=strategy.name, modes=("backtest",))
    runs = [r for r in runs if r["status"] == "done"]
    if not runs:
        return None, {}, False, None
    current = [r for r in runs if r["config_hash"] == strategy.config_hash()]
    r = (current or runs)[-1]
    return r["run_id"], load_run(ledger, r["run_id"]).summary, bool(current), r["config_hash"]


def strategy_report(ledger: Ledger, target: Target, broker_name: str, date: str, out: Path) -> dict:
    """Write one strategy's nightly report for ``date``; return its index entry."""
    from framework.artifacts import write_run_files

    s = target.strategy
    runs = [r["run_id"] for r in ledger_runs(ledger, strategy=s.name, modes=(target.mode,),
                                             broker=broker_name)]
    label = {"run_id": run_id_for(date, s.name), "strategy": s.name, "mode": target.mode,
             "broker": broker_name, "config_hash": s.config_hash()}
    entry: dict[str, Any] = {"strategy": s.name, "stage": s.stage, "broker": broker_name, "config_hash": s.config_hash(),
             "n_runs": len(runs), "report": None, "summary": None, "day_pnl": None, "notes": []}
    bt_id, bt, bt_current, bt_hash = latest_backtest(ledger, s)
    entry.update({"backtest_run": bt_id, "backtest": bt or None, "backtest_current": bt_current,
                  "backtest_hash": bt_hash})
    data = load_track(ledger, runs, label=label, until=next_day(date), daily=True)
    if data.equity.empty:
        entry["notes"].append(f"no {target.mode} equity recorded at {broker_name} up to {date}")
        return entry
    write_run_files(data, out)
    eq = data.equity_series()
    day = eq[eq.index.strftime("%Y-%m-%d") == date]
    before = eq[eq.index.strftime("%Y-%m-%d") < date]
    if len(day):
        base = float(before.iloc[-1]) if len(before) else float(eq.iloc[0])
        entry["day_pnl"] = float(day.iloc[-1]) - base
    entry.update({"report": f"{out.name}/report.html", "summary": data.summary})
    return entry


def write_index(out: Path, date: str, entries: list[dict], generated: str) -> Path:
    """Write ``nightly.json`` (no clock in it) and ``index.html`` (one "Generated" line)."""
    from framework.ops.pages import write_index as render

    out.mkdir(parents=True, exist_ok=True)
    payload = {"date": date, "strategies": entries}
    (out / "nightly.json").write_text(json.dumps(payload, indent=2, sort_keys=True, default=_plain) + "\n")
    return render(out, date, entries, generated)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)


def run(ledger: Ledger, targets_: list[Target], day: str, out: Path, connect: Callable[[Target], tuple[Any, Account]],
        log: Callable[[str], None], generated: str) -> tuple[list[dict], int]:
    """Sync, snapshot and report every target for ``day``; return the index entries and the failures.

    ``connect(target)`` returns the broker to sync with (the CLI composes it). A broker that fails is
    logged and noted in the index; the report is still written from what the ledger holds.
    """
    from framework.errors import ParityError
    from framework.journal import WriteAheadJournal
    from framework.recovery import position_differences, reconcile
    from framework.session import account_lease

    today = is_today(day)
    entries, failed = [], 0
    names = [t.strategy.name for t in targets_]
    for t in targets_:
        name, broker_name, notes = t.strategy.name, t.broker, []
        try:
            broker, account = connect(t)
            broker_name = broker.name
            with account_lease(ledger, account, "report nightly"):
                journal = WriteAheadJournal(ledger, run_id_for(day, name), account)
                def sync_note(n: str, name: str = name) -> None:
                    log(f"{name}: sync {n}")

                reconcile(ledger, broker, account, journal, echo=sync_note, check_positions=False)
            acct = broker.account()
            positions = acct.positions or broker.positions()
            if hasattr(broker, "accounts"):   # routed: P&L per venue beside the combined report
                for venue, a in broker.accounts().items():
                    notes.append(f"{venue}: equity ${a.equity:,.2f}, cash ${a.cash:,.2f}")
            notes += position_differences(ledger, account, broker_name, positions, rel=0.005)
            if today:
                taken = snapshot_once(ledger, run_id_for(day, name), t, broker_name, acct, positions, account.key)
                kept = "equity snapshot of this date kept"
                log(f"{name} ({t.mode}, {broker_name}): "
                    + (kept if taken is None else f"equity ${taken:,.2f} recorded"))
            else:
                log(f"{name}: no equity snapshot ({day} is not today in UTC)")
        except ParityError as e:
            failed += 1
            notes.append(f"sync with {t.broker} failed: {e}")
        for note in notes:
            log(f"{name}: {note}")
        folder = name if names.count(name) == 1 else f"{name}-{t.broker}"
        entry = strategy_report(ledger, t, broker_name, day, out / folder)
        entry["notes"] += notes
        entries.append(entry)
        log(f"{name}: " + (f"report {out / folder / 'report.html'}" if entry["report"]
                           else "; ".join(entry["notes"]) or "nothing to report"))
    write_index(out, day, entries, generated)
    return entries, failed
