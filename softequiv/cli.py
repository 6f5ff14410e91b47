"""The ``softequiv`` command line: ``basis``, ``discover``, ``predict``, ``bench`` and ``data``.

Bad arguments or input give one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from softequiv.errors import InputError

if TYPE_CHECKING:
    from softequiv.train import TrainConfig


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        raise InputError(f"{self.prog}: {message}")


def cmd_basis(args: argparse.Namespace) -> int:
    """Solve for the equivariant basis of rep_in -> rep_out under a group."""
    from softequiv.solver import clear_cache, equivariant_basis
    from softequiv.spec import parse_group, parse_rep
    from softequiv.threads import set_threads

    set_threads(_threads(args))
    group = parse_group(args.group)
    rep_in, rep_out = parse_rep(args.rep_in), parse_rep(args.rep_out)
    clear_cache()
    start = time.perf_counter()
    basis = equivariant_basis(rep_in, rep_out, group, tol=args.tol)
    seconds = time.perf_counter() - start
    result = {"dim": int(basis.shape[1]), "size": int(basis.shape[0]), "seconds": seconds}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"group     {group.name} (acts on R^{group.d})")
        print(f"map       {rep_in} -> {rep_out}")
        print(f"dim k     {result['dim']}")
        print(f"size D    {result['size']}")
        print(f"seconds   {seconds:.4f}")
    return 0


def _add_basis(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("basis", help="dimension of the equivariant basis of a linear map")
    p.add_argument("--group", required=True, help='e.g. "O(3)", "O2xy", "SO(3)*S(4)"')
    p.add_argument("--rep-in", required=True, help='e.g. "5*Scalar + 5*Vector"')
    p.add_argument("--rep-out", required=True, help='e.g. "T(2)"')
    p.add_argument("--tol", type=float, default=1e-6, help="null-space singular value tolerance")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_threads(p)
    p.set_defaults(func=cmd_basis)


def _add_threads(p: argparse.ArgumentParser) -> None:
    from softequiv.threads import default_threads

    p.add_argument("--threads", type=int,
                   help=f"CPU threads for torch and BLAS (default: half the CPUs, at most 4; "
                        f"here {default_threads()})")


def _threads(args: argparse.Namespace) -> int | None:
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    return args.threads


def _dataset_from_args(args: argparse.Namespace):
    from softequiv.data.registry import dataset_from_file, load_builtin_dataset

    if (args.dataset is None) == (args.data is None):
        raise InputError("give exactly one of --dataset NAME or --data FILE")
    if args.data is not None:
        missing = [flag for flag, value in (("--rep-in", args.rep_in), ("--rep-out", args.rep_out),
                                            ("--groups", args.groups)) if value is None]
        if missing:
            raise InputError(f"--data needs {', '.join(missing)}")
        return dataset_from_file(args.data, rep_in=args.rep_in, rep_out=args.rep_out,
                                 groups=args.groups, x_cols=args.x_cols, y_cols=args.y_cols,
                                 seed=args.seed)
    options = {"axis": args.axis, "eps": args.noise, "masses": args.masses,
               "variant": args.variant, "bodies": args.bodies,
               "trajectories": args.trajectories, "seconds": args.seconds, "seed": args.seed}
    return load_builtin_dataset(args.dataset, **options)


def _train_config(args: argparse.Namespace, dataset) -> TrainConfig:
    from softequiv.train import TrainConfig

    return TrainConfig(method=args.method, epochs=args.epochs, lr=args.lr,
                       batch_size=args.batch_size, ch=args.ch, layers=args.layers,
                       weight_decay=args.wd, lambda_init=args.lambda_init, t_adj=args.t_adj,
                       window=args.window, p=args.p, rule=args.rule, patience=args.patience,
                       group=dataset.candidate_index(args.group), seed=args.seed,
                       device=args.device,
                       penalty=args.penalty, threads=args.threads, snap=args.snap,
                       refit_steps=args.refit_steps,
                       progress=not args.quiet and sys.stderr.isatty())


def cmd_discover(args: argparse.Namespace) -> int:
    """Train with one regularizer per candidate group and report the discovered levels."""
    from softequiv.discover import discover, prepare_output, save_run
    from softequiv.report import format_table
    from softequiv.threads import set_threads

    set_threads(_threads(args))
    out = prepare_output(args.out, overwrite=args.overwrite)
    dataset = _dataset_from_args(args)
    config = _train_config(args, dataset)
    result = discover(dataset, config)
    save_run(result, out, extra_config={"command": vars(args) | {"func": None}})
    print(format_table(result.report))
    print(f"wrote {out}/report.json, levels.png, model.safetensors, config.json")
    return 0


def _add_discover(sub: argparse._SubParsersAction) -> None:
    from softequiv.train import METHODS
    from softequiv.tuning import RULES

    p = sub.add_parser("discover", help="discover which candidate symmetries the data holds")
    src = p.add_argument_group("data: a built-in benchmark or your own file")
    src.add_argument("--dataset", help="inertia, cossim, se3 or mujoco-ant")
    src.add_argument("--data", help="your .npz, .csv or .parquet file")
    src.add_argument("--axis", help="inertia: broken-symmetry axis x, y, z or -1")
    src.add_argument("--noise", type=float, help="inertia: eps, the size of the symmetry break")
    src.add_argument("--masses", type=int, help="inertia: number of point masses")
    src.add_argument("--variant", help="cossim: so3|scale|both|none; se3: exact|rotation|"
                                       "translation|none; mujoco-ant: o3|se3")
    src.add_argument("--bodies", help="mujoco-ant: torso or all")
    src.add_argument("--trajectories", type=int, help="mujoco-ant: trajectories to simulate")
    src.add_argument("--seconds", type=float, help="mujoco-ant: seconds per trajectory")
    src.add_argument("--rep-in", help='with --data: e.g. "5*Scalar + 5*Vector"')
    src.add_argument("--rep-out", help='with --data: e.g. "T(2)"')
    src.add_argument("--groups", help='with --data: e.g. "O(3), O2xy, O2yz, O2xz" (ambient first)')
    src.add_argument("--x-cols", help="with .csv/.parquet: input columns, e.g. x0:x19")
    src.add_argument("--y-cols", help="with .csv/.parquet: target columns, e.g. y0:y8")
    tr = p.add_argument_group("training")
    tr.add_argument("--method", default="per", choices=METHODS)
    tr.add_argument("--epochs", type=int, default=400)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--batch-size", type=int, default=500)
    tr.add_argument("--ch", type=int, default=128, help="hidden channel budget")
    tr.add_argument("--layers", type=int, default=3)
    tr.add_argument("--wd", type=float, default=0.0, help="weight decay")
    tr.add_argument("--lambda-init", type=float, default=100.0)
    tr.add_argument("--t-adj", type=int, help="epoch of the strength adjustment (epochs/4)")
    tr.add_argument("--window", type=int, help="epochs of minima before --t-adj (t_adj/2)")
    tr.add_argument("--p", type=float, help="exponent of the adjustment rule (default 2)")
    tr.add_argument("--rule", choices=RULES,
                    help="strength tuning rule (default error: how far the data pulled the "
                         "warmed-up model off each candidate; published: minima of R_j)")
    tr.add_argument("--patience", type=int, help="early stopping patience in epochs")
    tr.add_argument("--group", default="0",
                    help="emlp/rpp/aug/fa: which candidate (index or name)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--penalty", default="decoupled", choices=["decoupled", "coupled"],
                    help="decoupled: penalty step outside Adam (default); coupled: published")
    tr.add_argument("--no-snap", dest="snap", action="store_false",
                    help="per/sample: keep the selected model (by default the refit with the "
                         "lowest validation MSE is kept, free or inside a candidate that is "
                         "not broken)")
    tr.add_argument("--refit-steps", type=int, default=100,
                    help="per/sample: Adam steps of each refit behind the verdicts")
    _add_threads(tr)
    tr.add_argument("--device", default="auto", help="auto, cpu or cuda")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=cmd_discover)


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict with a saved run (from ``discover``) on the inputs of a data file."""
    from pathlib import Path

    from softequiv.data.files import load_inputs, save_predictions
    from softequiv.discover import load_run

    out = Path(args.out)
    if out.suffix.lower() not in (".npz", ".csv"):
        raise InputError(f"--out {args.out!r}: predictions can be saved as .npz or .csv")
    if out.is_dir():
        raise InputError(f"--out {args.out!r} is a directory; give a .npz or .csv file name")
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {args.out!r} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise InputError(f"--out {args.out!r}: directory {str(out.parent)!r} does not exist")
    saved = load_run(args.model)
    info = saved.config.get("dataset_info") or {}
    x_cols = args.x_cols
    if x_cols is None and Path(args.data).suffix.lower() in (".csv", ".parquet"):
        x_cols = _training_columns(info.get("x_names"))
    try:
        X, x_names = load_inputs(args.data, x_cols=x_cols)
    except InputError as exc:
        if args.x_cols is None and x_cols is not None and "x_cols" in str(exc):
            raise InputError(f"{exc} (without --x-cols the model's training columns are "
                             "used; pass --x-cols)") from None
        raise
    size_in = saved.problem.rep_in.size(saved.problem.groups[0].d)
    if X.shape[1] != size_in:
        raise InputError(f"{Path(args.data).name}: the model expects {size_in} input columns "
                         f"(rep_in {saved.config['rep_in']!r}) but X has {X.shape[1]}")
    Y = saved.predict(X)
    names = info.get("y_names")
    if not isinstance(names, list) or len(names) != Y.shape[1]:
        names = None
    save_predictions(out, Y, names)
    print(f"wrote {Y.shape[0]} predictions of {Y.shape[1]} columns to {out}")
    return 0


