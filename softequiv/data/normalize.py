"""Normalization that cannot break the symmetries under test.

Rule, per summand copy of the rep (a copy is one Scalar, one Vector, one T(2), ...):
scalars are centered and divided by their standard deviation (they are invariant, so
shifting and scaling them commutes with every group); every other tensor copy is only
divided by the root-mean-square norm of that copy over the training rows (a positive
scalar multiple commutes with any linear action). Vectors are never centered per
coordinate, which would break rotations. Predictions and metrics are mapped back with
:meth:`RepScaler.inverse`.

Rows are vectors ``[N, size]`` or fields ``[N, size, H, W]`` (the rep's components are the
channels): on fields a copy's statistics run over rows and grid points, and a constant
shift of a scalar channel is a constant field, which every grid motion leaves alone.
"""

from __future__ import annotations

import numpy as np

from softequiv.reps import Rep


class RepScaler:
    """Per-copy shift and scale fitted on training rows, applied to arrays ``[N, size]`` or
    fields ``[N, size, H, W]`` (the components along axis 1)."""

    def __init__(self, rep: Rep, d: int):
        self.rep, self.d = rep, d
        self.shift = np.zeros(rep.size(d))
        self.scale = np.ones(rep.size(d))

    def fit(self, values: np.ndarray) -> RepScaler:
        values = _components_last(values)
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

    def _along_components(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = (1, len(self.shift)) + (1,) * (np.ndim(values) - 2)
        return self.shift.reshape(shape), self.scale.reshape(shape)

    def transform(self, values: np.ndarray) -> np.ndarray:
        shift, scale = self._along_components(values)
        return (values - shift) / scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        shift, scale = self._along_components(values)
        return values * scale + shift

    def state_dict(self) -> dict[str, list[float]]:
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.shift = np.asarray(state["shift"], dtype=np.float64)
        self.scale = np.asarray(state["scale"], dtype=np.float64)


def _components_last(values: np.ndarray) -> np.ndarray:
    """``[N, size]`` as is; fields ``[N, size, H, W]`` as ``[N * H * W, size]`` (every grid
    point a row)."""
    values = np.asarray(values)
    if values.ndim <= 2:
        return values
    return np.moveaxis(values, 1, -1).reshape(-1, values.shape[1])
