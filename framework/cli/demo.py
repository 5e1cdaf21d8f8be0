"""``parity demo``: sample market + demo signals -> backtest -> report, with no keys and no network."""

from __future__ import annotations

from pathlib import Path

from framework.config import Settings, StrategyConfig, load_strategy
from framework.errors import ConfigError


def run_demo(settings: Settings, settings_path: str | None, progress: bool = False):
    from framework.cli.wiring import run_backtest
    from strategies.momentum import momentum_signals
    from strategies.sample_market import sample_bars

    root = Path(settings.data_dir) / "demo"
    (root / "signals").mkdir(parents=True, exist_ok=True)
    bars_file = root / "bars.csv"
    signals_file = root / "signals" / "demo.csv"
    bars = sample_bars()
    if not bars_file.is_file():
        out = bars.copy()
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.to_csv(bars_file, index=False)
    if not signals_file.is_file():
        momentum_signals(bars).to_csv(signals_file, index=False)
    try:
        strategy = load_strategy("demo", settings_path)
    except ConfigError:
        strategy = StrategyConfig(name="demo")
    strategy = strategy.model_copy(update={
        "signals": strategy.signals.model_copy(update={"path": str(root / "signals")}),
        "bars": strategy.bars.model_copy(update={"path": str(bars_file)}),
    })
    return run_backtest(settings, settings_path, strategy, progress=progress)
