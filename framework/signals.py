"""Read a signal archive, validate every row and return one strategy's batches as dense matrices.

An archive is one CSV, JSON or Parquet file, or a directory of them at any depth (sorted paths,
hidden entries and other extensions skipped), read as one table with the columns
``symbol,time,regime,side,weight,confidence,strategy`` (``regime`` and ``strategy`` optional,
extra columns kept and ignored, names case-insensitive). Validation is vectorised and collects
every problem before raising one ``DataError``; each ``Problem`` names file, line and field. For
CSV the line is the physical line (header = line 1); for JSON and Parquet it is the 1-based row.

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
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from framework.errors import DataError, Problem, UsageError
from framework.symbols import canonical
from framework.types import SignalBatches

REQUIRED = ("symbol", "time", "side", "weight", "confidence")
DUPLICATE_RULES = ("last", "max_confidence", "mean")
FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
GROSS_TOLERANCE = 1e-9
MAX_ROWS_PER_RULE = 100      # rows listed per rule; the rest are counted in one summary problem
MAX_ROWS_PER_SYMBOL = 5      # rows listed per unknown symbol
MAX_SYMBOLS = 200            # unknown symbols reported with their rows; the rest are named in one problem
MAX_LINES_PER_BATCH = 10     # lines listed in a gross-weight problem

_NAT = np.iinfo(np.int64).min
_ZONE = re.compile(r"\d[Tt ]\d{2}.*?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
_T_OK, _T_EMPTY, _T_BAD, _T_NAIVE, _T_LOCAL = range(5)


def load_signals(
    path: str | Path,
    *,
    strategy: str | None = None,
    timezone: str | None = None,
    duplicates: str | None = None,
    symbol_check: Callable[[list[str]], dict[str, str]] | None = None,
    universe: Sequence[str] | None = None,
) -> SignalBatches:
    """Read and validate the archive at ``path`` and return the batches of one strategy.

    ``timezone`` localises times written without a zone; ``duplicates`` names the rule for
    repeated (time, symbol) rows (``last``, ``max_confidence`` or ``mean``; None makes them an
    error); ``symbol_check`` gets the distinct canonical symbols once and returns
    ``{symbol: reason}`` for those that are unknown or not tradable; ``universe`` fixes the column
    order and the symbols allowed. Raise DataError listing every problem found.
    """
    root = str(path)
    if duplicates is not None and duplicates not in DUPLICATE_RULES:
        raise DataError(Problem(root, None, "duplicates",
                                f"unknown duplicates rule {duplicates!r} (use last, max_confidence or mean)"))
    if timezone is not None:
        try:
            pd.Timestamp("2000-01-01").tz_localize(timezone)
        except Exception as e:
            raise DataError(Problem(root, None, "timezone", f"unknown time zone {timezone!r}")) from e
    allowed = _canonical_universe(universe)

    files, problems = _read_files(Path(path))
    usable = [f for f in files if f.usable]
    if not usable:
        raise DataError(problems or [Problem(root, None, None, "the archive has no rows")])
    df, rows = _combine(usable)
    keep, name = _select_strategy(df, strategy, root, problems)
    if keep is not None:
        df, rows = df.loc[keep].reset_index(drop=True), rows.subset(keep)

    sym, sym_ok, symbols = _check_symbols(df["symbol"], rows, allowed, symbol_check, problems)
    t_ns, t_ok = _check_times(df["time"], rows, timezone, problems)
    side, side_ok = _check_side(df["side"], rows, problems)
    weight, w_ok = _check_unit_interval(df["weight"], "weight", rows, problems)
    conf, c_ok = _check_unit_interval(df["confidence"], "confidence", rows, problems)

    valid = np.flatnonzero(sym_ok & t_ok & side_ok & w_ok & c_ok)
    cells = _resolve(valid, t_ns, sym, side * weight, conf, duplicates, rows, symbols, problems)
    _check_gross(valid, cells, rows, problems)
    if problems:
        raise DataError(_ordered(problems, [f.path for f in files]))

    shape = (len(cells.times), len(symbols))
    weights, confidence = np.full(shape, np.nan), np.full(shape, np.nan)
    weights[cells.batch, cells.column] = cells.weight
    confidence[cells.batch, cells.column] = cells.confidence
    return SignalBatches(name, tuple(symbols), cells.times.astype("datetime64[ns]"), weights, confidence,
                         sources=tuple(f.path for f in usable))


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


# ---------------------------------------------------------------------------- reading files


@dataclass(slots=True)
class _File:
    path: str
    kind: str
    frame: pd.DataFrame | None = None
    lines: np.ndarray | None = None
    usable: bool = False


def _read_files(root: Path, check_columns: bool = True) -> tuple[list[_File], list[Problem]]:
    """Read every signal file under ``root``; say what is wrong with the ones that cannot be used."""
    problems: list[Problem] = []
    if root.is_file():
        if root.suffix.lower() not in FORMATS:
            return [], [Problem(str(root), None, None, "unsupported file type (use .csv, .json or .parquet)")]
        paths = [root]
    elif root.is_dir():
        paths = [p for p in sorted(root.rglob("*"))
                 if p.suffix.lower() in FORMATS and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        if not paths:
            return [], [Problem(str(root), None, None, "no signal files (.csv, .json, .parquet) in it")]
    else:
        return [], [Problem(str(root), None, None, "no such file or directory")]

    files = []
    for p in paths:
        f = _File(str(p), FORMATS[p.suffix.lower()])
        reader = {"csv": _read_csv, "json": _read_json, "parquet": _read_parquet}[f.kind]
        before = len(problems)
        reader(p, f, problems)
        if f.frame is not None and len(problems) == before:
            f.frame.columns = [str(c).strip().lower() for c in f.frame.columns]
            if check_columns:
                _check_columns(f, problems)
            f.usable = len(problems) == before
        files.append(f)
    return files, problems


def _check_columns(f: _File, problems: list[Problem]) -> None:
    assert f.frame is not None
    names = list(f.frame.columns)
    if len(f.frame) == 0:
        problems.append(Problem(f.path, None, None, "no rows"))
        if not names:
            return
    header = 1 if f.kind == "csv" else None
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(f.path, header, n, f"column {n!r} appears more than once"))
    found = ", ".join(names)
    for col in REQUIRED:
        if col not in names:
            problems.append(Problem(f.path, header, col, f"missing column {col!r} (found: {found})"))


def _read_csv(p: Path, f: _File, problems: list[Problem]) -> None:
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = len(re.findall(rb"\r\n|\r|\n", data[: e.start])) + 1
        problems.append(Problem(f.path, line, None, f"not UTF-8 text (byte {e.start})"))
        return
    starts = _record_lines(data)
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, na_filter=False, skip_blank_lines=False,
                         encoding="utf-8-sig", engine="c")
    except pd.errors.EmptyDataError:
        problems.append(Problem(f.path, None, None, "empty file (no header, no rows)"))
        return
    except (pd.errors.ParserError, ValueError) as e:
        m = re.search(r"line (\d+)", str(e))
        record = int(m.group(1)) if m else 0
        line = int(starts[record - 1]) if 0 < record <= len(starts) else None
        reason = re.sub(r" in line \d+", "", str(e).split("C error: ")[-1]).strip()
        problems.append(Problem(f.path, line, None, f"cannot parse CSV: {reason}"))
        return
    if len(starts) != len(df) + 1:
        starts = _record_lines_slowly(data)
    lines = starts[1:] if len(starts) == len(df) + 1 else np.arange(2, len(df) + 2)
    blank = _blank_rows(df)
    if blank.any():
        df, lines = df.loc[~blank].reset_index(drop=True), lines[~blank]
    f.frame, f.lines = df, lines


def _record_lines(data: bytes) -> np.ndarray:
    """Return the physical line on which each CSV record starts (header included), quote-aware.

    Any of LF, CRLF and a lone CR ends a line; a line break inside quotes does not end a record.
    """
    buf = np.frombuffer(data, np.uint8)
    breaks = np.flatnonzero(buf == 10)
    cr = np.flatnonzero(buf == 13)
    if len(cr):
        nxt = np.minimum(cr + 1, len(buf) - 1)
        lone = (cr + 1 >= len(buf)) | (buf[nxt] != 10)
        breaks = np.union1d(breaks, cr[lone])
    quotes = np.flatnonzero(buf == 34)
    ends = np.flatnonzero(np.searchsorted(quotes, breaks) % 2 == 0)
    if len(ends) and breaks[ends[-1]] == len(buf) - 1:
        ends = ends[:-1]
    return np.concatenate(([1], ends + 2)).astype(np.int64)


def _record_lines_slowly(data: bytes) -> np.ndarray:
    """Same as _record_lines with the csv module, for files whose quoting defeats the fast count."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    starts, last = [], 0
    for _ in reader:
        starts.append(last + 1)
        last = reader.line_num
    return np.array(starts or [1], dtype=np.int64)


