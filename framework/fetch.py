"""Incremental, resumable market-data fetch into the local bar store (venue-neutral).

A ``BarSource`` (Alpaca bars, Coinbase candles: built in ``brokers/`` and handed in by the CLI)
answers one question: the bars of one symbol and timeframe whose open time lies in a half-open
UTC span ``[start, end)``. This module decides what to ask for and writes what comes back:

* **Incremental.** Per symbol and timeframe, the requested span is compared with what the store
  holds (``BarStore.coverage``: first and last bar) and with the spans earlier fetches already
  completed (the fetch log, below). Only the parts before the first stored bar and after the last
  one are fetched. Interior gaps (a venue outage inside the stored span, bars deleted by hand) are
  **not** refetched unless ``refetch=True`` (``--refetch``), which fetches the whole span again
  and overwrites the bars it gets back (newer rows win).
* **Chunked and resumable.** Each missing span is cut into chunks of ``chunk_bars`` bar intervals;
  every chunk is written to the store (and recorded in the log) as soon as it arrives, so an
  interruption (broker down after retries, Ctrl-C) keeps everything fetched so far. Spans after
  the stored bars go forwards in time; spans before them go backwards (newest chunk first), so the
  stored bars stay one contiguous block and a re-run simply continues from its edges.
* **Fetch log.** ``DATA_DIR/bars/TIMEFRAME/.fetch-log.json`` records, per symbol, the spans that
  were fetched completely, including spans where the venue had no bars (weekends, holidays, before
  a listing), so a re-run does not ask for them again. Only spans older than ``SETTLE`` are
  recorded: the most recent day is always asked again, in case the venue publishes late.
* **Complete bars only.** A bar is kept only once its interval has ended (open time + timeframe
  <= now); today's daily bar therefore arrives with the first fetch after 00:00 UTC tomorrow.

Timestamps are bar open times in UTC, canonical symbols (``BTC/USD``); daily bars are labelled
``YYYY-MM-DDT00:00:00Z`` by their trading date (the shared data's convention), which the sources
ensure (Alpaca stamps daily stock bars at midnight New York time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Protocol

import pandas as pd

from framework.data import BAR_COLUMNS, BarStore
from framework.errors import BrokerError, UsageError
from framework.symbols import canonical

TIMEFRAMES: dict[str, pd.Timedelta] = {
    "1m": pd.Timedelta(minutes=1), "5m": pd.Timedelta(minutes=5), "15m": pd.Timedelta(minutes=15),
    "1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1),
}
_ALIASES = {
    "1min": "1m", "1minute": "1m", "5min": "5m", "5minute": "5m", "15min": "15m", "15minute": "15m",
    "60m": "1h", "60min": "1h", "1hour": "1h", "1d": "1d", "1day": "1d", "d": "1d", "day": "1d", "daily": "1d",
    "h": "1h", "hour": "1h", "hourly": "1h",
}
SETTLE = pd.Timedelta(days=1)
DEFAULT_CHUNK_BARS = 10_000
LOG_NAME = ".fetch-log.json"


# ---------------------------------------------------------------------------------------- input
def parse_timeframe(text: str) -> str:
    """Return the store's timeframe name (1m, 5m, 15m, 1h, 1d) for ``text`` or raise UsageError."""
    t = str(text).strip().lower()
    t = _ALIASES.get(t, t)
    if t not in TIMEFRAMES:
        raise UsageError(f"unknown timeframe {text!r}: choose one of {', '.join(TIMEFRAMES)}")
    return t


def parse_time(text: str, option: str, *, end: bool = False) -> pd.Timestamp:
    """Read ``--start``/``--end``: an ISO date or date-time (UTC unless it carries an offset), ``now``
    or ``today``.

    A date alone as ``--end`` means the whole day (bars opening up to 23:59:59 that day).
    Returns an exclusive bound for ``end`` and an inclusive one for ``start``.
    """
    raw = str(text).strip()
    if raw.lower() in ("now", "today"):      # pd.Timestamp("now") would be local wall-clock time
        now = pd.Timestamp.now(tz="UTC")
        if raw.lower() == "now":
            return now + pd.Timedelta(nanoseconds=1) if end else now
        raw = now.strftime("%Y-%m-%d")
    try:
        ts = pd.Timestamp(raw)
    except (ValueError, TypeError):
        raise UsageError(f"{option} {text!r} is not a date or date-time (use e.g. 2024-01-31 or "
                         "2024-01-31T15:00:00Z)") from None
    if ts is pd.NaT:
        raise UsageError(f"{option} {text!r} is not a date or date-time")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if end:
        date_only = len(raw) == 10 and raw[4] == "-" and raw[7] == "-"
        ts = ts + (pd.Timedelta(days=1) if date_only else pd.Timedelta(nanoseconds=1))
    return ts


def parse_symbols(values: list[str] | tuple[str, ...]) -> list[str]:
    """Canonical symbols from ``--symbols`` values (comma- or space-separated, repeatable)."""
    out: list[str] = []
    for v in values:
        for part in str(v).replace(",", " ").split():
            try:
                s = canonical(part)
            except ValueError as e:
                raise UsageError(f"--symbols: {e} (use AAPL, BTC/USD, BTC-USD, BTCUSD or X:BTCUSD)") from None
            if s not in out:
                out.append(s)
    if not out:
        raise UsageError("--symbols: no symbol given")
    return out


