"""Sleeves (SPEC §18): the netting arithmetic, the portfolio config, and ``backtest --portfolio`` on
real data — the combined account equals the sleeves plus the unallocated rest to the cent, and
netting pays fewer fees than the same sleeves as separate accounts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.config import load_settings
from framework.errors import ConfigError
from framework.portfolios import load_portfolio
from framework.sleeves.netting import cross, crossing_cash, fill_shares, shares

BARS = "equity_daily_lean_5sym_split_adjusted.csv"
SYMS = ["AAPL", "AIG", "BAC", "IBM", "SPY"]


# ------------------------------------------------------------------------------ arithmetic
def test_crossing_nets_buys_against_sells_and_leaves_one_net_order():
    # sleeve A buys 10 AAPL, B sells 4, C buys 2: 4 cross inside, 8 go to the venue (A 20/3, C 4/3)
    delta = np.array([[10.0, -5.0], [-4.0, 5.0], [2.0, 0.0]])
    crossed, residual = cross(delta)
    assert crossed[:, 0].sum() == pytest.approx(0.0, abs=1e-12)
    assert crossed[1, 0] == pytest.approx(-4.0) and residual[1, 0] == pytest.approx(0.0)
    assert residual[:, 0].sum() == pytest.approx(8.0)
    assert residual[0, 0] / residual[2, 0] == pytest.approx(5.0)
    # MSFT column: -5 and +5 cross completely, nothing is sent
    assert np.abs(residual[:, 1]).max() == pytest.approx(0.0)
    cash = crossing_cash(crossed[:, 1], 370.0)
    assert cash.sum() == 0.0 and cash[0] == pytest.approx(1850.0)


def test_fill_shares_follow_what_each_sleeve_asked_and_add_up_exactly():
    residual = np.array([6.0, -1.0, 2.0])
    part = fill_shares(residual, +1, 3.3)
    assert part is not None and part[1] == 0.0
    assert part.sum() == 3.3 and part[0] == pytest.approx(3 * part[2])
    assert fill_shares(residual, -1, 0.5)[1] == 0.5
    assert fill_shares(np.array([1.0, 2.0]), -1, 1.0) is None
    amounts = shares(-1234.567891, np.array([0.1, 0.7, 0.2]))
    assert amounts.sum() == -1234.567891


# ------------------------------------------------------------------------------ config
def _settings(root: Path, extra: str = "") -> Path:
    cfg = root / "config"
    (cfg / "portfolios").mkdir(parents=True, exist_ok=True)
    (cfg / "strategies").mkdir(parents=True, exist_ok=True)
    (cfg / "settings.yaml").write_text(
        "execution:\n  max_position_size_pct: 0.25\n  max_exposure_pct: 0.95\n  min_confidence: 0.5\n"
        f"ledger: {root / 'data' / 'parity.db'}\ndata_dir: {root / 'data'}/\nreports_dir: {root / 'reports'}/\n"
        + extra)
    return cfg / "settings.yaml"


def test_portfolio_config_errors_name_file_and_key(tmp_path):
    path = _settings(tmp_path)
    p = tmp_path / "config" / "portfolios"
    (p / "over.yaml").write_text("sleeves: {a: 0.6, b: 0.5}\n")
    with pytest.raises(ConfigError) as e:
        load_portfolio("over", path)
    assert "over.yaml [sleeves]" in str(e.value) and "sum to 1.1" in str(e.value)
    (p / "typo.yaml").write_text("sleeves: {a: 0.5}\nrisk: {max_exposure: 0.5}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml \[risk\].*max_exposure"):
        load_portfolio("typo", path)
    (p / "pct.yaml").write_text("sleeves: {a: 0.5}\nrisk: {max_position_size_pct: 35}\n")
    with pytest.raises(ConfigError, match=r"pct.yaml \[risk\].*max_position_size_pct.*0\.35"):
        load_portfolio("pct", path)              # a percentage where a fraction goes, as for a strategy
    (p / "key.yaml").write_text("sleeves: {a: 0.5}\naccount: {broker: alpaca, envirnoment: paper}\n")
    with pytest.raises(ConfigError, match=r"key.yaml \[account.envirnoment\]"):
        load_portfolio("key", path)
    (p / "fixed.yaml").write_text("sleeves: {a: {amount: 25000}, b: 0.5}\n")
    cfg = load_portfolio("fixed", path)
    assert cfg.allocations()["a"].amount == 25000 and cfg.allocations()["b"].fraction == 0.5
    (p / "big.yaml").write_text("sleeves: {a: 25000}\n")
    with pytest.raises(ConfigError, match=r"amount: 25000"):
        load_portfolio("big", path)


# ------------------------------------------------------------------------------ backtest on real data
def _archive(bars: pd.DataFrame, kind: str, every: int = 5) -> pd.DataFrame:
    """A small signal archive from the bars: ``mom`` holds the 3 strongest of 20 days, ``rev`` the 3
    weakest of 5 days, ``core`` SPY and AAPL with weights that swing (so sleeves cross often)."""
    close = bars.assign(timestamp=pd.to_datetime(bars["timestamp"]).dt.tz_localize(None)).pivot(
        index="timestamp", columns="symbol", values="close")[SYMS]
    close = close.loc["2018-01-01":"2019-12-31"]
    rows = []
    for k, t in enumerate(close.index[25::every]):
        hist = close.loc[:t]
        if kind == "mom":
            r = hist.iloc[-1] / hist.iloc[-21] - 1
            pick = {s: 0.3 for s in r.sort_values().index[-3:]}
        elif kind == "rev":
            r = hist.iloc[-1] / hist.iloc[-6] - 1
            pick = {s: 0.3 for s in r.sort_values().index[:3]}
        else:
            pick = {"SPY": 0.2 + 0.2 * (k % 2), "AAPL": 0.4 - 0.2 * (k % 2)}
        for s in SYMS:
            w = pick.get(s, 0.0)
            rows.append((s, t.strftime("%Y-%m-%dT21:00:00Z"), 1 if w > 0 else 0, w, 0.9))
    return pd.DataFrame(rows, columns=["symbol", "time", "side", "weight", "confidence"])


@pytest.fixture
def home(tmp_path, shared_data):
    path = _settings(tmp_path)
    cfg = tmp_path / "config"
    bars = pd.read_csv(shared_data / BARS)
    for name, kind in (("mom", "mom"), ("rev", "rev"), ("core", "core")):
        _archive(bars, kind).to_csv(tmp_path / f"{name}.csv", index=False)
        (cfg / "strategies" / f"{name}.yaml").write_text(
            f"name: {name}\nsignals: {{path: {tmp_path / f'{name}.csv'}}}\n"
            + ("risk: {max_position_size_pct: 0.35}\n" if name != "rev" else "risk: {max_exposure_pct: 0.8}\n")
            + "rebalance: {drift_threshold: 0.005}\n")
    (cfg / "portfolios" / "three.yaml").write_text(
        "account: {broker: alpaca, environment: paper}\n"
        "sleeves: {mom: 0.3, rev: 0.5, core: 0.2}\n"
        f"bars: {{path: {shared_data / BARS}}}\n"
        "simulation: {cash: 100000}\n")
    return tmp_path, path


def test_backtest_portfolio_sleeves_add_up_to_the_account_and_netting_saves_fees(home, shared_data):
    from framework.cli.portfolio import run_portfolio_backtest
    from framework.cli.wiring import run_backtest
    from framework.config import load_strategy
    from framework.ledger import Ledger

    root, path = home
    settings = load_settings(path)
    run_id, summary, out, rep = run_portfolio_backtest(settings, str(path), "three")

    db = sqlite3.connect(str(root / "data" / "parity.db"))
    eq = pd.read_sql_query("SELECT time, sleeve, equity FROM sleeve_equity WHERE run_id=?", db, params=(run_id,))
    wide = eq.pivot(index="time", columns="sleeve", values="equity")
    assert len(wide) > 50
    sleeves = wide[["mom", "rev", "core"]].sum(axis=1)
    # every cycle: the account (the simulator's own equity) is the sleeves plus the rest, to the cent
    assert (wide["*account*"] - sleeves - wide["*unallocated*"]).abs().max() < 0.005
    # the sleeves hold all of it: the fractions sum to 1 and the account holds nothing else
    assert wide["*unallocated*"].abs().max() < 0.005
    assert abs(wide["*account*"].iloc[-1] - summary["final_equity"]) < 0.005
    assert abs(sum(s["pnl"] for s in rep["sleeves"].values()) + rep["unallocated"]["pnl"]
               - rep["total"]["pnl"]) < 0.015
    # every fill of the account is in exactly one sleeve's book: quantities and cash add up
    led = Ledger(settings.ledger)
    fills = led.frame("fills", run_id)[["symbol", "side", "qty", "price", "fee"]]
    led.close()
    trades = pd.read_sql_query("SELECT sleeve, kind, symbol, qty, fee, cash FROM sleeve_trades WHERE account=?", db,
                               params=(f"sim:sim:{run_id}",))
    signed = np.where(fills["side"] == "buy", 1.0, -1.0)
    for s in SYMS:
        venue = float((signed * fills["qty"])[fills["symbol"] == s].sum())
        books = float(trades.loc[(trades["symbol"] == s) & (trades["kind"] != "fund"), "qty"].sum())
        assert books == pytest.approx(venue, abs=1e-6)
    flow = float((-signed * fills["qty"] * fills["price"] - fills["fee"]).sum())
    assert abs(float(trades.loc[trades["kind"] != "fund", "cash"].sum()) - flow) < 0.005
    assert abs(trades["fee"].sum() - fills["fee"].sum()) < 0.005
    crossings = trades[trades["kind"] == "cross"]
    assert len(crossings) > 10 and crossings["fee"].sum() == 0.0
    # each sleeve's targets stay inside its strategy's limits, the account's inside the account's
    plans = pd.read_sql_query("SELECT batch_id, sleeve, symbol, price, equity, target FROM sleeve_plans "
                              "WHERE account=?", db, params=(f"sim:sim:{run_id}",))
    plans["value"] = (plans["target"] * plans["price"]).abs()
    per = plans.groupby(["batch_id", "sleeve"]).agg(value=("value", "sum"), equity=("equity", "first"),
                                                    top=("value", "max"))
    caps = {"mom": (0.35, 0.95), "core": (0.35, 0.95), "rev": (0.25, 0.8)}
    for (bid, sleeve), r in per.iterrows():
        pos_cap, exp_cap = caps[sleeve]
        assert r.value <= exp_cap * r.equity * (1 + 1e-9) + 1e-6, (bid, sleeve)
        assert r.top <= pos_cap * r.equity * (1 + 1e-9) + 1e-6, (bid, sleeve)
    cycles = pd.read_sql_query("SELECT batch_id, equity FROM cycles WHERE run_id=? AND status='done'", db,
                               params=(run_id,)).set_index("batch_id")
    account = plans.groupby("batch_id")["value"].sum()
    assert (account / cycles["equity"].reindex(account.index) <= 0.95 + 1e-9).all()
    db.close()
    assert json.loads((out / "sleeves.json").read_text())["total"]["equity"] == rep["total"]["equity"]

    # the same sleeves as three separate accounts pay more in fees (their crossings go to the venue)
    separate = 0.0
    for name, frac in (("mom", 0.3), ("rev", 0.5), ("core", 0.2)):
        _, s, _ = run_backtest(settings, str(path), load_strategy(name, path), cash=100_000 * frac,
                               bars_path=str(shared_data / BARS), report=False)
        separate += s["fees_paid"]
    saved = separate - summary["fees_paid"]
    print(f"fees: netted {summary['fees_paid']:.2f}, separate accounts {separate:.2f}, saved {saved:.2f}")
    assert summary["fees_paid"] < separate and saved > 0.05 * separate


def test_a_sleeve_archive_with_exit_levels_is_refused_naming_file_line_and_what_to_do(home, shared_data):
    """Sleeves place no protective orders: a stop_loss a sleeve's archive sets would otherwise be read
    and dropped, leaving the user's positions unprotected in silence (SPEC §20 applies per account)."""
    from click.testing import CliRunner

    from framework.cli import main

    root, path = home
    mom = pd.read_csv(root / "mom.csv")
    mom["stop_loss"] = ""
    mom.loc[7, "stop_loss"] = "4%"        # one row sets a level: file line 9 (the header is line 1)
    mom.to_csv(root / "mom.csv", index=False)
    res = CliRunner().invoke(main, ["--config", str(path), "backtest", "--portfolio", "three"])
    assert res.exit_code == 2, res.output
    assert f"{root / 'mom.csv'}:9 [stop_loss]" in res.output
    assert "runs as a sleeve of" in res.output and "parity backtest --strategy mom" in res.output
    assert "Traceback" not in res.output
    assert not (root / "data" / "parity.db").exists() or sqlite3.connect(str(root / "data" / "parity.db")).execute(
        "SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    # the strategy on its own account applies its stop (SPEC §20), and an empty column is no level
    assert CliRunner().invoke(main, ["--config", str(path), "backtest", "--strategy", "mom",
                                     "--bars", str(shared_data / BARS), "--json"]).exit_code == 0
    mom["stop_loss"] = ""
    mom.to_csv(root / "mom.csv", index=False)
    res = CliRunner().invoke(main, ["--config", str(path), "backtest", "--portfolio", "three", "--json"])
    assert res.exit_code == 0, res.output


def test_an_archive_naming_several_strategies_runs_them_as_sleeves(home, shared_data):
    from click.testing import CliRunner

    from framework.cli import main

    root, path = home
    parts = []
    for name in ("mom", "rev", "core"):
        parts.append(pd.read_csv(root / f"{name}.csv").assign(strategy=name))
    pd.concat(parts).to_csv(root / "all.csv", index=False)
    (root / "config" / "strategies" / "combo.yaml").write_text(
        f"name: combo\nsignals: {{path: {root / 'all.csv'}, strategies: sleeves}}\n"
        f"bars: {{path: {shared_data / BARS}}}\n")
    res = CliRunner().invoke(main, ["--config", str(path), "backtest", "--strategy", "combo", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    rep = out["sleeves"]
    assert sorted(rep["sleeves"]) == ["core", "mom", "rev"]
    funded = [s["funded"] for s in rep["sleeves"].values()]
    assert max(funded) - min(funded) <= 0.01 and abs(sum(funded) - 100_000) <= 0.01   # equal allocations
    assert abs(sum(s["equity"] for s in rep["sleeves"].values()) + rep["unallocated"]["equity"]
               - rep["total"]["equity"]) <= 0.02
    assert abs(rep["total"]["equity"] - out["final_equity"]) < 0.005
    # a portfolio file of the same name sets the allocations
    (root / "config" / "portfolios" / "combo.yaml").write_text("sleeves: {mom: 0.5, rev: 0.3}\n")
    res = CliRunner().invoke(main, ["--config", str(path), "backtest", "--strategy", "combo", "--json"])
    assert res.exit_code == 0, res.output
    funded = {k: s["funded"] for k, s in json.loads(res.output)["sleeves"]["sleeves"].items()}
    assert funded == pytest.approx({"mom": 50_000, "rev": 30_000, "core": 20_000}, abs=0.01)


def test_a_sleeve_trades_live_only_when_its_strategy_is_promoted_to_live(tmp_path):
    from framework.cli.portfolio import _live_sleeves
    from framework.config import Settings, StrategyConfig
    from framework.errors import LiveSafetyError
    from framework.ledger import Ledger
    from framework.portfolios import Sleeve

    ledger = Ledger(tmp_path / "parity.db")
    strategies = {n: StrategyConfig(name=n, stage="live") for n in ("alpha", "beta")}
    sleeves = [Sleeve(n, s, s.limits(Settings().execution.limits()), 0.5, None, "x.csv")
               for n, s in strategies.items()]
    notes: list[str] = []
    settings = Settings()             # alpaca's own endpoint: production, the gate applies
    with pytest.raises(LiveSafetyError, match="no sleeve of the portfolio is promoted to live"):
        _live_sleeves(ledger, sleeves, settings, "alpaca", True, notes.append)
    a = strategies["alpha"]
    ledger.record_promotion("alpha", "promote", "live", a.config_hash(), "test", "2026-01-01T00:00:00Z", {}, "")
    assert _live_sleeves(ledger, sleeves, settings, "alpaca", True, notes.append) == {"beta"}
    assert any("sleeve beta holds" in n and "not promoted to live" in n for n in notes)
    assert _live_sleeves(ledger, sleeves, settings, "alpaca", False, notes.append) == set()   # paper
    local = Settings.model_validate({"execution": {"alpaca": {"base_url": "http://127.0.0.1:9"}}})
    assert _live_sleeves(ledger, sleeves, local, "alpaca", True, notes.append) == set()
    assert "live gate skipped" in notes[-1]
    ledger.close()
