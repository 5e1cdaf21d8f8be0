"""Read signal files into one table that remembers the file and line of every row.

CSV, JSON (a list of rows, ``{"signals": [...]}`` or JSON Lines: one object per line, as the earlier
multi-strategy system's alert log is written), JSON Lines under ``.jsonl``/``.ndjson``, and Parquet.
For CSV and JSON Lines the line is the physical line (CSV header = line 1); for a JSON array and
Parquet it is the 1-based row. ``signals.columns`` renames the file's columns to Parity's before
the columns are checked; a ``format`` other than ``parity`` converts each file first
(framework.signal_formats).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from framework.errors import Problem

REQUIRED = ("symbol", "time", "side", "weight", "confidence")
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
           ".pq": "parquet"}
LINE_KINDS = ("csv", "jsonl")  # files whose rows are named by physical line (others: 1-based row)
MAX_ROWS_PER_RULE = 100      # rows listed per rule; the rest are counted in one summary problem

# ---------------------------------------------------------------------------- reading files


@dataclass(slots=True)
class _File:
    """One file as read: its rows, the line of each, and whether it can be used."""

    path: str
    kind: str
    frame: pd.DataFrame | None = None
    lines: np.ndarray | None = None
    usable: bool = False


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read the files: column renames, a format converter, and where those settings live."""

    columns: dict[str, str] | None = None                   # Parity name -> the file's (lower case)
    convert: Callable[[_File, list[Problem]], None] | None = None
    home: str = "the strategy file"                         # "signals.X in HOME" in messages


def _read_files(root: Path, check_columns: bool = True,
                options: ReadOptions = ReadOptions()) -> tuple[list[_File], list[Problem]]:
    """Read every signal file under ``root``; say what is wrong with the ones that cannot be used."""
    problems: list[Problem] = []
    kinds = ", ".join(sorted(FORMATS))
    if root.is_file():
        if root.suffix.lower() not in FORMATS:
            return [], [Problem(str(root), None, None, f"unsupported file type (use {kinds})")]
        paths = [root]
    elif root.is_dir():
        paths = [p for p in sorted(root.rglob("*"))
                 if p.suffix.lower() in FORMATS and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        if not paths:
            return [], [Problem(str(root), None, None, f"no signal files ({kinds}) in it")]
    else:
        return [], [Problem(str(root), None, None, "no such file or directory")]

    files = []
    for p in paths:
        f = _File(str(p), FORMATS[p.suffix.lower()])
        reader = {"csv": _read_csv, "json": _read_json, "jsonl": _read_json_lines, "parquet": _read_parquet}[f.kind]
        before = len(problems)
        reader(p, f, problems)
        if f.frame is not None and len(problems) == before:
            f.frame.columns = [str(c).strip().lower() for c in f.frame.columns]
            if options.columns:
                _rename(f, options, problems)
            if options.convert is not None and len(problems) == before:
                options.convert(f, problems)
            if check_columns and f.frame is not None and len(problems) == before:
                _check_columns(f, problems, options.home)
            f.usable = f.frame is not None and len(problems) == before
        files.append(f)
    return files, problems


def _rename(f: _File, options: ReadOptions, problems: list[Problem]) -> None:
    """Apply ``signals.columns`` (Parity name -> the file's name) to one file's columns."""
    assert f.frame is not None and options.columns
    names = list(f.frame.columns)
    header = 1 if f.kind == "csv" else None
    mapping: dict[str, str] = {}
    for ours, theirs in options.columns.items():
        if theirs not in names:
            problems.append(Problem(f.path, header, ours, f"no column {theirs!r}, which signals.columns maps "
                                    f"{ours} to in {options.home} (found: {', '.join(names)})"))
            continue
        if ours in names and ours != theirs:
            mapping[ours] = f"{ours} (unmapped)"      # the file's own column of that name is kept as an extra
        mapping[theirs] = ours
    f.frame = f.frame.rename(columns=mapping)


def _check_columns(f: _File, problems: list[Problem], home: str = "the strategy file") -> None:
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
            problems.append(Problem(f.path, header, col, f"missing column {col!r} (found: {found}); if the file "
                                    f"names it otherwise, map it with signals.columns: {{{col}: NAME}} in {home}"))


def _read_csv(p: Path, f: _File, problems: list[Problem]) -> None:
    data = p.read_bytes()
    starts = _record_lines(data)
    from framework.signal_arrow import read_csv_fast

    df = read_csv_fast(data, len(starts))     # None: read with pandas, which words every problem
    if df is None:                            # (the fast path reads only valid UTF-8: Arrow checks it)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            bad_line = len(re.findall(rb"\r\n|\r|\n", data[: e.start])) + 1
            problems.append(Problem(f.path, bad_line, None, f"not UTF-8 text (byte {e.start})"))
            return
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
    from framework.signal_arrow import release_arrow_memory

    release_arrow_memory()                    # what finding blank rows took


def _record_lines(data: bytes) -> np.ndarray:
    """Return the physical line on which each CSV record starts (header included), quote-aware.

    Any of LF, CRLF and a lone CR ends a line; a line break inside quotes does not end a record.
    Without quotes every line break ends a record: the breaks are only counted.
    """
    if b'"' not in data:
        breaks = data.count(b"\n")
        if b"\r" in data:
            breaks += data.count(b"\r") - data.count(b"\r\n")
        return np.arange(1, breaks + 2 - data.endswith((b"\n", b"\r")), dtype=np.int64)
    return _record_lines_quoted(data)


def _record_lines_quoted(data: bytes) -> np.ndarray:
    """_record_lines for text with quotes: a break between an odd and an even quote is inside a field."""
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
        if e.msg == "Extra data":     # several values, one per line: JSON Lines written as .json
            f.kind = "jsonl"
            _read_json_lines(p, f, problems)
            return
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


def _read_json_lines(p: Path, f: _File, problems: list[Problem]) -> None:
    """Read one JSON object per line; blank lines are skipped; the line is the physical line."""
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problems.append(Problem(f.path, None, None, f"not UTF-8 text (byte {e.start})"))
        return
    records, lines = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(f.path, n, None, f"invalid JSON Lines row: {e.msg} (column {e.colno})"))
            if len(problems) >= MAX_ROWS_PER_RULE:
                return
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(f.path, n, None, f"not an object: {_show(obj)}"))
            continue
        records.append(obj)
        lines.append(n)
    f.frame, f.lines = pd.DataFrame.from_records(records), np.asarray(lines, dtype=np.int64)


