"""Rows from pipeline values, and the time and price encodings the ledger stores."""

from __future__ import annotations

import time
import zlib

import numpy as np

from framework.types import ExecutionReport, OrderBatch, OrderStatus

SIDE = {1: "buy", -1: "sell"}


def iso(t: np.datetime64 | np.ndarray) -> str | list[str]:
    """ISO 8601 UTC with a Z (vectorised for arrays)."""
    if isinstance(t, np.ndarray):
        s = np.datetime_as_string(t.astype("datetime64[us]"), unit="us")
        return [x + "Z" for x in s.tolist()]
    return np.datetime_as_string(np.datetime64(t, "us"), unit="us") + "Z"


def now_iso() -> str:
    return iso(np.datetime64(time.time_ns(), "ns"))  # type: ignore[return-value]


def order_rows(run_id: str, seq: int | None, batch: OrderBatch, status: np.ndarray | None = None,
               filled: np.ndarray | None = None, avg: np.ndarray | None = None,
               broker_ids: tuple | None = None, messages: dict[int, str] | None = None,
               account: str | None = None) -> list[tuple]:
    """Rows of the ``orders`` table for one batch (columns in the order ``Ledger.write_orders`` takes)."""
    n = len(batch)
    if n == 0:
        return []
    cids = batch.client_order_ids()
    syms = batch.symbols()
    t = iso(batch.time)
    st = [OrderStatus(int(x)).label for x in (status if status is not None else np.zeros(n, np.int8)).tolist()]
    fq = (filled if filled is not None else np.zeros(n)).tolist()
    ap = [None if np.isnan(x) else x for x in (avg if avg is not None else np.full(n, np.nan)).tolist()]
    lim = batch.limit_price.tolist() if batch.limit_price is not None else [None] * n
    sides = [SIDE[int(s)] for s in batch.side.tolist()]
    msgs = messages or {}
    bids = broker_ids or (None,) * n
    upd = now_iso()
    return [(run_id, seq, cids[i], bids[i], t, syms[i], sides[i], float(batch.qty[i]), str(batch.order_type), lim[i],
             batch.leg, float(batch.ref_price[i]), st[i], fq[i], ap[i], msgs.get(i), upd, account) for i in range(n)]


def fill_rows(run_id: str, report: ExecutionReport, account: str | None = None) -> list[tuple]:
    """Rows of the ``fills`` table for the fills of one report (the last column, ``fee_qty``, is the
    quantity the venue kept as its fee: 0 unless it takes fees in the asset received)."""
    f = report.fills
    if len(f) == 0:
        return []
    fq = f.fee_qty.tolist() if f.fee_qty is not None else [0.0] * len(f)
    cids = report.batch.client_order_ids()
    syms = report.batch.universe.symbols
    bids = report.broker_ids
    times = iso(f.time)
    tids = f.trade_ids or (None,) * len(f)
    return [(run_id, cids[p], bids[p] if bids else None, tids[i], times[i], syms[s], SIDE[int(sd)], q, px, fee, sl,
             account, fq[i])
            for i, (p, s, sd, q, px, fee, sl) in enumerate(zip(
                f.order_pos.tolist(), f.symbol_idx.tolist(), f.side.tolist(), f.qty.tolist(), f.price.tolist(),
                f.fee.tolist(), f.slippage.tolist()))]


_RAW = b"R"      # a cycle's prices stored as they are (a zlib stream never starts with it: 0x78 does)


def pack_prices(prices: np.ndarray) -> bytes:
    """A cycle's prices for the ledger: their float64 bytes after a one-byte tag. (Ledgers written
    before held them zlib-compressed; prices hardly compress, and a backtest of five thousand
    cycles spent a third of a second on it.)"""
    return _RAW + np.asarray(prices, np.float64).tobytes()


def unpack_prices(blob: bytes) -> np.ndarray:
    """The prices ``pack_prices`` stored, or an older ledger's zlib-compressed ones."""
    if blob[:1] == _RAW:
        return np.frombuffer(blob, np.float64, offset=1)
    return np.frombuffer(zlib.decompress(blob), np.float64)
