"""The ``softequiv`` command line: ``basis``, ``discover``, ``predict``, ``bench`` and ``data``.

Bad arguments or input give one line on stderr and exit code 2, never a traceback; every
numeric flag is checked when parsed (:mod:`softequiv.checks`), before any data is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from softequiv import __version__
from softequiv.checks import flag, integer, number
from softequiv.errors import InputError

if TYPE_CHECKING:
    from softequiv.train import TrainConfig


DESCRIPTION = """\
softequiv: discover which candidate symmetry groups your data respects, and how strongly.

Give the representations of your inputs and targets and a list of candidate groups;
discover trains one network with a projection-based equivariance regularizer per group,
tunes their strengths, and writes a report of which symmetries hold."""

EPILOG = """\
Run 'softequiv COMMAND --help' for the options of one command. Bad arguments or input
give one line on stderr and exit code 2."""

SEED = flag(integer, minimum=0, maximum=2**32 - 1)
POSITIVE_INT = flag(integer, minimum=1)


class _HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped paragraph by paragraph; option help ends with its default
    when it has one (options whose default is None or False say what happens in their
    own sentence)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(super(_HelpFormatter, self)._fill_text(part, width, indent)
                           for part in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("%(default)" in text or action.default is None or action.default is False
                or action.default is argparse.SUPPRESS or not action.option_strings
                or action.required):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        raise InputError(f"{self.prog}: {message}")


def _device_flag(text: str) -> str:
    """--device: checked against this machine when parsed; kept as text for config.json."""
    from softequiv.checks import resolve_device

    try:
        resolve_device(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def cmd_basis(args: argparse.Namespace) -> int:
    """Solve for the equivariant basis of rep_in -> rep_out under a group."""
    from softequiv.solver import clear_cache, equivariant_basis
    from softequiv.spec import parse_group, parse_rep
    from softequiv.threads import set_threads

    set_threads(args.threads)
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
    p = sub.add_parser("basis", help="dimension of the equivariant basis of a linear map",
                       description="Solve for the basis of the linear maps rep_in -> rep_out "
                                   "that are equivariant under one group, and print its "
                                   "dimension.")
    p.add_argument("--group", required=True,
                   help='the one group to solve for, e.g. "O(3)", "O2xy" or "SO(3)*S(4)"')
    p.add_argument("--rep-in", required=True,
                   help='input representation, e.g. "5*Scalar + 5*Vector"')
    p.add_argument("--rep-out", required=True, help='output representation, e.g. "T(2)"')
    p.add_argument("--tol", type=flag(number, low=0, high=1, open_low=True, open_high=True),
                   default=1e-6, help="singular values of the equivariance constraints below "
                                      "this (relative to the constraints' scale) count as zero; "
                                      "in (0, 1)")
    p.add_argument("--json", action="store_true",
                   help='print one JSON object {"dim", "size", "seconds"} instead of a table')
    _add_threads(p)
    p.set_defaults(func=cmd_basis)


def _add_threads(p: argparse.ArgumentParser) -> None:
    from softequiv.threads import default_threads

    p.add_argument("--threads", type=POSITIVE_INT,
                   help=f"CPU threads for torch and BLAS (default: half the CPUs, at most 4; "
                        f"here {default_threads()})")


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
               "trajectories": args.trajectories, "seconds": args.seconds, "seed": args.seed,
               **{key: getattr(args, key) for key in SMOKE_FLAGS}}
    return load_builtin_dataset(args.dataset, **options)


def _train_config(args: argparse.Namespace, dataset) -> TrainConfig:
    from softequiv.data.base import TRAIN
    from softequiv.train import TrainConfig, default_settings

    defaults = default_settings(dataset.X.ndim == 4, int((dataset.split == TRAIN).sum()),
                                args.batch_size)
    size = {key: value if (value := getattr(args, key)) is not None else default
            for key, default in defaults.items()}
    return TrainConfig(method=args.method, lr=args.lr, layers=args.layers,
                       kernel_size=args.kernel_size, **size,
                       weight_decay=args.wd, lambda_init=args.lambda_init, t_adj=args.t_adj,
                       window=args.window, p=args.p, rule=args.rule, patience=args.patience,
                       group=dataset.candidate_index(args.group), seed=args.seed,
                       device=args.device,
                       penalty=args.penalty, threads=args.threads, snap=args.snap,
                       progress=not args.quiet and sys.stderr.isatty())


_FLAGS = {"weight_decay": "--wd", "group": "--baseline-group"}


def _check_settings(config: TrainConfig) -> None:
    """Check the settings that depend on each other (--t-adj <= --epochs ...) before
    training, naming the flag rather than the Python argument."""
    from dataclasses import fields

    try:
        config.resolved()
    except InputError as exc:
        name, _, rest = str(exc).partition(" ")
        if name in {f.name for f in fields(config)}:
            raise InputError(f"{_FLAGS.get(name, '--' + name.replace('_', '-'))} {rest}") from None
        raise


def cmd_discover(args: argparse.Namespace) -> int:
    """Train with one regularizer per candidate group and report the discovered levels."""
    from softequiv.discover import RUN_FILES, discover, prepare_output, save_run
    from softequiv.report import format_table
    from softequiv.threads import set_threads

    set_threads(args.threads)
    out = prepare_output(args.out, overwrite=args.overwrite)
    dataset = _dataset_from_args(args)
    config = _train_config(args, dataset)
    _check_settings(config)
    result = discover(dataset, config)
    save_run(result, out, extra_config={"command": vars(args) | {"func": None}})
    print(format_table(result.report))
    print(f"wrote {out}/: {', '.join(RUN_FILES)}")
    return 0


def _add_discover(sub: argparse._SubParsersAction) -> None:
    from softequiv.train import FIELD_DEFAULTS, FIELD_STEPS, METHODS, PENALTIES, default_settings
    from softequiv.tuning import RULES

    VECTOR = default_settings(fields=False)  # noqa: N806 - a table, as FIELD_DEFAULTS

    p = sub.add_parser("discover", help="discover which candidate symmetries the data holds",
                       description="Train one network with an equivariance regularizer per "
                                   "candidate group on a built-in benchmark or your own "
                                   "file, tune the strengths, and write a run directory "
                                   "(report.json, levels.png, model.safetensors, "
                                   "config.json, history.json).")
    src = p.add_argument_group("data: a built-in benchmark (--dataset) or your own file (--data)")
    src.add_argument("--dataset", help="a built-in benchmark: inertia, cossim, se3, "
                                       "mujoco-ant or smoke (required unless --data is given)")
    src.add_argument("--data", help="your .npz (arrays X, Y, optional split; X [N, C, H, W] and "
                                    "Y [N, C, H, W] are fields), .csv or .parquet file "
                                    "(required unless --dataset is given)")
    src.add_argument("--axis", help="inertia: the axis whose plane symmetry is kept, x, y or z, "
                                    "or -1 to break all three planes (default: z)")
    src.add_argument("--noise", type=flag(number),
                     help="inertia and cossim: eps, the size of the symmetry break (default: "
                          "-1 for inertia, 1 for cossim)")
    src.add_argument("--masses", type=POSITIVE_INT,
                     help="inertia: number of point masses (default: 5)")
    src.add_argument("--variant", help="cossim: so3, scale, both or none; se3: exact, rotation, "
                                       "translation or none; mujoco-ant: o3 or se3; smoke: "
                                       "mirror, rotation or levels (default: the dataset's "
                                       "first)")
    src.add_argument("--bodies", help="mujoco-ant: torso or all (default: torso)")
    src.add_argument("--trajectories", type=POSITIVE_INT,
                     help="mujoco-ant: trajectories to simulate (default: 200)")
    src.add_argument("--seconds", type=flag(number, low=0, open_low=True),
                     help="mujoco-ant: seconds per trajectory (default: 2.4)")
    _add_smoke_flags(src, "smoke: ")
    src.add_argument("--rep-in", help='representation of an input row, e.g. "5*Scalar + '
                                      '5*Vector" (required with --data)')
    src.add_argument("--rep-out", help='representation of a target row, e.g. "T(2)" (required '
                                       'with --data)')
    src.add_argument("--groups", help='the candidate groups, comma-separated, the largest '
                                      '(ambient) one first, e.g. "O(3), O2xy, O2yz, O2xz" '
                                      '(required with --data)')
    src.add_argument("--x-cols", help="input columns, e.g. x0:x19 (names, first:last name "
                                      "ranges or 0:20 position ranges; required for "
                                      ".csv/.parquet)")
    src.add_argument("--y-cols", help="target columns, e.g. y0:y8 (required for .csv/.parquet)")
    tr = p.add_argument_group("training")
    tr.add_argument("--method", default="per", choices=METHODS,
                    help="per: the soft-equivariant network with one regularizer per "
                         "candidate; the others are baselines (mlp, hard emlp, rpp, "
                         "mixed-rpp, data augmentation aug, sample-based penalty sample, "
                         "frame averaging fa; on fields also relaxed group convolutions "
                         "relaxed; mlp, emlp are then a CNN and a G-CNN)")
    tr.add_argument("--epochs", type=POSITIVE_INT,
                    help=f"training epochs (default: {VECTOR['epochs']} on vectors, "
                         f"{FIELD_DEFAULTS['epochs']} on fields, fewer for about "
                         f"{FIELD_STEPS} steps on many fields)")
    tr.add_argument("--lr", type=flag(number, low=0, open_low=True), default=3e-3,
                    help="Adam learning rate, decayed to 0 on a cosine")
    tr.add_argument("--batch-size", type=POSITIVE_INT,
                    help=f"training rows per optimizer step (default: {VECTOR['batch_size']} "
                         f"on vectors, {FIELD_DEFAULTS['batch_size']} on fields)")
    tr.add_argument("--ch", type=POSITIVE_INT,
                    help=f"hidden channel budget of each layer (default: {VECTOR['ch']} on "
                         f"vectors, {FIELD_DEFAULTS['ch']} on fields)")
    tr.add_argument("--layers", type=POSITIVE_INT, default=3, help="hidden layers")
    tr.add_argument("--kernel-size", type=POSITIVE_INT, default=3,
                    help="fields: side of the convolutions' kernels, odd")
    tr.add_argument("--wd", type=flag(number, low=0), default=0.0,
                    help="weight decay (L2 penalty on all weights)")
    tr.add_argument("--lambda-init", type=flag(number, low=0), default=100.0,
                    help="starting strength of every candidate's regularizer (the ambient "
                         "group's is always 0)")
    tr.add_argument("--t-adj", type=POSITIVE_INT,
                    help="epoch at which the strengths are adjusted once, at most --epochs "
                         "(default: epochs/4)")
    tr.add_argument("--window", type=POSITIVE_INT,
                    help="epochs before --t-adj over which the tuning rule measures each "
                         "group, at most --t-adj (default: t_adj/2)")
    tr.add_argument("--p", type=flag(number, low=0),
                    help="exponent of the adjustment lambda_j *= (min_k m_k / m_j)^p; 0 keeps "
                         "the strengths fixed (default: 2)")
    tr.add_argument("--rule", choices=RULES,
                    help="strength tuning rule: error (default: how far the data pulled the "
                         "warmed-up model off each candidate), fit (the refits' costs), "
                         "published (minima of R_j), relative or gradient (the data's pull "
                         "against each group)")
    tr.add_argument("--patience", type=POSITIVE_INT,
                    help="stop when the validation MSE has not improved for this many "
                         "epochs (default: train all epochs)")
    tr.add_argument("--baseline-group", dest="group", default="0",
                    help="emlp, rpp, aug, fa and relaxed: the one candidate they are built "
                         "for, by index or name")
    tr.add_argument("--group", dest="group", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    tr.add_argument("--seed", type=SEED, default=0,
                    help="seed of the split, the initialization and the batch order")
    tr.add_argument("--penalty", default="decoupled", choices=PENALTIES,
                    help="decoupled: the penalty step is taken outside Adam; coupled: "
                         "lambda_j R_j is added to Adam's loss (the published way)")
    tr.add_argument("--no-snap", dest="snap", action="store_false",
                    help="per/sample: keep the selected model (by default the refit with the "
                         "lowest validation MSE is kept, free or inside a candidate that "
                         "holds)")
    tr.add_argument("--refit-steps", type=POSITIVE_INT,
                    help="per/sample: Adam steps of a round of each refit behind the "
                         "verdicts (default: as many as the training took, at most 1000 on "
                         "vectors, 200 on fields; a refit stops early once it stops "
                         "improving, and trains up to 3 rounds while it still improves)")
    _add_threads(tr)
    tr.add_argument("--device", type=_device_flag, default="auto",
                    help="where to train: auto (a CUDA GPU when there is one, else cpu), cpu, "
                         "cuda or cuda:N")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True,
                   help="run directory to write; it appears only once the run is complete")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out (the old run stays intact until the new "
                        "one is complete)")
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
    fields = saved.problem.fields
    if fields != (X.ndim == 4):
        expected = (f"fields [N, {size_in}, H, W]" if fields else f"rows of {size_in} columns")
        raise InputError(f"{Path(args.data).name}: the model expects {expected} (rep_in "
                         f"{saved.config['rep_in']!r}) but X has shape {X.shape}")
    if X.shape[1] != size_in:
        unit = "channels" if fields else "columns"
        raise InputError(f"{Path(args.data).name}: the model expects {size_in} input {unit} "
                         f"(rep_in {saved.config['rep_in']!r}) but X has {X.shape[1]}")
    if fields and out.suffix.lower() != ".npz":
        raise InputError(f"--out {args.out!r}: predicted fields can be saved as .npz only")
    Y = saved.predict(X)
    names = info.get("y_names")
    if fields or not isinstance(names, list) or len(names) != Y.shape[1]:
        names = None
    save_predictions(out, Y, names)
    what = f"fields of shape {list(Y.shape[1:])}" if fields else f"{Y.shape[1]} columns"
    print(f"wrote {Y.shape[0]} predictions of {what} to {out}")
    return 0


def _training_columns(names: object) -> str | None:
    """The training file's input columns as an --x-cols selection, when it can be one."""
    if not isinstance(names, list) or not names:
        return None
    if any(not isinstance(n, str) or "," in n or n != n.strip() for n in names):
        return None
    return ",".join(names)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a saved run on new inputs",
                       description="Predict with a run directory written by discover (or "
                                   "SymmetryRegressor.save) on the inputs of a data file.")
    p.add_argument("--model", required=True, help="run directory written by discover")
    p.add_argument("--data", required=True,
                   help=".npz (array X; Y is ignored), .csv or .parquet file of inputs")
    p.add_argument("--x-cols", help="with .csv/.parquet: input columns, e.g. x0:x19 "
                                    "(default: the columns the model was trained on)")
    p.add_argument("--out", required=True,
                   help="predictions file to write, .npz (array Y) or .csv (named columns); "
                        "it appears only once complete")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (kept intact if predicting fails)")
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
    p = sub.add_parser("data", help="generate datasets",
                       description="Generate a dataset file (see 'softequiv data KIND --help').")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    m = kinds.add_parser("mujoco", help="MuJoCo trajectories (needs softequiv[mujoco])",
                         description="Simulate MuJoCo trajectories with random controls and "
                                     "write body positions to an .npz file (cached by the "
                                     "arguments).")
    m.add_argument("--env", default="ant", choices=["ant", "humanoid"],
                   help="the MuJoCo model (humanoid is experimental)")
    m.add_argument("--trajectories", type=POSITIVE_INT, default=200,
                   help="trajectories to simulate")
    m.add_argument("--seconds", type=flag(number, low=0, open_low=True), default=2.4,
                   help="simulated seconds per trajectory")
    m.add_argument("--seed", type=SEED, default=0, help="seed of the random controls")
    m.add_argument("--out", help=".npz file to write (default: a file in the cache directory)")
    m.set_defaults(func=cmd_data_mujoco)
    s = kinds.add_parser("smoke", help="smoke-plume dataset file: X, Y, split (needs "
                                       "softequiv[fluids])",
                         description="Simulate smoke plumes with PhiFlow (cached per "
                                     "simulation) and write the smoke dataset (X, Y, split) "
                                     "to an .npz file.")
    s.add_argument("--variant", help="which symmetries the simulation keeps: mirror, rotation "
                                      "or levels (default: mirror)")
    _add_smoke_flags(s, "")
    s.add_argument("--seed", type=SEED, help="picks the unseen inflow positions (default: 0)")
    s.add_argument("--out", required=True, help=".npz file to write")
    s.set_defaults(func=cmd_data_smoke)


