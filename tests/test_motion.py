"""The mujoco-ant motion-forecasting dataset: reps, split by trajectory, truth, metrics."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from softequiv.data import motion
from softequiv.data.base import TEST, TRAIN, VALID
from softequiv.errors import InputError
from softequiv.spec import parse_group, parse_rep

needs_mujoco = pytest.mark.skipif(
    importlib.util.find_spec("mujoco") is None or importlib.util.find_spec("gymnasium") is None,
    reason="needs mujoco and gymnasium (pip install 'softequiv[mujoco]')",
)

SMALL = {"trajectories": 12, "seconds": 1.2, "seed": 3}


@pytest.fixture(scope="module")
def cache(module_cache):
    return module_cache


@pytest.fixture(scope="module")
def datasets(cache):
    return {
        (bodies, variant): motion.mujoco_ant(bodies=bodies, variant=variant, **SMALL)
        for bodies in ("torso", "all")
        for variant in ("o3", "se3")
    }


def _row_trajectories(ds) -> np.ndarray:
    """Recover each row's trajectory from the cached positions (windows are unique)."""
    pos = np.load(ds.info["file"])["positions"]  # [T, S, n_bodies, 3]
    first = ds.X[:, :3]  # torso position at the window's first sample
    torso = pos[:, :, 0, :]  # [T, S, 3]
    hit = np.all(np.abs(first[:, None, None, :] - torso[None]) == 0.0, axis=-1)  # [N, T, S]
    assert np.all(hit.reshape(len(first), -1).sum(axis=1) == 1)
    return np.argwhere(hit)[:, 1]


@needs_mujoco
@pytest.mark.parametrize("bodies", ["torso", "all"])
@pytest.mark.parametrize("variant", ["o3", "se3"])
def test_shapes_reps_and_groups(datasets, bodies, variant) -> None:
    ds = datasets[bodies, variant]
    nb = 1 if bodies == "torso" else 9
    d = 3 if variant == "o3" else 4
    info = ds.info
    assert info["n_bodies"] == nb and info["past"] == 6 and info["future"] == 6
    assert info["metrics"] == "ade_fde"
    windows = 12 * (13 - 12 + 1)  # 12 trajectories, 13 samples each
    assert ds.X.shape == (windows, 6 * nb * d) and ds.Y.shape == ds.X.shape
    assert ds.X.dtype == np.float64 and ds.split.shape == (windows,)
    assert parse_rep(ds.rep_in).size(d) == ds.X.shape[1]
    assert parse_rep(ds.rep_out).size(d) == ds.Y.shape[1]
    expected = motion.O3_GROUPS if variant == "o3" else motion.SE3_GROUPS
    if (bodies, variant) == ("all", "o3"):
        expected = [*expected, "SO2xy"]
    assert ds.groups == expected and set(ds.exact) <= set(ds.groups)
    assert ds.tuning == {"rule": "published", "p": 5.0}  # SPEC 5's p for motion
    assert all(parse_group(name).d == d for name in ds.groups)
    if bodies == "all":
        assert info["body_names"][0] == "torso" and len(info["body_names"]) == 9
        assert sorted(info["dropped_bodies"]) == sorted(
            ["front_left_leg", "front_right_leg", "back_leg", "right_back_leg"])


def test_horizontal_translation_group() -> None:
    group = parse_group("Trans(3, [0, 1])")
    assert group.d == 4 and len(group.discrete) == 0
    expected = np.zeros((2, 4, 4))
    expected[0, 0, 3] = expected[1, 1, 3] = 1.0
    # Same Lie algebra: span of E_{0,3} and E_{1,3}.
    both = np.concatenate([group.lie.reshape(-1, 16), expected.reshape(2, 16)])
    assert np.linalg.matrix_rank(group.lie.reshape(-1, 16)) == 2
    assert np.linalg.matrix_rank(both) == 2


@needs_mujoco
@pytest.mark.parametrize("bodies", ["torso", "all"])
def test_split_by_trajectory(datasets, bodies) -> None:
    ds = datasets[bodies, "o3"]
    traj = _row_trajectories(ds)
    parts = ds.info["trajectory_parts"]
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(12))
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [8, 2, 2]
    for name, label in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        assert set(traj[ds.split == label]) == set(parts[name])
    for t in range(12):
        assert len(set(ds.split[traj == t])) == 1  # no trajectory in two parts


@needs_mujoco
def test_subsampling_keeps_trajectory_split(cache) -> None:
    ds = motion.mujoco_ant(n=(10, 3, 2), **SMALL)
    full = motion.mujoco_ant(**SMALL)
    assert ds.info["n"] == [10, 3, 2]
    assert [int((ds.split == k).sum()) for k in (TRAIN, VALID, TEST)] == [10, 3, 2]
    assert ds.info["trajectory_parts"] == full.info["trajectory_parts"]
    traj = _row_trajectories(ds)
    for name, label in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        assert set(traj[ds.split == label]) <= set(ds.info["trajectory_parts"][name])
    again = motion.mujoco_ant(n=(10, 3, 2), **SMALL)
    np.testing.assert_array_equal(ds.X, again.X)
    with pytest.raises(InputError, match="valid windows"):
        motion.mujoco_ant(n=(1, 100, 1), **SMALL)


