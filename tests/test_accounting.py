"""Accounting is exact and nothing looks ahead (SPEC §6, §9).

* vectorbt's ``Portfolio.from_orders``, fed the fills a backtest recorded (fills.csv), produces the
  same equity curve as equity.csv to 1e-9 relative: on the demo market and on real data.
* cash + sum(qty x close) == equity on every bar, with positions rebuilt from fills.csv.
* Under ``fill: next_open`` every fill is after its batch, at the open of the symbol's first bar
  stamped after the batch (plus the configured slippage), and every order was sized with the close
  of the last bar stamped at or before the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import long_csv

REL = 1e-9


# ---------------------------------------------------------------------------- what a run left behind


@dataclass(frozen=True)
class Recorded:
    name: str
    artifacts: Path
    ledger: Path
    bars: pd.DataFrame           # long bars the run used
    slippage_bps: float
    initial_equity: float

    def equity(self) -> pd.DataFrame:
        df = pd.read_csv(self.artifacts / "equity.csv")
        df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
        return df

    def fills(self) -> pd.DataFrame:
        df = pd.read_csv(self.artifacts / "fills.csv")
        df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
        return df

    def wide(self, field: str) -> pd.DataFrame:
        return self.bars.pivot(index="timestamp", columns="symbol", values=field).sort_index()

    def closes_at(self, times: pd.Series) -> pd.DataFrame:
        """Close of each symbol at each time: the last bar at or before it (forward-filled)."""
        close = self.wide("close").ffill()
        return close.reindex(pd.DatetimeIndex(times))


def _read_bars(path: Path) -> pd.DataFrame:
    from framework.data import read_long_csv

    return read_long_csv(path)


@pytest.fixture(scope="module")
def demo(demo_run) -> Recorded:
    from framework.config import load_strategy

    bps = load_strategy("demo").simulation.slippage.bps
    return Recorded("demo", demo_run.artifacts, demo_run.ledger, _read_bars(demo_run.bars_csv), bps,
                    demo_run.summary["initial_equity"])


REAL = {
    # file, first bar, last bar, momentum parameters
    "equity": ("equity_daily_lean_5sym_split_adjusted.csv", "2015-01-01", "2016-12-31",
               dict(lookback=20, every=5, top=2, gross=0.9)),
    "crypto": ("crypto_1h_coinbase_btc_eth_usd.csv", "2019-03-01", "2019-04-15",
               dict(lookback=48, every=24, top=1, gross=0.9)),
}


@pytest.fixture(scope="module", params=sorted(REAL))
def real(request, shared_data, tmp_path_factory) -> Recorded:
    """A backtest of the demo momentum strategy on a slice of real data, through the CLI's wiring."""
    from framework.cli.wiring import run_backtest
    from framework.config import Settings, load_strategy
    from strategies.momentum import momentum_signals

    name = request.param
    file, lo, hi, params = REAL[name]
    root = tmp_path_factory.mktemp(f"real-{name}")
    df = _read_bars(shared_data / file)
    df = df[(df["timestamp"] >= pd.Timestamp(lo, tz="UTC")) & (df["timestamp"] <= pd.Timestamp(hi, tz="UTC"))]
    bars = long_csv(root / "bars.csv", df)
    (root / "signals").mkdir()
    # signals end a few bars before the data so every order has bars to fill on (an order still
    # working at the end of the data is a separate case: tests/test_cli_backtest.py)
    last_bars = np.sort(df["timestamp"].unique())[-3]
    signals = momentum_signals(df[df["timestamp"] < last_bars], strategy="real", **params)
    signals.to_csv(root / "signals" / "real.csv", index=False)
    strat = root / "real.yaml"
    strat.write_text("name: real\n"
                     f"signals: {{path: {root / 'signals'}}}\n"
                     f"bars: {{path: {bars}}}\n"
                     "risk: {max_position_size_pct: 0.5}\n"
                     "simulation: {venue: alpaca, fill: next_open, slippage: {model: fixed_bps, bps: 7}, cash: 250000}\n")
    settings = Settings(ledger=str(root / "p.db"), data_dir=str(root / "data") + "/",
                        reports_dir=str(root / "reports") + "/")
    _, summary, out = run_backtest(settings, None, load_strategy(str(strat)), report=False)
    assert summary["n_fills"] > 20, summary
    return Recorded(name, out, root / "p.db", _read_bars(bars), 7.0, 250_000.0)


