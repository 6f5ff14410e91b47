"""The synthetic benchmarks: layout, determinism, and ground-truth symmetries."""

from __future__ import annotations

import numpy as np
import pytest

from softequiv.data.base import TEST, TRAIN, VALID, Dataset
from softequiv.data.synthetic import (
    COSSIM_GROUPS,
    DATASETS,
    INERTIA_GROUPS,
    SE3_GROUPS,
    cossim,
    inertia,
    load_builtin,
    se3,
)
from softequiv.errors import InputError

SMALL = (40, 30, 20)

# ----------------------------------------------------------------------------- group elements


def rot(axis: str, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about a coordinate axis."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[axis]
    g = np.eye(3)
    g[i, i], g[i, j], g[j, i], g[j, j] = c, -s, s, c
    return g


def refl(axis: str) -> np.ndarray:
    """Reflection flipping one coordinate."""
    g = np.eye(3)
    g["xyz".index(axis), "xyz".index(axis)] = -1.0
    return g


def random_so3(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# Plane groups: O(2) on the two axes other than the fixed one (identity on it).
PLANE_FIXED = {"O2xy": "z", "O2yz": "x", "O2xz": "y"}


def plane_elements(group: str) -> list[np.ndarray]:
    """Generic rotations and a rotation-reflection of one O(2) plane group."""
    fixed = PLANE_FIXED[group]
    other = [a for a in "xyz" if a != fixed]
    return [rot(fixed, 0.7), rot(fixed, -2.1), rot(fixed, 1.3) @ refl(other[0])]


def o3_elements() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [random_so3(rng), random_so3(rng) @ refl("x"), -np.eye(3)]


def rel_errors(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Per-row relative error as in SPEC section 6."""
    num = np.linalg.norm(lhs - rhs, axis=1)
    den = np.linalg.norm(lhs, axis=1) + np.linalg.norm(rhs, axis=1)
    return num / den


# ----------------------------------------------------------------------------- group actions


def inertia_err(ds: Dataset, g: np.ndarray, k: int = 5) -> np.ndarray:
    X = ds.X[:200]
    m, r = X[:, :k], X[:, k:].reshape(-1, k, 3)
    gX = np.concatenate([m, (r @ g.T).reshape(len(X), 3 * k)], axis=1)
    Y = ds.truth(X).reshape(-1, 3, 3)
    return rel_errors(ds.truth(gX), (g @ Y @ g.T).reshape(-1, 9))


def vectors_err(ds: Dataset, g: np.ndarray) -> np.ndarray:
    X = ds.X[:200]
    gX = (X.reshape(-1, 3, 3) @ g.T).reshape(len(X), 9)
    return rel_errors(ds.truth(gX), ds.truth(X))


def homog_err(ds: Dataset, g: np.ndarray, k: int = 3) -> np.ndarray:
    X = ds.X[:200]
    gX = (X.reshape(-1, k, 4) @ g.T).reshape(len(X), 4 * k)
    return rel_errors(ds.truth(gX), ds.truth(X))


def se3_element(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    g = np.eye(4)
    g[:3, :3], g[:3, 3] = R, t
    return g


def assert_exact(errs: list[np.ndarray]) -> None:
    assert max(float(e.max()) for e in errs) < 1e-10


def assert_broken(errs: list[np.ndarray]) -> None:
    assert float(np.mean([e.mean() for e in errs])) > 1e-3


# ----------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("make", "kwargs", "w_in", "w_out"),
    [
        (inertia, {}, 20, 9),
        (inertia, {"masses": 3}, 12, 9),
        (cossim, {}, 9, 1),
        (se3, {}, 12, 1),
        (se3, {"points": 4}, 16, 1),
    ],
)
def test_shapes_splits_truth(make, kwargs, w_in, w_out) -> None:
    ds = make(n=SMALL, **kwargs)
    assert ds.X.shape == (90, w_in) and ds.Y.shape == (90, w_out)
    assert ds.X.dtype == np.float64 and ds.Y.dtype == np.float64
    assert [int((ds.split == s).sum()) for s in (TRAIN, VALID, TEST)] == list(SMALL)
    assert ds.truth is not None
    np.testing.assert_array_equal(ds.truth(ds.X), ds.Y)
    assert set(ds.exact) <= set(ds.groups)
    assert ds.info["n"] == SMALL


def test_default_sizes_and_reps() -> None:
    ds = inertia()
    assert ds.X.shape == (3000, 20)
    assert [int((ds.split == s).sum()) for s in (TRAIN, VALID, TEST)] == [1000, 1000, 1000]
    assert ds.rep_in == "5*Scalar + 5*Vector" and ds.rep_out == "T(2)"
    assert ds.groups == INERTIA_GROUPS
    assert inertia(masses=2, n=SMALL).rep_in == "2*Scalar + 2*Vector"
    c = cossim(n=SMALL)
    assert (c.rep_in, c.rep_out, c.groups) == ("3*Vector", "Scalar", COSSIM_GROUPS)
    s = se3(n=SMALL)
    assert (s.rep_in, s.rep_out, s.groups) == ("3*Vector", "Scalar", SE3_GROUPS)
    assert s.groups == ["SE(3)", "Rot(3)", "Trans(3)"]
    np.testing.assert_array_equal(s.X.reshape(-1, 3, 4)[:, :, 3], 1.0)


def test_inertia_masses_positive_and_target_formula() -> None:
    ds = inertia(axis="x", eps=-1.0, n=SMALL)
    m, r = ds.X[:, :5], ds.X[:, 5:].reshape(-1, 5, 3)
    assert (m > 0).all()
    i = 3
    inert = sum(
        m[i, j] * (r[i, j] @ r[i, j] * np.eye(3) - np.outer(r[i, j], r[i, j])) for j in range(5)
    )
    e = np.array([1.0, 0.0, 0.0])
    expect = inert - np.outer(inert @ e, e)
    np.testing.assert_allclose(ds.Y[i].reshape(3, 3), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [inertia, cossim, se3])
def test_determinism(make) -> None:
    a, b, c = make(n=SMALL, seed=3), make(n=SMALL, seed=3), make(n=SMALL, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    np.testing.assert_array_equal(a.split, b.split)
    assert not np.allclose(a.X, c.X)


# ----------------------------------------------------------------------------- inertia symmetries


@pytest.mark.parametrize(("axis", "plane"), [("z", "O2xy"), ("x", "O2yz"), ("y", "O2xz")])
def test_inertia_axis_symmetry(axis: str, plane: str) -> None:
    ds = inertia(axis=axis, n=SMALL)
    assert ds.exact == [plane]
    assert_exact([inertia_err(ds, g) for g in plane_elements(plane)])
    for other in set(PLANE_FIXED) - {plane}:
        assert_broken([inertia_err(ds, g) for g in plane_elements(other)])
    assert_broken([inertia_err(ds, g) for g in o3_elements()])


def test_inertia_eps_zero_all_exact() -> None:
    ds = inertia(eps=0.0, n=SMALL)
    assert ds.exact == INERTIA_GROUPS
    assert_exact([inertia_err(ds, g) for g in o3_elements()])
    for plane in PLANE_FIXED:
        assert_exact([inertia_err(ds, g) for g in plane_elements(plane)])


def test_inertia_axis_minus_one_breaks_everything() -> None:
    ds = inertia(axis="-1", n=SMALL)
    assert ds.exact == []
    assert_broken([inertia_err(ds, g) for g in o3_elements()])
    errs = {
        p: float(np.mean([inertia_err(ds, g).mean() for g in plane_elements(p)]))
        for p in PLANE_FIXED
    }
    assert min(errs.values()) > 1e-3
    # "by different amounts": the three plane errors are not all the same.
    assert max(errs.values()) - min(errs.values()) > 1e-3
    assert inertia(axis=-1, n=SMALL).info["axis"] == "-1"


# ----------------------------------------------------------------------------- cossim symmetries


@pytest.mark.parametrize(
    ("variant", "so3_ok", "scale_ok"),
    [("so3", True, False), ("scale", False, True), ("both", True, True), ("none", False, False)],
)
def test_cossim_symmetry(variant: str, so3_ok: bool, scale_ok: bool) -> None:
    ds = cossim(variant=variant, n=SMALL)
    rng = np.random.default_rng(5)
    rots = [random_so3(rng) for _ in range(3)]
    scales = [s * np.eye(3) for s in (2.5, 0.3, 7.0)]
    rot_errs = [vectors_err(ds, g) for g in rots]
    scale_errs = [vectors_err(ds, g) for g in scales]
    (assert_exact if so3_ok else assert_broken)(rot_errs)
    (assert_exact if scale_ok else assert_broken)(scale_errs)
    expect = [COSSIM_GROUPS[0]] if so3_ok and scale_ok else []
    expect += (["SO(3)"] if so3_ok else []) + (["Scaling(3)"] if scale_ok else [])
    assert ds.exact == expect


def test_cossim_eps_zero_is_base() -> None:
    ds = cossim(variant="none", eps=0.0, n=SMALL)
    np.testing.assert_allclose(ds.Y, cossim(variant="both", n=SMALL).Y)
    assert ds.exact == COSSIM_GROUPS


# ----------------------------------------------------------------------------- se3 symmetries


@pytest.mark.parametrize(
    ("variant", "rot_ok", "trans_ok"),
    [
        ("exact", True, True),
        ("rotation", True, False),
        ("translation", False, True),
        ("none", False, False),
    ],
)
def test_se3_symmetry(variant: str, rot_ok: bool, trans_ok: bool) -> None:
    ds = se3(variant=variant, n=SMALL)
    rng = np.random.default_rng(9)
    Rs = [rot("x", 0.8), rot("y", -1.9), random_so3(rng)]
    ts = [np.array([0.5, -1.0, 2.0]), np.array([0.0, 0.0, -3.0]), rng.standard_normal(3)]
    rot_errs = [homog_err(ds, se3_element(R, np.zeros(3))) for R in Rs]
    trans_errs = [homog_err(ds, se3_element(np.eye(3), t)) for t in ts]
    both_errs = [homog_err(ds, se3_element(R, t)) for R, t in zip(Rs, ts, strict=True)]
    (assert_exact if rot_ok else assert_broken)(rot_errs)
    (assert_exact if trans_ok else assert_broken)(trans_errs)
    (assert_exact if rot_ok and trans_ok else assert_broken)(both_errs)
    expect = [
        g for g, ok in zip(SE3_GROUPS, [rot_ok and trans_ok, rot_ok, trans_ok], strict=True) if ok
    ]
    assert ds.exact == expect


# ----------------------------------------------------------------------------- registry and errors


def test_registry_and_load_builtin() -> None:
    assert DATASETS == {"inertia": inertia, "cossim": cossim, "se3": se3}
    ds = load_builtin("inertia", axis="y", n=SMALL, seed=2)
    np.testing.assert_array_equal(ds.Y, inertia(axis="y", n=SMALL, seed=2).Y)
    assert load_builtin("cossim", variant="scale", n=SMALL).exact == ["Scaling(3)"]


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: load_builtin("nope"), "cossim, inertia, se3"),
        (lambda: load_builtin("inertia", axis="w"), "axis"),
        (lambda: load_builtin("cossim", variant="rot"), "variant"),
        (lambda: load_builtin("se3", variant="bad"), "variant"),
        (lambda: load_builtin("se3", bogus=1), "bogus"),
        (lambda: inertia(axis="q"), "axis"),
        (lambda: inertia(masses=0), "masses"),
        (lambda: inertia(n=(1, 2)), "n must"),
        (lambda: se3(points=1), "points"),
        (lambda: cossim(eps="abc"), "eps"),
    ],
)
def test_bad_input(call, needle: str) -> None:
    with pytest.raises(InputError) as info:
        call()
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


def test_truth_rejects_wrong_width() -> None:
    ds = se3(n=SMALL)
    with pytest.raises(InputError):
        ds.truth(np.zeros((4, 9)))
