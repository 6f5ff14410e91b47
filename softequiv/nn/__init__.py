"""Layers and models: soft, hard and residual-pathway equivariant networks and baselines,
for vectors (MLPs) and for fields on a square grid (CNNs)."""

from softequiv.nn.cnn import (
    CNN,
    GCNN,
    RPPCNN,
    FieldAugmented,
    MixedRPPCNN,
    RelaxedGCNN,
    SoftCNN,
)
from softequiv.nn.conv import RelaxedGroupConv2d, SoftConv2d
from softequiv.nn.invariants import AffineDistances, InvariantScalars, NormRatios
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
from softequiv.nn.soft import SoftLayer

__all__ = ["CNN", "EMLP", "GCNN", "MLP", "RPP", "RPPCNN", "AffineDistances", "Augmented",
           "EquivariantBilinear", "EquivariantBlock", "FieldAugmented", "FrameAveraging",
           "GatedNonlinearity", "InvariantScalars", "MixedRPP", "MixedRPPCNN", "NormRatios",
           "RelaxedGCNN", "RelaxedGroupConv2d", "SoftCNN", "SoftConv2d", "SoftEMLP", "SoftLayer",
           "SoftLinear", "gated"]
