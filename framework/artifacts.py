"""Run artifacts from the ledger: ``reports/RUN_ID/`` with summary.json and the CSVs of SPEC §9.

Everything here reads the ledger tables only, so a backtest, a paper run and a live run produce
the same files by the same code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from framework.csv_text import write_csvs
from framework.ledger import Ledger, unpack_prices

SUMMARY_KEYS = ("run_id", "strategy", "mode", "broker", "config_hash", "start", "end", "initial_equity",
                "final_equity", "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar",
                "turnover", "n_cycles", "n_orders", "n_fills", "n_rejected", "fees_paid", "slippage_cost")


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True, format="ISO8601")


def load_run(ledger: Ledger, run_id: str, tables=None, equity: pd.DataFrame | None = None):
    """Build the RunData of one run (the only input of reports).

    The run's row always comes from the ledger. Its records come from the ledger too, unless the
    caller still holds the columns it has just written there (``tables``, a backtest's
    ``framework.bulk.RunTables``, with its ``equity`` curve): then the same frames are built from
    those columns instead of being read back, and ``run_data`` makes the one RunData from either."""
    run = ledger.run(run_id)
    if run is None:
        from framework.errors import UsageError

        raise UsageError(f"no run {run_id!r} in {ledger.path} (see `parity runs`)")
    frames = ledger_frames(ledger, run_id, run) if tables is None else tables_frames(tables, equity, run)
    return run_data(run, *frames)


def ledger_frames(ledger: Ledger, run_id: str, run: dict) -> tuple:
    """(equity, fills, orders, decisions, cycle statuses, prices) as read from the ledger."""
    equity = ledger.frame("equity", run_id, "time")
    equity["time"] = _utc(equity["time"])
    fills = ledger.frame("fills", run_id)
    fills["time"] = _utc(fills["time"])
    orders = ledger.frame("orders", run_id)
    orders["time"] = _utc(orders["time"])
    decisions = ledger.frame("decisions", run_id)
    decisions["time"] = _utc(decisions["time"])
    cycles = ledger.frame("cycles", run_id, "seq")
    universe = json.loads(run["universe"] or "[]")
    if len(cycles) and universe:
        mat = np.vstack([unpack_prices(b) for b in cycles["prices"]])
        prices = _prices(mat, _utc(cycles["time"]), universe)
    else:
        prices = pd.DataFrame()
    return equity, fills, orders, decisions, cycles["status"], prices


def tables_frames(tables, equity: pd.DataFrame | None, run: dict) -> tuple:
    """The frames of ``ledger_frames`` from the columns a backtest wrote to the ledger: the same
    values (times at the ledger's microseconds, NULL as NaN or None), rows in the same order."""
    assert equity is not None
    eq = equity[["time", "equity", "cash", "gross_exposure", "net_exposure"]].copy()
    eq["time"] = _us(eq["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]"))
    eq = eq.drop_duplicates("time", keep="last").sort_values("time", kind="stable").reset_index(drop=True)
    f, o, d = tables.fills, tables.orders, tables.decisions
    fills = pd.DataFrame({"time": _us(f["time"].times), **_shared(f, ("symbol", "side", "qty", "price", "fee",
                                                                       "broker_order_id", "client_order_id",
                                                                       "slippage"))}, copy=False)
    if tables.fill_legs is not None:       # each fill's order's leg, known without a lookup by client id
        legs = np.array([*o["leg"].values, np.nan], dtype=object)      # code -1: no such order (NaN)
        fills["leg"] = pd.Series(legs[tables.fill_legs], dtype=object)
    orders = pd.DataFrame({"time": _us(o["time"].times), **_shared(o, ("symbol", "side", "qty", "type", "status",
                                                                        "client_order_id", "filled_qty",
                                                                        "avg_price", "leg"))}, copy=False)
    decisions = pd.DataFrame({"time": _us(d["time"].times), **_shared(d, ("symbol", "rule", "action", "requested",
                                                                           "approved", "reason"))}, copy=False)
    status = pd.Series(tables.cycles["status"], dtype=object)
    universe = json.loads(run["universe"] or "[]")
    if len(status) and universe:
        prices = _prices(tables.prices, _us(tables.cycle_times), universe)
    else:
        prices = pd.DataFrame()
    return eq, fills, orders, decisions, status, prices


def run_data(run: dict, equity: pd.DataFrame, fills: pd.DataFrame, orders: pd.DataFrame, decisions: pd.DataFrame,
             cycle_status: pd.Series, prices: pd.DataFrame):
    """The RunData of a run from its frames (whichever source they came from)."""
    from framework.reports.rundata import RunData, periods_per_year_for

    equity = equity[["time", "equity", "cash", "gross_exposure", "net_exposure"]]
    fills = fills.rename(columns={"broker_order_id": "order_id"})
    orders = orders[["time", "symbol", "side", "qty", "type", "status", "client_order_id", "filled_qty", "avg_price",
                     "leg"]]
    # which part of a cycle each fill belongs to: a protective exit (``stop``, ``take``, SPEC §20)
    # shows as its own rows, next to the cycle's ``reduce``/``add`` legs (the leg of the order the
    # fill's client id names; a backtest's columns know it already: ``tables_frames``)
    if "leg" not in fills.columns:
        legs = orders.drop_duplicates("client_order_id", keep="last").set_index("client_order_id")["leg"]
        fills = fills.assign(leg=fills["client_order_id"].map(legs).astype(object))
    fills = fills[["time", "symbol", "side", "qty", "price", "fee", "order_id", "client_order_id", "slippage",
                   "leg"]]
    decisions = decisions[["time", "symbol", "rule", "action", "requested", "approved", "reason"]]
    universe = json.loads(run["universe"] or "[]")
    settings = json.loads(run["settings"] or "{}")
    crypto_only = bool(universe) and all("/" in s for s in universe)
    ppy = settings.get("periods_per_year") or periods_per_year_for(pd.DatetimeIndex(equity["time"]), crypto_only)
    summary = summarize(run, equity, fills, orders, cycle_status, ppy)
    return RunData(summary, equity, fills, orders, decisions, prices, float(ppy))


def _shared(columns: dict, names: tuple[str, ...]) -> dict:
    """Columns for a frame without copying them: a list of text stays the Python strings the table
    holds (object dtype; pandas would otherwise copy them into new string storage), Arrow-backed
    text (a backtest's client order ids, ``framework.client_ids``) stays Arrow's, and a column of
    few values stays codes (a categorical with sorted categories)."""
    from framework.ledger import Coded

    out = {}
    for k in names:
        v = columns[k]
        if isinstance(v, Coded):
            out[k] = _categorical(v)
        elif isinstance(v, list):
            out[k] = pd.Series(v, dtype=object)
        else:
            out[k] = v
    return out


def _categorical(col) -> pd.Series:
    """A ``Coded`` column as a pandas categorical (None as a missing value)."""
    named = [(v, k) for k, v in enumerate(col.values) if v is not None]
    if not all(isinstance(v, str) for v, _ in named):
        return pd.Series(col.rows(), dtype=object)
    named.sort()
    remap = np.full(len(col.values), -1, np.int32)
    for new, (_, old) in enumerate(named):
        remap[old] = new
    return pd.Series(pd.Categorical.from_codes(remap[col.codes], [v for v, _ in named]))


def _us(times: np.ndarray) -> pd.Series:
    """Times as the ledger returns them: UTC, microseconds (its ISO text), as nanosecond datetimes."""
    t = np.asarray(times).astype("datetime64[us]").astype("datetime64[ns]")
    return pd.Series(pd.DatetimeIndex(t).tz_localize("UTC"))


def _prices(mat: np.ndarray, times, universe: list[str]) -> pd.DataFrame:
    prices = pd.DataFrame(mat, index=pd.DatetimeIndex(times), columns=universe)
    return prices[~prices.index.duplicated(keep="last")].sort_index()


def summarize(run: dict, equity: pd.DataFrame, fills: pd.DataFrame, orders: pd.DataFrame, cycles, periods_per_year: float
              ) -> dict:
    """The summary.json of a run; ``cycles`` is the cycles frame or its ``status`` column."""
    from framework.reports.metrics import summary_metrics

    cycle_status = cycles["status"] if isinstance(cycles, pd.DataFrame) else cycles
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
        "n_cycles": int((cycle_status != "mark").sum()) if len(cycle_status) else 0,
        "n_orders": int(len(orders)),
        "n_fills": int(len(fills)),
        "n_rejected": int((orders["status"] == "rejected").sum()) if len(orders) else 0,
    }
    return {k: out.get(k) for k in SUMMARY_KEYS}