# ---------------------------------------------------------------------------- vectorbt


def vectorbt_equity(rec: Recorded) -> tuple[np.ndarray, np.ndarray]:
    """vectorbt's value() after each bar's orders, from the recorded fills; and equity.csv's equity.

    vectorbt takes one order per (row, column): a bar with several fills is expanded into as many
    sub-rows (sells first, then buys, as the simulator books them), all marked at that bar's close,
    and the value is read at the bar's last sub-row.
    """
    import vectorbt as vbt

    eq = rec.equity()
    close = rec.closes_at(eq["time"])
    syms = list(close.columns)
    fills = rec.fills()
    bar = pd.Index(eq["time"]).get_indexer(fills["time"])
    assert (bar >= 0).all(), "a fill at a time that is not a bar of equity.csv"
    fills = fills.assign(bar=bar, sgn=np.where(fills["side"] == "buy", 1.0, -1.0), seq=np.arange(len(fills)))
    fills = fills.sort_values(["bar", "sgn", "seq"], kind="stable")
    fills["sub"] = fills.groupby("bar").cumcount().to_numpy()

    n = len(eq)
    reps = np.ones(n, np.int64)
    per_bar = fills.groupby("bar")["sub"].max() + 1
    reps[per_bar.index.to_numpy()] = per_bar.to_numpy()
    rows = np.repeat(np.arange(n), reps)
    first = np.concatenate([[0], np.cumsum(reps)[:-1]])
    last = np.cumsum(reps) - 1

    size = np.full((len(rows), len(syms)), np.nan)
    price = np.full_like(size, np.nan)
    fixed = np.zeros_like(size)
    r = first[fills["bar"].to_numpy()] + fills["sub"].to_numpy()
    c = np.array([syms.index(s) for s in fills["symbol"]], np.int64)
    size[r, c] = fills["sgn"].to_numpy() * fills["qty"].to_numpy()
    price[r, c] = fills["price"].to_numpy()
    fixed[r, c] = fills["fee"].to_numpy()
    marks = pd.DataFrame(np.nan_to_num(close.to_numpy()[rows], nan=0.0), columns=syms)

    pf = vbt.Portfolio.from_orders(
        marks, size=size, size_type="amount", price=price, fees=0.0, fixed_fees=fixed, slippage=0.0,
        init_cash=rec.initial_equity, cash_sharing=True, group_by=True, allow_partial=False,
        size_granularity=np.nan, min_size=0.0, raise_reject=True, freq="1D")
    assert int(pf.orders.count()) == len(fills), "vectorbt dropped some of the recorded fills"
    return pf.value().to_numpy()[last], eq["equity"].to_numpy()


def test_vectorbt_replays_the_demo_fills_to_the_same_equity_curve(demo):
    pytest.importorskip("vectorbt")
    vbt_eq, ours = vectorbt_equity(demo)
    np.testing.assert_allclose(vbt_eq, ours, rtol=REL, atol=0)


def test_vectorbt_replays_real_data_fills_to_the_same_equity_curve(real):
    pytest.importorskip("vectorbt")
    vbt_eq, ours = vectorbt_equity(real)
    np.testing.assert_allclose(vbt_eq, ours, rtol=REL, atol=0)


# ---------------------------------------------------------------------------- cash + positions == equity