@needs_mujoco
def test_deterministic_and_cached(cache, datasets) -> None:
    first = datasets["torso", "o3"]
    again = motion.mujoco_ant(**SMALL)  # from the cache files
    np.testing.assert_array_equal(first.X, again.X)
    np.testing.assert_array_equal(first.Y, again.Y)
    np.testing.assert_array_equal(first.split, again.split)
    assert first.true_errors == again.true_errors
    assert list(cache.glob("mujoco_ant_truth_*.json"))
    for f in cache.iterdir():  # regenerate from scratch: the same numbers
        f.unlink()
    fresh = motion.mujoco_ant(**SMALL)
    np.testing.assert_array_equal(first.X, fresh.X)
    np.testing.assert_array_equal(first.split, fresh.split)
    assert first.true_errors == pytest.approx(fresh.true_errors, rel=1e-9, abs=1e-15)
    other = motion.mujoco_ant(**{**SMALL, "seed": 4})
    assert not np.array_equal(first.X, other.X)


@needs_mujoco
@pytest.mark.parametrize("bodies", ["torso", "all"])
@pytest.mark.parametrize("variant", ["o3", "se3"])
def test_true_errors(datasets, bodies, variant) -> None:
    ds = datasets[bodies, variant]
    assert list(ds.true_errors) == ds.groups
    for name in ds.exact:
        assert ds.true_errors[name] < 1e-6
    for name in set(ds.groups) - set(ds.exact):
        assert ds.true_errors[name] > 1e-2
    if variant == "o3":
        assert ds.true_errors["O2yz"] > 1e-2
        # Mirrors need leg relabelling, which n*Vector cannot express; rotations about z
        # need none.
        assert ds.exact == (["O2xy"] if bodies == "torso" else ["SO2xy"])
    else:
        assert ds.exact == ["Embed(SO(2), 4, [0, 1])", "Trans(3, [0, 1])"]


@needs_mujoco
def test_torso_truth_matches_simulator_measurement(cache, datasets) -> None:
    from softequiv.data.simulators import mujoco as mj

    ref = mj.simulator_equivariance_errors(
        "ant", trajectories=motion.TRUTH_TRAJECTORIES, seconds=1.2, seed=3, bodies="torso")
    ours = motion.simulator_truth(seconds=1.2, seed=3, bodies=[0])
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-12)


@needs_mujoco
@pytest.mark.parametrize("bodies", ["torso", "all"])
def test_se3_variant_is_homogeneous(datasets, bodies) -> None:
    o3, se3 = datasets[bodies, "o3"], datasets[bodies, "se3"]
    for a, b in ((o3.X, se3.X), (o3.Y, se3.Y)):
        h = b.reshape(len(b), -1, 4)
        np.testing.assert_array_equal(h[..., 3], 1.0)
        np.testing.assert_array_equal(h[..., :3].reshape(len(a), -1), a)
    np.testing.assert_array_equal(o3.split, se3.split)
    assert se3.info["homogeneous"] and not o3.info["homogeneous"]


@needs_mujoco
def test_bad_options(cache) -> None:
    with pytest.raises(InputError, match="variant"):
        motion.mujoco_ant(variant="so2", **SMALL)
    with pytest.raises(InputError, match="bodies"):
        motion.mujoco_ant(bodies="legs", **SMALL)
    with pytest.raises(InputError, match="past"):
        motion.mujoco_ant(trajectories=12, seconds=0.8)
    with pytest.raises(InputError, match="trajectories"):
        motion.mujoco_ant(trajectories=2, seconds=1.2)


def test_distinct_bodies() -> None:
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(3, 5, 4, 3))
    pos[:, :, 2] = pos[:, :, 0]
    assert motion.distinct_bodies(pos) == [0, 1, 3]
    pos[0, 1, 2, 0] += 1.0  # differs once: kept
    assert motion.distinct_bodies(pos) == [0, 1, 2, 3]


def test_ade_fde_by_hand() -> None:
    # 2 rows, future 2, one body: errors (3,4,0) -> 5 and 0 at step 0, 0 and (0,0,2) at step 1.
    target = np.zeros((2, 6))
    pred = np.zeros((2, 6))
    pred[0, 0:3] = [3.0, 4.0, 0.0]
    pred[1, 3:6] = [0.0, 0.0, 2.0]
    out = motion.ade_fde(pred, target, future=2, n_bodies=1, homogeneous=False)
    assert out["ade"] == pytest.approx((5.0 + 0.0 + 0.0 + 2.0) / 4)
    assert out["fde"] == pytest.approx((0.0 + 2.0) / 2)
    assert out["mse"] == pytest.approx((9 + 16 + 4) / 12)
    # Homogeneous: the fourth coordinate is ignored; two bodies, future 1.
    target = np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    pred = np.array([[0.0, 0.0, 1.0, 7.0, 1.0, 1.0, 4.0, 1.0]])
    out = motion.ade_fde(pred, target, future=1, n_bodies=2, homogeneous=True)
    assert out["ade"] == pytest.approx(2.0) and out["fde"] == pytest.approx(2.0)
    assert out["mse"] == pytest.approx((1 + 9) / 6)
    with pytest.raises(InputError, match="pred"):
        motion.ade_fde(pred[:, :6], target, future=1, n_bodies=2, homogeneous=True)
