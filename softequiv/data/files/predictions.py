"""Writing predictions: ``.npz`` (one array ``Y``) or ``.csv`` with a header."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from softequiv.atomic import atomic_path
from softequiv.data.files.common import _one_line, _require_pyarrow
from softequiv.errors import InputError


def save_predictions(path: str | Path, Y_pred: np.ndarray, names: list[str] | None = None) -> None:
    """Write predictions to ``.npz`` (one array ``Y``) or ``.csv`` (header + one row each);
    fields ``[N, C, H, W]`` go to ``.npz`` only.

    The CSV header is ``names`` (one per column) or ``y0, y1, ...``; values are written
    with the shortest text that reads back to the same float64. The file is written
    next to ``path`` and renamed into place when complete, so a failed or interrupted
    write leaves an existing ``path`` as it was. Other extensions, a missing directory
    or a failed write raise InputError.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".npz", ".csv"):
        raise InputError(f"{path.name}: predictions can be saved as .npz or .csv, not '{ext}'")
    Y = _prediction_matrix(Y_pred)
    if Y.ndim == 4 and ext != ".npz":
        raise InputError(f"{path.name}: predicted fields [N, C, H, W] can be saved as .npz "
                         "only")
    names = _prediction_names(names, Y.shape[1])
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist")
    if ext == ".csv":
        _require_pyarrow("writing .csv files")
    try:
        with atomic_path(path) as tmp:
            if ext == ".npz":
                with open(tmp, "wb") as f:
                    np.savez(f, Y=Y)
            else:
                _write_csv(tmp, Y, names)
    except OSError as e:
        raise InputError(f"cannot write {path}: {_one_line(e)}") from None


def _prediction_matrix(Y_pred: Any) -> np.ndarray:
    """Predictions as float64 ``[N, k]`` (1-D means one column) or fields ``[N, C, H, W]``."""
    try:
        Y = np.asarray(Y_pred, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"predictions are not an array of numbers: {_one_line(e)}") from None
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim not in (2, 4):
        raise InputError(f"predictions must be 1-D, 2-D or 4-D fields, got shape {Y.shape}")
    return Y


def _prediction_names(names: list[str] | None, k: int) -> list[str]:
    """Column names for the CSV header: the given ones (one per column) or y0..y{k-1}."""
    if names is None:
        return [f"y{j}" for j in range(k)]
    if len(names) != k:
        raise InputError(f"got {len(names)} names for {k} prediction columns")
    return [str(name) for name in names]


def _write_csv(path: Path, Y: np.ndarray, names: list[str]) -> None:
    """Header (quoted only where needed) then rows, written by pyarrow for speed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(names)
    table = pa.Table.from_arrays([pa.array(Y[:, j]) for j in range(Y.shape[1])], names=names)
    with open(path, "wb") as f:
        f.write(header.getvalue().encode("utf-8"))
        pacsv.write_csv(table, f, write_options=pacsv.WriteOptions(include_header=False))
