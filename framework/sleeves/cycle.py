"""The sleeve layer around the one pipeline (SPEC §18): N sleeve targets -> one account target.

``PortfolioCycle.run(t, batches)`` is the whole of a portfolio cycle, for the backtest and the live
run alike: book the fills that arrived since the last cycle (they size this one), fund new
sleeves, size each sleeve on its own equity with its own strategy's risk manager, check the sum
with the account's limits, cross what sleeves trade between themselves, record the plan (write
ahead), then hand ONE account target to ``engine.run_cycle`` — the same pipeline a single strategy
runs — through ``SleeveView``, a Broker that shows the pipeline only the sleeves' own positions, so
positions no sleeve owns (the user's) are never traded. The pipeline's risk manager holds the
account limits and checks the account target once more.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from framework.broker import Broker
from framework.config import RiskLimits
from framework.engine import CyclePlan, CycleResult, Pipeline, plan_cycle, run_cycle, settle_previous
from framework.risk import RiskManager
from framework.sleeves.book import SleeveBook, SleeveJournal
from framework.sleeves.netting import NettedPlan, account_check, cross, sleeve_target
from framework.types import AccountSnapshot, Position, RiskDecision, TargetPortfolio, Universe


class SleeveView(Broker):
    """The account's broker as the pipeline of a portfolio sees it: positions less what no sleeve
    owns, and — once, for the plan — the account snapshot and prices the sleeves were sized with."""

    def __init__(self, inner: Broker):
        self.inner = inner
        self.name = inner.name
        self._others: dict[str, float] = {}
        self._acct: AccountSnapshot | None = None
        self._prices: np.ndarray | None = None

    def __getattr__(self, name: str):          # venue extras (fees, accounts, ...) pass through
        return getattr(self.inner, name)

    def freeze(self, acct: AccountSnapshot, prices: np.ndarray, others: dict[str, float]) -> None:
        self._acct, self._prices, self._others = acct, prices, others

    def _own(self, held: tuple[Position, ...]) -> tuple[Position, ...]:
        out = []
        for p in held:
            q = p.qty - self._others.get(p.symbol, 0.0)
            if abs(q) > 1e-12:
                free = None if p.available_qty is None else min(abs(q), abs(p.available_qty))
                out.append(replace(p, qty=q, market_value=q * p.market_price, available_qty=free))
        return tuple(out)

    def account(self) -> AccountSnapshot:
        a, self._acct = self._acct, None
        a = a or self.inner.account()
        return replace(a, positions=self._own(a.positions or self.inner.positions()))

    def positions(self) -> tuple[Position, ...]:
        return self._own(self.inner.positions())

    def prices(self, universe: Universe) -> np.ndarray:
        p, self._prices = self._prices, None
        return p if p is not None else self.inner.prices(universe)

    def instruments(self, symbols):
        return self.inner.instruments(symbols)

    def execute(self, batch, on_update=None):
        return self.inner.execute(batch, on_update)

    def sync(self):
        return self.inner.sync()

    def lookup(self, client_ids):
        return self.inner.lookup(client_ids)

    def open_orders(self):
        return self.inner.open_orders()

    def cancel(self, client_ids):
        return self.inner.cancel(client_ids)

    def market_open(self, universe):
        return self.inner.market_open(universe)

    def describe(self) -> str:
        return self.inner.describe()

    def account_id(self) -> str:
        return self.inner.account_id()

    def foreign_orders(self):
        return self.inner.foreign_orders()


@dataclass(frozen=True, slots=True, eq=False)
class PortfolioResult:
    plan: NettedPlan
    cycle: CycleResult | None
    equity: dict[str, float]         # each sleeve's, the unallocated rest's and the account's, after the cycle
    order_plan: CyclePlan | None = None   # a dry run's netted orders (nothing sent)


@dataclass(eq=False)
class PortfolioCycle:
    """One portfolio on one account: its sleeves, their books and the account's pipeline."""

    name: str
    sleeves: list                     # framework.portfolios.Sleeve
    book: SleeveBook
    pipeline: Pipeline                # broker: a SleeveView; journal: a SleeveJournal; risk: the account's
    account_limits: RiskLimits
    scope: str = ""
    run_id: str | None = None
    _risk: dict[str, RiskManager] = field(default_factory=dict)

    @staticmethod
    def wire(name: str, sleeves: list, book: SleeveBook, broker: Broker, journal, rebalancer, universe: Universe,
             account_limits: RiskLimits, *, execution: tuple = (), scope: str = "",
             run_id: str | None = None) -> PortfolioCycle:
        """The account's pipeline around ``broker`` and ``journal`` (``unfilled: cancel``: a sleeve's
        books must hold every fill before the next cycle is sized)."""
        view = SleeveView(broker)
        p = Pipeline(view, RiskManager(account_limits), rebalancer, SleeveJournal(journal, book), universe,
                     "cancel", *execution[1:])
        return PortfolioCycle(name, sleeves, book, p, account_limits, scope, run_id)

    @property
    def view(self) -> SleeveView:
        view = self.pipeline.broker      # ``wire`` builds the pipeline around a SleeveView
        assert isinstance(view, SleeveView)
        return view

    def plan(self, t: np.datetime64, batch_id: str, batches: dict[str, TargetPortfolio | None],
             acct: AccountSnapshot, prices: np.ndarray, others: dict[str, float],
             held_marks: dict[str, float] | None = None) -> NettedPlan:
        """Size every sleeve, check the sum with the account limits, cross; sends nothing.
        ``held_marks``: the account's marks of what it holds (symbols outside the sleeves' universe)."""
        u = self.pipeline.universe
        names = tuple(s.name for s in self.sleeves)
        marks = {**(held_marks or {}), **dict(zip(u.symbols, np.nan_to_num(prices).tolist()))}
        held = np.array([self.book.held(n, u.symbols) for n in names]).reshape(len(names), len(u))
        equity = np.array([self.book.equity(n, marks) for n in names])
        target = held.copy()
        decisions: list[RiskDecision] = []
        for k, s in enumerate(self.sleeves):
            tp = batches.get(s.name)
            if tp is None:
                continue
            rm = self._risk.setdefault(s.name, RiskManager(s.limits))
            r = s.strategy.rebalance
            target[k], ds = sleeve_target(rm, tp, held[k], prices, float(equity[k]), self.book.day_start(s.name, t), u,
                                          r.cash_buffer_pct, r.drift_threshold)
            decisions += [replace(d, reason=f"sleeve {s.name}: {d.reason}") for d in ds]
        acct_risk = RiskManager(self.limits_beside(others, marks, acct.equity))
        target, ds, _ = account_check(acct_risk, t, batch_id, target, held, prices, acct.equity,
                                      acct.day_start_equity, u)
        decisions += [replace(d, reason=f"account: {d.reason}") for d in ds]
        crossed, residual = cross(target - held)
        return NettedPlan(batch_id, t, names, u.symbols, prices.copy(), equity, held, target, crossed, residual,
                          tuple(decisions))

    def limits_beside(self, others: dict[str, float], marks: dict[str, float], equity: float) -> RiskLimits:
        """The account limits left to the sleeves: positions no sleeve owns count toward the account's
        exposure and leverage and are never changed, so the sleeves share what remains."""
        L = self.account_limits
        gross = sum(abs(q) * marks.get(s, 0.0) for s, q in others.items()) / equity if equity > 0 else 0.0
        if gross <= 0:
            return L
        return L.model_copy(update={"max_exposure_pct": max(L.max_exposure_pct - gross, 0.0),
                                    "max_leverage": max(L.max_leverage - gross, 0.0)})

    def run(self, t: np.datetime64, batch_id: str, batches: dict[str, TargetPortfolio | None], *,
            dry_run: bool = False) -> PortfolioResult:
        """One portfolio cycle; with ``dry_run`` the plan only (nothing booked, nothing sent)."""
        p = self.pipeline
        inner = self.view.inner
        if not dry_run:
            settle_previous(p, t)                # fills since the last cycle size this one
        acct = inner.account()
        prices = inner.prices(p.universe)
        held = acct.positions or inner.positions()
        positions = {q.symbol: q.qty for q in held}
        self.book.fund(self.sleeves, acct.equity, t)     # committed with the plan (never on a dry run)
        owned = self.book.total_positions()
        others = {s: q - owned.get(s, 0.0) for s, q in positions.items() if abs(q - owned.get(s, 0.0)) > 1e-12}
        plan = self.book.plan(batch_id)
        if plan is None:
            plan = self.plan(t, batch_id, batches, acct, prices, others,
                             {q.symbol: float(q.market_price) for q in held if np.isfinite(q.market_price)})
            if not dry_run:
                self.book.record_plan(plan)
                self.book.commit()               # the crossings and shares are booked before any order
        target = _account_target(plan, p.universe, acct.equity, prices)
        self.view.freeze(acct, prices, others)
        if dry_run:
            return PortfolioResult(plan, None, {}, plan_cycle(p, target))
        res = run_cycle(p, target)
        return PortfolioResult(plan, res, self.mark(t))

    def mark(self, t: np.datetime64) -> dict[str, float]:
        """Record and return the sleeves', the rest's and the account's equity at the account's marks."""
        inner = self.view.inner
        acct = inner.account()
        held = acct.positions or inner.positions()
        u = self.pipeline.universe
        px = inner.prices(u)
        marks = {s: float(x) for s, x in zip(u.symbols, px.tolist()) if np.isfinite(x)}
        marks.update({q.symbol: float(q.market_price) for q in held if np.isfinite(q.market_price)})
        out = self.book.mark(t, self.run_id, acct.equity, acct.cash, {q.symbol: q.qty for q in held}, marks)
        self.book.commit()
        return out


def _account_target(plan: NettedPlan, universe: Universe, equity: float, prices: np.ndarray) -> TargetPortfolio:
    """The plan's account target on ``universe`` (a restored plan may list its symbols in another order)."""
    if plan.symbols == universe.symbols:
        return plan.account_target(equity, prices)
    qty = np.zeros(len(universe))
    for j, s in enumerate(plan.symbols):
        k = universe.index.get(s)
        if k is not None:
            qty[k] = plan.target[:, j].sum()
    px = np.where(np.isfinite(prices) & (prices > 0), prices, 0.0)
    w = qty * px / equity if equity > 0 else np.zeros(len(qty))
    return TargetPortfolio(plan.time, plan.batch_id, w, np.ones(len(w)), False)
