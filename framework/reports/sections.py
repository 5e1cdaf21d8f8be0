"""The report's content as plain values: formatted tables and series, no HTML and no matplotlib.

``html.py`` and ``compare.py`` turn these into pages; keeping the numbers here lets tests read
what the report shows without parsing HTML.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from framework.reports.metrics import METRIC_KEYS, compute_metrics
from framework.reports.rundata import RunData, time_order

MAX_ROWS = 2000  # trades and decisions listed in full up to this many rows

HEADER_KEYS = ("run_id", "strategy", "mode", "broker", "config_hash", "start", "end")
# SPEC §9 summary keys shown in the metrics table, in order, with their display format.
METRIC_FORMATS = {
    "initial_equity": "money", "final_equity": "money", "total_return": "pct", "cagr": "pct",
    "volatility": "pct", "sharpe": "ratio", "sortino": "ratio", "max_drawdown": "pct",
    "calmar": "ratio", "turnover": "times", "n_cycles": "int", "n_orders": "int", "n_fills": "int",
    "n_rejected": "int", "fees_paid": "money", "slippage_cost": "money",
}
METRIC_LABELS = {
    "initial_equity": "Initial equity", "final_equity": "Final equity", "total_return": "Total return",
    "cagr": "CAGR", "volatility": "Volatility (ann.)", "sharpe": "Sharpe", "sortino": "Sortino",
    "max_drawdown": "Max drawdown", "calmar": "Calmar", "turnover": "Turnover", "n_cycles": "Cycles",
    "n_orders": "Orders", "n_fills": "Fills", "n_rejected": "Rejected orders", "fees_paid": "Fees paid",
    "slippage_cost": "Slippage cost",
}


def fmt(value: object, kind: str = "num") -> str:
    """Format a value for display; missing or non-finite numbers show as an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float, np.number)):
        return str(value)
    text = _fmt_number(float(value), kind)
    if text.startswith("-") and not any(c in "123456789" for c in text):
        text = text[1:]  # no "-0.00"
    return text


def _fmt_number(v: float, kind: str) -> str:
    if kind == "pct":
        return f"{v * 100:,.2f} %"
    if kind == "pp":
        return f"{v * 100:,.2f} pp"
    if kind == "money":
        return f"{v:,.2f}"
    if kind == "ratio":
        return f"{v:,.3f}"
    if kind == "times":
        return f"{v:,.2f}×"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "qty":
        return f"{v:,.8f}".rstrip("0").rstrip(".")
    if kind == "price":
        return f"{v:,.2f}" if abs(v) >= 100 else f"{v:,.8f}".rstrip("0").rstrip(".")
    return f"{v:,.6g}"


def fmt_time(value: object) -> str:
    """Format a timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC; pass other values through."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    ts = ts.tz_convert("UTC") if ts.tzinfo is not None else ts
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def metric_rows(summary: dict) -> list[dict]:
    """Return the metrics table: the SPEC §9 keys first, then any other scalar summary keys.

    ``data_value`` is the JSON text of the summary value, so a reader (or a test driving a
    browser) can compare the page with ``summary.json`` exactly.
    """
    extra = [k for k, v in summary.items() if k not in METRIC_FORMATS and k not in HEADER_KEYS
             and isinstance(v, (int, float, np.number)) and not isinstance(v, bool)]
    keys = [*METRIC_FORMATS, *extra]
    rows = []
    for key in keys:
        present = key in summary
        value = summary.get(key)
        value = value.item() if isinstance(value, np.generic) else value
        rows.append({
            "key": key,
            "label": METRIC_LABELS.get(key, key.replace("_", " ")),
            "text": fmt(value, METRIC_FORMATS.get(key, "num")),
            "data_value": json.dumps(value) if present else None,
        })
    return rows


def metric_mismatches(run: RunData, risk_free_rate: float = 0.0, rel: float = 1e-9) -> list[str]:
    """Return the summary metrics that differ from the metrics recomputed from the equity curve."""
    recomputed = compute_metrics(run.equity_series(), run.periods_per_year, risk_free_rate)
    problems = []
    for key in METRIC_KEYS:
        if key not in run.summary:
            continue
        stated, actual = run.summary[key], recomputed[key]
        if stated is None and actual is None:
            continue
        if stated is None or actual is None or not math.isclose(stated, actual, rel_tol=rel, abs_tol=1e-12):
            problems.append(f"{key}: summary.json says {stated!r}, the equity curve gives {actual!r}")
    return problems


def benchmark_curve(run: RunData) -> tuple[pd.Series | None, str]:
    """Return the benchmark scaled to the initial equity, and its label.

    An explicit ``run.benchmark`` wins; otherwise the equal-weight buy-and-hold of the symbols in
    ``run.prices`` (bought at the first equity observation, never rebalanced). Symbols without a
    price at that moment are left out. None when there is nothing to build it from.
    """
    eq = run.equity_series()
    if eq.empty:
        return None, ""
    start, end = eq.index[0], eq.index[-1]
    if run.benchmark is not None and not run.benchmark.dropna().empty:
        source, label = run.benchmark.dropna().astype(float).to_frame("benchmark"), "benchmark"
    elif run.prices is not None and not run.prices.empty:
        source, label = run.prices.astype(float), "buy & hold (equal weight)"
    else:
        return None, ""
    prices = source.sort_index().ffill()
    prices = prices[prices.index <= end]
    before = prices.index[prices.index <= start]
    base_time = before[-1] if len(before) else (prices.index[0] if len(prices) else None)
    if base_time is None:
        return None, ""
    window = prices[prices.index >= base_time]
    base = window.iloc[0]
    held = base.index[base.notna() & (base > 0)]
    if len(held) == 0:
        return None, ""
    curve = (window[held] / base[held]).mean(axis=1) * run.initial_equity()
    curve.index = pd.DatetimeIndex([max(t, start) for t in curve.index])
    if label != "benchmark" and len(held) < prices.shape[1]:
        label += f", {len(held)} of {prices.shape[1]} symbols"
    return curve, label


def monthly_table(monthly: pd.DataFrame) -> dict:
    """Return the monthly returns grid with display text and a colour per cell."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    rows = []
    for year, values in monthly.iterrows():
        cells = []
        for col in monthly.columns:
            v = values[col]
            cells.append({"text": "" if pd.isna(v) else f"{v * 100:.2f}", "style": _heat(v),
                          "total": col == "year"})
        rows.append({"year": int(year), "cells": cells})
    return {"columns": [*months, "Year"], "rows": rows}


