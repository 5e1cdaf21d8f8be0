"""SimulatedBroker (SPEC §6): fill rules, slippage, venue fees, volume cap and partial fills,
limit and stop orders, venue rejections, splits in raw bars, mark-to-market, closed sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from framework.costs import FixedBps, SpreadImpact, VenueFees
from framework.types import OrderStatus, OrderType
from framework.venue_config import load_venue
from tests.conftest import REPO, bar_arrays, instrument, order_batch, simulator, universe, utc

S = OrderStatus
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
SYMS = ["AAPL", "BTC/USD"]
OPEN = [[100, 1000], [102, 1010], [104, 1020], [106, 1030], [108, 1040]]
CLOSE = [[101, 1005], [103, 1015], [105, 1025], [107, 1035], [109, 1045]]
HIGH = [[110, 1100], [112, 1110], [114, 1120], [116, 1130], [118, 1140]]
LOW = [[95, 950], [96, 960], [97, 970], [98, 980], [99, 990]]


def market(**kw):
    return bar_arrays(DAYS, SYMS, OPEN, CLOSE, HIGH, LOW, volume=kw.pop("volume", 1e9))


def U(**kw):
    return universe(instrument("AAPL", **kw), instrument("BTC/USD"))


def buy(univ, t, sym="AAPL", qty=10.0, **kw):
    return order_batch(univ, t, [(sym, 1, qty)], **kw)


def sell(univ, t, sym="AAPL", qty=10.0, **kw):
    return order_batch(univ, t, [(sym, -1, qty)], leg="reduce", **kw)


# ---------------------------------------------------------------------------- fill rules and timing


def test_next_open_fills_at_the_open_of_the_next_bar():
    u = U()
    sim = simulator(market(), u)
    rep = sim.execute(buy(u, DAYS[0]))
    assert rep.status.tolist() == [S.FILLED]
    assert rep.fills.price.tolist() == [102.0] and list(rep.fills.time) == [utc(DAYS[1])]
    assert sim.book.pos.tolist() == [10.0, 0.0] and sim.book.cash == 100_000 - 1020


def test_a_batch_between_bars_fills_at_the_first_bar_after_it():
    u = U()
    sim = simulator(market(), u, start="2024-01-02T12:00")
    rep = sim.execute(buy(u, "2024-01-02T12:00"))
    assert list(rep.fills.time) == [utc(DAYS[2])] and rep.fills.price.tolist() == [104.0]


def test_close_fills_at_the_close_of_the_bar_the_order_was_sized_on():
    u = U()
    sim = simulator(market(), u, fill="close")
    rep = sim.execute(buy(u, DAYS[0]))
    assert rep.fills.price.tolist() == [101.0] and list(rep.fills.time) == [utc(DAYS[0])]


def test_vwap_fills_at_the_next_bars_typical_price():
    u = U()
    sim = simulator(market(), u, fill="vwap")
    rep = sim.execute(buy(u, DAYS[0]))
    assert rep.fills.price[0] == pytest.approx((112 + 96 + 103) / 3)
    assert list(rep.fills.time) == [utc(DAYS[1])]


def test_no_later_bar_leaves_the_order_working_without_a_fill():
    u = U()
    sim = simulator(market(), u, start=DAYS[-1])
    rep = sim.execute(buy(u, DAYS[-1]))
    assert len(rep.fills) == 0 and rep.status.tolist() == [S.NEW]
    assert "no later bar" in rep.messages[0]


def test_prices_are_the_close_of_the_last_bar_at_or_before_now():
    u = U()
    sim = simulator(market(), u)
    sim.advance_to(utc("2024-01-02T23:00"))
    assert sim.prices(u).tolist() == [103.0, 1015.0]
    assert sim.bar_at(utc(DAYS[1])) == 1 and sim.bar_at(utc("2023-12-31")) == -1


# ---------------------------------------------------------------------------- slippage


def test_fixed_bps_slippage_buys_pay_up_and_sells_receive_less():
    u = U()
    sim = simulator(market(), u, slippage=FixedBps(5.0))
    b = sim.execute(buy(u, DAYS[0]))
    assert b.fills.price[0] == pytest.approx(102 * 1.0005, rel=1e-15)
    assert b.fills.slippage[0] == pytest.approx(10 * 102 * 0.0005)
    sim.advance_to(utc(DAYS[1]))
    s = sim.execute(sell(u, DAYS[1]))
    assert s.fills.price[0] == pytest.approx(104 * 0.9995, rel=1e-15)
    assert s.fills.slippage[0] == pytest.approx(10 * 104 * 0.0005)


def test_spread_impact_is_half_the_spread_plus_k_sigma_sqrt_qty_over_adv():
    rng = np.random.default_rng(3)
    n = 40
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    vol = rng.uniform(500, 1500, n)
    times = pd.date_range("2024-01-01", periods=n, freq="D")
    bars = bar_arrays(times, ["AAPL"], close, close, volume=vol)
    u = universe("AAPL")
    model = SpreadImpact(spread_bps=4.0, k=0.5)
    sim = simulator(bars, u, slippage=model)
    k = 30
    sim.advance_to(bars.times[k - 1])
    b = sim.execute(buy(u, bars.times[k - 1], qty=200.0))
    sim.advance_to(bars.times[k])
    s = sim.execute(sell(u, bars.times[k], qty=50.0))
    for rep, fb, side, q in ((b, k, 1, 200.0), (s, k + 1, -1, 50.0)):
        ret = close[fb - 20:fb] / close[fb - 21:fb - 1] - 1          # the 20 returns before the fill bar
        sigma = ret.std(ddof=1)
        adv = vol[fb - 20:fb].mean()
        frac = 4.0 * 0.5e-4 + 0.5 * sigma * np.sqrt(q / adv)
        assert rep.fills.price[0] == pytest.approx(close[fb] * (1 + side * frac), rel=1e-12)
    assert b.fills.price[0] > close[k] and s.fills.price[0] < close[k + 1]


def test_spread_impact_grows_with_the_order_size():
    n = 30
    times = pd.date_range("2024-01-01", periods=n, freq="D")
    px = 100 + np.sin(np.arange(n))
    bars = bar_arrays(times, ["AAPL"], px, px, volume=1_000.0)
    u = universe("AAPL")
    prices = []
    for q in (10.0, 1_000.0):
        sim = simulator(bars, u, slippage=SpreadImpact(2.0, 0.1), start=times[25])
        prices.append(sim.execute(buy(u, times[25], qty=q)).fills.price[0])
    assert px[26] < prices[0] < prices[1]


# ---------------------------------------------------------------------------- venue fees


def venue_yaml(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / "venues" / f"{name}.yaml").read_text())


def test_alpaca_equity_fees_sec_and_taf_on_sells_cat_on_both_sides():
    raw = venue_yaml("alpaca")["asset_classes"]["equity"]["fees"]
    reg = raw["sell_regulatory"]
    assert raw["tiers"][0]["taker_bps"] == 0.0
    u = U()
    sim = simulator(market(), u, fees=VenueFees.from_venue(load_venue("alpaca")))
    b = sim.execute(buy(u, DAYS[0], qty=100.0))
    assert b.fills.fee[0] == pytest.approx(100 * reg["cat_fee_per_share"], rel=1e-12)
    sim.advance_to(utc(DAYS[1]))
    s = sim.execute(sell(u, DAYS[1], qty=100.0))
    expected = 100 * 104 * reg["sec_fee_per_dollar"] + 100 * reg["finra_taf_per_share"] + 100 * reg["cat_fee_per_share"]
    assert s.fills.fee[0] == pytest.approx(expected, rel=1e-12)
    assert sim.book.cash == pytest.approx(100_000 - 100 * 102 - b.fills.fee[0] + 100 * 104 - s.fills.fee[0])


def test_alpaca_finra_taf_is_capped_per_trade():
    reg = venue_yaml("alpaca")["asset_classes"]["equity"]["fees"]["sell_regulatory"]
    u = U()
    sim = simulator(market(), u, cash=1e9, fees=VenueFees.from_venue(load_venue("alpaca")), fill="close")
    q = 200_000.0
    assert q * reg["finra_taf_per_share"] > reg["finra_taf_max_per_trade"]
    sim.execute(buy(u, DAYS[0], qty=q))
    sim.advance_to(utc(DAYS[1]))
    s = sim.execute(sell(u, DAYS[1], qty=q))
    expected = q * 103 * reg["sec_fee_per_dollar"] + reg["finra_taf_max_per_trade"] + q * reg["cat_fee_per_share"]
    assert s.fills.fee[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("venue,tier", [("alpaca", 0), ("alpaca", 1), ("coinbase", 0), ("coinbase", 3)])
def test_crypto_pays_the_venues_taker_rate_on_both_sides_and_no_regulatory_fees(venue, tier):
    bps = venue_yaml(venue)["asset_classes"]["crypto"]["fees"]["tiers"][tier]["taker_bps"]
    u = U()
    sim = simulator(market(), u, fees=VenueFees.from_venue(load_venue(venue), tier))
    b = sim.execute(buy(u, DAYS[0], sym="BTC/USD", qty=2.0))
    assert b.fills.fee[0] == pytest.approx(2 * 1010 * bps * 1e-4, rel=1e-12)
    sim.advance_to(utc(DAYS[1]))
    s = sim.execute(sell(u, DAYS[1], sym="BTC/USD", qty=2.0))
    assert s.fills.fee[0] == pytest.approx(2 * 1020 * bps * 1e-4, rel=1e-12)


def test_fees_are_charged_on_the_executed_price_including_slippage():
    u = U()
    sim = simulator(market(), u, fees=VenueFees.from_venue(load_venue("coinbase")), slippage=FixedBps(10.0))
    b = sim.execute(buy(u, DAYS[0], sym="BTC/USD", qty=1.0))
    assert b.fills.fee[0] == pytest.approx(1010 * 1.001 * 0.012, rel=1e-12)


# ---------------------------------------------------------------------------- volume cap and partial fills


def test_volume_cap_fills_the_rest_on_later_bars_each_with_its_own_fill():
    u = U()
    sim = simulator(market(volume=100.0), u, volume_cap=0.1)
    rep = sim.execute(buy(u, DAYS[0], qty=25.0))
    assert rep.status.tolist() == [S.PARTIAL] and rep.fills.qty.tolist() == [10.0]
    assert [o.filled_qty for o in sim.open_orders()] == [10.0]
    sim.advance_to(utc(DAYS[4]))
    later = sim.sync()
    fills = [(f.time[0], f.qty[0], f.price[0]) for r in later for f in [r.fills]]
    assert fills == [(utc(DAYS[2]), 10.0, 104.0), (utc(DAYS[3]), 5.0, 106.0)]
    assert [S(int(r.status[0])) for r in later] == [S.PARTIAL, S.FILLED]
    assert later[-1].filled_qty.tolist() == [25.0]
    assert later[-1].avg_price[0] == pytest.approx((10 * 102 + 10 * 104 + 5 * 106) / 25)
    assert sim.open_orders() == [] and sim.book.pos[0] == 25.0


def test_cancel_stops_a_partially_filled_order():
    u = U()
    sim = simulator(market(volume=100.0), u, volume_cap=0.1)
    rep = sim.execute(buy(u, DAYS[0], qty=25.0))
    cid = rep.batch.client_order_ids()[0]
    (state,) = sim.cancel([cid])
    assert state.status == S.CANCELED and state.filled_qty == 10.0
    sim.advance_to(utc(DAYS[4]))
    assert sim.sync() == [] and sim.book.pos[0] == 10.0


def _volume_capped_run(tmp_path, unfilled: str):
    """Two batches, both targeting 5% in BTC (50 coins); the venue takes 10 coins per bar."""
    from framework.backtest import persist, replay
    from framework.config import RebalanceSettings, RiskLimits
    from framework.engine import Pipeline
    from framework.journal import BufferedJournal
    from framework.ledger import Ledger
    from framework.rebalance import Rebalancer
    from framework.risk import RiskManager
    from framework.types import SignalBatches

    times = pd.date_range("2024-01-01", periods=12, freq="D")
    bars = bar_arrays(times, ["BTC/USD"], np.full(12, 100.0), volume=100.0)
    u = universe("BTC/USD")
    sim = simulator(bars, u, volume_cap=0.1)
    lim = RiskLimits(max_position_size_pct=1, max_exposure_pct=1, max_positions=10, min_confidence=0,
                     max_daily_loss_pct=1, min_account_balance=0, max_leverage=1)
    p = Pipeline(sim, RiskManager(lim), Rebalancer(RebalanceSettings(drift_threshold=0.0, price_buffer_bps=0.0)),
                 BufferedJournal("cap"), u, unfilled)
    w = np.array([[0.05], [0.05]])
    sig = SignalBatches("cap", ("BTC/USD",), bars.times[[0, 2]], w, np.ones_like(w))
    outcome = replay(p, sim, sig)
    ledger = Ledger(tmp_path / f"{unfilled}.db")
    persist(ledger, p.journal, outcome, sim, run_id="cap", strategy="cap", config_hash="x", universe=u.symbols,
            initial_equity=100_000.0, settings={}, signals="mem")
    orders, fills = ledger.frame("orders", "cap"), ledger.frame("fills", "cap")
    ledger.close()
    return sim, orders, fills


def test_unfilled_cancel_cancels_the_rest_at_the_next_batch(tmp_path):
    sim, orders, fills = _volume_capped_run(tmp_path, "cancel")
    first = orders.iloc[0]
    assert first["status"] == "canceled" and first["filled_qty"] == 20.0 and first["qty"] == 50.0
    assert first["avg_price"] == 100.0                     # the partial fills' price is kept
    mine = fills[fills["client_order_id"] == first["client_order_id"]]
    assert mine["time"].str[:10].tolist() == ["2024-01-02", "2024-01-03"] and mine["qty"].tolist() == [10.0, 10.0]
    second = orders.iloc[1]
    assert second["qty"] == 30.0 and second["status"] == "filled" and second["filled_qty"] == 30.0
    assert len(fills) == 5 and fills["qty"].sum() == 50.0
    assert sim.book.pos[0] == pytest.approx(50.0)


def test_unfilled_carry_keeps_the_rest_working_without_overshooting_the_target(tmp_path):
    sim, orders, fills = _volume_capped_run(tmp_path, "carry")
    first = orders.iloc[0]
    mine = fills[fills["client_order_id"] == first["client_order_id"]]
    # partial fills are real fills: one row per bar, each with its own time, still after the 2nd batch
    assert mine["time"].str[:10].tolist() == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-06"]
    assert mine["qty"].tolist() == [10.0] * 5
    assert first["status"] == "filled" and first["filled_qty"] == 50.0
    assert (orders["status"] != "canceled").all()
    # the second batch wants the same 50 coins it already has or has working: no double buying
    assert sim.book.pos[0] == pytest.approx(50.0)


# ---------------------------------------------------------------------------- limit and stop orders

LT = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
#           open  high  low  close
L_BARS = [(100, 101, 99, 100), (100, 104, 95, 101), (90, 92, 88, 91), (110, 112, 108, 111)]


def limit_market():
    o, h, lo, c = (np.array([[b[i]] for b in L_BARS], float) for i in range(4))
    return bar_arrays(LT, ["AAPL"], o, c, h, lo)


def test_limit_buy_fills_at_its_price_when_the_bar_trades_through_it_without_slippage():
    u = universe("AAPL")
    sim = simulator(limit_market(), u, slippage=FixedBps(10.0))
    rep = sim.execute(buy(u, LT[0], order_type=OrderType.LIMIT, limit=[97.0]))
    assert rep.status.tolist() == [S.FILLED] and rep.fills.price.tolist() == [97.0]
    assert list(rep.fills.time) == [utc(LT[1])]


def test_limit_buy_gap_below_fills_at_the_open():
    u = universe("AAPL")
    sim = simulator(limit_market(), u, start=LT[1])
    rep = sim.execute(buy(u, LT[1], order_type=OrderType.LIMIT, limit=[93.0]))
    assert rep.fills.price.tolist() == [90.0] and list(rep.fills.time) == [utc(LT[2])]


def test_limit_buy_rests_until_a_bar_reaches_it():
    u = universe("AAPL")
    sim = simulator(limit_market(), u)
    rep = sim.execute(buy(u, LT[0], order_type=OrderType.LIMIT, limit=[89.0]))
    assert rep.status.tolist() == [S.NEW] and len(rep.fills) == 0
    sim.advance_to(utc(LT[3]))
    (later,) = sim.sync()
    assert later.fills.price.tolist() == [89.0] and list(later.fills.time) == [utc(LT[2])]
    assert later.status.tolist() == [S.FILLED]


def _holding_20_at_bar_1():
    u = universe("AAPL")
    sim = simulator(limit_market(), u, slippage=FixedBps(10.0))
    sim.execute(buy(u, LT[0], qty=20.0))                  # fills at bar 1's open
    sim.advance_to(utc(LT[1]))
    return u, sim


def test_limit_sell_fills_at_its_price_inside_the_bar_without_slippage():
    u, sim = _holding_20_at_bar_1()
    rep = sim.execute(sell(u, LT[1], order_type=OrderType.LIMIT, limit=[91.0], batch_id="s@1"))
    assert rep.fills.price.tolist() == [91.0] and list(rep.fills.time) == [utc(LT[2])]


def test_limit_sell_gap_above_fills_at_the_open():
    u, sim = _holding_20_at_bar_1()
    rep = sim.execute(sell(u, LT[1], order_type=OrderType.LIMIT, limit=[103.0], batch_id="s@1"))
    assert len(rep.fills) == 0                            # bar 2 (high 92) does not reach it
    sim.advance_to(utc(LT[3]))
    (later,) = sim.sync()
    assert later.fills.price.tolist() == [110.0] and list(later.fills.time) == [utc(LT[3])]


def test_stop_buy_triggers_inside_the_bar_at_the_stop_plus_slippage():
    u = universe("AAPL")
    sim = simulator(limit_market(), u, slippage=FixedBps(10.0))
    rep = sim.execute(buy(u, LT[0], order_type=OrderType.STOP, stop=[103.0]))
    assert rep.fills.price[0] == pytest.approx(103.0 * 1.001) and list(rep.fills.time) == [utc(LT[1])]


def test_stop_buy_gap_above_fills_at_the_open_on_a_later_bar():
    u = universe("AAPL")
    sim = simulator(limit_market(), u, start=LT[1])
    rep = sim.execute(buy(u, LT[1], order_type=OrderType.STOP, stop=[105.0]))
    assert len(rep.fills) == 0
    sim.advance_to(utc(LT[3]))
    (later,) = sim.sync()
    assert later.fills.price.tolist() == [110.0] and list(later.fills.time) == [utc(LT[3])]


def test_stop_sell_triggers_inside_the_bar_at_the_stop_less_slippage():
    u, sim = _holding_20_at_bar_1()
    rep = sim.execute(sell(u, LT[1], order_type=OrderType.STOP, stop=[89.0], batch_id="s@1"))
    assert rep.fills.price[0] == pytest.approx(89.0 * 0.999) and list(rep.fills.time) == [utc(LT[2])]


def test_stop_sell_gap_below_fills_at_the_open():
    u, sim = _holding_20_at_bar_1()
    rep = sim.execute(sell(u, LT[1], qty=20.0, order_type=OrderType.STOP, stop=[94.0], batch_id="s@1"))
    assert rep.fills.price[0] == pytest.approx(90.0 * 0.999) and list(rep.fills.time) == [utc(LT[2])]
    assert sim.book.pos[0] == 0.0


def test_a_resting_limit_order_does_not_skip_the_split_on_its_first_bar():
    """A limit order placed the bar before an ex-date must not stop the split from applying."""
    u = universe("AAPL")
    ratio = np.array([[1.0], [1.0], [2.0], [1.0]])
    o = np.array([[100.0], [100.0], [50.0], [50.0]])
    bars = bar_arrays(LT, ["AAPL"], o, o, o + 1, o - 1, split_ratio=ratio)
    sim = simulator(bars, u)
    sim.execute(buy(u, LT[0], qty=10.0))                                  # fills at 100 on bar 1
    sim.advance_to(utc(LT[1]))
    # next_open: the limit order's first bar is bar 2, the ex-date; it never crosses
    sim.execute(buy(u, LT[1], order_type=OrderType.LIMIT, limit=[10.0], batch_id="lim@1"))
    sim.advance_to(utc(LT[3]))
    assert sim.book.pos[0] == 20.0
    eq = sim.equity_curve()["equity"].to_numpy()
    np.testing.assert_allclose(eq, [100_000.0] * 4)


def test_a_new_limit_order_does_not_make_working_orders_skip_its_first_bar():
    u = universe("AAPL")
    t = pd.date_range("2024-01-01", periods=4, freq="D")
    bars = bar_arrays(t, ["AAPL"], [100.0] * 4, volume=100.0)
    sim = simulator(bars, u, volume_cap=0.1)
    sim.execute(buy(u, t[0], qty=30.0))                                    # 10 per bar: bars 1, 2, 3
    sim.advance_to(utc(t[1]))
    sim.execute(buy(u, t[1], order_type=OrderType.LIMIT, limit=[50.0], batch_id="lim@1"))
    sim.advance_to(utc(t[3]))
    got = [(f.time[0], f.qty[0]) for r in sim.sync() for f in [r.fills]]
    assert got == [(utc(t[2]), 10.0), (utc(t[3]), 10.0)]


# ---------------------------------------------------------------------------- venue rules


def test_off_increment_quantity_is_rejected():
    u = U(increment=1.0, fractionable=False)
    sim = simulator(market(), u)
    rep = sim.execute(buy(u, DAYS[0], qty=1.5))
    assert rep.status.tolist() == [S.REJECTED] and len(rep.fills) == 0
    assert "not a multiple of the increment 1" in rep.messages[0]
    assert sim.book.cash == 100_000.0


def test_under_minimum_notional_is_rejected():
    u = U(min_notional=1.0)
    sim = simulator(market(), u)
    rep = sim.execute(buy(u, DAYS[0], qty=0.005, ref=[100.0]))       # $0.50
    assert rep.status.tolist() == [S.REJECTED] and "under the minimum" in rep.messages[0]


def test_short_sale_of_a_non_shortable_asset_is_rejected_and_a_shortable_one_fills():
    u = U(shortable=True)
    sim = simulator(market(), u)
    rep = sim.execute(order_batch(u, DAYS[0], [("BTC/USD", -1, 1.0), ("AAPL", -1, 5.0)], leg="add"))
    assert rep.status.tolist() == [S.REJECTED, S.FILLED]
    assert "cannot be sold short" in rep.messages[0]
    assert sim.book.pos.tolist() == [-5.0, 0.0]


def test_selling_more_than_held_of_a_non_shortable_asset_is_rejected():
    u = U()
    sim = simulator(market(), u, fill="close")
    sim.execute(buy(u, DAYS[0], sym="BTC/USD", qty=1.0))
    rep = sim.execute(sell(u, DAYS[0], sym="BTC/USD", qty=1.5, batch_id="x@2"))
    assert rep.status.tolist() == [S.REJECTED] and sim.book.pos[1] == 1.0


def test_buys_beyond_the_cash_are_cut_to_what_the_cash_pays_for():
    u = U()
    sim = simulator(market(), u, cash=1_000.0)
    rep = sim.execute(buy(u, DAYS[0], qty=20.0))                       # needs 2,040
    assert rep.status.tolist() == [S.CANCELED] and rep.filled_qty[0] == pytest.approx(1_000 / 102, abs=1e-8)
    assert "insufficient funds" in rep.messages[0]
    assert sim.book.cash >= -1e-9


def test_sells_fill_before_buys_in_one_batch_so_their_cash_pays_for_the_buys():
    u = U()
    sim = simulator(market(), u, cash=2_000.0, fill="close")
    sim.execute(buy(u, DAYS[0], qty=19.0))                            # 1,919 of AAPL
    sim.advance_to(utc(DAYS[1]))
    rep = sim.execute(order_batch(u, DAYS[1], [("BTC/USD", 1, 1.5), ("AAPL", -1, 19.0)], batch_id="mix@1"))
    assert rep.status.tolist() == [S.FILLED, S.FILLED]
    assert rep.fills.side.tolist() == [-1, 1]


# ---------------------------------------------------------------------------- mark to market, sessions


def test_equity_is_marked_to_market_at_every_bar():
    u = U()
    sim = simulator(market(), u, fill="close")
    sim.execute(buy(u, DAYS[0], qty=10.0))
    sim.advance_to(utc(DAYS[2]))
    sim.execute(buy(u, DAYS[2], sym="BTC/USD", qty=1.0, batch_id="b@2"))
    sim.advance_to(utc(DAYS[4]))
    curve = sim.equity_curve()
    assert len(curve) == len(DAYS)
    close = np.array(CLOSE, float)
    pos = np.array([[10, 0], [10, 0], [10, 1], [10, 1], [10, 1]], float)
    cash = np.array([100_000 - 1010] * 2 + [100_000 - 1010 - 1025] * 3)
    np.testing.assert_allclose(curve["cash"], cash)
    np.testing.assert_allclose(curve["equity"], cash + (pos * close).sum(axis=1))
    np.testing.assert_allclose(curve["gross_exposure"], (pos * close).sum(axis=1))
    acct = sim.account()
    assert acct.equity == pytest.approx(curve["equity"].iloc[-1])
    (p_aapl, p_btc) = sim.positions()
    assert (p_aapl.symbol, p_aapl.qty, p_aapl.avg_cost, p_aapl.market_price) == ("AAPL", 10.0, 101.0, 109.0)
    assert p_aapl.unrealized_pnl == pytest.approx(80.0) and p_btc.market_value == pytest.approx(1045.0)


def test_equities_wait_for_their_next_bar_and_never_fill_on_a_missing_one():
    # Fri, Sat, Sun, Mon: AAPL has no weekend bars, BTC trades every day
    t = ["2024-01-05", "2024-01-06", "2024-01-07", "2024-01-08"]
    nan = np.nan
    o = [[100, 1000], [nan, 1010], [nan, 1020], [104, 1030]]
    bars = bar_arrays(t, SYMS, o)
    u = U()
    sim = simulator(bars, u)
    rep = sim.execute(order_batch(u, t[0], [("AAPL", 1, 10.0), ("BTC/USD", 1, 1.0)]))
    assert list(rep.fills.time) == [utc(t[1])] and rep.fills.symbol_idx.tolist() == [1]
    assert rep.status.tolist() == [S.NEW, S.FILLED]
    sim.advance_to(utc(t[3]))
    (later,) = sim.sync()
    assert list(later.fills.time) == [utc(t[3])] and later.fills.price.tolist() == [104.0]
    curve = sim.equity_curve()
    # AAPL held from Monday; over the weekend BTC is marked at its own bars
    np.testing.assert_allclose(curve["equity"], [100_000, 100_000, 100_010, 100_020])


def test_a_held_equity_is_marked_at_its_last_close_on_days_without_a_bar():
    t = ["2024-01-05", "2024-01-06", "2024-01-08"]
    o = [[100, 1000], [np.nan, 1010], [104, 1030]]
    c = [[101, 1000], [np.nan, 1010], [105, 1030]]
    bars = bar_arrays(t, SYMS, o, c)
    u = U()
    sim = simulator(bars, u, fill="close")
    sim.execute(buy(u, t[0], qty=10.0))
    sim.advance_to(utc(t[2]))
    np.testing.assert_allclose(sim.equity_curve()["equity"], [100_000, 100_000, 100_040])


# ---------------------------------------------------------------------------- splits in raw bars (real data)


@pytest.fixture(scope="module")
def aapl_raw_and_adjusted(shared_data):
    from framework.data import load_bars

    raw = load_bars(shared_data / "equity_daily_lean_5sym.csv", shared_data,
                    factors=shared_data / "equity_daily_lean_5sym_factors.csv").select(["AAPL"])
    adj = load_bars(shared_data / "equity_daily_lean_5sym_split_adjusted.csv", shared_data).select(["AAPL"])
    return raw, adj


@pytest.mark.parametrize("ex_date,ratio", [("2014-06-09", 7.0), ("2020-08-31", 4.0)])
def test_a_split_in_raw_bars_multiplies_the_position_and_books_no_pnl(aapl_raw_and_adjusted, ex_date, ratio):
    raw_all, adj_all = aapl_raw_and_adjusted
    lo, hi = utc(pd.Timestamp(ex_date) - pd.Timedelta(days=30)), utc(pd.Timestamp(ex_date) + pd.Timedelta(days=30))
    raw, adj = raw_all.between(lo, hi), adj_all.between(lo, hi)
    ex = int(np.searchsorted(raw.times, utc(ex_date)))
    assert raw.split_ratio[ex, 0] == pytest.approx(ratio, rel=1e-6)
    assert raw.close[ex, 0] / raw.close[ex - 1, 0] < 0.5          # the raw price does jump

    curves, held = [], []
    for bars in (raw, adj):
        u = universe("AAPL")
        sim = simulator(bars, u, cash=100_000.0)
        qty = np.floor(60_000.0 / bars.open[1, 0] * 1e6) / 1e6         # same notional in both
        sim.execute(buy(u, bars.times[0], qty=qty))
        sim.advance_to(bars.times[-1])
        curves.append(sim.equity_curve()["equity"].to_numpy())
        held.append((qty, sim.book.pos[0]))
    assert held[0][1] == pytest.approx(held[0][0] * raw.split_ratio[ex, 0], rel=1e-12)
    # the raw+factors run and the split-adjusted run have the same equity curve (factor rounding ~1e-7)
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-6)
    jump = curves[0][ex] / curves[0][ex - 1] - 1
    assert abs(jump) < 0.05


def test_a_market_order_across_a_split_is_filled_in_post_split_shares(aapl_raw_and_adjusted):
    raw_all, _ = aapl_raw_and_adjusted
    raw = raw_all.between(utc("2014-06-02"), utc("2014-06-13"))
    ex = int(np.searchsorted(raw.times, utc("2014-06-09")))
    u = universe("AAPL")
    sim = simulator(raw, u, start=raw.times[ex - 1])
    rep = sim.execute(buy(u, raw.times[ex - 1], qty=10.0, ref=[raw.close[ex - 1, 0]]))
    assert list(rep.fills.time) == [raw.times[ex]]
    assert rep.fills.qty[0] == pytest.approx(70.0, rel=1e-6)
    assert rep.fills.price[0] == raw.open[ex, 0]
    assert rep.status.tolist() == [S.FILLED]
