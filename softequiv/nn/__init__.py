"""Layers and models: soft, hard and residual-pathway equivariant networks and baselines."""

from softequiv.nn.layers import EquivariantBilinear, GatedNonlinearity, SoftLinear, gated
from softequiv.nn.models import (
    EMLP,
    MLP,
    RPP,
    Augmented,
    EquivariantBlock,
    FrameAveraging,
    MixedRPP,
    SoftEMLP,
)

__all__ = ["EMLP", "MLP", "RPP", "Augmented", "EquivariantBilinear", "EquivariantBlock",
           "FrameAveraging", "GatedNonlinearity", "MixedRPP", "SoftEMLP", "SoftLinear", "gated"]
