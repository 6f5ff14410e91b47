"""Tensor representations of a matrix group: scalars, vectors, duals, tensor products
and direct sums with multiplicities.

A representation here is symbolic: ``5*Scalar + 5*Vector`` means nothing until a group
is chosen, because the size of ``Vector`` is the dimension ``d`` of the space the group
acts on. That is what lets several candidate groups on the same R^d share one layout.
Bind it to a group (``rep(group)``) to get sizes and the matrices ``rho(g)`` and
``drho(A)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce

import torch

from softequiv.groups import Group

VEC, DUAL = 1, -1


def _batched_kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    n, ar, ac = a.shape
    _, br, bc = b.shape
    return (a[:, :, None, :, None] * b[:, None, :, None, :]).reshape(n, ar * br, ac * bc)


@dataclass(frozen=True, order=True)
class TensorType:
    """One irreducible-looking tensor summand: an ordered product of V and V* factors.

    ``factors`` is a tuple of +1 (V) and -1 (V*). The order matters for the row-major
    flattening: ``T(p, q)`` is ``V^{⊗p} ⊗ V*^{⊗q}``.
    """

    factors: tuple[int, ...] = ()

    @property
    def rank(self) -> int:
        return len(self.factors)

    def dim(self, d: int) -> int:
        return d ** self.rank

    def dual(self) -> TensorType:
        return TensorType(tuple(-f for f in self.factors))

    def canonical(self, orthogonal: bool) -> TensorType:
        """For orthogonal groups V* equals V, so types of equal rank act identically."""
        return TensorType((VEC,) * self.rank) if orthogonal else self

    def __str__(self) -> str:
        p, q = self.factors.count(VEC), self.factors.count(DUAL)
        if self.factors == (VEC,) * p + (DUAL,) * q:
            return {(0, 0): "Scalar", (1, 0): "Vector", (0, 1): "Dual"}.get(
                (p, q), f"T({p})" if q == 0 else f"T({p},{q})")
        return "⊗".join("V" if f == VEC else "V*" for f in self.factors)

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        """Batched action ``[n, dim, dim]`` of group elements ``g`` ``[n, d, d]``."""
        n, d, _ = g.shape
        if self.rank == 0:
            return torch.ones(n, 1, 1, dtype=g.dtype, device=g.device)
        dual = torch.linalg.inv(g).transpose(-1, -2) if DUAL in self.factors else None
        mats = [g if f == VEC else dual for f in self.factors]
        return reduce(_batched_kron, mats)

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        """Batched Lie-algebra action ``[n, dim, dim]`` of ``A`` ``[n, d, d]``."""
        n, d, _ = A.shape
        if self.rank == 0:
            return torch.zeros(n, 1, 1, dtype=A.dtype, device=A.device)
        eye = torch.eye(d, dtype=A.dtype, device=A.device).expand(n, d, d)
        total = None
        for i, f in enumerate(self.factors):
            gen = A if f == VEC else -A.transpose(-1, -2)
            term = reduce(_batched_kron, [gen if j == i else eye for j in range(self.rank)])
            total = term if total is None else total + term
        return total


class Rep:
    """A direct sum of tensor types with multiplicities, e.g. ``5*Scalar + 5*Vector``.

    Summands keep their order (it is the data layout). Build them with ``+``, integer
    ``*`` (multiplicity), ``*`` between reps (tensor product), ``**`` (tensor power) and
    ``.dual``; or parse a string with :func:`softequiv.spec.parse_rep`.
    """

    def __init__(self, summands: list[tuple[int, TensorType]]):
        merged: list[tuple[int, TensorType]] = []
        for mult, t in summands:
            if mult <= 0:
                continue
            if merged and merged[-1][1] == t:
                merged[-1] = (merged[-1][0] + mult, t)
            else:
                merged.append((int(mult), t))
        self.summands = merged

    def __iter__(self) -> Iterator[tuple[int, TensorType]]:
        return iter(self.summands)

    def __add__(self, other: Rep) -> Rep:
        return Rep(self.summands + other.summands)

    def __rmul__(self, n: int) -> Rep:
        if not isinstance(n, int):
            return NotImplemented
        return Rep([(n * m, t) for m, t in self.summands])

    def __mul__(self, other: Rep | int) -> Rep:
        if isinstance(other, int):
            return other * self
        return Rep([(m1 * m2, TensorType(t1.factors + t2.factors))
                    for m1, t1 in self.summands for m2, t2 in other.summands])

    def __pow__(self, k: int) -> Rep:
        return reduce(Rep.__mul__, [self] * k, Scalar)

    @property
    def dual(self) -> Rep:
        return Rep([(m, t.dual()) for m, t in self.summands])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rep) and self.summands == other.summands

    def __hash__(self) -> int:
        return hash(tuple(self.summands))

    def __repr__(self) -> str:
        return " + ".join(str(t) if m == 1 else f"{m}*{t}" for m, t in self.summands) or "0"

    def size(self, d: int) -> int:
        """Number of coordinates when the group acts on R^d."""
        return sum(m * t.dim(d) for m, t in self.summands)

    def types(self) -> list[TensorType]:
        """Distinct tensor types, in order of first appearance."""
        return list(dict.fromkeys(t for _, t in self.summands))

    def type_indices(self, d: int) -> dict[TensorType, torch.Tensor]:
        """For each type, the coordinates of all its copies, copy-major ``[n_copies*dim]``."""
        positions: dict[TensorType, list[torch.Tensor]] = {}
        offset = 0
        for m, t in self.summands:
            width = m * t.dim(d)
            positions.setdefault(t, []).append(torch.arange(offset, offset + width))
            offset += width
        return {t: torch.cat(p) for t, p in positions.items()}

    def num_nonscalars(self) -> int:
        """Copies of non-scalar summands: one gate each in a gated nonlinearity."""
        return sum(m for m, t in self.summands if t.rank > 0)

    def _block_diag(self, mats: dict[TensorType, torch.Tensor], n: int, d: int) -> torch.Tensor:
        size = self.size(d)
        first = next(iter(mats.values()))
        out = torch.zeros(n, size, size, dtype=first.dtype, device=first.device)
        offset = 0
        for m, t in self.summands:
            k = t.dim(d)
            for _ in range(m):
                out[:, offset:offset + k, offset:offset + k] = mats[t]
                offset += k
        return out

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        """Batched action ``[n, size, size]`` of elements ``g`` (``[n, d, d]`` or ``[d, d]``)."""
        g = g if g.dim() == 3 else g[None]
        return self._block_diag({t: t.rho(g) for t in self.types()}, g.shape[0], g.shape[-1])

    def act(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """rho(g_i) v_i for each row: elements ``g`` ``[n, d, d]`` on vectors ``v``
        ``[n, size]`` (rho in ``v``'s dtype and device)."""
        return (self.rho(g).to(v.dtype).to(v.device) @ v[..., None])[..., 0]

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        """Batched Lie-algebra action ``[n, size, size]`` of ``A`` (``[n, d, d]`` or ``[d, d]``)."""
        A = A if A.dim() == 3 else A[None]
        return self._block_diag({t: t.drho(A) for t in self.types()}, A.shape[0], A.shape[-1])

    def __call__(self, group: Group) -> BoundRep:
        return BoundRep(self, group)


class BoundRep:
    """A representation bound to a group: it knows its size and how elements act."""

    def __init__(self, rep: Rep, group: Group):
        self.rep, self.group = rep, group

    @property
    def size(self) -> int:
        return self.rep.size(self.group.d)

    def rho(self, g: torch.Tensor) -> torch.Tensor:
        return self.rep.rho(g)

    def drho(self, A: torch.Tensor) -> torch.Tensor:
        return self.rep.drho(A)

    def __repr__(self) -> str:
        return f"({self.rep}) of {self.group.name}"


def T(p: int, q: int = 0) -> Rep:
    """The tensor rep V^{⊗p} ⊗ V*^{⊗q}."""
    return Rep([(1, TensorType((VEC,) * p + (DUAL,) * q))])


Scalar = T(0)
Vector = T(1)
Dual = T(0, 1)


def _binomial_split(total: int, rank: int) -> list[int]:
    """Split ``total`` copies over T(p, rank-p), p = 0..rank, in proportion to C(rank, p)."""
    weights = [math.comb(rank, p) for p in range(rank + 1)]
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(rank + 1), key=lambda p: exact[p] - counts[p], reverse=True)
    for p in order[: total - sum(counts)]:
        counts[p] += 1
    return counts


