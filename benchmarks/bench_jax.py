"""Side-by-side epoch benchmark (issue 13): the published JAX code of PER against this library.

Measures, on this machine (2 shared CPU cores), seconds per training epoch on inertia at the
published reference size (1000 training points, batch 500, ch 128, 4 linear layers, groups
O(3), O2xy, O2yz, O2xz) of

* the published code (https://github.com/kim-hyunsu/PER, ``train_softemlp_checkpoint.py
  --network=o3subgroupsoftemlp --auto_equiv``, objax on JAX, CPU), extracted outside this
  tree (``--published``) and run by the python of its own virtual environment
  (``--jax-python``): the marginal epoch ``(t(2E) - t(E)) / E`` from the wall times of two
  separate processes (set-up, the emlp projector build, JIT compilation and the final test
  pass cancel out; also the same from the epoch loop's seconds by its own tqdm bar, whole
  seconds but without the set-up's noise), with XLA on one thread
  (``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"``) and,
  for ``--default-rounds`` rounds, with XLA's default threads;
* this library's PER, measured as in ``bench_training.py`` (its ``epoch_times``: marginal
  training epoch of a fit for 2E and for E epochs in one process), on 1 and on 2 torch
  threads.

Per round, alternating: the published code for E and 2E epochs (order swapped every round),
then ours. Records the medians, every round, the ratios published / ours, the machine (cpu
count, load average before and after), the published commit and the patches its copy needs
here, the exact commands, and the test MSE each side reports after 2E epochs (published: the
``Test MSE`` line it prints; ours: ``fit(...).mse(TEST)`` of a separate 2E-epoch fit, no
snap). The two test MSEs come from different data draws and protocols: recorded, not compared.

With ``--logoff`` the published loop does per epoch: 2 Adam steps (batch 500, the projection
regularizer of the 4 groups inside the jitted loss), a validation pass (2 jitted batches of
500), early-stopping bookkeeping and a tqdm update; no wandb, no checkpoint (the regularizer
report runs only for epochs adjust_equiv_at-99 .. adjust_equiv_at+1, checkpoints only after
epoch 2 * adjust_equiv_at = 4000 by default), so the timed epochs are all plain ones.

Writes benchmarks/results/jax.json. Run:
``.venv/bin/python benchmarks/bench_jax.py --published /work/per-published
--jax-python /work/jaxvenv/bin/python`` (``--epochs``, ``--rounds``, ``--ours-epochs``,
``--default-rounds``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_training import ROOT, epoch_times, in_tree

from softequiv.data.cache import write_json

RESULTS = Path(__file__).parent / "results" / "jax.json"
PUBLISHED_COMMIT = "156cf909d762040f26ef0b191334eb666cdc48d5"
SCRIPT_DIR = "experiments/mixed-symmetry"
SCRIPT = "train_softemlp_checkpoint.py"
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
FLAGS = ["--network=o3subgroupsoftemlp", "--auto_equiv", "--logoff", "--trials=1",
         "--ch=128", "--bs=500", "--layers=4"]
# Run with ``python -c`` in SCRIPT_DIR: two shims for today's packages, outside the published
# code, then the published script itself as __main__.
LAUNCHER = """
import os, runpy, sys
import jax.sharding
import torch
# objax 1.8.0 checks isinstance(x, jax.sharding.PmapSharding), a class jax 0.10.2 lacks;
# nothing here is pmapped, so a class no array is an instance of gives objax's own answer.
jax.sharding.PmapSharding = type("PmapSharding", (), {})
# oil imports torchvision, whose PyPI wheel is built for CUDA torch: with the CPU torch its
# C ops are missing and its import fails registering fakes for these two unguarded ops.
lib = torch.library.Library("torchvision", "DEF")
lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
sys.path.insert(0, os.getcwd())
sys.argv = ["SCRIPT"] + sys.argv[1:]
runpy.run_path("SCRIPT", run_name="__main__")
""".replace("SCRIPT", SCRIPT)
PATCHES = {
    f"{SCRIPT_DIR}/key.py": "added (git-ignored upstream, imported by the script): "
                           "WANDB_API_KEY = \"\"; runs use --logoff and WANDB_MODE=disabled",
    f"{SCRIPT_DIR}/{SCRIPT}": "two lines, both for runs shorter than 2 * adjust_equiv_at = "
                             "4000 epochs, which save no checkpoint: the final "
                             "objax.io.load_var_collection(checkpoint_path, ...) only if a "
                             "checkpoint was saved (it crashed on None; the test MSE is then "
                             "that of the last epoch's weights), and symmetry_type = "
                             "normal_type at the top of main (else unbound in the closing "
                             "print)",
    "launcher (this file, not the copy)": "jax.sharding.PmapSharding stub for objax 1.8.0; "
                                          "torchvision::nms/qnms op schemas so oil's "
                                          "torchvision import works with CPU torch",
}
OURS_MSE_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from softequiv.data.base import TEST
from softequiv.data.synthetic import inertia
from softequiv.train import Problem, TrainConfig, fit
problem = Problem.build(inertia(axis="z", eps=0.3, seed=0))
config = TrainConfig(method="per", epochs=int(sys.argv[1]), ch=128, progress=False, snap=False)
print(json.dumps({"test_mse": fit(problem, config).mse(TEST)}))
"""


