"""compare_runs on two synthetic runs of the same signals with different costs and one missed batch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from framework.reports.compare import compare_runs, match_orders
from tests.reports.synthetic import build_run

SKIPPED = 5  # the rebalance the paper run missed


@pytest.fixture(scope="module")
def runs():
    a = build_run(n_bars=120)
    b = build_run(n_bars=120, mode="paper", run_id="paper-001", fee_rate=0.0025, slip_bps=10.0,
                  skip_rebalances=(SKIPPED,), order_delay=pd.Timedelta(seconds=30), id_prefix="other")
    return a, b


@pytest.fixture(scope="module")
def result(runs, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("compare")
    return compare_runs(*runs, out), out


def test_writes_html_json_and_figure(result) -> None:
    content, out = result
    assert (out / "compare.html").exists() and (out / "compare_equity.png").exists()
    on_disk = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert on_disk == {k: v for k, v in content.items() if k != "artifacts"}
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert "bt-demo-001" in html and "paper-001" in html and "data:image/png;base64," in html


def test_metrics_side_by_side(runs, result) -> None:
    a, b = runs
    metrics = result[0]["metrics"]
    for key in ("total_return", "sharpe", "max_drawdown", "fees_paid"):
        assert metrics[key]["a"] == a.summary[key] and metrics[key]["b"] == b.summary[key]
        assert metrics[key]["diff"] == pytest.approx(b.summary[key] - a.summary[key])


def test_daily_and_symbol_pnl_differences_add_up(runs, result) -> None:
    a, b = runs
    content = result[0]
    total_diff = (b.equity_series().iloc[-1] - b.equity_series().iloc[0]) - (
        a.equity_series().iloc[-1] - a.equity_series().iloc[0])
    assert sum(r["diff"] for r in content["daily_pnl"]) == pytest.approx(total_diff, rel=1e-9)
    assert sum(r["diff"] for r in content["symbol_pnl"]) == pytest.approx(total_diff, abs=0.01)
    assert {r["symbol"] for r in content["symbol_pnl"]} == {"AAPL", "MSFT", "BTC/USD"}


def test_orders_in_one_run_only(runs, result) -> None:
    a, b = runs
    orders = result[0]["orders"]
    only_a = {r["client_order_id"] for r in orders["only_in_a"]}
    # every order of the missed batch exists only in A
    assert {c for c in a.orders["client_order_id"] if c.startswith(f"demo-{SKIPPED}-")} <= only_a
    # ids differ between the runs, so every match is by (symbol, side, time within one bar)
    assert orders["matched_by_client_order_id"] == 0
    assert orders["matched"] + len(orders["only_in_a"]) == len(a.orders)
    assert orders["matched"] + len(orders["only_in_b"]) == len(b.orders)
    assert orders["tolerance_seconds"] == 86_400


def test_same_client_order_ids_match_directly() -> None:
    a = build_run(n_bars=60)
    b = build_run(n_bars=60, mode="paper", run_id="p", order_delay=pd.Timedelta(days=3))
    pairs, only_a, only_b = match_orders(a.orders, b.orders, pd.Timedelta(minutes=1))
    assert len(pairs) == len(a.orders) and not only_a and not only_b
    assert {how for _, _, how in pairs} == {"client_order_id"}


def test_time_matching_respects_the_tolerance() -> None:
    t = pd.Timestamp("2024-05-01 14:30", tz="UTC")
    frame = lambda times, ids: pd.DataFrame({  # noqa: E731
        "time": times, "symbol": "AAPL", "side": "buy", "qty": 1.0, "type": "market", "status": "filled",
        "client_order_id": ids, "filled_qty": 1.0, "avg_price": 100.0})
    a = frame([t, t + pd.Timedelta(hours=1)], ["a1", "a2"])
    b = frame([t + pd.Timedelta(minutes=2), t + pd.Timedelta(hours=5)], ["b1", "b2"])
    pairs, only_a, only_b = match_orders(a, b, pd.Timedelta(minutes=5))
    assert [(i, j) for i, j, _ in pairs] == [(0, 0)]
    assert only_a == [1] and only_b == [1]
