"""The scikit-learn style SymmetryRegressor (softequiv.estimator)."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
from helpers import fails

import softequiv
from softequiv import SymmetryRegressor
from softequiv.data.synthetic import inertia
from softequiv.report import REPORT_KEYS

REP_IN, REP_OUT, GROUPS = "5*Scalar + 5*Vector", "T(2)", "O(3), O2xy, O2yz, O2xz"
TINY = dict(epochs=5, ch=32, batch_size=64)




@pytest.fixture(scope="module")
def data():
    return inertia(n=(60, 30, 30))


@pytest.fixture(scope="module")
def fitted(data):
    return SymmetryRegressor(REP_IN, REP_OUT, GROUPS, **TINY).fit(data.X, data.Y)


# ----------------------------------------------------------------------------- parameters


def test_exported_from_package():
    assert softequiv.SymmetryRegressor is SymmetryRegressor
    assert "SymmetryRegressor" in softequiv.__all__


def test_init_only_stores_parameters():
    est = SymmetryRegressor("not a rep", "T(2)", "NoSuchGroup", epochs=-3)  # checked in fit
    assert est.rep_in == "not a rep" and est.groups == "NoSuchGroup" and est.epochs == -3
    assert not [name for name in vars(est) if name.endswith("_")]


def test_get_params_round_trip_and_clone():
    est = SymmetryRegressor(REP_IN, REP_OUT, ["O(3)", "O2xy"], epochs=7, lr=1e-2, t_adj=3)
    params = est.get_params()
    names = [n for n in inspect.signature(SymmetryRegressor.__init__).parameters if n != "self"]
    assert sorted(params) == sorted(names)
    assert params["groups"] == ["O(3)", "O2xy"] and params["epochs"] == 7
    assert params["t_adj"] == 3 and params["method"] == "per" and params["progress"] is False
    clone = SymmetryRegressor(**params)
    assert clone.get_params() == params
    assert clone.get_params(deep=False) == params
    assert "epochs=7" in repr(est) and "ch=" not in repr(est)


def test_set_params_returns_self_and_rejects_unknown():
    est = SymmetryRegressor(REP_IN, REP_OUT, GROUPS)
    assert est.set_params(epochs=11, ch=16, groups="O(3), O2yz") is est
    assert est.epochs == 11 and est.ch == 16 and est.groups == "O(3), O2yz"
    message = fails(lambda: est.set_params(epochs=1, n_epochs=3), "n_epochs", kind=ValueError)
    assert "epochs" in message  # lists the valid names
    fails(lambda: est.set_params(lambda_=1.0), "lambda_", kind=ValueError)


# ----------------------------------------------------------------------------- fit / predict


def test_fit_sets_report_and_attributes(fitted, data):
    assert fitted.n_features_in_ == 20 and fitted.n_outputs_ == 9
    assert tuple(fitted.report_) == REPORT_KEYS
    assert fitted.report_["dataset"] == "array" and fitted.report_["epochs"] == TINY["epochs"]
    assert [g["name"] for g in fitted.report_["groups"]] == ["O(3)", "O2xy", "O2yz", "O2xz"]
    assert fitted.result_.problem.dataset.X.shape == data.X.shape
    assert fitted.model_ is fitted.result_.model
    assert not hasattr(fitted, "feature_names_in_")  # only set for DataFrames (sklearn)
    json.dumps(fitted.report_)  # the same plain dict as report.json


def test_predict_shape_units_and_score(fitted, data):
    pred = fitted.predict(data.X[:17])
    assert pred.shape == (17, 9) and pred.dtype == np.float64
    assert np.allclose(pred, fitted.result_.predict(data.X[:17]))
    assert fitted.predict(data.X[:0]).shape == (0, 9)
    assert np.array_equal(fitted.predict(data.X[:5].tolist()), fitted.predict(data.X[:5]))
    score = fitted.score(data.X, data.Y)
    assert np.isfinite(score) and score <= 1.0


def test_score_is_r2_averaged_over_columns(data):
    class Fixed(SymmetryRegressor):  # predicts a given array
        def predict(self, X):
            return self._out

    fixed = Fixed(REP_IN, REP_OUT, GROUPS)
    Y = np.random.default_rng(0).standard_normal((50, 9))
    fixed._out = Y
    assert fixed.score(data.X[:50], Y) == pytest.approx(1.0)
    fixed._out = np.broadcast_to(Y.mean(0), Y.shape)
    assert fixed.score(data.X[:50], Y) == pytest.approx(0.0, abs=1e-12)
    fixed._out = Y + 1.0
    expected = np.mean(1 - 50 / ((Y - Y.mean(0)) ** 2).sum(0))
    assert fixed.score(data.X[:50], Y) == pytest.approx(expected)
    # a constant column (inertia about z has Y[:, 2::3] == 0) counts 1 when predicted
    # exactly and 0 otherwise, as in scikit-learn's r2_score
    assert np.all(data.Y[:, 2::3] == 0)
    fixed._out = np.broadcast_to(data.Y.mean(0), data.Y.shape)
    assert fixed.score(data.X, data.Y) == pytest.approx(3 / 9)


def test_save_and_load_give_identical_predictions(fitted, data, tmp_path):
    out = fitted.save(tmp_path / "run")
    for name in ("report.json", "levels.png", "model.safetensors", "config.json"):
        assert (out / name).is_file()
    assert json.loads((out / "report.json").read_text()) == json.loads(
        json.dumps(fitted.report_))
    loaded = SymmetryRegressor.load(out)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.n_features_in_ == 20 and loaded.result_ is None
    assert loaded.report_["exact"] == fitted.report_["exact"]
    assert np.array_equal(loaded.predict(data.X), fitted.predict(data.X))
    assert loaded.score(data.X, data.Y) == fitted.score(data.X, data.Y)
    fails(lambda: fitted.save(out), "not empty")  # never silently replaced
    fitted.save(out, overwrite=True)
    fails(lambda: loaded.save(tmp_path / "again"), "loaded")


def test_given_split_is_used(data):
    split = np.array(["train"] * 60 + ["valid"] * 30 + ["test"] * 30)
    est = SymmetryRegressor(REP_IN, REP_OUT, "O(3), O2xy", epochs=1, ch=16)
    est.fit(data.X, data.Y, split=split)
    assert np.array_equal(est.result_.problem.dataset.split, np.repeat([0, 1, 2], [60, 30, 30]))
    fails(lambda: est.fit(data.X, data.Y, split=np.zeros(120, int)), "no valid/test rows")


# ----------------------------------------------------------------------------- errors


def test_predict_before_fit():
    est = SymmetryRegressor(REP_IN, REP_OUT, GROUPS)
    fails(lambda: est.predict(np.zeros((2, 20))), "not fitted")
    fails(lambda: est.score(np.zeros((2, 20)), np.zeros((2, 9))), "not fitted")
    fails(lambda: est.save("unused"), "not fitted")


def test_predict_wrong_width_shape_and_values(fitted):
    fails(lambda: fitted.predict(np.zeros((4, 19))), "X has 19 features",
          "expecting 20 features", "5*Scalar + 5*Vector")
    fails(lambda: fitted.predict(np.zeros(20)), "2-D", "Reshape your data")
    fails(lambda: fitted.predict(np.array([["a"] * 20])), "not a number", "'a'")
    X = np.zeros((2, 20), dtype=object)
    X[0, 0] = {"not": "a number"}
    fails(lambda: fitted.predict(X), "not a number", kind=TypeError)
    fails(lambda: fitted.predict(np.zeros((2, 20), complex)), "Complex data not supported")
    X = np.zeros((4, 20))
    X[2, 3] = np.inf
    fails(lambda: fitted.predict(X), "NaN, inf", "row 2")
    fails(lambda: fitted.score(np.zeros((4, 20)), np.zeros((4, 8))), "shape")


def test_fit_errors(data):
    est = SymmetryRegressor(REP_IN, REP_OUT, GROUPS, **TINY)
    fails(lambda: est.fit(data.X[:, :19], data.Y), "rep_in", "size 20", "19 columns")
    fails(lambda: est.fit(data.X, data.Y[:, :8]), "rep_out", "size 9", "8 columns")
    fails(lambda: est.fit(data.X, data.Y[:-1]), "120 rows", "119")
    Y = data.Y.copy()
    Y[7, 4] = np.nan
    fails(lambda: est.fit(data.X, Y), "NaN", "column 4", "row 7")
    fails(lambda: est.fit(data.X[:2], data.Y[:2]), "at least 3")
    fails(lambda: SymmetryRegressor(REP_IN, REP_OUT, "O(3), Foo").fit(data.X, data.Y),
          "unknown group 'Foo'")
    fails(lambda: SymmetryRegressor(REP_IN, "Tensor(2)", GROUPS).fit(data.X, data.Y),
          "unknown rep 'Tensor'")
    fails(lambda: SymmetryRegressor(REP_IN, REP_OUT, "O(3), SE(3)").fit(data.X, data.Y),
          "same dimension")
    fails(lambda: est.set_params(epochs=0).fit(data.X, data.Y), "epochs")
    assert not hasattr(est, "report_")  # nothing half-fitted left behind


@pytest.mark.parametrize("params, words", [
    (dict(device="gpu"), ["unknown device 'gpu'"]),
    (dict(epochs=2.5), ["epochs", "integer"]),
    (dict(lr=-1.0), ["lr", "> 0"]),
    (dict(t_adj=50), ["t_adj", "in [1, 5]"]),
    (dict(p=float("nan")), ["p", "finite"]),
    (dict(lambda_init=-1.0), ["lambda_init", ">= 0"]),
    (dict(threads=0), ["threads", ">= 1"]),
    (dict(seed=-1), ["seed"]),
    (dict(snap="yes"), ["snap", "True or False"]),
    (dict(rule="best"), ["rule", "one of"]),
])
def test_fit_checks_every_setting_first(data, params, words):
    est = SymmetryRegressor(REP_IN, REP_OUT, GROUPS, **(TINY | params))
    fails(lambda: est.fit(data.X, data.Y), *words)
    assert not hasattr(est, "report_")


def test_cuda_device_on_a_machine_without_cuda(data, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    est = SymmetryRegressor(REP_IN, REP_OUT, GROUPS, device="cuda", **TINY)
    fails(lambda: est.fit(data.X, data.Y), "device 'cuda' is not available", "use cpu")


# ----------------------------------------------------------------------------- DataFrames


def test_dataframe_columns_are_matched_by_name(data):
    pd = pytest.importorskip("pandas")
    names = [f"m{i}" for i in range(5)] + [f"r{i}{a}" for i in range(5) for a in "xyz"]
    targets = [f"I{i}{j}" for i in range(3) for j in range(3)]
    X, Y = pd.DataFrame(data.X, columns=names), pd.DataFrame(data.Y, columns=targets)
    est = SymmetryRegressor(REP_IN, REP_OUT, "O(3), O2xy", epochs=2, ch=16).fit(X, Y)
    assert list(est.feature_names_in_) == names and est.feature_names_in_.dtype == object
    expected = est.predict(data.X)
    shuffled = names[::-1]
    assert np.array_equal(est.predict(X[shuffled]), expected)  # reordered by name
    assert est.score(X[shuffled], Y[targets[::-1]]) == pytest.approx(est.score(data.X, data.Y))
    renamed = X.rename(columns={"m3": "mass3"})
    fails(lambda: est.predict(renamed), "columns do not match", "missing 'm3'",
          "unexpected 'mass3'")
    fails(lambda: est.predict(X.iloc[:, :19]), "missing 'r4z'")
    refit = SymmetryRegressor(REP_IN, REP_OUT, "O(3), O2xy", epochs=1, ch=16)
    refit.fit(data.X, data.Y)  # arrays: no names, DataFrames are then used by position
    assert not hasattr(refit, "feature_names_in_")
    assert np.array_equal(refit.predict(X[shuffled]), refit.predict(X[shuffled].to_numpy()))


def test_one_dimensional_y_gives_one_dimensional_predictions(data, tmp_path):
    est = SymmetryRegressor(REP_IN, "Scalar", "O(3), O2xy", epochs=2, ch=16)
    est.fit(data.X, data.Y[:, 0])
    assert est.predict(data.X[:7]).shape == (7,) and est.predict(data.X[:0]).shape == (0,)
    assert np.isfinite(est.score(data.X, data.Y[:, 0]))
    loaded = SymmetryRegressor.load(est.save(tmp_path / "run"))
    assert np.array_equal(loaded.predict(data.X[:7]), est.predict(data.X[:7]))


# ----------------------------------------------------------------------------- scikit-learn


def test_scikit_learn_tools(data):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone, is_regressor
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert sklearn.__version__ and is_regressor(SymmetryRegressor())
    est = SymmetryRegressor(REP_IN, REP_OUT, GROUPS, epochs=2, ch=16)
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    scores = cross_val_score(est, data.X, data.Y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    search = GridSearchCV(est, {"lambda_init": [1.0, 100.0]}, cv=2).fit(data.X, data.Y)
    assert search.best_params_["lambda_init"] in (1.0, 100.0)
    assert search.predict(data.X[:4]).shape == (4, 9)
    # Scaling each column on its own breaks tensor symmetries, so in a pipeline with
    # StandardScaler the columns are plain scalars (rep_in/rep_out left at None).
    pipe = make_pipeline(StandardScaler(), SymmetryRegressor(epochs=2, ch=8))
    pipe.fit(data.X, data.Y[:, 0])
    assert pipe.predict(data.X[:5]).shape == (5,)
    assert np.isfinite(pipe.score(data.X, data.Y[:, 0]))


def test_not_fitted_error_is_scikit_learns():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    est = SymmetryRegressor()
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((2, 3)))


def test_importable_and_usable_without_scikit_learn(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import numpy as np\n"
        "from softequiv import SymmetryRegressor\n"
        "X = np.random.default_rng(0).normal(size=(30, 3)); y = X.sum(1)\n"
        "est = SymmetryRegressor(epochs=1, ch=4).set_params(layers=1)\n"
        "assert est.get_params()['layers'] == 1 and 'layers=1' in repr(est)\n"
        "print(est.fit(X, y).predict(X[:2]).shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(2,)"


def test_the_no_symmetry_default_uses_a_small_hidden_rep():
    from softequiv.reps import uniform_rep
    from softequiv.spec import parse_group

    rep = uniform_rep(128, parse_group("Trivial(1)"))  # T(r) on R^1 is one number
    assert rep.size(1) == 128 and len(rep.summands) == 3
