"""``parity status``, ``parity execute`` and ``parity close``: one live or paper cycle through the
same pipeline as the backtest, with the safety of SPEC section 11."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click
import numpy as np

from framework.config import Settings, StrategyConfig
from framework.errors import DataError, LiveSafetyError, RiskHalt, UsageError

LINE = "=" * 62
RULE = "-" * 62


def mode_of(live: bool) -> str:
    return "live" if live else "paper"


def print_status(broker, acct, mode: str) -> None:
    pos = acct.positions or broker.positions()
    init = acct.day_start_equity
    pv = sum(p.market_value for p in pos)
    cost = sum(p.qty * p.avg_cost for p in pos)
    pnl = sum(p.unrealized_pnl for p in pos)
    pnl_pct = pnl / cost * 100 if cost else 0.0
    print(LINE)
    print(f"PORTFOLIO SUMMARY  ({broker.name}, {mode})")
    print(LINE)
    print(f"Account Equity:    $ {acct.equity:>14,.2f}")
    print(f"Portfolio Value:   $ {pv:>14,.2f}")
    print(f"Cash:              $ {acct.cash:>14,.2f}")
    print(f"Buying Power:      $ {acct.buying_power:>14,.2f}")
    print(f"Total P&L:         $ {pnl:>14,.2f} ({pnl_pct:>6.2f}%)")
    net = sum(p.market_value for p in pos)
    print(f"Net Exposure:      $ {net:>14,.2f} ({(net / acct.equity * 100 if acct.equity else 0):>6.2f}%)")
    print(f"Positions:         {len(pos)}")
    if init:
        print(f"Day Start Equity:  $ {init:>14,.2f}")
    print(RULE)
    gross = sum(abs(p.market_value) for p in pos) or 1.0
    for p in sorted(pos, key=lambda p: -abs(p.market_value)):
        base = p.qty * p.avg_cost
        pct = p.unrealized_pnl / abs(base) * 100 if base else 0.0
        print(f" {p.symbol:>7} | Qty: {p.qty:>10.4f} | Value: $ {p.market_value:>9,.2f} | "
              f"P&L: $ {p.unrealized_pnl:>8,.2f} ({pct:>6.2f}%) | Weight: {abs(p.market_value) / gross * 100:>5.1f}%")
    print(LINE)


def status_json(broker, acct, mode: str) -> dict:
    pos = acct.positions or broker.positions()
    return {"broker": broker.name, "mode": mode, "equity": acct.equity, "cash": acct.cash,
            "buying_power": acct.buying_power, "portfolio_value": sum(p.market_value for p in pos),
            "total_pnl": sum(p.unrealized_pnl for p in pos),
            "positions": [{"symbol": p.symbol, "qty": p.qty, "value": p.market_value, "avg_cost": p.avg_cost,
                           "pnl": p.unrealized_pnl} for p in pos]}


def planned_exits(cp, universe, broker) -> tuple[list[dict], list]:
    """The protective exits the plan's positions would get once its legs fill (SPEC §20), each with
    what the broker would not place and why (``Broker.unplaced_exits``), and the decisions for
    levels already crossed; none without levels or orders."""
    from framework.exits import planned_exits as wanted

    if cp.plan is None or cp.target.levels is None:
        return [], []
    final = np.asarray(cp.positions, float).copy()
    for leg in (cp.plan.reduce, cp.plan.add):
        np.add.at(final, leg.symbol_idx, leg.side * leg.qty)
    cost = np.full(len(universe), np.nan)
    for pos in cp.account.positions or broker.positions():     # the plan's account snapshot, when it has them
        k = universe.index.get(pos.symbol)
        if k is not None:
            cost[k] = pos.avg_cost
    placed, crossed = wanted(cp.target, final, np.asarray(cp.positions, float), cost, cp.prices, universe)
    stops, takes = np.zeros(len(universe), bool), np.zeros(len(universe), bool)
    for e in placed:
        k = universe.index[e["symbol"]]
        stops[k], takes[k] = e["stop_loss"] is not None, e["take_profit"] is not None
    refused = broker.unplaced_exits(universe, stops, takes)     # what this venue would not place, and why
    for e in placed:
        e["not_placed"] = {leg: why for (sym, leg), why in refused.items() if sym == e["symbol"]}
    return placed, crossed


def print_plan(cp, universe, *, header: str, foreign=(), exits: tuple[list[dict], list] = ([], [])) -> None:
    """The full order plan of a dry run: prices, every risk decision with its reason, every order,
    and the protective exits placed once the orders fill."""
    t = np.datetime_as_string(np.datetime64(cp.target.time, "s"), unit="s")
    print(LINE)
    print(f"ORDER PLAN  ({header})  batch {cp.target.batch_id}  time {t}Z")
    print(LINE)
    print(f"Equity ${cp.account.equity:,.2f}   cash ${cp.account.cash:,.2f}   buying power ${cp.account.buying_power:,.2f}")
    print("Prices used:")
    for s, p, q in zip(universe.symbols, cp.prices.tolist(), cp.positions.tolist()):
        print(f"  {s:>9}  price {p:>12,.4f}   held {q:>12.6g}")
    print("Risk decisions:" if cp.risk.decisions else "Risk decisions: none (every target passed every rule)")
    for d in cp.risk.decisions:
        print(f"  [{d.rule}] {d.symbol}: {d.action} {d.requested:.6g} -> {d.approved:.6g}  ({d.reason})")
    if cp.plan is None:
        print("Cycle HALTED by the risk manager: no orders.")
        return
    for d in cp.plan.skipped:
        print(f"  [{d.rule}] {d.symbol}: {d.action}  ({d.reason})")
    n = 0
    for leg, title in ((cp.plan.reduce, "Sells / reductions (sent first)"),
                       (cp.plan.add, "Buys / additions (re-sized to the buying power left after the sells fill)")):
        print(f"{title}:")
        if len(leg) == 0:
            print("  none")
        for sym, side, q, px, cid in zip(leg.symbols(), leg.side.tolist(), leg.qty.tolist(), leg.ref_price.tolist(),
                                         leg.client_order_ids()):
            n += 1
            print(f"  {'BUY ' if side > 0 else 'SELL'} {q:>14.6f} {sym:<9} ~${q * px:>12,.2f} at {px:,.4f}  "
                  f"market  id {cid}")
    placed, crossed = exits
    if placed or crossed:
        print("Protective exits, placed once the orders fill (a % level is measured from the entry fill):")
    for e in placed:
        levels = "  ".join(f"{name} {e[key]:,.4f}" for key, name in (("stop_loss", "stop"), ("take_profit", "take"))
                           if e[key] is not None)
        note = "  (entry estimated at today's price)" if e["estimated"] else ""
        note += "".join(f"\n      {'stop' if leg == 'stop' else 'take-profit'} {why}" for leg, why in e["not_placed"].items())
        print(f"  {e['symbol']:<9} {'sell' if e['qty'] > 0 else 'buy'} {abs(e['qty']):.6g} at {levels}{note}")
    for d in crossed:
        print(f"  [{d.rule}] {d.symbol}: {d.reason}")
    if foreign:
        print("Open orders not Parity's (never cancelled or counted by Parity):")
        for o in foreign:
            print(f"  {'BUY ' if o.side > 0 else 'SELL'} {o.qty:>14.6f} {o.symbol:<9} {o.order_type} "
                  f"{o.venue_status or 'open'}  id {o.client_order_id or '(none)'}")
    print(RULE)
    print(f"{n} order(s) planned. DRY RUN: nothing was sent.")


def confirm_live(broker, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise LiveSafetyError("live trading needs a typed confirmation on a terminal, or --yes (for cron)")
    answer = click.prompt(f"Send LIVE orders through {broker.describe()}? Type LIVE to continue", default="",
                          show_default=False)
    if answer.strip() != "LIVE":
        raise LiveSafetyError("not confirmed: nothing was sent")


def live_gate(ledger, strategy: StrategyConfig, settings: Settings, venue: str, live: bool) -> str | None:
    """Refuse live trading of a strategy not promoted to live with its current config hash.

    Fails closed (SPEC §13): checked before any request reaches a venue, for every venue whose
    ``base_url`` is not a loopback address — the venue's own endpoint in any spelling, a sandbox
    or a proxy alike. Only a local test server skips it, and every run says so."""
    from framework.cli.registry import gate_note, production_venues
    from framework.ops.promotion import require_live_promotion

    if not live:
        return None
    if not production_venues(settings, venue):
        return gate_note(settings, venue)
    require_live_promotion(ledger, strategy)
    return None


def latest_batch(signals, strategy: StrategyConfig, limits, force: bool, scope: str = ""):
    if len(signals) == 0:
        raise UsageError("the signal archive has no batches")
    i = len(signals) - 1
    t = signals.times[i]
    from framework.signal_batches import bar_interval_ns, batch_age_minutes

    age = batch_age_minutes(t, bar_interval_ns(strategy.bars.timeframe, signals.times), time.time_ns())
    if age > limits.max_signal_age_minutes and not force:
        raise LiveSafetyError(f"the newest batch ({np.datetime_as_string(t, unit='s')}Z) is {age:,.0f} minutes old "
                              "counted from the end of its bar (bars.timeframe of the strategy, else the archive's "
                              "batch spacing), "
                              f"older than max_signal_age_minutes={limits.max_signal_age_minutes:g}: refusing "
                              "(use --force to trade it anyway)")
    return signals.rows(slice(i, None)).batch(0, strategy.signals.absent == "hold", scope=scope)   # levels kept


def run_execute(settings: Settings, settings_path: str | None, *, signals_path: str, strategy_name: str | None,
                broker_name: str | None, live: bool, dry_run: bool, yes: bool, force: bool, json_out: bool) -> int:
    """One rebalance cycle on paper or live: parse, wire, and hand the run to a LiveSession."""
    from framework.cli.registry import BrokerRequest, account_of, build_broker
    from framework.cli.wiring import execution_settings
    from framework.config import load_strategy
    from framework.engine import Pipeline, plan_cycle
    from framework.ledger import Ledger
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.session import LiveSession, RunInfo
    from framework.signals import load_signals
    from framework.types import RunStatus

    strategy = load_strategy(strategy_name or "default", settings_path)
    mode = mode_of(live)
    name = broker_name or _route(strategy)
    ledger = Ledger(settings.ledger)
    echo = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if json_out else print
    broker = None
    try:
        note = live_gate(ledger, strategy, settings, name, live)     # before any request reaches a venue
        if note:
            echo(note)
        req = BrokerRequest(name, live, strategy.rebalance, strategy.broker_for)
        broker = build_broker(req, settings, settings_path, ledger)
        from framework.venue import crypto_bases

        # tradability is the venue's verdict on the batch being traded and the positions held, not on
        # the archive's history (SPEC §17): an old batch's delisted ticker stops nothing
        def load(check=None):
            return load_signals(signals_path, strategy=strategy.name if strategy_name else None,
                                source=strategy.signals, config_file=strategy.source,
                                crypto_bases=crypto_bases(settings_path), symbol_check=check)

        signals = load()

        limits = strategy.limits(settings.execution.limits())
        account = account_of(broker, req)
        target = latest_batch(signals, strategy, limits, force, account.scope)
        target, symbols = trading_columns(target, signals.symbols, {p.symbol for p in broker.positions()})
        try:
            universe = broker.instruments(symbols)
        except DataError as e:      # a symbol the venue does not know: name its file, line and field
            unknown = {s: p.message for p in e.problems for s in symbols if p.message.startswith(s + " ")}
            if unknown:
                load(lambda asked: {s: m for s, m in unknown.items() if s in asked})
            raise
        rebalancer = Rebalancer(strategy.rebalance, fees=broker.sizing_fees())
        info = RunInfo(strategy.name, strategy.config_hash(), mode, universe.symbols,
                       {"limits": limits.model_dump(), "strategy": strategy.model_dump()}, str(signals_path))
        if dry_run:
            from framework.journal import WriteAheadJournal

            journal = WriteAheadJournal(ledger, "dry-run", account, ledger.runs_of(account.key, strategy.name))
            pipeline = Pipeline(broker, RiskManager(limits), rebalancer, journal, universe, *execution_settings(strategy))
            cp = plan_cycle(pipeline, target)
            if json_out:
                _plan_json(cp, universe, broker)
            else:
                print_plan(cp, universe, header=f"{broker.describe()}, {mode}, strategy {strategy.name}",
                           foreign=broker.foreign_orders(), exits=planned_exits(cp, universe, broker))
            return 3 if cp.risk.halted else 0
        if live:
            confirm_live(broker, yes)
        with LiveSession(ledger, broker, account, info, command="execute", echo=echo) as session:
            session.reconcile(resume_batch=target.batch_id)
            pipeline = Pipeline(broker, RiskManager(limits), rebalancer, session.journal, universe,
                                *execution_settings(strategy))
            acct0 = broker.account()
            session.start(acct0.equity)
            session.ledger.snapshot(session.run_id, acct0.time, acct0.equity, acct0.cash,
                                    acct0.positions or broker.positions())
            res = session.cycle(pipeline, target)
            acct = session.snapshot()
            session.finish(RunStatus.HALTED if res.halted else RunStatus.DONE, acct.equity)
            _print_result(res, broker, mode, session.run_id, json_out, echo)
        if res.halted:
            raise RiskHalt("the risk manager blocked the whole cycle: " + "; ".join(d.reason for d in res.plan.risk.decisions))
        return 0
    finally:
        if broker is not None:
            broker.close()          # ends the order stream's thread
        ledger.close()


def trading_columns(target, symbols: tuple[str, ...], held: set[str]):
    """The newest batch over the symbols it names and the positions held (the ones this cycle can
    trade), and those symbols; the archive's other columns are history."""
    from framework.types import TargetPortfolio

    keep = np.array([np.isfinite(target.weights[k]) or s in held for k, s in enumerate(symbols)], bool)
    idx = np.flatnonzero(keep)
    levels = None if target.levels is None else target.levels.rows(idx)     # stop-loss / take-profit (§20)
    return (TargetPortfolio(target.time, target.batch_id, target.weights[idx], target.confidence[idx],
                            target.absent_hold, levels), [symbols[k] for k in idx.tolist()])


