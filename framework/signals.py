"""Read a signal archive, validate every row and return one strategy's batches as dense matrices.

An archive is one CSV, JSON (array or JSON Lines), JSON Lines or Parquet file, or a directory of
them at any depth (sorted paths, hidden entries and other extensions skipped), read as one table
with the columns ``symbol,time,regime,side,weight,confidence,strategy`` (``regime`` and
``strategy`` optional, extra columns kept and ignored, names case-insensitive; reading itself is
framework.signal_files). Validation is vectorised and collects every problem before raising one
``DataError``; each ``Problem`` names file, line and field. For CSV and JSON Lines the line is the
physical line (CSV header = line 1); for a JSON array and Parquet it is the 1-based row. A
strategy's ``signals:`` settings (SPEC §21: ``columns``, ``format``, ``batch_window``,
``gross_tolerance``, ``strategies``, ``timezone``, ``duplicates``) arrive as ``source``; every
message about a fixable input names the setting and the file it goes in.

Decisions where the spec is silent:

- Times are ISO 8601 strings (or typed timestamps in Parquet); a zone is ``Z`` or ``±HH[:MM]``.
  Epoch numbers are rejected as ambiguous. With ``timezone``, a local time that does not exist or
  is ambiguous there (DST change) is a problem, not a guess.
- Blank CSV lines (every field empty) are skipped, not reported.
- Strategy names match exactly after trimming. When the archive names strategies and none of its
  rows names the requested one, that is an error even if untagged rows exist: a typo must not
  silently select only the untagged rows. Rows of other strategies are not validated.
- Duplicates are found on (UTC time, canonical symbol), so ``BTCUSD`` and ``X:BTCUSD`` collide.
  ``max_confidence`` breaks ties by file order (later wins). The gross-weight check runs after the
  duplicate rule (without a rule, on the later row) so a duplicate is not also reported as excess
  gross weight.
- ``symbol_check`` receives the sorted distinct canonical symbols that are in ``universe`` (all of
  them when there is no universe); its reasons for other symbols are ignored.
- Messages are capped: 100 rows per rule, 5 rows per unknown symbol (200 symbols, the rest named
  in one summary), 10 lines per over-weight batch; each cap adds a summary problem with the count.
- A bad ``universe`` entry is a UsageError (configuration), not a DataError.
- Rows of several tiers (the regime framework's LT/MT/ST) sharing time and symbol are duplicates:
  the user's ``duplicates`` rule decides (``max_confidence`` suggested); without one the message
  names the tiers. Rows identical to a row of an earlier file are counted once (a run directory
  and its ``latest/`` copy; framework.signal_batches says more, with batching and tolerance).
- ``strategies: label`` keeps every row as one portfolio whatever the strategy column says;
  ``sleeves`` runs each strategy as a sleeve of one account (SPEC §18, ``framework.sleeves``).
- Symbols are read strictly: a bare ``...USD`` whose base no venue file lists is an error.
- Percentages (``31.2%``) are accepted for weight and confidence, only when a value is not a
  plain number, so the all-numeric fast path is unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from framework.errors import DataError, Problem, UsageError
from framework.signal_arrow import release_arrow_memory
from framework.signal_batches import (
    lex_order,
    repeated_in_earlier_file,
    rescale_small_excess,
    warn_if_split,
    window_batches,
)
from framework.signal_files import (
    MAX_ROWS_PER_RULE,
    ReadOptions,
    _as_text,
    _combine,
    _is_blank,
    _numbers,
    _ordered,
    _read_files,
    _Rows,
    _show,
)
from framework.signal_levels import check_levels, level_matrices, refuse_levels
from framework.signal_times import check_times as _check_times
from framework.symbols import canonical
from framework.types import SignalBatches

if TYPE_CHECKING:
    from framework.config import SignalSource

DUPLICATE_RULES = ("last", "max_confidence", "mean")
GROSS_TOLERANCE = 1e-9
MAX_ROWS_PER_SYMBOL = 5      # rows listed per unknown symbol
MAX_SYMBOLS = 200            # unknown symbols reported with their rows; the rest are named in one problem
MAX_LINES_PER_BATCH = 10     # lines listed in a gross-weight problem



def note(message: str) -> None:
    """Tell the user something they should know but need not act on (stderr, never stdout)."""
    print(f"note: {message}", file=sys.stderr)


def settings_home(config_file: str | None) -> str:
    """Name the file where ``signals.*`` settings go, for messages."""
    if config_file and not config_file.startswith("<"):
        return config_file
    return ("the strategy's file (config/strategies/NAME.yaml; `execute` without --strategy reads "
            "config/strategies/default.yaml)")


def load_signals(
    path: str | Path,
    *,
    strategy: str | None = None,
    timezone: str | None = None,
    duplicates: str | None = None,
    symbol_check: Callable[[list[str]], dict[str, str]] | None = None,
    universe: Sequence[str] | None = None,
    source: SignalSource | None = None,
    config_file: str | None = None,
    crypto_bases: frozenset[str] = frozenset(),
    no_exits: str | None = None,
) -> SignalBatches:
    """Read and validate the archive at ``path`` and return the batches of one strategy.

    ``timezone`` localises times written without a zone; ``duplicates`` names the rule for
    repeated (time, symbol) rows (``last``, ``max_confidence`` or ``mean``; None makes them an
    error); ``symbol_check`` gets the distinct canonical symbols once and returns
    ``{symbol: reason}`` for those that are unknown or not tradable; ``universe`` fixes the column
    order and the symbols allowed. ``source`` (a strategy's ``signals:`` settings) adds the
    reading settings of SPEC §21 and supplies ``timezone``/``duplicates`` when they are None;
    ``config_file`` is the file those settings live in (named in messages); ``crypto_bases`` are
    the venues' crypto assets, to read bare pairs such as POLUSD. ``no_exits`` says why this
    archive's rows may carry no ``stop_loss``/``take_profit`` (each row that does is a problem).
    Raise DataError listing every problem found.
    """
    from framework.config import SignalSource

    src = source or SignalSource()
    home = settings_home(config_file)
    root = str(path)
    timezone = timezone if timezone is not None else src.timezone
    duplicates = duplicates if duplicates is not None else src.duplicates
    if duplicates is None and src.format == "alchemiser-alerts":
        duplicates = "last"
    if duplicates is not None and duplicates not in DUPLICATE_RULES:
        raise DataError(Problem(root, None, "duplicates",
                                f"unknown duplicates rule {duplicates!r} (use last, max_confidence or mean)"))
    if timezone is not None:
        try:
            pd.Timestamp("2000-01-01").tz_localize(timezone)
        except Exception as e:
            raise DataError(Problem(root, None, "timezone", f"unknown time zone {timezone!r} "
                                    f"(signals.timezone in {home})")) from e
    allowed = _canonical_universe(universe)

    files, problems = _read_files(Path(path), options=_read_options(src, home))
    usable = [f for f in files if f.usable]
    if not usable:
        raise DataError(_ordered(problems, [f.path for f in files]) or [Problem(root, None, None,
                                                                                "the archive has no rows")])
    df, rows = _combine(usable)
    keep, name = _select_strategy(df, strategy, root, problems, src.strategies, home)
    if keep is not None:
        df, rows = df.loc[keep].reset_index(drop=True), rows.subset(keep)

    sym, sym_ok, symbols = _check_symbols(df["symbol"], rows, allowed, symbol_check, problems, crypto_bases)
    t_ns, t_ok = _check_times(df["time"], rows, timezone, problems, home)
    side, side_ok = _check_side(df["side"], rows, problems)
    weight, w_ok = _check_unit_interval(df["weight"], "weight", rows, problems)
    conf, c_ok = _check_unit_interval(df["confidence"], "confidence", rows, problems)
    stop, take, lv_ok = check_levels(df, side, rows, problems)
    if no_exits:
        refuse_levels(stop, take, rows, problems, no_exits)
    tier = _as_text(df["tier"]).fillna("") if "tier" in df.columns else None
    del df                                    # every column is parsed: let the text go (a large archive's
    for f in files:                           # largest part) before the per-row arrays of batching
        f.frame = None
    release_arrow_memory()

    valid = np.flatnonzero(sym_ok & t_ok & side_ok & w_ok & c_ok & lv_ok)
    times, row_batch = window_batches(t_ns[valid], src.window_ns())
    signed = side * weight
    repeat, first = repeated_in_earlier_file(row_batch, sym[valid], signed[valid], conf[valid], rows.fcode[valid])
    if repeat.any():
        i = int(np.flatnonzero(repeat)[0])
        note(f"{int(repeat.sum())} row(s) repeat identical rows of an earlier file and are counted once (e.g. "
             f"{rows.where(int(valid[i]), -1)} repeats {rows.where(int(valid[first[i]]), -1)}; a run directory "
             "and its latest/ copy)")
        valid, row_batch = valid[~repeat], row_batch[~repeat]
    cells = _resolve(valid, times, row_batch, t_ns, sym, signed, conf, duplicates, rows, symbols, problems,
                     home, tier)
    cells = _check_gross(valid, cells, rows, problems, src.gross_tolerance, home)
    if problems:
        raise DataError(_ordered(problems, [f.path for f in files]))

    shape = (len(cells.times), len(symbols))
    weights, confidence = np.full(shape, np.nan), np.full(shape, np.nan)
    weights[cells.batch, cells.column] = cells.weight
    confidence[cells.batch, cells.column] = cells.confidence
    warn_if_split(cells.batch, len(cells.times), len(symbols), home)
    levels = level_matrices(stop, take, valid, row_batch, sym, side, conf, duplicates, shape)
    return SignalBatches(name, tuple(symbols), cells.times.astype("datetime64[ns]"), weights, confidence,
                         sources=tuple(f.path for f in usable), levels=levels)


def _read_options(src: SignalSource, home: str) -> ReadOptions:
    convert = None
    if src.format == "alchemiser-alerts":
        from framework.signal_formats import alchemiser_alerts

        convert = alchemiser_alerts(home)
    return ReadOptions(columns=dict(src.columns) or None, convert=convert, home=home)


def read_archive(path: str | Path) -> pd.DataFrame:
    """Return the raw rows of an archive as one table, plus ``_file`` and ``_line`` for messages.

    Column names are trimmed and lower-cased; values are as read (text for CSV); blank CSV lines
    are skipped. Raise DataError when there are no files or a file cannot be read.
    """
    files, problems = _read_files(Path(path), check_columns=False)
    if problems:
        raise DataError(problems)
    paths = [f.path for f in files]
    frames = [f.frame.assign(_file=f.path, _line=f.lines) for f in files if f.frame is not None]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["_file", "_line"])
    out["_file"] = out["_file"].astype(pd.CategoricalDtype(paths))
    return out


# ---------------------------------------------------------------------------- checks


def _canonical_universe(universe: Sequence[str] | None) -> dict[str, int] | None:
    if universe is None:
        return None
    out: dict[str, int] = {}
    for raw in universe:
        try:
            out.setdefault(canonical(raw), len(out))
        except ValueError as e:
            raise UsageError(f"universe: {e}") from e
    return out


def _select_strategy(df: pd.DataFrame, strategy: str | None, root: str, problems: list[Problem],
                     mode: str | None = None, home: str = "") -> tuple[np.ndarray | None, str]:
    """Return the rows to keep (None = all) and the strategy name of the batches.

    With ``signals.strategies: label`` and no strategy asked for, every row is kept: the column
    labels rows of one portfolio. With ``sleeves`` each sleeve reads its own strategy's rows
    (``framework.sleeves``): a read of the whole archive as one portfolio is refused.
    """
    if mode == "sleeves" and strategy is None:
        raise UsageError(f"signals.strategies: sleeves (in {home}) runs each strategy of the archive as a sleeve "
                         "of one account: run it with --portfolio NAME (config/portfolios/NAME.yaml) or through "
                         "`parity backtest --signals`, or set signals.strategies: label for one portfolio")
    if "strategy" not in df.columns:
        return None, strategy or "default"
    tags = _as_text(df["strategy"]).fillna("").str.strip()
    found = sorted(t for t in pd.unique(tags) if t)
    listed = ", ".join(found)
    if strategy is None:
        if len(found) > 1 and mode != "label":
            raise DataError([*problems, Problem(root, None, "strategy", (
                f"several strategies in the archive ({listed}): set signals.strategies: label (one portfolio, "
                "the column is a label) or signals.strategies: sleeves (a sleeve per strategy on one account) "
                f"in {home}, or name one strategy's rows with --strategy NAME"))])
        return None, found[0] if len(found) == 1 else "default"
    if not found:
        return None, strategy
    if mode == "label":
        return None, strategy
    if strategy not in found:
        raise DataError([*problems, Problem(root, None, "strategy",
                                            f"no rows for strategy {strategy} (found: {listed}); to read the "
                                            f"column as a label of one portfolio, set signals.strategies: label "
                                            f"in {home}")])
    keep = (tags.eq(strategy) | tags.eq("")).to_numpy(bool)
    return (None if keep.all() else keep), strategy


def _check_symbols(col: pd.Series, rows: _Rows, allowed: dict[str, int] | None,
                   symbol_check: Callable[[list[str]], dict[str, str]] | None,
                   problems: list[Problem], crypto_bases: frozenset[str] = frozenset(),
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Canonicalise symbols; return the column per row (-1 = bad), its mask and the column names."""
    codes, raw = pd.factorize(_as_text(col))
    names, reasons = [], {}
    for k, value in enumerate(raw):
        try:
            names.append(canonical(value, crypto_bases, True))
        except ValueError as e:
            names.append("")
            reasons[k] = str(e)
    canon = sorted({n for n in names if n})
    unknown: dict[str, str] = {}
    if allowed is not None:
        unknown.update({s: "not in the universe" for s in canon if s not in allowed})
    if symbol_check is not None:
        asked = [s for s in canon if s not in unknown]
        answer = symbol_check(asked) if asked else {}
        unknown.update({s: str(answer[s]) for s in asked if s in answer})
    symbols = list(allowed) if allowed is not None else [s for s in canon if s not in unknown]
    column = {s: i for i, s in enumerate(symbols)}
    col_of_raw = np.array([-1 if n in unknown else column.get(n, -1) for n in names], np.int64)
    sym = np.where(codes >= 0, col_of_raw[np.maximum(codes, 0)] if len(raw) else -1, -1)

    rows.report(np.flatnonzero(codes < 0), "symbol", lambda i: "symbol is empty", "an empty symbol", problems)
    # One group per unknown canonical symbol, one per unparseable spelling; every group is reported.
    pos = {s: i for i, s in enumerate(canon)}
    group_of_raw = np.array([len(canon) + k if k in reasons else pos[n] if n in unknown else -1
                             for k, n in enumerate(names)], np.int64)
    bad = np.flatnonzero((sym < 0) & (codes >= 0))
    if len(bad):
        group = group_of_raw[codes[bad]]
        bad = bad[np.argsort(group, kind="stable")]
        group = group_of_raw[codes[bad]]
        runs = list(zip(*_runs(group), strict=True))
        for lo, hi in runs[:MAX_SYMBOLS]:
            k = int(codes[bad[lo]])
            reason = reasons.get(k) or f"unknown symbol {names[k]}: {unknown[names[k]]}"
            label = f"symbol {names[k] or raw[k]!r}"
            rows.report(bad[lo:hi], "symbol", _always(reason), label, problems, cap=MAX_ROWS_PER_SYMBOL)
        if len(runs) > MAX_SYMBOLS:
            rest = [names[k] or repr(raw[k]) for k in (int(codes[bad[lo]]) for lo, _ in runs[MAX_SYMBOLS:])]
            shown = ", ".join(rest[:MAX_SYMBOLS]) + (", ..." if len(rest) > MAX_SYMBOLS else "")
            problems.append(Problem(rows.files[0], None, "symbol",
                                    f"... and {len(rest)} more unknown symbols: {shown}"))
    return sym, sym >= 0, symbols


def _always(reason: str) -> Callable[[int], str]:
    """A row describer that gives every row the same reason."""
    return lambda _row: reason


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the start and end positions of the runs of equal values in a sorted array."""
    change = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    return np.r_[0, change], np.r_[change, len(sorted_values)]


def _check_side(col: pd.Series, rows: _Rows, problems: list[Problem]) -> tuple[np.ndarray, np.ndarray]:
    codes, uniq = pd.factorize(_as_text(col) if col.dtype == object else col)  # keep True apart from 1
    u_val = _numbers(uniq) if len(uniq) else np.zeros(0)
    per = np.where(codes >= 0, u_val[np.maximum(codes, 0)] if len(uniq) else np.nan, np.nan)
    ok = np.isin(per, (-1.0, 0.0, 1.0))
    rows.report(np.flatnonzero(~ok), "side",
                lambda i: "side is empty" if _is_blank(col.iloc[i])
                else f"side must be -1, 0 or 1, got {_show(col.iloc[i])}", "a bad side", problems)
    return np.where(ok, per, 0.0), ok


def _check_unit_interval(col: pd.Series, field: str, rows: _Rows,
                         problems: list[Problem]) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of numbers in [0, 1]; ``31.2%`` is read as 0.312."""
    values = _numbers(col)
    if np.isnan(values).any() and not pd.api.types.is_numeric_dtype(col):
        text = _as_text(col).str.strip()
        pct = text.str.endswith("%").fillna(False).to_numpy(bool) & np.isnan(values)
        if pct.any():
            values = values.copy()
            values[pct] = pd.to_numeric(text[pct].str[:-1].str.strip(), errors="coerce").to_numpy(float) / 100
    ok = (values >= 0.0) & (values <= 1.0)

    def say(i: int) -> str:
        if _is_blank(col.iloc[i]):
            return f"{field} is empty"
        return f"{field} must be a number in [0, 1] (or a percentage such as 31.2%), got {_show(col.iloc[i])}"

    rows.report(np.flatnonzero(~ok), field, say, f"a bad {field}", problems)
    return np.where(ok, values, 0.0), ok


@dataclass(frozen=True, slots=True)
class _Cells:
    """The validated rows reduced to one cell per (batch, symbol)."""

    times: np.ndarray        # int64 UTC ns, sorted unique
    row_batch: np.ndarray    # batch index of each valid row
    batch: np.ndarray        # batch index of each cell
    column: np.ndarray       # symbol column of each cell
    weight: np.ndarray       # side x weight
    confidence: np.ndarray


def _resolve(valid: np.ndarray, times: np.ndarray, row_batch: np.ndarray, t_ns: np.ndarray, sym: np.ndarray,
             signed: np.ndarray, conf: np.ndarray, rule: str | None, rows: _Rows, symbols: list[str],
             problems: list[Problem], home: str = "the strategy file", tier: pd.Series | None = None) -> _Cells:
    """Collapse repeated (batch, symbol) rows by ``rule``, or report them when there is no rule.

    ``last`` means the latest time in the batch, then the later row in file order.
    """
    every = len(valid) == len(sym)          # valid rows are increasing: all rows, in order (no copies)
    s, w, c, t = (a if every else a[valid] for a in (sym, signed, conf, t_ns))
    key = row_batch.astype(np.int64) * max(len(symbols), 1) + s
    order = lex_order(key, c if rule == "max_confidence" else t)
    ks = key[order]
    first = np.r_[True, ks[1:] != ks[:-1]] if len(ks) else np.zeros(0, bool)
    if rule == "mean":
        run = np.cumsum(first) - 1
        count = np.bincount(run)
        pick = order[first]
        return _Cells(times, row_batch, row_batch[pick], s[pick],
                      np.bincount(run, weights=w[order]) / count, np.bincount(run, weights=c[order]) / count)
    pick = order[np.r_[first[1:], True]] if len(ks) else order
    if rule is None and not first.all():
        head = order[np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))]
        dup = np.flatnonzero(~first)
        first_row = dict(zip(valid[order[dup]].tolist(), valid[head[dup]].tolist(), strict=True))

        def say(i: int) -> str:
            when = pd.Timestamp(int(t_ns[i]), tz="UTC").isoformat()
            j = first_row[i]
            tiers = f", tiers {tier.iloc[j]} and {tier.iloc[i]}" if tier is not None and tier.iloc[i] else ""
            return (f"duplicate of {rows.where(j, int(rows.fcode[i]))} (time {when}, symbol "
                    f"{symbols[int(sym[i])]}{tiers}); set signals.duplicates: last, max_confidence or mean "
                    f"in {home}")

        rows.report(np.sort(valid[order[dup]]), "symbol", say, "a duplicate (time, symbol)", problems)
    return _Cells(times, row_batch, row_batch[pick], s[pick], w[pick], c[pick])


