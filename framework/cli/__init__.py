"""The ``parity`` command line. Heavy libraries are imported inside commands so ``--help`` is fast.

Exit codes: 0 success; 1 runtime failure; 2 bad input or usage (nothing was sent);
3 the risk manager blocked the whole cycle.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from framework.errors import ParityError

CONFIG_HELP = "settings file (default config/settings.yaml)"


def _settings(ctx: click.Context):
    from framework.config import load_settings

    return load_settings(ctx.obj["config"])


def _progress(json_out: bool) -> bool:
    return (not json_out) and sys.stdout.isatty()


class ParityGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ParityError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=ParityGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", default=None, metavar="PATH", help=CONFIG_HELP)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Parity: one risk manager and one rebalancer for backtest, paper and live trading."""
    import warnings

    warnings.formatwarning = lambda message, *_a, **_k: f"warning: {message}\n"
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def config_option(f):
    """Accept --config after the command name too (``parity backtest --config X``)."""
    def set_config(ctx: click.Context, _param, value):
        if value:
            ctx.obj["config"] = value
        return value
    return click.option("--config", default=None, metavar="PATH", help=CONFIG_HELP, expose_value=False,
                        callback=set_config)(f)


@main.command()
@click.option("--json", "json_out", is_flag=True, help="print the summary as JSON only")
@config_option
@click.pass_context
def demo(ctx: click.Context, json_out: bool) -> None:
    """Backtest the demo strategy on a deterministic sample market (no keys, no network)."""
    from framework.cli.demo import run_demo

    settings = _settings(ctx)
    run_id, summary, out = run_demo(settings, ctx.obj["config"], progress=_progress(json_out))
    _finish(summary, out, json_out)


@main.command()
@click.option("--strategy", "strategy_name", default=None, help="strategy name (config/strategies/NAME.yaml) or a YAML path")
@click.option("--portfolio", "portfolio_name", default=None,
              help="several strategies as sleeves of one account (config/portfolios/NAME.yaml)")
@click.option("--signals", "signals_path", default=None, help="signal archive (file or directory); overrides the strategy's")
@click.option("--bars", "bars_path", default=None, help="long bar CSV or store directory; overrides the strategy's")
@click.option("--start", default=None, help="first batch time (inclusive)")
@click.option("--end", default=None, help="last batch and bar time (inclusive)")
@click.option("--cash", type=float, default=None, help="starting cash (default: the strategy's simulation.cash)")
@click.option("--out", "out_dir", default=None, help="reports directory (default: reports_dir of the settings)")
@click.option("--json", "json_out", is_flag=True, help="print the summary as JSON only")
@config_option
@click.pass_context
def backtest(ctx: click.Context, strategy_name: str | None, portfolio_name: str | None, signals_path, bars_path, start,
             end, cash, out_dir, json_out: bool) -> None:
    """Replay a signal archive through risk, rebalancer and the simulated broker."""
    from framework.cli.wiring import run_backtest
    from framework.config import load_strategy
    from framework.errors import UsageError

    settings = _settings(ctx)
    one_of = "name one of --strategy NAME or --portfolio NAME"
    if portfolio_name is not None:
        if strategy_name is not None:
            raise UsageError(one_of)
        if signals_path or start or end:
            raise UsageError("--portfolio takes each sleeve's archive from config/portfolios/NAME.yaml: "
                             "--signals, --start and --end apply to --strategy only")
        _portfolio_backtest(settings, ctx.obj["config"], portfolio_name, bars_path, cash, out_dir, json_out)
        return
    if strategy_name is None:
        raise UsageError(one_of)
    strategy = load_strategy(strategy_name, ctx.obj["config"])
    if strategy.signals.strategies == "sleeves":       # the archive's strategies run as sleeves (SPEC §18)
        from framework.portfolios import portfolio_of_strategy

        pf = portfolio_of_strategy(strategy, ctx.obj["config"], signals_path)
        _portfolio_backtest(settings, ctx.obj["config"], pf, bars_path, cash, out_dir, json_out)
        return
    run_id, summary, out = run_backtest(settings, ctx.obj["config"], strategy, signals_path=signals_path,
                                        bars_path=bars_path, start=start, end=end, cash=cash, out_dir=out_dir,
                                        progress=_progress(json_out), draw_ahead=True)
    _finish(summary, out, json_out)


