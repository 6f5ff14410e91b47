"""Random MuJoCo trajectories: initial states, open-loop controls, rollouts, cached files.

:func:`generate_trajectories` draws random initial states (uniform heading, random
horizontal position, joint angles strictly inside their limits, small velocities) and
smooth open-loop sinusoidal controls, simulates them with ``mujoco.rollout`` and returns
the world positions of every body sampled every ``sample_dt`` seconds;
:func:`generate_to_file` writes the same arrays to an ``.npz`` or to a cache file named
from the arguments (:mod:`softequiv.data.cache`), reused when it exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from softequiv.data.cache import args_digest, cache_dir, write_npz
from softequiv.data.simulators.mujoco.model import _Env, _env, _mujoco, _spec
from softequiv.errors import InputError

__all__ = [
    "FORMAT_VERSION",
    "controls",
    "generate_to_file",
    "generate_trajectories",
    "load_trajectories",
    "random_initial_states",
    "simulate",
]

#: Bumped whenever generated numbers change for the same arguments (invalidates caches).
FORMAT_VERSION = 1

# Initial horizontal positions are uniform in [-XY_RANGE, XY_RANGE]^2 metres.
_XY_RANGE = 2.0
# Joint angles start in the inner (1 - 2 * _LIMIT_MARGIN) fraction of their range: a state
# exactly on a limit makes the constraint's activation depend on round-off.
_LIMIT_MARGIN = 0.1
# Lowest geom point starts this far above the floor. Not 0.02 m: floor and geom margins
# (0.01 m each) make contacts active below 0.02 m, and a start exactly on that threshold
# lets round-off decide whether a contact exists.
_CLEARANCE = 0.05
# Control amplitude as a fraction of the actuator's half range, and frequency in Hz.
_AMPLITUDE = (0.1, 0.4)
_FREQUENCY = (0.5, 2.0)
# Standard deviations of the initial velocities.
_LIN_VEL_STD = 0.1  # m/s, horizontal torso velocity
_ANG_VEL_STD = 0.1  # rad/s, torso angular velocity
_JOINT_VEL_STD = 0.3  # rad/s, hinge velocities


def _threads(nthread: int | None) -> int:
    if nthread is not None:
        return max(1, int(nthread))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _grid(env: _Env, seconds: float, sample_dt: float) -> tuple[int, int]:
    """(simulation steps per sample, number of sampled intervals) for a horizon."""
    dt = float(env.model.opt.timestep)
    if not (seconds > 0 and sample_dt > 0):
        raise InputError(f"seconds ({seconds}) and sample_dt ({sample_dt}) must be positive")
    stride = round(sample_dt / dt)
    if stride < 1 or abs(stride * dt - sample_dt) > 1e-9:
        raise InputError(f"sample_dt={sample_dt} must be a multiple of the {dt} s timestep")
    n = round(seconds / sample_dt)
    if n < 1 or abs(n * sample_dt - seconds) > 1e-9:
        raise InputError(f"seconds={seconds} must be a multiple of sample_dt={sample_dt}")
    return stride, n


def random_initial_states(
    env: str = "ant", *, trajectories: int = 200, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random initial states and control parameters, deterministic per ``seed``.

    Returns ``qpos`` [T, nq], ``qvel`` [T, nv] and ``control_params`` [T, nu, 3]
    (amplitude, frequency in Hz, phase; the control is ``a * sin(2 pi f t + phase)``).
    The robot starts upright with a uniform random heading, at a uniform horizontal
    position in [-2, 2]^2 m, hinge angles uniform in the inner 80% of their ranges, its
    lowest point 5 cm above the floor, and small random velocities. Amplitudes are 10-40%
    of each actuator's range, frequencies 0.5-2 Hz: strong enough to move, smooth enough
    that few robots flip over.
    """
    mujoco = _mujoco()
    e = _env(env)
    model = e.model
    if trajectories < 1:
        raise InputError(f"trajectories must be at least 1, got {trajectories}")
    rng = np.random.default_rng(seed)
    T = int(trajectories)
    qpos = np.tile(model.qpos0, (T, 1)).astype(np.float64)
    qvel = np.zeros((T, model.nv))

    yaw = rng.uniform(0.0, 2.0 * np.pi, T)
    qpos[:, 0:2] = rng.uniform(-_XY_RANGE, _XY_RANGE, (T, 2))
    qpos[:, 3] = np.cos(yaw / 2)
    qpos[:, 4:6] = 0.0
    qpos[:, 6] = np.sin(yaw / 2)
    lo, hi = model.jnt_range[1:, 0], model.jnt_range[1:, 1]
    width = hi - lo
    adr = model.jnt_qposadr[1:]
    qpos[:, adr] = rng.uniform(lo + _LIMIT_MARGIN * width, hi - _LIMIT_MARGIN * width,
                               (T, len(adr)))

    qvel[:, 0:2] = rng.normal(0.0, _LIN_VEL_STD, (T, 2))
    qvel[:, 3:6] = rng.normal(0.0, _ANG_VEL_STD, (T, 3))
    qvel[:, model.jnt_dofadr[1:]] = rng.normal(0.0, _JOINT_VEL_STD, (T, model.njnt - 1))

    amp = rng.uniform(*_AMPLITUDE, (T, model.nu)) * e.ctrl_half
    freq = rng.uniform(*_FREQUENCY, (T, model.nu))
    phase = rng.uniform(0.0, 2.0 * np.pi, (T, model.nu))
    params = np.stack([amp, freq, phase], axis=-1)

    # Height: put the lowest point of the robot _CLEARANCE above the floor.
    data = mujoco.MjData(model)
    robot = model.geom_bodyid != 0
    for i in range(T):
        data.qpos[:] = qpos[i]
        data.qpos[2] = 0.0
        mujoco.mj_kinematics(model, data)
        qpos[i, 2] = _CLEARANCE - _lowest_point(mujoco, model, data, robot)
    return {"qpos": qpos, "qvel": qvel, "control_params": params}


