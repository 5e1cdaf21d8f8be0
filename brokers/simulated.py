"""SimulatedBroker: a Broker over historical bars, with the venue's fees and order rules.

Timing (no look-ahead): a batch at time T is sized by the engine with ``prices()``, the close of
the last bar stamped <= T, and fills at the open of the first bar stamped > T (``fill: next_open``,
the default). ``fill: close`` fills at that same close (optimistic: the price the order was sized
with); ``fill: vwap`` at the next bar's typical price (high + low + close) / 3. An order for a
symbol that has no bar on the fill bar (an equity outside its session) waits for the symbol's next
bar, as a market order sent while the market is closed waits for the open.

Costs: slippage moves the price against the order (buys pay up, sells receive less), then the
venue's fees are charged on the executed notional. ``volume_cap`` limits one order to a fraction
of the bar's volume; the rest keeps working on later bars (partial fills are real fills) until the
engine cancels it at the next batch (``unfilled: cancel``) or lets it carry. Limit and stop orders
fill within a bar whose range crosses them (the open first: a gap fills at the open). The venue's
rules refuse what the venue refuses: quantities off the increment, under the minimum notional or
quantity, fractions of non-fractionable assets, shorts where shorting is not allowed, buys beyond
the cash available (scaled down to what the cash pays for). Splits in raw bars (a ratio matrix)
multiply positions on the ex-date bar before any fill there, so a split's price jump is not P&L.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from brokers.sim_book import Book
from framework.broker import Broker, OrderState
from framework.clock import SimClock
from framework.costs import CostInputs, FeeModel, FixedBps, NoFees, SlippageModel
from framework.data import BarArrays
from framework.errors import DataError, Problem
from framework.types import (AccountSnapshot, ExecutionReport, FillBatch, OrderBatch, OrderStatus, OrderType,
                             Position, Universe)

_S = OrderStatus


@dataclass(slots=True)
class _Working:
    """An order still working in the simulator (waiting for a bar, volume-capped or resting)."""

    batch: OrderBatch
    pos: int                 # index of the order in its batch
    client_id: str
    sym: int
    side: int
    remaining: float
    filled: float = 0.0
    notional: float = 0.0
    from_bar: int = 0        # first bar on which it may fill
    ratio: float = 1.0       # split adjustment since it was sized


@dataclass(slots=True)
class _Registry:
    """Every batch the simulator saw with its last known report (for lookup by client id)."""

    reports: list[ExecutionReport] = field(default_factory=list)


class SimulatedBroker(Broker):
    name = "sim"

    def __init__(self, bars: BarArrays, universe: Universe, clock: SimClock, *, cash: float = 100_000.0,
                 fill: str = "next_open", fees: FeeModel | None = None, slippage: SlippageModel | None = None,
                 volume_cap: float | None = None, lookback: int = 20):
        if tuple(universe.symbols) != tuple(bars.symbols):
            bars = bars.select(list(universe.symbols))
        if fill not in ("next_open", "close", "vwap"):
            raise ValueError(f"unknown fill rule {fill!r}")
        self.bars = bars
        self.universe = universe
        self.clock = clock
        self.fill = fill
        self.fee_model = fees or NoFees()
        self.slippage = slippage or FixedBps(0.0)
        self.volume_cap = volume_cap
        self.lookback = lookback
        n, m = bars.shape
        self.n_bars, self.n_sym = n, m
        self.times = bars.times
        self.close_ff = pd.DataFrame(bars.close).ffill().to_numpy()
        self._fill_px = {"next_open": bars.open, "close": bars.close,
                         "vwap": (bars.high + bars.low + bars.close) / 3.0}[fill]
        self.book = Book(m, cash)
        self._processed = -1          # bars whose pending orders and splits have been handled
        self._working: list[_Working] = []
        self._unsynced: list[ExecutionReport] = []
        self._registry = _Registry()
        self._sigma: np.ndarray | None = None
        self._adv: np.ndarray | None = None
        day = self.times.astype("datetime64[D]")
        self._bar_day = day
        self._day_start: tuple[np.datetime64, float] | None = None

    # ------------------------------------------------------------------ time
    def bar_at(self, t: np.datetime64) -> int:
        """Index of the last bar stamped <= t (-1 before the first bar)."""
        return int(np.searchsorted(self.times, t, "right")) - 1

    def advance_to(self, t: np.datetime64) -> None:
        """Move the clock to ``t``, filling working orders and applying splits on the bars passed."""
        self.clock.advance(t)
        self._process_through(self.bar_at(t))

    def _process_through(self, k: int) -> None:
        if k <= self._processed:
            return
        start = self._processed + 1
        sr = self.bars.split_ratio
        if not self._working:
            if sr is not None:
                seg = sr[start:k + 1]
                for rel, j in zip(*np.nonzero(seg != 1.0)):
                    self._note_day_start(start + int(rel))
                    self.book.apply_split(start + int(rel), np.array([j]), np.array([seg[rel, j]]))
            self._processed = k
            return
        for b in range(start, k + 1):
            if sr is not None and (sr[b] != 1.0).any():
                js = np.flatnonzero(sr[b] != 1.0)
                self._note_day_start(b)
                self.book.apply_split(b, js, sr[b, js])
                for w in self._working:
                    if sr[b, w.sym] != 1.0:
                        w.remaining *= sr[b, w.sym]
                        w.filled *= sr[b, w.sym]
                        w.ratio *= sr[b, w.sym]
            self._processed = b
            if self._working:
                self._fill_working(b)

    # ------------------------------------------------------------------ Broker
    def instruments(self, symbols: list[str] | tuple[str, ...]) -> Universe:
        missing = [s for s in symbols if s not in self.universe.index]
        if missing:
            raise DataError(Problem("<bars>", None, "symbol", f"no bars for {missing}"))
        if tuple(symbols) == self.universe.symbols:
            return self.universe
        from framework.types import Instrument, AssetClass

        u = self.universe
        return Universe.from_instruments([
            Instrument(s, AssetClass.of(s), float(u.qty_increment[u.index[s]]), float(u.min_qty[u.index[s]]),
                       float(u.min_notional[u.index[s]]), 0.01, bool(u.fractionable[u.index[s]]),
                       bool(u.shortable[u.index[s]])) for s in symbols])

    def _mark_row(self) -> np.ndarray:
        k = self.bar_at(self.clock.now())
        return self.close_ff[k] if k >= 0 else np.full(self.n_sym, np.nan)

    def account(self) -> AccountSnapshot:
        """Cash and equity marked at the close of the last bar <= now; positions via ``positions()``."""
        px = self._mark_row()
        b = self.book
        equity = b.cash + float(np.where(np.isnan(px), 0.0, b.pos * px).sum())
        return AccountSnapshot(self.clock.now(), equity, b.cash, b.cash, self._day_start_equity(equity))

    def positions(self) -> tuple[Position, ...]:
        px = self._mark_row()
        b = self.book
        values = np.where(np.isnan(px), 0.0, b.pos * px)
        return tuple(
            Position(self.universe.symbols[j], float(b.pos[j]), float(b.avg_cost[j]), float(px[j]),
                     float(values[j]), float(values[j] - b.pos[j] * b.avg_cost[j]), float(b.pos[j]))
            for j in np.flatnonzero(b.pos).tolist())

    def position_vector(self, universe: Universe, account: AccountSnapshot | None = None) -> np.ndarray:
        if universe is self.universe or universe.symbols == self.universe.symbols:
            return self.book.pos.copy()
        return super().position_vector(universe, account)

    def prices(self, universe: Universe) -> np.ndarray:
        row = self._mark_row()
        if universe is self.universe or universe.symbols == self.universe.symbols:
            return row.copy()
        return np.array([row[self.universe.index[s]] if s in self.universe.index else np.nan
                         for s in universe.symbols])

    def market_open(self, universe: Universe) -> np.ndarray:
        return np.ones(len(universe), dtype=bool)

    def execute(self, batch: OrderBatch) -> ExecutionReport:
        n = len(batch)
        messages: dict[int, str] = {}
        if n == 0:
            return ExecutionReport(batch, np.zeros(0, np.int8), np.zeros(0), np.zeros(0), FillBatch.empty())
        if batch.universe.symbols != self.universe.symbols:
            raise ValueError("the simulator trades its own universe; build orders with broker.instruments()")
        k0 = self.bar_at(self.clock.now())
        fb = k0 if self.fill == "close" else k0 + 1
        bad = self._venue_rejects(batch, messages)
        qty = batch.qty.copy()
        filled = np.zeros(n)
        rest = np.where(bad, 0.0, qty)
        fills = FillBatch.empty()
        if fb >= self.n_bars:
            for i in np.flatnonzero(~bad).tolist():
                messages[i] = "no later bar to fill on: order left working"
        elif batch.order_type == OrderType.MARKET:
            self._process_through(fb)          # splits and older working orders on the fill bar come first
            sym = batch.symbol_idx
            if self.bars.split_ratio is not None and self.fill != "close":
                qty = qty * self.bars.split_ratio[fb, sym]
            px = self._fill_px[fb, sym]
            ready = ~bad & ~np.isnan(px)
            fq = np.where(ready, np.minimum(qty, self._cap(fb, sym, qty)), 0.0)
            fills, filled = self._fill(fb, batch, np.flatnonzero(fq > 0), fq, messages)
            rest = np.where(bad, 0.0, qty - filled)
            for i, m in messages.items():
                if m.startswith("insufficient"):
                    rest[i] = 0.0
        working = np.flatnonzero(rest > 1e-12).tolist()
        if working:
            cids = batch.client_order_ids()
            from_bar = fb if batch.order_type != OrderType.MARKET else fb + 1
            for i in working:
                self._working.append(_Working(batch, i, cids[i], int(batch.symbol_idx[i]), int(batch.side[i]),
                                              float(rest[i]), float(filled[i]),
                                              float((fills.qty * fills.price)[fills.order_pos == i].sum()),
                                              from_bar=from_bar))
            if batch.order_type != OrderType.MARKET and fb < self.n_bars:
                self._process_through(fb - 1)
                got = self._fill_working(fb, batch=batch)
                fills = FillBatch.concat([fills] + [f for _, f, _ in got])
                for w, _, g in got:
                    filled[w.pos] += g
                    rest[w.pos] -= g
                self._processed = max(self._processed, fb)
        status = np.full(n, int(_S.NEW), np.int8)
        status[(filled > 0) & (rest > 1e-12)] = int(_S.PARTIAL)
        status[(rest <= 1e-12) & (filled > 0)] = int(_S.FILLED)
        for i, m in messages.items():
            if m.startswith("insufficient"):
                status[i] = int(_S.CANCELED)
        status[bad] = int(_S.REJECTED)
        rep = ExecutionReport(batch, status, filled, _vwap(fills, n), fills, None, messages,
                              np.full(n, self.times[min(fb, self.n_bars - 1)]))
        self._registry.reports.append(rep)
        return rep

    def sync(self) -> list[ExecutionReport]:
        out, self._unsynced = self._unsynced, []
        return out

    def lookup(self, client_ids: list[str]) -> dict[str, OrderState]:
        wanted = set(client_ids)
        found: dict[str, OrderState] = {}
        for rep in self._registry.reports:
            for i, cid in enumerate(rep.batch.client_order_ids()):
                if cid in wanted:
                    found[cid] = self._state(rep, i, cid)
        return found

    def open_orders(self) -> list[OrderState]:
        return [OrderState(w.client_id, None, self.universe.symbols[w.sym], w.side, w.filled + w.remaining, w.filled,
                           (w.notional / w.filled) if w.filled else None,
                           int(_S.PARTIAL if w.filled else _S.NEW), str(w.batch.order_type)) for w in self._working]

    def cancel(self, client_ids: list[str]) -> list[OrderState]:
        wanted = set(client_ids)
        out = []
        keep = []
        for w in self._working:
            if w.client_id in wanted:
                out.append(OrderState(w.client_id, None, self.universe.symbols[w.sym], w.side, w.filled + w.remaining,
                                      w.filled, (w.notional / w.filled) if w.filled else None, int(_S.CANCELED),
                                      str(w.batch.order_type), "canceled"))
            else:
                keep.append(w)
        self._working = keep
        return out

    def describe(self) -> str:
        return f"simulated broker ({self.fill} fills, {self.n_bars} bars x {self.n_sym} symbols)"

    # ------------------------------------------------------------------ equity curve
    def equity_curve(self) -> pd.DataFrame:
        """Cash, equity and exposures at every bar (the mark-to-market of SPEC section 6)."""
        cash, pos = self.book.history(self.n_bars, self.n_sym)
        px = np.nan_to_num(self.close_ff)
        values = pos * px
        net = values.sum(axis=1)
        gross = np.abs(values).sum(axis=1)
        return pd.DataFrame({"time": pd.to_datetime(self.times, utc=True), "equity": cash + net, "cash": cash,
                             "gross_exposure": gross, "net_exposure": net})

    # ------------------------------------------------------------------ internals
    def _day_start_equity(self, equity_now: float) -> float | None:
        t = self.clock.now()
        day = np.datetime64(t, "D")
        if self._day_start is not None and self._day_start[0] == day:
            return self._day_start[1]
        first = int(np.searchsorted(self._bar_day, day, "left"))
        d = first - 1
        if d < 0:
            value = self.book.initial_cash
        elif d >= self.book.last_event_bar:
            px = np.nan_to_num(self.close_ff[d])
            value = self.book.cash + float((self.book.pos * px).sum())
        else:
            return None   # state changed after the day began without a note: the ledger decides
        self._day_start = (day, value)
        return value

    def _note_day_start(self, bar: int) -> None:
        """Before a state change on ``bar``, remember the equity its day started with."""
        day = self._bar_day[bar]
        if self._day_start is not None and self._day_start[0] == day:
            return
        first = int(np.searchsorted(self._bar_day, day, "left"))
        d = first - 1
        if d < 0:
            value = self.book.initial_cash
        else:
            value = self.book.cash + float((self.book.pos * np.nan_to_num(self.close_ff[d])).sum())
        self._day_start = (day, value)

    def _venue_rejects(self, batch: OrderBatch, messages: dict[int, str]) -> np.ndarray:
        u = self.universe
        sym, qty = batch.symbol_idx, batch.qty
        ref = np.nan_to_num(batch.ref_price)
        inc = u.qty_increment[sym]
        off_inc = np.abs(qty - np.round(qty / inc) * inc) > np.maximum(inc * 1e-6, qty * 1e-12)
        position = self.book.pos[sym]
        full_close = (batch.side < 0) & (np.abs(qty - position) <= 1e-9 * np.maximum(1, np.abs(position)))
        full_close |= (batch.side > 0) & (np.abs(qty + position) <= 1e-9 * np.maximum(1, np.abs(position)))
        off_inc &= ~full_close
        small = ((qty * ref < u.min_notional[sym]) | (qty < u.min_qty[sym] - 1e-12)) & ~full_close
        short = (batch.side < 0) & (qty > position + 1e-9) & ~u.shortable[sym]
        bad = off_inc | small | short
        if bad.any():
            for i in np.flatnonzero(bad).tolist():
                s = u.symbols[sym[i]]
                if short[i]:
                    messages[i] = f"rejected: {s} cannot be sold short at this venue (holding {position[i]:g})"
                elif off_inc[i]:
                    messages[i] = f"rejected: quantity {qty[i]:g} is not a multiple of the increment {inc[i]:g}"
                else:
                    messages[i] = (f"rejected: notional {qty[i] * ref[i]:.2f} under the minimum "
                                   f"{u.min_notional[sym[i]]:g} (or quantity under {u.min_qty[sym[i]]:g})")
        return bad

    def _cap(self, bar: int, sym: np.ndarray, qty: np.ndarray) -> np.ndarray:
        if self.volume_cap is None:
            return qty
        vol = np.nan_to_num(self.bars.volume[bar, sym])
        return np.floor(self.volume_cap * vol / self.universe.qty_increment[sym]) * self.universe.qty_increment[sym]

    def _risk_inputs(self, bar: int, sym: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        from framework.costs import SpreadImpact

        if not isinstance(self.slippage, SpreadImpact):
            return None, None
        if self._sigma is None:
            c = pd.DataFrame(self.close_ff)
            self._sigma = c.pct_change().rolling(self.lookback, min_periods=2).std().shift(1).to_numpy()
            self._adv = pd.DataFrame(self.bars.volume).rolling(self.lookback, min_periods=1).mean().shift(1).to_numpy()
        return self._sigma[bar, sym], self._adv[bar, sym]  # type: ignore[index]

    def _fill(self, bar: int, batch: OrderBatch, idx: np.ndarray, fq: np.ndarray,
              messages: dict[int, str], base: np.ndarray | None = None,
              slip: bool = True) -> tuple[FillBatch, np.ndarray]:
        """Fill orders ``idx`` of ``batch`` with quantities ``fq[idx]`` on ``bar``: sells first, then buys
        limited to the cash available. Returns the fills and the quantities actually filled."""
        out = np.zeros(len(batch))
        if len(idx) == 0:
            return FillBatch.empty(), out
        sym = batch.symbol_idx[idx]
        side = batch.side[idx].astype(np.int64)
        q = fq[idx]
        ref = self._fill_px[bar, sym] if base is None else base
        sigma, adv = self._risk_inputs(bar, sym)
        crypto = self.universe.crypto[sym]
        frac = self.slippage.fraction(CostInputs(q, ref, side, crypto, sigma, adv)) if slip else 0.0
        px = ref * (1.0 + side * frac)   # a limit fills at its price or better: no slippage on top
        fee = self.fee_model.fees(CostInputs(q, px, side, crypto))
        sells = side < 0
        cash_after_sells = self.book.cash + float((q[sells] * px[sells] - fee[sells]).sum())
        buys = ~sells
        cost = float((q[buys] * px[buys] + fee[buys]).sum())
        if buys.any() and cost > cash_after_sells + 1e-9:
            factor = max(cash_after_sells, 0.0) / cost
            inc = self.universe.qty_increment[sym[buys]]
            q_b = np.floor(q[buys] * factor / inc + 1e-9) * inc
            for i, qq, qb in zip(idx[buys].tolist(), q[buys].tolist(), q_b.tolist()):
                if qb < qq:
                    messages[i] = f"insufficient funds: filled {qb:g} of {qq:g} (cash {cash_after_sells:,.2f})"
            q = q.copy()
            q[buys] = q_b
            fee = self.fee_model.fees(CostInputs(q, px, side, crypto))
        ok = q > 0
        if not ok.all():
            idx, sym, side, q, px, fee, ref = idx[ok], sym[ok], side[ok], q[ok], px[ok], fee[ok], ref[ok]
        order = np.argsort(side, kind="stable")   # sells (-1) before buys (+1)
        idx, sym, side, q, px, fee, ref = (a[order] for a in (idx, sym, side, q, px, fee, ref))
        self._note_day_start(bar)
        if len(np.unique(sym)) == len(sym):
            self.book.apply_fills(bar, sym, side, q, px, fee)
        else:
            for a in range(len(sym)):
                self.book.apply_fills(bar, sym[a:a + 1], side[a:a + 1], q[a:a + 1], px[a:a + 1], fee[a:a + 1])
        out[idx] = q
        fills = FillBatch(np.full(len(q), self.times[bar]), sym, side.astype(np.int8), q, px, fee,
                          np.abs(px - ref) * q, idx)
        return fills, out

    def _fill_working(self, bar: int, batch: OrderBatch | None = None) -> list[tuple[_Working, FillBatch, float]]:
        """Try every working order (or only those of ``batch``) on ``bar``.

        Fills of orders from ``batch`` are returned; fills of older orders become reports for
        ``sync()``. Orders done (filled, or stopped by insufficient funds) stop working.
        """
        still: list[_Working] = []
        got: list[tuple[_Working, FillBatch, float]] = []
        for w in self._working:
            if (batch is not None and w.batch is not batch) or bar < w.from_bar:
                still.append(w)
                continue
            b = w.batch
            if np.isnan(self.bars.open[bar, w.sym]):
                still.append(w)            # no bar for this symbol now (closed session)
                continue
            base = None
            if b.order_type != OrderType.MARKET:
                base = self._cross_price(bar, w)
                if base is None:
                    still.append(w)
                    continue
            elif np.isnan(self._fill_px[bar, w.sym]):
                still.append(w)
                continue
            q = w.remaining
            if self.volume_cap is not None:
                q = min(q, float(self._cap(bar, np.array([w.sym]), np.array([q]))[0]))
            if q <= 0:
                still.append(w)
                continue
            fq = np.zeros(len(b))
            fq[w.pos] = q
            msgs: dict[int, str] = {}
            fills, filled = self._fill(bar, b, np.array([w.pos]), fq, msgs,
                                       None if base is None else np.array([base]),
                                       slip=b.order_type != OrderType.LIMIT)
            g = float(filled[w.pos])
            w.filled += g
            w.remaining -= g
            w.notional += float((fills.qty * fills.price).sum())
            if w.remaining > 1e-12 and not msgs:
                still.append(w)
            if batch is not None:
                got.append((w, fills, g))
                continue
            st = _S.FILLED if w.remaining <= 1e-12 else (_S.CANCELED if msgs else _S.PARTIAL)
            sub = b.subset(np.arange(len(b)) == w.pos)
            self._unsynced.append(ExecutionReport(
                sub, np.array([int(st)], np.int8), np.array([w.filled]),
                np.array([w.notional / w.filled if w.filled else np.nan]),
                FillBatch(fills.time, fills.symbol_idx, fills.side, fills.qty, fills.price, fills.fee,
                          fills.slippage, np.zeros(len(fills), np.int64)),
                None, {0: msgs[w.pos]} if msgs else {}, np.array([self.times[bar]])))
        self._working = still
        return got

    def _cross_price(self, bar: int, w: _Working) -> float | None:
        b = w.batch
        o, h, lo = self.bars.open[bar, w.sym], self.bars.high[bar, w.sym], self.bars.low[bar, w.sym]
        if np.isnan(o):
            return None
        if b.order_type == OrderType.LIMIT:
            lim = float(b.limit_price[w.pos]) / w.ratio  # type: ignore[index]
            if w.side > 0:
                return o if o <= lim else (lim if lo <= lim else None)
            return o if o >= lim else (lim if h >= lim else None)
        stop = float(b.stop_price[w.pos]) / w.ratio  # type: ignore[index]
        if w.side > 0:
            return o if o >= stop else (stop if h >= stop else None)
        return o if o <= stop else (stop if lo <= stop else None)

    def _state(self, rep: ExecutionReport, i: int, cid: str) -> OrderState:
        b = rep.batch
        w = next((w for w in self._working if w.client_id == cid), None)
        filled = w.filled if w else float(rep.filled_qty[i])
        st = (_S.PARTIAL if filled else _S.NEW) if w else _S(int(rep.status[i]))
        return OrderState(cid, None, b.universe.symbols[b.symbol_idx[i]], int(b.side[i]), float(b.qty[i]), filled,
                          None if np.isnan(rep.avg_price[i]) else float(rep.avg_price[i]), int(st), str(b.order_type),
                          rep.messages.get(i, ""))


def _vwap(fills: FillBatch, n: int) -> np.ndarray:
    if len(fills) == 0:
        return np.full(n, np.nan)
    q = np.bincount(fills.order_pos, weights=fills.qty, minlength=n)
    v = np.bincount(fills.order_pos, weights=fills.qty * fills.price, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / q
