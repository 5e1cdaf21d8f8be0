"""A tiny deterministic run for report tests: prices -> rebalances -> fills -> cash accounting.

The accounting here (cash and positions, marked at the close) is deliberately independent of
``framework.reports.attribution`` so the attribution can be reconciled against it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from framework.reports.metrics import summary_metrics
from framework.reports.rundata import DECISION_COLUMNS, ORDER_COLUMNS, RunData

SYMBOLS = ("AAPL", "MSFT", "BTC/USD")


def price_path(times: pd.DatetimeIndex, seed: int = 7) -> pd.DataFrame:
    """Return a geometric random walk per symbol (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    start = np.array([180.0, 400.0, 40_000.0])
    steps = rng.normal(0.0004, [0.015, 0.012, 0.03], size=(len(times), len(SYMBOLS)))
    paths = start * np.exp(np.cumsum(steps, axis=0))
    paths[0] = start
    return pd.DataFrame(paths, index=times, columns=list(SYMBOLS))


def targets_at(k: int) -> np.ndarray:
    """Return the k-th target weights: a rotation that includes a short and a full exit."""
    book = [
        [0.30, 0.30, 0.20],
        [0.50, 0.10, 0.00],
        [0.10, -0.20, 0.40],
        [0.00, 0.35, 0.35],
        [0.25, 0.25, -0.10],
    ]
    return np.array(book[k % len(book)])


def build_run(
    n_bars: int = 260,
    freq: str = "B",
    every: int = 10,
    fee_rate: float = 0.001,
    slip_bps: float = 5.0,
    mode: str = "backtest",
    run_id: str = "bt-demo-001",
    seed: int = 7,
    cash0: float = 100_000.0,
    skip_rebalances: tuple[int, ...] = (),
    order_delay: pd.Timedelta | None = None,
    id_prefix: str = "demo",
    with_decisions: bool = True,
    periods_per_year: float = 252.0,
) -> RunData:
    """Simulate a rebalancing strategy at the close every ``every`` bars and return its RunData."""
    order_delay = pd.Timedelta(0) if order_delay is None else order_delay
    times = pd.date_range("2023-01-02 21:00", periods=n_bars, freq=freq, tz="UTC")
    prices = price_path(times, seed)
    cash, pos = cash0, np.zeros(len(SYMBOLS))
    equity_rows, fills, orders, decisions = [], [], [], []
    for i, t in enumerate(times):
        close = prices.iloc[i].to_numpy()
        k = i // every
        if i > 0 and i % every == 1 and k not in skip_rebalances:
            value = cash + pos @ close
            target_qty = targets_at(k) * value / close
            if with_decisions and k % 2 == 0:
                decisions.append({"time": t, "symbol": SYMBOLS[2], "rule": "max_position_size_pct",
                                  "action": "clip", "requested": 0.4, "approved": 0.2,
                                  "reason": "weight 0.40 above max_position_size_pct 0.20"})
            if with_decisions and k % 3 == 0:
                decisions.append({"time": t, "symbol": SYMBOLS[0], "rule": "min_confidence",
                                  "action": "reject", "requested": 0.3, "approved": 0.0,
                                  "reason": "confidence 0.41 below min_confidence 0.50"})
            for j, symbol in enumerate(SYMBOLS):
                delta = target_qty[j] - pos[j]
                if abs(delta * close[j]) < 1.0:
                    continue
                side = "buy" if delta > 0 else "sell"
                qty = abs(delta)
                price = close[j] * (1 + np.sign(delta) * slip_bps / 1e4)
                fee = qty * price * fee_rate
                cash -= delta * price + fee
                pos[j] += delta
                cid = f"{id_prefix}-{k}-{symbol}-0"
                fills.append({"time": t, "symbol": symbol, "side": side, "qty": qty, "price": price,
                              "fee": fee, "order_id": f"o-{run_id}-{k}-{j}", "client_order_id": cid,
                              "slippage": qty * abs(price - close[j])})
                orders.append({"time": t + order_delay, "symbol": symbol, "side": side, "qty": qty,
                               "type": "market", "status": "filled", "client_order_id": cid,
                               "filled_qty": qty, "avg_price": price})
        values = pos * close
        equity_rows.append({"time": t, "equity": cash + values.sum(), "cash": cash,
                            "gross_exposure": np.abs(values).sum(), "net_exposure": values.sum()})
    equity = pd.DataFrame(equity_rows)
    fills_df = pd.DataFrame(fills)
    summary = {
        "run_id": run_id, "strategy": "demo", "mode": mode,
        "broker": "sim" if mode == "backtest" else "alpaca",
        "config_hash": "sha256:0f1e2d3c4b5a", "start": times[0].isoformat(), "end": times[-1].isoformat(),
        **summary_metrics(equity.set_index("time")["equity"], fills_df, periods_per_year),
        "n_cycles": n_bars // every, "n_orders": len(orders), "n_fills": len(fills), "n_rejected": 0,
    }
    return RunData(
        summary=summary,
        equity=equity,
        fills=fills_df,
        orders=pd.DataFrame(orders),
        decisions=pd.DataFrame(decisions, columns=list(DECISION_COLUMNS)),
        prices=prices,
        periods_per_year=periods_per_year,
    )


def empty_run(mode: str = "live") -> RunData:
    """Return a run with a flat equity curve, no fills, no decisions and no prices."""
    times = pd.date_range("2024-03-01", periods=5, freq="D", tz="UTC")
    equity = pd.DataFrame({"time": times, "equity": 1000.0, "cash": 1000.0, "gross_exposure": 0.0,
                           "net_exposure": 0.0})
    fills = pd.DataFrame(columns=["time", "symbol", "side", "qty", "price", "fee", "order_id",
                                  "client_order_id"])
    summary = {"run_id": "live-empty", "strategy": "idle", "mode": mode, "broker": "coinbase",
               "config_hash": "sha256:aa", "start": times[0].isoformat(), "end": times[-1].isoformat(),
               **summary_metrics(equity.set_index("time")["equity"], fills, 365.0),
               "n_cycles": 0, "n_orders": 0, "n_fills": 0, "n_rejected": 0}
    return RunData(
        summary=summary, equity=equity, fills=fills,
        orders=pd.DataFrame(columns=list(ORDER_COLUMNS)),
        decisions=pd.DataFrame(columns=list(DECISION_COLUMNS)),
        prices=pd.DataFrame(), periods_per_year=365.0,
    )
