"""Exact orthonormal bases of equivariant linear maps, and the projectors built from them.

A map W: rep_in -> rep_out is G-equivariant iff vec(W) is annihilated by drho(A) for
every Lie generator and fixed by rho(h) for every discrete generator of rep_out ⊗ rep_in*.
Both reps are direct sums, so W splits into blocks (out summand a, in summand b) that
the constraint never mixes, and all blocks of the same pair of tensor types share one
small basis. We solve once per type pair, cache it by the group's generators, and
project every block of a pair with one batched matmul: cost linear in the number of
weights, never a dense (#weights)^2 matrix.
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
which handles blocks of tens of thousands of entries (e.g. T(4) -> T(4) on R^3, 6561)."""


def _kron_all(mats: Sequence[sp.spmatrix]) -> sp.csr_matrix:
    return reduce(lambda a, b: sp.kron(a, b, format="csr"), mats)


def _kron_sum(gens: Sequence[np.ndarray], d: int) -> sp.csr_matrix:
    """sum_k I ⊗ .. ⊗ gens[k] ⊗ .. ⊗ I (the Lie-algebra action on a tensor), built directly
    as COO indices: entries differ from the identity only in the k-th tensor index."""
    r = len(gens)
    index = np.arange(d ** r).reshape((d,) * r)
    rows, cols, vals = [], [], []
    for k, gen in enumerate(gens):
        a, b = np.nonzero(gen)
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


def _null_space(constraints: list[sp.csr_matrix], size: int, tol: float) -> np.ndarray:
    """Orthonormal basis ``[size, k]`` of the common null space of the constraints."""
    if not constraints:
        return np.eye(size)
    gram = sum((c.T @ c for c in constraints[1:]), constraints[0].T @ constraints[0])
    threshold = tol * tol * max(1.0, float(abs(gram).max()))
    if size <= DENSE_LIMIT:
        values, vectors = scipy.linalg.eigh(gram.toarray(), driver="evr",
                                            subset_by_value=(-np.inf, threshold))
        return vectors
    return _sparse_null_space(gram.tocsc(), size, threshold)


def _sparse_null_space(gram: sp.csc_matrix, size: int, threshold: float) -> np.ndarray:
    k = min(32, size - 2)
    while True:
        values, vectors = spla.eigsh(gram, k=k, sigma=-1e-3, which="LM", tol=1e-14)
        keep = values < threshold
        if not keep.all() or k >= size - 2:
            q, _ = np.linalg.qr(vectors[:, keep])
            return q
        k = min(2 * k, size - 2)


@cache
def _cached_type_basis(factors: tuple[int, ...], group_key: str, tol: float) -> np.ndarray:
    group = _GROUPS_BY_KEY[group_key]
    size = group.d ** len(factors)
    if not factors:
        return np.ones((1, 1))
    basis = _null_space(_type_constraints(factors, group), size, tol)
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


def equivariant_basis(rep_in: Rep, rep_out: Rep, group: Group,
                      tol: float = DEFAULT_TOL) -> torch.Tensor:
    """Orthonormal basis ``[D, k]`` (float64) of all G-equivariant maps rep_in -> rep_out.

    ``D = size(out) * size(in)``; a column is a map W reshaped row-major to
    ``[size(out), size(in)]``. Assembled from the cached per-type-pair bases.
    """
    d = group.d
    n_out, n_in = rep_out.size(d), rep_in.size(d)
    out_idx, in_idx = rep_out.type_indices(d), rep_in.type_indices(d)
    columns = []
    for a, rows in out_idx.items():
        for b, cols in in_idx.items():
            q = torch.from_numpy(np.array(type_basis(a, b, group, tol)))
            if q.shape[1] == 0:
                continue
            da, db = a.dim(d), b.dim(d)
            for i in range(len(rows) // da):
                for j in range(len(cols) // db):
                    flat = (rows[i * da:(i + 1) * da, None] * n_in
                            + cols[None, j * db:(j + 1) * db]).reshape(-1)
                    col = torch.zeros(n_out * n_in, q.shape[1], dtype=torch.float64)
                    col[flat] = q
                    columns.append(col)
    if not columns:
        return torch.zeros(n_out * n_in, 0, dtype=torch.float64)
    return torch.cat(columns, dim=1)


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
        autograd: the cheap form of a penalty or damping step taken every optimizer step."""
        self._check(W)
        basis, basis_t, segments = self._sparse(None, W.device, torch.float64)
        w = W.detach().reshape(-1, 1).double()
        weights = weights.to(w)
        coeffs = basis_t @ w
        total = (coeffs.square().T @ segments)[0]
        pulled = basis @ (coeffs * (segments @ weights[:, None]))
        penalty = (0.5 * (w.square().sum() - total)).clamp_min(0.0)
        return penalty, (weights.sum() * w - pulled).to(W.dtype).reshape(W.shape)

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
        n_in = self.shape[1]
        rows, cols, vals, groups = [], [], [], []
        offset = 0
        for pair in self._pairs:
            name, row_pos, col_pos, na, da, nb, db, ks = pair
            if sum(ks) == 0:
                continue
            q = getattr(self, name).cpu().numpy()
            k_total = q.shape[1]
            flat = (row_pos.reshape(na, 1, da, 1) * n_in + col_pos.reshape(1, nb, 1, db))
            flat = flat.reshape(na * nb, da * db)
            entry, k = np.nonzero(q)
            block = np.arange(na * nb)[:, None]
            rows.append(flat[:, entry].ravel())
            cols.append((offset + block * k_total + k[None, :]).ravel())
            vals.append(np.broadcast_to(q[entry, k], (na * nb, len(k))).ravel())
            groups.append(np.tile(np.repeat(np.arange(len(ks)), ks), na * nb))
            offset += na * nb * k_total
        if not offset:
            return (np.zeros((2, 0), dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64))
        return (np.stack([np.concatenate(rows), np.concatenate(cols)]), np.concatenate(vals),
                np.concatenate(groups))

    def dims(self) -> list[int]:
        """Dimension of the equivariant subspace for every group."""
        return [sum(math.prod((p[3], p[5], 1)) * p[-1][j] for p in self._pairs)
                for j in range(self.n_groups)]
