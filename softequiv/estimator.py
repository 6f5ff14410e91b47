"""A scikit-learn regressor around :func:`softequiv.discover.discover`.

``SymmetryRegressor`` is a scikit-learn estimator when scikit-learn is installed
(``pip install 'softequiv[sklearn]'``): it derives from ``RegressorMixin`` and
``BaseEstimator``, declares its tags, and works with ``clone``, ``Pipeline``,
``cross_val_score``, ``GridSearchCV`` and ``is_regressor``. Without scikit-learn it is
still importable and keeps the same API (``get_params``/``set_params``, ``fit``,
``predict``, ``score``)::

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
``ValueError``; an entry that is not a number also counts as a ``TypeError``) with a
one-line message; predicting before ``fit`` raises scikit-learn's ``NotFittedError``
when scikit-learn is installed.

scikit-learn's ``check_estimator`` passes except for the checks in
:data:`SKLEARN_EXPECTED_FAILED_CHECKS`, each with the reason it cannot apply.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softequiv.errors import InputError, InputTypeError

__all__ = ["SKLEARN_EXPECTED_FAILED_CHECKS", "SymmetryRegressor"]

_TRAIN_KEYS = ("method", "epochs", "lr", "batch_size", "ch", "layers", "kernel_size",
               "lambda_init", "t_adj",
               "p", "rule", "penalty", "snap", "seed", "device", "threads", "progress")

DEFAULT_GROUP = "Trivial(1)"
"""The candidate list when ``groups`` is None: no symmetry (the inputs are all scalars)."""

FIELD_DEFAULT_GROUP = "Trivial(2)"
"""The same on fields (a group acting on the plane of the grid)."""

SKLEARN_EXPECTED_FAILED_CHECKS = {
    "check_methods_subset_invariance": (
        "the network computes in float32 (like the CLI and the report), so a row's "
        "prediction depends on the batch it is computed in by a few 1e-7 (BLAS kernel "
        "choice), above this check's absolute tolerance of 1e-7"),
}
"""scikit-learn ``check_estimator`` checks that SymmetryRegressor does not pass, with why;
pass it as ``expected_failed_checks`` (``tests/test_estimator.py`` does)."""

try:  # scikit-learn is optional: the estimator works (without its tags) when it is absent
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import RegressorMixin as _RegressorMixin
    from sklearn.exceptions import NotFittedError as _SklearnNotFitted
except ImportError:  # pragma: no cover - exercised by a subprocess test without sklearn
    _SklearnNotFitted = None

    class _RegressorMixin:
        """Stands in for scikit-learn's RegressorMixin when it is not installed."""

    class _BaseEstimator:
        """scikit-learn's parameter protocol, for when scikit-learn is not installed."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            signature = inspect.signature(cls.__init__)
            return [name for name in signature.parameters if name != "self"]

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            """The constructor's parameters by name (``deep`` is accepted for
            compatibility; no parameter is itself an estimator)."""
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params: Any) -> Any:
            """Set constructor parameters."""
            for name, value in params.items():
                setattr(self, name, value)
            return self

        def __repr__(self) -> str:
            defaults = {name: p.default for name, p in
                        inspect.signature(type(self).__init__).parameters.items()}
            shown = [f"{name}={getattr(self, name)!r}" for name in self._get_param_names()
                     if getattr(self, name) != defaults[name]]
            return f"{type(self).__name__}({', '.join(shown)})"


if _SklearnNotFitted is not None:
    class NotFittedError(InputError, _SklearnNotFitted):
        """Predicting before ``fit``: an InputError and scikit-learn's NotFittedError."""
else:  # pragma: no cover
    class NotFittedError(InputError, AttributeError):
        """Predicting before ``fit``."""


