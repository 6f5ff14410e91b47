"""Projectors onto G-steerable convolution kernels, one per candidate group (SPEC 10).

A convolution with kernel K[c_out, c_in, u] (u the offset from the kernel's centre) is
G-equivariant iff K(g u) = rho_out(g) K(u) rho_in(g)^{-1} for every g. For a finite group
the orthogonal projector onto such kernels is the group average

    (P_G K)(u) = 1/|G| sum_g rho_out(g) K(g^{-1} u) rho_in(g)^{-1}.

For the square lattice's groups every factor is a signed permutation (of offsets, of
output channels, of input channels), so each term of the average is one gather of the
kernel's entries times a sign: the cost is |G| x #weights, and no matrix over the weights
is ever formed. The projector is symmetric and idempotent, so R_j = 1/2 ||K - P_j K||^2 is
zero exactly on G_j-steerable kernels, and PER (SPEC 3) carries over to convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from softequiv.fields import Channels, Rep, as_channels, lattice_element
from softequiv.groups import Group


def _offset_source(g: np.ndarray, k: int) -> np.ndarray:
    """For every offset u of a k x k kernel (row-major, y then x), the index of g^{-1} u."""
    r = k // 2
    m = lattice_element(g).T  # g^{-1}
    ys, xs = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    src_x = m[0, 0] * xs + m[0, 1] * ys
    src_y = m[1, 0] * xs + m[1, 1] * ys
    return ((src_y + r) * k + (src_x + r)).reshape(-1)


class KernelProjector(nn.Module):
    """Orthogonal projectors P_j onto G_j-steerable kernels ``[C_out, C_in, k, k]``, one per
    finite group, for channels of the given types (tensor reps with d = 2 or
    :class:`~softequiv.fields.RegularChannels`).

    It offers what the trainer asks of a layer's projector (the
    :class:`~softequiv.solver.Projector` interface): ``penalty(W)`` (1/2 ||W - P_j W||^2
    for every group, float64), ``penalty_and_residual(W, weights)``, ``project(W, j)`` and
    ``n_groups``. A kernel of size 1 may also be passed as a matrix ``[C_out, C_in]``, so a
    bias (a map from one Scalar) is projected as ``b[:, None]``, as for linear layers. The
    gather indices live in (non-persistent) buffers and follow ``.to(device)``.
    """

    def __init__(self, channels_in: Rep | Channels, channels_out: Rep | Channels,
                 groups: Sequence[Group], kernel_size: int = 1):
        super().__init__()
        if not groups:
            raise ValueError("KernelProjector needs at least one group")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd (a centre offset), got {kernel_size}")
        self.channels_in, self.channels_out = as_channels(channels_in), as_channels(channels_out)
        c_in, c_out, k = self.channels_in.size, self.channels_out.size, kernel_size
        self.shape = (c_out, c_in, k, k)
        self.n_groups = len(groups)
        offsets = k * k
        sources, signs, sizes = [], [], []
        for group in groups:
            elements = group.elements()
            sizes.append(len(elements))
            for g in elements:
                src_out, sign_out = self.channels_out.signed_permutation(g)
                src_in, sign_in = self.channels_in.signed_permutation(g)
                src_u = _offset_source(g, k)
                sources.append((src_out[:, None, None] * (c_in * offsets)
                                + src_in[None, :, None] * offsets
                                + src_u[None, None, :]).reshape(-1))
                signs.append((sign_out[:, None, None] * sign_in[None, :, None]
                              * np.ones(offsets)).reshape(-1))
        self.sizes = tuple(sizes)
        self.starts = tuple(int(s) for s in np.cumsum([0, *sizes[:-1]]))
        average = torch.zeros(self.n_groups, sum(sizes), dtype=torch.float64)
        for j, (start, size) in enumerate(zip(self.starts, sizes, strict=True)):
            average[j, start:start + size] = 1.0 / size
        self.register_buffer("source", torch.from_numpy(np.stack(sources)), persistent=False)
        self.register_buffer("sign", torch.from_numpy(np.stack(signs)).to(torch.int8),
                             persistent=False)
        self.register_buffer("average", average, persistent=False)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - nn.Module's signature
        """The averaging weights follow device moves but stay float64 under ``.float()``."""
        average = self.average
        super()._apply(fn, recurse)
        self.average = average.to(self.average.device)
        return self

    def _flat(self, W: torch.Tensor) -> torch.Tensor:
        c_out, c_in, k, _ = self.shape
        if tuple(W.shape) != self.shape and not (k == 1 and tuple(W.shape) == (c_out, c_in)):
            raise ValueError(f"kernel of shape {tuple(W.shape)} does not match "
                             f"{self.channels_in} -> {self.channels_out}, expected {self.shape}")
        return W.reshape(-1)

    def _averages(self, w: torch.Tensor) -> torch.Tensor:
        """P_j w for every group, ``[n_groups, #weights]`` in w's dtype."""
        terms = w[self.source] * self.sign.to(w.dtype)
        return self.average.to(w.dtype) @ terms

    def project(self, W: torch.Tensor, group: int = 0) -> torch.Tensor:
        """P_j W: the closest kernel to W that is steerable under group ``j`` (differentiable)."""
        w = self._flat(W)
        rows = slice(self.starts[group], self.starts[group] + self.sizes[group])
        terms = w[self.source[rows]] * self.sign[rows].to(w.dtype)
        return terms.mean(0).reshape(W.shape)

    def penalty(self, W: torch.Tensor) -> torch.Tensor:
        """1/2 ||W - P_j W||^2 for every group, float64 ``[n_groups]`` (differentiable)."""
        w = self._flat(W).double()
        return 0.5 * (w - self._averages(w)).square().sum(1)

    def penalty_and_residual(self, W: torch.Tensor,
                             weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``penalty(W)`` together with ``sum_j weights_j (W - P_j W)``, the gradient of
        ``sum_j weights_j R_j`` with respect to W (W's dtype and shape), without autograd."""
        w = self._flat(W).detach().double()
        residuals = w - self._averages(w)
        penalty = 0.5 * residuals.square().sum(1)
        combined = weights.to(residuals) @ residuals
        return penalty, combined.to(W.dtype).reshape(W.shape)

    def dims(self) -> list[int]:
        """Dimension of the steerable subspace for every group (the trace of P_j)."""
        fixed = (self.source == torch.arange(self.source.shape[1],
                                             device=self.source.device)) * self.sign
        return [int(round(float(fixed[s:s + n].sum()) / n))
                for s, n in zip(self.starts, self.sizes, strict=True)]
