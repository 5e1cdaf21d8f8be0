"""Market data: the long CSV format, the local Parquet bar store, and dense bar arrays.

Long CSV: ``timestamp,symbol,open,high,low,close,volume`` (ISO 8601 UTC). The store keeps one
dataset per timeframe, one Parquet file per symbol: ``DATA_DIR/bars/TIMEFRAME/SYMBOL.parquet``
(``/`` in a pair becomes ``-``). ``BarArrays`` is what the simulator runs on: one row per bar time,
one column per symbol, NaN where a symbol has no bar (an equity outside its session).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from framework.errors import DataError, Problem
from framework.symbols import canonical

BAR_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True, eq=False)
class BarArrays:
    """Bars as dense (n_bars, n_symbols) float64 matrices over a shared, increasing time axis."""

    times: np.ndarray            # datetime64[ns] UTC
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    split_ratio: np.ndarray | None = None   # new shares per old share on ex-date bars, else 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def select(self, symbols: list[str] | tuple[str, ...]) -> BarArrays:
        """Columns for ``symbols`` in that order; rows where none of them has a bar are dropped."""
        idx = [self.symbols.index(s) for s in symbols]
        close = self.close[:, idx]
        rows = ~np.isnan(close).all(axis=1)
        if rows.all() and idx == list(range(len(self.symbols))):
            return self                    # the same columns: shared, not copied (a sweep's points)
        # row-major like the arrays read (a fancy index on the columns would make them column-major,
        # and the simulator reads one bar's row of every symbol at a time)
        pick = (lambda m: np.ascontiguousarray(m[:, idx][rows])) if not rows.all() else \
            (lambda m: np.ascontiguousarray(m[:, idx]))
        sr = None if self.split_ratio is None else pick(self.split_ratio)
        return BarArrays(self.times[rows], tuple(symbols), pick(self.open), pick(self.high), pick(self.low),
                         pick(self.close), pick(self.volume), sr)

    def between(self, start: np.datetime64 | None, end: np.datetime64 | None) -> BarArrays:
        lo = 0 if start is None else int(np.searchsorted(self.times, start, "left"))
        hi = len(self.times) if end is None else int(np.searchsorted(self.times, end, "right"))
        s = slice(lo, hi)
        sr = None if self.split_ratio is None else self.split_ratio[s]
        return BarArrays(self.times[s], self.symbols, self.open[s], self.high[s], self.low[s], self.close[s],
                         self.volume[s], sr)

    def to_frame(self) -> pd.DataFrame:
        """Back to the long format (used by the store and by tests)."""
        n, m = self.shape
        df = pd.DataFrame({
            "timestamp": pd.to_datetime(np.repeat(self.times, m), utc=True),
            "symbol": np.tile(np.array(self.symbols, dtype=object), n),
            **{c: getattr(self, c).reshape(-1) for c in PRICE_COLUMNS},
        })
        return df[~np.isnan(df["close"].to_numpy())].reset_index(drop=True)


def bars_from_frame(df: pd.DataFrame, symbols: list[str] | None = None) -> BarArrays:
    """Pivot a validated long frame (timestamp UTC, canonical symbol, OHLCV) into BarArrays."""
    ts = pd.DatetimeIndex(df["timestamp"]).tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")
    times, t_idx = np.unique(ts, return_inverse=True)
    col = df["symbol"]
    if isinstance(col.dtype, pd.CategoricalDtype):     # codes into its categories: map those only
        cats = [str(c) for c in col.cat.categories]
        used = sorted({cats[k] for k in np.unique(col.cat.codes.to_numpy()) if k >= 0})
        syms = used if symbols is None else list(symbols)
        code = {s: i for i, s in enumerate(syms)}
        lookup = np.array([code.get(c, -1) for c in cats] + [-1], np.int64)
        s_idx = lookup[col.cat.codes.to_numpy()]
        keep = s_idx >= 0
        s_idx = s_idx[keep]
    else:
        syms = sorted(col.unique()) if symbols is None else list(symbols)
        code = {s: i for i, s in enumerate(syms)}
        s_idx = col.map(code).to_numpy()
        keep = ~pd.isna(s_idx)
        s_idx = s_idx[keep].astype(np.int64)
    t_idx = t_idx[keep]
    mats = {}
    for c in PRICE_COLUMNS:
        m = np.full((len(times), len(syms)), np.nan)
        m[t_idx, s_idx] = df[c].to_numpy(dtype=float)[keep]
        mats[c] = m
    return BarArrays(times, tuple(syms), **mats)


def read_long_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate a long bar CSV; every problem names the file, line and field.

    Returns the bars sorted by (timestamp, symbol): ``timestamp`` UTC, ``symbol`` canonical."""
    df = _read_long(path)
    df["symbol"] = df["symbol"].astype(str)
    return df


