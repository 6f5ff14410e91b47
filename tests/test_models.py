"""Networks (SPEC 4, 7): a SoftEMLP whose linear layers are projected for group j is
G_j-equivariant and has R_j = 0, and breaks the groups it was not projected to; hard EMLP,
RPP and Mixed-RPP weights have the documented form; the exactly equivariant parts, frame
averaging and augmentation behave as specified; state_dict and dtype conversion work."""

import copy
import dataclasses

import pytest
import torch

from softequiv import groups as G
from softequiv.nn import EMLP, MLP, RPP, Augmented, FrameAveraging, MixedRPP, SoftEMLP
from softequiv.nn.bilinear import BilinearFunction, BilinearPlan
from softequiv.nn.invariants import AffineDistances, NormRatios
from softequiv.nn.layers import EquivariantBilinear, GatedNonlinearity, SoftLinear, gated
from softequiv.regularizers import projection_penalties
from softequiv.reps import Rep, TensorType, uniform_rep
from softequiv.spec import parse_groups, parse_rep

# Relative equivariance error allowed for an exactly equivariant network
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
BROKEN = 1e-3  # a network that is not equivariant under a group sits clearly above this
PENALTY_REL = 1e-12  # R_j / ||weights||^2 for weights projected for group j
CH, LAYERS = 32, 2

FAMILIES = {
    # name: (rep_in, rep_out, candidate groups, ambient first)
    "inertia": ("5*Scalar + 5*Vector", "T(2)", "O(3), O2xy, O2yz, O2xz"),
    "cossim": ("3*Vector", "Scalar", "Union(SO(3), Scaling(3)), SO(3), Scaling(3)"),
    "se3": ("3*Vector", "Scalar", "SE(3), Rot(3), Trans(3)"),
}
PROJECTED = [("inertia", j) for j in range(4)] + [("cossim", j) for j in range(3)] + [
    ("se3", j) for j in range(3)]
# (family, projected group, group it was not projected to and must break)
BROKEN_PAIRS = [
    ("inertia", 1, 2), ("inertia", 2, 3), ("inertia", 3, 1), ("inertia", 1, 0),
    ("cossim", 1, 2), ("cossim", 1, 0),
    ("se3", 1, 2), ("se3", 2, 1), ("se3", 1, 0),
]


def gen(k: int) -> torch.Generator:
    return torch.Generator().manual_seed(k)


def family(name: str) -> tuple[Rep, Rep, list[G.Group]]:
    rin, rout, groups = FAMILIES[name]
    return parse_rep(rin), parse_rep(rout), parse_groups(groups)


def random_inputs(name: str, n: int, k: int, dtype=torch.float64) -> torch.Tensor:
    """Standard normal inputs; for SE(3) the points are homogeneous (p, 1)."""
    rin, _, groups = family(name)
    x = torch.randn(n, rin.size(groups[0].d), generator=gen(1000 + k), dtype=torch.float64)
    if name == "se3":
        x = x.reshape(n, -1, 4)
        x[..., 3] = 1.0
        x = x.reshape(n, -1)
    return x.to(dtype)


