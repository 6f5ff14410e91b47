"""Evaluating the equivariant bilinear layer fast: every term as a few batched products on
features-first activations ``[features, batch]``, with a hand-written backward pass.

A term of the layer (out type a, in type b, source type s = a ⊗ b*) computes
``out_a[n, α, i] = sum_{c, k, j} P[α, k, c] S[n, c, i, j] X_b[n, k, j]`` where S are the
first copies of type s seen as ``da x db`` matrices. Per sample this is a chain of tiny
matrix products, which no BLAS call batches well; so the contraction over the per-sample
index runs as a broadcast product summed over one axis (the batch axis innermost keeps it
vectorized) and the rest as one matrix product per output type (``contract``: contract S
with X_b first, then mix) or per input type (``mix``: mix the copies of X_b first, then
contract with S), whichever does less elementwise work. Autograd would record about four
times as many operations for the same arithmetic, zero-filling a gradient buffer for every
slice; the backward pass here writes every input gradient into one buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ELEMENTWISE_COST = 4
"""How many multiply-adds of a matrix product cost as much as one of an elementwise
broadcast product (measured on CPU, float32, batch 500: between 3 and 8)."""


@dataclass(frozen=True)
class Term:
    """One block pair of the layer: output type ``a``, input type ``b``, source type ``s``
    (positions in the plan's type order), ``n_sel`` source copies used, type dimensions
    ``da``, ``db``, copies ``na``, ``nb``; ``mix`` picks the evaluation order."""

    a: int
    b: int
    s: int
    n_sel: int
    da: int
    db: int
    na: int
    nb: int
    mix: bool

    @staticmethod
    def cheaper_order(n_sel: int, da: int, db: int, na: int, nb: int) -> bool:
        """True when mixing the input copies first costs less than contracting first."""
        contract = ELEMENTWISE_COST * n_sel * nb * da * db + na * n_sel * nb * da
        mix = ELEMENTWISE_COST * na * n_sel * da * db + na * n_sel * nb * db
        return mix < contract


Dims = tuple[tuple[int, int], ...]
"""Axes of a view of features-first activations: (size, stride in rows) each, then the
batch axis; stride 0 broadcasts."""


class _Product:
    """``into (+)= sum over the leading axes of a * b``, for views of three features-first
    buffers given as (first row, axes). The views are single ``as_strided`` calls resolved
    once per batch size; a leading axis of size 1 is dropped (no sum at all when none is
    left: a fused multiply-add). Torch lays the product out like ``a`` (where ``a``
    broadcasts, like ``b``); the operands are ordered so that the summed axes are adjacent in
    that layout, since reducing over axes that are not is many times slower on CPU, and
    ``buffered`` products (where no order gives that) are written contiguous first."""

    def __init__(self, a: tuple[int, Dims], b: tuple[int, Dims], into: tuple[int, Dims],
                 lead: int, *, add: bool):
        (a_start, a_dims), (b_start, b_dims) = a, b
        keep = [d for d in range(len(a_dims))
                if d >= lead or max(a_dims[d][0], b_dims[d][0]) > 1]
        self.lead = lead - sum(1 for d in range(lead) if d not in keep)
        self.views = ((a_start, tuple(a_dims[d] for d in keep)),
                      (b_start, tuple(b_dims[d] for d in keep)), into)
        self.shape = tuple(max(a_dims[d][0], b_dims[d][0]) for d in keep)
        self.add = add
        self._resolved: dict[int, tuple] = {}
        self.buffered = False
        if self.lead > 1:  # where torch would lay the summed axes apart, materialize first
            a, b = (torch.empty(_rows_spanned(dims) + start, 2).as_strided(size, stride, off)
                    for (start, dims), (size, stride, off) in zip(self.views[:2],
                                                                 self._views(2), strict=False))
            product = a * b
            self.buffered = not all(product.stride(d) == product.shape[d + 1] *
                                    product.stride(d + 1) for d in range(self.lead - 1))

    def _views(self, n: int) -> tuple:
        if n not in self._resolved:
            self._resolved[n] = tuple(
                ((*(size for size, _ in dims), n), (*(stride * n for _, stride in dims), 1),
                 start * n) for start, dims in self.views)
        return self._resolved[n]

    def __call__(self, a: torch.Tensor, b: torch.Tensor, into: torch.Tensor) -> None:
        (a_size, a_stride, a_off), (b_size, b_stride, b_off), (i_size, i_stride, i_off) = \
            self._views(a.shape[-1])
        a = a.as_strided(a_size, a_stride, a.storage_offset() + a_off)
        b = b.as_strided(b_size, b_stride, b.storage_offset() + b_off)
        into = into.as_strided(i_size, i_stride, into.storage_offset() + i_off)
        if not self.lead:
            if self.add:
                into.addcmul_(a, b)
            else:
                torch.mul(a, b, out=into)
            return
        if self.buffered:
            product = torch.mul(a, b, out=a.new_empty((*self.shape, a.shape[-1])))
        else:
            product = a * b
        dims = tuple(range(self.lead))
        if self.add:
            into.add_(product.sum(dims))
        else:
            torch.sum(product, dims, out=into)


def _rows_spanned(dims: Dims) -> int:
    """Rows a view with these axes reaches past its first one, plus one."""
    return 1 + sum((size - 1) * stride for size, stride in dims)


BROADCAST = (1, 0)


class BilinearPlan:
    """The terms of one layer grouped for evaluation: ``contract`` terms by output type
    (one matrix product each), ``mix`` terms by input type (one matrix product each), and
    every term's per-sample contractions (forward and backward) as :class:`_Product`.

    ``offsets[t]`` is the first coordinate of type t in the features-first activations,
    whose types must be contiguous and in this order."""

    def __init__(self, offsets: list[int], terms: list[Term]):
        self.offsets, self.terms = offsets, terms
        self.contract: dict[int, list[int]] = {}
        self.mix: dict[int, list[int]] = {}
        for i, t in enumerate(terms):
            (self.mix.setdefault(t.b, []) if t.mix else self.contract.setdefault(t.a, [])).append(i)
        self.products: list[tuple[_Product, ...]] = [None] * len(terms)  # type: ignore[list-item]
        for indices in self.contract.values():
            row = 0
            for i in indices:
                self.products[i] = self._contract_products(terms[i], row)
                row += terms[i].nb * terms[i].n_sel * terms[i].da
        for indices in self.mix.values():
            row = 0
            for i in indices:
                self.products[i] = self._mix_products(terms[i], row)
                row += terms[i].na * terms[i].n_sel * terms[i].db

    def _geometry(self, t: Term) -> tuple:
        """The term's source S[c, i, j], input X[k, j] and output O[α, i] axes."""
        s, da, db = t.n_sel, t.da, t.db
        source = (self.offsets[t.s], {"c": (s, da * db), "i": (da, db), "j": (db, 1)})
        inputs = (self.offsets[t.b], {"k": (t.nb, db), "j": (db, 1)})
        outputs = (self.offsets[t.a], {"α": (t.na, da), "i": (da, 1)})
        return source, inputs, outputs

    def _contract_products(self, t: Term, row: int) -> tuple[_Product, ...]:
        """contracted[k, c, i] = sum_j S[c, i, j] X[k, j] (rows from ``row`` of the output
        type's buffer), and the backward products into dS and dX."""
        source, inputs, _ = self._geometry(t)
        c = (row, {"k": (t.nb, t.n_sel * t.da), "c": (t.n_sel, t.da), "i": (t.da, 1)})
        return (_Product(_axes(inputs, "jkci"), _axes(source, "jkci"), _axes(c, "kci"), 1,
                         add=False),
                _Product(_axes(c, "kcij"), _axes(inputs, "kcij"), _axes(source, "cij"), 1,
                         add=True),
                _Product(_axes(c, "cikj"), _axes(source, "cikj"), _axes(inputs, "kj"), 2,
                         add=True))

    def _mix_products(self, t: Term, row: int) -> tuple[_Product, ...]:
        """out[α, i] += sum_{c, j} S[c, i, j] M[α, c, j] (M the mixed copies, rows from
        ``row`` of the input type's buffer), and the backward products into dS and dM."""
        source, _, outputs = self._geometry(t)
        m = (row, {"α": (t.na, t.n_sel * t.db), "c": (t.n_sel, t.db), "j": (t.db, 1)})
        return (_Product(_axes(m, "cjαi"), _axes(source, "cjαi"), _axes(outputs, "αi"), 2,
                         add=True),
                _Product(_axes(outputs, "αcij"), _axes(m, "αcij"), _axes(source, "cij"), 1,
                         add=True),
                _Product(_axes(outputs, "iαcj"), _axes(source, "iαcj"), _axes(m, "αcj"), 1,
                         add=False))

    def source(self, x: torch.Tensor, t: Term) -> torch.Tensor:
        """The term's source copies in features-first x, ``[n_sel, da, db, n]``."""
        start = self.offsets[t.s]
        return x[start:start + t.n_sel * t.da * t.db].reshape(t.n_sel, t.da, t.db, x.shape[1])

    def inputs(self, x: torch.Tensor, t: Term) -> torch.Tensor:
        """The copies of the term's input type in features-first x, ``[nb, db, n]``."""
        start = self.offsets[t.b]
        return x[start:start + t.nb * t.db].reshape(t.nb, t.db, x.shape[1])

    def forward(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """sum over terms, unscaled, ``[size, n]``; and what the backward pass reuses: per
        output type its stacked weights and contracted inputs, per input type its stacked
        weights and mixed copies."""
        n = x.shape[1]
        out = torch.zeros_like(x)
        saved: list[torch.Tensor] = []
        for a, indices in self.contract.items():
            t0 = self.terms[indices[0]]
            contracted = x.new_empty(sum(self.terms[i].nb * self.terms[i].n_sel
                                         for i in indices) * t0.da, n)
            for i in indices:
                self.products[i][0](x, x, contracted)
            weights = (torch.cat([params[i].view(t0.na, -1) for i in indices], 1)
                       if len(indices) > 1 else params[indices[0]].view(t0.na, -1))
            start = self.offsets[a]
            out[start:start + t0.na * t0.da].view(t0.na, -1).addmm_(
                weights, contracted.view(weights.shape[1], -1))
            saved += [weights, contracted]
        for b, indices in self.mix.items():
            t0 = self.terms[indices[0]]
            weights = torch.cat([params[i].permute(0, 2, 1).reshape(-1, t0.nb) for i in indices])
            start = self.offsets[b]
            mixed = weights @ x[start:start + t0.nb * t0.db].view(t0.nb, -1)
            mixed = mixed.view(-1, n)
            for i in indices:
                self.products[i][0](mixed, x, out)
            saved += [weights, mixed]
        return out, saved

    def backward(self, x: torch.Tensor, grad: torch.Tensor, saved: list[torch.Tensor],
                 grad_x: torch.Tensor) -> list[torch.Tensor]:
        """Adds the gradient of ``<grad, forward(x)>`` with respect to x into ``grad_x``
        and returns the gradients of the term weights (in their own shapes)."""
        grads: list[torch.Tensor | None] = [None] * len(self.terms)
        pos = 0
        for a, indices in self.contract.items():
            weights, contracted = saved[pos], saved[pos + 1]
            pos += 2
            t0 = self.terms[indices[0]]
            start = self.offsets[a]
            g = grad[start:start + t0.na * t0.da].view(t0.na, -1)
            grad_contracted = (weights.T @ g).view(contracted.shape)
            row = 0
            for i in indices:
                t = self.terms[i]
                _, into_source, into_inputs = self.products[i]
                into_source(grad_contracted, x, grad_x)
                into_inputs(grad_contracted, x, grad_x)
                width = t.nb * t.n_sel
                grads[i] = (g @ contracted[row:row + width * t.da].view(width, -1).T).view(
                    t.na, t.nb, t.n_sel)
                row += width * t.da
        for b, indices in self.mix.items():
            weights, mixed = saved[pos], saved[pos + 1]
            pos += 2
            t0 = self.terms[indices[0]]
            grad_mixed = torch.empty_like(mixed)
            for i in indices:
                _, into_source, into_mixed = self.products[i]
                into_source(grad, mixed, grad_x)
                into_mixed(grad, x, grad_mixed)
            start = self.offsets[b]
            inputs = x[start:start + t0.nb * t0.db].view(t0.nb, -1)
            grad_mixed = grad_mixed.view(weights.shape[0], -1)
            grad_weights = grad_mixed @ inputs.T
            grad_x[start:start + t0.nb * t0.db].view(t0.nb, -1).addmm_(weights.T, grad_mixed)
            row = 0
            for i in indices:
                t = self.terms[i]
                grads[i] = grad_weights[row:row + t.na * t.n_sel].view(
                    t.na, t.n_sel, t.nb).permute(0, 2, 1)
                row += t.na * t.n_sel
        return grads


def _axes(view: tuple[int, dict[str, tuple[int, int]]], names: str) -> tuple[int, Dims]:
    """A view's first row and the axes ``names`` in that order (absent ones broadcast)."""
    start, axes = view
    return start, tuple(axes.get(name, BROADCAST) for name in names)


class BilinearFunction(torch.autograd.Function):
    """``x + scale * B(x)`` (``residual``) or ``scale * B(x)`` on features-first x
    ``[size, n]``, B the sum of a plan's terms with weights ``params``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: BilinearPlan, scale: float,  # noqa: ANN001
                residual: bool, *params: torch.Tensor) -> torch.Tensor:
        out, saved = plan.forward(x, params)
        ctx.plan, ctx.scale, ctx.residual = plan, scale, residual
        ctx.save_for_backward(x, *saved)
        return torch.add(x, out, alpha=scale) if residual else out.mul_(scale)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205 - autograd's signature
        x, *saved = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad.clone() if ctx.residual else torch.zeros_like(grad)
        grads = ctx.plan.backward(x, grad * ctx.scale, saved, grad_x)
        return (grad_x, None, None, None, *grads)
