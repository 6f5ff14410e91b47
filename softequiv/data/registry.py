"""Turn a dataset name (built-in benchmark) or a user's file into a :class:`Dataset`."""

from __future__ import annotations

from pathlib import Path

from softequiv.data.base import TEST, Dataset
from softequiv.data.files import load_table, split_rows, validate_arrays
from softequiv.data.files.split import named_test_sets
from softequiv.data.synthetic import DATASETS
from softequiv.errors import InputError
from softequiv.spec import parse_groups, parse_rep


def _simulated_datasets() -> dict:
    """Datasets made by the simulators (imported on use: their engines are optional)."""
    from softequiv.data.motion import MOTION_DATASETS
    from softequiv.data.plumes import PLUME_DATASETS

    return {**MOTION_DATASETS, **PLUME_DATASETS}


def builtin_names() -> list[str]:
    return sorted([*DATASETS, "mujoco-ant", "smoke"])


def load_builtin_dataset(name: str, **options) -> Dataset:
    """A built-in benchmark by name with its options (None values mean the default)."""
    options = {k: v for k, v in options.items() if v is not None}
    if name in DATASETS:
        from softequiv.data.synthetic import load_builtin

        return load_builtin(name, **options)
    simulated = _simulated_datasets()
    if name in simulated:
        try:
            return simulated[name](**options)
        except TypeError as exc:
            raise InputError(f"dataset {name!r}: {exc}") from None
    raise InputError(f"unknown dataset {name!r}; choose from {', '.join(builtin_names())}")


def dataset_from_file(path: str | Path, *, rep_in: str, rep_out: str, groups: str | list[str],
                      x_cols: str | None = None, y_cols: str | None = None,
                      seed: int = 0) -> Dataset:
    """A user's ``.npz``/``.csv``/``.parquet`` file as a dataset: reps and candidate groups
    are parsed and checked against the data's widths; the split is the file's own or a
    seeded random 60/20/20 one; an ``.npz`` with a ``test_set`` array names several test
    sets (:func:`~softequiv.data.files.split.named_test_sets`). 4-D ``X`` and ``Y`` are
    fields ``[N, C, H, W]`` (the groups must then be the square lattice's,
    :mod:`softequiv.fields`)."""
    group_list = parse_groups(groups)
    rin, rout = parse_rep(rep_in), parse_rep(rep_out)
    table = load_table(path, x_cols=x_cols, y_cols=y_cols)
    if table.X.ndim == 4:
        from softequiv.nn.cnn import check_field_groups

        check_field_groups(group_list)
    d = group_list[0].d
    validate_arrays(table.X, table.Y, size_in=rin.size(d), size_out=rout.size(d),
                    rep_in_name=rep_in, rep_out_name=rep_out, x_names=table.x_names,
                    y_names=table.y_names)
    split = split_rows(len(table.X), table.split, seed=seed)
    test_sets = {"test": TEST}
    if table.test_set is not None:
        try:
            split, test_sets = named_test_sets(split, table.test_set)
        except InputError as exc:
            raise InputError(f"{Path(path).name}: {exc}") from None
    return Dataset(name=Path(path).name, X=table.X, Y=table.Y, rep_in=rep_in, rep_out=rep_out,
                   groups=[g.name for g in group_list], split=split, test_sets=test_sets,
                   info={"file": str(path), "x_names": table.x_names,
                         "y_names": table.y_names})
