"""The train/valid/test split: parsing a user's split labels (0/1/2 or train/valid/test),
naming several test sets, and drawing a seeded random split when the data has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from softequiv.data.base import TEST, TRAIN, VALID, standard_split
from softequiv.data.files.common import RowLabel, _row_label
from softequiv.errors import InputError

SPLIT_NAMES = ("train", "valid", "test")


_SPLIT_LABELS = {"0": TRAIN, "1": VALID, "2": TEST, "train": TRAIN, "valid": VALID, "test": TEST}


_SPLIT_HINT = "use 0/1/2 or train/valid/test"


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


def named_test_sets(split: np.ndarray,
                    test_set: Any) -> tuple[np.ndarray, dict[str, int]]:
    """Split codes and ``Dataset.test_sets`` from per-row test-set names (a file's optional
    ``test_set`` array, as ``softequiv data smoke`` writes: ``"future"``, ``"domain"``, and
    ``""`` for rows not in a test set): the test rows of the first name keep TEST, those of
    the next TEST + 1, ...; unnamed test rows form the set ``"test"``."""
    names = np.asarray(test_set)
    if names.shape != split.shape or names.dtype.kind not in "US":
        raise InputError(f"test_set must hold one name per row (text), got shape {names.shape} "
                         f"and dtype {names.dtype}")
    names = np.where(names == "", "test", names.astype(str))
    is_test = split == TEST
    order = list(dict.fromkeys(names[is_test].tolist())) or ["test"]
    codes = split.copy()
    for k, name in enumerate(order):
        codes[is_test & (names == name)] = TEST + k
    return codes, {name: TEST + k for k, name in enumerate(order)}


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
