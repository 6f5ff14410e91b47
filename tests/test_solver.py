"""Solver: every basis vector is equivariant (float64, random sampled elements), dimensions
match known values, and projectors are orthogonal projections with cheap penalties."""

import numpy as np
import pytest
import torch

from softequiv import groups as G
from softequiv import solver
from softequiv.reps import Rep, Scalar, T, Vector
from softequiv.solver import Projector, equivariant_basis, type_basis
from softequiv.spec import parse_rep

TOL = 1e-9  # relative equivariance error allowed for basis vectors in float64


def relative_equivariance_error(basis, rep_in: Rep, rep_out: Rep, group, n=6) -> float:
    d = group.d
    g = group.sample(n, generator=torch.Generator().manual_seed(3))
    r_in, r_out = rep_in.rho(g), rep_out.rho(g)
    W = basis.T.reshape(-1, rep_out.size(d), rep_in.size(d))
    left = torch.einsum("gij,kjl->gkil", r_out, W)
    right = torch.einsum("kij,gjl->gkil", W, r_in)
    num = (left - right).flatten(2).norm(dim=-1)
    den = left.flatten(2).norm(dim=-1) + right.flatten(2).norm(dim=-1)
    return float((num / den).max())


CASES = [
    (G.O(3), "5*Scalar + 5*Vector", "T(2)"),
    (G.O(3), "Vector + T(2)", "T(3) + Scalar"),
    (G.SO(3), "3*Vector", "Vector + Scalar"),
    (G.O(2), "T(2)", "T(2)"),
    (G.Scaling(3), "T(1,1) + Vector", "Vector + Scalar"),
    (G.SE(3), "3*Vector", "Scalar + Vector"),
    (G.SE(2), "T(1,1)", "Vector"),
    (G.Rot(3), "2*Vector", "Scalar"),
    (G.Trans(3), "2*Vector", "Scalar"),
    (G.Lorentz(), "Vector", "T(1,1) + Scalar"),
    (G.SO13p(), "T(0,2)", "T(0,2)"),
    (G.Sp(2), "Vector", "Vector + T(0,2)"),
    (G.S(4), "Vector", "Vector + T(2)"),
    (G.Z(5), "Vector", "Vector"),
    (G.SL(3), "T(0,3) + Vector", "Scalar + Vector"),
    (G.GL(3), "T(1,1)", "Scalar + T(1,1)"),
    (G.Trivial(3), "Vector", "Vector"),
    (G.O2xy(), "5*Scalar + 5*Vector", "T(2)"),
    (G.O2yz(), "Vector", "T(2)"),
    (G.O2xz(), "T(2)", "T(2)"),
    (G.Union(G.SO(3), G.Scaling(3)), "3*Vector", "Scalar + T(1,1)"),
    (G.SO(3) * G.S(4), "Vector", "Vector + Scalar"),
    (G.Embed(G.SO(2), 4, [1, 3]), "Vector", "Vector"),
]


@pytest.mark.parametrize("group,rep_in,rep_out", CASES,
                         ids=[f"{c[0].name}:{c[1]}->{c[2]}" for c in CASES])
def test_basis_is_orthonormal_and_equivariant(group, rep_in, rep_out):
    rin, rout = parse_rep(rep_in), parse_rep(rep_out)
    Q = equivariant_basis(rin, rout, group)
    assert Q.is_sparse
    Q = Q.to_dense()
    assert Q.dtype == torch.float64
    assert Q.shape[0] == rin.size(group.d) * rout.size(group.d)
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64), atol=1e-10)
    if Q.shape[1]:
        assert relative_equivariance_error(Q, rin, rout, group) < TOL


def test_basis_is_complete_for_a_lie_group():
    # The complement of the basis must violate the Lie constraint: nothing equivariant is missed.
    group, rin, rout = G.SO(3), T(2), T(2)
    Q = equivariant_basis(rin, rout, group).to_dense()
    full = torch.linalg.svd(torch.eye(81, dtype=torch.float64) - Q @ Q.T).U[:, :81 - Q.shape[1]]
    A = torch.from_numpy(group.lie)
    drho = rout.drho(A)  # T(2)->T(2) constraint: drho_out W - W drho_in
    W = full.T.reshape(-1, 9, 9)
    residual = torch.einsum("aij,kjl->akil", drho, W) - torch.einsum("kij,ajl->akil", W, drho)
    assert residual.flatten(2).norm(dim=-1).amax(0).min() > 1e-3


