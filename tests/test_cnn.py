"""Field networks: soft convolutions and the soft CNN made exactly equivariant by projection,
the hard G-CNN, the relaxed group convolution, augmentation, and the trainer's soft-layer
steps on convolutions. Equivariance tolerances: 1e-5 in float32 (the issue's target),
1e-12 in float64."""

import pytest
import torch
from helpers import fails

from softequiv import fields as F
from softequiv import groups as G
from softequiv.nn.cnn import (
    CNN,
    GCNN,
    RPPCNN,
    FieldAugmented,
    MixedRPPCNN,
    RelaxedGCNN,
    SoftCNN,
    parameter_count,
)
from softequiv.nn.conv import RelaxedGroupConv2d, SoftConv2d
from softequiv.nn.layers import snapped
from softequiv.regularizers import equivariance_error, projection_penalties, sample_penalty
from softequiv.reps import Scalar, Vector
from softequiv.spec import parse_groups
from softequiv.train import (
    GradientProbe,
    damp_gradients,
    decoupled_penalty_step,
    nested_subspaces,
    refit,
    soft_layers,
)

GROUPS = parse_groups("D4, C4, C2, D2, FlipX, FlipY")
RIN, ROUT = Scalar + 2 * Vector, Vector + Scalar
SIZE = dict(ch=16, layers=2)


def _fields(n=3, size=9, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, RIN.size(2), size, size, generator=g, dtype=dtype)


def _error(model, group, x):
    return F.field_equivariance_error(model, x, group, RIN, ROUT)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_projected_soft_cnn_is_equivariant_for_every_candidate(dtype, tol):
    model = SoftCNN(RIN, ROUT, GROUPS, **SIZE).to(dtype)
    x = _fields(dtype=dtype)
    for j, group in enumerate(GROUPS):
        with snapped(model, j):
            assert _error(model, group, x) < tol, group.name
    assert _error(model, G.FlipX(), x) > 1e-2  # the free network is not
    assert (model.penalties() > 0).all()


def test_snapping_to_a_subgroup_keeps_only_that_subgroup():
    model = SoftCNN(RIN, ROUT, GROUPS, **SIZE).double()
    x = _fields()
    with snapped(model, 4):  # FlipX
        assert _error(model, G.FlipX(), x) < 1e-12
        assert _error(model, G.FlipY(), x) > 1e-3
        assert _error(model, G.D4(), x) > 1e-3
        penalties = model.penalties().detach()
    assert float(penalties[4]) < 1e-20 and (penalties[[0, 1, 2, 3, 5]] > 1e-3).all()


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_hard_gcnn_is_exactly_equivariant_and_stays_so_after_a_step(group):
    model = GCNN(RIN, ROUT, group, **SIZE).double()
    x = _fields()
    assert _error(model, group, x) < 1e-12
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(x).square().mean().backward()
    optimizer.step()
    assert _error(model, group, x) < 1e-12
    assert float(model.penalties().detach()[0]) < 1e-20


def test_rpp_and_mixed_rpp_have_free_pathways_and_twice_the_parameters():
    plain = SoftCNN(RIN, ROUT, GROUPS, **SIZE)
    rpp = RPPCNN(RIN, ROUT, G.D4(), **SIZE)
    assert parameter_count(rpp) == 2 * parameter_count(plain)
    assert parameter_count(CNN(5, 3, **SIZE)) == parameter_count(plain)
    assert all(layer.free_parameters() for layer in soft_layers(rpp))
    mixed = MixedRPPCNN(RIN, ROUT, GROUPS, **SIZE)
    assert parameter_count(mixed) == 7 * parameter_count(plain)
    with torch.no_grad():
        for layer in soft_layers(rpp):
            layer.weight.zero_()
            layer.bias.zero_()
    assert _error(rpp.double(), G.D4(), _fields()) < 1e-12


def test_relaxed_group_convolution_is_equivariant_with_uniform_mixing():
    model = RelaxedGCNN(RIN, ROUT, G.D4(), banks=3, **SIZE).double()
    x = _fields()
    assert _error(model, G.D4(), x) < 1e-12
    assert float(model.relaxation().detach()) == 0.0
    with torch.no_grad():
        for conv in model.convs:
            conv.mix.add_(0.2 * torch.randn_like(conv.mix))
    assert _error(model, G.D4(), x) > 1e-3
    assert float(model.relaxation().detach()) > 0.0


