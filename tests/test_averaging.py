"""Group averages (softequiv.averaging), the verdicts' symmetrized answer. Inputs and
functions are float64: equalities hold to 1e-10, Monte Carlo statements to the stated
share."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softequiv import averaging as A
from softequiv import fields as F
from softequiv import groups as G
from softequiv.reps import Scalar, Vector
from softequiv.spec import parse_groups

TIGHT = 1e-10


def cubic(x: np.ndarray) -> np.ndarray:
    """x |x|^2 on each Vector: equivariant under any orthogonal group."""
    return x * np.square(x).sum(-1, keepdims=True)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_an_equivariant_function_is_its_own_average(seed):
    X = np.random.default_rng(seed).normal(size=(40, 3))
    for group in (G.O(3), G.SO(3), parse_groups("O2xy")[0]):
        averaged = A.group_average(cubic, X, group, Vector, Vector, seed=seed)
        np.testing.assert_allclose(averaged, cubic(X), atol=TIGHT, rtol=TIGHT)
    # a non-compact group: x -> x is equivariant under scalings and GL(3) alike
    for group in (G.Scaling(3), G.GL(3)):
        averaged = A.group_average(lambda x: 2.0 * x, X, group, Vector, Vector, seed=seed)
        np.testing.assert_allclose(averaged, 2.0 * X, atol=TIGHT, rtol=1e-8)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(["D4", "C4", "D2", "FlipY"]))
def test_the_average_over_a_finite_group_is_exactly_equivariant(seed, name):
    group = parse_groups(name)[0]
    channels = Scalar + Vector
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(3, 3))

    def skewed(x: np.ndarray) -> np.ndarray:  # breaks every lattice symmetry
        return np.einsum("oc,nchw->nohw", mix, np.roll(x, 1, axis=-1)) + x[:, :1] ** 2

    X = rng.normal(size=(3, 3, 8, 8))
    average = A.group_average(skewed, X, group, channels, channels)
    for g in group.elements():
        moved = A.group_average(skewed, F.transform(X, g, channels), group, channels, channels)
        np.testing.assert_allclose(moved, F.transform(average, g, channels), atol=TIGHT)


def test_averaging_a_broken_function_changes_it_and_a_held_one_does_not():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    tilted = np.diag([1.0, 1.0, 3.0])  # respects rotations about z only

    def f(x: np.ndarray) -> np.ndarray:
        return x @ tilted

    held = A.group_average(f, X, parse_groups("SO2xy")[0], Vector, Vector)
    np.testing.assert_allclose(held, f(X), atol=TIGHT)
    broken = A.group_average(f, X, G.SO(3), Vector, Vector)
    assert np.abs(broken - f(X)).mean() > 0.3 * np.abs(f(X)).mean()


@pytest.mark.parametrize("group", [G.Scaling(3), G.SE(3), G.Trans(3)], ids=lambda g: g.name)
def test_non_compact_elements_move_inputs_by_a_share_of_their_spread(group):
    rng = np.random.default_rng(1)
    if group.d == 4:  # homogeneous points (p, 1), two of them
        p = rng.normal(size=(500, 2, 3)) * [1.0, 1.0, 5.0] + 10.0
        X, rep = np.concatenate([p, np.ones((500, 2, 1))], -1).reshape(500, 8), 2 * Vector
    else:
        X, rep = rng.normal(size=(500, 3)) * [1.0, 1.0, 5.0] + 10.0, Vector
    g = A.sample_elements(group, len(X), rng, A.local_scales(group, rep, X))
    moved = (rep.rho(torch.from_numpy(g)).numpy() @ X[..., None])[..., 0]
    spread = np.sqrt(np.square(X - X.mean(0)).sum(-1).mean())
    shift = np.sqrt(np.square(moved - X).sum(-1).mean())
    expected = A.SPREAD * spread * np.sqrt(len(group.lie))  # each generator moves that far
    assert 0.5 * expected < shift < 2.0 * expected
    if group.d == 4:  # rigid motions stay rigid motions
        R = g[:, :3, :3]
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape),
                                   atol=1e-9)
        np.testing.assert_allclose(g[:, 3], np.broadcast_to([0, 0, 0, 1.0], (len(g), 4)))
