"""Report figures as PNG bytes (matplotlib, Agg canvas, no pyplot global state).

Every function returns a non-blank image whatever the data: an empty input draws a labelled
placeholder ("no fills", "no risk decisions", ...) so the report never shows a broken image.
matplotlib is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from framework.reports.metrics import drawdown_series
from framework.reports.rundata import time_order

WIDTH, HEIGHT, DPI = 10.0, 3.6, 100
COLORS = ("#1f5fa8", "#d9822b", "#2e8b57", "#b03a48", "#6b4c9a", "#7f7f7f")
UP, DOWN = "#2e8b57", "#b03a48"


def _new_axes(height: float = HEIGHT):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, color="#e4e4e4", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _placeholder(ax, text: str, title: str = "") -> None:
    ax.set_title(title)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14, color="#555555",
            transform=ax.transAxes)


def _utc_naive(index: pd.Index) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    return idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx


def _series(ax, series: pd.Series | Curve, **kwargs) -> None:
    if isinstance(series, Curve):
        x, y = _decimated(ax, series.x, series.y, series.points)
    else:
        x, y = _decimated(ax, _utc_naive(series.index), series.to_numpy(dtype=float))
    ax.plot(x, y, **kwargs)
    ax.set_xlabel("time (UTC)")


@dataclass(frozen=True)
class Curve:
    """A time series reduced as it is drawn (``decimate``): what a figure plots of a series of
    ``points`` points. Made where the full series is, so only the few thousand points drawn travel
    to the process that draws (``framework.reports.figures``)."""

    x: np.ndarray        # datetime64[ns], UTC without a zone
    y: np.ndarray
    points: int          # how many points the full series had

    @classmethod
    def of(cls, series: pd.Series) -> Curve:
        y = series.to_numpy(dtype=float)
        x, dy = decimate(np.asarray(_utc_naive(series.index)), y)
        return cls(x, dy, len(y))


@dataclass(frozen=True)
class CostCurves:
    """The costs figure's inputs: cumulative fees and slippage in fill-time order (None: the run
    has no fills; ``slippage`` None: the fills do not measure it)."""

    fee: Curve | None
    slippage: Curve | None

    @classmethod
    def of(cls, fills: pd.DataFrame, order: np.ndarray | None = None) -> CostCurves:
        """``order``: the fills' positions in time order, when the caller has them (``time_order``)."""
        if fills.empty:
            return cls(None, None)
        columns = ["time", "fee"] + (["slippage"] if "slippage" in fills else [])
        ordered = fills[columns].iloc[time_order(fills) if order is None else order].set_index("time")
        fee = Curve.of(ordered["fee"].astype(float).cumsum())
        slip = None
        if "slippage" in ordered and ordered["slippage"].notna().any():
            slip = Curve.of(ordered["slippage"].astype(float).fillna(0.0).cumsum())
        return cls(fee, slip)


# A figure is WIDTH x DPI = 1,000 pixels wide. A series of more points than MAX_POINTS is drawn
# from the first, lowest, highest and last point of each of PIXEL_COLUMNS consecutive runs of
# points: every extreme the line reaches in a pixel column is kept, so the picture is the one the
# full series draws (the eye cannot tell), at a fraction of the rendering time of a million fills.
MAX_POINTS = 4 * int(WIDTH * DPI)
PIXEL_COLUMNS = int(WIDTH * DPI)


