"""Protective exits in backtests (SPEC §20): stop-loss and take-profit levels from the signals
become linked working orders in the simulator, placed by the engine after the entry fills.

Daily bars of one symbol; a batch on day 0 buys at day 1's open, then the bars decide which exit
fires. Every figure below follows from the bars written in the test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.backtest import persist, replay
from framework.config import RebalanceSettings, RiskLimits
from framework.costs import FixedBps
from framework.engine import Pipeline
from framework.journal import BufferedJournal
from framework.ledger import Ledger
from framework.rebalance import Rebalancer
from framework.risk import RiskManager
from framework.types import ExitLevels, SignalBatches
from tests.conftest import bar_arrays, simulator, universe

LIMITS = RiskLimits(max_position_size_pct=1, max_exposure_pct=1, max_positions=10, min_confidence=0,
                    max_daily_loss_pct=1, min_account_balance=0, max_leverage=1)
DAYS = pd.date_range("2024-01-01", periods=6, freq="D")


def levels(stop, take, stop_pct=False, take_pct=False):
    s, t = np.array(stop, float).reshape(-1, 1), np.array(take, float).reshape(-1, 1)
    return ExitLevels(s, t, np.full(s.shape, stop_pct), np.full(t.shape, take_pct))


def run(tmp_path, bars, weights, lv, batch_days=(0,), slippage_bps=0.0, sym="AAPL"):
    """Backtest ``weights`` (one row per batch) with exit levels ``lv``; returns (orders, fills, sim)."""
    u = universe(sym)
    sim = simulator(bars, u, slippage=FixedBps(slippage_bps))
    p = Pipeline(sim, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0, price_buffer_bps=0.0)),
                 BufferedJournal("x"), u)
    w = np.array(weights, float).reshape(-1, 1)
    sig = SignalBatches("x", (sym,), bars.times[list(batch_days)], w, np.ones_like(w), levels=lv)
    out = replay(p, sim, sig)
    ledger = Ledger(tmp_path / "x.db")
    persist(ledger, p.journal, out, sim, run_id="x", strategy="x", config_hash="h", universe=u.symbols,
            initial_equity=100_000.0, settings={}, signals="mem")
    orders, fills = ledger.frame("orders", "x"), ledger.frame("fills", "x")
    ledger.close()
    legs = orders.set_index("client_order_id")["leg"]
    fills["leg"] = fills["client_order_id"].map(legs)
    return orders, fills, sim


def bars_of(o, h, lo, c):
    return bar_arrays(DAYS[:len(o)], ["AAPL"], o, c, h, lo)


def test_the_stop_fires_first_when_a_bar_reaches_both_levels(tmp_path):
    # entry at 100 on day 1; day 2 reaches 90 and 120: both levels (95 / 110) inside one bar
    bars = bars_of([100, 100, 100, 100], [101, 101, 120, 101], [99, 99, 90, 99], [100, 100, 100, 100])
    orders, fills, sim = run(tmp_path, bars, [0.5], levels([95], [110]))
    assert fills["leg"].tolist() == ["add", "stop"]
    stop = fills.iloc[1]
    assert stop["price"] == 95.0 and stop["side"] == "sell" and stop["time"].startswith("2024-01-03")
    assert stop["qty"] == fills.iloc[0]["qty"]
    assert sim.book.pos.tolist() == [0.0]
    take = orders[orders["leg"] == "take"].iloc[0]
    assert take["status"] == "canceled"                    # its linked stop filled


def test_a_gap_through_the_stop_fills_at_the_open(tmp_path):
    bars = bars_of([100, 100, 80, 80], [101, 101, 85, 81], [99, 99, 79, 79], [100, 100, 80, 80])
    _, fills, _ = run(tmp_path, bars, [0.5], levels([95], [110]))
    assert fills["leg"].tolist() == ["add", "stop"] and fills.iloc[1]["price"] == 80.0


def test_a_gap_over_the_take_profit_fills_it_at_the_open_even_if_the_bar_later_reaches_the_stop(tmp_path):
    bars = bars_of([100, 100, 115, 100], [101, 101, 116, 101], [99, 99, 90, 99], [100, 100, 100, 100])
    _, fills, sim = run(tmp_path, bars, [0.5], levels([95], [110]))
    assert fills["leg"].tolist() == ["add", "take"] and fills.iloc[1]["price"] == 115.0
    assert sim.book.pos.tolist() == [0.0]


def test_percent_distances_count_from_the_entry_fill_and_slippage_is_charged_on_the_stop(tmp_path):
    # entry fills at day 1's open 200 (+10 bps slippage = 200.2); a 5% stop sits at 190.19
    bars = bars_of([200, 200, 200, 200], [201, 201, 201, 201], [199, 199, 180, 199], [200, 200, 200, 200])
    _, fills, _ = run(tmp_path, bars, [0.5], levels([0.05], [0.10], True, True), slippage_bps=10.0)
    entry = fills.iloc[0]["price"]
    assert entry == pytest.approx(200.2)
    stop = fills.iloc[1]
    level = round(entry * 0.95, 2)
    assert fills["leg"].tolist() == ["add", "stop"]
    assert stop["price"] == pytest.approx(level * (1 - 10e-4))      # a sell receives less


def test_a_short_is_protected_the_other_way_round(tmp_path):
    from tests.conftest import instrument

    bars = bars_of([100, 100, 100, 100], [101, 101, 106, 101], [99, 99, 98, 99], [100, 100, 100, 100])
    u = universe(instrument("AAPL", shortable=True))
    sim = simulator(bars, u)
    p = Pipeline(sim, RiskManager(LIMITS), Rebalancer(RebalanceSettings(drift_threshold=0.0, price_buffer_bps=0.0)),
                 BufferedJournal("s"), u)
    sig = SignalBatches("s", ("AAPL",), bars.times[[0]], np.array([[-0.5]]), np.ones((1, 1)),
                        levels=levels([105], [90]))
    replay(p, sim, sig)
    assert sim.book.pos.tolist() == [0.0]
    assert sim.book.cash == pytest.approx(100_000 + 500 * (100 - 105))


def test_a_new_batch_that_moves_the_levels_replaces_the_orders(tmp_path):
    # batch 0: stop 90; batch 1 (day 2) moves it to 97; day 3 reaches 96: only the moved stop fires
    bars = bars_of([100, 100, 100, 100, 100], [101, 101, 101, 101, 101], [99, 99, 98, 96, 99],
                   [100, 100, 100, 100, 100])
    orders, fills, _ = run(tmp_path, bars, [0.5, 0.5], levels([90, 97], [120, 120]), batch_days=(0, 2))
    stops = orders[orders["leg"] == "stop"]
    assert len(stops) == 2
    assert stops.iloc[0]["status"] == "canceled" and stops.iloc[1]["status"] == "filled"
    assert fills["leg"].tolist() == ["add", "stop"] and fills.iloc[1]["price"] == 97.0
    assert fills.iloc[1]["time"].startswith("2024-01-04")


def test_the_same_levels_in_a_new_batch_keep_the_orders(tmp_path):
    bars = bars_of([100] * 5, [101] * 5, [99] * 5, [100] * 5)
    orders, _, _ = run(tmp_path, bars, [0.5, 0.5], levels([90, 90], [120, 120]), batch_days=(0, 2))
    assert (orders["leg"] == "stop").sum() == 1 and (orders["leg"] == "take").sum() == 1


def test_a_target_that_drops_the_position_cancels_its_exits(tmp_path):
    bars = bars_of([100] * 5, [101] * 5, [99] * 5, [100] * 5)
    orders, fills, sim = run(tmp_path, bars, [0.5, 0.0], levels([90, np.nan], [120, np.nan]), batch_days=(0, 2))
    prot = orders[orders["leg"].isin(["stop", "take"])]
    assert len(prot) == 2 and (prot["status"] == "canceled").all()
    assert fills["leg"].tolist() == ["add", "reduce"]
    assert sim.open_orders() == []


def test_without_levels_nothing_changes(tmp_path):
    bars = bars_of([100, 100, 80, 80], [101, 101, 85, 81], [99, 99, 79, 79], [100, 100, 80, 80])
    orders, fills, sim = run(tmp_path, bars, [0.5], None)
    assert fills["leg"].tolist() == ["add"] and sim.book.pos[0] > 0
