"""Held-out style checks of the verdicts: data files with known exact candidates, run
through ``softequiv discover --data`` with default settings, as a user would.

Not used to choose any default (they were written after the method was fixed): they ask
whether the verdicts stay honest on data unlike the benchmarks.

- ``field``: a vector field of two vectors, exactly Scaling(3)- and O2xy-equivariant, with
  an O(3)-breaking part (candidates Union(O(3), Scaling(3)), O(3), Scaling(3), O2xy);
- ``inertia-noise``: inertia (axis z, eps -1) with Gaussian label noise of half the
  targets' standard deviation (R^2 of the truth about 0.8);
- ``inertia-small``: inertia with 300 rows in all (60/20/20: 60 validation rows);
- ``inertia-none``: inertia axis -1: no candidate exact;
- ``se3-exact``: SE(3) invariant: every candidate exact, the ambient group included;
- ``cossim-noise``: CosSim so3 with label noise of a fifth of the targets' std;
- ``grid-advection``: fields on a 16x16 grid, another physical system than the plumes: a
  scalar advected by a velocity field and diffused three times faster along x than along
  y (``Scalar + Vector`` -> ``Scalar``; C2, D2, FlipX, FlipY exact, C4 and D4 broken);
- ``grid-advection-noise``: the same with pixel noise of 0.3 of the targets' std (about
  the size of the fields' change over the step);
- ``grid-isotropic``: the same with equal diffusion: every lattice candidate exact.

Writes ``benchmarks/results/heldout.json`` (per case: each candidate's verdict, evidence,
the truth, and whether any broken candidate was said to hold) and the README table
between ``<!-- bench:heldout -->`` markers. Run:
``.venv/bin/python benchmarks/bench_heldout.py`` (about 13 minutes on one core;
``--only grid-advection,grid-isotropic`` reruns some cases and keeps the others).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from softequiv.atomic import write_json
from softequiv.bench import update_readme
from softequiv.data.synthetic import cossim, inertia, se3

RESULTS = Path(__file__).parent / "results" / "heldout.json"
TRUE_BREAK = 1e-3


def field(n: int = 1800, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """f(x1, x2) = a x1 + b x2 + c r e_z with r = sqrt(|x1|^2 + |x2|^2) and a, b, c
    functions of the O2xy- and scale-invariant ratios z1/r, z2/r, x1.x2/r^2: degree one in
    a common scaling, equivariant under rotations about z and mirrors fixing z, and not
    under O(3) (the z-dependence and the e_z term)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    r = np.sqrt((x1**2).sum(1) + (x2**2).sum(1))[:, None]
    t1, t2, dot = x1[:, 2:] / r, x2[:, 2:] / r, (x1 * x2).sum(1, keepdims=True) / r**2
    a = 1 + 2.8 * t1**2 - 0.5 * dot
    b = np.tanh(2 * dot) + 2.1 * t1 * t2
    c = 3.2 * t2 - 2.5 * t1 * dot  # the O(3)-breaking part: about 35% of the variance
    Y = a * x1 + b * x2 + c * r * np.array([0.0, 0.0, 1.0])
    return np.hstack([x1, x2]), Y, ["Scaling(3)", "O2xy"]


def advect(X: np.ndarray, anisotropy: float) -> np.ndarray:
    """Fields ``[N, 3, H, W]`` of a scalar c and a velocity u -> c ``[N, 1, H, W]`` after
    five explicit steps of dc/dt = Dx c_xx + Dy c_yy - u . grad c on a periodic grid
    (central differences), with Dx = (1 + anisotropy) Dy. Every lattice element maps the
    grid and the stencils onto themselves, so the steps are exactly equivariant under the
    mirrors and the half turn, and under the quarter turns (which swap Dx and Dy) only
    when anisotropy = 0."""
    y = X[:, 0].copy()
    along = {-1: (0.2 * (1 + anisotropy), X[:, 1]), -2: (0.2, X[:, 2])}  # x, then y
    for _ in range(5):
        change = 0.0
        for axis, (diffusion, velocity) in along.items():
            plus, minus = np.roll(y, -1, axis), np.roll(y, 1, axis)
            change = change + diffusion * (plus + minus - 2 * y) - velocity * (plus - minus) / 2
        y = y + 0.1 * change
    return y[:, None]


