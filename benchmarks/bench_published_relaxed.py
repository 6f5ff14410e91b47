"""Smoke plumes side by side: the published relaxed models of Wang, Walters & Yu (ICML 2022)
on this library's smoke data, next to our relaxed group conv D4 and PER.

The published code (https://github.com/Rose-STL-Lab/Approximately-Equivariant-Nets, commit
``PUBLISHED_COMMIT``) is extracted outside this tree (``--published``) and run by the python
of its own virtual environment (``--python``, with e2cnn), in a subprocess running this
file's ``--worker`` mode, which imports ``models/model_rotation.py`` from ``--published``
(nothing of it is copied here). Its models, for C4 (group order 4; the code has rotations
only, no D4):

* ``rgroup``: ``RelaxedGroupEquivariantCNN`` (relaxed group convolution, "RGroup"), velocity
  input lifted to C4's regular representation by their ``lift_coefs``, 2 filter banks;
* ``rgroup-relu``: the same with a ReLU after every layer their code builds with
  ``activation=True`` (their ``Relaxed_GroupConv.forward`` ignores the flag, so ``rgroup``
  as published is a linear map of its input); added by forward hooks in the worker;
* ``rsteer``: ``Relaxed_Rot_SteerConvNet`` (relaxed steerable CNN on e2cnn, "RSteer"), the
  model their ``run.sh`` trains on the rotated smoke plumes, alpha 1e-5, on the Vectors'
  components swapped (see ``SWAPPED``; ``rsteer-unswapped``, not run by default, without).

Each model: their defaults where they exist (kernel 3, 5 layers, Adam lr 1e-3 with weight
decay 4e-4, learning rate x 0.95 per epoch, the weight constraint of ``run.sh``'s alpha
added as their ``train_epoch`` does on a GPU), ``--hidden`` regular C4 fields per hidden
layer (default 8 = 32 channels, our ``ch``; ``run.sh`` has 92 for RSteer, ~6 s per batch of
16 on one CPU thread here, hours per run), and our protocol: the one-step predictor of the
smoke dataset (the last 4 Vector fields -> the next), 60 epochs, batch 16, selection of the
epoch with the lowest validation MSE, inputs and targets divided per Vector copy by their
training RMS norm (``softequiv.data.normalize.RepScaler``, fitted here and passed to the
worker). Test RMSE as ``softequiv.report``: the square root of the mean squared error over
every value, in the data's units, on the "future" and "domain" rows of
``Dataset.test_parts()`` of the same ``smoke(variant, seed)`` (the seed picks the unseen
inflows and seeds the training, as in ``softequiv bench``). Also recorded: relative
equivariance errors ``||f(g x) - g f(x)|| / ||f(x)||`` on 32 future rows per D4 element (g
by ``softequiv.fields.transform``), of the trained model and of a copy with the relaxation
tied (exactly C4-equivariant by their construction: a check that their rotation convention
matches the data's).

Writes benchmarks/results/published_relaxed.json (with our rows of
benchmarks/results/smoke.json, the installs, the patches and the exact commands). Run:
``.venv/bin/python benchmarks/bench_published_relaxed.py --published /work/aen-published
--python /work/aenvenv/bin/python`` (``--seeds``, ``--variants``, ``--models``, ``--hidden``,
``--epochs``, ``--optimizer softequiv`` for this library's Adam schedule instead of theirs,
``--out``, ``--git-dir`` for the commit and the diff of the copy).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "published_relaxed.json"
SMOKE_RESULTS = Path(__file__).parent / "results" / "smoke.json"
OUR_LABELS = ("Relaxed group conv D4", "PER")
PUBLISHED_URL = "https://github.com/Rose-STL-Lab/Approximately-Equivariant-Nets"
PUBLISHED_COMMIT = "e8e9355ebd241d5cbe010a8a76ce6a7f52d1691f"
MIRROR = Path("/work/.mirror/Rose-STL-Lab+Approximately-Equivariant-Nets/repo")
INSTALL = [
    "git --git-dir=<snapshot of the repository> archive HEAD | tar -x -C /work/aen-published",
    "python3 -m venv /work/aenvenv  (Python 3.11.7)",
    "/work/aenvenv/bin/pip install torch==2.13.0  (the local CPU wheel, 2.13.0+cpu)",
    "/work/aenvenv/bin/pip install e2cnn==0.2.3  (pulls numpy 2.4.6, scipy 1.17.1)",
]
PATCHES = {
    "models/model_rotation.py": "RelaxedGroupEquivariantCNN.forward: the input lifted to the "
                                "regular representation goes to a new name `lifted` instead "
                                "of overwriting `x` (3 lines). As published, the closing "
                                "torch.cat([x[:, 1:], out], 1) joins the lifted input "
                                "[B, k, 4, H, W] with the output [B, 1, 2, H, W] and fails "
                                "for any group order but 2, with every torch; a bug of the "
                                "code, not of today's packages.",
}
NOT_PATCHED = [
    "models/__init__.py imports Relaxed_Reg_GroupConvNet, which model_rotation.py has "
    "commented out, so `import models` (and run_model.py, run_equiv_test.py) fails at this "
    "commit; the worker imports models/model_rotation.py directly and needs no patch there.",
    "utils.train_epoch adds the weight constraint only when `torch.tensor(0).cuda()` works "
    "(inside try/except), so on a CPU their own loop trains without it; the worker adds it "
    "(MSE of the constraint against 0, as their GPU path).",
    "run_model.py keeps `best_model = model` (a reference, not a copy), so its test numbers "
    "are those of the last epoch; the worker restores the best validation epoch's weights.",
    "Relaxed_GroupConv.forward never applies its `activation` flag and has no bias, so "
    "RelaxedGroupEquivariantCNN with velocity input is a linear map of its input (`rgroup`); "
    "`rgroup-relu` adds the ReLUs by forward hooks, the copy is not edited.",
    "Relaxed_Rot_SteerConv has a free bias per channel, the two output (vector) channels "
    "included, so even with the relaxed weights tied the model is not equivariant; the tied "
    "copy of the equivariance check also ties the bias (zero on the output).",
    "e2cnn's rotation convention is that of Vectors (component along the first grid axis, "
    "component along the second); the data's are (x, y) with x along the last axis, so "
    "`rsteer` gets each Vector's components swapped (SWAPPED).",
    "run.sh's RSteer width, hidden_dim 92 (368 channels), takes 5.9 s per training step of "
    "16 fields 32x32 on one thread here (20 steps per rotation epoch: about 2 h per "
    "60-epoch run), so the runs use --hidden (default 8 fields = 32 channels, our ch).",
]
OPTIMIZERS = {
    "published": {"name": "Adam", "lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 4e-4,
                  "schedule": "learning rate x 0.95 per epoch (their StepLR)"},
    "softequiv": {"name": "Adam", "lr": 3e-3, "betas": (0.9, 0.999), "weight_decay": 0.0,
                  "schedule": "cosine from lr to 0 over every step (softequiv.train)"},
}
"""``--optimizer``: theirs (default), or this library's, as a diagnostic of the schedule."""
MODELS = ("rgroup", "rgroup-relu", "rsteer", "rsteer-unswapped")
DEFAULT_MODELS = ("rgroup", "rgroup-relu", "rsteer")
SWAPPED = ("rsteer",)
"""Models that see every Vector's components swapped, (x, y) -> (y, x), and whose outputs are
swapped back: e2cnn turns the grid by np.rot90 and the vectors by its irrep 1 on channels
(c0, c1), which agree when c0 is the component along the first grid axis; the data's c0 is x,
along the last axis. Unswapped, the tied e2cnn model is equivariant to a quarter turn of the
grid with the opposite quarter turn of the vectors, not to the data's C4."""
PROBE_ROWS = 32


