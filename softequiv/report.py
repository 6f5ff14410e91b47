"""What a run discovered: per-group levels, the judgement of which symmetries are exact,
the ranking and the report.json schema (the levels plot is in :mod:`softequiv.plots`)."""

from __future__ import annotations

import numpy as np
import torch

from softequiv.data.base import TEST, VALID
from softequiv.regularizers import equivariance_error
from softequiv.train import TrainResult, evaluate, snapped_mses, soft_layers

EXACT_THRESHOLD = 0.01
"""For models without soft layers for every candidate (MLP, EMLP, RPP, augmentation,
frame averaging), a candidate is reported exact when the trained model's relative
equivariance error (SPEC 6, on up to 500 test inputs, 4 random group elements each) is
below this: 1% of the output's size."""

SNAP_TOLERANCE = 0.05
"""For soft models (PER, Mixed-RPP) a candidate is reported exact when making the model
exactly equivariant to it (every linear layer replaced by its projection P_j W) raises
the validation MSE by at most this fraction: the data gives no evidence against the
symmetry. A broken symmetry costs far more (tens to thousands of percent on the
benchmarks); a respected one usually costs about nothing, since its regularizer already
holds the weights near the subspace. The test is one-sided: a model that leans on small
symmetry-breaking weights fails it although the data holds the symmetry (CosSim so3:
SO(3) held at lambda 100, yet snapping onto it raises the validation MSE by 64-125% in
3 of 5 runs)."""

REPORT_KEYS = ("dataset", "method", "test_mse", "valid_mse", "epochs", "seconds", "groups",
               "exact", "ranking", "test_sets")

ERROR_ROWS = 500


def group_levels(result: TrainResult, *, seed: int = 0) -> list[dict]:
    """Per candidate group: final lambda, regularizer R_j of the selected model, the model's
    equivariance error and the ground truth's (None when unknown).

    Both errors are of functions in the data's units, on the same test inputs and group
    elements: the model's predictions include undoing the normalization, whose centering
    of scalar outputs would otherwise change their relative error."""
    problem = result.problem
    dataset = problem.dataset
    X_test = dataset.part(TEST)[0][:ERROR_ROWS]
    layers = soft_layers(result.model)
    regs = None
    if layers and layers[0].weight_projector.n_groups == len(problem.groups):
        with torch.no_grad():
            regs = torch.stack([layer.penalties() for layer in layers]).sum(0).tolist()
    lambdas = result.tuner.lambdas if result.tuner else None
    rows = []
    for j, group in enumerate(problem.groups):
        model_error = equivariance_error(result.predict, X_test, group, problem.rep_in,
                                         problem.rep_out,
                                         generator=torch.Generator().manual_seed(seed + j))
        true_error = None
        if dataset.truth is not None:
            true_error = equivariance_error(dataset.truth, X_test, group, problem.rep_in,
                                            problem.rep_out,
                                            generator=torch.Generator().manual_seed(seed + j))
        elif dataset.true_errors and dataset.groups[j] in dataset.true_errors:
            true_error = float(dataset.true_errors[dataset.groups[j]])
        rows.append({
            "name": dataset.groups[j],
            "lambda": None if lambdas is None else float(lambdas[j]),
            "regularizer": None if regs is None else float(regs[j]),
            "model_error": float(model_error),
            "true_error": None if true_error is None else float(true_error),
        })
    return rows


def snap_costs(result: TrainResult) -> list[float] | None:
    """Relative rise of the validation MSE when the model is made exactly equivariant to
    each candidate; None when the model cannot be projected onto every candidate."""
    layers = soft_layers(result.model)
    if not layers or layers[0].weight_projector.n_groups != len(result.problem.groups):
        return None
    X, Y = result.problem.tensors[VALID]
    device = next(iter(result.model.parameters())).device
    X, Y = X.to(device), Y.to(device)
    base = evaluate(result.model, X, Y)
    return [(mse - base) / max(base, 1e-12)
            for mse in snapped_mses(result.model, len(result.problem.groups), X, Y)]


def test_set_errors(result: TrainResult) -> dict[str, dict]:
    """Per test set of the dataset (``Dataset.test_sets``: one ``"test"``, or e.g.
    ``"future"`` and ``"domain"`` for the smoke plumes), its rows and the model's MSE and
    RMSE over every value, in the data's units (``test_mse`` is the first set's MSE)."""
    out = {}
    for name, (X, Y) in result.problem.dataset.test_parts().items():
        mse = float(np.mean((result.predict(X) - Y) ** 2)) if len(X) else None
        out[name] = {"rows": int(len(X)), "mse": mse,
                     "rmse": None if mse is None else float(np.sqrt(mse))}
    return out


def build_report(result: TrainResult, *, dataset_name: str | None = None) -> dict:
    """The report.json content (exactly REPORT_KEYS) of a trained run."""
    groups = group_levels(result)
    candidates = groups[1:]
    ranking = [g["name"] for g in sorted(candidates, key=lambda g: g["model_error"])]
    costs = snap_costs(result)
    if costs is None:
        exact = [g["name"] for g in groups if g["model_error"] < EXACT_THRESHOLD]
    else:
        exact = [g["name"] for g, c in zip(groups, costs, strict=True) if c <= SNAP_TOLERANCE]
    return {
        "dataset": dataset_name or result.problem.dataset.name,
        "method": result.config.method,
        "test_mse": result.mse(TEST),
        "valid_mse": result.mse(1),
        "epochs": len(result.history),
        "seconds": result.seconds,
        "groups": groups,
        "exact": exact,
        "ranking": ranking,
        "test_sets": test_set_errors(result),
    }


def format_table(report: dict) -> str:
    """A short plain-text table of the report for the terminal."""
    lines = [f"dataset {report['dataset']}  method {report['method']}  "
             f"test MSE {report['test_mse']:.4g}  valid MSE {report['valid_mse']:.4g}  "
             f"{report['epochs']} epochs in {report['seconds']:.1f} s",
             f"{'group':<28}{'lambda':>10}{'R_j':>12}{'model err':>12}{'true err':>12}  exact"]

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for g in report["groups"]:
        exact = "yes" if g["name"] in report["exact"] else ""
        lines.append(f"{g['name']:<28}{num(g['lambda'], '.3g'):>10}"
                     f"{num(g['regularizer'], '.3g'):>12}{num(g['model_error'], '.2e'):>12}"
                     f"{num(g['true_error'], '.2e'):>12}  {exact}")
    lines.append("ranking (most respected first): " + ", ".join(report["ranking"]))
    if len(report.get("test_sets", {})) > 1:
        lines.append("test sets: " + "; ".join(
            f"{name} RMSE {num(t['rmse'], '.4g')} ({t['rows']} rows)"
            for name, t in report["test_sets"].items()))
    return "\n".join(lines)
