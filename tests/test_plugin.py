"""The projection regularizer for the nn.Linear and nn.Conv2d layers of a user's own model."""

from __future__ import annotations

import pytest
import torch
from helpers import fails
from torch import nn

import softequiv
from softequiv import regularize
from softequiv.plugin import EquivarianceRegularizer

REPS = {"0": ("5*Scalar+5*Vector", "32*Scalar"), "2": ("32*Scalar", "T(2)")}
GROUPS = "O(3), O2xy"




def make_model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(20, 32), nn.SiLU(), nn.Linear(32, 9))


def project_model(model: nn.Sequential, reg: EquivarianceRegularizer, group: int) -> None:
    """Replace every regularized layer's weight and bias by its projection onto ``group``."""
    with torch.no_grad():
        for proj, name in zip(reg.projectors, reg.layer_names, strict=True):
            layer = dict(model.named_modules())[name]
            layer.weight.copy_(proj.weight_projector.project(layer.weight, group))
            layer.bias.copy_(proj.bias_projector.project(layer.bias[:, None], group)[:, 0])


def test_exported_from_package():
    assert softequiv.regularize is regularize


def test_random_weights_have_positive_penalties():
    reg = regularize(make_model(), REPS, GROUPS)
    assert isinstance(reg, nn.Module) and reg.group_names == ["O(3)", "O2xy"]
    values = reg()
    assert values.dtype == torch.float64 and values.shape == (2,)
    assert (values > 1e-3).all()
    assert values[0] > values[1]  # the bigger group constrains more
    logged = reg.values()
    assert list(logged) == ["O(3)", "O2xy"] and all(isinstance(v, float) for v in logged.values())
    assert logged["O2xy"] == pytest.approx(float(values[1].detach()))


@pytest.mark.parametrize("group", [0, 1])
def test_projected_weights_have_zero_penalty(group):
    model = make_model()
    reg = regularize(model, REPS, GROUPS)
    before = reg().detach()
    project_model(model, reg, group)
    after = reg().detach()
    assert after[group] < 1e-10
    if group == 0:  # O(3)-equivariant maps are O2xy-equivariant too (a subgroup)
        assert after[1] < 1e-10
    else:
        assert after[0] > 1e-3 and after[0] < before[0]


def test_penalties_sum_over_layers_and_weighted_total():
    model = make_model()
    reg = regularize(model, REPS, ["O(3)", "O2xy"])
    single = [regularize(model, {name: REPS[name]}, GROUPS)() for name in REPS]
    assert torch.allclose(reg(), single[0] + single[1])
    lambdas = [0.5, 100.0]
    expected = 0.5 * reg()[0] + 100.0 * reg()[1]
    assert torch.allclose(reg.total(lambdas), expected)
    assert torch.allclose(reg(lambdas), expected)
    assert torch.allclose(reg(torch.tensor(lambdas)), expected)
    assert torch.allclose(reg({"O2xy": 100.0}), 100.0 * reg()[1])
    fails(lambda: reg([1.0, 2.0, 3.0]), "one value per group")
    fails(lambda: reg({"O2yz": 1.0}), "O2yz")


def test_gradients_flow_to_model_weights():
    model = make_model()
    reg = regularize(model, REPS, GROUPS)
    reg.total([0.0, 1.0]).backward()
    for layer in (model[0], model[2]):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        assert layer.bias.grad is not None
    # d/dW 1/2 ||W - P W||^2 = W - P W (P an orthogonal projector)
    W = model[2].weight.detach()
    P_W = reg.projectors[1].weight_projector.project(W, 1)
    assert torch.allclose(model[2].weight.grad, W - P_W, atol=1e-6)
    # the penalty follows later weight updates (a reference, not a copy)
    project_model(model, reg, 1)
    assert reg()[1] < 1e-10


def test_holds_projectors_only():
    model = make_model()
    reg = regularize(model, REPS, GROUPS)
    assert list(reg.parameters()) == []
    keys = list(reg.state_dict())
    assert keys and all(k.startswith("projectors.") and "basis" in k for k in keys)
    model_ids = {id(p) for p in model.parameters()}
    assert not any(id(t) in model_ids for t in reg.state_dict().values())
    assert reg.to("cpu") is reg and reg.to(torch.float64) is reg


