"""Rebalancer (SPEC §8): reductions first then adds, increments, minimums, drift threshold with the
full-close exception, cash buffer, and adds re-sized to the buying power left after the sells."""

from __future__ import annotations

import numpy as np
import pytest

from framework.config import RebalanceSettings
from framework.rebalance import Rebalancer, floor_to
from framework.types import TargetPortfolio
from tests.conftest import instrument, order_batch, universe, utc

T = utc("2024-03-04T15:00:00Z")


def plan(weights, positions, prices, equity=100_000.0, univ=None, **settings):
    univ = univ or universe("AAPL", "MSFT", "IBM")
    s = RebalanceSettings(**{"drift_threshold": 0.0, **settings})
    w = np.array(weights, float)
    tgt = TargetPortfolio(T, "test@1", w, np.ones_like(w))
    return Rebalancer(s).plan(tgt, w, np.array(positions, float), np.array(prices, float), equity, univ)


def legs(batch):
    return list(zip(batch.symbols(), batch.side.tolist(), batch.qty.tolist()))


def test_reductions_are_one_leg_and_additions_another():
    u = universe(instrument("AAPL", shortable=True), "MSFT", "IBM")
    p = plan([0.1, 0.3, 0.0], [300, 0, 100], [100.0, 100.0, 100.0], univ=u)
    assert p.reduce.leg == "reduce" and p.add.leg == "add"
    assert legs(p.reduce) == [("AAPL", -1, pytest.approx(200)), ("IBM", -1, pytest.approx(100))]
    assert legs(p.add) == [("MSFT", 1, pytest.approx(300))]
    np.testing.assert_allclose(p.target_qty, [100, 300, 0])


def test_a_sign_flip_is_a_close_in_the_reduce_leg_plus_an_add():
    u = universe(instrument("AAPL", shortable=True), "MSFT", "IBM")
    p = plan([-0.1, 0.0, 0.0], [100, 0, 0], [100.0, 100.0, 100.0], univ=u)
    assert legs(p.reduce) == [("AAPL", -1, pytest.approx(100))]
    assert legs(p.add) == [("AAPL", -1, pytest.approx(100))]


def test_covering_a_short_is_a_reduction():
    u = universe(instrument("AAPL", shortable=True), "MSFT", "IBM")
    p = plan([-0.05, 0.0, 0.0], [-100, 0, 0], [100.0, 100.0, 100.0], univ=u)
    assert legs(p.reduce) == [("AAPL", 1, pytest.approx(50))] and len(p.add) == 0


def test_quantities_floor_to_the_increment_and_never_sell_more_than_held():
    u = universe(instrument("AAPL", increment=1.0, fractionable=False), instrument("MSFT", increment=0.01), "IBM")
    # AAPL: 12.7 shares wanted -> 12; MSFT: hold 10.005, sell to 3.333 -> 6.672 floored to 6.67
    p = plan([0.127, 0.03333, 0.0], [0, 10.005, 0], [100.0, 100.0, 100.0], equity=10_000.0, univ=u)
    assert legs(p.add) == [("AAPL", 1, 12.0)]
    assert legs(p.reduce) == [("MSFT", -1, pytest.approx(6.67))]
    assert p.reduce.qty[0] <= 10.005 - 3.333


def test_a_full_close_sells_exactly_the_position_even_off_the_increment():
    u = universe(instrument("AAPL", increment=0.01), "MSFT", "IBM")
    p = plan([0.0, 0.0, 0.0], [10.0057, 0, 0], [100.0, 100.0, 100.0], univ=u)
    assert legs(p.reduce) == [("AAPL", -1, 10.0057)]


def test_floor_to_floors_and_is_tolerant_to_float_noise():
    np.testing.assert_allclose(floor_to(np.array([0.3, 2.99999, 7.0]), np.array([0.1, 1.0, 0.5])), [0.3, 2.0, 7.0])
    assert floor_to(np.array([0.1 + 0.2]), np.array([0.1]))[0] == pytest.approx(0.3)


def test_floor_to_keeps_exact_multiples_of_a_fine_increment():
    # Alpaca's increment is 1e-9: 0.25 and 157.25 are exact multiples and must not lose a step
    got = floor_to(np.array([0.25, 157.25, 3.0]), np.array([1e-9, 1e-9, 1e-9]))
    assert got.tolist() == [0.25, 157.25, 3.0]


def test_orders_under_the_minimum_notional_or_quantity_are_dropped():
    u = universe(instrument("AAPL", min_notional=1.0), instrument("MSFT", min_qty=2.0), "IBM")
    # AAPL: $0.50 buy (< $1); MSFT: 1.5 shares (< 2); IBM: fine
    p = plan([0.000005, 0.0015, 0.1], [0, 0, 0], [100.0, 100.0, 100.0], univ=u)
    assert legs(p.add) == [("IBM", 1, pytest.approx(100))]
    np.testing.assert_allclose(p.target_qty, [0, 0, 100])


