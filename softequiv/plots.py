"""Figures of a run: ``levels.png``, the discovered levels and verdicts per candidate group.

The plot reads only the report dict (``report.json``), so it can be redrawn from a saved
run. Reports with verdicts (``groups[j]["verdict"]`` and ``["evidence"]``) get each
group's verdict marked and a panel with the criterion as used: the verdict statistic
with its confidence interval against its tolerance. Reports without them (older runs)
mark the groups listed in ``exact`` and leave the criterion panel out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["plot_levels", "VERDICT_COLORS"]

VERDICT_COLORS = {"holds": "tab:green", "broken": "tab:red", "undetermined": "tab:orange",
                  "exact": "tab:green", "not exact": "tab:blue", None: "tab:blue"}
"""Bar colour per verdict. Reports without verdicts mark a group ``exact`` when listed in
their ``exact`` and ``not exact`` otherwise."""

_TRUTH_COLOR = "0.6"


def plot_levels(report: dict, path: str | Path) -> None:
    """Write levels.png: per candidate group the final strength lambda_j, the
    regularizer R_j, the model's (and the ground truth's) equivariance error and, when
    the report has verdicts, the verdict criterion; verdicts mark every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    groups = report["groups"]
    names = [g["name"] for g in groups]
    verdicts = _verdicts(report)
    colors = [VERDICT_COLORS.get(v, VERDICT_COLORS[None]) for v in verdicts]
    with_criterion = any(isinstance(g.get("evidence"), dict) for g in groups)
    panels = 4 if with_criterion else 3
    fig, axes = plt.subplots(1, panels, figsize=(3.9 * panels, 4.4))
    x = np.arange(len(names))

    _strength_panel(axes[0], x, groups, colors)
    _positive_bars(axes[1], x, [g.get("regularizer") for g in groups], colors,
                   r"regularizer $R_j$ of the selected model")
    model_handle, truth_handle = _error_panel(axes[2], x, groups, colors)
    if with_criterion:
        _criterion_panel(axes[3], x, groups, colors)
    for ax in axes:
        _group_ticks(ax, x, names, verdicts)

    handles = [Patch(color=VERDICT_COLORS.get(v, VERDICT_COLORS[None]), label=_verdict_label(v))
               for v in dict.fromkeys(verdicts)]
    handles.append(model_handle)
    if truth_handle is not None:
        handles.append(truth_handle)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    test = report.get("test_mse")
    fig.suptitle(f"{report.get('dataset', '')} · {report.get('method', '')}"
                 + ("" if test is None else f" · test MSE {test:.3g}"))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _verdicts(report: dict) -> list[str | None]:
    """Each group's verdict; for reports without verdicts, ``exact`` for those listed."""
    groups = report["groups"]
    if any("verdict" in g for g in groups):
        return [g.get("verdict") for g in groups]
    if "exact" not in report:
        return [None] * len(groups)
    exact = set(report["exact"])
    return ["exact" if g["name"] in exact else "not exact" for g in groups]


def _verdict_label(verdict: str | None) -> str:
    if verdict is None:
        return "no verdict"
    return {"exact": "reported exact", "not exact": "not reported exact"}.get(verdict, verdict)


def _finite(value: object) -> float:
    """``value`` as a float, NaN when missing (None) or not a finite number."""
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _strength_panel(ax, x: np.ndarray, groups: list[dict], colors: list[str]) -> None:
    """Final lambda_j; the ambient group's (and any other) lambda 0 is written out."""
    values = np.array([_finite(g.get("lambda")) for g in groups])
    ax.set_title(r"final strength $\lambda_j$")
    if np.all(np.isnan(values)):
        _note(ax, "this method has no strengths")
        return
    positive = values[values > 0]
    log = positive.size > 0 and positive.max() / positive.min() > 20
    bottom = positive.min() / 3 if log else 0.0
    heights = np.where(values > 0, values, np.nan)
    ax.bar(x, heights - bottom, bottom=bottom, color=colors)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom, positive.max() * 3)
    for j, value in enumerate(values):
        if value == 0:
            label = "$\\lambda = 0$\n(ambient)" if j == 0 else "$\\lambda = 0$"
            ax.annotate(label, (x[j], 0), xycoords=("data", "axes fraction"),
                        xytext=(0, 4), textcoords="offset points", ha="center",
                        va="bottom", fontsize=8, color="0.3")


def _positive_bars(ax, x: np.ndarray, values: list, colors: list[str], title: str) -> None:
    """Bars of non-negative values, on a log scale when all are positive and they span
    more than a factor 20."""
    values = np.array([_finite(v) for v in values])
    ax.set_title(title)
    if np.all(np.isnan(values)):
        _note(ax, "not computed for this method")
        return
    ax.bar(x, values, color=colors)
    shown = values[~np.isnan(values)]
    if shown.size and shown.min() > 0 and shown.max() / shown.min() > 20:
        ax.set_yscale("log")


