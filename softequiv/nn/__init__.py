"""Layers and models: soft, hard and residual-pathway equivariant networks and baselines."""

from softequiv.nn.layers import (
    AffineDistances,
    EquivariantBilinear,
    GatedNonlinearity,
    InvariantScalars,
    NormRatios,
    SoftLinear,
    gated,
)
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

__all__ = ["EMLP", "MLP", "RPP", "AffineDistances", "Augmented", "EquivariantBilinear",
           "EquivariantBlock", "FrameAveraging", "GatedNonlinearity", "InvariantScalars",
           "MixedRPP", "NormRatios", "SoftEMLP", "SoftLinear", "gated"]