def _lowest_point(mujoco: Any, model: Any, data: Any, which: np.ndarray) -> float:
    """Lowest z of the selected geoms (exact for spheres/capsules, bounding sphere else)."""
    z = data.geom_xpos[which, 2]
    size = model.geom_size[which]
    kind = model.geom_type[which]
    axis_z = np.abs(data.geom_xmat[which, 8])  # z component of the geom's local z axis
    low = z - model.geom_rbound[which]
    sphere = kind == mujoco.mjtGeom.mjGEOM_SPHERE
    capsule = kind == mujoco.mjtGeom.mjGEOM_CAPSULE
    low[sphere] = z[sphere] - size[sphere, 0]
    low[capsule] = z[capsule] - axis_z[capsule] * size[capsule, 1] - size[capsule, 0]
    return float(low.min())


def controls(control_params: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Sinusoidal controls [T, len(times), nu] from parameters [T, nu, 3]."""
    a, f, p = (control_params[..., k][:, None, :] for k in range(3))
    return a * np.sin(2.0 * np.pi * f * times[None, :, None] + p)


def simulate(
    env: str,
    qpos: np.ndarray,
    qvel: np.ndarray,
    control_params: np.ndarray,
    *,
    seconds: float = 2.4,
    sample_dt: float = 0.1,
    nthread: int | None = None,
) -> np.ndarray:
    """Simulate from initial states and return sampled world body positions.

    ``qpos`` [T, nq], ``qvel`` [T, nv], ``control_params`` [T, nu, 3] as from
    :func:`random_initial_states` (or transformed by :func:`transform_initial_state`).
    Returns float64 [T, S, n_bodies, 3] with S = seconds / sample_dt + 1 samples at
    t = 0, sample_dt, ..., seconds, bodies in model order without the world body. The
    control over step i is the sinusoid at t = i * timestep. Each rollout starts from a
    zero solver warm start, so results do not depend on batch composition or threads.
    """
    return _simulate(env, qpos, qvel, control_params, seconds, sample_dt, nthread)[0]


def _simulate(
    env: str,
    qpos: np.ndarray,
    qvel: np.ndarray,
    control_params: np.ndarray,
    seconds: float,
    sample_dt: float,
    nthread: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`simulate`, also returning the final qpos [T, nq]."""
    mujoco = _mujoco()
    from mujoco import rollout

    e = _env(env)
    model = e.model
    stride, n = _grid(e, seconds, sample_dt)
    qpos = np.atleast_2d(np.asarray(qpos, dtype=np.float64))
    qvel = np.atleast_2d(np.asarray(qvel, dtype=np.float64))
    params = np.asarray(control_params, dtype=np.float64)
    if params.ndim == 2:
        params = params[None]
    T = qpos.shape[0]
    if qpos.shape != (T, e.nq) or qvel.shape != (T, e.nv) or params.shape != (T, e.nu, 3):
        raise InputError(
            f"expected qpos [T, {e.nq}], qvel [T, {e.nv}], control_params [T, {e.nu}, 3]; "
            f"got {qpos.shape}, {qvel.shape}, {params.shape}"
        )
    nstep = stride * n
    dt = float(model.opt.timestep)
    ctrl = controls(params, np.arange(nstep) * dt)

    spec_full = mujoco.mjtState.mjSTATE_FULLPHYSICS
    nstate = mujoco.mj_stateSize(model, spec_full)
    qpos_at = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_TIME)
    data = mujoco.MjData(model)
    init = np.empty((T, nstate))
    for i in range(T):
        mujoco.mj_resetData(model, data)
        data.qpos[:] = qpos[i]
        data.qvel[:] = qvel[i]
        mujoco.mj_getState(model, data, init[i], spec_full)

    datas = [mujoco.MjData(model) for _ in range(_threads(nthread))]
    positions = np.empty((T, n + 1, model.nbody - 1, 3))
    final = np.empty((T, e.nq))
    chunk = 256  # bound the [chunk, nstep, nstate] state buffer
    for start in range(0, T, chunk):
        sl = slice(start, min(T, start + chunk))
        state, _ = rollout.rollout(
            model,
            datas,
            init[sl],
            ctrl[sl],
            nstep=nstep,
            initial_warmstart=np.zeros((sl.stop - sl.start, model.nv)),
        )
        for i in range(sl.start, sl.stop):
            for k in range(n + 1):
                data.qpos[:] = qpos[i] if k == 0 else state[i - start, k * stride - 1,
                                                              qpos_at:qpos_at + e.nq]
                mujoco.mj_kinematics(model, data)
                positions[i, k] = data.xpos[1:]
            final[i] = data.qpos
    return positions, final


