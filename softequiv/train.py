"""Training: build the model a method names, fit it with Adam and a cosine learning rate,
tune the per-group strengths, and select the best epoch on validation.

Loss (SPEC 3): mse + sum_j lambda_j R_j + wd/2 * sum ||theta||^2, where R_j is the
projection regularizer (``per``) or the sample-based penalty (``sample``).
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from softequiv import checks, verdicts
from softequiv.averaging import group_average
from softequiv.data.base import TEST, TRAIN, VALID, Dataset
from softequiv.data.files.validation import check_layout
from softequiv.data.normalize import RepScaler
from softequiv.errors import InputError
from softequiv.fields import D as FIELD_D
from softequiv.fields import check_grid
from softequiv.groups import Group, Union
from softequiv.nn import (
    CNN,
    EMLP,
    GCNN,
    MLP,
    RPP,
    RPPCNN,
    Augmented,
    FieldAugmented,
    FrameAveraging,
    MixedRPP,
    MixedRPPCNN,
    RelaxedGCNN,
    SoftCNN,
    SoftEMLP,
)
from softequiv.nn.cnn import check_field_groups
from softequiv.nn.layers import SoftLinear
from softequiv.nn.soft import SoftLayer
from softequiv.regularizers import equivariance_error, sample_penalty
from softequiv.reps import Rep
from softequiv.solver import Projector, StackedProjectors
from softequiv.spec import parse_groups, parse_rep
from softequiv.tuning import RULES, StrengthTuner

METHODS = ("per", "mlp", "emlp", "rpp", "mixed-rpp", "aug", "sample", "fa", "relaxed")
PENALTIES = ("decoupled", "coupled")

FIELD_DEFAULTS = {"epochs": 60, "ch": 32, "batch_size": 16, "refit_steps": 200}
"""Training defaults of ``discover`` and ``SymmetryRegressor`` on fields (TrainConfig's own
defaults are those for vectors): a CNN's epoch over fields costs thousands of times an
MLP's over vectors, so fewer epochs of smaller batches, and 32 hidden channels (four
regular fields of D4). The default smoke run takes about 160 CPU seconds with these
(README, "Fields on a square grid"). On many training fields the epochs shrink so that
training takes about ``FIELD_STEPS`` optimizer steps (:func:`default_settings`)."""

FIELD_STEPS = 3000
"""Optimizer steps the default epochs on fields stop at (at least ``FIELD_MIN_EPOCHS``):
the smoke plumes need 600-1200, and a large field set should not train for hours."""

FIELD_MIN_EPOCHS = 10


def default_settings(fields: bool, train_rows: int | None = None,
                     batch_size: int | None = None) -> dict:
    """The settings a caller leaves unset default to: TrainConfig's own on vectors; on
    fields ``FIELD_DEFAULTS``, with the epochs cut to about ``FIELD_STEPS`` steps of
    ``batch_size`` rows (the default one when None) when ``train_rows`` is given."""
    if not fields:
        defaults = TrainConfig()
        return {key: getattr(defaults, key) for key in FIELD_DEFAULTS}
    out = dict(FIELD_DEFAULTS)
    if train_rows:
        batch = batch_size if isinstance(batch_size, int) and batch_size > 0 else None
        steps = math.ceil(train_rows / (batch or out["batch_size"]))
        out["epochs"] = max(FIELD_MIN_EPOCHS, min(out["epochs"], math.ceil(FIELD_STEPS / steps)))
    return out


@dataclass
class TrainConfig:
    """Every knob of a run; saved as config.json next to the results.

    ``group`` picks the candidate (by index) that ``emlp``, ``rpp``, ``aug``, ``fa`` and
    ``relaxed`` use; ``kernel_size`` is the convolutions' on fields; ``t_adj`` and
    ``window`` default to a quarter and an eighth of ``epochs``; model
    selection counts only epochs from ``select_after`` (default 2 * t_adj, as published).
    ``penalty="coupled"`` adds lambda_j R_j to the loss that Adam sees (the published
    way); ``"decoupled"`` (default) applies its gradient step outside Adam, see
    :func:`decoupled_penalty_step`. ``lambda_probe`` is the starting strength before t_adj
    (see :class:`~softequiv.tuning.StrengthTuner`); ``rule`` (default ``"error"``) and ``p``
    (default 2) set how the strengths are adjusted at t_adj, one default for every
    dataset. ``rule_steps`` is the fit rule's refit budget, ``refit_steps`` the verdicts'
    (at most that many Adam steps at a peak learning rate ``refit_lr``, default ``lr``; by
    default as many steps as the training took, at most ``REFIT_MAX_STEPS``; see
    :func:`refit`).
    ``torch_compile`` trains through ``torch.compile(model)`` (eager if compiling fails; on
    CPU it does not pay, see the README's Performance section). ``snap`` (soft models only)
    keeps, after the verdicts, the refit with the lowest validation MSE among the free one
    and those inside a candidate that is not broken.
    """

    method: str = "per"
    epochs: int = 400
    lr: float = 3e-3
    batch_size: int = 500
    ch: int = 128
    layers: int = 3
    kernel_size: int = 3
    weight_decay: float = 0.0
    rpp_free_decay: float = 1e-3
    lambda_init: float = 100.0
    lambda_probe: float | None = None
    penalty: str = "decoupled"
    damp_gradients: bool = True
    t_adj: int | None = None
    window: int | None = None
    p: float | None = None
    rule: str | None = None
    rule_steps: int = 50
    refit_steps: int | None = None
    refit_lr: float | None = None
    select_after: int | None = None
    patience: int | None = None
    normalize: bool = True
    snap: bool = True
    group: int = 0
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    threads: int | None = None
    torch_compile: bool = False

    def resolved(self) -> TrainConfig:
        """A copy with the defaults that depend on other values filled in, and every value
        checked (InputError naming the setting)."""
        out = copy.copy(self)
        out.method = checks.choice("method", self.method, METHODS)
        out.penalty = checks.choice("penalty", self.penalty, PENALTIES)
        out.epochs = checks.integer("epochs", self.epochs, minimum=1)
        out.lr = checks.number("lr", self.lr, low=0, open_low=True)
        out.batch_size = checks.integer("batch_size", self.batch_size, minimum=1)
        out.ch = checks.integer("ch", self.ch, minimum=1)
        out.layers = checks.integer("layers", self.layers, minimum=1)
        out.kernel_size = checks.integer("kernel_size", self.kernel_size, minimum=1)
        if out.kernel_size % 2 == 0:
            raise InputError(f"kernel_size must be odd (a centre offset), got {out.kernel_size}")
        out.weight_decay = checks.number("weight_decay", self.weight_decay, low=0)
        out.rpp_free_decay = checks.number("rpp_free_decay", self.rpp_free_decay, low=0)
        out.lambda_init = checks.number("lambda_init", self.lambda_init, low=0)
        out.lambda_probe = checks.number("lambda_probe", self.lambda_probe, low=0,
                                         optional=True)
        out.patience = checks.integer("patience", self.patience, minimum=1, optional=True)
        out.group = checks.integer("group", self.group, minimum=0)
        out.seed = checks.integer("seed", self.seed, minimum=0, maximum=2**32 - 1)
        out.threads = checks.integer("threads", self.threads, minimum=1, optional=True)
        for name in ("damp_gradients", "normalize", "snap", "progress"):
            setattr(out, name, checks.boolean(name, getattr(self, name)))
        checks.resolve_device(self.device)
        out.p = checks.number("p", self.p if self.p is not None else 2.0, low=0)
        out.rule = checks.choice("rule", self.rule if self.rule is not None else "error", RULES)
        out.refit_steps = checks.integer("refit_steps", self.refit_steps, minimum=1,
                                         optional=True)
        out.rule_steps = checks.integer("rule_steps", self.rule_steps, minimum=1)
        out.refit_lr = checks.number("refit_lr", self.refit_lr if self.refit_lr is not None
                                     else out.lr, low=0, open_low=True)
        t_adj = self.t_adj if self.t_adj is not None else max(1, out.epochs // 4)
        out.t_adj = checks.integer("t_adj", t_adj, minimum=1, maximum=out.epochs)
        window = self.window if self.window is not None else max(1, out.t_adj // 2)
        out.window = checks.integer("window", window, minimum=1, maximum=out.t_adj)
        select_after = (self.select_after if self.select_after is not None
                        else min(2 * out.t_adj, out.epochs - 1))
        out.select_after = checks.integer("select_after", select_after, minimum=0,
                                          maximum=out.epochs - 1)
        return out


@dataclass
class Problem:
    """A dataset with its reps and groups parsed, split, normalized and as tensors.

    Rows are vectors (``X`` ``[N, size(rep_in)]``) or fields on a grid (``X``
    ``[N, size(rep_in), H, W]``, SPEC 10; ``fields`` is True): the rep's components are
    then the channels, and the models are CNNs (:func:`build_model`)."""

    dataset: Dataset
    rep_in: Rep
    rep_out: Rep
    groups: list[Group]
    x_scaler: RepScaler
    y_scaler: RepScaler
    tensors: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def fields(self) -> bool:
        return self.dataset.X.ndim == 4

    @classmethod
    def from_spec(cls, dataset: Dataset) -> Problem:
        """Parse the dataset's reps and groups and check them against its array shapes
        (arrays with 0 columns are not checked: a saved model has no data yet)."""
        groups = parse_groups(dataset.groups)
        rep_in, rep_out = parse_rep(dataset.rep_in), parse_rep(dataset.rep_out)
        d = groups[0].d
        check_layout(dataset.X.shape, dataset.Y.shape)
        fields = dataset.X.ndim == 4
        unit = "channels" if fields else "columns"
        for label, rep, text, name, arr in (("rep_in", rep_in, dataset.rep_in, "X", dataset.X),
                                            ("rep_out", rep_out, dataset.rep_out, "Y", dataset.Y)):
            if arr.shape[1] and rep.size(d) != arr.shape[1]:
                raise InputError(f"{label} {text!r} has size {rep.size(d)} under "
                                 f"{groups[0].name} but {name} has {arr.shape[1]} {unit}")
        if fields:
            check_field_groups(groups)
            check_grid(dataset.X.shape[-2:], groups)
        return cls(dataset, rep_in, rep_out, groups, RepScaler(rep_in, d), RepScaler(rep_out, d))

    @classmethod
    def build(cls, dataset: Dataset, *, normalize: bool = True,
              device: torch.device | str = "cpu") -> Problem:
        """Parse, check, fit the normalization on the training rows and make tensors."""
        problem = cls.from_spec(dataset)
        if normalize:
            problem.x_scaler.fit(dataset.part(TRAIN)[0])
            problem.y_scaler.fit(dataset.part(TRAIN)[1])
        for which in (TRAIN, VALID, TEST):
            X, Y = dataset.part(which)
            problem.tensors[which] = (
                torch.as_tensor(problem.x_scaler.transform(X), dtype=torch.float32,
                                device=device),
                torch.as_tensor(problem.y_scaler.transform(Y), dtype=torch.float32,
                                device=device))
        return problem


def build_model(problem: Problem, config: TrainConfig) -> nn.Module:
    """The network a method names (see METHODS), on the problem's reps and groups: MLPs
    on vectors, CNNs on fields (:func:`build_field_model`)."""
    rin, rout, groups = problem.rep_in, problem.rep_out, problem.groups
    d = groups[0].d
    if not 0 <= config.group < len(groups):
        raise InputError(f"--group {config.group} is out of range for {len(groups)} candidates")
    if problem.fields:
        return build_field_model(problem, config)
    chosen = groups[config.group]
    size = dict(ch=config.ch, layers=config.layers)
    method = config.method
    if method == "relaxed":
        raise InputError("method relaxed (relaxed group convolutions) is for fields "
                         "[N, C, H, W]; these rows are vectors")
    if method in ("per", "sample"):
        return SoftEMLP(rin, rout, groups, **size)
    if method == "emlp":
        return EMLP(rin, rout, chosen, **size)
    if method == "rpp":
        return RPP(rin, rout, chosen, **size)
    if method == "mixed-rpp":
        return MixedRPP(rin, rout, groups, **size)
    mlp = MLP(rin.size(d), rout.size(d), **size)
    if method == "aug":
        return Augmented(mlp, rin, rout, chosen)
    if method == "fa":
        kind = "SE(3)" if d == 4 and not chosen.is_orthogonal else "O(3)"
        return FrameAveraging(mlp, rin, rout, kind=kind)
    return mlp


def build_field_model(problem: Problem, config: TrainConfig) -> nn.Module:
    """The CNN a method names on fields (same widths: ``ch`` hidden channels, see
    :mod:`softequiv.nn.cnn`): per/sample a soft CNN, emlp a G-CNN of the chosen
    candidate, rpp/mixed-rpp residual pathways, mlp a plain CNN, aug a plain CNN on
    randomly moved fields, relaxed the relaxed group convolution network."""
    rin, rout, groups = problem.rep_in, problem.rep_out, problem.groups
    chosen = groups[config.group]
    size = dict(ch=config.ch, layers=config.layers, kernel_size=config.kernel_size)
    method = config.method
    if method == "fa":
        raise InputError("method fa (frame averaging over O(3)/SE(3)) does not apply to "
                         "fields; use aug, emlp or relaxed for a grid's symmetries")
    if method in ("per", "sample"):
        return SoftCNN(rin, rout, groups, **size)
    if method == "emlp":
        return GCNN(rin, rout, chosen, **size)
    if method == "rpp":
        return RPPCNN(rin, rout, chosen, **size)
    if method == "mixed-rpp":
        return MixedRPPCNN(rin, rout, groups, **size)
    if method == "relaxed":
        return RelaxedGCNN(rin, rout, chosen, **size)
    cnn = CNN(rin.size(FIELD_D), rout.size(FIELD_D), **size)
    if method == "aug":
        return FieldAugmented(cnn, rin, rout, chosen)
    return cnn


def soft_layers(model: nn.Module) -> list[SoftLayer]:
    return [m for m in model.modules() if isinstance(m, SoftLayer)]


@dataclass
class TrainResult:
    model: nn.Module
    problem: Problem
    config: TrainConfig
    tuner: StrengthTuner | None
    history: list[dict]
    best_epoch: int
    seconds: float
    snapped_to: int | None = None
    verdicts: list[dict] | None = None
    warnings: list[str] = field(default_factory=list)

    @torch.no_grad()
    def predict_normalized(self, X: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        self.model.eval()
        batch = batch or batch_rows(X)
        return torch.cat([self.model(X[i:i + batch]) for i in range(0, len(X), batch)])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions in the data's original units."""
        device = next(iter(self.model.parameters())).device
        Xn = torch.as_tensor(self.problem.x_scaler.transform(X), dtype=torch.float32,
                             device=device)
        return self.problem.y_scaler.inverse(self.predict_normalized(Xn).double().cpu().numpy())

    def mse(self, which: int) -> float:
        """Mean squared error in original units on one split."""
        X, Y = self.problem.dataset.part(which)
        return float(np.mean((self.predict(X) - Y) ** 2))


ERROR_ROWS = 500
"""Inputs on which equivariance errors are measured (the first rows of a split)."""


def equivariance_errors(function: Callable[[np.ndarray], np.ndarray], problem: Problem,
                        X: np.ndarray, *, seed: int = 0) -> list[float]:
    """The relative equivariance error (SPEC 6) of ``function`` (inputs to outputs, both in
    the data's units: a model's ``predict`` or a dataset's truth) under every candidate,
    on the first ``ERROR_ROWS`` rows of X; candidate j draws group elements from seed + j,
    so two functions are compared on the same elements."""
    X = X[:ERROR_ROWS]
    return [float(equivariance_error(function, X, group, problem.rep_in, problem.rep_out,
                                     generator=torch.Generator().manual_seed(seed + j)))
            for j, group in enumerate(problem.groups)]
def batch_rows(X: torch.Tensor | np.ndarray) -> int:
    """Rows per batch when evaluating: 4096 vectors, or fields of about 2^18 grid points
    in all (256 fields of 32x32), which keeps a CNN's activations small."""
    if X.ndim <= 2:
        return 4096
    return max(1, 2 ** 18 // max(1, X.shape[-1] * X.shape[-2]))


def evaluate(model: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> float:
    """The model's MSE on (X, Y), in the units of Y (eval mode, no gradients, in batches of
    :func:`batch_rows`)."""
    model.eval()
    batch = batch_rows(X)
    with torch.no_grad():
        total = sum(float(((model(X[i:i + batch]) - Y[i:i + batch]).double() ** 2).sum())
                    for i in range(0, len(X), batch))
    return total / max(Y.numel(), 1)


def fit(problem: Problem, config: TrainConfig) -> TrainResult:
    """Train the method's model on ``problem``, stage by stage: warm-up, strength
    adjustment, training, selection of the best validation epoch, refits free and inside
    each candidate, verdicts, and the snap onto the best candidate that holds."""
    config = config.resolved()
    start = time.perf_counter()
    run = Training(problem, config)
    run.train_epochs(0, config.t_adj)
    run.adjust_strengths()
    run.train_epochs(config.t_adj, config.epochs)
    run.select_best_epoch()
    refits = run.refit_candidates()
    verdicts, warnings = run.judge(refits, run.symmetrized())
    snapped_to = run.snap(refits, verdicts)
    return TrainResult(run.model, problem, config, run.tuner, run.history, run.best_epoch,
                       time.perf_counter() - start, snapped_to, verdicts, warnings)


class Training:
    """One run's model, optimizer, strengths and history, advanced stage by stage by
    :func:`fit`."""

    def __init__(self, problem: Problem, config: TrainConfig):
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        self.problem, self.config = problem, config
        self.device = device = checks.resolve_device(config.device)
        self.model = build_model(problem, config).to(device)
        self.forward = compiled(self.model) if config.torch_compile else self.model
        self.layers = soft_layers(self.model)
        self.soft = config.method in ("per", "sample") and bool(self.layers)
        self.decoupled = config.method == "per" and config.penalty == "decoupled" and bool(
            self.layers)
        self.tuner = None
        if config.method in ("per", "sample") and len(problem.groups) > 1:
            self.tuner = StrengthTuner(len(problem.groups), lambda_init=config.lambda_init,
                                       lambda_probe=config.lambda_probe, t_adj=config.t_adj,
                                       window=config.window, p=config.p, rule=config.rule)
        self.probe = None
        if self.tuner is not None and self.decoupled:
            self.probe = GradientProbe(self.layers, config.t_adj - config.window, config.t_adj)
        self.free = {id(p) for layer in self.layers for p in layer.free_parameters()}
        self.params = list(self.model.parameters())
        self.optimizer = _adam(self.params, config.lr)
        self.train = tuple(t.to(device) for t in problem.tensors[TRAIN])
        self.valid = tuple(t.to(device) for t in problem.tensors[VALID])
        self.steps_per_epoch = math.ceil(len(self.train[0]) / config.batch_size)
        total_steps = config.epochs * self.steps_per_epoch
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history: list[dict] = []
        self.best: tuple[float, int, dict | None] = (math.inf, -1, None)
        self.stopped = False
        self.bar = tqdm(total=config.epochs, disable=not config.progress, file=sys.stderr,
                        desc=config.method, leave=False, dynamic_ncols=True)

    @property
    def best_epoch(self) -> int:
        return self.best[1]

    def train_epochs(self, first: int, stop: int) -> None:
        """Train epochs ``first`` .. ``stop - 1`` (fewer after an early stop)."""
        for epoch in range(first, min(stop, self.config.epochs)):
            if self.stopped:
                return
            loss, regularizers = self.train_epoch(epoch)
            self.record(epoch, loss, regularizers)

    def train_epoch(self, epoch: int) -> tuple[float, np.ndarray]:
        """One pass over the training rows; the epoch's mean loss and mean R_j."""
        config, model, layers = self.config, self.model, self.layers
        Xtr, Ytr = self.train
        model.train()
        order = torch.randperm(len(Xtr), generator=self.generator).to(self.device)
        lambdas = torch.tensor(self.tuner.lambdas if self.tuner else
                               [0.0] * len(self.problem.groups),
                               dtype=torch.float64, device=self.device)
        epoch_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        epoch_reg = torch.zeros(len(self.problem.groups), dtype=torch.float64, device=self.device)
        probing = self.probe is not None and self.probe.active(epoch)
        for i in range(self.steps_per_epoch):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            x, y = Xtr[idx], Ytr[idx]
            loss = ((self.forward(x) - y) ** 2).mean()
            reg = None if self.decoupled else _regularizers(model, layers, self.problem, config,
                                                            x, self.generator, self.device)
            if reg is not None:
                loss = loss + (lambdas * reg).sum().to(loss.dtype)
                epoch_reg += reg.detach()
            decay = _weight_decay(self.params, self.free, config, model)
            if decay is not None:
                loss = loss + decay
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if probing:
                self.probe.accumulate()
            if self.decoupled:
                rate = lambdas * self.schedule.get_last_lr()[0]
                epoch_reg += decoupled_penalty_step(layers, rate, damp=config.damp_gradients)
            self.optimizer.step()
            self.schedule.step()
            epoch_loss += loss.detach()
        mean_loss = float(epoch_loss) / self.steps_per_epoch
        if not math.isfinite(mean_loss):
            raise InputError(f"training diverged at epoch {epoch} (loss {mean_loss}); "
                             "try a smaller --lr")
        return mean_loss, (epoch_reg / self.steps_per_epoch).cpu().numpy()

    def record(self, epoch: int, loss: float, regularizers: np.ndarray) -> None:
        """Validation, the tuner's observations, history, best epoch, progress, patience."""
        config = self.config
        selecting = epoch >= config.select_after
        valid = evaluate(self.model, *self.valid) if selecting or config.progress else None
        tuner = self.tuner
        if tuner is not None and tuner.in_window(epoch):
            gradient = self.probe.levels() if self.probe is not None else None
            weight_norm2 = sum(float(layer.effective_weight()[0].detach().double().square()
                                     .sum()) for layer in self.layers) or 1.0
            tuner.observe(epoch, regularizers, gradient=gradient, weight_norm2=weight_norm2)
        self.history.append({"epoch": epoch, "train_loss": loss, "valid_mse": valid,
                             "regularizers": regularizers.tolist(),
                             "lambdas": list(tuner.lambdas) if tuner else None})
        if selecting and valid < self.best[0]:
            self.best = (valid, epoch, _snapshot(self.model, self.layers))
        self.bar.update(1)
        self.bar.set_postfix_str(f"train {loss:.4f}" + (
            f" valid {valid:.4f}" if valid is not None else "") + (
            " λ " + "/".join(f"{v:.3g}" for v in tuner.lambdas[1:]) if tuner else ""))
        if config.patience and self.best[1] >= 0 and epoch - self.best[1] > config.patience:
            self.stopped = True

    def adjust_strengths(self) -> None:
        """At ``t_adj``: rescale the lambdas once by the tuner's rule (see
        :mod:`softequiv.tuning`), after measuring the warmed-up model's equivariance
        error under each candidate on validation inputs (and, for the fit rule, what
        holding each candidate costs, :func:`fit_costs`)."""
        tuner = self.tuner
        if tuner is None or self.stopped or self.config.t_adj >= self.config.epochs:
            return
        partial = TrainResult(self.model, self.problem, self.config, None, [], 0, 0.0)
        errors = equivariance_errors(partial.predict, self.problem,
                                     self.problem.dataset.part(VALID)[0], seed=self.config.seed)
        costs = None
        if tuner.rule == "fit" and self.soft:
            costs = [None] + fit_costs(self.model, self.layers, self.train, self.valid,
                                       range(1, len(self.problem.groups)),
                                       self._refit_options(self.config.rule_steps))
        tuner.adjust(errors=[None] + errors[1:], costs=costs)

    def select_best_epoch(self) -> None:
        """Load the best validation epoch's weights (counted from ``select_after``)."""
        self.bar.close()
        if self.best[2] is not None:
            _restore(self.model, self.best[2])
        self.model.eval()

    def refit_candidates(self) -> dict[int | None, Refit] | None:
        """The selected soft model refit free (key None) and inside every candidate's
        subspace, for the same budget (the run's own steps, at most ``REFIT_MAX_STEPS``,
        or ``refit_steps``; every refit another round while any has not settled, up to
        ``REFIT_ROUNDS``). None when no verdict can come of it (a model that cannot be
        constrained, too few validation rows)."""
        if self._unjudged() is not None:
            return None
        steps = self.config.refit_steps or min(REFIT_MAX_STEPS,
                                               self.config.epochs * self.steps_per_epoch)
        options = self._refit_options(steps)
        groups = (None, *range(len(self.problem.groups)))
        found: dict[int | None, Refit] = {}
        for round_index in range(REFIT_ROUNDS):
            if found and all(r.settled for r in found.values()):
                break
            batches = options | {"seed": options["seed"] + round_index}
            found = {group: refit(self.model, self.layers, self.train, self.valid,
                                  group=group, after=found.get(group), **batches)
                     for group in groups}
        return found

    def symmetrized(self, state: dict[str, torch.Tensor] | None = None,
                    ) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """Per-row validation errors of the selected model (or of the parameters
        ``state``: a refit's) and of its average over every candidate
        (:func:`softequiv.averaging.group_average`); None when no verdict can come of
        it."""
        if self._unjudged() is not None:
            return None
        return self._averaged_errors(state, self.problem.groups)

    def refits_averaged(self, refits: dict[int | None, Refit]) -> list[verdicts.Averaged]:
        """On fields: each candidate's refit averaged over the group it generates with each
        other candidate, with the candidates that average imposes (every one that group
        contains); none on vectors, whose continuous groups are averaged over samples, so
        that an average is not exactly a model of the group generated."""
        if not self.problem.fields:
            return []
        groups, names = self.problem.groups, self.problem.dataset.groups
        found = []
        for k, group in enumerate(groups):
            generated: list[tuple[int, Group]] = []
            for m, other in enumerate(groups):
                union = Union(group, other)
                if group.contains(union) or any(h.contains(union) for _, h in generated
                                                if union.contains(h)):
                    continue
                generated.append((m, union))
            if not generated:
                continue
            errors = self._averaged_errors(refits[k].state, [h for _, h in generated])[1]
            found += [verdicts.Averaged(verdicts.averaged_name(names[m], refit=names[k]), e,
                                        frozenset(j for j, g in enumerate(groups)
                                                  if union.contains(g)))
                      for (m, union), e in zip(generated, errors, strict=True)]
        return found

    def _averaged_errors(self, state: dict[str, torch.Tensor] | None, groups: Sequence[Group],
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-row validation errors of the selected model (or of ``state``) and of its
        average over each of ``groups``."""
        problem = self.problem
        selected = parameters_copy(self.model)
        if state is not None:
            load_parameters(self.model, state)
        self.model.eval()
        X, Y = problem.dataset.part(VALID)
        predict = TrainResult(self.model, problem, self.config, None, [], 0, 0.0).predict
        target = problem.y_scaler.transform(Y)

        def errors(prediction: np.ndarray) -> torch.Tensor:
            squared = (problem.y_scaler.transform(prediction) - target) ** 2
            return torch.as_tensor(squared.reshape(len(Y), -1).mean(1))

        averages = [errors(group_average(predict, X, group, problem.rep_in, problem.rep_out,
                                         seed=self.config.seed + j))
                    for j, group in enumerate(groups)]
        found = errors(predict(X)), averages
        load_parameters(self.model, selected)
        self.model.eval()
        return found

    def judge(self, refits: dict[int | None, Refit] | None,
              symmetrized: tuple[torch.Tensor, list[torch.Tensor]] | None,
              ) -> tuple[list[dict], list[str]]:
        """Verdict and evidence per candidate (:mod:`softequiv.verdicts`) from the retrained
        refits and the symmetrized model, and warnings."""
        names = self.problem.dataset.groups
        if refits is None or symmetrized is None:
            reason = self._unjudged()
            return verdicts.undetermined(len(names), reason), [f"verdicts undetermined: {reason}"]
        free_averaged = self.symmetrized(refits[None].state)[1]
        return verdicts.judge(refits[None].errors, [refits[j].errors for j in range(len(names))],
                              self.valid[1], names=names,
                              inside=nested_subspaces(self.layers, len(names)),
                              free_averaged=free_averaged,
                              averaged=self.refits_averaged(refits), symmetrized=symmetrized,
                              seed=self.config.seed)

    def _unjudged(self) -> str | None:
        """Why no candidate can be judged before any refit, or None."""
        constrainable = self.soft and all(
            layer.weight is not None and
            layer.weight_projector.n_groups == len(self.problem.groups) for layer in self.layers)
        if not constrainable:
            return (f"method {self.config.method} cannot be constrained to each candidate; "
                    "verdicts need a soft model (method per or sample)")
        return verdicts.guard(len(self.valid[0]), None)

    def snap(self, refits: dict[int | None, Refit] | None, found: list[dict]) -> int | None:
        """With ``config.snap``: keep whichever refit has the lowest validation MSE, among
        the free one and those inside a candidate that holds; return that candidate (the
        model is then exactly equivariant to it). An undetermined candidate is never
        imposed: the model stays free of what the data has not shown."""
        if not self.config.snap or refits is None:
            return None
        options = [refits[None]] + [refits[j] for j, v in enumerate(found)
                                    if v["verdict"] == verdicts.HOLDS]
        chosen = min(options, key=lambda r: r.mse)
        load_parameters(self.model, chosen.state)
        self.model.eval()
        return chosen.group

    def _refit_options(self, steps: int) -> dict:
        config = self.config
        return {"steps": steps, "lr": config.refit_lr, "batch_size": config.batch_size,
                "seed": config.seed}


class GradientProbe:
    """Averages the data-loss gradient of every soft layer over the tuning window and
    reports 1/2 ||(I - P_j) g||^2 per group (the ``"gradient"`` tuning rule)."""

    def __init__(self, layers: list[SoftLinear], start: int, stop: int):
        self.layers, self.start, self.stop = layers, start, stop
        self.sums: list[torch.Tensor] | None = None
        self.count = 0

    def active(self, epoch: int) -> bool:
        return self.start <= epoch < self.stop

    @torch.no_grad()
    def accumulate(self) -> None:
        grads = [p.grad.detach().double() for layer in self.layers
                 for p in (layer.weight, layer.bias)]
        self.sums = grads if self.sums is None else [s + g for s, g in zip(self.sums, grads,
                                                                          strict=True)]
        self.count += 1

    @torch.no_grad()
    def levels(self) -> np.ndarray:
        total = 0.0
        for i, layer in enumerate(self.layers):
            weight, bias = (s / self.count for s in self.sums[2 * i:2 * i + 2])
            total = total + layer.weight_projector.penalty(weight) + layer.bias_projector.penalty(
                bias[:, None])
        return total.cpu().numpy()


def compiled(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)`` as a callable that falls back to the eager model, with one
    warning, when compiling is unavailable or fails (compiling happens at the first call)."""
    try:
        fast = torch.compile(model, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - any failure means: train eagerly
        return _eager_after(model, exc)
    state = {"fast": fast}

    def forward(x: torch.Tensor) -> torch.Tensor:
        if state["fast"] is not None:
            try:
                return state["fast"](x)
            except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler for inductor
                state["fast"] = None
                _eager_after(model, exc)
        return model(x)

    return forward


def _eager_after(model: nn.Module, exc: Exception) -> nn.Module:
    warnings.warn(f"torch.compile is unavailable here ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); training eagerly",
                  RuntimeWarning, stacklevel=3)
    return model


def _adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has one for these tensors (one kernel for
    all parameters instead of a loop of small ops: several times faster per step on CPU),
    else the multi-tensor one."""
    if all(p.device.type in ("cpu", "cuda") for p in params):
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):  # torch < 2.4 on CPU
            pass
    return torch.optim.Adam(params, lr=lr, foreach=True)


def _shrink_factors(rate: torch.Tensor) -> torch.Tensor:
    shrink = -torch.expm1(-rate)
    return shrink / shrink.sum().clamp_min(1.0)


def damp_gradients(layers: list[SoftLinear], rate: torch.Tensor) -> None:
    """Remove the share c_j of each gradient that breaks group j before the optimizer sees
    it: g <- g - sum_j c_j (g - P_j g). For a strongly enforced group (c_j near 1) Adam
    then moves in the equivariant subspace as a hard EMLP would, instead of spending its
    step sizes on mini-batch noise that the penalty removes again. (Training does this in
    the same pass as the penalty step: ``decoupled_penalty_step(..., damp=True)``.)"""
    _shrink_towards_subspaces(layers, _shrink_factors(rate), weights=False, grads=True)


def decoupled_penalty_step(layers: list[SoftLinear], rate: torch.Tensor, *,
                           damp: bool = False) -> torch.Tensor:
    """Shrink every layer towards each group's equivariant subspace, outside the optimizer:
    W <- W - c_j (W - P_j W) with c_j = 1 - exp(-lr * lambda_j), capped so the c_j sum to
    at most 1 (a contraction). It is the gradient step of sum_j lambda_j R_j taken like
    AdamW's decoupled weight decay, so Adam's moment estimates see only the data loss;
    called between ``backward()`` and ``optimizer.step()`` it shrinks the weights before
    the Adam update, as AdamW does. With ``damp`` the gradients get the same shrink in the
    same pass (:func:`damp_gradients`). Returns the R_j measured before the step (float64,
    detached, on the weights' device: no host synchronization)."""
    return _shrink_towards_subspaces(layers, _shrink_factors(rate), weights=True, grads=damp)


def _shrink_towards_subspaces(layers: list[SoftLinear], shrink: torch.Tensor, *,
                              weights: bool, grads: bool) -> torch.Tensor:
    """x <- x - sum_j shrink_j (x - P_j x) for the layers' free weights and biases and/or
    their gradients; returns the weights' R_j before the step (zeros without ``weights``).
    Dense layers' tensors go through one :class:`StackedProjectors` pass; other soft layers
    (convolutions) through their projectors' ``penalty_and_residual``."""
    total = torch.zeros(len(shrink), dtype=torch.float64, device=shrink.device)
    dense = [(p, proj) for layer in layers for p, proj, _ in _weight_and_bias(layer)
             if isinstance(proj, Projector)]
    with torch.no_grad():
        if dense:
            params = [p for p, _ in dense]
            rows = ([_flat(params)] if weights else []) + (
                [_flat([p.grad for p in params])] if grads else [])
            penalty, residual = _stacked_projectors([proj for _, proj in dense]).residuals(
                torch.stack(rows), shrink)
            if weights:
                _subtract(params, residual[0])
                total += penalty[0]
            if grads:
                _subtract([p.grad for p in params], residual[-1])
        for layer in layers:
            for param, projector, as_matrix in _weight_and_bias(layer):
                if isinstance(projector, Projector):
                    continue
                if grads:
                    _, residual = projector.penalty_and_residual(as_matrix(param.grad), shrink)
                    param.grad.sub_(residual.reshape(param.shape))
                if weights:
                    penalty, residual = projector.penalty_and_residual(as_matrix(param), shrink)
                    param.sub_(residual.reshape(param.shape))
                    total += penalty
    return total


def _stacked_projectors(projectors: list[Projector]) -> StackedProjectors:
    """One :class:`StackedProjectors` over these projectors, built once and kept on the
    first of them."""
    key = tuple(id(p) for p in projectors)
    cached = projectors[0].__dict__.get("_stacked_projectors")
    if cached is None or cached[0] != key:
        cached = (key, StackedProjectors(projectors))
        projectors[0].__dict__["_stacked_projectors"] = cached
    return cached[1]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _subtract(tensors: list[torch.Tensor], flat: torch.Tensor) -> None:
    """tensors -= their parts of the flat concatenation ``flat``."""
    parts = flat.split([t.numel() for t in tensors])
    for t, part in zip(tensors, parts, strict=True):
        t.sub_(part.view_as(t))


def _weight_and_bias(layer: SoftLinear) -> list[tuple[torch.Tensor, Projector, Callable]]:
    """The soft layer's free weight and bias, each with its projector and its view as a
    matrix (a bias is a map from one scalar)."""
    return [(layer.weight, layer.weight_projector, lambda t: t),
            (layer.bias, layer.bias_projector, lambda t: t[:, None])]


def _regularizers(model: nn.Module, layers: list[SoftLinear], problem: Problem,
                  config: TrainConfig, x: torch.Tensor, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor | None:
    if config.method == "per" and layers:
        return torch.stack([layer.penalties() for layer in layers]).sum(0)
    if config.method == "sample":
        values = [sample_penalty(model, x, g, problem.rep_in, problem.rep_out,
                                 generator=generator).double() for g in problem.groups[1:]]
        return torch.stack([torch.zeros((), dtype=torch.float64, device=device), *values])
    return None


def _weight_decay(params: list[nn.Parameter], free: set[int], config: TrainConfig,
                  model: nn.Module | None = None) -> torch.Tensor | None:
    """Weight decay (stronger on RPP's free pathways) plus the model's own prior where it
    has one (``prior_loss()``: the relaxed group convolution's pull towards equivariance)."""
    terms = []
    for p in params:
        rate = config.weight_decay + (config.rpp_free_decay if id(p) in free else 0.0)
        if rate:
            terms.append(0.5 * rate * p.square().sum())
    prior = getattr(model, "prior_loss", None)
    if prior is not None:
        terms.append(prior())
    return torch.stack(terms).sum() if terms else None


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)


def _snapshot(model: nn.Module, layers: list[SoftLayer]) -> dict[str, torch.Tensor]:
    """Copies of the state that training changes, for model selection: the state_dict less
    the soft layers' projectors (constant bases, most of its bytes)."""
    constant = {id(t) for layer in layers for projector in (layer.weight_projector,
                                                              layer.bias_projector)
                if isinstance(projector, nn.Module) for t in projector.buffers()}
    return {name: t.detach().clone() for name, t in model.state_dict(keep_vars=True).items()
            if id(t) not in constant}


def _restore(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Copies a :func:`_snapshot` back into the model's tensors."""
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name in snapshot:
                t.copy_(snapshot[name])


@dataclass
class Refit:
    """A model trained on from a starting point for a short budget, free (``group`` None)
    or inside candidate ``group``'s equivariant subspace: the best checkpoint's parameters
    and per-row validation errors (checkpoint 0 is the starting point itself)."""

    group: int | None
    state: dict[str, torch.Tensor]
    errors: torch.Tensor
    step: int
    history: list[float]
    settled: bool = True
    """Whether its last round settled (:func:`settled`)."""

    @property
    def mse(self) -> float:
        return float(self.errors.mean())


REFIT_CHECKPOINTS = 20
"""Validation checks during a refit's full budget (the best one is kept)."""

REFIT_MAX_STEPS = 1000
"""The verdicts' refits train at most as long as the run itself and at most this long."""

REFIT_PATIENCE = 5
"""A refit stops once this many checks in a row have not improved on its best one, past
the first half of its schedule."""

REFIT_ROUNDS = 3
"""The verdicts' refits train up to this many rounds of their budget, all of them
another round while any has not settled (a model constrained to a non-compact group can
take several times the run's steps to find what its subspace fits; every refit gets the
same rounds, so that none is compared with one trained longer)."""

REFIT_SETTLED = 0.05
"""A refit round whose validation MSE fell by more than this share over its last half,
down to its last checkpoint, has not settled: as large as the verdicts' tolerance, so a
further round could move a ratio across it."""

REFIT_WARMUP = 0.1
"""Share of a refit's steps over which the learning rate ramps up: a fresh Adam takes
steps of about ``lr`` in every coordinate whatever the gradient's size, which throws a
converged model far off before its moment estimates settle."""


def refit(model: nn.Module, layers: list[SoftLayer], train: tuple[torch.Tensor, torch.Tensor],
          valid: tuple[torch.Tensor, torch.Tensor], *, group: int | None, steps: int,
          lr: float, batch_size: int, seed: int, after: Refit | None = None) -> Refit:
    """Train ``model`` on for at most ``steps`` Adam steps on the data loss alone (learning
    rate ramped up to ``lr``, then cosine to zero over ``steps``), stopping early once
    ``REFIT_PATIENCE`` validation checks bring no improvement in the second half of the
    schedule (a fresh Adam at its peak rate first throws a trained model off, and
    stopping then would judge a refit that never reached its small rates), and keep its best
    validation checkpoint; the model's parameters are left as they came. ``after``
    continues an earlier refit of the same group for another round, from its best
    checkpoint (the result counts both rounds).

    With ``group`` set the model first moves to its projection onto that candidate and
    stays inside the subspace (every step projects the gradients and the weights, as a
    hard EMLP of the group trains): the best exactly equivariant model the budget reaches
    from here. The verdicts train for a model's budget (:mod:`softequiv.verdicts`: a
    projection can cost a model most of its fit, which a short refit has not recovered
    yet). The same budget, schedule and batch order for every ``group`` (None included)
    make the results comparable row by row."""
    start = parameters_copy(model)
    if after is not None:
        load_parameters(model, after.state)
    elif group is not None:
        constrain(layers, group)
    result = _refit_round(model, layers, train, valid, group, steps, lr, batch_size, seed)
    result.settled = settled(result.history, result.step)
    if after is not None:
        result = Refit(group, result.state, result.errors, after.step + result.step,
                       after.history + result.history[1:], result.settled)
    load_parameters(model, start)
    model.eval()
    return result


def settled(history: list[float], best_step: int) -> bool:
    """Whether a refit round has settled: its best checkpoint came before the last one,
    or its validation MSE fell by at most ``REFIT_SETTLED`` over the last half of the
    round (``history``: the round's checkpoints, its start first)."""
    if best_step == 0 or history[-1] > min(history):
        return True
    half = history[(len(history) - 1) // 2]
    return half <= history[-1] * (1 + REFIT_SETTLED)


def _refit_round(model: nn.Module, layers: list[SoftLayer],
                 train: tuple[torch.Tensor, torch.Tensor],
                 valid: tuple[torch.Tensor, torch.Tensor], group: int | None, steps: int,
                 lr: float, batch_size: int, seed: int) -> Refit:
    """One round of :func:`refit` from the model's current parameters."""
    Xtr, Ytr = train
    n = len(Xtr)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    ramp = max(1, round(REFIT_WARMUP * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / ramp) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    generator = torch.Generator().manual_seed(seed)
    every = max(1, steps // REFIT_CHECKPOINTS)
    best_errors = row_errors(model, *valid)
    best = (float(best_errors.mean()), 0, parameters_copy(model))
    history = [best[0]]
    order, position = torch.randperm(n, generator=generator).to(Xtr.device), 0
    model.train()
    for step in range(1, steps + 1):
        if position >= n:
            order, position = torch.randperm(n, generator=generator).to(Xtr.device), 0
        idx = order[position:position + batch_size]
        position += batch_size
        loss = ((model(Xtr[idx]) - Ytr[idx]) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if group is not None:
            _project_gradients(layers, group)
        optimizer.step()
        schedule.step()
        if group is not None:
            constrain(layers, group)
        if step % every == 0 or step == steps:
            errors = row_errors(model, *valid)
            history.append(float(errors.mean()))
            if history[-1] < best[0]:
                best, best_errors = (history[-1], step, parameters_copy(model)), errors
            if step - best[1] >= REFIT_PATIENCE * every and 2 * step >= steps:
                break
            model.train()
    return Refit(group, best[2], best_errors, best[1], history)


def fit_costs(model: nn.Module, layers: list[SoftLayer], train: tuple[torch.Tensor, torch.Tensor],
              valid: tuple[torch.Tensor, torch.Tensor], groups: Iterable[int],
              options: dict) -> list[float]:
    """What holding each of ``groups`` costs the model: the relative rise of the validation
    MSE of its refit inside the group over its free refit (same budget), the fit rule's
    measurement (:mod:`softequiv.tuning`)."""
    free = refit(model, layers, train, valid, group=None, **options).mse
    return [refit(model, layers, train, valid, group=j, **options).mse / max(free, 1e-300) - 1
            for j in groups]


def nested_subspaces(layers: list[SoftLayer], n_groups: int) -> list[list[int]]:
    """For every candidate j, the candidates k whose equivariant subspace (over every soft
    layer's weight and bias) lies inside j's, j included: P_j P_k W = P_k W, checked on a
    seeded random W in float64 (generic, so it holds only if the subspaces are nested), to
    rounding relative to W (P_k W may be zero: a vector bias invariant under rotations)."""
    generator = torch.Generator().manual_seed(0)
    probes = [(projector, torch.randn(*projector.shape, dtype=torch.float64,
                                      generator=generator).to(layer.weight.device))
              for layer in layers for projector in (layer.weight_projector,
                                                    layer.bias_projector)]
    inside = [[j] for j in range(n_groups)]
    for j in range(n_groups):
        for k in range(n_groups):
            if k != j and all(_contains(projector, W, j, k) for projector, W in probes):
                inside[j].append(k)
    return inside


def _contains(projector: Projector, W: torch.Tensor, outer: int, inner: int) -> bool:
    inner_part = projector.project(W, inner)
    gap = projector.project(inner_part, outer) - inner_part
    return float(gap.norm()) <= 1e-8 * float(W.norm())


def constrain(layers: list[SoftLayer], group: int) -> None:
    """Replace every soft layer's weight and bias by its projection onto ``group``."""
    with torch.no_grad():
        for layer in layers:
            for param, projector, as_matrix in _weight_and_bias(layer):
                param.copy_(projector.project(as_matrix(param), group).reshape(param.shape))


def _project_gradients(layers: list[SoftLayer], group: int) -> None:
    with torch.no_grad():
        for layer in layers:
            for param, projector, as_matrix in _weight_and_bias(layer):
                param.grad.copy_(projector.project(as_matrix(param.grad), group)
                                 .reshape(param.shape))


def row_errors(model: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Each row's squared error averaged over outputs, float64 ``[n]`` (eval mode, in
    batches of :func:`batch_rows`)."""
    model.eval()
    batch = batch_rows(X)
    with torch.no_grad():
        return torch.cat([((model(X[i:i + batch]) - Y[i:i + batch]).double() ** 2)
                          .reshape(len(X[i:i + batch]), -1).mean(1)
                          for i in range(0, len(X), batch)])


def parameters_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def load_parameters(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved parameters back in place (buffers and projector caches stay)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(state[name])
