"""Networks: the soft-equivariant MLP and the baselines the field compares against.

Every symmetry-aware model here is one architecture (SPEC 4) with a different kind of
linear layer: soft (PER), hard (EMLP), residual pathway (RPP) or one pathway per
candidate (Mixed-RPP). Wrappers add data augmentation or frame averaging to any model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from softequiv.groups import Group
from softequiv.nn.invariants import invariant_scalars
from softequiv.nn.layers import EquivariantBilinear, GatedNonlinearity, SoftLinear, gated
from softequiv.reps import Rep, uniform_rep


class EquivariantBlock(nn.Module):
    """Soft linear layer -> residual equivariant bilinear layer -> gated nonlinearity.

    When the ambient group scales (rotations with scalings) or moves points rigidly on
    homogeneous coordinates (SE(n)), polynomial tensor layers reach no useful invariant;
    the gates and scalars then also receive :func:`invariant_scalars` features (norm
    ratios, distances).
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, groups: Sequence[Group], **linear_options):
        super().__init__()
        ambient = groups[0]
        self.linear = SoftLinear(rep_in, gated(rep_out), groups, **linear_options)
        self.bilinear = EquivariantBilinear(gated(rep_out), ambient)
        self.invariants = invariant_scalars(gated(rep_out), ambient)
        self.nonlinearity = GatedNonlinearity(rep_out, ambient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]
        out = self.forward_columns(x.reshape(-1, x.shape[-1]).T)
        return out.T.reshape(*batch, out.shape[0])

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        """The block on features-first x ``[size_in, n]`` (how :class:`SoftEMLP` runs its
        blocks: no transposes between layers)."""
        hidden = self.bilinear.forward_columns(self.linear.forward_columns(x), residual=True)
        if self.invariants is not None:
            hidden = self.invariants.forward_columns(hidden)
        return self.nonlinearity.forward_columns(hidden)


