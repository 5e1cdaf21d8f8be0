"""Line edits of config files: the value changes, every other byte stays."""

from __future__ import annotations

import yaml

from framework.config import PACKAGE_CONFIG
from framework.ops.yamledit import set_mapping, set_stage, set_tier_taker

STRATEGY = """# a comment that must survive
name: s1
description: x
stage: research   # where it is
simulation:
  venue: alpaca
  slippage: {model: fixed_bps, bps: 5}   # guess
  cash: 100000
"""


def changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    return [(x, y) for x, y in zip(a.splitlines(), b.splitlines()) if x != y]


def test_stage_line_keeps_its_comment_and_everything_else():
    out = set_stage(STRATEGY, "paper")
    assert changed_lines(STRATEGY, out) == [("stage: research   # where it is",
                                             "stage: paper   # where it is")]
    assert yaml.safe_load(out)["stage"] == "paper"


def test_stage_is_inserted_after_the_name_when_missing_and_crlf_is_kept():
    text = STRATEGY.replace("stage: research   # where it is\n", "").replace("\n", "\r\n")
    out = set_stage(text, "live")
    assert out.replace("stage: live\r\n", "") == text
    assert out.splitlines()[2] == "stage: live" and "\n" not in out.replace("\r\n", "")


def test_flow_mapping_is_updated_in_place():
    out = set_mapping(STRATEGY, "simulation", "slippage", {"model": "fixed_bps", "bps": 11.9965})
    assert changed_lines(STRATEGY, out) == [("  slippage: {model: fixed_bps, bps: 5}   # guess",
                                             "  slippage: {model: fixed_bps, bps: 11.9965}   # guess")]
    assert yaml.safe_load(out)["simulation"]["slippage"] == {"model": "fixed_bps", "bps": 11.9965}


def test_block_mapping_values_are_replaced_and_missing_keys_added():
    text = "simulation:\n  slippage:\n    model: fixed_bps  # m\n    bps: 5\n  cash: 10\nother: 1\n"
    values = {"model": "spread_impact", "spread_bps": 3.0, "k": 0.25}
    out = set_mapping(text, "simulation", "slippage", values)
    data = yaml.safe_load(out)
    assert data["simulation"]["slippage"] == {**values, "bps": 5}
    assert data["simulation"]["cash"] == 10 and data["other"] == 1 and "# m" in out


def test_missing_blocks_are_created():
    out = set_mapping("name: s\n", "simulation", "slippage", {"model": "fixed_bps", "bps": 7.0})
    assert out.startswith("name: s\n") and yaml.safe_load(out)["simulation"]["slippage"]["bps"] == 7.0
    out = set_mapping("simulation:\n  cash: 5\n", "simulation", "slippage", {"bps": 2.5})
    assert yaml.safe_load(out)["simulation"] == {"slippage": {"bps": 2.5}, "cash": 5}
    assert set_mapping("simulation: {cash: 5}\n", "simulation", "slippage", {"bps": 1.0}) is None


def test_one_fee_tier_of_the_real_venue_file():
    text = (PACKAGE_CONFIG / "venues" / "alpaca.yaml").read_text()
    out = set_tier_taker(text, "crypto", 1, 23.5)
    diff = changed_lines(text, out)
    assert len(diff) == 1 and "taker_bps: 23.5}" in diff[0][1] and "maker_bps: 12.0" in diff[0][1]
    tiers = yaml.safe_load(out)["asset_classes"]["crypto"]["fees"]["tiers"]
    assert [t["taker_bps"] for t in tiers[:3]] == [25.0, 23.5, 20.0]
    assert set_tier_taker(text, "equity", 0, 1.0) is not None
    assert set_tier_taker(text, "crypto", 99, 1.0) is None
