"""The on-disk cache of simulated data: where it lives, how entries are named and written.

Simulations are slow and deterministic per arguments, so the simulators store their
results under :func:`cache_dir` (never inside the repository) in files named from a
digest of every argument that changes the numbers. Writes are atomic (a temporary file in
the same folder, then a rename), so an interrupted run leaves either the old entry or
none, never a truncated one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from softequiv.atomic import atomic_file

__all__ = ["args_digest", "cache_dir", "write_atomic", "write_json", "write_npz"]


def cache_dir() -> Path:
    """``$SOFTEQUIV_CACHE`` or ``~/.cache/softequiv``."""
    root = os.environ.get("SOFTEQUIV_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "softequiv"


def args_digest(args: dict[str, Any]) -> str:
    """12 hex digits identifying a JSON-able dict of arguments (key order ignored)."""
    return hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Create ``path`` from what ``write`` puts in a binary file handle, atomically
    (:func:`softequiv.atomic.atomic_file`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as fh:
        write(fh)
    return path


def write_npz(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Save arrays as an uncompressed ``.npz``, atomically."""
    return write_atomic(path, lambda fh: np.savez(fh, **arrays))


def write_json(path: str | Path, obj: Any) -> Path:
    """Save a JSON document, atomically."""
    return write_atomic(path, lambda fh: fh.write(json.dumps(obj, indent=1).encode()))
