"""Peer engines of the benchmark: vectorbt and backtrader, run on a :class:`Workload` under one
fill rule and one cost model, so that their final equities can be compared to ~1e-9.

``run_vectorbt(w, fill="close") -> PeerResult``
``run_backtrader(w, fill="close", max_seconds=600) -> PeerResult``

Both measure, in the CURRENT process: the time to turn the workload's arrays into the engine's
inputs (``load_seconds``), JIT warm-up (``warmup_seconds``, vectorbt only), the engine run itself
(``engine_seconds``), and the process's peak resident memory over that whole phase
(``peak_mem_bytes``; on Linux freed heap is trimmed and the high-water mark reset first, see
:class:`MemProbe`). The harness
(``python -m benchmarks``) calls them in a fresh subprocess per engine and workload
(``python -m benchmarks.one``) so that peaks and imports are never mixed.

Conventions shared by both peers (and by Parity's ``fill: close`` agreement run)
================================================================================
A batch decided at bar ``t`` (``w.rebalance_idx``) holds the full target-weight vector.

* **Valuation and sizing price.** Equity ``V`` = cash + sum(position x close[t]). Target shares
  of symbol j = ``weights[j] * V / close[t]``; the order is target shares minus held shares,
  computed for every symbol from the same snapshot (no re-valuation between orders of a batch).
  This is vectorbt's ``size_type="targetpercent"`` with ``val_price`` = close[t] and
  ``update_value=False``, and backtrader's ``order_target_percent`` (``broker.getvalue()`` is the
  value cached at close[t]; ``order_target_value`` sizes with ``data.close[0]``).
* **Fill price.** ``fill="close"``: the order fills at close[t] (vectorbt ``price=np.inf`` i.e.
  this bar's close; backtrader cheat-on-close). ``fill="next_open"`` (the SPEC §6 default): the
  order is still SIZED with close[t] but fills at open[t+1] (vectorbt: the size row is shifted to
  t+1, ``price=open`` and ``val_price=-np.inf``, which vectorbt resolves to the previous bar's
  close, i.e. close[t]; backtrader: a plain market order, which fills at the next open).
* **Slippage.** Buys fill at ``p * (1 + 0.0005)``, sells at ``p * (1 - 0.0005)``, never clipped
  to the bar's high/low. vectorbt never clips; backtrader does by default, and with
  cheat-on-close it would clip against the NEXT bar's high/low (the order is booked in the next
  bar's broker step). Hence ``set_slippage_perc(0.0005, slip_open=True, slip_match=True,
  slip_out=True)``: with ``slip_out=False`` (backtrader's default) ~11 % of the small
  workload's orders get the next bar's high/low instead, +1.5 % of final equity;
  ``slip_match=False`` would leave such orders pending instead.
* **Fees.** 10 bps of the traded notional at the slipped price (vectorbt ``fees=0.001``;
  backtrader ``COMM_PERC`` with ``percabs=True``, charged on the execution price).
* **Fractional quantities, no minimum.** vectorbt: ``min_size=0`` (its default is 1e-8 shares)
  and no ``size_granularity``. backtrader: :class:`FractionalCommInfo` overrides
  ``CommInfoBase.getsize`` (``int(cash // price)`` upstream) with ``cash / price``.
* **Sells first.** Within a batch, orders go in increasing order of (target value - current
  value): all sells (largest first), then the buys. vectorbt: ``call_seq="auto"``; backtrader:
  the strategy sorts before calling ``order_target_percent`` and the broker executes its queue
  in submission order. The weights sum to <= 0.95, so cash never binds and the order of the buys
  cannot change the outcome (it only changes float rounding, ~1e-16).
* **Last bar.** Batches are never decided on the last bar (see ``workloads``): backtrader books
  orders in the following bar's broker step, so an order placed on the last bar would never
  execute there while vectorbt would fill it.
* **Final equity** = cash + sum(position x last close).
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from benchmarks.workloads import Workload, prefix

FILLS = ("close", "next_open")

__all__ = [
    "PeerResult", "run_vectorbt", "run_backtrader", "MemProbe", "extrapolate",
    "probe_bars", "FILLS",
]


@dataclass
class PeerResult:
    name: str  # engine name: "parity", "vectorbt", "backtrader"
    engine_seconds: float
    warmup_seconds: float | None
    load_seconds: float
    final_equity: float | None  # None when extrapolated (the full run never happened)
    n_orders: int
    peak_mem_bytes: int
    extrapolated_from: int | None = None  # prefix length in bars when extrapolated
    # --- extras (defaults so that the positional contract above stays stable) ---
    workload: str = ""
    fill: str = "close"
    n_bars: int = 0  # size actually represented by the timings (the full size when extrapolated)
    n_symbols: int = 0
    base_mem_bytes: int | None = None  # RSS when the measured phase started
    end_mem_bytes: int | None = None  # RSS when it ended (used to extrapolate memory)
    prefix_final_equity: float | None = None  # equity of the prefix run, when extrapolated
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PeerResult":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------

def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # pragma: no cover - exotic platforms
        return 0


def _malloc_trim() -> None:
    """glibc keeps freed heap memory resident (and raises its mmap threshold after large frees),
    so a process that generated a workload has megabytes of free-but-resident memory that later
    allocations reuse without growing RSS. Trimming makes RSS growth measure the engine."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemProbe:
    """Peak RSS of the current process over a ``with`` block.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs`` <- "5"),
    so the peak belongs to the block, not to what ran before it (workload generation, earlier
    runs). Elsewhere it falls back to ``ru_maxrss``, the peak since process start - which is
    why the harness runs every engine in a fresh process anyway.
    """

    def __enter__(self):
        gc.collect()
        _malloc_trim()  # hand freed heap back to the OS so RSS == live memory at the start
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.base = current_rss_bytes()
        return self

    def __exit__(self, *exc):
        self.end = current_rss_bytes()  # what the run still holds: grows ~linearly with bars
        hwm = _status_kb("VmHWM") if self.reset else None
        if hwm is not None:
            self.peak = hwm * 1024
        else:
            r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak = int(r if sys.platform == "darwin" else r * 1024)
        return False


