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

import numpy as np
import pandas as pd

from brokers.sim_book import Book
from brokers.sim_exits import oco_key
from brokers.sim_orders import Working, in_universe, order_state, refusals, report_for
from brokers.sim_working import WorkingOrders
from framework.broker import Broker, OnUpdate, OrderState, Protection
from framework.clock import SimClock
from framework.costs import CostInputs, FeeModel, FixedBps, NoFees, SlippageModel, SpreadImpact
from framework.data import BarArrays
from framework.errors import DataError, Problem
from framework.types import (
    AccountSnapshot,
    ExecutionReport,
    FillBatch,
    OrderBatch,
    OrderStatus,
    OrderType,
    Position,
    Universe,
)

_S = OrderStatus
_NO_FILLS = FillBatch.empty()    # shared: an empty report's arrays are never written to
_NONE_STOPPED = np.zeros(0, np.bool_)
NS_PER_DAY = 86_400_000_000_000


class SimulatedBroker(WorkingOrders, Broker):
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
        self.times = np.ascontiguousarray(bars.times)
        self._times_ns = self.times.astype("datetime64[ns]", copy=False).view(np.int64)   # as integers (``_now``)
        self.close_ff = pd.DataFrame(bars.close).ffill().to_numpy()
        self._fill_px = {"next_open": bars.open, "close": bars.close,
                         "vwap": (bars.high + bars.low + bars.close) / 3.0}[fill]
        # the compiled loops (numba) are loaded with the first simulator, not by importing this module
        from brokers import sim_kernels

        self._k = sim_kernels
        self.book = Book(m, cash)
        self._nan_row = np.full(m, np.nan)
        self._all_open = np.ones(m, dtype=bool)
        self._nan_row.flags.writeable = self._all_open.flags.writeable = False
        self._cap_fraction = -1.0 if volume_cap is None else float(volume_cap)
        self._impact = isinstance(self.slippage, SpreadImpact)   # slippage needs volatility and volume
        self._t_ns: int | None = None          # clock time (ns) the two values below belong to
        self._bar_now = -1                       # last bar stamped <= that time
        self._day_now = 0                        # that time's UTC day, as days since the epoch
        self._processed = -1          # bars whose pending orders and splits have been handled
        self._working: list[Working] = []
        self._unsynced: list[ExecutionReport] = []
        self._sent: dict[tuple[str, str], list[ExecutionReport]] = {}   # (batch id, leg) -> its reports
        self._sigma: np.ndarray | None = None
        self._adv: np.ndarray | None = None
        self._bar_day = self.times.astype("datetime64[D]").astype(np.int64)
        self._day_start: tuple[int, float] | None = None     # (UTC day, equity it started with)
        self._stamp_bar, self._stamp_view = -1, self.times[:0]

    # ------------------------------------------------------------------ time
    def bar_at(self, t: np.datetime64) -> int:
        """Index of the last bar stamped <= t (-1 before the first bar)."""
        return int(self.times.searchsorted(t, "right")) - 1

    def advance_to(self, t: np.datetime64) -> None:
        """Move the clock to ``t``, filling working orders and applying splits on the bars passed."""
        self.clock.advance(t)
        self._process_through(self._now())

    def _now(self) -> int:
        """Index of the last bar stamped <= the clock's time (cached until the clock moves)."""
        ns = self.clock.now_ns()
        if ns != self._t_ns:
            self._bar_now = int(self._times_ns.searchsorted(ns, "right")) - 1
            self._day_now = ns // NS_PER_DAY          # floored, as numpy's cast to days
            self._t_ns = ns
        return self._bar_now

    # ------------------------------------------------------------------ Broker
    def instruments(self, symbols: list[str] | tuple[str, ...]) -> Universe:
        missing = [s for s in symbols if s not in self.universe.index]
        if missing:
            raise DataError(Problem("<bars>", None, "symbol", f"no bars for {missing}"))
        if tuple(symbols) == self.universe.symbols:
            return self.universe
        from framework.types import AssetClass, Instrument

        u = self.universe
        return Universe.from_instruments([
            Instrument(s, AssetClass.of(s), float(u.qty_increment[u.index[s]]), float(u.min_qty[u.index[s]]),
                       float(u.min_notional[u.index[s]]), 0.01, bool(u.fractionable[u.index[s]]),
                       bool(u.shortable[u.index[s]])) for s in symbols])

    def _stamps(self, bar: int, n: int) -> np.ndarray:
        """The time of ``bar``, ``n`` times: a read-only view that takes no memory per element."""
        v = self._stamp_view
        if bar != self._stamp_bar or n > len(v):
            v = np.ndarray((max(n, self.n_sym),), self.times.dtype, self.times, bar * self.times.itemsize, (0,))
            v.flags.writeable = False
            self._stamp_bar, self._stamp_view = bar, v
        return v[:n]

    def _mark_row(self) -> np.ndarray:
        k = self._now()
        return self.close_ff[k] if k >= 0 else self._nan_row

    def account(self) -> AccountSnapshot:
        """Cash and equity marked at the close of the last bar <= now; positions via ``positions()``."""
        b = self.book
        equity = self._k.mark(b.cash, b.pos, self._mark_row())
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
        if len(universe) == self.n_sym:
            return self._all_open
        return np.ones(len(universe), dtype=bool)

    def execute(self, batch: OrderBatch, on_update: OnUpdate | None = None) -> ExecutionReport:
        """Send a batch; the answer (states and fills) goes to ``on_update`` at once, as a venue's
        would as it arrives, and is returned. Orders whose client order id the simulator has seen
        are not sent again: their report says what became of them (as a venue answers a duplicate
        client order id)."""
        rep = self._send(batch)
        if on_update is not None and len(batch):
            on_update(rep)
        return rep

    def _send(self, batch: OrderBatch) -> ExecutionReport:
        if len(batch) == 0:
            return ExecutionReport(batch, _NO_FILLS.side, _NO_FILLS.qty, _NO_FILLS.qty, _NO_FILLS)
        if batch.universe is not self.universe and batch.universe.symbols != self.universe.symbols:
            return self._execute_foreign(batch)
        key = (batch.batch_id, batch.leg)        # with the symbol, what the client order id is made of
        sent = self._sent.get(key)
        if sent is not None:
            return self._execute_again(batch, sent)
        rep = self._execute(batch)
        self._sent[key] = [rep]
        return rep

    def _execute_foreign(self, batch: OrderBatch) -> ExecutionReport:
        """A batch over another universe (e.g. one from ``instruments()``): trade it in ours."""
        ours, back = in_universe(batch, self.universe)
        return report_for(batch, self._send(ours), back)

    def _execute_again(self, batch: OrderBatch, sent: list[ExecutionReport]) -> ExecutionReport:
        """Answer orders already sent from what became of them; send only the new ones."""
        known: dict[str, tuple[ExecutionReport, int]] = {}
        for rep in sent:
            for i, sym in enumerate(rep.batch.symbols()):
                known[sym] = (rep, i)
        syms = batch.symbols()
        new = np.array([s not in known for s in syms])
        n = len(batch)
        status, filled, avg = np.empty(n, np.int8), np.zeros(n), np.full(n, np.nan)
        messages: dict[int, str] = {}
        fills = _NO_FILLS
        if new.any():
            pos = np.flatnonzero(new)
            fresh = self._execute(batch.subset(new))
            sent.append(fresh)
            status[pos], filled[pos], avg[pos] = fresh.status, fresh.filled_qty, fresh.avg_price
            messages.update({int(pos[i]): m for i, m in fresh.messages.items()})
            f = fresh.fills
            fills = FillBatch(f.time, f.symbol_idx, f.side, f.qty, f.price, f.fee, f.slippage, pos[f.order_pos],
                              f.trade_ids)
        cids = batch.client_order_ids()
        for i in np.flatnonzero(~new).tolist():
            st = self._state(*known[syms[i]], cids[i])
            status[i], filled[i] = st.status, st.filled_qty
            avg[i] = np.nan if st.avg_price is None else st.avg_price
            if st.message:
                messages[i] = st.message
        return ExecutionReport(batch, status, filled, avg, fills, None, messages, self._stamps(max(self._now(), 0), n))

    def _execute(self, batch: OrderBatch) -> ExecutionReport:
        n = len(batch)
        u = self.universe
        k0 = self._now()
        fb = k0 if self.fill == "close" else k0 + 1
        sym, qty = batch.symbol_idx, batch.qty
        codes = np.zeros(n, np.int8)
        n_bad = self._k.venue_check(sym, batch.side, qty, batch.ref_price, u.qty_increment, u.min_notional,
                                    u.min_qty, u.shortable, self.book.pos, codes)
        messages: dict[int, str] = {}
        if n_bad:
            messages.update(refusals(batch, codes, self.book.pos))
        market = batch.order_type == OrderType.MARKET
        fills = _NO_FILLS
        if fb >= self.n_bars:
            for i in np.flatnonzero(codes == 0).tolist():
                messages[i] = "no later bar to fill on: order left working"
        elif market:
            self._process_through(fb)          # splits and older working orders on the fill bar come first
            if self.bars.split_ratio is not None and self.fill != "close":
                qty = qty * self.bars.split_ratio[fb, sym]
            vol = self.bars.volume[fb] if self.volume_cap is not None else self._nan_row
            fq = np.zeros(n)
            n_fill = self._k.fillable(codes, sym, qty, self._fill_px[fb], vol, u.qty_increment, self._cap_fraction, fq)
            if n_fill:
                fills = self._fill(fb, batch, np.flatnonzero(fq > 0) if n_fill < n else None, fq, messages)
        filled, rest, avg, status, n_working = self._outcome(n, codes, fills, qty, messages)
        if n_working:
            self._keep_working(batch, rest, filled, fills, fb + 1 if market else fb)
        if not market and fb < self.n_bars:
            if fb > self._processed:        # the fill bar's splits and older orders come first
                self._process_through(fb - 1)
                got = self._process_bar(fb, batch)
            else:
                got = self._fill_working(fb, batch)
            fills = FillBatch.concat([fills] + [f for _, f, _ in got])
            filled, rest, avg, status, _ = self._outcome(n, codes, fills, qty, messages)
        rep = ExecutionReport(batch, status, filled, avg, fills, None, messages,
                              self._stamps(min(fb, self.n_bars - 1), n))
        return rep

    def _outcome(self, n: int, codes: np.ndarray, fills: FillBatch, qty: np.ndarray, messages: dict[int, str]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Filled quantity, quantity still working, average price, status of each order, and how
        many orders keep working. Orders cut short for lack of funds stop (canceled)."""
        stopped = _NONE_STOPPED
        if messages:
            stopped = np.zeros(n, np.bool_)
            for i, m in messages.items():
                if m.startswith("insufficient"):
                    stopped[i] = True
        filled, rest, avg, status = np.zeros(n), np.empty(n), np.empty(n), np.empty(n, np.int8)
        n_working = self._k.order_outcome(codes, fills.order_pos, fills.qty, fills.price, qty, stopped,
                                          filled, rest, avg, status)
        return filled, rest, avg, status, n_working

    def sync(self) -> list[ExecutionReport]:
        out, self._unsynced = self._unsynced, []
        return out

    def lookup(self, client_ids: list[str]) -> dict[str, OrderState]:
        wanted = set(client_ids)
        found: dict[str, OrderState] = {}
        for rep in (r for reps in self._sent.values() for r in reps):
            for i, cid in enumerate(rep.batch.client_order_ids()):
                if cid in wanted:
                    found[cid] = self._state(rep, i, cid)
        return found

    def open_orders(self) -> list[OrderState]:
        return [w.state() for w in self._working]

    def cancel(self, client_ids: list[str]) -> list[OrderState]:
        wanted = set(client_ids)
        out = [w.state(_S.CANCELED, "canceled") for w in self._working if w.client_id in wanted]
        self._working = [w for w in self._working if w.client_id not in wanted]
        return out

    def forget_sent(self) -> None:
        """Drop the reports kept to answer a re-sent client order id. A finished backtest calls it
        when it writes its records, so a million orders' arrays are not held a second time."""
        self._sent.clear()

    def retire(self) -> None:
        """The replay is over and its equity curve and final marks are taken: let go of the bars,
        the fill prices and the book's fill log (a large backtest's 150 MB), so the ledger write
        and the artifacts do not stack on them. Anything that needs them fails loudly after."""
        self.forget_sent()
        del self.bars, self.close_ff, self._fill_px, self.book
        self._sigma = self._adv = None

    def describe(self) -> str:
        return f"simulated broker ({self.fill} fills, {self.n_bars} bars x {self.n_sym} symbols)"

    # ------------------------------------------------------------------ equity curve
    def seed(self, holdings: dict[str, float], at: np.datetime64, cost: dict[str, float] | None = None) -> None:
        """Start holding ``holdings`` (signed quantities) before the first cycle.

        They are booked as fee-free fills on the bar at ``at``, at ``cost`` per symbol (default: that
        bar's close), paid from the cash: build the broker with the cash plus their cost for an
        account that already owns them. The equity curve stays exact."""
        k = max(self.bar_at(at), 0)
        held = [(self.universe.index[s], s, q) for s, q in holdings.items() if s in self.universe.index and q]
        if not held:
            return
        idx = np.array([j for j, _, _ in held], np.int64)
        qty = np.array([q for _, _, q in held])
        px = self.close_ff[k, idx].copy()
        if cost:
            px = np.array([cost.get(s, p) for (_, s, _), p in zip(held, px.tolist())])
        ok = np.isfinite(px)
        self.book.apply_fills(k, idx[ok], np.sign(qty[ok]).astype(np.int64), np.abs(qty[ok]), px[ok],
                              np.zeros(int(ok.sum())))

    def equity_curve(self) -> pd.DataFrame:
        """Cash, equity and exposures at every bar (the mark-to-market of SPEC section 6)."""
        cash, equity, gross, net = self.book.curve(self.close_ff)
        return pd.DataFrame({"time": pd.to_datetime(self.times, utc=True), "equity": equity, "cash": cash,
                             "gross_exposure": gross, "net_exposure": net})

    # ------------------------------------------------------------------ internals
    def _day_start_equity(self, equity_now: float) -> float | None:
        self._now()
        day = self._day_now
        if self._day_start is not None and self._day_start[0] == day:
            return self._day_start[1]
        d = int(np.searchsorted(self._bar_day, day, "left")) - 1
        if d < 0:
            value = self.book.initial_cash
        elif d >= self.book.last_event_bar:
            value = self._k.mark(self.book.cash, self.book.pos, self.close_ff[d])
        else:
            return None   # state changed after the day began without a note: the ledger decides
        self._day_start = (day, value)
        return value

    def _note_day_start(self, bar: int) -> None:
        """Before a state change on ``bar``, remember the equity its day started with."""
        day = int(self._bar_day[bar])
        if self._day_start is not None and self._day_start[0] == day:
            return
        d = int(np.searchsorted(self._bar_day, day, "left")) - 1
        value = self.book.initial_cash if d < 0 else self._k.mark(self.book.cash, self.book.pos, self.close_ff[d])
        self._day_start = (day, value)

    def _cap(self, bar: int, sym: np.ndarray, qty: np.ndarray) -> np.ndarray:
        if self.volume_cap is None:
            return qty
        vol = np.nan_to_num(self.bars.volume[bar, sym])
        return np.floor(self.volume_cap * vol / self.universe.qty_increment[sym]) * self.universe.qty_increment[sym]

    def _risk_inputs(self, bar: int, sym: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not self._impact:
            return None, None
        if self._sigma is None:
            c = pd.DataFrame(self.close_ff)
            self._sigma = c.pct_change().rolling(self.lookback, min_periods=2).std().shift(1).to_numpy()
            self._adv = pd.DataFrame(self.bars.volume).rolling(self.lookback, min_periods=1).mean().shift(1).to_numpy()
        return self._sigma[bar, sym], self._adv[bar, sym]  # type: ignore[index]

    def _fill(self, bar: int, batch: OrderBatch, idx: np.ndarray | None, fq: np.ndarray,
              messages: dict[int, str], base: np.ndarray | None = None, slip: bool = True) -> FillBatch:
        """Fill orders ``idx`` of ``batch`` (None: all of them) with quantities ``fq[idx]`` on ``bar``:
        sells first, then buys limited to the cash available. Returns the fills (``order_pos`` says
        which order each is for)."""
        if idx is None:
            idx, sym, side, q = np.arange(len(batch)), batch.symbol_idx, batch.side, fq
        elif len(idx) == 0:
            return _NO_FILLS
        else:
            sym, side, q = batch.symbol_idx[idx], batch.side[idx], fq[idx]
        if side.dtype != np.int8:
            side = side.astype(np.int8)
        ref = self._fill_px[bar][sym] if base is None else base
        sigma, adv = self._risk_inputs(bar, sym)
        crypto = self.universe.crypto[sym]
        # a limit fills at its price or better: no slippage on top
        frac = self.slippage.fraction(CostInputs(q, ref, side, crypto, sigma, adv)) if slip else np.zeros(len(q))
        px: np.ndarray = np.empty(len(q))
        slippage: np.ndarray = np.empty(len(q))
        self._k.execution_prices(ref, side, frac, q, px, slippage)
        fee = self.fee_model.fees(CostInputs(q, px, side, crypto))
        cash_after_sells, cost, n_buys = self._k.funds(self.book.cash, side, q, px, fee)
        if n_buys and cost > cash_after_sells + 1e-9:
            buys = side > 0
            factor = max(cash_after_sells, 0.0) / cost
            inc = self.universe.qty_increment[sym[buys]]
            q_b = np.floor(q[buys] * factor / inc + 1e-9) * inc
            for i, qq, qb in zip(idx[buys].tolist(), q[buys].tolist(), q_b.tolist()):
                if qb < qq:
                    messages[i] = f"insufficient funds: filled {qb:g} of {qq:g} (cash {cash_after_sells:,.2f})"
            q = q.copy()
            q[buys] = q_b
            fee = self.fee_model.fees(CostInputs(q, px, side, crypto))
            slippage = np.abs(px - ref) * q
            ok = q > 0
            if not ok.all():
                idx, sym, side, q, px, fee, slippage = (a[ok] for a in (idx, sym, side, q, px, fee, slippage))
        self._note_day_start(bar)
        order = self.book.apply_fills(bar, sym, side, q, px, fee)
        if order is not None:
            idx, sym, side, q, px, fee, slippage = (a[order] for a in (idx, sym, side, q, px, fee, slippage))
        return FillBatch(self._stamps(bar, len(q)), sym, side, q, px, fee, slippage, idx)

    # ------------------------------------------------------------------ protective exits (SPEC §20)
    def unplaced_exits(self, universe: Universe, stops: np.ndarray, takes: np.ndarray) -> dict[tuple[str, str], str]:
        return {}           # every stop and take-profit is placed (``protect``)

    def protect(self, orders: Protection, on_update: OnUpdate | None = None) -> list[ExecutionReport]:
        """Place a stop and a take-profit per position as working orders linked one-cancels-the-
        other (``brokers.sim_exits``). They may fire from the bar after the cycle's time on (the bar
        the cycle's market orders fill at the open); fills reach the journal through ``sync()``.
        Orders whose client order id the simulator has seen are not placed again."""
        k0 = self._now()
        fb = k0 if self.fill == "close" else k0 + 1
        reports, new = [], []
        for b in (orders.stops, orders.takes):
            if not len(b):
                continue
            key = (b.batch_id, b.leg)
            if key in self._sent:
                rep = self._execute_again(b, self._sent[key])
            else:
                n = len(b)
                rep = ExecutionReport(b, np.full(n, int(_S.NEW), np.int8), np.zeros(n), np.full(n, np.nan), _NO_FILLS,
                                      None, {}, self._stamps(max(k0, 0), n))
                self._sent[key] = [rep]
                cids = b.client_order_ids()
                for i in range(n):
                    new.append(Working(b, i, cids[i], int(b.symbol_idx[i]), int(b.side[i]), float(b.qty[i]),
                                       from_bar=fb, oco=oco_key(b.batch_id, int(b.symbol_idx[i]))))
            if on_update is not None:
                on_update(rep)
            reports.append(rep)
        if new and fb < self.n_bars and fb <= self._processed:
            # the cycle's orders already filled on bar fb: the new exits take their turn on it now
            others, self._working = self._working, new
            self._fill_working(fb, None, only=False)
            self._working = others + self._working
        else:
            self._working += new
        return reports

    def _state(self, rep: ExecutionReport, i: int, cid: str) -> OrderState:
        return order_state(rep, i, cid, next((w for w in self._working if w.client_id == cid), None))