# Known dimensions of equivariant maps, each with the reason it holds.
KNOWN_DIMS = [
    (G.O(3), "Vector", "Vector", 1),  # Schur: only multiples of the identity
    (G.O(3), "T(2)", "T(2)", 3),  # identity, transpose, trace*identity
    (G.O(3), "Vector", "T(2)", 0),  # odd total rank: -I kills it
    (G.SO(3), "Vector", "T(2)", 1),  # the Levi-Civita symbol
    (G.O(3), "5*Scalar + 5*Vector", "T(2)", 5),  # m_i * Id from each scalar, nothing from vectors
    (G.SO(3), "5*Scalar + 5*Vector", "T(2)", 10),  # plus epsilon . r_i for each vector
    (G.S(5), "Vector", "Vector", 2),  # identity and the all-ones matrix
    (G.Z(4), "Vector", "Vector", 4),  # circulant matrices
    (G.Lorentz(), "Vector", "Vector", 1),  # Schur for the defining rep
    (G.Lorentz(), "Scalar", "T(0,2)", 1),  # the Minkowski metric
    (G.Lorentz(), "Scalar", "T(0,4)", 3),  # three pairings of two metrics (parity kills epsilon)
    (G.SO13p(), "Scalar", "T(0,4)", 4),  # ... plus the Levi-Civita symbol
    (G.Sp(2), "Scalar", "T(0,2)", 1),  # the symplectic form J
    (G.SE(3), "Vector", "Scalar", 1),  # read off the homogeneous coordinate
    (G.SE(3), "Scalar", "Vector", 0),  # no fixed point of all translations
    (G.SE(3), "Vector", "Vector", 1),  # identity only
    (G.Union(G.SO(3), G.Scaling(3)), "3*Vector", "Scalar", 0),  # scaling kills invariants
    (G.Union(G.SO(3), G.Scaling(3)), "T(1,1)", "Scalar", 1),  # the trace
    (G.SO(3) * G.S(4), "Vector", "Vector", 3),  # 1 (SO(3) block) + 2 (S(4) block)
    (G.O2xy(), "T(2)", "T(2)", 10),  # T(2) = 2*1 + det + rho2 + 2*V2 under O(2): 4+1+1+4
    (G.GL(3), "T(1,1)", "Scalar", 1),  # the trace
    (G.SL(3), "Scalar", "T(0,3)", 1),  # the determinant form
    (G.Trivial(3), "Vector", "Vector", 9),  # everything
]


@pytest.mark.parametrize("group,rep_in,rep_out,dim", KNOWN_DIMS,
                         ids=[f"{c[0].name}:{c[1]}->{c[2]}" for c in KNOWN_DIMS])
def test_known_dimensions(group, rep_in, rep_out, dim):
    assert equivariant_basis(parse_rep(rep_in), parse_rep(rep_out), group).shape[1] == dim


def test_cache_is_keyed_by_generators():
    a = G.Embed(G.O(2), 3, [0, 1], name="O(2)")
    b = G.Embed(G.O(2), 3, [1, 2], name="O(2)")
    qa, qb = type_basis(Vector.summands[0][1], Vector.summands[0][1], a), type_basis(
        Vector.summands[0][1], Vector.summands[0][1], b)
    assert qa.shape == qb.shape and not torch.allclose(torch.from_numpy(qa @ qa.T),
                                                       torch.from_numpy(qb @ qb.T))


def test_tolerance_is_a_parameter():
    loose = equivariant_basis(Vector, Vector, G.O(3), tol=1e-6).shape[1]
    assert loose == equivariant_basis(Vector, Vector, G.O(3), tol=1e-10).shape[1] == 1


PLANES = [G.O(3), G.O2xy(), G.O2yz(), G.O2xz()]
HIDDEN = parse_rep("4*Scalar + 3*Vector + T(2) + Scalar + Vector")  # interleaved types


@pytest.fixture(scope="module")
def projector():
    return Projector(parse_rep("5*Scalar + 5*Vector"), HIDDEN, PLANES)


def _dense_projector(rep_in, rep_out, group):
    Q = equivariant_basis(rep_in, rep_out, group).to_dense()
    return Q @ Q.T


def test_projector_matches_dense_basis(projector):
    W = torch.randn(projector.shape, dtype=torch.float64)
    for j, group in enumerate(PLANES):
        P = _dense_projector(projector.rep_in, projector.rep_out, group)
        expected = (P @ W.reshape(-1)).reshape(W.shape)
        assert torch.allclose(projector.project(W, j), expected, atol=1e-12)
        assert projector.dims()[j] == P.trace().round().int()


