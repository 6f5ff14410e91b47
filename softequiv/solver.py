"""Exact orthonormal bases of equivariant linear maps, and the projectors built from them.

A map W: rep_in -> rep_out is G-equivariant iff vec(W) is annihilated by drho(A) for
every Lie generator and fixed by rho(h) for every discrete generator of rep_out ⊗ rep_in*.
Both reps are direct sums, so W splits into blocks (out summand a, in summand b) that
the constraint never mixes, and all blocks of the same pair of tensor types share one
small basis. We solve once per type pair, cache it by the group's generators, and
project every block of a pair with one batched matmul: cost linear in the number of
weights, never a dense (#weights)^2 matrix.

Large type pairs (T(4) -> T(4) on R^3 has 6561 entries) are solved in the eigenbasis of
one generic element A0 of the Lie algebra: there drho(A0) is diagonal, its null space is
spanned by the index tuples whose eigenvalues sum to zero (the "weight-zero" tuples, 1107
of 6561 for SO(3)), and only that much smaller subspace needs a dense solve.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cache, reduce

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn

from softequiv import checks
from softequiv.groups import Group
from softequiv.reps import DUAL, Rep, TensorType

DEFAULT_TOL = 1e-6
"""Singular values of the constraint below this count as zero (null space)."""

DENSE_LIMIT = 2500
"""Blocks of at most this many entries (dim_out * dim_in) are solved by a dense symmetric
eigendecomposition; larger ones by sparse shift-invert Lanczos (``scipy.sparse.linalg.eigsh``),
which handles blocks of tens of thousands of entries."""

WEIGHTS_MIN_SIZE = 256
"""Blocks of more entries are solved in the eigenbasis of a generic Lie-algebra element (see
:func:`_lie_null_space_by_weights`) when the group has a normal one; smaller ones directly."""


def _kron_all(mats: Sequence[sp.spmatrix]) -> sp.csr_matrix:
    return reduce(lambda a, b: sp.kron(a, b, format="csr"), mats)


def _kron_sum(gens: Sequence[np.ndarray], d: int) -> sp.csr_matrix:
    """sum_k I ⊗ .. ⊗ gens[k] ⊗ .. ⊗ I (the Lie-algebra action on a tensor), built directly
    as COO indices: entries differ from the identity only in the k-th tensor index."""
    r = len(gens)
    index = np.arange(d ** r).reshape((d,) * r)
    rows, cols, vals = [], [], []
    for k, gen in enumerate(gens):
        a, b = np.nonzero(np.abs(gen) > 1e-14 * np.abs(gen).max(initial=0.0))
        stride = d ** (r - k - 1)
        base = index.take(0, axis=k).reshape(-1, 1)
        rows.append((base + a * stride).ravel())
        cols.append((base + b * stride).ravel())
        vals.append(np.broadcast_to(gen[a, b], (len(base), len(a))).ravel())
    size = d ** r
    return sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(size, size)).tocsr()


def _type_constraints(factors: tuple[int, ...], group: Group) -> list[sp.csr_matrix]:
    """Sparse constraint matrices whose common null space is the invariant subspace of the
    tensor type with these factors."""
    d = group.d
    out = [_kron_sum([A if f != DUAL else -A.T for f in factors], d) for A in group.lie]
    for h in group.discrete:
        h_inv_t = np.linalg.inv(h).T
        mats = [sp.csr_matrix(h if f != DUAL else h_inv_t) for f in factors]
        out.append(_kron_all(mats) - sp.identity(d ** len(factors), format="csr"))
    return out


def _eigh_null_space(gram: np.ndarray | sp.spmatrix, tol: float) -> np.ndarray:
    """Orthonormal eigenvectors of a symmetric PSD ``gram`` with eigenvalues under
    tol^2 * max(1, max |gram|) (dense eigh, or shift-invert Lanczos when large)."""
    size = gram.shape[0]
    threshold = tol * tol * max(1.0, float(abs(gram).max()) if size else 1.0)
    if size <= DENSE_LIMIT:
        dense = gram.toarray() if sp.issparse(gram) else gram
        if size == 0 or float(np.abs(dense).max()) <= threshold:
            return np.eye(size)
        return scipy.linalg.eigh(dense, driver="evr", subset_by_value=(-np.inf, threshold))[1]
    return _sparse_null_space(sp.csc_matrix(gram), size, threshold)


def _null_space(constraints: list[sp.csr_matrix], size: int, tol: float) -> np.ndarray:
    """Orthonormal basis ``[size, k]`` of the common null space of the constraints."""
    if not constraints:
        return np.eye(size)
    return _eigh_null_space(sum((c.T @ c for c in constraints[1:]),
                                constraints[0].T @ constraints[0]), tol)


def _sparse_null_space(gram: sp.csc_matrix, size: int, threshold: float) -> np.ndarray:
    k = min(32, size - 2)
    while True:
        values, vectors = spla.eigsh(gram, k=k, sigma=-1e-3, which="LM", tol=1e-14)
        keep = values < threshold
        if not keep.all() or k >= size - 2:
            q, _ = np.linalg.qr(vectors[:, keep])
            return q
        k = min(2 * k, size - 2)


def _normal_lie_element(group: Group) -> np.ndarray | None:
    """A generic element of the Lie algebra that is a normal matrix (so a unitary matrix
    diagonalizes it): a fixed random combination of all generators, else of those that are
    antisymmetric or multiples of the identity; None when neither is normal."""
    eye = np.eye(group.d)
    simple = [a for a in group.lie
              if np.allclose(a, -a.T, atol=1e-12) or np.allclose(a, a[0, 0] * eye, atol=1e-12)]
    rng = np.random.default_rng(0)
    for gens in (list(group.lie), simple):
        if not gens:
            continue
        a0 = np.tensordot(rng.normal(size=len(gens)), np.stack(gens), axes=1)
        scale = max(1.0, float(np.abs(a0).max())) ** 2
        if np.allclose(a0 @ a0.T, a0.T @ a0, atol=1e-10 * scale):
            return a0
    return None


def _unitary_eigenbasis(a0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Eigenvalues ``mu``, unitary eigenvectors ``U`` (columns) of a real normal matrix, and
    the involution ``pair`` with conj(U) = U[:, pair] (conjugate eigenvectors side by side,
    real ones paired with themselves); from the real Schur form, whose 2x2 blocks
    [[a, b], [-b, a]] have eigenvectors (1, ±i) / sqrt(2)."""
    t, z = scipy.linalg.schur(a0, output="real")
    d = len(a0)
    w = np.eye(d, dtype=complex)
    mu = np.diag(t).astype(complex)
    pair = np.arange(d)
    scale = max(1.0, float(np.abs(t).max()))
    i = 0
    while i < d:
        if i + 1 < d and abs(t[i + 1, i]) > 1e-12 * scale:
            w[i:i + 2, i:i + 2] = np.array([[1, 1], [1j, -1j]]) / math.sqrt(2)
            mu[i], mu[i + 1] = t[i, i] + 1j * t[i, i + 1], t[i, i] - 1j * t[i, i + 1]
            pair[i], pair[i + 1] = i + 1, i
            i += 2
        else:
            i += 1
    u = z @ w
    if not np.allclose(a0 @ u, u * mu, atol=1e-10 * scale):
        return None
    return mu, u, pair