def _route(strategy: StrategyConfig) -> str:
    """The broker named by the strategy's routing; both venues -> one RoutedBroker over them."""
    names = set(strategy.routing.values())
    names.discard("sim")
    if len(names) > 1:
        return "routed"
    return names.pop() if names else "alpaca"


def _plan_json(cp, universe, broker) -> None:
    from framework.cli.output import emit_json

    def leg(b):
        return [{"symbol": s, "side": "buy" if sd > 0 else "sell", "qty": q, "price": p, "client_order_id": c}
                for s, sd, q, p, c in zip(b.symbols(), b.side.tolist(), b.qty.tolist(), b.ref_price.tolist(),
                                          b.client_order_ids())]
    placed, crossed = planned_exits(cp, universe, broker)
    emit_json({"dry_run": True, "batch_id": cp.target.batch_id, "equity": cp.account.equity,
               "prices": dict(zip(universe.symbols, cp.prices.tolist())),
               "decisions": [{"symbol": d.symbol, "rule": d.rule, "action": d.action, "requested": d.requested,
                              "approved": d.approved, "reason": d.reason}
                             for d in cp.risk.decisions + (() if cp.plan is None else cp.plan.skipped)],
               "halted": cp.risk.halted,
               "orders": [] if cp.plan is None else leg(cp.plan.reduce) + leg(cp.plan.add),
               "exits": [{**e, "side": "sell" if e["qty"] > 0 else "buy", "qty": abs(e["qty"])} for e in placed],
               "exits_not_placed": [{"symbol": d.symbol, "rule": d.rule, "reason": d.reason} for d in crossed],
               "not_parity_orders": [_foreign_json(o) for o in broker.foreign_orders()]})


