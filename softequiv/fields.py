"""Fields on a square grid and how the lattice's point groups act on them (SPEC 10).

A field is an array ``[N, C, H, W]`` (or ``[C, H, W]``): the last axis is x, the one
before is y, positions are taken about the grid's centre. An element g of a finite group
acting on R^2 moves the grid and acts on the channels,

    (g f)(p) = rho(g) f(g^{-1} p),

where the channels are a sum of tensor reps with d = 2 (``Scalar``: one channel,
``Vector``: two channels (x, y), ``T(2)``: four, ...) or copies of a group's regular
representation (the hidden channels of group-equivariant CNNs). Every element of a
square-lattice group is a signed permutation matrix, so it moves grid points onto grid
points and acts on these channels by a signed permutation: the action is exact, made
of flips, a transpose and a signed gather, with no interpolation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Protocol, TypeVar

import numpy as np
import torch

from softequiv.errors import InputError
from softequiv.groups import Group
from softequiv.reps import Rep

Array = np.ndarray
FieldArray = TypeVar("FieldArray", np.ndarray, torch.Tensor)

D = 2
"""Fields live on a plane: every group here acts on R^2."""


def lattice_element(g: Array | torch.Tensor) -> Array:
    """``g`` as an integer 2x2 signed permutation matrix (a symmetry of the square grid);
    InputError when it is not one."""
    m = np.asarray(g.detach().cpu() if isinstance(g, torch.Tensor) else g, dtype=np.float64)
    rounded = np.round(m)
    if (m.shape != (D, D) or np.abs(m - rounded).max() > 1e-9
            or not np.array_equal(np.abs(rounded).sum(0), [1, 1])
            or not np.array_equal(np.abs(rounded).sum(1), [1, 1])):
        raise InputError(f"{m.tolist()} is not a symmetry of the square grid: only rotations by "
                         "90 degrees and mirrors (signed permutation matrices) move a grid "
                         "onto itself")
    return rounded.astype(np.int64)


def check_grid(grid: tuple[int, int], groups: Sequence[Group]) -> None:
    """Fields on an ``H x W`` grid: a candidate with an element that swaps x and y (a
    quarter turn, a diagonal mirror) moves the grid onto itself only when H == W;
    InputError naming the candidates that need a square grid on a rectangular one."""
    height, width = (int(n) for n in grid)
    if height == width:
        return
    turning = [group.name for group in groups
               if any(lattice_element(g)[0, 0] == 0 for g in group.elements())]
    if turning:
        raise InputError(f"candidates {', '.join(turning)} turn the grid by 90 degrees or "
                         f"mirror it along a diagonal, which needs a square grid (H == W), but "
                         f"the fields are {height}x{width} (H x W)")


def signed_permutation(rho: Array) -> tuple[Array, Array]:
    """The source index and sign of every row of a signed permutation matrix:
    ``(rho @ v)[i] == sign[i] * v[source[i]]``. ValueError when ``rho`` is not one."""
    rho = np.asarray(rho, dtype=np.float64)
    source = np.abs(rho).argmax(axis=1)
    sign = rho[np.arange(len(rho)), source]
    rebuilt = np.zeros_like(rho)
    rebuilt[np.arange(len(rho)), source] = sign
    if not (np.allclose(rho, rebuilt, atol=1e-9) and np.allclose(np.abs(sign), 1.0, atol=1e-9)
            and len(np.unique(source)) == len(source)):
        raise ValueError("the channel action is not a signed permutation")
    return source, np.round(sign)


class Channels(Protocol):
    """How the elements of a finite group act on a field's channels."""

    size: int

    def signed_permutation(self, g: Array) -> tuple[Array, Array]:
        """Source index and sign per channel: ``(rho(g) v)[i] = sign[i] * v[source[i]]``."""
        ...


class TensorChannels:
    """Channels that are a sum of tensor reps with d = 2 (``"Scalar + 2*Vector"``)."""

    def __init__(self, rep: Rep):
        self.rep = rep
        self.size = rep.size(D)

    def signed_permutation(self, g: Array) -> tuple[Array, Array]:
        rho = self.rep.rho(torch.tensor(np.array(g, dtype=np.float64)))[0].numpy()
        return signed_permutation(rho)

    def __repr__(self) -> str:
        return str(self.rep)


class RegularChannels:
    """``copies`` copies of the regular representation of a finite group G: channel
    ``c * |G| + k`` holds copy c's value at the element g_k, and h acts by
    (h f)(g) = f(h^{-1} g), a permutation. Pointwise nonlinearities commute with it, which
    is why group-equivariant CNNs use these channels. Elements of any subgroup of G act
    too (as elements of G)."""

    def __init__(self, group: Group, copies: int):
        self.group, self.copies = group, int(copies)
        self.order = len(group.elements())
        self.size = self.copies * self.order

    @cached_property
    def _inverse_times(self) -> Array:
        """``[order, order]``: entry (h, k) is the index of h^{-1} g_k."""
        elements = self.group.elements()
        table = np.empty((self.order, self.order), dtype=np.int64)
        for h, eh in enumerate(elements):
            inv = np.linalg.inv(eh)
            for k, ek in enumerate(elements):
                table[h, k] = self.group.index_of(inv @ ek)
        return table

    def signed_permutation(self, g: Array) -> tuple[Array, Array]:
        try:
            h = self.group.index_of(g)
        except ValueError:
            raise InputError(f"{np.asarray(g).tolist()} is not an element of "
                             f"{self.group.name}, so it does not act on its regular channels"
                             ) from None
        offsets = np.arange(self.copies)[:, None] * self.order
        return (offsets + self._inverse_times[h][None, :]).reshape(-1), np.ones(self.size)

    def __repr__(self) -> str:
        return f"{self.copies}*Regular({self.group.name})"


