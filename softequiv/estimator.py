"""A scikit-learn style estimator around :func:`softequiv.discover.discover`.

``SymmetryRegressor`` follows scikit-learn's conventions (``__init__`` only stores its
parameters; ``get_params`` / ``set_params``; ``fit`` returns ``self``; fitted state in
attributes ending in ``_``; ``score`` is R^2) without importing scikit-learn, so it works
with ``sklearn.base.clone``, ``GridSearchCV`` and pipelines when scikit-learn is present::

    from softequiv import SymmetryRegressor
    from softequiv.data.synthetic import inertia

    data = inertia()
    model = SymmetryRegressor("5*Scalar + 5*Vector", "T(2)", "O(3), O2xy, O2yz, O2xz")
    model.fit(data.X, data.Y)
    model.report_["exact"], model.report_["ranking"]      # the discovered symmetries
    model.predict(data.X[:5])
    model.save("run/")                                     # the CLI's run directory
    SymmetryRegressor.load("run/").predict(data.X[:5])

Every problem with the input raises :class:`~softequiv.errors.InputError` (a
``ValueError``) with a one-line message.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softequiv.errors import InputError

__all__ = ["SymmetryRegressor"]

_TRAIN_KEYS = ("method", "epochs", "lr", "batch_size", "ch", "layers", "lambda_init", "t_adj",
               "p", "rule", "penalty", "snap", "seed", "device", "threads", "progress")


class SymmetryRegressor:
    """Fit a soft-equivariant network with one regularizer per candidate group, report
    which candidate symmetries the data holds, and predict.

    Parameters
    ----------
    rep_in, rep_out : str
        Representations of an input row and a target row, e.g. ``"5*Scalar + 5*Vector"``
        and ``"T(2)"`` (summands in order, tensors flattened row-major).
    groups : str or list of str
        Candidate groups, the ambient group first: ``"O(3), O2xy, O2yz, O2xz"`` or a list.
    method, epochs, lr, batch_size, ch, layers, lambda_init, t_adj, p, rule, penalty, snap,
    seed, device, threads
        Training settings, as in :class:`softequiv.train.TrainConfig` and the CLI's
        ``discover`` options (``t_adj=None`` means ``epochs // 4``).
    progress : bool
        Show a progress bar on stderr while fitting.

    Attributes (after ``fit``)
    --------------------------
    report_ : dict
        The report, the same dict the CLI writes as ``report.json``: per-group
        strengths, regularizers, equivariance errors and verdicts (``holds``,
        ``broken`` or ``undetermined``, with their evidence), the ``exact`` symmetries
        (those that hold), the ``ranking`` of the other candidates and ``warnings``.
    result_ : softequiv.train.TrainResult
        The trained model, normalization, config and training history (``None`` on an
        estimator made by :meth:`load`).
    model_ : torch.nn.Module
        The trained network (inputs and outputs normalized; use :meth:`predict`).
    n_features_in_, n_outputs_ : int
        Widths of X and Y.
    feature_names_in_ : list of str
        Column names of X when it was a DataFrame, else ``x0, x1, ...``.
    """

    def __init__(self, rep_in: str, rep_out: str, groups: str | list[str], *,
                 method: str = "per", epochs: int = 400, lr: float = 3e-3,
                 batch_size: int = 500, ch: int = 128, layers: int = 3,
                 lambda_init: float = 100.0, t_adj: int | None = None, p: float = 2.0,
                 rule: str = "error", penalty: str = "decoupled", snap: bool = True,
                 seed: int = 0, device: str = "auto", threads: int | None = None,
                 progress: bool = False):
        self.rep_in = rep_in
        self.rep_out = rep_out
        self.groups = groups
        self.method = method
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.ch = ch
        self.layers = layers
        self.lambda_init = lambda_init
        self.t_adj = t_adj
        self.p = p
        self.rule = rule
        self.penalty = penalty
        self.snap = snap
        self.seed = seed
        self.device = device
        self.threads = threads
        self.progress = progress

    # ------------------------------------------------------------------ parameters

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters by name (``deep`` is accepted for compatibility;
        no parameter is itself an estimator)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> SymmetryRegressor:
        """Set constructor parameters; an unknown name raises InputError (a ValueError)."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise InputError(f"invalid parameter {name!r} for SymmetryRegressor; "
                                 f"valid parameters: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in
                    inspect.signature(type(self).__init__).parameters.items()}
        shown = [repr(self.rep_in), repr(self.rep_out), repr(self.groups)]
        for name in self._param_names()[3:]:
            value = getattr(self, name)
            if value != defaults[name]:
                shown.append(f"{name}={value!r}")
        return f"SymmetryRegressor({', '.join(shown)})"

    # ------------------------------------------------------------------ fitting

    def _train_config(self):
        from softequiv.train import TrainConfig

        return TrainConfig(**{key: getattr(self, key) for key in _TRAIN_KEYS})

    def fit(self, X: Any, Y: Any, split: Any = None) -> SymmetryRegressor:
        """Train on inputs ``X [N, size(rep_in)]`` and targets ``Y [N, size(rep_out)]``
        (a 1-D ``Y`` is one column) and build the report.

        ``split`` gives each row's part (0/1/2 or train/valid/test); without it rows are
        split 60/20/20 at random with ``seed``. Training uses the train rows, the
        validation rows select the epoch, and the report's errors use the test rows.
        """
        from softequiv.data.base import Dataset
        from softequiv.data.files import split_rows, validate_arrays
        from softequiv.discover import discover
        from softequiv.spec import parse_groups, parse_rep

        group_list = parse_groups(self.groups)
        rin, rout = parse_rep(self.rep_in), parse_rep(self.rep_out)
        x_names, y_names = _column_names(X, "x"), _column_names(Y, "y")
        X, Y = _as_array(X), _as_array(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        d = group_list[0].d
        validate_arrays(X, Y, size_in=rin.size(d), size_out=rout.size(d),
                        rep_in_name=self.rep_in, rep_out_name=self.rep_out,
                        x_names=x_names, y_names=y_names)
        X, Y = X.astype(np.float64), Y.astype(np.float64)
        labels = split_rows(len(X), None if split is None else np.asarray(split), seed=self.seed)
        x_names = x_names or [f"x{j}" for j in range(X.shape[1])]
        y_names = y_names or [f"y{j}" for j in range(Y.shape[1])]
        dataset = Dataset(name="array", X=X, Y=Y, rep_in=self.rep_in, rep_out=self.rep_out,
                          groups=[g.name for g in group_list], split=labels,
                          info={"x_names": x_names, "y_names": y_names})
        self._discovery = discover(dataset, self._train_config())
        self.result_ = self._discovery.result
        self.report_ = self._discovery.report
        self.model_ = self.result_.model
        self.n_features_in_ = X.shape[1]
        self.n_outputs_ = Y.shape[1]
        self.feature_names_in_ = x_names
        self._predictor = self.result_
        return self

    # ------------------------------------------------------------------ using

    def _check_fitted(self) -> None:
        if not hasattr(self, "_predictor"):
            raise InputError("this SymmetryRegressor is not fitted yet; call fit(X, Y) first")

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``[N, size(rep_out)]`` (float64) in the targets' original units."""
        from softequiv.data.files import validate_inputs

        self._check_fitted()
        X = _as_array(X)
        validate_inputs(X, size_in=self.n_features_in_, rep_in_name=self.rep_in, min_rows=0)
        X = X.astype(np.float64)
        if len(X) == 0:
            return np.zeros((0, self.n_outputs_))
        return np.asarray(self._predictor.predict(X), dtype=np.float64)

    def score(self, X: Any, Y: Any) -> float:
        """Coefficient of determination R^2 of ``predict(X)`` against ``Y``, averaged
        uniformly over the output columns (scikit-learn's ``r2_score`` default: 1 is
        perfect, 0 is as good as predicting each column's mean; a constant column
        counts 1 when predicted exactly, else 0)."""
        pred = self.predict(X)
        Y = _as_array(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        if Y.shape != pred.shape:
            raise InputError(f"Y has shape {Y.shape} but the predictions have {pred.shape}")
        Y = Y.astype(np.float64)
        if not np.isfinite(Y).all():
            raise InputError("Y has NaN or inf values")
        residual = ((Y - pred) ** 2).sum(axis=0)
        total = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        scores = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0),
                          np.where(residual == 0, 1.0, 0.0))
        return float(scores.mean())

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write a run directory like the CLI's ``discover --out`` (report.json,
        levels.png, model.safetensors, config.json); ``softequiv predict --model`` and
        :meth:`load` read it. A non-empty directory needs ``overwrite=True``."""
        from softequiv.discover import prepare_output, save_run

        self._check_fitted()
        if not hasattr(self, "_discovery"):
            raise InputError("this SymmetryRegressor was loaded from a run directory; "
                             "copy that directory instead of saving it again")
        out = prepare_output(path, overwrite=overwrite)
        params = self.get_params()
        return save_run(self._discovery, out, extra_config={"estimator": params})

    @classmethod
    def load(cls, path: str | Path) -> SymmetryRegressor:
        """A regressor from a run directory (made by :meth:`save` or the CLI's
        ``discover``) whose ``predict``, ``score`` and ``report_`` work; ``result_`` is
        None (the training history is in the directory's history.json). The model is
        loaded on the CPU."""
        from softequiv.discover import load_run

        saved = load_run(path)
        config = saved.config
        params = config.get("estimator")
        if params is None:
            train = config["train"]
            params = {"rep_in": config["rep_in"], "rep_out": config["rep_out"],
                      "groups": config["groups"],
                      **{key: train[key] for key in _TRAIN_KEYS if key in train}}
        names = cls._param_names()
        est = cls(**{key: value for key, value in params.items() if key in names})
        report = Path(path) / "report.json"
        est.report_ = json.loads(report.read_text()) if report.is_file() else None
        est.result_ = None
        est.model_ = saved.model
        d = saved.problem.groups[0].d
        est.n_features_in_ = saved.problem.rep_in.size(d)
        est.n_outputs_ = saved.problem.rep_out.size(d)
        info = config.get("dataset_info") or {}
        est.feature_names_in_ = info.get("x_names") or [f"x{j}" for j in
                                                         range(est.n_features_in_)]
        est._predictor = saved
        return est


def _column_names(A: Any, prefix: str) -> list[str] | None:
    """Column names of a DataFrame (or a named Series), else None."""
    columns = getattr(A, "columns", None)
    if columns is not None:
        return [str(c) for c in columns]
    name = getattr(A, "name", None)
    if name is not None and getattr(A, "ndim", 0) == 1:
        return [str(name)]
    return None


def _as_array(A: Any) -> np.ndarray:
    """``A`` (array, list, DataFrame, tensor) as a numpy array, or InputError."""
    if isinstance(A, torch.Tensor):
        A = A.detach().cpu().numpy()
    try:
        return np.asarray(A)
    except (TypeError, ValueError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()
        raise InputError(f"not an array of numbers: {text[0] if text else exc}") from None
