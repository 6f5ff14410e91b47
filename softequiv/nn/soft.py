"""What every soft layer offers the trainer: free weights, one projector per candidate group,
and the pathway options that turn a soft layer into a hard or residual-pathway one.

A soft layer's effective weight is ``W = sum_{j in projected} P_j V_j + W_free`` (and likewise
the bias). With ``projected=()`` and ``free=True`` it is the unconstrained layer of a soft
(PER) network; ``projected=(0,)``, ``free=False`` is a hard equivariant layer; with
``free=True`` as well it is a residual-pathway (RPP) layer, and projecting several groups
gives Mixed-RPP. Dense layers (:class:`~softequiv.nn.layers.SoftLinear`) and convolutions
(:class:`~softequiv.nn.conv.SoftConv2d`) differ only in their projectors and their forward
pass; the trainer's penalty, damping, probing and snapping steps see only this interface:

- ``weight``, ``bias``: the free parameters (None for a hard layer);
- ``weight_projector``, ``bias_projector``: objects with ``penalty(W)`` (float64
  ``[n_groups]``), ``penalty_and_residual(W, weights)``, ``project(W, j)`` and ``n_groups``;
  the weight is passed in its own shape, the bias as a matrix ``b[:, None]``;
- ``penalties()``, ``effective_weight()``, ``free_parameters()`` and ``snapped_to``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class SoftLayer(nn.Module):
    """Base of the soft layers; subclasses set the two projectors, call
    :meth:`_init_parameters` and define ``forward`` from :meth:`effective_weight`."""

    weight_projector: nn.Module
    bias_projector: nn.Module

    def _init_parameters(self, weight_shape: Sequence[int], fan_in: int,
                         projected: Sequence[int], free: bool) -> None:
        """The free weight and bias and one pathway per projected group, all drawn
        uniformly from +-1/sqrt(fan_in)."""
        self.projected, self.free = tuple(projected), free
        bound = 1.0 / math.sqrt(fan_in)

        def init(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        n_out = weight_shape[0]
        self.weight = init(*weight_shape) if free else None
        self.bias = init(n_out) if free else None
        self.path_weights = nn.ParameterList([init(*weight_shape) for _ in self.projected])
        self.path_biases = nn.ParameterList([init(n_out) for _ in self.projected])
        self.snapped_to: int | None = None

    def _project_bias(self, bias: torch.Tensor, group: int) -> torch.Tensor:
        return self.bias_projector.project(bias[:, None], group)[:, 0]

    def effective_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias the layer applies, pathways included (projected onto
        ``snapped_to`` when set)."""
        weight = self.weight if self.free else None
        bias = self.bias if self.free else None
        for j, w, b in zip(self.projected, self.path_weights, self.path_biases, strict=True):
            pw, pb = self.weight_projector.project(w, j), self._project_bias(b, j)
            weight = pw if weight is None else weight + pw
            bias = pb if bias is None else bias + pb
        if self.snapped_to is not None:
            return (self.weight_projector.project(weight, self.snapped_to),
                    self._project_bias(bias, self.snapped_to))
        return weight, bias

    def penalties(self) -> torch.Tensor:
        """Per-group projection penalty of the effective weights, float64 ``[n_groups]``."""
        weight, bias = self.effective_weight()
        return self.weight_projector.penalty(weight) + self.bias_projector.penalty(bias[:, None])

    def free_parameters(self) -> list[nn.Parameter]:
        """The unconstrained pathway (the one RPP puts a stronger prior on)."""
        return [self.weight, self.bias] if self.free and self.projected else []