def _foreign_json(o) -> dict:
    return {"symbol": o.symbol, "side": "buy" if o.side > 0 else "sell", "qty": o.qty, "type": o.order_type,
            "status": o.venue_status or "open", "client_order_id": o.client_order_id}


def _print_result(res, broker, mode: str, run_id: str, json_out: bool, echo) -> None:
    from framework.cli.output import emit_json
    from framework.types import OrderStatus

    rows = []
    for rep in res.reports:
        b = rep.batch
        for i, (sym, cid) in enumerate(zip(b.symbols(), b.client_order_ids())):
            rows.append({"symbol": sym, "side": "buy" if b.side[i] > 0 else "sell", "qty": float(b.qty[i]),
                         "status": OrderStatus(int(rep.status[i])).label, "filled_qty": float(rep.filled_qty[i]),
                         "avg_price": None if np.isnan(rep.avg_price[i]) else float(rep.avg_price[i]),
                         "client_order_id": cid, "message": rep.messages.get(i, "")})
    if json_out:
        emit_json({"run_id": run_id, "broker": broker.name, "mode": mode, "halted": res.halted, "orders": rows,
                   "decisions": [d.reason for d in res.plan.risk.decisions + res.gate_decisions]})
        return
    echo(f"{broker.describe()} — {mode} run {run_id}")
    if hasattr(broker, "accounts"):
        for venue, a in broker.accounts().items():
            echo(f"  {venue}: equity ${a.equity:,.2f}  cash ${a.cash:,.2f}  buying power ${a.buying_power:,.2f}")
    for d in res.plan.risk.decisions + res.gate_decisions:
        echo(f"  risk [{d.rule}] {d.symbol}: {d.reason}")
    if not rows:
        echo("  no orders: the portfolio is at its approved targets")
    for r in rows:
        px = "" if r["avg_price"] is None else f" @ {r['avg_price']:,.4f}"
        msg = f"  ({r['message']})" if r["message"] else ""
        echo(f"  {r['side'].upper():4} {r['qty']:>12.6f} {r['symbol']:<9} {r['status']:<16} filled {r['filled_qty']:g}{px}{msg}")


