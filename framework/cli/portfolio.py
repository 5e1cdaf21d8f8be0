"""``execute|status|backtest --portfolio NAME`` (SPEC §18): the composition root of a portfolio.

Wires brokers, journal, the sleeves' books and the account's pipeline, and hands the cycle to
``framework.sleeves.cycle.PortfolioCycle`` — the same for the backtest and the live cycle.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from framework.config import RebalanceSettings, Settings
from framework.errors import LiveSafetyError, RiskHalt, UsageError


def _portfolio(name, settings_path: str | None):
    """A portfolio by name (``portfolios/NAME.yaml``), or one already built (``signals.strategies: sleeves``)."""
    from framework.portfolios import load_portfolio

    return load_portfolio(name, settings_path) if isinstance(name, str) else name


def account_rebalance(r: RebalanceSettings) -> RebalanceSettings:
    """The account's rebalancer: each sleeve already applied its own cash buffer and drift threshold."""
    return r.model_copy(update={"drift_threshold": 0.0, "cash_buffer_pct": 0.0})


def execution_of(r: RebalanceSettings) -> tuple:
    return r.unfilled, r.execution, r.smart_reprices, r.smart_offset_bps


# Sleeves place no protective orders yet (SPEC §20 is per account: one stop on a netted position
# would sell what other sleeves hold), so an archive's exit levels are refused, not dropped in silence.
_NO_EXITS = ("strategy {name} runs as a sleeve of {portfolio}, and sleeves place no stop-loss or take-profit "
             "orders: remove the stop_loss/take_profit values, or run {name} on its own account "
             "(parity backtest --strategy {name}; parity execute --strategy {name})")


def load_sleeve_signals(sleeves, portfolio, check) -> dict:
    """Each sleeve's batches: its archive's rows of its strategy (all rows of an untagged archive)."""
    from framework.signals import load_signals
    from framework.venue import crypto_bases

    out = {}
    for s in sleeves:
        if not s.signals:
            raise UsageError(f"sleeve {s.name} has no signal archive: set sleeves.{s.name}.signals or signals: in "
                             f"{portfolio.source}, or signals.path in strategies/{s.name}.yaml")
        out[s.name] = load_signals(s.signals, strategy=s.name, source=s.strategy.signals, config_file=s.strategy.source,
                                   crypto_bases=crypto_bases(None), symbol_check=check, no_exits=_NO_EXITS.format(
                                       name=s.name, portfolio=portfolio.source))
    return out


def _absent(sleeves) -> dict[str, bool]:
    return {s.name: s.strategy.signals.absent == "hold" for s in sleeves}


