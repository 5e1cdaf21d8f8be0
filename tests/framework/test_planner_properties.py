"""Property tests of the planner (risk -> rebalancer -> venue pre-checks, ``engine.plan_cycle``) against
venue rules, over thousands of random cases: targets, positions, prices, increments, minimums,
quantities held by open orders, untradable symbols, the user's open orders and account flags.

After planning, whatever the inputs:
- no risk limit is breached by what the plan changes (position size, gross exposure);
- cash never goes negative once the buys are re-sized to what the sells leave (``resize_adds``);
- reductions precede additions: the reduce leg only shrinks positions, never flips one;
- quantities sit on the venue's increments (short sales in whole shares);
- no sell exceeds the quantity available (not held by open orders);
- no order on a symbol the venue does not trade, against the user's opposite order where the venue
  has the wash-trade rule, as a short where the account may not short, or as a buy under the floor.
The venue here is a small in-memory account (the planner reads only ``account``, ``prices``,
``market_open`` and ``foreign_orders``); the venue rules themselves are tested against the local
servers in tests/brokers/*/test_venue_rules.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework.broker import Broker, OrderState
from framework.config import RebalanceSettings, RiskLimits
from framework.engine import Pipeline, plan_cycle
from framework.journal import BufferedJournal
from framework.order_ids import batch_key
from framework.rebalance import Rebalancer
from framework.risk import RiskManager
from framework.types import AccountSnapshot, AssetClass, Instrument, Position, TargetPortfolio, Universe

T = np.datetime64("2026-01-05T15:00:00", "ns")
EXAMPLES = int(os.environ.get("PARITY_PROPERTY_EXAMPLES", "2000"))
INCREMENTS = (1.0, 0.1, 0.001, 1e-8)


class Venue(Broker):
    """The account state one case plans against."""

    name = "prop"

    def __init__(self, acct: AccountSnapshot, prices: np.ndarray, foreign: list[OrderState]):
        self.acct, self.px, self.foreign = acct, prices, foreign

    def instruments(self, symbols):
        raise NotImplementedError("the universe is built by the test")

    def account(self) -> AccountSnapshot:
        return self.acct

    def prices(self, universe: Universe) -> np.ndarray:
        return self.px

    def market_open(self, universe: Universe) -> np.ndarray:
        return np.ones(len(universe), bool)

    def foreign_orders(self) -> list[OrderState]:
        return self.foreign

    def open_orders(self) -> list[OrderState]:
        return []

    def execute(self, batch, on_update=None):
        raise AssertionError("planning sends nothing")

    def sync(self):
        return []

    def lookup(self, client_ids):
        return {}

    def cancel(self, client_ids):
        return []


@st.composite
def cases(draw):
    n = draw(st.integers(1, 6))
    syms = [f"S{k}" for k in range(n)]
    insts, prices, positions, avail, foreign = [], [], [], [], []
    can_short = draw(st.booleans())
    for s in syms:
        crypto = draw(st.booleans())
        inc = draw(st.sampled_from(INCREMENTS))
        insts.append(Instrument(
            s, AssetClass.CRYPTO if crypto else AssetClass.EQUITY, qty_increment=inc,
            min_qty=draw(st.sampled_from((0.0, inc, 5 * inc))), min_notional=draw(st.sampled_from((0.0, 1.0, 5.0))),
            fractionable=inc < 1.0, shortable=draw(st.booleans()) and not crypto,
            tradable=draw(st.integers(0, 9)) > 0, halt_reason="inactive",
            min_buy_notional=10.0 if crypto else 0.0))
        px = draw(st.floats(0.05, 5_000.0))
        prices.append(px)
        held = draw(st.one_of(st.just(0.0), st.floats(0.0, 2_000.0)))
        held = float(np.floor(held / inc) * inc)
        if insts[-1].shortable and can_short and draw(st.integers(0, 4)) == 0:
            held = -float(np.floor(held))
        positions.append(held)
        frac = draw(st.sampled_from((1.0, 1.0, 0.5, 0.0)))
        avail.append(float(np.floor(held * frac / inc) * inc) if held > 0 else None)   # open orders hold whole lots
        if draw(st.integers(0, 5)) == 0:
            foreign.append(OrderState("user-" + s, "b-" + s, s, draw(st.sampled_from((1, -1))), 1.0, 0.0, None, 1,
                                      "limit", "", "new"))
    cash = draw(st.floats(0.0, 200_000.0))
    pos = tuple(Position(s, q, px, px, q * px, 0.0, a) for s, q, px, a in zip(syms, positions, prices, avail) if q)
    equity = cash + sum(p.market_value for p in pos)
    acct = AccountSnapshot(T, equity, cash, cash, None, "USD", pos, "", can_short, draw(st.booleans()))
    weights = np.array([draw(st.one_of(st.just(np.nan), st.floats(-0.6, 0.6))) for _ in syms])
    conf = np.array([draw(st.floats(0.0, 1.0)) for _ in syms])
    limits = RiskLimits(max_position_size_pct=draw(st.floats(0.05, 1.0)), max_exposure_pct=draw(st.floats(0.1, 1.0)),
                        max_positions=draw(st.integers(1, 6)), min_confidence=0.3, max_daily_loss_pct=1.0,
                        min_account_balance=0.0)
    rebalance = RebalanceSettings(drift_threshold=draw(st.sampled_from((0.0, 0.01))),
                                  cash_buffer_pct=draw(st.sampled_from((0.0, 0.02))))
    return Universe.from_instruments(insts), np.array(prices), acct, foreign, weights, conf, limits, rebalance


def _on_increment(q: float, inc: float) -> bool:
    steps = q / inc
    return abs(steps - round(steps)) <= max(1e-6, abs(steps) * 1e-9)


# derandomized in CI (the same cases on every run, so a landing never depends on the draw); set
# PARITY_HYPOTHESIS_RANDOM=1 to explore new cases
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
          derandomize=not os.environ.get("PARITY_HYPOTHESIS_RANDOM"))
@given(cases())
def test_the_plan_respects_the_venue_and_the_limits(case):
    u, px, acct, foreign, weights, conf, limits, rebalance = case
    venue = Venue(acct, px, foreign)
    rebalancer = Rebalancer(rebalance, fee_rate=0.0025)
    p = Pipeline(venue, RiskManager(limits), rebalancer, BufferedJournal("prop"), u)
    target = TargetPortfolio(T, batch_key("prop", T), np.where(np.isnan(weights), np.nan, weights),
                             np.where(np.isnan(weights), np.nan, conf))
    cp = plan_cycle(p, target)
    if cp.plan is None:
        return
    pos = venue.position_vector(u, acct)
    avail = np.abs(pos)
    for q in acct.positions:
        if q.available_qty is not None:
            avail[u.index[q.symbol]] = q.available_qty
    tradable, floor = u.can_trade(), u.buy_floor()
    after = pos.copy()
    proceeds = 0.0
    # reductions: shrink only, never flip, never more than available, on increments (a full close may be off)
    for j, side, q in zip(cp.plan.reduce.symbol_idx.tolist(), cp.plan.reduce.side.tolist(),
                          cp.plan.reduce.qty.tolist()):
        assert tradable[j], "no order on a symbol the venue does not trade"
        assert q > 0 and side == -np.sign(pos[j]) and q <= abs(pos[j]) + 1e-9
        if side < 0:
            assert q <= avail[j] + 1e-9, "a sell never exceeds the quantity available"
        assert _on_increment(q, u.qty_increment[j]) or abs(q - abs(pos[j])) <= 1e-9
        after[j] += side * q
        proceeds += side * -q * px[j]
    # additions, re-sized to what the sells leave: cash never negative
    adds, _ = rebalancer.resize_adds(cp.plan.add, acct.cash + proceeds)
    cost = 0.0
    for j, side, q in zip(adds.symbol_idx.tolist(), adds.side.tolist(), adds.qty.tolist()):
        assert tradable[j]
        # a reduction that closed the position leaves float noise (0.1 increments are inexact): zero
        left = 0.0 if abs(after[j]) <= 1e-9 * max(1.0, abs(pos[j])) else after[j]
        assert np.sign(left) in (0, side), "an addition grows |position|, after the reductions"
        assert _on_increment(q, u.qty_increment[j])
        if acct.wash_trade_rule:
            assert not any(o.symbol == u.symbols[j] and o.side == -side for o in foreign)
        if side < 0:
            assert acct.can_short and u.shortable[j] and q == np.floor(q), "shorts: allowed, whole shares"
        else:
            assert q * px[j] >= floor[j] - 1e-9, "no buy under the venue's floor"
        cost += q * px[j] * (1.0 + 0.0025 + rebalance.price_buffer_bps * 1e-4)
        after[j] += side * q
    # (covering a short may use margin: the buys never take cash below what the reductions leave, or below 0)
    budget = acct.cash + proceeds
    assert budget - cost >= min(0.0, budget) - 1e-9 * max(1.0, abs(budget)), "cash never goes negative"
    # limits: whatever the plan changed stays within the position cap; gross exposure does not grow past
    # the limit
    # quantity held by the user's open sells leaves with them: it is not Parity's to count or to sell
    locked = np.where(pos > 0, np.maximum(np.abs(pos) - avail, 0.0), 0.0)
    after = after - locked
    pos = pos - locked
    eq = acct.equity
    changed = np.abs(after - pos) > 1e-12
    if eq > 0:
        w_after = np.abs(after * px) / eq
        w_before = np.abs(pos * px) / eq
        grew = changed & (w_after > w_before + 1e-9)
        assert np.all(w_after[grew] <= limits.max_position_size_pct + 1e-6)
        if w_after.sum() > w_before.sum() + 1e-9:
            assert w_after.sum() <= max(limits.max_exposure_pct, w_before.sum()) + 1e-6


@pytest.mark.parametrize("exposure,leverage,rule", [(0.5, 1.0, "max_exposure_pct"), (1.0, 0.5, "max_leverage")])
def test_a_reduction_rounded_away_does_not_let_the_additions_pass_the_exposure_limit(exposure, leverage, rule):
    """$4 of equity, whole shares: 1 share of S3 ($2) held on a low-confidence signal, a buy of S2 ($1)
    wanted at weight 0.5, gross limit 0.5. The risk manager scales both to 0.25, which for S3 is half
    a share: the sale rounds away. Buying S2 anyway would end at gross 0.75 (found by the property
    test above): the buy is cut instead, and the decision says why."""
    insts = [Instrument(f"S{k}", AssetClass.EQUITY, qty_increment=1.0, min_qty=0.0, min_notional=0.0,
                        fractionable=False, shortable=False, tradable=k in (2, 3), halt_reason="inactive")
             for k in range(5)]
    u = Universe.from_instruments(insts)
    px = np.array([1.0, 1.0, 1.0, 2.0, 1.0])
    acct = AccountSnapshot(T, 4.0, 2.0, 2.0, None, "USD", (Position("S3", 1.0, 2.0, 2.0, 2.0, 0.0, 1.0),), "",
                           False, False)
    limits = RiskLimits(max_position_size_pct=1.0, max_exposure_pct=exposure, max_positions=2, min_confidence=0.3,
                        max_daily_loss_pct=1.0, min_account_balance=0.0, max_leverage=leverage)
    p = Pipeline(Venue(acct, px, []), RiskManager(limits), Rebalancer(RebalanceSettings(drift_threshold=0.0), 0.0025),
                 BufferedJournal("prop"), u)
    cp = plan_cycle(p, TargetPortfolio(T, batch_key("prop", T), np.array([np.nan, np.nan, 0.5, 0.0, np.nan]),
                                       np.array([0.0, 0.0, 1.0, 0.0, 0.0])))
    assert cp.plan is not None
    assert len(cp.plan.reduce) == 0 and len(cp.plan.add) == 0
    assert [d.rule for d in cp.plan.skipped] == [rule]   # the limit that binds is named
    assert cp.plan.skipped[0].approved == 0.5          # gross stays where it is: at the limit


def _legs(cp):
    if cp.plan is None:
        return None
    return [(leg.symbol_idx.tolist(), leg.side.tolist(), leg.qty.tolist()) for leg in (cp.plan.reduce, cp.plan.add)], \
        [(d.symbol, d.rule, d.action, d.approved) for d in cp.plan.skipped]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
          derandomize=not os.environ.get("PARITY_HYPOTHESIS_RANDOM"))
@given(cases())
def test_the_one_pass_screen_of_the_venue_checks_plans_exactly_what_the_per_order_checks_plan(case):
    """``kernels.plan_clear`` lets the usual plan through in one compiled pass; wherever it does, the
    per-order checks (``venue_checks._check_leg``) would have held, clipped and dropped nothing either."""
    import framework.kernels as kernels

    u, px, acct, foreign, weights, conf, limits, rebalance = case
    target = TargetPortfolio(T, batch_key("prop", T), np.where(np.isnan(weights), np.nan, weights),
                             np.where(np.isnan(weights), np.nan, conf))

    def plan():
        p = Pipeline(Venue(acct, px, foreign), RiskManager(limits), Rebalancer(rebalance, fee_rate=0.0025),
                     BufferedJournal("prop"), u)
        return _legs(plan_cycle(p, target))

    screened = plan()
    real = kernels.plan_clear
    kernels.plan_clear = lambda *a: False            # every plan through the per-order checks
    try:
        checked = plan()
    finally:
        kernels.plan_clear = real
    assert screened == checked
