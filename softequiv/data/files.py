"""Load a user's data file into float64 arrays, check it, and write predictions back.

Users bring their own data as ``.npz``, ``.csv`` or ``.parquet``. Everything here turns
the many ways such a file can be wrong into one :class:`~softequiv.errors.InputError`
with a one-line message that names the file, the column and (where cheap) the row, so
the CLI can print it instead of a traceback from deep inside pandas, pyarrow or numpy.

CSV and Parquet go through pyarrow directly (no pandas): it parses in parallel, reads
only the selected columns, and lets us copy each column straight into the output
arrays, so a 1,000,000 x 40 numeric CSV loads in seconds within well under 2 GB.
pyarrow is only imported for those two formats; ``.npz`` needs numpy alone.

Column selections (``x_cols`` / ``y_cols`` for CSV and Parquet) follow this grammar::

    selection := item ("," item)*
    item      := NAME               the column called NAME
               | NAME ":" NAME      every column from the first NAME through the second,
                                    inclusive, in file order            e.g. x0:x17
               | [INT] ":" [INT]    column positions start..stop-1, 0-based and
                                    half-open like Python; an end left out means the
                                    first / past the last column        e.g. 0:18, 18:
               | INT                the column at that 0-based position (only when no
                                    column is called INT)

Spaces around items are ignored. An item that is exactly a column's name always means
that column, so names containing ``:`` still work on their own, and a whole selection
that is exactly one column's name selects it even if the name contains ``,``. Unlike
Python slicing, a position past the last column is an error (it is almost always a
typo). Selecting the same column twice, or the same column for X and Y, is an error. A
column named ``split`` holds the train/valid/test split (0/1/2 or train/valid/test):
ranges skip it, and naming it on its own in ``x_cols``/``y_cols`` is an error.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from softequiv.data.base import TEST, TRAIN, VALID, standard_split
from softequiv.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

SUPPORTED_EXTENSIONS = (".npz", ".csv", ".parquet")
SPLIT_COLUMN = "split"
SPLIT_NAMES = ("train", "valid", "test")
_SPLIT_LABELS = {"0": TRAIN, "1": VALID, "2": TEST, "train": TRAIN, "valid": VALID, "test": TEST}
_SPLIT_HINT = "use 0/1/2 or train/valid/test"
_POSITION_RANGE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")
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
    """

    X: np.ndarray
    Y: np.ndarray
    split: np.ndarray | None
    x_names: list[str]
    y_names: list[str]


# ----------------------------------------------------------------------------- public API