# ---------------------------------------------------------------- backtest
def run_portfolio_backtest(settings: Settings, settings_path: str | None, name, *, bars_path: str | None = None,
                           cash: float | None = None, out_dir: str | None = None) -> tuple[str, dict, Path, dict]:
    """All sleeves on one simulated account, netted as live: (run id, summary, artifacts, sleeves)."""
    from brokers.simulated import SimulatedBroker
    from framework.artifacts import write_artifacts
    from framework.backtest import persist
    from framework.clock import SimClock
    from framework.costs import NoFees, VenueFees, slippage_model
    from framework.data import load_bars
    from framework.journal import BufferedJournal
    from framework.ledger import Ledger
    from framework.portfolios import resolve_sleeves
    from framework.rebalance import Rebalancer
    from framework.session import account_lease, new_run_id, sim_account
    from framework.sleeves.book import SleeveBook
    from framework.sleeves.cycle import PortfolioCycle
    from framework.sleeves.replay import replay_portfolio
    from framework.sleeves.report import sleeve_report
    from framework.venue import universe_for, untradable
    from framework.venue_config import load_venue

    portfolio = _portfolio(name, settings_path)
    sleeves = resolve_sleeves(portfolio, settings, settings_path)
    sim = portfolio.simulation
    venue = load_venue(sim.venue, settings_path)
    src = bars_path or portfolio.bars.path
    bars = load_bars(src, settings.data_dir, portfolio.bars.timeframe, factors=portfolio.bars.factors)
    have = set(bars.symbols)

    def check(symbols: list[str]) -> dict[str, str]:
        bad = {s: f"no bars for {s} in {src or settings.data_dir}" for s in symbols if s not in have}
        bad.update({s: r for s, r in untradable(venue, symbols).items() if s not in bad})
        return bad

    signals = load_sleeve_signals(sleeves, portfolio, check)
    universe = universe_for(venue, sorted({s for sig in signals.values() for s in sig.symbols}))
    bars = bars.select(list(universe.symbols))
    initial = float(cash if cash is not None else sim.cash)
    if initial <= 0:
        raise UsageError("--cash must be positive")
    fees = VenueFees.from_venue(venue, sim.fee_tier) if sim.fees else NoFees()
    market = SimulatedBroker(bars, universe, SimClock(bars.times[0]), cash=initial, fill=sim.fill, fees=fees,
                             slippage=slippage_model(sim.slippage), volume_cap=sim.volume_cap,
                             lookback=sim.slippage.lookback)
    run_id = new_run_id(f"portfolio-{portfolio.name}", "backtest")
    journal = BufferedJournal(run_id, sim_account(run_id))
    book = SleeveBook(journal.account.key, portfolio.name)
    limits = portfolio.limits(settings.execution.limits())
    fee_rate = fees.rate(universe.crypto) if isinstance(fees, VenueFees) else 0.0
    pc = PortfolioCycle.wire(portfolio.name, sleeves, book, market, journal,
                             Rebalancer(account_rebalance(portfolio.rebalance), fee_rate), universe, limits,
                             execution=execution_of(portfolio.rebalance), run_id=run_id)
    outcome = replay_portfolio(pc, market, signals, _absent(sleeves))
    dump = {"portfolio": portfolio.model_dump(exclude={"source"}), "limits": limits.model_dump(),
            "sleeves": {s.name: {"fraction": s.fraction, "amount": s.amount, "limits": s.limits.model_dump(),
                                 "signals": s.signals} for s in sleeves}}
    ledger = Ledger(settings.ledger)
    try:
        with account_lease(ledger, journal.account, "backtest", wait_s=0.0):   # see reap_dead_backtests
            persist(ledger, journal, outcome, market, run_id=run_id, strategy=f"portfolio:{portfolio.name}",
                    config_hash="", universe=universe.symbols, initial_equity=initial, settings=dump,
                    signals=json.dumps({s.name: s.signals for s in sleeves}))
            book.attach(ledger)
            book.commit()
            out = write_artifacts(ledger, run_id, out_dir or settings.reports_dir)
    finally:
        ledger.close()
    acct = market.account()
    held = acct.positions or market.positions()
    marks = {p.symbol: p.market_price for p in held}
    rep = sleeve_report(book, acct.equity, acct.cash, {p.symbol: p.qty for p in held}, marks)
    (out / "sleeves.json").write_text(json.dumps(rep, indent=2, sort_keys=True))
    summary = json.loads((out / "summary.json").read_text())
    return run_id, summary, out, rep


# ---------------------------------------------------------------- execute
def _newest(signals: dict, sleeves, force: bool, echo) -> tuple[np.datetime64, dict[str, int | None]]:
    """The index of each sleeve's newest batch (None: stale, the sleeve holds) and the cycle's time."""
    now = np.datetime64(time.time_ns(), "ns")
    out: dict[str, int | None] = {}
    fresh = []
    for s in sleeves:
        sig = signals[s.name]
        if len(sig) == 0:
            out[s.name] = None
            continue
        t = sig.times[-1]
        age = (now - t) / np.timedelta64(1, "m")
        if age > s.limits.max_signal_age_minutes and not force:
            echo(f"sleeve {s.name}: the newest batch ({np.datetime_as_string(t, unit='s')}Z) is {age:,.0f} minutes "
                 f"old, older than max_signal_age_minutes={s.limits.max_signal_age_minutes:g}: the sleeve holds "
                 "(use --force to trade it anyway)")
            out[s.name] = None
            continue
        out[s.name] = len(sig) - 1
        fresh.append(t)
    if not fresh:
        raise LiveSafetyError("no sleeve has a fresh batch: nothing to trade (use --force to trade old batches)")
    return max(fresh), out


