"""The run report: one self-contained ``report.html`` plus its PNG figures.

The page embeds every figure as a base64 ``data:`` URI and inlines its CSS, so it opens offline
from anywhere (mail attachment, CI artifact); the same PNGs are written beside it for reuse. The
output depends only on the ``RunData`` — no clock, no mode switch — so a backtest, a paper run and
a live run give the same page layout, and rendering a run twice gives identical files.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import TYPE_CHECKING

from framework.reports.figures import FigureInputs, draw_figures, figure_inputs
from framework.reports.metrics import monthly_returns
from framework.reports.rundata import RunData
from framework.reports.sections import (
    DECISION_TABLE_COLUMNS,
    HEADER_KEYS,
    MAX_ROWS,
    attribution_rows,
    capped_rows,
    cost_summary,
    fmt,
    fmt_time,
    metric_mismatches,
    metric_rows,
    monthly_table,
    trade_rows,
)

if TYPE_CHECKING:
    from framework.reports.figures import FigureWorker

TEMPLATES = Path(__file__).with_name("templates")


def template_env():
    """Return the jinja2 environment of the report templates (autoescaping on)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def write_images(images: dict[str, bytes], out_dir: Path) -> dict[str, str]:
    """Write ``NAME.png`` for each image into ``out_dir``; return ``{name: data URI}``."""
    uris = {}
    for name, png in images.items():
        (out_dir / f"{name}.png").write_bytes(png)
        uris[name] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return uris


def header_fields(run: RunData) -> dict[str, str]:
    """Return the header values (run id, strategy, mode, broker, period, config hash) as text."""
    eq = run.equity_series()
    fields = {key: str(run.summary.get(key, "—")) for key in HEADER_KEYS}
    start = run.summary.get("start") or (eq.index[0] if len(eq) else None)
    end = run.summary.get("end") or (eq.index[-1] if len(eq) else None)
    fields["start"], fields["end"] = fmt_time(start), fmt_time(end)
    return fields


def render_report(run: RunData, out_dir: Path, risk_free_rate: float = 0.0, *, inputs: FigureInputs | None = None,
                  figures: FigureWorker | None = None) -> Path:
    """Write ``out_dir/report.html`` and its PNG figures; return the HTML path.

    ``risk_free_rate`` is only used to cross-check the summary's metrics against the equity
    curve (a mismatch is shown as a warning on the page); pass the rate the run's summary used.
    ``inputs`` are ``figure_inputs(run)`` when the caller has made them; ``figures``, a helper
    already drawing them (``FigureWorker.submit``), whose PNGs are collected once the page's
    tables are ready.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = inputs if inputs is not None else figure_inputs(run)
    eq, attribution, counts = inputs.equity_curve, inputs.attribution, inputs.decision_counts

    total_pnl = float(eq.iloc[-1] - run.initial_equity()) if len(eq) else float("nan")
    attributed = float(attribution["pnl"].sum()) if len(attribution) else 0.0
    trades, n_trades = trade_rows(run.fills)
    decision_list, n_decisions = capped_rows(run.decisions, DECISION_TABLE_COLUMNS)
    context = {
        "title": f"Parity report {run.run_id}",
        "header": header_fields(run),
        "metrics": metric_rows(run.summary),
        "mismatches": metric_mismatches(run, risk_free_rate),
        "periods_per_year": fmt(run.periods_per_year, "num"),
        "benchmark_label": inputs.benchmark_label,
        "monthly": monthly_table(monthly_returns(eq)),
        "attribution": attribution_rows(attribution),
        "reconciliation": {
            "total": fmt(total_pnl, "money"),
            "attributed": fmt(attributed, "money"),
            "unattributed": fmt(total_pnl - attributed, "money"),
            "significant": bool(math.isfinite(total_pnl) and abs(total_pnl - attributed) >= 0.005),
        },
        "costs": cost_summary(run.fills),
        "decision_counts": {
            "actions": [str(c) for c in counts.columns],
            "rows": [{"rule": str(rule), "counts": [int(v) for v in row], "total": int(sum(row))}
                     for rule, row in zip(counts.index, counts.to_numpy(), strict=True)],
        },
        "decisions": decision_list,
        "n_decisions": n_decisions,
        "trades": trades,
        "n_trades": n_trades,
        "max_rows": MAX_ROWS,
    }
    # the figures last: a helper drawing them has had the tables' time to do it
    images = figures.images(inputs) if figures is not None else draw_figures(inputs)
    context["images"] = write_images(images, out_dir)
    path = out_dir / "report.html"
    path.write_text(template_env().get_template("report.html.j2").render(**context), encoding="utf-8")
    return path
