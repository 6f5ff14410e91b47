"""Field-to-field networks: the soft-equivariant CNN and the baselines it is compared with.

Every symmetry-aware CNN here has the same shape: convolutions from the input field types
to hidden channels, between hidden channels, and to the output field types, with a
pointwise SiLU in between. The hidden channels are copies of the regular representation
of the ambient group (the first candidate): its elements permute them, and a permutation
commutes with any pointwise function, so the nonlinearities are exactly equivariant under
the ambient group and every subgroup of it (SPEC 4). Every candidate must be a subgroup of
the ambient group, and only the convolutions can break a symmetry, so R_j measures the
whole network's departure from G_j. Regular channels (the G-CNN's choice, and the relaxed
group convolution's) contain every irreducible representation of the group and take any
pointwise nonlinearity; gated tensor types would need gates and lose expressivity.

Sizes are comparable by width: ``ch`` hidden channels for every model (rounded down to a
multiple of |G| for the group models). The soft, hard and plain CNNs of one width have
the same number of parameters; RPP has twice as many; the relaxed group convolution
``banks / |G|`` times as many in its hidden layers (see :func:`parameter_count`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from softequiv.errors import InputError
from softequiv.fields import RegularChannels, as_channels, lattice_element, transform_each
from softequiv.groups import Group
from softequiv.nn.conv import RelaxedGroupConv2d, SoftConv2d
from softequiv.nn.soft import SoftLayer
from softequiv.reps import Rep

D = 2


def check_field_groups(groups: Sequence[Group]) -> None:
    """Field candidates must be finite groups of the square lattice on R^2, each a subgroup
    of the first (ambient) one; InputError naming the first that is not."""
    if not groups:
        raise InputError("no candidate groups given (the ambient group first)")
    ambient = groups[0]
    for group in groups:
        if group.d != D or not group.is_finite:
            raise InputError(f"field candidates must be finite groups of the square lattice "
                             f"on R^2 (D4, C4, C2, D2, FlipX, FlipY), not {group.name}")
        try:
            elements = group.elements()
            for g in elements:
                lattice_element(g)
                ambient.index_of(g)
        except ValueError:
            raise InputError(f"candidate {group.name} is not a subgroup of the ambient group "
                             f"{ambient.name} (the first candidate): list the largest first"
                             ) from None


def hidden_channels(group: Group, ch: int) -> RegularChannels:
    """About ``ch`` hidden channels as copies of the regular representation of ``group``."""
    order = len(group.elements())
    if ch < order:
        raise InputError(f"ch {ch} is less than one regular field of {group.name} "
                         f"({order} channels)")
    return RegularChannels(group, ch // order)


def _check_input(x: torch.Tensor, size: int, rep: object) -> None:
    if x.dim() != 4 or x.shape[1] != size:
        raise InputError(f"fields of {rep} need shape [N, {size}, H, W], got {list(x.shape)}")


class _FieldNet(nn.Module):
    """Convolutions with a SiLU between them; the input's shape is checked."""

    def __init__(self, convs: Sequence[nn.Module], size_in: int, label_in: object):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.activation = nn.SiLU()
        self.size_in, self.label_in = size_in, label_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.size_in, self.label_in)
        for conv in self.convs[:-1]:
            x = self.activation(conv(x))
        return self.convs[-1](x)