def _portfolio_backtest(settings, config: str | None, portfolio, bars_path, cash, out_dir, json_out: bool) -> None:
    """Backtest a portfolio (a name, or the one a sleeves archive makes) and print its result."""
    from framework.cli.portfolio import run_portfolio_backtest
    from framework.sleeves.report import print_report

    _, summary, out, rep = run_portfolio_backtest(settings, config, portfolio, bars_path=bars_path, cash=cash,
                                                  out_dir=out_dir)
    if json_out:
        from framework.cli.output import emit_json

        emit_json({**summary, "artifacts": str(out), "sleeves": rep})
    else:
        _finish(summary, out, False)
        print_report(rep)


def _finish(summary: dict, out: Path, json_out: bool) -> None:
    from framework.cli.output import emit_json, print_summary

    if json_out:
        emit_json({**summary, "artifacts": str(out)})
    else:
        print_summary(summary, str(out))


@main.command()
@click.option("--json", "json_out", is_flag=True)
@config_option
@click.pass_context
def runs(ctx: click.Context, json_out: bool) -> None:
    """List recorded runs."""
    from framework.cli.output import emit_json, print_runs
    from framework.ledger import Ledger

    settings = _settings(ctx)
    ledger = Ledger(settings.ledger)
    df = ledger.runs()
    ledger.close()
    if json_out:
        emit_json({"runs": df.drop(columns=["settings", "universe"]).to_dict(orient="records")})
    else:
        print_runs(df)


@main.group()
def data() -> None:
    """Market data in the local store."""


@data.command("import")
@click.argument("file")
@click.option("--timeframe", default=None, help="dataset name (default: inferred from the bar spacing)")
@config_option
@click.pass_context
def data_import(ctx: click.Context, file: str, timeframe: str | None) -> None:
    """Import a long CSV (timestamp,symbol,open,high,low,close,volume) into the Parquet store."""
    from framework.data import BarStore, infer_timeframe, read_long_csv

    settings = _settings(ctx)
    df = read_long_csv(file)
    tf = timeframe or infer_timeframe(df)
    counts = BarStore(settings.data_dir).write(df, tf)
    click.echo(f"imported {len(df):,} bars of {len(counts)} symbol(s) from {file} into {settings.data_dir}bars/{tf}")
    for sym, n in counts.items():
        click.echo(f"  {sym}: {n:,} bars in the store")


def _mode_options(f):
    f = click.option("--live", is_flag=True, help="trade live (needs a strategy promoted to live)")(f)
    f = click.option("--paper", is_flag=True, help="paper trading (the default; accepted for compatibility)")(f)
    return f


@main.command()
@click.option("--broker", "broker_name", type=click.Choice(["alpaca", "coinbase"]), default="alpaca")
@click.option("--portfolio", "portfolio_name", default=None, help="also show the account sleeve by sleeve")
@_mode_options
@click.option("--json", "json_out", is_flag=True)
@config_option
@click.pass_context
def status(ctx: click.Context, broker_name: str, portfolio_name: str | None, live: bool, paper: bool,
           json_out: bool) -> None:
    """Portfolio summary: equity, cash, buying power, P&L, exposure and positions."""
    from framework.cli.live import run_status

    _exclusive(live, paper)
    if portfolio_name is not None:
        from framework.cli.portfolio import run_status_portfolio

        run_status_portfolio(_settings(ctx), ctx.obj["config"], name=portfolio_name, live=live, paper=paper,
                             json_out=json_out)
        return
    run_status(_settings(ctx), ctx.obj["config"], broker_name=broker_name, live=live, json_out=json_out)


def _exclusive(live: bool, paper: bool) -> None:
    from framework.errors import UsageError

    if live and paper:
        raise UsageError("--live and --paper exclude each other")


@main.command()
@click.option("--signals", "signals_path", default=None, help="signal file or directory; the newest batch is traded")
@click.option("--strategy", "strategy_name", default=None, help="strategy (default: the limits of settings.yaml)")
@click.option("--portfolio", "portfolio_name", default=None,
              help="one cycle for all sleeves of config/portfolios/NAME.yaml (netted orders)")
