"""Group averages of a function: the verdicts' symmetrized answer (SPEC 9).

The average of f over a candidate G,

    f_G(x) = mean over g of rho_out(g)^-1 f(rho_in(g) x),

is the G-equivariant function nearest f; comparing its validation error with f's asks
whether the trained model needs its break of G, in function space: no weight is moved, so
a model that represents a symmetric function by non-equivariant weights (common for
non-compact groups, whose projections do not preserve what a layer computes) is not
mistaken for one that breaks the symmetry.

Which elements the mean runs over:

- a finite group of the square lattice on fields: every element (the exact average);
- a group of orthogonal matrices (compact): ``SAMPLES`` draws of ``Group.sample`` (Haar
  where it is known), so the mean estimates the Reynolds average, which never raises the
  MSE of data whose inputs and targets the group keeps;
- any other group: ``SAMPLES`` elements near the identity, exp(sum_k c_k A_k) with
  c_k ~ N(0, s_k^2), each generator's s_k chosen so that it moves the inputs by
  ``SPREAD`` times their own spread (rms distance to their mean), then a random word in
  the discrete generators. A non-compact group has no uniform average, and its far
  elements move inputs where no training row lies, where any model guesses: averaging
  over them would judge the model's extrapolation, not the data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from softequiv.fields import transform
from softequiv.groups import Group
from softequiv.reps import Rep

SAMPLES = 16
"""Group elements per row in the average over a continuous group."""

SPREAD = 0.25
"""How far the elements of a non-compact group move the inputs, as a share of the inputs'
own spread: far enough that a break of the group changes the average, near enough that
the moved inputs stay among the training rows."""

Function = Callable[[np.ndarray], np.ndarray]


def group_average(function: Function, X: np.ndarray, group: Group, rep_in: Rep, rep_out: Rep,
                  *, seed: int = 0) -> np.ndarray:
    """``function`` averaged over ``group`` at the rows of ``X`` (vectors ``[N, size]`` or
    fields ``[N, C, H, W]``, in the data's units, as ``function`` takes and returns
    them)."""
    if X.ndim == 4:
        elements = group.elements()
        return sum(transform(function(transform(X, g, rep_in)), np.linalg.inv(g), rep_out)
                   for g in elements) / len(elements)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(X, dtype=torch.float64)
    scales = None if group.is_orthogonal else local_scales(group, rep_in, X)
    total = np.zeros_like(np.asarray(function(X), dtype=np.float64))
    for _ in range(SAMPLES):
        g = torch.from_numpy(sample_elements(group, len(X), rng, scales))
        out = torch.as_tensor(np.asarray(function(rep_in.act(g, x).numpy()),
                                         dtype=np.float64))
        total += rep_out.act(torch.linalg.inv(g), out).numpy()
    return total / SAMPLES


def sample_elements(group: Group, n: int, rng: np.random.Generator,
                    scales: np.ndarray | None = None) -> np.ndarray:
    """``n`` elements ``[n, d, d]`` the average runs over (see the module docstring):
    ``Group.sample`` for an orthogonal group, else Lie coefficients of standard deviation
    ``scales`` (:func:`local_scales`) and a random word in the discrete generators."""
    if group.is_orthogonal:
        seed = int(rng.integers(2**62))
        return group.sample(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return group.exp_sample(n, scales, rng)


def local_scales(group: Group, rep_in: Rep, X: np.ndarray) -> np.ndarray:
    """Per Lie generator A_k, the coefficient scale s_k at which s_k A_k moves the rows of
    ``X`` by ``SPREAD`` times their spread (to first order, rms over rows)."""
    x = torch.as_tensor(X, dtype=torch.float64)
    spread = float((x - x.mean(0)).square().sum(-1).mean().sqrt())
    moves = rep_in.drho(torch.from_numpy(group.lie)) @ x.T
    rms = moves.square().sum(1).mean(-1).sqrt().numpy()
    moving = rms > 1e-9 * max(spread, 1e-300)
    return np.where(moving, SPREAD * spread / np.where(moving, rms, 1.0), SPREAD)
