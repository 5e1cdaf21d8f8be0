"""A deterministic sample market for ``parity demo``: daily bars for a few equities (NYSE
sessions) and crypto pairs (every calendar day), generated from a fixed seed. Not real prices."""

from __future__ import annotations

import numpy as np
import pandas as pd

EQUITIES = {"SPY": (420.0, 0.07, 0.17), "AAPL": (180.0, 0.12, 0.28), "MSFT": (370.0, 0.10, 0.26),
            "IBM": (140.0, 0.04, 0.22)}
CRYPTO = {"BTC/USD": (42000.0, 0.25, 0.60), "ETH/USD": (2300.0, 0.20, 0.75)}


def _path(rng: np.random.Generator, n: int, start: float, drift: float, vol: float, periods: float) -> pd.DataFrame:
    dt = 1.0 / periods
    # a regime-switching drift so that momentum has something to find
    regime = np.repeat(rng.choice([-1.0, 1.0], size=n // 60 + 1), 60)[:n]
    mu = (drift + 0.35 * regime * vol) * dt
    r = mu - 0.5 * vol * vol * dt + vol * np.sqrt(dt) * rng.standard_normal(n)
    close = start * np.exp(np.cumsum(r))
    prev = np.concatenate([[start], close[:-1]])
    open_ = prev * np.exp(0.1 * vol * np.sqrt(dt) * rng.standard_normal(n))
    span = np.abs(rng.standard_normal(n)) * vol * np.sqrt(dt) * 0.6
    high = np.maximum(open_, close) * np.exp(span)
    low = np.minimum(open_, close) * np.exp(-span)
    volume = np.round(rng.lognormal(15.0, 0.3, n) / np.sqrt(start), 4)
    return pd.DataFrame({"open": open_.round(4), "high": high.round(4), "low": low.round(4),
                         "close": close.round(4), "volume": volume})


def sample_bars(start: str = "2021-01-04", end: str = "2023-12-29", seed: int = 7) -> pd.DataFrame:
    """Long-format bars (timestamp, symbol, open, high, low, close, volume), sorted by time then symbol."""
    from framework.calendars import sessions as nyse_sessions

    rng = np.random.default_rng(seed)
    sessions = nyse_sessions(start, end, "XNYS")
    days = pd.date_range(start, end, freq="D")
    frames = []
    for sym, (p0, mu, vol) in EQUITIES.items():
        df = _path(rng, len(sessions), p0, mu, vol, 252.0)
        df.insert(0, "symbol", sym)
        df.insert(0, "timestamp", pd.DatetimeIndex(sessions).tz_localize("UTC"))
        frames.append(df)
    for sym, (p0, mu, vol) in CRYPTO.items():
        df = _path(rng, len(days), p0, mu, vol, 365.0)
        df.insert(0, "symbol", sym)
        df.insert(0, "timestamp", days.tz_localize("UTC"))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)