def run_close(settings: Settings, settings_path: str | None, *, symbol: str, quantity: float | None,
              broker_name: str | None, live: bool, dry_run: bool, yes: bool) -> int:
    """Close a position fully or partly with one market order, through a LiveSession."""
    from framework.cli.registry import BrokerRequest, account_of, build_broker, gate_note, production_venues
    from framework.config import StrategyConfig
    from framework.ledger import Ledger
    from framework.order_ids import Leg, batch_key
    from framework.session import LiveSession, RunInfo
    from framework.symbols import canonical
    from framework.types import OrderBatch, OrderStatus, RunStatus

    try:
        sym = canonical(symbol)
    except ValueError as e:
        raise UsageError(f"--symbol: {e}") from None
    if quantity is not None and quantity <= 0:
        raise UsageError("--quantity must be positive")
    mode = mode_of(live)
    name = broker_name or StrategyConfig(name="manual").broker_for(sym)
    ledger = Ledger(settings.ledger)
    broker = None
    try:
        if live and not production_venues(settings, name):
            print(gate_note(settings, name))
        req = BrokerRequest(name, live)
        broker = build_broker(req, settings, settings_path, ledger)
        universe = broker.instruments([sym])
        held = broker.position_vector(universe)[0]
        if held == 0:
            raise UsageError(f"no {sym} position at {broker.name} ({mode}) to close")
        qty = abs(held) if quantity is None else min(quantity, abs(held))
        if quantity is not None and quantity > abs(held):
            print(f"note: --quantity {quantity:g} is more than the position {abs(held):g}: closing {qty:g}")
        inc = float(universe.qty_increment[0])
        if qty < abs(held):
            qty = float(np.floor(qty / inc + 1e-9) * inc)
        px = broker.prices(universe)
        now = np.datetime64(time.time_ns(), "ns")
        account = account_of(broker, req)
        # the id covers what was asked (symbol, quantity, minute): re-running the same command within
        # the minute is idempotent, a different request is a new order
        batch = OrderBatch(universe, now, batch_key(f"close-{qty:.9g}", np.datetime64(now, "m"), account.scope),
                           Leg.CLOSE.value, np.array([0]), np.array([-1 if held > 0 else 1], np.int8), np.array([qty]),
                           px)
        # venue row 16: a market order sent while the equity market is closed waits for the next open
        closed = not bool(broker.market_open(universe)[0])
        queued = (f"the market for {sym} is closed: {broker.name} holds this market order until the next open, where "
                  "it fills at the opening price (the overnight gap is the risk); until then it stays working at "
                  "the venue and can be cancelled there") if closed else ""
        if dry_run:
            print(f"DRY RUN: would {'SELL' if held > 0 else 'BUY'} {qty:g} {sym} at market on {broker.describe()} "
                  f"(position {held:g}, last price {px[0]:,.4f}); client order id {batch.client_order_ids()[0]}. "
                  "Nothing was sent.")
            if queued:
                print(f"note: {queued}.")
            return 0
        if queued:
            print(f"note: {queued}.")
        if live:
            confirm_live(broker, yes)
        info = RunInfo("manual", "", mode, universe.symbols, {}, f"close {sym}")
        with LiveSession(ledger, broker, account, info, command="close", history=False) as session:
            session.reconcile()
            session.start()
            rep = session.send(batch)      # a manual order belongs to no rebalance cycle
            session.finish(RunStatus.DONE)
        st = OrderStatus(int(rep.status[0])).label
        shown = "queued for the next open" if closed and st == "new" else st
        print(f"close {sym}: {shown}, filled {rep.filled_qty[0]:g} of {qty:g}"
              + ("" if np.isnan(rep.avg_price[0]) else f" @ {rep.avg_price[0]:,.4f}")
              + (f" ({rep.messages[0]})" if 0 in rep.messages else ""))
        return 0 if st in ("filled", "partially_filled", "new") else 1
    finally:
        if broker is not None:
            broker.close()          # ends the order stream's thread
        ledger.close()


