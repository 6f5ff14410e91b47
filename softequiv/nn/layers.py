"""Layers of soft and hard equivariant networks.

Only :class:`SoftLinear` can break a symmetry: its weights are dense, and per candidate
group it carries a projector that measures (and, for hard or residual-pathway models,
imposes) equivariance. :class:`EquivariantBilinear` and :class:`GatedNonlinearity` are
exactly equivariant under the ambient group, hence under every subgroup.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from softequiv.groups import Group
from softequiv.reps import Rep, Scalar, TensorType
from softequiv.solver import DEFAULT_TOL, Projector, as_selector


def gated(rep: Rep) -> Rep:
    """One gate scalar per non-scalar summand copy, followed by ``rep`` (gates first, so
    they merge with rep's leading scalars and every type stays contiguous)."""
    return rep.num_nonscalars() * Scalar + rep


class SoftLinear(nn.Module):
    """A linear map rep_in -> rep_out whose weight is
    ``W = sum_{j in projected} P_j V_j + W_free`` (and likewise the bias).

    With ``projected=()`` and ``free=True`` it is the unconstrained layer of a soft
    (PER) network; ``projected=(0,)``, ``free=False`` is a hard EMLP layer; with
    ``free=True`` as well it is a residual-pathway (RPP) layer, and projecting several
    groups gives Mixed-RPP. ``penalties()`` returns 1/2 ||W - P_j W||^2 + 1/2 ||b - P_j b||^2
    of the effective weights for every group, the projection regularizer of SPEC 3.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, groups: Sequence[Group], *,
                 projected: Sequence[int] = (), free: bool = True, tol: float = DEFAULT_TOL):
        super().__init__()
        self.weight_projector = Projector(rep_in, rep_out, groups, tol=tol)
        self.bias_projector = Projector(Scalar, rep_out, groups, tol=tol)
        n_out, n_in = self.weight_projector.shape
        self.rep_in, self.rep_out = rep_in, rep_out
        self.projected, self.free = tuple(projected), free
        bound = 1.0 / math.sqrt(n_in)

        def init(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.weight = init(n_out, n_in) if free else None
        self.bias = init(n_out) if free else None
        self.path_weights = nn.ParameterList([init(n_out, n_in) for _ in projected])
        self.path_biases = nn.ParameterList([init(n_out) for _ in projected])
        self.snapped_to: int | None = None

    def effective_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias the layer applies, pathways included."""
        if self.snapped_to is not None:
            weight, bias = self._raw_effective_weight()
            j = self.snapped_to
            return (self.weight_projector.project(weight, j),
                    self.bias_projector.project(bias[:, None], j)[:, 0])
        return self._raw_effective_weight()

    def _raw_effective_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.weight if self.free else None
        bias = self.bias if self.free else None
        for j, w, b in zip(self.projected, self.path_weights, self.path_biases, strict=True):
            pw = self.weight_projector.project(w, j)
            pb = self.bias_projector.project(b[:, None], j)[:, 0]
            weight = pw if weight is None else weight + pw
            bias = pb if bias is None else bias + pb
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.effective_weight()
        return F.linear(x, weight, bias)

    def penalties(self) -> torch.Tensor:
        """Per-group projection penalty of the effective weights, float64 ``[n_groups]``."""
        weight, bias = self.effective_weight()
        return self.weight_projector.penalty(weight) + self.bias_projector.penalty(bias[:, None])

    def free_parameters(self) -> list[nn.Parameter]:
        """The unconstrained pathway (the one RPP puts a stronger prior on)."""
        return [self.weight, self.bias] if self.free and self.projected else []


class EquivariantBilinear(nn.Module):
    """x -> scale * W(x) x, with W(x) linear in x and equivariant by construction.

    Every block of W between out type a and in type b transforms like the tensor type
    a ⊗ b*; it is a learned combination of the copies of that same type found in x
    (at most dim(type) of them, as in EMLP). Exactly equivariant for any group whose
    reps are these tensor types, so under the ambient group and all its subgroups.
    """

    def __init__(self, rep: Rep, group: Group, *, scale: float = 0.1):
        super().__init__()
        d, self.scale = group.d, scale
        orthogonal = group.is_orthogonal
        self.size = rep.size(d)
        index = rep.type_indices(d)
        self._select: list[slice | str] = []
        for t_i, idx in enumerate(index.values()):
            sel = as_selector(idx)
            if not isinstance(sel, slice):
                self.register_buffer(f"idx{t_i}", idx, persistent=False)
                sel = f"idx{t_i}"
            self._select.append(sel)
        self._contiguous = all(isinstance(s, slice) for s in self._select) and sorted(
            (s.start, s.stop) for s in self._select) == [
            (s.start, s.stop) for s in self._select]
        types = list(index)
        copies = {t.canonical(orthogonal): t_i for t_i, t in enumerate(types) if t.rank > 0}
        self.params = nn.ParameterList()
        self._terms: list[tuple[int, int, int, int, int, int, int, int]] = []
        for a_i, a in enumerate(types):
            for b_i, b in enumerate(types):
                key = TensorType(a.factors + b.dual().factors).canonical(orthogonal)
                if key.rank == 0 or key not in copies:
                    continue
                s_i = copies[key]
                dim_t = types[s_i].dim(d)
                n_sel = min(len(index[types[s_i]]) // dim_t, dim_t)
                na, nb = len(index[a]) // a.dim(d), len(index[b]) // b.dim(d)
                self.params.append(nn.Parameter(torch.randn(na, nb, n_sel) / math.sqrt(nb * n_sel)))
                self._terms.append((a_i, b_i, s_i, n_sel, a.dim(d), b.dim(d), na, nb))
        self._widths = [len(idx) for idx in index.values()]

    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The columns of every type of x, as one op (cheaper backward than many slices)."""
        if self._contiguous:
            return list(x.split(self._widths, dim=1))
        return [x[:, sel] if isinstance(sel, slice) else x.index_select(1, getattr(self, sel))
                for sel in self._select]

    @staticmethod
    def _contract_input_first(src: torch.Tensor, xb: torch.Tensor, param: torch.Tensor,
                              n_sel: int, da: int) -> torch.Tensor:
        n, nb, db = xb.shape
        na = param.shape[0]
        # contracted[n, c, i, k] = sum_j src[n, c, i, j] xb[n, k, j]
        contracted = torch.bmm(src.reshape(n, n_sel * da, db), xb.transpose(1, 2))
        contracted = contracted.reshape(n, n_sel, da, nb).transpose(1, 2)
        # out[n, a, i] = sum_{c, k} param[a, k, c] contracted[n, i, c, k]
        weights = param.permute(2, 1, 0).reshape(n_sel * nb, na)
        out = (contracted.reshape(n * da, n_sel * nb) @ weights).reshape(n, da, na)
        return out.transpose(1, 2).reshape(n, na * da)

    @staticmethod
    def _mix_copies_first(src: torch.Tensor, xb: torch.Tensor, param: torch.Tensor,
                          n_sel: int, da: int) -> torch.Tensor:
        n, nb, db = xb.shape
        na = param.shape[0]
        # mixed[n, j, a, c] = sum_k param[a, k, c] xb[n, k, j]
        mixed = xb.transpose(1, 2).reshape(n * db, nb) @ param.transpose(0, 1).reshape(
            nb, na * n_sel)
        mixed = mixed.reshape(n, db, na, n_sel).permute(0, 3, 1, 2).reshape(n, n_sel * db, na)
        # out[n, a, i] = sum_{c, j} src[n, c, i, j] mixed[n, (c, j), a]
        src = src.reshape(n, n_sel, da, db).transpose(1, 2).reshape(n, da, n_sel * db)
        return torch.bmm(src, mixed).transpose(1, 2).reshape(n, na * da)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        n = x.shape[0]
        parts = self._split(x)
        pieces: dict[int, torch.Tensor] = {}
        for param, (a_i, b_i, s_i, n_sel, da, db, na, nb) in zip(self.params, self._terms,
                                                                strict=True):
            src = parts[s_i][:, : n_sel * da * db]
            xb = parts[b_i].reshape(n, nb, db)
            if n_sel * da * nb * (db + na) <= n_sel * db * na * (nb + da):
                out = self._contract_input_first(src, xb, param, n_sel, da)
            else:
                out = self._mix_copies_first(src, xb, param, n_sel, da)
            pieces[a_i] = out if a_i not in pieces else pieces[a_i] + out
        if self._contiguous:
            result = torch.cat([pieces[t_i] if t_i in pieces else x.new_zeros(n, width)
                                for t_i, width in enumerate(self._widths)], dim=1)
        else:
            result = x.new_zeros(n, self.size)
            for a_i, value in pieces.items():
                sel = self._select[a_i]
                idx = (torch.arange(sel.start, sel.stop, device=x.device)
                       if isinstance(sel, slice) else getattr(self, sel))
                result = result.index_add(1, idx, value)
        return (self.scale * result).reshape(*batch, self.size)


class GatedNonlinearity(nn.Module):
    """Maps gated(rep) -> rep: every non-scalar copy times the sigmoid of its own gate
    scalar, scalars through swish. Equivariant because gates are invariant scalars."""

    def __init__(self, rep: Rep, group: Group):
        super().__init__()
        d = group.d
        self.size = rep.size(d)
        self.gates = rep.num_nonscalars()
        gate = torch.empty(self.size, dtype=torch.long)
        offset, next_gate = 0, 0
        for mult, t in rep:
            k = t.dim(d)
            for _ in range(mult):
                if t.rank == 0:
                    gate[offset] = self.gates + offset
                else:
                    gate[offset:offset + k] = next_gate
                    next_gate += 1
                offset += k
        self.register_buffer("gate_index", gate, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.gates:] * torch.sigmoid(x.index_select(-1, self.gate_index))


@contextmanager
def snapped(model: nn.Module, group: int) -> Iterator[nn.Module]:
    """Within the block, every SoftLinear of ``model`` applies P_j W instead of W: the model
    made exactly equivariant to candidate ``group``, for asking what enforcing it costs."""
    layers = [m for m in model.modules() if isinstance(m, SoftLinear)]
    for layer in layers:
        layer.snapped_to = group
    try:
        yield model
    finally:
        for layer in layers:
            layer.snapped_to = None