def _read_long(path: str | Path) -> pd.DataFrame:
    """``read_long_csv`` with ``symbol`` as a categorical (what the pivot to BarArrays wants)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(Problem(str(p), None, None, "file not found"))
    raw = _read_arrow(p)
    if raw is None:
        raw = _read_pandas(p)
    df, stamp_text, symbol_text = raw
    if df.empty:
        raise DataError(Problem(str(p), None, None, "no rows"))
    problems: list[Problem] = []
    line = np.arange(len(df)) + 2

    def bad(mask: np.ndarray, field: str, msg: str, text=None) -> None:
        for i in np.flatnonzero(mask)[:20]:
            v = text(i) if text is not None else df[field].iloc[i]
            problems.append(Problem(str(p), int(line[i]), field, msg.format(v=v)))

    # times and symbols: each distinct text parsed once
    ts_codes, ts_text = stamp_text
    uniq = pd.to_datetime(pd.Series(ts_text, dtype=object), utc=True, errors="coerce", format="ISO8601")
    stamps = uniq.dt.tz_localize(None).to_numpy()[ts_codes]     # the unit pandas parses to
    t_ns = stamps.astype("datetime64[ns]")
    bad(np.isnat(t_ns), "timestamp", "unparseable time {v!r}", lambda i: ts_text[ts_codes[i]])
    sym_codes, sym_text = symbol_text
    canon: list[str | None] = []
    for s in sym_text:
        try:
            canon.append(canonical(str(s).strip()))
        except ValueError:
            canon.append(None)
    names = sorted({c for c in canon if c is not None})
    rank = {c: k for k, c in enumerate(names)}
    to_rank = np.array([rank.get(c, -1) if c is not None else -1 for c in canon] or [-1], np.int64)
    s_idx = to_rank[sym_codes]
    bad(s_idx < 0, "symbol", "not a symbol", lambda i: sym_text[sym_codes[i]])
    for c in PRICE_COLUMNS:
        vals = pd.to_numeric(df[c], errors="coerce") if df[c].dtype.kind not in "fiu" else df[c]
        v = vals.to_numpy(np.float64)
        bad(np.isnan(v), c, "not a number: {v!r}")
        floor = v < 0 if c == "volume" else v <= 0
        bad(floor, c, "must be positive: {v!r}")
        df[c] = vals
    bad(df["high"].to_numpy() < df["low"].to_numpy(), "high", "high below low")
    # duplicates and order on (time, symbol): one integer key per row
    ok = ~np.isnat(t_ns) & (s_idx >= 0)
    key = t_ns.astype(np.int64)
    in_order = bool(ok.all()) and len(key) > 0 and bool(
        np.all((key[1:] > key[:-1]) | ((key[1:] == key[:-1]) & (s_idx[1:] > s_idx[:-1]))))
    if not in_order:
        frame = pd.DataFrame({"t": key, "s": s_idx})
        dup = frame.duplicated(["t", "s"], keep="first").to_numpy() & ok
        bad(dup, "timestamp", "duplicate bar for this symbol and time", lambda i: ts_text[ts_codes[i]])
    if problems:
        raise DataError(problems)
    out = pd.DataFrame({"timestamp": pd.DatetimeIndex(stamps).tz_localize("UTC"),
                        "symbol": pd.Categorical.from_codes(s_idx, names),
                        **{c: df[c].to_numpy() for c in PRICE_COLUMNS}}, copy=False)
    if not in_order:
        order = np.lexsort((s_idx, key))
        out = out.iloc[order].reset_index(drop=True)
    return out


_ARROW_TYPES = ("timestamp", "symbol")
_BLOCK = 4 << 20         # bytes of CSV text per streamed block (per range: two ranges read at once)


def _read_arrow(p: Path):
    """The common case, multi-threaded (pyarrow) and streamed: the seven columns by name, numbers
    that parse. The file is read block by block (``_BLOCK`` bytes), in a few byte ranges on as many
    threads (``framework.csv_ranges``); each block's columns kept as numpy arrays and its time and
    symbol texts as codes into one list each, so a 300 MB file never sits in memory as text or as a
    whole Arrow table (issue 15: peak memory).

    Returns (frame of the price columns, (row codes, distinct time texts), (row codes, distinct
    symbol texts)), or None for anything else, which ``_read_pandas`` reads and explains."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return None
    from framework.csv_ranges import read_ranges

    text = pa.dictionary(pa.int32(), pa.string())
    types = {"timestamp": text, "symbol": text}   # numbers: int64 or float64, as pandas infers them
    names: list[str] = []

    def blocks(stream, first: bool) -> list[tuple[list, list]]:
        """Each block of one range: its price columns (numpy) and (indices, texts) of its coded ones."""
        opts = pcsv.ReadOptions(block_size=_BLOCK) if first else pcsv.ReadOptions(block_size=_BLOCK,
                                                                                 column_names=names)
        reader = pcsv.open_csv(stream, read_options=opts,
                               convert_options=pcsv.ConvertOptions(column_types=types, include_columns=list(BAR_COLUMNS),
                                                                   strings_can_be_null=False))
        out = []
        for batch in reader:     # the stream's types are the first block's (a later misfit raises)
            nums = []
            for c in PRICE_COLUMNS:
                col = batch.column(c)
                if col.null_count or not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
                    raise _Declined
                nums.append(col.to_numpy(zero_copy_only=False))
            coded = [(batch.column(c).indices.to_numpy(zero_copy_only=False), batch.column(c).dictionary.to_pylist())
                     for c in _ARROW_TYPES]
            out.append((nums, coded))
        return out

    try:
        with open(p, "rb") as f:         # the other ranges are read with the header's names
            names.extend(f.readline().decode("utf-8").rstrip("\r\n").split(","))
        parts = read_ranges(p, blocks)
    except (pa.ArrowInvalid, pa.ArrowKeyError, pa.ArrowTypeError, KeyError, UnicodeDecodeError, _Declined):
        return None
    got = [b for part in parts for b in part]
    if not got or sum(len(nums[0]) for nums, _ in got) == 0:
        return None
    known: list[dict[str, int]] = [{} for _ in _ARROW_TYPES]
    codes: list[list[np.ndarray]] = [[] for _ in _ARROW_TYPES]
    for _, coded in got:
        for k, (idx, texts) in enumerate(coded):
            table = known[k]
            remap = np.array([table.setdefault(t, len(table)) for t in texts] or [0], np.int64)
            codes[k].append(remap[idx])
    # copy=False: each column its own block (a consolidated frame would copy them all once more)
    frame = pd.DataFrame({c: np.concatenate([nums[i] for nums, _ in got]) for i, c in enumerate(PRICE_COLUMNS)},
                         copy=False)
    del got, parts
    ts, sym = ((np.concatenate(codes[k]), list(known[k])) for k in range(len(_ARROW_TYPES)))
    return frame, ts, sym


