"""Preloaded into the fault tests' fork server: run the rebalancer once on a tiny portfolio so its
compiled kernels (if any) are loaded before the fork, not in every ``parity`` child. Best effort:
a change of API only costs speed, never correctness."""

from __future__ import annotations


def _warm() -> None:
    import numpy as np

    from framework.config import RebalanceSettings
    from framework.rebalance import Rebalancer
    from framework.types import AssetClass, Instrument, TargetPortfolio, Universe

    u = Universe.from_instruments([Instrument("AAA", AssetClass.EQUITY, 1e-9, 0.0, 1.0, 0.01, True, False),
                                   Instrument("BBB", AssetClass.EQUITY, 1.0, 0.0, 0.0, 0.01, False, False)])
    t = np.datetime64("2024-01-02T00:00:00", "ns")
    target = TargetPortfolio(t, "warm@1", np.array([0.1, 0.2]), np.array([1.0, 1.0]))
    r = Rebalancer(RebalanceSettings())
    plan = r.plan(target, np.array([0.1, 0.2]), np.array([5.0, 0.0]), np.array([100.0, 50.0]), 10_000.0, u)
    r.resize_adds(plan.add, 10.0)


try:
    _warm()
except Exception:  # noqa: BLE001 - speed only
    pass
