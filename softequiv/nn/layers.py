"""Layers of soft and hard equivariant networks.

Only :class:`SoftLinear` can break a symmetry: its weights are dense, and per candidate
group it carries a projector that measures (and, for hard or residual-pathway models,
imposes) equivariance. :class:`EquivariantBilinear`, the invariant features of
:mod:`softequiv.nn.invariants` and :class:`GatedNonlinearity` are exactly equivariant
under the ambient group, hence under every subgroup.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from softequiv.groups import Group
from softequiv.nn.bilinear import BilinearFunction, BilinearPlan, Term
from softequiv.nn.soft import SoftLayer
from softequiv.reps import Rep, Scalar, TensorType
from softequiv.solver import DEFAULT_TOL, Projector


def gated(rep: Rep) -> Rep:
    """One gate scalar per non-scalar summand copy, followed by ``rep`` (gates first, so
    they merge with rep's leading scalars and every type stays contiguous)."""
    return rep.num_nonscalars() * Scalar + rep


class SoftLinear(SoftLayer):
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

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on features-first x ``[n_in, n]``: ``W x + b``, ``[n_out, n]``."""
        weight, bias = self.effective_weight()
        return torch.addmm(bias[:, None], weight, x)

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
    Evaluated features first by :class:`~softequiv.nn.bilinear.BilinearFunction`.
    """

    def __init__(self, rep: Rep, group: Group, *, scale: float = 0.1):
        super().__init__()
        d, self.scale = group.d, scale
        orthogonal = group.is_orthogonal
        self.size = rep.size(d)
        index = rep.type_indices(d)
        order = torch.cat(list(index.values()))
        self._permuted = not torch.equal(order, torch.arange(self.size))
        if self._permuted:  # the plan needs every type's coordinates contiguous
            self.register_buffer("_order", order, persistent=False)
            self.register_buffer("_unorder", torch.argsort(order), persistent=False)
        types = list(index)
        copies = {t.canonical(orthogonal): t_i for t_i, t in enumerate(types) if t.rank > 0}
        self.params = nn.ParameterList()
        terms: list[Term] = []
        for a_i, a in enumerate(types):
            for b_i, b in enumerate(types):
                key = TensorType(a.factors + b.dual().factors).canonical(orthogonal)
                if key.rank == 0 or key not in copies:
                    continue
                s_i = copies[key]
                dim_t = types[s_i].dim(d)
                n_sel = min(len(index[types[s_i]]) // dim_t, dim_t)
                da, db = a.dim(d), b.dim(d)
                na, nb = len(index[a]) // da, len(index[b]) // db
                self.params.append(nn.Parameter(torch.randn(na, nb, n_sel) / math.sqrt(nb * n_sel)))
                terms.append(Term(a_i, b_i, s_i, n_sel, da, db, na, nb,
                                  Term.cheaper_order(n_sel, da, db, na, nb)))
        offsets = [0]
        for idx in index.values():
            offsets.append(offsets[-1] + len(idx))
        self.plan = BilinearPlan(offsets, terms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]
        out = self.forward_columns(x.reshape(-1, self.size).T)
        return out.T.reshape(*batch, self.size)

    def forward_columns(self, x: torch.Tensor, *, residual: bool = False) -> torch.Tensor:
        """The layer on features-first x ``[size, n]``; with ``residual``, x plus it."""
        if self._permuted:
            x = x.index_select(0, self._order)
        out = BilinearFunction.apply(x.contiguous(), self.plan, self.scale, residual,
                                     *self.params)
        return out.index_select(0, self._unorder) if self._permuted else out


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
        self._sigmoids = int(gate.max()) + 1 if len(gate) else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]
        out = self.forward_columns(x.reshape(-1, x.shape[-1]).T)
        return out.T.reshape(*batch, self.size)

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on features-first x ``[gates + size, n]``, ``[size, n]``."""
        return _Gate.apply(x, self.gate_index, self.gates, self._sigmoids)


class _Gate(torch.autograd.Function):
    """``x[gates:] * sigmoid(x[gate_index])`` on features-first x (every index below
    ``sigmoids``): the sigmoid taken once per gate and scalar row, and a backward pass that
    writes the input gradient once."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gate_index: torch.Tensor,  # noqa: ANN001
                gates: int, sigmoids: int) -> torch.Tensor:
        sig = torch.sigmoid(x[:sigmoids])
        expanded = sig.index_select(0, gate_index)
        ctx.gates = gates
        ctx.save_for_backward(x, sig, expanded, gate_index)
        return x[gates:] * expanded

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205 - autograd's signature
        x, sig, expanded, gate_index = ctx.saved_tensors
        grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        torch.mul(grad, expanded, out=grad_x[ctx.gates:])
        grad_x[:ctx.gates].zero_()
        grad_sig = torch.zeros_like(sig).index_add_(0, gate_index, grad * x[ctx.gates:])
        grad_x[:len(sig)] += torch.ops.aten.sigmoid_backward(grad_sig, sig)
        return grad_x, None, None, None


@contextmanager
def snapped(model: nn.Module, group: int) -> Iterator[nn.Module]:
    """Within the block, every soft layer of ``model`` applies P_j W instead of W: the model
    made exactly equivariant to candidate ``group``, for asking what enforcing it costs."""
    layers = [m for m in model.modules() if isinstance(m, SoftLayer)]
    for layer in layers:
        layer.snapped_to = group
    try:
        yield model
    finally:
        for layer in layers:
            layer.snapped_to = None
