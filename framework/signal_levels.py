"""The optional exit columns of a signal archive: ``stop_loss`` and ``take_profit`` (SPEC §20).

Each is a price (``95.5``) or a distance from the entry fill written with a ``%`` suffix
(``3%``: a long's stop 3% under its entry, its take-profit 3% over it). A blank cell means no
level. Validated like every column, every problem naming file, line and field:

- a value that is neither a price > 0 nor a percentage in (0, 100) (``NaN``, ``-1``, ``0``,
  ``100%``, ``abc``) is an error;
- for a long (side 1) the stop must lie under the take-profit, and, where the row carries the
  price it was computed at (a ``price`` or ``close`` column, as the regime framework and the
  alert log write), the stop under that price and the take-profit over it; a short the other way
  round. Rows with side 0 hold nothing to protect: their levels are read but not compared.

Decisions where the spec is silent: a percentage and a price on the same row are compared only
when both are prices (the entry fill is not known yet); a level equal to the price is an error
(it would fire at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from framework.errors import Problem
from framework.signal_files import _as_text, _is_blank, _numbers, _Rows, _show
from framework.types import ExitLevels

LEVEL_COLUMNS = ("stop_loss", "take_profit")
PRICE_COLUMNS = ("price", "close")


@dataclass(frozen=True, slots=True)
class RowLevels:
    """Per row: the level (a price, or a fraction of the entry when ``pct``), NaN where none."""

    value: np.ndarray
    pct: np.ndarray


def _parse(col: pd.Series, field: str, rows: _Rows, problems: list[Problem]) -> tuple[RowLevels, np.ndarray]:
    values = _numbers(col)
    pct = np.zeros(len(col), bool)
    blank = np.array([_is_blank(v) for v in col.tolist()], bool) if len(col) else np.zeros(0, bool)
    if not pd.api.types.is_numeric_dtype(col):
        text = _as_text(col).str.strip()
        is_pct = text.str.endswith("%").fillna(False).to_numpy(bool) & np.isnan(values)
        if is_pct.any():
            values = values.copy()
            values[is_pct] = pd.to_numeric(text[is_pct].str[:-1].str.strip(), errors="coerce").to_numpy(float) / 100
            pct = is_pct
    good_price = ~pct & (values > 0) & np.isfinite(values)
    good_pct = pct & (values > 0) & (values < 1)
    ok = blank | good_price | good_pct

    def say(i: int) -> str:
        if pct[i]:
            return f"{field} as a distance must be a percentage in (0, 100), got {_show(col.iloc[i])}"
        return f"{field} must be a price > 0 or a distance from the entry such as 3%, got {_show(col.iloc[i])}"

    rows.report(np.flatnonzero(~ok), field, say, f"a bad {field}", problems)
    keep = ok & ~blank
    return RowLevels(np.where(keep, values, np.nan), pct & keep), ok


def check_levels(df: pd.DataFrame, side: np.ndarray, rows: _Rows,
                 problems: list[Problem]) -> tuple[RowLevels | None, RowLevels | None, np.ndarray]:
    """Read and check ``stop_loss``/``take_profit`` (None when the archive has no such column);
    returns them per row and the mask of rows whose levels are valid."""
    n = len(df)
    ok = np.ones(n, bool)
    out: list[RowLevels | None] = []
    for field in LEVEL_COLUMNS:
        if field in df.columns:
            lv, good = _parse(df[field], field, rows, problems)
            ok &= good
            out.append(lv)
        else:
            out.append(None)
    stop, take = out
    if stop is None and take is None:
        return None, None, ok
    price = np.full(n, np.nan)
    for name in PRICE_COLUMNS:
        if name in df.columns:
            price = _numbers(df[name])
            break
    s_abs = np.full(n, np.nan) if stop is None else np.where(stop.pct, np.nan, stop.value)
    t_abs = np.full(n, np.nan) if take is None else np.where(take.pct, np.nan, take.value)
    with np.errstate(invalid="ignore"):
        long, short = side > 0, side < 0
        bad_stop = ok & ((long & (s_abs >= price)) | (short & (s_abs <= price)))
        bad_take = ok & ~bad_stop & ((long & (t_abs <= price)) | (short & (t_abs >= price)))
        crossed = ok & ~bad_stop & ~bad_take & ((long & (s_abs >= t_abs)) | (short & (s_abs <= t_abs)))

    def way(i: int) -> str:
        return "a long" if side[i] > 0 else "a short"

    rows.report(np.flatnonzero(bad_stop), "stop_loss",
                lambda i: f"stop_loss {s_abs[i]:g} is {'above' if side[i] > 0 else 'below'} the price "
                          f"{price[i]:g} of {way(i)}: it would fire at once", "a stop on the wrong side", problems)
    rows.report(np.flatnonzero(bad_take), "take_profit",
                lambda i: f"take_profit {t_abs[i]:g} is {'below' if side[i] > 0 else 'above'} the price "
                          f"{price[i]:g} of {way(i)}: it would fire at once", "a take-profit on the wrong side",
                problems)
    rows.report(np.flatnonzero(crossed), "stop_loss",
                lambda i: f"stop_loss {s_abs[i]:g} is on the take_profit's side ({t_abs[i]:g}) for {way(i)}",
                "a stop beyond its take-profit", problems)
    return stop, take, ok & ~bad_stop & ~bad_take & ~crossed


def refuse_levels(stop: RowLevels | None, take: RowLevels | None, rows: _Rows, problems: list[Problem],
                  why: str) -> None:
    """Report every row that sets a level, where the run could not place it (``why`` says so and
    what to do): a level read and then not acted on would leave a position unprotected in silence."""
    for field, lv in zip(LEVEL_COLUMNS, (stop, take)):
        if lv is not None:
            message = f"{field} is set but {why}"
            rows.report(np.flatnonzero(np.isfinite(lv.value)), field, lambda _: message, f"a {field}", problems,
                        cap=1)


def none(n: int) -> RowLevels:
    """No level on any of ``n`` rows."""
    return RowLevels(np.full(n, np.nan), np.zeros(n, bool))


def level_matrices(stop: RowLevels | None, take: RowLevels | None, valid: np.ndarray, row_batch: np.ndarray,
                   sym: np.ndarray, side: np.ndarray, conf: np.ndarray, rule: str | None,
                   shape: tuple[int, int]) -> ExitLevels | None:
    """The levels of the valid rows as (batch, symbol) matrices; None without exit columns.

    Where several rows make one cell (a ``duplicates`` rule), the row that wins is the later one,
    or under ``max_confidence`` the most confident one (ties: the later). Rows with side 0 carry none.
    """
    if stop is None and take is None:
        return None
    order = np.lexsort((np.arange(len(valid)), conf[valid])) if rule == "max_confidence" else np.arange(len(valid))
    rows, b, s = valid[order], row_batch[order], sym[valid][order]
    flat = side[rows] == 0
    out = []
    for lv in (stop or none(len(side)), take or none(len(side))):
        value, pct = np.full(shape, np.nan), np.zeros(shape, bool)
        v = np.where(flat, np.nan, lv.value[rows])
        value[b, s] = v          # later rows overwrite earlier ones (fancy assignment keeps the last)
        pct[b, s] = lv.pct[rows] & ~flat
        out += [value, pct]
    return ExitLevels(out[0], out[2], out[1], out[3])
