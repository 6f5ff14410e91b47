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
    bias (a map from one Scalar) is projected as ``b[:, None]``, as for linear layers.

    Elements shared by several candidates (the identity, the 180-degree rotation, ...) are
    moved once: the candidates of a D4 problem need 8 gathers, not the 22 of their element
    lists. Each gather reads ``[w, -w]``, so a sign costs nothing. The indices live in
    (non-persistent) buffers and follow ``.to(device)``.
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
        size = c_out * c_in * k * k
        unique: dict[bytes, int] = {}
        elements, sources, members = [], [], []
        for group in groups:
            rows = []
            for g in group.elements():
                key = lattice_element(g).tobytes()
                if key not in unique:
                    unique[key] = len(elements)
                    elements.append(np.array(g))
                    sources.append(self._signed_source(g, k, size))
                rows.append(unique[key])
            members.append(rows)
        self.elements = np.stack(elements)
        self.sizes = tuple(len(rows) for rows in members)
        average = torch.zeros(self.n_groups, len(elements), dtype=torch.float64)
        for j, rows in enumerate(members):
            average[j, rows] = 1.0 / len(rows)
        self.register_buffer("source", torch.from_numpy(np.stack(sources)), persistent=False)
        self.register_buffer("average", average, persistent=False)
        self._members = [torch.tensor(rows) for rows in members]

    def _signed_source(self, g: np.ndarray, k: int, size: int) -> np.ndarray:
        """Where each entry of g . W comes from in ``[w, -w]``: (g . W)(u) =
        rho_out(g) W(g^{-1} u) rho_in(g)^{-1}, flattened row-major."""
        c_out, c_in = self.shape[:2]
        src_out, sign_out = self.channels_out.signed_permutation(g)
        src_in, sign_in = self.channels_in.signed_permutation(g)
        src_u = _offset_source(g, k)
        flat = (src_out[:, None, None] * (c_in * k * k) + src_in[None, :, None] * (k * k)
                + src_u[None, None, :])
        negative = (sign_out[:, None, None] * sign_in[None, :, None]) < 0
        return (flat + size * np.broadcast_to(negative, flat.shape)).reshape(-1)

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

    def moved(self, w: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """g . W for every (or the listed) distinct element, ``[n_elements, #weights]``, from
        flat kernels ``w`` (differentiable)."""
        source = self.source if rows is None else self.source.index_select(
            0, rows.to(self.source.device))
        signed = torch.cat([w, -w])
        return signed.index_select(0, source.reshape(-1)).reshape(source.shape)

    def project(self, W: torch.Tensor, group: int = 0) -> torch.Tensor:
        """P_j W: the closest kernel to W that is steerable under group ``j`` (differentiable)."""
        w = self._flat(W)
        rows = self._members[group]
        if len(rows) == len(self.elements):
            return (self.average[group].to(w.dtype) @ self.moved(w)).reshape(W.shape)
        return self.moved(w, rows).mean(0).reshape(W.shape)

    def penalty(self, W: torch.Tensor) -> torch.Tensor:
        """1/2 ||W - P_j W||^2 for every group, float64 ``[n_groups]`` (differentiable)."""
        w = self._flat(W).double()
        return 0.5 * (w - self.average @ self.moved(w)).square().sum(1)

    def penalty_and_residual(self, W: torch.Tensor,
                             weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``penalty(W)`` together with ``sum_j weights_j (W - P_j W)``, the gradient of
        ``sum_j weights_j R_j`` with respect to W (W's dtype and shape), without autograd."""
        w = self._flat(W).detach().double()
        residuals = w - self.average @ self.moved(w)
        penalty = 0.5 * residuals.square().sum(1)
        combined = weights.to(residuals) @ residuals
        return penalty, combined.to(W.dtype).reshape(W.shape)

    def dims(self) -> list[int]:
        """Dimension of the steerable subspace for every group (the trace of P_j)."""
        size = self.source.shape[1]
        position = torch.arange(size, device=self.source.device)
        traces = ((self.source == position).double()
                  - (self.source == position + size).double()).sum(1)
        return [int(round(float(t))) for t in self.average.to(traces) @ traces]
