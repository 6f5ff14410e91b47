"""The fast paths of issue 13: the stacked penalty/damping pass equals the per-layer sparse
projections, training tensors stay on the model's device, torch.compile falls back to eager,
thread settings are restored, and the GPU benchmark runs (on the CPU here)."""

import json
import warnings

import pytest
import torch
from helpers import benchmark_script

from softequiv import threads
from softequiv.nn import SoftEMLP
from softequiv.spec import parse_groups, parse_rep
from softequiv.train import (
    _adam,
    _restore,
    _shrink_factors,
    _snapshot,
    _weight_and_bias,
    compiled,
    damp_gradients,
    decoupled_penalty_step,
)

FAMILIES = {"inertia": ("5*Scalar + 5*Vector", "T(2)", "O(3), O2xy, O2yz, O2xz"),
            "cossim": ("3*Vector", "Scalar", "Union(SO(3), Scaling(3)), SO(3), Scaling(3)")}


def network(family: str, ch: int = 48, dtype=torch.float64) -> SoftEMLP:
    rep_in, rep_out, groups = FAMILIES[family]
    torch.manual_seed(0)
    model = SoftEMLP(parse_rep(rep_in), parse_rep(rep_out), parse_groups(groups), ch=ch,
                     layers=2).to(dtype)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return model


def rates(model: SoftEMLP) -> torch.Tensor:
    n = len(model.groups)
    return torch.linspace(0.0, 0.6, n, dtype=torch.float64)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_stacked_pass_equals_per_layer_projections(family):
    """One stacked pass over all layers gives, per layer, W - sum_j c_j (W - P_j W) with P_j
    from the sparse projector, the same for the gradients, and R_j of the weights before the
    step (float64, 1e-10 relative)."""
    model = network(family)
    layers = model.linear_layers()
    shrink = _shrink_factors(rates(model))
    expected, expected_grads = [], []
    penalty = torch.zeros(len(model.groups), dtype=torch.float64)
    for layer in layers:
        for param, projector, as_matrix in _weight_and_bias(layer):
            for tensor, out in ((param.detach(), expected), (param.grad, expected_grads)):
                matrix = as_matrix(tensor)
                moved = sum(c * (matrix - projector.project(matrix, j))
                            for j, c in enumerate(shrink))
                out.append(tensor - moved.reshape(tensor.shape))
            penalty += projector.penalty(as_matrix(param.detach()))
    got = decoupled_penalty_step(layers, rates(model), damp=True)
    torch.testing.assert_close(got, penalty, rtol=1e-10, atol=1e-12)
    params = [p for layer in layers for p, _, _ in _weight_and_bias(layer)]
    for param, want, want_grad in zip(params, expected, expected_grads, strict=True):
        torch.testing.assert_close(param.detach(), want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(param.grad, want_grad, rtol=1e-10, atol=1e-12)


def test_damping_alone_matches_the_combined_pass():
    a, b = network("inertia"), network("inertia")
    damp_gradients(a.linear_layers(), rates(a))
    decoupled_penalty_step(b.linear_layers(), rates(b), damp=True)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-14)


def test_shrink_factors_are_capped_without_host_decisions():
    small = _shrink_factors(torch.tensor([0.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(small, 1 - torch.exp(-torch.tensor([0.0, 0.1],
                                                                  dtype=torch.float64)))
    assert float(_shrink_factors(torch.tensor([5.0, 5.0])).sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_training_tensors_stay_on_the_model_device(family):
    """On the meta device (no data: any op mixing in a CPU tensor fails), a forward and
    backward pass and the stacked penalty/damping pass run, the projector bases follow the
    move and stay float64 (what a CUDA machine needs, checked here on the CPU)."""
    model = network(family, dtype=torch.float32).to("meta")
    size_in = model.rep_in.size(model.groups[0].d)
    model(torch.randn(8, size_in, device="meta")).square().mean().backward()
    layers = model.linear_layers()
    penalty = decoupled_penalty_step(layers, rates(model).to("meta"), damp=True)
    assert penalty.device.type == "meta" and penalty.dtype == torch.float64
    for projector in (layer.weight_projector for layer in layers):
        bases = [b for name, b in projector.named_buffers() if name.startswith("basis_")]
        assert bases and all(b.device.type == "meta" and b.dtype == torch.float64
                             for b in bases)


def test_fused_adam_on_cpu_and_multi_tensor_elsewhere():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert _adam(params, 1e-3).defaults["fused"] in (True, None)
    meta = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert _adam(meta, 1e-3).defaults["foreach"] is True


def test_compile_falls_back_to_eager(monkeypatch):
    model = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="training eagerly"):
        forward = compiled(model)
    torch.testing.assert_close(forward(x), model(x))

    def fails_when_called(module, **kwargs):
        def call(x):
            raise RuntimeError("backend failed")
        return call

    monkeypatch.setattr(torch, "compile", fails_when_called)
    forward = compiled(model)
    with pytest.warns(RuntimeWarning, match="backend failed"):
        torch.testing.assert_close(forward(x), model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: later calls are silently eager
        torch.testing.assert_close(forward(x), model(x))


def test_thread_settings(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    assert threads.default_threads() == 1
    monkeypatch.setattr(threads, "available_cpus", lambda: 64)
    assert threads.default_threads() == 4
    before = torch.get_num_threads()
    with threads.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with threads.limited_threads() as n:
        assert n == 4 and torch.get_num_threads() == 4
    assert torch.get_num_threads() == before


def test_estimator_uses_the_thread_policy_and_restores_threads(monkeypatch):
    """SymmetryRegressor(threads=None) fits with the default policy (as the CLI does) and
    leaves torch's thread count as it found it, also after an explicit count."""
    from softequiv import SymmetryRegressor
    from softequiv.data.synthetic import inertia

    seen = []
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setattr("softequiv.discover.discover", _record_threads(seen))
    data = inertia(n=(30, 15, 15))
    before = torch.get_num_threads()
    for count, expected in ((None, 2), (3, 3)):
        with pytest.raises(_Stop):
            SymmetryRegressor("5*Scalar + 5*Vector", "T(2)", "O(3), O2xy", epochs=2, ch=16,
                              threads=count).fit(data.X, data.Y)
        assert seen[-1] == expected and torch.get_num_threads() == before


class _Stop(Exception):
    pass


def _record_threads(seen: list[int]):
    def discover(dataset, config):  # noqa: ARG001 - the signature of softequiv.discover
        seen.append(torch.get_num_threads())
        raise _Stop

    return discover


def test_model_selection_snapshot_copies_parameters_not_projector_bases():
    """The best epoch's state is copied without the constant projector bases, and copying
    it back restores every parameter exactly."""
    model = network("inertia", dtype=torch.float32)
    layers = model.linear_layers()
    snapshot = _snapshot(model, layers)
    assert not any("basis" in name for name in snapshot)
    assert set(snapshot) >= {name for name, _ in model.named_parameters()}
    saved = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    _restore(model, snapshot)
    for name, p in model.named_parameters():
        assert torch.equal(p, saved[name])


def test_gpu_benchmark_runs_on_the_cpu(tmp_path):
    """The CUDA benchmark's CPU fallback (quick sizes) writes every field."""
    bench = benchmark_script("bench_gpu")
    out = tmp_path / "gpu.json"
    result = bench.main(quick=True, out=out)
    assert json.loads(out.read_text()) == result
    step = result["steps"]["16"]
    assert 0 < step["penalty_share_of_step"] < 1 and result["per_epoch"]["seconds"] > 0
    assert result["machine"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
