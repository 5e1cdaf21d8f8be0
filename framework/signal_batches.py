"""How validated signal rows become batches, and how old a batch is (SPEC §4, §21).

Decisions where the spec is silent:

- ``batch_window``: rows are grouped greedily in time order; a batch starts at its first row and
  takes every row whose time is within the window of that first row; it is stamped at its last
  row's time (when the portfolio was complete). A window of 0 batches by exact time, as without it.
- Rows that repeat an identical row of an earlier file (same batch, symbol, side x weight and
  confidence) are counted once, with a note: an analysis run's directory and its ``latest/`` copy
  hold the same rows, and a copy is not a conflicting opinion. Identical rows inside one file are
  still duplicates for ``duplicates:`` (two tiers that agree count twice in ``mean``).
- A batch whose gross weight is above 1 by at most ``gross_tolerance`` (rounded allocations that
  sum to 100.1%) is rescaled to exactly 1, with a note; above that it is an error.
- When most batches hold one symbol while the archive holds three or more, the rows were probably
  written one symbol at a time (an alert log, one run directory per symbol): with ``absent:
  close`` each such batch closes the others' positions. Parity warns and names ``batch_window``;
  it does not merge on its own, because a one-symbol rotation strategy looks the same.
- The age of a batch counts from the end of its bar: its time plus the bar interval, which is
  ``bars.timeframe`` of the strategy when set, else the most common gap between the archive's
  batches (the earlier framework stamps a batch at its bar's open), else 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

MINUTE_NS = 60 * 10**9


def window_batches(t_ns: np.ndarray, window_ns: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Return the batch times (int64 ns, increasing) and the batch of each row for times ``t_ns``.

    Without a window every distinct time is a batch; with one, rows within ``window_ns`` of a
    batch's first row join it and the batch is stamped at its last row's time.
    """
    uniq, inverse = unique_inverse(t_ns)
    if not window_ns or len(uniq) == 0:
        return uniq, inverse.astype(np.int64)
    batch_of = np.empty(len(uniq), np.int64)
    stamps: list[int] = []
    i = 0
    while i < len(uniq):       # one step per batch, not per row
        j = int(np.searchsorted(uniq, uniq[i] + window_ns, side="right"))
        batch_of[i:j] = len(stamps)
        stamps.append(uniq[j - 1])
        i = j
    return np.asarray(stamps, np.int64), batch_of[inverse]


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of integers, in one pass when they are already sorted.

    An archive is usually written in time order; sorting 2.5 M sorted times again cost 0.15 s.
    """
    if len(values) and not (values[1:] >= values[:-1]).all():
        return np.unique(values, return_inverse=True)
    new = np.ones(len(values), bool)
    np.not_equal(values[1:], values[:-1], out=new[1:])
    return values[new], np.cumsum(new, dtype=np.intp) - 1


def lex_order(key: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``np.lexsort((arange, second, key))``: rows by key, then second, then position.

    Without sorting when the rows are already in that order (an archive written by time and
    symbol), which is most of the time.
    """
    n = len(key)
    if (key[1:] >= key[:-1]).all():
        same = key[1:] == key[:-1]
        if (second[1:][same] >= second[:-1][same]).all():
            return np.arange(n, dtype=np.intp)
    return np.lexsort((np.arange(n), second, key))


