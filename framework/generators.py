"""Signal generators named by a strategy config (SPEC §19): resolve one, run it on the bars, and
write its archive where ``load_signals`` reads it.

The generator functions live in ``strategies/`` (see strategies/__init__.py); they are looked up
by name at run time, so ``framework`` keeps no import of ``strategies``. The archive goes to
``DATA_DIR/generated/STRATEGY-HASH/signals.csv``, HASH covering the generator's name and
parameters and the bars it read, so two configs never share a file. It is regenerated on every
run (generators are cheap next to a backtest; a stale file after a code change would not be). The
file is written whole (temporary file, then rename): parallel sweep
workers writing the same archive leave one complete copy.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path

from framework.config import GeneratorSettings, StrategyConfig
from framework.errors import ConfigError


def resolve(gen: GeneratorSettings, where: str) -> Callable:
    """The generator function named ``gen.name``; check its parameters. ``where`` names the config file."""
    registry = importlib.import_module("strategies").GENERATORS
    target = registry.get(gen.name, gen.name)
    if ":" not in target:
        raise ConfigError(f"{where} [generator.name]: unknown generator {gen.name!r}; "
                          f"known: {sorted(registry)} (or module:function)")
    module, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{where} [generator.name]: cannot load {target!r}: {e}") from None
    known = {n for n, p in inspect.signature(fn).parameters.items()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "strategy"}
    unknown = sorted(set(gen.params) - known)
    if unknown:
        raise ConfigError(f"{where} [generator.params]: unknown parameter(s) {unknown} of generator "
                          f"{gen.name!r}; known: {sorted(known)}")
    return fn


def archive_path(strategy: StrategyConfig, data_dir: str | Path, bars_token: str) -> Path:
    gen = strategy.generator
    assert gen is not None
    blob = json.dumps({"name": gen.name, "params": gen.params, "bars": bars_token}, sort_keys=True, default=str)
    h = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return Path(data_dir) / "generated" / f"{strategy.name}-{h}" / "signals.csv"


def generate(strategy: StrategyConfig, bars, data_dir: str | Path, bars_token: str) -> Path:
    """Write the archive of ``strategy.generator`` on ``bars`` (BarArrays); return its path."""
    gen = strategy.generator
    assert gen is not None
    fn = resolve(gen, strategy.source)
    path = archive_path(strategy, data_dir, bars_token)
    rows = fn(bars.to_frame(), strategy=strategy.name, **gen.params)
    try:
        return _write(rows, path)
    except OSError:
        # a sweep worker on another machine may not have (or may not write) the user's data_dir
        import tempfile

        return _write(rows, Path(tempfile.gettempdir()) / "parity-generated" / path.parent.name / path.name)


def _write(rows, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
