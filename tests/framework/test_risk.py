"""RiskManager (SPEC §7): every rule triggered on small arrays, its decision read back; then the
same rules through run_cycle with the SimulatedBroker, landing in the ledger and decisions.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from framework.config import RebalanceSettings, RiskLimits, Settings, load_strategy
from framework.risk import RiskManager
from framework.types import TargetPortfolio
from tests.conftest import bar_arrays, instrument, long_csv, simulator, universe, utc

T = utc("2024-03-04T15:00:00Z")
OPEN = dict(max_position_size_pct=1.0, max_exposure_pct=10.0, max_positions=100, min_confidence=0.0,
            max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=10.0)


def limits(**kw) -> RiskLimits:
    """Limits that never bind, except those given."""
    return RiskLimits(**{**OPEN, **kw})


def target(weights, confidence=None, t=T, absent_hold=False) -> TargetPortfolio:
    w = np.array(weights, float)
    c = np.where(np.isnan(w), np.nan, 1.0) if confidence is None else np.array(confidence, float)
    return TargetPortfolio(t, "test@1", w, c, absent_hold)


U3 = universe("AAPL", "MSFT", "IBM")
PX3 = np.array([100.0, 200.0, 50.0])


def approve(rm, tgt, positions=(0, 0, 0), prices=PX3, equity=100_000.0, day_start=None, univ=U3):
    return rm.approve(tgt, np.array(positions, float), np.asarray(prices, float), equity, day_start, univ)


def by_rule(result, rule):
    return [d for d in result.decisions if d.rule == rule]


# ---------------------------------------------------------------------------- one rule at a time


def test_nothing_binds_targets_pass_unchanged_without_decisions():
    r = approve(RiskManager(limits()), target([0.3, -0.0, 0.2]))
    np.testing.assert_allclose(r.weights, [0.3, 0.0, 0.2])
    assert r.decisions == () and not r.halted and not r.reduce_only


def test_min_account_balance_halts_the_whole_cycle_and_keeps_positions():
    r = approve(RiskManager(limits(min_account_balance=5_000)), target([0.5, 0.5, 0.0]),
                positions=(10, 0, 0), equity=4_000.0)
    assert r.halted
    (d,) = by_rule(r, "min_account_balance")
    assert (d.action, d.symbol, d.requested, d.approved) == ("halt", "*", 4_000.0, 5_000.0)
    assert "below the minimum balance" in d.reason
    np.testing.assert_allclose(r.weights, [10 * 100 / 4_000, 0, 0])   # what is held now: nothing changes


def test_min_confidence_holds_the_position_as_is():
    # AAPL is held at 20% of equity; its new signal (flat) is below min_confidence
    r = approve(RiskManager(limits(min_confidence=0.6)), target([0.0, 0.3, 0.1], [0.4, 0.9, 0.6]),
                positions=(200, 0, 0))
    np.testing.assert_allclose(r.weights, [0.2, 0.3, 0.1])
    (d,) = by_rule(r, "min_confidence")
    assert (d.symbol, d.action, d.requested, d.approved) == ("AAPL", "hold", 0.0, pytest.approx(0.2))
    assert "confidence 0.40 < min 0.60" in d.reason and "kept as is" in d.reason


def test_no_shorting_where_the_venue_forbids_it():
    u = universe(instrument("AAPL", shortable=True), instrument("BTC/USD"), "IBM")
    r = approve(RiskManager(limits()), target([-0.2, -0.3, 0.1]), univ=u)
    np.testing.assert_allclose(r.weights, [-0.2, 0.0, 0.1])
    (d,) = by_rule(r, "no_shorting")
    assert (d.symbol, d.action, d.requested, d.approved) == ("BTC/USD", "clip", -0.3, 0.0)
    assert "does not allow shorting BTC/USD" in d.reason


def test_max_position_size_pct_clips_each_position_keeping_its_sign():
    u = universe(instrument("AAPL", shortable=True), "MSFT", "IBM")
    r = approve(RiskManager(limits(max_position_size_pct=0.25)), target([-0.4, 0.3, 0.25]), univ=u)
    np.testing.assert_allclose(r.weights, [-0.25, 0.25, 0.25])
    ds = by_rule(r, "max_position_size_pct")
    assert [(d.symbol, d.action, d.requested, d.approved) for d in ds] == [
        ("AAPL", "clip", -0.4, -0.25), ("MSFT", "clip", 0.3, 0.25)]
    assert "above the limit 0.2500" in ds[0].reason


def test_max_positions_keeps_the_strongest_by_confidence_times_weight():
    # scores: AAPL 0.3*0.5=0.15, MSFT 0.2*0.9=0.18, IBM 0.1*1.0=0.10 -> keep MSFT and AAPL
    r = approve(RiskManager(limits(max_positions=2)), target([0.3, 0.2, 0.1], [0.5, 0.9, 1.0]))
    np.testing.assert_allclose(r.weights, [0.3, 0.2, 0.0])
    (d,) = by_rule(r, "max_positions")
    assert (d.symbol, d.action, d.requested, d.approved) == ("IBM", "reject", 0.1, 0.0)
    assert "more than 2 positions" in d.reason


def test_max_positions_does_not_close_a_position_held_by_min_confidence():
    """A signal under min_confidence "changes nothing for that symbol" (SPEC §4): with the position
    count over the limit, the new candidates compete for the remaining slot, the held one stays."""
    r = approve(RiskManager(limits(max_positions=2, min_confidence=0.5)),
                target([0.0, 0.3, 0.2], [0.1, 0.9, 0.8]), positions=(100, 0, 0))
    assert r.weights[0] == pytest.approx(0.1)        # AAPL kept as is (100 x 100 / 100k)
    assert (np.abs(r.weights) > 0).sum() == 2
    np.testing.assert_allclose(r.weights, [0.1, 0.3, 0.0])
    assert [d.symbol for d in by_rule(r, "max_positions")] == ["IBM"]


def test_max_exposure_pct_scales_every_target_pro_rata():
    u = universe(instrument("AAPL", shortable=True), "MSFT", "IBM")
    r = approve(RiskManager(limits(max_exposure_pct=0.8)), target([-0.4, 0.4, 0.2]), univ=u)
    np.testing.assert_allclose(r.weights, [-0.32, 0.32, 0.16])
    (d,) = by_rule(r, "max_exposure_pct")
    assert (d.symbol, d.action, d.requested, d.approved) == ("*", "scale", 1.0, pytest.approx(0.8))
    assert "scaled by 0.8000" in d.reason


def test_max_exposure_scales_only_the_free_targets_when_a_held_position_uses_room():
    r = approve(RiskManager(limits(max_exposure_pct=0.5, min_confidence=0.5)),
                target([0.0, 0.4, 0.4], [0.1, 1.0, 1.0]), positions=(200, 0, 0))
    np.testing.assert_allclose(r.weights, [0.2, 0.15, 0.15])


def test_max_leverage_scales_gross_exposure_down_to_the_leverage():
    u = universe(instrument("AAPL", shortable=True), "MSFT", "IBM")
    r = approve(RiskManager(limits(max_exposure_pct=5.0, max_leverage=0.5)), target([-0.5, 0.3, 0.2]), univ=u)
    np.testing.assert_allclose(r.weights, [-0.25, 0.15, 0.10])
    (d,) = by_rule(r, "max_leverage")
    assert (d.action, d.requested, d.approved) == ("scale", 1.0, pytest.approx(0.5))
    assert by_rule(r, "max_exposure_pct") == []


def test_max_daily_loss_is_reduce_only_for_the_rest_of_the_utc_day_then_lifted():
    rm = RiskManager(limits(max_daily_loss_pct=0.05))
    held = (300, 0, 0)                                # AAPL 30% of 100k
    # 1. equity 6% below the day's start: only reductions pass
    r = approve(rm, target([0.5, 0.2, 0.0]), positions=held, equity=94_000.0, day_start=100_000.0)
    assert r.reduce_only and not r.halted
    halt = by_rule(r, "max_daily_loss_pct")
    assert halt[0].action == "halt" and halt[0].requested == pytest.approx(0.06)
    assert "only risk-reducing orders until the day ends" in halt[0].reason
    current = 300 * 100 / 94_000
    np.testing.assert_allclose(r.weights, [current, 0.0, 0.0])
    assert {(d.symbol, d.action) for d in halt[1:]} == {("AAPL", "reduce_only"), ("MSFT", "reduce_only")}

    # 2. later the same UTC day, equity recovered: still reduce-only; a reduction passes
    later = utc("2024-03-04T20:00:00Z")
    r = approve(rm, target([0.1, 0.2, 0.0], t=later), positions=held, equity=99_000.0, day_start=100_000.0)
    assert r.reduce_only
    np.testing.assert_allclose(r.weights, [0.1, 0.0, 0.0])

    # 3. the next UTC day: lifted
    nxt = utc("2024-03-05T15:00:00Z")
    r = approve(rm, target([0.5, 0.2, 0.0], t=nxt), positions=held, equity=99_000.0, day_start=99_000.0)
    assert not r.reduce_only and by_rule(r, "max_daily_loss_pct") == []
    np.testing.assert_allclose(r.weights, [0.5, 0.2, 0.0])


def test_daily_loss_under_the_limit_changes_nothing():
    r = approve(RiskManager(limits(max_daily_loss_pct=0.05)), target([0.5, 0.2, 0.0]), positions=(300, 0, 0),
                equity=96_000.0, day_start=100_000.0)
    assert not r.reduce_only and r.decisions == ()


def test_daily_loss_reduce_only_turns_a_flip_into_a_close():
    u = universe(instrument("AAPL", shortable=True), "MSFT", "IBM")
    r = approve(RiskManager(limits(max_daily_loss_pct=0.05)), target([-0.3, 0.0, 0.0]), positions=(300, 0, 0),
                equity=90_000.0, day_start=100_000.0, univ=u)
    np.testing.assert_allclose(r.weights, [0.0, 0.0, 0.0])


def test_absent_symbols_are_closed_or_held_as_configured():
    held = (100, 0, 200)
    r = approve(RiskManager(limits()), target([np.nan, 0.3, np.nan]), positions=held)
    np.testing.assert_allclose(r.weights, [0.0, 0.3, 0.0])
    r = approve(RiskManager(limits()), target([np.nan, 0.3, np.nan], absent_hold=True), positions=held)
    np.testing.assert_allclose(r.weights, [0.1, 0.3, 0.1])


def test_buying_power_gate_scales_adds_pro_rata_and_records_it():
    from framework.rebalance import Rebalancer
    from tests.conftest import order_batch

    rb = Rebalancer(RebalanceSettings(price_buffer_bps=0.0), fee_rate=0.0)
    adds = order_batch(U3, T, [("AAPL", 1, 100), ("MSFT", 1, 50)], ref=[100.0, 200.0])   # needs 20,000
    out, (d,) = rb.resize_adds(adds, buying_power=5_000.0)
    np.testing.assert_allclose(out.qty, [25, 12.5])
    assert (d.rule, d.action, d.symbol, d.requested, d.approved) == ("buying_power", "scale", "*", 20_000.0,
                                                                     pytest.approx(5_000.0))
    assert "scaled by 0.2500" in d.reason


# ---------------------------------------------------------------------------- through run_cycle and the ledger


def _pipeline(bars, univ, lim, *, cash=100_000.0, run_id="risk-test"):
    from framework.engine import Pipeline
    from framework.journal import BufferedJournal
    from framework.rebalance import Rebalancer

    market = simulator(bars, univ, cash=cash)
    journal = BufferedJournal(run_id)
    return Pipeline(market, RiskManager(lim), Rebalancer(RebalanceSettings(drift_threshold=0.0)), journal, univ), market


def test_daily_loss_through_run_cycle_with_the_simulator_lands_in_the_ledger(tmp_path):
    from framework.backtest import persist, replay
    from framework.ledger import Ledger
    from framework.types import SignalBatches

    # hourly BTC: flat 100 on day 1; on day 2 it falls to 80 at 02:00; flat 80 on day 3
    times = pd.date_range("2024-01-01", periods=72, freq="h", tz="UTC")
    px = np.full(72, 100.0)
    px[26:] = 80.0
    bars = bar_arrays(times, ["BTC/USD"], px)
    u = universe("BTC/USD")
    p, market = _pipeline(bars, u, limits(max_daily_loss_pct=0.05))
    batches = ["2024-01-02T00:00Z", "2024-01-02T03:00Z", "2024-01-02T05:00Z", "2024-01-03T01:00Z"]
    w = np.array([[0.5], [0.9], [0.2], [0.9]])
    sig = SignalBatches("risk", ("BTC/USD",), np.array([utc(t) for t in batches]), w, np.ones_like(w))
    outcome = replay(p, market, sig)

    ledger = Ledger(tmp_path / "p.db")
    persist(ledger, p.journal, outcome, market, run_id="risk-test", strategy="risk", config_hash="x",
            universe=u.symbols, initial_equity=100_000.0, settings={}, signals="mem")
    dec = ledger.frame("decisions", "risk-test")
    fills = ledger.frame("fills", "risk-test")
    ledger.close()

    day2 = dec[dec["time"].str.startswith("2024-01-02T03")]
    halt = day2[(day2["rule"] == "max_daily_loss_pct") & (day2["action"] == "halt")]
    assert len(halt) == 1 and "below the day's start" in halt["reason"].iloc[0]
    assert halt["requested"].iloc[0] == pytest.approx(0.1, rel=1e-3)     # 50% in BTC, -20%
    assert ((day2["rule"] == "max_daily_loss_pct") & (day2["action"] == "reduce_only")).sum() == 1
    assert not dec["time"].str.startswith("2024-01-03").any()            # lifted the next day

    q = np.where(fills["side"] == "buy", 1.0, -1.0) * fills["qty"]
    by_time = q.groupby(fills["time"].str[:13]).sum()
    assert list(by_time.index) == ["2024-01-02T01", "2024-01-02T06", "2024-01-03T02"]
    assert by_time.iloc[0] > 0 and by_time.iloc[1] < 0 and by_time.iloc[2] > 0   # no add on the loss day


def test_min_account_balance_halt_through_run_cycle_sends_nothing(tmp_path):
    from framework.engine import run_cycle
    from framework.ledger import Ledger

    bars = bar_arrays(["2024-01-01", "2024-01-02"], ["BTC/USD"], [100.0, 101.0])
    u = universe("BTC/USD")
    p, market = _pipeline(bars, u, limits(min_account_balance=5_000), cash=1_000.0)
    market.advance_to(bars.times[0])
    res = run_cycle(p, target([0.5], [1.0], t=bars.times[0]))
    assert res.halted and res.reports == ()
    assert [d.rule for d in res.plan.risk.decisions] == ["min_account_balance"]
    assert market.open_orders() == [] and market.book.pos[0] == 0
    ledger = Ledger(tmp_path / "p.db")
    p.journal.flush(ledger)
    cycles, dec = ledger.frame("cycles", "risk-test"), ledger.frame("decisions", "risk-test")
    orders = ledger.frame("orders", "risk-test")
    ledger.close()
    assert cycles["status"].tolist() == ["halted"] and orders.empty
    assert dec[["rule", "action"]].values.tolist() == [["min_account_balance", "halt"]]


def test_risk_rules_through_a_cli_backtest_land_in_decisions_csv(tmp_path):
    """One backtest whose batches trip max_position_size_pct, max_positions, max_exposure_pct,
    buying_power, min_confidence and no_shorting; decisions.csv carries each rule and reason."""
    from framework.cli.wiring import run_backtest

    days = pd.date_range("2024-01-01", periods=8, freq="D", tz="UTC")
    syms = ["AAPL", "BTC/USD", "ETH/USD", "MSFT"]
    rows = [{"timestamp": t, "symbol": s, "open": 100.0 + i, "high": 101.0 + i, "low": 99.0 + i,
             "close": 100.0 + i, "volume": 1e9} for i, t in enumerate(days) for s in syms]
    bars = long_csv(tmp_path / "bars.csv", pd.DataFrame(rows))
    sig = tmp_path / "signals.csv"
    sig.write_text(
        "symbol,time,side,weight,confidence\n"
        # batch 1: AAPL 0.6 clipped to 0.5; BTC and ETH lose to AAPL/MSFT (max 2 positions); gross 0.85
        # scaled to 0.8; buys of 0.8 x equity plus a 30% price buffer exceed the cash: buying_power
        "AAPL,2024-01-01T00:00:00Z,1,0.6,0.9\n"
        "BTC/USD,2024-01-01T00:00:00Z,1,0.04,0.9\n"
        "ETH/USD,2024-01-01T00:00:00Z,1,0.01,0.9\n"
        "MSFT,2024-01-01T00:00:00Z,1,0.35,0.9\n"
        # batch 2: AAPL low confidence (hold); ETH short (crypto: no shorting at Alpaca)
        "AAPL,2024-01-03T00:00:00Z,0,0,0.2\n"
        "BTC/USD,2024-01-03T00:00:00Z,1,0.3,0.6\n"
        "ETH/USD,2024-01-03T00:00:00Z,-1,0.2,0.9\n"
        "MSFT,2024-01-03T00:00:00Z,1,0.1,0.9\n")
    strat = tmp_path / "strat.yaml"
    strat.write_text("name: risky\n"
                     f"signals: {{path: {sig}}}\n"
                     f"bars: {{path: {bars}}}\n"
                     "risk: {max_position_size_pct: 0.5, max_exposure_pct: 0.8, max_positions: 2,"
                     " min_confidence: 0.5, max_leverage: 1.0, min_account_balance: 1000}\n"
                     "rebalance: {drift_threshold: 0.0, price_buffer_bps: 3000}\n"
                     "simulation: {venue: alpaca, fill: next_open, cash: 100000}\n")
    settings = Settings(ledger=str(tmp_path / "p.db"), data_dir=str(tmp_path / "data") + "/",
                        reports_dir=str(tmp_path / "reports") + "/")
    _, summary, out = run_backtest(settings, None, load_strategy(str(strat)), report=False)
    dec = pd.read_csv(out / "decisions.csv")
    assert list(dec.columns) == ["time", "symbol", "rule", "action", "requested", "approved", "reason"]
    seen = set(zip(dec["rule"], dec["action"]))
    for rule_action in [("max_position_size_pct", "clip"), ("max_positions", "reject"), ("max_exposure_pct", "scale"),
                        ("min_confidence", "hold"), ("no_shorting", "clip"), ("buying_power", "scale")]:
        assert rule_action in seen, (rule_action, seen)
    assert (dec["reason"].str.len() > 10).all()
    row = dec[dec["rule"] == "no_shorting"].iloc[0]
    assert row["symbol"] == "ETH/USD" and row["time"].startswith("2024-01-03")
    row = dec[dec["rule"] == "min_confidence"].iloc[0]
    assert row["symbol"] == "AAPL" and "kept as is" in row["reason"]
    assert summary["n_cycles"] == 2
