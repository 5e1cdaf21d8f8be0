"""Cost models used by the simulator: fees and slippage, as one-method objects over arrays.

Each model takes a ``CostInputs`` parameter object so that new inputs can be added without
changing every signature. Buys pay up and sells receive less: the execution price is
``reference * (1 + side * slippage_fraction)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from framework.config import SlippageSettings
from framework.venue_config import VenueConfig


@dataclass(frozen=True, slots=True)
class CostInputs:
    """What a cost model may look at, one entry per order or fill (arrays of the same length)."""

    qty: np.ndarray          # positive
    price: np.ndarray        # execution price for fees, reference price for slippage
    side: np.ndarray         # +1 buy, -1 sell
    crypto: np.ndarray       # bool
    sigma: np.ndarray | None = None   # per-bar return volatility (spread_impact)
    adv: np.ndarray | None = None     # average bar volume (spread_impact)


class FeeModel(Protocol):
    def fees(self, x: CostInputs) -> np.ndarray: ...


class SlippageModel(Protocol):
    def fraction(self, x: CostInputs) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class NoFees:
    def fees(self, x: CostInputs) -> np.ndarray:
        return np.zeros(len(x.qty))


@dataclass(frozen=True, slots=True)
class VenueFees:
    """A venue's taker rate per asset class plus regulatory fees on equity sells.

    Market orders take liquidity, so the taker rate of the configured tier applies. Regulatory
    sell fees: SEC fee on the sale's notional, FINRA TAF per share with a per-trade cap; the CAT
    fee per share is charged on buys and sells (as Alpaca passes it through).
    """

    equity_bps: float
    crypto_bps: float
    sec_per_dollar: float = 0.0
    taf_per_share: float = 0.0
    taf_max: float = 0.0
    cat_per_share: float = 0.0

    @classmethod
    def from_venue(cls, venue: VenueConfig, tier: int = 0) -> VenueFees:
        def taker(ac: str) -> float:
            rules = venue.asset_classes.get(ac)
            if rules is None:
                return 0.0
            tiers = rules.fees.tiers
            return tiers[min(tier, len(tiers) - 1)].taker_bps

        eq = venue.asset_classes.get("equity")
        reg = eq.fees.sell_regulatory if eq is not None else None
        return cls(
            equity_bps=taker("equity"), crypto_bps=taker("crypto"),
            sec_per_dollar=reg.sec_fee_per_dollar if reg else 0.0,
            taf_per_share=reg.finra_taf_per_share if reg else 0.0,
            taf_max=reg.finra_taf_max_per_trade if reg else 0.0,
            cat_per_share=reg.cat_fee_per_share if reg else 0.0,
        )

    def rate(self, crypto: np.ndarray) -> np.ndarray:
        return np.where(crypto, self.crypto_bps, self.equity_bps) * 1e-4

    def fees(self, x: CostInputs) -> np.ndarray:
        notional = x.qty * x.price
        fee = notional * self.rate(x.crypto)
        if self.sec_per_dollar or self.taf_per_share or self.cat_per_share:
            equity = ~x.crypto
            equity_sell = equity & (x.side < 0)
            taf = np.minimum(x.qty * self.taf_per_share, self.taf_max) if self.taf_max > 0 else x.qty * self.taf_per_share
            fee = fee + np.where(equity_sell, notional * self.sec_per_dollar + taf, 0.0)
            fee = fee + np.where(equity, x.qty * self.cat_per_share, 0.0)   # CAT: both sides
        return fee


@dataclass(frozen=True, slots=True)
class FlatFees:
    """One rate for every fill (benchmarks and tests)."""

    bps: float

    def fees(self, x: CostInputs) -> np.ndarray:
        return x.qty * x.price * (self.bps * 1e-4)


@dataclass(frozen=True, slots=True)
class FixedBps:
    """Slippage of a fixed number of basis points on every fill."""

    bps: float = 5.0

    def fraction(self, x: CostInputs) -> np.ndarray:
        out = np.empty(len(x.qty))
        out.fill(self.bps * 1e-4)
        return out


@dataclass(frozen=True, slots=True)
class SpreadImpact:
    """Half the quoted spread plus k * sigma * sqrt(qty / ADV) (square-root impact)."""

    spread_bps: float = 2.0
    k: float = 0.1

    def fraction(self, x: CostInputs) -> np.ndarray:
        half = self.spread_bps * 0.5e-4
        if x.sigma is None or x.adv is None:
            return np.full(len(x.qty), half)
        with np.errstate(divide="ignore", invalid="ignore"):
            part = np.where(x.adv > 0, x.qty / x.adv, 0.0)
        impact = self.k * np.nan_to_num(x.sigma) * np.sqrt(np.clip(part, 0.0, None))
        return half + impact


def slippage_model(s: SlippageSettings) -> SlippageModel:
    if s.model == "spread_impact":
        return SpreadImpact(s.spread_bps, s.k)
    return FixedBps(s.bps)