def test_projector_is_idempotent_and_symmetric(projector):
    W, V = torch.randn(2, *projector.shape, dtype=torch.float64)
    for j in range(len(PLANES)):
        PW = projector.project(W, j)
        assert torch.allclose(projector.project(PW, j), PW, atol=1e-12)
        assert torch.allclose((PW * V).sum(), (W * projector.project(V, j)).sum(), atol=1e-10)


def test_penalty_is_half_squared_residual_and_zero_on_projected(projector):
    W = torch.randn(projector.shape, dtype=torch.float64)
    penalty = projector.penalty(W)
    for j in range(len(PLANES)):
        residual = W - projector.project(W, j)
        assert torch.allclose(penalty[j], 0.5 * residual.square().sum(), rtol=1e-10)
        # zero up to the float64 cancellation in ||W||^2 - ||Q^T W||^2
        assert projector.penalty(projector.project(W, j))[j] < 1e-14 * W.square().sum()
    assert torch.all(penalty > 0)


def test_penalty_gradient_is_the_residual(projector):
    W = torch.randn(projector.shape, dtype=torch.float32, requires_grad=True)
    projector.penalty(W)[1].backward()
    expected = W.detach() - projector.project(W.detach(), 1)
    assert torch.allclose(W.grad, expected, atol=1e-5)


def test_bias_projector_keeps_only_invariant_directions():
    bias = Projector(Scalar, parse_rep("2*Scalar + Vector + T(2)"), [G.O(3)])
    b = torch.randn(bias.shape, dtype=torch.float64)
    Pb = bias.project(b, 0)
    assert torch.allclose(Pb[:2], b[:2]) and torch.allclose(Pb[2:5], torch.zeros(3, 1,
                                                                                 dtype=Pb.dtype))
    trace_part = Pb[5:].reshape(3, 3)
    assert torch.allclose(trace_part, trace_part.trace() / 3 * torch.eye(3, dtype=Pb.dtype))


def test_projector_buffers_follow_state_dict_and_dtype(projector):
    state = projector.state_dict()
    assert any(k.startswith("basis_") for k in state)
    clone = Projector(projector.rep_in, projector.rep_out, PLANES)
    clone.load_state_dict(state)
    W = torch.randn(projector.shape)
    assert torch.allclose(clone.project(W, 2), projector.project(W, 2))
    assert projector.project(W, 2).dtype == torch.float32


def test_projector_rejects_wrong_shape_and_mixed_dimensions(projector):
    with pytest.raises(ValueError, match="does not match"):
        projector.penalty(torch.randn(3, 3))
    with pytest.raises(ValueError, match="same R\\^d"):
        Projector(Vector, Vector, [G.O(3), G.O(2)])


