"""The ``smoke`` dataset: predict a smoke plume's next velocity field from the last k (issue 12).

Rows come from PhiFlow simulations (:mod:`softequiv.data.simulators.smoke`, cached on disk):
one simulation per inflow position, ``steps`` velocity frames each, on a square
``grid`` x ``grid`` box. A row's input is k consecutive velocity frames, ``X`` [N, 2k, H, W]
(rep ``"k*Vector"``, oldest frame first, each frame's (x, y) channels), and its target the
next frame, ``Y`` [N, 2, H, W] (rep ``"Vector"``). Candidates: ``D4, C4, C2, D2, FlipX,
FlipY`` (ambient D4 first), acting about the grid centre (SPEC 10).

Variants (the buoyancy rule fixes which candidates the data respects):

* ``"mirror"``: inflows along the bottom, near its centre; buoyancy straight up for all.
  Mirroring x maps a plume onto the plume of the mirrored inflow, so FlipX is exact; the
  other candidates move the inflow to another wall with buoyancy still up, and break.
* ``"rotation"`` (the ICML 2022 paper's setting): inflows near all four walls, buoyancy
  pointing from the inflow's wall towards the centre, of strength ``b (1 + asymmetry)``
  for the left and right walls and ``b`` for the bottom and top ones. The rule commutes
  with D2 = {e, r180, FlipX, FlipY} (so D2, C2, FlipX, FlipY are exact) but not with a
  quarter turn or a diagonal mirror: C4 and D4 are approximate, by an amount that grows
  with ``asymmetry``.
* ``"levels"``: the rotation setting at the asymmetry ``LEVELS[level]``, so one model per
  level can show whether the discovered symmetry levels track the size of the break
  (level 0 is exactly D4-symmetric).

Splits (as the paper: train and valid from early frames of the training inflows, two test
sets): inflow positions are split by ``seed`` into training positions and unseen
"domain" positions (a quarter, at least one). For training positions, windows whose
target frame lies in the first part of the run go to TRAIN, the next ones to VALID and
the last quarter of the frames is the "future" test set; for domain positions, every
window with a target before the future frames is the "domain" test set. ``split`` holds
TRAIN, VALID, ``FUTURE`` (= TEST) and ``DOMAIN`` (= TEST + 1) per row, and
``Dataset.test_sets`` names the two test codes, so code that knows only TEST sees the
future test set; :meth:`~softequiv.data.base.Dataset.test_parts` returns both.

Ground truth: ``true_errors`` are the simulator's own relative equivariance errors
(SPEC 6) of the map inflow position -> velocity frames under the variant's buoyancy rule,
per candidate the mean over its elements (uniform g, the identity included), measured by
:func:`~softequiv.data.simulators.smoke.equivariance_errors`; ``exact`` lists the
candidates whose every element commutes with the rule (their measured errors are
round-off, ~1e-16). ``info["element_errors"]`` keeps the per-element numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from softequiv.data.base import TEST, TRAIN, VALID, Dataset
from softequiv.data.cache import write_npz
from softequiv.data.options import choice_option, integer_option
from softequiv.data.simulators import smoke as sim
from softequiv.data.windows import sliding_windows
from softequiv.errors import InputError

__all__ = [
    "DOMAIN",
    "FUTURE",
    "LEVELS",
    "PLUME_DATASETS",
    "SMOKE_GROUPS",
    "VARIANTS",
    "buoyancy_rule",
    "inflow_positions",
    "smoke",
    "write_file",
]

#: Candidate groups, ambient group first.
SMOKE_GROUPS = ["D4", "C4", "C2", "D2", "FlipX", "FlipY"]
VARIANTS = ("mirror", "rotation", "levels")
#: Side-strength asymmetries of the ``levels`` variant, by level.
LEVELS = (0.0, 0.05, 0.1, 0.2, 0.4)
#: Split codes of the two test sets.
FUTURE, DOMAIN = TEST, TEST + 1
#: Buoyancy strength b (force per unit smoke density).
BUOYANCY = 0.1
#: Asymmetry of the ``rotation`` variant.
ROTATION_ASYMMETRY = 0.2

# Inflow layout, in units of the default 32-cell grid (scaled with the grid): distance of
# the inflows from the centre towards their wall, and their offsets along the wall.
_DEPTH = 11.0
_MIRROR_OFFSETS = (1.0, 3.0, 5.0, 7.0)  # and their negatives: 8 inflows on the bottom
_ROTATION_OFFSETS = (2.0, 6.0)  # and their negatives, on each of the 4 walls: 16 inflows
_DOMAIN_SHARE = 0.25


def inflow_positions(variant: str, grid: int) -> np.ndarray:
    """Inflow centres [P, 2] (cells, about the grid centre) of a variant.

    Symmetric sets: mirror's offsets come in exact +- pairs, the rotation set is closed
    under D4, so the images the ground truth needs are exact positions.
    """
    scale = grid / 32.0
    depth = -_DEPTH * scale
    if variant == "mirror":
        half = np.array(_MIRROR_OFFSETS) * scale
        offsets = np.concatenate([-half[::-1], half])
        return np.stack([offsets, np.full_like(offsets, depth)], axis=1)
    half = np.array(_ROTATION_OFFSETS) * scale
    offsets = np.concatenate([-half[::-1], half])
    bottom = np.stack([offsets, np.full_like(offsets, depth)], axis=1)
    quarter = sim.elements("C4")["r90"]
    walls = [bottom]
    for _ in range(3):
        walls.append(sim.act_on_points(quarter, walls[-1]))
    return np.concatenate(walls)


def buoyancy_rule(variant: str, asymmetry: float = 0.0):
    """The map inflow positions [P, 2] -> buoyancy vectors [P, 2] of a variant.

    ``mirror``: (0, b) everywhere. Otherwise: towards the centre, perpendicular to the
    nearest wall, of strength b on the bottom and top walls and b (1 + asymmetry) on the
    left and right ones.
    """
    if variant == "mirror":
        return lambda p: np.tile([0.0, BUOYANCY], (len(p), 1))

    def rule(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        vertical = np.abs(p[:, 1]) >= np.abs(p[:, 0])  # nearest wall is bottom or top
        out = np.zeros_like(p)
        out[vertical, 1] = -np.sign(p[vertical, 1]) * BUOYANCY
        out[~vertical, 0] = -np.sign(p[~vertical, 0]) * BUOYANCY * (1.0 + asymmetry)
        return out

    return rule


def _exact_candidates(positions: np.ndarray, rule) -> list[str]:
    """Candidates all of whose elements commute with the rule on the positions' orbit."""
    points = sim.orbit(positions)
    commutes = {
        name: np.allclose(rule(sim.act_on_points(g, points)),
                          sim.act_on_points(g, rule(points)), rtol=0, atol=1e-12)
        for name, g in sim.elements("D4").items()
    }
    return [c for c in SMOKE_GROUPS if all(commutes[e] for e in sim.elements(c))]


