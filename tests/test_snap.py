"""Snapping the selected soft model onto a candidate's equivariant subspace: chosen on
validation data, only when it helps, and exact afterwards."""

import torch

from softequiv import groups as G
from softequiv.nn import SoftEMLP
from softequiv.nn.layers import snapped
from softequiv.spec import parse_rep
from softequiv.train import snap_to_best_group, soft_layers

PLANES = [G.O(3), G.O2xy(), G.O2yz(), G.O2xz()]
REP_IN, REP_OUT = parse_rep("2*Scalar + 2*Vector"), parse_rep("T(2)")


def _teacher_and_student(noise: float) -> tuple[SoftEMLP, SoftEMLP]:
    """A teacher exactly O2xy-equivariant, and a copy of it with noisy weights."""
    torch.manual_seed(0)
    teacher = SoftEMLP(REP_IN, REP_OUT, PLANES, ch=24, layers=2).double()
    with torch.no_grad():
        for layer in soft_layers(teacher):
            layer.weight.copy_(layer.weight_projector.project(layer.weight, 1))
            layer.bias.copy_(layer.bias_projector.project(layer.bias[:, None], 1)[:, 0])
    student = SoftEMLP(REP_IN, REP_OUT, PLANES, ch=24, layers=2).double()
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        for layer in soft_layers(student):
            layer.weight.add_(noise * torch.randn_like(layer.weight))
    return teacher.eval(), student.eval()


def test_snaps_a_noisy_copy_back_onto_the_respected_group():
    teacher, student = _teacher_and_student(noise=0.05)
    X = torch.randn(256, REP_IN.size(3), dtype=torch.float64)
    Y = teacher(X).detach()
    with torch.no_grad():
        before = float(((student(X) - Y) ** 2).mean())
        assert snap_to_best_group(student, soft_layers(student), X, Y) == 1
        after = float(((student(X) - Y) ** 2).mean())
        penalties = student.penalties()
        norm2 = sum(float(p.square().sum()) for p in student.parameters())
    assert after < before
    # exact up to the float64 cancellation in ||W||^2 - ||Q^T W||^2
    assert penalties[1] < 1e-14 * norm2 and torch.all(penalties[2:] > 1e-6 * norm2)


def test_leaves_the_model_alone_when_no_projection_helps():
    teacher, student = _teacher_and_student(noise=0.0)
    X = torch.randn(64, REP_IN.size(3), dtype=torch.float64)
    Y = teacher(X).detach() + 0.1 * torch.randn(64, REP_OUT.size(3), dtype=torch.float64)
    with torch.no_grad():  # make the model fit Y better than any projection of it can
        for layer in soft_layers(student):
            layer.weight.add_(1e-3 * torch.randn_like(layer.weight))
    state = {k: v.clone() for k, v in student.state_dict().items()}
    with torch.no_grad():
        base = float(((student(X) - Y) ** 2).mean())
        snapped_mses = []
        for j in range(len(PLANES)):
            with snapped(student, j):
                snapped_mses.append(float(((student(X) - Y) ** 2).mean()))
    choice = snap_to_best_group(student, soft_layers(student), X, Y)
    if min(snapped_mses) >= base:
        assert choice is None
        assert all(torch.equal(v, student.state_dict()[k]) for k, v in state.items())
    else:
        assert choice == min(range(len(PLANES)), key=snapped_mses.__getitem__)