# ---------------------------------------------------------------------------------------
# Worker: run by the published code's python, imports only torch, numpy and their models.


def _published_model(name: str, frames: int, hidden: int, published: Path):
    """One of MODELS, built by the published classes (C4, kernel 3, 5 layers)."""
    import torch.nn.functional as F

    sys.path.insert(0, str(published / "models"))
    import model_rotation as published_models

    if name.startswith("rsteer"):
        return published_models.Relaxed_Rot_SteerConvNet(
            in_frames=frames, out_frames=1, hidden_dim=hidden, kernel_size=3, num_layers=5,
            N=4, alpha=1e-5)
    model = published_models.RelaxedGroupEquivariantCNN(
        in_channels=frames, out_channels=1, kernel_size=3, hidden_dim=hidden, group_order=4,
        num_gconvs=5, num_filter_banks=2, vel_inp=True)
    if name == "rgroup-relu":
        for layer in model.gconvs:
            if layer.activation:
                layer.register_forward_hook(lambda module, inputs, out: F.relu(out))
    return model


def _tied_copy(model):
    """A copy with the relaxation tied: equal combination weights over the group elements
    (relaxed group conv), or over the kernel positions and a bias that the group fixes
    (relaxed steerable conv), which their constructions make exactly C4-equivariant."""
    import copy

    import torch

    tied = copy.deepcopy(model)
    with torch.no_grad():
        for module in tied.modules():
            weights = getattr(module, "combination_weights", None)
            if weights is not None and weights.dim() == 2:
                weights.copy_(weights.mean(0, keepdim=True).expand_as(weights))
            weights = getattr(module, "relaxed_weights", None)
            if weights is not None:
                weights.copy_(weights.mean(-1, keepdim=True).expand_as(weights))
                # their free per-channel bias: zero on the output vectors, one value per
                # regular field on the hidden layers
                bias = module.bias.view(weights.shape[0], -1)
                bias.copy_(0 * bias if module.last_layer
                           else bias.mean(1, keepdim=True).expand_as(bias))
    return tied


