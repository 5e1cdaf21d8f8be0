"""The points of a sweep: grid or random values over dotted config keys, walk-forward windows, ids.

``--param KEY=V1,V2,...``: KEY is a dotted path into the strategy config (``risk.max_position_size_pct``,
``rebalance.drift_threshold``, ``simulation.slippage.bps``) or a parameter of the strategy's signal
generator (``generator.lookback``). Values are YAML scalars (``0.1``, ``20``, ``true``, ``market``).
For ``--random N`` a value list is sampled from, and ``LO..HI`` is a uniform range (integers when
both ends are integers).

Order and ids are deterministic: the grid is the product of the values in the order given
(first key slowest), random points come from ``numpy.random.default_rng(seed)``; a point's id is
the config hash of its strategy config (two spellings of the same config are one point), and the
sweep id hashes the strategy, its base config, every point id and the windows, so re-running the
same command resumes the same sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

import numpy as np
import yaml

from framework.config import StrategyConfig
from framework.errors import UsageError


@dataclass(frozen=True, slots=True)
class Axis:
    key: str
    values: tuple = ()                      # explicit values
    low: float | None = None                # LO..HI range (random sweeps only)
    high: float | None = None


@dataclass(frozen=True, slots=True)
class Point:
    point_id: str                           # the config hash of ``strategy``
    params: dict                            # {dotted key: value}
    strategy: StrategyConfig


@dataclass(frozen=True, slots=True)
class Task:
    """One backtest of a point: the whole period (window 0, ``full``) or a train/test window."""

    point_id: str
    window: int
    segment: str                            # full | train | test
    start: str | None
    end: str | None

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.point_id, self.window, self.segment)


def _scalar(text: str, spec: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise UsageError(f"--param {spec}: {text!r} is not a value") from None


def parse_axes(specs: tuple[str, ...] | list[str]) -> list[Axis]:
    axes: list[Axis] = []
    for spec in specs:
        key, eq, rhs = spec.partition("=")
        key = key.strip()
        if not eq or not key or not rhs.strip():
            raise UsageError(f"--param {spec!r}: expected KEY=V1,V2,... (e.g. rebalance.drift_threshold=0.01,0.02)")
        if key in {a.key for a in axes}:
            raise UsageError(f"--param {key} given twice")
        if ".." in rhs and "," not in rhs:
            lo, _, hi = rhs.partition("..")
            lo_v, hi_v = _scalar(lo, spec), _scalar(hi, spec)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo_v, hi_v)) or lo_v > hi_v:
                raise UsageError(f"--param {spec!r}: a range is LO..HI with numbers, LO <= HI")
            axes.append(Axis(key, (), lo_v, hi_v))
        else:
            axes.append(Axis(key, tuple(_scalar(v.strip(), spec) for v in rhs.split(","))))
    if not axes:
        raise UsageError("a sweep needs at least one --param KEY=V1,V2,...")
    return axes


def combos(axes: list[Axis], random: int | None, seed: int) -> list[dict]:
    """The parameter combinations in sweep order."""
    if random is None:
        ranged = [a.key for a in axes if not a.values]
        if ranged:
            raise UsageError(f"--param {ranged[0]}=LO..HI is a range: use it with --random N, or list values")
        return [dict(zip([a.key for a in axes], vals)) for vals in itertools.product(*[a.values for a in axes])]
    if random < 1:
        raise UsageError("--random N needs N >= 1")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(random):
        point = {}
        for a in axes:
            if a.values:
                point[a.key] = a.values[int(rng.integers(len(a.values)))]
            elif a.low is None or a.high is None:
                raise UsageError(f"--param {a.key}: expected values V1,V2,... or a range LO..HI")
            elif isinstance(a.low, int) and isinstance(a.high, int):
                point[a.key] = int(rng.integers(a.low, a.high + 1))
            else:
                point[a.key] = float(rng.uniform(a.low, a.high))
        out.append(point)
    return out


def apply(strategy: StrategyConfig, params: dict) -> StrategyConfig:
    """The strategy config with ``params`` set; an unknown key or a bad value is a UsageError naming it."""
    from pydantic import ValidationError

    data = strategy.model_dump()
    for key, value in params.items():
        parts = key.split(".")
        if parts[0] == "generator":
            if strategy.generator is None:
                raise UsageError(f"--param {key}: strategy {strategy.name!r} names no generator "
                                 f"(set generator: in {strategy.source})")
            if len(parts) != 2:
                raise UsageError(f"--param {key}: a generator parameter is generator.NAME")
            data["generator"]["params"][parts[1]] = value
            continue
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise UsageError(f"--param {key}: {'.'.join(parts[:i + 1])} is not a section of the strategy config")
            node = node[part]
        if parts[-1] not in node and parts[0] != "risk":
            raise UsageError(f"--param {key}: unknown key; known here: {sorted(node)}")
        node[parts[-1]] = value
    try:
        out = StrategyConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UsageError(f"--param: {where} = {params}: {err['msg']} (strategy {strategy.source})") from None
    if out.generator is not None:
        from framework.generators import resolve

        resolve(out.generator, f"{strategy.source} with --param")
    return out


def make_points(strategy: StrategyConfig, axes: list[Axis], random: int | None, seed: int) -> list[Point]:
    """The distinct points in sweep order (a combination equal to an earlier one is dropped)."""
    points: dict[str, Point] = {}
    for params in combos(axes, random, seed):
        s = apply(strategy, params)
        h = s.config_hash()
        points.setdefault(h, Point(h, params, s))
    return list(points.values())


def parse_walk_forward(spec: str | None):
    """``TRAIN:TEST`` as two pandas Timedeltas (``365D:90D``, ``52W:13W``)."""
    if spec is None:
        return None
    import pandas as pd

    train, colon, test = spec.partition(":")
    try:
        tr, te = pd.Timedelta(train), pd.Timedelta(test)
    except (ValueError, TypeError):
        tr = te = None
    if not colon or tr is None or te is None or tr <= pd.Timedelta(0) or te <= pd.Timedelta(0):
        raise UsageError(f"--walk-forward {spec!r}: expected TRAIN:TEST durations, e.g. 365D:90D")
    return tr, te


def windows(first, last, train, test) -> list[tuple[str, str, str, str]]:
    """Rolling (train start, train end, test start, test end), stepping by ``test``; ends inclusive,
    one nanosecond before the next window starts, as ISO strings for ``--start``/``--end``."""
    import pandas as pd

    one = pd.Timedelta(1, "ns")
    out = []
    a = pd.Timestamp(first)
    while a + train + test <= pd.Timestamp(last) + one:
        b = a + train
        out.append((a.isoformat(), (b - one).isoformat(), b.isoformat(), (b + test - one).isoformat()))
        a = a + test
    if not out:
        raise UsageError(f"--walk-forward: the data ({pd.Timestamp(first).date()} to {pd.Timestamp(last).date()}) "
                         "is shorter than one TRAIN+TEST window")
    return out


def tasks_for(points: list[Point], wins: list[tuple[str, str, str, str]] | None) -> list[Task]:
    if not wins:
        return [Task(p.point_id, 0, "full", None, None) for p in points]
    return [Task(p.point_id, i, seg, s, e) for i, (a, b, c, d) in enumerate(wins) for p in points
            for seg, s, e in (("train", a, b), ("test", c, d))]


def sweep_id(strategy: StrategyConfig, points: list[Point], wins, sources: dict) -> str:
    blob = json.dumps({"strategy": strategy.name, "base": strategy.config_hash(),
                       "points": [p.point_id for p in points], "windows": wins, "sources": sources},
                      sort_keys=True, default=str)
    return f"sweep-{strategy.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