# --------------------------------------------------------------------------------------------
# vectorbt
# --------------------------------------------------------------------------------------------

def _vbt_inputs(w: Workload, fill: str):
    import pandas as pd

    index = pd.DatetimeIndex(w.times, name="time")
    close = pd.DataFrame(w.close, index=index, columns=list(w.symbols))
    if fill == "close":
        size = w.target_matrix(shift=0)
        price = np.inf  # vectorbt: +inf = this bar's close
        val_price = np.inf  # +inf = the order price (close[t], before slippage)
    elif fill == "next_open":
        size = w.target_matrix(shift=1)  # decided at t, executed on row t+1
        price = pd.DataFrame(w.open, index=index, columns=list(w.symbols))
        val_price = -np.inf  # -inf = the previous bar's close = close[t]: sized with close[t]
    else:
        raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")
    return close, size, price, val_price


def _vbt_kwargs(w: Workload) -> dict:
    return dict(
        size_type="targetpercent",
        direction="longonly",
        fees=w.fees,
        fixed_fees=0.0,
        slippage=w.slippage,
        min_size=0.0,  # vectorbt's default is 1e-8 shares: "no minimum" means 0
        size_granularity=np.nan,  # fractional quantities
        allow_partial=True,
        init_cash=w.init_cash,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",  # sells before buys
        update_value=False,  # one valuation snapshot per batch
        ffill_val_price=True,
    )


def _vbt_final_equity(pf) -> float:
    v = pf.final_value()
    return float(np.asarray(v).reshape(-1)[0])


def run_vectorbt(w: Workload, fill: str = "close") -> PeerResult:
    """vectorbt ``Portfolio.from_orders`` on ``w`` (see the module docstring for conventions)."""
    with MemProbe() as mem:
        t0 = time.perf_counter()
        import vectorbt as vbt

        t_import = time.perf_counter() - t0

        # JIT warm-up: a tiny run with the same argument kinds compiles (or loads from numba's
        # on-disk cache) every function the real run needs, including final_value().
        t0 = time.perf_counter()
        tiny = prefix(_slice_symbols(w, 3), 30)
        c, s, p, vp = _vbt_inputs(tiny, fill)
        pf = vbt.Portfolio.from_orders(c, s, price=p, val_price=vp, **_vbt_kwargs(tiny))
        _vbt_final_equity(pf)
        len(pf.order_records)
        del pf
        warmup = time.perf_counter() - t0

        t0 = time.perf_counter()
        close, size, price, val_price = _vbt_inputs(w, fill)
        load = time.perf_counter() - t0

        t0 = time.perf_counter()
        pf = vbt.Portfolio.from_orders(close, size, price=price, val_price=val_price, **_vbt_kwargs(w))
        engine = time.perf_counter() - t0

        t0 = time.perf_counter()
        equity = _vbt_final_equity(pf)
        n_orders = int(len(pf.order_records))
        post = time.perf_counter() - t0
    engine_name = "numba"
    try:  # vectorbt >= 1.x can dispatch to a Rust engine when vectorbt-rust is installed
        from vectorbt._engine import is_rust_available

        if is_rust_available():
            engine_name = "auto (vectorbt-rust available)"
    except Exception:
        pass
    return PeerResult(
        name="vectorbt", engine_seconds=engine, warmup_seconds=warmup, load_seconds=load,
        final_equity=equity, n_orders=n_orders, peak_mem_bytes=mem.peak,
        workload=w.name, fill=fill, n_bars=w.n_bars, n_symbols=w.n_symbols,
        base_mem_bytes=mem.base, end_mem_bytes=mem.end,
        extra={"import_seconds": t_import, "final_value_seconds": post, "version": vbt.__version__,
               "vbt_engine": engine_name},
    )


