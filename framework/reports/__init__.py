"""Reports: metrics, figures, the HTML run report and the run comparison.

Everything reads a :class:`RunData` (built from the ledger by the caller), never the mode of the
run. Public names are loaded lazily so ``import framework.reports`` costs nothing: matplotlib,
jinja2 and pandas are imported only when a report is made.

- ``RunData``, ``periods_per_year_for``            — ``framework.reports.rundata``
- ``compute_metrics``, ``summary_metrics``, ``turnover``, ``monthly_returns``, ``drawdown_series``,
  ``daily_pnl``                                      — ``framework.reports.metrics``
- ``attribute_pnl``, ``attribution_for``, ``final_marks`` — ``framework.reports.attribution``
- ``render_report``                                 — ``framework.reports.html``
- ``compare_runs``                                  — ``framework.reports.compare``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunData": "rundata", "periods_per_year_for": "rundata",
    "compute_metrics": "metrics", "summary_metrics": "metrics", "turnover": "metrics",
    "monthly_returns": "metrics", "drawdown_series": "metrics", "daily_pnl": "metrics",
    "attribute_pnl": "attribution", "attribution_for": "attribution", "final_marks": "attribution",
    "render_report": "html", "compare_runs": "compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'framework.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(f"framework.reports.{module}"), name)
