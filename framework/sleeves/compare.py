"""Paper (or live) versus simulation per sleeve, and the slippage each sleeve's fills imply (SPEC §12, §18).

The portfolio's recorded cycles are replayed through the simulator with the same sleeves, the same
funding, the same batches and the same netting code (``PortfolioCycle``), on one bar per cycle at
the prices the cycle was sized with (``fill: close``, the portfolio's slippage and fee model). Per
sleeve: paper P&L against simulated P&L (both marked at the last cycle's prices), fees paid against
fees simulated, and the implementation shortfall of the sleeve's share of the venue fills against
the cycles' sizing prices — the figure ``calibrate --portfolio`` proposes as the sleeve strategy's
``simulation.slippage.bps`` (crossings inside the account pay none and are left out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from framework.data import BarArrays
from framework.ledger import Ledger
from framework.sleeves.book import SleeveBook, stamp


def cycles(ledger: Ledger, account: str) -> pd.DataFrame:
    """(batch_id, time, symbol, price) of every recorded portfolio cycle of ``account``, in time order."""
    plans = ledger.sleeve_plans(account)
    if plans.empty:
        return plans
    return plans.groupby(["batch_id", "time", "symbol"], as_index=False)["price"].first().sort_values("time")


def cycle_bars(cyc: pd.DataFrame, symbols: tuple[str, ...]) -> tuple[BarArrays, list[tuple[np.datetime64, str]]]:
    """One bar per cycle at its sizing prices, and the cycles as (time, batch id)."""
    wide = cyc.pivot_table(index=["time", "batch_id"], columns="symbol", values="price", aggfunc="first")
    wide = wide.reindex(columns=list(symbols)).ffill().bfill()
    times = np.array([np.datetime64(t.rstrip("Z"), "ns") for t, _ in wide.index], dtype="datetime64[ns]")
    mat = wide.to_numpy(dtype=float)
    bars = BarArrays(times, symbols, mat, mat, mat, mat, np.where(np.isnan(mat), np.nan, np.inf))
    return bars, [(t, b) for t, (_, b) in zip(times, wide.index)]


def shortfall(ledger: Ledger, account: str) -> pd.DataFrame:
    """Per sleeve: the notional of its venue fill shares and their cost against the cycles' sizing
    prices (positive: worse than the price the cycle was sized with)."""
    trades = ledger.sleeve_trades(account)
    fills = trades[trades["kind"] == "fill"]
    if fills.empty:
        return pd.DataFrame(columns=["sleeve", "notional", "cost", "fees"])
    ref = cycles(ledger, account).set_index(["batch_id", "symbol"])["price"]
    px = ref.reindex(list(zip(fills["batch_id"], fills["symbol"]))).to_numpy()
    cost = fills["qty"].to_numpy() * (fills["price"].to_numpy() - px)
    out = pd.DataFrame({"sleeve": fills["sleeve"], "notional": (fills["qty"].abs() * px), "cost": cost,
                        "fees": fills["fee"]})
    return out.groupby("sleeve", as_index=False).sum()


def paper_values(ledger: Ledger, account: str, portfolio: str, marks: dict[str, float]) -> tuple[SleeveBook, dict]:
    """The paper sleeves' book and each sleeve's P&L at ``marks``."""
    book = SleeveBook.load(ledger, account, portfolio)
    return book, {n: book.equity(n, marks) - book.funded.get(n, 0.0) for n in book.names()}


def compare(paper: dict, sim: dict, paper_book: SleeveBook, sim_book: SleeveBook, slip: pd.DataFrame,
            sim_bps: float) -> dict:
    """The per-sleeve comparison (money in the quote currency, shortfall in basis points)."""
    rows = {}
    by = slip.set_index("sleeve") if len(slip) else None
    for name, pnl in paper.items():
        notional = float(by.loc[name, "notional"]) if by is not None and name in by.index else 0.0
        cost = float(by.loc[name, "cost"]) if by is not None and name in by.index else 0.0
        rows[name] = {"paper_pnl": round(pnl, 2), "sim_pnl": round(sim.get(name, 0.0), 2),
                      "pnl_diff": round(pnl - sim.get(name, 0.0), 2),
                      "paper_fees": round(paper_book.fees.get(name, 0.0), 2),
                      "sim_fees": round(sim_book.fees.get(name, 0.0), 2),
                      "filled_notional": round(notional, 2),
                      "shortfall_bps": round(cost / notional * 1e4, 3) if notional > 0 else None,
                      "sim_slippage_bps": sim_bps}
    return rows


def replay(pc, market, steps: list[tuple[np.datetime64, str]], signals: dict, absent_hold: dict[str, bool]) -> None:
    """Run ``pc`` through the recorded cycles (each sleeve's newest batch at each cycle's time)."""
    from framework.sleeves.replay import targets_at

    u = pc.pipeline.universe
    for t, bid in steps:
        market.advance_to(t)
        pc.run(t, bid, targets_at(t, signals, u, absent_hold))
    updates = market.sync()
    if updates:
        pc.pipeline.journal.updates(updates)


def fund_as(book: SleeveBook, paper_book: SleeveBook, t: np.datetime64) -> None:
    """Fund the simulated sleeves exactly as the paper sleeves were funded."""
    book.start_equity = paper_book.start_equity
    for name, amount in paper_book.funded.items():
        book._book(name, "fund", "initial", None, stamp(t), None, 0.0, None, 0.0, amount)