def _blank_rows(df: pd.DataFrame) -> np.ndarray:
    blank = np.ones(len(df), dtype=bool)
    for col in df.columns:
        idx = np.flatnonzero(blank)
        if not len(idx):
            break
        blank[idx] = df[col].iloc[idx].str.strip().eq("").to_numpy(bool)
    return blank


def _read_json(p: Path, f: _File, problems: list[Problem]) -> None:
    try:
        obj = json.loads(p.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        problems.append(Problem(f.path, None, None, f"not UTF-8 text (byte {e.start})"))
        return
    except json.JSONDecodeError as e:
        problems.append(Problem(f.path, e.lineno, None, f"invalid JSON: {e.msg} (column {e.colno})"))
        return
    if isinstance(obj, dict) and isinstance(obj.get("signals"), list):
        obj = obj["signals"]
    if not isinstance(obj, list):
        problems.append(Problem(f.path, None, None, 'expected a list of rows or {"signals": [...]}'))
        return
    bad = [i for i, r in enumerate(obj) if not isinstance(r, dict)]
    for i in bad[:MAX_ROWS_PER_RULE]:
        problems.append(Problem(f.path, i + 1, None, f"row {i + 1}: not an object: {_show(obj[i])}"))
    if not bad:
        f.frame, f.lines = pd.DataFrame.from_records(obj), np.arange(1, len(obj) + 1)


def _read_parquet(p: Path, f: _File, problems: list[Problem]) -> None:
    try:
        df = pd.read_parquet(p)
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        problems.append(Problem(f.path, None, None, f"cannot read Parquet: {e}"))
        return
    f.frame, f.lines = df.reset_index(drop=True), np.arange(1, len(df) + 1)


# ---------------------------------------------------------------------------- rows and messages


@dataclass(frozen=True, slots=True)
class _Rows:
    """Where each row came from, to write messages: file code and line per row."""

    files: tuple[str, ...]
    kinds: tuple[str, ...]
    fcode: np.ndarray
    line: np.ndarray

    def subset(self, keep: np.ndarray) -> _Rows:
        return _Rows(self.files, self.kinds, self.fcode[keep], self.line[keep])

    def problem(self, i: int, field: str | None, message: str) -> Problem:
        f, line = int(self.fcode[i]), int(self.line[i])
        if self.kinds[f] != "csv":
            message = f"row {line}: {message}"
        return Problem(self.files[f], line, field, message)

    def where(self, i: int, home: int) -> str:
        f, line = int(self.fcode[i]), int(self.line[i])
        word = "line" if self.kinds[f] == "csv" else "row"
        return f"{word} {line}" if f == home else f"{self.files[f]} {word} {line}"

    def report(self, bad: np.ndarray, field: str, describe: Callable[[int], str], what: str,
               problems: list[Problem], cap: int = MAX_ROWS_PER_RULE) -> None:
        problems.extend(self.problem(int(i), field, describe(int(i))) for i in bad[:cap])
        if len(bad) > cap:
            problems.append(Problem(self.files[int(self.fcode[bad[cap]])], None, field,
                                    f"... and {len(bad) - cap} more rows with {what}"))


def _combine(files: list[_File]) -> tuple[pd.DataFrame, _Rows]:
    frames = [f.frame for f in files]
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    fcode = np.repeat(np.arange(len(files)), [len(f) for f in frames])
    rows = _Rows(tuple(f.path for f in files), tuple(f.kind for f in files), fcode,
                 np.concatenate([f.lines for f in files]).astype(np.int64))
    return df, rows


def _ordered(problems: list[Problem], files: list[str]) -> list[Problem]:
    """Sort problems by file and line; summaries (no line) of a file follow its rows."""
    pos = {f: i for i, f in enumerate(files)}
    return sorted(problems, key=lambda p: (pos.get(p.file, -1), p.line is None, p.line or 0))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_text(s: pd.Series | pd.Index) -> pd.Series:
    """Return the values as text, missing values kept missing (never the string 'nan')."""
    s = pd.Series(s)
    return s if isinstance(s.dtype, pd.StringDtype) else s.astype("str").where(s.notna())


def _is_blank(value: object) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) or not str(value).strip()


