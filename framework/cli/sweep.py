"""``parity sweep`` (SPEC §19): many backtests of one strategy, locally or on a Dask cluster."""

from __future__ import annotations

import click

from framework.cli import _progress, _settings, config_option, main


@main.command()
@click.option("--strategy", "strategy_name", required=True, help="strategy name (config/strategies/NAME.yaml) or a YAML path")
@click.option("--param", "params", multiple=True, metavar="KEY=V1,V2,...",
              help="a dotted config key (risk.max_position_size_pct, generator.lookback, ...) and its values; "
                   "LO..HI is a range for --random")
@click.option("--random", "random_n", type=int, default=None, metavar="N", help="N random points instead of the grid")
@click.option("--seed", type=int, default=0, help="seed of --random (default 0)")
@click.option("--walk-forward", "walk_forward", default=None, metavar="TRAIN:TEST",
              help="rolling windows, e.g. 365D:90D: rank points out of sample")
@click.option("--metric", default="sharpe", help="metric that ranks the points (default sharpe)")
@click.option("--keep", type=int, default=3, metavar="K", help="full run artifacts for the best K points (default 3)")
@click.option("--workers", type=int, default=None, metavar="N", help="local worker processes (default: the cores)")
@click.option("--cluster", default=None, metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
@click.option("--json", "json_out", is_flag=True, help="print the sweep summary as JSON only")
@config_option
@click.pass_context
def sweep(ctx: click.Context, strategy_name: str, params, random_n, seed, walk_forward, metric, keep, workers,
          cluster, json_out: bool) -> None:
    """Backtest a strategy over a grid (or random set) of config values, resumably; rank the points by a
    metric, each with its Deflated Sharpe Ratio."""
    from framework.cli.output import emit_json
    from framework.cli.wiring import build_backtest, run_backtest
    from framework.config import load_strategy
    from framework.sweep.point import Backtests
    from framework.sweep.sweep import SweepRequest, run_sweep

    settings = _settings(ctx)
    strategy = load_strategy(strategy_name, ctx.obj["config"])
    req = SweepRequest(tuple(params), random_n, seed, walk_forward, metric, keep, workers, cluster)
    out = run_sweep(settings, ctx.obj["config"], strategy, req, Backtests(build_backtest, run_backtest),
                    progress=_progress(json_out),
                    echo=(lambda s: None) if json_out else (lambda s: click.echo(s, err=True)))
    if json_out:
        emit_json(out)
        return
    click.echo(f"sweep {out['sweep_id']}: {out['n_points']} point(s), {out['n_backtests']} backtest(s) recorded "
               f"({out['recorded_now']} now, {out['skipped']} resumed)")
    click.echo(f"best by {out['metric']}:")
    for i, b in enumerate(out["best"], 1):
        keys = ", ".join(f"{k}={b.get(k)}" for k in out["keys"])
        m, d = b.get("metric"), b.get("dsr")
        click.echo(f"  #{i} {b['point_id']}  {keys}  {out['metric']}={'n/a' if m is None else f'{m:.3f}'}  "
                   f"DSR={'n/a' if d is None else f'{d:.3f}'}  run {b.get('run_id') or out['runs'].get(b['point_id'], '-')}")
    click.echo(f"report: {out['report']}")