def _check_gross(valid: np.ndarray, cells: _Cells, rows: _Rows, problems: list[Problem],
                 tolerance: float = 0.0, home: str = "the strategy file") -> _Cells:
    """Rescale batches a little over 1 in gross weight; report those above 1 + ``tolerance``."""
    weight, gross, fixed = rescale_small_excess(cells.batch, cells.weight, len(cells.times), tolerance)
    if len(fixed):
        note(f"{len(fixed)} batch(es) had a gross weight a little above 1 (at most {gross[fixed].max():.6g}, within "
             f"signals.gross_tolerance {tolerance:g}): rescaled to 1")
        cells = _Cells(cells.times, cells.row_batch, cells.batch, cells.column, weight, cells.confidence)
    over = np.flatnonzero(gross > 1.0 + max(tolerance, GROSS_TOLERANCE) + 1e-12)
    if not len(over):
        return cells
    in_over = np.flatnonzero(np.isin(cells.row_batch, over))
    by_batch = in_over[np.argsort(cells.row_batch[in_over], kind="stable")]
    for lo, hi in list(zip(*_runs(cells.row_batch[by_batch]), strict=True))[:MAX_ROWS_PER_RULE]:
        members = valid[by_batch[lo:hi]]
        b = int(cells.row_batch[by_batch[lo]])
        fhome = int(rows.fcode[members[0]])
        listed = ", ".join(rows.where(int(i), fhome) for i in members[:MAX_LINES_PER_BATCH])
        more = f" and {len(members) - MAX_LINES_PER_BATCH} more" if len(members) > MAX_LINES_PER_BATCH else ""
        when = pd.Timestamp(int(cells.times[b]), tz="UTC").isoformat()
        message = (f"gross weight {gross[b]:.6g} > 1 in the batch at {when} ({listed}{more}); above 1 + "
                   f"signals.gross_tolerance ({tolerance:g}, in {home})")
        problems.append(rows.problem(int(members[0]), "weight", message))
    if len(over) > MAX_ROWS_PER_RULE:
        more_batches = len(over) - MAX_ROWS_PER_RULE
        problems.append(Problem(rows.files[0], None, "weight",
                                f"... and {more_batches} more batches with gross weight > 1"))
    return cells
