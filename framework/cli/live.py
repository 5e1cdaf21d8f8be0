"""``parity status``, ``parity execute`` and ``parity close``: one live or paper cycle through the
same pipeline as the backtest, with the safety of SPEC section 11."""

from __future__ import annotations

import sys
import time

import click
import numpy as np

from framework.config import Settings, StrategyConfig
from framework.errors import LiveSafetyError, RiskHalt, UsageError
from framework.reconcile import _venues_of, reconcile  # noqa: F401  (reconcile: used by the CLI)

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


def print_plan(cp, universe, *, header: str) -> None:
    """The full order plan of a dry run: prices, every risk decision with its reason, every order."""
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


def gate_note(broker) -> str:
    return (f"NOTE: live gate skipped: {broker.name} base_url points to {broker.describe()}, "
            "not the venue's production endpoint")


def live_gate(ledger, strategy: StrategyConfig, broker, live: bool) -> str | None:
    """Refuse live trading of a strategy not promoted to live with its current config hash.

    The gate guards the venues' production endpoints; with ``base_url`` pointing elsewhere (a local
    test server or a sandbox) live commands run without promotion and say so on every run."""
    from framework.cli.brokers import production_endpoint

    if not live:
        return None
    if not production_endpoint(broker):
        return gate_note(broker)
    row = ledger.db.execute("SELECT action, stage, config_hash FROM promotions WHERE strategy=? ORDER BY rowid DESC "
                            "LIMIT 1", (strategy.name,)).fetchone()
    if row is None or row[0] != "promote" or row[1] != "live":
        raise LiveSafetyError(f"strategy {strategy.name!r} is not promoted to live: run "
                              f"`parity promote {strategy.name} --to live` (its gates are checked) first")
    if row[2] != strategy.config_hash():
        raise LiveSafetyError(f"strategy {strategy.name!r} changed since it was promoted (config hash "
                              f"{strategy.config_hash()} vs promoted {row[2]}): promote it again")
    return None


def booked_trade_ids(ledger):
    """A lookup of trade ids the ledger already holds (for ``LiveBroker.known_trade_ids``)."""
    def known(trade_ids: list[str]) -> set[str]:
        out: set[str] = set()
        ids = list(dict.fromkeys(trade_ids))
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            q = ",".join("?" * len(chunk))
            out.update(r[0] for r in ledger.db.execute(f"SELECT trade_id FROM fills WHERE trade_id IN ({q})", chunk))
        return out
    return known


def latest_batch(signals, strategy: StrategyConfig, limits, force: bool):
    from framework.types import SignalBatches

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
    return SignalBatches(signals.strategy, signals.symbols, signals.times[i:], signals.weights[i:],
                         signals.confidence[i:], signals.sources).batch(0, strategy.signals.absent == "hold")


def run_execute(settings: Settings, settings_path: str | None, *, signals_path: str, strategy_name: str | None,
                broker_name: str | None, live: bool, dry_run: bool, yes: bool, force: bool, json_out: bool) -> int:
    from framework.backtest import new_run_id
    from framework.cli.brokers import make_broker
    from framework.cli.wiring import execution_settings
    from framework.config import load_strategy
    from framework.engine import Pipeline, plan_cycle, run_cycle
    from framework.journal import WriteAheadJournal
    from framework.ledger import Ledger
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.signals import load_signals

    strategy = load_strategy(strategy_name or "default", settings_path)
    mode = mode_of(live)
    name = broker_name or _route(strategy)
    ledger = Ledger(settings.ledger)
    echo = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if json_out else print
    try:
        broker = make_broker(name, settings, settings_path, live=live, ledger=ledger, rebalance=strategy.rebalance,
                             route=strategy.broker_for)
        _wire_ledger(broker, ledger)

        cache: dict[str, str | None] = {}

        def check(symbols: list[str]) -> dict[str, str]:
            from framework.errors import DataError

            bad = {}
            for s in symbols:
                if s not in cache:
                    try:
                        broker.instruments([s])
                        cache[s] = None
                    except DataError as e:
                        cache[s] = e.problems[0].message
                if cache[s]:
                    bad[s] = cache[s]
            return bad

        from framework.venue import crypto_bases

        signals = load_signals(signals_path, strategy=strategy.name if strategy_name else None,
                               source=strategy.signals, config_file=strategy.source,
                               crypto_bases=crypto_bases(settings_path), symbol_check=check)
        limits = strategy.limits(settings.execution.limits())
        target = latest_batch(signals, strategy, limits, force)
        universe = broker.instruments(list(signals.symbols))
        note = live_gate(ledger, strategy, broker, live)
        if note:
            echo(note)
        fee_rate = broker.fees.rate(universe.crypto) if getattr(broker, "fees", None) is not None else 0.0
        rebalancer = Rebalancer(strategy.rebalance, fee_rate)
        if hasattr(broker, "resize"):
            broker.resize = rebalancer.resize_adds     # each venue's buys fit that venue's buying power
        run_id = new_run_id(strategy.name, mode)
        history = ledger.runs_of(broker.name, mode, strategy.name)
        journal = WriteAheadJournal(ledger, run_id, history + [run_id])
        pipeline = Pipeline(broker, RiskManager(limits), rebalancer, journal, universe, *execution_settings(strategy))
        _wire_journal(broker, journal)
        if dry_run:
            cp = plan_cycle(pipeline, target)
            if json_out:
                _plan_json(cp, universe)
            else:
                print_plan(cp, universe, header=f"{broker.describe()}, {mode}, strategy {strategy.name}")
            return 3 if cp.risk.halted else 0
        if live:
            confirm_live(broker, yes)
        reconcile(ledger, broker, mode, echo, resume_batch=target.batch_id)
        acct0 = broker.account()
        ledger.start_run(run_id, strategy.name, strategy.config_hash(), mode, broker.name, acct0.equity,
                         universe.symbols, {"limits": limits.model_dump(), "strategy": strategy.model_dump()},
                         str(signals_path))
        snapshot_equity(ledger, run_id, acct0)
        res = run_cycle(pipeline, target)
        acct = broker.account()
        snapshot_equity(ledger, run_id, acct)
        ledger.finish_run(run_id, "halted" if res.halted else "done", None, None, acct.equity)
        _print_result(res, broker, mode, run_id, json_out, echo)
        if res.halted:
            raise RiskHalt("the risk manager blocked the whole cycle: " + "; ".join(d.reason for d in res.plan.risk.decisions))
        return 0
    finally:
        ledger.close()