def test_relaxed_group_convolution_builds_each_output_element_from_its_own_filters():
    """Regular outputs: the rows of output element g are sum_l w_l(g) (g . W_l), so changing
    one element's mixing weights changes only that element's rows."""
    regular = F.RegularChannels(G.C4(), 2)
    conv = RelaxedGroupConv2d(regular, regular, G.C4(), 3, banks=2).double()
    assert conv.weight.shape == (2, 2, 8, 3, 3)  # base filters on the identity rows only
    before = conv.kernel().detach().clone()
    with torch.no_grad():
        conv.mix[:, 2] *= 3.0
    changed = (conv.kernel().detach() - before).abs().flatten(1).sum(1) > 0
    assert changed.tolist() == [False, False, True, False] * 2


def test_soft_conv_layers_match_conv2d_and_hard_layers_are_steerable():
    layer = SoftConv2d(RIN, ROUT, GROUPS, 5).double()
    x = _fields()
    reference = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=2)
    assert torch.allclose(layer(x), reference)
    hard = SoftConv2d(RIN, ROUT, GROUPS, 3, projected=(1,), free=False).double()
    assert hard.weight is None and float(hard.penalties().detach()[1]) < 1e-20
    assert F.field_equivariance_error(hard, x, G.C4(), RIN, ROUT) < 1e-12


def test_penalties_match_the_regularizer_and_trainer_steps_work_on_convolutions():
    torch.manual_seed(0)
    model = SoftCNN(RIN, ROUT, GROUPS, **SIZE)
    layers = soft_layers(model)
    assert len(layers) == 3
    assert torch.equal(projection_penalties(model), model.penalties())
    x, y = _fields(dtype=torch.float32), torch.randn(3, 3, 9, 9)
    ((model(x) - y) ** 2).mean().backward()
    probe = GradientProbe(layers, 0, 1)
    probe.accumulate()
    assert probe.levels().shape == (len(GROUPS),)
    rate = torch.tensor([0.0, 0.0, 0.0, 0.0, 50.0, 0.0], dtype=torch.float64)
    damp_gradients(layers, rate)
    for layer in layers:  # FlipX's share of every gradient is gone
        assert float(layer.weight_projector.penalty(layer.weight.grad)[4]) < 1e-10
    before = model.penalties().detach()
    measured = decoupled_penalty_step(layers, rate)
    assert torch.allclose(measured, before, rtol=1e-6)
    after = model.penalties().detach()
    assert float(after[4]) < 1e-8 * float(before[4])
    assert F.field_equivariance_error(model.double(), _fields(), G.FlipX(), RIN, ROUT) < 1e-6


def test_refit_inside_a_group_works_on_convolutions():
    # The verdicts' refits see only the soft-layer interface: inside FlipY the perturbed
    # copy of a FlipY-equivariant teacher is exactly equivariant and fits better than free.
    torch.manual_seed(1)
    model = SoftCNN(RIN, ROUT, GROUPS, **SIZE)
    x = _fields(n=16, dtype=torch.float32)
    with snapped(model, 5), torch.no_grad():  # the FlipY-equivariant teacher
        y = model(x)
    with torch.no_grad():
        for layer in soft_layers(model):
            layer.weight.copy_(layer.weight_projector.project(layer.weight, 5))
            layer.weight.add_(1e-2 * torch.randn_like(layer.weight))
    layers, data = soft_layers(model), (x, y)
    options = dict(steps=10, lr=1e-3, batch_size=8, seed=0)
    inside = refit(model, layers, data, data, group=5, **options)
    free = refit(model, layers, data, data, group=None, **options)
    assert inside.errors.shape == (16,) and inside.mse < free.mse
    model.load_state_dict(inside.state, strict=False)
    assert float(model.penalties().detach()[5]) < 1e-10