def _training_columns(names: object) -> str | None:
    """The training file's input columns as an --x-cols selection, when it can be one."""
    if not isinstance(names, list) or not names:
        return None
    if any(not isinstance(n, str) or "," in n or n != n.strip() for n in names):
        return None
    return ",".join(names)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a saved run on new inputs")
    p.add_argument("--model", required=True, help="run directory written by discover")
    p.add_argument("--data", required=True,
                   help=".npz (array X; Y is ignored), .csv or .parquet file of inputs")
    p.add_argument("--x-cols", help="with .csv/.parquet: input columns, e.g. x0:x19 "
                                    "(default: the columns the model was trained on)")
    p.add_argument("--out", required=True, help="predictions file to write: .npz or .csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=cmd_predict)


def cmd_data_mujoco(args: argparse.Namespace) -> int:
    """Simulate MuJoCo trajectories (cached by their arguments) and write an .npz file."""
    from softequiv.data.simulators.mujoco import generate_to_file

    start = time.perf_counter()
    path = generate_to_file(args.out, env=args.env, trajectories=args.trajectories,
                            seconds=args.seconds, seed=args.seed)
    print(f"wrote {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate datasets")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    m = kinds.add_parser("mujoco", help="MuJoCo trajectories (needs softequiv[mujoco])")
    m.add_argument("--env", default="ant", help="ant (humanoid is experimental)")
    m.add_argument("--trajectories", type=int, default=200)
    m.add_argument("--seconds", type=float, default=2.4)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", help=".npz file to write (default: the cache directory)")
    m.set_defaults(func=cmd_data_mujoco)
    s = kinds.add_parser("smoke", help="smoke-plume dataset file: X, Y, split (needs "
                                       "softequiv[fluids])")
    s.add_argument("--variant", help="mirror (default), rotation or levels")
    s.add_argument("--level", type=int, help="levels: index of the asymmetry, 0-4")
    s.add_argument("--asymmetry", type=float, help="rotation: side-strength asymmetry")
    for flag, what in (("--grid", "cells per side"), ("--steps", "frames per inflow"),
                       ("--k", "input frames per row"), ("--seed", "picks the unseen inflows")):
        s.add_argument(flag, type=int, help=what)
    s.add_argument("--out", required=True, help=".npz file to write")
    s.set_defaults(func=cmd_data_smoke)


def cmd_data_smoke(args: argparse.Namespace) -> int:
    """Simulate (cached) and write the smoke dataset as an .npz file."""
    from softequiv.data.plumes import smoke, write_file

    start = time.perf_counter()
    options = {k: getattr(args, k) for k in ("variant", "level", "asymmetry", "grid", "steps",
                                             "k", "seed")}
    dataset = smoke(**{k: v for k, v in options.items() if v is not None})
    path = write_file(dataset, args.out)
    print(f"wrote {path}: {len(dataset.X)} rows, rep_in {dataset.rep_in} "
          f"({time.perf_counter() - start:.1f} s)")
    errors = ", ".join(f"{g} {e:.2g}" for g, e in dataset.true_errors.items())
    print(f"simulator's equivariance errors: {errors}; exact: {', '.join(dataset.exact)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Regenerate a benchmark table: results file plus the README table."""
    from softequiv.bench import markdown_table, matching_settings, run_benchmark

    protocol = {"epochs": args.epochs} if args.epochs else None
    result = run_benchmark(args.task, seeds=args.seeds, methods=args.methods,
                           settings=matching_settings(args.task, args.only),
                           workers=args.workers, address=args.address, protocol=protocol,
                           merge=args.merge,
                           first_seed=args.first_seed)
    print(markdown_table(args.task, result["summary"], result["protocol"]))
    print(f"wall time {result['wall_seconds']:.0f} s; wrote benchmarks/results/{args.task}.json")
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from softequiv.bench import TASKS

    p = sub.add_parser("bench", help="regenerate a benchmark table of the paper")
    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", nargs="+", help="labels or method names (default: all)")
    p.add_argument("--epochs", type=int, help="override the protocol's epochs")
    p.add_argument("--workers", type=int,
                   help="runs at once, as Ray tasks of one thread each (needs softequiv[ray]); "
                        "default 1: one after another in this process; with --address: "
                        "the most runs in flight (default: all)")
    p.add_argument("--address",
                   help="run on the existing Ray cluster at this address (e.g. auto, or "
                        "ray://head:10001) instead of on this machine")
    p.add_argument("--merge", action="store_true",
                   help="keep the runs already in the results file that this call does "
                        "not redo (other methods, settings or seeds)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds run from here (with --merge: add seeds to a table)")
    p.add_argument("--only", nargs="+", metavar="KEY=VALUE",
                   help="run only the settings matching, e.g. bodies=all")
    p.set_defaults(func=cmd_bench)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_basis, _add_discover,
                                                               _add_predict, _add_data, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softequiv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from softequiv.threads import passive_waiting

    passive_waiting()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