def _slice_symbols(w: Workload, k: int) -> Workload:
    k = min(k, w.n_symbols)
    return replace(
        w, symbols=list(w.symbols[:k]), open=w.open[:, :k], high=w.high[:, :k], low=w.low[:, :k],
        close=w.close[:, :k], volume=w.volume[:, :k], weights=w.weights[:, :k],
    )


# --------------------------------------------------------------------------------------------
# backtrader
# --------------------------------------------------------------------------------------------

def _bt_classes():
    import backtrader as bt

    class FractionalCommInfo(bt.CommInfoBase):
        """Stock-like, percentage commission on the execution price, fractional sizes.

        Upstream ``getsize`` returns ``int(leverage * (cash // price))`` - whole shares - which
        ``order_target_value``/``order_target_percent`` use to turn a value into a size."""

        params = (
            ("stocklike", True),
            ("commtype", bt.CommInfoBase.COMM_PERC),
            ("percabs", True),
            ("commission", 0.001),
        )

        def getsize(self, price, cash):
            return self.p.leverage * (cash / price)

    class RebalanceStrategy(bt.Strategy):
        params = (("rebalance_idx", None), ("weights", None), ("clock", None))

        def start(self):
            self.p.clock["strategy_start"] = time.perf_counter()
            self._idx = [int(i) for i in self.p.rebalance_idx]
            self._w = [list(map(float, row)) for row in self.p.weights]
            self._k = 0
            self.n_completed = 0
            self.n_not_filled = 0

        def next(self):
            k = self._k
            if k >= len(self._idx) or self._idx[k] != len(self) - 1:
                return
            self._k = k + 1
            w = self._w[k]
            value = self.broker.getvalue()  # cached at this bar's close
            plan = []
            for j, d in enumerate(self.datas):
                pos = self.getposition(d).size
                if w[j] == 0.0 and pos == 0:
                    continue
                plan.append((w[j] * value - pos * d.close[0], j))
            plan.sort()  # sells (most negative) first, then buys: vectorbt's call_seq="auto"
            for _, j in plan:
                self.order_target_percent(self.datas[j], target=w[j])

        def notify_order(self, order):
            if order.status == order.Completed:
                self.n_completed += 1
            elif order.status in (order.Margin, order.Rejected, order.Canceled, order.Expired):
                self.n_not_filled += 1

    return bt, FractionalCommInfo, RebalanceStrategy


def _run_backtrader_once(w: Workload, fill: str) -> PeerResult:
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")
    with MemProbe() as mem:
        t0 = time.perf_counter()
        import pandas as pd

        bt, FractionalCommInfo, RebalanceStrategy = _bt_classes()
        t_import = time.perf_counter() - t0

        t0 = time.perf_counter()
        cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True, quicknotify=False)
        index = pd.DatetimeIndex(w.times, name="datetime")
        for j, sym in enumerate(w.symbols):
            df = pd.DataFrame(
                {"open": w.open[:, j], "high": w.high[:, j], "low": w.low[:, j],
                 "close": w.close[:, j], "volume": w.volume[:, j]},
                index=index,
            )
            cerebro.adddata(bt.feeds.PandasData(dataname=df, openinterest=None), name=sym)
        broker = cerebro.getbroker()
        broker.setcash(w.init_cash)
        broker.addcommissioninfo(FractionalCommInfo(commission=w.fees))
        broker.set_slippage_perc(w.slippage, slip_open=True, slip_limit=True, slip_match=True,
                                 slip_out=True)
        broker.set_coc(fill == "close")
        clock: dict = {}
        cerebro.addstrategy(RebalanceStrategy, rebalance_idx=w.rebalance_idx, weights=w.weights,
                            clock=clock)
        t_setup = time.perf_counter() - t0

        t_run = time.perf_counter()
        strat = cerebro.run()[0]
        t_end = time.perf_counter()
        equity = float(broker.getvalue())
    preload = clock["strategy_start"] - t_run  # cerebro preloads every feed before start()
    notes = []
    if strat.n_not_filled:
        notes.append(f"{strat.n_not_filled} orders not filled (margin/rejected)")
    return PeerResult(
        name="backtrader", engine_seconds=t_end - clock["strategy_start"], warmup_seconds=None,
        load_seconds=t_setup + preload, final_equity=equity, n_orders=int(strat.n_completed),
        peak_mem_bytes=mem.peak, workload=w.name, fill=fill, n_bars=w.n_bars,
        n_symbols=w.n_symbols, base_mem_bytes=mem.base, end_mem_bytes=mem.end, notes=notes,
        extra={"import_seconds": t_import, "preload_seconds": preload,
               "not_filled": int(strat.n_not_filled), "version": bt.__version__},
    )