def _live_sleeves(ledger, sleeves, settings, venue: str, live: bool, echo) -> set[str]:
    """Sleeves that may not trade live (their strategy is not promoted to live): they hold."""
    from framework.cli.registry import gate_note, production_venues
    from framework.ops.promotion import require_live_promotion

    if not live:
        return set()
    if not production_venues(settings, venue):
        echo(gate_note(settings, venue))
        return set()
    held = set()
    for s in sleeves:
        try:
            require_live_promotion(ledger, s.strategy)
        except LiveSafetyError as e:
            echo(f"sleeve {s.name} holds: {e}")
            held.add(s.name)
    if len(held) == len(sleeves):
        raise LiveSafetyError("no sleeve of the portfolio is promoted to live: nothing may trade live")
    return held


def _tradability_check(broker) -> Callable[[list[str]], dict[str, str]]:
    """A symbol check for the sleeves' archives: the venue's verdict per symbol, asked once each."""
    from framework.errors import DataError

    cache: dict[str, str | None] = {}

    def check(symbols: list[str]) -> dict[str, str]:
        bad: dict[str, str] = {}
        for s in symbols:
            if s not in cache:
                try:
                    broker.instruments([s])
                    cache[s] = None
                except DataError as e:
                    cache[s] = e.problems[0].message
            reason = cache[s]
            if reason:
                bad[s] = reason
        return bad
    return check


