"""``parity promote`` / ``parity demote``: gates from the strategy config, evidence for the current
config hash, the audit record, the strategy file's ``stage:`` line, and the live gate of ``execute``."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from framework.config import load_strategy
from framework.errors import LiveSafetyError
from framework.ledger import Ledger
from framework.ops import promotion as pr
from tests.ops.conftest import STRATEGY, STRATEGY_YAML, Home, backtest_inputs, write_home

# ---------------------------------------------------------------- the gates on their own


def strategy(tmp_path: Path, text: str = STRATEGY_YAML):
    p = tmp_path / f"{STRATEGY}.yaml"
    p.write_text(text)
    return load_strategy(str(p))


GOOD_BT = {"sharpe": 1.4, "max_drawdown": -0.12, "trades": 40}


@pytest.mark.parametrize("metrics, failing", [
    ({**GOOD_BT, "sharpe": 0.2}, "min_sharpe"),
    ({**GOOD_BT, "max_drawdown": -0.45}, "max_drawdown"),
    ({**GOOD_BT, "trades": 3}, "min_trades"),
])
def test_a_paper_gate_that_fails_is_named(tmp_path, metrics, failing):
    s = strategy(tmp_path)
    gates = pr.check("paper", s, pr.Evidence(s.config_hash(), "bt-1", metrics))
    assert [g.name for g in gates if not g.passed] == [failing]
    message = str(pr.refusal(s.name, "paper", gates))
    assert f"gate {failing} failed" in message and "refused" in message


def test_live_gates_add_paper_days_tracking_error_and_no_halt(tmp_path):
    s = strategy(tmp_path, STRATEGY_YAML.replace("min_paper_days: 1", "min_paper_days: 5"))
    h = s.config_hash()
    ok = pr.Evidence(h, "bt-1", GOOD_BT, None, ("p1", "p2"), ("2026-01-05",) * 1, 0, 0.0004)
    assert [g.name for g in pr.check("live", s, ok) if not g.passed] == ["min_paper_days"]
    days = tuple(f"2026-01-0{d}" for d in range(1, 7))
    bad = pr.Evidence(h, "bt-1", GOOD_BT, None, ("p1",), days, 1, 0.002)
    assert [g.name for g in pr.check("live", s, bad) if not g.passed] == ["max_tracking_error",
                                                                          "no_risk_halt"]
    none = pr.Evidence(h, None, {}, "bt-0 (config abc)")
    failed = [g.name for g in pr.check("live", s, none) if not g.passed]
    assert failed[:2] == ["backtest", "min_sharpe"] and "paper_runs" in failed
    assert "bt-0 (config abc)" in pr.check("live", s, none)[0].actual


def test_stage_moves_one_way_at_a_time():
    assert pr.transition_problem("research", "paper") is None
    assert "promote it to paper first" in pr.transition_problem("research", "live")
    assert "demote" in pr.transition_problem("live", "paper")
    assert pr.transition_problem("live", "live") is None          # re-approving a changed config
    assert pr.demotion_target("live", None) == "paper"
    assert pr.demotion_target("live", "research") == "research"
    with pytest.raises(Exception, match="research already"):
        pr.demotion_target("research", None)


# ---------------------------------------------------------------- the command on a synthetic ledger


def synthetic_backtest(db: Path, run_id: str, config_hash: str, drift: float, n_orders: int = 12) -> None:
    """A finished backtest run in the ledger: a daily equity curve and ``n_orders`` filled orders."""
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-01-02", periods=60, freq="D", tz="UTC")
    eq = 100_000 * np.exp(np.cumsum(rng.normal(drift, 0.004, len(times))))
    led = Ledger(db)
    led.start_run(run_id, STRATEGY, config_hash, "backtest", "sim", 100_000.0, ["AAPL"], {}, "x.csv")
    with led.tx():
        led.write_equity(run_id, pd.DataFrame({"time": times, "equity": eq, "cash": eq, "gross_exposure": 0.0,
                                               "net_exposure": 0.0}))
        led.db.executemany("INSERT INTO orders (run_id, cycle_seq, client_order_id, time, symbol, side, qty, "
                           "type, status, filled_qty) VALUES (?,0,?,?,?,?,?,?,?,?)",
                           [(run_id, f"c{i}", "2024-01-03T00:00:00Z", "AAPL", "buy", 1.0, "market", "filled",
                             1.0) for i in range(n_orders)])
    led.finish_run(run_id, "done", None, None, float(eq[-1]))
    led.close()


def promotions(db: Path) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM promotions ORDER BY rowid")]
    finally:
        con.close()


def test_promote_refuses_naming_the_gate_then_accepts_and_records(tmp_path, monkeypatch):
    write_home(tmp_path, "http://127.0.0.1:9")
    home = Home(tmp_path, None)  # type: ignore[arg-type]
    s = load_strategy(str(home.strategy_file))
    db = home.root / "data" / "parity.db"
    synthetic_backtest(db, "bt-poor", s.config_hash(), drift=-0.001)
    before = home.strategy_file.read_bytes()

    r = home.cli(monkeypatch, "promote", STRATEGY, "--to", "paper")
    assert r.exit_code == 2
    assert "gate min_sharpe failed" in r.output and "has -" in r.output
    assert promotions(db) == [] and home.strategy_file.read_bytes() == before

    synthetic_backtest(db, "bt-good", s.config_hash(), drift=0.002)
    r = home.cli(monkeypatch, "promote", STRATEGY, "--to", "paper", "--reason", "backtest looks fine")
    assert r.exit_code == 0, r.output
    rows = promotions(db)
    assert len(rows) == 1
    row = rows[0]
    assert (row["strategy"], row["action"], row["stage"]) == (STRATEGY, "promote", "paper")
    assert row["config_hash"] == s.config_hash() and row["who"] == getpass.getuser()
    assert row["time"].endswith("Z") and row["reason"] == "backtest looks fine"
    evidence = json.loads(row["evidence"])
    assert evidence["backtest_run"] == "bt-good" and {g["name"] for g in evidence["gates"]} >= {"min_sharpe"}
    after = home.strategy_file.read_bytes()
    assert after == before.replace(b"stage: research   #", b"stage: paper   #")

    r = home.cli(monkeypatch, "promote", STRATEGY, "--to", "live")
    assert r.exit_code == 2
    assert "gate paper_runs failed" in r.output and "gate min_paper_days failed" in r.output
    assert len(promotions(db)) == 1


# ---------------------------------------------------------------- real evidence and the live gate


def live_gate(home: Home):
    """The gate as live ``execute`` runs it with the settings' default (production) endpoint."""
    from framework.cli.live import live_gate as gate
    from framework.config import Settings

    led = Ledger(home.ledger)
    try:
        return gate(led, load_strategy(str(home.strategy_file)), Settings(), "alpaca", True)
    finally:
        led.close()


