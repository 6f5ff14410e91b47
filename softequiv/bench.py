"""``softequiv bench``: the paper's benchmark tables, regenerated on this machine.

Each task is a grid of settings x methods x seeds. Every run trains one model and records
test MSE, seconds and what it discovered; the summary gives mean +- std per method and
setting, the discovery accuracy (share of runs whose top-ranked candidate is the
truly exact one), and for soft models the verdicts per candidate and the strengths every
tuning rule would have set from the same warm-up. Results go to
``benchmarks/results/<task>.json`` and a markdown table between
``<!-- bench:<task> -->`` markers in README.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from softequiv.atomic import write_json, write_text
from softequiv.errors import InputError
from softequiv.tuning import RULES
from softequiv.verdicts import BROKEN, HOLDS, UNDETERMINED

RESULTS_DIR = Path("benchmarks") / "results"


@dataclass(frozen=True)
class Method:
    """A row of the table: a training method, for emlp/rpp which candidate it uses (an
    index, or a name: settings without that candidate then skip the row), training
    options of its own (``options``: (name, value) pairs over the protocol), and the
    settings it runs in (``only``: (key, allowed values) pairs; empty: every setting)."""

    label: str
    method: str
    group: int | str = 0
    options: tuple[tuple[str, object], ...] = ()
    only: tuple[tuple[str, tuple], ...] = ()

    def runs_in(self, setting: dict) -> bool:
        return all(setting.get(key) in allowed for key, allowed in self.only)


@dataclass
class Task:
    """A benchmark: the dataset, its settings, the methods compared and the protocol."""

    dataset: str
    settings: list[dict]
    methods: list[Method]
    protocol: dict = field(default_factory=dict)
    fields: bool = False


PER_PROTOCOL = {"epochs": 400, "t_adj": 100, "window": 50, "lambda_init": 100.0, "p": 2.0,
                "rule": "error"}

TRUE_BREAK = 1e-3
"""A candidate whose ground-truth equivariance error exceeds this is broken by the data."""

PUBLISHED_RECIPE = Method("PER (published recipe)", "per",
                          options=(("rule", "published"), ("penalty", "coupled")))
"""PER as published: lambda_j R_j inside Adam's loss, strengths from the minima of R_j."""

GRADIENT_RULE = Method("PER (gradient rule)", "per", options=(("rule", "gradient"),))
"""PER with the previous release's default strength rule."""

TASKS: dict[str, Task] = {
    "inertia": Task("inertia",
                    [{"axis": a, "eps": e} for e in (-1.0, 0.3) for a in ("x", "y", "z")],
                    [Method("MLP", "mlp"), Method("EMLP-O(3)", "emlp"), Method("RPP-O(3)", "rpp"),
                     Method("Mixed-RPP", "mixed-rpp"), Method("PER", "per"), GRADIENT_RULE,
                     PUBLISHED_RECIPE], PER_PROTOCOL),
    "cossim": Task("cossim", [{"variant": "so3"}, {"variant": "scale"},
                              {"variant": "scale", "n": [5000, 1000, 1000]}],
                   [Method("MLP", "mlp"), Method("EMLP-union", "emlp"),
                    Method("EMLP-SO(3)", "emlp", "SO(3)"),
                    Method("EMLP-Scaling(3)", "emlp", "Scaling(3)"),
                    Method("RPP-union", "rpp"), Method("Mixed-RPP", "mixed-rpp"),
                    Method("PER", "per"), GRADIENT_RULE], PER_PROTOCOL),
    "se3": Task("se3", [{"variant": v} for v in ("rotation", "translation")],
                [Method("MLP", "mlp"), Method("EMLP-SE(3)", "emlp"), Method("RPP-SE(3)", "rpp"),
                 Method("Mixed-RPP", "mixed-rpp"), Method("PER", "per"), GRADIENT_RULE],
                PER_PROTOCOL),
    "mujoco-ant": Task("mujoco-ant", [{"variant": "o3", "bodies": "torso"},
                                      {"variant": "o3", "bodies": "all"}],
                       [Method("MLP", "mlp"), Method("EMLP-O(3)", "emlp"),
                        Method("EMLP-O2xy (oracle)", "emlp", 1),
                        Method("EMLP-SO2xy (oracle)", "emlp", "SO2xy"), Method("RPP-O(3)", "rpp"),
                        Method("Mixed-RPP", "mixed-rpp"), Method("PER", "per"),
                        GRADIENT_RULE,
                        Method("PER (minima rule, p 5)", "per",
                               options=(("rule", "published"), ("p", 5.0))),
                        PUBLISHED_RECIPE], PER_PROTOCOL),
}


