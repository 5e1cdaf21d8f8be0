"""Per-symbol P&L attribution from fills and final marks.

For each symbol, fills are replayed in time order with average-cost accounting (the accounting
of SPEC §6), long and short alike:

- a fill that opens or adds to a position moves the average cost to the quantity-weighted mean;
- a fill that reduces a position realises ``closed qty × (fill price − average cost)`` (sign
  flipped for shorts); a fill that crosses zero closes the old position and opens the remainder
  at the fill price;
- the position left at the end is marked at the symbol's last close in ``prices`` (or, when the
  run has no price for it — a live run without a bar feed — at its last fill price, flagged
  ``price_source = "last_fill"``);
- ``pnl = realised + unrealised − fees``. Fill prices already include slippage, so slippage is
  shown as a cost for information and not deducted again.

Identity: ``realised + unrealised = Σ sell notional − Σ buy notional + final qty × mark``. With no
deposits or withdrawals and marks equal to the closes the equity curve used, the ``pnl`` column
sums to ``final equity − initial equity`` (the test suite checks it to the cent); the report
shows any remainder as "unattributed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from framework.reports.rundata import time_order

ATTRIBUTION_COLUMNS = ("symbol", "n_fills", "traded_notional", "position", "avg_cost", "mark",
                       "price_source", "realised", "unrealised", "fees", "slippage", "pnl")


@dataclass(frozen=True, eq=False)
class FillIndex:
    """Fills' positions in time order, and each fill's symbol as a code into ``symbols`` (sorted):
    made once for the marks and the attribution, never a copy of the fills."""

    order: np.ndarray
    codes: np.ndarray          # per fill (in ``fills`` order); -1: no symbol
    symbols: pd.Index

    @classmethod
    def of(cls, fills: pd.DataFrame) -> FillIndex:
        codes, symbols = pd.factorize(fills["symbol"], sort=True)
        return cls(time_order(fills), codes, pd.Index(symbols))


def final_marks(prices: pd.DataFrame, fills: pd.DataFrame, index: FillIndex | None = None
                ) -> dict[str, tuple[float, str]]:
    """Return ``{symbol: (price, source)}``: the last close in ``prices``, else the last fill price."""
    closes = _last_closes(prices)
    marks: dict[str, tuple[float, str]] = {}
    if len(fills):
        ix = index if index is not None else FillIndex.of(fills)
        if any(str(s) not in closes for s in ix.symbols):
            # each symbol's last fill price with a price, in time order (groupby(...).last()), over
            # codes and positions: a million fills are not copied to find 500 prices
            price = fills["price"].to_numpy(np.float64, na_value=np.nan)[ix.order]
            code = ix.codes[ix.order]
            keep = (code >= 0) & ~np.isnan(price)
            code, price = code[keep], price[keep]
            if len(code):
                seen, first_from_end = np.unique(code[::-1], return_index=True)
                last = len(code) - 1 - first_from_end
                marks.update({str(ix.symbols[c]): (float(price[i]), "last_fill")
                              for c, i in zip(seen.tolist(), last.tolist())})
    marks.update(closes)
    return marks


def _last_closes(prices: pd.DataFrame | None) -> dict[str, tuple[float, str]]:
    """Each column's last price that is not NaN (columns with none are left out)."""
    if prices is None or prices.empty:
        return {}
    values = prices.to_numpy(np.float64, na_value=np.nan)
    valid = ~np.isnan(values)
    has = valid.any(axis=0)
    last = len(values) - 1 - np.argmax(valid[::-1], axis=0)
    return {str(symbol): (float(values[last[j], j]), "close")
            for j, symbol in enumerate(prices.columns) if has[j]}


