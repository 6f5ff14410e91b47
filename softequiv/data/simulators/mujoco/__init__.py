"""MuJoCo simulations of the Gymnasium Ant (and, best effort, the Humanoid) (issue 5).

Why this dataset: a legged robot on a flat floor under gravity is a physical system whose
symmetries are known exactly. Rotating the whole robot about the vertical axis, shifting it
horizontally, or mirroring it (left and right legs relabelled) maps a trajectory onto
another trajectory; tilting it or lifting it does not (the floor and gravity pick out the
vertical). So among the candidate groups acting on R^3 (O(3), O2xy, O2yz, O2xz, SE(3)) the
data respects O2xy and horizontal translations exactly and breaks the others, and
:func:`simulator_equivariance_errors` measures that ground truth on the simulator itself.

Modules:

- :mod:`.model`: :func:`load_model` and the bookkeeping of each model's mirror symmetry
  (joints, bodies and actuators relabelled, checked against the geometry).
- :mod:`.trajectories`: random initial states, sinusoidal controls, :func:`simulate`,
  :func:`generate_trajectories` and the cached files of :func:`generate_to_file`.
- :mod:`.symmetry`: :func:`transform_initial_state` and :func:`transform_positions` (an
  element of O(3) plus a translation acting on either side of the simulator) and
  :func:`simulator_equivariance_errors`.

Windows of these trajectories for forecasting are cut in :mod:`softequiv.data.motion`.

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

from softequiv.data.simulators import relative_error
from softequiv.data.simulators.mujoco.model import ENVS, load_model
from softequiv.data.simulators.mujoco.symmetry import (
    GROUP_KEYS,
    simulator_equivariance_errors,
    transform_initial_state,
    transform_positions,
)
from softequiv.data.simulators.mujoco.trajectories import (
    FORMAT_VERSION,
    controls,
    generate_to_file,
    generate_trajectories,
    load_trajectories,
    random_initial_states,
    simulate,
)

__all__ = [
    "ENVS",
    "FORMAT_VERSION",
    "GROUP_KEYS",
    "controls",
    "generate_to_file",
    "generate_trajectories",
    "load_model",
    "load_trajectories",
    "random_initial_states",
    "relative_error",
    "simulate",
    "simulator_equivariance_errors",
    "transform_initial_state",
    "transform_positions",
]