def check_books(rec: Recorded) -> None:
    eq = rec.equity()
    fills = rec.fills()
    close = rec.closes_at(eq["time"])
    syms = list(close.columns)
    bar = pd.Index(eq["time"]).get_indexer(fills["time"])
    signed = np.where(fills["side"] == "buy", 1.0, -1.0) * fills["qty"].to_numpy()
    dq = np.zeros((len(eq), len(syms)))
    np.add.at(dq, (bar, [syms.index(s) for s in fills["symbol"]]), signed)
    pos = np.cumsum(dq, axis=0)
    dcash = -(signed * fills["price"].to_numpy()) - fills["fee"].to_numpy()
    cash = rec.initial_equity + np.cumsum(np.bincount(bar, weights=dcash, minlength=len(eq)))
    values = pos * np.nan_to_num(close.to_numpy())
    np.testing.assert_allclose(eq["cash"], cash, rtol=REL, atol=1e-6)
    np.testing.assert_allclose(eq["equity"], cash + values.sum(axis=1), rtol=REL, atol=0)
    np.testing.assert_allclose(eq["net_exposure"], values.sum(axis=1), rtol=REL, atol=1e-6)
    np.testing.assert_allclose(eq["gross_exposure"], np.abs(values).sum(axis=1), rtol=REL, atol=1e-6)
    assert (pos > -1e-9).all(), "a long-only run went short"


def test_cash_plus_positions_at_close_is_the_equity_of_every_demo_bar(demo):
    check_books(demo)


def test_cash_plus_positions_at_close_is_the_equity_of_every_real_bar(real):
    check_books(real)


def test_equity_csv_has_one_row_per_bar_from_the_first_batch(demo):
    eq = demo.equity()
    bar_times = pd.DatetimeIndex(sorted(demo.bars["timestamp"].unique()))
    assert eq["time"].is_monotonic_increasing and eq["time"].is_unique
    assert list(eq["time"]) == list(bar_times[bar_times >= eq["time"].iloc[0]])
    assert eq["equity"].iloc[0] == demo.initial_equity


# ---------------------------------------------------------------------------- no look-ahead


def check_no_look_ahead(rec: Recorded) -> int:
    from framework.ledger import Ledger

    run_id = rec.artifacts.name
    ledger = Ledger(rec.ledger)         # the ledger object reads a large backtest's packed rows too
    try:
        orders = ledger.frame("orders", run_id)[["client_order_id", "time", "symbol", "side", "ref_price"]]
        cycles = ledger.frame("cycles", run_id, "seq")[["time", "status", "prices"]]
        universe = ledger.run(run_id)["universe"]
    finally:
        ledger.close()
    orders["batch"] = pd.to_datetime(orders["time"], utc=True, format="ISO8601")
    fills = rec.fills().merge(orders[["client_order_id", "batch", "ref_price"]], on="client_order_id",
                              how="left", validate="many_to_one")
    assert fills["batch"].notna().all()

    opens, closes = rec.wide("open"), rec.wide("close")
    times = opens.index
    # 1. every fill is strictly after its batch, at the open of the symbol's first bar after the batch
    slippage = 0.0
    for f in fills.itertuples():
        later = opens[f.symbol][times > f.batch].dropna()
        assert f.time > f.batch
        assert f.time == later.index[0], (f.symbol, f.batch, f.time)
        side = 1.0 if f.side == "buy" else -1.0
        assert f.price == pytest.approx(later.iloc[0] * (1 + side * rec.slippage_bps * 1e-4), rel=1e-12)
        slippage += abs(f.price - later.iloc[0]) * f.qty
    summary = json.loads((rec.artifacts / "summary.json").read_text())
    assert summary["slippage_cost"] == pytest.approx(slippage, rel=1e-9)
    # 2. every order was sized with the close of the last bar stamped <= its batch
    ffilled = closes.ffill()
    for o in orders.itertuples():
        k = int(np.searchsorted(times, o.batch, "right")) - 1
        assert k >= 0 and times[k] <= o.batch
        assert o.ref_price == ffilled[o.symbol].iloc[k], (o.symbol, o.batch)
    # 3. the prices a cycle recorded are that same row of closes, for every symbol
    from framework.ledger import unpack_prices

    syms = json.loads(universe)
    for c in cycles[cycles["status"] != "mark"].itertuples():
        t = pd.Timestamp(c.time)
        k = int(np.searchsorted(times, t, "right")) - 1
        np.testing.assert_array_equal(unpack_prices(c.prices), ffilled[syms].iloc[k].to_numpy())
    return len(fills)


def test_no_demo_fill_uses_a_price_from_a_bar_at_or_before_its_batch(demo):
    assert check_no_look_ahead(demo) > 50


def test_no_real_data_fill_uses_a_price_from_a_bar_at_or_before_its_batch(real):
    assert check_no_look_ahead(real) > 20