class SoftCNN(_FieldNet):
    """The soft-equivariant CNN for field-to-field prediction: soft convolutions between
    ``rep_in``, hidden regular channels of ``groups[0]`` and ``rep_out`` (tensor reps with
    d = 2, e.g. ``4*Vector`` -> ``Vector``). ``conv_options`` choose the layer kind (see
    :class:`~softequiv.nn.conv.SoftConv2d`); ``penalties()`` is (R_1, ..., R_k).

    ``layers`` hidden layers means ``layers + 1`` convolutions of size ``kernel_size``.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, groups: Sequence[Group], *, ch: int = 32,
                 layers: int = 3, kernel_size: int = 3, **conv_options):
        check_field_groups(groups)
        if layers < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f"layers must be at least 1 and the kernel size odd, got "
                             f"{layers} and {kernel_size}")
        hidden = hidden_channels(groups[0], ch)
        types = [rep_in] + [hidden] * layers + [rep_out]
        super().__init__([SoftConv2d(a, b, groups, kernel_size, **conv_options)
                          for a, b in zip(types[:-1], types[1:], strict=True)],
                         rep_in.size(D), rep_in)
        self.groups, self.rep_in, self.rep_out = list(groups), rep_in, rep_out

    def soft_layers(self) -> list[SoftLayer]:
        return [m for m in self.modules() if isinstance(m, SoftLayer)]

    def penalties(self) -> torch.Tensor:
        """R_j for every candidate group, float64 ``[n_groups]``."""
        return torch.stack([layer.penalties() for layer in self.soft_layers()]).sum(0)


def GCNN(rep_in: Rep, rep_out: Rep, group: Group, **size) -> SoftCNN:
    """Hard equivariance to one group (a G-CNN with regular hidden channels): every kernel is
    projected, K = P K, at every step."""
    return SoftCNN(rep_in, rep_out, [group], projected=(0,), free=False, **size)


def RPPCNN(rep_in: Rep, rep_out: Rep, group: Group, **size) -> SoftCNN:
    """Residual pathway prior for convolutions: K = P K_eq + K_free; the trainer puts a
    stronger weight decay on the free pathway (``free_parameters``)."""
    return SoftCNN(rep_in, rep_out, [group], projected=(0,), free=True, **size)


def MixedRPPCNN(rep_in: Rep, rep_out: Rep, groups: Sequence[Group], **size) -> SoftCNN:
    """Residual pathways for every candidate group plus a free one."""
    return SoftCNN(rep_in, rep_out, groups, projected=tuple(range(len(groups))), free=True,
                   **size)


class CNN(_FieldNet):
    """A plain CNN of the same shape (zero padding, SiLU): no symmetry beyond translations."""

    def __init__(self, size_in: int, size_out: int, *, ch: int = 32, layers: int = 3,
                 kernel_size: int = 3):
        sizes = [size_in] + [ch] * layers + [size_out]
        super().__init__([nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2)
                          for a, b in zip(sizes[:-1], sizes[1:], strict=True)],
                         size_in, f"{size_in} channels")


class RelaxedGCNN(_FieldNet):
    """The relaxed group-convolution network of Wang, Walters & Yu (ICML 2022) on field
    types of a finite lattice group: relaxed group convolutions (see
    :class:`~softequiv.nn.conv.RelaxedGroupConv2d`) between ``rep_in``, hidden regular
    channels and ``rep_out``. ``relaxation()`` sums the layers' regularizers, and
    ``prior_loss()`` = ``alpha * relaxation()`` is what the trainer adds to the loss (the
    published rotation runs: alpha = 1e-5)."""

    def __init__(self, rep_in: Rep, rep_out: Rep, group: Group, *, ch: int = 32,
                 layers: int = 3, kernel_size: int = 3, banks: int = 2, alpha: float = 1e-5):
        check_field_groups([group])
        hidden = hidden_channels(group, ch)
        types = [rep_in] + [hidden] * layers + [rep_out]
        super().__init__([RelaxedGroupConv2d(a, b, group, kernel_size, banks=banks)
                          for a, b in zip(types[:-1], types[1:], strict=True)],
                         rep_in.size(D), rep_in)
        self.group, self.rep_in, self.rep_out = group, rep_in, rep_out
        self.alpha = alpha

    def relaxation(self) -> torch.Tensor:
        return torch.stack([conv.relaxation() for conv in self.convs]).sum()

    def prior_loss(self) -> torch.Tensor:
        return self.alpha * self.relaxation()


class FieldAugmented(nn.Module):
    """Trains any field model on randomly transformed data: in training mode it returns
    g^{-1} f(g x) for a uniformly drawn element g of a finite group per example, which
    makes the loss that on augmented pairs (g x, g y). In evaluation mode it is the model."""

    def __init__(self, model: nn.Module, rep_in: Rep, rep_out: Rep, group: Group):
        super().__init__()
        check_field_groups([group])
        self.model, self.group = model, group
        self.channels_in, self.channels_out = as_channels(rep_in), as_channels(rep_out)
        self.elements = group.elements()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.model(x)
        picks = torch.randint(len(self.elements), (x.shape[0],))
        moved = transform_each(x, picks, self.elements, self.channels_in)
        inverses = self.elements.transpose(0, 2, 1)
        return transform_each(self.model(moved), picks, inverses, self.channels_out)


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters (what "comparable size" is checked against)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
