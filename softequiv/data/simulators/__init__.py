"""Physics simulators behind the built-in datasets, one subpackage or module each.

Every simulator here generates raw trajectories (cached on disk, see
:mod:`softequiv.data.cache`) and measures its own equivariance under each candidate group,
the ground truth a discovery must recover; turning trajectories into dataset rows lives
next to the dataset (:mod:`softequiv.data.motion`, :mod:`softequiv.data.plumes`).

- :mod:`~softequiv.data.simulators.mujoco`: MuJoCo legged robots (``softequiv[mujoco]``).
- :mod:`~softequiv.data.simulators.smoke`: PhiFlow smoke plumes (``softequiv[fluids]``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

__all__ = ["optional_import", "relative_error"]


def optional_import(module: str, need: str, extra: str) -> ModuleType:
    """Import a simulator's engine, or say which extra installs it (``need`` names it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{need}: pip install 'softequiv[{extra}]'") from exc


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """mean over rows of ||a - b|| / (||a|| + ||b||), norms over all but the first axis.

    SPEC 6's relative equivariance error with a = f(g x) and b = g f(x), one row per input.
    """
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    num = np.linalg.norm(a - b, axis=1)
    den = np.linalg.norm(a, axis=1) + np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-300)))
