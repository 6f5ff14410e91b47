"""Sliding time windows that turn simulated trajectories into (past -> future) rows.

:func:`sliding_windows` is the generic cut along the time axis, shared by the datasets
built on simulators; :func:`make_windows` applies it to MuJoCo body positions and
flattens each window into the row layout of :mod:`softequiv.data.motion`.
"""

from __future__ import annotations

import numpy as np

from softequiv.errors import InputError

__all__ = ["make_windows", "sliding_windows"]


def sliding_windows(series: np.ndarray, past: int, future: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (past -> future) window of each trajectory along axis 1.

    ``series`` is [T, S, ...] (trajectories, time steps, any per-step shape). Returns
    X [N, past, ...] and Y [N, future, ...] with N = T * (S - past - future + 1), rows
    ordered by trajectory then window start; the window at start s takes steps
    s, ..., s + past - 1 as X and the next ``future`` steps as Y.
    """
    T, S = series.shape[:2]
    n_start = S - past - future + 1
    starts = np.arange(n_start)
    win = series[:, starts[:, None] + np.arange(past + future)[None, :]]  # [T, n, p+f, ...]
    win = win.reshape(T * n_start, past + future, *series.shape[2:])
    return win[:, :past].copy(), win[:, past:].copy()


def make_windows(
    positions: np.ndarray,
    *,
    past: int = 6,
    future: int = 6,
    bodies: str | list[int] = "torso",
) -> tuple[np.ndarray, np.ndarray]:
    """Sliding (past -> future) windows over every trajectory.

    ``positions`` is [T, S, n_bodies, 3]. Each window start s gives a row
    X = positions[t, s:s+past, bodies] and Y = positions[t, s+past:s+past+future, bodies],
    flattened time-major, then body, then xyz: X is [N, past * n_b * 3] and Y is
    [N, future * n_b * 3] with N = T * (S - past - future + 1), rows ordered by
    trajectory then start. ``bodies="torso"`` keeps body 0, ``"all"`` every body, or a
    list of body indices. Positions stay in the world frame (no centring), so the group
    actions about the origin act on rows as plain rotations of each 3-vector.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 4 or pos.shape[-1] != 3:
        raise InputError(f"positions must be [trajectories, steps, bodies, 3], got {pos.shape}")
    T, S, nb, _ = pos.shape
    if past < 1 or future < 1:
        raise InputError(f"past and future must be at least 1, got {past} and {future}")
    if S < past + future:
        raise InputError(f"trajectories have {S} steps, fewer than past + future = {past + future}")
    if isinstance(bodies, str):
        if bodies == "torso":
            idx = [0]
        elif bodies == "all":
            idx = list(range(nb))
        else:
            raise InputError(f"bodies must be 'torso', 'all' or a list of indices, got {bodies!r}")
    else:
        idx = [int(b) for b in bodies]
        if not idx or min(idx) < -nb or max(idx) >= nb:
            raise InputError(f"body indices {idx} out of range for {nb} bodies")
    X, Y = sliding_windows(pos[:, :, idx, :], past, future)  # [N, past|future, n_b, 3]
    return X.reshape(len(X), -1), Y.reshape(len(Y), -1)
