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
    assert list(params) == names
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
    assert fitted.feature_names_in_ == [f"x{j}" for j in range(20)]
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
    fails(lambda: fitted.predict(np.zeros((4, 19))), "size 20", "19 columns")
    fails(lambda: fitted.predict(np.zeros(20)), "2-D")
    fails(lambda: fitted.predict(np.array([["a"] * 20])), "real numbers")
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
