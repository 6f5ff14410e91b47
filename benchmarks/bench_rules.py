"""Every strength rule from the same warm-up, the fit rule included.

The benchmark tables (``softequiv bench``) record, for every PER run, the strengths the
error, published, relative and gradient rules would set at T_adj from that run's
warm-up. The fit rule needs refits at T_adj, which the default runs do not pay for; this
script warms up one seed of every benchmark setting (bench protocol: 100 epochs with
every candidate at lambda_init), measures what all five rules propose, and writes
``benchmarks/results/rules.json``. Run: ``.venv/bin/python benchmarks/bench_rules.py``
(about 40 minutes on 2 CPU cores).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from softequiv.bench import PER_PROTOCOL, TASKS
from softequiv.data.registry import load_builtin_dataset
from softequiv.train import Problem, TrainConfig, Training

RESULTS = Path(__file__).parent / "results" / "rules.json"


def warm_up(task: str, setting: dict, seed: int) -> dict:
    """The strengths every rule sets at T_adj after one bench warm-up."""
    dataset = load_builtin_dataset(TASKS[task].dataset, seed=seed, **setting)
    protocol = PER_PROTOCOL | {"rule": "fit"}
    config = TrainConfig(seed=seed, progress=False, threads=1, **protocol).resolved()
    start = time.perf_counter()
    run = Training(Problem.build(dataset), config)
    run.train_epochs(0, config.t_adj)
    run.adjust_strengths()
    tuner = run.tuner
    return {"task": task, "setting": setting, "seed": seed, "groups": dataset.groups,
            "truly_exact": dataset.exact, "errors": tuner.errors, "fit_costs": tuner.costs,
            "proposals": tuner.proposals(), "seconds": time.perf_counter() - start}


def main(seed: int = 0) -> dict:
    torch.set_num_threads(1)
    rows = []
    for task, spec in TASKS.items():
        for setting in spec.settings:
            rows.append(warm_up(task, setting, seed))
            print(task, setting, {k: [round(v, 3) for v in lam[1:]]
                                  for k, lam in rows[-1]["proposals"].items()}, flush=True)
    out = {"protocol": PER_PROTOCOL, "seed": seed, "runs": rows}
    partial = RESULTS.with_suffix(".json.tmp")
    partial.write_text(json.dumps(out, indent=2))
    partial.replace(RESULTS)
    return out


if __name__ == "__main__":
    main()
