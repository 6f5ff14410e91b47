"""Training-speed benchmark (issue 3): seconds per epoch and set-up time of the soft
network at the published reference size (1000 training points, batch 500, ch 128,
4 linear layers), against the published JAX code's measurements on this kind of machine
(16 s to build its projectors, about 3 s per epoch).

Writes benchmarks/results/training.json. Run: ``.venv/bin/python benchmarks/bench_training.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from softequiv.atomic import write_json
from softequiv.data.synthetic import inertia
from softequiv.solver import clear_cache
from softequiv.train import Problem, TrainConfig, build_model, fit

RESULTS = Path(__file__).parent / "results" / "training.json"
JAX_REFERENCE = {"setup_s": 16.0, "epoch_s": 3.0, "source": "issue 3 (published JAX code, "
                 "2 CPU cores, 1000 points, batch 500, ch 128, 4 layers)"}
EPOCHS = 30


def main() -> dict:
    problem = Problem.build(inertia(axis="z", eps=0.3, seed=0))
    rows = {}
    for method in ("per", "emlp", "rpp", "mixed-rpp", "mlp"):
        config = TrainConfig(method=method, epochs=EPOCHS, ch=128, layers=3, progress=False)
        clear_cache()
        start = time.perf_counter()
        build_model(problem, config.resolved())
        setup = time.perf_counter() - start
        fit(problem, TrainConfig(method=method, epochs=2, progress=False))  # warm-up
        result = fit(problem, config)
        rows[method] = {"setup_s": setup, "epoch_s": result.seconds / EPOCHS}
    out = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "torch": torch.__version__},
           "setting": {"train_points": 1000, "batch": 500, "ch": 128, "linear_layers": 4,
                       "groups": "O(3), O2xy, O2yz, O2xz", "epochs_timed": EPOCHS},
           "methods": rows, "jax_reference": JAX_REFERENCE,
           "per_speedup_per_epoch": JAX_REFERENCE["epoch_s"] / rows["per"]["epoch_s"],
           "per_speedup_setup": JAX_REFERENCE["setup_s"] / rows["per"]["setup_s"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, out, indent=2)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