def load_table(
    path: str | Path, *, x_cols: str | None = None, y_cols: str | None = None
) -> LoadedTable:
    """Read X, Y and an optional split from a ``.npz``, ``.csv`` or ``.parquet`` file.

    ``.npz``: arrays ``X`` and ``Y`` (2-D, or 1-D meaning one column) and optionally
    ``split`` (ints 0/1/2 or strings train/valid/test). The arrays are named by the
    file, so ``x_cols``/``y_cols`` must not be given for ``.npz`` (an InputError says so).

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


def _require_pyarrow(what: str) -> None:
    """CSV and Parquet need the optional pyarrow; say how to install it when missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InputError(f"{what} needs pyarrow: pip install 'softequiv[files]'") from None


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

    Checks, in order: both are 2-D arrays of real numbers with at least one column, the
    row counts match, the widths equal the representation sizes ``size_in`` /
    ``size_out`` when given (``rep_in_name`` / ``rep_out_name`` make the message name the
    rep string), there are at least ``min_rows`` rows (3 = one each for train, valid
    and test), and every value is finite. ``x_names`` / ``y_names`` name columns and
    ``row_label`` describes rows in the messages; both default to positions.
    """
    X = _real_matrix(X, "X")
    Y = _real_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    _check_width(X, "X", "rep_in", size_in, rep_in_name)
    _check_width(Y, "Y", "rep_out", size_out, rep_out_name)
    _check_row_count(X.shape[0], min_rows)
    label = row_label or _row_label
    _check_finite(X, "X", x_names, label)
    _check_finite(Y, "Y", y_names, label)


def split_rows(
    n: int,
    split: np.ndarray | None,
    *,
    seed: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> np.ndarray:
    """Train/valid/test labels (int8, 0/1/2) for ``n`` rows.

    A split given by the user (``split``: ints 0/1/2 or strings train/valid/test) is
    returned as is after checking that it has ``n`` entries and that no part is empty,
    since every part is used (train fits, valid picks strengths, test reports). Without
    one, rows are split at random by ``fractions`` with ``seed``, each part getting at
    least one row; fewer than 3 rows raise InputError.
    """
    if split is not None:
        labels = parse_split(split)
        if labels.shape[0] != n:
            raise InputError(f"split has {labels.shape[0]} entries but the data has {n} rows")
        _check_parts_nonempty(labels)
        return labels
    return standard_split(n, _split_sizes(n, fractions), seed=seed)


def parse_split(values: Any, row_label: RowLabel | None = None) -> np.ndarray:
    """Turn split values (ints 0/1/2 or strings train/valid/test) into int8 labels.

    Strings are matched after stripping spaces and lower-casing, and may also be the
    digits "0"/"1"/"2". A bad value raises InputError naming it and its row.
    """
    label = row_label or _row_label
    values = np.asarray(values)
    if values.ndim != 1:
        raise InputError(f"split must be 1-D (one label per row), got shape {values.shape}")
    if values.dtype.kind in "iuf":
        return _numeric_split(values, label)
    if values.dtype.kind in "USO":
        uniques, inverse = np.unique(values.astype(str), return_inverse=True)
        return _labels_to_codes(list(uniques), inverse.reshape(-1), label)
    raise InputError(f"split has dtype {values.dtype}; {_SPLIT_HINT}")


def save_predictions(path: str | Path, Y_pred: np.ndarray, names: list[str] | None = None) -> None:
    """Write predictions to ``.npz`` (one array ``Y``) or ``.csv`` (header + one row each).

    The CSV header is ``names`` (one per column) or ``y0, y1, ...``; values are written
    with the shortest text that reads back to the same float64. Other extensions, a
    missing directory or a failed write raise InputError.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".npz", ".csv"):
        raise InputError(f"{path.name}: predictions can be saved as .npz or .csv, not '{ext}'")
    Y = _prediction_matrix(Y_pred)
    names = _prediction_names(names, Y.shape[1])
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: directory {path.parent} does not exist")
    try:
        if ext == ".npz":
            with open(path, "wb") as f:
                np.savez(f, Y=Y)
        else:
            _require_pyarrow("writing .csv files")
            _write_csv(path, Y, names)
    except OSError as e:
        raise InputError(f"cannot write {path}: {_one_line(e)}") from None


def resolve_columns(
    spec: str, header: Sequence[str], *, option: str = "x_cols", reserved: int | None = None
) -> list[int]:
    """Positions (0-based, in selection order) of the columns ``spec`` selects.

    ``spec`` follows the grammar in this module's docstring; ``option`` names the
    argument in messages. ``reserved`` is a column that may not be selected (the split
    column): ranges skip it, naming it alone is an error. Unknown names, positions past
    the last column, empty or backwards ranges and repeated columns raise InputError.
    """
    lookup = _name_lookup(header)
    if spec.strip() in lookup:  # a whole selection that is one name may contain ','
        items = [spec.strip()]
    else:
        items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise InputError(
            f"{option} {spec!r} has an empty item; list columns like 'a,b' or 'x0:x17'"
        )
    positions: list[int] = []
    for item in items:
        positions.extend(
            _without_reserved(_resolve_item(item, header, lookup, option), reserved, option)
        )
    _check_no_repeats(positions, header, option)
    return positions


def _without_reserved(positions: list[int], reserved: int | None, option: str) -> list[int]:
    """One item's positions minus the reserved column; selecting only it is an error."""
    if reserved is None or reserved not in positions:
        return positions
    if len(positions) == 1:
        raise InputError(
            f"column {SPLIT_COLUMN!r} holds the train/valid/test split and cannot be in {option}"
        )
    return [i for i in positions if i != reserved]


# ----------------------------------------------------------------------------- checks


def _real_matrix(A: Any, which: str) -> np.ndarray:
    """``A`` as a 2-D numpy array of real numbers (not copied when already one)."""
    try:
        A = np.asarray(A)
    except (TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"{which} is not an array of numbers: {_one_line(e)}") from None
    if A.ndim != 2:
        raise InputError(f"{which} must be 2-D [rows, columns], got shape {A.shape}")
    if A.dtype.kind not in "biuf":
        raise InputError(f"{which} has dtype {A.dtype}; it must hold real numbers")
    if A.shape[1] == 0:
        raise InputError(f"{which} has no columns")
    return A


