"""Training-speed benchmark (issues 3 and 13), on this machine (2 shared CPU cores).

(a) PER seconds per epoch on inertia at the published reference size (1000 training
    points, batch 500, ch 128, 4 linear layers, 4 groups, one torch thread): the marginal
    training epoch (training for 2E epochs minus training for E, over E: warm-up, strength
    adjustment and training with its per-epoch validation counted; set-up and what follows
    training, the refits and verdicts, not), of this tree and of a baseline revision
    (default ``db836aa``, the tree before the hand-written bilinear layer, extracted with
    ``git archive``, whose fit had no stages after training), each in its own process,
    alternating over rounds; medians and their ratio, and the ratio to the published JAX
    code's epoch. The same for this tree on two torch threads (the default on 2 cores).
(b) One training step (forward+backward, penalty and damping, Adam) of non-orthogonal
    ambient groups against O(3) at the same ch and reps (3*Vector -> Scalar), interleaved.
(c) ``torch.compile`` on the CPU: compile seconds (inductor caches compiled code on disk, so
    a second run compiles much faster) and the compiled forward+backward against eager, at
    ch 128; and the PER epoch of (a) with ``torch_compile=True`` (compiling not counted).
(d) Seconds per epoch of the other methods (this tree, marginal as in (a)).
(e) Accuracy: test MSE of PER on the same inertia data after a fixed number of epochs
    (``--accuracy-epochs``, no snap), seeds 0 and 1, for this tree and the baseline, both
    with the baseline's default strength rule (``gradient``), so that both train the same
    model.

Writes benchmarks/results/training.json. Run: ``.venv/bin/python benchmarks/bench_training.py``
(``--rounds``, ``--epochs``, ``--accuracy-epochs``, ``--baseline REV``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from softequiv.data.cache import write_json
from softequiv.nn import SoftEMLP
from softequiv.spec import parse_groups, parse_rep
from softequiv.threads import one_thread
from softequiv.train import _adam, compiled, decoupled_penalty_step

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "training.json"
JAX_REFERENCE = {"epoch_s": 2.8, "source": "issue 13: the published JAX code, 2.65-2.96 s per "
                 "epoch side by side on an earlier release's machine (1000 points, batch "
                 "500, ch 128); bench_jax.py measures it side by side on this one"}
EPOCH_SCRIPT = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from softequiv import train
from softequiv.data.synthetic import inertia
problem = train.Problem.build(inertia(axis="z", eps=0.3, seed=0))
def training_seconds(config):
    if not hasattr(train, "Training"):  # trees before the staged fit train and nothing else
        return train.fit(problem, config).seconds
    run = train.Training(problem, config.resolved())
    start = time.perf_counter()
    run.train_epochs(0, run.config.t_adj)
    run.adjust_strengths()
    run.train_epochs(run.config.t_adj, run.config.epochs)
    return time.perf_counter() - start
def run(n, method):
    extra = {"torch_compile": True} if method == "per-compiled" else {}
    config = train.TrainConfig(method=method.split("-compiled")[0], epochs=n, ch=128,
                               progress=False, snap=False, **extra)
    return training_seconds(config)
out = {}
for method in sys.argv[2].split(","):
    run(2, method)
    E = int(sys.argv[1])
    out[method] = (run(2 * E, method) - run(E, method)) / E
print(json.dumps(out))
"""
ACCURACY_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from softequiv.data.base import TEST
from softequiv.data.synthetic import inertia
from softequiv.train import Problem, TrainConfig, fit
problem = Problem.build(inertia(axis="z", eps=0.3, seed=0))
out = {}
for seed in (0, 1):
    config = TrainConfig(method="per", epochs=int(sys.argv[1]), ch=128, seed=seed,
                         progress=False, snap=False, rule="gradient")
    out[seed] = fit(problem, config).mse(TEST)
