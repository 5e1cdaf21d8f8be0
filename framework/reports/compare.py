"""Side-by-side comparison of two runs: ``compare.html`` and ``compare.json``.

What is compared (B minus A everywhere a difference is shown):

- equity curves on one figure and the summary metrics side by side;
- P&L per UTC day (:func:`framework.reports.metrics.daily_pnl` of each curve) and its difference;
- net P&L per symbol (the attribution of each run, same marks rule) and its difference;
- orders that exist in one run but not the other. Matching, in two passes:

  1. by ``client_order_id`` — the ids are deterministic (strategy, batch, symbol, leg), so the
     same batch replayed by another broker carries the same id;
  2. the rest by ``(symbol, side)`` and time: each unmatched order of A is paired with the
     nearest-in-time unmatched order of B with the same symbol and side when they are at most
     ``tolerance`` apart (closest pairs first, each order used once). The default tolerance is one
     bar: the larger of the two runs' median equity spacing, at least one minute. This is the
     "same time bucket" rule without the edge effects of fixed buckets (a paper order sent a few
     seconds after the bar still matches the simulated one).

  Quantities and prices are not part of the match: a matched pair with different sizes is a
  sizing difference, not a missing order, and shows in the per-symbol P&L.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import pandas as pd

from framework.reports.attribution import attribution_for
from framework.reports.html import header_fields, template_env, write_images
from framework.reports.metrics import daily_pnl
from framework.reports.plots import curves_figure
from framework.reports.rundata import RunData
from framework.reports.sections import MAX_ROWS, METRIC_FORMATS, METRIC_LABELS, fmt, fmt_time

_DIFF_FORMATS = {"pct": "pp"}  # a difference of two percentages is in percentage points
ORDER_FIELDS = ("time", "symbol", "side", "qty", "type", "status", "client_order_id")


def default_tolerance(a: RunData, b: RunData) -> pd.Timedelta:
    """Return one bar: the larger median spacing of the two equity curves, at least a minute."""
    spacings = [pd.Series(idx[1:] - idx[:-1]).median()
                for idx in (a.equity_series().index, b.equity_series().index) if len(idx) > 1]
    return max([pd.Timedelta(minutes=1), *spacings])


def match_orders(a: pd.DataFrame, b: pd.DataFrame, tolerance: pd.Timedelta) -> tuple[list, list, list]:
    """Return ``(pairs, only_in_a, only_in_b)``; pairs are ``(index in a, index in b, how)``."""
    pairs: list[tuple[int, int, str]] = []
    free_a, free_b = set(a.index), set(b.index)
    ids_b: dict[str, list[int]] = {}
    for i in b.sort_values("time", kind="stable").index:
        cid = _cid(b.at[i, "client_order_id"])
        if cid:
            ids_b.setdefault(cid, []).append(i)
    for i in a.sort_values("time", kind="stable").index:
        candidates = ids_b.get(_cid(a.at[i, "client_order_id"]) or "\0", [])
        if candidates:
            j = candidates.pop(0)
            pairs.append((i, j, "client_order_id"))
            free_a.discard(i)
            free_b.discard(j)
    rest_a, rest_b = a.loc[sorted(free_a)], b.loc[sorted(free_b)]
    keys_b = dict(iter(rest_b.groupby(_symbol_side(rest_b))))
    for key, group_a in rest_a.groupby(_symbol_side(rest_a)):
        group_b = keys_b.get(key)
        if group_b is None:
            continue
        for i, j in _nearest_pairs(group_a["time"], group_b["time"], tolerance):
            pairs.append((i, j, "symbol_side_time"))
            free_a.discard(i)
            free_b.discard(j)
    return pairs, sorted(free_a), sorted(free_b)


def _symbol_side(orders: pd.DataFrame) -> list[pd.Series]:
    return [orders["symbol"].astype(str), orders["side"].astype(str).str.lower()]


def _cid(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _nearest_pairs(times_a: pd.Series, times_b: pd.Series, tolerance: pd.Timedelta) -> list[tuple[int, int]]:
    tb = times_b.sort_values(kind="stable")
    tb_index = pd.DatetimeIndex(tb)
    candidates = []
    for i, t in times_a.items():
        lo = tb_index.searchsorted(t - tolerance, side="left")
        hi = tb_index.searchsorted(t + tolerance, side="right")
        for k in range(lo, hi):
            candidates.append((abs(tb.iloc[k] - t), i, tb.index[k]))
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in sorted(candidates, key=lambda c: (c[0], str(c[1]), str(c[2]))):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def _json_value(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _finite_number(v: object) -> TypeGuard[int | float | np.number]:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


def _diff(a: object, b: object) -> float | None:
    return float(b) - float(a) if _finite_number(a) and _finite_number(b) else None


def compare_runs(a: RunData, b: RunData, out_dir: Path, tolerance: pd.Timedelta | None = None) -> dict:
    """Write ``compare.html`` and ``compare.json`` into ``out_dir``; return the JSON content."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tolerance = default_tolerance(a, b) if tolerance is None else tolerance
    label_a = f"A: {a.run_id} ({a.summary.get('mode', '?')})"
    label_b = f"B: {b.run_id} ({b.summary.get('mode', '?')})"

    keys = [k for k in METRIC_FORMATS if k in a.summary or k in b.summary]
    metrics = {}
    for k in keys:
        va, vb = a.summary.get(k), b.summary.get(k)
        metrics[k] = {"a": va, "b": vb, "diff": _diff(va, vb)}

    daily = pd.concat({"a": daily_pnl(a.equity_series()), "b": daily_pnl(b.equity_series())}, axis=1)
    daily["diff"] = daily["b"] - daily["a"]
    daily = daily.reset_index().rename(columns={"index": "date"})

    pnl_a = attribution_for(a.prices, a.fills).set_index("symbol")["pnl"]
    pnl_b = attribution_for(b.prices, b.fills).set_index("symbol")["pnl"]
    symbols = pd.concat({"a": pnl_a, "b": pnl_b}, axis=1).fillna(0.0).sort_index()
    symbols["diff"] = symbols["b"] - symbols["a"]
    symbols = symbols.reset_index().rename(columns={"index": "symbol"})

    pairs, only_a, only_b = match_orders(a.orders, b.orders, tolerance)
    result: dict[str, Any] = {
        "run_a": a.run_id, "run_b": b.run_id,
        "metrics": {k: {f: _json_value(v) for f, v in d.items()} for k, d in metrics.items()},
        "daily_pnl": _records(daily),
        "symbol_pnl": _records(symbols),
        "orders": {
            "tolerance_seconds": tolerance.total_seconds(),
            "matched": len(pairs),
            "matched_by_client_order_id": sum(1 for p in pairs if p[2] == "client_order_id"),
            "only_in_a": _records(a.orders.loc[only_a, list(ORDER_FIELDS)]),
            "only_in_b": _records(b.orders.loc[only_b, list(ORDER_FIELDS)]),
        },
    }
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    (out_dir / "compare.json").write_text(text, encoding="utf-8")

    images = write_images({"compare_equity": curves_figure(
        {label_a: a.equity_series(), label_b: b.equity_series()},
        "Equity, both runs")}, out_dir)
    page = template_env().get_template("compare.html.j2").render(
        title=f"Parity compare {a.run_id} vs {b.run_id}",
        header_a=header_fields(a), header_b=header_fields(b), images=images,
        metrics=[_metric_row(k, d) for k, d in metrics.items()],
        daily=[{"date": fmt_time(r["date"])[:10], "a": fmt(r["a"], "money"), "b": fmt(r["b"], "money"),
                "diff": fmt(r["diff"], "money")} for r in result["daily_pnl"][:MAX_ROWS]],
        n_daily=len(daily),
        symbols=[{"symbol": r["symbol"], "a": fmt(r["a"], "money"), "b": fmt(r["b"], "money"),
                  "diff": fmt(r["diff"], "money")} for r in result["symbol_pnl"]],
        orders=result["orders"], only_a=_order_rows(result["orders"]["only_in_a"]),
        only_b=_order_rows(result["orders"]["only_in_b"]), max_rows=MAX_ROWS,
    )
    (out_dir / "compare.html").write_text(page, encoding="utf-8")
    return result | {"artifacts": str(out_dir)}


def _metric_row(key: str, values: dict) -> dict:
    kind = METRIC_FORMATS[key]
    return {"key": key, "label": METRIC_LABELS.get(key, key), "a": fmt(values["a"], kind),
            "b": fmt(values["b"], kind), "diff": fmt(values["diff"], _DIFF_FORMATS.get(kind, kind))}


def _order_rows(records: list[dict]) -> list[dict]:
    return [{"time": fmt_time(r["time"]), "symbol": r["symbol"], "side": r["side"],
             "qty": fmt(r["qty"], "qty"),
             "type": fmt(r["type"], "str"), "status": fmt(r["status"], "str"),
             "client_order_id": fmt(r["client_order_id"], "str")} for r in records[:MAX_ROWS]]
