"""levels.png (softequiv.plots): drawn from any report, with or without verdicts."""

from __future__ import annotations

import copy

import matplotlib.image
import pytest

from softequiv.plots import plot_levels


def evidence(value, interval, reason=None):
    symmetrized = None if value is None else {"value": value * 1.1, "interval": interval,
                                              "reference": "free"}
    return {"statistic": "valid_mse_ratio", "value": value, "interval": interval,
            "level": 0.95, "tolerance": 1.05, "reason": reason, "symmetrized": symmetrized}


REPORT = {
    "dataset": "inertia", "method": "per", "test_mse": 1.2, "exact": ["O2xy"],
    "ranking": ["O2xy", "O2yz"],
    "groups": [
        {"name": "O(3)", "lambda": 0.0, "regularizer": 3.0, "model_error": 0.4,
         "true_error": 0.4, "verdict": "broken", "evidence": evidence(8.0, [7.0, 9.0])},
        {"name": "O2xy", "lambda": 100.0, "regularizer": 1e-9, "model_error": 2e-7,
         "true_error": 1e-16, "verdict": "holds", "evidence": evidence(0.99, [0.97, 1.01])},
        {"name": "O2yz", "lambda": 0.3, "regularizer": 0.5, "model_error": 0.3,
         "true_error": 0.3, "verdict": "undetermined",
         "evidence": evidence(None, None, "too few rows")},
    ],
}


def width(path) -> int:
    return matplotlib.image.imread(path).shape[1]


def test_verdicts_add_the_criterion_panel(tmp_path):
    plot_levels(REPORT, tmp_path / "with.png")
    old = copy.deepcopy(REPORT)
    for g in old["groups"]:
        del g["verdict"], g["evidence"]
    plot_levels(old, tmp_path / "without.png")  # a report from before verdicts
    assert width(tmp_path / "with.png") > width(tmp_path / "without.png") * 1.2


@pytest.mark.parametrize("edit", [
    lambda r: [g.update({"lambda": None, "regularizer": None}) for g in r["groups"]],
    lambda r: [g.update({"true_error": None}) for g in r["groups"]],
    lambda r: r["groups"][1].update({"verdict": "a verdict from the future"}),
    lambda r: r.pop("exact") and [g.pop("verdict") for g in r["groups"]],
    lambda r: r["groups"][0]["evidence"].update({"interval": None, "tolerance": None}),
    lambda r: [g["evidence"].pop("symmetrized") for g in r["groups"]],  # one answer only
    lambda r: r["groups"][0]["evidence"]["symmetrized"].update({"value": None}),
    lambda r: [g["evidence"].update({"touch_up": g["evidence"].pop("symmetrized")})
               for g in r["groups"]],  # written before the symmetrized answer
])
def test_any_report_draws(tmp_path, edit):
    report = copy.deepcopy(REPORT)
    edit(report)
    plot_levels(report, tmp_path / "levels.png")
    assert width(tmp_path / "levels.png") > 500