def test_nested_names_and_layers_without_bias():
    model = nn.Sequential()
    model.add_module("enc", nn.Sequential(nn.Linear(6, 4, bias=False), nn.Tanh()))
    model.add_module("head", nn.Linear(4, 3))
    reg = regularize(model, {"enc.0": ("2*Vector", "4*Scalar"), "head": ("4*Scalar", "Vector")},
                     "SO(3)")
    assert reg.layer_names == ["enc.0", "head"] and reg().shape == (1,)
    with torch.no_grad():
        model.enc[0].weight.zero_()
        model.head.weight.zero_()
        model.head.bias.zero_()
    assert reg()[0] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_moves_to_cuda_with_the_model():
    model = make_model().cuda()
    reg = regularize(model, REPS, GROUPS).cuda()
    value = reg.total([0.0, 1.0])
    assert value.device.type == "cuda"
    value.backward()
    assert model[0].weight.grad is not None


def test_errors():
    model = make_model()
    fails(lambda: regularize(model, {"5": REPS["0"]}, GROUPS), "no module '5'", "'0', '2'")
    fails(lambda: regularize(model, {"1": ("Scalar", "Scalar")}, GROUPS), "'1'", "SiLU",
          "not nn.Linear")
    message = fails(lambda: regularize(model, {"0": ("4*Scalar+5*Vector", "32*Scalar")},
                                       GROUPS), "layer '0'", "20 -> 32", "19 -> 32")
    assert "4*Scalar+5*Vector" in message
    fails(lambda: regularize(model, {"2": ("32*Scalar", "Vector")}, GROUPS), "layer '2'",
          "32 -> 9", "32 -> 3")
    fails(lambda: regularize(model, REPS, "O(3), Foo"), "unknown group 'Foo'")
    fails(lambda: regularize(model, {"2": ("32*Scalar", "Tensor(2)")}, GROUPS),
          "unknown rep 'Tensor'")
    fails(lambda: regularize(model, REPS, "O(3), SE(3)"), "same dimension")
    fails(lambda: regularize(model, REPS, []), "no candidate groups")
    fails(lambda: regularize(model, {}, GROUPS), "non-empty")
    fails(lambda: regularize(model, {"0": "5*Scalar+5*Vector"}, GROUPS), "pair")
    fails(lambda: regularize(model, REPS, 3), "groups")
    fails(lambda: regularize("model", REPS, GROUPS), "nn.Module")


CONV_REPS = {"0": ("Scalar + Vector", "16*Scalar"), "2": ("16*Scalar", "Vector")}


def make_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(16, 2, 3, padding=1))


def test_conv2d_layers_with_field_types():
    # Projected kernels: R_j = 0 and the network is FlipX-equivariant (float64, 1e-12);
    # random kernels: R_j > 0 for both candidates.
    from softequiv.fields import field_equivariance_error
    from softequiv.spec import parse_groups, parse_rep

    cnn = make_cnn().double()
    reg = regularize(cnn, CONV_REPS, "D4, FlipX")
    assert reg.n_groups == 2 and (reg() > 1e-3).all()
    project_model(cnn, reg, 1)
    values = reg().detach()
    assert values[1] < 1e-20 < 1e-3 < values[0]
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64)
    groups = parse_groups("D4, FlipX")
    rin, rout = parse_rep("Scalar + Vector"), parse_rep("Vector")
    assert field_equivariance_error(cnn, x, groups[1], rin, rout) < 1e-12
    assert field_equivariance_error(cnn, x, groups[0], rin, rout) > 1e-3
    reg.total([0.0, 1.0]).backward()  # gradients reach the kernels
    assert cnn[0].weight.grad is not None


def test_conv2d_errors():
    cnn = make_cnn()
    fails(lambda: regularize(cnn, {"0": ("Vector", "16*Scalar")}, "D4"), "layer '0'",
          "3 -> 16 channels", "2 -> 16")
    fails(lambda: regularize(cnn, CONV_REPS, "O(2)"), "convolution", "square lattice", "O(2)")
    fails(lambda: regularize(nn.Conv2d(3, 4, 2), {"": ("Scalar + Vector", "4*Scalar")}, "D4"),
          "kernel size (2, 2)", "odd")
    fails(lambda: regularize(nn.Conv2d(2, 4, 3, groups=2), {"": ("Vector", "4*Scalar")}, "D4"),
          "grouped")