def test_a_full_close_under_the_minimum_notional_is_kept():
    u = universe(instrument("AAPL", min_notional=1.0), "MSFT", "IBM")
    p = plan([0.0, 0.0, 0.0], [0.005, 0, 0], [100.0, 100.0, 100.0], univ=u)      # $0.50 position
    assert legs(p.reduce) == [("AAPL", -1, 0.005)]


def test_trades_under_the_drift_threshold_are_skipped_but_a_full_close_is_not():
    # equity 100k, threshold 1% = $1,000: AAPL +$500 skipped, MSFT +$2,000 traded, IBM ($400) closed
    p = plan([0.105, 0.02, 0.0], [100, 0, 4], [100.0, 100.0, 100.0], drift_threshold=0.01)
    assert legs(p.add) == [("MSFT", 1, pytest.approx(20))]
    assert legs(p.reduce) == [("IBM", -1, pytest.approx(4))]
    np.testing.assert_allclose(p.target_qty, [100, 20, 0])


def test_cash_buffer_pct_keeps_part_of_equity_uninvested():
    p = plan([0.5, 0.5, 0.0], [0, 0, 0], [100.0, 50.0, 100.0], cash_buffer_pct=0.1)
    np.testing.assert_allclose(p.add.qty, [450, 900])          # 45,000 each, not 50,000
    assert (p.add.qty * p.add.ref_price).sum() == pytest.approx(90_000)


def test_symbols_without_a_price_are_left_alone():
    p = plan([0.0, 0.2, 0.1], [50, 0, 0], [np.nan, 100.0, 100.0])
    assert len(p.reduce) == 0 and legs(p.add) == [("MSFT", 1, pytest.approx(200)), ("IBM", 1, pytest.approx(100))]
    assert p.target_qty[0] == 50


def test_orders_carry_the_sizing_price_and_the_batch():
    p = plan([0.2, 0.0, 0.0], [0, 0, 0], [123.0, 100.0, 100.0])
    assert p.add.ref_price.tolist() == [123.0]
    assert p.add.time == T and p.add.batch_id == "test@1"
    assert p.add.client_order_ids() == plan([0.2, 0.0, 0.0], [0, 0, 0], [123.0, 100.0, 100.0]).add.client_order_ids()
    assert "-AAPL-add-" in p.add.client_order_ids()[0]


def test_resize_adds_scales_pro_rata_to_buying_power_with_fees_and_price_buffer():
    u = universe("AAPL", "MSFT", "IBM")
    rb = Rebalancer(RebalanceSettings(price_buffer_bps=100.0), fee_rate=np.array([0.0, 0.01, 0.0]))
    adds = order_batch(u, T, [("AAPL", 1, 100), ("MSFT", 1, 100)], ref=[100.0, 100.0])
    # unit costs: AAPL 100 * 1.01, MSFT 100 * 1.02 -> need 20,300
    out, (d,) = rb.resize_adds(adds, buying_power=10_150.0)
    np.testing.assert_allclose(out.qty, [50, 50])
    assert d.requested == pytest.approx(20_300) and d.approved == pytest.approx(10_150)
    assert (out.qty * out.ref_price * np.array([1.01, 1.02])).sum() <= 10_150 + 1e-9


def test_resize_adds_leaves_adds_alone_when_cash_suffices():
    u = universe("AAPL", "MSFT", "IBM")
    adds = order_batch(u, T, [("AAPL", 1, 10)], ref=[100.0])
    out, decisions = Rebalancer(RebalanceSettings(price_buffer_bps=0.0)).resize_adds(adds, buying_power=1_000.0)
    assert out is adds and decisions == ()


def test_resize_adds_floors_to_increments_and_drops_what_falls_under_the_minimum():
    u = universe(instrument("AAPL", increment=1.0, fractionable=False), instrument("MSFT", min_notional=10.0), "IBM")
    adds = order_batch(u, T, [("AAPL", 1, 10), ("MSFT", 1, 0.5)], ref=[100.0, 100.0])
    out, (d,) = Rebalancer(RebalanceSettings(price_buffer_bps=0.0)).resize_adds(adds, buying_power=525.0)
    # factor 0.5: AAPL 5 shares; MSFT 0.25 x 100 = $25 kept
    assert legs(out) == [("AAPL", 1, 5.0), ("MSFT", 1, pytest.approx(0.25, abs=1e-9))]   # exactness: see floor_to
    out, _ = Rebalancer(RebalanceSettings(price_buffer_bps=0.0)).resize_adds(adds, buying_power=105.0)
    # factor 0.1: AAPL 1 share; MSFT $5 < $10 minimum: dropped
    assert legs(out) == [("AAPL", 1, 1.0)]


def test_resize_adds_with_no_buying_power_drops_every_add():
    u = universe("AAPL", "MSFT", "IBM")
    adds = order_batch(u, T, [("AAPL", 1, 10)], ref=[100.0])
    out, (d,) = Rebalancer(RebalanceSettings()).resize_adds(adds, buying_power=-50.0)
    assert len(out) == 0 and d.approved == 0.0
