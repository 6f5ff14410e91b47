"""Load a user's data file into float64 arrays, check it, and write predictions back.

Users bring their own data as ``.npz``, ``.csv`` or ``.parquet``. Everything here turns
the many ways such a file can be wrong into one :class:`~softequiv.errors.InputError`
with a one-line message that names the file, the column and (where cheap) the row, so
the CLI can print it instead of a traceback from deep inside pandas, pyarrow or numpy.

CSV and Parquet go through pyarrow directly (no pandas): it parses in parallel, reads
only the selected columns, and lets us copy each column straight into the output
arrays, so a 1,000,000 x 40 numeric CSV loads in seconds within well under 2 GB.
pyarrow is only imported for those two formats; ``.npz`` needs numpy alone.

One module per concern: ``columns`` (the ``x_cols``/``y_cols`` selection grammar),
``csvfile``, ``parquet`` and ``npz`` (the formats), ``tables`` (pyarrow tables to
arrays), ``validation`` (array checks), ``split`` (train/valid/test labels),
``predictions`` (writing predictions) and ``common`` (shared records and messages).
This module dispatches on the extension and re-exports the public API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from softequiv.data.files.columns import SPLIT_COLUMN, resolve_columns
from softequiv.data.files.common import (
    SUPPORTED_EXTENSIONS,
    LoadedTable,
    RowLabel,
    _existing_file,
    _extension,
    _line_label,
    _require_pyarrow,
    _row_label,
)
from softequiv.data.files.csvfile import _load_csv, _load_csv_inputs
from softequiv.data.files.npz import _load_npz, _load_npz_inputs
from softequiv.data.files.parquet import _load_parquet, _load_parquet_inputs
from softequiv.data.files.predictions import save_predictions
from softequiv.data.files.split import SPLIT_NAMES, parse_split, split_rows
from softequiv.data.files.validation import validate_arrays, validate_inputs
from softequiv.errors import InputError

__all__ = [
    "SPLIT_COLUMN",
    "SPLIT_NAMES",
    "SUPPORTED_EXTENSIONS",
    "LoadedTable",
    "RowLabel",
    "load_inputs",
    "load_table",
    "parse_split",
    "resolve_columns",
    "save_predictions",
    "split_rows",
    "validate_arrays",
    "validate_inputs",
]


def load_table(
    path: str | Path, *, x_cols: str | None = None, y_cols: str | None = None
) -> LoadedTable:
    """Read X, Y and an optional split from a ``.npz``, ``.csv`` or ``.parquet`` file.

    ``.npz``: arrays ``X`` and ``Y`` (2-D, 1-D meaning one column, or both 4-D fields
    ``[N, C, H, W]``) and optionally ``split`` (ints 0/1/2 or strings train/valid/test).
    The arrays are named by the file, so ``x_cols``/``y_cols`` must not be given for
    ``.npz`` (an InputError says so).

    ``.csv`` (comma-separated, header line first, UTF-8) and ``.parquet``: ``x_cols``
    and ``y_cols`` are required and use the selection grammar in this module's
    docstring. A column named ``split`` is used as the split when present.

    The result is checked (2-D, same row counts, finite, at least one row); every
    problem raises :class:`InputError` with a one-line message.
    """
    path = _existing_file(path)
    ext = _extension(path)
    try:
        table, row_label = _read_table(path, ext, x_cols, y_cols)
        validate_arrays(
            table.X,
            table.Y,
            min_rows=1,
            x_names=table.x_names,
            y_names=table.y_names,
            row_label=row_label,
        )
    except InputError as e:
        raise InputError(f"{path.name}: {e}") from None
    return table


def _read_table(
    path: Path, ext: str, x_cols: str | None, y_cols: str | None
) -> tuple[LoadedTable, RowLabel]:
    """Dispatch on the extension; also returns how to describe rows in messages."""
    if ext == ".npz":
        if x_cols is not None or y_cols is not None:
            raise InputError(
                "x_cols/y_cols apply to .csv and .parquet files only; "
                "a .npz file names its arrays X and Y"
            )
        return _load_npz(path), _row_label
    if x_cols is None or y_cols is None:
        missing = "x_cols" if x_cols is None else "y_cols"
        raise InputError(f"{missing} is required for {ext} files (e.g. 'x0:x17')")
    _require_pyarrow(f"reading {ext} files")
    if ext == ".csv":
        return _load_csv(path, x_cols, y_cols), _line_label
    return _load_parquet(path, x_cols, y_cols), _row_label


def load_inputs(path: str | Path, *, x_cols: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Read the inputs X (to predict from) of a ``.npz``, ``.csv`` or ``.parquet`` file.

    ``.npz``: array ``X`` (2-D, 1-D meaning one column, or 4-D fields ``[N, C, H, W]``);
    any ``Y`` or ``split`` is ignored and ``x_cols`` must not be given. ``.csv`` /
    ``.parquet``: ``x_cols`` is required and follows the selection grammar of
    :mod:`softequiv.data.files.columns`; other columns are not read. Returns float64
    ``X [N, d]`` (or fields) and its column names (``x0..`` for ``.npz``). Every problem
    (missing or unreadable file, text, NaN/inf, no rows) raises InputError with a
    one-line message naming the file.
    """
    path = _existing_file(path)
    ext = _extension(path)
    try:
        if ext == ".npz":
            if x_cols is not None:
                raise InputError(
                    "x_cols applies to .csv and .parquet files only; "
                    "a .npz file names its input array X"
                )
            X, row_label = _load_npz_inputs(path), _row_label
            names = [f"x{j}" for j in range(X.shape[1])]
        else:
            if x_cols is None:
                raise InputError(f"x_cols is required for {ext} files (e.g. 'x0:x17')")
            _require_pyarrow(f"reading {ext} files")
            if ext == ".csv":
                X, names = _load_csv_inputs(path, x_cols)
                row_label = _line_label
            else:
                X, names = _load_parquet_inputs(path, x_cols)
                row_label = _row_label
        validate_inputs(X, min_rows=1, x_names=names, row_label=row_label)
    except InputError as e:
        raise InputError(f"{path.name}: {e}") from None
    return X, names
