"""The backtest journal's count of refused orders (the summary's ``n_rejected``) is the number of
orders whose status is REJECTED, whatever the width of the status array it is handed."""

from __future__ import annotations

import numpy as np
import pytest

from framework.journal import _n_rejected
from framework.types import (
    AssetClass,
    ExecutionReport,
    FillBatch,
    Instrument,
    OrderBatch,
    OrderStatus,
    Universe,
)


def _report(status: np.ndarray) -> ExecutionReport:
    n = len(status)
    u = Universe.from_instruments([Instrument(f"S{k}", AssetClass.EQUITY, 1.0, 0.0, 0.0) for k in range(n)])
    batch = OrderBatch(u, np.datetime64("2024-01-02", "ns"), "t@20240102T000000Z", "add", np.arange(n),
                       np.ones(n, np.int8), np.ones(n), np.ones(n))
    return ExecutionReport(batch, status, np.zeros(n), np.full(n, np.nan), FillBatch.empty())


@pytest.mark.parametrize("dtype", [np.int8, np.int64])
def test_refused_orders_are_counted_by_their_status(dtype):
    R, F, N = int(OrderStatus.REJECTED), int(OrderStatus.FILLED), int(OrderStatus.NEW)
    assert _n_rejected(_report(np.array([R, F, R, N, R], dtype))) == 3
    assert _n_rejected(_report(np.array([F, N, F], dtype))) == 0
    assert _n_rejected(_report(np.array([], dtype))) == 0
    every = np.array([s.value for s in OrderStatus], dtype)     # each status once: one of them refused
    assert _n_rejected(_report(every)) == 1
