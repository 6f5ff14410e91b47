"""softequiv: discover which candidate symmetry groups your data respects, and how strongly.

``SymmetryRegressor`` fits and reports (scikit-learn style); ``regularize`` adds the
projection regularizer to the ``nn.Linear`` layers of your own network. Both are
imported on first use, so ``import softequiv.errors`` (and the CLI) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from softequiv.estimator import SymmetryRegressor
    from softequiv.plugin import regularize

__version__ = "0.1.0"
"""The package version; pyproject.toml reads it from here (the single source)."""

__all__ = ["SymmetryRegressor", "__version__", "regularize"]


def __getattr__(name: str) -> Any:
    if name == "SymmetryRegressor":
        from softequiv.estimator import SymmetryRegressor

        return SymmetryRegressor
    if name == "regularize":
        from softequiv.plugin import regularize

        return regularize
    raise AttributeError(f"module 'softequiv' has no attribute {name!r}")
