"""MuJoCo models for the motion datasets and the bookkeeping of their mirror symmetry.

:func:`load_model` loads a model bundled with gymnasium with the solver settings the
exactness of the symmetries relies on (see :mod:`softequiv.data.simulators.mujoco`).
:class:`_Env` derives, from the model itself, how a mirror relabels joints, bodies and
actuators, and checks that relabelling against the geometry so that a wrong pairing
fails loudly instead of producing silently non-equivariant data.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from softequiv.data.simulators import optional_import
from softequiv.errors import InputError

__all__ = ["ENVS", "load_model"]

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
    return optional_import("mujoco", "the MuJoCo datasets need mujoco and gymnasium", "mujoco")


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