FIELD_PROTOCOL = {"epochs": 60, "ch": 32, "batch_size": 16, "refit_steps": 200}
"""The smoke benchmark trains every method with discover's defaults on fields
(:data:`softequiv.train.FIELD_DEFAULTS`): 32 hidden channels for every model, which for
the D4 models are 4 regular fields of D4 (see :mod:`softequiv.nn.cnn`)."""

_PLUME_BASELINES = (("variant", ("mirror", "rotation")),)
TASKS["smoke"] = Task(
    "smoke", [{"variant": "mirror"}, {"variant": "rotation"},
              *({"variant": "levels", "level": level} for level in (0, 1, 2, 4))],
    [Method("CNN", "mlp", only=_PLUME_BASELINES),
     Method("G-CNN D4", "emlp", only=_PLUME_BASELINES),
     Method("RPP-conv D4", "rpp", only=_PLUME_BASELINES),
     Method("Relaxed group conv D4", "relaxed", only=_PLUME_BASELINES),
     Method("Augmentation D4", "aug", only=_PLUME_BASELINES),
     Method("PER", "per")], FIELD_PROTOCOL, fields=True)


def _run_one(job: dict) -> dict | None:
    """One training run with one torch thread (in a Ray worker, or in this process);
    None when the row's group is not a candidate of this setting."""
    from softequiv.threads import one_thread

    with one_thread():
        return _train_row(job)


def _train_row(job: dict) -> dict | None:
    from softequiv.data.registry import load_builtin_dataset
    from softequiv.discover import discover
    from softequiv.nn.cnn import parameter_count
    from softequiv.train import TrainConfig

    dataset = load_builtin_dataset(job["dataset"], seed=job["seed"], **job["setting"])
    if isinstance(job["group"], str) and job["group"] not in dataset.groups:
        return None
    config = TrainConfig(method=job["method"], group=dataset.candidate_index(job["group"]),
                         seed=job["seed"], progress=False, **job["protocol"])
    start = time.perf_counter()
    found = discover(dataset, config)
    report = found.report
    row = {k: job[k] for k in ("label", "method", "group", "seed", "setting", "protocol")}
    row |= {"test_mse": report["test_mse"], "valid_mse": report["valid_mse"],
            "seconds": time.perf_counter() - start, "ranking": report["ranking"],
            "exact_reported": report["exact"], "truly_exact": dataset.exact,
            "groups": report["groups"], "warnings": report["warnings"],
            "test_sets": report["test_sets"],
            "parameters": parameter_count(found.result.model),
            "asymmetry": dataset.info.get("asymmetry")}
    tuner = found.result.tuner
    if tuner is not None:
        row["rule_lambdas"] = tuner.proposals()
    if dataset.info.get("metrics") == "ade_fde":
        from softequiv.data.base import TEST
        from softequiv.data.motion import ade_fde

        X, Y = dataset.part(TEST)
        row["motion"] = ade_fde(found.result.predict(X), Y, future=dataset.info["future"],
                                n_bodies=dataset.info["n_bodies"],
                                homogeneous=dataset.info["homogeneous"])
    return row


def _completed(jobs: list[dict], workers: int | None,
               address: str | None) -> Iterator[tuple[int, dict | None]]:
    """(job index, row) for every job as it finishes: in this process one after another
    (``workers`` 1, no address: Ray is not imported), else as Ray tasks of one CPU each, on
    a local Ray instance of ``workers`` CPUs or on the cluster at ``address`` (at most
    ``workers`` runs in flight when given)."""
    if address is None and (workers or 1) == 1:
        for i, job in enumerate(jobs):
            yield i, _run_one(job)
        return
    try:
        import ray
    except ImportError:
        raise InputError("--workers above 1 and --address run on Ray: install it with "
                         "pip install 'softequiv[ray]'") from None
    if address is None:
        ray.init(address="local", num_cpus=workers, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING,
                 object_store_memory=RAY_OBJECT_STORE_BYTES)
    else:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"--address {address!r}: cannot join a Ray cluster there "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                             ) from None
    try:
        task = ray.remote(num_cpus=1)(_run_one)
        limit = workers or len(jobs)
        queue = [(i, jobs[i]) for i in dispatch_order(jobs)]
        pending: dict = {}
        while queue or pending:
            while queue and len(pending) < limit:
                i, job = queue.pop(0)
                pending[task.remote(job)] = i
            (done,), _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done), ray.get(done)
    finally:
        ray.shutdown()


