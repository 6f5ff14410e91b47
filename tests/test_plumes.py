"""The ``smoke`` dataset: layout, splits and the two test sets, ground truth, options."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from softequiv.data import plumes
from softequiv.data.base import TEST, TRAIN, VALID
from softequiv.data.registry import load_builtin_dataset
from softequiv.data.simulators import smoke as sm
from softequiv.errors import InputError

needs_phiflow = pytest.mark.skipif(importlib.util.find_spec("phi") is None,
                                   reason="needs PhiFlow (pip install 'softequiv[fluids]')")

# Tiny runs: 8x8 cells, 6 frames, windows of 2 frames.
TINY = {"grid": 8, "steps": 6, "k": 2}


@pytest.fixture(scope="module")
def datasets(module_cache):
    return {variant: load_builtin_dataset("smoke", variant=variant, seed=1, **TINY)
            for variant in ("mirror", "rotation")}


@needs_phiflow
@pytest.mark.parametrize("variant", ["mirror", "rotation"])
def test_layout_and_reps(datasets, variant) -> None:
    ds = datasets[variant]
    assert ds.X.shape[1:] == (4, 8, 8) and ds.Y.shape[1:] == (2, 8, 8)
    assert ds.rep_in == "2*Vector" and ds.rep_out == "Vector"
    assert ds.groups == ["D4", "C4", "C2", "D2", "FlipX", "FlipY"]
    assert ds.X.dtype == ds.Y.dtype == np.float64
    # Each row: frames t-2, t-1 in, frame t out, from one simulation.
    frames = sm.simulate_cached(*_inflows_and_buoyancy(ds), grid=8, steps=6)["velocity"]
    for row in (0, len(ds.X) // 2, len(ds.X) - 1):
        p, t = ds.info["row_position"][row], ds.info["row_target_frame"][row]
        np.testing.assert_array_equal(ds.X[row].reshape(2, 2, 8, 8), frames[p, t - 2:t])
        np.testing.assert_array_equal(ds.Y[row], frames[p, t])


def _inflows_and_buoyancy(ds):
    pos = plumes.inflow_positions(ds.info["variant"], ds.info["grid"])
    return pos, plumes.buoyancy_rule(ds.info["variant"], ds.info["asymmetry"])(pos)


@needs_phiflow
@pytest.mark.parametrize("variant", ["mirror", "rotation"])
def test_splits_and_test_sets(datasets, variant) -> None:
    ds = datasets[variant]
    assert ds.test_sets == {"future": plumes.FUTURE, "domain": plumes.DOMAIN}
    assert plumes.FUTURE == TEST
    assert set(np.unique(ds.split)) == {TRAIN, VALID, plumes.FUTURE, plumes.DOMAIN}
    pos = plumes.inflow_positions(variant, 8)
    domain = {tuple(p) for p in ds.info["positions"]["domain"]}
    assert len(domain) == round(len(pos) / 4)
    row_pos = np.array([tuple(pos[i]) in domain for i in ds.info["row_position"]])
    target = np.array(ds.info["row_target_frame"])
    f = ds.info["frames"]
    assert np.all(row_pos == (ds.split == plumes.DOMAIN))
    assert np.all(target[ds.split == TRAIN] < f["valid"])
    valid = target[ds.split == VALID]
    assert np.all((valid >= f["valid"]) & (valid < f["future"]))
    assert np.all(target[ds.split == plumes.FUTURE] >= f["future"])
    assert np.all(target[ds.split == plumes.DOMAIN] < f["future"])
    parts = ds.test_parts()
    assert list(parts) == ["future", "domain"]
    np.testing.assert_array_equal(parts["future"][0], ds.part(TEST)[0])
    assert len(parts["domain"][0]) == ds.info["n"]["domain"] > 0


@needs_phiflow
def test_ground_truth(datasets) -> None:
    mirror, rotation = datasets["mirror"], datasets["rotation"]
    assert list(mirror.true_errors) == mirror.groups
    assert mirror.exact == ["FlipX"]
    assert mirror.true_errors["FlipX"] < 1e-12
    for name in ("D4", "C4", "C2", "D2", "FlipY"):
        assert mirror.true_errors[name] > 1e-3, name
    # Stronger buoyancy on the left and right walls: D2 and its subgroups kept, C4 broken.
    assert rotation.exact == ["C2", "D2", "FlipX", "FlipY"]
    for name in rotation.exact:
        assert rotation.true_errors[name] < 1e-12, name
    assert rotation.true_errors["C4"] > 1e-3 and rotation.true_errors["D4"] > 1e-3


@needs_phiflow
def test_seeds_reuse_the_simulations(datasets, monkeypatch) -> None:
    def no_simulation(*args, **kwargs):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(sm, "simulate", no_simulation)
    other = load_builtin_dataset("smoke", variant="mirror", seed=2, **TINY)
    same = load_builtin_dataset("smoke", variant="mirror", seed=1, **TINY)
    first = datasets["mirror"]
    np.testing.assert_array_equal(same.X, first.X)
    np.testing.assert_array_equal(same.split, first.split)
    assert other.true_errors == first.true_errors
    assert other.info["positions"]["domain"] != first.info["positions"]["domain"]


def test_inflows_and_rules_have_the_stated_symmetry() -> None:
    mirror = plumes.inflow_positions("mirror", 32)
    assert len(mirror) == 8 and np.all(mirror[:, 1] < 0)
    np.testing.assert_array_equal(np.sort(mirror[:, 0]), np.sort(-mirror[:, 0]))
    rotation = plumes.inflow_positions("rotation", 32)
    assert len(sm.orbit(rotation)) == len(rotation) == 16
    rule = plumes.buoyancy_rule("rotation", 0.5)
    np.testing.assert_allclose(rule(np.array([[0.0, -9.0], [9.0, 1.0], [-2.0, 9.0]])),
                               [[0.0, 0.1], [-0.15, 0.0], [0.0, -0.1]])
    assert plumes._exact_candidates(rotation, plumes.buoyancy_rule("rotation", 0.0)) == \
        plumes.SMOKE_GROUPS
    assert plumes._exact_candidates(mirror, plumes.buoyancy_rule("mirror")) == ["FlipX"]


@pytest.mark.parametrize(("options", "message"), [
    ({"variant": "spin"}, "variant must be one of mirror, rotation, levels"),
    ({"grid": 4}, "grid must be at least 8"),
    ({"grid": 8.5}, "grid must be an integer"),
    ({"steps": 8, "k": 6}, "leave no training frames"),
    ({"variant": "levels", "level": 9}, "level must be below 5"),
    ({"variant": "levels", "asymmetry": 0.1}, "give level, not asymmetry"),
    ({"variant": "mirror", "asymmetry": 0.1}, "rotation variant only"),
    ({"variant": "rotation", "level": 1}, "levels variant only"),
    ({"variant": "rotation", "asymmetry": "x"}, "asymmetry must be a number"),
    ({"seed": -1}, "seed must be at least 0"),
    ({"bodies": "all"}, "unexpected keyword argument 'bodies'"),
])
def test_bad_options_are_one_line_errors(options, message) -> None:
    with pytest.raises(InputError, match=message) as err:
        load_builtin_dataset("smoke", **options)
    assert "\n" not in str(err.value)


@needs_phiflow
def test_data_smoke_command_writes_a_readable_file(datasets, tmp_path, capsys) -> None:
    from softequiv.cli import main

    out = tmp_path / "smoke.npz"
    args = ["data", "smoke", "--grid", "8", "--steps", "6", "--k", "2", "--seed", "1"]
    assert main([*args, "--out", str(out)]) == 0
    ds = datasets["mirror"]
    with np.load(out) as f:
        np.testing.assert_array_equal(f["X"], ds.X)
        assert set(f["split"]) == {TRAIN, VALID, TEST}
        np.testing.assert_array_equal(f["test_set"] == "domain", ds.split == plumes.DOMAIN)
        assert json.loads(str(f["exact"])) == ["FlipX"]
    assert main([*args, "--variant", "spin", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "variant must be one of" in err and err.count("\n") == 1
