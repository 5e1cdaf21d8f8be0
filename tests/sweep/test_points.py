"""Sweep points: grid order, random points from a seed, ids from config hashes, walk-forward windows."""

from __future__ import annotations

import pandas as pd
import pytest

from framework.config import GeneratorSettings, StrategyConfig
from framework.errors import UsageError
from framework.sweep import points as pts

BASE = StrategyConfig(name="p", generator=GeneratorSettings(name="momentum", params={"lookback": 40}))


def test_grid_is_the_product_in_the_order_given_and_values_are_yaml_scalars():
    axes = pts.parse_axes(["generator.lookback=20,40", "rebalance.execution=market,smart"])
    assert pts.combos(axes, None, 0) == [
        {"generator.lookback": 20, "rebalance.execution": "market"},
        {"generator.lookback": 20, "rebalance.execution": "smart"},
        {"generator.lookback": 40, "rebalance.execution": "market"},
        {"generator.lookback": 40, "rebalance.execution": "smart"}]
    points = pts.make_points(BASE, axes, None, 0)
    assert [p.point_id for p in points] == [p.strategy.config_hash() for p in points]
    assert points[2].point_id == BASE.config_hash()                     # lookback 40, market: the base itself
    assert points[3].strategy.rebalance.execution == "smart" and points[0].strategy.generator.params["lookback"] == 20


def test_random_points_depend_only_on_the_seed_and_duplicates_are_one_point():
    axes = pts.parse_axes(["risk.max_position_size_pct=0.1..0.4", "simulation.slippage.bps=1..20",
                           "rebalance.unfilled=carry,cancel"])
    a, b = pts.combos(axes, 50, 7), pts.combos(axes, 50, 7)
    assert a == b and a != pts.combos(axes, 50, 8)
    assert all(0.1 <= p["risk.max_position_size_pct"] <= 0.4 and isinstance(p["simulation.slippage.bps"], int)
               and 1 <= p["simulation.slippage.bps"] <= 20 for p in a)
    same = pts.make_points(BASE, pts.parse_axes(["generator.lookback=40,40,20"]), None, 0)
    assert len(same) == 2 and same[0].strategy.config_hash() == BASE.config_hash()


def test_walk_forward_windows_roll_by_the_test_length_and_do_not_overlap():
    wins = pts.windows(pd.Timestamp("2022-01-01", tz="UTC"), pd.Timestamp("2022-12-31", tz="UTC"),
                       *pts.parse_walk_forward("120D:60D"))
    assert len(wins) == 4
    for a, b, c, d in wins:
        assert pd.Timestamp(b) < pd.Timestamp(c) and pd.Timestamp(c) - pd.Timestamp(b) == pd.Timedelta(1, "ns")
        assert pd.Timestamp(c) - pd.Timestamp(a) == pd.Timedelta("120D")
    assert [pd.Timestamp(w[0]) for w in wins][1] - pd.Timestamp(wins[0][0]) == pd.Timedelta("60D")
    with pytest.raises(UsageError, match="shorter than one TRAIN"):
        pts.windows(pd.Timestamp("2022-01-01"), pd.Timestamp("2022-03-01"), *pts.parse_walk_forward("120D:60D"))


def test_generator_keys_need_a_generator():
    with pytest.raises(UsageError, match="names no generator"):
        pts.apply(StrategyConfig(name="x"), {"generator.lookback": 3})