def _apply_factors(mats: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """(mats[0] ⊗ mats[1] ⊗ ...) @ x for x ``[d^n, k]``, one tensor index at a time."""
    d, k = mats[0].shape[0], x.shape[1]
    x = x.reshape((d,) * len(mats) + (k,))
    for axis, m in enumerate(mats):
        x = np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)
    return x.reshape(d ** len(mats), k)


def _lie_null_space_by_weights(factors: tuple[int, ...], group: Group,
                               tol: float) -> np.ndarray | None:
    """Orthonormal basis of the tensors that every Lie generator annihilates, solved in the
    eigenbasis U of a generic normal element A0 (None when the algebra has none).

    There drho(A0) is diagonal: its eigenvalue on an index tuple is the sum of the factors'
    eigenvalues, so only tuples whose sum vanishes (tested with a loose tolerance: keeping
    extra tuples is safe) can carry invariants. The other generators are then solved on that
    subspace, in real coordinates (conj(U) only permutes U's columns, so a real tensor has
    coefficients z with z[pair(t)] = conj(z[t])), and the result is mapped back by U^{⊗n}.
    """
    a0 = _normal_lie_element(group)
    basis = None if a0 is None else _unitary_eigenbasis(a0)
    if basis is None:
        return None
    mu, u, pair = basis
    d, n = group.d, len(factors)
    weights = [mu if f != DUAL else -mu.conj() for f in factors]
    total = reduce(np.add.outer, weights).reshape(-1)
    sel = np.flatnonzero(np.abs(total) <= 1e-6 * n * max(1.0, float(np.abs(mu).max())))
    position = np.full(d ** n, -1)
    position[sel] = np.arange(len(sel))
    partner = position[np.arange(d ** n).reshape((d,) * n)[np.ix_(*[pair] * n)].reshape(-1)[sel]]
    own = np.arange(len(sel))
    fixed, first = own[partner == own], own[partner > own]
    second = partner[first]
    cols = np.arange(len(fixed) + 2 * len(first))
    half = math.sqrt(0.5)
    real = sp.csc_matrix((np.concatenate([np.ones(len(fixed)), np.full(2 * len(first), half),
                                          np.full(len(first), 1j * half),
                                          np.full(len(first), -1j * half)]),
                          (np.concatenate([fixed, first, second, first, second]),
                           np.concatenate([cols[:len(fixed)],
                                           np.tile(cols[len(fixed):len(fixed) + len(first)], 2),
                                           np.tile(cols[len(fixed) + len(first):], 2)]))),
                         shape=(len(sel), len(sel)))
    gram = sp.csr_matrix((len(sel), len(sel)))
    u_h = u.conj().T
    for a in group.lie:
        c = _kron_sum([u_h @ (a if f != DUAL else -a.T) @ u for f in factors], d).tocsc()
        m = c[:, sel] @ real
        gram = gram + (m.conj().T @ m).real
    y = _eigh_null_space(gram, tol)
    full = np.zeros((d ** n, y.shape[1]), dtype=complex)
    full[sel] = real @ y
    return _apply_factors([u] * n, full).real


