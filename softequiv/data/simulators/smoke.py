"""Smoke plumes on a square grid, simulated with PhiFlow (issue 12).

Physics (the PhiFlow smoke-plume setting of Wang, Walters & Yu, ICML 2022): a closed square
box of ``grid`` x ``grid`` unit cells. Each simulation has one inflow, a soft disc of radius
``radius`` cells that adds ``rate`` smoke density per step, and a buoyancy vector b: the
force on the fluid is smoke density times b. One step of length ``dt``:

1. smoke is advected by the velocity (MacCormack) and the inflow adds to it;
2. velocity is advected by itself (semi-Lagrangian) and the buoyancy force is added;
3. a pressure projection makes it divergence-free with zero velocity through the walls
   (PhiFlow's ``make_incompressible``, the pressure found by a direct sparse solve).

Everything runs in float64 (``phi.math.precision(64)``): in float32 the pressure solve
can raise ``Diverged`` on these CPUs, and the equivariance checks need round-off level
agreement.

Layout of what :func:`simulate` returns (the layout of every field in softequiv, SPEC 10):
arrays ``[..., C, H, W]`` with the last axis x and the one before it y (row 0 is the
bottom, y grows upwards), ``H == W == grid``; a velocity has two channels, its (x, y)
components. PhiFlow keeps velocity on the faces of the cells (a staggered grid); here
each component is averaged over the two faces of a cell, so every value sits at a cell
centre. Units: lengths in cells, time in steps of ``dt``, velocities in cells per unit
time. Positions (inflow centres) are given relative to the grid centre.

Symmetry: the box, the grid and the discretization are symmetric under the point group
D4 of the square about the grid centre, so the simulator is equivariant,
sim(g inflow, g b) = g sim(inflow, b), up to round-off (measured in the tests). What
breaks a symmetry is a rule that ties the buoyancy to the inflow in a non-symmetric way
(buoyancy always upwards, or stronger on some sides): :func:`equivariance_errors`
measures the error of the map inflow -> trajectory under such a rule, the ground truth of
:mod:`softequiv.data.plumes`. An element g acts on a field f by
(g f)(p) = g f(g^{-1} p), p the cell centre's position about the grid centre
(:func:`softequiv.fields.transform` with ``Vector`` channels); on a square grid that only
permutes cells, so the action is exact.

``phiflow`` is an optional dependency: ``pip install 'softequiv[fluids]'``.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softequiv.data.cache import args_digest, cache_dir, write_npz
from softequiv.data.simulators import optional_import, relative_error
from softequiv.errors import InputError
from softequiv.fields import transform
from softequiv.spec import parse_group, parse_rep

__all__ = [
    "ELEMENT_NAMES",
    "FORMAT_VERSION",
    "act_on_points",
    "elements",
    "equivariance_errors",
    "group_errors",
    "orbit",
    "simulate",
    "simulate_cached",
]

#: Bumped whenever simulated numbers change for the same arguments (invalidates caches).
FORMAT_VERSION = 1

#: Names of the elements of D4 (2x2 matrices acting on (x, y), flattened), for reports.
ELEMENT_NAMES: dict[tuple[int, ...], str] = {
    (1, 0, 0, 1): "e",
    (0, -1, 1, 0): "r90",
    (-1, 0, 0, -1): "r180",
    (0, 1, -1, 0): "r270",
    (-1, 0, 0, 1): "flip_x",  # (x, y) -> (-x, y)
    (1, 0, 0, -1): "flip_y",  # (x, y) -> (x, -y)
    (0, 1, 1, 0): "swap",  # (x, y) -> (y, x)
    (0, -1, -1, 0): "antiswap",  # (x, y) -> (-y, -x)
}

_SOLVER = "scipy-direct"
_PHI_MODULES = r"phi(ml)?\."
# Simulation parameters and their defaults (lengths in cells, time in steps).
_DEFAULTS = {"grid": 32, "steps": 48, "radius": 2.0, "rate": 0.2, "dt": 1.0}


def _phiflow() -> Any:
    """Import ``phi.flow`` or explain how to install it (an optional dependency)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=_PHI_MODULES)
        return optional_import("phi.flow", "the smoke datasets need PhiFlow", "fluids")