def _check_width(A: np.ndarray, which: str, rep: str, size: int | None, name: str | None) -> None:
    """Raise when ``A``'s column count differs from its representation's size."""
    if size is None or A.shape[1] == size:
        return
    rep_text = f"{rep} '{name}'" if name else rep
    raise InputError(f"{rep_text} has size {size} but {which} has {A.shape[1]} columns")


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
    bad = ~finite
    per_column = bad.sum(axis=0)
    rows = int(bad.any(axis=1).sum())
    columns = np.flatnonzero(per_column)
    shown = ", ".join(
        f"{_column_text(names, int(j))} ({_plural(int(per_column[j]), 'value')}, "
        f"first at {row_label(int(np.argmax(bad[:, j])))})"
        for j in columns[:3]
    )
    more = f" and {len(columns) - 3} more columns" if len(columns) > 3 else ""
    raise InputError(
        f"{which} has NaN, inf or missing values in {_plural(rows, 'row')}: {shown}{more}"
    )


def _plural(count: int, noun: str) -> str:
    """'1 row', '2 rows'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _column_text(names: Sequence[str] | None, j: int) -> str:
    """'column 'x3'' when names are known, else 'column 3'."""
    return f"column {names[j]!r}" if names is not None else f"column {j}"


def _check_parts_nonempty(labels: np.ndarray) -> None:
    """Raise when the train, valid or test part of a given split has no rows."""
    counts = np.bincount(labels, minlength=3)
    empty = [SPLIT_NAMES[k] for k in range(3) if counts[k] == 0]
    if empty:
        raise InputError(
            f"the split has no {'/'.join(empty)} rows; train, valid and test each need one"
        )


def _split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Train/valid/test row counts for ``n`` rows: by ``fractions``, each at least 1."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or not np.all(np.isfinite(f)) or np.any(f <= 0) or abs(f.sum() - 1) > 1e-6:
        raise InputError(
            f"split fractions {tuple(fractions)} must be 3 positive numbers summing to 1"
        )
    if n < 3:
        raise InputError(
            f"the data has {n} rows but a train/valid/test split needs at least 3 (one per part)"
        )
    n_valid = max(1, round(n * f[1]))
    n_test = max(1, round(n * f[2]))
    while n - n_valid - n_test < 1:
        if n_valid >= n_test:
            n_valid -= 1
        else:
            n_test -= 1
    return n - n_valid - n_test, n_valid, n_test


def _numeric_split(values: np.ndarray, row_label: RowLabel) -> np.ndarray:
    """Labels from a numeric split array, which must hold only 0, 1 and 2."""
    bad = ~np.isin(values, (TRAIN, VALID, TEST))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"bad split value {values[i].item()!r} at {row_label(i)}; {_SPLIT_HINT}")
    return values.astype(np.int8)


def _labels_to_codes(labels: list[Any], indices: np.ndarray, row_label: RowLabel) -> np.ndarray:
    """Labels from distinct text values ``labels`` and each row's index into them."""
    codes = np.empty(len(labels), dtype=np.int8)
    for k, value in enumerate(labels):
        code = _SPLIT_LABELS.get(str(value).strip().lower())
        if code is None:
            i = int(np.argmax(indices == k))
            if not str(value).strip():
                raise InputError(f"split is missing at {row_label(i)}; {_SPLIT_HINT}")
            raise InputError(f"bad split value {str(value)!r} at {row_label(i)}; {_SPLIT_HINT}")
        codes[k] = code
    return codes[indices]


# ----------------------------------------------------------------------------- files


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


# ----------------------------------------------------------------------------- .npz


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
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    if split is not None:
        split = _npz_split(split, X.shape[0])
    x_names = [f"x{j}" for j in range(X.shape[1])]
    y_names = [f"y{j}" for j in range(Y.shape[1])]
    return LoadedTable(X, Y, split, x_names, y_names)


def _npz_array(path: Path, archive: Any, key: str) -> np.ndarray:
    """One array from the archive; object arrays (which need pickle) are refused."""
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read array '{key}': {_one_line(e)}") from None


def _npz_matrix(path: Path, archive: Any, key: str) -> np.ndarray:
    """Array ``key`` as float64 ``[N, d]``; 1-D arrays become one column."""
    A = _npz_array(path, archive, key)
    if A.ndim == 1:
        A = A.reshape(-1, 1)
    if A.ndim != 2:
        raise InputError(f"array '{key}' must be 1-D or 2-D, got shape {A.shape}")
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


# ----------------------------------------------------------------------------- tables


