"""pyarrow tables (from CSV or Parquet) to float64 arrays: numeric casts with messages
that name the column, value and row of a bad entry, the split column, and a low-memory
copy into X and Y.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from softequiv.data.files.common import LoadedTable, RowLabel
from softequiv.data.files.split import _SPLIT_HINT, _labels_to_codes, parse_split
from softequiv.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa


def _assemble(
    table: pa.Table,
    x_idx: list[int],
    y_idx: list[int],
    split_idx: int | None,
    header: Sequence[str],
    row_label: RowLabel,
) -> LoadedTable:
    """X, Y and split from a table whose columns are named by their file positions.

    The table is consumed: it is cut into record batches that are copied into X and Y
    one at a time and released once copied, so peak memory stays near one copy of the
    data rather than two. Row blocks (not columns) are copied because writing one
    column at a time into a row-major array touches every cache line once per column.
    """
    if table.num_rows == 0:
        raise InputError("the file has a header but no data rows")
    split = None
    if split_idx is not None:
        split = _table_split(table.column(str(split_idx)), row_label)
        table = table.drop_columns([str(split_idx)])
    table = _float_table(table, header, row_label)
    n = table.num_rows
    batches = table.to_batches()
    del table
    X = np.empty((n, len(x_idx)), dtype=np.float64)
    Y = np.empty((n, len(y_idx)), dtype=np.float64)
    x_names, y_names = [str(i) for i in x_idx], [str(i) for i in y_idx]
    batches.reverse()
    start = 0
    while batches:
        batch = batches.pop()
        stop = start + batch.num_rows
        if stop > start:
            X[start:stop] = _batch_matrix(batch.select(x_names))
            Y[start:stop] = _batch_matrix(batch.select(y_names))
        start = stop
    return LoadedTable(X, Y, split, [header[i] for i in x_idx], [header[i] for i in y_idx])


def _float_table(table: pa.Table, header: Sequence[str], row_label: RowLabel) -> pa.Table:
    """The table with every column cast to float64 (a no-op for CSV, read as float64)."""
    import pyarrow as pa

    for k, name in enumerate(table.column_names):
        column = table.column(k)
        if column.type != pa.float64():
            column = _as_float_column(column, header[int(name)], row_label)
            table = table.set_column(k, name, column)
    return table


def _batch_matrix(batch: pa.RecordBatch) -> np.ndarray:
    """A float64 record batch as a row-major ``[rows, columns]`` array, nulls as NaN."""
    try:
        return np.asarray(batch.to_tensor(null_to_nan=True, row_major=True))
    except (AttributeError, TypeError):  # pyarrow < 16 has no to_tensor(null_to_nan=...)
        return np.column_stack([c.to_numpy(zero_copy_only=False) for c in batch.columns])


def _as_float_column(column: pa.ChunkedArray, name: str, row_label: RowLabel) -> pa.ChunkedArray:
    """The column cast to float64 (nulls kept, later read as NaN), or InputError."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if (
        pa.types.is_floating(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    ):
        return column.cast(pa.float64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _non_numeric_error(name, column, None, row_label) from None
    raise InputError(f"column {name!r} has type {kind}, not numbers")


def _non_numeric_error(
    name: str, column: pa.ChunkedArray, value: str | None, row_label: RowLabel
) -> InputError:
    """The error for a text column, naming its first unparsable value and row."""
    found = _find_value(column, value) if value is not None else None
    if found is None:
        found = _first_unparsable(column)
    if found is None:
        return InputError(f"column {name!r} is not numeric")
    row, bad = found
    return InputError(f"column {name!r} is not numeric: {bad!r} at {row_label(row)}")


def _find_value(column: pa.ChunkedArray, value: str) -> tuple[int, str] | None:
    """The first row holding ``value`` exactly, or None."""
    import pyarrow.compute as pc

    row = pc.index(column, value).as_py()
    return (row, value) if row is not None and row >= 0 else None


def _first_unparsable(column: pa.ChunkedArray) -> tuple[int, str] | None:
    """The first row whose text pyarrow cannot cast to float64 (bisection, O(n))."""
    offset = 0
    for chunk in column.chunks:
        if not _casts(chunk):
            lo, hi = 0, len(chunk)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _casts(chunk.slice(lo, mid - lo)):
                    lo = mid
                else:
                    hi = mid
            return offset + lo, str(chunk[lo].as_py())
        offset += len(chunk)
    return None


def _casts(array: pa.Array) -> bool:
    """Whether every value of a text array parses as float64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.cast(array, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _table_split(column: pa.ChunkedArray, row_label: RowLabel) -> np.ndarray:
    """Labels from a table's split column (integers or text; no missing values)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        row = int(np.argmax(pc.is_null(column).to_numpy(zero_copy_only=False)))
        raise InputError(f"split is missing at {row_label(row)}; {_SPLIT_HINT}")
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return parse_split(column.to_numpy(), row_label)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"split column has type {column.type}; {_SPLIT_HINT}")
    encoded = column.combine_chunks().dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return _labels_to_codes(encoded.dictionary.to_pylist(), indices, row_label)


def _table_matrix(
    table: pa.Table, positions: list[int], header: Sequence[str], row_label: RowLabel
) -> np.ndarray:
    """Columns ``positions`` of a table (named by position) as float64 ``[N, d]``."""
    if table.num_rows == 0:
        raise InputError("the file has a header but no data rows")
    table = _float_table(table.select([str(i) for i in positions]), header, row_label)
    X = np.empty((table.num_rows, len(positions)), dtype=np.float64)
    start = 0
    for batch in table.to_batches():
        stop = start + batch.num_rows
        if stop > start:
            X[start:stop] = _batch_matrix(batch)
        start = stop
    return X