def advection(n: int = 600, anisotropy: float = 2.0, noise: float = 0.0, size: int = 16,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random scalar and velocity fields and their :func:`advect` step, with pixel
    noise of ``noise`` times the targets' std."""
    rng = np.random.default_rng(seed)

    def smooth(a: np.ndarray, passes: int) -> np.ndarray:
        for _ in range(passes):
            a = (a + sum(np.roll(a, s, ax) for s in (1, -1) for ax in (-1, -2))) / 5
        return a

    c = 3 * smooth(rng.normal(size=(n, 1, size, size)), 4)
    u = 3 * smooth(rng.normal(size=(n, 2, size, size)), 6)
    X = np.concatenate([c, u], 1)
    Y = advect(X, anisotropy)
    return X, Y + noise * Y.std() * rng.normal(size=Y.shape)


def cases() -> dict[str, dict]:
    """Every case: arrays, reps, candidates and the exact ones."""
    rng = np.random.default_rng(7)
    out = {}
    X, Y, exact = field()
    out["field"] = dict(X=X, Y=Y, rep_in="2*Vector", rep_out="Vector",
                        groups="Union(O(3), Scaling(3)), O(3), Scaling(3), O2xy", exact=exact)
    d = inertia(axis="z", eps=-1.0, seed=11)
    noisy = d.Y + 0.5 * d.Y.std(0) * rng.normal(size=d.Y.shape)
    plane = dict(rep_in="5*Scalar + 5*Vector", rep_out="T(2)", groups="O(3), O2xy, O2yz, O2xz")
    out["inertia-noise"] = dict(X=d.X, Y=noisy, exact=["O2xy"], **plane)
    d = inertia(axis="z", eps=-1.0, n=(180, 60, 60), seed=12)
    out["inertia-small"] = dict(X=d.X, Y=d.Y, exact=["O2xy"], **plane)
    d = inertia(axis="-1", eps=-1.0, seed=13)
    out["inertia-none"] = dict(X=d.X, Y=d.Y, exact=[], **plane)
    d = se3(variant="exact", seed=14)
    out["se3-exact"] = dict(X=d.X, Y=d.Y, rep_in="3*Vector", rep_out="Scalar",
                            groups="SE(3), Rot(3), Trans(3)", exact=list(d.groups))
    d = cossim(variant="so3", seed=15)
    noisy = d.Y + 0.2 * d.Y.std() * rng.normal(size=d.Y.shape)
    out["cossim-noise"] = dict(X=d.X, Y=noisy, rep_in="3*Vector", rep_out="Scalar",
                               groups="Union(SO(3), Scaling(3)), SO(3), Scaling(3)",
                               exact=["SO(3)"])
    lattice = dict(rep_in="Scalar + Vector", rep_out="Scalar",
                   groups="D4, C4, C2, D2, FlipX, FlipY")
    mirrors = ["C2", "D2", "FlipX", "FlipY"]
    for name, anisotropy, noise, exact, seed in (
            ("grid-advection", 2.0, 0.0, mirrors, 16),
            ("grid-advection-noise", 2.0, 0.3, mirrors, 17),
            ("grid-isotropic", 0.0, 0.0, ["D4", "C4", *mirrors], 18)):
        X, Y = advection(anisotropy=anisotropy, noise=noise, seed=seed)
        out[name] = dict(X=X, Y=Y, exact=exact, anisotropy=anisotropy, **lattice)
    return out


def run_case(name: str, case: dict, workdir: Path) -> dict:
    data = workdir / f"{name}.npz"
    np.savez(data, X=case["X"], Y=case["Y"])
    out = workdir / name
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "softequiv.cli", "discover", "--data", str(data),
                    "--rep-in", case["rep_in"], "--rep-out", case["rep_out"], "--groups",
                    case["groups"], "--threads", "1", "--quiet", "--out", str(out)],
                   check=True)
    report = json.loads((out / "report.json").read_text())
    groups = [{"name": g["name"], "verdict": g["verdict"], "evidence": g["evidence"],
               "lambda": g["lambda"], "model_error": g["model_error"],
               "truly_exact": g["name"] in case["exact"]} for g in report["groups"]]
    return {"case": name, "rows": len(case["X"]), "test_mse": report["test_mse"],
            "seconds": time.perf_counter() - start, "groups": groups,
            "warnings": report["warnings"], "ranking": report["ranking"],
            "false_holds": [g["name"] for g in groups
                            if g["verdict"] == "holds" and not g["truly_exact"]]}


def table(results: list[dict]) -> str:
    """One row per case: every candidate's verdict (and its ratio), exact ones marked *."""
    lines = ["| case | rows | candidates: verdict (ratio), * = truly exact | false holds | "
             "warning |", "|---|---|---|---|---|"]
    for r in results:
        cells = "; ".join(f"{g['name']}{'*' if g['truly_exact'] else ''}: {g['verdict']}"
                          + ("" if g["evidence"]["value"] is None
                             else f" ({g['evidence']['value']:.3g})") for g in r["groups"])
        warning = r["warnings"][0].split(":")[0] if r["warnings"] else ""
        lines.append(f"| {r['case']} | {r['rows']} | {cells} | "
                     f"{', '.join(r['false_holds']) or 'none'} | {warning} |")
    return "\n".join(lines)


def main(only: list[str] | None = None) -> dict:
    """Run every case (or those named in ``only``, keeping the other cases' stored results)."""
    everything = cases()
    unknown = sorted(set(only or []) - set(everything))
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(everything)}")
    kept = {}
    if only and RESULTS.exists():
        kept = {r["case"]: r for r in json.loads(RESULTS.read_text())["cases"]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in everything.items():
            if only and name not in only:
                continue
            kept[name] = run_case(name, case, Path(tmp))
            print(name, [(g["name"], g["verdict"]) for g in kept[name]["groups"]], flush=True)
    results = [kept[name] for name in everything if name in kept]
    write_json(RESULTS, {"cases": results}, indent=2)
    update_readme("heldout", table(results))
    return {"cases": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated cases to (re)run; the others' "
                        "results are kept from the results file")
    arguments = parser.parse_args()
    main([c.strip() for c in arguments.only.split(",")] if arguments.only else None)