print(json.dumps(out))
"""
FAMILIES = {"O(3)": "O(3), O2xy", "Union(O(3), Scaling(3))":
            "Union(O(3), Scaling(3)), O(3), Scaling(3)",
            "SE(3)": "SE(3), Rot(3), Trans(3)", "O(1,3)": "O(1,3), SO+(1,3)"}


def in_tree(source: Path, script: str, *args: str) -> dict:
    """The JSON that ``script`` prints last, run with the softequiv package under ``source``."""
    env = dict(os.environ, PYTHONPATH=str(source), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script, *args], env=env,
                          cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def epoch_times(source: Path, epochs: int, methods: str, threads: int = 1) -> dict[str, float]:
    """Marginal seconds per training epoch of ``methods`` (the stages before the best epoch
    is selected: warm-up, strength adjustment, training with validation) with the softequiv
    package under ``source``, on ``threads`` torch threads."""
    return in_tree(source, EPOCH_SCRIPT, str(epochs), methods, str(threads))


def baseline_tree(revision: str, into: Path) -> Path:
    """The softequiv package of ``revision``, extracted under ``into``."""
    archive = subprocess.run(["git", "archive", revision, "softequiv"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def step_time_by_group(ch: int, repeats: int) -> dict:
    steps = {}
    for name, groups_text in FAMILIES.items():
        groups = parse_groups(groups_text)
        rep_in, rep_out = parse_rep("3*Vector"), parse_rep("Scalar")
        d = groups[0].d
        model = SoftEMLP(rep_in, rep_out, groups, ch=ch, layers=3)
        x, y = torch.randn(500, rep_in.size(d)), torch.randn(500, rep_out.size(d))
        optimizer = _adam(list(model.parameters()), 1e-3)
        rate = torch.full((len(groups),), 0.1, dtype=torch.float64)

        def step(model=model, x=x, y=y, optimizer=optimizer, rate=rate) -> None:
            optimizer.zero_grad(set_to_none=True)
            ((model(x) - y) ** 2).mean().backward()
            decoupled_penalty_step(model.linear_layers(), rate, damp=True)
            optimizer.step()

        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in steps}
    for fn in steps.values():
        fn()
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"ch": ch, "step_s": med,
            "ratio_to_O(3)": {name: t / med["O(3)"] for name, t in med.items()}}


def compile_on_cpu(ch: int, repeats: int) -> dict:
    groups = parse_groups("O(3), O2xy, O2yz, O2xz")
    rep_in, rep_out = parse_rep("5*Scalar + 5*Vector"), parse_rep("T(2)")
    model = SoftEMLP(rep_in, rep_out, groups, ch=ch, layers=3)
    x, y = torch.randn(500, 20), torch.randn(500, 9)
    fast = compiled(model)

    def forward_backward(forward) -> None:
        model.zero_grad(set_to_none=True)
        ((forward(x) - y) ** 2).mean().backward()

    start = time.perf_counter()
    forward_backward(fast)
    compile_s = time.perf_counter() - start
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for name, forward in (("eager", model), ("compiled", fast)):
            start = time.perf_counter()
            forward_backward(forward)
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"ch": ch, "compile_s": compile_s, "forward_backward_s": med,
            "steps_to_repay_compile": (compile_s / (med["eager"] - med["compiled"])
                                       if med["compiled"] < med["eager"] else None)}


def main(rounds: int = 3, epochs: int = 100, baseline: str = "db836aa",
         accuracy_epochs: int = 200) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = baseline_tree(baseline, Path(tmp))
        current, previous, two_threads = [], [], []
        for _ in range(rounds):
            current.append(epoch_times(ROOT, epochs, "per")["per"])
            previous.append(epoch_times(old_tree, epochs, "per")["per"])
            two_threads.append(epoch_times(ROOT, epochs, "per", threads=2)["per"])
        accuracy = {"epochs": accuracy_epochs,
                    "test_mse_this_tree": in_tree(ROOT, ACCURACY_SCRIPT, str(accuracy_epochs)),
                    "test_mse_baseline": in_tree(old_tree, ACCURACY_SCRIPT,
                                                 str(accuracy_epochs))}
    per, per_old = statistics.median(current), statistics.median(previous)
    others = epoch_times(ROOT, epochs, "emlp,rpp,mixed-rpp,mlp")
    with one_thread():
        groups = step_time_by_group(128, 15)
        compile_row = compile_on_cpu(128, 10)
    compile_row["per_epoch_s"] = epoch_times(ROOT, epochs, "per-compiled")["per-compiled"]
    out = {"machine": {"cpu_count": os.cpu_count(),
                       "torch_threads": "1 (2 for this_tree_two_threads)",
                       "torch": torch.__version__,
                       "note": "2 CPU cores shared with other jobs: absolute times vary by "
                               "several x with the load; ratios are measured side by side"},
           "setting": {"train_points": 1000, "batch": 500, "ch": 128, "linear_layers": 4,
                       "groups": "O(3), O2xy, O2yz, O2xz", "epochs_timed": epochs,
                       "rounds": rounds, "baseline": baseline},
           "per_epoch_s": {"this_tree": per, "baseline": per_old, "rounds_this_tree": current,
                           "rounds_baseline": previous,
                           "this_tree_two_threads": statistics.median(two_threads),
                           "rounds_this_tree_two_threads": two_threads},
           "per_speedup_over_baseline": per_old / per,
           "per_accuracy": accuracy,
           "other_methods_epoch_s": others,
           "jax_reference": JAX_REFERENCE,
           "per_speedup_over_jax": JAX_REFERENCE["epoch_s"] / per,
           "ambient_groups": groups,
           "torch_compile_cpu": compile_row}
    write_json(RESULTS, out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--baseline", default="db836aa")
    parser.add_argument("--accuracy-epochs", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(main(args.rounds, args.epochs, args.baseline, args.accuracy_epochs),
                     indent=2))
