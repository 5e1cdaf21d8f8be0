"""The demo strategy: weekly time-series momentum over a mixed equity and crypto universe.

Every ``every`` days it ranks symbols by their ``lookback``-day return and targets the ``top``
strongest with a positive return, equally weighted up to ``gross``; confidence grows with the
strength of the trend. Output rows follow the signal archive format of SPEC section 4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def momentum_signals(bars: pd.DataFrame, *, lookback: int = 40, every: int = 7, top: int = 3,
                     gross: float = 0.9, strategy: str = "demo") -> pd.DataFrame:
    """The generator ``momentum`` (see strategies/__init__.py): archive rows for ``strategy``."""
    lookback, every, top = int(lookback), int(every), int(top)
    close = bars.pivot(index="timestamp", columns="symbol", values="close").sort_index().ffill()
    ret = close / close.shift(lookback) - 1.0
    days = close.index[lookback::every]
    rows = []
    for t in days:
        r = ret.loc[t].dropna().sort_values(ascending=False)
        winners = r[r > 0].head(top)
        w = gross / top
        for sym, value in r.items():
            picked = sym in winners.index
            conf = float(np.clip(0.5 + abs(value) * 2.0, 0.0, 1.0)) if picked else 0.9
            rows.append({"symbol": sym, "time": t.isoformat(), "regime": "trend" if picked else "flat",
                         "side": 1 if picked else 0, "weight": round(w if picked else 0.0, 6),
                         "confidence": round(conf, 4), "strategy": strategy})
    return pd.DataFrame(rows, columns=["symbol", "time", "regime", "side", "weight", "confidence", "strategy"])
