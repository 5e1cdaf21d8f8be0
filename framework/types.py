"""Frozen, typed values that flow through the one pipeline.

Arrays, not objects, on the hot path: a ``TargetPortfolio``, an ``OrderBatch``, an
``ExecutionReport`` and a ``FillBatch`` each hold numpy arrays aligned to a ``Universe``, so the
risk manager, the rebalancer and the simulator work on whole batches. Live brokers iterate the same
batches order by order. Times are numpy ``datetime64[ns]`` in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np

from framework.order_ids import batch_key, batch_keys, client_order_ids
from framework.symbols import is_crypto

NS = np.dtype("datetime64[ns]")


class Side(IntEnum):
    BUY = 1
    SELL = -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"


class OrderStatus(IntEnum):
    """Order states; the integer codes are what OrderBatch/ExecutionReport arrays hold."""

    PLANNED = 0     # intent recorded, not sent
    NEW = 1         # accepted by the venue, nothing filled
    PARTIAL = 2     # partially filled, still working
    FILLED = 3
    CANCELED = 4    # canceled, possibly after partial fills
    REJECTED = 5
    EXPIRED = 6

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.PLANNED, OrderStatus.NEW, OrderStatus.PARTIAL)

    @property
    def label(self) -> str:
        return _STATUS_LABELS[self]


_STATUS_LABELS = {
    OrderStatus.PLANNED: "planned", OrderStatus.NEW: "new", OrderStatus.PARTIAL: "partially_filled",
    OrderStatus.FILLED: "filled", OrderStatus.CANCELED: "canceled", OrderStatus.REJECTED: "rejected",
    OrderStatus.EXPIRED: "expired",
}


class RunStatus(StrEnum):
    """A run's state in the ledger."""

    RUNNING = "running"
    DONE = "done"
    HALTED = "halted"       # the risk manager blocked the cycle
    FAILED = "failed"       # stopped by an error; its orders are reconciled by the next command


class CycleStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    HALTED = "halted"
    MARK = "mark"           # a backtest's final valuation row, not a cycle


class RiskAction(StrEnum):
    """What a risk rule did to a target or an order."""

    CLIP = "clip"
    REJECT = "reject"
    SCALE = "scale"
    HOLD = "hold"
    HALT = "halt"
    BLOCK = "block"


class AssetClass(StrEnum):
    EQUITY = "equity"
    CRYPTO = "crypto"

    @staticmethod
    def of(symbol: str) -> AssetClass:
        return AssetClass.CRYPTO if is_crypto(symbol) else AssetClass.EQUITY


@dataclass(frozen=True, slots=True)
class Instrument:
    """What a venue allows for one symbol: increments, minimums, flags."""

    symbol: str
    asset_class: AssetClass
    qty_increment: float = 1e-9
    min_qty: float = 0.0
    min_notional: float = 0.0
    price_increment: float = 0.01
    fractionable: bool = True
    shortable: bool = False          # the venue lets this symbol be sold short (shortable and easy to borrow)
    tradable: bool = True
    halt_reason: str = ""            # why the venue does not trade it now (inactive, cancel_only, ...)
    limit_only: bool = False         # the venue accepts limit orders only (Coinbase ``limit_only``)
    min_buy_notional: float = 0.0    # a buy below this value is refused (Alpaca crypto: $10 cost basis)