@click.option("--broker", "broker_name", type=click.Choice(["alpaca", "coinbase"]), default=None)
@_mode_options
@click.option("--dry-run", is_flag=True, help="print the full order plan and send nothing")
@click.option("--yes", is_flag=True, help="confirm live trading without a prompt (cron)")
@click.option("--force", is_flag=True, help="trade a batch older than max_signal_age_minutes")
@click.option("--json", "json_out", is_flag=True)
@config_option
@click.pass_context
def execute(ctx: click.Context, signals_path: str | None, strategy_name, portfolio_name, broker_name, live: bool,
            paper: bool, dry_run: bool, yes: bool, force: bool, json_out: bool) -> None:
    """Run one rebalance cycle on paper (default) or live."""
    from framework.cli.live import run_execute
    from framework.errors import UsageError

    _exclusive(live, paper)
    if portfolio_name is not None:
        from framework.cli.portfolio import run_execute_portfolio

        if signals_path or strategy_name or broker_name:
            raise UsageError("--portfolio names its sleeves, their archives and its broker in "
                             "config/portfolios/NAME.yaml: drop --signals, --strategy and --broker")
        sys.exit(run_execute_portfolio(_settings(ctx), ctx.obj["config"], name=portfolio_name, live=live, paper=paper,
                                       dry_run=dry_run, yes=yes, force=force, json_out=json_out))
    if signals_path is None:
        raise UsageError("Missing option '--signals' (or name a --portfolio)")
    if strategy_name is not None:
        from framework.config import load_strategy

        strategy = load_strategy(strategy_name, ctx.obj["config"])
        if strategy.signals.strategies == "sleeves":   # the archive's strategies run as sleeves (SPEC §18)
            from framework.cli.portfolio import run_execute_portfolio
            from framework.portfolios import portfolio_of_strategy

            pf = portfolio_of_strategy(strategy, ctx.obj["config"], signals_path)
            if broker_name:
                pf = pf.model_copy(update={"account": pf.account.model_copy(update={"broker": broker_name})})
            sys.exit(run_execute_portfolio(_settings(ctx), ctx.obj["config"], name=pf, live=live, paper=paper,
                                           dry_run=dry_run, yes=yes, force=force, json_out=json_out))
    code = run_execute(_settings(ctx), ctx.obj["config"], signals_path=signals_path, strategy_name=strategy_name,
                       broker_name=broker_name, live=live, dry_run=dry_run, yes=yes, force=force, json_out=json_out)
    sys.exit(code)


@main.command()
@click.option("--symbol", required=True, help="symbol in any form (AAPL, BTC/USD, X:BTCUSD, BTC-USD)")
@click.option("--quantity", type=float, default=None, help="quantity to close (default: all)")
@click.option("--broker", "broker_name", type=click.Choice(["alpaca", "coinbase"]), default=None)
@_mode_options
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True)
@config_option
@click.pass_context
def close(ctx: click.Context, symbol: str, quantity, broker_name, live: bool, paper: bool, dry_run: bool,
          yes: bool) -> None:
    """Close a position fully or partly."""
    from framework.cli.live import run_close

    _exclusive(live, paper)
    sys.exit(run_close(_settings(ctx), ctx.obj["config"], symbol=symbol, quantity=quantity, broker_name=broker_name,
                       live=live, dry_run=dry_run, yes=yes))


def entry() -> None:
    """The ``parity`` console script and ``python -m framework``: run the command, then leave.

    A finished command has closed its ledger, joined its threads and helper processes and
    written its files; tearing the interpreter down after that (freeing every object, numba's
    and LLVM's finalizers) takes a good part of a second, for nothing. So a command that ends
    with an exit code leaves with ``os._exit`` once the output is flushed; while anything else
    is running (a thread that is not a daemon, a child process) it gets the ordinary exit, which
    waits for it. An exception that escapes takes the ordinary path (its traceback is printed)."""
    try:
        main()
    except SystemExit as e:
        if e.code is not None and not isinstance(e.code, int):
            raise
        _leave(e.code or 0)
        raise
    _leave(0)


def _leave(code: int) -> None:
    """``os._exit(code)`` when nothing is left to wait for (output flushed first); else return."""
    import os
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        return
    if "multiprocessing" in sys.modules:
        import multiprocessing

        if multiprocessing.active_children():
            return
    if "logging" in sys.modules:
        import logging

        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):       # a closed pipe: the ordinary exit reports it
            return
    os._exit(code)


# More commands register themselves on ``main`` / ``data`` (kept in their own modules).
from framework.cli import fetch as _fetch  # noqa: E402,F401
from framework.cli import ops as _ops  # noqa: E402,F401
from framework.cli import sweep as _sweep  # noqa: E402,F401

if __name__ == "__main__":
    entry()