def patches_applied(published: Path) -> dict[str, bool]:
    """Whether the copy under ``published`` carries the patches of PATCHES."""
    script = (published / SCRIPT_DIR / SCRIPT).read_text()
    return {"key.py": (published / SCRIPT_DIR / "key.py").exists(),
            "checkpoint guard": "if checkpoint_path is not None:" in script,
            "symmetry_type": "    symmetry_type = normal_type  # benchmark patch" in script}


def published_command(jax_python: str, epochs: int, one_thread: bool) -> dict:
    env = {"SOFT_DATASET": "inertia", "WANDB_MODE": "disabled"}
    if one_thread:
        env["XLA_FLAGS"] = ONE_THREAD_XLA
    return {"cwd": SCRIPT_DIR, "env": env,
            "argv": [jax_python, "-c", "<LAUNCHER>", *FLAGS, f"--epochs={epochs}"]}


def published_run(published: Path, jax_python: str, epochs: int, one_thread: bool) -> dict:
    """Wall seconds of one published training process for ``epochs`` epochs, the seconds of
    its epoch loop by its own tqdm bar (whole seconds: no set-up, so less noisy across
    processes), and the test and OOD MSE it prints."""
    command = published_command(jax_python, epochs, one_thread)
    env = dict(os.environ, **command["env"])
    if not one_thread:
        env.pop("XLA_FLAGS", None)
    argv = [jax_python, "-c", LAUNCHER, *FLAGS, f"--epochs={epochs}"]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=published / SCRIPT_DIR, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise RuntimeError(f"published run for {epochs} epochs exited {done.returncode}")
    loops = re.findall(rf"\| {epochs}/{epochs} \[(?:(\d+):)?(\d+):(\d+)<", done.stderr)
    h, m, sec = loops[-1] if loops else (None, None, None)
    loop = int(h or 0) * 3600 + int(m) * 60 + int(sec) if loops else None
    test = re.search(r"^Test MSE: ([^±\s]+)", done.stdout, re.M)
    ood = re.search(r"^OOD MSE: ([^±\s]+)", done.stdout, re.M)
    return {"epochs": epochs, "wall_s": wall, "tqdm_loop_s": loop,
            "test_mse": float(test.group(1)) if test else None,
            "ood_mse": float(ood.group(1)) if ood else None}


def published_epoch(published: Path, jax_python: str, epochs: int, one_thread: bool,
                    swap: bool) -> dict:
    """Marginal published epoch from a run of E and one of 2E epochs (2E first if ``swap``)."""
    order = (2 * epochs, epochs) if swap else (epochs, 2 * epochs)
    runs = {n: published_run(published, jax_python, n, one_thread) for n in order}
    loops = [runs[n]["tqdm_loop_s"] for n in (epochs, 2 * epochs)]
    return {"epoch_s": (runs[2 * epochs]["wall_s"] - runs[epochs]["wall_s"]) / epochs,
            "tqdm_epoch_s": (loops[1] - loops[0]) / epochs if None not in loops else None,
            "runs": [runs[n] for n in order]}


