"""``reports/SWEEP_ID/``: ``sweep.json``, ``points.csv`` and ``sweep.html`` (SPEC §19).

The page follows the run report (framework/reports): one self-contained HTML file with its PNG
figures embedded as data URIs and written beside it. It shows the points sorted by the metric
with their Deflated Sharpe Ratio, a heatmap of the metric for each pair of swept keys (mean over
the other keys; a scatter when a key has too many values to tabulate), the best points' equity
curves (their full runs), and for a walk-forward sweep each point's in-sample against
out-of-sample metric and, per window, how the in-sample winner did out of sample.

DSR here: the trials are the sweep's whole-period backtests (or its training windows), N is their
number and V the variance of their per-period Sharpe ratios; a walk-forward point's DSR is the
mean over its training windows, and its other figures are means over its test windows.
"""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from framework.sweep import dsr

MAX_GRID = 12
TOP_CURVES = 5


def point_table(rows: pd.DataFrame, metric: str, walk_forward: bool) -> pd.DataFrame:
    """One row per point, best first: params, metric, key summary figures, DSR, run id."""
    if rows.empty:
        return pd.DataFrame(columns=["point_id", "metric", "dsr", "run_id"])
    summaries = [json.loads(s) for s in rows["summary"]]
    rows = rows.assign(metric=[s.get(metric) for s in summaries], sharpe=[s.get("sharpe") for s in summaries],
                       total_return=[s.get("total_return") for s in summaries],
                       max_drawdown=[s.get("max_drawdown") for s in summaries],
                       n_fills=[s.get("n_fills") for s in summaries])
    trials = rows[rows["segment"] != "test"]
    n, var = len(trials), dsr.trial_variance(trials["sr"].tolist())

    def one(r) -> float | None:
        if r["sr"] is None or pd.isna(r["sr"]):
            return None
        return dsr.deflated_sharpe(r["sr"], int(r["n_obs"]), r["skew"], r["kurt"], n, var)

    rows["dsr"] = [one(r) for r in rows.to_dict(orient="records")]
    out = []
    for pid, g in rows.groupby("point_id", sort=False):
        sel = g[g["segment"] != "test"]
        rec = {"point_id": pid, **json.loads(g["params"].iloc[0])}
        if walk_forward:      # figures out of sample (mean over test windows); DSR over the training ones
            test = g[g["segment"] == "test"]
            rec["in_sample"] = _mean(sel["metric"])
            rec["out_of_sample"] = _mean(test["metric"])
            for col in ("metric", "sharpe", "total_return", "max_drawdown", "n_fills"):
                rec[col] = _mean(test[col])
            rec["dsr"] = _mean(sel["dsr"])
        else:
            for col in ("metric", "sharpe", "total_return", "max_drawdown", "n_fills", "dsr"):
                rec[col] = _value(sel[col].iloc[0])
        rec["seconds"] = float(g["seconds"].sum())
        runs = g["run_id"].dropna()
        rec["run_id"] = runs.iloc[0] if len(runs) else None
        out.append(rec)
    table = pd.DataFrame(out)
    key = table["metric"].astype(float).fillna(-np.inf)
    return table.assign(_k=key).sort_values("_k", ascending=False, kind="stable").drop(columns="_k") \
        .reset_index(drop=True)


