"""Promotion: a strategy moves research → paper → live only through gates (SPEC §13).

The gates are written in the strategy config (``promotion.paper`` and ``promotion.live``) and
are checked against evidence in the ledger for the strategy's CURRENT config hash:

- to paper: the latest backtest of this config hash (the latest, not the best: re-running
  backtests until one passes is no evidence) meets ``min_sharpe``, ``max_drawdown`` (a positive
  fraction, compared with the drawdown's size), ``min_trades`` (orders that filled) and
  ``min_deflated_sharpe``: the Deflated Sharpe Ratio (framework/sweep/dsr.py) of that backtest,
  where every point of every sweep of the strategy recorded in the ledger is a trial (N of them,
  with the variance of their per-period Sharpe ratios; N = 1 without sweeps);
- to live: the same backtest gates (the live block's thresholds where it sets them, else the
  paper block's), and paper evidence for this config hash: at least one paper cycle, at least
  ``min_paper_days`` distinct UTC dates on which a paper run of it traded a cycle, a
  paper-vs-simulation tracking error (``framework.ops.paper_vs_sim``) at most ``max_tracking_error``,
  and — unless ``no_risk_halt: false`` — no cycle halted by the risk manager.

A gate that is not set is not checked. Every promotion and demotion is recorded in the
``promotions`` table (strategy, action, stage, config_hash, who, time, evidence JSON, reason)
before the strategy file's ``stage:`` line changes; live ``execute`` reads the newest row
(``require_live_promotion``, called by ``framework.cli.live.live_gate``): it must be a ``promote`` to ``live`` with the config hash the
strategy has now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from framework.config import StrategyConfig
from framework.errors import LiveSafetyError, UsageError
from framework.ledger import Ledger, now_iso
from framework.ops.track import ledger_runs
from framework.types import CycleStatus, RiskAction

STAGES = ("research", "paper", "live")


class PromotionRefused(LiveSafetyError):
    """A promotion gate failed; ``gates`` holds every gate with its outcome."""

    def __init__(self, message: str, gates: list[Gate]):
        super().__init__(message)
        self.gates = gates


@dataclass(frozen=True, slots=True)
class Gate:
    name: str
    passed: bool
    required: str
    actual: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the ledger holds for one config hash of a strategy."""

    config_hash: str
    backtest_run: str | None = None
    backtest: dict = field(default_factory=dict)        # sharpe, max_drawdown, trades
    other_backtest: str | None = None                   # newest backtest of another config, for the message
    paper_runs: tuple[str, ...] = ()
    paper_days: tuple[str, ...] = ()
    halts: int = 0
    tracking_error: float | None = None
    tracking_note: str = ""

    def as_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def backtest_evidence(ledger: Ledger, strategy: str, config_hash: str) -> tuple[str | None, dict, str | None]:
    """The newest finished backtest of ``config_hash``: (run id, metrics, newest backtest of another hash)."""
    from framework.artifacts import load_run

    runs = [r for r in ledger_runs(ledger, strategy=strategy, modes=("backtest",)) if r["status"] == "done"]
    mine = [r for r in runs if r["config_hash"] == config_hash]
    other = next((f"{r['run_id']} (config {r['config_hash']})" for r in reversed(runs)
                  if r["config_hash"] != config_hash), None)
    if not mine:
        return None, {}, other
    rid = mine[-1]["run_id"]
    data = load_run(ledger, rid)
    s = data.summary
    trades = ledger.count_filled_orders(rid)
    return rid, {"sharpe": s.get("sharpe"), "max_drawdown": s.get("max_drawdown"), "trades": int(trades),
                 "total_return": s.get("total_return"), "start": s.get("start"), "end": s.get("end"),
                 **deflated_evidence(ledger, strategy, data)}, other


def deflated_evidence(ledger: Ledger, strategy: str, data) -> dict:
    """The backtest's Deflated Sharpe Ratio with every sweep point of ``strategy`` as a trial (SPEC §19)."""
    import math

    from framework.reports.metrics import returns_of
    from framework.sweep import dsr

    st = dsr.return_stats(returns_of(data.equity.set_index("time")["equity"]).to_numpy())
    trials = ledger.sweep_trials(strategy)
    n, var = max(len(trials), 1), dsr.trial_variance(trials)
    sr0 = dsr.expected_max_sharpe(n, var)
    value = None                      # sr, skew and kurt are undefined (None) together
    if st.sr is not None and st.skew is not None and st.kurt is not None:
        value = dsr.deflated_sharpe(st.sr, st.n_obs, st.skew, st.kurt, n, var)
    ppy = math.sqrt(data.periods_per_year)
    return {"deflated_sharpe": None if value is None or math.isnan(value) else value, "trials": n,
            "luck_sharpe": sr0 * ppy}


