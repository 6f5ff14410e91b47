"""Matrix groups acting on R^d, each given only by its generators.

A group is its Lie-algebra generators (the continuous part, reached by ``exp``) and
its discrete generators (the parts ``exp`` does not reach). That is all the solver
needs to find equivariant maps, and it lets subgroups, embeddings, unions and products
be built in a few lines. Several groups may act on the same R^d (``O2xy`` and ``O2yz``
both act on R^3), which is how mixed candidate symmetries share one tensor layout.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from functools import cached_property

import numpy as np
import torch

Array = np.ndarray

ELEMENT_LIMIT = 100_000
"""The most elements :meth:`Group.elements` lists before calling a group infinite."""


def _element_key(g: Array) -> bytes:
    return np.round(g, 9).tobytes()


def _stack(mats: Sequence[Array], d: int) -> Array:
    if len(mats) == 0:
        return np.zeros((0, d, d))
    return np.stack([np.asarray(m, dtype=np.float64) for m in mats])


def _unit(d: int, i: int, j: int) -> Array:
    e = np.zeros((d, d))
    e[i, j] = 1.0
    return e


class Group:
    """A matrix group acting on R^d.

    ``lie`` is ``[m, d, d]`` (Lie-algebra generators) and ``discrete`` is ``[r, d, d]``
    (discrete generators), both float64 numpy arrays. ``name`` is for people; identity
    for caching is ``key``, a hash of the generators, so two groups with the same name
    but different generators (O(2) on different planes) never share a cached basis.
    """

    def __init__(self, lie: Sequence[Array] | Array, discrete: Sequence[Array] | Array, d: int,
                 name: str):
        self.d = int(d)
        self.lie = _stack(list(lie), self.d)
        self.discrete = _stack(list(discrete), self.d)
        self.name = name
        for label, gens in (("Lie", self.lie), ("discrete", self.discrete)):
            if gens.shape[1:] != (self.d, self.d):
                raise ValueError(f"{name}: {label} generators must be {self.d}x{self.d}, "
                                 f"got {gens.shape[1:]}")

    @cached_property
    def key(self) -> str:
        """Hash of the generators: the identity of the group for caches."""
        h = hashlib.sha1()
        h.update(np.array([self.d, len(self.lie), len(self.discrete)]).tobytes())
        h.update(np.round(self.lie, 12).tobytes())
        h.update(np.round(self.discrete, 12).tobytes())
        return h.hexdigest()

    @cached_property
    def is_orthogonal(self) -> bool:
        """True when every element is orthogonal, so the dual rep V* equals V."""
        lie_ok = all(np.allclose(a, -a.T, atol=1e-12) for a in self.lie)
        disc_ok = all(np.allclose(h @ h.T, np.eye(self.d), atol=1e-12) for h in self.discrete)
        return lie_ok and disc_ok

    @cached_property
    def is_conformal(self) -> bool:
        """True when every element is a positive multiple of an orthogonal matrix (rotations,
        reflections and scalings), so tensor norms are invariant up to a common power of s."""
        eye = np.eye(self.d)
        lie_ok = all(np.allclose(a + a.T, (np.trace(a) * 2 / self.d) * eye, atol=1e-12)
                     for a in self.lie)
        disc_ok = all(np.allclose(h @ h.T, (np.trace(h @ h.T) / self.d) * eye, atol=1e-12)
                      for h in self.discrete)
        return lie_ok and disc_ok

    @cached_property
    def is_rigid_affine(self) -> bool:
        """True when the group acts on homogeneous coordinates (x, 1) by rigid motions:
        every element is [[R, t], [0, 1]] with R orthogonal (SE(n), Rot(n), Trans(n))."""
        n = self.d - 1
        last = np.eye(self.d)[-1]
        lie_ok = all(np.allclose(a[-1], 0, atol=1e-12)
                     and np.allclose(a[:n, :n], -a[:n, :n].T, atol=1e-12) for a in self.lie)
        disc_ok = all(np.allclose(h[-1], last, atol=1e-12)
                      and np.allclose(h[:n, :n] @ h[:n, :n].T, np.eye(n), atol=1e-12)
                      for h in self.discrete)
        return n >= 1 and lie_ok and disc_ok

    @property
    def is_finite(self) -> bool:
        """True when the group has no continuous part, so :meth:`elements` can list it
        (provided the discrete generators generate a finite group)."""
        return len(self.lie) == 0

    def elements(self, limit: int = ELEMENT_LIMIT) -> Array:
        """Every element, float64 ``[n, d, d]``, the identity first, by closing the discrete
        generators under multiplication (exact for groups of permutation-like matrices).

        Raises ValueError for a group with a continuous part, or whose closure passes
        ``limit`` elements (an infinite or very large discrete group).
        """
        if not self.is_finite:
            raise ValueError(f"{self.name} is not finite (it has Lie-algebra generators), "
                             "so it has no element list")
        cached = self.__dict__.get("_elements")
        if cached is not None and len(cached) <= limit:
            return cached
        found = {_element_key(np.eye(self.d)): np.eye(self.d)}
        frontier = list(found.values())
        while frontier:
            grown = []
            for g in frontier:
                for h in self.discrete:
                    gh = g @ h
                    key = _element_key(gh)
                    if key not in found:
                        if not np.abs(gh).max() < 1e6:
                            raise ValueError(f"{self.name} is infinite (its elements grow "
                                             "without bound): no element list")
                        found[key] = gh
                        grown.append(gh)
                        if len(found) > limit:
                            raise ValueError(f"{self.name} has more than {limit} elements "
                                             "(or is infinite): no element list")
            frontier = grown
        out = np.stack(list(found.values()))
        out.setflags(write=False)
        self.__dict__["_elements"] = out
        return out

    def contains(self, other: Group) -> bool:
        """True when every element of the finite group ``other`` is one of this finite
        group's (both list their elements, :meth:`elements`)."""
        mine = {_element_key(g) for g in self.elements()}
        return all(_element_key(g) in mine for g in other.elements())

    def index_of(self, g: Array, atol: float = 1e-9) -> int:
        """Position of the element ``g`` in :meth:`elements`; ValueError if it is not one."""
        hits = np.flatnonzero(np.abs(self.elements() - np.asarray(g)).max(axis=(1, 2)) <= atol)
        if not len(hits):
            raise ValueError(f"the matrix {np.asarray(g).tolist()} is not an element of "
                             f"{self.name}")
        return int(hits[0])

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __mul__(self, other: Group) -> Group:
        return DirectProduct(self, other)

    def _lie_scale(self) -> float:
        """Std of the random Lie-algebra coefficients used by ``sample``."""
        return 1.0

    def _word_length(self) -> int:
        """How many random discrete generators ``sample`` multiplies together."""
        return 1 if len(self.discrete) <= 1 else 2 * len(self.discrete) + 3

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        return self.exp_sample(n, self._lie_scale(), rng)

    def exp_sample(self, n: int, scales: float | Array, rng: np.random.Generator) -> Array:
        """``n`` elements ``[n, d, d]``: exp of a random Lie-algebra element (coefficient
        standard deviations ``scales``, one or one per generator) times a random word in
        the discrete generators."""
        g = np.tile(np.eye(self.d), (n, 1, 1))
        if len(self.lie):
            coeffs = rng.normal(scale=scales, size=(n, len(self.lie)))
            algebra = torch.from_numpy(np.tensordot(coeffs, self.lie, axes=1))
            g = torch.linalg.matrix_exp(algebra).numpy()
        if len(self.discrete):
            for _ in range(self._word_length()):
                pick = self.discrete[rng.integers(len(self.discrete), size=n)]
                use = rng.random(n) < 0.5
                g = np.where(use[:, None, None], g @ pick, g)
        return g

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` random group elements as a float64 tensor ``[n, d, d]``.

        For compact groups with a known Haar measure the draw is uniform; otherwise it is
        exp of a random Lie-algebra element times a random word in the discrete
        generators, which covers the group (connected components included) for testing.
        Deterministic given ``generator``.
        """
        return torch.from_numpy(self._sample_numpy(int(n), _numpy_rng(generator)))

    def sample_near_identity(self, n: int, scales: float | Array,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` elements near the identity, float64 ``[n, d, d]``: ``exp_sample`` with
        Lie coefficients of standard deviation ``scales``. Deterministic given
        ``generator``."""
        return torch.from_numpy(self.exp_sample(int(n), scales, _numpy_rng(generator)))


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator seeded from one draw of ``generator``."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator).item()))


def _antisymmetric_basis(n: int) -> list[Array]:
    return [_unit(n, i, j) - _unit(n, j, i) for i, j in itertools.combinations(range(n), 2)]


def _reflection(n: int) -> Array:
    r = np.eye(n)
    r[0, 0] = -1.0
    return r


def _haar_orthogonal(count: int, n: int, rng: np.random.Generator) -> Array:
    """``count`` Haar-random elements of O(n) ``[count, n, n]``, one batched QR."""
    q, r = np.linalg.qr(rng.normal(size=(count, n, n)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


class O(Group):
    """Orthogonal group O(n): rotations and reflections of R^n."""

    def __init__(self, n: int):
        super().__init__(_antisymmetric_basis(n), [_reflection(n)], n, f"O({n})")

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        return _haar_orthogonal(n, self.d, rng)


class SO(Group):
    """Special orthogonal group SO(n): rotations of R^n."""

    def __init__(self, n: int):
        super().__init__(_antisymmetric_basis(n), [], n, f"SO({n})")

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        q = _haar_orthogonal(n, self.d, rng)
        q[np.linalg.det(q) < 0, :, 0] *= -1
        return q


class Scaling(Group):
    """Positive scalings x -> s x of R^n (generator A = I)."""

    def __init__(self, n: int):
        super().__init__([np.eye(n)], [], n, f"Scaling({n})")


class SE(Group):
    """Special Euclidean group SE(n) as (n+1)x(n+1) affine matrices on homogeneous (x, 1)."""

    def __init__(self, n: int):
        d = n + 1
        rot = [np.pad(a, ((0, 1), (0, 1))) for a in _antisymmetric_basis(n)]
        trans = [_unit(d, i, n) for i in range(n)]
        super().__init__(rot + trans, [], d, f"SE({n})")


class Rot(Group):
    """Rotations SO(n) acting on homogeneous (x, 1): the rotation subgroup of SE(n)."""

    def __init__(self, n: int):
        rot = [np.pad(a, ((0, 1), (0, 1))) for a in _antisymmetric_basis(n)]
        super().__init__(rot, [], n + 1, f"Rot({n})")


class Trans(Group):
    """Translations of R^n acting on homogeneous (x, 1): the translation subgroup of SE(n),
    or only along ``axes`` (``Trans(3, [0, 1])``: horizontal translations)."""

    def __init__(self, n: int, axes: Sequence[int] | None = None):
        axes = list(range(n)) if axes is None else [int(a) for a in axes]
        if not axes or len(set(axes)) != len(axes) or not all(0 <= a < n for a in axes):
            raise ValueError(f"Trans: axes {axes} must be distinct and within 0..{n - 1}")
        name = f"Trans({n})" if axes == list(range(n)) else f"Trans({n}, {axes})"
        super().__init__([_unit(n + 1, i, n) for i in axes], [], n + 1, name)


_MINKOWSKI = np.diag([-1.0, 1.0, 1.0, 1.0])


def _lorentz_algebra() -> list[Array]:
    rotations = [np.pad(a, ((1, 0), (1, 0))) for a in _antisymmetric_basis(3)]
    boosts = [_unit(4, 0, i) + _unit(4, i, 0) for i in range(1, 4)]
    return rotations + boosts


class Lorentz(Group):
    """Lorentz group O(1,3): preserves the metric diag(-1, 1, 1, 1), parity and time reversal
    included."""

    def __init__(self):
        parity = np.diag([1.0, -1.0, -1.0, -1.0])
        time_reversal = np.diag([-1.0, 1.0, 1.0, 1.0])
        super().__init__(_lorentz_algebra(), [parity, time_reversal], 4, "O(1,3)")

    def _lie_scale(self) -> float:
        return 0.5


class SO13p(Group):
    """Proper orthochronous Lorentz group SO+(1,3): the identity component of O(1,3)."""

    def __init__(self):
        super().__init__(_lorentz_algebra(), [], 4, "SO+(1,3)")

    def _lie_scale(self) -> float:
        return 0.5


class Sp(Group):
    """Symplectic group Sp(2m) on R^{2m}, preserving J = [[0, I], [-I, 0]]; ``Sp(m)``."""

    def __init__(self, m: int):
        d = 2 * m
        J = np.block([[np.zeros((m, m)), np.eye(m)], [-np.eye(m), np.zeros((m, m))]])
        sym = []
        for i in range(d):
            for j in range(i, d):
                sym.append(_unit(d, i, j) + _unit(d, j, i) if i != j else _unit(d, i, i))
        super().__init__([J @ s for s in sym], [], d, f"Sp({m})")
        self.J = J

    def _lie_scale(self) -> float:
        return 0.3


def _permutation(perm: Sequence[int]) -> Array:
    n = len(perm)
    p = np.zeros((n, n))
    p[np.asarray(perm), np.arange(n)] = 1.0
    return p


class S(Group):
    """Symmetric group S(n): permutations of the n coordinates (generated by transpositions)."""

    def __init__(self, n: int):
        gens = []
        for i in range(n - 1):
            perm = list(range(n))
            perm[i], perm[i + 1] = perm[i + 1], perm[i]
            gens.append(_permutation(perm))
        super().__init__([], gens, n, f"S({n})")

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        return np.stack([_permutation(rng.permutation(self.d)) for _ in range(n)])


class Z(Group):
    """Cyclic group Z(n): cyclic shifts of the n coordinates."""

    def __init__(self, n: int):
        super().__init__([], [_permutation(np.roll(np.arange(n), 1))], n, f"Z({n})")

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        shift = _permutation(np.roll(np.arange(self.d), 1))
        return np.stack([np.linalg.matrix_power(shift, int(k))
                         for k in rng.integers(self.d, size=n)])


class SL(Group):
    """Special linear group SL(n): volume-preserving linear maps (traceless generators)."""

    def __init__(self, n: int):
        gens = [_unit(n, i, j) for i in range(n) for j in range(n) if i != j]
        gens += [_unit(n, i, i) - _unit(n, i + 1, i + 1) for i in range(n - 1)]
        super().__init__(gens, [], n, f"SL({n})")

    def _lie_scale(self) -> float:
        return 0.3


class GL(Group):
    """General linear group GL(n): all invertible maps (both orientations)."""

    def __init__(self, n: int):
        gens = [_unit(n, i, j) for i in range(n) for j in range(n)]
        super().__init__(gens, [_reflection(n)], n, f"GL({n})")

    def _lie_scale(self) -> float:
        return 0.3


class Trivial(Group):
    """The trivial group on R^n: every linear map is equivariant."""

    def __init__(self, n: int):
        super().__init__([], [], n, f"Trivial({n})")


class Embed(Group):
    """``group`` acting on the coordinates ``axes`` of R^d, the identity on the others."""

    def __init__(self, group: Group, d: int, axes: Sequence[int], name: str | None = None):
        axes = [int(a) for a in axes]
        if len(axes) != group.d:
            raise ValueError(f"Embed: {group.name} acts on R^{group.d} but {len(axes)} axes given")
        if len(set(axes)) != len(axes) or not all(0 <= a < d for a in axes):
            raise ValueError(f"Embed: axes {axes} must be distinct and within 0..{d - 1}")
        idx = np.ix_(axes, axes)

        def lie(a: Array) -> Array:
            out = np.zeros((d, d))
            out[idx] = a
            return out

        def disc(h: Array) -> Array:
            out = np.eye(d)
            out[idx] = h
            return out

        super().__init__([lie(a) for a in group.lie], [disc(h) for h in group.discrete], d,
                         name or f"Embed({group.name}, {d}, {axes})")
        self.inner, self.axes = group, axes

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        inner = self.inner._sample_numpy(n, rng)
        out = np.tile(np.eye(self.d), (n, 1, 1))
        axes = np.asarray(self.axes)
        out[:, axes[:, None], axes[None, :]] = inner
        return out


class Union(Group):
    """The group generated by ``a`` and ``b`` acting on the same R^d (e.g. SO(3) with scaling)."""

    def __init__(self, a: Group, b: Group):
        if a.d != b.d:
            raise ValueError(f"Union: {a.name} acts on R^{a.d} but {b.name} on R^{b.d}")
        super().__init__(list(a.lie) + list(b.lie), list(a.discrete) + list(b.discrete), a.d,
                         f"Union({a.name}, {b.name})")
        self.parts = (a, b)

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        a, b = self.parts
        return a._sample_numpy(n, rng) @ b._sample_numpy(n, rng) @ a._sample_numpy(n, rng)


class DirectProduct(Group):
    """Direct product G x H acting block-diagonally on R^{d_G + d_H}."""

    def __init__(self, a: Group, b: Group):
        d = a.d + b.d

        def pad(m: Array, first: bool, identity: bool) -> Array:
            out = np.eye(d) if identity else np.zeros((d, d))
            if first:
                out[:a.d, :a.d] = m
            else:
                out[a.d:, a.d:] = m
            return out

        lie = [pad(m, True, False) for m in a.lie] + [pad(m, False, False) for m in b.lie]
        disc = [pad(m, True, True) for m in a.discrete] + [pad(m, False, True) for m in b.discrete]
        super().__init__(lie, disc, d, f"{a.name}*{b.name}")
        self.parts = (a, b)

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        a, b = self.parts
        out = np.zeros((n, self.d, self.d))
        out[:, :a.d, :a.d] = a._sample_numpy(n, rng)
        out[:, a.d:, a.d:] = b._sample_numpy(n, rng)
        return out


def plane_o2(axes: tuple[int, int], name: str) -> Embed:
    """O(2) acting on two coordinates of R^3, the third fixed."""
    return Embed(O(2), 3, list(axes), name=name)


def O2xy() -> Embed:
    """O(2) on the x-y plane of R^3 (rotations about z and reflections fixing z)."""
    return plane_o2((0, 1), "O2xy")


def O2yz() -> Embed:
    """O(2) on the y-z plane of R^3."""
    return plane_o2((1, 2), "O2yz")


def O2xz() -> Embed:
    """O(2) on the x-z plane of R^3."""
    return plane_o2((0, 2), "O2xz")


def SO2xy() -> Embed:
    """Rotations about z of R^3 (SO(2) on the x-y plane, no reflections)."""
    return Embed(SO(2), 3, [0, 1], name="SO2xy")


class PointGroup(Group):
    """A finite group of the square lattice acting on R^2: rotations by multiples of 90
    degrees and mirrors about the axes and diagonals (subgroups of D4).

    Its elements are signed permutation matrices, so they move a square grid onto itself
    and act on tensor field channels by signed permutations; :meth:`sample` draws them
    uniformly from the exact element list.
    """

    def __init__(self, discrete: Sequence[Array], name: str):
        super().__init__([], discrete, 2, name)

    def _sample_numpy(self, n: int, rng: np.random.Generator) -> Array:
        elements = self.elements()
        return elements[rng.integers(len(elements), size=n)]


_ROT90 = np.array([[0.0, -1.0], [1.0, 0.0]])
_FLIP_X = np.diag([-1.0, 1.0])
_FLIP_Y = np.diag([1.0, -1.0])


def D4() -> PointGroup:
    """The point group of the square lattice: rotations by 90 degrees and mirrors (8 elements)."""
    return PointGroup([_ROT90, _FLIP_X], "D4")


def C4() -> PointGroup:
    """Rotations of the square lattice by multiples of 90 degrees (4 elements)."""
    return PointGroup([_ROT90], "C4")


def C2() -> PointGroup:
    """Rotation by 180 degrees, (x, y) -> (-x, -y) (2 elements)."""
    return PointGroup([-np.eye(2)], "C2")


def D2() -> PointGroup:
    """The mirrors about both axes and their product, the 180-degree rotation (4 elements)."""
    return PointGroup([_FLIP_X, _FLIP_Y], "D2")


def FlipX() -> PointGroup:
    """The mirror (x, y) -> (-x, y) (2 elements)."""
    return PointGroup([_FLIP_X], "FlipX")


def FlipY() -> PointGroup:
    """The mirror (x, y) -> (x, -y) (2 elements)."""
    return PointGroup([_FLIP_Y], "FlipY")