RAY_OBJECT_STORE_BYTES = 256 * 1024 ** 2
"""Object store of a local Ray instance: results are small JSON-like rows."""

RELATIVE_COST = {"mlp": 0.2}
"""About what a run of each method costs next to a soft one (1 when not listed)."""


def dispatch_order(jobs: list[dict]) -> list[int]:
    """The order in which workers take the jobs: costliest first (:data:`RELATIVE_COST`),
    so that a cheap run, not a soft one with its verdicts' refits, is what keeps one
    worker busy at the end; otherwise as listed. Only the dispatch depends on it: every
    row is the same as a serial run's."""
    return sorted(range(len(jobs)), key=lambda i: -RELATIVE_COST.get(jobs[i]["method"], 1))


def _top_correct(row: dict) -> bool | None:
    """Whether the top-ranked candidate is the truly exact one (None if not one exact)."""
    candidates = [g["name"] for g in row["groups"][1:]]
    exact = [name for name in row["truly_exact"] if name in candidates]
    if len(exact) != 1 or not row["ranking"]:
        return None
    return row["ranking"][0] == exact[0]


def summarize(runs: list[dict]) -> list[dict]:
    """Mean +- std per (setting, method) and the discovery accuracy."""
    keys = list(dict.fromkeys((json.dumps(r["setting"], sort_keys=True), r["label"])
                              for r in runs))
    setting_order = {k[0]: i for i, k in reversed(list(enumerate(keys)))}
    label_order = {m.label: i for task in TASKS.values() for i, m in enumerate(task.methods)}
    keys.sort(key=lambda k: (setting_order[k[0]], label_order.get(k[1], len(label_order))))
    out = []
    for setting, label in keys:
        rows = [r for r in runs if json.dumps(r["setting"], sort_keys=True) == setting
                and r["label"] == label]
        mse = np.array([r["test_mse"] for r in rows])
        correct = [c for c in (_top_correct(r) for r in rows) if c is not None]
        entry = {"setting": json.loads(setting), "method": label, "runs": len(rows),
                 "test_mse_mean": float(mse.mean()), "test_mse_std": float(mse.std()),
                 "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
                 "discovery_accuracy": float(np.mean(correct)) if correct else None}
        if all("test_sets" in r for r in rows):
            field_summary(entry, rows)
        if rows[0].get("motion"):
            for metric in ("ade", "fde"):
                values = np.array([r["motion"][metric] for r in rows])
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = (float(values.mean()),
                                                                   float(values.std()))
        if rows[0]["method"] == "per":
            lambdas = np.array([[g["lambda"] for g in r["groups"]] for r in rows])
            errors = np.array([[g["model_error"] for g in r["groups"]] for r in rows])
            entry["lambdas_mean"] = lambdas.mean(0).tolist()
            truths = [[g["true_error"] for g in r["groups"]] for r in rows]
            true_mean = (np.array(truths, dtype=float).mean(0).tolist()
                         if all(t is not None for row in truths for t in row)
                         else [None] * len(rows[0]["groups"]))
            entry["levels"] = [{"name": g["name"], "lambda_mean": float(lam),
                                "model_error_mean": float(err), "true_error_mean": true}
                               for g, lam, err, true in zip(rows[0]["groups"], lambdas.mean(0),
                                                            errors.mean(0), true_mean,
                                                            strict=True)]
            entry["exact_reported"] = {name: sum(name in r["exact_reported"] for r in rows)
                                       for name in (g["name"] for g in rows[0]["groups"])}
            if all("verdict" in g for r in rows for g in r["groups"]):
                entry["verdicts"] = verdict_counts(rows)
                entry["false_holds"] = sum(_false_holds(r) for r in rows)
            rules = rule_comparison(rows)
            if rules:
                entry["rules"] = rules
        out.append(entry)
    return out


