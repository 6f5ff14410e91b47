"""Automatic strengths lambda_j for the per-group regularizers (SPEC 5).

The ambient group (index 0) gets lambda = 0; every other candidate starts at
``lambda_init`` (or ``lambda_probe`` when set). Once, at the adjustment epoch ``t_adj``,
each candidate gets a level m_j (how much the data resists G_j) and

    lambda_j <- lambda_init * (min_k m_k / m_j) ** p,

kept fixed afterwards: the candidate the data resists least keeps ``lambda_init``, the
others lose strength with how much more the data resists them. The rules differ in m_j:

- ``"error"`` (the default, ours): the squared relative equivariance error (SPEC 6) of
  the warmed-up model's predictions under each candidate, on validation inputs in the
  data's units. Every candidate was held with the same strength during the warm-up, so
  this is how far the data has pulled the model off each one, measured on what the model
  computes rather than on its weights: a network whose features amplify small weights
  (homogeneous coordinates) cannot hide a break from it, and subspaces of different
  sizes do not bias it. Squared, like the other rules' levels.
- ``"fit"`` (ours): the cost of the constraint in validation fit. The trainer refits the
  warmed-up model for a short budget free and inside each candidate's subspace
  (:func:`softequiv.train.refit`) and passes c_j, the relative rise of the validation MSE
  (constrained over free, minus one); m_j = max(c_j, 0) + ``FIT_FLOOR``. It is the
  verdicts' own evidence (:mod:`softequiv.verdicts`) and needs no invariant input
  distribution, but a short refit cannot rebuild a model that leans on small breaking
  weights (SE(3) translation: every candidate then costs the same).
- ``"published"`` (the paper): m_j = the lowest R_j over the window of epochs before
  ``t_adj``. R_j is a distance to a subspace, so a candidate with a larger subspace
  (Scaling(3), Trans(3)) reads smaller whatever the data says.
- ``"relative"``: R_j divided by the squared norm of the weights, averaged over the
  window.
- ``"gradient"``: m_j = 1/2 ||(I - P_j) g||^2 for g the data-loss gradient averaged over
  the steps of each window epoch, averaged over the window (the pull of the data against
  G_j). For a non-compact candidate it includes plain fit error, since the inputs are
  not invariant; it needs the decoupled penalty (else the published rule is used).

The tuner records what every rule needs (the fit costs only when the fit rule is used),
so :meth:`StrengthTuner.proposals` gives the strengths each rule would set from the same
warm-up: the side-by-side comparison of the README.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

RULES = ("error", "fit", "published", "relative", "gradient")

FIT_FLOOR = 0.05
"""Added to every fit cost, the verdicts' tolerance (5% of the validation MSE): costs
near zero differ mostly by sampling noise and must not divide by almost nothing. A
candidate that costs 5% more than the best keeps (0.05 / 0.10) ** p of lambda_init (1/4 at
p = 2); one that costs 100% more keeps about 1/440."""


@dataclass
class StrengthTuner:
    """State machine for the lambdas: ``observe`` every warm-up epoch, ``adjust`` once at
    ``t_adj`` (with the equivariance errors, and the fit costs for the fit rule), read
    ``lambdas``."""

    n_groups: int
    lambda_init: float = 100.0
    lambda_probe: float | None = None
    t_adj: int = 100
    window: int = 50
    p: float = 2.0
    rule: str = "error"
    lambdas: list[float] = field(default_factory=list)
    minima: list[float] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)
    count: int = 0
    gradient_sums: list[float] = field(default_factory=list)
    gradient_count: int = 0
    costs: list[float | None] | None = None
    errors: list[float | None] | None = None
    adjusted: bool = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown tuning rule {self.rule!r}; choose from {', '.join(RULES)}")
        if not self.lambdas:
            start = self.lambda_init if self.lambda_probe is None else self.lambda_probe
            self.lambdas = [0.0] + [float(start)] * (self.n_groups - 1)
        if not self.minima:
            self.minima = [float("inf")] * self.n_groups
            self.sums = [0.0] * self.n_groups
        if not self.gradient_sums:
            self.gradient_sums = [0.0] * self.n_groups

    def in_window(self, epoch: int) -> bool:
        return self.t_adj - self.window <= epoch < self.t_adj

    def observe(self, epoch: int, regularizers: np.ndarray, *,
                gradient: np.ndarray | None = None, weight_norm2: float = 1.0) -> None:
        """Record warm-up epoch ``epoch``: its R_j, the squared weight norm, and (when
        measured) the gradient levels 1/2 ||(I - P_j) g||^2; epochs outside the window
        before ``t_adj`` are ignored."""
        if self.adjusted or not self.in_window(epoch):
            return
        values = np.asarray(regularizers, dtype=np.float64)
        self.minima = list(np.minimum(self.minima, values))
        self.sums = list(np.add(self.sums, values / max(weight_norm2, 1e-300)))
        self.count += 1
        if gradient is not None:
            self.gradient_sums = list(np.add(self.gradient_sums,
                                             np.asarray(gradient, dtype=np.float64)))
            self.gradient_count += 1

    def levels(self, rule: str) -> np.ndarray | None:
        """Each candidate's m_j under ``rule``; None when its measurements are missing."""
        if rule == "error":
            return None if self.errors is None else _array(self.errors) ** 2
        if rule == "fit":
            return None if self.costs is None else np.maximum(_array(self.costs), 0) + FIT_FLOOR
        if rule == "published":
            return np.array(self.minima) if self.count else None
        if rule == "relative":
            return np.divide(self.sums, self.count) if self.count else None
        if rule == "gradient":
            return (np.divide(self.gradient_sums, self.gradient_count)
                    if self.gradient_count else None)
        raise ValueError(f"unknown tuning rule {rule!r}")

    def proposal(self, rule: str) -> list[float] | None:
        """The lambdas ``rule`` sets from what was recorded (None if it cannot)."""
        levels = self.levels(rule)
        if levels is None:
            return None
        start = self.lambda_init if self.lambda_probe is None else self.lambda_probe
        lambdas = np.array([0.0] + [float(start)] * (self.n_groups - 1))
        active = lambdas != 0
        if active.any() and np.isfinite(levels[active]).all():
            floor = max(levels[active].min(), 1e-300)
            lambdas[active] = self.lambda_init * (floor / np.maximum(levels[active],
                                                                    1e-300)) ** self.p
        return [float(v) for v in lambdas]

    def proposals(self) -> dict[str, list[float]]:
        """The lambdas of every rule that has its measurements, side by side."""
        return {rule: lam for rule in RULES if (lam := self.proposal(rule)) is not None}

    def adjust(self, *, errors: list[float | None] | None = None,
               costs: list[float | None] | None = None) -> None:
        """Rescale once (at ``t_adj``). ``errors`` are the error rule's measurements,
        ``costs`` the fit rule's (the ambient group's entries are ignored). The gradient
        rule without gradient measurements falls back to the published one."""
        if errors is not None:
            self.errors = [None if e is None else float(e) for e in errors]
        if costs is not None:
            self.costs = [None if c is None else float(c) for c in costs]
        lambdas = self.proposal(self.rule)
        if lambdas is None and self.rule == "gradient":
            lambdas = self.proposal("published")
        if lambdas is not None:
            self.lambdas = lambdas
        self.adjusted = True

    def state_dict(self) -> dict:
        """Everything needed to resume (saved with the model checkpoint)."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> StrengthTuner:
        return cls(**state)


def _array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