def _swap_components(values: np.ndarray) -> np.ndarray:
    """Fields [N, 2c, H, W] of c Vectors with each Vector's two components swapped."""
    out = values.copy()
    out[:, 0::2], out[:, 1::2] = values[:, 1::2], values[:, 0::2]
    return out


def worker(args: argparse.Namespace) -> dict:
    """Train one published model on one exported dataset; predictions to ``args.out``."""
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = np.load(args.data)
    layout = _swap_components if args.model in SWAPPED else (lambda values: values)
    X, Y, split = layout(data["X"]), layout(data["Y"]), data["split"]
    train, valid, test = split == 0, split == 1, split == 2
    scales = np.load(args.scales)
    x_scale, y_scale = (scales[key].reshape(1, -1, 1, 1) for key in ("x", "y"))

    def tensor(values, scale):
        return torch.as_tensor(values / scale, dtype=torch.float32)

    xtr, ytr = tensor(X[train], x_scale), tensor(Y[train], y_scale)
    xva, yva = tensor(X[valid], x_scale), tensor(Y[valid], y_scale)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = _published_model(args.model, X.shape[1] // 2, args.hidden, Path(args.published))
    tied = _tied_copy(model)
    settings = OPTIMIZERS[args.optimizer]
    optimizer = torch.optim.Adam(model.parameters(), settings["lr"], betas=settings["betas"],
                                 weight_decay=settings["weight_decay"])
    steps = args.epochs * -(-len(xtr) // args.batch_size)
    per_step = per_epoch = None
    if args.optimizer == "published":
        per_epoch = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.95)
    else:
        per_step = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + np.cos(np.pi * min(step, steps) / steps)))
    mse = torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(args.seed)

    def predict(net, values: np.ndarray) -> np.ndarray:
        """Predictions in the data's units and layout for inputs in the model's layout."""
        net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(values), 64):
                out.append(net(tensor(values[i:i + 64], x_scale)).double().numpy())
        return layout(np.concatenate(out) * y_scale)

    history, best = [], (float("inf"), -1, None)
    train_start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=generator)
        losses = []
        for i in range(0, len(xtr), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = mse(model(xtr[idx]), ytr[idx])
            losses.append(loss.item())
            if hasattr(model, "get_weight_constraint"):
                loss = loss + mse(model.get_weight_constraint(), torch.tensor(0.0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if per_step is not None:
                per_step.step()
        if per_epoch is not None:
            per_epoch.step()
        model.eval()
        with torch.no_grad():
            valid_mse = float(mse(model(xva), yva))
        history.append({"epoch": epoch, "train_mse": float(np.mean(losses)),
                        "valid_mse": valid_mse})
        if valid_mse < best[0]:
            best = (valid_mse, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    train_seconds = time.perf_counter() - train_start
    probe = np.load(args.probe)
    out = {"test": predict(model, X[test])}
    for key in probe.files:
        out[f"trained_{key}"] = predict(model, layout(probe[key]))
        out[f"tied_{key}"] = predict(tied, layout(probe[key]))
    np.savez(args.out, **out)
    import e2cnn
    import scipy

    return {"model": args.model, "class": type(model).__name__, "seed": args.seed,
            "components_swapped": args.model in SWAPPED,
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "epochs": args.epochs, "best_epoch": best[1], "best_valid_mse": best[0],
            "train_seconds": train_seconds, "seconds": time.perf_counter() - start,
            "threads": torch.get_num_threads(), "history": history,
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "e2cnn": e2cnn.__version__, "numpy": np.__version__,
                         "scipy": scipy.__version__}}


# ---------------------------------------------------------------------------------------
# Driver: this library's python.


def export(variant: str, seed: int, folder: Path) -> tuple[object, Path, Path, Path]:
    """The smoke dataset as ``softequiv data smoke`` writes it, the probe inputs (32 future
    rows and their images under each D4 element) and the per-component scales of inputs and
    targets that softequiv fits on the training rows (:class:`RepScaler`)."""
    from softequiv.data.normalize import RepScaler
    from softequiv.data.plumes import FUTURE, TRAIN, smoke, write_file
    from softequiv.data.simulators.smoke import elements
    from softequiv.fields import transform
    from softequiv.spec import parse_rep

    dataset = smoke(variant=variant, seed=seed)
    data = write_file(dataset, folder / f"{variant}-{seed}.npz")
    train = dataset.split == TRAIN
    scales_path = folder / f"{variant}-{seed}-scales.npz"
    np.savez(scales_path, **{key: RepScaler(parse_rep(rep), 2).fit(values[train]).scale
                             for key, rep, values in (("x", dataset.rep_in, dataset.X),
                                                      ("y", dataset.rep_out, dataset.Y))})
    x = dataset.X[dataset.split == FUTURE][:PROBE_ROWS]
    probe = {name: transform(x, g, parse_rep(dataset.rep_in)) for name, g in elements("D4").items()}
    probe_path = folder / f"{variant}-{seed}-probe.npz"
    np.savez(probe_path, **probe)
    return dataset, data, probe_path, scales_path


def relative_errors(predictions: dict, kind: str) -> dict[str, float]:
    """``||f(g x) - g f(x)|| / ||f(x)||`` per D4 element, from the worker's predictions."""
    from softequiv.data.simulators.smoke import elements
    from softequiv.fields import transform
    from softequiv.spec import parse_rep

    fx = predictions[f"{kind}_e"]
    norm = float(np.sqrt(np.sum(fx**2)))
    return {name: float(np.sqrt(np.sum((predictions[f"{kind}_{name}"]
                                        - transform(fx, g, parse_rep("Vector")))**2)) / norm)
            for name, g in elements("D4").items() if name != "e"}


def run_one(args: argparse.Namespace, dataset, data: Path, probe: Path, scales: Path, model: str,
            seed: int, folder: Path) -> dict:
    from softequiv.data.plumes import TEST

    out = folder / f"{data.stem}-{model}-pred.npz"
    argv = [args.python, str(Path(__file__).resolve()), "--worker", "--published",
            str(args.published), "--data", str(data), "--probe", str(probe), "--scales",
            str(scales), "--model", model, "--seed", str(seed), "--optimizer", args.optimizer,
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--hidden",
            str(args.hidden), "--threads", str(args.threads),
            "--out", str(out)]
    load = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise RuntimeError(f"worker {model} seed {seed} exited {done.returncode}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    predictions = dict(np.load(out))
    test_rows = np.flatnonzero(np.isin(dataset.split, list(dataset.test_sets.values())))
    at = {row_index: i for i, row_index in enumerate(test_rows)}
    assert len(at) == len(predictions["test"]) and TEST in dataset.test_sets.values()
    test_sets = {}
    for name, code in dataset.test_sets.items():
        rows = np.flatnonzero(dataset.split == code)
        pred = predictions["test"][[at[r] for r in rows]]
        mse = float(np.mean((pred - dataset.Y[rows]) ** 2))
        test_sets[name] = {"rows": int(len(rows)), "mse": mse, "rmse": float(np.sqrt(mse))}
    assert {k: v["rows"] for k, v in test_sets.items()} == {
        k: len(v[0]) for k, v in dataset.test_parts().items()}
    row |= {"variant": dataset.info["variant"], "test_sets": test_sets, "wall_s": wall,
            "load_before": list(load),
            "equivariance_errors": {"trained": relative_errors(predictions, "trained"),
                                    "tied": relative_errors(predictions, "tied")},
            "command": " ".join(argv)}
    return row


def ours(variants: list[str]) -> dict:
    """Our rows of smoke.json for the same settings (per seed and the summary)."""
    if not SMOKE_RESULTS.exists():
        return {}
    smoke = json.loads(SMOKE_RESULTS.read_text())
    out: dict = {}
    for r in smoke["runs"]:
        variant = r["setting"].get("variant")
        if r["label"] in OUR_LABELS and variant in variants:
            out.setdefault(variant, {}).setdefault(r["label"], {"runs": []})["runs"].append(
                {"seed": r["seed"], "rmse": {k: v["rmse"] for k, v in r["test_sets"].items()},
                 "seconds": r["seconds"], "parameters": r["parameters"],
                 "protocol": r["protocol"]})
    for s in smoke["summary"]:
        variant = s["setting"].get("variant")
        if s["method"] in OUR_LABELS and variant in variants and s["setting"] == {
                "variant": variant}:
            out[variant][s["method"]]["summary"] = {"runs": s["runs"], "rmse": s["rmse"],
                                                    "seconds_mean": s["seconds_mean"],
                                                    "parameters": s["parameters"]}
    return out


def published_diff(published: Path, git_dir: Path | None) -> tuple[str | None, dict]:
    """The snapshot's commit and, per file that differs from it, the unified diff."""
    if git_dir is None or not git_dir.exists():
        return None, {}

    def git(*argv: str) -> str:
        return subprocess.run(["git", f"--git-dir={git_dir}", *argv], capture_output=True,
                              text=True, check=True).stdout

    commit = git("rev-parse", "HEAD").strip()
    diffs = {}
    for path in git("ls-tree", "-r", "--name-only", "HEAD").splitlines():
        local = published / path
        original = git("show", f"HEAD:{path}")
        current = local.read_text() if local.exists() else ""
        if current != original:
            diffs[path] = "".join(difflib.unified_diff(
                original.splitlines(True), current.splitlines(True), f"a/{path}", f"b/{path}"))
    return commit, diffs


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for key in sorted({(r["variant"], r["model"]) for r in rows}):
        group = [r for r in rows if (r["variant"], r["model"]) == key]
        rmse = {name: {"mean": float(np.mean([r["test_sets"][name]["rmse"] for r in group])),
                       "std": float(np.std([r["test_sets"][name]["rmse"] for r in group]))}
                for name in group[0]["test_sets"]}
        out.append({"variant": key[0], "model": key[1], "runs": len(group), "rmse": rmse,
                    "seconds_mean": float(np.mean([r["seconds"] for r in group])),
                    "parameters": group[0]["parameters"]})
    return out


def main(args: argparse.Namespace) -> dict:
    variants = args.variants.split(",")
    models = args.models.split(",")
    unknown = set(models) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; choose from {MODELS}")
    commit, diffs = published_diff(args.published, args.git_dir)
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for variant in variants:
            for seed in range(args.seeds):
                dataset, data, probe, scales = export(variant, seed, folder)
                for model in models:
                    row = run_one(args, dataset, data, probe, scales, model, seed, folder)
                    print(json.dumps({k: row[k] for k in ("variant", "model", "seed",
                                                          "parameters", "best_epoch",
                                                          "seconds")}
                                     | {"rmse": {k: v["rmse"]
                                                 for k, v in row["test_sets"].items()}}),
                          flush=True)
                    rows.append(row)
    out = {"what": __doc__.splitlines()[0],
           "published": {"url": PUBLISHED_URL, "commit": commit or PUBLISHED_COMMIT,
                         "path": str(args.published), "python": args.python,
                         "install": INSTALL, "patches": PATCHES, "diff": diffs,
                         "not_patched": NOT_PATCHED},
           "protocol": {"epochs": args.epochs, "batch_size": args.batch_size,
                        "hidden_regular_fields": args.hidden, "group": "C4",
                        "layers": 5, "kernel_size": 3,
                        "optimizer": OPTIMIZERS[args.optimizer] | {"key": args.optimizer},
                        "selection": "lowest validation MSE over the epochs",
                        "normalization": "per Vector copy by its training RMS norm",
                        "threads": args.threads, "probe_rows": PROBE_ROWS},
           "command": " ".join([sys.executable, *sys.argv]),
           "wall_seconds": time.perf_counter() - started,
           "summary": summarize(rows), "ours": ours(variants), "runs": rows}
    from softequiv.data.cache import write_json

    write_json(args.out, out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, default=Path("/work/aen-published"))
    parser.add_argument("--python", default="/work/aenvenv/bin/python")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", default="mirror,rotation")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="published")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--git-dir", type=Path, default=MIRROR if MIRROR.exists() else None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--scales", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        print(json.dumps(worker(arguments)))
    else:
        result = main(arguments)
        print(json.dumps(result["summary"], indent=1))
