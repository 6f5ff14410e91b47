"""MuJoCo Ant forecasting data: simulator symmetries, generation, caching, windows."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from softequiv.data.simulators import mujoco as mj
from softequiv.data.windows import make_windows
from softequiv.errors import InputError

needs_mujoco = pytest.mark.skipif(
    importlib.util.find_spec("mujoco") is None or importlib.util.find_spec("gymnasium") is None,
    reason="needs mujoco and gymnasium (pip install 'softequiv[mujoco]')",
)


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@pytest.fixture(scope="module")
def ant_run() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four random initial states and their simulated positions over 1 s."""
    init = mj.random_initial_states("ant", trajectories=4, seed=11)
    pos = mj.simulate("ant", init["qpos"], init["qvel"], init["control_params"], seconds=1.0)
    return init, pos


def _equivariance_gap(init: dict, pos: np.ndarray, g: np.ndarray, shift: np.ndarray) -> float:
    """max |f(g x) - g f(x)| in metres over trajectories, times and bodies."""
    moved = mj.transform_initial_state(
        "ant", init["qpos"], init["qvel"], init["control_params"], g, shift
    )
    out = mj.simulate("ant", *moved, seconds=1.0)
    return float(np.abs(out - mj.transform_positions("ant", pos, g, shift)).max())


@needs_mujoco
def test_z_rotation_equivariance(ant_run) -> None:
    init, pos = ant_run
    g = np.stack([_rot_z(a) for a in (0.3, 1.7, 2.9, -2.2)])
    assert pos.shape == (4, 11, 13, 3)
    assert _equivariance_gap(init, pos, g, np.zeros(3)) < 1e-8


@needs_mujoco
def test_mirror_equivariance_with_relabelled_legs(ant_run) -> None:
    init, pos = ant_run
    g = _rot_z(0.8) @ np.diag([1.0, -1.0, 1.0])
    assert _equivariance_gap(init, pos, g, np.zeros(3)) < 1e-8


@needs_mujoco
def test_horizontal_shift_equivariance(ant_run) -> None:
    init, pos = ant_run
    shifts = np.array([[1.5, -0.7, 0.0], [-3.0, 2.0, 0.0], [0.1, 0.2, 0.0], [10.0, 5.0, 0.0]])
    assert _equivariance_gap(init, pos, np.eye(3), shifts) < 1e-8


@needs_mujoco
def test_tilt_breaks_equivariance(ant_run) -> None:
    init, pos = ant_run
    assert _equivariance_gap(init, pos, _rot_x(np.deg2rad(5.0)), np.zeros(3)) > 1e-3


@needs_mujoco
def test_simulation_independent_of_threads(ant_run) -> None:
    init, pos = ant_run
    one = mj.simulate(
        "ant", init["qpos"], init["qvel"], init["control_params"], seconds=1.0, nthread=1
    )
    np.testing.assert_array_equal(one, pos)


@needs_mujoco
def test_generate_trajectories_shapes_and_determinism() -> None:
    a = mj.generate_trajectories("ant", trajectories=3, seconds=0.6, seed=5)
    b = mj.generate_trajectories("ant", trajectories=3, seconds=0.6, seed=5)
    c = mj.generate_trajectories("ant", trajectories=3, seconds=0.6, seed=6)
    assert a["positions"].shape == (3, 7, 13, 3)
    assert a["positions"].dtype == np.float64
    assert list(a["body_names"][:2]) == ["torso", "front_left_leg"]
    np.testing.assert_allclose(a["times"], np.arange(7) * 0.1)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["positions"], c["positions"])
    # Starts upright inside the joint limits, somewhere in [-2, 2]^2, above the floor.
    assert np.abs(a["qpos0"][:, :2]).max() <= 2.0
    assert (a["positions"][:, 0, 0, 2] > 0.3).all()
    np.testing.assert_allclose(a["qpos0"][:, 4:6], 0.0)


@needs_mujoco
def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="unknown MuJoCo env"):
        mj.generate_trajectories("cheetah", trajectories=2)
    with pytest.raises(InputError, match="unknown MuJoCo env"):
        mj.generate_to_file(None, env="cheetah")
    with pytest.raises(InputError, match="unknown MuJoCo env"):
        mj.simulator_equivariance_errors("cheetah")
    with pytest.raises(InputError, match="multiple"):
        mj.generate_trajectories("ant", trajectories=2, seconds=0.65)


@needs_mujoco
def test_generate_to_file_and_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOFTEQUIV_CACHE", str(tmp_path / "cache"))
    args = {"trajectories": 2, "seconds": 0.4, "seed": 1}
    first = mj.generate_to_file(None, **args)
    assert first.parent == tmp_path / "cache" and first.suffix == ".npz"
    stamp = first.stat().st_mtime_ns

    def fail(**kwargs):
        raise AssertionError("cache hit must not regenerate")

    monkeypatch.setattr(mj, "generate_trajectories", fail)
    assert mj.generate_to_file(None, **args) == first
    assert first.stat().st_mtime_ns == stamp
    monkeypatch.undo()

    data = mj.load_trajectories(first)
    assert data["positions"].shape == (2, 5, 13, 3)
    assert data["generation_args"]["seed"] == 1
    assert data["generation_args"]["env"] == "ant"
    explicit = mj.generate_to_file(tmp_path / "ant.npz", **args)
    assert explicit == tmp_path / "ant.npz"
    np.testing.assert_array_equal(mj.load_trajectories(explicit)["positions"], data["positions"])


@needs_mujoco
def test_simulator_equivariance_errors() -> None:
    errors = mj.simulator_equivariance_errors("ant", trajectories=3, seconds=0.6)
    assert list(errors) == ["O(3)", "O2xy", "O2yz", "O2xz", "translations_xy", "rotations_z",
                            "SE(3)"]
    for exact in ("O2xy", "translations_xy", "rotations_z"):
        assert errors[exact] < 1e-10
    for broken in ("O(3)", "O2yz", "O2xz", "SE(3)"):
        assert errors[broken] > 1e-3


def test_make_windows_layout() -> None:
    T, S, nb = 2, 9, 4
    pos = np.arange(T * S * nb * 3, dtype=np.float64).reshape(T, S, nb, 3)
    X, Y = make_windows(pos, past=3, future=2)
    n = S - 5 + 1
    assert X.shape == (T * n, 3 * 3) and Y.shape == (T * n, 2 * 3)
    np.testing.assert_array_equal(X[0], pos[0, 0:3, 0].ravel())
    np.testing.assert_array_equal(Y[0], pos[0, 3:5, 0].ravel())
    np.testing.assert_array_equal(X[n + 1], pos[1, 1:4, 0].ravel())

    X, Y = make_windows(pos, past=3, future=2, bodies="all")
    assert X.shape == (T * n, 3 * nb * 3) and Y.shape == (T * n, 2 * nb * 3)
    # time-major, then body, then xyz
    np.testing.assert_array_equal(X[2].reshape(3, nb, 3), pos[0, 2:5])
    np.testing.assert_array_equal(Y[2].reshape(2, nb, 3), pos[0, 5:7])

    X, _ = make_windows(pos, past=2, future=1, bodies=[3, 1])
    np.testing.assert_array_equal(X[0].reshape(2, 2, 3), pos[0, 0:2][:, [3, 1]])

    with pytest.raises(InputError):
        make_windows(pos, past=6, future=6)
    with pytest.raises(InputError):
        make_windows(pos[0])
    with pytest.raises(InputError):
        make_windows(pos, past=2, future=2, bodies=[7])
    with pytest.raises(InputError):
        make_windows(pos, bodies="legs")
