"""Automatic strengths lambda_j for the per-group regularizers (SPEC 5).

The published rule: the ambient group (index 0) gets lambda = 0; every other candidate
starts at ``lambda_init``. Over a window of epochs before the adjustment epoch ``t_adj``
record the lowest value m_j each R_j reached; at ``t_adj`` rescale once,

    lambda_j <- lambda_j * (min_k m_k / m_j) ** p,

and keep the lambdas fixed afterwards. A symmetry the data breaks keeps a large R_j and
loses strength; the one it respects keeps ``lambda_init``.

With ``lambda_probe`` set, the candidates start at that (smaller) strength, so the data
can show which constraints it resists, and the rescale sets lambda_j = lambda_init *
(min_k m_k / m_j) ** p: the published formula when ``lambda_probe`` is None.

The ``"relative"`` rule is an option of ours: the same formula, but m_j is each group's
regularizer divided by the squared norm of the weights (the fraction of the weights that
breaks G_j), averaged rather than minimised over the window. It is insensitive to the
overall weight scale drifting during the window.

The ``"gradient"`` rule (ours, the default of ``softequiv discover`` unless the dataset
sets its own ``tuning``) measures how hard the data pulls against each constraint:
m_j = 1/2 ||(I - P_j) g||^2 for g the data-loss gradient averaged over the steps of the
window so far (the trainer passes it to ``observe`` every window epoch), and m_j is the
mean of those values over the window.
At a nearly symmetric model this is the force the data exerts against G_j, the
Lagrange multiplier of the constraint: near zero (sampling noise) for a symmetry the
data holds, and growing with how far the data breaks it. Unlike R_j it is not drowned
by the optimizer's own jitter around the constraint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

RULES = ("published", "relative", "gradient")


@dataclass
class StrengthTuner:
    """State machine for the lambdas; ``observe`` once per epoch, read ``lambdas``."""

    n_groups: int
    lambda_init: float = 100.0
    lambda_probe: float | None = None
    t_adj: int = 100
    window: int = 50
    p: float = 2.0
    rule: str = "gradient"
    lambdas: list[float] = field(default_factory=list)
    minima: list[float] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)
    count: int = 0
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

    def observe(self, epoch: int, regularizers: np.ndarray, weight_norm2: float = 1.0) -> bool:
        """Record epoch ``epoch``'s R_j (and the squared weight norm for the relative rule).
        Returns True at the epoch the lambdas were rescaled."""
        if self.adjusted:
            return False
        values = np.asarray(regularizers, dtype=np.float64)
        if self.rule == "relative":
            values = values / max(weight_norm2, 1e-300)
        if epoch >= self.t_adj - self.window:
            self.minima = list(np.minimum(self.minima, values))
            self.sums = list(np.add(self.sums, values))
            self.count += 1
        if epoch + 1 >= self.t_adj:
            self._rescale()
            return True
        return False

    def _rescale(self) -> None:
        levels = np.array(self.minima if self.rule == "published"
                          else np.divide(self.sums, max(self.count, 1)))  # relative, gradient
        lambdas = np.array(self.lambdas)
        active = lambdas != 0
        if active.any() and np.isfinite(levels[active]).all():
            floor = max(levels[active].min(), 1e-300)
            ratio = (floor / np.maximum(levels[active], 1e-300)) ** self.p
            lambdas[active] = self.lambda_init * ratio
        self.lambdas = [float(v) for v in lambdas]
        self.adjusted = True

    def state_dict(self) -> dict:
        """Everything needed to resume (saved with the model checkpoint)."""
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> StrengthTuner:
        return cls(**state)