class SymmetryRegressor(_RegressorMixin, _BaseEstimator):
    """Fit a soft-equivariant network with one regularizer per candidate group, report
    which candidate symmetries the data holds, and predict.

    Parameters
    ----------
    rep_in, rep_out : str or None
        Representations of an input row and a target row, e.g. ``"5*Scalar + 5*Vector"``
        and ``"T(2)"`` (summands in order, tensors flattened row-major). None (default)
        makes every column a scalar, which no group acts on. On fields (4-D ``X`` and ``y``
        ``[N, C, H, W]``) they are the channels' field types, e.g. ``"Scalar + Vector"``
        with groups of the square lattice (``"D4, C4, FlipX"``), and the models are CNNs.
    groups : str, list of str or None
        Candidate groups, the ambient group first: ``"O(3), O2xy, O2yz, O2xz"`` or a list.
        None (default) means no candidates (``Trivial(1)``): a plain network.
    method, epochs, lr, batch_size, ch, layers, kernel_size, lambda_init, t_adj, p, rule,
    penalty, snap, seed, device, threads
        Training settings, as in :class:`softequiv.train.TrainConfig` and the CLI's
        ``discover`` options (``t_adj=None`` means ``epochs // 4``; ``epochs``,
        ``batch_size`` and ``ch`` left at None take 400, 500, 128 on vectors and
        :func:`softequiv.train.default_settings` on fields: 60, 16, 32, fewer epochs on
        many fields), checked by ``fit`` (a bad value or a device this machine lacks
        raises InputError). ``threads=None`` uses the CLI's default
        (:func:`softequiv.threads.default_threads`); either way ``fit`` restores torch's
        previous thread count when it returns.
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
        Widths of X and y.
    feature_names_in_ : ndarray of str
        Column names of X, only when X was a DataFrame with string column names. Later
        DataFrames given to ``predict``/``score`` are matched to them by name (reordered
        when needed); different names raise InputError.

    scikit-learn's ``check_estimator`` passes except for
    ``check_methods_subset_invariance`` (float32 predictions differ by a few 1e-7
    between batch sizes; :data:`SKLEARN_EXPECTED_FAILED_CHECKS` gives the reason). One
    convention differs on purpose: scikit-learn refuses a DataFrame whose columns are
    the fitted names in another order, softequiv reorders them (as the CLI matches a
    file's columns by name).
    """

    def __init__(self, rep_in: str | None = None, rep_out: str | None = None,
                 groups: str | list[str] | None = None, *,
                 method: str = "per", epochs: int | None = None, lr: float = 3e-3,
                 batch_size: int | None = None, ch: int | None = None, layers: int = 3,
                 kernel_size: int = 3,
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
        self.kernel_size = kernel_size
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

    def set_params(self, **params: Any) -> SymmetryRegressor:
        """Set constructor parameters; returns self. An unknown name raises InputError
        (a ValueError) listing the valid ones."""
        valid = self._get_param_names()
        unknown = [name for name in params if name not in valid]
        if unknown:
            raise InputError(f"invalid parameter {unknown[0]!r} for {type(self).__name__}; "
                             f"valid parameters: {', '.join(valid)}")
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_predictor")

    # ------------------------------------------------------------------ fitting

    def _train_config(self, fields: bool = False, train_rows: int | None = None):
        from softequiv.train import TrainConfig, default_settings

        settings = {key: getattr(self, key) for key in _TRAIN_KEYS}
        for key, default in default_settings(fields, train_rows, self.batch_size).items():
            if settings.get(key) is None:
                settings[key] = default
        return TrainConfig(**settings).resolved()

    def fit(self, X: Any, y: Any, split: Any = None) -> SymmetryRegressor:
        """Train on inputs ``X [N, size(rep_in)]`` and targets ``y [N, size(rep_out)]``
        (a 1-D ``y`` is one column, and predictions are then 1-D too), or on fields ``X``
        ``[N, size(rep_in), H, W]`` and ``y`` ``[N, size(rep_out), H, W]``, and build the
        report.

        ``split`` gives each row's part (0/1/2 or train/valid/test); without it rows are
        split 60/20/20 at random with ``seed``. Training uses the train rows, the
        validation rows select the epoch, and the report's errors use the test rows.
        Settings are checked before anything else (InputError).
        """
        from softequiv.data.base import Dataset
        from softequiv.data.files import split_rows, validate_arrays
        from softequiv.discover import discover
        from softequiv.spec import parse_groups, parse_rep
        from softequiv.threads import limited_threads

        config = self._train_config(fields=_is_field_array(X))
        if y is None:
            raise InputError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        feature_names = _feature_names(X)
        target_names = _feature_names(y)
        X, Y = _matrix(X, "X", fields=True), _matrix(y, "y", allow_1d=True, fields=True)
        y_is_1d = Y.ndim == 1
        if y_is_1d:
            Y = Y.reshape(-1, 1)
        if len(X) < 3:
            raise InputError(f"got {len(X)} sample{'s' if len(X) != 1 else ''} (rows); fit "
                             "needs at least 3: one each for train, valid and test")
        rep_in = self.rep_in or f"{X.shape[1]}*Scalar"
        rep_out = self.rep_out or f"{Y.shape[1]}*Scalar"
        fields = X.ndim == 4
        group_list = parse_groups(self.groups if self.groups is not None else
                                  FIELD_DEFAULT_GROUP if fields else DEFAULT_GROUP)
        rin, rout = parse_rep(rep_in), parse_rep(rep_out)
        d = group_list[0].d
        validate_arrays(X, Y, size_in=rin.size(d), size_out=rout.size(d),
                        rep_in_name=rep_in, rep_out_name=rep_out,
                        x_names=None if feature_names is None else list(feature_names),
                        y_names=None if target_names is None else list(target_names))
        labels = split_rows(len(X), None if split is None else np.asarray(split), seed=self.seed)
        if fields:  # the default epochs depend on the training fields
            config = self._train_config(fields=True, train_rows=int((labels == 0).sum()))
        x_names = ([str(n) for n in feature_names] if feature_names is not None
                   else [f"x{j}" for j in range(X.shape[1])])
        y_names = ([str(n) for n in target_names] if target_names is not None
                   else [f"y{j}" for j in range(Y.shape[1])])
        dataset = Dataset(name="array", X=X, Y=Y, rep_in=rep_in, rep_out=rep_out,
                          groups=[g.name for g in group_list], split=labels,
                          info={"x_names": x_names, "y_names": y_names})
        with limited_threads(self.threads):
            self._discovery = discover(dataset, config)
        self.result_ = self._discovery.result
        self.report_ = self._discovery.report
        self.model_ = self.result_.model
        self.n_features_in_ = X.shape[1]
        self.n_outputs_ = Y.shape[1]
        self._fields = fields
        self._set_names(feature_names, target_names, y_is_1d)
        self._predictor = self.result_
        return self

    def _set_names(self, feature_names: np.ndarray | None, target_names: np.ndarray | None,
                   y_is_1d: bool) -> None:
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._target_names = target_names
        self._y_is_1d = y_is_1d

    # ------------------------------------------------------------------ using

    def _check_fitted(self) -> None:
        if not hasattr(self, "_predictor"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call "
                                 "fit(X, y) first")

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (float64) in the targets' original units: ``[N, n_outputs_]``, or
        ``[N]`` when ``fit`` was given a 1-D ``y``. A DataFrame's columns are matched to
        ``feature_names_in_`` by name."""
        from softequiv.data.files import validate_inputs

        self._check_fitted()
        X = _by_name(X, getattr(self, "feature_names_in_", None), "X")
        X = _matrix(X, "X", fields=self._fields)
        if self._fields and X.ndim != 4:
            raise InputError(f"X has shape {X.shape}, but {type(self).__name__} was fitted on "
                             f"fields [N, {self.n_features_in_}, H, W]")
        if X.shape[1] != self.n_features_in_:
            unit = "channels" if self._fields else "features"
            raise InputError(f"X has {X.shape[1]} {unit}, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} {unit} as input "
                             f"(rep_in {self.rep_in or 'all scalars'!r})")
        validate_inputs(X, min_rows=0)
        if len(X) == 0:
            pred = np.zeros((0, self.n_outputs_, *X.shape[2:]))
        else:
            pred = np.asarray(self._predictor.predict(X), dtype=np.float64)
        return pred[:, 0] if self._y_is_1d else pred

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R^2 of ``predict(X)`` against ``y``, averaged
        uniformly over the output columns (scikit-learn's ``r2_score`` default: 1 is
        perfect, 0 is as good as predicting each column's mean; a constant column
        counts 1 when predicted exactly, else 0). ``sample_weight`` weights the rows.
        A DataFrame ``y`` is matched to the fitted target columns by name. On fields every
        value of a predicted field (channel and grid point) counts as an output column."""
        pred = self.predict(X)
        y = _by_name(y, getattr(self, "_target_names", None), "y")
        Y = _matrix(y, "y", allow_1d=True, fields=getattr(self, "_fields", False))
        pred, Y = pred.reshape(len(pred), -1), Y.reshape(len(Y), -1)
        if Y.shape != pred.shape:
            raise InputError(f"y has shape {Y.shape} but the predictions have {pred.shape}")
        if not np.isfinite(Y).all():
            raise InputError("y has NaN or inf values")
        weight = np.ones(len(Y)) if sample_weight is None else _matrix(
            sample_weight, "sample_weight", allow_1d=True).reshape(-1)
        if weight.shape != (len(Y),):
            raise InputError(f"sample_weight has {weight.size} entries for {len(Y)} rows")
        weight = weight[:, None]
        mean = (weight * Y).sum(axis=0) / max(weight.sum(), 1e-300)
        residual = (weight * (Y - pred) ** 2).sum(axis=0)
        total = (weight * (Y - mean) ** 2).sum(axis=0)
        scores = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0),
                          np.where(residual == 0, 1.0, 0.0))
        return float(scores.mean())

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write a run directory like the CLI's ``discover --out`` (report.json,
        levels.png, model.safetensors, config.json, history.json); ``softequiv predict
        --model`` and :meth:`load` read it. A non-empty directory needs
        ``overwrite=True``; it is replaced only once the new one is complete."""
        from softequiv.discover import prepare_output, save_run

        self._check_fitted()
        if not hasattr(self, "_discovery"):
            raise InputError("this SymmetryRegressor was loaded from a run directory; "
                             "copy that directory instead of saving it again")
        out = prepare_output(path, overwrite=overwrite)
        names = getattr(self, "feature_names_in_", None)
        state = {"feature_names_in": None if names is None else [str(n) for n in names],
                 "target_names": (None if self._target_names is None
                                  else [str(n) for n in self._target_names]),
                 "y_is_1d": self._y_is_1d}
        return save_run(self._discovery, out,
                        extra_config={"estimator": self.get_params(), "estimator_state": state})

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
        names = list(inspect.signature(cls.__init__).parameters)[1:]
        est = cls(**{key: value for key, value in params.items() if key in names})
        report = Path(path) / "report.json"
        est.report_ = json.loads(report.read_text()) if report.is_file() else None
        est.result_ = None
        est.model_ = saved.model
        d = saved.problem.groups[0].d
        est.n_features_in_ = saved.problem.rep_in.size(d)
        est.n_outputs_ = saved.problem.rep_out.size(d)
        est._fields = saved.problem.fields
        state = config.get("estimator_state")
        if state is None:  # a CLI run: named columns when the data was a CSV/Parquet file
            info = config.get("dataset_info") or {}
            from_table = Path(str(info.get("file", ""))).suffix.lower() in (".csv", ".parquet")
            state = {"feature_names_in": info.get("x_names") if from_table else None,
                     "target_names": info.get("y_names") if from_table else None,
                     "y_is_1d": False}
        est._set_names(_names_array(state.get("feature_names_in")),
                       _names_array(state.get("target_names")), bool(state.get("y_is_1d")))
        est._predictor = saved
        return est


def _names_array(names: list | None) -> np.ndarray | None:
    return None if names is None else np.asarray(names, dtype=object)


def _feature_names(A: Any) -> np.ndarray | None:
    """The column names of a DataFrame when they are all strings, else None."""
    columns = getattr(A, "columns", None)
    if columns is None or getattr(A, "ndim", 2) != 2:
        return None
    names = list(columns)
    if not names or not all(isinstance(n, str) for n in names):
        return None
    return np.asarray(names, dtype=object)


def _by_name(A: Any, fitted: np.ndarray | None, which: str) -> Any:
    """A DataFrame's columns reordered to ``fitted``; names that differ raise InputError.
    Anything else (or a model fitted without names) is used by position."""
    names = _feature_names(A)
    if names is None or fitted is None or list(names) == list(fitted):
        return A
    given, wanted = list(names), [str(n) for n in fitted]
    missing = [n for n in wanted if n not in given]
    unexpected = [n for n in given if n not in wanted]
    if missing or unexpected or len(set(given)) != len(given):
        parts = ([f"missing {', '.join(map(repr, missing[:5]))}"] if missing else []) + (
            [f"unexpected {', '.join(map(repr, unexpected[:5]))}"] if unexpected else [])
        detail = "; ".join(parts) or "repeated column names"
        raise InputError(f"{which}'s columns do not match the names seen in fit: {detail}")
    return A[wanted]


def _matrix(A: Any, which: str, *, allow_1d: bool = False, fields: bool = False) -> np.ndarray:
    """``A`` (array, list, DataFrame, tensor) as a float64 array (2-D, 1-D when
    ``allow_1d``, 4-D fields when ``fields``), with one-line errors for what cannot be
    one."""
    import scipy.sparse

    if scipy.sparse.issparse(A):
        raise InputError(f"{which} is a sparse matrix; sparse input is not supported, pass a "
                         "dense array (e.g. X.toarray())")
    if isinstance(A, torch.Tensor):
        A = A.detach().cpu().numpy()
    try:
        A = np.asarray(A)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{which} is not an array of numbers: {_first_line(exc)}") from None
    if A.dtype.kind == "c":
        raise InputError(f"Complex data not supported: {which} has dtype {A.dtype}")
    if A.ndim != 2 and not (allow_1d and A.ndim == 1) and not (fields and A.ndim == 4):
        shape = "1-D or 2-D" if allow_1d else "2-D [rows, columns]"
        shape += " (or 4-D fields [rows, channels, H, W])" if fields else ""
        hint = ("; Reshape your data with X.reshape(-1, 1) for one feature or "
                "X.reshape(1, -1) for one sample") if A.ndim == 1 else ""
        raise InputError(f"{which} must be {shape}, got shape {A.shape}{hint}")
    if A.ndim == 2 and A.shape[1] == 0:
        raise InputError(f"{which} has 0 feature(s) (shape={A.shape}) while a minimum of 1 "
                         "is required.")
    if A.dtype.kind not in "biuf":
        try:
            return A.astype(np.float64)
        except TypeError as exc:
            raise InputTypeError(f"{which} holds an entry that is not a number: "
                                 f"{_first_line(exc)}") from None
        except ValueError as exc:
            raise InputError(f"{which} holds an entry that is not a number: "
                             f"{_first_line(exc)}") from None
    return A.astype(np.float64, copy=False)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _is_field_array(X: object) -> bool:
    """Whether X looks like fields [N, C, H, W], before it is validated (a malformed X is
    reported by the validation, so it counts as rows here)."""
    try:
        return np.asarray(X).ndim == 4
    except (TypeError, ValueError):
        return False
