"""Fields: the square lattice's point groups, their action on fields, and the field
equivariance error. Exact arithmetic (flips, transposes, signs): tolerances are 1e-12."""

import numpy as np
import pytest
import torch
from helpers import fails
from hypothesis import given, settings
from hypothesis import strategies as st

from softequiv import fields as F
from softequiv import groups as G
from softequiv.errors import InputError
from softequiv.reps import Scalar, T, Vector
from softequiv.solver import Projector, equivariant_basis
from softequiv.spec import parse_groups

LATTICE = {"D4": 8, "C4": 4, "C2": 2, "D2": 4, "FlipX": 2, "FlipY": 2}
GROUPS = parse_groups(", ".join(LATTICE))
TYPES = {"Scalar": Scalar, "Vector": Vector, "T(2)": T(2), "mixed": Scalar + 2 * Vector + T(2)}


# --------------------------------------------------------------------------------- the groups


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_lattice_groups_are_closed_signed_permutations(group):
    elements = group.elements()
    assert len(elements) == LATTICE[group.name]
    assert np.array_equal(elements[0], np.eye(2))
    for g in elements:
        F.lattice_element(g)
        for h in elements:
            group.index_of(g @ h)  # closed under products
        group.index_of(np.linalg.inv(g))
    assert group.d == 2 and group.is_orthogonal and group.is_finite


def test_lattice_groups_are_subgroups_of_d4_and_named_elements_act_as_stated():
    d4 = G.D4()
    for group in GROUPS:
        for g in group.elements():
            d4.index_of(g)
    assert np.array_equal(G.FlipX().elements()[1], np.diag([-1.0, 1.0]))
    assert np.array_equal(G.FlipY().elements()[1], np.diag([1.0, -1.0]))
    assert np.array_equal(G.C2().elements()[1], -np.eye(2))
    fails(lambda: G.C4().index_of(np.diag([-1.0, 1.0])), "not an element of C4", kind=ValueError)


def test_sampling_is_uniform_over_elements_and_deterministic():
    a = G.D4().sample(800, generator=torch.Generator().manual_seed(3))
    b = G.D4().sample(800, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    counts = np.bincount([G.D4().index_of(g) for g in a.numpy()], minlength=8)
    assert counts.min() > 60  # expected 100 each


def test_element_lists_fail_clearly_for_infinite_groups():
    fails(lambda: G.O(2).elements(), "O(2) is not finite", kind=ValueError)
    doubling = G.Group([], [np.diag([2.0, 1.0])], 2, "Doubling")
    fails(lambda: doubling.elements(), "Doubling is infinite", kind=ValueError)
    fails(lambda: G.S(9).elements(limit=1000), "more than 1000 elements", kind=ValueError)
    assert len(G.S(4).elements()) == 24 and len(G.Z(5).elements()) == 5


def _character_dimension(rep_in, rep_out, group):
    """dim Hom_G(in, out) = 1/|G| sum_g chi_in(g) chi_out(g) (real, orthogonal reps)."""
    g = torch.from_numpy(np.array(group.elements()))
    chi_in = torch.diagonal(rep_in.rho(g), dim1=1, dim2=2).sum(1)
    chi_out = torch.diagonal(rep_out.rho(g), dim1=1, dim2=2).sum(1)
    return round(float((chi_in * chi_out).mean()))


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
@pytest.mark.parametrize("pair", [("Scalar", "Vector"), ("Vector", "Vector"), ("T(2)", "Scalar"),
                                  ("Vector", "T(2)"), ("mixed", "mixed")])
def test_solver_bases_of_lattice_groups_are_exact(group, pair):
    rep_in, rep_out = TYPES[pair[0]], TYPES[pair[1]]
    basis = equivariant_basis(rep_in, rep_out, group).to_dense()
    assert basis.shape[1] == _character_dimension(rep_in, rep_out, group)
    g = torch.from_numpy(np.array(group.elements()))
    W = basis.T.reshape(-1, rep_out.size(2), rep_in.size(2))
    lhs = rep_out.rho(g)[:, None] @ W[None]
    rhs = W[None] @ rep_in.rho(g)[:, None]
    assert torch.allclose(lhs, rhs, atol=1e-12)
    assert Projector(rep_in, rep_out, [group]).dims() == [basis.shape[1]]


def test_dimensions_of_equivariant_maps_follow_the_group_sizes():
    # Vector -> Vector: D4 only scalars; C4 also the 90-degree rotation; C2 everything.
    assert [_character_dimension(Vector, Vector, g) for g in GROUPS] == [1, 2, 4, 2, 2, 2]
    # Scalar -> Vector: only the mirrors keep a direction (y for FlipX, x for FlipY).
    assert [_character_dimension(Scalar, Vector, g) for g in GROUPS] == [0, 0, 0, 0, 1, 1]


# ------------------------------------------------------------------------------- the action

CHANNELS = {**TYPES, "regular": F.RegularChannels(G.D4(), 2)}


def _field(channels, size=5, n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, F.as_channels(channels).size, size, size))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(list(CHANNELS)), a=st.integers(0, 7), b=st.integers(0, 7),
       size=st.integers(1, 6))
def test_group_law_acting_by_g_then_h_is_acting_by_hg(name, a, b, size):
    channels = CHANNELS[name]
    g, h = G.D4().elements()[a], G.D4().elements()[b]
    f = _field(channels, size)
    twice = F.transform(F.transform(f, g, channels), h, channels)
    assert np.allclose(twice, F.transform(f, h @ g, channels), atol=1e-12)
    assert np.array_equal(F.transform(f, np.eye(2), channels), f)


