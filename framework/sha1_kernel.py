"""SHA-1 (FIPS 180-4) of many short texts in one compiled pass: a backtest's client order ids.

Each client order id carries the first ten hex characters of the SHA-1 of ``batch|symbol|leg``
(``framework.types.client_order_id``; ids recorded in existing ledgers must be reproducible, so
the digest stays SHA-1). ``hashlib`` is the reference, but it has no call for many messages: each
digest costs a hash object, an OpenSSL context copy and a bytes object (~0.4 us for a 40-byte
text), which for a backtest's million orders is most of the time spent naming them. This loop
hashes them all from one Arrow buffer with no Python object per text, and writes the hex
characters straight into the ids' text buffer. It is checked against ``hashlib`` for every
message length around the padding boundaries (tests/framework/test_client_ids.py).

numba is imported here only, and this module only when a backtest's ids are made.
"""

from __future__ import annotations

import numpy as np
from numba import njit

HEX = np.frombuffer(b"0123456789abcdef", np.uint8).copy()
_M = np.uint64(0xFFFFFFFF)


@njit(cache=True, nogil=True, inline="always")
def _rotl(x, n):
    return ((x << np.uint64(n)) | (x >> np.uint64(32 - n))) & _M


@njit(cache=True, nogil=True)
def sha1_hex_prefixes(data, offsets, hexch, width, out):
    """``out[i*width:(i+1)*width]`` = the first ``width`` (<= 40) hex characters of the SHA-1 of
    ``data[offsets[i]:offsets[i+1]]``, for every i; ``hexch`` is ``HEX``."""
    n = len(offsets) - 1
    w = np.empty(80, np.uint64)
    block = np.zeros(64, np.uint8)
    for i in range(n):
        lo = offsets[i]
        length = offsets[i + 1] - lo
        h0 = np.uint64(0x67452301)
        h1 = np.uint64(0xEFCDAB89)
        h2 = np.uint64(0x98BADCFE)
        h3 = np.uint64(0x10325476)
        h4 = np.uint64(0xC3D2E1F0)
        n_blocks = (length + 8) // 64 + 1           # the text, a 0x80 byte, zeros, its length in bits
        for blk in range(n_blocks):
            base = blk * 64
            take = min(max(length - base, 0), 64)
            for k in range(take):
                block[k] = data[lo + base + k]
            for k in range(take, 64):
                block[k] = 0
            if 0 <= length - base < 64:
                block[length - base] = 0x80
            if blk == n_blocks - 1:
                bits = length * 8
                for k in range(8):
                    block[63 - k] = (bits >> (8 * k)) & 0xFF
            for t in range(16):
                w[t] = (np.uint64(block[4 * t]) << np.uint64(24)) | (np.uint64(block[4 * t + 1]) << np.uint64(16)) \
                    | (np.uint64(block[4 * t + 2]) << np.uint64(8)) | np.uint64(block[4 * t + 3])
            for t in range(16, 80):
                w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
            a, b, c, d, e = h0, h1, h2, h3, h4
            for t in range(20):
                temp = (_rotl(a, 5) + (((b & c) | ((~b) & d)) & _M) + e + np.uint64(0x5A827999) + w[t]) & _M
                e, d, c, b, a = d, c, _rotl(b, 30), a, temp
            for t in range(20, 40):
                temp = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint64(0x6ED9EBA1) + w[t]) & _M
                e, d, c, b, a = d, c, _rotl(b, 30), a, temp
            for t in range(40, 60):
                temp = (_rotl(a, 5) + ((b & c) | (b & d) | (c & d)) + e + np.uint64(0x8F1BBCDC) + w[t]) & _M
                e, d, c, b, a = d, c, _rotl(b, 30), a, temp
            for t in range(60, 80):
                temp = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint64(0xCA62C1D6) + w[t]) & _M
                e, d, c, b, a = d, c, _rotl(b, 30), a, temp
            h0 = (h0 + a) & _M
            h1 = (h1 + b) & _M
            h2 = (h2 + c) & _M
            h3 = (h3 + d) & _M
            h4 = (h4 + e) & _M
        o = i * width
        for j in range(width):
            word = j // 8
            hw = h0 if word == 0 else (h1 if word == 1 else (h2 if word == 2 else (h3 if word == 3 else h4)))
            out[o + j] = hexch[(hw >> np.uint64(28 - 4 * (j % 8))) & np.uint64(15)]
