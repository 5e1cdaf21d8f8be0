"""A backtest's client order ids, made for all its batches at once as an Arrow column (issue 15),
are byte for byte the ids ``client_order_id`` makes one order at a time: the contract recovery,
``paired_exit_id``, ``leg_of`` and the live adapters rely on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from framework import client_ids
from framework.client_ids import ClientIds
from framework.order_ids import client_order_id, leg_of
from framework.types import OrderBatch
from tests.conftest import universe

SYMBOLS = ("AAPL", "BTC/USD", "X" * 40, "ÉTÉ", "😀/USD", "DOGE/USDT", "A" * 12, "BRK.B", "A\x00B")
BATCH_IDS = ("s@20240102T000000Z", "a-strategy-with-a-very-long-name@20240102T000000Z",
             "momentum.paper@20240102T143000Z", "no-time-at-all", "a@b@20240102T000000Z", "ü" * 30 + "@20240102T000000Z")
LEGS = ("add", "reduce", "add-r1", "add-m", "stop", "take", "close", "reconcile", "L" * 41, "K" * 47, "N" * 48, "M" * 60)


def _batch(univ, batch_id: str, leg: str, idx, client_ids=None) -> OrderBatch:
    idx = np.asarray(idx, np.int64)
    n = len(idx)
    return OrderBatch(univ, np.datetime64("2024-01-02T00:00:00", "ns"), batch_id, leg, idx, np.ones(n, np.int8),
                      np.ones(n), np.full(n, 100.0), client_ids=client_ids)


def _expected(batches: list[OrderBatch]) -> list[str]:
    out = []
    for b in batches:
        if b.client_ids is not None:
            out.extend(b.client_ids)
        else:
            out.extend(client_order_id(b.batch_id, b.universe.symbols[i], b.leg) for i in b.symbol_idx.tolist())
    return out


def _made(batches: list[OrderBatch]):
    ids = ClientIds()
    for b in batches:
        ids.add(b)
    return ids.array()


@pytest.mark.parametrize("chunk", [client_ids.CHUNK, 7])
def test_ids_made_at_once_are_client_order_id_byte_for_byte(monkeypatch, chunk):
    """Crypto pairs (``/`` dropped from the readable part, kept in the digest), non-ASCII and very
    long symbols and batch ids (the 48-character cut, counted in characters, for every leg length),
    smart-execution legs, two universes, a recovered batch keeping its own ids, an empty batch; in
    one block, and in blocks of 7 ids that cut batches and mix universes."""
    monkeypatch.setattr(client_ids, "CHUNK", chunk)
    u1 = universe(*SYMBOLS)
    u2 = universe("MSFT", "ETH/USD", "Z" * 30)
    rng = np.random.default_rng(7)
    batches = []
    for batch_id in BATCH_IDS:
        for leg in LEGS:
            batches.append(_batch(u1, batch_id, leg, rng.permutation(len(SYMBOLS))))
            batches.append(_batch(u2, batch_id, leg, [2, 0, 1, 2]))
    batches.insert(3, _batch(u1, BATCH_IDS[0], "add", [0, 1], client_ids=("p-kept-from-the-ledger-1", "p-kept-2")))
    batches.insert(5, _batch(u1, BATCH_IDS[0], "add", []))
    got = _made(batches)
    want = _expected(batches)
    assert got.to_pylist() == want
    assert any(len(i) == 2 + 48 + 11 for i in want)            # the 48-character cut was exercised
    assert {leg_of(i) for i in want} >= {"add", "r1", "m", "stop", "take"}

def test_the_ids_column_is_an_arrow_backed_pandas_string_series():
    """The column a backtest's tables hold (``ChunkedArray.to_pandas()``): pandas' Arrow-backed
    ``str`` dtype over the same buffers, so a frame or a CSV writer takes it without a copy."""
    u = universe("AAPL", "BTC/USD")
    made = _made([_batch(u, "s@20240102T000000Z", "add", [0, 1]), _batch(u, "s@20240103T000000Z", "take", [1])])
    assert made.type == pa.large_string()
    s = made.to_pandas()
    assert isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"
    assert s.tolist() == [client_order_id("s@20240102T000000Z", "AAPL", "add"),
                          client_order_id("s@20240102T000000Z", "BTC/USD", "add"),
                          client_order_id("s@20240103T000000Z", "BTC/USD", "take")]
    frame = pd.DataFrame({"client_order_id": s}, copy=False)
    assert frame["client_order_id"].dtype == s.dtype
    assert _made([]).to_pylist() == []


def test_a_backtests_columns_name_each_order_and_fill_by_its_own_id():
    """Through ``RunTables``: the orders' ids are each order's ``client_order_id`` and every fill
    carries its order's id (picked by position, sharing the orders' buffers when in order)."""
    from framework.bulk import RunTables
    from framework.types import ExecutionReport, FillBatch

    u = universe("AAPL", "BTC/USD", "ÉTÉ")
    reports = []
    for k, leg in enumerate(("reduce", "add", "stop")):
        b = _batch(u, f"s@2024010{k + 2}T000000Z", leg, [2, 0, 1])
        pos = np.array([0, 1, 2] if k != 1 else [2, 0], np.int64)     # the second batch's fills out of order
        t = np.full(len(pos), np.datetime64("2024-01-02T00:00:00", "ns"))
        fills = FillBatch(t, b.symbol_idx[pos], np.ones(len(pos), np.int8), np.ones(len(pos)), np.full(len(pos), 10.0),
                          np.zeros(len(pos)), np.zeros(len(pos)), pos)
        reports.append((k, ExecutionReport(b, np.full(3, 4, np.int8), np.ones(3), np.full(3, 10.0), fills)))
    batches = [r.batch for _, r in reports]
    fill_ids = [client_order_id(r.batch.batch_id, u.symbols[r.batch.symbol_idx[p]], r.batch.leg)
                for _, r in reports for p in r.fills.order_pos.tolist()]
    t = RunTables.build("run", [], [], reports, [], [])
    assert t.orders["client_order_id"].tolist() == _expected(batches)
    assert t.fills["client_order_id"].tolist() == fill_ids


def test_a_packed_runs_id_check_finds_a_repeated_id_and_only_a_repeated_one(monkeypatch):
    """The uniqueness check a packed run's ids pass (``packed._unique``) on the Series column:
    a repeated id is found, missing values are not ids; texts whose hashes meet (forced here)
    are told apart by their text."""
    from framework.ledger import packed

    def column(values):
        return pa.chunked_array([pa.array(values, pa.large_string())]).to_pandas()

    distinct = column(["p-a-1", "p-b-2", None, "p-c-3", None])
    repeated = column(["p-a-1", "p-b-2", None, "p-a-1"])
    assert packed._unique(distinct, 5) and not packed._unique(repeated, 4)
    assert packed._unique_texts(distinct, chunk=2) and not packed._unique_texts(repeated, chunk=2)
    monkeypatch.setattr(packed, "hash", lambda text: 7, raising=False)      # every fingerprint the same
    assert packed._unique_texts(distinct) and not packed._unique_texts(repeated)
