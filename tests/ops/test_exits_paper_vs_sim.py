"""The same archive with stops and targets (SPEC §20), traded on the local Alpaca paper server and
replayed by ``parity compare`` over bars that follow the server's prices: the same exits fire
between the same cycles, at prices within the simulator's slippage, shown as rows of their own.

The server fills at the simulator's slippage (5 bps). Between cycle 0 and cycle 1 the prices move:
AAPL gaps under its stop (190 -> 184, stop 185) and SPY over its take-profit (470 -> 481, take
480). The bars hold, per cycle, a bar at the batch time (the sizing close), one 30 s later (the
fill bar, ``next_open``) and, between cycle 0 and 1, a bar at +45 s whose open is the moved price.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from tests.ops.conftest import KEY, SECRET, SIM_BPS, STRATEGY, Home, write_home
from tests.servers.alpaca_server import AlpacaServer

LEVELS = {"AAPL": (185.0, 200.0), "SPY": (460.0, 480.0)}
CYCLES = [  # (weights, server prices before the cycle)
    ({"AAPL": 0.30, "SPY": 0.20}, {"AAPL": 190.0, "SPY": 470.0}),
    ({"AAPL": 0.30, "SPY": 0.20}, {"AAPL": 186.0, "SPY": 478.0}),
    ({"AAPL": 0.0, "SPY": 0.0}, {"AAPL": 187.0, "SPY": 476.0}),
]
MOVED = {"AAPL": 184.0, "SPY": 481.0}       # after cycle 0: a gap through each exit's level


def signal_file(root, k: int, weights: dict[str, float], when: datetime) -> str:
    t = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [f"{s},{t},bull,{1 if w else 0},{w},0.9,{STRATEGY},{LEVELS[s][0] if w else ''},{LEVELS[s][1] if w else ''}"
            for s, w in weights.items()]
    name = f"signals-{k}.csv"
    (root / name).write_text("symbol,time,regime,side,weight,confidence,strategy,stop_loss,take_profit\n"
                             + "\n".join(rows) + "\n")
    return name


@pytest.fixture(scope="module")
def exits_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("exits")
    srv = AlpacaServer(key=KEY, secret=SECRET, cash=100_000, fill_slippage_bps=SIM_BPS, rate_limit=None,
                       data_rate_limit=None)
    srv.start()
    write_home(root, srv.url)
    home = Home(root, srv)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=len(CYCLES) + 1)
    times = [start + timedelta(minutes=k) for k in range(len(CYCLES))]
    try:
        for k, (weights, prices) in enumerate(CYCLES):
            srv.set_prices(prices)
            p = home.parity("execute", "--signals", signal_file(root, k, weights, times[k]), "--strategy", STRATEGY)
            assert p.returncode == 0, p.stdout + p.stderr
            if k == 0:
                srv.set_prices(MOVED)
                srv.process_orders()          # the venue's own protective orders fire
        rows = []
        for k, (_, prices) in enumerate(CYCLES):
            t = pd.Timestamp(times[k])
            bars = [(t, prices), (t + pd.Timedelta(seconds=30), prices)]
            if k == 0:
                bars.append((t + pd.Timedelta(seconds=45), MOVED))
            for when, px in bars:
                rows += [(when.strftime("%Y-%m-%dT%H:%M:%SZ"), s, v, v, v, v, 1e9) for s, v in px.items()]
        pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"]).to_csv(
            root / "bars.csv", index=False)
        yield home, times
    finally:
        srv.stop()


def test_the_same_exits_fire_on_the_same_bars_within_the_simulators_slippage(exits_home, monkeypatch):
    home, times = exits_home
    r = home.json(monkeypatch, "compare", STRATEGY, "--bars", str(home.root / "bars.csv"))
    exits = {(e["symbol"], e["leg"]): e for e in r["exits"]}
    assert set(exits) == {("AAPL", "stop"), ("SPY", "take")}, r["exits"]
    moved_bar = pd.Timestamp(times[0]) + pd.Timedelta(seconds=45)
    con = sqlite3.connect(home.ledger)
    started = [pd.Timestamp(t) for (t,) in con.execute("SELECT created_at FROM runs WHERE mode='paper' "
                                                       "ORDER BY created_at")]
    con.close()
    for (sym, leg), e in exits.items():
        assert e["state"] == "filled" and e["side"] == "sell"
        assert pd.Timestamp(e["sim_fill_time"]) == moved_bar              # the bar that crossed the level
        assert started[0] < pd.Timestamp(e["paper_fill_time"]) < started[1]   # between the same two cycles
        assert abs(e["shortfall_bps"]) <= SIM_BPS + 1e-6                 # within the simulator's slippage
    stop, take = exits[("AAPL", "stop")], exits[("SPY", "take")]
    assert stop["paper_price"] == pytest.approx(184.0 * (1 - SIM_BPS * 1e-4))    # a stop: market at the trigger
    assert stop["sim_price"] == pytest.approx(184.0 * (1 - SIM_BPS * 1e-4))      # gap: the open, less slippage
    assert take["sim_price"] == 481.0                                           # a limit: the open, no slippage
    assert r["orders"]["only_paper"] == r["orders"]["only_simulated"] == 0
    rows = {(o["symbol"], o["leg"], o["client_order_id"]) for o in r["order_rows"]}
    assert {leg for _, leg, _ in rows} >= {"add", "reduce", "stop", "take"}
    text = home.cli(monkeypatch, "compare", STRATEGY, "--bars", str(home.root / "bars.csv")).output
    assert "Exit stop" in text and "Exit take" in text
    page = (home.root / "reports" / f"reconcile-{r['run_id']}" / "reconcile.html").read_text()
    assert "<th>Leg</th>" in page and ">stop<" in page and ">take<" in page