def _error_panel(ax, x: np.ndarray, groups: list[dict], colors: list[str]):
    """The model's relative equivariance error beside the ground truth's (when known)."""
    from matplotlib.patches import Patch

    floor = 1e-12
    model = np.array([_finite(g.get("model_error")) for g in groups])
    truth = np.array([_finite(g.get("true_error")) for g in groups])
    has_truth = not np.all(np.isnan(truth))
    width = 0.4 if has_truth else 0.6
    offset = 0.2 if has_truth else 0.0
    ax.bar(x - offset, np.maximum(model, floor), width, color=colors)
    truth_handle = None
    if has_truth:
        ax.bar(x + offset, np.maximum(truth, floor), width, color=_TRUTH_COLOR, hatch="//",
               edgecolor="white")
    for values, shift in ((model, -offset), (truth, offset)):
        for j in np.flatnonzero(values < floor):
            ax.annotate(f"<{floor:.0e}", (x[j] + shift, floor), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=6,
                        color="0.3")
        truth_handle = Patch(facecolor=_TRUTH_COLOR, hatch="//", edgecolor="white",
                             label="ground truth's error (right bar)")
    ax.set_yscale("log")
    ax.set_title("relative equivariance error")
    model_label = "model's error (left bar)" if has_truth else "model's error"
    return Patch(facecolor="white", edgecolor="0.2", label=model_label), truth_handle


def _criterion_panel(ax, x: np.ndarray, groups: list[dict], colors: list[str]) -> None:
    """The verdict statistic with its interval against the tolerance, per group."""
    evidences = [g.get("evidence") if isinstance(g.get("evidence"), dict) else {}
                 for g in groups]
    statistics = sorted({str(e["statistic"]) for e in evidences if e.get("statistic")})
    levels = sorted({float(e["level"]) for e in evidences if e.get("level") is not None})
    level = f"{levels[0]:.0%} interval" if len(levels) == 1 else "interval"
    ax.set_title("verdict criterion: " + (", ".join(statistics) or "statistic"), fontsize=10)
    shown = []
    for j, evidence in enumerate(evidences):
        value = _finite(evidence.get("value"))
        interval = evidence.get("interval")
        tolerance = _finite(evidence.get("tolerance"))
        if not math.isnan(tolerance):
            ax.hlines(tolerance, x[j] - 0.38, x[j] + 0.38, colors="0.15", linestyles="--",
                      lw=1.2)
            shown.append(tolerance)
        if math.isnan(value):
            ax.annotate("n/a", (x[j], 0.5), xycoords=("data", "axes fraction"),
                        ha="center", fontsize=8, color="0.3")
            continue
        second = _second_answer(evidence)
        answers = [(x[j], value, interval, "o")]
        if second and not math.isnan(_finite(second[1].get("value"))):
            answers.append((x[j] + 0.2, _finite(second[1]["value"]), second[1].get("interval"),
                            "s"))
        for position, center, spread, marker in answers:
            low, high = center, center
            if isinstance(spread, list | tuple) and len(spread) == 2:
                low, high = _finite(spread[0]), _finite(spread[1])
            ax.errorbar(position, center,
                        yerr=[[max(center - low, 0.0)], [max(high - center, 0.0)]],
                        fmt=marker, color=colors[j], ecolor=colors[j], capsize=4, ms=6,
                        mfc=colors[j] if marker == "o" else "white")
            shown.extend(v for v in (center, low, high) if not math.isnan(v))
    ax.plot([], [], "o-", color="0.3", label=f"retrained: value and {level}")
    seconds = {second[0] for second in map(_second_answer, evidences) if second}
    if seconds:
        ax.plot([], [], "s-", color="0.3", mfc="white", label=" / ".join(sorted(seconds)))
    ax.plot([], [], "--", color="0.15", label="tolerance")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.07), ncol=3,
              frameon=False)
    ax.title.set_position((0.5, 1.13))
    values = np.array(shown)
    if values.size and values.min() > 0 and values.max() / values.min() > 30:
        ax.set_yscale("log")
    elif values.size:
        span = values.max() - values.min() or abs(values.max()) or 1.0
        ax.set_ylim(values.min() - 0.15 * span, values.max() + 0.15 * span)


def _group_ticks(ax, x: np.ndarray, names: list[str], verdicts: list[str | None]) -> None:
    """Group names under the bars, each with its verdict in the verdict's colour."""
    labels = [name if v in (None, "not exact") else f"{name}\n{_verdict_label(v)}"
              for name, v in zip(names, verdicts, strict=True)]
    ax.set_xticks(x, labels, rotation=0, fontsize=8)
    for tick, verdict in zip(ax.get_xticklabels(), verdicts, strict=True):
        if verdict not in (None, "not exact"):
            tick.set_color(VERDICT_COLORS.get(verdict, VERDICT_COLORS[None]))
    ax.set_xlim(-0.6, len(names) - 0.4)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9,
            color="0.4")
    ax.set_yticks([])


def _second_answer(evidence: dict) -> tuple[str, dict] | None:
    """The verdict's second answer in stored evidence: symmetrized, or touched up in
    reports written before it."""
    for key, label in (("symmetrized", "symmetrized"), ("touch_up", "touched up")):
        if isinstance(evidence.get(key), dict):
            return label, evidence[key]
    return None