def _numbers(s: pd.Series | pd.Index) -> np.ndarray:
    """Return the values as floats, NaN where a value is missing or not a number (booleans too)."""
    s = pd.Series(s)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan)
    text = _as_text(s)
    try:
        return text.astype("float64").to_numpy()   # fast path: every value is a number
    except (ValueError, TypeError):
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


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


def _select_strategy(df: pd.DataFrame, strategy: str | None, root: str,
                     problems: list[Problem]) -> tuple[np.ndarray | None, str]:
    """Return the rows to keep (None = all) and the strategy name of the batches."""
    if "strategy" not in df.columns:
        return None, strategy or "default"
    tags = _as_text(df["strategy"]).fillna("").str.strip()
    found = sorted(t for t in pd.unique(tags) if t)
    listed = ", ".join(found)
    if strategy is None:
        if len(found) > 1:
            raise DataError([*problems, Problem(root, None, "strategy",
                                                f"several strategies in the archive ({listed}); name one")])
        return None, found[0] if found else "default"
    if not found:
        return None, strategy
    if strategy not in found:
        raise DataError([*problems, Problem(root, None, "strategy",
                                            f"no rows for strategy {strategy} (found: {listed})")])
    keep = (tags.eq(strategy) | tags.eq("")).to_numpy(bool)
    return (None if keep.all() else keep), strategy


