"""Per-symbol attribution: hand-checked cases and reconciliation with the run's cash accounting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.reports.attribution import attribute_pnl, attribution_for, final_marks
from tests.reports.synthetic import build_run

T0 = pd.Timestamp("2024-01-02 15:00", tz="UTC")


def fills_of(rows: list[tuple[str, str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([
        {"time": T0 + pd.Timedelta(hours=i), "symbol": s, "side": side, "qty": q, "price": p, "fee": f,
         "order_id": f"o{i}", "client_order_id": f"c{i}", "slippage": 0.0}
        for i, (s, side, q, p, f) in enumerate(rows)
    ])


def test_long_reduce_then_flip_short() -> None:
    fills = fills_of([
        ("AAPL", "buy", 10, 100.0, 1.0),   # long 10 @ 100
        ("AAPL", "sell", 4, 110.0, 1.0),   # realise 4 × 10 = 40
        ("AAPL", "sell", 10, 90.0, 1.0),   # close 6 × (−10) = −60, short 4 @ 90
    ])
    row = attribute_pnl(fills, {"AAPL": (95.0, "close")}).iloc[0]
    assert row.position == pytest.approx(-4.0)
    assert row.avg_cost == pytest.approx(90.0)
    assert row.realised == pytest.approx(-20.0)
    assert row.unrealised == pytest.approx(-20.0)   # short 4 from 90 marked at 95
    assert row.fees == pytest.approx(3.0)
    assert row.pnl == pytest.approx(-43.0)
    # identity: sells − buys + final position × mark − fees
    assert row.pnl == pytest.approx(4 * 110 + 10 * 90 - 10 * 100 + (-4) * 95 - 3)


def test_average_cost_on_adds() -> None:
    fills = fills_of([("BTC/USD", "buy", 1, 100.0, 0.0), ("BTC/USD", "buy", 3, 200.0, 0.0),
                      ("BTC/USD", "sell", 4, 180.0, 0.0)])
    row = attribute_pnl(fills, {}).iloc[0]
    assert row.realised == pytest.approx(4 * (180.0 - 175.0))
    assert row.position == 0.0 and row.unrealised == 0.0


@pytest.mark.parametrize("kwargs", [
    {},
    {"every": 3, "fee_rate": 0.0025, "slip_bps": 12.0, "seed": 11},
    {"freq": "h", "n_bars": 500, "every": 7, "seed": 3},
])
def test_attribution_reconciles_to_the_cent(kwargs: dict) -> None:
    run = build_run(**kwargs)
    table = attribution_for(run.prices, run.fills)
    equity = run.equity_series()
    total = equity.iloc[-1] - equity.iloc[0]
    assert abs(table["pnl"].sum() - total) < 0.005
    assert set(table["price_source"]) <= {"close", ""}
    assert table["fees"].sum() == pytest.approx(run.summary["fees_paid"])
    assert table["slippage"].sum() == pytest.approx(run.summary["slippage_cost"])


def test_marks_fall_back_to_the_last_fill_without_prices() -> None:
    fills = fills_of([("ETH/USD", "buy", 2, 3000.0, 0.5), ("ETH/USD", "buy", 1, 3300.0, 0.5)])
    marks = final_marks(pd.DataFrame(), fills)
    assert marks == {"ETH/USD": (3300.0, "last_fill")}
    row = attribute_pnl(fills, marks).iloc[0]
    assert row.price_source == "last_fill"
    assert row.unrealised == pytest.approx(3 * 3300.0 - (2 * 3000.0 + 3300.0))


def test_each_symbol_is_marked_at_its_last_close_else_its_last_fill() -> None:
    """A symbol with closes is marked at its last one (a later missing close does not hide it); a
    symbol whose column has no close at all, or that has no column, at its last fill."""
    fills = fills_of([("AAA", "buy", 2, 10.0, 0.0), ("BBB", "buy", 1, 20.0, 0.0), ("CCC", "buy", 1, 30.0, 0.0),
                      ("BBB", "buy", 1, 21.0, 0.0), ("CCC", "sell", 1, 31.0, 0.0), ("CCC", "buy", 3, 32.0, 0.0)])
    prices = pd.DataFrame({"AAA": [10.5, 11.0, np.nan], "BBB": [np.nan, np.nan, np.nan], "ZZZ": [1.0, np.nan, 2.0]})
    marks = final_marks(prices, fills)
    assert marks == {"AAA": (11.0, "close"), "BBB": (21.0, "last_fill"), "CCC": (32.0, "last_fill"),
                     "ZZZ": (2.0, "close")}
    table = attribution_for(prices, fills).set_index("symbol")
    assert table.loc["AAA", "unrealised"] == pytest.approx(2 * (11.0 - 10.0))
    assert table.loc["BBB", "price_source"] == "last_fill" and table.loc["AAA", "price_source"] == "close"


def test_an_unpriced_open_position_is_not_silently_zero() -> None:
    row = attribute_pnl(fills_of([("XYZ", "buy", 1, 10.0, 0.0)]), {}).iloc[0]
    assert pd.isna(row.unrealised) and pd.isna(row.pnl)
