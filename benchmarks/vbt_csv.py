"""The vectorbt peer's whole process on the whole-command benchmark's CSV files.

    python -m benchmarks.vbt_csv BARS.csv SIGNALS.csv [--fees F] [--slippage S] [--cash C]

What a vectorbt user writes for the same backtest: pandas reads the long bar CSV and the signal
CSV, pivots them wide, ``Portfolio.from_orders`` with ``size_type="targetpercent"`` rebalances at
every batch (a symbol absent from a batch is targeted at 0), sized with the batch bar's close and
filled at the next bar's open (SPEC §6 ``next_open``, conventions of :mod:`benchmarks.peers`), then
the equity curve and ``pf.stats()``. Prints ``{"final_equity": ..., "n_orders": ...}`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vbt_csv")
    ap.add_argument("bars")
    ap.add_argument("signals")
    ap.add_argument("--fees", type=float, default=0.0)
    ap.add_argument("--slippage", type=float, default=0.0005)
    ap.add_argument("--cash", type=float, default=1_000_000.0)
    a = ap.parse_args(argv)

    import pandas as pd
    import vectorbt as vbt

    bars = pd.read_csv(a.bars)
    bars["timestamp"] = pd.to_datetime(bars["timestamp"], utc=True, format="ISO8601")
    close = bars.pivot(index="timestamp", columns="symbol", values="close").sort_index()
    open_ = bars.pivot(index="timestamp", columns="symbol", values="open").reindex_like(close)
    del bars
    sig = pd.read_csv(a.signals)
    sig["time"] = pd.to_datetime(sig["time"], utc=True, format="ISO8601")
    sig["target"] = sig["side"] * sig["weight"]
    target = sig.pivot(index="time", columns="symbol", values="target").reindex(columns=close.columns)
    target = target.fillna(0.0)                    # absent from a batch: close it
    # decided at the batch bar t, executed on row t+1 at its open, sized with close[t]
    pos = close.index.get_indexer(target.index)
    size = np.full(close.shape, np.nan)
    ok = (pos >= 0) & (pos + 1 < len(close))
    size[pos[ok] + 1] = target.to_numpy()[ok]
    pf = vbt.Portfolio.from_orders(
        close, size, price=open_, val_price=-np.inf, size_type="targetpercent", direction="longonly",
        fees=a.fees, slippage=a.slippage, min_size=0.0, size_granularity=np.nan, allow_partial=True,
        init_cash=a.cash, cash_sharing=True, group_by=True, call_seq="auto", update_value=False,
        ffill_val_price=True, freq=pd.Series(close.index).diff().median())   # business days defeat inference
    equity = pf.value()
    stats = pf.stats()
    print(json.dumps({"final_equity": float(np.asarray(equity).reshape(-1)[-1]),
                      "n_orders": len(pf.order_records), "total_return": float(stats["Total Return [%]"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