def write_artifacts(ledger: Ledger, run_id: str, reports_dir: str | Path, report: bool = True, tables=None,
                    equity: pd.DataFrame | None = None, record: bool = True, figures=None,
                    ahead: ArtifactsAhead | None = None) -> Path:
    """Write reports/RUN_ID/: summary.json, equity/orders/fills/decisions CSVs and report.html
    (from ``tables`` and ``equity`` when the caller has just written them: see ``load_run``).
    ``record`` stores the path in the run's row (a backtest does it when it marks the run done);
    ``figures``, a ``framework.reports.figures.FigureWorker`` to draw the report's figures;
    ``ahead``, the run's artifacts already begun (``ArtifactsAhead``), with the RunData they came from."""
    data = ahead.data if ahead is not None else load_run(ledger, run_id, tables, equity)
    out = Path(reports_dir) / run_id
    write_run_files(data, out, report=report, figures=figures, ahead=ahead)
    if record:
        ledger.set_artifacts(run_id, str(out))
    return out


class ArtifactsAhead:
    """A backtest's artifacts begun before its records are in the ledger: the four CSVs written by
    a forked child (``framework.forked``), and the report's figures handed to their helper, while
    the parent writes the same records to the ledger; ``write_run_files`` takes them over.

    The RunData is built once, from the columns the ledger is about to be given (the run's row is
    already in the ledger and no field of it that the artifacts show changes when the run is marked
    done), so the files are byte for byte what the in-process path writes. The child writes them
    under ``.partial`` names; they get their real names only once it has finished. Without a child
    (no ``fork``, threads running) or when it fails, the CSVs are written in-process as before."""

    PARTIAL = ".partial"

    def __init__(self, data, out: Path, child, inputs=None):
        self.data, self.out, self._child, self.inputs = data, out, child, inputs

    @classmethod
    def start(cls, ledger: Ledger, run_id: str, reports_dir: str | Path, tables, equity: pd.DataFrame,
              figures=None) -> ArtifactsAhead:
        """Fork the CSV writer; with a ``figures`` helper, also hand it the report's figure inputs."""
        from framework.forked import Forked
        from framework.memory import release_freed

        data = load_run(ledger, run_id, tables, equity)
        out = Path(reports_dir) / run_id
        out.mkdir(parents=True, exist_ok=True)
        frames = csv_frames(data, out, cls.PARTIAL)
        release_freed()     # the heap's free pages go back first: reused after the fork, they would be copied
        child = Forked.start(lambda: write_csvs(frames))
        inputs = None
        if figures is not None:
            from framework.reports.figures import figure_inputs

            inputs = figure_inputs(data)
            figures.submit(inputs)
        return cls(data, out, child, inputs)

    def finish(self) -> None:
        """Give the child's files their names, or write the CSVs here if it did not finish them."""
        child, self._child = self._child, None
        if child is not None and child.wait():
            for path in self._paths():
                Path(str(path) + self.PARTIAL).replace(path)
            return
        self._drop_partial()
        write_csvs(csv_frames(self.data, self.out))

    def abandon(self) -> None:
        """The command failed before its artifacts: stop the child and remove what it wrote."""
        child, self._child = self._child, None
        if child is not None:
            child.stop()
        self._drop_partial()

    def _paths(self) -> list[Path]:
        return [self.out / name for name in CSV_FILES]

    def _drop_partial(self) -> None:
        for path in self._paths():
            Path(str(path) + self.PARTIAL).unlink(missing_ok=True)


