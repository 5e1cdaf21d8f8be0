"""Frozen, typed values that flow through the one pipeline.

Arrays, not objects, on the hot path: a ``TargetPortfolio``, an ``OrderBatch``, an
``ExecutionReport`` and a ``FillBatch`` each hold numpy arrays aligned to a ``Universe``, so the
risk manager, the rebalancer and the simulator work on whole batches. Live brokers iterate the same
batches order by order. Times are numpy ``datetime64[ns]`` in UTC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np

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
    shortable: bool = False
    tradable: bool = True


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
        )

    def __len__(self) -> int:
        return len(self.symbols)


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


@dataclass(frozen=True, slots=True, eq=False)
class SignalBatches:
    """A validated signal archive as dense matrices: one row per batch time, one column per symbol."""

    strategy: str
    symbols: tuple[str, ...]
    times: np.ndarray          # datetime64[ns], strictly increasing
    weights: np.ndarray        # (n_batches, n_symbols) side x weight, NaN = absent
    confidence: np.ndarray     # (n_batches, n_symbols), NaN = absent
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.times)

    def batch(self, i: int, absent_hold: bool = False, batch_id: str | None = None) -> TargetPortfolio:
        """Batch ``i`` as a target portfolio; ``batch_id`` when the caller has it (see ``batch_ids``)."""
        t = self.times[i]
        bid = batch_key(self.strategy, t) if batch_id is None else batch_id
        return TargetPortfolio(t, bid, self.weights[i], self.confidence[i], absent_hold)

    def batch_ids(self) -> list[str]:
        """``batch_key`` of every batch, computed at once (what a replay of the whole archive needs)."""
        return batch_keys(self.strategy, self.times)


def batch_key(strategy: str, t: np.datetime64) -> str:
    """Deterministic id of a batch: strategy and its UTC time to the second."""
    stamp = np.datetime_as_string(np.datetime64(t, "s"), unit="s").replace("-", "").replace(":", "")
    return f"{strategy}@{stamp}Z"


def batch_keys(strategy: str, times: np.ndarray) -> list[str]:
    """``batch_key`` for many times at once."""
    stamps = np.datetime_as_string(np.asarray(times).astype("datetime64[s]"), unit="s")
    return [f"{strategy}@{s.replace('-', '').replace(':', '')}Z" for s in stamps.tolist()]


def client_order_id(batch_id: str, symbol: str, leg: str) -> str:
    """Deterministic client order id for (strategy, batch, symbol, leg); at most 64 characters.

    Re-running a batch yields the same ids, which is what makes re-runs and crash recovery safe.
    """
    raw = f"{batch_id}|{symbol}|{leg}"
    digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
    readable = f"{batch_id.split('@')[0][:16]}-{batch_id.split('@')[-1]}-{symbol.replace('/', '')}-{leg}"
    return f"p-{readable[:48]}-{digest}"


def client_order_ids(batch_id: str, symbols: list[str], leg: str) -> list[str]:
    """``client_order_id`` for many symbols of one batch and leg (the per-batch parts made once:
    a backtest names a million orders this way)."""
    head = f"{batch_id.split('@')[0][:16]}-{batch_id.split('@')[-1]}-"
    pre, post, tail = f"{batch_id}|", f"|{leg}", f"-{leg}"
    sha1 = hashlib.sha1
    return [f"p-{(head + s.replace('/', '') + tail)[:48]}-{sha1((pre + s + post).encode()).hexdigest()[:10]}"
            for s in symbols]


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

    def __len__(self) -> int:
        return len(self.symbol_idx)

    def symbols(self) -> list[str]:
        s = self.universe.symbols
        return [s[i] for i in self.symbol_idx.tolist()]

    def client_order_ids(self) -> list[str]:
        return client_order_ids(self.batch_id, self.symbols(), self.leg)

    def subset(self, mask: np.ndarray) -> OrderBatch:
        return OrderBatch(
            self.universe, self.time, self.batch_id, self.leg, self.symbol_idx[mask], self.side[mask],
            self.qty[mask], self.ref_price[mask], self.order_type,
            None if self.limit_price is None else self.limit_price[mask],
            None if self.stop_price is None else self.stop_price[mask],
            None if self.notional is None else self.notional[mask],
        )

    def with_qty(self, qty: np.ndarray) -> OrderBatch:
        keep = qty > 0
        b = OrderBatch(self.universe, self.time, self.batch_id, self.leg, self.symbol_idx, self.side, qty,
                       self.ref_price, self.order_type, self.limit_price, self.stop_price, self.notional)
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
        return FillBatch(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "time", "symbol_idx", "side", "qty", "price", "fee", "slippage", "order_pos")), trade_ids=ids)


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
    action: str            # clip | reject | scale | hold | halt | block
    requested: float
    approved: float
    reason: str
