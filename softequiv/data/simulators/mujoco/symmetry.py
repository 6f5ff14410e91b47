"""Group actions on MuJoCo initial states and trajectories, and the simulator's ground truth.

:func:`transform_initial_state` and :func:`transform_positions` act with an element of
O(3) plus a translation on the input and the output side of the simulator;
:func:`simulator_equivariance_errors` compares the two, f(g x) against g f(x), for each
candidate group in :data:`GROUP_KEYS`.
"""

from __future__ import annotations

import numpy as np

from softequiv.data.simulators import relative_error
from softequiv.data.simulators.mujoco.model import _env, _mujoco
from softequiv.data.simulators.mujoco.trajectories import (
    _XY_RANGE,
    _grid,
    random_initial_states,
    simulate,
)
from softequiv.errors import InputError

__all__ = [
    "GROUP_KEYS",
    "simulator_equivariance_errors",
    "transform_initial_state",
    "transform_positions",
]

#: Keys returned by :func:`simulator_equivariance_errors`, in order.
GROUP_KEYS = ("O(3)", "O2xy", "O2yz", "O2xz", "translations_xy", "rotations_z", "SE(3)")


# Group actions


def _as_batch(
    rotation: np.ndarray, shift: np.ndarray | None, T: int
) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(rotation, dtype=np.float64)
    g = np.broadcast_to(g, (T, 3, 3)) if g.shape == (3, 3) else g
    t = np.zeros(3) if shift is None else np.asarray(shift, dtype=np.float64)
    t = np.broadcast_to(t, (T, 3)) if t.shape == (3,) else t
    if g.shape != (T, 3, 3) or t.shape != (T, 3):
        raise InputError(f"rotation must be [3, 3] or [{T}, 3, 3] and shift [3] or [{T}, 3]")
    if np.abs(g @ g.transpose(0, 2, 1) - np.eye(3)).max() > 1e-9:
        raise InputError("rotation must be orthogonal (an element of O(3))")
    return g, t


