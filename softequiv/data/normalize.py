"""Normalization that cannot break the symmetries under test.

Rule, per summand copy of the rep (a copy is one Scalar, one Vector, one T(2), ...):
scalars are centered and divided by their standard deviation (they are invariant, so
shifting and scaling them commutes with every group); every other tensor copy is only
divided by the root-mean-square norm of that copy over the training rows (a positive
scalar multiple commutes with any linear action). Vectors are never centered per
coordinate, which would break rotations. Predictions and metrics are mapped back with
:meth:`RepScaler.inverse`.
"""

from __future__ import annotations

import numpy as np

from softequiv.reps import Rep


class RepScaler:
    """Per-copy shift and scale fitted on training rows, applied to arrays ``[N, size]``."""

    def __init__(self, rep: Rep, d: int):
        self.rep, self.d = rep, d
        self.shift = np.zeros(rep.size(d))
        self.scale = np.ones(rep.size(d))

    def fit(self, values: np.ndarray) -> RepScaler:
        offset = 0
        for mult, t in self.rep:
            k = t.dim(self.d)
            for _ in range(mult):
                block = values[:, offset:offset + k]
                if t.rank == 0:
                    self.shift[offset] = block.mean()
                    self.scale[offset] = block.std()
                else:
                    self.scale[offset:offset + k] = np.sqrt(np.mean(np.sum(block**2, axis=1)))
                offset += k
        self.scale = np.where(self.scale > 1e-12, self.scale, 1.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.shift) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.scale + self.shift

    def state_dict(self) -> dict[str, list[float]]:
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.shift = np.asarray(state["shift"], dtype=np.float64)
        self.scale = np.asarray(state["scale"], dtype=np.float64)
