"""Arrow fast paths for reading signal CSV files and their numbers (issue 15, SPEC §15).

A large archive (millions of rows) spent most of its read in pandas' CSV parser and in numpy's
text-to-float cast. pyarrow parses CSV on several threads and casts text to float in C++, and its
strings are the ones pandas keeps anyway (``str`` columns are Arrow-backed), so no copy is made.

Both paths are pure shortcuts: each returns None whenever it cannot be sure of the same result as
the pandas path in framework.signal_files, which then runs as before, so every value and every
message (file, line, field) stays the same. pandas and pyarrow are imported inside the functions
(``parity --help`` imports neither).

- CSV: taken only for files without a quote character (pandas and pyarrow differ on malformed
  quoting, e.g. an unterminated quote: pandas refuses the file, pyarrow reads to the end), one
  byte-order mark at most, a header whose names are unique and non-empty (pandas renames repeated
  and blank names) and a row count equal to the records counted from the bytes. pyarrow refuses
  ragged rows and (with ``ignore_empty_lines=False``) blank lines, which pandas pads or keeps:
  those files fall back too. Arrow checks that every value is UTF-8, as the pandas path does.
  pandas and pyarrow agreed on every file of a fuzz of quote-free CSV text (CR/LF/CRLF, blank
  lines and fields, NUL, BOMs, tabs, ``NA``/``null``); tests/framework/test_signals_fast_read.py
  compares the two paths on the earlier systems' files and on tricky ones.
- Numbers: pyarrow's cast accepts a subset of what numpy's does (no surrounding spaces, no ``_``
  between digits, no non-ASCII digits) and both round correctly, so a cast that succeeds gives the
  same bits. It is kept only when no value is missing and every result is finite, which leaves
  NaN, infinities and their spellings to the existing path.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BOM = b"\xef\xbb\xbf"


def read_csv_fast(data: bytes, records: int) -> pd.DataFrame | None:
    """Return the file as pandas would read it (every column ``str``), or None to use pandas.

    ``records`` is the number of CSV records in ``data`` (header included), counted quote-aware.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    expected = pd.api.types.pandas_dtype(str)
    if not (isinstance(expected, pd.StringDtype) and expected.storage == "pyarrow") or records < 2:
        return None
    start = len(BOM) if data.startswith(BOM) else 0
    if data.startswith(BOM, start):         # pandas' utf-8-sig removes one mark; pyarrow might remove more
        return None
    if b'"' in data:                          # quoting: pandas and pyarrow differ on malformed quotes
        return None
    end = data.find(b"\n", start)
    header = data[start: end if end >= 0 else len(data)].removesuffix(b"\r")
    if b"\r" in header:                       # lone carriage returns end lines
        return None
    try:
        names = header.decode("utf-8").split(",")
    except UnicodeDecodeError:              # the caller words it
        return None
    if "" in names or len(set(names)) != len(names):
        return None
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data)[start:],
            read_options=pacsv.ReadOptions(use_threads=True, encoding="utf8"),
            parse_options=pacsv.ParseOptions(delimiter=",", quote_char='"', double_quote=True, escape_char=False,
                                             newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.large_string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                 check_utf8=True))
    except (pa.ArrowException, ValueError):
        return None
    if (table.column_names != names or table.num_rows != records - 1
            or any(c.type != pa.large_string() or c.null_count for c in table.columns)):
        return None
    df = table.to_pandas(types_mapper={pa.large_string(): expected}.get)   # wraps Arrow's strings, no copy
    del table
    release_arrow_memory()                  # the parser's buffers
    return df if all(dt == expected for dt in df.dtypes) else None


def numbers_fast(text: pd.Series) -> np.ndarray | None:
    """Return Arrow-backed text as float64 when every value is a finite number, else None."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (isinstance(text.dtype, pd.StringDtype) and text.dtype.storage == "pyarrow"):
        return None
    arr = text.array.__arrow_array__()
    if not isinstance(arr, pa.ChunkedArray):
        arr = pa.chunked_array([arr])
    if arr.null_count:
        return None
    try:
        cast = pc.cast(arr, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # One numpy array (writeable, like numpy's cast), filled from views of the chunks: no third copy.
    values = np.concatenate([c.to_numpy() for c in cast.chunks] or [np.zeros(0)]).astype(np.float64, copy=False)
    del cast
    return values if np.isfinite(values).all() else None


def release_arrow_memory() -> None:
    """Give Arrow's freed memory back to the system (its allocator keeps it for reuse otherwise).

    Called once the text of an archive is parsed and dropped, so the arrays built next do not come
    on top of it in the peak. Does nothing when pyarrow was never imported.
    """
    pa = sys.modules.get("pyarrow")
    release = getattr(pa.default_memory_pool(), "release_unused", None) if pa is not None else None
    if release is not None:
        release()
