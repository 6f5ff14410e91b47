"""Every strength rule from the same warm-up, the fit rule included.

The benchmark tables (``softequiv bench``) record, for every PER run, the strengths the
error, published, relative and gradient rules would set at T_adj from that run's
warm-up. The fit rule needs refits at T_adj, which the default runs do not pay for; this
script warms up one seed of every benchmark setting (bench protocol: 100 epochs with
every candidate at lambda_init), measures what all five rules propose, and writes
``benchmarks/results/rules.json`` and the README table between ``<!-- bench:rules -->``
markers. Run: ``.venv/bin/python benchmarks/bench_rules.py [--tasks TASK ...]`` (about
20 minutes on 2 shared CPU cores for every task).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from softequiv.atomic import write_json
from softequiv.bench import PER_PROTOCOL, TASKS, update_readme
from softequiv.data.registry import load_builtin_dataset
from softequiv.train import Problem, TrainConfig, Training
from softequiv.tuning import RULES

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


def table(rows: list[dict]) -> str:
    """Per setting: the exact candidate's lambda and the largest broken candidate's, under
    every rule (a bold cell: the exact candidate gets the strictly largest lambda)."""
    lines = ["| task | setting | exact | " + " | ".join(RULES) + " |",
             "|---|---|---|" + "---|" * len(RULES)]
    for row in rows:
        names = row["groups"]
        exact = [n for n in row["truly_exact"] if n in names[1:]]
        if len(exact) != 1:
            continue
        j = names.index(exact[0])
        cells = []
        for rule in RULES:
            lam = row["proposals"].get(rule)
            if lam is None:
                cells.append("-")
                continue
            broken = max(v for k, v in enumerate(lam) if k and k != j)
            cell = f"{lam[j]:.3g} / {broken:.3g}"
            cells.append(f"**{cell}**" if lam[j] > broken else cell)
        setting = ", ".join(f"{k}={v}" for k, v in row["setting"].items())
        lines.append(f"| {row['task']} | {setting} | {exact[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(seed: int = 0, tasks: list[str] | None = None) -> dict:
    """Warm up every setting of ``tasks`` (default: every vector task) and rewrite the
    results and the README table; the rows of other tasks stay as the results file has
    them."""
    torch.set_num_threads(1)
    chosen = [t for t, spec in TASKS.items() if not spec.fields]  # smoke records its own
    if tasks:
        unknown = sorted(set(tasks) - set(chosen))
        if unknown:
            raise SystemExit(f"unknown task(s) {unknown}; choose from {chosen}")
        chosen = [t for t in chosen if t in tasks]
    kept = json.loads(RESULTS.read_text())["runs"] if tasks and RESULTS.exists() else []
    fresh = {}
    for task in chosen:
        fresh[task] = []
        for setting in TASKS[task].settings:
            fresh[task].append(warm_up(task, setting, seed))
            print(task, setting, {k: [round(v, 3) for v in lam[1:]]
                                  for k, lam in fresh[task][-1]["proposals"].items()},
                  flush=True)
    order = [t for t, spec in TASKS.items() if not spec.fields]
    rows = [row for task in order
            for row in (fresh[task] if task in fresh else
                        [r for r in kept if r["task"] == task])]
    out = {"protocol": PER_PROTOCOL, "seed": seed, "runs": rows}
    write_json(RESULTS, out, indent=2)
    update_readme("rules", table(rows) + f"\n\nOne warm-up per setting (seed {seed}), bench "
                  "protocol; cells: exact candidate's lambda / largest broken candidate's.")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", help="warm up only these tasks' settings and "
                        "keep the other rows of the results file (default: every task)")
    main(tasks=parser.parse_args().tasks)