def _fixed_by_discrete(q: np.ndarray, factors: tuple[int, ...], group: Group,
                       tol: float) -> np.ndarray:
    """The part of span(q) (orthonormal columns) that every discrete generator fixes."""
    if not len(group.discrete) or not q.shape[1]:
        return q
    moved = []
    for h in group.discrete:
        h_inv_t = np.linalg.inv(h).T
        moved.append(_apply_factors([h if f != DUAL else h_inv_t for f in factors], q) - q)
    stacked = np.concatenate(moved)
    return q @ _eigh_null_space(stacked.T @ stacked, tol)


@cache
def _cached_type_basis(factors: tuple[int, ...], group_key: str, tol: float) -> np.ndarray:
    group = _GROUPS_BY_KEY[group_key]
    size = group.d ** len(factors)
    if not factors:
        return np.ones((1, 1))
    lie = None
    if len(group.lie) and size > WEIGHTS_MIN_SIZE:
        lie = _lie_null_space_by_weights(factors, group, tol)
    if lie is not None:
        basis = _fixed_by_discrete(lie, factors, group, tol)
    else:
        basis = _null_space(_type_constraints(factors, group), size, tol)
    basis = np.ascontiguousarray(basis)
    basis.setflags(write=False)
    return basis


_GROUPS_BY_KEY: dict[str, Group] = {}


def type_basis(out_type: TensorType, in_type: TensorType, group: Group,
               tol: float = DEFAULT_TOL) -> np.ndarray:
    """Orthonormal basis ``[dim_out*dim_in, k]`` (float64) of equivariant maps between two
    tensor types, for W flattened row-major. Cached by the generators, not the name.
    ``tol`` must lie in (0, 1): at 1 or above every direction would count as null."""
    tol = checks.number("tol", tol, low=0, high=1, open_low=True, open_high=True)
    factors = TensorType(out_type.factors + in_type.dual().factors)
    factors = factors.canonical(group.is_orthogonal).factors
    _GROUPS_BY_KEY.setdefault(group.key, group)
    return _cached_type_basis(factors, group.key, float(tol))


def clear_cache() -> None:
    """Forget every cached basis (for cold-start timings)."""
    _cached_type_basis.cache_clear()