def paper_evidence(ledger: Ledger, strategy: str,
                   config_hash: str) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """Paper runs of ``config_hash`` that traded a cycle, the UTC dates they ran on, and how many of them
    the risk manager halted (a blocked cycle, or the daily-loss halt)."""
    runs = [r for r in ledger_runs(ledger, strategy=strategy, modes=("paper",), config_hash=config_hash)
            if not str(r["run_id"]).startswith("nightly-")]
    ids, days, halts = [], set(), 0
    for r in runs:
        n = ledger.count_cycles(r["run_id"], (CycleStatus.DONE, CycleStatus.HALTED))
        if not n:
            continue
        ids.append(r["run_id"])
        days.add(str(r["created_at"])[:10])
        halted = (ledger.count_cycles(r["run_id"], (CycleStatus.HALTED,))
                  + ledger.count_decisions(r["run_id"], RiskAction.HALT))
        halts += int(halted > 0 or r["status"] == "halted")
    return tuple(ids), tuple(sorted(days)), halts


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "none"
    return f"{v * 100:.2f}%" if pct else f"{v:.3f}"


def check(target: str, strategy: StrategyConfig, ev: Evidence) -> list[Gate]:
    """Every gate for promoting ``strategy`` to ``target`` with its outcome (see the module docstring)."""
    paper, live = strategy.promotion.paper, strategy.promotion.live

    def pick(name: str):
        v = getattr(live, name) if target == "live" else None
        return getattr(paper, name) if v is None else v

    bt = ev.backtest
    newest = f"; newest backtest is {ev.other_backtest}" if ev.other_backtest else ""
    gates = [Gate("backtest", ev.backtest_run is not None, f"a finished backtest of config {ev.config_hash}",
                  ev.backtest_run or "none" + newest)]
    min_sharpe, max_dd, min_trades = pick("min_sharpe"), pick("max_drawdown"), pick("min_trades")
    if min_sharpe is not None:
        v = bt.get("sharpe")
        gates.append(Gate("min_sharpe", v is not None and v >= min_sharpe,
                          f"backtest Sharpe >= {min_sharpe:g}", _fmt(v)))
    min_dsr = pick("min_deflated_sharpe")
    if min_dsr is not None:
        v, n = bt.get("deflated_sharpe"), bt.get("trials", 1)
        why = (f" — Sharpe {_fmt(bt.get('sharpe'))} against {_fmt(bt.get('luck_sharpe'))}, the best Sharpe "
               f"{n} trial(s) of this strategy's sweeps are expected to reach by luck alone")
        gates.append(Gate("min_deflated_sharpe", v is not None and v >= min_dsr,
                          f"Deflated Sharpe >= {min_dsr:g} over {n} trial(s)", _fmt(v) + why))
    if max_dd is not None:
        v = bt.get("max_drawdown")
        gates.append(Gate("max_drawdown", v is not None and abs(v) <= max_dd,
                          f"backtest drawdown <= {max_dd * 100:g}%",
                          _fmt(None if v is None else abs(v), pct=True)))
    if min_trades is not None:
        v = bt.get("trades")
        gates.append(Gate("min_trades", v is not None and v >= min_trades, f"backtest trades >= {min_trades}",
                          "none" if v is None else str(v)))
    if target != "live":
        return gates
    gates.append(Gate("paper_runs", bool(ev.paper_runs), f"paper cycles of config {ev.config_hash}",
                      f"{len(ev.paper_runs)} run(s)"))
    if live.min_paper_days is not None:
        gates.append(Gate("min_paper_days", len(ev.paper_days) >= live.min_paper_days,
                          f">= {live.min_paper_days} paper day(s)", f"{len(ev.paper_days)} day(s)"))
    if live.max_tracking_error is not None:
        te = ev.tracking_error
        gates.append(Gate("max_tracking_error", te is not None and te <= live.max_tracking_error,
                          f"paper-vs-simulation tracking error <= {live.max_tracking_error * 100:g}%",
                          _fmt(te, pct=True) + (f" ({ev.tracking_note})" if ev.tracking_note else "")))
    if live.no_risk_halt:
        gates.append(Gate("no_risk_halt", ev.halts == 0, "no paper cycle halted by the risk manager",
                          f"{ev.halts} halted run(s)"))
    return gates


def transition_problem(current: str, target: str) -> str | None:
    """Why ``current`` cannot be promoted to ``target`` (None when it can; re-promotion is allowed)."""
    if target not in ("paper", "live"):
        return f"unknown stage {target!r}: promote to paper or live"
    if STAGES.index(target) < STAGES.index(current):
        return f"the strategy is at stage {current}: use `parity demote` to go back to {target}"
    if target == "live" and current == "research":
        return ("the strategy is at stage research: promote it to paper first (`--to paper`) and trade it "
                "on paper")
    return None


def refusal(name: str, target: str, gates: list[Gate]) -> PromotionRefused:
    failed = [g for g in gates if not g.passed]
    lines = [f"gate {g.name} failed: needs {g.required}, has {g.actual}" for g in failed]
    hint = {"backtest": f"run `parity backtest --strategy {name}`",
            "paper_runs": f"trade it on paper (`parity execute --strategy {name} --paper ...`)",
            "min_paper_days": "keep trading it on paper",
            "max_tracking_error": f"see `parity compare {name}` and `parity calibrate`",
            "min_deflated_sharpe": "the Sharpe ratio is no better than the best of the sweeps' trials by luck: "
                                   "test a pre-registered config on new data"}
    hints = sorted({hint[g.name] for g in failed if g.name in hint})
    return PromotionRefused(f"promotion of {name!r} to {target} refused:\n  " + "\n  ".join(lines)
                            + (f"\n  next: {'; '.join(hints)}" if hints else ""), gates)


