"""Invariant features that polynomial tensor layers cannot reach: norm ratios for ambient
groups that scale, distances for rigid motions on homogeneous coordinates.

Both layers run features first (``[features, batch]``, as :class:`SoftEMLP` runs its
blocks), each as one autograd function with a hand-written backward pass: their
arithmetic is a few hundred products per sample, so their cost is the number of
operations, and autograd records about three times as many as the arithmetic needs
(index gathers whose backward zero-fills a buffer each, one node per elementwise step).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from softequiv.groups import Group
from softequiv.reps import VEC, Rep, TensorType


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
        """The invariant features of x ``[..., size]`` (what the scalars receive, before
        mixing), ``[..., features]``."""
        xt = x.reshape(-1, x.shape[-1]).T.contiguous()
        return self.features_columns(xt).T.reshape(*x.shape[:-1], -1)

    def features_columns(self, xt: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, size = x.shape[:-1], x.shape[-1]
        return self.forward_columns(x.reshape(-1, size).T).T.reshape(*batch, size)

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on features-first x ``[size, n]``."""
        raise NotImplementedError


class _Ratios(NamedTuple):
    """What :meth:`NormRatios.ratios_columns` computes on the way, for the backward pass."""

    left: torch.Tensor
    right: torch.Tensor
    gram: torch.Tensor
    mean_norm: torch.Tensor
    powers: torch.Tensor
    squared_scale: torch.Tensor
    type_scale: torch.Tensor
    factor: torch.Tensor
    ratios: torch.Tensor


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
        weights = torch.tensor([float(sum(t.factors)) for _, t, _, _ in self._types])[:, None]
        self.register_buffer("_type_weight", weights, persistent=False)
        self.register_buffer("_exponent", torch.where(weights > 0, 1 / weights, 0.0),
                             persistent=False)
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

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        if not self._types:
            return x
        outer_mix = self.outer_mix if self._outer is not None else None
        return _NormRatiosFunction.apply(x.contiguous(), self.mix, outer_mix, self)

    def features_columns(self, xt: torch.Tensor) -> torch.Tensor:
        return self.ratios_columns(xt).ratios

    def ratios_columns(self, xt: torch.Tensor) -> _Ratios:
        """The invariant norm ratios ``[features, n]`` of xt ``[size, n]`` (features
        first), the squared reference scale r^2 ``[n]`` and the steps between.

        Each type's Gram entries times r^{-2w} (w its weight), divided by one plus their
        mean diagonal; r^2 sums, over the positive-weight types, their mean squared norm
        to the power 1/w. Every entry of a type shares its weight, so the scale factors
        are computed per type and gathered once."""
        left, right = xt.index_select(0, self._left), xt.index_select(0, self._right)
        gram = xt.new_zeros(len(self._owner), xt.shape[1]).index_add_(0, self._entry,
                                                                      left * right)
        mean_norm = (self._diagonal.to(xt.dtype).T @ gram) / self._copies.to(xt.dtype)[:, None]
        exponent = self._exponent.to(xt.dtype)
        powers = (mean_norm + self.TINY).pow(exponent)
        squared_scale = self.TINY + (powers * (exponent > 0)).sum(0)
        type_scale = squared_scale.pow(-self._type_weight.to(xt.dtype))
        factor = type_scale / (1 + mean_norm * type_scale)
        ratios = gram * factor.index_select(0, self._owner)
        return _Ratios(left, right, gram, mean_norm, powers, squared_scale, type_scale, factor,
                       ratios)