def _name_lookup(header: Sequence[str]) -> dict[str, list[int]]:
    """Column positions by name, also by space-stripped name when that is unambiguous."""
    lookup: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        lookup.setdefault(name, []).append(i)
    for i, name in enumerate(header):
        if name.strip() != name and name.strip() not in lookup:
            lookup[name.strip()] = [i]
    return lookup


def _resolve_item(
    item: str, header: Sequence[str], lookup: dict[str, list[int]], option: str
) -> list[int]:
    """Positions one selection item stands for (see the module docstring's grammar)."""
    if item in lookup:
        return [_unique_position(item, lookup, option)]
    match = _POSITION_RANGE.match(item)
    if match:
        return _position_range(item, match[1], match[2], len(header), option)
    if item.isdigit():
        return [_position(item, len(header), option)]
    if ":" in item:
        return _name_range(item, lookup, option)
    raise InputError(f"unknown column {item!r} in {option}; {_columns_hint(header)}")


def _unique_position(name: str, lookup: dict[str, list[int]], option: str) -> int:
    """The position of column ``name``, which must appear once in the header."""
    positions = lookup[name]
    if len(positions) > 1:
        raise InputError(
            f"column {name!r} in {option} appears {len(positions)} times in the header; "
            "select it by position instead"
        )
    return positions[0]


def _position(text: str, width: int, option: str) -> int:
    """A single 0-based column position, checked against the column count."""
    i = int(text)
    if i >= width:
        raise InputError(
            f"column position {i} in {option} is out of range: "
            f"the file has {width} columns (0..{width - 1})"
        )
    return i


def _position_range(item: str, start: str, stop: str, width: int, option: str) -> list[int]:
    """Positions of a half-open ``start:stop`` range; missing ends mean 0 / the width."""
    lo = int(start) if start else 0
    hi = int(stop) if stop else width
    if hi > width:
        raise InputError(
            f"column range {item!r} in {option} is out of range: the file has {width} columns "
            f"(positions 0..{width - 1}; the range stop is exclusive)"
        )
    if lo >= hi:
        raise InputError(f"column range {item!r} in {option} selects no columns")
    return list(range(lo, hi))


def _name_range(item: str, lookup: dict[str, list[int]], option: str) -> list[int]:
    """Positions of an inclusive ``first:last`` range of column names."""
    parts = [part.strip() for part in item.split(":")]
    if len(parts) != 2:
        raise InputError(f"column range {item!r} in {option} must have one ':' (like x0:x17)")
    for part in parts:
        if part not in lookup:
            raise InputError(f"unknown column {part!r} in {option} range {item!r}")
    lo, hi = (_unique_position(part, lookup, option) for part in parts)
    if lo > hi:
        raise InputError(f"column range {item!r} in {option} ends before it starts (in file order)")
    return list(range(lo, hi + 1))


def _check_no_repeats(positions: list[int], header: Sequence[str], option: str) -> None:
    """Raise when a selection names the same column twice."""
    seen: set[int] = set()
    for i in positions:
        if i in seen:
            raise InputError(f"column {header[i]!r} is selected twice in {option}")
        seen.add(i)


def _columns_hint(header: Sequence[str]) -> str:
    """A short list of the file's columns, for unknown-column messages."""
    shown = ", ".join(repr(name) for name in header[:8])
    more = f", ... ({len(header)} in all)" if len(header) > 8 else ""
    hint = f"the file's columns are {shown}{more}"
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        hint += " (is the file separated by something other than ','?)"
    return hint


def _select(
    header: Sequence[str], x_cols: str, y_cols: str
) -> tuple[list[int], list[int], int | None]:
    """X positions, Y positions and the split column's position (None when absent)."""
    split_idx = header.index(SPLIT_COLUMN) if SPLIT_COLUMN in header else None
    x_idx = resolve_columns(x_cols, header, option="x_cols", reserved=split_idx)
    y_idx = resolve_columns(y_cols, header, option="y_cols", reserved=split_idx)
    both = sorted(set(x_idx) & set(y_idx))
    if both:
        raise InputError(f"column {header[both[0]]!r} is in both x_cols and y_cols")
    return x_idx, y_idx, split_idx


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


# ----------------------------------------------------------------------------- CSV


def _load_csv(path: Path, x_cols: str, y_cols: str) -> LoadedTable:
    """Read the selected columns of a CSV file (and its split column, if any)."""
    header = _csv_header(path)
    x_idx, y_idx, split_idx = _select(header, x_cols, y_cols)
    wanted = x_idx + y_idx + ([split_idx] if split_idx is not None else [])
    table = _read_csv_table(path, header, wanted, split_idx)
    return _assemble(table, x_idx, y_idx, split_idx, header, _line_label)


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


