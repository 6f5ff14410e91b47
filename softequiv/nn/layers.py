"""Layers of soft and hard equivariant networks.

Only :class:`SoftLinear` can break a symmetry: its weights are dense, and per candidate
group it carries a projector that measures (and, for hard or residual-pathway models,
imposes) equivariance. :class:`EquivariantBilinear`, the :class:`InvariantScalars`
features and :class:`GatedNonlinearity` are exactly equivariant under the ambient group,
hence under every subgroup.
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
from softequiv.reps import VEC, Rep, Scalar, TensorType
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


class InvariantScalars(nn.Module):
    """Adds invariant features that polynomial tensor layers cannot reach to the leading
    scalars (gates and scalars) of a gated rep, through a learned map.

    Subclasses compute the features from the copies of the rep's tensor types; they must
    be invariant under the ambient group, hence under every candidate subgroup, so the
    regularizers R_j still measure the whole network's departure from G_j.
    """

    def __init__(self, rep: Rep, group: Group):
        super().__init__()
        d = group.d
        first_mult, first_type = next(iter(rep))
        self.scalars = first_mult if first_type.rank == 0 else 0
        self._types: list[tuple[str, TensorType, int, int]] = []
        for t_i, (t, idx) in enumerate(rep.type_indices(d).items()):
            if t.rank > 0:
                self.register_buffer(f"idx{t_i}", idx, persistent=False)
                self._types.append((f"idx{t_i}", t, len(idx) // t.dim(d), t.dim(d)))
        features = self.feature_count()
        self.mix = nn.Parameter(torch.randn(features, self.scalars) / math.sqrt(max(features, 1)))

    def feature_count(self) -> int:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def type_copies(self, x: torch.Tensor, name: str, copies: int, dim: int) -> torch.Tensor:
        """The copies of one type, ``[..., copies, dim]``."""
        return x.index_select(-1, getattr(self, name)).unflatten(-1, (copies, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mix.numel():
            return x
        return self.add_to_scalars(x, self.features(x) @ self.mix)

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on features-first x ``[size, n]``."""
        return self.forward(x.T).T

    def add_to_scalars(self, x: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
        """x with ``added`` summed into its leading scalars."""
        return torch.cat([x[..., :self.scalars] + added, x[..., self.scalars:]], dim=-1)


class NormRatios(InvariantScalars):
    """Scale-free features for a conformal ambient group (rotations, reflections and
    scalings s): invariant norm ratios for the scalars, and normalized outer products of
    Vector copies for the weight-0 rank-2 type.

    A type's weight w is its V factors minus its V* factors; under s R (R orthogonal) a
    copy of it transforms as s^w R^{⊗rank}. A reference scale r, from the positive-weight
    types (r^2 is the sum over them of their mean squared norm to the power 1/w), maps to
    s r. So the Gram matrix of a type's copies times r^{-2w} is exactly invariant, and an
    outer product v_i v_k^T / r^2 of Vector copies transforms like V ⊗ V* (R M R^T).

    Why: polynomial layers only raise weights, so without these features a network made
    scale-equivariant (the Scaling candidate's subspace) could compute nothing but
    constants, and with the ratios alone only rotation invariants. The outer products give
    it weight-0 tensors whose every entry its linear maps can read, so it reaches
    scale-invariant functions that are not rotation-invariant. All features are bounded
    (|v_i| <= sqrt(copies) r), and a type whose content is small gives small features, so
    weights that a regularizer holds near a subspace change the function little. Each
    type's ratios are divided by one plus their mean diagonal (invariant too) to stay
    O(1).
    """

    TINY = 1e-20
    """Guards the reference scale and its powers against an all-zero layer."""

    def __init__(self, rep: Rep, group: Group):
        super().__init__(rep, group)
        vectors = [(pos, copies) for pos, (_, t, copies, _) in enumerate(self._types)
                   if t.factors == (VEC,)]
        balanced = [(name, copies) for name, t, copies, _ in self._types
                    if t.rank == 2 and sum(t.factors) == 0]
        self._outer: tuple[int, str] | None = None
        if vectors and balanced:
            (source, n_vec), (target, n_out) = vectors[0], balanced[0]
            self._outer = (source, target)
            pairs = n_vec * (n_vec + 1) // 2
            self.outer_mix = nn.Parameter(torch.randn(pairs, n_out) / math.sqrt(pairs))
        self._build_plan()

    def _build_plan(self) -> None:
        """Index arrays that compute every type's Gram entries (upper triangles, row-major,
        type after type: the order of ``mix``'s rows) as one gather-multiply-sum over the
        input's coordinates, and the outer products likewise."""
        left, right, entry, owner, averaging = [], [], [], [], []
        offset = 0
        for t_i, (name, _, copies, dim) in enumerate(self._types):
            idx = getattr(self, name).view(copies, dim)
            rows, cols = torch.triu_indices(copies, copies)
            left.append(idx[rows].reshape(-1))
            right.append(idx[cols].reshape(-1))
            entry.append((offset + torch.arange(len(rows))).repeat_interleave(dim))
            owner.append(torch.full((len(rows),), t_i))
            column = torch.zeros(len(rows), len(self._types))
            column[rows == cols, t_i] = 1.0
            averaging.append(column)
            offset += len(rows)
        empty = torch.zeros(0, dtype=torch.long)
        for name, parts in (("_left", left), ("_right", right), ("_entry", entry),
                            ("_owner", owner)):
            self.register_buffer(name, torch.cat(parts) if parts else empty, persistent=False)
        # exact 0/1 entries: they stay exact under .float() / .double()
        self.register_buffer("_diagonal", torch.cat(averaging) if averaging else torch.zeros(
            0, 0), persistent=False)
        self.register_buffer("_copies", torch.tensor([c for _, _, c, _ in self._types],
                                                     dtype=torch.long), persistent=False)
        self.register_buffer("_type_weight", torch.tensor(
            [sum(t.factors) for _, t, _, _ in self._types], dtype=torch.long), persistent=False)
        if self._outer is not None:
            source, _ = self._outer
            name, _, copies, dim = self._types[source]
            idx = getattr(self, name).view(copies, dim)
            rows, cols = torch.triu_indices(copies, copies)
            self.register_buffer("_outer_left", idx[rows][:, :, None].expand(-1, dim, dim)
                                 .reshape(-1), persistent=False)
            self.register_buffer("_outer_right", idx[cols][:, None, :].expand(-1, dim, dim)
                                 .reshape(-1), persistent=False)

    def feature_count(self) -> int:
        return sum(copies * (copies + 1) // 2 for _, _, copies, _ in self._types)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._types:
            return x
        batch, size = x.shape[:-1], x.shape[-1]
        return self.forward_columns(x.reshape(-1, size).T).T.reshape(*batch, size)

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        if not self._types:
            return x
        # features first: every gather below takes whole contiguous rows of the batch
        xt = x.contiguous()
        ratios, squared_scale = self._ratios_and_scale(xt)
        if self._outer is None:
            out = xt.clone()
        else:
            out = xt.index_add(0, getattr(self, self._outer[1]),
                               self._outer_products(xt, squared_scale))
        out[:self.scalars] += self.mix.T @ ratios
        return out

    def _outer_products(self, xt: torch.Tensor, squared_scale: torch.Tensor) -> torch.Tensor:
        """The learned mix of v_i v_k^T / r^2 (i <= k) over the Vector copies v: what the
        weight-0 rank-2 copies receive, ``[their copies * d * d, n]`` (divided by r^2 after
        mixing, which is the same and divides fewer entries)."""
        n = xt.shape[1]
        products = xt.index_select(0, self._outer_left) * xt.index_select(0, self._outer_right)
        mixed = self.outer_mix.T @ products.view(self.outer_mix.shape[0], -1)
        return mixed.view(-1, n) / squared_scale

    def _ratios_and_scale(self, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The invariant norm ratios ``[features, n]`` and the squared reference scale r^2
        ``[n]`` of xt ``[size, n]`` (features first).

        Each type's Gram entries times r^{-2w} (w its weight), divided by one plus their
        mean diagonal; r^2 sums, over the positive-weight types, their mean squared norm
        to the power 1/w. Every entry of a type shares its weight, so the scale factors
        are computed per type and gathered once."""
        products = xt.index_select(0, self._left) * xt.index_select(0, self._right)
        gram = xt.new_zeros(len(self._owner), xt.shape[1]).index_add(0, self._entry, products)
        diagonal, copies = self._diagonal.to(xt.dtype).T, self._copies.to(xt.dtype)[:, None]
        weight = self._type_weight.to(xt.dtype)[:, None]
        positive = self._type_weight[:, None] > 0
        mean_norm = (diagonal @ gram) / copies
        powers = (mean_norm + self.TINY).pow(
            torch.where(positive, 1 / weight, torch.zeros_like(weight)))
        squared_scale = self.TINY + torch.where(positive, powers,
                                                torch.zeros_like(powers)).sum(0)
        type_scale = squared_scale.pow(-weight)
        factor = type_scale / (1 + mean_norm * type_scale)
        return gram * factor.index_select(0, self._owner), squared_scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The invariant norm ratios of x (what the scalars receive, before mixing)."""
        xt = x.reshape(-1, x.shape[-1]).T.contiguous()
        return self._ratios_and_scale(xt)[0].T.reshape(*x.shape[:-1], -1)


class AffineDistances(InvariantScalars):
    """Distances for a rigid-motion ambient group acting on homogeneous coordinates
    (rotations and translations, e.g. SE(3) on (x, 1)).

    A Vector copy v = (p, h) moves to (R p + h t, h), so h_k p_i - h_i p_k is a direction
    that only rotates and its squared length D_ik is invariant: for copies that are points
    (h = 1) it is their squared distance. No SE(3)-invariant bilinear form exists on
    homogeneous vectors, so polynomial tensor layers cannot compute distances (an EMLP of
    SE(3) outputs constants); the features log(1 + D_ik) can. They are smooth and small
    for small content, so weights held near a subspace change the function little.
    """

    def __init__(self, rep: Rep, group: Group):
        super().__init__(rep, group)
        self._points = [(name, copies, dim) for name, t, copies, dim in self._types
                        if t.factors == (VEC,) and copies > 1]

    def feature_count(self) -> int:
        return sum(copies * (copies - 1) // 2 for _, t, copies, _ in self._types
                   if t.factors == (VEC,))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for name, copies, dim in self._points:
            v = self.type_copies(x, name, copies, dim)
            p, h = v[..., :-1], v[..., -1:]
            rows, cols = torch.triu_indices(copies, copies, offset=1, device=x.device)
            direction = h[..., cols, :] * p[..., rows, :] - h[..., rows, :] * p[..., cols, :]
            features.append(torch.log1p(direction.square().sum(-1)))
        return torch.cat(features, dim=-1)


def invariant_scalars(rep: Rep, group: Group) -> InvariantScalars | None:
    """The invariant features a gated rep of ``group`` needs beyond polynomial layers:
    norm ratios for groups that scale, distances for rigid motions on homogeneous
    coordinates; None for orthogonal groups (their polynomial invariants suffice)."""
    if group.is_orthogonal:
        return None
    if group.is_conformal:
        return NormRatios(rep, group)
    if group.is_rigid_affine:
        return AffineDistances(rep, group)
    return None


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