ORDER_CSV = ("time", "symbol", "side", "qty", "type", "status", "client_order_id", "filled_qty", "avg_price")
FILL_CSV = ("time", "symbol", "side", "qty", "price", "fee", "order_id", "client_order_id")
EXIT_LEGS = ("stop", "take")
CSV_FILES = ("equity.csv", "orders.csv", "fills.csv", "decisions.csv")


def csv_frames(data, out: Path, suffix: str = "") -> list[tuple[pd.DataFrame, Path]]:
    """The four CSVs of SPEC §9 for one RunData: (frame, path), in the order they are written."""
    # a run with protective exits (SPEC §20) adds ``leg`` last, so each exit shows as its own row
    # (``stop``, ``take``) beside the cycle's legs
    exits = "leg" in data.orders.columns and data.orders["leg"].astype(object).isin(EXIT_LEGS).any()
    extra = ["leg"] if exits else []
    # in lockstep (``write_csvs``): the fills' quantities and prices repeat their orders' and are formatted once
    frames = (data.equity, data.orders[[*ORDER_CSV, *extra]], data.fills[[*FILL_CSV, *extra]], data.decisions)
    return [(f, out / f"{name}{suffix}") for f, name in zip(frames, CSV_FILES, strict=True)]


def write_run_files(data, out: Path, report: bool = True, figures=None, ahead: ArtifactsAhead | None = None) -> None:
    """summary.json, the four CSVs of SPEC section 9 and (optionally) report.html for one RunData.

    With a ``figures`` helper (``framework.reports.figures.FigureWorker``) the report's figures are
    drawn there while the CSVs are written; with ``ahead`` the CSVs are being written already (and
    the figures drawn, when it took the helper), and are taken over last."""
    out.mkdir(parents=True, exist_ok=True)
    if report:
        from framework.reports.figures import figure_inputs

        inputs = ahead.inputs if ahead is not None and ahead.inputs is not None else None
        if inputs is None:
            inputs = figure_inputs(data)
            if figures is not None:
                figures.submit(inputs)
    (out / "summary.json").write_text(json.dumps(data.summary, indent=2, default=str) + "\n")
    if ahead is None:
        write_csvs(csv_frames(data, out))
    if report:
        from framework.reports.html import render_report

        render_report(data, out, inputs=inputs, figures=figures)
    if ahead is not None:
        ahead.finish()