def run_execute_portfolio(settings: Settings, settings_path: str | None, *, name, live: bool, paper: bool,
                          dry_run: bool, yes: bool, force: bool, json_out: bool) -> int:
    """One portfolio cycle on the portfolio's account (paper unless --live or the portfolio says live)."""
    from framework.cli.live import confirm_live, print_plan
    from framework.cli.registry import BrokerRequest, account_of, build_broker
    from framework.ledger import Ledger
    from framework.order_ids import batch_key
    from framework.portfolios import resolve_sleeves
    from framework.rebalance import Rebalancer
    from framework.session import LiveSession, RunInfo
    from framework.sleeves.book import SleeveBook
    from framework.sleeves.cycle import PortfolioCycle
    from framework.sleeves.replay import sleeve_batch
    from framework.sleeves.report import print_report
    from framework.types import RunStatus

    portfolio = _portfolio(name, settings_path)
    live = live or (not paper and portfolio.account.environment == "live")
    mode = "live" if live else "paper"
    echo = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if json_out else print
    sleeves = resolve_sleeves(portfolio, settings, settings_path)
    ledger = Ledger(settings.ledger)
    try:
        venue = portfolio.account.broker
        holding = _live_sleeves(ledger, sleeves, settings, venue, live, echo)   # before any request to a venue
        req = BrokerRequest(venue, live, portfolio.rebalance)
        broker = build_broker(req, settings, settings_path, ledger)
        signals = load_sleeve_signals(sleeves, portfolio, _tradability_check(broker))
        t, newest = _newest(signals, sleeves, force, echo)
        account = account_of(broker, req)
        book = SleeveBook.load(ledger, account.key, portfolio.name)
        syms = {s for sig in signals.values() for s in sig.symbols} | set(book.total_positions())
        universe = broker.instruments(sorted(syms))
        batches = {s.name: (None if newest[s.name] is None or s.name in holding else
                            sleeve_batch(signals[s.name], newest[s.name], universe,  # type: ignore[arg-type]
                                         s.strategy.signals.absent == "hold")) for s in sleeves}
        bid = batch_key(portfolio.name, t, account.scope)
        limits = portfolio.limits(settings.execution.limits())
        rebalancer = Rebalancer(account_rebalance(portfolio.rebalance), fees=getattr(broker, "fees", None))
        strategy = f"portfolio-{portfolio.name}"
        if dry_run:
            from framework.journal import WriteAheadJournal

            journal = WriteAheadJournal(ledger, "dry-run", account, ledger.runs_of(account.key, strategy))
            pc = PortfolioCycle.wire(portfolio.name, sleeves, book, broker, journal, rebalancer, universe, limits,
                                     execution=execution_of(portfolio.rebalance), scope=account.scope)
            res = pc.run(t, bid, batches, dry_run=True)
            cp = res.order_plan
            assert cp is not None
            _print_sleeve_plan(res.plan, echo, json_out, cp, universe, broker)
            if not json_out:
                print_plan(cp, universe, header=f"{broker.describe()}, {mode}, portfolio {portfolio.name}",
                           foreign=broker.foreign_orders())
            return 3 if cp.risk.halted else 0
        if live:
            confirm_live(broker, yes)
        info = RunInfo(strategy, "", mode, universe.symbols, {"portfolio": portfolio.model_dump(exclude={"source"}),
                                                              "limits": limits.model_dump()},
                       json.dumps({s.name: s.signals for s in sleeves}))
        with LiveSession(ledger, broker, account, info, command="execute", echo=echo) as session:
            session.reconcile(resume_batch=bid)
            book.catch_up()                 # fills booked while no book listened (a crash mid-cycle)
            book.commit()
            acct0 = broker.account()
            session.start(acct0.equity)
            ledger.snapshot(session.run_id, acct0.time, acct0.equity, acct0.cash, acct0.positions or broker.positions())
            pc = PortfolioCycle.wire(portfolio.name, sleeves, book, broker, session.journal, rebalancer, universe,
                                     limits, execution=execution_of(portfolio.rebalance), scope=account.scope,
                                     run_id=session.run_id)
            res = pc.run(t, bid, batches)
            book.catch_up()
            pc.mark(t)
            acct = session.snapshot()
            halted = res.cycle is not None and res.cycle.halted
            session.finish(RunStatus.HALTED if halted else RunStatus.DONE, acct.equity)
        rep = _report(book, broker)
        if json_out:
            print(json.dumps({"run_id": session.run_id, "broker": broker.name, "mode": mode, "halted": halted,
                              "batch_id": bid, "orders": _order_rows(res.cycle), "portfolio": rep,
                              "decisions": [d.reason for d in res.plan.decisions]}, sort_keys=True, default=str))
        else:
            from framework.cli.live import _print_result

            if res.cycle is not None:
                _print_result(res.cycle, broker, mode, session.run_id, False, echo)
            print_report(rep, echo)
        if halted:
            raise RiskHalt("the risk manager blocked the whole cycle")
        return 0
    finally:
        ledger.close()


def _order_rows(cycle) -> list[dict]:
    """The netted orders of a cycle with what became of them (``--json``)."""
    from framework.types import OrderStatus

    rows = []
    for rep in (cycle.reports if cycle is not None else ()):
        b = rep.batch
        for i, (sym, cid) in enumerate(zip(b.symbols(), b.client_order_ids())):
            rows.append({"symbol": sym, "side": "buy" if b.side[i] > 0 else "sell", "qty": float(b.qty[i]),
                         "status": OrderStatus(int(rep.status[i])).label, "filled_qty": float(rep.filled_qty[i]),
                         "client_order_id": cid})
    return rows


def _report(book, broker) -> dict:
    from framework.sleeves.report import sleeve_report

    acct = broker.account()
    held = acct.positions or broker.positions()
    return sleeve_report(book, acct.equity, acct.cash, {p.symbol: p.qty for p in held},
                         {p.symbol: p.market_price for p in held})


