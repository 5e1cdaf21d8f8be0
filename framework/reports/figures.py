"""The report's six figures: what they are drawn from, drawn here or ahead in a forked helper.

A report's figures cost ``parity backtest`` about a second of matplotlib (importing it, then six
PNGs), none of which needs the backtest until its results exist. ``FigureWorker.start`` forks a
helper at the start of the command; it imports matplotlib while the backtest runs, then draws the
figures (``submit``) while the command writes the CSV artifacts and the report's tables, leaves the
PNG bytes in a private temporary file and exits (its memory is gone before the command's peak);
``images`` reads them. It runs the very functions ``draw_figures`` runs in the process,
on the same inputs, so the files are byte-identical either way. The helper only ever speeds things
up: where it cannot start (no ``fork`` on the platform, threads already running) or whenever it
fails, the figures are drawn in the process, raising what drawing raises there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from framework.reports.plots import CostCurves

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from framework.reports.rundata import RunData

FIGURES = ("equity", "drawdown", "exposure", "costs", "attribution", "decisions")
HELPER_WAIT = 300.0      # seconds the command waits for the helper's PNGs before drawing them itself
SPILL_PREFIX = "parity-figures-"     # the helper's PNGs wait for the command in a temporary file so named


@dataclass(frozen=True)
class FigureInputs:
    """What the figures (and the report's attribution and decision tables) are made from."""

    equity_curve: pd.Series
    benchmark: pd.Series | None
    benchmark_label: str
    equity: pd.DataFrame
    costs: CostCurves            # cumulative fees and slippage as drawn (a few thousand points, not the fills)
    attribution: pd.DataFrame
    decision_counts: pd.DataFrame


def figure_inputs(run: RunData) -> FigureInputs:
    """The inputs of ``run``'s figures (computed once, in the process that writes the report)."""
    from framework.reports.attribution import FillIndex, attribution_for
    from framework.reports.sections import benchmark_curve, decision_counts

    benchmark, label = benchmark_curve(run)
    index = FillIndex.of(run.fills) if len(run.fills) else None       # the fills' time order, taken once
    return FigureInputs(run.equity_series(), benchmark, label, run.equity,
                        CostCurves.of(run.fills, None if index is None else index.order),
                        attribution_for(run.prices, run.fills, index), decision_counts(run.decisions))


def draw_figures(inputs: FigureInputs) -> dict[str, bytes]:
    """The six PNGs of the report, by name, in the order of ``FIGURES``."""
    from framework.reports import plots

    i = inputs
    return {
        "equity": plots.equity_figure(i.equity_curve, i.benchmark, i.benchmark_label),
        "drawdown": plots.drawdown_figure(i.equity_curve),
        "exposure": plots.exposure_figure(i.equity),
        "costs": plots.costs_figure(i.costs),
        "attribution": plots.attribution_figure(i.attribution),
        "decisions": plots.decisions_figure(i.decision_counts),
    }


class FigureWorker:
    """A forked helper process that loads matplotlib now and draws one report's figures later."""

    def __init__(self, conn: Connection, process: BaseProcess):
        self._conn: Connection | None = conn
        self._process = process
        self._sent = False

    @classmethod
    def start(cls) -> FigureWorker | None:
        """Fork the helper, or None where forking is not safe (no ``fork``, other threads running)."""
        import multiprocessing

        from framework.forked import can_fork

        if not can_fork() or "fork" not in multiprocessing.get_all_start_methods():
            return None
        ctx = multiprocessing.get_context("fork")
        try:
            ours, theirs = ctx.Pipe()
            process = ctx.Process(target=_serve, args=(theirs, ours), name="parity-figures", daemon=True)
            process.start()
        except OSError:
            return None
        theirs.close()
        return cls(ours, process)

    def submit(self, inputs: FigureInputs) -> None:
        """Hand the helper its inputs; it draws while the caller goes on."""
        if self._conn is None:
            return
        try:
            self._conn.send(inputs)
            self._sent = True
        except (OSError, ValueError):            # the helper is gone: ``images`` draws here
            self.close()

    def images(self, inputs: FigureInputs) -> dict[str, bytes]:
        """The PNGs the helper drew from ``inputs`` (as ``submit`` gave them), else drawn here."""
        got: dict[str, bytes] | None = None
        if self._conn is not None and self._sent:
            try:   # a helper that never answers (stopped, stuck) costs HELPER_WAIT seconds, not the command
                got = _unspill(self._conn.recv()) if self._conn.poll(HELPER_WAIT) else None
            except (OSError, EOFError):
                got = None
            self._sent = False
        self.close()
        if got is not None and tuple(got) == FIGURES:
            return got
        return draw_figures(inputs)              # no helper, or it failed: the same drawing, here

    def close(self) -> None:
        """Let the helper go (it exits when its pipe closes) and reap it; PNGs it spilled that
        nobody read are deleted."""
        if self._conn is not None:
            try:
                if self._sent and self._conn.poll(0):
                    _unspill(self._conn.recv())
            except (OSError, EOFError):
                pass
            self._conn.close()
            self._conn = None
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


def _spill(images: dict[str, bytes]) -> str:
    """Write the PNGs to a private temporary file; return its path. The helper then exits at once
    instead of waiting, blocked on a pipe smaller than the PNGs, until the command reads them, so
    its memory is not held through the rest of the command."""
    import os
    import struct
    import tempfile

    fd, path = tempfile.mkstemp(prefix=SPILL_PREFIX, suffix=".png-set")
    with os.fdopen(fd, "wb") as f:
        for name in FIGURES:
            f.write(struct.pack("<Q", len(images[name])))
            f.write(images[name])
    return path


def _unspill(path: object) -> dict[str, bytes] | None:
    """The PNGs ``_spill`` wrote to ``path``, which is deleted; None when there are none."""
    import os
    import struct

    if not isinstance(path, str) or not os.path.basename(path).startswith(SPILL_PREFIX):
        return None
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    out: dict[str, bytes] = {}
    at = 0
    for name in FIGURES:
        if at + 8 > len(blob):
            return None
        (n,) = struct.unpack_from("<Q", blob, at)
        out[name] = blob[at + 8:at + 8 + n]
        at += 8 + n
    return out if at == len(blob) else None


def _serve(conn: Connection, parent_end: Connection) -> None:
    """The helper: import what drawing needs, wait for the inputs, send back the PNGs (or None)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's; it closes the pipe
    parent_end.close()
    try:
        from matplotlib import figure  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401 - the import is the point

        from framework.reports import plots  # noqa: F401
    except BaseException:  # noqa: BLE001 - the parent draws, and sees the error there
        pass
    try:
        inputs = conn.recv()
    except (EOFError, OSError):                      # the command ended (or failed) before its report
        return
    try:
        spilled: str | None = _spill(draw_figures(inputs))
    except BaseException:  # noqa: BLE001 - the parent draws again and raises it with its traceback
        spilled = None
    try:
        conn.send(spilled)
    except (OSError, ValueError):
        _unspill(spilled)
    conn.close()
