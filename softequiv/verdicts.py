"""Verdicts (SPEC 9): does the data hold each candidate symmetry?

Two questions, each answered by a ratio of validation MSEs:

- **retrained**: can a model that holds G_j fit the data as well as one that does not?
  The selected model is refit once free and once inside every candidate's equivariant
  subspace (a hard EMLP of that candidate, starting from the projection of the selected
  weights; :func:`softequiv.train.refit`), as long as the run trained (the projection
  may cost a model most of its fit, and a short refit would mistake "not recovered yet"
  for a break). The free refit averaged over each candidate (as below) is one more
  retrained model of that candidate; on fields, whose candidates are finite groups
  averaged exactly, so is every candidate's refit averaged over the group it generates
  with another (a refit inside C2 averaged over FlipY is a model of D2).
- **symmetrized**: does the trained model need its break of G_j? The selected model's
  own predictions averaged over G_j (:mod:`softequiv.averaging`: the G_j-equivariant
  function nearest the model's, with no weight moved) against the model's.

Each answer is the ratio of two validation MSEs with a confidence interval from a paired
bootstrap over validation rows: that of the best model imposing G_j (its own, or one of a
candidate whose subspace lies inside G_j's) over that of the best model that does not
(the free one, or one of a candidate whose subspace does not lie inside G_j's). A free
model overfits where a model of a symmetry the data holds does not, so against the free
refit alone a break could hide behind the free model's own excess error.

- ``holds``: both intervals lie at or below ``TOLERANCE`` (imposing G_j costs at most 5%
  of the alternative's error, with 95% confidence, whether the model is retrained inside
  G_j or its predictions are averaged over G_j);
- ``broken``: both lie above it;
- ``undetermined``: an interval straddles it, the two answers disagree, or the data
  cannot tell at all (too few validation rows, or a free model that explains too little
  of the variance).

The answers fail in opposite ways, which is why a verdict needs both. A retrained model
can make up for a small break with other features (it holds a mirror the trained model
learned to break, and so the data does not hold). A symmetrized model keeps whatever the
training imposed (a model held symmetric against the data averages to itself), which the
retrained free model is free to undo.

Reports written before the symmetrized answer carry a ``touch_up`` answer (refits of the
projected model, briefly and gently) in its place; they are judged by it as they were.

The README's "Verdicts" section gives the reasons for each number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

HOLDS, BROKEN, UNDETERMINED = "holds", "broken", "undetermined"
VERDICTS = (HOLDS, BROKEN, UNDETERMINED)

STATISTIC = "valid_mse_ratio"
"""Validation MSE of the best model imposing G_j over that of the best model that does not
(the ``reference``: ``"free"`` or a candidate's name)."""

FREE = "free"

TOLERANCE = 1.05
"""``holds`` needs the whole interval at or below this ratio, ``broken`` all of it above."""

LEVEL = 0.95
"""Confidence level of the interval (two-sided)."""

MIN_ROWS = 30
"""Fewer validation rows than this: every verdict is undetermined."""

MIN_R2 = 0.5
"""Free model's validation R^2 below this: every verdict is undetermined. Above it the
free model's error is at most the variance it explains, so the ratio's denominator is
no larger than the signal, and label noise cannot make a break look small."""

RESAMPLES = 2000
"""Bootstrap resamples of the interval."""


@dataclass
class Evidence:
    """What a verdict rests on (the ``evidence`` object of report.json)."""

    statistic: str = STATISTIC
    value: float | None = None
    interval: list[float] | None = None
    level: float = LEVEL
    tolerance: float = TOLERANCE
    reason: str | None = None
    reference: str | None = None
    imposing: str | None = None
    """The model imposing G_j that ``value`` is for: a candidate's refit (its name) or a
    refit averaged over a candidate (:func:`averaged_name`); None in reports written
    before it was recorded."""
    symmetrized: dict | None = None
    """The symmetrized answer: ``value``, ``interval`` and ``reference`` as above (None in
    reports written before it existed)."""
    touch_up: dict | None = None
    """The second answer of reports written before the symmetrized one (see the module
    docstring); never set by a new run."""

    def second(self) -> tuple[str, dict] | None:
        """The second answer's name and values, if the evidence has one."""
        if self.symmetrized is not None:
            return "symmetrized", self.symmetrized
        if self.touch_up is not None:
            return "touched-up", self.touch_up
        return None

    def verdict(self) -> str:
        """``holds`` / ``broken`` when every interval lies on the same side of the
        tolerance."""
        retrained, second = self._side(self.interval), self.second()
        if second is None:
            return retrained
        return retrained if self._side(second[1].get("interval")) == retrained else UNDETERMINED

    def _side(self, interval: Sequence[float] | None) -> str:
        if interval is None:
            return UNDETERMINED
        low, high = interval
        if high <= self.tolerance:
            return HOLDS
        if low > self.tolerance:
            return BROKEN
        return UNDETERMINED

    def as_dict(self) -> dict:
        out = asdict(self)
        if out["touch_up"] is None:
            del out["touch_up"]
        return out

    def explained(self) -> Evidence:
        """Itself, with the reason set anew: why an interval straddles the tolerance or the
        two answers disagree (None when they decide)."""
        if self.interval is None:
            return self
        self.reason = None
        if self.verdict() != UNDETERMINED:
            return self
        answers = [("retrained", self.interval)]
        second = self.second()
        if second is not None and second[1].get("interval") is not None:
            answers.append((second[0], second[1]["interval"]))
        straddling = [(name, i) for name, i in answers if self._side(i) == UNDETERMINED]
        if straddling:
            name, (low, high) = straddling[0]
            self.reason = (f"the {name} interval [{low:.3g}, {high:.3g}] straddles the "
                           f"tolerance {self.tolerance:g}")
        else:
            self.reason = ("the answers disagree: " + "; ".join(
                f"{name} [{low:.3g}, {high:.3g}] says {self._side([low, high])}"
                for name, (low, high) in answers))
        return self


def block_size(n: int) -> int:
    """Rows per bootstrap block: about n^(1/3), so that rows recorded next to each other
    (windows of one trajectory, say) are resampled together rather than counted as
    independent evidence."""
    return max(1, math.ceil(n ** (1 / 3)))


def ratio_evidence(constrained: np.ndarray | torch.Tensor, free: np.ndarray | torch.Tensor, *,
                   seed: int = 0, tolerance: float = TOLERANCE, level: float = LEVEL,
                   reference: str | None = FREE) -> Evidence:
    """The MSE ratio of paired per-row errors with its BCa bootstrap interval, resampling
    contiguous blocks of rows (see :func:`block_size`)."""
    c = np.asarray(torch.as_tensor(constrained).double().cpu(), dtype=np.float64)
    f = np.asarray(torch.as_tensor(free).double().cpu(), dtype=np.float64)
    value = float(c.sum() / max(f.sum(), 1e-300))
    size = block_size(len(c))
    starts = np.arange(0, len(c), size)
    c_blocks, f_blocks = np.add.reduceat(c, starts), np.add.reduceat(f, starts)

    def ratio(cb: np.ndarray, fb: np.ndarray, axis: int = -1) -> np.ndarray:
        return cb.sum(axis) / np.maximum(fb.sum(axis), 1e-300)

    if np.allclose(c_blocks, f_blocks * value, rtol=1e-12, atol=0.0):
        interval = [value, value]  # every block has the same ratio: no spread to resample
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((c_blocks, f_blocks), ratio, paired=True, vectorized=True,
                                 n_resamples=RESAMPLES, confidence_level=level, method="BCa",
                                 rng=np.random.default_rng(seed)).confidence_interval
            if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
                ci = stats.bootstrap((c_blocks, f_blocks), ratio, paired=True, vectorized=True,
                                     n_resamples=RESAMPLES, confidence_level=level,
                                     method="percentile",
                                     rng=np.random.default_rng(seed)).confidence_interval
        interval = [float(ci.low), float(ci.high)]
    return Evidence(value=value, interval=interval, level=level, tolerance=tolerance,
                    reference=reference).explained()


def r_squared(free: np.ndarray | torch.Tensor, Y: torch.Tensor) -> float:
    """1 - MSE / variance of the validation targets (both averaged over outputs)."""
    Y = torch.as_tensor(Y).double()
    variance = float(((Y - Y.mean(0)) ** 2).mean())
    mse = float(torch.as_tensor(free).double().mean())
    return 1.0 - mse / variance if variance > 0 else -math.inf


def undetermined(n_groups: int, reason: str) -> list[dict]:
    """Every candidate undetermined for one reason (no evidence computed)."""
    return [{"verdict": UNDETERMINED, "evidence": Evidence(reason=reason).as_dict()}
            for _ in range(n_groups)]


def guard(n_rows: int, r2: float | None) -> str | None:
    """Why the validation data cannot judge any candidate, or None when it can."""
    if n_rows < MIN_ROWS:
        return (f"only {n_rows} validation rows (at least {MIN_ROWS} are needed to judge "
                "what a constraint costs)")
    if r2 is not None and r2 < MIN_R2:
        return (f"the model explains {max(r2, 0.0):.0%} of the validation variance "
                f"(R^2 {r2:.2f} < {MIN_R2}): too little to tell what a constraint costs")
    return None


@dataclass(frozen=True)
class Averaged:
    """A retrained model averaged over a group: how evidence names it, its per-row
    validation errors, and the candidates whose symmetry the average imposes."""

    name: str
    errors: torch.Tensor
    imposes: frozenset[int]


def judge(free: torch.Tensor, constrained: Sequence[torch.Tensor], Y_valid: torch.Tensor, *,
          names: Sequence[str], inside: Sequence[Sequence[int]] | None = None,
          free_averaged: Sequence[torch.Tensor] | None = None,
          averaged: Sequence[Averaged] = (),
          symmetrized: tuple[torch.Tensor, Sequence[torch.Tensor]] | None = None,
          seed: int = 0) -> tuple[list[dict], list[str]]:
    """Verdict and evidence per candidate (the ambient group first) from per-row validation
    errors of the retrained refits (``free`` and each candidate's ``constrained``; with
    ``free_averaged``, the free refit averaged over each candidate too) and, if given, of
    the symmetrized answer (``symmetrized``: the selected model's and its average over
    each candidate); and the run's warnings (one line each).

    ``inside[j]`` lists the candidates whose equivariant subspace lies inside candidate
    j's (j itself included): a model of any of them is also G_j-equivariant, so G_j's
    evidence is the best of their refits (and of the free refit's averages over them),
    and the best of the others' and the free refit is the alternative it is measured
    against. Without ``inside`` nothing is known to nest, and every candidate is
    measured against the free refit alone.

    The free refit averaged over G_j is a G_j-equivariant model trained exactly as the
    free one: against it the retrained answer compares the free refit with its own
    symmetric part, not two separate trainings, one of them started from a projection
    (which on the benchmarks misses the free refit's fit by up to ~10% in some seeds
    and beats it by 2x in others, whatever the symmetry). A break the free refit uses
    makes its average worse; one it does not use costs nothing.

    ``averaged`` adds more retrained models that each impose a known set of candidates
    (a candidate's refit averaged over the finite group it generates with another,
    :meth:`Training.refits_averaged`): each counts for the candidates it imposes and as
    an alternative for the others.

    ``holds`` says that the alternative would have shown a break had there been one, so
    it is withheld (undetermined, with a warning) when the ambient group, whose subspace
    lies inside every candidate's, is not shown broken: then even the most constrained
    model fits as well as any other, and the data shows no break these models can see.
    A constrained model that fits *better* than the free one is not a reason to withhold:
    a symmetry the data holds usually improves generalization."""
    reason = guard(len(free), r_squared(free, Y_valid))
    if reason is not None:
        return undetermined(len(constrained), reason), [f"verdicts undetermined: {reason}"]
    out = []
    for j in range(len(constrained)):
        evidence = _compare(free, constrained, j, names, inside, seed, free_averaged,
                            averaged)
        if symmetrized is not None:
            symmetric = _compare(*symmetrized, j, names, inside, seed)
            evidence.symmetrized = {"value": symmetric.value, "interval": symmetric.interval,
                                    "reference": symmetric.reference}
            evidence.explained()
        out.append({"verdict": evidence.verdict(), "evidence": evidence.as_dict()})
    return _finish(out, names)


def _compare(free: torch.Tensor, constrained: Sequence[torch.Tensor], j: int,
             names: Sequence[str], inside: Sequence[Sequence[int]] | None,
             seed: int, free_averaged: Sequence[torch.Tensor] | None = None,
             averaged: Sequence[Averaged] = ()) -> Evidence:
    """Candidate j's ratio: the best model imposing G_j over the best one that does not."""
    members = inside[j] if inside is not None else [j]
    others = ([k for k in range(len(constrained)) if k not in members]
              if inside is not None else [])

    def models(ks: Sequence[int]) -> list[tuple[str, torch.Tensor]]:
        found = [(names[k], constrained[k]) for k in ks]
        if free_averaged is not None:
            found += [(averaged_name(names[k]), free_averaged[k]) for k in ks]
        return found

    imposing, errors = _best(models(members) + [(a.name, a.errors) for a in averaged
                                                 if j in a.imposes])
    reference, reference_errors = _best([(FREE, free)] + models(others) + [
        (a.name, a.errors) for a in averaged if j not in a.imposes])
    evidence = ratio_evidence(errors, reference_errors, seed=seed + j, reference=reference)
    evidence.imposing = imposing
    return evidence


def averaged_name(name: str, refit: str = FREE) -> str:
    """How evidence names the refit ``refit`` (the free one, or the one inside a
    candidate) averaged over candidate ``name``."""
    return f"{refit} averaged over {name}"


def _best(models: list[tuple[str, torch.Tensor]]) -> tuple[str, torch.Tensor]:
    return min(models, key=lambda pair: float(pair[1].sum()))


def withhold_unsupported(found: list[dict], names: Sequence[str]) -> tuple[list[dict], list[str]]:
    """Turn every ``holds`` into ``undetermined`` when the ambient group is not shown
    broken (see :func:`judge`); returns the verdicts and the warning, if any."""
    if found[0]["verdict"] == BROKEN or not any(v["verdict"] == HOLDS for v in found):
        return found, []
    why = (f"the ambient group {names[0]} is not shown broken, so no break of any "
           "candidate was seen: these models cannot tell data that holds every "
           "candidate from data too small to show its breaks")
    for v in found:
        if v["verdict"] == HOLDS:
            v["verdict"], v["evidence"]["reason"] = UNDETERMINED, why
    return found, [f"no candidate holds: {why}"]


def rejudge(groups: Sequence[dict]) -> tuple[list[dict], list[str]]:
    """Verdicts derived again, by the current rule, from stored evidence (report.json's
    or a benchmark row's ``groups``): the evidence does not depend on the rule, so this
    equals judging the run anew. Candidates without an interval keep their verdict."""
    names = [g["name"] for g in groups]
    if all(g["evidence"]["interval"] is None for g in groups):
        return [{"verdict": g["verdict"], "evidence": dict(g["evidence"])} for g in groups], []
    found = []
    for g in groups:
        fields = {k: g["evidence"][k] for k in ("statistic", "value", "interval", "level",
                                                "tolerance", "reference", "imposing",
                                                "symmetrized", "touch_up")
                  if k in g["evidence"]}
        evidence = Evidence(**fields).explained()
        found.append({"verdict": evidence.verdict(), "evidence": evidence.as_dict()})
    return _finish(found, names)


def _finish(found: list[dict], names: Sequence[str]) -> tuple[list[dict], list[str]]:
    """Withhold unsupported ``holds``, then the run's warning lines."""
    found, warnings = withhold_unsupported(found, names)
    line = unsure_warning(names, found)
    return found, warnings + ([line] if line else [])


def unsure_warning(names: Sequence[str], verdicts: Sequence[dict]) -> str | None:
    """One line naming the candidates their evidence leaves undetermined, and why."""
    unsure = []
    for name, v in zip(names, verdicts, strict=True):
        reason = v["evidence"]["reason"] or ""
        if v["verdict"] != UNDETERMINED or v["evidence"]["interval"] is None:
            continue
        if "straddles" in reason:
            unsure.append(f"{name} (an interval straddles the tolerance {TOLERANCE:g})")
        elif "disagree" in reason:
            unsure.append(f"{name} (the two answers disagree)")
    if not unsure:
        return None
    return f"undetermined: {', '.join(unsure)}; more validation rows may tell"
