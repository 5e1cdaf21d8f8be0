"""The compiled SHA-1 of a backtest's client order ids (``framework.sha1_kernel``) is ``hashlib``'s:
ids recorded in existing ledgers must be reproducible, so not one digest may differ."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def test_the_compiled_sha1_is_hashlibs_for_every_length_around_the_padding():
    """Every length from 0 to 200 bytes (one, two and three blocks, and the 55/56/63/64 padding
    edges), random bytes, non-ASCII text, at every prefix width up to the whole 40 characters."""
    import hashlib

    from framework.sha1_kernel import HEX, sha1_hex_prefixes

    rng = np.random.default_rng(11)
    msgs = [rng.bytes(k) for k in range(201)] + [bytes(64), b"\xff" * 119, "ÉTÉ 😀/USD".encode(), b"abc"]
    arr = pa.array(msgs, pa.large_binary()).slice(1)           # an offset into the buffers, as a slice has
    offsets = np.frombuffer(arr.buffers()[1], np.int64, len(arr) + 1, arr.offset * 8)
    data = np.frombuffer(arr.buffers()[2], np.uint8)
    for width in (10, 40, 7):
        out = np.empty(width * len(arr), np.uint8)
        sha1_hex_prefixes(data, offsets, HEX, width, out)
        got = out.tobytes().decode()
        assert [got[i * width:(i + 1) * width] for i in range(len(arr))] == \
            [hashlib.sha1(m).hexdigest()[:width] for m in msgs[1:]]
        assert got[-width:] == "a9993e364706816aba3e25717850c26c9cd0d89d"[:width]   # FIPS 180's "abc"
