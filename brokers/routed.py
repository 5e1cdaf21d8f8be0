"""RoutedBroker: one Broker over several venues, by symbol (e.g. equities at Alpaca, crypto at
Coinbase). The risk manager sees the combined portfolio; each venue's buys are re-sized to that
venue's own buying power (cash at Coinbase cannot pay for shares at Alpaca)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from framework.broker import Broker, OnUpdate, OrderState, Protection
from framework.config import RebalanceSettings
from framework.order_ids import Leg, base_leg
from framework.rebalance import Rebalancer
from framework.types import AccountSnapshot, ExecutionReport, FillBatch, OrderBatch, Position, Universe


def _sub_universe(u: Universe, idx: np.ndarray) -> Universe:
    return u.subset(idx)


class RoutedBroker(Broker):
    name = "routed"

    def __init__(self, brokers: dict[str, Broker], route: Callable[[str], str],
                 rebalance: RebalanceSettings | None = None):
        self.brokers = brokers
        self.route = route
        self.name = "+".join(sorted(brokers))
        self._subs: dict[str, Universe] = {}
        # each venue's buys are re-sized to its own buying power, with its own fee schedule
        self._resizers = {n: Rebalancer(rebalance, fees=getattr(b, "fees", None)) for n, b in brokers.items()} \
            if rebalance is not None else {}

    def close(self) -> None:
        for b in self.brokers.values():
            b.close()

    def account_id(self) -> str:
        return "+".join(f"{n}={b.account_id()}" for n, b in sorted(self.brokers.items()))

    def foreign_orders(self) -> list[OrderState]:
        return [o for b in self.brokers.values() for o in b.foreign_orders()]

    def describe(self) -> str:
        return "; ".join(b.describe() for b in self.brokers.values())

    def _split(self, symbols) -> dict[str, np.ndarray]:
        names = np.array([self.route(s) for s in symbols])
        return {n: np.flatnonzero(names == n) for n in self.brokers if (names == n).any()}

    def instruments(self, symbols):
        symbols = list(symbols)
        parts = {n: self.brokers[n].instruments([symbols[i] for i in idx]) for n, idx in self._split(symbols).items()}
        by_sym = {}
        for u in parts.values():
            for k, s in enumerate(u.symbols):
                by_sym[s] = (u, k)
        from framework.types import AssetClass, Instrument

        insts = []
        for s in symbols:
            u, k = by_sym[s]
            insts.append(Instrument(s, AssetClass.of(s), float(u.qty_increment[k]), float(u.min_qty[k]),
                                    float(u.min_notional[k]), float(u.ticks()[k]), bool(u.fractionable[k]),
                                    bool(u.shortable[k]), bool(u.can_trade()[k]), u.halt_reason(k),
                                    bool(u.limit_only[k]) if u.limit_only is not None else False,
                                    float(u.buy_floor()[k])))
        uni = Universe.from_instruments(insts)
        self._subs = parts
        return uni

    def account(self) -> AccountSnapshot:
        accts = [b.account() for b in self.brokers.values()]
        days = [a.day_start_equity for a in accts]
        pos: tuple[Position, ...] = tuple(p for a in accts for p in (a.positions or ()))
        if not pos:
            pos = tuple(p for b in self.brokers.values() for p in b.positions())
        return AccountSnapshot(accts[0].time, sum(a.equity for a in accts), sum(a.cash for a in accts),
                               sum(a.buying_power for a in accts),
                               sum(days) if all(d is not None for d in days) else None, "USD", pos,  # type: ignore[arg-type]
                               "; ".join(f"{n}: {a.blocked}" for n, a in zip(self.brokers, accts) if a.blocked),
                               all(a.can_short for a in accts), any(a.wash_trade_rule for a in accts))

    def accounts(self) -> dict[str, AccountSnapshot]:
        """Each venue's own account, for per-broker reporting."""
        return {n: b.account() for n, b in self.brokers.items()}

    def prices(self, universe: Universe) -> np.ndarray:
        out = np.full(len(universe), np.nan)
        for n, idx in self._split(universe.symbols).items():
            out[idx] = self.brokers[n].prices(self._subs.get(n) or self.brokers[n].instruments(
                [universe.symbols[i] for i in idx]))
        return out

    def market_open(self, universe: Universe) -> np.ndarray:
        out = np.zeros(len(universe), bool)
        for n, idx in self._split(universe.symbols).items():
            out[idx] = self.brokers[n].market_open(_sub_universe(universe, idx))
        return out

    def execute(self, batch: OrderBatch, on_update: OnUpdate | None = None) -> ExecutionReport:
        """Send each venue its orders (as they are: type, limit prices and all). Additions are first
        re-sized to that venue's own buying power. Answers reach ``on_update`` from each venue in
        its own sub-universe: symbols and client order ids are the same, so they book as they are."""
        n = len(batch)
        status = np.zeros(n, np.int8)
        filled = np.zeros(n)
        avg = np.full(n, np.nan)
        ids: list = [None] * n
        msgs: dict[int, str] = {}
        fills = []
        syms = batch.symbols()
        for name, pos in self._split(syms).items():
            broker = self.brokers[name]
            mine = np.zeros(n, bool)
            mine[pos] = True
            part = batch.subset(mine)
            if base_leg(batch.leg) == Leg.ADD and name in self._resizers:
                resized, _ = self._resizers[name].resize_adds(part, broker.account().buying_power)
                qty = np.zeros(len(pos))
                got = dict(zip(resized.symbol_idx.tolist(), resized.qty.tolist()))
                qty = np.array([got.get(int(j), 0.0) for j in part.symbol_idx.tolist()])
                for k in np.flatnonzero(qty < part.qty - 1e-12).tolist():
                    msgs[int(pos[k])] = f"re-sized to {name}'s own buying power"
                keep = qty > 0
                pos = pos[keep]
                part = OrderBatch(part.universe, part.time, part.batch_id, part.leg, part.symbol_idx[keep],
                                  part.side[keep], qty[keep], part.ref_price[keep], part.order_type,
                                  None if part.limit_price is None else part.limit_price[keep],
                                  None if part.stop_price is None else part.stop_price[keep],
                                  None if part.notional is None else part.notional[keep])
            sub_u = _sub_universe(batch.universe, part.symbol_idx)
            sub = OrderBatch(sub_u, part.time, part.batch_id, part.leg, np.arange(len(pos)), part.side, part.qty,
                             part.ref_price, part.order_type, part.limit_price, part.stop_price, part.notional)
            rep = broker.execute(sub, on_update)
            status[pos] = rep.status
            filled[pos] = rep.filled_qty
            avg[pos] = rep.avg_price
            for k, m in rep.messages.items():
                msgs[int(pos[k])] = f"{name}: {m}"
            if rep.broker_ids:
                for k, b in enumerate(rep.broker_ids):
                    ids[int(pos[k])] = b
            f = rep.fills
            if len(f):
                gpos = pos[f.order_pos]
                fills.append(FillBatch(f.time, batch.symbol_idx[gpos], f.side, f.qty, f.price, f.fee, f.slippage, gpos,
                                       f.trade_ids))
        return ExecutionReport(batch, status, filled, avg, FillBatch.concat(fills), tuple(ids), msgs)

    def sync(self) -> list[ExecutionReport]:
        return [r for b in self.brokers.values() for r in b.sync()]

    # ---- protective exits (SPEC §20) ----------------------------------------------------------------
    def protect(self, orders: Protection, on_update: OnUpdate | None = None) -> list[ExecutionReport]:
        """Each venue places the exits of its own symbols (its reports are over its sub-universe, with
        the same symbols and client order ids, so they book as they are)."""
        parts: dict[str, list[OrderBatch]] = {}
        for b in (orders.stops, orders.takes):
            for name, pos in self._split(b.symbols()).items():
                mine = np.zeros(len(b), bool)
                mine[pos] = True
                part = b.subset(mine)
                sub_u = _sub_universe(b.universe, part.symbol_idx)
                parts.setdefault(name, []).append(OrderBatch(
                    sub_u, part.time, part.batch_id, part.leg, np.arange(len(part)), part.side, part.qty,
                    part.ref_price, part.order_type, part.limit_price, part.stop_price, None,
                    tuple(part.client_order_ids())))
        out: list[ExecutionReport] = []
        for name, batches in parts.items():
            stops = [x for x in batches if x.leg == orders.stops.leg]
            takes = [x for x in batches if x.leg == orders.takes.leg]
            empty = OrderBatch.empty(orders.stops.universe, orders.stops.time, orders.stops.batch_id, "")
            out += self.brokers[name].protect(Protection(stops[0] if stops else empty, takes[0] if takes else empty),
                                              on_update)
        return out

    def unplaced_exits(self, universe: Universe, stops: np.ndarray, takes: np.ndarray) -> dict[tuple[str, str], str]:
        """Each venue answers for its own symbols."""
        out: dict[tuple[str, str], str] = {}
        for name, pos in self._split(list(universe.symbols)).items():
            out.update(self.brokers[name].unplaced_exits(_sub_universe(universe, pos), stops[pos], takes[pos]))
        return out

    def lookup(self, client_ids: list[str]) -> dict[str, OrderState]:
        out: dict[str, OrderState] = {}
        for b in self.brokers.values():
            out.update(b.lookup(client_ids))
        return out

    def open_orders(self) -> list[OrderState]:
        return [o for b in self.brokers.values() for o in b.open_orders()]

    def cancel(self, client_ids: list[str]) -> list[OrderState]:
        return [o for b in self.brokers.values() for o in b.cancel(client_ids)]
