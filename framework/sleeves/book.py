"""The sleeves' books (SPEC §18): each sleeve's cash, positions, fees and equity history.

One ``SleeveBook`` per portfolio run, for the backtest and the live cycle alike. Every change is a
row keyed so it is booked once: a sleeve's funding, its side of an internal crossing (booked with
the cycle's plan, before any order is sent) and its share of each venue fill. Fills reach the book
through ``SleeveJournal``, which wraps the run's journal (the one bookkeeper of the account's
fills) and hands each booked answer on; after a crash, ``catch_up`` allocates from the ledger the
fills booked while no book was listening. ``commit`` writes the new rows to the ledger in one
transaction when the book has one (paper, live), or keeps them until the run is persisted
(backtest), exactly as the journals do.
"""

from __future__ import annotations

import numpy as np

from framework.ledger import iso
from framework.sleeves.netting import NettedPlan, crossing_cash, fill_shares, shares
from framework.types import ExecutionReport

UNALLOCATED = "*unallocated*"
ACCOUNT = "*account*"


def stamp(t: np.datetime64) -> str:
    """ISO time of ``t`` as the ledger writes it."""
    text = iso(np.datetime64(t, "ns"))
    if not isinstance(text, str):   # iso gives a list only for an array of times
        raise TypeError(f"stamp takes one time, not {type(t).__name__}")
    return text


def fill_key(client_order_id: str, trade_id: str | None, time: str, qty: float, price: float) -> str:
    """What identifies a venue fill: its trade id, or (order, time, quantity, price) without one."""
    return trade_id or f"{client_order_id}|{time}|{qty!r}|{price!r}"