class SoftEMLP(nn.Module):
    """The soft-equivariant MLP (SPEC 4): hidden tensor reps of the ambient group
    ``groups[0]``, exactly equivariant nonlinear parts, and linear layers that are soft
    by default. ``linear_options`` choose the layer kind (see :class:`SoftLinear`).

    ``penalties()`` is the vector (R_1, ..., R_k) of projection regularizers, one per
    candidate group, summed over every linear layer.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, groups: Sequence[Group], *, ch: int = 128,
                 layers: int = 3, **linear_options):
        super().__init__()
        if not groups:
            raise ValueError("SoftEMLP needs at least one group (the ambient group first)")
        self.groups = list(groups)
        self.rep_in, self.rep_out = rep_in, rep_out
        hidden = uniform_rep(ch, groups[0])
        reps = [rep_in] + [hidden] * layers
        self.blocks = nn.ModuleList([EquivariantBlock(a, b, groups, **linear_options)
                                     for a, b in zip(reps[:-1], reps[1:], strict=True)])
        self.head = SoftLinear(reps[-1], rep_out, groups, **linear_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1]).T
        for block in self.blocks:
            h = block.forward_columns(h)
        out = self.head.forward_columns(h)
        return out.T.reshape(*batch, out.shape[0])

    def linear_layers(self) -> list[SoftLinear]:
        return [m for m in self.modules() if isinstance(m, SoftLinear)]

    def penalties(self) -> torch.Tensor:
        """R_j for every candidate group, float64 ``[n_groups]``."""
        return torch.stack([layer.penalties() for layer in self.linear_layers()]).sum(0)


def EMLP(rep_in: Rep, rep_out: Rep, group: Group, *, ch: int = 128, layers: int = 3) -> SoftEMLP:
    """Hard equivariance to one group: every weight is projected, W = P W, at every step."""
    return SoftEMLP(rep_in, rep_out, [group], ch=ch, layers=layers, projected=(0,), free=False)


def RPP(rep_in: Rep, rep_out: Rep, group: Group, *, ch: int = 128, layers: int = 3) -> SoftEMLP:
    """Residual pathway prior: W = P W_eq + W_free; the trainer puts a stronger weight decay
    on the free pathway (``free_parameters``)."""
    return SoftEMLP(rep_in, rep_out, [group], ch=ch, layers=layers, projected=(0,), free=True)


def MixedRPP(rep_in: Rep, rep_out: Rep, groups: Sequence[Group], *, ch: int = 128,
             layers: int = 3) -> SoftEMLP:
    """Residual pathways for every candidate group plus a free one."""
    return SoftEMLP(rep_in, rep_out, groups, ch=ch, layers=layers,
                    projected=tuple(range(len(groups))), free=True)


class MLP(nn.Module):
    """A plain MLP with swish activations: no symmetry at all."""

    def __init__(self, size_in: int, size_out: int, *, ch: int = 128, layers: int = 3):
        super().__init__()
        sizes = [size_in] + [ch] * layers
        mods: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            mods += [nn.Linear(a, b), nn.SiLU()]
        mods.append(nn.Linear(sizes[-1], size_out))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Augmented(nn.Module):
    """Trains any model on randomly transformed data: in training mode it returns
    rho_out(g)^{-1} f(rho_in(g) x) for a fresh random g per example, which makes the loss
    equal to that on augmented pairs (rho_in(g) x, rho_out(g) y) for orthogonal reps. In
    evaluation mode it is the plain model."""

    def __init__(self, model: nn.Module, rep_in: Rep, rep_out: Rep, group: Group):
        super().__init__()
        self.model, self.rep_in, self.rep_out, self.group = model, rep_in, rep_out, group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.model(x)
        g = self.group.sample(x.shape[0]).to(x.dtype)
        gx = (self.rep_in.rho(g).to(x.device) @ x[..., None])[..., 0]
        inv_out = torch.linalg.inv(self.rep_out.rho(g)).to(x.dtype).to(x.device)
        return (inv_out @ self.model(gx)[..., None])[..., 0]


def _vector_slices(rep: Rep, d: int) -> list[slice]:
    """Coordinates of every Vector copy in ``rep`` (the points a frame is built from)."""
    out, offset = [], 0
    for mult, t in rep:
        k = t.dim(d)
        for _ in range(mult):
            if t.factors == (1,):
                out.append(slice(offset, offset + k))
            offset += k
    return out


class FrameAveraging(nn.Module):
    """Frame averaging (Puny et al.) for O(3) or SE(3): the output is the average of
    rho_out(F) f(rho_in(F)^{-1} x) over the 8 PCA frames F of the input's vectors (their
    centroid removed first for SE(3), in homogeneous coordinates). Exactly equivariant
    whenever the covariance has distinct eigenvalues."""

    def __init__(self, model: nn.Module, rep_in: Rep, rep_out: Rep, *, kind: str = "O(3)"):
        super().__init__()
        if kind not in ("O(3)", "SE(3)"):
            raise ValueError(f"frame averaging supports O(3) and SE(3), not {kind!r}")
        self.model, self.rep_in, self.rep_out, self.kind = model, rep_in, rep_out, kind
        d = 3 if kind == "O(3)" else 4
        self.slices = _vector_slices(rep_in, d)
        if len(self.slices) < 2:
            raise ValueError("frame averaging needs at least two Vector summands in rep_in")
        signs = torch.tensor([[a, b, c] for a in (1, -1) for b in (1, -1) for c in (1, -1)],
                             dtype=torch.float64)
        self.register_buffer("signs", signs, persistent=False)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        points = torch.stack([x[:, s][:, :3] for s in self.slices], dim=1).double()
        center = points.mean(1, keepdim=True) if self.kind == "SE(3)" else torch.zeros_like(
            points[:, :1])
        centered = points - center
        _, vecs = torch.linalg.eigh(centered.transpose(1, 2) @ centered)
        rot = vecs[:, None] * self.signs[None, :, None, :]  # [n, 8, 3, 3], columns = axes
        if self.kind == "O(3)":
            return rot
        n = x.shape[0]
        frame = torch.zeros(n, 8, 4, 4, dtype=rot.dtype, device=rot.device)
        frame[:, :, :3, :3] = rot
        frame[:, :, :3, 3] = center
        frame[:, :, 3, 3] = 1.0
        return frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        frames = self._frames(x).reshape(n * 8, *self._frames_shape())
        rho_in_inv = self.rep_in.rho(torch.linalg.inv(frames)).to(x.dtype)
        rho_out = self.rep_out.rho(frames).to(x.dtype)
        x8 = x.repeat_interleave(8, dim=0)
        canon = (rho_in_inv @ x8[..., None])[..., 0]
        y = (rho_out @ self.model(canon)[..., None])[..., 0]
        return y.reshape(n, 8, -1).mean(1)

    def _frames_shape(self) -> tuple[int, int]:
        return (3, 3) if self.kind == "O(3)" else (4, 4)


