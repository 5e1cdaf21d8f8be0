"""Operations commands: ``report`` (one run, or ``report nightly``), ``compare`` (two runs side by
side, or one paper/live run against its simulation), ``calibrate``, ``promote`` and ``demote``.

This module is part of the composition root: it builds the simulated broker for the replays and the
venue brokers for the nightly sync and hands them to ``framework.ops``, which imports no broker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from framework.cli import _settings, config_option, main
from framework.errors import UsageError


# ---------------------------------------------------------------- composition
def sim_factory(bars, universe, *, equity, positions, start, fill, fees, slippage, volume_cap, lookback):
    """A SimulatedBroker worth ``equity`` at ``start`` holding ``positions`` (the replay's MarketFactory)."""

    from brokers.simulated import SimulatedBroker
    from framework.clock import SimClock

    market = SimulatedBroker(bars, universe, SimClock(bars.times[0]), cash=equity, fill=fill, fees=fees,
                             slippage=slippage, volume_cap=volume_cap, lookback=lookback)
    market.seed(positions, start)
    return market


def strategy_of(run: dict, settings_path: str | None):
    """The strategy a replay uses: the run's strategy file as it is now, else the config the run recorded."""
    import json

    from framework.config import StrategyConfig, load_strategy
    from framework.errors import ConfigError

    try:
        return load_strategy(run["strategy"], settings_path)
    except ConfigError:
        raise
    except UsageError:
        dump = json.loads(run.get("settings") or "{}").get("strategy")
        if not dump:
            raise
        return StrategyConfig.model_validate(dump)


def replay_bars(settings, strategy, plan, bars_path: str | None):
    """The bars of the replay, its fill rule and a description: the configured (or --bars) bars when
    they cover the paper period, else one bar per cycle at its sizing prices, filled at the close."""
    from framework.data import load_bars
    from framework.errors import DataError
    from framework.ops.replay import coverage_problem, cycle_bars

    source = bars_path or strategy.bars.path or f"the local store ({settings.data_dir})"
    try:
        bars = load_bars(bars_path or strategy.bars.path, settings.data_dir, strategy.bars.timeframe,
                         factors=strategy.bars.factors)
        problem = coverage_problem(bars, plan, strategy.simulation.fill)
    except DataError as e:
        if bars_path:
            raise
        problem = e.problems[0].message if e.problems else str(e)
    if not problem:
        return bars, strategy.simulation.fill, source
    if bars_path:
        raise UsageError(f"--bars {bars_path}: {problem}")
    return cycle_bars(plan), "close", f"the cycles' sizing prices ({source}: {problem})"


def replay_run(settings, settings_path: str | None, ledger, run_or_strategy: str, *,
               bars_path: str | None = None, signals_path: str | None = None, slippage=None, strategy=None):
    """Replay one paper/live window through the simulator; return (plan, sim, strategy)."""
    from framework.ops.replay import plan_replay, resolve_run, simulate
    from framework.venue_config import load_venue

    run = resolve_run(ledger, run_or_strategy)
    strategy = strategy or strategy_of(run, settings_path)
    plan = plan_replay(ledger, run["run_id"], strategy, signals_override=signals_path)
    bars, fill, source = replay_bars(settings, strategy, plan, bars_path)
    venue = load_venue(strategy.simulation.venue, settings_path)
    limits = strategy.limits(settings.execution.limits())
    sim = simulate(plan, strategy, limits, venue, sim_factory, bars, bars_source=source, fill=fill,
                   slippage=slippage)
    return plan, sim, strategy


def reconcile_run(settings, settings_path, ledger, run_or_strategy, **kw):
    """Replay and reconcile one window; return (result dict, per-order rows, plan, sim, strategy)."""
    from framework.ops.paper_vs_sim import reconcile

    plan, sim, strategy = replay_run(settings, settings_path, ledger, run_or_strategy, **kw)
    result, rows = reconcile(ledger, plan, sim, replay_hash=strategy.config_hash())
    return result, rows, plan, sim, strategy


# ---------------------------------------------------------------- report
@main.command()
@click.argument("run_id", required=False)
@click.option("--date", "date", default=None, help="report nightly: the UTC date (YYYY-MM-DD, default today)")
@click.option("--out", "out_dir", default=None, help="reports directory (default: reports_dir)")
@config_option
@click.pass_context
def report(ctx: click.Context, run_id: str | None, date: str | None, out_dir: str | None) -> None:
    """Write the report of RUN_ID (the newest when omitted), or `report nightly` for paper/live strategies."""
    from framework.artifacts import write_artifacts
    from framework.ledger import Ledger

    settings = _settings(ctx)
    if run_id == "nightly":
        sys.exit(nightly(settings, ctx.obj["config"], date, out_dir))
    if date is not None:
        raise UsageError("--date applies to `parity report nightly` only")
    ledger = Ledger(settings.ledger)
    try:
        rid = run_id or ledger.latest_run_id()
        if rid is None:
            raise UsageError("no runs recorded yet (try `parity demo`)")
        out = write_artifacts(ledger, rid, out_dir or settings.reports_dir)
    finally:
        ledger.close()
    click.echo(f"Report: {out / 'report.html'}")


def nightly(settings, settings_path, date: str | None, out_dir: str | None) -> int:
    """``parity report nightly``: sync, snapshot and report every paper/live strategy; the exit code."""
    import time

    from framework.ledger import Ledger
    from framework.ops import nightly as n

    day = n.parse_date(date)

    def log(message: str) -> None:
        click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} nightly {day}: {message}")

    strategies, problems = n.discover(settings_path)
    for p in problems:
        log(f"strategy file skipped: {p}")
    out = Path(out_dir or settings.reports_dir) / "nightly" / day
    ledger = Ledger(settings.ledger)
    try:
        entries, failed = n.run(
            ledger, n.targets(strategies), day, out,
            lambda t: _connect(t, settings, settings_path, ledger),
            log, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        failed += _portfolios_nightly(settings, settings_path, ledger, day, out, log)
    finally:
        ledger.close()
    log(f"{len(entries)} strategy report(s), {failed} failure(s); index {out / 'index.html'}")
    return 1 if failed else 0


# ---------------------------------------------------------------- compare
@main.command()
@click.argument("run_a", required=False)
@click.argument("run_b", required=False)
@click.option("--portfolio", "portfolio_name", default=None,
              help="paper vs simulation per sleeve of config/portfolios/NAME.yaml")
@click.option("--bars", "bars_path", default=None,
              help="paper vs simulation: bars for the replay (long CSV or store)")
@click.option("--signals", "signals_path", default=None,
              help="paper vs simulation: the signal archive, when the one the run recorded has moved")
@click.option("--out", "out_dir", default=None, help="reports directory (default: reports_dir)")
@click.option("--json", "json_out", is_flag=True, help="print the result as JSON only")
@config_option
@click.pass_context
def compare(ctx: click.Context, run_a: str | None, run_b: str | None, portfolio_name: str | None, bars_path,
            signals_path, out_dir, json_out: bool) -> None:
    """Compare two runs side by side; one paper/live run (or strategy): reconcile it with the simulator."""
    from framework.artifacts import load_run
    from framework.cli.output import emit_json
    from framework.ledger import Ledger

    settings = _settings(ctx)
    if portfolio_name is not None or run_a is None:
        _portfolio_compare(ctx, portfolio_name, run_a, json_out, calibrate=False)
        return
    if run_b is not None and (bars_path or signals_path):
        raise UsageError("--bars and --signals apply to the paper-vs-simulation form (one run)")
    ledger = Ledger(settings.ledger)
    try:
        if run_b is None:
            result, rows, plan, _, _ = reconcile_run(settings, ctx.obj["config"], ledger, run_a,
                                                     bars_path=bars_path, signals_path=signals_path)
        else:
            a, b = load_run(ledger, run_a), load_run(ledger, run_b)
    finally:
        ledger.close()
    if run_b is None:
        from framework.ops.pages import write_reconciliation
        from framework.ops.text import print_reconciliation

        out = Path(out_dir or settings.reports_dir) / f"reconcile-{plan.target_run['run_id']}"
        write_reconciliation(result, rows, out)
        if json_out:
            emit_json({**result, "artifacts": str(out)})
        else:
            print_reconciliation(result, out)
        return
    from framework.reports.compare import compare_runs

    out = Path(out_dir or settings.reports_dir) / f"compare-{run_a}-vs-{run_b}"
    result = compare_runs(a, b, out)
    if json_out:
        emit_json(result)
    else:
        click.echo(f"Comparison: {out / 'compare.html'}")


# ---------------------------------------------------------------- calibrate
@main.command()
@click.argument("runs", nargs=-1, required=False)
@click.option("--portfolio", "portfolio_name", default=None,
              help="the slippage each sleeve's fills imply (config/portfolios/NAME.yaml)")
@click.option("--model", type=click.Choice(["fixed_bps", "spread_impact"]), default=None,
              help="slippage model to propose (default: the strategy's)")
@click.option("--bars", "bars_path", default=None, help="bars for the replays (long CSV or store)")
@click.option("--signals", "signals_path", default=None,
              help="the signal archive, when the one the runs recorded has moved")
@click.option("--write", is_flag=True, help="write the proposed settings into the strategy (and venue) files")
@click.option("--json", "json_out", is_flag=True)
@config_option
@click.pass_context
def calibrate(ctx: click.Context, runs: tuple[str, ...], portfolio_name: str | None, model, bars_path, signals_path,
              write: bool, json_out: bool) -> None:
    """Fit the simulator's slippage and check the fee settings against the fills of paper/live RUNS."""
    from framework.cli.output import emit_json
    from framework.ledger import Ledger
    from framework.ops.replay import resolve_run

    settings, path = _settings(ctx), ctx.obj["config"]
    if portfolio_name is not None or not runs:
        if write:
            raise UsageError("calibrate --portfolio proposes settings per sleeve; --write is for RUNS")
        _portfolio_compare(ctx, portfolio_name, None, json_out, calibrate=True)
        return
    ledger = Ledger(settings.ledger)
    try:
        # one window per (strategy, broker, mode, config): the newest run named ends it and covers the rest
        windows: dict[tuple, dict] = {}
        for name in runs:
            r = resolve_run(ledger, name)
            key = (r["strategy"], r["broker"], r["mode"], r["config_hash"])
            if key not in windows or (r["created_at"], r["run_id"]) > (windows[key]["created_at"],
                                                                       windows[key]["run_id"]):
                windows[key] = r
        by_strategy: dict[str, list[str]] = {}
        for (strategy, *_), r in sorted(windows.items()):
            by_strategy.setdefault(strategy, []).append(r["run_id"])
        out = [_calibrate_one(settings, path, ledger, ids, model=model, write=write, bars_path=bars_path,
                              signals_path=signals_path) for ids in by_strategy.values()]
    finally:
        ledger.close()
    if json_out:
        emit_json({"calibration": out})
        return
    from framework.ops.text import print_calibration

    for item in out:
        print_calibration(item, write)


def _calibrate_one(settings, path, ledger, run_ids: list[str], *, model, write, bars_path,
                   signals_path) -> dict:
    """Replay the windows of one strategy with its slippage, with none (the fit) and with the proposal."""
    import pandas as pd

    from framework.config import SlippageSettings
    from framework.ops import calibrate as cal
    from framework.ops.paper_vs_sim import shortfall_stats
    from framework.ops.track import track_frames
    from framework.venue_config import load_venue

    strategy = strategy_of(ledger.run(run_ids[0]), path)
    current = strategy.simulation.slippage
    kw = {"bars_path": bars_path, "signals_path": signals_path, "strategy": strategy}
    zero = SlippageSettings(model="fixed_bps", bps=0.0, lookback=current.lookback)
    before, obs, fills, window = [], [], [], set()
    for rid in run_ids:
        _, rows, plan, _, _ = reconcile_run(settings, path, ledger, rid, **kw)
        before.append(rows)
        _, zrows, _, zsim, _ = reconcile_run(settings, path, ledger, rid, slippage=zero, **kw)
        obs.append(cal.observations(zrows, zsim.bars, zsim.fill, current.lookback))
        fills.append(track_frames(ledger, plan.run_ids)["fills"])
        window.update(plan.run_ids)
    fit = cal.fit_slippage(pd.concat(obs, ignore_index=True), current)
    proposed = fit.settings(model or current.model, current)
    after = [reconcile_run(settings, path, ledger, rid, slippage=proposed, **kw)[1] for rid in run_ids]
    venue = load_venue(strategy.simulation.venue, path)
    all_fills = pd.concat(fills, ignore_index=True).drop_duplicates(["run_id", "client_order_id", "trade_id",
                                                                      "time", "qty", "price"])
    fees = cal.fee_check(all_fills, venue, strategy.simulation.fee_tier)
    item = {"strategy": strategy.name, "runs": sorted(window), "observations": fit.n,
            "fit": {"fixed_bps": fit.fixed_bps, "spread_bps": fit.spread_bps, "k": fit.k,
                    "k_fitted": fit.k_fitted, "mean_bps": fit.mean_bps},
            "current": current.model_dump(), "proposed": proposed.model_dump(),
            "shortfall_before": shortfall_stats(_matched(before)),
            "shortfall_after": shortfall_stats(_matched(after)), "fees": fees,
            "strategy_file": strategy.source, "venue_file": venue.source, "written": []}
    if write:
        item["written"] = cal.write_settings(strategy, venue, proposed, fees)
    return item


def _matched(parts):
    import pandas as pd

    rows = pd.concat(parts, ignore_index=True)
    return rows[~rows["match"].str.startswith("only_")]


# ---------------------------------------------------------------- promotion
def _strategy_file(name: str, settings_path):
    from framework.config import load_strategy

    s = load_strategy(name, settings_path)
    if not Path(s.source).is_file():
        raise UsageError(f"strategy {name!r} has no file (config/strategies/{name}.yaml) to record its "
                         "stage in")
    return s


@main.command()
@click.argument("name")
@click.option("--to", "to", type=click.Choice(["paper", "live"]), required=True,
              help="the stage to promote to")
@click.option("--reason", default="", help="why (kept in the audit record)")
@click.option("--json", "json_out", is_flag=True)
@config_option
@click.pass_context
def promote(ctx: click.Context, name: str, to: str, reason: str, json_out: bool) -> None:
    """Promote strategy NAME to paper or live when the gates in its config pass (SPEC §13)."""
    import getpass

    from framework.cli.output import emit_json
    from framework.ledger import Ledger
    from framework.ops import promotion as pr

    settings, path = _settings(ctx), ctx.obj["config"]
    strategy = _strategy_file(name, path)

    def tracking(paper_run: str) -> tuple[float | None, str]:
        try:
            r = reconcile_run(settings, path, ledger, paper_run, strategy=strategy)[0]
        except UsageError as e:
            return None, f"no reconciliation: {e}"
        days = r["tracking"]["days"]
        return r["tracking"]["tracking_error"], f"{r['n_cycles']} cycle(s) over {days} day(s)"

    ledger = Ledger(settings.ledger)
    try:
        done = pr.promote(ledger, strategy, to, who=getpass.getuser(), reason=reason, tracking=tracking)
    finally:
        ledger.close()
    if json_out:
        emit_json(done)
        return
    for g in done["evidence"]["gates"]:
        click.echo(f"  gate {g['name']:<19} pass   needs {g['required']}; has {g['actual']}")
    click.echo(f"{done['strategy']} promoted to {to} (config hash {done['config_hash']}) by {done['who']} at "
               f"{done['time']}; {done['file']} now says stage: {to}")


@main.command()
@click.argument("name")
@click.option("--to", "to", type=click.Choice(["research", "paper"]), default=None,
              help="the stage to go back to (default: one step down)")
@click.option("--reason", default="", help="why (kept in the audit record)")
@config_option
@click.pass_context
def demote(ctx: click.Context, name: str, to: str | None, reason: str) -> None:
    """Move strategy NAME back a stage (live -> paper -> research); live execution then refuses it."""
    import getpass

    from framework.ledger import Ledger
    from framework.ops import promotion as pr

    settings, path = _settings(ctx), ctx.obj["config"]
    strategy = _strategy_file(name, path)
    ledger = Ledger(settings.ledger)
    try:
        done = pr.demote(ledger, strategy, to, who=getpass.getuser(), reason=reason)
    finally:
        ledger.close()
    click.echo(f"{done['strategy']} demoted from {done['from']} to {done['stage']} by {done['who']} at "
               f"{done['time']}; {done['file']} now says stage: {done['stage']}")


def _portfolio_compare(ctx: click.Context, portfolio_name: str | None, run_a: str | None, json_out: bool, *,
                       calibrate: bool) -> None:
    """``compare|calibrate --portfolio NAME``: paper vs simulation per sleeve."""
    from framework.cli.output import emit_json
    from framework.cli.portfolio_compare import compare_portfolio, print_compare

    if portfolio_name is None:
        raise UsageError("name a run (or strategy), or --portfolio NAME" if calibrate is False
                         else "name paper/live RUNS, or --portfolio NAME")
    if run_a is not None:
        raise UsageError("--portfolio compares every cycle of the portfolio: drop the run id")
    result = compare_portfolio(_settings(ctx), ctx.obj["config"], portfolio_name)
    if calibrate:
        result["proposals"] = {n: {"simulation.slippage.bps": max(r["shortfall_bps"], 0.0),
                                   "file": f"strategies/{n}.yaml"}
                               for n, r in result["sleeves"].items() if r["shortfall_bps"] is not None}
    if json_out:
        emit_json(result)
    else:
        print_compare(result, calibrate)


def _portfolios_nightly(settings, settings_path, ledger, day: str, out: Path, log) -> int:
    """The account report and one report per sleeve of every portfolio (SPEC §18); the failures."""
    from framework.cli.registry import BrokerRequest, account_of, build_broker
    from framework.errors import ParityError
    from framework.ops.nightly import is_today
    from framework.sleeves import nightly as sn

    portfolios, problems = sn.discover(settings_path)
    for p in problems:
        log(f"portfolio file skipped: {p}")
    entries, failed = [], 0
    for pf in portfolios:
        broker = None
        try:
            req = BrokerRequest(pf.account.broker, pf.account.environment == "live", pf.rebalance)
            broker = build_broker(req, settings, settings_path, ledger)
            entries.append(sn.report_portfolio(ledger, pf, broker, account_of(broker, req), day, is_today(day), out,
                                               log))
        except ParityError as e:
            failed += 1
            log(f"portfolio {pf.name}: failed: {e}")
        finally:
            if broker is not None:
                broker.close()
    if portfolios:
        sn.write_index(out, day, entries)
    return failed


def _connect(target, settings, settings_path, ledger):
    """The broker a nightly target syncs with, and the account it trades."""
    from framework.cli.registry import BrokerRequest, account_of, build_broker

    req = BrokerRequest(target.broker, target.mode == "live", target.strategy.rebalance, target.strategy.broker_for)
    broker = build_broker(req, settings, settings_path, ledger)
    return broker, account_of(broker, req)