def last_record(ledger: Ledger, strategy: str) -> dict | None:
    rec = ledger.last_promotion(strategy)
    return None if rec is None else asdict(rec)


def require_live_promotion(ledger: Ledger, strategy: StrategyConfig) -> None:
    """Refuse live trading of a strategy whose newest promotion record is not a promotion to live
    of the config hash it has now (SPEC §13)."""
    rec = ledger.last_promotion(strategy.name)
    if rec is None or rec.action != "promote" or rec.stage != "live":
        raise LiveSafetyError(f"strategy {strategy.name!r} is not promoted to live: run "
                              f"`parity promote {strategy.name} --to live` (its gates are checked) first")
    if rec.config_hash != strategy.config_hash():
        raise LiveSafetyError(f"strategy {strategy.name!r} changed since it was promoted (config hash "
                              f"{strategy.config_hash()} vs promoted {rec.config_hash}): promote it again")


def record(ledger: Ledger, *, strategy: str, action: str, stage: str, config_hash: str, who: str,
           evidence: dict, reason: str) -> str:
    """Append the audit row (committed before the strategy file changes); return its time."""
    if action not in ("promote", "demote"):
        raise UsageError(f"unknown promotion action {action!r}")
    t = now_iso()
    ledger.record_promotion(strategy, action, stage, config_hash, who, t, evidence, reason)
    return t


def demotion_target(current: str, to: str | None) -> str:
    """The stage a demotion goes to: one step down unless named; never up."""
    if current == "research" and to is None:
        raise UsageError("the strategy is at stage research already")
    target = to or STAGES[STAGES.index(current) - 1]
    if STAGES.index(target) >= STAGES.index(current):
        raise UsageError(f"cannot demote from {current} to {target}")
    return target


def gather(ledger: Ledger, strategy: StrategyConfig, target: str,
           tracking: Callable[[str], tuple[float | None, str]]) -> Evidence:
    """The evidence for promoting ``strategy`` to ``target``; ``tracking(paper_run_id)`` replays the paper
    window ending at that run and returns its tracking error and a note (the CLI composes the simulator)."""
    h = strategy.config_hash()
    bt_run, bt, other = backtest_evidence(ledger, strategy.name, h)
    if target != "live":
        return Evidence(h, bt_run, bt, other)
    runs, days, halts = paper_evidence(ledger, strategy.name, h)
    te, note = tracking(runs[-1]) if runs else (None, "")
    return Evidence(h, bt_run, bt, other, runs, days, halts, te, note)


def write_stage(strategy: StrategyConfig, stage: str) -> Path:
    """Set the ``stage:`` line of the strategy's file, every other byte unchanged."""
    from framework.ops.yamledit import set_stage

    src = Path(strategy.source)
    src.write_text(set_stage(src.read_text(encoding="utf-8"), stage), encoding="utf-8")
    return src


def promote(ledger: Ledger, strategy: StrategyConfig, target: str, *, who: str, reason: str,
            tracking: Callable[[str], tuple[float | None, str]]) -> dict:
    """Check the gates, record the promotion, then update the strategy file; raise PromotionRefused."""
    problem = transition_problem(strategy.stage, target)
    if problem:
        raise UsageError(problem)
    ev = gather(ledger, strategy, target, tracking)
    gates = check(target, strategy, ev)
    if not all(g.passed for g in gates):
        raise refusal(strategy.name, target, gates)
    evidence = ev.as_json() | {"gates": [asdict(g) for g in gates]}
    when = record(ledger, strategy=strategy.name, action="promote", stage=target, config_hash=ev.config_hash,
                  who=who, evidence=evidence, reason=reason)
    src = write_stage(strategy, target)
    return {"strategy": strategy.name, "action": "promote", "stage": target, "config_hash": ev.config_hash,
            "who": who, "time": when, "evidence": evidence, "file": str(src)}


def demote(ledger: Ledger, strategy: StrategyConfig, to: str | None, *, who: str, reason: str) -> dict:
    """Record a demotion (one stage down unless ``to`` says), then update the strategy file."""
    current = strategy.stage
    last = last_record(ledger, strategy.name)
    if last and last["action"] == "promote" and STAGES.index(last["stage"]) > STAGES.index(current):
        current = last["stage"]    # the file was edited by hand: the audit record knows better
    target = demotion_target(current, to)
    when = record(ledger, strategy=strategy.name, action="demote", stage=target,
                  config_hash=strategy.config_hash(), who=who, evidence={"from": current}, reason=reason)
    src = write_stage(strategy, target)
    return {"strategy": strategy.name, "action": "demote", "from": current, "stage": target, "who": who,
            "time": when, "file": str(src)}
