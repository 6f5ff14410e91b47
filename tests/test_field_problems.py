"""Fields through the whole product: normalization, problem checks, the models each method
names, field files in ``discover``/``predict`` (one-line errors, exit 2), the estimator,
and ``discover --dataset smoke`` end to end. Tiny grids (8x8) and a few epochs: these check
that everything runs and fits together, not what it discovers (``bench --task smoke``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fails

from softequiv import SymmetryRegressor
from softequiv.cli import main
from softequiv.data.base import Dataset, standard_split
from softequiv.data.normalize import RepScaler
from softequiv.discover import load_run
from softequiv.errors import InputError
from softequiv.fields import transform
from softequiv.nn import CNN, FieldAugmented, RelaxedGCNN, SoftCNN
from softequiv.report import REPORT_KEYS
from softequiv.spec import parse_groups, parse_rep
from softequiv.train import Problem, TrainConfig, build_model, fit

REP_IN, REP_OUT = "Scalar + Vector", "Vector"
GROUPS = ["D4", "C4", "FlipX", "FlipY"]
TINY = ["--epochs", "2", "--ch", "8", "--layers", "1", "--batch-size", "8", "--quiet"]

needs_phiflow = pytest.mark.skipif(importlib.util.find_spec("phi") is None,
                                   reason="needs PhiFlow (pip install 'softequiv[fluids]')")


def field_data(n: int = 48, grid: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scalar + Vector fields -> a Vector field: the vector scaled by the scalar, plus a
    constant wind along y (kept by FlipX, broken by FlipY and the rotations)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3, grid, grid)) + np.array([1.0, 0.0, 0.0])[None, :, None, None]
    Y = X[:, 1:] * X[:, :1]
    Y[:, 1] += 0.5
    return X, Y


def field_dataset(X: np.ndarray, Y: np.ndarray, groups=GROUPS, rep_in=REP_IN,
                  rep_out=REP_OUT) -> Dataset:
    return Dataset("fields", X, Y, rep_in, rep_out, list(groups), standard_split(len(X)))


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fields") / "fields.npz"
    X, Y = field_data()
    np.savez(path, X=X, Y=Y)
    return path


def test_scaler_normalizes_each_channel_type_and_commutes_with_the_grid_symmetries():
    X, _ = field_data(n=20)
    scaler = RepScaler(parse_rep(REP_IN), 2).fit(X)
    Z = scaler.transform(X)
    assert Z.shape == X.shape
    assert abs(Z[:, 0].mean()) < 1e-12 and abs(Z[:, 0].std() - 1) < 1e-12  # scalar channel
    assert abs(np.mean(Z[:, 1] ** 2 + Z[:, 2] ** 2) - 1) < 1e-12  # vector: unit RMS norm
    np.testing.assert_allclose(scaler.inverse(Z), X, rtol=0, atol=1e-12)
    assert scaler.shift[1:].tolist() == [0.0, 0.0]  # a vector is never centred
    for g in parse_groups("D4")[0].elements():  # every element of D4, float64
        moved = transform(X, g, parse_rep(REP_IN))
        np.testing.assert_allclose(scaler.transform(moved), transform(Z, g, parse_rep(REP_IN)),
                                   rtol=0, atol=1e-12)
    rows = RepScaler(parse_rep(REP_IN), 2).fit(X[:, :, 0, 0])  # vectors: unchanged rule
    np.testing.assert_allclose(rows.transform(X[:, :, 0, 0])[:, 0].std(), 1.0)


@pytest.mark.parametrize("change, words", [
    (dict(rep_in="Vector"), ["rep_in 'Vector' has size 2", "X has 3 channels"]),
    (dict(rep_out="Scalar"), ["rep_out 'Scalar' has size 1", "Y has 2 channels"]),
    (dict(X=lambda X: X[..., :6]), ["X's fields are on a 8x6 grid", "Y's on 8x8"]),
    (dict(X=lambda X: X[..., :6], Y=lambda Y: Y[..., :6]), ["C4", "square grid", "8x6"]),
    (dict(Y=lambda Y: Y[:, :, 0, 0]), ["X is 4-D fields", "Y is 2-D"]),
    (dict(X=lambda X: X[:, :, 0], Y=lambda Y: Y[:, :, 0]), ["X must be 2-D", "or 4-D"]),
    (dict(groups=["O(2)", "FlipX"]), ["square lattice", "O(2)"]),
    (dict(groups=["FlipX", "C4"]), ["C4 is not a subgroup", "FlipX"]),
])
def test_field_problems_with_wrong_shapes_or_groups_fail_in_one_line(change, words):
    X, Y = field_data(n=6)
    X = change.get("X", lambda a: a)(X)
    Y = change.get("Y", lambda a: a)(Y)
    options = {k: v for k, v in change.items() if k in ("groups", "rep_in", "rep_out")}
    fails(lambda: Problem.from_spec(field_dataset(X, Y, **options)), *words)


def test_rectangular_grids_work_for_candidates_that_keep_the_axes():
    X, Y = field_data(n=6)
    problem = Problem.build(field_dataset(X[..., :6], Y[..., :6], groups=["D2", "FlipX"]))
    assert problem.fields and problem.tensors[0][0].shape[-2:] == (8, 6)


@pytest.mark.parametrize("method, kind", [
    ("per", SoftCNN), ("sample", SoftCNN), ("emlp", SoftCNN), ("rpp", SoftCNN),
    ("mixed-rpp", SoftCNN), ("mlp", CNN), ("aug", FieldAugmented), ("relaxed", RelaxedGCNN)])
def test_every_method_builds_its_field_model_and_trains(method, kind):
    X, Y = field_data(n=24)
    problem = Problem.build(field_dataset(X, Y))
    config = TrainConfig(method=method, epochs=1, ch=8, layers=1, kernel_size=5,
                         batch_size=8, group=2, progress=False)
    model = build_model(problem, config.resolved())
    assert isinstance(model, kind)
    kernels = {tuple(p.shape[-2:]) for name, p in model.named_parameters() if p.dim() >= 4}
    assert kernels == {(5, 5)}
    if method in ("emlp", "rpp"):  # one candidate (FlipX) projected: hard, or plus a free path
        layer = model.soft_layers()[0]
        assert layer.projected == (0,) and layer.free == (method == "rpp")
        assert [g.name for g in model.groups] == ["FlipX"]
    result = fit(problem, config)
    assert np.isfinite(result.mse(2))
    assert result.predict(X[:3]).shape == Y[:3].shape


def test_methods_that_do_not_apply_say_so():
    X, Y = field_data(n=6)
    fields = Problem.from_spec(field_dataset(X, Y))
    fails(lambda: build_model(fields, TrainConfig(method="fa")), "fa", "does not apply to fields")
    rows = Problem.from_spec(Dataset("rows", X[:, :, 0, 0], Y[:, :, 0, 0], REP_IN, REP_OUT,
                                     ["O(2)"], standard_split(6)))
    fails(lambda: build_model(rows, TrainConfig(method="relaxed")), "relaxed", "for fields")
    fails(lambda: TrainConfig(kernel_size=4).resolved(), "kernel_size", "odd")


def discover(out: Path, *args: str) -> int:
    return main(["discover", *args, "--out", str(out)])


def on_file(path: Path, *, rep_in: str = REP_IN, rep_out: str = REP_OUT,
            groups: str = ", ".join(GROUPS)) -> list[str]:
    return ["--data", str(path), "--rep-in", rep_in, "--rep-out", rep_out, "--groups", groups]


@pytest.fixture(scope="module")
def field_run(tmp_path_factory, npz_file) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    assert discover(out, *on_file(npz_file), *TINY) == 0
    return out


def test_discover_on_a_field_file_writes_a_run_with_the_report(field_run):
    report = json.loads((field_run / "report.json").read_text())
    assert tuple(report) == REPORT_KEYS
    assert [g["name"] for g in report["groups"]] == GROUPS
    assert all(0 <= g["model_error"] <= 1 for g in report["groups"])
    assert sorted(report["ranking"]) == sorted(GROUPS[1:])
    assert report["test_sets"]["test"]["rmse"] == pytest.approx(report["test_mse"] ** 0.5)
    assert (field_run / "levels.png").stat().st_size > 0
    config = json.loads((field_run / "config.json").read_text())
    assert config["fields"] is True and config["train"]["ch"] == 8


def test_predict_round_trip_on_fields(tmp_path, capsys, field_run, npz_file):
    out = tmp_path / "pred.npz"
    assert main(["predict", "--model", str(field_run), "--data", str(npz_file),
                 "--out", str(out)]) == 0
    X = np.load(npz_file)["X"]
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["Y"], load_run(field_run).predict(X))
    assert "fields of shape [2, 8, 8]" in capsys.readouterr().out


@pytest.mark.parametrize("arrays, out, words", [
    (dict(X=np.zeros((4, 3))), "p.npz", ["expects fields [N, 3, H, W]", "(4, 3)"]),
    (dict(X=np.zeros((4, 2, 8, 8))), "p.npz", ["expects 3 input channels", "X has 2"]),
    (dict(X=np.zeros((4, 3, 8, 8))), "p.csv", ["fields can be saved as .npz only"]),
])
def test_predict_errors_on_fields(tmp_path, capsys, field_run, arrays, out, words):
    np.savez(tmp_path / "in.npz", **arrays)
    assert main(["predict", "--model", str(field_run), "--data", str(tmp_path / "in.npz"),
                 "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


X_OK, Y_OK = field_data(n=12)


@pytest.mark.parametrize("arrays, flags, words", [
    (dict(X=X_OK, Y=Y_OK), dict(rep_in="2*Vector"), ["rep_in '2*Vector' has size 4",
                                                     "X has 3 channels"]),
    (dict(X=X_OK, Y=Y_OK), dict(rep_out="T(2)"), ["rep_out 'T(2)' has size 4", "Y has 2"]),
    (dict(X=X_OK, Y=Y_OK[:, :, 0, 0]), {}, ["X is 4-D fields", "Y is 2-D"]),
    (dict(X=X_OK, Y=Y_OK[..., :4, :4]), {}, ["8x8 grid", "4x4"]),
    (dict(X=X_OK[..., :6], Y=Y_OK[..., :6]), {}, ["square grid", "8x6"]),
    (dict(X=X_OK[:, :, 0], Y=Y_OK), {}, ["'X' must be 1-D, 2-D or 4-D", "(12, 3, 8)"]),
    (dict(X=X_OK, Y=Y_OK), dict(groups="O(3), O2xy"), ["square lattice", "O(3)"]),
    (dict(X=np.where(np.arange(8) == 3, np.nan, X_OK), Y=Y_OK), {},
     ["NaN", "channel 0", "first at row 0"]),
])
def test_field_files_with_wrong_shapes_fail_in_one_line_with_exit_2(tmp_path, capsys, arrays,
                                                                    flags, words):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    assert discover(tmp_path / "run", *on_file(path, **flags), *TINY) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not (tmp_path / "run").exists()


def test_estimator_fits_fields_reports_and_round_trips(tmp_path):
    X, Y = field_data(n=36)
    model = SymmetryRegressor(REP_IN, REP_OUT, GROUPS, epochs=2, ch=8, layers=1, batch_size=8)
    model.fit(X, Y, split=standard_split(len(X)))
    assert tuple(model.report_) == REPORT_KEYS and model.n_features_in_ == 3
    pred = model.predict(X[:5])
    assert pred.shape == (5, 2, 8, 8) and model.predict(X[:0]).shape == (0, 2, 8, 8)
    assert np.isfinite(model.score(X, Y))
    model.save(tmp_path / "run")
    np.testing.assert_array_equal(SymmetryRegressor.load(tmp_path / "run").predict(X[:5]), pred)
    fails(lambda: model.predict(X[:, :2]), "X has 2 channels", "expecting 3 channels")
    fails(lambda: model.predict(X[:, :, 0, 0]), "fitted on fields")
    plain = SymmetryRegressor(epochs=1, ch=8, layers=1).fit(X, Y)  # no reps: scalar channels
    assert [g["name"] for g in plain.report_["groups"]] == ["Trivial(2)"]


@needs_phiflow
def test_discover_on_the_smoke_dataset_reports_both_test_sets(tmp_path, capsys, module_cache):
    smoke = ["--dataset", "smoke", "--variant", "rotation", "--grid", "8", "--steps", "8",
             "--k", "2"]
    assert discover(tmp_path / "run", *smoke, *TINY) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert list(report["test_sets"]) == ["future", "domain"]
    assert report["test_sets"]["future"]["mse"] == pytest.approx(report["test_mse"])
    truth = {g["name"]: g["true_error"] for g in report["groups"]}
    assert truth["FlipX"] < 1e-12 < 1e-3 < truth["C4"]  # the simulator's own errors
    assert "test sets: future RMSE" in capsys.readouterr().out
    # the same data as a file from `data smoke`: its test_set array names both test sets
    assert main(["data", "smoke", *smoke[2:], "--out", str(tmp_path / "smoke.npz")]) == 0
    assert discover(tmp_path / "file", *on_file(tmp_path / "smoke.npz", rep_in="2*Vector",
                                                 groups="D4, C4, C2, D2, FlipX, FlipY"),
                    *TINY) == 0
    from_file = json.loads((tmp_path / "file" / "report.json").read_text())
    assert {k: v["rows"] for k, v in from_file["test_sets"].items()} == {
        k: v["rows"] for k, v in report["test_sets"].items()}
    assert discover(tmp_path / "bad", *smoke[:4], "--level", "2", *TINY) == 2
    assert "level applies to the levels variant only" in capsys.readouterr().err
    assert discover(tmp_path / "bad", *smoke[:2], "--grid", "4", *TINY) == 2
    assert "--grid" in capsys.readouterr().err


def test_field_defaults_apply_only_to_fields(npz_file):
    from softequiv.cli import _train_config, build_parser
    from softequiv.data.registry import dataset_from_file

    args = build_parser().parse_args(["discover", *on_file(npz_file), "--out", "x"])
    fields = dataset_from_file(npz_file, rep_in=REP_IN, rep_out=REP_OUT, groups=GROUPS)
    config = _train_config(args, fields)
    assert (config.epochs, config.ch, config.batch_size) == (60, 32, 16)
    rows = Dataset("rows", np.zeros((3, 3)), np.zeros((3, 2)), REP_IN, REP_OUT, ["O(2)"],
                   np.arange(3))
    assert (_train_config(args, rows).epochs, _train_config(args, rows).ch) == (400, 128)
    from softequiv.train import default_settings  # many fields: about 3000 steps, >= 10 epochs

    assert [default_settings(True, n)["epochs"] for n in (156, 1600, 10**6)] == [60, 30, 10]
    assert default_settings(True, 1600, batch_size=32)["epochs"] == 60
    with pytest.raises(InputError):
        _train_config(build_parser().parse_args(["discover", "--kernel-size", "4",
                                                 "--out", "x"]), fields).resolved()


def test_each_refit_is_averaged_over_the_group_it_generates_with_each_candidate():
    # On fields a candidate's refit averaged over the finite group it generates with another
    # is one more retrained model, imposing every candidate that group contains.
    from softequiv.train import Refit, Training, parameters_copy

    groups = ["D4", "C4", "C2", "FlipX", "FlipY"]
    X, Y = field_data(n=24)
    problem = Problem.build(field_dataset(X, Y, groups=groups))
    run = Training(problem, TrainConfig(method="per", epochs=1, ch=8, layers=1,
                                        batch_size=8, progress=False).resolved())
    state = parameters_copy(run.model)
    refits = {k: Refit(k, state, None, 0, []) for k in (None, *range(len(groups)))}
    found = {a.name: a for a in run.refits_averaged(refits)}
    every = frozenset(range(5))
    d2 = frozenset({2, 3, 4})
    assert {name: set(a.imposes) for name, a in found.items()} == {
        "C4 averaged over D4": every, "C2 averaged over D4": every,
        "C2 averaged over C4": {1, 2}, "C2 averaged over FlipX": d2,
        "FlipX averaged over D4": every, "FlipX averaged over C2": d2,
        "FlipY averaged over D4": every, "FlipY averaged over C2": d2}
    # one model averaged over the same group (D2, D4) is one function, whatever the names
    torch.testing.assert_close(found["C2 averaged over FlipX"].errors,
                               found["FlipX averaged over C2"].errors)
    torch.testing.assert_close(found["C4 averaged over D4"].errors,
                               found["FlipY averaged over D4"].errors)
    assert not Training(Problem.build(Dataset("rows", X[:, :, 0, 0], Y[:, :, 0, 0], REP_IN,
                                              REP_OUT, ["O(2)", "SO(2)"], standard_split(24))),
                        TrainConfig(method="per", epochs=1, ch=8, progress=False).resolved()
                        ).refits_averaged(refits)