def transform_initial_state(
    env: str,
    qpos: np.ndarray,
    qvel: np.ndarray,
    control_params: np.ndarray,
    rotation: np.ndarray,
    shift: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Act on initial states with x -> g x + shift, g in O(3), about the world origin.

    ``rotation`` is [3, 3] or one per trajectory [T, 3, 3]; ``shift`` [3] or [T, 3].
    Proper g: position, linear velocity and orientation are rotated; the body-frame
    angular velocity, joint angles and controls are unchanged. Improper g (det -1) is
    realised through the robot's mirror symmetry: orientation R -> g R M with M the body
    mirror, mirrored joints and actuators swapped with their signs, and the body-frame
    angular velocity w -> -M w. The transformed robot may intersect the floor (tilts,
    downward shifts): that is the point, such states are not symmetric images.
    """
    mujoco = _mujoco()
    e = _env(env)
    qpos = np.atleast_2d(np.asarray(qpos, dtype=np.float64))
    qvel = np.atleast_2d(np.asarray(qvel, dtype=np.float64))
    params = np.asarray(control_params, dtype=np.float64)
    params = params[None] if params.ndim == 2 else params
    T = qpos.shape[0]
    g, t = _as_batch(rotation, shift, T)
    new_q, new_v, new_p = qpos.copy(), qvel.copy(), params.copy()
    mat = np.empty(9)
    quat = np.empty(4)
    for i in range(T):
        proper = np.linalg.det(g[i]) > 0
        new_q[i, 0:3] = g[i] @ qpos[i, 0:3] + t[i]
        new_v[i, 0:3] = g[i] @ qvel[i, 0:3]
        mujoco.mju_quat2Mat(mat, qpos[i, 3:7])
        R = g[i] @ mat.reshape(3, 3)
        if not proper:
            R = R @ e.body_mirror
            new_v[i, 3:6] = -e.body_mirror @ qvel[i, 3:6]
            new_q[i, e.q_dst] = e.hinge_sign * qpos[i, e.q_src]
            new_v[i, e.v_dst] = e.hinge_sign * qvel[i, e.v_src]
            new_p[i, e.act_perm] = params[i]
            new_p[i, e.act_perm, 0] = e.act_sign * params[i, :, 0]
        mujoco.mju_mat2Quat(quat, R.reshape(9))
        new_q[i, 3:7] = quat / np.linalg.norm(quat)
    return new_q, new_v, new_p


def transform_positions(
    env: str, positions: np.ndarray, rotation: np.ndarray, shift: np.ndarray | None = None
) -> np.ndarray:
    """Act on simulated positions [T, S, n_bodies, 3] with x -> g x + shift.

    The counterpart of :func:`transform_initial_state` on the output side: every body
    position is mapped, and for improper g the mirrored bodies are relabelled the same way
    the joints were (the torso, index 0, always stays itself).
    """
    e = _env(env)
    positions = np.asarray(positions, dtype=np.float64)
    T = positions.shape[0]
    g, t = _as_batch(rotation, shift, T)
    out = np.einsum("tij,tsbj->tsbi", g, positions) + t[:, None, None, :]
    improper = np.linalg.det(g) < 0
    if improper.any():
        relabelled = np.empty_like(out[improper])
        relabelled[:, :, e.body_perm] = out[improper]
        out[improper] = relabelled
    return out


# Ground-truth equivariance of the simulator


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    g = np.eye(3)
    g[i, i], g[i, j], g[j, i], g[j, j] = c, -s, s, c
    return g


def _planar_o2(rng: np.random.Generator, axis: int) -> np.ndarray:
    """Random element of O(2) acting on the plane orthogonal to ``axis``."""
    g = _rot(axis, rng.uniform(0.0, 2.0 * np.pi))
    if rng.random() < 0.5:
        reflect = np.ones(3)
        reflect[(axis + 1) % 3] = -1.0  # a reflection inside the plane
        g = g @ np.diag(reflect)
    return g


def _haar_o3(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _group_sample(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    zero = np.zeros(3)
    if name == "O(3)":
        return _haar_o3(rng), zero
    if name == "O2xy":
        return _planar_o2(rng, 2), zero
    if name == "O2yz":
        return _planar_o2(rng, 0), zero
    if name == "O2xz":
        return _planar_o2(rng, 1), zero
    if name == "translations_xy":
        return np.eye(3), np.array([*rng.uniform(-_XY_RANGE, _XY_RANGE, 2), 0.0])
    if name == "rotations_z":
        return _rot(2, rng.uniform(0.0, 2.0 * np.pi)), zero
    if name == "SE(3)":
        g = _haar_o3(rng)
        g *= np.sign(np.linalg.det(g))  # SO(3)
        return g, rng.normal(0.0, 1.0, 3)
    raise InputError(f"unknown group {name!r}; choose one of {', '.join(GROUP_KEYS)}")


def simulator_equivariance_errors(
    env: str = "ant",
    *,
    trajectories: int = 8,
    seconds: float = 2.4,
    seed: int = 0,
    sample_dt: float = 0.1,
    bodies: str = "all",
) -> dict[str, float]:
    """Relative equivariance error of the simulator under each candidate group.

    The map is f: initial state -> body positions at t = sample_dt, ..., seconds (world
    frame). For each group, every one of ``trajectories`` random initial states x (drawn
    as in :func:`generate_trajectories`) gets its own random element g, and the error is
    mean ||f(g x) - g f(x)|| / (||f(g x)|| + ||g f(x)||). Elements act about the world
    origin, as they would on the dataset's world-frame position windows:

    - ``"O2xy"``: rotation about z by a uniform angle, composed with a reflection in the
      xy plane half the time (mirror realised with legs relabelled) -> exact for the ant
      (~1e-13), only approximate for the humanoid (see the module docstring).
    - ``"rotations_z"``: rotation about z only; ``"translations_xy"``: horizontal shift
      uniform in [-2, 2]^2 m -> exact.
    - ``"O2yz"`` / ``"O2xz"``: O(2) acting on the yz / xz plane (tilts about x / y, with
      reflections half the time); ``"O(3)"``: Haar-random orthogonal matrix;
      ``"SE(3)"``: random rotation plus a N(0, 1 m) 3D translation. These break the
      symmetry (gravity and the floor): the robot may start tilted, in the air or inside
      the floor.

    ``bodies="torso"`` compares the torso alone, ``"all"`` every body (relabelled under
    mirrors). Takes about a second for the defaults.
    """
    e = _env(env)
    _grid(e, seconds, sample_dt)
    if bodies not in ("all", "torso"):
        raise InputError(f"bodies must be 'all' or 'torso', got {bodies!r}")
    init = random_initial_states(env, trajectories=trajectories, seed=seed)
    q, v, p = init["qpos"], init["qvel"], init["control_params"]
    sim_kw = {"seconds": seconds, "sample_dt": sample_dt}
    base = simulate(env, q, v, p, **sim_kw)
    rng = np.random.default_rng([seed, 7919])
    errors = {}
    for name in GROUP_KEYS:
        samples = [_group_sample(name, rng) for _ in range(q.shape[0])]
        g = np.stack([s[0] for s in samples])
        t = np.stack([s[1] for s in samples])
        moved = simulate(env, *transform_initial_state(env, q, v, p, g, t), **sim_kw)
        expected = transform_positions(env, base, g, t)
        sel = slice(None) if bodies == "all" else slice(0, 1)
        errors[name] = relative_error(moved[:, 1:, sel], expected[:, 1:, sel])
    return errors