def _block_entries(rows: np.ndarray, cols: np.ndarray, da: int, db: int, q: np.ndarray,
                   n_in: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO entries (flat row-major weight index, column, value) of the basis ``q``
    ``[da*db, k]`` of one type pair placed in every block (out copy i, in copy j): block
    (i, j) owns columns ``offset + (i * n_copies_in + j) * k + 0..k-1``."""
    na, nb = len(rows) // da, len(cols) // db
    flat = (rows.reshape(na, 1, da, 1) * n_in + cols.reshape(1, nb, 1, db)).reshape(na * nb,
                                                                                  da * db)
    entry, k = np.nonzero(q)
    block = np.arange(na * nb)[:, None]
    return (flat[:, entry].ravel(), (offset + block * q.shape[1] + k[None, :]).ravel(),
            np.broadcast_to(q[entry, k], (na * nb, len(k))).ravel())


def equivariant_basis(rep_in: Rep, rep_out: Rep, group: Group,
                      tol: float = DEFAULT_TOL) -> torch.Tensor:
    """Orthonormal basis ``[D, k]`` (float64) of all G-equivariant maps rep_in -> rep_out, as
    a sparse COO tensor (``.to_dense()`` for small cases).

    ``D = size(out) * size(in)``; a column is a map W reshaped row-major to
    ``[size(out), size(in)]``. Assembled from the cached per-type-pair bases, one copy per
    block: its size is the number of nonzeros, never D * k.
    """
    d = group.d
    n_out, n_in = rep_out.size(d), rep_in.size(d)
    entries, offset = [], 0
    for a, rows in rep_out.type_indices(d).items():
        for b, cols in rep_in.type_indices(d).items():
            q = type_basis(a, b, group, tol)
            if q.shape[1] == 0:
                continue
            da, db = a.dim(d), b.dim(d)
            entries.append(_block_entries(rows.numpy(), cols.numpy(), da, db, q, n_in, offset))
            offset += (len(rows) // da) * (len(cols) // db) * q.shape[1]
    if entries:
        index = np.stack([np.concatenate([e[0] for e in entries]),
                          np.concatenate([e[1] for e in entries])])
        values = np.concatenate([e[2] for e in entries])
    else:
        index, values = np.zeros((2, 0), dtype=np.int64), np.zeros(0)
    return torch.sparse_coo_tensor(torch.from_numpy(index), torch.from_numpy(values),
                                   (n_out * n_in, offset), check_invariants=True).coalesce()


def as_selector(idx: torch.Tensor) -> slice | torch.Tensor:
    """A slice when the indices are one contiguous run (a view, no copy), else the indices."""
    start = int(idx[0])
    if torch.equal(idx, torch.arange(start, start + len(idx))):
        return slice(start, start + len(idx))
    return idx


class _SymmetricProjection(torch.autograd.Function):
    """w -> B B^T w with B sparse. P = B B^T is symmetric, so the backward pass is the
    same projection of the incoming gradient (no sparse transpose at every step)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, basis: torch.Tensor,  # noqa: ANN001 - autograd's ctx
                basis_t: torch.Tensor) -> torch.Tensor:
        ctx.bases = (basis, basis_t)
        return basis @ (basis_t @ w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205 - autograd's signature
        basis, basis_t = ctx.bases
        return basis @ (basis_t @ grad), None, None


class _SparseCoefficients(torch.autograd.Function):
    """w -> B^T w with B sparse; the backward pass applies B (kept, so no sparse transpose
    is formed at every step)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, basis: torch.Tensor,  # noqa: ANN001 - autograd's ctx
                basis_t: torch.Tensor) -> torch.Tensor:
        ctx.basis = basis
        return basis_t @ w

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205 - autograd's signature
        return ctx.basis @ grad, None, None


class Projector(nn.Module):
    """Orthogonal projectors P_j = Q_j Q_j^T onto equivariant maps rep_in -> rep_out, one per
    group, applied to weight matrices ``[size(out), size(in)]`` (a bias is a map from
    ``Scalar``).

    ``penalty(W)`` gives 1/2 ||W - P_j W||^2 for every group in one pass (float64, cost
    linear in the number of weights); ``project(W, j)`` gives P_j W. Bases live in buffers,
    so they follow ``.to(device)`` and are saved in ``state_dict``.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, groups: Sequence[Group], *,
                 tol: float = DEFAULT_TOL):
        super().__init__()
        if not groups:
            raise ValueError("Projector needs at least one group")
        dims = {g.d for g in groups}
        if len(dims) != 1:
            raise ValueError(f"all groups must act on the same R^d, got dimensions {sorted(dims)}")
        self.d = dims.pop()
        self.rep_in, self.rep_out, self.n_groups = rep_in, rep_out, len(groups)
        self.shape = (rep_out.size(self.d), rep_in.size(self.d))
        self.generation = 0
        self._pairs: list[tuple[str, np.ndarray, np.ndarray, int, int, int, int,
                                tuple[int, ...]]] = []
        out_idx, in_idx = rep_out.type_indices(self.d), rep_in.type_indices(self.d)
        for a_i, (a, rows) in enumerate(out_idx.items()):
            for b_i, (b, cols) in enumerate(in_idx.items()):
                bases = [type_basis(a, b, g, tol) for g in groups]
                name = f"basis_{a_i}_{b_i}"
                self.register_buffer(name, torch.from_numpy(np.concatenate(bases, axis=1)))
                da, db = a.dim(self.d), b.dim(self.d)
                self._pairs.append((name, rows.numpy(), cols.numpy(), len(rows) // da, da,
                                    len(cols) // db, db, tuple(q.shape[1] for q in bases)))

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - nn.Module's signature
        """Bases follow device moves but stay float64 under ``.float()``/``.half()``: the
        penalty subtracts nearly equal numbers and needs their precision."""
        bases = {k: v for k, v in self._buffers.items() if v is not None and v.is_floating_point()}
        super()._apply(fn, recurse)
        for name, original in bases.items():
            self._buffers[name] = original.to(self._buffers[name].device)
        return self

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        """Loaded bases replace the current ones, so the sparse forms built from them go."""
        self.__dict__.pop("_sparse_cache", None)
        self.generation += 1
        super()._load_from_state_dict(*args, **kwargs)

    def _check(self, W: torch.Tensor) -> None:
        if tuple(W.shape) != self.shape:
            raise ValueError(f"weight of shape {tuple(W.shape)} does not match "
                             f"{self.rep_in} -> {self.rep_out}, expected {self.shape}")

    def coefficient_norms(self, W: torch.Tensor) -> torch.Tensor:
        """||Q_j^T vec(W)||^2 for every group, float64 ``[n_groups]`` (differentiable)."""
        self._check(W)
        basis, basis_t, segments = self._sparse(None, W.device, torch.float64)
        if basis.shape[1] == 0:
            return W.new_zeros(self.n_groups, dtype=torch.float64)
        coeffs = _SparseCoefficients.apply(W.double().reshape(-1, 1), basis, basis_t)
        return (coeffs.square().T @ segments)[0]

    def penalty(self, W: torch.Tensor) -> torch.Tensor:
        """1/2 ||W - P_j W||^2 for every group, float64 ``[n_groups]``.

        Uses ||W - PW||^2 = ||W||^2 - ||Q^T w||^2, evaluated in float64 so that the
        difference stays accurate when W is nearly equivariant.
        """
        norm = W.double().square().sum()
        return (0.5 * (norm - self.coefficient_norms(W))).clamp_min(0.0)

    def penalty_and_residual(self, W: torch.Tensor,
                             weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``penalty(W)`` together with ``sum_j weights_j (W - P_j W)``, the gradient of
        ``sum_j weights_j R_j`` with respect to W, from one set of coefficients and without
        autograd: the cheap form of a penalty or damping step (see :class:`StackedProjectors`
        for many layers at once)."""
        self._check(W)
        penalty, residual = StackedProjectors([self]).residuals(W.detach().reshape(1, -1),
                                                                weights)
        return penalty[0], residual.to(W.dtype).reshape(W.shape)

    def project(self, W: torch.Tensor, group: int = 0) -> torch.Tensor:
        """P_j W: the closest map to W that is equivariant under group ``j``."""
        self._check(W)
        basis, basis_t, _ = self._sparse(group, W.device, W.dtype)
        if basis.shape[1] == 0:
            return torch.zeros_like(W)
        return _SymmetricProjection.apply(W.reshape(-1, 1), basis, basis_t).reshape(W.shape)

    def _sparse(self, group: int | None, device: torch.device,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block bases of one group (or all, ``None``) as one sparse matrix
        [#weights, #coefficients] acting on row-major vec(W), its transpose, and each
        coefficient's group as a one-hot matrix; built once per group, device and dtype."""
        key = (group, str(device), dtype)
        cache = self.__dict__.setdefault("_sparse_cache", {})
        if key not in cache:
            index, values, group_of = self._sparse_entries()
            if group is not None:
                keep = group_of[index[1]] == group
                kept_cols = np.flatnonzero(group_of == group)
                remap = np.full(len(group_of), -1)
                remap[kept_cols] = np.arange(len(kept_cols))
                index = np.stack([index[0][keep], remap[index[1][keep]]])
                values, group_of = values[keep], group_of[kept_cols]
            n_cols = len(group_of)
            coo = torch.sparse_coo_tensor(torch.from_numpy(index), torch.from_numpy(values),
                                          (self.shape[0] * self.shape[1], n_cols),
                                          check_invariants=True).coalesce()
            segments = torch.zeros(n_cols, self.n_groups, dtype=torch.float64)
            segments[torch.arange(n_cols), torch.from_numpy(group_of)] = 1.0
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                cache[key] = (coo.to(dtype).to_sparse_csr().to(device),
                              coo.t().coalesce().to(dtype).to_sparse_csr().to(device),
                              segments.to(dtype).to(device))
        return cache[key]

    def _sparse_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """COO entries (row = flat weight index, column = coefficient) of every block basis,
        with the group of each coefficient column."""
        rows, cols, vals, groups = [], [], [], []
        offset = 0
        for name, row_pos, col_pos, na, da, nb, db, ks in self._pairs:
            if sum(ks) == 0:
                continue
            entry = _block_entries(row_pos, col_pos, da, db, getattr(self, name).cpu().numpy(),
                                   self.shape[1], offset)
            rows.append(entry[0])
            cols.append(entry[1])
            vals.append(entry[2])
            groups.append(np.tile(np.repeat(np.arange(len(ks)), ks), na * nb))
            offset += na * nb * sum(ks)
        if not offset:
            return (np.zeros((2, 0), dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64))
        return (np.stack([np.concatenate(rows), np.concatenate(cols)]), np.concatenate(vals),
                np.concatenate(groups))

    def dims(self) -> list[int]:
        """Dimension of the equivariant subspace for every group."""
        return [sum(math.prod((p[3], p[5], 1)) * p[-1][j] for p in self._pairs)
                for j in range(self.n_groups)]


def _content_key(basis: torch.Tensor) -> bytes | int:
    """Equal bases give equal keys (their bytes); a tensor without data (the meta device,
    for checking device placement) is only equal to itself."""
    if basis.is_meta:
        return id(basis)
    return basis.cpu().numpy().tobytes()


class StackedProjectors:
    """Several projectors (e.g. every soft layer's weight and bias projector) applied to their
    tensors together: the closed-form penalty and damping updates taken at every step.

    The tensors come as one flat row-major concatenation per row of ``columns [m, N]`` (m
    stacked copies, e.g. weights and their gradients). Blocks of all projectors that share
    a type pair share its basis Q ``[e, K]`` (all groups side by side), so a pair costs one
    dense ``[m, blocks, e] @ [e, K]`` matmul and one back, over every layer at once, in
    float64; blocks that every group leaves unchanged (Scalar -> Scalar) are skipped. All
    ops stay on the tensors' device, with no host synchronization.
    """

    def __init__(self, projectors: Sequence[Projector]):
        if len({p.n_groups for p in projectors}) != 1:
            raise ValueError("stacked projectors must all have the same groups")
        self.projectors = list(projectors)
        self.n_groups = projectors[0].n_groups
        self.sizes = [p.shape[0] * p.shape[1] for p in projectors]
        self._plans: dict[tuple, tuple] = {}

    def _plan(self, device: torch.device, m: int) -> tuple:
        """For ``m`` stacked rows: the flat positions of the entries of all non-trivial
        blocks, ordered by type pair, then row, then block (so each pair's entries of all
        rows form one contiguous ``[m * blocks, entries]`` matrix); per type pair its basis
        and the extents of its entries and coefficients; and for every coefficient its
        group and its (row, group) slot of the penalty (cached)."""
        key = (str(device), m, tuple(p.generation for p in self.projectors))
        if key not in self._plans:
            pairs: dict[tuple, tuple[torch.Tensor, tuple[int, ...], list[np.ndarray]]] = {}
            offset = 0
            for projector, size in zip(self.projectors, self.sizes, strict=True):
                n_in = projector.shape[1]
                for name, rows, cols, na, da, nb, db, ks in projector._pairs:
                    basis = getattr(projector, name)
                    if all(k == da * db for k in ks):
                        continue
                    flat = offset + (rows.reshape(na, 1, da, 1) * n_in
                                     + cols.reshape(1, nb, 1, db)).reshape(-1)
                    same = (da * db, ks, _content_key(basis))
                    pairs.setdefault(same, (basis, ks, []))[2].append(flat)
                offset += size
            positions, groups, slots, steps = [], [], [], []
            entry, coeff = 0, 0
            for basis, ks, flats in pairs.values():
                index = np.concatenate(flats)
                rows = np.arange(m)[:, None]
                positions.append((rows * offset + index[None]).reshape(-1))
                group_of = np.repeat(np.arange(self.n_groups), ks)
                blocks = len(index) // basis.shape[0]
                groups.append(np.tile(group_of, m * blocks))
                slots.append(np.repeat(rows[:, 0], blocks * len(group_of)) * self.n_groups
                              + groups[-1])
                steps.append((basis.to(device, torch.float64), basis.to(device, torch.float32),
                               entry, m * len(index), coeff, m * blocks * len(group_of),
                               m * blocks))
                entry += m * len(index)
                coeff += m * blocks * len(group_of)

            def tensor(parts: list[np.ndarray]) -> torch.Tensor:
                values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
                return torch.from_numpy(values.astype(np.int64)).to(device)

            row_of_entry = tensor([np.repeat(np.arange(m), len(p) // m) for p in positions])
            self._plans[key] = (steps, tensor(positions), row_of_entry, tensor(groups),
                                tensor(slots))
        return self._plans[key]

    def residuals(self, columns: torch.Tensor,
                  weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For every row x of ``columns [m, N]``: the penalties 1/2 ||x - P_j x||^2 of every
        group ``[m, n_groups]`` (float64: ||x||^2 - ||Q_j^T x||^2 needs it) and the residual
        sum_j weights_j (x - P_j x) ``[m, N]`` (computed in float64, returned in the dtype of
        ``columns``). One gather and one scatter for all blocks, one matrix product per type
        pair each way."""
        m = columns.shape[0]
        steps, positions, row_of_entry, group_of, slot = self._plan(columns.device, m)
        weights = weights.to(columns.device, torch.float64)
        residual = torch.zeros_like(columns)
        if not steps:
            return columns.new_zeros(m, self.n_groups, dtype=torch.float64), residual
        gathered = columns.reshape(-1).index_select(0, positions)
        entries = gathered.double()
        coeffs = entries.new_empty(len(group_of))
        for basis, _, start, count, c_start, c_count, rows in steps:
            torch.mm(entries[start:start + count].view(rows, -1), basis,
                     out=coeffs[c_start:c_start + c_count].view(rows, basis.shape[1]))
        norm = entries.new_zeros(m).index_add_(0, row_of_entry, entries.square())
        kept = entries.new_zeros(m * self.n_groups).index_add_(0, slot, coeffs.square())
        penalty = norm[:, None] - kept.view(m, self.n_groups)
        # the residual needs no more precision than the tensors it updates
        pulled = (coeffs * weights.index_select(0, group_of)).to(columns.dtype)
        out = gathered * weights.sum().to(columns.dtype)
        for basis64, basis32, start, count, c_start, c_count, rows in steps:
            basis = {torch.float64: basis64, torch.float32: basis32}.get(columns.dtype)
            if basis is None:
                basis = basis64.to(columns.dtype)
            out[start:start + count].view(rows, -1).addmm_(
                pulled[c_start:c_start + c_count].view(rows, basis.shape[1]), basis.T, alpha=-1)
        residual.view(-1).index_copy_(0, positions, out)
        return (0.5 * penalty).clamp_min(0.0), residual