@dataclass(frozen=True, slots=True, eq=False)
class Universe:
    """The ordered symbols of a run with their venue rules as arrays (one entry per symbol)."""

    symbols: tuple[str, ...]
    qty_increment: np.ndarray
    min_qty: np.ndarray
    min_notional: np.ndarray
    fractionable: np.ndarray
    shortable: np.ndarray
    crypto: np.ndarray
    index: dict[str, int] = field(repr=False)
    price_increment: np.ndarray | None = None    # limit prices' tick per symbol (None: a cent)
    tradable: np.ndarray | None = None           # the venue trades the symbol now (None: all)
    halt_reasons: tuple[str, ...] = ()           # per symbol, why not (empty where tradable)
    limit_only: np.ndarray | None = None         # limit orders only (None: none)
    min_buy_notional: np.ndarray | None = None   # smallest buy value the venue accepts (None: no floor)

    @classmethod
    def from_instruments(cls, instruments: list[Instrument] | tuple[Instrument, ...]) -> Universe:
        instruments = tuple(instruments)
        return cls(
            symbols=tuple(i.symbol for i in instruments),
            qty_increment=np.array([i.qty_increment if i.fractionable else 1.0 for i in instruments]),
            min_qty=np.array([i.min_qty for i in instruments], dtype=float),
            min_notional=np.array([i.min_notional for i in instruments], dtype=float),
            fractionable=np.array([i.fractionable for i in instruments], dtype=bool),
            shortable=np.array([i.shortable for i in instruments], dtype=bool),
            crypto=np.array([i.asset_class == AssetClass.CRYPTO for i in instruments], dtype=bool),
            index={i.symbol: k for k, i in enumerate(instruments)},
            price_increment=np.array([i.price_increment for i in instruments], dtype=float),
            tradable=np.array([i.tradable for i in instruments], dtype=bool),
            halt_reasons=tuple(i.halt_reason for i in instruments),
            limit_only=np.array([i.limit_only for i in instruments], dtype=bool),
            min_buy_notional=np.array([i.min_buy_notional for i in instruments], dtype=float),
        )

    def subset(self, idx: np.ndarray) -> Universe:
        """The symbols at ``idx`` with their rules, in that order."""
        syms = tuple(self.symbols[i] for i in idx.tolist())
        n = len(self.symbols)
        return Universe(syms, self.qty_increment[idx], self.min_qty[idx], self.min_notional[idx],
                        self.fractionable[idx], self.shortable[idx], self.crypto[idx],
                        {s: k for k, s in enumerate(syms)}, self.ticks()[idx], self.can_trade()[idx],
                        tuple(self.halt_reasons[i] for i in idx.tolist()) if self.halt_reasons else (),
                        (self.limit_only if self.limit_only is not None else np.zeros(n, bool))[idx],
                        self.buy_floor()[idx])

    def can_trade(self) -> np.ndarray:
        """Whether the venue trades each symbol now."""
        return self.tradable if self.tradable is not None else np.ones(len(self.symbols), bool)

    def buy_floor(self) -> np.ndarray:
        """The smallest buy value the venue accepts per symbol (0: no floor beyond ``min_notional``)."""
        return self.min_buy_notional if self.min_buy_notional is not None else np.zeros(len(self.symbols))

    def halt_reason(self, j: int) -> str:
        return self.halt_reasons[j] if self.halt_reasons else ""

    def ticks(self) -> np.ndarray:
        """Price increment per symbol (a cent where the venue did not say)."""
        return self.price_increment if self.price_increment is not None else np.full(len(self.symbols), 0.01)

    def __len__(self) -> int:
        return len(self.symbols)


@dataclass(frozen=True, slots=True, eq=False)
class ExitLevels:
    """Stop-loss and take-profit levels (SPEC §20), aligned to symbols (a row per batch in
    ``SignalBatches``, one per symbol in a ``TargetPortfolio``): a price, or where ``*_pct`` is set a
    fraction of the entry fill (0.03 for ``3%``); NaN where there is none."""

    stop: np.ndarray
    take: np.ndarray
    stop_pct: np.ndarray      # bool
    take_pct: np.ndarray      # bool

    def row(self, i: int) -> ExitLevels:
        return ExitLevels(self.stop[i], self.take[i], self.stop_pct[i], self.take_pct[i])

    def rows(self, sel) -> ExitLevels:
        """The rows ``sel`` (a slice, mask or index array) of per-batch levels."""
        return ExitLevels(self.stop[sel], self.take[sel], self.stop_pct[sel], self.take_pct[sel])


@dataclass(frozen=True, slots=True, eq=False)
class TargetPortfolio:
    """One signal batch: the complete target portfolio at ``time``.

    ``weights`` is side x weight (signed, NaN where the symbol is absent from the batch),
    ``confidence`` in [0, 1] (NaN where absent). ``absent_hold`` keeps absent symbols as they are.
    """

    time: np.datetime64
    batch_id: str
    weights: np.ndarray
    confidence: np.ndarray
    absent_hold: bool = False
    levels: ExitLevels | None = None     # stop-loss / take-profit per symbol (None: the archive has none)