def snapshot_equity(ledger, run_id: str, acct) -> None:
    ledger.snapshot(run_id, acct.time, acct.equity, acct.cash, acct.positions)


def _wire_journal(broker, journal) -> None:
    """Commit every broker answer, with its fills, as it arrives (the write-ahead journal)."""
    from brokers.live import LiveBroker

    for venue in _venues_of(broker):
        if isinstance(venue, LiveBroker):
            venue.observer = lambda rep: journal.updates([rep])


def _wire_ledger(broker, ledger) -> None:
    """Let the live adapters ask the ledger which venue trade ids are already booked."""
    from brokers.live import LiveBroker

    for venue in _venues_of(broker):
        if isinstance(venue, LiveBroker):
            venue.known_trade_ids = booked_trade_ids(ledger)


def _route(strategy: StrategyConfig) -> str:
    """The broker named by the strategy's routing; both venues -> one RoutedBroker over them."""
    names = set(strategy.routing.values())
    names.discard("sim")
    if len(names) > 1:
        return "routed"
    return names.pop() if names else "alpaca"


def _plan_json(cp, universe) -> None:
    from framework.cli.output import emit_json

    def leg(b):
        return [{"symbol": s, "side": "buy" if sd > 0 else "sell", "qty": q, "price": p, "client_order_id": c}
                for s, sd, q, p, c in zip(b.symbols(), b.side.tolist(), b.qty.tolist(), b.ref_price.tolist(),
                                          b.client_order_ids())]
    emit_json({"dry_run": True, "batch_id": cp.target.batch_id, "equity": cp.account.equity,
               "prices": dict(zip(universe.symbols, cp.prices.tolist())),
               "decisions": [{"symbol": d.symbol, "rule": d.rule, "action": d.action, "requested": d.requested,
                              "approved": d.approved, "reason": d.reason} for d in cp.risk.decisions],
               "halted": cp.risk.halted,
               "orders": [] if cp.plan is None else leg(cp.plan.reduce) + leg(cp.plan.add)})


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
    from framework.cli.brokers import make_broker
    from framework.config import StrategyConfig
    from framework.journal import WriteAheadJournal
    from framework.ledger import Ledger
    from framework.symbols import canonical
    from framework.types import OrderBatch, batch_key

    try:
        sym = canonical(symbol)
    except ValueError as e:
        raise UsageError(f"--symbol: {e}") from None
    if quantity is not None and quantity <= 0:
        raise UsageError("--quantity must be positive")
    mode = mode_of(live)
    name = broker_name or StrategyConfig(name="manual").broker_for(sym)
    ledger = Ledger(settings.ledger)
    try:
        broker = make_broker(name, settings, settings_path, live=live, ledger=ledger)
        _wire_ledger(broker, ledger)
        from framework.cli.brokers import production_endpoint

        if live and not production_endpoint(broker):
            print(gate_note(broker))
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
        # the id covers what was asked (symbol, quantity, minute): re-running the same command within
        # the minute is idempotent, a different request is a new order
        batch = OrderBatch(universe, now, batch_key(f"close-{qty:.9g}", np.datetime64(now, "m")), "close",
                           np.array([0]),
                           np.array([-1 if held > 0 else 1], np.int8), np.array([qty]), px)
        if dry_run:
            print(f"DRY RUN: would {'SELL' if held > 0 else 'BUY'} {qty:g} {sym} at market on {broker.describe()} "
                  f"(position {held:g}, last price {px[0]:,.4f}); client order id {batch.client_order_ids()[0]}. "
                  "Nothing was sent.")
            return 0
        if live:
            confirm_live(broker, yes)
        reconcile(ledger, broker, mode)
        from framework.backtest import new_run_id

        run_id = new_run_id("manual", mode)
        ledger.start_run(run_id, "manual", "", mode, broker.name, None, universe.symbols, {}, f"close {sym}")
        journal = WriteAheadJournal(ledger, run_id)
        _wire_journal(broker, journal)
        journal.intents(None, batch)   # a manual order belongs to no rebalance cycle
        rep = broker.execute(batch)
        journal.report(None, rep)
        ledger.finish_run(run_id, "done", None, None, None)
        from framework.types import OrderStatus

        st = OrderStatus(int(rep.status[0])).label
        print(f"close {sym}: {st}, filled {rep.filled_qty[0]:g} of {qty:g}"
              + ("" if np.isnan(rep.avg_price[0]) else f" @ {rep.avg_price[0]:,.4f}")
              + (f" ({rep.messages[0]})" if 0 in rep.messages else ""))
        return 0 if st in ("filled", "partially_filled", "new") else 1
    finally:
        ledger.close()
