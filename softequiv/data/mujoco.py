"""Motion-forecasting data from MuJoCo simulations of the Gymnasium Ant (issue 5).

Why this dataset: a legged robot on a flat floor under gravity is a physical system whose
symmetries are known exactly. Rotating the whole robot about the vertical axis, shifting it
horizontally, or mirroring it (left and right legs relabelled) maps a trajectory onto
another trajectory; tilting it or lifting it does not (the floor and gravity pick out the
vertical). So among the candidate groups acting on R^3 (O(3), O2xy, O2yz, O2xz, SE(3)) the
data respects O2xy and horizontal translations exactly and breaks the others, and
:func:`simulator_equivariance_errors` measures that ground truth on the simulator itself.

What it does:

- :func:`generate_trajectories` draws random initial states (uniform heading, random
  horizontal position, joint angles strictly inside their limits, small velocities) and
  smooth open-loop sinusoidal controls, simulates them with ``mujoco.rollout``, and
  returns world positions of every body sampled every ``sample_dt`` seconds.
- :func:`generate_to_file` writes the same arrays to an ``.npz``, or to a cache file
  named from the arguments that is reused when it exists.
- :func:`simulate`, :func:`transform_initial_state` and :func:`transform_positions` are
  the pieces: simulate from given (possibly transformed) initial states, act on an initial
  state with an element of O(3) plus a translation, and act on simulated positions.
- :func:`make_windows` cuts trajectories into (past positions -> future positions) rows.

Simulator settings that matter for exactness: the model uses the *elliptic* friction cone
and the Newton solver. The shipped pyramidal cone orients its pyramid along the world x and
y axes, so only 90-degree rotations about z would be exact. With the elliptic cone a
rotated/shifted/mirrored trajectory matches the transformed one to round-off (about
1e-12 m after 2 s, 1e-8 m after 5 s; the dynamics are chaotic, so keep horizons short).

Frames of the free joint (MuJoCo convention): position and linear velocity are in the
world frame, the orientation quaternion maps body to world, and the angular velocity is
in the *body* frame. A proper rotation g therefore rotates position, linear velocity and
orientation, and leaves the angular velocity unchanged; joint angles and actuator
controls are joint-space quantities, unchanged by proper rotations and translations.
A reflection is realised as the body's own mirror symmetry: the ant is symmetric under
x -> -x in its body frame, which swaps legs 1<->2 and 3<->4 and negates every hinge angle.

Bodies: ``positions`` hold the world ``xpos`` of the 13 Ant bodies (torso first). The four
``*_leg`` bodies sit at the torso origin (their ``pos`` is 0), so they repeat the torso's
position; the ``ankle_k_body`` entries are the knees, and foot tips are not bodies.

The humanoid (``env="humanoid"``) is a best-effort extra: rotations about z and horizontal
shifts are exact (~1e-15), but its mirror is not. The shipped XML has two left/right
differences (``right_hip_y`` armature 0.008 vs 0.01, ``right_knee`` stiffness 0 vs 1; see
``_env("humanoid").mirror_asymmetries``), and even with those removed, mirrored
trajectories differ by ~1e-5 m once the feet touch the floor (cause not found). Its
O2xy ground truth is therefore small but not zero.

``mujoco`` and ``gymnasium`` (for the bundled model XML, read without creating a gym
environment) are optional dependencies: ``pip install 'softequiv[mujoco]'``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from softequiv.atomic import atomic_file
from softequiv.errors import InputError

__all__ = [
    "ENVS",
    "GROUP_KEYS",
    "cache_dir",
    "controls",
    "generate_to_file",
    "generate_trajectories",
    "load_model",
    "load_trajectories",
    "make_windows",
    "random_initial_states",
    "relative_error",
    "simulate",
    "simulator_equivariance_errors",
    "transform_initial_state",
    "transform_positions",
]

#: Bumped whenever generated numbers change for the same arguments (invalidates caches).
FORMAT_VERSION = 1

#: Keys returned by :func:`simulator_equivariance_errors`, in order.
GROUP_KEYS = ("O(3)", "O2xy", "O2yz", "O2xz", "translations_xy", "rotations_z", "SE(3)")

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


@dataclass(frozen=True)
class _EnvSpec:
    """How to load one model and how its mirror symmetry relabels joints."""

    xml: str
    timestep: float | None  # override of the model's timestep (None keeps it)
    mirror_axis: int  # body-frame axis the mirror flips (0 = x, 1 = y)
    pairs: tuple[tuple[str, str], ...]  # joints swapped by the mirror (others map to self)


_ANT_PAIRS = (
    ("hip_1", "hip_2"), ("ankle_1", "ankle_2"), ("hip_3", "hip_4"), ("ankle_3", "ankle_4")
)
_HUMANOID_PAIRS = tuple(
    (f"right_{j}", f"left_{j}")
    for j in ("hip_x", "hip_z", "hip_y", "knee", "shoulder1", "shoulder2", "elbow")
)

_SPECS: dict[str, _EnvSpec] = {
    "ant": _EnvSpec("ant.xml", None, 0, _ANT_PAIRS),
    # The shipped 0.003 s step does not divide 0.1 s sample intervals.
    "humanoid": _EnvSpec("humanoid.xml", 0.0025, 1, _HUMANOID_PAIRS),
}

#: Environment names accepted by this module.
ENVS = tuple(_SPECS)


def _mujoco() -> Any:
    """Import mujoco or explain how to install it (it is an optional dependency)."""
    try:
        import mujoco
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the MuJoCo datasets need mujoco and gymnasium: pip install 'softequiv[mujoco]'"
        ) from exc
    return mujoco


def _spec(env: str) -> _EnvSpec:
    if env not in _SPECS:
        raise InputError(f"unknown MuJoCo env {env!r}; choose one of {', '.join(ENVS)}")
    return _SPECS[env]


def _xml_path(env: str) -> Path:
    """The model XML bundled with gymnasium (found without importing gymnasium)."""
    spec = _spec(env)
    found = importlib.util.find_spec("gymnasium")
    if found is None or found.origin is None:
        raise ImportError(
            "the MuJoCo datasets read model files shipped with gymnasium: "
            "pip install 'softequiv[mujoco]'"
        )
    path = Path(found.origin).parent / "envs" / "mujoco" / "assets" / spec.xml
    if not path.is_file():
        raise ImportError(f"gymnasium does not ship {path}; install gymnasium[mujoco]==1.4.0")
    return path


def load_model(env: str = "ant") -> Any:
    """A fresh ``mujoco.MjModel`` of ``env`` with the settings this module relies on.

    Elliptic friction cone and Newton solver, so that the dynamics commute with rotations
    about the vertical axis (see the module docstring); for the humanoid, a timestep that
    divides 0.1 s.
    """
    mujoco = _mujoco()
    spec = _spec(env)
    model = mujoco.MjModel.from_xml_path(str(_xml_path(env)))
    model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
    if spec.timestep is not None:
        model.opt.timestep = spec.timestep
    return model


class _Env:
    """A loaded model plus the index bookkeeping used by the transformations.

    The mirror maps are derived from the model and checked against its geometry, so a
    wrong pairing fails loudly instead of producing silently non-equivariant data.
    """

    def __init__(self, env: str) -> None:
        mujoco = _mujoco()
        self.name = env
        self.model = model = load_model(env)
        spec = _spec(env)
        if model.njnt == 0 or model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE:
            raise RuntimeError(f"{env}: the first joint must be the free root joint")
        if model.jnt_qposadr[0] != 0 or model.jnt_dofadr[0] != 0:
            raise RuntimeError(f"{env}: the free joint must come first in qpos/qvel")
        hinge = mujoco.mjtJoint.mjJNT_HINGE
        if any(model.jnt_type[j] != hinge for j in range(1, model.njnt)):
            raise RuntimeError(f"{env}: only hinge joints besides the root are supported")
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.root_body = int(model.jnt_bodyid[0])
        self.body_names = self._body_names()

        # Kinematics at the reference pose (qpos0, torso at the origin, identity
        # orientation): world frame == torso frame, used to check the mirror.
        data = mujoco.MjData(model)
        data.qpos[:] = model.qpos0
        data.qpos[0:3] = 0.0
        data.qpos[3:7] = (1.0, 0.0, 0.0, 0.0)
        mujoco.mj_kinematics(model, data)
        mirror = np.ones(3)
        mirror[spec.mirror_axis] = -1.0
        self.body_mirror = np.diag(mirror)

        # Joint permutation and signs: new_angle[perm[j]] = sign[j] * angle[j].
        name_to_id = {model.joint(j).name: j for j in range(model.njnt)}
        partner = {j: j for j in range(model.njnt)}
        for a, b in spec.pairs:
            ja, jb = name_to_id[a], name_to_id[b]
            partner[ja], partner[jb] = jb, ja
        jsign = np.ones(model.njnt)
        for j in range(1, model.njnt):
            k = partner[j]
            # A rotation about axis a, seen in a mirror M, is a rotation about -M a.
            image = -self.body_mirror @ data.xaxis[j]
            s = float(image @ data.xaxis[k])
            anchor_err = np.abs(self.body_mirror @ data.xanchor[j] - data.xanchor[k]).max()
            if abs(abs(s) - 1.0) > 1e-9 or anchor_err > 1e-9:
                raise RuntimeError(f"{env}: joints {j} and {k} are not mirror images")
            jsign[j] = np.sign(s)
        self.joint_perm = np.array([partner[j] for j in range(model.njnt)])
        self.joint_sign = jsign

        # The same maps on qpos/qvel entries of the hinge joints (the root is handled apart).
        hinges = np.arange(1, model.njnt)
        self.q_src = model.jnt_qposadr[hinges]
        self.q_dst = model.jnt_qposadr[self.joint_perm[hinges]]
        self.v_src = model.jnt_dofadr[hinges]
        self.v_dst = model.jnt_dofadr[self.joint_perm[hinges]]
        self.hinge_sign = jsign[hinges]

        # Bodies: a body maps to its partner joint's body, and ancestors to ancestors.
        bperm = -np.ones(model.nbody, dtype=int)
        bperm[0] = 0
        bperm[self.root_body] = self.root_body
        for j in hinges:
            b, c = int(model.jnt_bodyid[j]), int(model.jnt_bodyid[self.joint_perm[j]])
            while b != self.root_body:
                if bperm[b] not in (-1, c):
                    raise RuntimeError(f"{env}: inconsistent body mirror at body {b}")
                bperm[b] = c
                b, c = int(model.body_parentid[b]), int(model.body_parentid[c])
        # Bodies without joints below the root (e.g. the humanoid's feet): by name.
        body_id = {model.body(b).name: b for b in range(model.nbody)}
        for b in np.flatnonzero(bperm < 0):
            name = model.body(b).name
            swapped = name.replace("left", "\0").replace("right", "left").replace("\0", "right")
            bperm[b] = body_id.get(swapped, b)
        if sorted(bperm) != list(range(model.nbody)):
            raise RuntimeError(f"{env}: the mirror does not permute the bodies")
        pos_err = np.abs(data.xpos @ self.body_mirror - data.xpos[bperm]).max()
        if pos_err > 1e-9:
            raise RuntimeError(f"{env}: mirrored bodies do not coincide ({pos_err:.2e} m)")
        # Indices into the positions array (world body dropped).
        self.body_perm = bperm[1:] - 1
        self.mirror_asymmetries = self._asymmetries(data, bperm)
        self.mirror_exact = not self.mirror_asymmetries

        # Actuators drive single joints; they follow their joint's permutation and sign.
        joint_act = {}
        for a in range(model.nu):
            if model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT:
                raise RuntimeError(f"{env}: only joint actuators are supported")
            joint_act[int(model.actuator_trnid[a, 0])] = a
        self.act_perm = np.array(
            [joint_act[int(self.joint_perm[model.actuator_trnid[a, 0]])] for a in range(model.nu)]
        )
        self.act_sign = jsign[model.actuator_trnid[:, 0]].astype(float)
        gear = model.actuator_gear[:, 0]
        if not np.allclose(gear, gear[self.act_perm]):
            raise RuntimeError(f"{env}: mirrored actuators have different gears")
        lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        if not np.allclose(lo, -hi):
            raise RuntimeError(f"{env}: control ranges must be symmetric about 0")
        self.ctrl_half = hi.copy()

    def _asymmetries(self, data: Any, bperm: np.ndarray) -> list[str]:
        """Model properties that differ between mirror partners (empty when exact).

        The geometry check in ``__init__`` guarantees a consistent relabelling; this one
        looks at the physics: joint ranges, springs, damping, armature, friction loss,
        body masses and inertias, and the geoms' shapes and mirrored positions.
        """
        model = self.model
        found = []
        for j in range(1, model.njnt):
            k = int(self.joint_perm[j])
            if k < j:
                continue
            lo, hi = model.jnt_range[j]
            image = (lo, hi) if self.joint_sign[j] > 0 else (-hi, -lo)
            dj, dk = model.jnt_dofadr[j], model.jnt_dofadr[k]
            props = {
                "range": (image, model.jnt_range[k]),
                "stiffness": (model.jnt_stiffness[j], model.jnt_stiffness[k]),
                "springref": (self.joint_sign[j] * model.qpos_spring[model.jnt_qposadr[j]],
                              model.qpos_spring[model.jnt_qposadr[k]]),
                "damping": (model.dof_damping[dj], model.dof_damping[dk]),
                "armature": (model.dof_armature[dj], model.dof_armature[dk]),
                "frictionloss": (model.dof_frictionloss[dj], model.dof_frictionloss[dk]),
            }
            for prop, (a, b) in props.items():
                if not np.allclose(a, b, rtol=1e-9, atol=1e-12):
                    names = f"{model.joint(j).name}/{model.joint(k).name}"
                    found.append(f"{names} {prop} {np.round(a, 6)} vs {np.round(b, 6)}")
        for b in range(1, model.nbody):
            c = int(bperm[b])
            if c < b:
                continue
            if not np.allclose(model.body_mass[b], model.body_mass[c], rtol=1e-9):
                found.append(f"body {b}/{c} mass")
            if not np.allclose(np.sort(model.body_inertia[b]), np.sort(model.body_inertia[c]),
                               rtol=1e-9):
                found.append(f"body {b}/{c} inertia")
            gb = np.flatnonzero(model.geom_bodyid == b)
            gc = np.flatnonzero(model.geom_bodyid == c)
            key_b = sorted(
                (int(model.geom_type[g]), *np.round(model.geom_size[g], 9),
                 *np.round(self.body_mirror @ data.geom_xpos[g], 9),
                 *np.round(model.geom_friction[g], 9))
                for g in gb
            )
            key_c = sorted(
                (int(model.geom_type[g]), *np.round(model.geom_size[g], 9),
                 *np.round(data.geom_xpos[g], 9), *np.round(model.geom_friction[g], 9))
                for g in gc
            )
            if key_b != key_c:
                found.append(f"body {b}/{c} geoms")
        return found

    def _body_names(self) -> list[str]:
        """Names of the bodies after the world body; unnamed ones named after their joint."""
        model = self.model
        names = []
        for b in range(1, model.nbody):
            name = model.body(b).name
            if not name:
                if model.body_jntnum[b] > 0:
                    name = model.joint(int(model.body_jntadr[b])).name + "_body"
                else:
                    name = f"body{b}"
            names.append(name)
        return names


@cache
def _env(env: str) -> _Env:
    _spec(env)  # raise InputError before importing anything
    return _Env(env)


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


# ----------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------
# Dataset generation and caching


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


def cache_dir() -> Path:
    """``$SOFTEQUIV_CACHE`` or ``~/.cache/softequiv``."""
    root = os.environ.get("SOFTEQUIV_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "softequiv"


def _cache_name(args: dict[str, Any]) -> str:
    key = json.dumps({**args, "format": FORMAT_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
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
    to :func:`cache_dir` under a name derived from the arguments, and an existing cache
    file is returned without regenerating. An explicit ``out`` is always (re)written.
    Writes are atomic (temporary file, then rename).
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as fh:
        np.savez(fh, **arrays, generation_args=np.array(json.dumps(meta)))
    return path


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


# ----------------------------------------------------------------------------------------
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


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """mean over rows of ||a - b|| / (||a|| + ||b||), norms over all but the first axis."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    num = np.linalg.norm(a - b, axis=1)
    den = np.linalg.norm(a, axis=1) + np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-300)))


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


# ----------------------------------------------------------------------------------------
# Windows for forecasting


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
    sel = pos[:, :, idx, :]  # [T, S, n_b, 3]
    n_start = S - past - future + 1
    starts = np.arange(n_start)
    win = sel[:, starts[:, None] + np.arange(past + future)[None, :]]  # [T, n, p+f, n_b, 3]
    win = win.reshape(T * n_start, past + future, -1)
    X = win[:, :past].reshape(T * n_start, -1).copy()
    Y = win[:, past:].reshape(T * n_start, -1).copy()
    return X, Y
