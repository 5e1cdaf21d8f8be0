"""The ``min_deflated_sharpe`` promotion gate: every point of every sweep of a strategy is a trial, so
the best of a 200-point sweep of a strategy with no skill is refused, and the message says why."""

from __future__ import annotations

import json

from tests.sweep.conftest import STRATEGY, make_home, point_yaml


def test_the_best_of_200_noise_strategies_is_refused(tmp_path):
    home = make_home(tmp_path / "home", generator="noise", params="{seed: 0, every: 5, top: 2}",
                     start="2022-01-03", end="2022-12-30")
    seeds = ",".join(str(i) for i in range(200))
    out = home.json("sweep", "--strategy", STRATEGY, "--param", f"generator.seed={seeds}", "--workers", "2",
                    "--keep", "1")
    assert out["n_points"] == 200
    best = out["best"][0]
    sharpes = [p["sharpe"] for p in json.loads((tmp_path / "home" / "reports" / out["sweep_id"] / "sweep.json")
                                               .read_text())["points"]]
    assert best["sharpe"] == max(sharpes) and best["sharpe"] > 1.0        # luck looks like skill...
    assert best["dsr"] < 0.95                                              # ...until deflated

    # the user adopts the best point's config and asks for paper trading
    row = next(r for r in home.sweep_rows(out["sweep_id"]) if r["point_id"] == best["point_id"])
    (home.root / "strategies" / f"{STRATEGY}.yaml").write_text(point_yaml(home, row, "best").read_text())
    r = home.cli("promote", STRATEGY, "--to", "paper")
    assert r.exit_code == 2, r.output
    assert "gate min_deflated_sharpe failed" in r.output
    assert "over 200 trial(s)" in r.output and "by luck alone" in r.output
    assert "gate min_sharpe failed" not in r.output                        # the plain Sharpe gate passes
    assert "test a pre-registered config on new data" in r.output


def test_a_strategy_tried_once_is_judged_on_its_own_sharpe(tmp_path):
    """Without sweeps N = 1: the gate is the Probabilistic Sharpe Ratio against zero, and a strong
    backtest passes it."""
    from framework.artifacts import load_run
    from framework.ledger import Ledger
    from framework.ops.promotion import deflated_evidence

    home = make_home(tmp_path / "home")
    bt = home.json("backtest", "--strategy", STRATEGY)
    led = Ledger(home.ledger)
    try:
        ev = deflated_evidence(led, STRATEGY, load_run(led, bt["run_id"]))
    finally:
        led.close()
    assert ev["trials"] == 1 and ev["luck_sharpe"] == 0.0
    assert 0.0 < ev["deflated_sharpe"] < 1.0