@dataclass(frozen=True, slots=True, eq=False)
class SignalBatches:
    """A validated signal archive as dense matrices: one row per batch time, one column per symbol."""

    strategy: str
    symbols: tuple[str, ...]
    times: np.ndarray          # datetime64[ns], strictly increasing
    weights: np.ndarray        # (n_batches, n_symbols) side x weight, NaN = absent
    confidence: np.ndarray     # (n_batches, n_symbols), NaN = absent
    sources: tuple[str, ...] = ()
    levels: ExitLevels | None = None   # (n_batches, n_symbols) exit levels, when the archive has the columns

    def __len__(self) -> int:
        return len(self.times)

    def batch(self, i: int, absent_hold: bool = False, batch_id: str | None = None, scope: str = "") -> TargetPortfolio:
        """Batch ``i`` as a target portfolio; ``batch_id`` when the caller has it (see ``batch_ids``);
        ``scope`` is the account's (``Account.scope``)."""
        t = self.times[i]
        bid = batch_key(self.strategy, t, scope) if batch_id is None else batch_id
        lv = None if self.levels is None else self.levels.row(i)
        return TargetPortfolio(t, bid, self.weights[i], self.confidence[i], absent_hold, lv)

    def rows(self, sel) -> SignalBatches:
        """The batches ``sel`` (a slice, mask or index array), exit levels included."""
        return SignalBatches(self.strategy, self.symbols, self.times[sel], self.weights[sel], self.confidence[sel],
                             self.sources, None if self.levels is None else self.levels.rows(sel))

    def batch_ids(self) -> list[str]:
        """``batch_key`` of every batch, computed at once (what a replay of the whole archive needs)."""
        return batch_keys(self.strategy, self.times)


@dataclass(frozen=True, slots=True, eq=False)
class OrderBatch:
    """Orders of one leg of one cycle, as arrays aligned by order (not by symbol).

    ``qty`` is positive; ``side`` is +1 buy / -1 sell. ``ref_price`` is the price the order was
    sized with. ``leg`` is one of ``sell``, ``buy``, ``close``, ``manual`` and is part of the client id.
    """

    universe: Universe
    time: np.datetime64
    batch_id: str
    leg: str
    symbol_idx: np.ndarray     # int64
    side: np.ndarray           # int8, +1 / -1
    qty: np.ndarray            # float64, > 0
    ref_price: np.ndarray      # float64
    order_type: OrderType = OrderType.MARKET
    limit_price: np.ndarray | None = None
    stop_price: np.ndarray | None = None
    notional: np.ndarray | None = None   # quote-sized buys (qty is then the estimate)
    client_ids: tuple[str, ...] | None = None   # orders recorded earlier keep their own ids (recovery)
    # the ids, once made: the simulator, the journal and the ledger's columns all ask for them, and
    # a backtest has a million (not a constructor argument, so ``dataclasses.replace`` drops it)
    _ids: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.symbol_idx)

    def symbols(self) -> list[str]:
        s = self.universe.symbols
        return [s[i] for i in self.symbol_idx.tolist()]

    def client_order_ids(self) -> list[str]:
        """Each order's client order id (SPEC: deterministic from batch, symbol and leg), made once
        per batch; a new list each call, so a caller may change it."""
        if self.client_ids is not None:
            return list(self.client_ids)
        if self._ids is None:
            object.__setattr__(self, "_ids", tuple(client_order_ids(self.batch_id, self.symbols(), self.leg)))
        return list(self._ids)  # type: ignore[arg-type]

    def subset(self, mask: np.ndarray) -> OrderBatch:
        return OrderBatch(
            self.universe, self.time, self.batch_id, self.leg, self.symbol_idx[mask], self.side[mask],
            self.qty[mask], self.ref_price[mask], self.order_type,
            None if self.limit_price is None else self.limit_price[mask],
            None if self.stop_price is None else self.stop_price[mask],
            None if self.notional is None else self.notional[mask],
            None if self.client_ids is None else tuple(np.asarray(self.client_ids, dtype=object)[mask].tolist()),
        )

    def with_qty(self, qty: np.ndarray) -> OrderBatch:
        keep = qty > 0
        b = OrderBatch(self.universe, self.time, self.batch_id, self.leg, self.symbol_idx, self.side, qty,
                       self.ref_price, self.order_type, self.limit_price, self.stop_price, self.notional,
                       self.client_ids)
        return b if keep.all() else b.subset(keep)

    @staticmethod
    def empty(universe: Universe, time: np.datetime64, batch_id: str, leg: str) -> OrderBatch:
        z = np.zeros(0)
        return OrderBatch(universe, time, batch_id, leg, np.zeros(0, np.int64), np.zeros(0, np.int8), z, z)


