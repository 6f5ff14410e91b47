"""Shared pieces of the file loaders: the loaded-table record, file and extension checks, and
how rows and errors are described in one-line messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softequiv.errors import InputError

SUPPORTED_EXTENSIONS = (".npz", ".csv", ".parquet")


_MAX_MESSAGE = 200


# Describes a 0-based data row for messages: "line 7" for CSV, "row 5" otherwise.
RowLabel = Callable[[int], str]


@dataclass
class LoadedTable:
    """The arrays read from a user's file.

    ``X`` is ``[N, dx]`` and ``Y`` is ``[N, dy]``, both float64. ``split`` is int8 per
    row (0=train, 1=valid, 2=test) when the file carries one, else None (the caller then
    draws a seeded split with :func:`split_rows`). ``x_names`` / ``y_names`` are the
    column names (``x0..``/``y0..`` for ``.npz``), used in messages and output headers.
    ``test_set`` names each row's test set when the file has several (a ``.npz`` array
    ``test_set`` next to ``split``), else None. ``X`` and ``Y`` may also be fields
    ``[N, C, H, W]``.
    """

    X: np.ndarray
    Y: np.ndarray
    split: np.ndarray | None
    x_names: list[str]
    y_names: list[str]
    test_set: np.ndarray | None = None


def _require_pyarrow(what: str) -> None:
    """CSV and Parquet need the optional pyarrow; say how to install it when missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InputError(f"{what} needs pyarrow: pip install 'softequiv[files]'") from None


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path to a non-empty readable file, else InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as e:
        raise InputError(f"cannot read {path}: {_one_line(e)}") from None
    if empty:
        raise InputError(f"file is empty: {path}")
    return path


def _extension(path: Path) -> str:
    """The lower-cased extension when supported, else InputError listing the supported ones."""
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "no extension"
        raise InputError(
            f"{path.name}: unsupported file type '{shown}'; use one of "
            + ", ".join(SUPPORTED_EXTENSIONS)
        )
    return ext


def _row_label(i: int) -> str:
    """A 0-based row index as used by numpy and pandas."""
    return f"row {i}"


def _line_label(i: int) -> str:
    """A 0-based data row as its CSV line number (the header is line 1)."""
    return f"line {i + 2}"


def _one_line(e: BaseException | str) -> str:
    """An exception's message reduced to one short line."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _plural(count: int, noun: str) -> str:
    """'1 row', '2 rows'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _column_text(names: Sequence[str] | None, j: int) -> str:
    """'column 'x3'' when names are known, else 'column 3'."""
    return f"column {names[j]!r}" if names is not None else f"column {j}"