def reconcile_for_status(ledger, broker, account, mode: str, then: Callable[[], None] | None = None) -> str:
    """Reconcile ``account`` under its lease (and run ``then`` there, e.g. a sleeve book's catch-up),
    for ``status``. When another command holds the lease (an ``execute`` from cron, SPEC §17) nothing
    is reconciled or written: status shows the account as the venue reports it, at once, and this
    returns why ("" when reconciled); a note on stderr says so."""
    from framework.errors import AccountBusy
    from framework.session import LiveSession, RunInfo

    try:
        with LiveSession(ledger, broker, account, RunInfo("status", "", mode), command="status", echo=_to_stderr,
                         history=False, lease_wait_s=0.0) as session:
            session.reconcile()
            if then is not None:
                then()
        return ""
    except AccountBusy as busy:
        why = busy.held
        _to_stderr(f"NOTE: {why}: shown as the venue reports it now; the ledger is not reconciled by this status")
        return why


def run_status(settings: Settings, settings_path: str | None, *, broker_name: str, live: bool, json_out: bool) -> None:
    """Reconcile the account, then print its summary (and the orders that are not Parity's)."""
    from framework.cli.output import emit_json
    from framework.cli.registry import BrokerRequest, account_of, build_broker
    from framework.ledger import Ledger

    ledger = Ledger(settings.ledger)
    broker = None
    try:
        req = BrokerRequest(broker_name, live)
        broker = build_broker(req, settings, settings_path, ledger)
        account = account_of(broker, req)
        busy = reconcile_for_status(ledger, broker, account, mode_of(live))
        acct = broker.account()
        foreign = broker.foreign_orders()
        if json_out:
            out = status_json(broker, acct, mode_of(live))
            out["not_parity_orders"] = [_foreign_json(o) for o in foreign]
            out["reconciled"] = not busy
            if busy:
                out["not_reconciled_because"] = busy
            emit_json(out)
        else:
            print_status(broker, acct, mode_of(live))
            print_foreign(foreign)
    finally:
        if broker is not None:
            broker.close()          # ends the order stream's thread
        ledger.close()


def _to_stderr(*a, **k) -> None:
    print(*a, file=sys.stderr, **k)


def print_foreign(orders) -> None:
    """Working orders at the venue that Parity did not place: listed, never touched (SPEC §17)."""
    if not orders:
        return
    print(f"Open orders not Parity's ({len(orders)}; left alone):")
    for o in orders:
        print(f"  {'BUY ' if o.side > 0 else 'SELL'} {o.qty:>12.6g} {o.symbol:<9} {o.order_type:<6} "
              f"{o.venue_status or 'open':<16} id {o.client_order_id or '(none)'}")
