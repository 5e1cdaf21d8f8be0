"""A backtest's client order ids as one Arrow string column (issue 15).

A backtest of 500 symbols over twenty years names a million orders. Made one at a time (the
per-batch ``OrderBatch.client_order_ids``, which live paths use) they cost a Python loop's string
work per order, and held as a list a Python ``str`` each (~100 bytes). ``ClientIds`` makes the ids
of a run's batches in blocks of ``CHUNK``, byte for byte ``framework.order_ids.client_order_id``:

- the readable part (``p-`` strategy ``-`` time ``-`` symbol ``-`` leg) is joined by Arrow from
  texts made once per batch and once per symbol of each universe, and cut to 48 characters the way
  ``client_order_id`` cuts it (``readable[:47 - len(leg)] + "-" + leg``, counted in characters);
- the SHA-1 of ``batch|symbol|leg`` (joined by Arrow too, as UTF-8) is taken by C-level iteration:
  the joined texts, each ended by a NUL, are split into bytes objects by one ``bytes.split``, and
  ``map`` feeds them to ``hashlib.sha1``; the digests are hexlified at once and numpy keeps each
  one's first ten hex characters.

The result is a ``pyarrow.ChunkedArray`` of ``large_string`` (one chunk a block), which
``ChunkedArray.to_pandas()`` turns into pandas' Arrow-backed ``str`` Series without a copy.
"""

from __future__ import annotations

import hashlib
from binascii import hexlify
from operator import methodcaller

import numpy as np

from framework.order_ids import LONGEST_CUT_LEG, OWNED_PREFIX
from framework.types import OrderBatch

CHUNK = 1 << 16          # ids made at once: their temporaries (joined texts, digests) stay a few MB
READABLE_MAX = 48        # ``client_order_id``'s cap on the readable part (``p-`` not counted)
DIGEST_CHARS = 10
_END = b"\x00"           # ends each hashed text (a text holding one is hashed by slicing instead)
_DIGEST = methodcaller("digest")


