"""Checks of loaded or user-given arrays before training and predicting: shape, real
numbers, widths against the representations, row counts and finite values.

Rows are vectors (``X`` ``[N, columns]``) or fields on a grid (``X`` ``[N, channels, H, W]``,
the layout of :mod:`softequiv.fields`); X and Y must be both one or both the other, on the
same grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from softequiv.data.files.common import RowLabel, _column_text, _one_line, _plural, _row_label
from softequiv.errors import InputError


def validate_arrays(
    X: Any,
    Y: Any,
    *,
    size_in: int | None = None,
    size_out: int | None = None,
    min_rows: int = 3,
    rep_in_name: str | None = None,
    rep_out_name: str | None = None,
    x_names: Sequence[str] | None = None,
    y_names: Sequence[str] | None = None,
    row_label: RowLabel | None = None,
) -> None:
    """Check inputs ``X`` and targets ``Y`` before training; raise InputError if unusable.

    Checks, in order: both are 2-D arrays (or both 4-D fields, :func:`check_layout`) of real
    numbers with at least one column (channel), the row counts match, the widths equal the
    representation sizes ``size_in`` / ``size_out`` when given (``rep_in_name`` /
    ``rep_out_name`` make the message name the rep string), there are at least ``min_rows``
    rows (3 = one each for train, valid and test), and every value is finite. ``x_names`` /
    ``y_names`` name columns and ``row_label`` describes rows in the messages; both default
    to positions.
    """
    X = _real_matrix(X, "X")
    Y = _real_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    check_layout(X.shape, Y.shape)
    _check_width(X, "X", "rep_in", size_in, rep_in_name)
    _check_width(Y, "Y", "rep_out", size_out, rep_out_name)
    _check_row_count(X.shape[0], min_rows)
    label = row_label or _row_label
    _check_finite(X, "X", x_names, label)
    _check_finite(Y, "Y", y_names, label)


def validate_inputs(
    X: Any,
    *,
    size_in: int | None = None,
    rep_in_name: str | None = None,
    min_rows: int = 1,
    x_names: Sequence[str] | None = None,
    row_label: RowLabel | None = None,
) -> None:
    """Check inputs ``X`` before predicting; raise InputError if unusable.

    Like :func:`validate_arrays` for X alone: a 2-D array (or 4-D fields) of real numbers
    with at least one column, ``size_in`` columns when given, at least ``min_rows`` rows,
    all finite.
    """
    X = _real_matrix(X, "X")
    _check_width(X, "X", "rep_in", size_in, rep_in_name)
    _check_row_count(X.shape[0], min_rows)
    _check_finite(X, "X", x_names, row_label or _row_label)


def check_layout(x_shape: Sequence[int], y_shape: Sequence[int]) -> None:
    """X and Y both rows of numbers ``[N, columns]`` or both fields ``[N, channels, H, W]``
    on the same grid; InputError saying which is which otherwise."""
    for which, shape in (("X", x_shape), ("Y", y_shape)):
        if len(shape) not in (2, 4):
            raise InputError(f"{which} must be 2-D [rows, columns] or 4-D fields "
                             f"[rows, channels, H, W], got shape {tuple(shape)}")
    if len(x_shape) != len(y_shape):
        kinds = {2: "2-D rows of numbers", 4: "4-D fields [N, C, H, W]"}
        raise InputError(f"X is {kinds[len(x_shape)]} but Y is {kinds[len(y_shape)]}: give "
                         "both as fields or both as rows")
    if len(x_shape) == 4 and tuple(x_shape[2:]) != tuple(y_shape[2:]):
        raise InputError(f"X's fields are on a {x_shape[2]}x{x_shape[3]} grid but Y's on "
                         f"{y_shape[2]}x{y_shape[3]} (H x W): they must share the grid")


def _real_matrix(A: Any, which: str) -> np.ndarray:
    """``A`` as a 2-D numpy array (or 4-D fields) of real numbers (not copied when already
    one)."""
    try:
        A = np.asarray(A)
    except (TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"{which} is not an array of numbers: {_one_line(e)}") from None
    if A.ndim not in (2, 4):
        raise InputError(f"{which} must be 2-D [rows, columns] or 4-D fields [rows, channels, "
                         f"H, W], got shape {A.shape}")
    if A.dtype.kind not in "biuf":
        raise InputError(f"{which} has dtype {A.dtype}; it must hold real numbers")
    if A.shape[1] == 0:
        raise InputError(f"{which} has no {_unit(A)}")
    if A.ndim == 4 and 0 in A.shape[2:]:
        raise InputError(f"{which}'s fields are on an empty grid, shape {A.shape}")
    return A


def _unit(A: np.ndarray) -> str:
    return "channels" if A.ndim == 4 else "columns"


def _check_width(A: np.ndarray, which: str, rep: str, size: int | None, name: str | None) -> None:
    """Raise when ``A``'s column (channel) count differs from its representation's size."""
    if size is None or A.shape[1] == size:
        return
    rep_text = f"{rep} '{name}'" if name else rep
    raise InputError(f"{rep_text} has size {size} but {which} has {A.shape[1]} {_unit(A)}")


def _check_row_count(n: int, min_rows: int) -> None:
    """Raise when there are fewer than ``min_rows`` rows."""
    if n >= min_rows:
        return
    if n == 0:
        raise InputError("the data has no rows")
    why = " (one each for train, valid and test)" if min_rows == 3 else ""
    raise InputError(f"the data has {n} rows but needs at least {min_rows}{why}")


def _check_finite(
    A: np.ndarray, which: str, names: Sequence[str] | None, row_label: RowLabel
) -> None:
    """Raise when ``A`` holds NaN, inf or (from a table) missing values, saying where."""
    if A.dtype.kind != "f":
        return
    finite = np.isfinite(A)
    if finite.all():
        return
    if A.ndim == 2:
        bad, what, entry = ~finite, lambda j: _column_text(names, j), "value"
    else:  # fields: which channels of which rows
        bad, what, entry = ~finite.all(axis=(2, 3)), lambda j: f"channel {j}", "field"
    per_column = bad.sum(axis=0)
    rows = int(bad.any(axis=1).sum())
    columns = np.flatnonzero(per_column)
    shown = ", ".join(
        f"{what(int(j))} ({_plural(int(per_column[j]), entry)}, "
        f"first at {row_label(int(np.argmax(bad[:, j])))})"
        for j in columns[:3]
    )
    more = f" and {len(columns) - 3} more {_unit(A)}" if len(columns) > 3 else ""
    raise InputError(
        f"{which} has NaN, inf or missing values in {_plural(rows, 'row')}: {shown}{more}"
    )
