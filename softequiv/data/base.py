"""The dataset record every task, built-in or user-supplied, is turned into."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from softequiv.errors import InputError

TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class Dataset:
    """Inputs, targets, their representations and the candidate symmetry groups.

    ``X`` is ``[N, size(rep_in)]`` and ``Y`` is ``[N, size(rep_out)]``, both float64, laid
    out as the rep strings say (summands in order, each tensor flattened row-major).
    ``groups`` are candidate group spec strings, the ambient group first. ``split`` holds
    TRAIN/VALID/TEST per row; a dataset with several test sets (say rows from later times
    and rows from unseen conditions) gives the first TEST and the others TEST + 1, ...,
    named in ``test_sets`` (default ``{"test": TEST}``), so code that knows only TEST
    evaluates the first. ``truth`` is the noiseless target function when known (it
    maps an input array to outputs, used for ground-truth equivariance errors);
    ``true_errors`` gives ground-truth errors measured another way (a simulator), by
    group name. ``exact`` names the candidates the data is known to respect exactly.
    ``tuning`` holds the strength-tuning settings (``rule``, ``p``) that suit the task,
    used by ``discover`` where the user sets none.
    """

    name: str
    X: np.ndarray
    Y: np.ndarray
    rep_in: str
    rep_out: str
    groups: list[str]
    split: np.ndarray
    truth: Callable[[np.ndarray], np.ndarray] | None = None
    true_errors: dict[str, float] | None = None
    exact: list[str] = field(default_factory=list)
    test_sets: dict[str, int] = field(default_factory=lambda: {"test": TEST})
    info: dict = field(default_factory=dict)
    tuning: dict = field(default_factory=dict)

    def candidate_index(self, group: int | str) -> int:
        """The index of a candidate given by index (an int or its digits) or by name."""
        if isinstance(group, int) or group.isdigit():
            return int(group)
        if group not in self.groups:
            raise InputError(f"group {group!r} is not one of the candidates "
                             f"{', '.join(self.groups)}")
        return self.groups.index(group)

    def part(self, which: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of one split (TRAIN, VALID, TEST or another test set's code)."""
        mask = self.split == which
        return self.X[mask], self.Y[mask]

    def test_parts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Rows of every test set by name (see ``test_sets``)."""
        return {name: self.part(code) for name, code in self.test_sets.items()}


def standard_split(n: int, sizes: tuple[int, int, int] | None = None, *,
                   seed: int = 0) -> np.ndarray:
    """A seeded random split: given sizes, or 1/3 each when ``sizes`` is None."""
    if sizes is None:
        n_train = n // 3
        n_valid = n // 3
        sizes = (n_train, n_valid, n - n_train - n_valid)
    if sum(sizes) != n:
        raise ValueError(f"split sizes {sizes} do not add up to {n} rows")
    labels = np.repeat(np.array([TRAIN, VALID, TEST], dtype=np.int8), sizes)
    return labels[np.random.default_rng(seed).permutation(n)]