def verdict_counts(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Per candidate, how many runs gave each verdict."""
    names = [g["name"] for g in rows[0]["groups"]]
    return {name: {v: sum(r["groups"][j]["verdict"] == v for r in rows)
                   for v in (HOLDS, BROKEN, UNDETERMINED)}
            for j, name in enumerate(names)}


def _broken_by_truth(group: dict, truly_exact: list[str]) -> bool:
    if group["true_error"] is not None:
        return group["true_error"] > TRUE_BREAK
    return group["name"] not in truly_exact


def _false_holds(row: dict) -> int:
    """Candidates the ground truth breaks that the run says hold."""
    return sum(g.get("verdict") == HOLDS and _broken_by_truth(g, row["truly_exact"])
               for g in row["groups"])


def rule_comparison(rows: list[dict]) -> dict[str, dict] | None:
    """For each tuning rule, from the warm-up every run shared: the share of runs whose
    truly exact candidate (one, not the ambient) gets the strictly largest lambda, and the
    median over runs of the largest lambda of a broken candidate over the exact one's."""
    if not rows or any("rule_lambdas" not in r for r in rows):
        return None
    names = [g["name"] for g in rows[0]["groups"]]
    exact = [n for n in rows[0]["truly_exact"] if n in names[1:]]
    if len(exact) != 1:
        return None
    j = names.index(exact[0])
    out = {}
    for rule in RULES:
        picks, ratios = [], []
        for r in rows:
            lam = r["rule_lambdas"].get(rule)
            if lam is None:
                break
            broken = [lam[k] for k, g in enumerate(r["groups"]) if k and k != j
                      and _broken_by_truth(g, r["truly_exact"])]
            picks.append(all(lam[j] > b for b in broken))
            ratios.append(max(broken) / lam[j] if broken and lam[j] > 0 else float("nan"))
        else:
            out[rule] = {"exact_strongest": float(np.mean(picks)),
                         "broken_over_exact": float(np.nanmedian(ratios))}
    return out


def markdown_table(task: str, summary: list[dict], protocol: dict) -> str:
    """The README table of a task."""
    if TASKS[task].fields:
        return field_table(summary, protocol)
    motion = any("ade_mean" in s for s in summary)
    head = ("| setting | method | runs | test MSE | " + ("ADE (m) | FDE (m) | " if motion else "")
            + "s / run | top-ranked = exact |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for s in summary:
        setting = ", ".join(f"{k}={v}" for k, v in s["setting"].items())
        acc = "-" if s["discovery_accuracy"] is None else f"{100 * s['discovery_accuracy']:.0f}%"
        cells = [setting, s["method"], str(s["runs"]),
                 f"{s['test_mse_mean']:.3g} ± {s['test_mse_std']:.2g}"]
        if motion:
            cells += [f"{s['ade_mean']:.4f} ± {s['ade_std']:.1g}",
                      f"{s['fde_mean']:.4f} ± {s['fde_std']:.1g}"]
        cells += [f"{s['seconds_mean']:.1f}", acc]
        lines.append("| " + " | ".join(cells) + " |")
    proto = ", ".join(f"{k}={v}" for k, v in protocol.items())
    levels = [_levels_line(s) for s in summary if s.get("levels")]
    text = "\n".join(lines) + f"\n\nProtocol: {proto}; one run per seed."
    if levels:
        text += ("\n\nLevels discovered (mean final lambda / mean model equivariance error "
                 "(the ground truth's error); verdicts holds/broken/undetermined over the "
                 "runs, or the runs that reported the group exact where a row predates "
                 "verdicts):\n\n" + "\n".join(levels))
    rules = rules_table(summary)
    if rules:
        text += ("\n\nTuning rules side by side, from the same warm-up of every PER run: "
                 "the share of runs whose exact candidate gets the strictly largest lambda, "
                 "and the median of (largest lambda of a broken candidate) / (exact "
                 "candidate's lambda):\n\n" + rules)
    return text


def _levels_line(entry: dict) -> str:
    setting = ", ".join(f"{k}={v}" for k, v in entry["setting"].items())
    counts = entry.get("verdicts")

    def judged(name: str) -> str:
        if counts is None:
            return f"{entry['exact_reported'][name]}/{entry['runs']} exact"
        c = counts[name]
        return f"{c[HOLDS]}/{c[BROKEN]}/{c[UNDETERMINED]}"

    groups = "; ".join(f"{g['name']} {g['lambda_mean']:.3g} / {g['model_error_mean']:.2g}"
                       + ("" if g.get("true_error_mean") is None
                          else f" (truth {g['true_error_mean']:.2g})")
                       + f", {judged(g['name'])}"
                       for g in entry["levels"])
    false = ("" if "false_holds" not in entry
             else f" (false holds: {entry['false_holds']})")
    return f"- {setting}, {entry['method']}{false}: {groups}"


def rules_table(summary: list[dict]) -> str:
    """Markdown rows of :func:`rule_comparison` for every row that has it."""
    entries = [s for s in summary if s.get("rules")]
    if not entries:
        return ""
    lines = ["| setting | method | " + " | ".join(RULES) + " |",
             "|---|---|" + "---|" * len(RULES)]
    for s in entries:
        setting = ", ".join(f"{k}={v}" for k, v in s["setting"].items())
        cells = [(f"{100 * r['exact_strongest']:.0f}%, {r['broken_over_exact']:.2g}"
                  if (r := s["rules"].get(rule)) else "-") for rule in RULES]
        lines.append(f"| {setting} | {s['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update_readme(task: str, table: str, readme: Path = Path("README.md")) -> None:
    """Replace the text between ``<!-- bench:task -->`` and ``<!-- /bench:task -->``."""
    if not readme.exists():
        return
    text = readme.read_text()
    start, end = f"<!-- bench:{task} -->", f"<!-- /bench:{task} -->"
    if start not in text or end not in text:
        return
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    write_text(readme, f"{before}{start}\n{table}\n{end}{after}")


def _same_value(setting_value: object, given: str) -> bool:
    if isinstance(setting_value, list | tuple):
        return ",".join(str(v) for v in setting_value) == given.replace(" ", "")
    if isinstance(setting_value, int | float):
        try:
            return float(given) == float(setting_value)
        except ValueError:
            return False
    return str(setting_value) == given


def matching_settings(task: str, only: list[str] | None) -> list[dict] | None:
    """The task's settings matching every KEY=VALUE of ``only`` (None: all of them): what
    ``softequiv bench --only`` runs."""
    if not only:
        return None
    settings = TASKS[task].settings
    for item in only:
        key, sep, value = item.partition("=")
        keys = list(dict.fromkeys(k for s in TASKS[task].settings for k in s))
        if not sep or key not in keys:
            raise InputError(f"--only takes KEY=VALUE with KEY one of "
                             f"{', '.join(keys)}; got {item!r}")
        settings = [s for s in settings if key in s and _same_value(s[key], value)]
    if not settings:
        raise InputError(f"--only {' '.join(only)} matches no setting of {task}")
    return settings


def run_benchmark(task: str, *, seeds: int = 5, methods: list[str] | None = None,
                  settings: list[dict] | None = None, workers: int | None = None,
                  address: str | None = None, protocol: dict | None = None,
                  out: Path | None = None, readme: bool = True, merge: bool = False,
                  first_seed: int = 0) -> dict:
    """Run a task's grid (seeds ``first_seed`` .. ``first_seed + seeds - 1``) and write its
    results file and (``readme``) the README table. With ``merge`` the runs already in the
    results file that this grid does not redo (other methods, settings or seeds) are
    kept, so a method, a setting or more seeds can be added to an existing table.

    Runs go one after another in this process (``workers`` 1, the default), or as Ray
    tasks: on a local Ray instance with ``workers`` CPUs, or on the Ray cluster at
    ``address``. Every run uses one torch thread and its own seeds, and rows are stored in
    grid order, so the results equal a serial run's whatever the order runs finish in."""
    if task not in TASKS:
        raise InputError(f"unknown benchmark task {task!r}; choose from {', '.join(TASKS)}")
    spec = TASKS[task]
    chosen = spec.methods
    if methods:
        known = {m.label for m in spec.methods} | {m.method for m in spec.methods}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise InputError(f"unknown method {unknown[0]!r} for {task}; choose from "
                             f"{', '.join(m.label for m in spec.methods)}")
        chosen = [m for m in spec.methods if m.label in methods or m.method in methods]
    if seeds < 1:
        raise InputError("--seeds must be at least 1")
    if first_seed < 0:
        raise InputError("--first-seed must be at least 0")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if address is not None and not address.strip():
        raise InputError("--address must name a Ray cluster, e.g. ray://head:10001 or auto")
    proto = spec.protocol | (protocol or {})
    jobs = [{"dataset": spec.dataset, "setting": setting, "label": m.label,
             "method": m.method, "group": m.group, "seed": seed,
             "protocol": proto | dict(m.options)}
            for seed in range(first_seed, first_seed + seeds)
            for setting in (settings or spec.settings) for m in chosen if m.runs_in(setting)]
    path = out or RESULTS_DIR / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    kept, kept_methods = [], []
    if merge and path.exists():
        previous = json.loads(path.read_text())
        kept, kept_methods = _runs_not_redone(previous, jobs, chosen)
        start -= previous.get("wall_seconds", 0.0)  # wall time of the whole table
    finished: dict[int, dict] = {}
    methods_in_table = _in_task_order(spec, kept_methods + chosen)
    result = _result(task, proto, seeds, methods_in_table, start, kept)
    for done, (i, row) in enumerate(_completed(jobs, workers, address), 1):
        if row is None:
            continue
        finished[i] = row
        result = _result(task, proto, seeds, methods_in_table, start,
                         kept + [finished[k] for k in sorted(finished)])
        write_json(path, result, indent=2)
        print(f"[{done}/{len(jobs)}] {row['label']} {row['setting']} seed {row['seed']}: "
              f"test MSE {row['test_mse']:.4g} ({row['seconds']:.0f} s)", flush=True)
    if readme:
        update_readme(task, markdown_table(task, result["summary"], proto))
    return result


def _run_key(row: dict) -> tuple[str, str, int]:
    return row["label"], json.dumps(row["setting"], sort_keys=True), row["seed"]


def _runs_not_redone(previous: dict, jobs: list[dict],
                     chosen: list[Method]) -> tuple[list[dict], list[Method]]:
    """The runs of a results file that ``jobs`` do not redo, and its methods not in
    ``chosen``."""
    redone = {_run_key(job) for job in jobs}
    runs = [r for r in previous["runs"] if _run_key(r) not in redone]
    labels = {m.label for m in chosen}
    methods = [Method(m["label"], m["method"], m.get("group", 0),
                      tuple(tuple(o) for o in m.get("options", ())),
                      tuple((key, tuple(allowed)) for key, allowed in m.get("only", ())))
               for m in previous["methods"] if m["label"] not in labels]
    return runs, methods


def _in_task_order(spec: Task, methods: list[Method]) -> list[Method]:
    order = {m.label: i for i, m in enumerate(spec.methods)}
    return sorted(methods, key=lambda m: order.get(m.label, len(order)))


def _result(task: str, protocol: dict, seeds: int, methods: list[Method], start: float,
            runs: list[dict]) -> dict:
    return {"task": task, "protocol": protocol, "seeds": seeds,
            "methods": [asdict(m) for m in methods],
            "wall_seconds": time.perf_counter() - start, "summary": summarize(runs),
            "runs": runs}


def ranking_agrees(row: dict, margin: float = 1e-3) -> bool | None:
    """Whether the run's ranking (most respected candidate first) orders every two
    candidates as their ground-truth equivariance errors do, wherever those differ by more
    than ``margin`` (candidates the truth cannot tell apart may come in any order); None
    without ground-truth errors."""
    truth = {g["name"]: g["true_error"] for g in row["groups"]}
    if any(truth[name] is None for name in row["ranking"]):
        return None
    place = {name: i for i, name in enumerate(row["ranking"])}
    return all(place[a] < place[b] for a in place for b in place
               if truth[a] + margin < truth[b])


def _holds(rows: list[dict]) -> list[int] | None:
    """Over the runs: verdicts ``holds`` of truly exact candidates (the ambient group
    aside), the number of such (run, candidate) pairs, and ``holds`` of candidates the
    truth breaks (:func:`_false_holds`)."""
    if not all("verdict" in g for r in rows for g in r["groups"]):
        return None
    exact = [g for r in rows for g in r["groups"][1:]
             if not _broken_by_truth(g, r["truly_exact"])]
    return [sum(g["verdict"] == HOLDS for g in exact), len(exact),
            sum(_false_holds(r) for r in rows)]


def field_summary(entry: dict, rows: list[dict]) -> dict:
    """The field benchmarks' columns of a summary entry: RMSE per test set, agreement of
    the ranking with the ground truth, verdicts and parameter count."""
    for name in rows[0]["test_sets"]:
        rmse = np.array([r["test_sets"][name]["rmse"] for r in rows])
        entry.setdefault("rmse", {})[name] = {"mean": float(rmse.mean()),
                                              "std": float(rmse.std())}
    agrees = [a for a in (ranking_agrees(r) for r in rows) if a is not None]
    entry["ranking_agrees"] = sum(agrees) if agrees else None
    entry["holds"] = _holds(rows)
    entry["parameters"] = rows[0].get("parameters")
    entry["asymmetry"] = rows[0].get("asymmetry")
    entry["model_errors_by_seed"] = {str(r["seed"]): [g["model_error"] for g in r["groups"]]
                                     for r in rows}
    return entry


def levels_correlation(summary: list[dict], method: str = "PER") -> dict | None:
    """Across the smoke settings that differ only in the asymmetry of the buoyancy
    (``levels``, and ``rotation``, which is level 3): Spearman's rank correlation of the
    method's mean equivariance error with the simulator's, for each candidate the truth
    breaks at some level."""
    from scipy.stats import spearmanr

    entries = sorted((s for s in summary if s["setting"].get("variant") in ("levels", "rotation")
                      and s["method"] == method and s.get("levels")
                      and s.get("asymmetry") is not None),
                     key=lambda s: s["asymmetry"])
    if len(entries) < 3:
        return None
    seeds = set.intersection(*(set(e["model_errors_by_seed"]) for e in entries))
    out = {}
    for j, group in enumerate(entries[0]["levels"]):
        truth = [e["levels"][j]["true_error_mean"] for e in entries]
        model = [e["levels"][j]["model_error_mean"] for e in entries]
        if all(t is not None for t in truth) and max(truth) > 1e-3:
            per_seed = [float(spearmanr(truth, [e["model_errors_by_seed"][seed][j]
                                                for e in entries]).statistic)
                        for seed in sorted(seeds, key=int)]
            out[group["name"]] = {"spearman": float(spearmanr(truth, model).statistic),
                                  "spearman_per_seed": per_seed,
                                  "asymmetry": [e["asymmetry"] for e in entries],
                                  "true": truth, "model": model}
    return out or None


def field_table(summary: list[dict], protocol: dict) -> str:
    """The README table of a field task: RMSE on every test set in the data's units,
    seconds, discovery and verdicts, then the levels' correlation."""
    names = next(iter(s["rmse"] for s in summary if s.get("rmse")), {})
    head = ("| setting | method | params | runs | " + "".join(f"RMSE {n} | " for n in names)
            + "s / run | top-ranked = exact | ranking = truth | exact → holds | false holds |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for s in summary:
        setting = ", ".join(f"{k}={v}" for k, v in s["setting"].items())
        acc = "-" if s["discovery_accuracy"] is None else f"{100 * s['discovery_accuracy']:.0f}%"
        agree = "-" if s.get("ranking_agrees") is None else f"{s['ranking_agrees']}/{s['runs']}"
        holds = s.get("holds")
        cells = [setting, s["method"], str(s.get("parameters") or "-"), str(s["runs"]),
                 *(f"{s['rmse'][n]['mean']:.4f} ± {s['rmse'][n]['std']:.1g}" for n in names),
                 f"{s['seconds_mean']:.0f}", acc, agree,
                 "-" if holds is None or not holds[1] else f"{holds[0]}/{holds[1]}",
                 "-" if holds is None else str(holds[2])]
        lines.append("| " + " | ".join(cells) + " |")
    proto = ", ".join(f"{k}={v}" for k, v in protocol.items())
    text = "\n".join(lines) + f"\n\nProtocol: {proto}; one run per seed."
    levels = [_levels_line(s) for s in summary if s.get("levels")]
    if levels:
        text += ("\n\nLevels discovered (mean final lambda / mean model equivariance error "
                 "(the simulator's error), runs that reported the group exact):\n\n"
                 + "\n".join(levels))
    correlation = levels_correlation(summary)
    if correlation:
        text += ("\n\nAcross the buoyancy asymmetries (levels, and rotation = 0.2), PER's "
                 "mean equivariance error against the simulator's, with Spearman's rank "
                 "correlation (asymmetry: PER's error (simulator's error)):\n\n" + "\n".join(
                     f"- {name}: rho = {c['spearman']:.2f} (per seed: "
                     + ", ".join(f"{r:.2f}" for r in c["spearman_per_seed"]) + "); "
                     + ", ".join(f"{a:g}: {m:.3g} ({t:.3g})" for a, m, t in
                                 zip(c["asymmetry"], c["model"], c["true"], strict=True))
                     for name, c in correlation.items()))
    return text
