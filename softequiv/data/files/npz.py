"""``.npz`` archives: arrays ``X``, ``Y``, an optional ``split`` and, with it, an optional
``test_set`` (per row, the name of its test set), read without pickle.

``X`` and ``Y`` are rows ``[N, columns]`` (1-D: one column) or fields on a grid
``[N, channels, H, W]`` (:mod:`softequiv.fields`); names are ``x0..``/``y0..`` per column
or channel."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from softequiv.data.files.common import LoadedTable, _one_line
from softequiv.data.files.split import parse_split
from softequiv.errors import InputError


def _open_npz(path: Path, wanted: str) -> Any:
    """Open a ``.npz`` archive, telling a ``.npy`` or non-zip file apart in the message."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise InputError(f"holds a single array (.npy), not a .npz archive with {wanted}")
    if not magic.startswith(b"PK"):
        raise InputError("not a .npz archive (no zip header); save with np.savez")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read as .npz: {_one_line(e)}") from None


def _load_npz(path: Path) -> LoadedTable:
    """Read arrays X, Y and optional split from a ``.npz`` archive."""
    with _open_npz(path, "X and Y") as archive:
        for key in ("X", "Y"):
            if key not in archive.files:
                present = ", ".join(archive.files) or "none"
                raise InputError(
                    f"no array '{key}' (arrays present: {present}); "
                    "save with np.savez(path, X=..., Y=...)"
                )
        X = _npz_matrix(path, archive, "X")
        Y = _npz_matrix(path, archive, "Y")
        split = _npz_array(path, archive, "split") if "split" in archive.files else None
        test_set = (_npz_array(path, archive, "test_set") if "test_set" in archive.files
                    else None)
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    if split is not None:
        split = _npz_split(split, X.shape[0])
    x_names = [f"x{j}" for j in range(X.shape[1])]
    y_names = [f"y{j}" for j in range(Y.shape[1])]
    return LoadedTable(X, Y, split, x_names, y_names, test_set if split is not None else None)


def _load_npz_inputs(path: Path) -> np.ndarray:
    """Array X of a ``.npz`` archive as float64 ``[N, d]`` or fields ``[N, C, H, W]``."""
    with _open_npz(path, "X") as archive:
        if "X" not in archive.files:
            present = ", ".join(archive.files) or "none"
            raise InputError(
                f"no array 'X' (arrays present: {present}); save with np.savez(path, X=...)"
            )
        return _npz_matrix(path, archive, "X")


def _npz_array(path: Path, archive: Any, key: str) -> np.ndarray:
    """One array from the archive; object arrays (which need pickle) are refused."""
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read array '{key}': {_one_line(e)}") from None


def _npz_matrix(path: Path, archive: Any, key: str) -> np.ndarray:
    """Array ``key`` as float64 ``[N, d]`` (1-D arrays become one column) or fields
    ``[N, C, H, W]``."""
    A = _npz_array(path, archive, key)
    if A.ndim == 1:
        A = A.reshape(-1, 1)
    if A.ndim not in (2, 4):
        raise InputError(f"array '{key}' must be 1-D, 2-D or 4-D fields [rows, channels, H, "
                         f"W], got shape {A.shape}")
    if A.dtype.kind in "US" and A.ndim == 4:
        try:
            return A.astype(np.float64)
        except ValueError:
            raise InputError(f"array '{key}' holds text that is not numeric") from None
    if A.dtype.kind in "US":
        return _text_matrix_to_float(path, A, key)
    if A.dtype.kind not in "biuf":
        raise InputError(f"array '{key}' has dtype {A.dtype}; it must hold real numbers")
    return A.astype(np.float64, copy=False)


def _text_matrix_to_float(path: Path, A: np.ndarray, key: str) -> np.ndarray:
    """A string array parsed as float64, or InputError naming the first bad entry."""
    try:
        return A.astype(np.float64)
    except ValueError:
        pass
    for i, j in np.ndindex(*A.shape):
        try:
            float(A[i, j])
        except ValueError:
            raise InputError(
                f"array '{key}' column {j} is not numeric: {str(A[i, j])!r} at row {i}"
            ) from None
    raise InputError(f"array '{key}' holds text that is not numeric")


def _npz_split(split: np.ndarray, n: int) -> np.ndarray:
    """The archive's split array as labels, checked against the row count."""
    labels = parse_split(split)
    if labels.shape[0] != n:
        raise InputError(f"split has {labels.shape[0]} entries but X has {n} rows")
    return labels