def generate_trajectories(
    env: str = "ant",
    *,
    trajectories: int = 200,
    seconds: float = 2.4,
    seed: int = 0,
    sample_dt: float = 0.1,
) -> dict[str, np.ndarray]:
    """Simulate random trajectories and return sampled world body positions.

    Returns a dict of arrays:

    - ``positions`` float64 [trajectories, seconds / sample_dt + 1, n_bodies, 3]: world
      positions (``xpos``) of every body but the world body at t = 0, sample_dt, ...;
      the torso is body 0.
    - ``body_names`` [n_bodies] str, ``times`` [S] seconds.
    - ``qpos0`` [T, nq], ``qvel0`` [T, nv], ``control_params`` [T, nu, 3] (amplitude,
      frequency Hz, phase): everything needed to re-simulate with :func:`simulate`.
    - ``upright`` [T] bool: torso z axis still points up at the end (few robots flip).

    Deterministic per ``seed`` (the result does not depend on the number of threads).
    ``env`` is ``"ant"`` or ``"humanoid"`` (best effort, see the module docstring); other
    names raise ``InputError``. About 3 s for the defaults (48,000 RK4 steps) on 2 cores.
    """
    e = _env(env)
    _grid(e, seconds, sample_dt)
    init = random_initial_states(env, trajectories=trajectories, seed=seed)
    positions, final = _simulate(
        env, init["qpos"], init["qvel"], init["control_params"], seconds, sample_dt, None
    )
    n = positions.shape[1]
    # z component of the torso's z axis, from the final orientation quaternion.
    quat = final[:, 3:7]
    upright = 1.0 - 2.0 * (quat[:, 1] ** 2 + quat[:, 2] ** 2) > 0.0
    return {
        "positions": positions,
        "body_names": np.array(e.body_names),
        "times": np.arange(n) * float(sample_dt),
        "qpos0": init["qpos"],
        "qvel0": init["qvel"],
        "control_params": init["control_params"],
        "upright": upright,
    }


def _cache_name(args: dict[str, Any]) -> str:
    digest = args_digest({**args, "format": FORMAT_VERSION})
    return (
        f"mujoco_{args['env']}_T{args['trajectories']}_s{args['seconds']:g}"
        f"_dt{args['sample_dt']:g}_seed{args['seed']}_{digest}.npz"
    )


def generate_to_file(
    out: str | Path | None,
    *,
    env: str = "ant",
    trajectories: int = 200,
    seconds: float = 2.4,
    seed: int = 0,
    sample_dt: float = 0.1,
) -> Path:
    """Generate trajectories and save them as ``.npz``; returns the file's path.

    The file holds the arrays of :func:`generate_trajectories` plus ``generation_args``
    (a JSON string of the arguments and format version). With ``out=None`` the file goes
    to the cache folder (:func:`~softequiv.data.cache.cache_dir`) under a name derived from
    the arguments, and an existing cache file is returned without regenerating. An
    explicit ``out`` is always (re)written. Writes are atomic (temporary file, then rename).
    """
    _spec(env)
    args = {
        "env": env,
        "trajectories": int(trajectories),
        "seconds": float(seconds),
        "seed": int(seed),
        "sample_dt": float(sample_dt),
    }
    if out is None:
        path = cache_dir() / _cache_name(args)
        if path.is_file():
            return path
    else:
        path = Path(out)
    arrays = generate_trajectories(**args)
    meta = {**args, "format": FORMAT_VERSION, "mujoco": _mujoco().__version__}
    return write_npz(path, {**arrays, "generation_args": np.array(json.dumps(meta))})


def load_trajectories(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`generate_to_file` (``generation_args`` as a dict)."""
    try:
        with np.load(Path(path), allow_pickle=False) as f:
            arrays: dict[str, Any] = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read MuJoCo trajectories from {path}: {exc}") from exc
    if "positions" not in arrays:
        raise InputError(f"{path} has no 'positions' array")
    if "generation_args" in arrays:
        arrays["generation_args"] = json.loads(str(arrays["generation_args"]))
    return arrays
