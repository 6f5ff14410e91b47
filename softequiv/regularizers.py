"""Equivariance penalties and metrics.

- :func:`projection_penalties`: the projection regularizer R_j of SPEC 3, one per group,
  from the weights alone (no group samples, no extra forward passes).
- :func:`sample_penalty`: the sample-based alternative E_g ||f(rho_in(g)x) - rho_out(g)f(x)||^2.
- :func:`equivariance_error`: the relative equivariance error of SPEC 6 for any callable,
  a trained model or a dataset's ground-truth function alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from softequiv.averaging import local_scales
from softequiv.fields import field_equivariance_error, transform_each
from softequiv.groups import Group
from softequiv.nn.soft import SoftLayer
from softequiv.reps import Rep

Function = Callable[[torch.Tensor], torch.Tensor]


def projection_penalties(model: nn.Module) -> torch.Tensor:
    """R_j = sum over the model's soft layers (dense or convolutional) of
    1/2 ||W - P_j W||^2 + 1/2 ||b - P_j b||^2, float64 ``[n_groups]``."""
    layers = [m for m in model.modules() if isinstance(m, SoftLayer)]
    if not layers:
        raise ValueError("the model has no SoftLinear or SoftConv2d layers to regularize")
    return torch.stack([layer.penalties() for layer in layers]).sum(0)


def sample_penalty(f: Function, x: torch.Tensor, group: Group, rep_in: Rep, rep_out: Rep, *,
                   samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over examples and ``samples`` random g of ||f(rho_in(g) x) - rho_out(g) f(x)||^2.

    Fields ``[N, C, H, W]`` (a finite lattice group) are moved by
    :func:`~softequiv.fields.transform_each`, one uniformly drawn element per example, and
    the norm runs over the whole output field."""
    fx = f(x)
    total = x.new_zeros(())
    for _ in range(samples):
        if x.dim() == 4:
            elements = group.elements()
            picks = torch.randint(len(elements), (x.shape[0],), generator=generator)
            diff = (f(transform_each(x, picks, elements, rep_in))
                    - transform_each(fx, picks, elements, rep_out))
            total = total + diff.square().flatten(1).sum(1).mean()
            continue
        g = group.sample(x.shape[0], generator=generator)
        diff = f(rep_in.act(g, x)) - rep_out.act(g, fx)
        total = total + diff.square().sum(-1).mean()
    return total / samples


@torch.no_grad()
def equivariance_error(f: Function | Callable[[np.ndarray], np.ndarray],
                       x: torch.Tensor | np.ndarray, group: Group, rep_in: Rep, rep_out: Rep, *,
                       samples: int = 4, generator: torch.Generator | None = None) -> float:
    """Relative equivariance error (SPEC 6), averaged over inputs and sampled g:

        mean ||f(rho_in(g) x) - rho_out(g) f(x)|| / (||f(rho_in(g) x)|| + ||rho_out(g) f(x)||)

    0 for an exactly equivariant f, at most 1. ``f`` may take and return torch tensors or
    numpy arrays (a dataset's ground truth); ``x`` is ``[n, size(rep_in)]``. Inputs are
    transformed in x's dtype (pass float64 x to a float64 model for tight checks); the
    error itself is computed in float64. Fields ``[n, C, H, W]`` go to
    :func:`~softequiv.fields.field_equivariance_error`, which averages over every element of
    the (finite) group instead of ``samples`` drawn ones.

    Which g: ``Group.sample`` (uniform where the Haar measure is known) for a group of
    orthogonal matrices; for any other group, elements near the identity that move the
    rows of x by about a quarter of their spread (as the verdicts' group averages,
    :mod:`softequiv.averaging`). A non-compact group has no uniform draw, and its far
    elements move inputs where no data lies: there a model's error measures how it
    extrapolates, not the symmetry it learned, and would make every scaling or
    translation look broken (a CosSim model fit to exactly scale-invariant data, judged
    under scalings e^c with c of standard deviation 1, errs 0.03-0.2).
    """
    if x.ndim == 4:
        return field_equivariance_error(f, x, group, rep_in, rep_out)
    numpy_function = isinstance(x, np.ndarray)
    xt = torch.as_tensor(np.asarray(x)) if numpy_function else x

    def call(v: torch.Tensor) -> torch.Tensor:
        if numpy_function:
            return torch.as_tensor(np.asarray(f(v.cpu().numpy())), dtype=torch.float64)
        return f(v)

    errors = []
    fx = call(xt)
    scales = None if group.is_orthogonal else local_scales(
        group, rep_in, xt.detach().double().cpu().numpy())
    for _ in range(samples):
        g = group.sample(xt.shape[0], generator=generator) if scales is None else \
            group.sample_near_identity(xt.shape[0], scales, generator=generator)
        a = call(rep_in.act(g, xt)).double()
        b = rep_out.act(g, fx.double())
        den = a.norm(dim=-1) + b.norm(dim=-1)
        errors.append(((a - b).norm(dim=-1) / den.clamp_min(1e-300)).mean())
    return float(torch.stack(errors).mean())
