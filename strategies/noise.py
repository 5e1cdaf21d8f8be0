"""A generator with no skill: random long-only weights from a seed (the null hypothesis of a sweep).

Sweeping ``generator.seed`` over many values gives many strategies whose Sharpe ratios are pure
luck: the best of them looks good, and its Deflated Sharpe Ratio (SPEC §19) says it is not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def noise_signals(bars: pd.DataFrame, *, strategy: str, seed: int = 0, every: int = 5, top: int = 2,
                  gross: float = 0.9) -> pd.DataFrame:
    times = pd.DatetimeIndex(sorted(bars["timestamp"].unique()))[::every]
    symbols = sorted(bars["symbol"].unique())
    rng = np.random.default_rng(int(seed))
    rows = []
    for t in times:
        picked = set(rng.choice(symbols, size=min(top, len(symbols)), replace=False).tolist())
        for sym in symbols:
            on = sym in picked
            rows.append({"symbol": sym, "time": t.isoformat(), "side": 1 if on else 0,
                         "weight": round(gross / top, 6) if on else 0.0, "confidence": 0.9, "strategy": strategy})
    return pd.DataFrame(rows, columns=["symbol", "time", "side", "weight", "confidence", "strategy"])