def attribute_pnl(fills: pd.DataFrame, marks: Mapping[str, tuple[float, str] | float],
                  index: FillIndex | None = None) -> pd.DataFrame:
    """Return one row per traded symbol: realised, unrealised, fees, slippage and net P&L.

    ``marks`` maps a symbol to its final price (or ``(price, source)`` as from
    :func:`final_marks`). A position without a mark has ``unrealised`` NaN.
    """
    rows = []
    if len(fills):
        # one pass over whole columns, then each symbol's rows (in time order) as array slices;
        # ``rows`` are positions in ``fills``: its columns are never copied whole
        ix = index if index is not None else FillIndex.of(fills)
        order, symbols = ix.order, ix.symbols
        codes = ix.codes[order]
        rank = np.argsort(codes, kind="stable")
        rank = rank[codes[rank] >= 0]                       # no symbol: no row (as groupby drops it)
        bounds = np.searchsorted(codes[rank], np.arange(len(symbols) + 1))
        rows_at = order[rank]
        side_codes, sides = pd.factorize(fills["side"], use_na_sentinel=False)   # each distinct value once
        side_sign = np.where(pd.Index(sides).astype(str).str.lower() == "buy", 1.0, -1.0)
        signs = side_sign[side_codes[rows_at]]

        def column(name: str) -> np.ndarray:
            return fills[name].astype(float).to_numpy()[rows_at]

        qtys = column("qty") * signs
        prices, fees = column("price"), column("fee")
        slip = column("slippage") if "slippage" in fills else None
        for k, symbol in enumerate(symbols):
            part = slice(int(bounds[k]), int(bounds[k + 1]))
            rows.append(_symbol_row(str(symbol), qtys[part], prices[part], fees[part],
                                    None if slip is None else slip[part], marks.get(str(symbol))))
    table = pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS))
    return table.sort_values("pnl", ascending=False, kind="stable").reset_index(drop=True)


def _sum(values: np.ndarray) -> float:
    """A column's sum as pandas gives it (NaN skipped)."""
    nan = np.isnan(values)
    return float(np.where(nan, 0.0, values).sum() if nan.any() else values.sum())


def _symbol_row(symbol: str, qtys: np.ndarray, prices: np.ndarray, fee: np.ndarray, slip: np.ndarray | None,
                mark: tuple[float, str] | float | None) -> dict:
    """One symbol's row from its signed fill quantities, prices, fees and slippage in time order."""
    position, avg_cost, realised = _average_cost(qtys, prices)
    if isinstance(mark, tuple):
        mark_price, source = mark
    elif mark is None:
        mark_price, source = float("nan"), "none"
    else:
        mark_price, source = float(mark), "given"
    unrealised = 0.0 if position == 0.0 else position * (mark_price - avg_cost)
    fees = _sum(fee)
    slippage = _sum(slip) if slip is not None else float("nan")
    return {
        "symbol": symbol,
        "n_fills": len(qtys),
        "traded_notional": float(np.abs(qtys * prices).sum()),
        "position": position,
        "avg_cost": avg_cost if position else float("nan"),
        "mark": mark_price,
        "price_source": source if position else "",
        "realised": realised,
        "unrealised": unrealised,
        "fees": fees,
        "slippage": slippage,
        "pnl": realised + unrealised - fees,
    }


def _average_cost(qtys: np.ndarray, prices: np.ndarray) -> tuple[float, float, float]:
    """Replay signed fill quantities at their prices: (position, average cost, realised P&L).

    A compiled loop (``framework.reports.kernels``): a backtest can have a million fills."""
    from framework.reports.kernels import average_cost

    position, avg_cost, realised = average_cost(np.ascontiguousarray(qtys, np.float64),
                                                np.ascontiguousarray(prices, np.float64))
    return float(position), float(avg_cost), float(realised)


def attribution_for(prices: pd.DataFrame, fills: pd.DataFrame, index: FillIndex | None = None) -> pd.DataFrame:
    """Return :func:`attribute_pnl` of a run's fills marked with :func:`final_marks`."""
    if index is None and len(fills):
        index = FillIndex.of(fills)          # taken once for both
    return attribute_pnl(fills, final_marks(prices, fills, index), index)