def _value(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def _mean(s: pd.Series) -> float | None:
    v = pd.to_numeric(s, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def write(ledger, sweep_id: str, out: Path, table: pd.DataFrame, *, axes: list[str], metric: str, strategy: str,
          runs: dict[str, str], spec: dict, windows) -> dict:
    """Write the three files; return the sweep.json object."""
    from framework.reports.html import template_env, write_images
    from framework.reports.sections import fmt

    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "points.csv", index=False)
    rows = ledger.sweep_points(sweep_id)
    images = {}
    for a, b in itertools.combinations(axes, 2):
        images[f"heatmap-{_slug(a)}-{_slug(b)}"] = _heatmap(table, a, b, metric)
    if len(axes) == 1:
        images[f"metric-{_slug(axes[0])}"] = _line(table, axes[0], metric)
    images["equity-top"] = _curves(ledger, [(pid, runs[pid]) for pid in table["point_id"] if pid in runs])
    if windows:
        images["in-vs-out-of-sample"] = _is_oos(table, metric)
    uris = write_images(images, out)
    result = {
        "sweep_id": sweep_id, "strategy": strategy, "metric": metric, "n_points": len(table),
        "n_backtests": len(rows), "keys": axes, "walk_forward": spec.get("walk_forward"),
        "windows": windows, "best": _records(table.head(max(len(runs), 1))), "runs": runs,
        "report": str(out / "sweep.html"), "artifacts": str(out),
    }
    (out / "sweep.json").write_text(json.dumps({**result, "points": _records(table)}, indent=2, default=str) + "\n")
    show = [c for c in ["point_id", *axes, "metric", "in_sample", "out_of_sample", "sharpe", "total_return",
                        "max_drawdown", "n_fills", "dsr", "run_id"] if c in table.columns]
    kinds = {"total_return": "pct", "max_drawdown": "pct", "dsr": "ratio", "sharpe": "ratio", "metric": "ratio",
             "in_sample": "ratio", "out_of_sample": "ratio"}
    body = [[_cell(r.get(c), kinds.get(c)) for c in show] for r in table.to_dict(orient="records")]
    html = template_env().get_template("sweep.html.j2").render(
        title=f"Parity sweep {sweep_id}", sweep_id=sweep_id, strategy=strategy, metric=metric,
        n_points=len(table), n_backtests=len(rows), columns=show, rows=body, images=uris,
        heatmaps=[k for k in uris if k.startswith(("heatmap-", "metric-"))], windows=windows or [],
        window_rows=_window_rows(rows, metric, fmt), runs=runs)
    (out / "sweep.html").write_text(html, encoding="utf-8")
    return result


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values at full precision (NaN as null)."""
    out = []
    for r in table.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else v.item() if hasattr(v, "item") else v)
                    for k, v in r.items()})
    return out


def _cell(v, kind):
    from framework.reports.sections import fmt

    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if kind and isinstance(v, (int, float)):
        return fmt(v, kind)
    return str(v)


def _slug(key: str) -> str:
    return key.replace(".", "_")


def _window_rows(rows: pd.DataFrame, metric: str, fmt) -> list[list[str]]:
    """Per walk-forward window: the in-sample winner and its out-of-sample metric."""
    if rows.empty or "train" not in set(rows["segment"]):
        return []
    vals = [json.loads(s).get(metric) for s in rows["summary"]]
    rows = rows.assign(m=pd.to_numeric(pd.Series(vals, index=rows.index), errors="coerce"))
    out = []
    for w, g in rows.groupby("window"):
        train = g[g["segment"] == "train"].dropna(subset=["m"])
        if train.empty:
            continue
        best = train.loc[train["m"].idxmax()]
        test = g[(g["segment"] == "test") & (g["point_id"] == best["point_id"])]
        oos = test["m"].iloc[0] if len(test) else None
        out.append([str(int(w)), f"{best['start'][:10]} – {best['end'][:10]}", best["point_id"],
                    fmt(best["m"], "ratio"), "—" if oos is None or pd.isna(oos) else fmt(oos, "ratio")])
    return out


def _fig(h: float = 3.6):
    from framework.reports.plots import _new_axes

    return _new_axes(h)


def _png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _heatmap(table: pd.DataFrame, a: str, b: str, metric: str) -> bytes:
    fig, ax = _fig(4.2)
    ax.grid(False)
    t = table[[a, b, "metric"]].copy()
    t["metric"] = pd.to_numeric(t["metric"], errors="coerce")
    if t[a].nunique() > MAX_GRID or t[b].nunique() > MAX_GRID:
        sc = ax.scatter(t[a], t[b], c=t["metric"], cmap="viridis", s=28)
        fig.colorbar(sc, ax=ax, label=metric)
    else:
        grid = t.pivot_table(index=b, columns=a, values="metric", aggfunc="mean").sort_index()
        im = ax.imshow(grid.to_numpy(float), cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(grid.shape[1]), [str(x) for x in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [str(y) for y in grid.index])
        for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white")
        fig.colorbar(im, ax=ax, label=metric)
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    ax.set_title(f"{metric} by {a} and {b}")
    return _png(fig)


def _line(table: pd.DataFrame, a: str, metric: str) -> bytes:
    fig, ax = _fig()
    t = table[[a, "metric"]].copy()
    t["metric"] = pd.to_numeric(t["metric"], errors="coerce")
    t = t.groupby(a)["metric"].mean().sort_index()
    ax.plot([str(x) for x in t.index], t.to_numpy(), marker="o", color="#1f5fa8")
    ax.set_xlabel(a)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {a}")
    return _png(fig)


def _curves(ledger, runs: list[tuple[str, str]]) -> bytes:
    from framework.artifacts import load_run
    from framework.reports.plots import COLORS

    fig, ax = _fig()
    if not runs:
        ax.text(0.5, 0.5, "no full runs (--keep 0)", ha="center", va="center", transform=ax.transAxes)
    for i, (pid, rid) in enumerate(runs[:TOP_CURVES]):
        eq = load_run(ledger, rid).equity
        ax.plot(eq["time"], eq["equity"], color=COLORS[i % len(COLORS)], linewidth=1.3, label=f"#{i + 1} {pid}")
    if runs:
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_ylabel("equity")
    ax.set_title("best points: equity over the whole period")
    return _png(fig)


def _is_oos(table: pd.DataFrame, metric: str) -> bytes:
    fig, ax = _fig(4.2)
    x = pd.to_numeric(table["in_sample"], errors="coerce")
    y = pd.to_numeric(table["out_of_sample"], errors="coerce")
    ax.scatter(x, y, color="#1f5fa8", s=26)
    if x.notna().any() and y.notna().any():
        lo, hi = float(np.nanmin([x.min(), y.min()])), float(np.nanmax([x.max(), y.max()]))
        ax.plot([lo, hi], [lo, hi], color="#7f7f7f", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"in-sample {metric} (mean over training windows)")
    ax.set_ylabel(f"out-of-sample {metric} (mean over test windows)")
    ax.set_title("in-sample vs out-of-sample")
    return _png(fig)
