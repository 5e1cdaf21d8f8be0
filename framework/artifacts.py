"""Run artifacts from the ledger: ``reports/RUN_ID/`` with summary.json and the CSVs of SPEC §9.

Everything here reads the ledger tables only, so a backtest, a paper run and a live run produce
the same files by the same code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from framework.ledger import Ledger, unpack_prices

SUMMARY_KEYS = ("run_id", "strategy", "mode", "broker", "config_hash", "start", "end", "initial_equity",
                "final_equity", "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar",
                "turnover", "n_cycles", "n_orders", "n_fills", "n_rejected", "fees_paid", "slippage_cost")


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True, format="ISO8601")


def load_run(ledger: Ledger, run_id: str):
    """Build the RunData of one run from the ledger (the only input of reports)."""
    from framework.reports.rundata import RunData, periods_per_year_for

    run = ledger.run(run_id)
    if run is None:
        from framework.errors import UsageError

        raise UsageError(f"no run {run_id!r} in {ledger.path} (see `parity runs`)")
    equity = ledger.frame("equity", run_id, "time")
    equity["time"] = _utc(equity["time"])
    equity = equity[["time", "equity", "cash", "gross_exposure", "net_exposure"]]
    fills = ledger.frame("fills", run_id)
    fills["time"] = _utc(fills["time"])
    fills = fills.rename(columns={"broker_order_id": "order_id"})
    fills = fills[["time", "symbol", "side", "qty", "price", "fee", "order_id", "client_order_id", "slippage"]]
    orders = ledger.frame("orders", run_id)
    orders["time"] = _utc(orders["time"])
    orders = orders[["time", "symbol", "side", "qty", "type", "status", "client_order_id", "filled_qty", "avg_price",
                     "leg"]]
    # which part of a cycle each fill belongs to: a protective exit (``stop``, ``take``, SPEC §20)
    # shows as its own rows, next to the cycle's ``reduce``/``add`` legs
    fills["leg"] = fills["client_order_id"].map(orders.drop_duplicates("client_order_id", keep="last")
                                                .set_index("client_order_id")["leg"])
    decisions = ledger.frame("decisions", run_id)
    decisions["time"] = _utc(decisions["time"])
    decisions = decisions[["time", "symbol", "rule", "action", "requested", "approved", "reason"]]
    cycles = ledger.frame("cycles", run_id, "seq")
    universe = json.loads(run["universe"] or "[]")
    if len(cycles) and universe:
        mat = np.vstack([unpack_prices(b) for b in cycles["prices"]])
        prices = pd.DataFrame(mat, index=_utc(cycles["time"]), columns=universe)
        prices = prices[~prices.index.duplicated(keep="last")].sort_index()
    else:
        prices = pd.DataFrame()
    settings = json.loads(run["settings"] or "{}")
    crypto_only = bool(universe) and all("/" in s for s in universe)
    ppy = settings.get("periods_per_year") or periods_per_year_for(pd.DatetimeIndex(equity["time"]), crypto_only)
    summary = summarize(run, equity, fills, orders, cycles, ppy)
    return RunData(summary, equity, fills, orders, decisions, prices, float(ppy))


def summarize(run: dict, equity: pd.DataFrame, fills: pd.DataFrame, orders: pd.DataFrame, cycles: pd.DataFrame,
              periods_per_year: float) -> dict:
    from framework.reports.metrics import summary_metrics

    eq = equity.set_index("time")["equity"]
    m = summary_metrics(eq, fills, periods_per_year)
    if run.get("initial_equity") is not None:
        m["initial_equity"] = float(run["initial_equity"])
    out = {
        "run_id": run["run_id"], "strategy": run["strategy"], "mode": run["mode"], "broker": run["broker"],
        "config_hash": run["config_hash"],
        "start": equity["time"].iloc[0].isoformat() if len(equity) else run.get("start"),
        "end": equity["time"].iloc[-1].isoformat() if len(equity) else run.get("end"),
        **m,
        "n_cycles": int((cycles["status"] != "mark").sum()) if len(cycles) else 0,
        "n_orders": int(len(orders)),
        "n_fills": int(len(fills)),
        "n_rejected": int((orders["status"] == "rejected").sum()) if len(orders) else 0,
    }
    return {k: out.get(k) for k in SUMMARY_KEYS}


def write_artifacts(ledger: Ledger, run_id: str, reports_dir: str | Path, report: bool = True) -> Path:
    """Write reports/RUN_ID/: summary.json, equity/orders/fills/decisions CSVs and report.html."""
    data = load_run(ledger, run_id)
    out = Path(reports_dir) / run_id
    write_run_files(data, out, report=report)
    ledger.set_artifacts(run_id, str(out))
    return out


def write_run_files(data, out: Path, report: bool = True) -> None:
    """summary.json, the four CSVs of SPEC section 9 and (optionally) report.html for one RunData."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(data.summary, indent=2, default=str) + "\n")
    _csv(data.equity, out / "equity.csv")
    _csv(data.orders, out / "orders.csv")
    _csv(data.fills[["time", "symbol", "side", "qty", "price", "fee", "order_id", "client_order_id",
                     *(["leg"] if "leg" in data.fills.columns else [])]],
         out / "fills.csv")
    _csv(data.decisions, out / "decisions.csv")
    if report:
        from framework.reports.html import render_report

        render_report(data, out)


def _csv(df: pd.DataFrame, path: Path) -> None:
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.DatetimeTZDtype):
            df[c] = df[c].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(".000000Z", "Z", regex=False)
    df.to_csv(path, index=False)