def probe_bars(w: Workload) -> int:
    """Prefix used to estimate a slow peer's time per bar: 5 % of the bars, at least 200."""
    return min(w.n_bars, max(200, w.n_bars // 20))


def extrapolate(r: PeerResult, full, part, r_small: PeerResult | None = None,
                small=None) -> PeerResult:
    """Scale a prefix result (``r``, run on ``part``) to the ``full`` workload.

    Time and load time scale with bars, orders with batches. Memory: the peak of a short
    prefix is dominated by fixed costs and start-up transients (imports, setup), so it does not
    scale; what grows with bars is the RSS still held at the end of the run. With a second,
    much shorter prefix (``r_small`` on ``small``), the end RSS is extended along the line
    through both runs and the peak is ``max(prefix peak, extended end RSS)``; without it, the
    peak above the starting RSS is scaled with bars (an overestimate). ``full``/``part``/
    ``small`` are Workloads or WorkloadShapes. The full run's final equity is unknown (None);
    the prefix's equity is kept in ``prefix_final_equity`` for a like-for-like comparison."""
    f_bars = full.n_bars / part.n_bars
    f_batches = full.n_rebalances / max(part.n_rebalances, 1)
    base = r.base_mem_bytes or 0
    if (r_small is not None and small is not None and part.n_bars > small.n_bars
            and r.end_mem_bytes and r_small.end_mem_bytes):
        per_bar = max(r.end_mem_bytes - r_small.end_mem_bytes, 0) / (part.n_bars - small.n_bars)
        end_full = r.end_mem_bytes + per_bar * (full.n_bars - part.n_bars)
        peak = max(r.peak_mem_bytes, end_full)
        how = (f"extrapolated from {part.n_bars:,} bars (memory: end RSS through {small.n_bars:,} "
               f"and {part.n_bars:,} bars)")
    else:
        end_full = None
        peak = base + (r.peak_mem_bytes - base) * f_bars
        how = f"extrapolated from {part.n_bars:,} bars"
    return replace(
        r,
        engine_seconds=r.engine_seconds * f_bars,
        load_seconds=r.load_seconds * f_bars,
        n_orders=int(round(r.n_orders * f_batches)),
        peak_mem_bytes=int(peak),
        end_mem_bytes=int(end_full) if end_full is not None else None,
        final_equity=None,
        prefix_final_equity=r.final_equity,
        extrapolated_from=part.n_bars,
        workload=full.name,
        n_bars=full.n_bars,
        notes=r.notes + [how],
        extra={**r.extra, "prefix_result": r.to_dict(),
               "small_prefix_result": r_small.to_dict() if r_small is not None else None},
    )


def run_backtrader(w: Workload, fill: str = "close", max_seconds: float = 600.0) -> PeerResult:
    """backtrader with ``order_target_percent`` on ``w``.

    Time budget: the engine is first timed on a prefix (:func:`probe_bars`); the full workload
    runs only if the linear estimate stays under ``max_seconds``, otherwise the prefix result is
    extrapolated (``extrapolated_from`` = prefix bars)."""
    n = probe_bars(w)
    if n < w.n_bars:
        part = prefix(w, n)
        r = _run_backtrader_once(part, fill)
        estimate = r.engine_seconds * w.n_bars / n
        if estimate >= max_seconds:
            small = prefix(w, max(2, n // 10))
            return extrapolate(r, w, part, _run_backtrader_once(small, fill), small)
    return _run_backtrader_once(w, fill)