SMOKE_FLAGS = ("level", "asymmetry", "grid", "steps", "k")


def _add_smoke_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str) -> None:
    """The smoke dataset's options (``data smoke`` and ``discover --dataset smoke``), checked
    when parsed; ``prefix`` starts each help text."""
    p.add_argument("--level", type=flag(integer, minimum=0, maximum=4),
                   help=f"{prefix}levels: index of the asymmetry, 0-4 (default: 2)")
    p.add_argument("--asymmetry", type=flag(number),
                   help=f"{prefix}rotation: how much stronger the left/right walls pull "
                        "(default: 0.2, i.e. 1.2x)")
    p.add_argument("--grid", type=flag(integer, minimum=8),
                   help=f"{prefix}cells per side of the square box (default: 32)")
    p.add_argument("--steps", type=flag(integer, minimum=4),
                   help=f"{prefix}simulated frames per inflow (default: 48)")
    p.add_argument("--k", type=POSITIVE_INT, help=f"{prefix}input frames per row (default: 4)")


def cmd_data_smoke(args: argparse.Namespace) -> int:
    """Simulate (cached) and write the smoke dataset as an .npz file."""
    from softequiv.data.plumes import smoke, write_file

    start = time.perf_counter()
    options = {k: getattr(args, k) for k in ("variant", *SMOKE_FLAGS, "seed")}
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

    protocol = _bench_protocol(args.task, args.epochs)
    result = run_benchmark(args.task, seeds=args.seeds, methods=args.methods,
                           settings=matching_settings(args.task, args.only),
                           workers=args.workers, address=args.address, protocol=protocol,
                           merge=args.merge,
                           first_seed=args.first_seed)
    print(markdown_table(args.task, result["summary"], result["protocol"]))
    print(f"wall time {result['wall_seconds']:.0f} s; wrote benchmarks/results/{args.task}.json")
    return 0