def test_promotion_on_paper_evidence_and_the_live_gate_of_execute(exact_home, monkeypatch, tmp_path):
    home = exact_home.clone(tmp_path / "home")
    r = home.cli(monkeypatch, "promote", STRATEGY, "--to", "paper")
    assert r.exit_code == 2 and "gate backtest failed" in r.output

    signals, bars = backtest_inputs(home.root)
    bt = home.json(monkeypatch, "backtest", "--strategy", STRATEGY, "--signals", signals, "--bars", bars)
    assert bt["sharpe"] > 0.5 and bt["config_hash"] == load_strategy(str(home.strategy_file)).config_hash()
    assert home.cli(monkeypatch, "promote", STRATEGY, "--to", "paper").exit_code == 0
    with pytest.raises(LiveSafetyError, match="not promoted to live"):
        live_gate(home)

    out = home.json(monkeypatch, "promote", STRATEGY, "--to", "live")
    ev = out["evidence"]
    assert out["stage"] == "live" and ev["backtest_run"] == bt["run_id"]
    assert len(ev["paper_runs"]) == 3 and len(ev["paper_days"]) == 1 and ev["halts"] == 0
    assert ev["tracking_error"] < 0.001
    assert all(g["passed"] for g in ev["gates"])
    assert "stage: live   # research -> paper -> live" in home.strategy_file.read_text()
    assert live_gate(home) is None                          # promoted, same config: live may trade

    text = home.strategy_file.read_text()
    home.strategy_file.write_text(text.replace("max_position_size_pct: 0.40", "max_position_size_pct: 0.35"))
    with pytest.raises(LiveSafetyError, match="changed since it was promoted"):
        live_gate(home)
    home.strategy_file.write_text(text)
    assert live_gate(home) is None

    r = home.cli(monkeypatch, "demote", STRATEGY, "--reason", "drawdown")
    assert r.exit_code == 0 and "demoted from live to paper" in r.output
    with pytest.raises(LiveSafetyError, match="not promoted to live"):
        live_gate(home)
    last = promotions(home.ledger)[-1]
    assert (last["action"], last["stage"], last["reason"]) == ("demote", "paper", "drawdown")
    assert "stage: paper   #" in home.strategy_file.read_text()
