"""Parquet files, read with pyarrow (only the selected columns)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from softequiv.data.files.columns import _select, _select_inputs
from softequiv.data.files.common import LoadedTable, _one_line, _row_label
from softequiv.data.files.tables import _assemble, _table_matrix
from softequiv.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa


def _load_parquet(path: Path, x_cols: str, y_cols: str) -> LoadedTable:
    """Read the selected columns of a Parquet file (and its split column, if any)."""
    parquet, header = _open_parquet(path)
    x_idx, y_idx, split_idx = _select(header, x_cols, y_cols)
    wanted = x_idx + y_idx + ([split_idx] if split_idx is not None else [])
    _check_unique_names(header, wanted)
    table = _read_parquet_table(parquet, header, wanted)
    return _assemble(table, x_idx, y_idx, split_idx, header, _row_label)


def _load_parquet_inputs(path: Path, x_cols: str) -> tuple[np.ndarray, list[str]]:
    """The selected input columns of a Parquet file as float64 ``[N, d]`` and names."""
    parquet, header = _open_parquet(path)
    x_idx = _select_inputs(header, x_cols)
    _check_unique_names(header, x_idx)
    table = _read_parquet_table(parquet, header, x_idx)
    return _table_matrix(table, x_idx, header, _row_label), [header[i] for i in x_idx]


def _open_parquet(path: Path) -> tuple[Any, list[str]]:
    """The Parquet file (not yet read) and its column names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"cannot read as Parquet: {_one_line(e)}") from None
    return parquet, list(parquet.schema_arrow.names)


def _read_parquet_table(parquet: Any, header: Sequence[str], wanted: list[int]) -> pa.Table:
    """The wanted columns in selection order, renamed to their positions like CSV's."""
    import pyarrow as pa

    names = [header[i] for i in wanted]
    try:
        table = parquet.read(columns=names)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"cannot read as Parquet: {_one_line(e)}") from None
    return table.select(names).rename_columns([str(i) for i in wanted])


def _check_unique_names(header: Sequence[str], wanted: list[int]) -> None:
    """Parquet columns are read by name, so a selected name must occur only once."""
    for i in wanted:
        if header.count(header[i]) > 1:
            raise InputError(f"column name {header[i]!r} appears more than once in the file")