def decimate(x: np.ndarray, y: np.ndarray, columns: int = PIXEL_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) reduced to the first, min, max and last point of ``columns`` runs, in order
    (unchanged when it has no more than ``MAX_POINTS`` points). NaN gaps stay gaps."""
    n = len(y)
    if n <= MAX_POINTS:
        return x, y
    edges = np.linspace(0, n, columns + 1).astype(np.int64)
    starts, ends = edges[:-1], edges[1:] - 1
    filled = np.where(np.isnan(y), np.inf, y)
    lo = np.minimum.reduceat(filled, starts)
    hi = np.maximum.reduceat(np.where(np.isnan(y), -np.inf, y), starts)
    seg = np.repeat(np.arange(columns), np.diff(edges))
    at_lo = np.flatnonzero(filled == lo[seg])
    at_hi = np.flatnonzero(np.where(np.isnan(y), -np.inf, y) == hi[seg])
    keep = np.unique(np.concatenate([starts, ends, at_lo[np.r_[True, seg[at_lo][1:] != seg[at_lo][:-1]]],
                                     at_hi[np.r_[True, seg[at_hi][1:] != seg[at_hi][:-1]]]]))
    return x[keep], y[keep]


def _decimated(ax, x, y: np.ndarray, points: int | None = None):
    """``decimate`` and, when points were dropped, say so on the figure. ``points``: how many the
    series had before (a ``Curve`` decimated already), else ``len(y)``."""
    dx, dy = decimate(np.asarray(x), y)
    points = len(y) if points is None else points
    if len(dy) < points and not getattr(ax, "_parity_decimated", False):
        ax.text(0.995, 0.01, f"drawn from {len(dy):,} of {points:,} points (extremes of each pixel column kept)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#777777")
        ax._parity_decimated = True
    return dx, dy


def equity_figure(equity: pd.Series, benchmark: pd.Series | None, benchmark_label: str) -> bytes:
    """Plot the equity curve and, when given, the benchmark scaled to the same start."""
    fig, ax = _new_axes()
    if equity.dropna().empty:
        _placeholder(ax, "no equity observations")
        return _png(fig)
    _series(ax, equity, color=COLORS[0], linewidth=1.6, label="strategy")
    if benchmark is not None and not benchmark.dropna().empty:
        _series(ax, benchmark, color=COLORS[5], linewidth=1.2, linestyle="--", label=benchmark_label)
    ax.set_ylabel("equity")
    ax.set_title("Equity")
    ax.legend(loc="best", frameon=False)
    return _png(fig)


def curves_figure(curves: dict[str, pd.Series], title: str) -> bytes:
    """Plot several equity curves on one axis (used by the run comparison)."""
    fig, ax = _new_axes()
    drawn = 0
    for i, (label, curve) in enumerate(curves.items()):
        if curve.dropna().empty:
            continue
        _series(ax, curve, color=COLORS[i % len(COLORS)], linewidth=1.5, label=label)
        drawn += 1
    if not drawn:
        _placeholder(ax, "no equity observations")
        return _png(fig)
    ax.set_ylabel("equity")
    ax.set_title(title)
    ax.legend(loc="best", frameon=False)
    return _png(fig)


def drawdown_figure(equity: pd.Series) -> bytes:
    """Plot the drawdown from the running peak, in percent."""
    fig, ax = _new_axes(3.0)
    dd = drawdown_series(equity) * 100.0
    if dd.empty:
        _placeholder(ax, "no equity observations")
        return _png(fig)
    x, y = _decimated(ax, np.asarray(_utc_naive(dd.index)), dd.to_numpy(dtype=float))
    ax.fill_between(x, y, 0.0, color=DOWN, alpha=0.35, linewidth=0)
    ax.plot(x, y, color=DOWN, linewidth=1.0)
    ax.set_ylim(top=max(0.5, float(dd.max()) + 0.5))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("drawdown (%)")
    ax.set_title(f"Drawdown (max {dd.min():.2f} %)")
    return _png(fig)


def exposure_figure(equity: pd.DataFrame) -> bytes:
    """Plot gross and net exposure as a percentage of equity."""
    fig, ax = _new_axes(3.0)
    frame = equity.dropna(subset=["equity"]).set_index("time").sort_index()
    if frame.empty:
        _placeholder(ax, "no equity observations")
        return _png(fig)
    eq = frame["equity"].astype(float).replace(0.0, np.nan)
    _series(ax, frame["gross_exposure"].astype(float) / eq * 100.0, color=COLORS[0], linewidth=1.4,
            label="gross")
    _series(ax, frame["net_exposure"].astype(float) / eq * 100.0, color=COLORS[1], linewidth=1.2,
            label="net")
    ax.axhline(0.0, color="#999999", linewidth=0.8)
    ax.set_ylabel("% of equity")
    ax.set_title("Exposure")
    ax.legend(loc="best", frameon=False)
    return _png(fig)


def costs_figure(costs: CostCurves | pd.DataFrame) -> bytes:
    """Plot cumulative fees and slippage over time (from the fills, or their ``CostCurves``)."""
    if isinstance(costs, pd.DataFrame):
        costs = CostCurves.of(costs)
    fig, ax = _new_axes(3.0)
    if costs.fee is None:
        _placeholder(ax, "no fills: no costs", "Costs")
        return _png(fig)
    _series(ax, costs.fee, color=COLORS[0], linewidth=1.4, drawstyle="steps-post", label="fees")
    if costs.slippage is not None:
        _series(ax, costs.slippage, color=COLORS[1], linewidth=1.4, drawstyle="steps-post", label="slippage")
    else:
        ax.text(0.01, 0.95, "slippage not measured for this run", transform=ax.transAxes,
                va="top", color="#555555")
    ax.set_ylabel("cumulative cost")
    ax.set_title("Costs")
    ax.legend(loc="lower right", frameon=False)
    return _png(fig)


def attribution_figure(attribution: pd.DataFrame, max_symbols: int = 30) -> bytes:
    """Plot net P&L per symbol as horizontal bars (largest |P&L| first, capped)."""
    shown = attribution.dropna(subset=["pnl"])
    shown = shown.reindex(shown["pnl"].abs().sort_values(ascending=False).index).head(max_symbols)
    fig, ax = _new_axes(max(2.6, 0.32 * len(shown) + 1.2))
    if shown.empty:
        _placeholder(ax, "no fills: nothing to attribute", "P&L by symbol")
        return _png(fig)
    shown = shown.iloc[::-1]
    values = shown["pnl"].to_numpy(dtype=float)
    ax.barh(shown["symbol"].astype(str), values, color=[UP if v >= 0 else DOWN for v in values])
    ax.axvline(0.0, color="#999999", linewidth=0.8)
    ax.set_xlabel("net P&L (after fees)")
    suffix = f" (top {max_symbols} by |P&L|)" if len(attribution) > max_symbols else ""
    ax.set_title("P&L by symbol" + suffix)
    return _png(fig)


def decisions_figure(counts: pd.DataFrame) -> bytes:
    """Plot risk decisions per rule, stacked by action, from a rule × action count table."""
    fig, ax = _new_axes(max(2.6, 0.35 * len(counts) + 1.2))
    if counts.empty or counts.to_numpy().sum() == 0:
        _placeholder(ax, "no risk decisions", "Risk decisions by rule")
        return _png(fig)
    left = np.zeros(len(counts))
    for i, action in enumerate(counts.columns):
        values = counts[action].to_numpy(dtype=float)
        ax.barh(counts.index.astype(str), values, left=left, color=COLORS[i % len(COLORS)],
                label=str(action))
        left += values
    ax.set_xlabel("decisions")
    ax.set_title("Risk decisions by rule")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title="action")
    return _png(fig)