class _NormRatiosFunction(torch.autograd.Function):
    """:class:`NormRatios` on features-first x: x plus the mixed ratios in its leading
    scalars and the mixed outer products of Vector copies, divided by r^2, in the
    weight-0 rank-2 copies."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mix: torch.Tensor,  # noqa: ANN001
                outer_mix: torch.Tensor | None, layer: NormRatios) -> torch.Tensor:
        n = x.shape[1]
        parts = layer.ratios_columns(x)
        out = x.clone()
        outer: tuple = (None, None, None, None)
        if outer_mix is not None:
            left = x.index_select(0, layer._outer_left)
            right = x.index_select(0, layer._outer_right)
            products = (left * right).view(outer_mix.shape[0], -1)
            mixed = (outer_mix.T @ products).view(-1, n) / parts.squared_scale
            out.index_add_(0, getattr(layer, layer._outer[1]), mixed)
            outer = (left, right, products, mixed)
        out[:layer.scalars].addmm_(mix.T, parts.ratios)
        ctx.layer = layer
        ctx.save_for_backward(mix, outer_mix, *outer, *parts)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205 - autograd's signature
        layer = ctx.layer
        mix, outer_mix, outer_left, outer_right, products, mixed, *rest = ctx.saved_tensors
        p = _Ratios(*rest)
        grad = grad.contiguous()
        grad_x = grad.clone()
        to_scalars = grad[:layer.scalars]
        grad_mix = p.ratios @ to_scalars.T
        grad_ratios = mix @ to_scalars
        grad_gram = grad_ratios * p.factor.index_select(0, layer._owner)
        grad_factor = torch.zeros_like(p.factor).index_add_(0, layer._owner,
                                                            grad_ratios * p.gram)
        shrink = 1 / (1 + p.mean_norm * p.type_scale)
        weight = layer._type_weight.to(grad.dtype)
        grad_scale = -(grad_factor * shrink * p.factor * weight).sum(0)
        grad_mean = -grad_factor * p.factor.square()
        grad_outer_mix = None
        if outer_mix is not None:
            into = getattr(layer, layer._outer[1])
            grad_mixed = grad.index_select(0, into)
            grad_scale -= (grad_mixed * mixed).sum(0)
            scaled = (grad_mixed / p.squared_scale).view(outer_mix.shape[1], -1)
            grad_outer_mix = products @ scaled.T
            grad_products = (outer_mix @ scaled).view(-1, grad.shape[1])
            grad_x.index_add_(0, layer._outer_left, grad_products * outer_right)
            grad_x.index_add_(0, layer._outer_right, grad_products * outer_left)
        grad_scale = grad_scale / p.squared_scale
        exponent = layer._exponent.to(grad.dtype)
        grad_mean += grad_scale * p.powers * exponent / (p.mean_norm + layer.TINY)
        grad_gram += layer._diagonal.to(grad.dtype) @ (grad_mean
                                                       / layer._copies.to(grad.dtype)[:, None])
        grad_products = grad_gram.index_select(0, layer._entry)
        grad_x.index_add_(0, layer._left, grad_products * p.right)
        grad_x.index_add_(0, layer._right, grad_products * p.left)
        return grad_x, grad_mix, grad_outer_mix, None


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
        gathers = []
        for name, copies, dim in self._points:
            idx = getattr(self, name).view(copies, dim)
            rows, cols = torch.triu_indices(copies, copies, offset=1)
            p_row, p_col = idx[rows, :-1], idx[cols, :-1]
            h_row, h_col = (idx[i, -1:].expand_as(p_row) for i in (rows, cols))
            gathers.append(torch.stack([h_col, p_row, h_row, p_col]).reshape(4, -1))
        gather = torch.cat(gathers, 1) if gathers else torch.zeros(4, 0, dtype=torch.long)
        self.register_buffer("_gather", gather.reshape(-1), persistent=False)
        self._coordinates = self._points[0][2] - 1 if self._points else 0

    def feature_count(self) -> int:
        return sum(copies * (copies - 1) // 2 for _, t, copies, _ in self._types
                   if t.factors == (VEC,))

    def forward_columns(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mix.numel():
            return x
        return _DistancesFunction.apply(x.contiguous(), self.mix, self)

    def features_columns(self, xt: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.distances_columns(xt)[2])

    def distances_columns(self, xt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The gathered coordinates ``[4, pairs * (d - 1), n]`` (h_k, p_i, h_i, p_k for
        every pair i < k and coordinate of p), the directions h_k p_i - h_i p_k and the
        squared distances D_ik ``[pairs, n]`` of xt ``[size, n]``."""
        n = xt.shape[1]
        gathered = xt.index_select(0, self._gather).view(4, -1, n)
        direction = gathered[0] * gathered[1] - gathered[2] * gathered[3]
        squared = direction.square().view(-1, self._coordinates, n).sum(1)
        return gathered, direction, squared


class _DistancesFunction(torch.autograd.Function):
    """:class:`AffineDistances` on features-first x: x plus the mixed log(1 + D_ik) in its
    leading scalars."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mix: torch.Tensor,  # noqa: ANN001
                layer: AffineDistances) -> torch.Tensor:
        gathered, direction, squared = layer.distances_columns(x)
        features = torch.log1p(squared)
        out = x.clone()
        out[:layer.scalars].addmm_(mix.T, features)
        ctx.layer = layer
        ctx.save_for_backward(mix, gathered, direction, squared, features)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205 - autograd's signature
        layer = ctx.layer
        mix, gathered, direction, squared, features = ctx.saved_tensors
        grad = grad.contiguous()
        n = grad.shape[1]
        to_scalars = grad[:layer.scalars]
        grad_mix = features @ to_scalars.T
        grad_squared = (mix @ to_scalars) / (1 + squared)
        grad_direction = 2 * (direction.view(-1, layer._coordinates, n)
                              * grad_squared[:, None]).view(-1, n)
        sign = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=grad.dtype, device=grad.device)
        partner = gathered[[1, 0, 3, 2]] * sign[:, None, None]
        grad_x = grad.clone().index_add_(0, layer._gather,
                                         (partner * grad_direction).view(-1, n))
        return grad_x, grad_mix, None


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
