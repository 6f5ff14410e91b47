"""Convolutions on fields: the soft convolution that PER regularizes, and the relaxed group
convolution of Wang, Walters & Yu (ICML 2022) as a baseline.

Both pad with zeros symmetrically about an odd kernel's centre, so a lattice symmetry of a
square grid maps the padded grid onto itself and equivariance is exact up to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from softequiv.fields import Channels, RegularChannels, Rep, as_channels
from softequiv.groups import Group
from softequiv.nn.soft import SoftLayer
from softequiv.reps import Scalar
from softequiv.steerable import KernelProjector


class SoftConv2d(SoftLayer):
    """A 2-D convolution between field types whose kernel ``[C_out, C_in, k, k]`` and bias are
    free (by default), with one projector per candidate group onto G-steerable kernels.

    The soft-layer interface of :class:`~softequiv.nn.soft.SoftLayer`: ``penalties()`` is
    1/2 ||K - P_j K||^2 + 1/2 ||b - P_j b||^2 for every group, and ``projected``/``free``
    make it a hard (G-CNN) or residual-pathway layer. ``channels_in``/``channels_out`` are
    tensor reps with d = 2 (``"Scalar + Vector"``) or
    :class:`~softequiv.fields.RegularChannels`.
    """

    def __init__(self, channels_in: Rep | Channels, channels_out: Rep | Channels,
                 groups: Sequence[Group], kernel_size: int = 3, *,
                 projected: Sequence[int] = (), free: bool = True):
        super().__init__()
        self.channels_in, self.channels_out = as_channels(channels_in), as_channels(channels_out)
        self.weight_projector = KernelProjector(channels_in, channels_out, groups, kernel_size)
        self.bias_projector = KernelProjector(Scalar, channels_out, groups, 1)
        self.kernel_size = kernel_size
        c_in = self.channels_in.size
        self._init_parameters(self.weight_projector.shape, c_in * kernel_size ** 2, projected,
                              free)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.effective_weight()
        return F.conv2d(x, weight, bias, padding=self.kernel_size // 2)


class RelaxedGroupConv2d(nn.Module):
    """The relaxed group convolution of Wang, Walters & Yu (ICML 2022), for any field types of
    a finite lattice group G.

    ``banks`` base kernels W_l are mixed with learned weights that depend on the group
    element, K = sum_l sum_g w_l(g) (g . W_l) with (g . W)(u) = rho_out(g) W(g^{-1} u)
    rho_in(g)^{-1}. With w_l(g) the same for every g, K is |G| times the group average of
    sum_l w_l W_l, hence G-steerable: the layer is then an ordinary group convolution, and
    non-uniform weights relax it. For regular output channels each W_l lives on the rows of
    the identity element, so output element g is computed by sum_l w_l(g) (g . W_l), the
    published layer; other output types (the last layer) use full kernels. The bias is the
    group average of a free bias (equivariant, as the published layers have none).
    """

    def __init__(self, channels_in: Rep | Channels, channels_out: Rep | Channels, group: Group,
                 kernel_size: int = 3, *, banks: int = 2):
        super().__init__()
        if banks < 1:
            raise ValueError(f"banks must be at least 1, got {banks}")
        self.channels_in, self.channels_out = as_channels(channels_in), as_channels(channels_out)
        self.orbit = KernelProjector(channels_in, channels_out, [group], kernel_size)
        self.bias_projector = KernelProjector(Scalar, channels_out, [group], 1)
        self.kernel_size = kernel_size
        c_out, c_in, k, _ = self.orbit.shape
        order = len(self.orbit.elements)
        out = self.channels_out
        if isinstance(out, RegularChannels) and out.group == group:
            rows = torch.arange(out.copies) * out.order  # the identity is element 0
        else:
            rows = torch.arange(c_out)
        self.register_buffer("rows", rows, persistent=False)
        bound = 1.0 / (c_in * k * k) ** 0.5
        self.weight = nn.Parameter(torch.empty(banks, len(rows), c_in, k, k).uniform_(-bound,
                                                                                       bound))
        self.mix = nn.Parameter(torch.full((banks, order), 1.0 / banks))
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-bound, bound))

    def kernel(self) -> torch.Tensor:
        """The relaxed kernel ``[C_out, C_in, k, k]`` the layer applies."""
        banks = self.weight.shape[0]
        full = self.weight.new_zeros(banks, *self.orbit.shape)
        full[:, self.rows] = self.weight
        per_element = torch.einsum("lg,lw->gw", self.mix, full.reshape(banks, -1))
        signed = torch.cat([per_element, -per_element], dim=1)
        return signed.gather(1, self.orbit.source).sum(0).reshape(self.orbit.shape)

    def relaxation(self) -> torch.Tensor:
        """How far the mixing weights are from uniform: the mean absolute difference between
        any two elements' weights, over the banks (0 exactly when the layer is equivariant by
        construction); the regularizer a relaxed model may be trained with."""
        return (self.mix[:, :, None] - self.mix[:, None, :]).abs().mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias_projector.project(self.bias[:, None], 0)[:, 0]
        return F.conv2d(x, self.kernel(), bias, padding=self.kernel_size // 2)
