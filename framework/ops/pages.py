"""HTML pages and figures of the operations: the reconciliation and the nightly index.

Pages extend the run report's base template (same styles, self-contained, figures as data URIs)
and depend only on their inputs, so the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from framework.reports.sections import MAX_ROWS, METRIC_LABELS, fmt, fmt_time

TEMPLATES = Path(__file__).with_name("templates")


def env():
    """The jinja2 environment: this package's templates, then the report templates they extend."""
    import jinja2

    from framework.reports.html import TEMPLATES as REPORT_TEMPLATES

    return jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(TEMPLATES)),
                                    jinja2.FileSystemLoader(str(REPORT_TEMPLATES))]),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def shortfall_figure(rows: pd.DataFrame) -> bytes:
    """Bar chart of the implementation shortfall of every matched order, in basis points."""
    from framework.reports.plots import COLORS, DOWN, UP, _new_axes, _placeholder, _png

    fig, ax = _new_axes(3.2)
    s = rows.dropna(subset=["shortfall_bps"])
    if s.empty:
        _placeholder(ax, "no order filled on both sides", "Implementation shortfall")
        return _png(fig)
    bps = s["shortfall_bps"].astype(float).to_numpy()
    x = np.arange(len(bps))
    ax.bar(x, bps, color=[DOWN if v > 0 else UP for v in bps], width=0.7)
    ax.axhline(0.0, color=COLORS[5], linewidth=0.8)
    top = max(float(np.abs(bps).max()) * 1.15, 1.0)   # float noise around zero stays flat at this scale
    ax.set_ylim(-top, top)
    labels = [f"{sym} {side}" for sym, side in zip(s["symbol"], s["side"])]
    if len(labels) <= 40:
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("bps (+ = paper worse)")
    ax.set_title("Implementation shortfall per order, paper vs simulation")
    return _png(fig)


def write_reconciliation(result: dict, rows: pd.DataFrame, out_dir: Path) -> Path:
    """Write ``reconcile.json``, ``reconcile.html`` and its PNG figures into ``out_dir``."""
    from framework.reports.html import write_images
    from framework.reports.plots import curves_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    (out_dir / "reconcile.json").write_text(text, encoding="utf-8")
    eq = pd.DataFrame(result["equity"])
    times = pd.to_datetime(eq["time"], utc=True, format="ISO8601")
    curves = {"paper / live": pd.Series(eq["paper"].astype(float).to_numpy(), index=times),
              "simulation": pd.Series(eq["sim"].astype(float).to_numpy(), index=times)}
    images = write_images({
        "reconcile_equity": curves_figure(curves, "Equity at each cycle, paper vs simulation"),
        "reconcile_shortfall": shortfall_figure(rows)}, out_dir)
    sf, tr, od = result["shortfall"], result["tracking"], result["orders"]
    summary = [
        ("Cycles replayed", fmt(result["n_cycles"], "int")),
        ("Orders paper / simulated / matched", f"{od['paper']} / {od['simulated']} / {od['matched']}"),
        ("Only in paper / only simulated", f"{od['only_paper']} / {od['only_simulated']}"),
        ("Filled / partial / missed / unfilled in simulation",
         f"{od['filled']} / {od['partial']} / {od['missed']} / {od['sim_unfilled']}"),
        ("Shortfall, notional-weighted (bps)", fmt(sf["weighted_bps"], "ratio")),
        ("Shortfall mean / median / RMS (bps)",
         " / ".join(fmt(sf[k], "ratio") for k in ("mean_bps", "median_bps", "rms_bps"))),
        ("Shortfall cost", fmt(sf["cost"], "money")),
        ("Fees paper / simulated",
         " / ".join(fmt(result["fees"][k], "money") for k in ("paper", "simulated"))),
        ("Paper delay to first fill, median (s)", fmt(result["timing"]["paper_median_delay_s"], "ratio")),
        ("Tracking error (RMS of daily return differences)", fmt(tr["tracking_error"], "pct")),
        ("Tracking error (std of daily differences)", fmt(tr["tracking_error_std"], "pct")),
        ("Final equity paper / simulated",
         f"{fmt(tr['final_equity_paper'], 'money')} / {fmt(tr['final_equity_sim'], 'money')}"),
    ]
    order_list = [{
        "time": fmt_time(r["time"]), "symbol": r["symbol"], "side": r["side"], "state": r["state"],
        "leg": r.get("leg") or "",
        "fired": (f"{fmt_time(r['paper_fill_time'])} / {fmt_time(r['sim_fill_time'])}"
                  if r.get("leg") in ("stop", "take") else ""),
        "qty": f"{fmt(r['paper_qty'], 'qty')} / {fmt(r['sim_qty'], 'qty')}",
        "filled": f"{fmt(r['paper_filled'], 'qty')} / {fmt(r['sim_filled'], 'qty')}",
        "price": f"{fmt(r['paper_price'], 'price')} / {fmt(r['sim_price'], 'price')}",
        "bps": fmt(r["shortfall_bps"], "ratio"),
        "fee": f"{fmt(r['paper_fee'], 'money')} / {fmt(r['sim_fee'], 'money')}",
        "delay": fmt(r["paper_delay_s"], "ratio"), "cid": r["client_order_id"]}
        for r in result["order_rows"][:MAX_ROWS]]
    daily = [{"date": d["date"], "paper": fmt(d["paper_pnl"], "money"), "sim": fmt(d["sim_pnl"], "money"),
              "diff": fmt(d["pnl_diff"], "money"), "rdiff": fmt(d["return_diff"], "pct")}
             for d in result["daily"]]
    page = env().get_template("reconcile.html.j2").render(
        title=f"Parity reconciliation {result['run_id']}", r=result, summary=summary, images=images,
        orders=order_list, n_orders=len(result["order_rows"]), max_rows=MAX_ROWS, daily=daily,
        slippage=json.dumps(result["simulation"]["slippage"], sort_keys=True))
    path = out_dir / "reconcile.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_index(out_dir: Path, date: str, entries: list[dict], generated: str) -> Path:
    """Write the nightly ``index.html`` comparing every strategy with its latest backtest."""
    keys = (("total_return", "pct"), ("cagr", "pct"), ("sharpe", "ratio"), ("max_drawdown", "pct"),
            ("volatility", "pct"), ("turnover", "times"), ("n_fills", "int"), ("fees_paid", "money"))
    rows = []
    for e in entries:
        paper, bt = e.get("summary") or {}, e.get("backtest") or {}
        rows.append({**e, "metrics": [{"key": METRIC_LABELS.get(k, k), "paper": fmt(paper.get(k), kind),
                                       "backtest": fmt(bt.get(k), kind)} for k, kind in keys],
                     "equity_text": fmt(paper.get("final_equity"), "money"),
                     "day_pnl_text": fmt(e.get("day_pnl"), "money")})
    page = env().get_template("nightly_index.html.j2").render(
        title=f"Parity nightly {date}", date=date, entries=rows, generated=generated)
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