class _Declined(Exception):
    """A block ``_read_arrow`` does not read (a number column with gaps or text)."""


def _read_pandas(p: Path):
    """Anything ``_read_arrow`` declines (odd spacing, a BOM, text in a number column, missing
    columns): pandas reads it as text and the checks say what is wrong, with the line."""
    try:
        df = pd.read_csv(p, encoding="utf-8-sig", dtype={"symbol": str}, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DataError(Problem(str(p), None, None, f"cannot read as CSV: {e}")) from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(Problem(str(p), 1, ",".join(missing), f"missing column(s) {missing}; expected {list(BAR_COLUMNS)}"))
    if df.empty:
        raise DataError(Problem(str(p), None, None, "no rows"))
    ts_codes, ts_text = pd.factorize(df["timestamp"].astype(object), use_na_sentinel=False)
    sym_codes, sym_text = pd.factorize(df["symbol"].astype(object), use_na_sentinel=False)
    frame = df[list(PRICE_COLUMNS)].copy()
    return frame, (ts_codes.astype(np.int64), list(ts_text)), (sym_codes.astype(np.int64), list(sym_text))


def infer_timeframe(df: pd.DataFrame) -> str:
    """Name the bar spacing of a long frame: 1m, 5m, 15m, 1h, 4h or 1d (the most common gap)."""
    gaps = df.groupby("symbol")["timestamp"].diff().dropna()
    if gaps.empty:
        return "1d"
    secs = gaps.dt.total_seconds().mode().iloc[0]
    for name, s in (("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("4h", 14400)):
        if secs <= s:
            return name
    return "1d"


def read_factor_table(path: str | Path) -> pd.DataFrame:
    """Read a split factor table (``symbol,row_date,price_factor,split_factor,reference_price``)."""
    p = Path(path)
    try:
        df = pd.read_csv(p, dtype={"symbol": str, "row_date": str})
    except FileNotFoundError:
        raise DataError(Problem(str(p), None, None, "factor table not found")) from None
    need = {"symbol", "row_date", "split_factor"}
    if not need <= set(df.columns):
        raise DataError(Problem(str(p), 1, ",".join(sorted(need - set(df.columns))), "missing column(s)"))
    df["symbol"] = df["symbol"].map(canonical)
    df["row_date"] = pd.to_datetime(df["row_date"], format="%Y%m%d", utc=True)
    return df


def split_ratios(bars: BarArrays, factors: pd.DataFrame) -> np.ndarray:
    """Ratio matrix: new shares per old share on each split's ex-date bar, 1 elsewhere.

    A factor row dated D holds for trading dates up to D; when ``split_factor`` changes between two
    consecutive rows, the first bar after the earlier row's date is the ex-date and the ratio is
    next_factor / previous_factor (2 for a 2-for-1 split, 0.05 for a 1:20 reverse split).
    """
    ratio = np.ones(bars.shape)
    times = pd.to_datetime(bars.times, utc=True)
    for j, sym in enumerate(bars.symbols):
        f = factors[factors["symbol"] == sym].sort_values("row_date")
        if len(f) < 2:
            continue
        sf = f["split_factor"].to_numpy(float)
        dates = f["row_date"].to_numpy()
        for k in range(len(f) - 1):
            if sf[k + 1] <= 0 or abs(sf[k + 1] / sf[k] - 1) < 1e-6:
                continue
            ex = int(np.searchsorted(times.to_numpy(), dates[k], "right"))
            while ex < len(times) and np.isnan(bars.close[ex, j]):
                ex += 1
            if 0 < ex < len(times):
                ratio[ex, j] *= sf[k + 1] / sf[k]
    return ratio


class BarStore:
    """The local Parquet store under ``DATA_DIR/bars``."""

    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir) / "bars"

    @staticmethod
    def _file_name(symbol: str) -> str:
        return symbol.replace("/", "-") + ".parquet"

    def timeframes(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def symbols(self, timeframe: str) -> list[str]:
        d = self.root / timeframe
        if not d.is_dir():
            return []
        return sorted(canonical(p.stem) for p in d.glob("*.parquet"))

    def write(self, df: pd.DataFrame, timeframe: str) -> dict[str, int]:
        """Merge bars into the store (newer rows win on equal timestamps); return rows per symbol."""
        d = self.root / timeframe
        d.mkdir(parents=True, exist_ok=True)
        counts = {}
        for sym, part in df.groupby("symbol", sort=True):
            f = d / self._file_name(str(sym))
            if f.is_file():
                part = pd.concat([pd.read_parquet(f), part], ignore_index=True)
                part = part.drop_duplicates(["timestamp"], keep="last")
            part = part.sort_values("timestamp").reset_index(drop=True)
            tmp = f.with_suffix(".tmp")
            part.to_parquet(tmp, index=False)
            tmp.replace(f)
            counts[str(sym)] = len(part)
        return counts

    def coverage(self, timeframe: str, symbol: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        f = self.root / timeframe / self._file_name(symbol)
        if not f.is_file():
            return None
        ts = pd.read_parquet(f, columns=["timestamp"])["timestamp"]
        return (ts.min(), ts.max()) if len(ts) else None

    def read(self, timeframe: str | None = None, symbols: list[str] | None = None) -> pd.DataFrame:
        tfs = [timeframe] if timeframe else self.timeframes()
        if not tfs:
            raise DataError(Problem(str(self.root), None, None,
                                    "the local bar store is empty: run `parity data import FILE` first"))
        if len(tfs) > 1:
            raise DataError(Problem(str(self.root), None, "timeframe",
                                    f"the store holds several timeframes {tfs}; name one in the strategy's bars.timeframe"))
        d = self.root / tfs[0]
        files = sorted(d.glob("*.parquet"))
        if symbols is not None:
            files = [d / self._file_name(s) for s in symbols if (d / self._file_name(s)).is_file()]
        if not files:
            raise DataError(Problem(str(d), None, None, "no bars in the store for these symbols"))
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def load_bars(path: str | Path | None, data_dir: str | Path, timeframe: str | None = None,
              symbols: list[str] | None = None, factors: str | Path | None = None) -> BarArrays:
    """Bars from a long CSV file, a Parquet store directory, or the configured local store."""
    if path is not None and Path(path).is_file():
        df = _read_long(path)
    elif path is not None and Path(path).is_dir():
        df = BarStore(Path(path).parent if Path(path).name == "bars" else path).read(timeframe, symbols)
    elif path is not None:
        raise DataError(Problem(str(path), None, None, "bars file or directory not found"))
    else:
        df = BarStore(data_dir).read(timeframe, symbols)
    bars = bars_from_frame(df)
    if factors:
        bars = BarArrays(bars.times, bars.symbols, bars.open, bars.high, bars.low, bars.close, bars.volume,
                         split_ratios(bars, read_factor_table(factors)))
    return bars