def test_penalty_and_residual_match_the_penalty_and_its_gradient(projector):
    """The closed form used by the training steps equals penalty() and the autograd
    gradient of sum_j c_j R_j (float64, tolerance 1e-10 relative)."""
    W = torch.randn(projector.shape, dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([0.0, 0.5, 0.3, 0.2], dtype=torch.float64)
    penalty, residual = projector.penalty_and_residual(W, weights)
    assert torch.allclose(penalty, projector.penalty(W).detach(), rtol=1e-10)
    (weights * projector.penalty(W)).sum().backward()
    assert torch.allclose(residual, W.grad, atol=1e-10)
    assert residual.dtype == torch.float64 and not residual.requires_grad


def test_projection_gradient_is_the_projection(projector):
    """P is symmetric, so the gradient of <V, P W> is P V; checked numerically."""
    W = torch.randn(projector.shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: projector.project(w, 2), (W,))


def test_projection_onto_a_group_without_equivariant_maps_is_zero():
    empty = Projector(Vector, Scalar, [G.O(3)])
    assert torch.equal(empty.project(torch.ones(1, 3), 0), torch.zeros(1, 3))


def _dense_reference_basis(rep_in: Rep, rep_out: Rep, group) -> torch.Tensor:
    """Null space of the whole stacked constraint on row-major vec(W), by one dense SVD:
    an independent check of the block-sparse assembly (small cases only)."""
    d = group.d
    n_out, n_in = rep_out.size(d), rep_in.size(d)
    eye_in, eye_out = (torch.eye(n, dtype=torch.float64) for n in (n_in, n_out))
    rows = []
    for A in torch.from_numpy(group.lie):
        rows.append(torch.kron(rep_out.drho(A)[0], eye_in)
                    - torch.kron(eye_out, rep_in.drho(A)[0].T.contiguous()))
    for h in torch.from_numpy(group.discrete):
        inverse_t = torch.linalg.inv(rep_in.rho(h)[0]).T.contiguous()
        rows.append(torch.kron(rep_out.rho(h)[0], inverse_t) - torch.eye(n_out * n_in,
                                                                         dtype=torch.float64))
    if not rows:
        return torch.eye(n_out * n_in, dtype=torch.float64)
    _, s, vh = torch.linalg.svd(torch.cat(rows), full_matrices=True)
    rank = int((s > 1e-8 * max(1.0, float(s.max()))).sum())
    return vh[rank:].T


SMALL = [
    (G.O(3), "2*Scalar + Vector + T(2) + Scalar", "Vector + 2*Scalar"),
    (G.SO(3), "Vector + T(2)", "T(2) + Vector"),
    (G.O2xy(), "3*Scalar + 2*Vector", "T(2) + Scalar"),
    (G.Union(G.SO(3), G.Scaling(3)), "T(1,1) + 2*Vector", "Scalar + Dual + Vector"),
    (G.Lorentz(), "Vector + Scalar", "T(1,1)"),
    (G.SE(3), "2*Vector", "Vector + Scalar"),
    (G.S(3), "Vector + Scalar", "T(2)"),
]


@pytest.mark.parametrize("group,rep_in,rep_out", SMALL,
                         ids=[f"{c[0].name}:{c[1]}->{c[2]}" for c in SMALL])
def test_sparse_basis_equals_a_dense_solve(group, rep_in, rep_out):
    """Same dimension and the same projector (float64, 1e-9) as one dense SVD of the whole
    constraint, though the sparse form never holds a [D, k] dense matrix."""
    rin, rout = parse_rep(rep_in), parse_rep(rep_out)
    Q = equivariant_basis(rin, rout, group)
    reference = _dense_reference_basis(rin, rout, group)
    assert Q.shape == (reference.shape[0], reference.shape[1])
    P = Q.to_dense() @ Q.to_dense().T
    assert torch.allclose(P, reference @ reference.T, atol=1e-9)


def test_many_copies_stay_sparse():
    rep = parse_rep("100*Scalar + 30*Vector + 10*T(2)")
    Q = equivariant_basis(rep, rep, G.O(3))
    assert Q.shape == (280 * 280, 13200)  # 100^2 + 2*100*10 + 30^2 + 3*10^2
    assert Q._nnz() < 10 * Q.shape[1]


WEIGHT_CASES = [
    (G.O(3), (1,) * 6), (G.SO(3), (1,) * 5), (G.O2xy(), (1,) * 5), (G.SO2xy(), (1,) * 4),
    (G.Lorentz(), (1, 1, -1, -1)), (G.SO13p(), (-1,) * 4),
    (G.Union(G.SO(3), G.Scaling(3)), (1, -1, 1, -1, 1, -1)), (G.Scaling(3), (1, -1, 1)),
    (G.SE(3), (1, 1, -1, -1)), (G.Rot(3), (1, 1, -1)), (G.SO(3) * G.S(4), (1, 1)),
]


@pytest.mark.parametrize("group,factors", WEIGHT_CASES,
                         ids=[f"{c[0].name}:{c[1]}" for c in WEIGHT_CASES])
def test_weight_space_solve_matches_the_direct_solve(group, factors):
    """The eigenbasis route (large type pairs) spans the same subspace as the direct null
    space of the stacked constraints, with orthonormal real columns."""
    lie = solver._lie_null_space_by_weights(factors, group, solver.DEFAULT_TOL)
    assert lie is not None
    fast = solver._fixed_by_discrete(lie, factors, group, solver.DEFAULT_TOL)
    direct = solver._null_space(solver._type_constraints(factors, group),
                                group.d ** len(factors), solver.DEFAULT_TOL)
    assert fast.shape == direct.shape
    assert np.allclose(fast.T @ fast, np.eye(fast.shape[1]), atol=1e-10)
    assert np.allclose(fast @ fast.T, direct @ direct.T, atol=1e-9)


def test_large_type_pair_is_solved_in_the_weight_space():
    """SO(3) T(4) -> T(4) (6561 entries): dimension 91 (sum of squared multiplicities of
    the irreducibles in T(4): 3^2 + 6^2 + 6^2 + 3^2 + 1), every column invariant under
    random rotations acting on all eight tensor indices (float64, 1e-10)."""
    group = G.SO(3)
    Q = type_basis(T(4).summands[0][1], T(4).summands[0][1], group)
    assert Q.shape == (6561, 91)
    assert np.allclose(Q.T @ Q, np.eye(91), atol=1e-10)
    for g in group.sample(2, generator=torch.Generator().manual_seed(1)).numpy():
        assert np.abs(solver._apply_factors([g] * 8, Q) - Q).max() < 1e-10
