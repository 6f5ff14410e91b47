"""The projection regularizer (SPEC 3) for the ``nn.Linear`` and ``nn.Conv2d`` layers of
your own network.

::

    model = nn.Sequential(nn.Linear(20, 32), nn.SiLU(), nn.Linear(32, 9))
    reg = regularize(model, {"0": ("5*Scalar + 5*Vector", "32*Scalar"),
                             "2": ("32*Scalar", "T(2)")}, "O(3), O2xy")
    loss = mse + reg.total([0.0, 100.0])        # or reg([0.0, 100.0])
    reg.values()                                # {"O(3)": 3.1, "O2xy": 1.2}

``reg()`` gives, per candidate group j, R_j = sum over the chosen layers of
1/2 ||W - P_j W||^2 + 1/2 ||b - P_j b||^2 (float64), which is 0 exactly when every chosen
layer is G_j-equivariant between the reps given for it. Only the layers named are
measured: the network is G_j-equivariant when R_j = 0 only if everything between them
(activations, normalizations) is equivariant too, e.g. only scalar hidden features
through pointwise activations, as in the example.

An ``nn.Conv2d`` maps fields ``[N, C, H, W]`` (:mod:`softequiv.fields`: x the last axis,
a Vector's channels (x, y)) whose channels are the reps given for it, and the groups are
the square lattice's (``"D4, C4, FlipX"``); its kernel (square, odd size) is projected
onto G-steerable kernels (:class:`~softequiv.steerable.KernelProjector`) and its bias as
``b[:, None]``::

    cnn = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 2, 3, padding=1))
    reg = regularize(cnn, {"0": ("Scalar + Vector", "16*Scalar"),
                           "2": ("16*Scalar", "Vector")}, "D4, FlipX")

Equivariance of the whole network also needs padding symmetric about the kernel's centre
(``padding=k // 2``) and stride 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from softequiv.errors import InputError
from softequiv.groups import Group
from softequiv.reps import Rep, Scalar
from softequiv.solver import Projector
from softequiv.spec import parse_groups, parse_rep
from softequiv.steerable import KernelProjector

__all__ = ["EquivarianceRegularizer", "regularize"]


Layer = nn.Linear | nn.Conv2d


class LayerProjectors(nn.Module):
    """The weight and bias projectors of one ``nn.Linear`` layer, or of one ``nn.Conv2d``
    with ``kernel_size`` (its bias a map from one Scalar)."""

    def __init__(self, rep_in: Rep, rep_out: Rep, groups: Sequence[Group],
                 kernel_size: int | None = None):
        super().__init__()
        if kernel_size is None:
            self.weight_projector = Projector(rep_in, rep_out, groups)
            self.bias_projector = Projector(Scalar, rep_out, groups)
        else:
            self.weight_projector = KernelProjector(rep_in, rep_out, groups, kernel_size)
            self.bias_projector = KernelProjector(Scalar, rep_out, groups, 1)

    def penalty(self, layer: Layer) -> torch.Tensor:
        value = self.weight_projector.penalty(layer.weight)
        if layer.bias is not None:
            value = value + self.bias_projector.penalty(layer.bias[:, None])
        return value


class EquivarianceRegularizer(nn.Module):
    """Per-group projection penalties of some ``nn.Linear`` / ``nn.Conv2d`` layers of a model.

    Holds only the projectors (buffers: ``.to(device)`` moves them; the state_dict has
    no model weights). The layers themselves are referenced, not registered, so the
    penalties always use the model's current weights and gradients flow to them.

    ``reg()`` -> float64 ``[n_groups]`` penalties summed over layers; ``reg(lambdas)`` or
    ``reg.total(lambdas)`` -> the weighted sum (lambdas: a sequence or tensor with one
    value per group, or a dict by group name, missing names counting 0);
    ``reg.values()`` -> ``{group name: float}`` for logging.
    """

    def __init__(self, layers: Mapping[str, Layer], reps: Mapping[str, tuple[Rep, Rep]],
                 groups: Sequence[Group], group_names: Sequence[str]):
        super().__init__()
        self.group_names = list(group_names)
        self.layer_names = list(layers)
        self._layers = [layers[name] for name in self.layer_names]  # plain list: not registered
        self.projectors = nn.ModuleList(
            LayerProjectors(*reps[name], groups, _kernel_size(layers[name]))
            for name in self.layer_names)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def penalties(self) -> torch.Tensor:
        """R_j for every group, float64 ``[n_groups]``, differentiable in the weights."""
        terms = [proj.penalty(layer) for proj, layer in zip(self.projectors, self._layers,
                                                             strict=True)]
        return torch.stack(terms).sum(0)

    def total(self, lambdas: Any) -> torch.Tensor:
        """sum_j lambda_j R_j (float64 scalar)."""
        penalties = self.penalties()
        return (self._lambdas(lambdas, penalties.device) * penalties).sum()

    def forward(self, lambdas: Any = None) -> torch.Tensor:
        """``penalties()`` without lambdas, ``total(lambdas)`` with them."""
        if lambdas is None:
            return self.penalties()
        return self.total(lambdas)

    @torch.no_grad()
    def values(self) -> dict[str, float]:
        """``{group name: R_j}`` as plain floats, for logging."""
        return dict(zip(self.group_names, self.penalties().tolist(), strict=True))

    def _lambdas(self, lambdas: Any, device: torch.device) -> torch.Tensor:
        if isinstance(lambdas, Mapping):
            unknown = [name for name in lambdas if name not in self.group_names]
            if unknown:
                raise InputError(f"lambdas name unknown group {unknown[0]!r}; "
                                 f"the groups are {', '.join(self.group_names)}")
            lambdas = [float(lambdas.get(name, 0.0)) for name in self.group_names]
        out = torch.as_tensor(lambdas, dtype=torch.float64, device=device)
        if out.shape != (self.n_groups,):
            raise InputError(f"lambdas must have one value per group ({self.n_groups}: "
                             f"{', '.join(self.group_names)}), got shape {tuple(out.shape)}")
        return out

    def extra_repr(self) -> str:
        return f"layers={self.layer_names}, groups={self.group_names}"


def regularize(model: nn.Module, reps: Mapping[str, tuple[str, str]],
               groups: str | Sequence[str]) -> EquivarianceRegularizer:
    """An :class:`EquivarianceRegularizer` for the named ``nn.Linear`` and ``nn.Conv2d``
    layers of ``model``.

    ``reps`` maps a layer's name (as in ``model.named_modules()``, e.g. ``"0"`` or
    ``"encoder.fc1"``) to its ``(rep_in, rep_out)`` spec strings, whose sizes under the
    groups must equal the layer's ``in_features`` / ``out_features`` (a convolution's
    ``in_channels`` / ``out_channels``). ``groups`` are candidate group specs acting on the
    same R^d (``"O(3), O2xy"`` or a list; with convolutions, finite groups of the square
    lattice on R^2). Every problem raises :class:`~softequiv.errors.InputError` with a
    one-line message.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(reps, Mapping) or not reps:
        raise InputError("reps must be a non-empty dict {layer name: (rep_in, rep_out)}")
    group_list = _parse_group_list(groups)
    d = group_list[0].d
    modules = dict(model.named_modules())
    linear_names = [name for name, m in modules.items() if isinstance(m, Layer)]
    layers: dict[str, Layer] = {}
    parsed: dict[str, tuple[Rep, Rep]] = {}
    for name, pair in reps.items():
        layer = _linear(modules, linear_names, name)
        rep_in_text, rep_out_text = _rep_pair(name, pair)
        rep_in, rep_out = parse_rep(rep_in_text), parse_rep(rep_out_text)
        size_in, size_out = rep_in.size(d), rep_out.size(d)
        conv = isinstance(layer, nn.Conv2d)
        if conv:
            _check_conv(name, layer, group_list)
        widths = ((layer.in_channels, layer.out_channels) if conv
                  else (layer.in_features, layer.out_features))
        if (size_in, size_out) != widths:
            unit = "channels" if conv else "features"
            raise InputError(
                f"layer {name!r} maps {widths[0]} -> {widths[1]} {unit} "
                f"but reps {rep_in_text!r} -> {rep_out_text!r} have sizes {size_in} -> "
                f"{size_out} under {group_list[0].name}")
        layers[name], parsed[name] = layer, (rep_in, rep_out)
    names = [g.name for g in group_list]
    return EquivarianceRegularizer(layers, parsed, group_list, names)


