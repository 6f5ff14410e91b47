"""Solver benchmark (issues 2 and 13).

(a) Cold-cache time to build every projector of a soft EMLP with ``uniform_rep(384, O(3))``
    hidden layers (3 blocks + head = 4 linear layers) for the four inertia candidates
    (O(3), O2xy, O2yz, O2xz), inertia input/output reps.
(b) The penalty and damping updates of one training step at ch 384 (batch 500): the
    stacked pass (``decoupled_penalty_step(..., damp=True)``) against the previous
    per-layer sparse form (reconstructed here from each projector's sparse bases),
    interleaved in one process, and the share of the training step (forward+backward,
    penalty and damping, Adam) they take.
(c) ``softequiv basis`` on large maps: the O(3) self-map of
    ``100*Scalar + 30*Vector + 10*T(2)`` (solver seconds and the whole command's peak memory)
    and SO(3) T(4) -> T(4) (cold: the basis cache is cleared first).

Writes benchmarks/results/solver.json. Run: ``.venv/bin/python benchmarks/bench_solver.py``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from softequiv.data.cache import write_json
from softequiv.nn import SoftEMLP
from softequiv.reps import uniform_rep
from softequiv.solver import Projector, clear_cache
from softequiv.spec import parse_groups, parse_rep
from softequiv.threads import one_thread
from softequiv.train import _adam, _shrink_factors, _weight_and_bias, decoupled_penalty_step

RESULTS = Path(__file__).parent / "results" / "solver.json"
GROUPS = "O(3), O2xy, O2yz, O2xz"
REP_IN, REP_OUT = "5*Scalar + 5*Vector", "T(2)"
BIG_MAP = "100*Scalar + 30*Vector + 10*T(2)"


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def per_layer_sparse_step(layers, rate: torch.Tensor) -> torch.Tensor:
    """The previous form of the damping and penalty updates: for every weight and bias, two
    sparse products with its projector's bases (float64), one layer at a time."""
    shrink = _shrink_factors(rate)
    total = torch.zeros(len(rate), dtype=torch.float64)
    with torch.no_grad():
        for tensor_of in (lambda p: p.grad, lambda p: p):
            for layer in layers:
                for param, projector, as_matrix in _weight_and_bias(layer):
                    basis, basis_t, segments = projector._sparse(None, param.device,
                                                                 torch.float64)
                    w = as_matrix(tensor_of(param)).reshape(-1, 1).double()
                    coeffs = basis_t @ w
                    pulled = basis @ (coeffs * (segments @ shrink[:, None]))
                    total += 0.5 * (w.square().sum() - (coeffs.square().T @ segments)[0])
                    tensor_of(param).sub_((shrink.sum() * w - pulled).to(param.dtype)
                                          .reshape(param.shape))
    return total


def step_shares(ch: int, repeats: int) -> dict:
    groups = parse_groups(GROUPS)
    rep_in, rep_out = parse_rep(REP_IN), parse_rep(REP_OUT)
    model = SoftEMLP(rep_in, rep_out, groups, ch=ch, layers=3)
    x, y = torch.randn(500, rep_in.size(3)), torch.randn(500, rep_out.size(3))
    layers = model.linear_layers()
    optimizer = _adam(list(model.parameters()), 1e-3)
    rate = torch.tensor([0.0, 0.2, 0.1, 0.1], dtype=torch.float64)

    def network() -> None:
        optimizer.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()

    parts = {"forward_backward": network,
             "penalty_and_damping": lambda: decoupled_penalty_step(layers, rate, damp=True),
             "penalty_and_damping_previous": lambda: per_layer_sparse_step(layers, rate),
             "adam": optimizer.step}
    for fn in parts.values():
        for _ in range(2):
            fn()
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            times[name] += timed(fn, 1)
    med = {name: statistics.median(v) for name, v in times.items()}
    step = med["forward_backward"] + med["penalty_and_damping"] + med["adam"]
    previous = med["forward_backward"] + med["penalty_and_damping_previous"] + med["adam"]
    weights = sum(layer.weight.numel() + layer.bias.numel() for layer in layers)
    return {"ch": ch, "soft_weights": weights, "hidden": str(uniform_rep(ch, groups[0])),
            "seconds": med,
            "penalty_share_of_step": med["penalty_and_damping"] / step,
            "previous_penalty_share_of_step": med["penalty_and_damping_previous"] / previous,
            "speedup_of_penalty_and_damping":
                med["penalty_and_damping_previous"] / med["penalty_and_damping"]}


PEAK_MEMORY = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
printed = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
                  "stdout": printed}))
"""
"""Runs a command from a small process and reports that command's own peak memory (a child
forked from this large process would count this process's pages as its own)."""


def basis_command(group: str, rep: str) -> dict:
    """``softequiv basis --json`` in a fresh process: its solver seconds and peak memory."""
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY, sys.executable, "-m",
                           "softequiv.cli", "basis", "--group", group, "--rep-in", rep,
                           "--rep-out", rep, "--json"], capture_output=True, text=True,
                          check=True)
    report = json.loads(done.stdout)
    if report["exit"]:
        raise RuntimeError(f"softequiv basis failed ({report['exit']})")
    return {"group": group, "rep": rep} | json.loads(report["stdout"]) | {
        "peak_memory_mb": report["maxrss_kb"] / 1024}


def main() -> dict:
    torch.manual_seed(0)
    groups = parse_groups(GROUPS)
    rep_in, rep_out = parse_rep(REP_IN), parse_rep(REP_OUT)

    def cold_projectors_only() -> float:
        model = SoftEMLP(rep_in, rep_out, groups, ch=384, layers=3)
        clear_cache()
        start = time.perf_counter()
        for layer in model.linear_layers():
            Projector(layer.rep_in, layer.rep_out, groups)
            Projector(parse_rep("Scalar"), layer.rep_out, groups)
        return time.perf_counter() - start

    with one_thread():
        cold = [cold_projectors_only() for _ in range(5)]
        shares = [step_shares(ch, 15) for ch in (128, 384)]
    result = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": 1,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "note": "2 CPU cores shared with other jobs; one thread; parts "
                            "interleaved, medians"},
        "setting": {"groups": GROUPS, "rep_in": REP_IN, "rep_out": REP_OUT,
                    "linear_layers": 4, "batch": 500},
        "cold_build_projectors_ch384_s": {"median": statistics.median(cold), "min": min(cold)},
        "training_step": shares,
        "basis_command": [basis_command("O(3)", BIG_MAP), basis_command("SO(3)", "T(4)")],
    }
    write_json(RESULTS, result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
