"""Solver benchmark (issue 2).

(a) Cold-cache time to build every projector of a soft EMLP with ``uniform_rep(384, O(3))``
    hidden layers (3 blocks + head = 4 linear layers) for the four inertia candidates
    (O(3), O2xy, O2yz, O2xz), inertia input/output reps.
(b) Time of one evaluation of all four penalties with backward (the autograd path used by
    ``--penalty coupled`` and ``regularize()``), and of the closed-form penalty step the
    default (decoupled) training takes, against one forward+backward of that network on a
    batch of 500.

Writes benchmarks/results/solver.json. Run: ``.venv/bin/python benchmarks/bench_solver.py``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from softequiv.atomic import write_json
from softequiv.nn import SoftEMLP
from softequiv.reps import uniform_rep
from softequiv.solver import Projector, clear_cache
from softequiv.spec import parse_groups, parse_rep
from softequiv.train import decoupled_penalty_step

RESULTS = Path(__file__).parent / "results" / "solver.json"
GROUPS = "O(3), O2xy, O2yz, O2xz"
REP_IN, REP_OUT = "5*Scalar + 5*Vector", "T(2)"


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> dict:
    torch.manual_seed(0)
    groups = parse_groups(GROUPS)
    rep_in, rep_out = parse_rep(REP_IN), parse_rep(REP_OUT)

    def build_projectors() -> None:
        clear_cache()
        model = SoftEMLP(rep_in, rep_out, groups, ch=384, layers=3)
        for layer in model.linear_layers():
            Projector(layer.rep_in, layer.rep_out, groups)

    def cold_projectors_only() -> float:
        model = SoftEMLP(rep_in, rep_out, groups, ch=384, layers=3)
        clear_cache()
        start = time.perf_counter()
        for layer in model.linear_layers():
            Projector(layer.rep_in, layer.rep_out, groups)
            Projector(parse_rep("Scalar"), layer.rep_out, groups)
        return time.perf_counter() - start

    cold = [cold_projectors_only() for _ in range(5)]
    model_build = timed(build_projectors, 3)

    model = SoftEMLP(rep_in, rep_out, groups, ch=384, layers=3)
    x, y = torch.randn(500, rep_in.size(3)), torch.randn(500, rep_out.size(3))

    def penalty_step() -> None:
        model.zero_grad(set_to_none=True)
        model.penalties().sum().backward()

    def network_step() -> None:
        model.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()

    layers = model.linear_layers()
    shrink = torch.tensor([0.0, 0.2, 0.1, 0.1], dtype=torch.float64)

    @torch.no_grad()
    def decoupled_step() -> None:
        decoupled_penalty_step(layers, shrink)

    for _ in range(3):
        penalty_step()
        network_step()
        decoupled_step()
    penalty = timed(penalty_step, 20)
    network = timed(network_step, 20)
    decoupled = timed(decoupled_step, 20)
    weights = sum(layer.weight.numel() + layer.bias.numel() for layer in model.linear_layers())
    result = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "setting": {"groups": GROUPS, "rep_in": REP_IN, "rep_out": REP_OUT, "ch": 384,
                    "linear_layers": 4, "hidden": str(uniform_rep(384, groups[0])),
                    "soft_weights": weights, "batch": 500},
        "cold_build_projectors_s": {"median": statistics.median(cold), "min": min(cold)},
        "cold_build_model_s": {"median": statistics.median(model_build),
                               "min": min(model_build)},
        "penalties_fwd_bwd_s": statistics.median(penalty),
        "network_fwd_bwd_s": statistics.median(network),
        "penalty_share_of_step": statistics.median(penalty) / statistics.median(network),
        "decoupled_penalty_step_s": statistics.median(decoupled),
        "decoupled_share_of_step": statistics.median(decoupled) / statistics.median(network),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, result, indent=2)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
