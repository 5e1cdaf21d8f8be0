"""Calibration: fit the simulator's slippage to recorded fills and check the venue's fee settings.

Slippage. The paper/live window is replayed once with no slippage at all: each simulated fill
price is then the simulator's *base* price for that order (the sizing price under ``fill:
close``, the next open under ``next_open``, ...). Each matched order gives one observation,
``y = side × (paper fill − base) / base`` in basis points, weighted by its notional:

- ``fixed_bps`` = the notional-weighted mean of ``y`` (floored at 0: the simulator has no
  price improvement);
- ``spread_impact``: ``y = spread_bps / 2 + k × x`` with ``x = σ × sqrt(qty / ADV) × 1e4`` (σ and
  ADV over the strategy's ``lookback`` bars before the fill bar, as the simulator computes them),
  fitted by weighted least squares with both coefficients kept non-negative. Without volume
  information (bars built from cycle prices) ``x`` is zero, ``k`` keeps its configured value and
  only the spread is fitted.

Fees. Every recorded fill's fee is compared with what the venue file charges for the same fill
(taker rate of the configured tier plus regulatory fees). When they differ by more than a cent
and 1 %, the taker rate that would have produced the recorded total is proposed for that asset
class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from framework.config import SlippageSettings
from framework.data import BarArrays
from framework.errors import UsageError
from framework.venue_config import VenueConfig


@dataclass(frozen=True, slots=True)
class SlippageFit:
    """The fitted coefficients and the observations they came from."""

    n: int
    fixed_bps: float
    spread_bps: float
    k: float
    k_fitted: bool
    mean_bps: float | None

    def settings(self, model: str, current: SlippageSettings) -> SlippageSettings:
        """The slippage settings to propose for ``model``, other fields as they are."""
        if model == "spread_impact":
            return current.model_copy(update={"model": "spread_impact", "k": round(self.k, 6),
                                              "spread_bps": round(self.spread_bps, 4)})
        return current.model_copy(update={"model": "fixed_bps", "bps": round(self.fixed_bps, 4)})


def observations(rows: pd.DataFrame, bars: BarArrays, fill: str, lookback: int) -> pd.DataFrame:
    """From the reconciliation rows of a zero-slippage replay: y (bps vs base), notional weight and x."""
    ok = rows.dropna(subset=["shortfall_bps"])
    if ok.empty:
        return pd.DataFrame(columns=["symbol", "y", "w", "x"])
    close = pd.DataFrame(bars.close, columns=list(bars.symbols)).ffill()
    sigma = close.pct_change(fill_method=None).rolling(lookback, min_periods=2).std().shift(1)
    volume = pd.DataFrame(bars.volume, columns=list(bars.symbols))
    adv = volume.rolling(lookback, min_periods=1).mean().shift(1)
    times = bars.times
    xs = []
    for r in ok.itertuples(index=False):
        t = np.datetime64(pd.Timestamp(r.time).tz_convert("UTC").tz_localize(None).to_datetime64(), "ns")
        k = int(np.searchsorted(times, t, "right")) - 1 + (0 if fill == "close" else 1)
        x = 0.0
        if 0 <= k < len(times) and r.symbol in sigma.columns:
            s, a = float(sigma[r.symbol].iloc[k]), float(adv[r.symbol].iloc[k])
            if np.isfinite(s) and np.isfinite(a) and a > 0:
                x = s * np.sqrt(float(r.paper_filled) / a) * 1e4
        xs.append(x)
    return pd.DataFrame({"symbol": ok["symbol"].to_numpy(), "y": ok["shortfall_bps"].astype(float).to_numpy(),
                         "w": (ok["paper_filled"] * ok["sim_price"]).astype(float).abs().to_numpy(),
                         "x": np.array(xs)})


def fit_slippage(obs: pd.DataFrame, current: SlippageSettings) -> SlippageFit:
    """Fit fixed bps and the spread/impact coefficients (definitions in the module docstring)."""
    if obs.empty or obs["w"].sum() <= 0:
        return SlippageFit(0, current.bps, current.spread_bps, current.k, False, None)
    y, w, x = (obs[c].astype(float).to_numpy() for c in ("y", "w", "x"))
    w = w / w.sum()
    mean = float((w * y).sum())
    k, fitted = current.k, False
    if (x > 0).sum() >= 3 and np.ptp(x) > 1e-9:
        xm = float((w * x).sum())
        var = float((w * (x - xm) ** 2).sum())
        k = float((w * (x - xm) * (y - mean)).sum() / var)
        fitted = True
        a = mean - k * xm
        if k < 0:
            k, a = 0.0, mean
        if a < 0:
            a, k = 0.0, max(float((w * x * y).sum() / (w * x * x).sum()), 0.0)
    else:
        a = mean - k * float((w * x).sum())
    return SlippageFit(len(obs), max(mean, 0.0), max(2.0 * a, 0.0), k, fitted, mean)


def fee_check(fills: pd.DataFrame, venue: VenueConfig, tier: int) -> list[dict]:
    """Recorded fees against the venue file's, per asset class (see the module docstring)."""
    from framework.costs import CostInputs, VenueFees
    from framework.symbols import is_crypto

    if fills.empty:
        return []
    model = VenueFees.from_venue(venue, tier)
    f = fills.copy()
    f["crypto"] = [is_crypto(s) for s in f["symbol"]]
    side = np.where(f["side"].str.lower() == "buy", 1, -1)
    qty, price = f["qty"].astype(float).to_numpy(), f["price"].astype(float).to_numpy()
    f["model"] = model.fees(CostInputs(qty, price, side, f["crypto"].to_numpy(bool)))
    f["notional"] = (f["qty"].astype(float) * f["price"].astype(float)).abs()
    out = []
    for crypto, g in f.groupby("crypto", sort=True):
        ac = "crypto" if crypto else "equity"
        rules = venue.asset_classes.get(ac)
        tiers = rules.fees.tiers if rules is not None else []
        configured = tiers[min(tier, len(tiers) - 1)].taker_bps if tiers else 0.0
        recorded, modelled = float(g["fee"].sum()), float(g["model"].sum())
        notional = float(g["notional"].sum())
        diff = recorded - modelled
        ok = abs(diff) <= max(0.01, 0.01 * abs(modelled))
        implied = configured + (diff / notional * 1e4 if notional > 0 else 0.0)
        out.append({"asset_class": ac, "fills": len(g), "notional": notional, "recorded": recorded,
                    "model": modelled, "difference": diff, "tier": tier, "configured_taker_bps": configured,
                    "implied_taker_bps": max(implied, 0.0), "ok": bool(ok)})
    return out