def repeated_in_earlier_file(batch: np.ndarray, sym: np.ndarray, signed: np.ndarray, conf: np.ndarray,
                             fcode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return a mask of rows identical to a row of an earlier file, and for each the row it repeats."""
    n = len(batch)
    if n == 0 or fcode.min() == fcode.max():
        return np.zeros(n, bool), np.full(n, -1, np.int64)
    order = np.lexsort((np.arange(n), fcode, conf, signed, sym, batch))
    keys = (batch[order], sym[order], signed[order], conf[order])
    same = np.ones(n - 1, bool)
    for k in keys:
        same &= k[1:] == k[:-1]
    start = np.r_[True, ~same]
    head = order[np.maximum.accumulate(np.where(start, np.arange(n), 0))]
    repeat = np.zeros(n, bool)
    repeat[order] = fcode[order] > fcode[head]
    first = np.full(n, -1, np.int64)
    first[order] = head
    return repeat, np.where(repeat, first, -1)


def rescale_small_excess(batch: np.ndarray, weight: np.ndarray, n_batches: int,
                         tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rescale batches whose gross weight exceeds 1 by at most ``tolerance``.

    Return the new weights, the gross weight of every batch before rescaling, and the indices of
    the batches that were rescaled.
    """
    gross = np.bincount(batch, weights=np.abs(weight), minlength=n_batches)
    fixable = np.flatnonzero((gross > 1.0 + 1e-9) & (gross <= 1.0 + tolerance + 1e-12))
    if not len(fixable):
        return weight, gross, fixable
    scale = np.ones(n_batches)
    scale[fixable] = 1.0 / gross[fixable]
    return weight * scale[batch], gross, fixable


def warn_if_split(batch: np.ndarray, n_batches: int, n_symbols: int, home: str) -> bool:
    """Warn when most batches hold one symbol while the archive holds many (rows written one by one)."""
    if n_batches < 4 or n_symbols < 3:
        return False
    per = np.bincount(batch, minlength=n_batches)
    ones = int((per == 1).sum())
    if ones * 2 <= n_batches:
        return False
    warnings.warn(
        f"{ones} of {n_batches} batches hold a single symbol while the archive holds {n_symbols}: with "
        "absent: close each batch closes the positions of the others. If rows written within a few minutes "
        "belong to one portfolio (an alert log, one run directory per symbol), set signals.batch_window "
        f"(e.g. 5m) in {home}", stacklevel=3)
    return True


def bar_interval_ns(timeframe: str | None, times: np.ndarray) -> int:
    """The strategy's bar interval: ``bars.timeframe`` when set, else the archive's most common gap."""
    if timeframe:
        try:
            return int(pd.Timedelta(timeframe).value)
        except (ValueError, TypeError):
            pass
    t = np.asarray(times).astype("datetime64[ns]").view(np.int64)
    if len(t) < 2:
        return 0
    gaps = np.diff(t)
    gaps = gaps[gaps > 0]
    if not len(gaps):
        return 0
    values, counts = np.unique(gaps, return_counts=True)
    return int(values[np.argmax(counts)])


def batch_age_minutes(t: np.datetime64, interval_ns: int, now_ns: int) -> float:
    """Minutes since the end of the bar a batch stamped at ``t`` belongs to (``t`` + interval)."""
    end = np.datetime64(t, "ns").astype(np.int64) + int(interval_ns)
    return (int(now_ns) - int(end)) / MINUTE_NS


def check_spans(signals, bar_times: np.ndarray, signals_name: str, bars_name: str, strategy_file: str) -> None:
    """Refuse signals that start before the bars or after them, naming both spans.

    Without this a replay of an archive re-stamped to another year, or of bars of another
    period, ended in the simulated clock's "cannot go back" traceback.
    """
    from framework.errors import UsageError

    if not len(signals.times) or not len(bar_times):
        return
    s0, s1, b0, b1 = signals.times[0], signals.times[-1], bar_times[0], bar_times[-1]
    if b0 <= s0 <= b1:
        return

    def day(t: np.datetime64) -> str:
        return str(np.datetime_as_string(np.asarray(t).astype("datetime64[s]"), unit="s")) + "Z"

    where = "starts before the first bar" if s0 < b0 else "starts after the last bar"
    raise UsageError(f"the signal archive {where}: signals {day(s0)} .. {day(s1)} ({len(signals.times)} batches, "
                     f"{signals_name}); bars {day(b0)} .. {day(b1)} ({bars_name}). Give bars that cover the "
                     f"signals (--bars, or bars.path in {strategy_file}), or --start {day(b0)} to replay only "
                     "the batches the bars cover")
