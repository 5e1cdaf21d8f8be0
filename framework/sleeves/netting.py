"""The netting arithmetic of SPEC §18, as pure functions on arrays (sleeves x symbols).

Each sleeve's target quantities come from its own risk-approved weights on its own equity. The
sleeves' targets are summed per symbol and checked again with the account's limits (a symbol the
account check scales is scaled in every sleeve by the same factor, so each sleeve keeps its share).
Per symbol, what the sleeves buy and what they sell cross inside the account at the cycle's
reference price (no fee, never sent); what remains is one netted order, and its fills belong to
the sleeves on the net side in proportion to what each still asked for (``residual``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.decisions import Decisions
from framework.risk import RiskManager
from framework.types import RiskDecision, TargetPortfolio, Universe

EPS = 1e-12


@dataclass(frozen=True, slots=True, eq=False)
class NettedPlan:
    """One portfolio cycle: what each sleeve asked for, what crossed inside, what goes to the venue.

    Arrays are (sleeves, symbols); quantities signed (+ buy / long). ``crossed`` is what each sleeve
    receives from the other sleeves inside the account at ``prices``; ``residual`` what it still needs
    from the venue (all residuals of a symbol share the net order's side)."""

    batch_id: str
    time: np.datetime64
    names: tuple[str, ...]
    symbols: tuple[str, ...]
    prices: np.ndarray
    equity: np.ndarray          # each sleeve's equity at sizing
    held: np.ndarray
    target: np.ndarray
    crossed: np.ndarray
    residual: np.ndarray
    decisions: tuple[RiskDecision, ...] = ()

    @property
    def delta(self) -> np.ndarray:
        return self.target - self.held

    def account_qty(self) -> np.ndarray:
        """The account target: the sleeves' target quantities summed per symbol."""
        return self.target.sum(axis=0)

    def account_target(self, equity: float, prices: np.ndarray) -> TargetPortfolio:
        """The account target as weights of ``equity`` at ``prices`` (what the one pipeline takes)."""
        px = np.where(np.isfinite(prices) & (prices > 0), prices, 0.0)
        w = self.account_qty() * px / equity if equity > 0 else np.zeros(len(px))
        return TargetPortfolio(self.time, self.batch_id, w, np.ones(len(w)), False)


def sleeve_target(risk: RiskManager, target: TargetPortfolio, held: np.ndarray, prices: np.ndarray, equity: float,
                  day_start: float | None, universe: Universe, cash_buffer: float, drift: float
                  ) -> tuple[np.ndarray, Decisions]:
    """Target quantities of one sleeve: its batch approved by its strategy's limits on its equity,
    less its cash buffer. An addition smaller than ``drift`` x equity is left out; a reduction never
    is, so a position that grew past its limit is always brought back under it."""
    res = risk.approve(target, held, prices, equity, day_start, universe)
    if res.halted:
        return held.copy(), res.decisions
    ok = np.isfinite(prices) & (prices > 0)
    safe = np.where(ok, prices, 1.0)
    tq = np.where(ok, res.weights * equity * (1.0 - cash_buffer) / safe, held)
    adds = (np.sign(tq) == np.sign(held)) & (np.abs(tq) > np.abs(held)) | (np.abs(held) <= EPS)
    small = (np.abs((tq - held) * safe) < drift * equity) & (np.abs(tq) > EPS) & adds
    return np.where(small, held, tq), res.decisions


def account_check(risk: RiskManager, t: np.datetime64, batch_id: str, target: np.ndarray, held: np.ndarray,
                  prices: np.ndarray, equity: float, day_start: float | None, universe: Universe
                  ) -> tuple[np.ndarray, Decisions, bool]:
    """The sleeves' summed targets checked with the account limits; returns the sleeves' targets with
    every symbol the check changed scaled by the same factor in each sleeve (halted: all held)."""
    total = target.sum(axis=0)
    ok = np.isfinite(prices) & (prices > 0)
    px = np.where(ok, prices, 0.0)
    w = total * px / equity if equity > 0 else np.zeros(len(total))
    tp = TargetPortfolio(t, batch_id, w, np.ones(len(w)), False)
    res = risk.approve(tp, held.sum(axis=0), prices, equity, day_start, universe)
    if res.halted:
        return held.copy(), res.decisions, True
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(np.abs(w) > EPS, res.weights / np.where(np.abs(w) > EPS, w, 1.0), 1.0)
    factor = np.clip(np.nan_to_num(factor, nan=1.0), 0.0, 1.0)
    return target * factor[None, :], res.decisions, False


def cross(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(crossed, residual) of the sleeves' deltas per symbol: buys and sells meet inside the account
    up to the smaller of the two, shared pro rata on each side; the rest is the net order's."""
    buys = np.where(delta > 0, delta, 0.0)
    sells = np.where(delta < 0, -delta, 0.0)
    b, s = buys.sum(axis=0), sells.sum(axis=0)
    c = np.minimum(b, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        fb = np.where(b > 0, c / np.where(b > 0, b, 1.0), 0.0)
        fs = np.where(s > 0, c / np.where(s > 0, s, 1.0), 0.0)
    crossed = buys * fb[None, :] - sells * fs[None, :]
    return crossed, delta - crossed


def shares(amount: float, weights: np.ndarray) -> np.ndarray:
    """``amount`` split in proportion to ``weights`` (>= 0); the last positive weight takes what the
    others leave, so the parts add up to ``amount`` exactly."""
    out = np.zeros(len(weights))
    tot = float(weights.sum())
    live = np.flatnonzero(weights > 0)
    if tot <= 0 or not len(live):
        return out
    out[live] = amount * weights[live] / tot
    out[live[-1]] = amount - float(out[live[:-1]].sum())
    return out


def fill_shares(residual: np.ndarray, side: int, qty: float) -> np.ndarray | None:
    """A netted fill of ``qty`` on ``side`` split among the sleeves whose residual is on that side,
    in proportion to what each still asked for (None when no sleeve asked for that side)."""
    want = np.where(np.sign(residual) == side, np.abs(residual), 0.0)
    if want.sum() <= 0:
        return None
    return shares(qty, want)


def crossing_cash(crossed: np.ndarray, price: float) -> np.ndarray:
    """Cash each sleeve pays (-) or receives (+) for its internal crossing at ``price``; the buyers
    pay exactly what the sellers receive."""
    cash = -crossed * price
    received = float(cash[cash > 0].sum())
    buyers = np.flatnonzero(cash < 0)
    if len(buyers):
        cash[buyers] = -shares(received, -cash[buyers])
    return cash