@pytest.mark.parametrize("rep_out,ch", [(Vector, 32), (Vector, 64), (Vector + Scalar, 16)])
def test_candidate_subspaces_nest_as_the_lattice_groups_do(rep_out, ch):
    # A kernel steerable under G_k is steerable under every subgroup of G_k. With a Vector
    # output the bias invariant under D4 or C4 is zero, and the check must still see it
    # inside every other subspace (it did not at ch 32: P_k b is then rounding noise).
    model = SoftCNN(4 * Vector, rep_out, GROUPS, ch=ch, layers=3)
    expected = {"D4": {"D4"}, "C4": {"C4", "D4"}, "C2": {"C2", "C4", "D2", "D4"},
                "D2": {"D2", "D4"}, "FlipX": {"FlipX", "D2", "D4"},
                "FlipY": {"FlipY", "D2", "D4"}}
    names = [g.name for g in GROUPS]
    found = nested_subspaces(soft_layers(model), len(GROUPS))
    assert {names[j]: {names[k] for k in inside} for j, inside in enumerate(found)} == expected


def test_augmentation_transforms_back_and_is_the_model_in_evaluation():
    inner = GCNN(RIN, ROUT, G.D4(), **SIZE).double()
    wrapped = FieldAugmented(inner, RIN, ROUT, G.D4())
    x = _fields()
    wrapped.train()
    assert torch.allclose(wrapped(x), inner(x), atol=1e-12)  # equivariant inner model
    plain = FieldAugmented(CNN(5, 3, **SIZE).double(), RIN, ROUT, G.D4())
    plain.train()
    torch.manual_seed(5)
    picks = torch.randint(8, (len(x),))
    torch.manual_seed(5)
    out = plain(x)
    for i, k in enumerate(picks.tolist()):
        g = G.D4().elements()[k]
        expected = F.transform(plain.model(F.transform(x[i:i + 1], g, RIN)), g.T, ROUT)
        assert torch.allclose(out[i:i + 1], expected, atol=1e-12)
    out.square().mean().backward()
    assert all(p.grad is not None for p in plain.parameters())
    plain.eval()
    assert torch.equal(plain(x), plain.model(x))


def test_bad_groups_sizes_and_inputs_fail_in_one_line():
    fails(lambda: SoftCNN(RIN, ROUT, parse_groups("FlipX, D4")),
          "D4 is not a subgroup of the ambient group FlipX")
    fails(lambda: SoftCNN(RIN, ROUT, [G.O(2)]), "finite groups of the square lattice", "O(2)")
    fails(lambda: SoftCNN(RIN, ROUT, [G.S(3)]), "finite groups of the square lattice")
    fails(lambda: SoftCNN(RIN, ROUT, GROUPS, ch=4), "ch 4", "D4")
    fails(lambda: SoftCNN(RIN, ROUT, GROUPS, kernel_size=4), "kernel size odd")
    model = SoftCNN(RIN, ROUT, GROUPS, **SIZE)
    fails(lambda: model(torch.zeros(2, 4, 8, 8)), "need shape [N, 5, H, W]", "[2, 4, 8, 8]")
    fails(lambda: CNN(5, 3)(torch.zeros(5, 8, 8)), "[N, 5, H, W]")


def test_sample_penalty_on_fields_vanishes_for_equivariant_models():
    x = _fields()
    hard = GCNN(RIN, ROUT, G.D4(), **SIZE).double()
    for group in GROUPS:
        assert float(sample_penalty(hard, x, group, RIN, ROUT, samples=3).detach()) < 1e-20
    soft = SoftCNN(RIN, ROUT, GROUPS, **SIZE).double()
    values = [sample_penalty(soft, x, G.D4(), RIN, ROUT, samples=4,
                             generator=torch.Generator().manual_seed(2)) for _ in range(2)]
    assert torch.equal(values[0], values[1]) and float(values[0].detach()) > 1e-3
    values[0].backward()
    assert all(layer.weight.grad is not None for layer in soft_layers(soft))


def test_equivariance_error_dispatches_fields_to_the_exact_average():
    soft = SoftCNN(RIN, ROUT, GROUPS, **SIZE).double()
    x = _fields()
    assert equivariance_error(soft, x, G.C4(), RIN, ROUT) == _error(soft, G.C4(), x)