class SleeveBook:
    """Cash, positions and fees per sleeve of one account; rows to write in ``commit``."""

    def __init__(self, account: str, portfolio: str, ledger=None):
        self.account = account
        self.portfolio = portfolio
        self.ledger = ledger
        self.start_equity: float | None = None
        self.cash: dict[str, float] = {}
        self.funded: dict[str, float] = {}
        self.fees: dict[str, float] = {}
        self.pos: dict[str, dict[str, float]] = {}
        self._keys: set[tuple[str, str, str]] = set()
        self._fills: set[str] = set()
        self._plans: dict[str, NettedPlan | None] = {}
        self._history: list[tuple[str, str, float]] = []     # (time, sleeve, equity)
        self._rows: tuple[list, list, list, list] = ([], [], [], [])

    # ------------------------------------------------------------ loading and writing
    @classmethod
    def load(cls, ledger, account: str, portfolio: str) -> SleeveBook:
        """The book as the ledger has it (paper, live): every later change is committed to it."""
        book = cls(account, portfolio, ledger)
        start = ledger.sleeve_start(account)
        if start is not None:
            book.start_equity = start[1]
        for r in ledger.sleeve_trades(account).itertuples(index=False):
            book._apply(r.sleeve, r.kind, r.key, r.symbol, float(r.qty), float(r.fee), float(r.cash))
            if r.kind == "fill":
                book._fills.add(r.key)
        eq = ledger.sleeve_equity(account)
        book._history = list(zip(eq["time"], eq["sleeve"], eq["equity"].astype(float)))
        return book

    def commit(self) -> None:
        """Write what changed since the last commit (one transaction); without a ledger, keep it."""
        if self.ledger is None or not any(self._rows):
            return
        self.ledger.write_sleeve_rows(*self._rows)
        self._rows = ([], [], [], [])

    def attach(self, ledger) -> None:
        """Give a backtest's book the ledger it is persisted to, then ``commit``."""
        self.ledger = ledger

    # ------------------------------------------------------------ booking
    def _apply(self, sleeve: str, kind: str, key: str, symbol: str | None, qty: float, fee: float,
               cash: float) -> bool:
        k = (sleeve, kind, key)
        if k in self._keys:
            return False
        self._keys.add(k)
        self.cash[sleeve] = self.cash.get(sleeve, 0.0) + cash
        self.fees[sleeve] = self.fees.get(sleeve, 0.0) + fee
        if kind == "fund":
            self.funded[sleeve] = self.funded.get(sleeve, 0.0) + cash
        if symbol and qty:
            book = self.pos.setdefault(sleeve, {})
            book[symbol] = book.get(symbol, 0.0) + qty
        return True

    def _book(self, sleeve: str, kind: str, key: str, batch_id: str | None, time: str, symbol: str | None,
              qty: float, price: float | None, fee: float, cash: float) -> None:
        if self._apply(sleeve, kind, key, symbol, qty, fee, cash):
            self._rows[2].append((self.account, sleeve, kind, key, batch_id, time, symbol, qty, price, fee, cash))

    def fund(self, sleeves, equity: float, t: np.datetime64) -> list[str]:
        """Give every sleeve not funded yet its allocation of ``equity``; return their names."""
        at = stamp(t)
        if self.start_equity is None:
            self.start_equity = float(equity)
            self._rows[0].append((self.account, self.portfolio, float(equity), at))
        new = [s for s in sleeves if s.name not in self.funded]
        for s in new:
            self._book(s.name, "fund", "initial", None, at, None, 0.0, None, 0.0, float(s.funding(equity)))
        return [s.name for s in new]

    def plan(self, batch_id: str) -> NettedPlan | None:
        """The recorded plan of ``batch_id`` (this run's, or the ledger's after a restart)."""
        if batch_id not in self._plans:
            self._plans[batch_id] = None if self.ledger is None else _plan_from_rows(
                self.ledger.sleeve_plan(self.account, batch_id))
        return self._plans[batch_id]

    def record_plan(self, plan: NettedPlan) -> None:
        """Record a cycle's plan and book its internal crossings (before any order is sent)."""
        self._plans[plan.batch_id] = plan
        at = stamp(plan.time)
        for k, name in enumerate(plan.names):
            for j, sym in enumerate(plan.symbols):
                if abs(plan.target[k, j] - plan.held[k, j]) > 0 or plan.held[k, j]:
                    self._rows[1].append((self.account, plan.batch_id, name, sym, at, float(plan.prices[j]),
                                          float(plan.equity[k]), float(plan.held[k, j]), float(plan.target[k, j]),
                                          float(plan.crossed[k, j]), float(plan.residual[k, j])))
        for j, sym in enumerate(plan.symbols):
            col = plan.crossed[:, j]
            if not np.any(np.abs(col) > 0):
                continue
            cash = crossing_cash(col, float(plan.prices[j]))
            for k in np.flatnonzero(np.abs(col) > 0).tolist():
                self._book(plan.names[k], "cross", f"{plan.batch_id}|{sym}", plan.batch_id, at, sym,
                           float(col[k]), float(plan.prices[j]), 0.0, float(cash[k]))

    def take(self, report: ExecutionReport) -> None:
        """Allocate the fills of one booked answer to the sleeves of the order's cycle."""
        f = report.fills
        if not len(f):
            return
        cids = report.batch.client_order_ids()
        syms = report.batch.universe.symbols
        times = iso(f.time)
        tids = f.trade_ids or (None,) * len(f)
        for i, (p, s, sd, q, px, fee) in enumerate(zip(f.order_pos.tolist(), f.symbol_idx.tolist(), f.side.tolist(),
                                                       f.qty.tolist(), f.price.tolist(), f.fee.tolist())):
            self.allocate(report.batch.batch_id, cids[p], tids[i], times[i], syms[s], int(sd), q, px, fee)

    def catch_up(self) -> int:
        """Allocate the account's fills the ledger holds and the book does not (after a crash)."""
        n = 0
        for r in self.ledger.fills_with_batches(self.account) if self.ledger is not None else []:
            side = 1 if r["side"] == "buy" else -1
            n += self.allocate(r["batch_id"], r["client_order_id"], r["trade_id"], r["time"], r["symbol"], side,
                               float(r["qty"]), float(r["price"]), float(r["fee"]))
        return n

    def allocate(self, batch_id: str | None, cid: str, trade_id: str | None, time: str, symbol: str, side: int,
                 qty: float, price: float, fee: float) -> bool:
        """One venue fill, split among the sleeves on its side in proportion to what each asked for.
        A fill of an order no sleeve asked for (a manual ``close``) stays unallocated."""
        key = fill_key(cid, trade_id, time, qty, price)
        if key in self._fills or not batch_id:
            return False
        plan = self.plan(batch_id)
        if plan is None or symbol not in plan.symbols:
            return False
        j = plan.symbols.index(symbol)
        part = fill_shares(plan.residual[:, j], side, qty)
        if part is None:
            return False
        self._fills.add(key)
        cash = shares(-side * qty * price - fee, part)
        fees = shares(fee, part)
        for k in np.flatnonzero(part > 0).tolist():
            self._book(plan.names[k], "fill", key, batch_id, time, symbol, side * float(part[k]), price,
                       float(fees[k]), float(cash[k]))
        return True

    # ------------------------------------------------------------ reading
    def names(self) -> list[str]:
        return list(self.funded)

    def held(self, sleeve: str, symbols: tuple[str, ...]) -> np.ndarray:
        book = self.pos.get(sleeve, {})
        return np.array([book.get(s, 0.0) for s in symbols])

    def total_positions(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for book in self.pos.values():
            for s, q in book.items():
                out[s] = out.get(s, 0.0) + q
        return out

    def equity(self, sleeve: str, marks: dict[str, float]) -> float:
        return self.cash.get(sleeve, 0.0) + sum(q * marks.get(s, 0.0) for s, q in self.pos.get(sleeve, {}).items())

    def day_start(self, sleeve: str, t: np.datetime64) -> float | None:
        """The sleeve's last recorded equity before the UTC day of ``t``."""
        day = stamp(np.datetime64(t, "D"))
        before = [e for (tt, s, e) in self._history if s == sleeve and tt < day]
        return before[-1] if before else None

    def values(self, account_equity: float, account_cash: float, account_positions: dict[str, float],
               marks: dict[str, float]) -> dict[str, tuple[float, float, float]]:
        """(equity, cash, gross exposure) of each sleeve, of the unallocated rest and of the account.

        The rest is what the sleeves do not own: the account's cash less the sleeves' cash, and every
        position less the sleeves' (the user's own holdings among them), at the same marks."""
        out: dict[str, tuple[float, float, float]] = {}
        for name in self.names():
            gross = sum(abs(q) * marks.get(s, 0.0) for s, q in self.pos.get(name, {}).items())
            out[name] = (self.equity(name, marks), self.cash.get(name, 0.0), gross)
        rest = self.unallocated_positions(account_positions)
        u_cash = account_cash - sum(self.cash.values())
        out[UNALLOCATED] = (u_cash + sum(q * marks.get(s, 0.0) for s, q in rest.items()), u_cash,
                            sum(abs(q) * marks.get(s, 0.0) for s, q in rest.items()))
        out[ACCOUNT] = (float(account_equity), float(account_cash),
                        sum(abs(q) * marks.get(s, 0.0) for s, q in account_positions.items()))
        return out

    def unallocated_positions(self, account_positions: dict[str, float]) -> dict[str, float]:
        """Positions no sleeve owns: the account's less the sleeves' (zero rows left out)."""
        owned = self.total_positions()
        rest = {s: account_positions.get(s, 0.0) - owned.get(s, 0.0) for s in set(account_positions) | set(owned)}
        return {s: q for s, q in sorted(rest.items()) if abs(q) > 1e-12}

    def mark(self, t: np.datetime64, run_id: str | None, account_equity: float, account_cash: float,
             account_positions: dict[str, float], marks: dict[str, float]) -> dict[str, float]:
        """Record the ``values`` now (the sleeves' equity history); return each one's equity."""
        at = stamp(t)
        vals = self.values(account_equity, account_cash, account_positions, marks)
        for name, (e, c, g) in vals.items():
            self._rows[3].append((self.account, run_id, at, name, e, c, g))
            self._history.append((at, name, e))
        return {k: v[0] for k, v in vals.items()}


def _plan_from_rows(df) -> NettedPlan | None:
    if df is None or not len(df):
        return None
    names = tuple(dict.fromkeys(df["sleeve"]))
    symbols = tuple(dict.fromkeys(df["symbol"]))
    shape = (len(names), len(symbols))
    arrays = {c: np.zeros(shape) for c in ("held", "target", "crossed", "residual")}
    prices, equity = np.full(len(symbols), np.nan), np.zeros(len(names))
    for r in df.itertuples(index=False):
        k, j = names.index(r.sleeve), symbols.index(r.symbol)
        for c, a in arrays.items():
            a[k, j] = float(getattr(r, c))
        prices[j], equity[k] = float(r.price), float(r.equity)
    t = np.datetime64(str(df["time"].iloc[0]).rstrip("Z"), "ns")
    return NettedPlan(str(df["batch_id"].iloc[0]), t, names, symbols, prices, equity, arrays["held"],
                      arrays["target"], arrays["crossed"], arrays["residual"])


class SleeveJournal:
    """The run's journal with the sleeves listening: every answer it books is allocated too.

    Everything else is the wrapped journal's (``framework.journal``): it stays the one bookkeeper
    of the account's orders and fills."""

    def __init__(self, inner, book: SleeveBook):
        self.inner = inner
        self.book = book

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def update(self, report: ExecutionReport) -> None:
        self.inner.update(report)
        self.book.take(report)

    def updates(self, reports: list[ExecutionReport]) -> None:
        for r in reports:
            self.inner.updates([r])
            self.book.take(r)