def _parse_group_list(groups: Any) -> list[Group]:
    """Candidate groups from a spec string or a list of spec strings (parse_groups checks
    names and that all act on the same R^d)."""
    if isinstance(groups, str):
        return parse_groups(groups)
    if isinstance(groups, Sequence) and all(isinstance(g, str) for g in groups):
        return parse_groups(list(groups))
    raise InputError("groups must be a string like 'O(3), O2xy' or a list of group specs, "
                     f"got {type(groups).__name__}")


def _kernel_size(layer: Layer) -> int | None:
    return layer.kernel_size[0] if isinstance(layer, nn.Conv2d) else None


def _check_conv(name: str, layer: nn.Conv2d, groups: Sequence[Group]) -> None:
    """A convolution the lattice groups can act on: a square kernel of odd size, ungrouped;
    every candidate a finite group of the square lattice."""
    k = layer.kernel_size
    if k[0] != k[1] or k[0] % 2 == 0:
        raise InputError(f"layer {name!r} has kernel size {tuple(k)}; the kernel must be square "
                         "and of odd size (a centre offset) for the grid's symmetries")
    if layer.groups != 1:
        raise InputError(f"layer {name!r} is a grouped convolution (groups={layer.groups}); "
                         "only groups=1 is supported")
    for group in groups:
        if group.d != 2 or not group.is_finite:
            raise InputError(f"layer {name!r} is a convolution: its candidates must be finite "
                             f"groups of the square lattice on R^2 (D4, C4, C2, D2, FlipX, "
                             f"FlipY), not {group.name}")


def _linear(modules: dict[str, nn.Module], linear_names: list[str], name: Any) -> Layer:
    if not isinstance(name, str) or name not in modules:
        shown = ", ".join(repr(n) for n in linear_names[:10]) or "none"
        more = f", ... ({len(linear_names)} in all)" if len(linear_names) > 10 else ""
        raise InputError(f"model has no module {name!r}; its nn.Linear and nn.Conv2d layers "
                         f"are {shown}{more}")
    layer = modules[name]
    if not isinstance(layer, Layer):
        raise InputError(f"module {name!r} is {type(layer).__name__}, not nn.Linear or "
                         "nn.Conv2d")
    if isinstance(layer.weight, nn.parameter.UninitializedParameter):
        raise InputError(f"layer {name!r} is not initialized yet (a lazy layer): run one "
                         "forward pass before regularize()")
    return layer


def _rep_pair(name: str, pair: Any) -> tuple[str, str]:
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(r, str) for r in pair)):
        raise InputError(f"reps[{name!r}] must be a pair (rep_in, rep_out) of strings like "
                         f"('5*Scalar + 5*Vector', '32*Scalar'), got {pair!r}")
    return pair[0], pair[1]