def _read_parquet(p: Path, f: _File, problems: list[Problem]) -> None:
    try:
        df = pd.read_parquet(p)
    except Exception as e:  # noqa: BLE001  (pyarrow raises several unrelated types for a bad file)
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
        if self.kinds[f] not in LINE_KINDS:
            message = f"row {line}: {message}"
        return Problem(self.files[f], line, field, message)

    def where(self, i: int, home: int) -> str:
        f, line = int(self.fcode[i]), int(self.line[i])
        word = "line" if self.kinds[f] in LINE_KINDS else "row"
        return f"{word} {line}" if f == home else f"{self.files[f]} {word} {line}"

    def report(self, bad: np.ndarray, field: str, describe: Callable[[int], str], what: str,
               problems: list[Problem], cap: int = MAX_ROWS_PER_RULE) -> None:
        problems.extend(self.problem(int(i), field, describe(int(i))) for i in bad[:cap])
        if len(bad) > cap:
            problems.append(Problem(self.files[int(self.fcode[bad[cap]])], None, field,
                                    f"... and {len(bad) - cap} more rows with {what}"))


def _combine(files: list[_File]) -> tuple[pd.DataFrame, _Rows]:
    frames: list[pd.DataFrame] = []
    lines: list[np.ndarray] = []
    for f in files:
        if f.frame is None or f.lines is None:   # only usable files, which were read, are combined
            raise ValueError(f"{f.path}: combined before it was read")
        frames.append(f.frame)
        lines.append(f.lines)
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    fcode = np.repeat(np.arange(len(files)), [len(f) for f in frames])
    rows = _Rows(tuple(f.path for f in files), tuple(f.kind for f in files), fcode,
                 np.concatenate(lines).astype(np.int64))
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
    from framework.signal_arrow import numbers_fast

    fast = numbers_fast(text)                   # Arrow's cast, when it surely gives numpy's values
    if fast is not None:
        return fast
    try:
        return text.astype("float64").to_numpy()   # every value is a number
    except (ValueError, TypeError):
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