def _simulated_positions(variant: str, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base inflows of the ground truth, every inflow to simulate: dataset ones first).

    The truth compares each base inflow's plume with the plumes of its images under D4.
    The rotation settings' inflows are closed under D4, so all of them are bases at no
    extra cost; mirror's images (inflows on the other walls, buoyancy still up) are
    simulated apart, for the central pair only (all pairs would quadruple the cost).
    """
    if variant != "mirror":
        return positions, positions
    middle = len(positions) // 2
    base = positions[middle - 1:middle + 1]
    extra = [p for p in sim.orbit(base) if not np.any(np.all(positions == p, axis=1))]
    return base, np.concatenate([positions, extra])


def _frame_bounds(steps: int, k: int) -> dict[str, int]:
    """Target frames: train [k, valid), valid [valid, future), future [future, steps)."""
    future = steps - max(1, steps // 4)
    valid = future - max(1, steps // 8)
    if valid - k < 1:
        raise InputError(f"smoke: {steps} steps leave no training frames for k={k}; "
                         f"use more steps or a smaller k")
    return {"train": k, "valid": valid, "future": future, "end": steps}


def smoke(
    *,
    variant: str = "mirror",
    seed: int = 0,
    grid: int = 32,
    steps: int = 48,
    k: int = 4,
    level: int | None = None,
    asymmetry: float | None = None,
) -> Dataset:
    """The ``smoke`` dataset (see the module docstring for variants, splits and truth).

    ``grid`` cells per side, ``steps`` simulated frames per inflow, ``k`` input frames per
    row. ``level`` picks the ``levels`` variant's asymmetry from :data:`LEVELS` (default
    2); ``asymmetry`` sets the rotation variant's (default ``ROTATION_ASYMMETRY``).
    ``seed`` only chooses which inflow positions are unseen ("domain"), so every seed
    reuses the same cached simulations. Deterministic per arguments.
    """
    choice_option(variant, VARIANTS, "smoke variant")
    seed = integer_option(seed, "smoke seed", 0)
    grid = integer_option(grid, "smoke grid", 8)
    steps = integer_option(steps, "smoke steps", 4)
    k = integer_option(k, "smoke k", 1)
    bounds = _frame_bounds(steps, k)
    if level is not None and variant != "levels":
        raise InputError("smoke level applies to the levels variant only")
    if variant == "levels":
        level = integer_option(2 if level is None else level, "smoke level", 0)
        if level >= len(LEVELS):
            raise InputError(f"smoke level must be below {len(LEVELS)} (asymmetries "
                             f"{', '.join(map(str, LEVELS))}), got {level}")
        delta = LEVELS[level]
        if asymmetry is not None:
            raise InputError("smoke levels: give level, not asymmetry")
    elif asymmetry is not None:
        if variant != "rotation":
            raise InputError("smoke asymmetry applies to the rotation variant only")
        try:
            delta = float(asymmetry)
        except (TypeError, ValueError):
            raise InputError(f"smoke asymmetry must be a number, got {asymmetry!r}") from None
        if not (np.isfinite(delta) and delta > -1.0):
            raise InputError(f"smoke asymmetry must be a number above -1, got {asymmetry!r}")
    else:
        delta = 0.0 if variant == "mirror" else ROTATION_ASYMMETRY

    positions = inflow_positions(variant, grid)
    rule = buoyancy_rule(variant, delta)
    base, needed = _simulated_positions(variant, positions)
    frames = sim.simulate_cached(needed, rule(needed), grid=grid, steps=steps)
    velocity = frames["velocity"]
    element_errors = sim.equivariance_errors(base, rule, grid=grid, steps=steps)
    true_errors = sim.group_errors(element_errors, SMOKE_GROUPS)

    P = len(positions)
    n_domain = max(1, round(_DOMAIN_SHARE * P))
    order = np.random.default_rng(seed).permutation(P)
    is_domain = np.zeros(P, dtype=bool)
    is_domain[order[:n_domain]] = True

    X, Y = sliding_windows(velocity[:P], k, 1)  # [P * n_t, k, 2, H, W], [.., 1, 2, H, W]
    n_t = steps - k
    target = np.tile(np.arange(k, steps), P)
    position = np.repeat(np.arange(P), n_t)
    domain_row = is_domain[position]
    split = np.full(len(X), -1, dtype=np.int8)
    split[~domain_row & (target < bounds["valid"])] = TRAIN
    split[~domain_row & (target >= bounds["valid"]) & (target < bounds["future"])] = VALID
    split[~domain_row & (target >= bounds["future"])] = FUTURE
    split[domain_row & (target < bounds["future"])] = DOMAIN
    keep = split >= 0
    X = X[keep].reshape(int(keep.sum()), 2 * k, grid, grid)
    Y = Y[keep].reshape(int(keep.sum()), 2, grid, grid)

    info: dict[str, Any] = {
        "variant": variant,
        "grid": grid,
        "steps": steps,
        "k": k,
        "seed": seed,
        "asymmetry": delta,
        "level": level if variant == "levels" else None,
        "buoyancy": BUOYANCY,
        "layout": "X [N, 2k, H, W] (k frames, oldest first, channels x, y); Y [N, 2, H, W]",
        "positions": {"train": positions[~is_domain].tolist(),
                      "domain": positions[is_domain].tolist()},
        "buoyancy_vectors": {"train": rule(positions[~is_domain]).tolist(),
                             "domain": rule(positions[is_domain]).tolist()},
        "frames": bounds,
        "row_position": position[keep].tolist(),
        "row_target_frame": target[keep].tolist(),
        "n": {name: int((split == code).sum()) for name, code in
              (("train", TRAIN), ("valid", VALID), ("future", FUTURE), ("domain", DOMAIN))},
        "element_errors": element_errors,
        "truth_positions": base.tolist(),
        "metrics": "rmse",
    }
    return Dataset(
        name="smoke",
        X=np.ascontiguousarray(X, dtype=np.float64),
        Y=np.ascontiguousarray(Y, dtype=np.float64),
        rep_in=f"{k}*Vector",
        rep_out="Vector",
        groups=list(SMOKE_GROUPS),
        split=split[keep],
        true_errors=true_errors,
        exact=_exact_candidates(positions, rule),
        info=info,
        test_sets={"future": FUTURE, "domain": DOMAIN},
    )


def write_file(dataset: Dataset, path: str | Path) -> Path:
    """Save a smoke dataset as an ``.npz`` that ``discover --data`` reads, atomically.

    Arrays: ``X``, ``Y``, ``split`` (0/1/2 = train/valid/test, both test sets labelled
    test so that a reader knowing three parts takes the file as is), ``test_set`` (per
    row: ``"future"``, ``"domain"`` or ``""``; ``discover --data`` reports each set), and
    as JSON strings ``rep_in``, ``rep_out``, ``groups``, ``exact``, ``true_errors`` and
    ``info``.
    """
    code_name = {code: name for name, code in dataset.test_sets.items()}
    test_set = np.array([code_name.get(int(c), "") for c in dataset.split])
    split = np.where(np.isin(dataset.split, list(code_name)), TEST, dataset.split)
    meta = {"rep_in": dataset.rep_in, "rep_out": dataset.rep_out, "groups": dataset.groups,
            "exact": dataset.exact, "true_errors": dataset.true_errors, "info": dataset.info}
    return write_npz(path, {"X": dataset.X, "Y": dataset.Y, "split": split.astype(np.int8),
                            "test_set": test_set,
                            **{k: np.array(json.dumps(v)) for k, v in meta.items()}})


#: Registry of the smoke datasets by name.
PLUME_DATASETS = {"smoke": smoke}