@pytest.mark.parametrize("name", list(CHANNELS))
def test_channel_action_is_a_representation(name):
    channels = CHANNELS[name]
    for g in G.D4().elements():
        for h in G.D4().elements():
            assert np.allclose(F.rho(channels, h) @ F.rho(channels, g), F.rho(channels, h @ g))


def _gradient(phi):
    """Central differences of a Scalar field [N, 1, H, W]: a Vector field (d/dx, d/dy)."""
    d_dy, d_dx = np.gradient(phi[:, 0], axis=(1, 2))
    return np.stack([d_dx, d_dy], axis=1)


def _hessian(phi):
    """The T(2) field of second differences, row-major (xx, xy, yx, yy)."""
    grad = _gradient(phi)
    parts = [_gradient(grad[:, i:i + 1]) for i in range(2)]
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_rho_on_channels_matches_the_grid_motion(group):
    """The gradient of a moved potential is the moved gradient (Vector), and likewise for
    the Hessian (T(2)): rho(g) on channels is consistent with moving the grid."""
    phi = _field(Scalar, size=7, seed=1)
    for g in group.elements():
        moved = F.transform(phi, g, Scalar)
        assert np.allclose(_gradient(moved), F.transform(_gradient(phi), g, Vector), atol=1e-12)
        assert np.allclose(_hessian(moved), F.transform(_hessian(phi), g, T(2)), atol=1e-12)


def test_rotation_by_90_degrees_moves_points_counterclockwise():
    f = np.zeros((1, 3, 3))
    f[0, 1, 2] = 1.0  # the point (x, y) = (1, 0) about the centre
    rotated = F.transform(f, G.C4().discrete[0], Scalar)
    assert rotated[0, 2, 1] == 1.0  # now at (0, 1)
    v = np.zeros((2, 3, 3))
    v[0] = 1.0  # the constant field along x
    turned = F.transform(v, G.C4().discrete[0], Vector)
    assert np.allclose(turned[0], 0.0) and np.allclose(turned[1], 1.0)


def test_torch_and_numpy_agree_and_keep_dtype_and_device():
    f = _field(Scalar + Vector, size=4)
    for g in G.D4().elements():
        t = F.transform(torch.from_numpy(f).float(), g, Scalar + Vector)
        assert t.dtype == torch.float32
        assert np.allclose(t.numpy(), F.transform(f, g, Scalar + Vector), atol=1e-6)
    single = F.transform(f[0], G.D4().elements()[3], Scalar + Vector)
    assert np.allclose(single, F.transform(f, G.D4().elements()[3], Scalar + Vector)[0])


def test_mirrors_work_on_rectangles_but_rotations_need_square_grids():
    f = np.random.default_rng(0).normal(size=(1, 2, 4, 6))
    assert F.transform(f, np.diag([-1.0, 1.0]), Vector).shape == (1, 2, 4, 6)
    fails(lambda: F.transform(f, G.C4().discrete[0], Vector), "square grid", "4x6")


def test_bad_elements_and_shapes_fail_in_one_line():
    f = np.zeros((1, 2, 4, 4))
    fails(lambda: F.transform(f, np.array([[0.6, -0.8], [0.8, 0.6]]), Vector),
          "not a symmetry of the square grid")
    fails(lambda: F.transform(f, np.eye(2), Scalar), "needs shape [N, 1, H, W]")
    fails(lambda: F.transform(np.zeros(4), np.eye(2), Scalar), "needs shape")
    regular = F.RegularChannels(G.C4(), 1)
    fails(lambda: regular.signed_permutation(np.diag([-1.0, 1.0])), "not an element of C4")


# ------------------------------------------------------------------------- equivariance error


def _broken_gradient(phi):
    """The gradient plus a constant wind along x: FlipY keeps it, FlipX and rotations break
    it."""
    out = _gradient(phi)
    out[:, 0] += 0.3
    return out


def test_field_equivariance_error_of_ground_truth_functions():
    phi = _field(Scalar, size=8, n=4)
    for group in GROUPS:
        assert F.field_equivariance_error(_gradient, phi, group, Scalar, Vector) < 1e-12
    errors = {g.name: F.field_equivariance_error(_broken_gradient, phi, g, Scalar, Vector)
              for g in GROUPS}
    assert errors["FlipY"] < 1e-12
    for name in ("D4", "C4", "C2", "D2", "FlipX"):
        assert errors[name] > 0.05, errors
    # the identity counts as one of the elements: FlipX errs on half of them
    assert errors["FlipX"] == pytest.approx(errors["C2"], rel=1e-9)


def test_field_equivariance_error_of_torch_functions_and_chunks():
    x = torch.from_numpy(_field(Scalar, size=6, n=5))

    def shift(v):
        return torch.roll(v, 1, dims=-1)

    whole = F.field_equivariance_error(shift, x, G.FlipX(), Scalar, Scalar)
    chunked = F.field_equivariance_error(shift, x, G.FlipX(), Scalar, Scalar, batch=2)
    assert whole == pytest.approx(chunked, rel=1e-12) and 0 < whole <= 1
    assert F.field_equivariance_error(shift, x, G.FlipY(), Scalar, Scalar) < 1e-12
    fails(lambda: F.field_equivariance_error(shift, x, G.O(2), Scalar, Scalar),
          "finite group", kind=InputError)
