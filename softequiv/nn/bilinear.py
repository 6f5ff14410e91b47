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


class BilinearPlan:
    """The terms of one layer grouped for evaluation: ``contract`` terms by output type
    (one matrix product each), ``mix`` terms by input type (one matrix product each).

    ``offsets[t]`` is the first coordinate of type t in the features-first activations,
    whose types must be contiguous and in this order."""

    def __init__(self, offsets: list[int], terms: list[Term]):
        self.offsets, self.terms = offsets, terms
        self.contract: dict[int, list[int]] = {}
        self.mix: dict[int, list[int]] = {}
        for i, t in enumerate(terms):
            (self.mix.setdefault(t.b, []) if t.mix else self.contract.setdefault(t.a, [])).append(i)

    def source(self, x: torch.Tensor, t: Term) -> torch.Tensor:
        """The term's source copies, ``[n_sel, da, db, n]`` (a view)."""
        start = self.offsets[t.s]
        return x[start:start + t.n_sel * t.da * t.db].view(t.n_sel, t.da, t.db, x.shape[1])

    def inputs(self, x: torch.Tensor, t: Term) -> torch.Tensor:
        """The copies of the term's input type, ``[nb, db, n]`` (a view)."""
        start = self.offsets[t.b]
        return x[start:start + t.nb * t.db].view(t.nb, t.db, x.shape[1])

    def outputs(self, x: torch.Tensor, t: Term) -> torch.Tensor:
        """The coordinates of the term's output type, ``[na, da, n]`` (a view)."""
        start = self.offsets[t.a]
        return x[start:start + t.na * t.da].view(t.na, t.da, x.shape[1])

    def forward(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """sum over terms, unscaled, ``[size, n]``; and what the backward pass reuses: per
        output type its stacked weights and contracted inputs, per input type its stacked
        weights and mixed copies."""
        n = x.shape[1]
        out = torch.zeros_like(x)
        saved: list[torch.Tensor] = []
        for a, indices in self.contract.items():
            terms = [self.terms[i] for i in indices]
            da, na = terms[0].da, terms[0].na
            contracted = x.new_empty(sum(t.n_sel * t.nb for t in terms), da, n)
            row = 0
            for t in terms:
                rows = contracted[row:row + t.n_sel * t.nb].view(t.n_sel, t.nb, da, n)
                torch.sum(self.source(x, t)[:, None] * self.inputs(x, t)[None, :, None], 3,
                          out=rows)
                row += t.n_sel * t.nb
            weights = torch.cat([params[i].permute(0, 2, 1).reshape(na, -1) for i in indices], 1)
            out[self.offsets[a]:self.offsets[a] + na * da].view(na, da * n).addmm_(
                weights, contracted.view(len(contracted), da * n))
            saved += [weights, contracted]
        for _, indices in self.mix.items():
            terms = [self.terms[i] for i in indices]
            weights = torch.cat([params[i].permute(0, 2, 1).reshape(-1, t.nb)
                                 for i, t in zip(indices, terms, strict=True)])
            mixed = weights @ self.inputs(x, terms[0]).reshape(terms[0].nb, terms[0].db * n)
            row = 0
            for t in terms:
                m = mixed[row:row + t.na * t.n_sel].view(t.na, 1, t.n_sel, t.db, n)
                source = self.source(x, t).transpose(0, 1)[None]  # [1, i, c, j, n]
                self.outputs(out, t).add_(_product_sum(source, m, 2, 2))
                row += t.na * t.n_sel
            saved += [weights, mixed]
        return out, saved

    def backward(self, x: torch.Tensor, grad: torch.Tensor, saved: list[torch.Tensor],
                 grad_x: torch.Tensor) -> list[torch.Tensor]:
        """Adds the gradient of ``<grad, forward(x)>`` with respect to x into ``grad_x``
        and returns the gradients of the term weights (in their own shapes)."""
        n = x.shape[1]
        grads: list[torch.Tensor | None] = [None] * len(self.terms)
        pos = 0
        for a, indices in self.contract.items():
            weights, contracted = saved[pos], saved[pos + 1]
            pos += 2
            t0 = self.terms[indices[0]]
            g = grad[self.offsets[a]:self.offsets[a] + t0.na * t0.da].view(t0.na, t0.da * n)
            grad_weights = g @ contracted.view(len(contracted), t0.da * n).T
            grad_contracted = (weights.T @ g).view(len(contracted), t0.da, 1, n)
            col = 0
            for i in indices:
                t = self.terms[i]
                gc = grad_contracted[col:col + t.n_sel * t.nb].view(t.n_sel, t.nb, t.da, 1, n)
                self.source(grad_x, t).add_(_product_sum(gc, self.inputs(x, t)[None, :, None],
                                                         1))
                self.inputs(grad_x, t).add_(_product_sum(gc.transpose(0, 1),
                                                         self.source(x, t)[None], 1, 2))
                grads[i] = grad_weights[:, col:col + t.n_sel * t.nb].view(
                    t.na, t.n_sel, t.nb).permute(0, 2, 1)
                col += t.n_sel * t.nb
        for _, indices in self.mix.items():
            weights, mixed = saved[pos], saved[pos + 1]
            pos += 2
            t0 = self.terms[indices[0]]
            grad_mixed = torch.empty_like(mixed)
            row = 0
            for i in indices:
                t = self.terms[i]
                g = self.outputs(grad, t).view(t.na, 1, t.da, 1, n)
                m = mixed[row:row + t.na * t.n_sel].view(t.na, t.n_sel, 1, t.db, n)
                self.source(grad_x, t).add_(_product_sum(g, m, 0))
                torch.sum(g * self.source(x, t)[None], 2,
                          out=grad_mixed[row:row + t.na * t.n_sel].view(t.na, t.n_sel, t.db, n))
                row += t.na * t.n_sel
            inputs = self.inputs(x, t0).reshape(t0.nb, t0.db * n)
            grad_mixed = grad_mixed.view(len(mixed), t0.db * n)
            grad_weights = grad_mixed @ inputs.T
            self.inputs(grad_x, t0).view(t0.nb, t0.db * n).addmm_(weights.T, grad_mixed)
            row = 0
            for i in indices:
                t = self.terms[i]
                grads[i] = grad_weights[row:row + t.na * t.n_sel].view(
                    t.na, t.n_sel, t.nb).permute(0, 2, 1)
                row += t.na * t.n_sel
        return grads


def _product_sum(a: torch.Tensor, b: torch.Tensor, dim: int, count: int = 1) -> torch.Tensor:
    """(a * b) summed over the ``count`` adjacent dims from ``dim`` (broadcasting), merged
    into one first: a reduction over several dims that are not adjacent, or not merged,
    is many times slower in torch on CPU."""
    product = a * b
    if count > 1:
        product = product.flatten(dim, dim + count - 1)
    return product.squeeze(dim) if product.shape[dim] == 1 else product.sum(dim)


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
