"""CSV files (comma-separated, header line first, UTF-8), read with pyarrow."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from softequiv.data.files.columns import _select, _select_inputs
from softequiv.data.files.common import LoadedTable, _line_label, _one_line
from softequiv.data.files.tables import _assemble, _non_numeric_error, _table_matrix
from softequiv.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa


def _load_csv(path: Path, x_cols: str, y_cols: str) -> LoadedTable:
    """Read the selected columns of a CSV file (and its split column, if any)."""
    header = _csv_header(path)
    x_idx, y_idx, split_idx = _select(header, x_cols, y_cols)
    wanted = x_idx + y_idx + ([split_idx] if split_idx is not None else [])
    table = _read_csv_table(path, header, wanted, split_idx)
    return _assemble(table, x_idx, y_idx, split_idx, header, _line_label)


def _load_csv_inputs(path: Path, x_cols: str) -> tuple[np.ndarray, list[str]]:
    """The selected input columns of a CSV file as float64 ``[N, d]`` and their names."""
    header = _csv_header(path)
    x_idx = _select_inputs(header, x_cols)
    table = _read_csv_table(path, header, x_idx, None)
    return _table_matrix(table, x_idx, header, _line_label), [header[i] for i in x_idx]


def _csv_header(path: Path) -> list[str]:
    """The column names on the first line of a CSV file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text; is it really a CSV file?") from None
    except (OSError, csv.Error) as e:
        raise InputError(f"cannot read the header: {_one_line(e)}") from None
    if not header or all(not name.strip() for name in header):
        raise InputError("no header line (the first line must name the columns)")
    return header


def _read_csv_table(
    path: Path, header: Sequence[str], wanted: list[int], split_idx: int | None
) -> pa.Table:
    """The wanted columns, named by position: numbers as float64, the split column as text.

    Columns are renamed to their positions so that duplicate or odd header names cannot
    confuse pyarrow; the header line itself is skipped.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [str(i) for i in range(len(header))]
    types = {names[i]: (pa.string() if i == split_idx else pa.float64()) for i in wanted}
    read_options = pacsv.ReadOptions(column_names=names, skip_rows=1)
    convert = pacsv.ConvertOptions(column_types=types, include_columns=[names[i] for i in wanted])
    try:
        table = pacsv.read_csv(path, read_options=read_options, convert_options=convert)
    except pa.ArrowInvalid as e:
        raise _csv_read_error(path, header, e) from None
    except OSError as e:
        raise InputError(f"cannot read: {_one_line(e)}") from None
    return table


def _csv_read_error(path: Path, header: Sequence[str], error: Exception) -> InputError:
    """Translate pyarrow's CSV error; conversion errors get the column, value and line."""
    message = str(error)
    match = re.search(r"CSV column #(\d+).*conversion error.*invalid value '(.*)'", message)
    if not match:
        return InputError(f"cannot parse as CSV: {_one_line(message)}")
    i, value = int(match[1]), match[2]
    column = _read_csv_text_column(path, header, i)
    return _non_numeric_error(header[i], column, value, _line_label)


def _read_csv_text_column(path: Path, header: Sequence[str], i: int) -> pa.ChunkedArray:
    """Column ``i`` of a CSV file as text (only used to describe a bad value)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [str(k) for k in range(len(header))]
    read_options = pacsv.ReadOptions(column_names=names, skip_rows=1)
    convert = pacsv.ConvertOptions(column_types={names[i]: pa.string()}, include_columns=[names[i]])
    table = pacsv.read_csv(path, read_options=read_options, convert_options=convert)
    return table.column(0)