@dataclass(frozen=True, slots=True, eq=False)
class FillBatch:
    """Fills as arrays. ``order_pos`` points into the OrderBatch that produced them.

    ``price`` includes slippage; ``fee`` is every cost charged (commission and regulatory fees) in
    the quote currency; ``slippage`` is the cost of slippage in quote currency (>= 0 when adverse).
    """

    time: np.ndarray           # datetime64[ns]
    symbol_idx: np.ndarray
    side: np.ndarray
    qty: np.ndarray
    price: np.ndarray
    fee: np.ndarray
    slippage: np.ndarray
    order_pos: np.ndarray
    trade_ids: tuple[str, ...] | None = None   # venue trade ids, when the venue has them
    fee_qty: np.ndarray | None = None          # quantity the venue kept as its fee (fees in kind); None: 0

    def __len__(self) -> int:
        return len(self.qty)

    @staticmethod
    def empty() -> FillBatch:
        z = np.zeros(0)
        zi = np.zeros(0, np.int64)
        return FillBatch(np.zeros(0, NS), zi, np.zeros(0, np.int8), z, z, z, z, zi)

    @staticmethod
    def concat(parts: list[FillBatch]) -> FillBatch:
        parts = [p for p in parts if len(p)]
        if not parts:
            return FillBatch.empty()
        if len(parts) == 1:
            return parts[0]
        ids = None
        if all(p.trade_ids is not None for p in parts):
            ids = tuple(t for p in parts for t in p.trade_ids)  # type: ignore[union-attr]
        fee_qty = None
        if any(p.fee_qty is not None for p in parts):
            fee_qty = np.concatenate([p.fee_qty if p.fee_qty is not None else np.zeros(len(p)) for p in parts])
        time_, sym, side, qty, price, fee, slip, pos = (np.concatenate([getattr(p, f) for p in parts]) for f in (
            "time", "symbol_idx", "side", "qty", "price", "fee", "slippage", "order_pos"))
        return FillBatch(time_, sym, side, qty, price, fee, slip, pos, trade_ids=ids, fee_qty=fee_qty)


@dataclass(frozen=True, slots=True, eq=False)
class ExecutionReport:
    """What became of each order of an OrderBatch (arrays aligned with it) and the fills it got."""

    batch: OrderBatch
    status: np.ndarray          # int8 OrderStatus codes
    filled_qty: np.ndarray
    avg_price: np.ndarray       # NaN where nothing filled
    fills: FillBatch
    broker_ids: tuple[str | None, ...] | None = None
    messages: dict[int, str] = field(default_factory=dict)   # order position -> reason (rejects, cancels)
    status_times: np.ndarray | None = None                    # datetime64[ns] of the final state

    @property
    def n_rejected(self) -> int:
        return int((self.status == OrderStatus.REJECTED).sum())


@dataclass(frozen=True, slots=True)
class Position:
    """A holding at a venue, in canonical symbols; qty is signed (negative = short)."""

    symbol: str
    qty: float
    avg_cost: float
    market_price: float
    market_value: float
    unrealized_pnl: float
    available_qty: float | None = None


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Account values in the quote currency.

    ``day_start_equity`` is equity at the start of the trading day when the broker knows it (the
    simulator does; Alpaca calls it ``last_equity``); otherwise the ledger supplies it.
    """

    time: np.datetime64
    equity: float
    cash: float
    buying_power: float
    day_start_equity: float | None = None
    currency: str = "USD"
    positions: tuple[Position, ...] = ()
    blocked: str = ""              # why the venue refuses every new order (trading_blocked, ...); "" = none
    can_short: bool = True         # the account may sell short (Alpaca: margin and shorting_enabled)
    wash_trade_rule: bool = False  # the venue refuses an order opposite to an open one on the symbol

    @property
    def portfolio_value(self) -> float:
        """Net market value of the positions (equity minus cash)."""
        return self.equity - self.cash


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """One clip or rejection made by a risk rule, with the values it saw and why."""

    time: np.datetime64
    symbol: str            # "*" for portfolio-wide rules
    rule: str
    action: RiskAction | str   # a RiskAction
    requested: float
    approved: float
    reason: str