def as_channels(channels: Rep | Channels) -> Channels:
    """Tensor reps become :class:`TensorChannels`; channel objects pass through."""
    return TensorChannels(channels) if isinstance(channels, Rep) else channels


def rho(channels: Rep | Channels, g: Array) -> Array:
    """The dense channel action ``[C, C]`` of g (for tests and small checks)."""
    source, sign = as_channels(channels).signed_permutation(g)
    out = np.zeros((len(source), len(source)))
    out[np.arange(len(source)), source] = sign
    return out


def _flip(x: FieldArray, axis: int) -> FieldArray:
    return torch.flip(x, (axis,)) if isinstance(x, torch.Tensor) else np.flip(x, axis)


def _swap_xy(x: FieldArray) -> FieldArray:
    return x.transpose(-1, -2) if isinstance(x, torch.Tensor) else np.swapaxes(x, -1, -2)


def move_grid(field: FieldArray, g: Array | torch.Tensor) -> FieldArray:
    """The spatial part of the action: ``out[..., p] = field[..., g^{-1} p]`` with p about
    the grid's centre (numpy or torch, any leading axes). Elements that swap x and y
    need a square grid."""
    m = lattice_element(g).T  # g^{-1} of a signed permutation
    height, width = field.shape[-2:]
    if m[0, 0] != 0:
        out = _flip(field, -1) if m[0, 0] < 0 else field
        return _flip(out, -2) if m[1, 1] < 0 else out
    if height != width:
        raise InputError(f"rotating a field needs a square grid (H == W), got {height}x{width}")
    out = _swap_xy(field)
    out = _flip(out, -2) if m[0, 1] < 0 else out
    return _flip(out, -1) if m[1, 0] < 0 else out


def transform(field: FieldArray, g: Array | torch.Tensor, channels: Rep | Channels) -> FieldArray:
    """g acting on fields ``[N, C, H, W]`` or ``[C, H, W]`` (numpy or torch):
    (g f)(p) = rho(g) f(g^{-1} p)."""
    channels = as_channels(channels)
    axis = field.ndim - 3
    if axis < 0 or field.shape[axis] != channels.size:
        raise InputError(f"a field of {channels} needs shape [N, {channels.size}, H, W], got "
                         f"{list(field.shape)}")
    source, sign = channels.signed_permutation(lattice_element(g).astype(np.float64))
    moved = move_grid(field, g)
    shape = [1] * field.ndim
    shape[axis] = channels.size
    if isinstance(field, torch.Tensor):
        index = torch.as_tensor(source, device=field.device)
        signs = torch.as_tensor(sign, dtype=field.dtype, device=field.device).reshape(shape)
        return moved.index_select(axis, index) * signs
    return np.take(moved, source, axis=axis) * sign.reshape(shape).astype(field.dtype)


def transform_each(fields: torch.Tensor, picks: torch.Tensor, elements: Array,
                   channels: Rep | Channels) -> torch.Tensor:
    """Field i moved by ``elements[picks[i]]`` (one element per example, as augmentation and
    sample-based penalties draw them), for a batch ``[N, C, H, W]``; differentiable."""
    order = torch.argsort(picks.cpu(), stable=True)
    counts = torch.bincount(picks.cpu(), minlength=len(elements)).tolist()
    order = order.to(fields.device)
    chunks = fields[order].split(counts)
    moved = torch.cat([transform(chunk, g, channels)
                       for chunk, g in zip(chunks, elements, strict=True)])
    return moved[torch.argsort(order)]


Function = Callable[[torch.Tensor], torch.Tensor] | Callable[[np.ndarray], np.ndarray]


@torch.no_grad()
def field_equivariance_error(f: Function, x: torch.Tensor | np.ndarray, group: Group,
                             rep_in: Rep | Channels, rep_out: Rep | Channels, *,
                             batch: int = 256) -> float:
    """Relative equivariance error (SPEC 6) of a field-to-field function under a finite
    group, averaged over the inputs ``x`` ``[N, C_in, H, W]`` and every element g:

        mean ||f(g x) - g f(x)|| / (||f(g x)|| + ||g f(x)||)

    (norms over a whole output field). Every element counts once, the identity included:
    the exact expectation over a uniformly drawn element. 0 for an exactly equivariant f,
    at most 1. ``f`` may take and return torch tensors (a model; call it on float64 x for
    tight checks) or numpy arrays (a simulator's ground truth); it is called on chunks of
    ``batch`` fields. The error is computed in float64.
    """
    if not group.is_finite:
        raise InputError(f"field equivariance needs a finite group of the square lattice, "
                         f"not {group.name}")
    numpy_function = isinstance(x, np.ndarray)

    def call(v: torch.Tensor | np.ndarray) -> torch.Tensor:
        parts = [f(v[i:i + batch]) for i in range(0, len(v), batch)]
        if numpy_function:
            return torch.as_tensor(np.concatenate([np.asarray(p) for p in parts]),
                                   dtype=torch.float64)
        return torch.cat(parts).double()

    fx = call(x)
    errors = []
    for g in group.elements():
        a = call(transform(x, g, rep_in))
        b = transform(fx, g, rep_out)
        den = a.flatten(1).norm(dim=1) + b.flatten(1).norm(dim=1)
        errors.append(((a - b).flatten(1).norm(dim=1) / den.clamp_min(1e-300)).mean())
    return float(torch.stack(errors).mean())