# ---------------------------------------------------------------------------------------- spans
@dataclass(frozen=True, slots=True)
class Span:
    """A half-open UTC time span ``[start, end)`` of bar open times."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __bool__(self) -> bool:
        return self.end > self.start

    def __str__(self) -> str:
        return f"{_iso(self.start)}..{_iso(self.end)}"


def _iso(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to(ts: pd.Timestamp, step: pd.Timedelta) -> pd.Timestamp:
    return ts.floor(step)


def ceil_to(ts: pd.Timestamp, step: pd.Timedelta) -> pd.Timestamp:
    return ts.ceil(step)


def merge(spans: list[Span]) -> list[Span]:
    """Union of spans as sorted, disjoint spans (touching spans are joined)."""
    out: list[Span] = []
    for s in sorted((s for s in spans if s), key=lambda s: s.start):
        if out and s.start <= out[-1].end:
            out[-1] = Span(out[-1].start, max(out[-1].end, s.end))
        else:
            out.append(s)
    return out


def subtract(want: Span, covered: list[Span]) -> list[Span]:
    """The parts of ``want`` outside every span of ``covered``."""
    out, cur = [], want.start
    for c in merge(covered):
        if c.end <= cur or c.start >= want.end:
            continue
        if c.start > cur:
            out.append(Span(cur, min(c.start, want.end)))
        cur = max(cur, c.end)
        if cur >= want.end:
            break
    if cur < want.end:
        out.append(Span(cur, want.end))
    return [s for s in out if s]


def missing_spans(want: Span, stored: Span | None, fetched: list[Span]) -> list[Span]:
    """What to fetch: ``want`` minus the stored block (first bar .. last bar + one interval) and the
    spans already fetched. Interior gaps of the stored block are deliberately not returned."""
    covered = list(fetched) + ([stored] if stored is not None else [])
    return subtract(want, covered)


def chunk(span: Span, step: pd.Timedelta, n_bars: int, *, backwards: bool = False) -> list[Span]:
    """Cut ``span`` into chunks of ``n_bars`` intervals aligned on ``span.start`` (or its end)."""
    width = step * max(int(n_bars), 1)
    out = []
    if backwards:
        end = span.end
        while end > span.start:
            out.append(Span(max(span.start, end - width), end))
            end = end - width
    else:
        start = span.start
        while start < span.end:
            out.append(Span(start, min(span.end, start + width)))
            start = start + width
    return out


# ---------------------------------------------------------------------------------------- sources
class BarSource(Protocol):
    """What a venue's market-data adapter provides (``brokers/alpaca/bars.py``,
    ``brokers/coinbase/candles.py``). Retries, rate limiting and timeouts are the source's job."""

    name: str
    chunk_bars: int          # default bar intervals per chunk (one store write per chunk)

    def check(self, symbol: str) -> str | None:
        """Why ``symbol`` cannot be fetched from this venue, or None."""

    def fetch(self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Bars of ``symbol`` opening in ``[start, end)`` as a long frame (BAR_COLUMNS, UTC labels)."""


# ---------------------------------------------------------------------------------------- the log
class FetchLog:
    """Spans fetched completely, per symbol, for one timeframe of the store (a small JSON file)."""

    def __init__(self, store: BarStore, timeframe: str):
        self.path = store.root / timeframe / LOG_NAME
        self.data: dict[str, list[list[str]]] = {}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                self.data = {}   # a damaged log only costs refetching; the bars are in the store

    def spans(self, symbol: str) -> list[Span]:
        return [Span(pd.Timestamp(a), pd.Timestamp(b)) for a, b in self.data.get(symbol, [])]

    def add(self, symbol: str, span: Span) -> None:
        if not span:
            return
        merged = merge(self.spans(symbol) + [span])
        self.data[symbol] = [[_iso(s.start), _iso(s.end)] for s in merged]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        tmp.replace(self.path)


# ---------------------------------------------------------------------------------------- results
@dataclass(slots=True)
class SymbolResult:
    symbol: str
    planned: list[Span] = field(default_factory=list)
    chunks_total: int = 0
    chunks_done: int = 0
    bars_fetched: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    stored_bars: int | None = None

    @property
    def status(self) -> str:
        if not self.planned:
            return "up to date"
        return "complete" if self.chunks_done == self.chunks_total else "interrupted"

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "status": self.status, "bars_fetched": self.bars_fetched,
                "chunks": self.chunks_done, "chunks_planned": self.chunks_total,
                "missing_spans": [[_iso(s.start), _iso(s.end)] for s in self.planned],
                "store_first": None if self.first is None else _iso(self.first),
                "store_last": None if self.last is None else _iso(self.last),
                "store_bars": self.stored_bars}


@dataclass(slots=True)
class FetchReport:
    source: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    store: str
    symbols: list[SymbolResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "timeframe": self.timeframe, "start": _iso(self.start),
                "end": _iso(self.end), "store": self.store,
                "bars_fetched": sum(r.bars_fetched for r in self.symbols),
                "symbols": [r.to_dict() for r in self.symbols]}


class FetchInterrupted(BrokerError):
    """The venue failed for good in the middle of a fetch; what was fetched so far is stored."""

    def __init__(self, message: str, report: FetchReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class ChunkDone:
    """Progress event: one chunk of one symbol was fetched and written."""

    symbol: str
    span: Span
    bars: int
    done: int
    total: int


# ---------------------------------------------------------------------------------------- the fetch
def plan(store: BarStore, log: FetchLog, symbol: str, timeframe: str, want: Span, *, refetch: bool,
         chunk_bars: int) -> list[Span]:
    """The chunks to fetch for one symbol, in the order they will be fetched."""
    step = TIMEFRAMES[timeframe]
    if refetch:
        return chunk(want, step, chunk_bars)
    cov = store.coverage(timeframe, symbol)
    stored = None if cov is None else Span(_utc(cov[0]), _utc(cov[1]) + step)
    chunks: list[Span] = []
    for gap in missing_spans(want, stored, log.spans(symbol)):
        before = stored is not None and gap.end <= stored.start
        chunks += chunk(gap, step, chunk_bars, backwards=before)
    return chunks


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _clean(df: pd.DataFrame, symbol: str, span: Span) -> pd.DataFrame:
    """Keep the source's bars of ``symbol`` inside ``span``, one per timestamp, sorted."""
    if df is None or df.empty:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    out = df[list(BAR_COLUMNS)].copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    out["symbol"] = symbol
    for c in ("open", "high", "low", "close", "volume"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    out = out[(out["timestamp"] >= span.start) & (out["timestamp"] < span.end)]
    out = out.dropna(subset=["open", "high", "low", "close"])
    out = out.drop_duplicates(["timestamp"], keep="last").sort_values("timestamp")
    return out.reset_index(drop=True)


def fetch_to_store(store: BarStore, source: BarSource, symbols: list[str], timeframe: str, start: pd.Timestamp,
                   end: pd.Timestamp, *, refetch: bool = False, chunk_bars: int | None = None,
                   now: pd.Timestamp | None = None, on_chunk: Callable[[ChunkDone], None] | None = None) -> FetchReport:
    """Fetch the missing bars of ``symbols`` in ``[start, end)`` from ``source`` into ``store``.

    Raises UsageError before any request for a bad span or a symbol the venue cannot serve, and
    FetchInterrupted (with the report so far) when the source fails after its retries.
    """
    if timeframe not in TIMEFRAMES:
        raise UsageError(f"unknown timeframe {timeframe!r}: choose one of {', '.join(TIMEFRAMES)}")
    step = TIMEFRAMES[timeframe]
    now = _utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    start, end = _utc(start), _utc(end)
    if start >= end:
        raise UsageError(f"--start {_iso(start)} is not before --end {_iso(end)}")
    symbols = parse_symbols(symbols)
    problems = [f"{s}: {why}" for s in symbols if (why := source.check(s))]
    if problems:
        raise UsageError(f"{source.name} cannot serve: " + "; ".join(problems))
    want = Span(ceil_to(start, step), min(ceil_to(end, step), floor_to(now, step)))
    settled = floor_to(now - SETTLE, step)
    n_bars = chunk_bars or source.chunk_bars or DEFAULT_CHUNK_BARS
    log = FetchLog(store, timeframe)
    report = FetchReport(source.name, timeframe, start, end, str(store.root / timeframe))
    for symbol in symbols:
        res = SymbolResult(symbol)
        report.symbols.append(res)
        chunks = plan(store, log, symbol, timeframe, want, refetch=refetch, chunk_bars=n_bars) if want else []
        res.planned = merge(chunks)
        res.chunks_total = len(chunks)
        for c in chunks:
            try:
                df = _clean(source.fetch(symbol, timeframe, c.start, c.end), symbol, c)
            except BrokerError as e:
                raise FetchInterrupted(_interrupted_message(e, report, res), report) from e
            if len(df):
                res.stored_bars = store.write(df, timeframe).get(symbol)
            log.add(symbol, Span(c.start, min(c.end, settled)))
            res.chunks_done += 1
            res.bars_fetched += len(df)
            if on_chunk is not None:
                on_chunk(ChunkDone(symbol, c, len(df), res.chunks_done, res.chunks_total))
        cov = store.coverage(timeframe, symbol)
        if cov is not None:
            res.first, res.last = _utc(cov[0]), _utc(cov[1])
            res.stored_bars = len(store.read(timeframe, [symbol]))
    return report


def _interrupted_message(e: Exception, report: FetchReport, res: SymbolResult) -> str:
    kept = sum(r.bars_fetched for r in report.symbols)
    return (f"{e}\nfetch interrupted at {res.symbol} after {res.chunks_done} of {res.chunks_total} chunk(s); "
            f"the {kept:,} bar(s) fetched so far are in the store ({report.store}). "
            "Run the same command again to continue from there.")