# ----------------------------------------------------------------------------- Parquet


def _load_parquet(path: Path, x_cols: str, y_cols: str) -> LoadedTable:
    """Read the selected columns of a Parquet file (and its split column, if any)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        header = list(parquet.schema_arrow.names)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"cannot read as Parquet: {_one_line(e)}") from None
    x_idx, y_idx, split_idx = _select(header, x_cols, y_cols)
    wanted = x_idx + y_idx + ([split_idx] if split_idx is not None else [])
    _check_unique_names(header, wanted)
    table = _read_parquet_table(parquet, header, wanted)
    return _assemble(table, x_idx, y_idx, split_idx, header, _row_label)


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


# ----------------------------------------------------------------------------- predictions


def _prediction_matrix(Y_pred: Any) -> np.ndarray:
    """Predictions as float64 ``[N, k]``; 1-D means one column."""
    try:
        Y = np.asarray(Y_pred, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"predictions are not an array of numbers: {_one_line(e)}") from None
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2:
        raise InputError(f"predictions must be 1-D or 2-D, got shape {Y.shape}")
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


# ----------------------------------------------------------------------------- inputs only


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

    Like :func:`validate_arrays` for X alone: a 2-D array of real numbers with at least
    one column, ``size_in`` columns when given, at least ``min_rows`` rows, all finite.
    """
    X = _real_matrix(X, "X")
    _check_width(X, "X", "rep_in", size_in, rep_in_name)
    _check_row_count(X.shape[0], min_rows)
    _check_finite(X, "X", x_names, row_label or _row_label)


def load_inputs(path: str | Path, *, x_cols: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Read the inputs X (to predict from) of a ``.npz``, ``.csv`` or ``.parquet`` file.

    ``.npz``: array ``X`` (2-D, or 1-D meaning one column); any ``Y`` or ``split`` is
    ignored and ``x_cols`` must not be given. ``.csv`` / ``.parquet``: ``x_cols`` is
    required and follows the selection grammar in this module's docstring; other
    columns are not read. Returns float64 ``X [N, d]`` and its column names (``x0..``
    for ``.npz``). Every problem (missing or unreadable file, text, NaN/inf, no rows)
    raises InputError with a one-line message naming the file.
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
                X, names = _load_table_inputs(path, x_cols, csv_file=True)
                row_label = _line_label
            else:
                X, names = _load_table_inputs(path, x_cols, csv_file=False)
                row_label = _row_label
        validate_inputs(X, min_rows=1, x_names=names, row_label=row_label)
    except InputError as e:
        raise InputError(f"{path.name}: {e}") from None
    return X, names


def _load_npz_inputs(path: Path) -> np.ndarray:
    """Array X of a ``.npz`` archive as float64 ``[N, d]``."""
    with _open_npz(path, "X") as archive:
        if "X" not in archive.files:
            present = ", ".join(archive.files) or "none"
            raise InputError(
                f"no array 'X' (arrays present: {present}); save with np.savez(path, X=...)"
            )
        return _npz_matrix(path, archive, "X")


def _load_table_inputs(path: Path, x_cols: str, *, csv_file: bool) -> tuple[np.ndarray, list[str]]:
    """The selected columns of a CSV or Parquet file as float64 ``[N, d]`` and names."""
    if csv_file:
        header = _csv_header(path)
        parquet = None
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            header = list(parquet.schema_arrow.names)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"cannot read as Parquet: {_one_line(e)}") from None
    split_idx = header.index(SPLIT_COLUMN) if SPLIT_COLUMN in header else None
    x_idx = resolve_columns(x_cols, header, option="x_cols", reserved=split_idx)
    if parquet is None:
        table = _read_csv_table(path, header, x_idx, None)
        row_label = _line_label
    else:
        _check_unique_names(header, x_idx)
        table = _read_parquet_table(parquet, header, x_idx)
        row_label = _row_label
    if table.num_rows == 0:
        raise InputError("the file has a header but no data rows")
    table = _float_table(table.select([str(i) for i in x_idx]), header, row_label)
    X = np.empty((table.num_rows, len(x_idx)), dtype=np.float64)
    start = 0
    for batch in table.to_batches():
        stop = start + batch.num_rows
        if stop > start:
            X[start:stop] = _batch_matrix(batch)
        start = stop
    return X, [header[i] for i in x_idx]
