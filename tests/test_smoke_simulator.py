"""The PhiFlow smoke simulator: lattice elements, layout and units, exactness, caching."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from softequiv.data import cache
from softequiv.data.simulators import smoke as sm
from softequiv.errors import InputError

needs_phiflow = pytest.mark.skipif(importlib.util.find_spec("phi") is None,
                                   reason="needs PhiFlow (pip install 'softequiv[fluids]')")

# Tiny simulations: a few steps on an 8x8 grid take seconds.
TINY = {"grid": 8, "steps": 4}
SHORT = {"grid": 8, "steps": 2}  # for the cache's bookkeeping


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SOFTEQUIV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ----------------------------------------------------------------------------------------
# The point group on inflow positions (no simulation; fields move by softequiv.fields)


def test_elements_are_named_and_match_the_lattice_groups() -> None:
    d4 = sm.elements("D4")
    assert sorted(d4) == sorted(sm.ELEMENT_NAMES.values())
    np.testing.assert_array_equal(d4["r90"] @ [1.0, 0.0], [0.0, 1.0])
    np.testing.assert_array_equal(d4["flip_x"] @ [1.0, 2.0], [-1.0, 2.0])
    assert sorted(sm.elements("D2")) == ["e", "flip_x", "flip_y", "r180"]
    assert sorted(sm.elements("C4")) == ["e", "r180", "r270", "r90"]


def test_orbit_and_point_action() -> None:
    p = np.array([[1.0, -3.0]])
    orb = sm.orbit(p)
    assert len(orb) == 8 and np.allclose(orb[0], p[0])
    assert len(sm.orbit(np.array([[0.0, -3.0]]))) == 4
    np.testing.assert_allclose(sm.act_on_points(sm.elements()["r90"], p), [[3.0, 1.0]])


def test_group_errors_average_over_elements() -> None:
    element = {name: 0.0 for name in sm.elements()} | {"r90": 0.4, "r270": 0.4}
    got = sm.group_errors(element, ["D4", "C4", "C2", "D2", "FlipX", "FlipY"])
    assert got["C4"] == pytest.approx(0.2) and got["D4"] == pytest.approx(0.1)
    assert got["C2"] == got["D2"] == got["FlipX"] == got["FlipY"] == 0.0


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="grid") as err:
        sm.simulate([(0, -2)], [(0, 0.1)], grid=3)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="inflows"):
        sm.simulate([(0, -2, 1)], [(0, 0.1)], **TINY)
    with pytest.raises(InputError, match="buoyancy"):
        sm.simulate([(0, -2), (1, -2)], [(0, 0.1)], **TINY)
    with pytest.raises(InputError, match="steps"):
        sm.simulate_cached([(0, -2)], [(0, 0.1)], grid=8, steps=0)
    with pytest.raises(InputError, match="unknown smoke simulation options: viscosity"):
        sm.simulate_cached([(0, -2)], [(0, 0.1)], viscosity=1.0)


# ----------------------------------------------------------------------------------------
# Simulations


@needs_phiflow
def test_layout_and_units() -> None:
    """Rows are y (upwards), columns x, channels (vx, vy); force scales with dt and b."""
    n, steps = 8, 3
    out = sm.simulate([(0.0, -2.0), (0.0, -2.0), (0.0, -2.0)],
                      [(0.0, 0.1), (0.0, 0.2), (0.0, 0.1)], grid=n, steps=steps)
    v, s = out["velocity"], out["smoke"]
    assert v.shape == (3, steps, 2, n, n) and s.shape == (3, steps, n, n)
    assert v.dtype == s.dtype == np.float64
    # The inflow sits at y = n/2 - 2 = 2 cells from the bottom, centred in x: smoke is
    # in the lower rows, symmetric in x, and it rises (vy > 0) above the inflow; the
    # flow is mirror-symmetric, so vx (channel 0) is odd in x and vy even.
    first = s[0, 0]
    assert first[:n // 2].sum() > 0.9 * first.sum()
    np.testing.assert_allclose(first, first[:, ::-1], atol=1e-14)
    assert v[0, -1, 1, 2:5, n // 2 - 1:n // 2 + 1].min() > 0
    np.testing.assert_allclose(v[0, :, 0], -v[0, :, 0, :, ::-1], atol=1e-14)
    np.testing.assert_allclose(v[0, :, 1], v[0, :, 1, :, ::-1], atol=1e-14)
    assert np.abs(v[0, :, 0]).max() > 1e-3
    # First step from rest: smoke = rate x inflow disc (area ~ pi r^2), and velocity is
    # the projected impulse b * smoke * dt, linear in b.
    assert first.sum() == pytest.approx(0.2 * np.pi * 2.0**2, rel=0.15)
    np.testing.assert_allclose(v[1, 0], 2 * v[0, 0], rtol=1e-9, atol=1e-15)
    twice = sm.simulate([(0.0, -2.0)], [(0.0, 0.1)], grid=n, steps=1, dt=2.0)["velocity"]
    np.testing.assert_allclose(twice[0, 0], 2 * v[0, 0], rtol=1e-9, atol=1e-15)


@needs_phiflow
def test_mirror_rule_flip_x_exact_others_broken(private_cache) -> None:
    """Buoyancy up, inflow off-centre at the bottom: FlipX to round-off (< 1e-12)."""
    errors = sm.equivariance_errors(np.array([[1.0, -2.5]]),
                                    lambda p: np.tile([0.0, 0.1], (len(p), 1)), **TINY)
    assert errors["e"] == 0.0
    assert errors["flip_x"] < 1e-12
    for broken in ("r90", "r180", "r270", "flip_y", "swap", "antiswap"):
        assert errors[broken] > 1e-3, broken


@needs_phiflow
def test_symmetric_rule_is_d4_exact(private_cache) -> None:
    """Buoyancy towards the centre with equal strengths: the discretization keeps D4."""
    def inwards(p: np.ndarray) -> np.ndarray:
        return -0.1 * p / np.linalg.norm(p, axis=1, keepdims=True)

    errors = sm.equivariance_errors(np.array([[0.0, -2.5]]), inwards, **TINY)
    assert max(errors.values()) < 1e-12


@needs_phiflow
def test_batch_independent_and_cached(private_cache, monkeypatch) -> None:
    inflows, force = [(1.0, -2.0), (-1.5, 1.0)], [(0.0, 0.1), (0.05, -0.1)]
    alone = sm.simulate(inflows[1:], force[1:], **SHORT)
    first = sm.simulate_cached(inflows, force, **SHORT)
    np.testing.assert_array_equal(first["velocity"][1], alone["velocity"][0])
    assert len(list(private_cache.glob("smoke_*.npz"))) == 2

    def no_simulation(*args, **kwargs):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(sm, "simulate", no_simulation)
    again = sm.simulate_cached(inflows[::-1], force[::-1], **SHORT)
    for name in ("velocity", "smoke"):
        np.testing.assert_array_equal(again[name], first[name][::-1])


@needs_phiflow
def test_interrupted_write_leaves_no_entry(private_cache, monkeypatch) -> None:
    real = cache.write_atomic

    def interrupted(path, write):
        def half(fh):
            fh.write(b"PK\x03\x04 partial")
            raise KeyboardInterrupt

        return real(path, half)

    monkeypatch.setattr(cache, "write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sm.simulate_cached([(0.0, -2.0)], [(0.0, 0.1)], **SHORT)
    assert not list(private_cache.iterdir())  # neither an entry nor a temporary file
    monkeypatch.setattr(cache, "write_atomic", real)
    good = sm.simulate_cached([(0.0, -2.0)], [(0.0, 0.1)], **SHORT)
    (entry,) = private_cache.glob("smoke_*.npz")
    entry.write_bytes(entry.read_bytes()[:100])  # a damaged entry is simulated again
    again = sm.simulate_cached([(0.0, -2.0)], [(0.0, 0.1)], **SHORT)
    np.testing.assert_array_equal(again["velocity"], good["velocity"])
    with np.load(entry) as f:
        np.testing.assert_array_equal(f["velocity"], good["velocity"][0])