def uniform_rep(ch: int, group: Group) -> Rep:
    """A hidden rep of about ``ch`` coordinates spread evenly over tensor ranks.

    Rule: repeatedly take the largest rank r with (r+1) * d^r <= remaining budget and add
    one copy of T(r), d copies of T(r-1), ..., d^r scalars, so every rank 0..r gets d^r
    coordinates; subtract (r+1) * d^r and repeat until nothing is left. For orthogonal
    groups T(r) is used as is; otherwise the copies of rank r are split over T(p, r-p) in
    proportion to the binomial coefficients, since V and V* then differ. The total size is
    exactly ``ch`` (the final step always fits with r = 0). On R^1 every T(r) has one
    coordinate, so the rule alone would reach rank ch - 2; ranks stop at 2 there.
    """
    d = group.d
    counts: dict[int, int] = {}
    remaining = int(ch)
    while remaining > 0:
        r = 0
        while (r + 2) * d ** (r + 1) <= remaining and (d > 1 or r < 2):
            r += 1
        for rank in range(r + 1):
            counts[rank] = counts.get(rank, 0) + d ** (r - rank)
        remaining -= (r + 1) * d ** r
    summands: list[tuple[int, TensorType]] = []
    orthogonal = group.is_orthogonal
    for rank in sorted(counts):
        if orthogonal or rank == 0:
            summands.append((counts[rank], TensorType((VEC,) * rank)))
        else:
            for p, n in enumerate(_binomial_split(counts[rank], rank)):
                summands.append((n, TensorType((VEC,) * p + (DUAL,) * (rank - p))))
    return Rep(summands)
