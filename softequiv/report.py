"""What a run discovered: per-group levels and verdicts, the ranking and the report.json
schema (the levels plot is in :mod:`softequiv.plots`)."""

from __future__ import annotations

import numpy as np
import torch

from softequiv.data.base import TEST
from softequiv.train import TrainResult, equivariance_errors, soft_layers
from softequiv.verdicts import HOLDS, TOLERANCE

REPORT_KEYS = ("dataset", "method", "test_mse", "valid_mse", "epochs", "seconds", "groups",
               "exact", "ranking", "warnings", "test_sets")


def group_levels(result: TrainResult, *, seed: int = 0) -> list[dict]:
    """Per candidate group: final lambda, regularizer R_j of the selected model, the model's
    equivariance error and the ground truth's (None when unknown).

    Both errors are of functions in the data's units, on the same test inputs and group
    elements: the model's predictions include undoing the normalization, whose centering
    of scalar outputs would otherwise change their relative error."""
    problem = result.problem
    dataset = problem.dataset
    X_test = dataset.part(TEST)[0]
    layers = soft_layers(result.model)
    regs = None
    if layers and layers[0].weight_projector.n_groups == len(problem.groups):
        with torch.no_grad():
            regs = torch.stack([layer.penalties() for layer in layers]).sum(0).tolist()
    lambdas = result.tuner.lambdas if result.tuner else None
    model_errors = equivariance_errors(result.predict, problem, X_test, seed=seed)
    true_errors = [None] * len(problem.groups)
    if dataset.truth is not None:
        true_errors = equivariance_errors(dataset.truth, problem, X_test, seed=seed)
    elif dataset.true_errors:
        true_errors = [dataset.true_errors.get(name) for name in dataset.groups]
    rows = []
    for j, name in enumerate(dataset.groups):
        rows.append({
            "name": name,
            "lambda": None if lambdas is None else float(lambdas[j]),
            "regularizer": None if regs is None else float(regs[j]),
            "model_error": model_errors[j],
            "true_error": None if true_errors[j] is None else float(true_errors[j]),
        })
    return rows


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


HELD_EXACTLY = 1e-5
"""A model equivariance error below this is float rounding: the model holds the candidate
exactly (a projected float32 network reaches about 1e-7)."""


def rank(candidates: list[dict]) -> list[str]:
    """Candidate names by the model's equivariance error, most respected first. Those the
    model holds exactly (after a snap onto a subspace that lies inside several candidates'
    subspaces) tie on that error, whose rounding noise would order them by chance; they
    are ordered by the strength the data allowed each during training, largest first."""
    return [g["name"] for g in sorted(
        candidates, key=lambda g: (max(g["model_error"], HELD_EXACTLY), -(g["lambda"] or 0.0)))]


def build_report(result: TrainResult, *, dataset_name: str | None = None) -> dict:
    """The report.json content (exactly REPORT_KEYS) of a trained run: ``exact`` lists the
    candidates whose verdict is ``holds`` (:mod:`softequiv.verdicts`); ``ranking`` orders
    the non-ambient candidates by the model's equivariance error, most respected first
    (:func:`rank`)."""
    groups = group_levels(result)
    for group, found in zip(groups, result.verdicts or [], strict=True):
        group.update(found)
    ranking = rank(groups[1:])
    exact = [g["name"] for g in groups if g.get("verdict") == HOLDS]
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
        "warnings": list(result.warnings),
        "test_sets": test_set_errors(result),
    }


def format_table(report: dict) -> str:
    """A short plain-text table of the report for the terminal."""
    lines = [f"dataset {report['dataset']}  method {report['method']}  "
             f"test MSE {report['test_mse']:.4g}  valid MSE {report['valid_mse']:.4g}  "
             f"{report['epochs']} epochs in {report['seconds']:.1f} s",
             f"{'group':<28}{'lambda':>10}{'R_j':>12}{'model err':>12}{'true err':>12}"
             f"  {'verdict':<13}cost retrained; symmetrized (valid MSE constrained / reference, "
             f"{TOLERANCE:g} tolerated)"]

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for g in report["groups"]:
        lines.append(f"{g['name']:<28}{num(g['lambda'], '.3g'):>10}"
                     f"{num(g['regularizer'], '.3g'):>12}{num(g['model_error'], '.2e'):>12}"
                     f"{num(g['true_error'], '.2e'):>12}  {g.get('verdict', '-'):<13}"
                     f"{_cost(g.get('evidence'))}")
    lines.append("ranking (most respected first): " + ", ".join(report["ranking"]))
    if len(report.get("test_sets", {})) > 1:
        lines.append("test sets: " + "; ".join(
            f"{name} RMSE {num(t['rmse'], '.4g')} ({t['rows']} rows)"
            for name, t in report["test_sets"].items()))
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def _cost(evidence: dict | None) -> str:
    if not evidence or evidence.get("value") is None:
        return "-"
    second = evidence.get("symmetrized") or evidence.get("touch_up")
    answers = [evidence] + ([second] if second else [])
    return "; ".join(f"{a['value']:.3g} [{a['interval'][0]:.3g}, {a['interval'][1]:.3g}]"
                     for a in answers)
