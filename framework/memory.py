"""Hand memory a stage has freed back to the system, so the next stage does not stack on top of it.

A backtest of a million orders reads its bars and signals (pyarrow keeps the freed buffers in its
own pool), then replays, then turns the journal's many small per-batch arrays into whole columns
(the C library keeps the freed small blocks in its heap). Neither gives the memory back by itself,
so the process's resident memory at its peak (the ledger write and the artifacts, issue 15) would
count what the earlier stages no longer use. ``release_freed`` is called between those stages.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` (Linux; None where the C library has none, e.g. musl or macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def release_freed(heap: bool = True) -> None:
    """Return freed memory to the system: pyarrow's unused pool memory (when pyarrow is loaded)
    and, with ``heap``, the C heap's free pages. Changes no value. The pool's release costs
    microseconds; the heap's walks the whole heap (tens of milliseconds in a large backtest), so a
    loop over parts releases the pool each part and the heap once after."""
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    trim = _malloc_trim() if heap else None
    if trim is not None:
        trim(0)