def sample(group: G.Group, n: int, k: int, distinct: int = 8) -> torch.Tensor:
    """``n`` group elements, ``distinct`` of them drawn with seed ``k`` and tiled over the
    batch (the generic sampler calls expm once per element, which is slow on a busy box)."""
    g = group.sample(min(n, distinct), generator=gen(k))
    return g.repeat((n + len(g) - 1) // len(g), 1, 1)[:n]


def rel_error(f, x: torch.Tensor, group: G.Group, rin: Rep, rout: Rep, *, n_g: int = 1,
              k: int = 0) -> float:
    """max over inputs and sampled g of |f(rho_in(g) x) - rho_out(g) f(x)| / (|.| + |.|)."""
    worst = 0.0
    with torch.no_grad():
        fx = f(x)
        for s in range(n_g):
            g = sample(group, x.shape[0], 10 * k + s)
            a = f((rin.rho(g).to(x.dtype) @ x[..., None])[..., 0])
            b = (rout.rho(g).to(x.dtype) @ fx[..., None])[..., 0]
            err = (a - b).norm(dim=-1) / (a.norm(dim=-1) + b.norm(dim=-1)).clamp_min(1e-300)
            worst = max(worst, float(err.max()))
    return worst


def mean_rel_error(f, x, group, rin, rout, k: int = 0) -> float:
    with torch.no_grad():
        g = sample(group, x.shape[0], k)
        a = f((rin.rho(g).to(x.dtype) @ x[..., None])[..., 0])
        b = (rout.rho(g).to(x.dtype) @ f(x)[..., None])[..., 0]
        return float(((a - b).norm(dim=-1) / (a.norm(dim=-1) + b.norm(dim=-1))).mean())


def project_(model: torch.nn.Module, j: int) -> torch.nn.Module:
    """Replace every SoftLinear weight and bias by its projection for group j, in place."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, SoftLinear):
                layer.weight.copy_(layer.weight_projector.project(layer.weight, j))
                layer.bias.copy_(layer.bias_projector.project(layer.bias[:, None], j)[:, 0])
    return model


def weight_norm2(model: torch.nn.Module) -> float:
    return sum(float(layer.weight.detach().double().square().sum()
                     + layer.bias.detach().double().square().sum())
               for layer in model.modules() if isinstance(layer, SoftLinear))


_MODELS: dict[str, SoftEMLP] = {}


def soft_model(name: str, dtype=torch.float32, seed: int = 0) -> SoftEMLP:
    """A fresh copy of a SoftEMLP with random weights (built once per family)."""
    key = f"{name}-{seed}"
    if key not in _MODELS:
        rin, rout, groups = family(name)
        torch.manual_seed(seed)
        _MODELS[key] = SoftEMLP(rin, rout, groups, ch=CH, layers=LAYERS)
    model = copy.deepcopy(_MODELS[key])
    return model.to(dtype) if dtype == torch.float64 else model


# --------------------------------------------------------------------------- SoftEMLP + PER


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,j", PROJECTED, ids=[f"{f}-{j}" for f, j in PROJECTED])
def test_projected_soft_model_is_equivariant(name, j, dtype):
    rin, rout, groups = family(name)
    model = project_(soft_model(name, dtype), j)
    x = random_inputs(name, 24, j, dtype)
    assert model(x).dtype == dtype
    err = rel_error(model, x, groups[j], rin, rout, n_g=2, k=j)
    assert err < TOL[dtype], (groups[j].name, err)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,j,other", BROKEN_PAIRS,
                         ids=[f"{f}-{j}-not-{o}" for f, j, o in BROKEN_PAIRS])
def test_projected_soft_model_breaks_other_groups(name, j, other, dtype):
    rin, rout, groups = family(name)
    model = project_(soft_model(name, dtype), j)
    x = random_inputs(name, 64, other, dtype)
    # Worst case over inputs and 4 group elements: at init the scalar-output models are
    # dominated by their biases, so the mean error of a broken symmetry can be small
    # (cossim/se3: 2e-4 - 5e-3 over seeds) while the worst case stays >= 1.6e-3.
    err = rel_error(model, x, groups[other], rin, rout, n_g=4, k=other)
    assert err > BROKEN, (groups[j].name, groups[other].name, err)


@pytest.mark.parametrize("name,j", PROJECTED, ids=[f"{f}-{j}" for f, j in PROJECTED])
def test_penalty_vanishes_for_the_projected_group_only(name, j):
    rin, rout, groups = family(name)
    random_model = soft_model(name, torch.float64)
    pen = random_model.penalties().detach()
    assert (pen > 1e-3 * weight_norm2(random_model)).all(), pen  # random weights break all
    model = project_(random_model, j)
    pen = model.penalties().detach()
    torch.testing.assert_close(projection_penalties(model).detach(), pen, rtol=0, atol=0)
    scale = weight_norm2(model)
    assert float(pen[j]) < PENALTY_REL * scale, (groups[j].name, pen)
    if j == 0:
        # Equivariant under the ambient group means equivariant under every subgroup.
        assert (pen < PENALTY_REL * scale).all(), pen
    elif name == "inertia":
        # The plane groups are not subgroups of each other: the others stay broken.
        others = [k for k in range(1, 4) if k != j]
        assert (pen[others] > 1e-3 * scale).all(), pen


def test_penalty_is_float64_and_gradient_is_the_residual():
    # d/dW 1/2 |W - P W|^2 = W - P W for an orthogonal projector P.
    model = soft_model("inertia")
    pen = model.penalties()
    assert pen.dtype == torch.float64 and pen.shape == (4,)
    for j in range(4):
        model.zero_grad()
        model.penalties()[j].backward()
        for layer in model.linear_layers():
            W, b = layer.weight.detach(), layer.bias.detach()
            residual = W - layer.weight_projector.project(W, j)
            torch.testing.assert_close(layer.weight.grad, residual, rtol=1e-4, atol=1e-6)
            bres = b - layer.bias_projector.project(b[:, None], j)[:, 0]
            torch.testing.assert_close(layer.bias.grad, bres, rtol=1e-4, atol=1e-6)


def test_projection_is_idempotent_on_every_layer():
    model = soft_model("inertia", torch.float64)
    for layer in model.linear_layers():
        for j in range(4):
            PW = layer.weight_projector.project(layer.weight.detach(), j)
            torch.testing.assert_close(layer.weight_projector.project(PW, j), PW,
                                       rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- baselines


def test_emlp_is_equivariant_at_init_and_after_training_steps():
    rin, rout, groups = family("inertia")
    torch.manual_seed(0)
    model = EMLP(rin, rout, G.O(3), ch=CH, layers=LAYERS)
    assert all(layer.weight is None and layer.bias is None for layer in model.linear_layers())
    x = random_inputs("inertia", 32, 0, torch.float32)
    assert rel_error(model, x, G.O(3), rin, rout, n_g=2) < TOL[torch.float32]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model(x).detach()
    for step in range(5):
        xb = random_inputs("inertia", 64, 10 + step, torch.float32)
        loss = (model(xb) - torch.randn(64, 9, generator=gen(step))).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.allclose(model(x).detach(), before)  # it did train
    assert rel_error(model, x, G.O(3), rin, rout, n_g=2) < TOL[torch.float32]
    pen = model.penalties().detach()
    assert float(pen[0]) < PENALTY_REL * sum(
        float(p.detach().double().square().sum()) for p in model.parameters())
    model64 = model.to(torch.float64)
    assert rel_error(model64, x.double(), G.O(3), rin, rout, n_g=2) < TOL[torch.float64]


def _check_effective_weights(layer: SoftLinear):
    weight, bias = layer.effective_weight()
    want_w = layer.weight if layer.free else torch.zeros_like(weight)
    want_b = layer.bias if layer.free else torch.zeros_like(bias)
    for j, v, c in zip(layer.projected, layer.path_weights, layer.path_biases, strict=True):
        want_w = want_w + layer.weight_projector.project(v, j)
        want_b = want_b + layer.bias_projector.project(c[:, None], j)[:, 0]
    torch.testing.assert_close(weight, want_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bias, want_b, rtol=1e-12, atol=1e-12)
    x = torch.randn(5, weight.shape[1], generator=gen(4), dtype=weight.dtype)
    torch.testing.assert_close(layer(x), x @ weight.T + bias)


def test_rpp_weight_is_projected_path_plus_free_and_free_zeroed_is_equivariant():
    rin, rout, _ = family("inertia")
    torch.manual_seed(1)
    model = RPP(rin, rout, G.O(3), ch=CH, layers=LAYERS).to(torch.float64)
    for layer in model.linear_layers():
        assert layer.projected == (0,) and layer.free
        assert layer.free_parameters() == [layer.weight, layer.bias]
        _check_effective_weights(layer)
    x = random_inputs("inertia", 32, 1)
    assert mean_rel_error(model, x, G.O(3), rin, rout) > BROKEN
    with torch.no_grad():
        for layer in model.linear_layers():
            layer.weight.zero_()
            layer.bias.zero_()
    assert rel_error(model, x, G.O(3), rin, rout, n_g=2) < TOL[torch.float64]


def test_mixed_rpp_weight_is_sum_of_projected_paths_plus_free():
    rin, rout, groups = family("inertia")
    torch.manual_seed(2)
    model = MixedRPP(rin, rout, groups, ch=CH, layers=LAYERS).to(torch.float64)
    for layer in model.linear_layers():
        assert layer.projected == (0, 1, 2, 3) and layer.free
        assert len(layer.path_weights) == 4
        _check_effective_weights(layer)
    # With the free path and all but the O2yz path zeroed, the model is O2yz-equivariant.
    with torch.no_grad():
        for layer in model.linear_layers():
            layer.weight.zero_()
            layer.bias.zero_()
            for j in (0, 1, 3):
                layer.path_weights[j].zero_()
                layer.path_biases[j].zero_()
    x = random_inputs("inertia", 32, 2)
    assert rel_error(model, x, groups[2], rin, rout, n_g=2) < TOL[torch.float64]
    assert mean_rel_error(model, x, groups[1], rin, rout) > BROKEN
    assert float(model.penalties().detach()[2]) < PENALTY_REL * sum(
        float(p.detach().square().sum()) for p in model.parameters())


def test_soft_model_has_no_free_parameter_split():
    model = soft_model("inertia")
    for layer in model.linear_layers():
        assert layer.projected == () and layer.free_parameters() == []
        _check_effective_weights(layer)


# --------------------------------------------------------------------------- equivariant parts

HIDDEN = uniform_rep(64, G.O(3))


@pytest.mark.parametrize("group", [G.O(3), G.SO(3), G.O2xz()], ids=lambda g: g.name)
def test_bilinear_layer_is_equivariant_and_quadratic(group):
    rep = gated(HIDDEN)
    torch.manual_seed(3)
    layer = EquivariantBilinear(rep, G.O(3)).to(torch.float64)
    assert len(layer.params) > 0
    x = torch.randn(32, rep.size(3), generator=gen(5), dtype=torch.float64)
    y = layer(x)
    assert y.shape == x.shape and float(y.detach().norm()) > 0
    torch.testing.assert_close(layer(2 * x), 4 * y)  # bilinear: homogeneous of degree 2
    assert layer(x.reshape(4, 8, -1)).shape == (4, 8, rep.size(3))  # extra batch dims
    assert rel_error(layer, x, group, rep, rep, n_g=2) < TOL[torch.float64]


def _bilinear_by_einsum(layer: EquivariantBilinear, x: torch.Tensor) -> torch.Tensor:
    """The bilinear layer term by term, out_a[n, α, i] += scale * sum P[α, k, c] S[n, c, i, j]
    X_b[n, k, j], with plain autograd: the reference for the fast evaluation."""
    plan, xt = layer.plan, x.T
    out = torch.zeros_like(xt)
    for param, t in zip(layer.params, plan.terms, strict=True):
        term = torch.einsum("akc,cijn,kjn->ain", param, plan.source(xt, t), plan.inputs(xt, t))
        start = plan.offsets[t.a]
        out = out + torch.nn.functional.pad(term.reshape(-1, x.shape[0]),
                                            (0, 0, start, len(xt) - start - t.na * t.da))
    return layer.scale * out.T


@pytest.mark.parametrize("mix", [None, False, True], ids=["cheaper", "contract", "mix"])
@pytest.mark.parametrize("residual", [False, True])
def test_bilinear_fast_evaluation_matches_einsum_and_its_gradient(mix, residual):
    """Every term may be evaluated contracting first or mixing first (``mix=None``: the
    cheaper one), plus the input or not; the value matches a term-by-term einsum and the
    hand-written backward pass passes gradcheck (float64, finite differences; values to
    1e-12)."""
    torch.manual_seed(0)
    layer = EquivariantBilinear(gated(HIDDEN), G.O(3)).to(torch.float64)
    plan = layer.plan
    if mix is not None:
        plan = BilinearPlan(plan.offsets, [dataclasses.replace(t, mix=mix) for t in plan.terms])
    assert {t.mix for t in plan.terms} == ({True, False} if mix is None else {mix})
    x = torch.randn(6, layer.size, dtype=torch.float64, requires_grad=True)

    def fast(x, *params):
        return BilinearFunction.apply(x.T.contiguous(), plan, layer.scale, residual, *params).T

    expected = _bilinear_by_einsum(layer, x) + (x if residual else 0)
    torch.testing.assert_close(fast(x, *layer.params), expected, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(fast, (x, *layer.params))


def test_bilinear_layer_on_a_rep_with_types_not_contiguous():
    """Types interleaved in the rep (Vector, Scalar, Vector): the layer reorders
    coordinates for the fast evaluation and back; it matches the einsum on the reordered
    coordinates and stays equivariant (float64)."""
    rep = parse_rep("2*Vector + 3*Scalar + Vector + T(2)")
    torch.manual_seed(1)
    layer = EquivariantBilinear(rep, G.O(3)).to(torch.float64)
    x = torch.randn(5, rep.size(3), dtype=torch.float64)
    order = layer._order
    torch.testing.assert_close(layer(x)[:, order], _bilinear_by_einsum(layer, x[:, order]),
                               atol=1e-12, rtol=1e-12)
    assert rel_error(layer, x, G.O(3), rep, rep, n_g=2) < TOL[torch.float64]


def test_gated_nonlinearity_gradient():
    """The gate's hand-written backward pass passes gradcheck (float64)."""
    layer = GatedNonlinearity(HIDDEN, G.O(3))
    x = torch.randn(5, gated(HIDDEN).size(3), generator=gen(7), dtype=torch.float64,
                    requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize("group", [G.O(3), G.SO(3), G.O2xz()], ids=lambda g: g.name)
def test_gated_nonlinearity_is_equivariant(group):
    rep_in, rep_out = gated(HIDDEN), HIDDEN
    layer = GatedNonlinearity(HIDDEN, G.O(3))
    x = torch.randn(32, rep_in.size(3), generator=gen(6), dtype=torch.float64)
    y = layer(x)
    assert y.shape == (32, rep_out.size(3))
    assert rel_error(layer, x, group, rep_in, rep_out, n_g=2) < TOL[torch.float64]
    # Layout-free checks (the gates may sit before or after rep): every output scalar is
    # swish of an input scalar, every non-scalar output copy is its input copy times
    # sigmoid of an input scalar (its gate), so in (0, 1) and the same across the copy.
    scalar = TensorType(())
    in_scalars = rep_in.type_indices(3)[scalar]
    out_scalars = rep_out.type_indices(3)[scalar]
    candidates = torch.nn.functional.silu(x[:, in_scalars])
    for col in out_scalars:
        assert (y[:, col, None] - candidates).abs().amax(0).min() < 1e-12
    in_ns = torch.cat([i for t, i in rep_in.type_indices(3).items() if t.rank > 0]).sort()[0]
    out_ns = torch.cat([i for t, i in rep_out.type_indices(3).items() if t.rank > 0]).sort()[0]
    ratio = y[:, out_ns] / x[:, in_ns]
    assert ((ratio > 0) & (ratio < 1)).all()
    gates = torch.sigmoid(x[:, in_scalars])
    offset = 0
    for mult, t in rep_out:
        if t.rank == 0:
            continue
        k = t.dim(3)
        for _ in range(mult):
            block = ratio[:, offset:offset + k]
            torch.testing.assert_close(block, block[:, :1].expand_as(block))
            assert (block[:, :1] - gates).abs().amax(0).min() < 1e-12
            offset += k


def test_equivariant_block_alone_is_equivariant_under_ambient_group():
    model = soft_model("inertia", torch.float64)
    project_(model, 0)
    block = model.blocks[1]
    rep = model.blocks[0].nonlinearity.size
    x = torch.randn(16, rep, generator=gen(7), dtype=torch.float64)
    hidden = uniform_rep(CH, G.O(3))
    assert rel_error(block, x, G.O(3), hidden, hidden, n_g=2) < TOL[torch.float64]


def test_invariant_scalars_where_polynomial_layers_reach_no_invariant():
    assert all(isinstance(b.invariants, NormRatios) for b in soft_model("cossim").blocks)
    assert all(isinstance(b.invariants, AffineDistances) for b in soft_model("se3").blocks)
    assert all(b.invariants is None for b in soft_model("inertia").blocks)


def test_invariant_features_pass_a_scalars_only_hidden_rep_through():
    """ch 4 gives hidden reps of scalars only: the feature layers have nothing to read and
    must leave them as they are."""
    for name in ("cossim", "se3"):
        rin, rout, groups = family(name)
        model = SoftEMLP(rin, rout, groups, ch=4, layers=LAYERS)
        hidden = torch.randn(8, model.blocks[0].nonlinearity.size, generator=gen(9))
        assert torch.equal(model.blocks[0].invariants(hidden), hidden)
        assert torch.isfinite(model(random_inputs(name, 8, 0, torch.float32))).all()


@pytest.mark.parametrize("layer_class, ambient", [
    (NormRatios, G.Union(G.SO(3), G.Scaling(3))), (AffineDistances, G.SE(3))])
def test_invariant_features_backward_matches_finite_differences(layer_class, ambient):
    """The hand-written backward passes of the invariant feature layers against central
    differences (torch.autograd.gradcheck, float64, random inputs and mixing weights), for
    the input and every learned weight."""
    rep = gated(uniform_rep(CH, ambient))
    layer = layer_class(rep, ambient).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(generator=gen(11))
    x = torch.randn(rep.size(ambient.d), 5, generator=gen(12), dtype=torch.float64,
                    requires_grad=True)
    params = list(layer.parameters())
    assert len(params) == (2 if layer_class is NormRatios else 1)
    assert torch.autograd.gradcheck(lambda x, *_: layer.forward_columns(x), (x, *params),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_affine_distances_are_se3_invariant_and_are_distances_for_points():
    """Invariance under random SE(3) elements (float64, tolerance 1e-10); for copies
    that are points (h = 1) the features are log(1 + squared distance)."""
    ambient = G.SE(3)
    rep = gated(uniform_rep(64, ambient))
    layer = AffineDistances(rep, ambient).double()
    x = torch.randn(32, rep.size(4), generator=gen(6), dtype=torch.float64)
    g = sample(ambient, 32, 7)
    moved = (rep.rho(g) @ x[..., None])[..., 0]
    with torch.no_grad():
        torch.testing.assert_close(layer.features(moved), layer.features(x), rtol=1e-10,
                                   atol=1e-10)
    name, copies, dim = layer._points[0]
    points = x.clone()
    idx = getattr(layer, name).reshape(copies, dim)
    points[:, idx[:, -1]] = 1.0
    p = points[:, idx[:, :-1]]
    expected = torch.log1p((p[:, 0] - p[:, 1]).square().sum(-1))
    with torch.no_grad():
        torch.testing.assert_close(layer.features(points)[:, 0], expected)


def test_norm_ratio_features_are_equivariant_and_vanish_with_their_type():
    """Equivariance of the whole layer (invariant scalars, normalized outer products into
    V ⊗ V*) under rotations times scalings (float64, random elements and inputs, tolerance
    1e-10 of the largest entry), and both parts change the input; a type of weight <= 0
    shrunk by 1e-6 adds under 1e-9 to the scalars (positive-weight types set the reference
    scale, so they are only ever O(1))."""
    ambient = G.Union(G.SO(3), G.Scaling(3))
    rep = gated(uniform_rep(CH, ambient))
    layer = NormRatios(rep, ambient).double()
    with torch.no_grad():
        layer.mix.normal_(generator=gen(3))
    x = torch.randn(32, rep.size(3), generator=gen(4), dtype=torch.float64)
    g = sample(ambient, 32, 5)
    rho = rep.rho(g)
    moved = (rho @ x[..., None])[..., 0]
    scalars = layer.scalars
    with torch.no_grad():
        out, out_moved = layer(x), layer(moved)
    expected = (rho @ out[..., None])[..., 0]
    torch.testing.assert_close(out_moved / expected.abs().amax(-1, keepdim=True),
                               expected / expected.abs().amax(-1, keepdim=True),
                               rtol=1e-10, atol=1e-10)
    assert float((out - x)[:, :scalars].std()) > 1e-2
    assert float((out - x)[:, scalars:].std()) > 1e-2
    types = [t for t in rep.type_indices(3) if t.rank > 0 and sum(t.factors) <= 0]
    assert types
    for t in types:
        shrunk = x.clone()
        shrunk[:, rep.type_indices(3)[t]] *= 1e-6
        own = _type_features(layer, shrunk, t, rep)
        assert float(own.abs().max()) < 1e-9, (str(t), float(own.abs().max()))


def _type_features(layer: NormRatios, x: torch.Tensor, t: TensorType, rep: Rep) -> torch.Tensor:
    """The features of type ``t`` alone: the output with only t's rows of the mix kept."""
    keep = torch.zeros_like(layer.mix)
    offset = 0
    for tt, idx in rep.type_indices(3).items():
        if tt.rank == 0:
            continue
        copies = len(idx) // tt.dim(3)
        width = copies * (copies + 1) // 2
        if tt == t:
            keep[offset:offset + width] = layer.mix[offset:offset + width]
        offset += width
    probe = copy.deepcopy(layer)
    with torch.no_grad():
        probe.mix.copy_(keep)
        return probe(x)[:, :layer.scalars] - x[:, :layer.scalars]


def test_scale_snapped_network_is_invariant_and_not_only_rotation_invariant():
    """Projected onto Scaling(3), the cossim network is scale-invariant (float64, 1e-10),
    yet rotating the input changes its output by more than a tenth of the output's spread
    over inputs (about 3x at init): the normalized outer products give it scale-free
    tensors, without which it could compute only rotation invariants (and tensor-rep
    layers alone, only constants). (ch 64: the ratios need two copies of a type, and ch 32
    has one Vector.)"""
    rin, rout, groups = family("cossim")
    torch.manual_seed(0)
    model = project_(SoftEMLP(rin, rout, groups, ch=64, layers=LAYERS).double(), 2)
    x = random_inputs("cossim", 64, 2)
    assert rel_error(model, x, groups[2], rin, rout, n_g=2, k=5) < TOL[torch.float64]
    rotated = (rin.rho(sample(groups[1], 64, 3)) @ x[..., None])[..., 0]
    with torch.no_grad():
        out = model(x)
        assert float((model(rotated) - out).abs().max()) > 0.1 * float(out.std()) > 1e-4


# --------------------------------------------------------------------------- wrappers


def test_frame_averaging_is_o3_equivariant():
    rin, rout, groups = family("inertia")
    torch.manual_seed(4)
    mlp = MLP(rin.size(3), rout.size(3), ch=32, layers=2).to(torch.float64)
    fa = FrameAveraging(mlp, rin, rout)
    x = random_inputs("inertia", 32, 3)
    assert mean_rel_error(mlp, x, G.O(3), rin, rout) > BROKEN  # the wrapped MLP is not
    for group in (G.O(3), G.SO(3), groups[1]):
        assert rel_error(fa, x, group, rin, rout, n_g=2) < 1e-8, group.name


def _se3_frame_averaging(out: str) -> tuple[FrameAveraging, Rep, Rep]:
    rin, rout = parse_rep("3*Vector"), parse_rep(out)
    torch.manual_seed(5)
    mlp = MLP(rin.size(4), rout.size(4), ch=32, layers=2).to(torch.float64)
    return FrameAveraging(mlp, rin, rout, kind="SE(3)"), rin, rout


def test_frame_averaging_se3_single_point_cloud():
    fa, rin, rout = _se3_frame_averaging("Scalar")
    for k in range(3):
        x = random_inputs("se3", 1, k)
        assert rel_error(fa, x, G.SE(3), rin, rout, n_g=3, k=k) < 1e-8


@pytest.mark.parametrize("out", ["Scalar", "Scalar + Vector"])
def test_frame_averaging_is_se3_equivariant_for_homogeneous_points(out):
    fa, rin, rout = _se3_frame_averaging(out)
    x = random_inputs("se3", 16, 4)
    assert rel_error(fa, x, G.SE(3), rin, rout, n_g=2) < 1e-8
    batch = torch.cat([fa(x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(fa(x), batch)  # batching must not change the result


def test_frame_averaging_rejects_bad_configuration():
    mlp = MLP(9, 1, ch=8, layers=1)
    with pytest.raises(ValueError, match="supports"):
        FrameAveraging(mlp, parse_rep("3*Vector"), parse_rep("Scalar"), kind="SO(2)")
    with pytest.raises(ValueError, match="two Vector"):
        FrameAveraging(mlp, parse_rep("6*Scalar + Vector"), parse_rep("Scalar"))


def test_augmented_eval_is_the_model_and_train_transforms_with_the_seeded_g():
    rin, rout, groups = family("inertia")
    torch.manual_seed(6)
    mlp = MLP(rin.size(3), rout.size(3), ch=32, layers=2).to(torch.float64)
    group = groups[2]
    aug = Augmented(mlp, rin, rout, group)
    x = random_inputs("inertia", 16, 5)
    aug.eval()
    assert torch.equal(aug(x), mlp(x))
    aug.train()
    torch.manual_seed(123)
    y = aug(x)
    torch.manual_seed(123)
    g = group.sample(len(x))
    gx = (rin.rho(g) @ x[..., None])[..., 0]
    want = (torch.linalg.inv(rout.rho(g)) @ mlp(gx)[..., None])[..., 0]
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(y, mlp(x))  # a fresh g per example really is applied
    # Orthogonal reps: the inverse is the transpose, i.e. the loss on augmented pairs.
    torch.testing.assert_close(want, (rout.rho(g).transpose(1, 2) @ mlp(gx)[..., None])[..., 0])


def test_augmented_of_an_equivariant_model_is_the_model():
    rin, rout, _ = family("inertia")
    model = EMLP(rin, rout, G.O(3), ch=CH, layers=LAYERS).to(torch.float64)
    aug = Augmented(model, rin, rout, G.O(3)).train()
    x = random_inputs("inertia", 16, 6)
    torch.testing.assert_close(aug(x), model(x), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- state and dtype


def test_state_dict_round_trip_includes_projector_buffers():
    rin, rout, groups = family("inertia")
    torch.manual_seed(7)
    model = SoftEMLP(rin, rout, groups, ch=CH, layers=LAYERS)
    state = model.state_dict()
    basis_keys = [k for k in state if ".weight_projector.basis_" in k]
    assert basis_keys and any(".bias_projector.basis_" in k for k in state)
    assert all(state[k].dtype == torch.float64 for k in basis_keys)
    torch.manual_seed(8)
    clone = SoftEMLP(rin, rout, groups, ch=CH, layers=LAYERS)
    x = random_inputs("inertia", 8, 7, torch.float32)
    assert not torch.allclose(clone(x), model(x))
    clone.load_state_dict(state)
    assert torch.equal(clone(x), model(x))
    assert torch.equal(clone.penalties(), model.penalties())
    # The loaded bases are really used: corrupting them in the state changes the penalties.
    bad = {k: (v * 0 if k in basis_keys else v) for k, v in state.items()}
    clone.load_state_dict(bad)
    assert not torch.equal(clone.penalties(), model.penalties())


def test_to_float64_converts_weights_and_keeps_penalties():
    model = soft_model("inertia")
    x = random_inputs("inertia", 8, 8, torch.float32)
    y32, pen32 = model(x).detach(), model.penalties().detach()
    model64 = model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model64.parameters())
    assert all(b.dtype in (torch.float64, torch.long) for b in model64.buffers())
    y64 = model64(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-5)
    pen64 = model64.penalties()
    assert pen64.dtype == torch.float64
    torch.testing.assert_close(pen64.detach(), pen32, rtol=1e-6, atol=1e-9)


def test_to_float32_keeps_penalties_working():
    model = soft_model("inertia", torch.float64)
    pen64 = model.penalties().detach()
    model32 = model.to(torch.float32)
    torch.testing.assert_close(model32.penalties().detach(), pen64, rtol=1e-5, atol=1e-8)
