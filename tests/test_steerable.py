"""Kernel projectors onto G-steerable kernels: an orthogonal projection (idempotent,
symmetric) whose image satisfies K(g u) = rho_out(g) K(u) rho_in(g)^{-1} exactly. float64,
tolerances 1e-12 unless stated."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softequiv import fields as F
from softequiv import groups as G
from softequiv.reps import Scalar, T, Vector
from softequiv.solver import Projector
from softequiv.spec import parse_groups
from softequiv.steerable import KernelProjector

GROUPS = parse_groups("D4, C4, C2, D2, FlipX, FlipY")
REGULAR = F.RegularChannels(G.D4(), 2)
PAIRS = {"vector": (Scalar + 2 * Vector, Vector + Scalar), "tensor": (T(2), Vector + T(2)),
         "lift": (Vector, REGULAR), "regular": (REGULAR, REGULAR), "down": (REGULAR, Vector)}


def _projector(pair, k=3):
    rep_in, rep_out = PAIRS[pair]
    return KernelProjector(rep_in, rep_out, GROUPS, k)


def _random(projector, seed=0):
    return torch.randn(projector.shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def _is_steerable(K, projector, group):
    """K(g u) == rho_out(g) K(u) rho_in(g)^{-1} for every element and offset, checked with
    dense matrices and explicit offsets (independent of the projector's gathers)."""
    k = K.shape[-1]
    r = k // 2
    for g in group.elements():
        rho_out = torch.from_numpy(F.rho(projector.channels_out, g))
        rho_in = torch.from_numpy(F.rho(projector.channels_in, g))
        m = F.lattice_element(g)
        for uy in range(-r, r + 1):
            for ux in range(-r, r + 1):
                gx, gy = m @ np.array([ux, uy])
                lhs = K[:, :, gy + r, gx + r]
                rhs = rho_out @ K[:, :, uy + r, ux + r] @ rho_in.T
                if not torch.allclose(lhs, rhs, atol=1e-12):
                    return False
    return True


@pytest.mark.parametrize("pair", list(PAIRS))
def test_projection_is_steerable_idempotent_and_zero_penalty(pair):
    projector = _projector(pair)
    K = _random(projector)
    penalties = projector.penalty(K)
    assert penalties.dtype == torch.float64 and penalties.shape == (len(GROUPS),)
    assert (penalties > 1e-3).all()  # random kernels break every candidate
    for j, group in enumerate(GROUPS):
        PK = projector.project(K, j)
        assert _is_steerable(PK, projector, group)
        assert torch.allclose(projector.project(PK, j), PK, atol=1e-12)
        assert float(projector.penalty(PK)[j]) < 1e-24
        assert float(penalties[j]) == pytest.approx(0.5 * float((K - PK).square().sum()),
                                                    rel=1e-12)
    assert not _is_steerable(K, projector, G.FlipX())


@settings(max_examples=15, deadline=None)
@given(pair=st.sampled_from(list(PAIRS)), j=st.integers(0, len(GROUPS) - 1),
       seed=st.integers(0, 10_000), k=st.sampled_from([1, 3, 5]))
def test_projection_is_symmetric(pair, j, seed, k):
    projector = _projector(pair, k)
    K1, K2 = _random(projector, seed), _random(projector, seed + 1)
    left = (projector.project(K1, j) * K2).sum()
    right = (K1 * projector.project(K2, j)).sum()
    assert float(left) == pytest.approx(float(right), rel=1e-10, abs=1e-10)


def test_steerable_kernels_are_fixed_and_subgroups_keep_more():
    projector = _projector("vector")
    D4_kernel = projector.project(_random(projector), 0)
    assert torch.allclose(projector.penalty(D4_kernel), torch.zeros(len(GROUPS),
                                                                    dtype=torch.float64),
                          atol=1e-24)  # D4-steerable kernels are steerable for every subgroup
    dims = projector.dims()
    assert dims[0] < dims[1] < dims[2] and dims[0] < dims[4]


@pytest.mark.parametrize("pair", list(PAIRS))
def test_subspace_dimensions_follow_the_character_formula(pair):
    """dim = 1/|G| sum_g chi_out(g) chi_in(g) (#offsets g fixes): the trace of P_G."""
    projector = _projector(pair, k=5)
    offsets = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3)), -1).reshape(-1, 2)
    for group, dim in zip(GROUPS, projector.dims(), strict=True):
        total = 0.0
        for g in group.elements():
            fixed = np.all(offsets @ F.lattice_element(g).T == offsets, axis=1).sum()
            total += (np.trace(F.rho(projector.channels_out, g))
                      * np.trace(F.rho(projector.channels_in, g)) * fixed)
        assert dim == round(total / len(group.elements()))


def test_size_one_kernels_agree_with_the_solver():
    rep_in, rep_out = Scalar + Vector + T(2), 2 * Vector + Scalar
    projector = KernelProjector(rep_in, rep_out, GROUPS, 1)
    solver = Projector(rep_in, rep_out, GROUPS)
    W = torch.randn(solver.shape, dtype=torch.float64)
    assert projector.dims() == solver.dims()
    assert torch.allclose(projector.penalty(W), solver.penalty(W), atol=1e-12)
    for j in range(len(GROUPS)):
        assert torch.allclose(projector.project(W, j), solver.project(W, j), atol=1e-12)


def test_penalty_and_residual_is_the_gradient_of_the_weighted_penalty():
    projector = _projector("lift")
    K = _random(projector).requires_grad_(True)
    weights = torch.tensor([0.0, 1.0, 0.5, 2.0, 0.1, 3.0], dtype=torch.float64)
    (weights * projector.penalty(K)).sum().backward()
    penalty, residual = projector.penalty_and_residual(K.detach().float(), weights)
    assert residual.dtype == torch.float32 and residual.shape == K.shape
    assert torch.allclose(residual.double(), K.grad, atol=1e-5)
    assert torch.allclose(penalty, projector.penalty(K.detach().float()), rtol=1e-12)


def test_bias_projection_takes_a_column_and_keeps_only_invariant_parts():
    bias = KernelProjector(Scalar, Scalar + Vector, GROUPS, 1)
    b = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    assert torch.equal(bias.project(b, 0), torch.tensor([[1.0], [0.0], [0.0]],
                                                         dtype=torch.float64))
    assert torch.equal(bias.project(b, 4), torch.tensor([[1.0], [0.0], [3.0]],  # FlipX keeps y
                                                         dtype=torch.float64))
    regular = KernelProjector(Scalar, F.RegularChannels(G.C4(), 1), [G.C4()], 1)
    projected = regular.project(torch.arange(4.0)[:, None], 0)
    assert torch.allclose(projected, torch.full((4, 1), 1.5))


def test_elements_shared_by_candidates_are_moved_once():
    projector = _projector("regular")
    assert len(projector.elements) == 8  # D4's elements serve all six candidates
    assert projector.sizes == (8, 4, 2, 4, 2, 2)
    assert projector.source.shape == (8, projector.shape[0] * projector.shape[1] * 9)


def test_shapes_devices_and_dtypes():
    projector = _projector("vector")
    with pytest.raises(ValueError, match="does not match"):
        projector.penalty(torch.zeros(3, 5, 5, 5))
    with pytest.raises(ValueError, match="odd"):
        KernelProjector(Scalar, Scalar, GROUPS, 2)
    projector.float()
    assert projector.average.dtype == torch.float64  # averages stay exact under .float()
    K = _random(projector).float()
    assert projector.project(K, 1).dtype == torch.float32
    assert projector.penalty(K).dtype == torch.float64
    assert not any(k.startswith(("source", "sign")) for k in projector.state_dict())
