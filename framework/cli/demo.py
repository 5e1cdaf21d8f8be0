"""``parity demo``: sample market -> the demo strategy's momentum generator -> backtest -> report, with no
keys and no network."""

from __future__ import annotations

from pathlib import Path

from framework.config import GeneratorSettings, Settings, StrategyConfig, load_strategy
from framework.errors import ConfigError

DEMO_GENERATOR = GeneratorSettings(name="momentum", params={"lookback": 40, "every": 7, "top": 3, "gross": 0.9})


def demo_bars(settings: Settings) -> Path:
    """Write the deterministic sample market once; return the CSV path."""
    from strategies.sample_market import sample_bars

    root = Path(settings.data_dir) / "demo"
    root.mkdir(parents=True, exist_ok=True)
    bars_file = root / "bars.csv"
    if not bars_file.is_file():
        out = sample_bars()
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.to_csv(bars_file, index=False)
    return bars_file


def demo_strategy(settings: Settings, settings_path: str | None) -> StrategyConfig:
    """The demo strategy (config/strategies/demo.yaml, else the embedded default) on the sample market."""
    try:
        strategy = load_strategy("demo", settings_path)
    except ConfigError:
        strategy = StrategyConfig(name="demo", generator=DEMO_GENERATOR)
    return strategy.model_copy(update={"bars": strategy.bars.model_copy(update={"path": str(demo_bars(settings))})})


def run_demo(settings: Settings, settings_path: str | None, progress: bool = False):
    from framework.cli.wiring import run_backtest

    return run_backtest(settings, settings_path, demo_strategy(settings, settings_path), progress=progress,
                        draw_ahead=True)
