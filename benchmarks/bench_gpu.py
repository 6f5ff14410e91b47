"""GPU benchmark (issue 13): one short script for a CUDA machine (about two minutes).

(a) Cold projector build of the ch 384 soft network (4 inertia candidates) and its move to
    the device, up to the first penalty step (which builds the stacked plan there).
(b) A training step at ch 128 and ch 384, batch 500, split into forward+backward, the
    fused penalty and damping pass, and Adam; the penalty share of the step.
(c) The same step through ``torch.compile`` (compile seconds and step time), where it works.
(d) Host synchronizations: three training steps (fit's per-step body) under
    ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronizing call.
(e) PER seconds per epoch on inertia at ch 128 (fit with 2E and E epochs, the difference over
    E, so set-up and the final snap are not counted).

Without CUDA it runs on the CPU (``device`` says so), which the tests use (``--quick``).
Writes benchmarks/results/gpu.json (``--out`` elsewhere). Run:
``.venv/bin/python benchmarks/bench_gpu.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from softequiv.data.cache import write_json
from softequiv.data.synthetic import inertia
from softequiv.nn import SoftEMLP
from softequiv.solver import clear_cache
from softequiv.spec import parse_groups, parse_rep
from softequiv.train import Problem, TrainConfig, _adam, compiled, decoupled_penalty_step, fit

RESULTS = Path(__file__).parent / "results" / "gpu.json"
GROUPS = "O(3), O2xy, O2yz, O2xz"
REP_IN, REP_OUT = "5*Scalar + 5*Vector", "T(2)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` (device work included)."""
    out = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def _network(ch: int, device: torch.device, layers: int = 3):
    groups = parse_groups(GROUPS)
    rep_in, rep_out = parse_rep(REP_IN), parse_rep(REP_OUT)
    model = SoftEMLP(rep_in, rep_out, groups, ch=ch, layers=layers).to(device)
    x = torch.randn(500, rep_in.size(3), device=device)
    y = torch.randn(500, rep_out.size(3), device=device)
    return model, x, y


def projector_build(device: torch.device, ch: int) -> float:
    """Seconds from a cold basis cache to the first penalty step on ``device``."""
    clear_cache()
    _sync(device)
    start = time.perf_counter()
    model, _, _ = _network(ch, device)
    rate = torch.tensor([0.0, 0.1, 0.1, 0.1], dtype=torch.float64, device=device)
    decoupled_penalty_step(model.linear_layers(), rate, damp=False)
    _sync(device)
    return time.perf_counter() - start


def step_times(device: torch.device, ch: int, repeats: int, compile_too: bool) -> dict:
    """Forward+backward, penalty+damping and Adam of one step, eager (and compiled)."""
    model, x, y = _network(ch, device)
    layers = model.linear_layers()
    optimizer = _adam(list(model.parameters()), 1e-3)
    rate = torch.tensor([0.0, 0.1, 0.1, 0.1], dtype=torch.float64, device=device)

    def forward_backward(forward=model) -> None:
        optimizer.zero_grad(set_to_none=True)
        ((forward(x) - y) ** 2).mean().backward()

    def penalty() -> None:
        decoupled_penalty_step(layers, rate, damp=True)

    for _ in range(3):
        forward_backward()
        penalty()
        optimizer.step()
    row = {"forward_backward_s": _timed(forward_backward, device, repeats),
           "penalty_and_damping_s": _timed(penalty, device, repeats),
           "adam_s": _timed(optimizer.step, device, repeats)}
    row["step_s"] = sum(row.values())
    row["penalty_share_of_step"] = row["penalty_and_damping_s"] / row["step_s"]
    if compile_too:
        fast = compiled(model)
        start = time.perf_counter()
        try:
            forward_backward(fast)
            _sync(device)
            row["compile_s"] = time.perf_counter() - start
            row["compiled_forward_backward_s"] = _timed(lambda: forward_backward(fast), device,
                                                        repeats)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            row["compile_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return row


def host_syncs(device: torch.device, ch: int) -> str:
    """'none' when three training steps run under sync debug mode 'error' (CUDA only)."""
    if device.type != "cuda":
        return "not checked (no CUDA)"
    model, x, y = _network(ch, device)
    layers = model.linear_layers()
    optimizer = _adam(list(model.parameters()), 1e-3)
    lambdas = torch.tensor([0.0, 100.0, 100.0, 100.0], dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    reg_sum = torch.zeros(4, dtype=torch.float64, device=device)

    def step() -> None:
        nonlocal loss_sum, reg_sum
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        reg_sum += decoupled_penalty_step(layers, lambdas * 1e-3, damp=True)
        optimizer.step()
        loss_sum += loss.detach()

    step()  # builds the stacked plan (host-to-device copies) outside the check
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
        return "none"
    except RuntimeError as exc:
        return f"synchronizing call: {str(exc).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


def epoch_seconds(device: torch.device, epochs: int, ch: int) -> float:
    """Marginal seconds per PER epoch on inertia (fit with 2E minus fit with E epochs)."""
    problem = Problem.build(inertia(axis="z", eps=0.3, seed=0))

    def run(n: int) -> float:
        config = TrainConfig(epochs=n, ch=ch, device=str(device), progress=False, snap=False)
        return fit(problem, config).seconds

    run(2)
    return (run(2 * epochs) - run(epochs)) / epochs


def main(quick: bool = False, out: Path = RESULTS) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    sizes = (16,) if quick else (128, 384)
    repeats = 3 if quick else 20
    result = {
        "machine": {"device": str(device),
                    "name": torch.cuda.get_device_name(device) if device.type == "cuda"
                    else platform.processor() or platform.machine(),
                    "torch": torch.__version__, "cuda": torch.version.cuda,
                    "torch_threads": torch.get_num_threads()},
        "setting": {"groups": GROUPS, "rep_in": REP_IN, "rep_out": REP_OUT, "batch": 500,
                    "linear_layers": 4, "quick": quick},
        "projector_build_s": {str(ch): projector_build(device, ch) for ch in sizes[-1:]},
        "steps": {str(ch): step_times(device, ch, repeats, compile_too=not quick)
                  for ch in sizes},
        "host_syncs_per_step": host_syncs(device, sizes[0]),
        "per_epoch": {"ch": sizes[0],
                      "seconds": epoch_seconds(device, 2 if quick else 20, sizes[0])},
    }
    write_json(out, result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU test)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(json.dumps(main(args.quick, args.out), indent=2))