def main(published: Path, jax_python: str, epochs: int = 50, rounds: int = 3,
         ours_epochs: int | None = None, default_rounds: int = 0) -> dict:
    published = published.resolve()
    ours_epochs = ours_epochs or epochs
    load_before = os.getloadavg()
    start = time.perf_counter()
    pub, pub_default, ours1, ours2 = [], [], [], []
    for r in range(rounds):
        pub.append(published_epoch(published, jax_python, epochs, True, swap=r % 2 == 1))
        ours1.append(epoch_times(ROOT, ours_epochs, "per", threads=1)["per"])
        ours2.append(epoch_times(ROOT, ours_epochs, "per", threads=2)["per"])
        print(f"round {r}: published {pub[-1]['epoch_s']:.3f} s, ours {ours1[-1]:.3f} s "
              f"(1 thread), {ours2[-1]:.3f} s (2 threads)", file=sys.stderr)
    for r in range(default_rounds):
        pub_default.append(published_epoch(published, jax_python, epochs, False,
                                           swap=r % 2 == 1))
    ours_mse = in_tree(ROOT, OURS_MSE_SCRIPT, str(2 * epochs))["test_mse"]
    load_after = os.getloadavg()
    med_pub = statistics.median(p["epoch_s"] for p in pub)
    loops = [p["tqdm_epoch_s"] for p in pub if p["tqdm_epoch_s"] is not None]
    med_loop = statistics.median(loops) if loops else None
    med1, med2 = statistics.median(ours1), statistics.median(ours2)
    last_2e = [run for p in pub for run in p["runs"] if run["epochs"] == 2 * epochs][-1]
    out = {"machine": {"cpu_count": os.cpu_count(), "load_average_before": load_before,
                       "load_average_after": load_after,
                       "wall_s": time.perf_counter() - start,
                       "note": "2 CPU cores shared with other jobs: absolute times vary with "
                               "the load; the two sides alternate round by round"},
           "setting": {"data": "inertia, 1000 training points (published: ModifiedInertia "
                               "3000 split 1000/1000/1000, noise 0.3, axis z, seed 2022; "
                               "ours: inertia(axis='z', eps=0.3, seed=0))",
                       "batch": 500, "ch": 128, "linear_layers": 4,
                       "groups": "O(3), O2xy, O2yz, O2xz", "epochs_published": epochs,
                       "epochs_ours": ours_epochs, "rounds": rounds,
                       "default_thread_rounds": default_rounds},
           "published": {"repo": "https://github.com/kim-hyunsu/PER",
                         "commit": PUBLISHED_COMMIT, "path": str(published),
                         "patches": PATCHES, "patches_applied": patches_applied(published),
                         "per_epoch": "2 Adam steps (batch 500, regularizer of 4 groups in "
                                      "the jitted loss) + validation pass (2 batches of 500) + "
                                      "early-stop bookkeeping + tqdm; with --logoff no wandb "
                                      "and, before epoch 1900, no regularizer report and no "
                                      "checkpoint"},
           "per_epoch_s": {"published_one_thread": med_pub,
                           "published_one_thread_by_tqdm_loop": med_loop,
                           "published_default_threads": (statistics.median(
                               p["epoch_s"] for p in pub_default) if pub_default else None),
                           "ours_one_thread": med1, "ours_two_threads": med2},
           "ratio_published_over_ours": {
               "one_thread": med_pub / med1,
               "one_thread_by_tqdm_loop": med_loop / med1 if med_loop else None,
               "published_one_thread_over_ours_two_threads": med_pub / med2,
               "by_tqdm_loop_over_ours_two_threads": med_loop / med2 if med_loop else None},
           "rounds": {"published_one_thread": pub, "published_default_threads": pub_default,
                      "ours_one_thread": ours1, "ours_two_threads": ours2},
           "test_mse_after_2E_epochs": {"published": last_2e["test_mse"],
                                        "published_ood": last_2e["ood_mse"],
                                        "ours": ours_mse},
           "commands": {"published_one_thread": published_command(jax_python, epochs, True),
                        "published_default_threads": published_command(jax_python, epochs,
                                                                       False),
                        "launcher": LAUNCHER,
                        "ours": f"bench_training.epoch_times(ROOT, {ours_epochs}, 'per', "
                                "threads=1 and 2)",
                        "ours_test_mse": OURS_MSE_SCRIPT,
                        "this": " ".join([Path(sys.executable).name, *sys.argv])}}
    write_json(RESULTS, out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, required=True,
                        help="the extracted kim-hyunsu/PER repository")
    parser.add_argument("--jax-python", required=True,
                        help="python of the virtual environment that runs the published code")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ours-epochs", type=int, default=None,
                        help="E for our side (default: --epochs)")
    parser.add_argument("--default-rounds", type=int, default=0,
                        help="rounds of the published code with XLA's default threads")
    args = parser.parse_args()
    print(json.dumps(main(args.published, args.jax_python, args.epochs, args.rounds,
                          args.ours_epochs, args.default_rounds), indent=2))
