"""A large CSV file read in byte ranges, one pyarrow streaming reader per range, on several threads.

pyarrow's streaming CSV reader (what a 300 MB bar file is read with, block by block, so it never
sits in memory whole) parses one block after the other on one core. A file cut at line breaks into
a few ranges, each range streamed by its own reader on its own thread, is parsed on as many cores:
pyarrow parses without the GIL, and only the small per-block hand-over runs Python. The ranges'
blocks come back in file order, so row order (and each row's line number) is the file's.

Cutting at a line break assumes no quoted field holds one: a range that begins inside such a field
fails to parse or misreads its types, and the caller then reads the file the careful way.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
MIN_RANGE = 32 << 20        # bytes: smaller files are one range (threads cost more than they give)


class _Range(io.RawIOBase):
    """The bytes ``start..end`` of a file, as a readable stream."""

    def __init__(self, path: Path, start: int, end: int):
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._f.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        view = memoryview(b)[: self._left]
        n = self._f.readinto(view)
        self._left -= n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def cut_points(path: Path, parts: int) -> list[int]:
    """Offsets where each range starts (the first at 0, the others just after a line break) and
    the file's size last; fewer ranges than ``parts`` for a small file."""
    size = path.stat().st_size
    parts = max(1, min(parts, size // MIN_RANGE))
    starts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(size * k // parts)
            f.readline()                        # to the end of the line the cut fell in
            at = f.tell()
            if starts[-1] < at < size:
                starts.append(at)
    return starts + [size]


def read_ranges(path: Path, read: Callable[[io.RawIOBase, bool], T], parts: int | None = None) -> list[T]:
    """``read(stream, first)`` for each range of ``path`` (``first``: the range that holds the
    header), each on its own thread; their results in file order. An error in any range is raised."""
    parts = parts or min(os.cpu_count() or 1, 4)
    cuts = cut_points(path, parts)
    bounds = list(zip(cuts[:-1], cuts[1:]))

    def one(k: int) -> T:
        with _Range(path, *bounds[k]) as stream:
            return read(stream, k == 0)

    if len(bounds) == 1:
        return [one(0)]
    with ThreadPoolExecutor(len(bounds), thread_name_prefix="parity-csv") as pool:
        return list(pool.map(one, range(len(bounds))))