def write_settings(strategy, venue, proposed: SlippageSettings, fees: list[dict]) -> list[str]:
    """Write the proposed slippage into the strategy file and mismatched taker rates into the venue file.

    Every edit is worked out before anything is written, so a file this cannot edit leaves both as they were.
    """
    from framework.ops.yamledit import set_mapping, set_tier_taker

    keys = ("model", "bps") if proposed.model == "fixed_bps" else ("model", "spread_bps", "k")
    src, vsrc = Path(strategy.source), Path(venue.source)
    text = src.read_text(encoding="utf-8")
    new = set_mapping(text, "simulation", "slippage", {k: getattr(proposed, k) for k in keys})
    if new is None:
        raise UsageError(f"{src}: simulation.slippage is written in a form this command does not edit; "
                         "set it by hand")
    vtext = vnew = vsrc.read_text(encoding="utf-8")
    changed_tiers = []
    for f in fees:
        if f["ok"]:
            continue
        edited = set_tier_taker(vnew, f["asset_class"], f["tier"], round(f["implied_taker_bps"], 2))
        if edited is None:
            raise UsageError(f"{vsrc}: asset_classes.{f['asset_class']}.fees.tiers[{f['tier']}] is not a "
                             "one-line mapping; set taker_bps by hand")
        vnew = edited
        changed_tiers.append(f"{f['asset_class']} tier {f['tier']}")
    written = []
    if new != text:
        src.write_text(new, encoding="utf-8")
        written.append(str(src))
    if vnew != vtext:
        vsrc.write_text(vnew, encoding="utf-8")
        written.append(f"{vsrc} ({', '.join(changed_tiers)})")
    return written
