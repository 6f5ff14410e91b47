"""Field benchmark (issue 12): what PER costs on convolutions, side by side in one process.

- Epoch time of the default soft CNN (``discover``'s defaults on fields: 32 channels,
  batch 16) trained with PER (data step, gradient damping and the decoupled penalty step,
  through the trainer's own helpers) against a plain CNN of the same width and depth
  doing only the data step. Target: at most 1.5x.
- The projector's own cost: one penalty-and-residual pass over every soft layer, against
  one forward and backward pass of a batch.
- Equivariance of the network projected onto each candidate (float32 and float64), and of
  the hard G-CNN and the relaxed group convolution with uniform mixing.

Epochs alternate between the two models and the ratio is the median over repeats, since
the machine is shared; the share of the PER epoch spent in the damping and penalty steps,
timed inside the same epochs, is the noise-free part of that ratio.
Writes benchmarks/results/fields.json.
Run: ``.venv/bin/python benchmarks/bench_fields.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from softequiv.atomic import write_json
from softequiv.fields import field_equivariance_error
from softequiv.nn.cnn import CNN, GCNN, RelaxedGCNN, SoftCNN, parameter_count
from softequiv.nn.layers import snapped
from softequiv.spec import parse_groups, parse_rep
from softequiv.train import FIELD_DEFAULTS, damp_gradients, decoupled_penalty_step, soft_layers

RESULTS = Path(__file__).parent / "results" / "fields.json"
SETTING = {"rep_in": "4*Vector", "rep_out": "Vector", "groups": "D4, C4, C2, D2, FlipX, FlipY",
           "grid": 32, "train_fields": 256, "batch": FIELD_DEFAULTS["batch_size"],
           "ch": FIELD_DEFAULTS["ch"], "layers": 3,
           "kernel_size": 3, "lr": 3e-3, "lambda": 100.0}
REPEATS = 7


def _epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, X: torch.Tensor,
           Y: torch.Tensor, rate: torch.Tensor | None) -> tuple[float, float]:
    """One epoch's seconds, and the seconds of its PER steps: with ``rate`` the trainer's
    gradient damping and decoupled penalty step are taken at every step."""
    layers = soft_layers(model)
    start, in_per = time.perf_counter(), 0.0
    for i in range(0, len(X), SETTING["batch"]):
        x, y = X[i:i + SETTING["batch"]], Y[i:i + SETTING["batch"]]
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if rate is not None:
            mark = time.perf_counter()
            damp_gradients(layers, rate)
            in_per += time.perf_counter() - mark
        optimizer.step()
        if rate is not None:
            mark = time.perf_counter()
            decoupled_penalty_step(layers, rate)
            in_per += time.perf_counter() - mark
    return time.perf_counter() - start, in_per


def _projector_cost(model: SoftCNN, X: torch.Tensor, rate: torch.Tensor) -> dict:
    layers = soft_layers(model)
    x = X[:SETTING["batch"]]
    timings = {"forward_backward_s": [], "penalty_and_residual_s": []}
    for _ in range(10):
        start = time.perf_counter()
        model(x).square().mean().backward()
        timings["forward_backward_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            for layer in layers:
                layer.weight_projector.penalty_and_residual(layer.weight, rate)
                layer.bias_projector.penalty_and_residual(layer.bias[:, None], rate)
        timings["penalty_and_residual_s"].append(time.perf_counter() - start)
    out = {k: statistics.median(v) for k, v in timings.items()}
    out["ratio"] = out["penalty_and_residual_s"] / out["forward_backward_s"]
    out["weights"] = sum(layer.weight.numel() for layer in layers)
    out["gathered_entries_per_pass"] = sum(layer.weight_projector.source.numel()
                                           for layer in layers)
    return out


def _equivariance(rep_in, rep_out, groups) -> dict:
    size = {k: SETTING[k] for k in ("ch", "layers", "kernel_size")}
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, rep_in.size(2), SETTING["grid"], SETTING["grid"], generator=generator)
    rows = {}
    for dtype, label in ((torch.float32, "float32"), (torch.float64, "float64")):
        torch.manual_seed(0)
        model = SoftCNN(rep_in, rep_out, groups, **size).to(dtype)
        xs = x.to(dtype)
        row = {}
        for j, group in enumerate(groups):
            with snapped(model, j):
                row[f"projected onto {group.name}"] = field_equivariance_error(
                    model, xs, group, rep_in, rep_out)
            row[f"free, under {group.name}"] = field_equivariance_error(model, xs, group,
                                                                       rep_in, rep_out)
        row["hard D4 G-CNN"] = field_equivariance_error(
            GCNN(rep_in, rep_out, groups[0], **size).to(dtype), xs, groups[0], rep_in, rep_out)
        row["relaxed, uniform mixing"] = field_equivariance_error(
            RelaxedGCNN(rep_in, rep_out, groups[0], **size).to(dtype), xs, groups[0], rep_in,
            rep_out)
        rows[label] = row
    return rows


def main() -> dict:
    torch.set_num_threads(1)
    rep_in, rep_out = parse_rep(SETTING["rep_in"]), parse_rep(SETTING["rep_out"])
    groups = parse_groups(SETTING["groups"])
    size = {k: SETTING[k] for k in ("ch", "layers", "kernel_size")}
    generator = torch.Generator().manual_seed(0)
    n, grid = SETTING["train_fields"], SETTING["grid"]
    X = torch.randn(n, rep_in.size(2), grid, grid, generator=generator)
    Y = torch.randn(n, rep_out.size(2), grid, grid, generator=generator)
    torch.manual_seed(0)
    soft = SoftCNN(rep_in, rep_out, groups, **size)
    plain = CNN(rep_in.size(2), rep_out.size(2), **size)
    rate = torch.tensor([0.0] + [SETTING["lambda"] * SETTING["lr"]] * (len(groups) - 1),
                        dtype=torch.float64)
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=SETTING["lr"])
                  for name, model in (("per", soft), ("cnn", plain))}
    _epoch(soft, optimizers["per"], X, Y, rate)  # warm-up
    _epoch(plain, optimizers["cnn"], X, Y, None)
    epochs = {"per": [], "cnn": []}
    shares = []
    for _ in range(REPEATS):
        seconds, in_per = _epoch(soft, optimizers["per"], X, Y, rate)
        epochs["per"].append(seconds)
        shares.append(in_per / seconds)
        epochs["cnn"].append(_epoch(plain, optimizers["cnn"], X, Y, None)[0])
    ratios = [p / c for p, c in zip(epochs["per"], epochs["cnn"], strict=True)]
    out = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "note": "shared machine; ratios are side by "
                    "side in one process, epochs alternating"},
        "setting": SETTING,
        "parameters": {"soft_cnn": parameter_count(soft), "cnn": parameter_count(plain)},
        "epoch_s": {k: statistics.median(v) for k, v in epochs.items()},
        "per_over_cnn_epoch": statistics.median(ratios),
        "per_over_cnn_epoch_all": ratios,
        "per_steps_share_of_per_epoch": statistics.median(shares),
        "target_ratio": 1.5,
        "projector": _projector_cost(soft, X, rate),
        "equivariance_error": _equivariance(rep_in, rep_out, groups),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, out, indent=2)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