def _check_symbols(col: pd.Series, rows: _Rows, allowed: dict[str, int] | None,
                   symbol_check: Callable[[list[str]], dict[str, str]] | None,
                   problems: list[Problem]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Canonicalise symbols; return the column per row (-1 = bad), its mask and the column names."""
    codes, raw = pd.factorize(_as_text(col))
    names, reasons = [], {}
    for k, value in enumerate(raw):
        try:
            names.append(canonical(value))
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
            rows.report(bad[lo:hi], "symbol", lambda i, r=reason: r, label, problems, cap=MAX_ROWS_PER_SYMBOL)
        if len(runs) > MAX_SYMBOLS:
            rest = [names[k] or repr(raw[k]) for k in (int(codes[bad[lo]]) for lo, _ in runs[MAX_SYMBOLS:])]
            shown = ", ".join(rest[:MAX_SYMBOLS]) + (", ..." if len(rest) > MAX_SYMBOLS else "")
            problems.append(Problem(rows.files[0], None, "symbol",
                                    f"... and {len(rest)} more unknown symbols: {shown}"))
    return sym, sym >= 0, symbols


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the start and end positions of the runs of equal values in a sorted array."""
    change = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    return np.r_[0, change], np.r_[change, len(sorted_values)]


def _check_times(col: pd.Series, rows: _Rows, timezone: str | None,
                 problems: list[Problem]) -> tuple[np.ndarray, np.ndarray]:
    """Parse times to UTC nanoseconds (int64 per row) and report the ones that cannot be used."""
    codes, uniq = pd.factorize(col)
    u_ns, u_state = _parse_times(uniq, timezone)
    ok_code = codes >= 0
    safe = np.maximum(codes, 0)
    ns = np.where(ok_code, u_ns[safe] if len(uniq) else _NAT, _NAT)
    state = np.where(ok_code, u_state[safe] if len(uniq) else _T_EMPTY, _T_EMPTY)

    def say(i: int) -> str:
        s = int(state[i])
        shown = _show(col.iloc[i])
        if s == _T_EMPTY or _is_blank(col.iloc[i]):
            return "time is empty"
        if s == _T_NAIVE:
            return f"time {shown} has no zone; add one (e.g. Z or +00:00) or configure the timezone"
        if s == _T_LOCAL:
            return f"time {shown} does not exist or is ambiguous in {timezone}"
        return f"unparseable time {shown} (use ISO 8601 with a zone, e.g. 2024-01-02T15:30:00Z)"

    rows.report(np.flatnonzero(state != _T_OK), "time", say, "a bad time", problems)
    return ns, state == _T_OK


def _parse_times(uniq: pd.Index, timezone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Parse distinct time values; return UTC nanoseconds and a state per value."""
    n = len(uniq)
    ns = np.full(n, _NAT, dtype=np.int64)
    state = np.full(n, _T_BAD, dtype=np.int8)
    if pd.api.types.is_datetime64_any_dtype(uniq.dtype):
        idx = pd.DatetimeIndex(uniq)
        if idx.tz is not None:
            ns[:], state[:] = _utc_ns(idx.tz_convert("UTC"))
        elif timezone is None:
            state[:] = _T_NAIVE
        else:
            ns[:], state[:] = _utc_ns(idx.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT"), _T_LOCAL)
        return ns, state
    text = _as_text(uniq).str.strip()
    zoned = text.str.contains(_ZONE, na=False).to_numpy(bool)
    if zoned.any():
        parsed = pd.DatetimeIndex(pd.to_datetime(text[zoned], format="ISO8601", utc=True, errors="coerce"))
        ns[zoned], state[zoned] = _utc_ns(parsed)
    naive = np.flatnonzero(~zoned)
    if len(naive):
        try:
            parsed = pd.DatetimeIndex(pd.to_datetime(text.iloc[naive], format="ISO8601", errors="coerce"))
        except (ValueError, TypeError):  # a zone form the pattern missed, mixed with naive ones
            return ns, state
        if parsed.tz is not None:
            return ns, state
        readable = ~parsed.isna()
        if timezone is None:
            state[naive[readable]] = _T_NAIVE
        else:
            local = parsed.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
            got_ns, got_state = _utc_ns(local, _T_LOCAL)
            got_state[~readable] = _T_BAD
            ns[naive], state[naive] = got_ns, got_state
    return ns, state


def _utc_ns(idx: pd.DatetimeIndex, missing: int = _T_BAD) -> tuple[np.ndarray, np.ndarray]:
    """Return int64 UTC nanoseconds and states; NaT or out of the nanosecond range gives ``missing``."""
    values = (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).to_numpy()
    ok = ~np.isnat(values) & (values >= np.datetime64("1678-01-01")) & (values < np.datetime64("2262-01-01"))
    ns = np.where(ok, values, np.datetime64(0, "s")).astype("datetime64[ns]").view(np.int64)
    return np.where(ok, ns, _NAT), np.where(ok, _T_OK, missing).astype(np.int8)


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
    values = _numbers(col)
    ok = (values >= 0.0) & (values <= 1.0)

    def say(i: int) -> str:
        if _is_blank(col.iloc[i]):
            return f"{field} is empty"
        return f"{field} must be a number in [0, 1], got {_show(col.iloc[i])}"

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


def _resolve(valid: np.ndarray, t_ns: np.ndarray, sym: np.ndarray, signed: np.ndarray, conf: np.ndarray,
             rule: str | None, rows: _Rows, symbols: list[str], problems: list[Problem]) -> _Cells:
    """Collapse repeated (time, symbol) rows by ``rule``, or report them when there is no rule."""
    times, row_batch = np.unique(t_ns[valid], return_inverse=True)
    s, w, c = sym[valid], signed[valid], conf[valid]
    key = row_batch.astype(np.int64) * max(len(symbols), 1) + s
    order = np.argsort(key, kind="stable")
    if rule == "max_confidence":
        order = np.lexsort((np.arange(len(key)), c, key))
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
            return (f"duplicate of {rows.where(first_row[i], int(rows.fcode[i]))} (time {when}, symbol "
                    f"{symbols[int(sym[i])]}); set duplicates: last, max_confidence or mean")

        rows.report(np.sort(valid[order[dup]]), "symbol", say, "a duplicate (time, symbol)", problems)
    return _Cells(times, row_batch, row_batch[pick], s[pick], w[pick], c[pick])


def _check_gross(valid: np.ndarray, cells: _Cells, rows: _Rows, problems: list[Problem]) -> None:
    """Report batches whose gross weight (sum of |side x weight|) is above 1."""
    gross = np.bincount(cells.batch, weights=np.abs(cells.weight), minlength=len(cells.times))
    over = np.flatnonzero(gross > 1.0 + GROSS_TOLERANCE)
    if not len(over):
        return
    in_over = np.flatnonzero(np.isin(cells.row_batch, over))
    by_batch = in_over[np.argsort(cells.row_batch[in_over], kind="stable")]
    for lo, hi in list(zip(*_runs(cells.row_batch[by_batch]), strict=True))[:MAX_ROWS_PER_RULE]:
        members = valid[by_batch[lo:hi]]
        b = int(cells.row_batch[by_batch[lo]])
        home = int(rows.fcode[members[0]])
        listed = ", ".join(rows.where(int(i), home) for i in members[:MAX_LINES_PER_BATCH])
        more = f" and {len(members) - MAX_LINES_PER_BATCH} more" if len(members) > MAX_LINES_PER_BATCH else ""
        when = pd.Timestamp(int(cells.times[b]), tz="UTC").isoformat()
        message = f"gross weight {gross[b]:.6g} > 1 in the batch at {when} ({listed}{more})"
        problems.append(rows.problem(int(members[0]), "weight", message))
    if len(over) > MAX_ROWS_PER_RULE:
        more_batches = len(over) - MAX_ROWS_PER_RULE
        problems.append(Problem(rows.files[0], None, "weight",
                                f"... and {more_batches} more batches with gross weight > 1"))
