"""Refits after model selection: free, or inside one candidate's subspace (every step
projects gradients and weights), from the selected weights and with the same budget; and
the verdicts they give on a model whose data holds one candidate exactly."""

import torch

from softequiv import groups as G
from softequiv import verdicts
from softequiv.nn import SoftEMLP
from softequiv.spec import parse_rep
from softequiv.train import (
    constrain,
    parameters_copy,
    refit,
    row_errors,
    settled,
    soft_layers,
)

PLANES = [G.O(3), G.O2xy(), G.O2yz(), G.O2xz()]
REP_IN, REP_OUT = parse_rep("2*Scalar + 2*Vector"), parse_rep("T(2)")


def _teacher_and_student(noise: float) -> tuple[SoftEMLP, SoftEMLP]:
    """A teacher exactly O2xy-equivariant, and a copy of it with noisy weights."""
    torch.manual_seed(0)
    teacher = SoftEMLP(REP_IN, REP_OUT, PLANES, ch=24, layers=2).double()
    constrain(soft_layers(teacher), 1)
    student = SoftEMLP(REP_IN, REP_OUT, PLANES, ch=24, layers=2).double()
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        for layer in soft_layers(student):
            layer.weight.add_(noise * torch.randn_like(layer.weight))
    return teacher.eval(), student.eval()


def _data(teacher: SoftEMLP, n: int, seed: int,
          noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and the teacher's outputs, plus label noise of ``noise`` times their std."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, REP_IN.size(3), dtype=torch.float64, generator=generator)
    Y = teacher(X).detach()
    return X, Y + noise * Y.std() * torch.randn(Y.shape, dtype=torch.float64,
                                                generator=generator)


def _refit(student: SoftEMLP, group: int | None, train, valid, steps: int = 30):
    return refit(student, soft_layers(student), train, valid, group=group, steps=steps,
                 lr=1e-3, batch_size=128, seed=0)


def test_refit_inside_a_group_is_exactly_equivariant_and_leaves_the_model_alone():
    teacher, student = _teacher_and_student(noise=0.05)
    train, valid = _data(teacher, 256, 1), _data(teacher, 128, 2)
    before = parameters_copy(student)
    result = _refit(student, 2, train, valid)
    assert all(torch.equal(v, parameters_copy(student)[k]) for k, v in before.items())
    student.load_state_dict(result.state, strict=False)
    with torch.no_grad():
        penalties = student.penalties()
        norm2 = sum(float(p.square().sum()) for p in student.parameters())
    assert penalties[2] < 1e-14 * norm2  # float64 cancellation in ||W||^2 - ||Q^T W||^2
    assert torch.allclose(result.errors, row_errors(student, *valid))
    assert result.errors.shape == (128,) and result.step > 0


def test_free_refit_is_never_worse_than_its_start_on_validation():
    teacher, student = _teacher_and_student(noise=0.05)
    train, valid = _data(teacher, 256, 1), _data(teacher, 128, 2)
    start = float(row_errors(student, *valid).mean())
    result = _refit(student, None, train, valid, steps=20)
    assert result.mse <= start and result.history[0] == start


def test_the_respected_group_holds_and_the_others_are_broken():
    # A slightly perturbed copy of an O2xy-equivariant teacher, on labels with noise of
    # 30% of their spread: refit inside O2xy it fits as well as free (both are limited by
    # the noise); inside O(3) or the other planes it cannot.
    teacher, student = _teacher_and_student(noise=0.01)
    train, valid = _data(teacher, 256, 1, noise=0.3), _data(teacher, 200, 2, noise=0.3)
    free = _refit(student, None, train, valid)
    costs = [_refit(student, j, train, valid) for j in range(len(PLANES))]
    found, warnings = verdicts.judge(free.errors, [c.errors for c in costs], valid[1],
                                     names=[g.name for g in PLANES])
    assert [f["verdict"] for f in found] == ["broken", "holds", "broken", "broken"], found
    assert warnings == []


def test_the_snap_imposes_only_a_candidate_that_holds():
    # Refits inside an undetermined candidate are never kept, however well they fit: the
    # model is made exactly equivariant only to what the data was shown to hold.
    from types import SimpleNamespace

    from softequiv.train import Refit, Training

    model = torch.nn.Linear(2, 1)

    def fitted(group, mse, value):
        state = {name: torch.full_like(p, value) for name, p in model.named_parameters()}
        return Refit(group, state, torch.full((10,), mse), 0, [])

    refits = {None: fitted(None, 1.0, 0.0), 0: fitted(0, 2.0, 1.0), 1: fitted(1, 0.5, 2.0),
              2: fitted(2, 0.8, 3.0)}
    found = [{"verdict": v} for v in (verdicts.BROKEN, verdicts.UNDETERMINED, verdicts.HOLDS)]
    run = SimpleNamespace(config=SimpleNamespace(snap=True), model=model)
    assert Training.snap(run, refits, found) == 2
    assert torch.all(model.weight == 3.0)
    found[2] = {"verdict": verdicts.UNDETERMINED}
    assert Training.snap(run, refits, found) is None
    assert torch.all(model.weight == 0.0)


def test_a_refit_trains_more_rounds_only_while_it_has_not_settled():
    assert settled([1.0, 0.5, 0.4, 0.45], best_step=20)  # the best came before the end
    assert settled([1.0, 0.5, 0.5, 0.5], best_step=0)  # nothing improved on the start
    assert settled([1.0, 0.41, 0.40, 0.40], best_step=30)  # 2.5% over the last half
    assert not settled([1.0, 0.5, 0.45, 0.40], best_step=30)  # 25%: still learning
    teacher, student = _teacher_and_student(noise=0.3)
    train, valid = _data(teacher, 256, 1), _data(teacher, 128, 2)
    options = dict(group=1, steps=10, lr=1e-3, batch_size=128, seed=0)
    one = refit(student, soft_layers(student), train, valid, **options)
    assert not one.settled  # far from the teacher after 10 steps
    two = refit(student, soft_layers(student), train, valid, after=one, **options)
    assert two.history[:len(one.history)] == one.history
    assert len(two.history) == 2 * len(one.history) - 1
    assert two.mse < one.mse and two.step > one.step


def test_a_refit_that_first_gets_worse_trains_on_until_its_rate_has_annealed():
    # A fresh Adam at the peak rate throws a trained model off before it settles again:
    # stopping for lack of progress then would judge a refit that never reached its
    # small rates. Stops for patience come only in the second half of the schedule.
    teacher, student = _teacher_and_student(noise=0.0)
    train, valid = _data(teacher, 256, 1), _data(teacher, 128, 2)
    steps = 400
    result = refit(student, soft_layers(student), train, valid, group=None, steps=steps,
                   lr=3e-2, batch_size=128, seed=0)
    checks = steps // 20
    assert result.history[1] > result.history[0]  # thrown off: the start was the teacher
    assert len(result.history) - 1 >= 20 // 2  # trained at least half its budget
    assert result.step % checks == 0