def _check_params(grid: int, steps: int, radius: float, rate: float, dt: float) -> None:
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 4:
        raise InputError(f"smoke grid must be an integer of at least 4 cells, got {grid!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"smoke steps must be a positive integer, got {steps!r}")
    for name, value in (("radius", radius), ("rate", rate), ("dt", dt)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise InputError(f"smoke {name} must be a positive number, got {value!r}")


def _as_pairs(values: object, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or not np.isfinite(arr).all():
        raise InputError(f"{what} must be a non-empty list of finite (x, y) pairs, "
                         f"got shape {arr.shape}")
    return arr


def simulate(
    inflows: Sequence[Sequence[float]] | np.ndarray,
    buoyancy: Sequence[Sequence[float]] | np.ndarray,
    *,
    grid: int = _DEFAULTS["grid"],
    steps: int = _DEFAULTS["steps"],
    radius: float = _DEFAULTS["radius"],
    rate: float = _DEFAULTS["rate"],
    dt: float = _DEFAULTS["dt"],
) -> dict[str, np.ndarray]:
    """Simulate one smoke plume per inflow, all in one PhiFlow batch.

    ``inflows`` [B, 2] are the inflow centres relative to the grid centre (cells) and
    ``buoyancy`` [B, 2] the buoyancy vector of each simulation. Starts from rest with no
    smoke and returns float64 arrays after each of the ``steps`` steps:
    ``velocity`` [B, steps, 2, grid, grid] at cell centres (channels x, y) and ``smoke``
    [B, steps, grid, grid]. Deterministic; each simulation's result does not depend on
    the others in the batch.
    """
    _check_params(grid, steps, radius, rate, dt)
    pos = _as_pairs(inflows, "inflows")
    force = _as_pairs(buoyancy, "buoyancy")
    if len(pos) != len(force):
        raise InputError(f"{len(pos)} inflows but {len(force)} buoyancy vectors")
    flow = _phiflow()
    math = flow.math
    n = int(grid)
    with math.precision(64), warnings.catch_warnings():
        # PhiFlow warns that the closed box's pressure system is singular (by a constant,
        # which the direct solve is told), that SciPy is handed a COO matrix, and about
        # its own internal deprecations.
        warnings.filterwarnings("ignore", message="(Rank deficiency|spsolve requires)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=_PHI_MODULES)
        sims = flow.batch(sim=len(pos))
        vector = flow.channel(vector="x,y")
        b = math.tensor(force, sims, vector)
        bounds = flow.Box(x=n, y=n)
        smoke = flow.CenteredGrid(0, flow.extrapolation.ZERO_GRADIENT, bounds, x=n, y=n)
        velocity = flow.StaggeredGrid(0, flow.extrapolation.ZERO, bounds, x=n, y=n)
        disc = flow.Sphere(center=math.tensor(pos + n / 2, sims, vector), radius=float(radius))
        source = flow.resample(disc, to=smoke, soft=True) * float(rate)
        solve = flow.Solve(_SOLVER, rank_deficiency=1)
        faces = np.empty((len(pos), steps, 2, n + 1, n + 1))
        density = np.empty((len(pos), steps, n, n))
        for t in range(steps):
            smoke = flow.advect.mac_cormack(smoke, velocity, dt) + source
            lift = flow.resample(smoke * b, to=velocity) * dt
            velocity = flow.advect.semi_lagrangian(velocity, velocity, dt) + lift
            velocity, _ = flow.fluid.make_incompressible(velocity, (), solve)
            faces[:, t] = velocity.staggered_tensor().numpy("sim,vector,y,x")
            density[:, t] = smoke.values.numpy("sim,y,x")
    centred = np.empty((len(pos), steps, 2, n, n))
    centred[:, :, 0] = 0.5 * (faces[:, :, 0, :n, :n] + faces[:, :, 0, :n, 1:])
    centred[:, :, 1] = 0.5 * (faces[:, :, 1, :n, :n] + faces[:, :, 1, 1:, :n])
    return {"velocity": centred, "smoke": density}


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    """Simulation parameters with defaults filled in and checked (one-line errors)."""
    unknown = sorted(set(params) - set(_DEFAULTS))
    if unknown:
        raise InputError(f"unknown smoke simulation options: {', '.join(unknown)}; "
                         f"choose from {', '.join(_DEFAULTS)}")
    settings = {**_DEFAULTS, **params}
    _check_params(**settings)
    return settings


def _entry_path(settings: dict[str, Any], inflow: np.ndarray, buoyancy: np.ndarray) -> tuple[
        Path, dict[str, Any]]:
    """Cache file and key of one simulation (results do not depend on the batch)."""
    key = {"grid": int(settings["grid"]), "steps": int(settings["steps"]),
           **{k: float(settings[k]) for k in ("radius", "rate", "dt")},
           "inflow": [float(v) for v in inflow], "buoyancy": [float(v) for v in buoyancy],
           "solver": _SOLVER, "format": FORMAT_VERSION, "phiflow": _phiflow_version()}
    name = f"smoke_g{key['grid']}_s{key['steps']}_{args_digest(key)}.npz"
    return cache_dir() / name, key


def _read_entry(path: Path, key: dict[str, Any]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["key"])) == key:
                return {"velocity": f["velocity"], "smoke": f["smoke"]}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # missing, unreadable or foreign entry: simulate again and replace it
    return None


def simulate_cached(
    inflows: Sequence[Sequence[float]] | np.ndarray,
    buoyancy: Sequence[Sequence[float]] | np.ndarray,
    **params: Any,
) -> dict[str, np.ndarray]:
    """:func:`simulate` through the on-disk cache (:mod:`softequiv.data.cache`).

    Each simulation is one cache entry keyed by its inflow, buoyancy, every parameter,
    the format version and the PhiFlow version, so datasets that share a simulation share
    its entry; the missing ones are simulated together in one batch. Writes are atomic,
    and an unreadable entry is simulated again and replaced.
    """
    pos = _as_pairs(inflows, "inflows")
    force = _as_pairs(buoyancy, "buoyancy")
    if len(pos) != len(force):
        raise InputError(f"{len(pos)} inflows but {len(force)} buoyancy vectors")
    settings = _settings(params)
    entries = [_entry_path(settings, p, b) for p, b in zip(pos, force, strict=True)]
    found = [_read_entry(path, key) if path.is_file() else None for path, key in entries]
    missing = [i for i, hit in enumerate(found) if hit is None]
    if missing:
        fresh = simulate(pos[missing], force[missing], **settings)
        for j, i in enumerate(missing):
            found[i] = {name: arr[j] for name, arr in fresh.items()}
            path, key = entries[i]
            try:
                write_npz(path, {**found[i], "key": np.array(json.dumps(key))})
            except OSError:  # pragma: no cover - read-only cache: still return the numbers
                pass
    return {name: np.stack([hit[name] for hit in found]) for name in ("velocity", "smoke")}


def _phiflow_version() -> str:
    from importlib.metadata import version

    _phiflow()
    return version("phiflow")


# ----------------------------------------------------------------------------------------
# The point group acting on positions and fields


def act_on_points(g: np.ndarray, points: np.ndarray) -> np.ndarray:
    """g p for positions p [..., 2] about the grid centre."""
    return np.asarray(points, dtype=np.float64) @ np.asarray(g, dtype=np.float64).T


def elements(group: str = "D4") -> dict[str, np.ndarray]:
    """The elements of a lattice group (a spec name such as ``"C4"``) by element name."""
    return {ELEMENT_NAMES[tuple(np.rint(g).astype(int).ravel())]: g
            for g in parse_group(group).elements()}


def orbit(points: np.ndarray) -> np.ndarray:
    """The distinct images of positions [P, 2] under D4, first the points themselves."""
    images = [act_on_points(g, points) for g in elements("D4").values()]
    out: list[np.ndarray] = []
    for p in np.concatenate(images):
        if not any(np.allclose(p, q, atol=1e-9) for q in out):
            out.append(p)
    return np.array(out)


def equivariance_errors(
    inflows: np.ndarray,
    rule: Callable[[np.ndarray], np.ndarray],
    **params: Any,
) -> dict[str, float]:
    """The simulator's relative equivariance error per D4 element under a buoyancy rule.

    The map is f: inflow position -> velocity frames, with buoyancy ``rule(inflows)``
    ([P, 2] -> [P, 2]) fixed by the dataset's setting. For each element g and each of the
    ``inflows`` p, f(g p) is compared with g f(p) (SPEC 6: mean over inflows and frames
    of ||f(g p) - g f(p)|| / (||f(g p)|| + ||g f(p)||)). A rule that commutes with g
    (rule(g p) = g rule(p)) gives round-off; otherwise the error measures the break.
    The plumes of every image g p are simulated through the cache (``params`` as for
    :func:`simulate`); g acts on velocity fields as on a ``Vector`` field
    (:func:`softequiv.fields.transform`). Returns errors by element name (``"e"`` is 0).
    """
    base = _as_pairs(inflows, "inflows")
    points = orbit(base)
    velocity = simulate_cached(points, rule(points), **params)["velocity"]

    def plumes(at: np.ndarray) -> np.ndarray:  # the orbit holds every image exactly
        return velocity[[int(np.argmin(np.abs(points - p).sum(axis=1))) for p in at]]

    original = plumes(base).reshape(-1, *velocity.shape[2:])  # [P * steps, 2, H, W]
    vector = parse_rep("Vector")
    return {name: relative_error(plumes(act_on_points(g, base)).reshape(original.shape),
                                 transform(original, g, vector))
            for name, g in elements("D4").items()}


def group_errors(element_errors: dict[str, float], groups: Sequence[str]) -> dict[str, float]:
    """Per candidate lattice group, the mean element error over the group (g uniform, the
    identity included, as :func:`softequiv.fields.field_equivariance_error` averages)."""
    return {name: float(np.mean([element_errors[e] for e in elements(name)]))
            for name in groups}