def _print_sleeve_plan(plan, echo, json_out: bool, cp, universe, broker) -> None:
    rows = []
    for k, name in enumerate(plan.names):
        for j, sym in enumerate(plan.symbols):
            if plan.held[k, j] or plan.target[k, j]:
                rows.append({"sleeve": name, "symbol": sym, "held": float(plan.held[k, j]),
                             "target": float(plan.target[k, j]), "crossed": float(plan.crossed[k, j]),
                             "residual": float(plan.residual[k, j]), "price": float(plan.prices[j])})
    if json_out:
        orders = [] if cp.plan is None else [
            {"symbol": sym, "side": "buy" if sd > 0 else "sell", "qty": q, "price": px, "client_order_id": c}
            for b in (cp.plan.reduce, cp.plan.add)
            for sym, sd, q, px, c in zip(b.symbols(), b.side.tolist(), b.qty.tolist(), b.ref_price.tolist(),
                                         b.client_order_ids())]
        print(json.dumps({"dry_run": True, "batch_id": plan.batch_id, "sleeves": rows,
                          "sleeve_equity": dict(zip(plan.names, plan.equity.tolist())),
                          "decisions": [d.reason for d in plan.decisions + cp.risk.decisions],
                          "halted": cp.risk.halted, "orders": orders, "equity": cp.account.equity}))
        return
    echo(f"SLEEVE PLAN  batch {plan.batch_id}")
    for k, name in enumerate(plan.names):
        echo(f"  {name}: equity $ {plan.equity[k]:,.2f}")
    for r in rows:
        echo(f"    {r['sleeve']:<14} {r['symbol']:<9} held {r['held']:>12.6g} target {r['target']:>12.6g} "
             f"crossed {r['crossed']:>12.6g} to the venue {r['residual']:>12.6g}")
    for d in plan.decisions:
        echo(f"  risk [{d.rule}] {d.symbol}: {d.reason}")


# ---------------------------------------------------------------- status
def run_status_portfolio(settings: Settings, settings_path: str | None, *, name: str, live: bool, paper: bool,
                         json_out: bool) -> None:
    """Reconcile the account, allocate what the sleeves lack, print the account sleeve by sleeve."""
    from framework.cli.live import print_foreign, print_status, reconcile_for_status, status_json
    from framework.cli.registry import BrokerRequest, account_of, build_broker
    from framework.ledger import Ledger
    from framework.sleeves.book import SleeveBook
    from framework.sleeves.report import print_report

    portfolio = _portfolio(name, settings_path)
    live = live or (not paper and portfolio.account.environment == "live")
    mode = "live" if live else "paper"
    ledger = Ledger(settings.ledger)
    try:
        req = BrokerRequest(portfolio.account.broker, live)
        broker = build_broker(req, settings, settings_path, ledger)
        account = account_of(broker, req)
        booked: list = []

        def allocate() -> None:          # under the lease: what the sleeves lack is allocated and kept
            b = SleeveBook.load(ledger, account.key, portfolio.name)
            b.catch_up()
            b.commit()
            booked.append(b)

        busy = reconcile_for_status(ledger, broker, account, mode, allocate)
        # busy: the sleeves as last booked (the command holding the account books the rest)
        book = booked[0] if booked else SleeveBook.load(ledger, account.key, portfolio.name)
        rep = _report(book, broker)
        acct = broker.account()
        if json_out:
            out = status_json(broker, acct, mode)
            out["portfolio"] = rep
            out["reconciled"] = not busy
            if busy:
                out["not_reconciled_because"] = busy
            print(json.dumps(out, sort_keys=True, default=str))
        else:
            print_status(broker, acct, mode)
            print_report(rep)
            print_foreign(broker.foreign_orders())
    finally:
        ledger.close()


def _to_stderr(*a, **k) -> None:
    print(*a, file=sys.stderr, **k)