def _heat(v: float) -> str:
    if pd.isna(v):
        return ""
    alpha = min(abs(float(v)) / 0.10, 1.0) * 0.55 + 0.05
    rgb = "46,139,87" if v >= 0 else "176,58,72"
    return f"background: rgba({rgb},{alpha:.2f})"


def attribution_rows(table: pd.DataFrame) -> list[dict]:
    """Return the attribution table formatted for display."""
    return [{
        "symbol": r.symbol, "n_fills": fmt(r.n_fills, "int"), "notional": fmt(r.traded_notional, "money"),
        "position": fmt(r.position, "qty"), "avg_cost": fmt(r.avg_cost, "price"),
        "mark": fmt(r.mark, "price") if r.position else "—", "source": r.price_source,
        "realised": fmt(r.realised, "money"), "unrealised": fmt(r.unrealised, "money"),
        "fees": fmt(r.fees, "money"), "slippage": fmt(r.slippage, "money"), "pnl": fmt(r.pnl, "money"),
        "positive": bool(r.pnl >= 0),
    } for r in table.itertuples(index=False)]


def cost_summary(fills: pd.DataFrame) -> list[dict]:
    """Return cost totals: fees, slippage, traded notional and both costs in basis points."""
    traded = (fills["qty"].astype(float) * fills["price"].astype(float)).abs()
    notional = float(traded.sum()) if len(fills) else 0.0
    fees = float(fills["fee"].astype(float).sum()) if len(fills) else 0.0
    has_slip = "slippage" in fills.columns and fills["slippage"].notna().any()
    slippage = float(fills["slippage"].astype(float).sum()) if has_slip else None

    def bps(cost: float | None) -> float | None:
        return None if cost is None or notional == 0 else cost / notional * 1e4

    return [
        {"label": "Traded notional", "text": fmt(notional, "money")},
        {"label": "Fees", "text": fmt(fees, "money")},
        {"label": "Fees (bps of notional)", "text": fmt(bps(fees), "ratio")},
        {"label": "Slippage", "text": fmt(slippage, "money") if has_slip else "not measured"},
        {"label": "Slippage (bps of notional)", "text": fmt(bps(slippage), "ratio")},
    ]


def decision_counts(decisions: pd.DataFrame) -> pd.DataFrame:
    """Return a rule × action table of decision counts."""
    if decisions.empty:
        return pd.DataFrame()
    return pd.crosstab(decisions["rule"].astype(str), decisions["action"].astype(str))


def capped_rows(frame: pd.DataFrame, columns: dict[str, str]) -> tuple[list[dict], int]:
    """Return up to MAX_ROWS rows (time order) formatted by ``{column: kind}``, and the total."""
    ordered = frame.iloc[time_order(frame, MAX_ROWS)] if len(frame) else frame
    rows = []
    for record in ordered.to_dict("records"):
        row = {}
        for column, kind in columns.items():
            value = record.get(column)
            row[column] = fmt_time(value) if kind == "time" else fmt(value, kind)
        rows.append(row)
    return rows, len(frame)


TRADE_COLUMNS = {"time": "time", "symbol": "str", "side": "str", "leg": "str", "qty": "qty", "price": "price",
                 "notional": "money", "fee": "money", "slippage": "money", "client_order_id": "str"}
DECISION_TABLE_COLUMNS = {"time": "time", "symbol": "str", "rule": "str", "action": "str",
                          "requested": "num", "approved": "num", "reason": "str"}


def trade_rows(fills: pd.DataFrame) -> tuple[list[dict], int]:
    """Return the trades list (fills with notional) capped at MAX_ROWS, and the total count."""
    frame = fills.iloc[time_order(fills, MAX_ROWS)] if len(fills) else fills.copy()   # the rows shown only
    # a fill's leg: a protective exit (stop, take) shows as its own row
    legs = frame["leg"].astype(object).fillna("") if "leg" in frame.columns else ""
    frame = frame.assign(leg=legs)
    frame = frame.assign(notional=frame["qty"].astype(float) * frame["price"].astype(float)) if len(frame) else frame
    rows, _ = capped_rows(frame, TRADE_COLUMNS)
    return rows, len(fills)