def _bench_protocol(task: str, epochs: int | None) -> dict | None:
    """The protocol override of ``bench --epochs``: the epochs, and the task's t_adj and
    window scaled by the same factor so the adjustment still happens within training."""
    from softequiv.bench import TASKS

    if epochs is None:
        return None
    base = TASKS[task].protocol
    override = {"epochs": epochs}
    if base.get("epochs"):
        scale = epochs / base["epochs"]
        for key in ("t_adj", "window"):
            if base.get(key):
                override[key] = max(1, round(base[key] * scale))
    return override


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from softequiv.bench import TASKS

    p = sub.add_parser("bench", help="regenerate a benchmark table of the paper",
                       description="Run a benchmark's grid of settings, methods and seeds; "
                                   "write benchmarks/results/TASK.json and the README's "
                                   "table for TASK.")
    p.add_argument("--task", required=True, choices=list(TASKS), help="the benchmark")
    p.add_argument("--seeds", type=POSITIVE_INT, default=5, help="seeds per setting and method")
    p.add_argument("--methods", nargs="+", help="labels or method names (default: all)")
    p.add_argument("--epochs", type=POSITIVE_INT,
                   help="override the protocol's epochs; t_adj and window scale with them "
                        "(default: the protocol's)")
    p.add_argument("--workers", type=POSITIVE_INT,
                   help="runs at once, as Ray tasks of one thread each (needs softequiv[ray]); "
                        "default 1: one after another in this process; with --address: "
                        "the most runs in flight (default: all)")
    p.add_argument("--address",
                   help="run on the existing Ray cluster at this address (e.g. auto, or "
                        "ray://head:10001) instead of on this machine (default: this machine)")
    p.add_argument("--merge", action="store_true",
                   help="keep the runs already in the results file that this call does "
                        "not redo (other methods, settings or seeds)")
    p.add_argument("--first-seed", type=flag(integer, minimum=0), default=0,
                   help="seeds run from here (with --merge: add seeds to a table)")
    p.add_argument("--only", nargs="+", metavar="KEY=VALUE",
                   help="run only the settings matching, e.g. bodies=all (default: every "
                        "setting)")
    p.set_defaults(func=cmd_bench)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_basis, _add_discover,
                                                               _add_predict, _add_data, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softequiv", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"softequiv {__version__}",
                        help="print the version and exit")
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
