"""Track records: several runs of one strategy read from the ledger as one ``RunData``.

Every ``parity execute`` is its own run with one cycle; a paper or live track record is the
sequence of those runs (plus the nightly equity snapshots). ``load_track`` concatenates their
ledger rows, so the same report, metrics and comparison code serve a single run and a track
record. Orders repeated across runs (a re-run of the same batch) are kept once, in their latest
state; fills are unique already (the live loop books a fill once per client order id).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from framework.ledger import Ledger, unpack_prices

TABLES = ("equity", "fills", "orders", "decisions", "cycles")
EQUITY = ("time", "equity", "cash", "gross_exposure", "net_exposure")
FILLS = ("time", "symbol", "side", "qty", "price", "fee", "broker_order_id", "client_order_id", "slippage")
ORDERS = ("time", "symbol", "side", "qty", "type", "status", "client_order_id", "filled_qty", "avg_price")
DECISIONS = ("time", "symbol", "rule", "action", "requested", "approved", "reason")
NUMERIC = {"equity", "cash", "gross_exposure", "net_exposure", "qty", "price", "fee", "slippage",
           "filled_qty", "avg_price", "requested", "approved"}


def ledger_runs(ledger: Ledger, *, strategy: str | None = None, modes: tuple[str, ...] | None = None,
                broker: str | None = None, config_hash: str | None = None) -> list[dict]:
    """Return the runs matching every given filter, oldest first."""
    return ledger.find_runs(strategy=strategy, modes=modes, broker=broker, config_hash=config_hash)


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True, format="ISO8601")


def _frame(ledger: Ledger, table: str, run_ids: list[str], until: str | None) -> pd.DataFrame:
    return ledger.frames_of(table, run_ids, until)


def track_frames(ledger: Ledger, run_ids: list[str], until: str | None = None) -> dict[str, pd.DataFrame]:
    """Return the raw ledger rows of ``run_ids`` (times before ``until``, an ISO string, when given)."""
    frames = {t: _frame(ledger, t, run_ids, until) for t in TABLES}
    orders = frames["orders"]
    if len(orders):
        orders = orders.sort_values("updated_at", kind="stable")
        orders = orders.drop_duplicates("client_order_id", keep="last")
        orders = orders.sort_values(["time", "client_order_id"], kind="stable")
        frames["orders"] = orders.reset_index(drop=True)
    return frames


def cycle_prices(ledger: Ledger, cycles: pd.DataFrame) -> pd.DataFrame:
    """Return the sizing prices of ``cycles`` as a wide frame (UTC time x symbol, union of universes)."""
    if cycles.empty:
        return pd.DataFrame()
    universes: dict[str, list[str]] = {}
    parts = []
    for run_id, group in cycles.groupby("run_id", sort=False):
        if run_id not in universes:
            universes[run_id] = ledger.universe_of(run_id)
        cols = universes[run_id]
        if not cols:
            continue
        mat = np.vstack([unpack_prices(b) for b in group["prices"]])
        if mat.shape[1] != len(cols):
            continue
        parts.append(pd.DataFrame(mat, index=_utc(group["time"]), columns=cols))
    if not parts:
        return pd.DataFrame()
    wide = pd.concat(parts).sort_index(kind="stable")
    return wide.groupby(level=0).last()


def daily_closes(equity: pd.DataFrame) -> pd.DataFrame:
    """Keep the first observation and the last observation of each UTC day."""
    if equity.empty:
        return equity
    eq = equity.sort_values("time", kind="stable").reset_index(drop=True)
    last = eq.groupby(eq["time"].dt.normalize(), sort=True).tail(1).index
    keep = sorted(set(last) | {0})
    return eq.loc[keep].reset_index(drop=True)


def load_track(ledger: Ledger, run_ids: list[str], *, label: dict, until: str | None = None,
               daily: bool = False):
    """Return the runs ``run_ids`` as one RunData labelled by ``label`` (run_id, strategy, mode, broker,
    config_hash).

    ``daily`` keeps one equity observation per UTC day (the last, plus the very first as the
    start) and annualises with 252 periods (365 when every symbol is crypto).
    """
    from framework.artifacts import summarize
    from framework.reports.rundata import RunData, periods_per_year_for

    f = track_frames(ledger, run_ids, until) if run_ids else {t: pd.DataFrame() for t in TABLES}
    equity = _typed(f["equity"], EQUITY)
    if len(equity):
        equity = equity.sort_values("time", kind="stable").drop_duplicates("time", keep="last")
        equity = equity.reset_index(drop=True)
    if daily:
        equity = daily_closes(equity)
    fills = _typed(f["fills"], FILLS).rename(columns={"broker_order_id": "order_id"})
    orders = _typed(f["orders"], ORDERS)
    decisions = _typed(f["decisions"], DECISIONS)
    cycles = f["cycles"]
    prices = cycle_prices(ledger, cycles) if len(cycles) else pd.DataFrame()
    symbols = list(prices.columns) if not prices.empty else sorted(set(fills["symbol"]))
    crypto_only = bool(symbols) and all("/" in s for s in symbols)
    if daily:
        ppy = 365.0 if crypto_only else 252.0
    else:
        ppy = periods_per_year_for(pd.DatetimeIndex(equity["time"]), crypto_only)
    run = {**label, "initial_equity": float(equity["equity"].iloc[0]) if len(equity) else None}
    summary = summarize(run, equity, fills, orders, cycles if len(cycles) else pd.DataFrame({"status": []}),
                        ppy)
    return RunData(summary, equity, fills, orders, decisions, prices, float(ppy))


def _typed(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    if df.empty:
        out = pd.DataFrame({c: pd.Series(dtype=float if c in NUMERIC else object) for c in columns})
        out["time"] = pd.Series(dtype="datetime64[ns, UTC]")
        return out
    out = df[list(columns)].copy()
    out["time"] = _utc(out["time"])
    return out.reset_index(drop=True)
