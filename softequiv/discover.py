"""One discovery run end to end: train, report, and save everything to a directory;
and load a saved run back for predictions.

A run directory holds ``report.json``, ``levels.png``, ``model.safetensors`` (plain
weights, no pickles), ``config.json`` (the training config, reps, groups and
normalization: everything needed to rebuild the model) and ``history.json`` (per-epoch
losses, regularizers and strengths). It is written next to its final place and renamed
into place only when complete (:mod:`softequiv.atomic`), so an interrupted or failed run,
with ``--overwrite`` too, leaves an earlier run at that path intact and loadable.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from softequiv.atomic import atomic_directory
from softequiv.data.base import Dataset
from softequiv.errors import InputError
from softequiv.plots import plot_levels
from softequiv.report import build_report
from softequiv.train import Problem, TrainConfig, TrainResult, batch_rows, build_model, fit

RUN_FILES = ("report.json", "levels.png", "model.safetensors", "config.json", "history.json")


@dataclass
class Discovery:
    """A trained run and its report."""

    result: TrainResult
    report: dict


def prepare_output(out: str | Path, *, overwrite: bool = False) -> Path:
    """Check the output directory before any work: it must be absent, empty, or
    ``overwrite`` must be set. Nothing is deleted here; :func:`save_run` replaces the
    directory only once the new run is complete."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(f"output path {str(path)!r} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"output directory {str(path)!r} is not empty; "
                         "pass --overwrite to replace it")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot create {str(path)!r}: {str(ancestor)!r} is not a writable "
                         "directory")
    return path


def discover(dataset: Dataset, config: TrainConfig) -> Discovery:
    """Train ``config.method`` on ``dataset`` and report the discovered symmetry levels."""
    problem = Problem.build(dataset, normalize=config.normalize)
    result = fit(problem, config)
    return Discovery(result, build_report(result))


def save_run(discovery: Discovery, out: str | Path, *, extra_config: dict | None = None) -> Path:
    """Write the run directory ``out`` (RUN_FILES) atomically: into a temporary sibling
    that replaces ``out``, and whatever ``out`` held, only once every file is written."""
    with atomic_directory(out) as tmp:
        _write_run_files(discovery, tmp, extra_config)
    return Path(out)


def _write_run_files(discovery: Discovery, path: Path, extra_config: dict | None) -> None:
    result = discovery.result
    problem = result.problem
    config = {
        "train": asdict(result.config),
        "dataset": problem.dataset.name,
        "dataset_info": problem.dataset.info,
        "rep_in": problem.dataset.rep_in,
        "rep_out": problem.dataset.rep_out,
        "groups": problem.dataset.groups,
        "fields": problem.fields,
        "x_scaler": problem.x_scaler.state_dict(),
        "y_scaler": problem.y_scaler.state_dict(),
        "best_epoch": result.best_epoch,
        "snapped_to": (None if result.snapped_to is None
                       else problem.dataset.groups[result.snapped_to]),
        "tuner": result.tuner.state_dict() if result.tuner else None,
        **(extra_config or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config, indent=2, default=_json_default))
    (path / "history.json").write_text(json.dumps(result.history))
    plot_levels(discovery.report, path / "levels.png")
    (path / "report.json").write_text(json.dumps(discovery.report, indent=2))


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


@dataclass
class SavedModel:
    """A model loaded from a run directory, ready to predict in the data's units."""

    model: torch.nn.Module
    problem: Problem
    config: dict

    def predict(self, X: np.ndarray, batch: int | None = None) -> np.ndarray:
        size_in = self.problem.rep_in.size(self.problem.groups[0].d)
        if self.problem.fields and (X.ndim != 4 or X.shape[1] != size_in):
            raise InputError(f"the model expects fields [N, {size_in}, H, W] "
                             f"({self.config['rep_in']}), got array of shape {X.shape}")
        if not self.problem.fields and (X.ndim != 2 or X.shape[1] != size_in):
            raise InputError(f"the model expects {size_in} input columns "
                             f"({self.config['rep_in']}), got array of shape {X.shape}")
        Xn = torch.as_tensor(self.problem.x_scaler.transform(X), dtype=torch.float32)
        batch = batch or batch_rows(Xn)
        self.model.eval()
        with torch.no_grad():
            out = torch.cat([self.model(Xn[i:i + batch]) for i in range(0, len(Xn), batch)])
        return self.problem.y_scaler.inverse(out.double().numpy())


def load_run(directory: str | Path) -> SavedModel:
    """Rebuild the model of a saved run (its config.json and model.safetensors)."""
    path = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (path / name).is_file():
            raise InputError(f"{str(path)!r} is not a softequiv run directory: {name} is missing")
    config = json.loads((path / "config.json").read_text())
    train = TrainConfig(**config["train"])
    empty = np.zeros((3, 0, 1, 1) if config.get("fields") else (3, 0))
    placeholder = Dataset(config["dataset"], empty, empty, config["rep_in"], config["rep_out"],
                          config["groups"], np.array([0, 1, 2], np.int8))
    problem = Problem.from_spec(placeholder)
    problem.x_scaler.load_state_dict(config["x_scaler"])
    problem.y_scaler.load_state_dict(config["y_scaler"])
    model = build_model(problem, train)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.eval()
    return SavedModel(model, problem, config)