class ClientIds:
    """The client order ids of many batches, added in order, as one Arrow string column: equal, id
    for id, to ``[i for b in batches for i in b.client_order_ids()]`` (a batch carrying its own
    ids, from recovery, keeps them)."""

    def __init__(self) -> None:
        self._done: list = []                       # Arrow arrays of the ids made so far
        self._pending: list[OrderBatch] = []
        self._n_pending = 0
        self._symbols: dict[int, tuple] = {}         # id(universe symbols) -> (symbols, raw, readable, lengths)

    def add(self, batch: OrderBatch) -> None:
        if not len(batch):
            return
        if batch.client_ids is not None or len(batch.leg) > LONGEST_CUT_LEG:
            import pyarrow as pa

            self._flush()
            self._done.append(pa.array(batch.client_order_ids(), pa.large_string()))
            return
        self._pending.append(batch)
        self._n_pending += len(batch)
        if self._n_pending >= CHUNK:
            self._flush()

    def array(self):
        """Every id added, as a ``pyarrow.ChunkedArray`` of ``large_string`` (not joined into one
        array: no second copy of a million ids)."""
        import pyarrow as pa

        self._flush()
        done, self._done = self._done, []
        return pa.chunked_array(done, pa.large_string())

    def _universe(self, symbols: tuple[str, ...]) -> tuple:
        got = self._symbols.get(id(symbols))
        if got is None or got[0] is not symbols:
            import pyarrow as pa

            readable = [s.replace("/", "") for s in symbols]
            got = self._symbols[id(symbols)] = (symbols, pa.array(symbols, pa.large_string()),
                                                pa.array(readable, pa.large_string()),
                                                np.array([len(s) for s in readable], np.int64))
        return got

    def _flush(self) -> None:
        batches, self._pending, self._n_pending = self._pending, [], 0
        if batches:
            self._done.append(self._make(batches))

    def _make(self, batches: list[OrderBatch]):
        """The ids of a block of batches, in order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        # the symbols of the block's universes, one table (a run has one universe)
        base: dict[int, int] = {}
        tables: list[tuple] = []       # (symbols, raw texts, readable texts, readable lengths) a universe
        for b in batches:
            if id(b.universe.symbols) not in base:
                base[id(b.universe.symbols)] = sum(len(t[0]) for t in tables)
                tables.append(self._universe(b.universe.symbols))
        if len(tables) == 1:
            _, sym_raw, sym_read, sym_len = tables[0]
        else:
            sym_raw, sym_read = (pa.concat_arrays([t[k] for t in tables]) for k in (1, 2))
            sym_len = np.concatenate([t[3] for t in tables])
        bids, legs, legz, heads = [], [], [], []
        for b in batches:
            strategy, stamp = b.batch_id.split("@")[0], b.batch_id.split("@")[-1]
            bids.append(b.batch_id)
            legs.append(b.leg)
            legz.append(b.leg + "\x00")
            heads.append(f"{OWNED_PREFIX}{strategy[:16]}-{stamp}")
        counts = np.fromiter((len(b) for b in batches), np.int64, len(batches))
        at = pa.array(np.repeat(np.arange(len(batches), dtype=np.int32), counts))
        sym = np.concatenate([b.symbol_idx for b in batches]).astype(np.int64, copy=False)
        if len(tables) > 1:
            sym = sym + np.repeat(np.fromiter((base[id(b.universe.symbols)] for b in batches), np.int64,
                                              len(batches)), counts)
        syms = pa.array(sym)
        leg_b, head_b = pa.array(legs, pa.large_string()).take(at), pa.array(heads, pa.large_string()).take(at)
        sym_b = sym_read.take(syms)
        digest = _digests(pc.binary_join_element_wise(pa.array(bids, pa.large_string()).take(at),
                                                      sym_raw.take(syms), pa.array(legz, pa.large_string()).take(at),
                                                      pa.scalar("|", pa.large_string())))
        # the readable part's length in characters (``p-`` included): the cut when over 48
        leg_len = np.fromiter((len(x) for x in legs), np.int64, len(legs))
        head_len = np.fromiter((len(x) for x in heads), np.int64, len(heads))
        full = (head_len + leg_len + 2)[at.to_numpy()] + sym_len[sym]
        over = full > len(OWNED_PREFIX) + READABLE_MAX
        dash = pa.scalar("-", pa.large_string())
        if not over.any():
            ids = pc.binary_join_element_wise(head_b, sym_b, leg_b, digest, dash)
        else:
            readable = pc.binary_join_element_wise(head_b, sym_b, leg_b, dash)
            cut = (len(OWNED_PREFIX) + READABLE_MAX - 1 - leg_len)[at.to_numpy()]
            ids = pc.binary_join_element_wise(_capped(readable, leg_b, cut, over), digest, dash)
        return ids


def _capped(readable, leg, cut: np.ndarray, over: np.ndarray):
    """``client_order_id``'s cut of the readable parts marked ``over``: their first ``cut``
    characters (code points, as Python counts them), then ``-`` and the leg."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for c in np.unique(cut[over]).tolist():         # one pass per leg length
        mask = pa.array(over & (cut == c))
        short = pc.utf8_slice_codeunits(readable.filter(mask), 0, c)
        readable = pc.replace_with_mask(readable, mask, pc.binary_join_element_wise(short, leg.filter(mask), pa.scalar("-", pa.large_string())))
    return readable


def _digests(texts):
    """The first ten hex characters of the SHA-1 of each text of ``texts`` (an Arrow large_string
    array whose every text ends with a NUL, not hashed), as an Arrow large_string array."""
    import pyarrow as pa

    n = len(texts)
    offsets = np.frombuffer(texts.buffers()[1], np.int64, n + 1, texts.offset * 8)
    data = memoryview(texts.buffers()[2])[offsets[0]:offsets[-1]].tobytes()
    pieces = data.split(_END)
    if len(pieces) != n + 1:        # a text holds a NUL itself: cut the texts at their offsets
        ends = (offsets[1:] - offsets[0] - 1).tolist()
        pieces = list(map(data.__getitem__, map(slice, (offsets[:-1] - offsets[0]).tolist(), ends)))
    else:
        pieces.pop()
    hexed = np.frombuffer(hexlify(b"".join(map(_DIGEST, map(hashlib.sha1, pieces)))), np.uint8).reshape(n, 40)
    text = np.ascontiguousarray(hexed[:, :DIGEST_CHARS]).reshape(-1)
    offsets_out = np.arange(0, DIGEST_CHARS * n + 1, DIGEST_CHARS, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets_out), pa.py_buffer(text))
