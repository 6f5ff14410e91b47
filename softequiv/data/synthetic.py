"""The paper's synthetic benchmarks (SPEC section 8): inertia, CosSim and SE(3).

Every constructor is deterministic per ``seed``, works in float64 with numpy only, and
returns a :class:`~softequiv.data.base.Dataset` whose ``truth`` is the noiseless,
vectorized target function (``X [N, size_in] -> Y [N, size_out]``), so ground-truth
equivariance errors can be measured on any inputs. ``exact`` lists the candidate groups
the target respects exactly; the others are broken (by an amount set by ``eps`` where
the constructor has one).

Layouts (all summands in order, tensors flattened row-major):

* ``inertia``: ``X = [m_1..m_k, r_1 (xyz), ..., r_k (xyz)]``, ``Y = vec(3x3 matrix)``.
* ``cossim``: ``X = [x_0 (xyz), x_1 (xyz), x_2 (xyz)]``, ``Y = [scalar]``.
* ``se3``: ``X = [(p_0, 1), ..., (p_{k-1}, 1)]`` (homogeneous, 4 numbers per point),
  ``Y = [scalar]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from softequiv.data.base import Dataset, standard_split
from softequiv.errors import InputError

__all__ = ["DATASETS", "cossim", "inertia", "load_builtin", "se3"]

Sizes = tuple[int, int, int]

# Candidate groups, ambient group first.
INERTIA_GROUPS = ["O(3)", "O2xy", "O2yz", "O2xz"]
COSSIM_GROUPS = ["Union(SO(3), Scaling(3))", "SO(3)", "Scaling(3)"]
SE3_GROUPS = ["SE(3)", "Rot(3)", "Trans(3)"]

# The O(2) candidate that fixes each axis (rotations/reflections of the other two).
_PLANE_OF_AXIS = {"x": "O2yz", "y": "O2xz", "z": "O2xy"}
_AXIS_INDEX = {"x": 0, "y": 1, "z": 2}

COSSIM_VARIANTS = ("so3", "scale", "both", "none")
SE3_VARIANTS = ("exact", "rotation", "translation", "none")


# --------------------------------------------------------------------------- helpers


def _check_sizes(n: Sizes) -> Sizes:
    """Validate the (train, valid, test) sizes."""
    try:
        sizes = tuple(int(v) for v in n)
    except (TypeError, ValueError):
        raise InputError(f"n must be three split sizes (train, valid, test), got {n!r}") from None
    if len(sizes) != 3 or any(v < 0 for v in sizes) or sum(sizes) == 0:
        raise InputError(f"n must be three non-negative split sizes with a positive sum, got {n!r}")
    return sizes  # type: ignore[return-value]


def _check_x(X: np.ndarray, width: int, name: str) -> np.ndarray:
    """Coerce ``X`` to a float64 ``[N, width]`` array or raise a one-line InputError."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == width:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise InputError(f"{name} truth expects inputs of shape [N, {width}], got {arr.shape}")
    return arr


def _as_number(value: object, kind: type, what: str) -> float | int:
    """``int(value)`` or ``float(value)``, or a one-line InputError naming the option."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}")
    try:
        out = kind(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if kind is float and not np.isfinite(out):
        raise InputError(f"{what} must be finite, got {value!r}")
    if kind is int and isinstance(value, float) and out != value:
        raise InputError(f"{what} must be an integer, got {value!r}")
    return out


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(_seed(seed))


def _seed(seed: object) -> int:
    """A non-negative integer seed, or a one-line InputError."""
    s = int(_as_number(seed, int, "seed"))
    if s < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return s


# --------------------------------------------------------------------------- inertia


def _inertia_tensor(X: np.ndarray, k: int) -> np.ndarray:
    """``I = sum_i m_i (|r_i|^2 Id - r_i r_i^T)`` for each row, shape ``[N, 3, 3]``."""
    m = X[:, :k]  # [N, k]
    r = X[:, k:].reshape(-1, k, 3)  # [N, k, 3]
    sq = np.einsum("nk,nki,nki->n", m, r, r)
    outer = np.einsum("nk,nki,nkj->nij", m, r, r)
    return sq[:, None, None] * np.eye(3) - outer


def inertia(
    *,
    axis: str = "z",
    eps: float = -1.0,
    masses: int = 5,
    n: Sizes = (1000, 1000, 1000),
    seed: int = 0,
) -> Dataset:
    """The modified inertia task: predict ``I + eps (I e_a) e_a^T`` from point masses.

    Masses ``m_i = softplus(N(0, 1))`` and positions ``r_i ~ N(0, Id_3)``; the input is
    ``[m_1..m_k, r_1, ..., r_k]`` (``rep_in = "k*Scalar + k*Vector"``) and the output the
    3x3 matrix ``Y = I + eps (I e_a) e_a^T`` flattened row-major (``rep_out = "T(2)"``),
    where ``I = sum_i m_i (|r_i|^2 Id - r_i r_i^T)`` is the inertia tensor.

    ``axis`` is ``"x"``, ``"y"`` or ``"z"``, or ``"-1"`` for
    ``Y = I + eps (-(I e_x) e_x^T + (I e_y) e_y^T)``. Writing ``Y = I + eps I D`` with
    ``D = e_a e_a^T`` (or ``diag(-1, 1, 0)`` for ``"-1"``), ``Y(g x) = g Y(x) g^T`` holds
    exactly when ``g`` commutes with ``D``. Hence:

    * axis ``a``: O(2) about ``a`` is exact (z -> ``"O2xy"``, x -> ``"O2yz"``,
      y -> ``"O2xz"``); the two other plane groups and O(3) are broken;
    * axis ``"-1"``: no candidate is exact (``diag(-1, 1, 0)`` commutes with none of the
      three O(2) plane groups: each of them mixes two axes with different entries);
    * ``eps = 0``: ``Y = I`` and all four candidates are exact.
    """
    ax = str(axis).strip().lower()
    if ax not in ("x", "y", "z", "-1"):
        raise InputError(f"inertia axis must be one of 'x', 'y', 'z', '-1', got {axis!r}")
    k = int(_as_number(masses, int, "inertia masses"))
    if k < 1:
        raise InputError(f"inertia needs at least one mass, got masses={masses!r}")
    eps = float(_as_number(eps, float, "inertia eps"))
    sizes = _check_sizes(n)
    total = sum(sizes)

    if ax == "-1":
        D = np.diag([-1.0, 1.0, 0.0])
    else:
        D = np.zeros((3, 3))
        D[_AXIS_INDEX[ax], _AXIS_INDEX[ax]] = 1.0
    width = 4 * k

    def truth(X: np.ndarray) -> np.ndarray:
        """Noiseless target ``vec(I + eps I D)`` for inputs ``[N, 4k]``."""
        X = _check_x(X, width, "inertia")
        inert = _inertia_tensor(X, k)
        return (inert + eps * inert @ D).reshape(X.shape[0], 9)

    rng = _rng(seed)
    m = _softplus(rng.standard_normal((total, k)))
    r = rng.standard_normal((total, k, 3))
    X = np.concatenate([m, r.reshape(total, 3 * k)], axis=1)
    Y = truth(X)

    if eps == 0.0:
        exact = list(INERTIA_GROUPS)
    elif ax == "-1":
        exact = []
    else:
        exact = [_PLANE_OF_AXIS[ax]]

    return Dataset(
        name="inertia",
        X=X,
        Y=Y,
        rep_in=f"{k}*Scalar + {k}*Vector",
        rep_out="T(2)",
        groups=list(INERTIA_GROUPS),
        split=standard_split(total, sizes, seed=_seed(seed)),
        truth=truth,
        exact=exact,
        info={"axis": ax, "eps": eps, "masses": k, "n": sizes, "seed": _seed(seed)},
    )


# --------------------------------------------------------------------------- cossim


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def cossim(
    *,
    variant: str = "so3",
    eps: float = 1.0,
    n: Sizes = (1000, 1000, 1000),
    seed: int = 0,
) -> Dataset:
    """The CosSim task: a scalar of three vectors ``x_0, x_1, x_2 ~ N(0, Id_3)``.

    Base target: the mean cyclic cosine similarity
    ``(cos(x_0, x_1) + cos(x_1, x_2) + cos(x_2, x_0)) / 3``, invariant under SO(3) and
    under a common scaling ``x_i -> s x_i`` (s > 0). The variants subtract terms:

    * ``"so3"``: ``- eps * mean_i |x_i|`` (keeps SO(3), breaks scaling);
    * ``"scale"``: ``- eps * |x_0|_1 / (|x_1|_1 + |x_2|_1)`` with L1 norms (keeps
      scaling, breaks rotation);
    * ``"both"``: base only (both exact, so also their union);
    * ``"none"``: subtracts both terms (both broken).

    ``rep_in = "3*Vector"``, ``rep_out = "Scalar"``. The union candidate is exact only
    when both SO(3) and scaling are. With ``eps = 0`` every variant is the base target.
    """
    v = str(variant).strip().lower()
    if v not in COSSIM_VARIANTS:
        raise InputError(
            f"cossim variant must be one of {', '.join(COSSIM_VARIANTS)}, got {variant!r}"
        )
    eps = float(_as_number(eps, float, "cossim eps"))
    sizes = _check_sizes(n)
    total = sum(sizes)
    norm_term = v in ("so3", "none")
    l1_term = v in ("scale", "none")

    def truth(X: np.ndarray) -> np.ndarray:
        """Noiseless target for inputs ``[N, 9]`` (three vectors), shape ``[N, 1]``."""
        X = _check_x(X, 9, "cossim")
        x = X.reshape(-1, 3, 3)
        x0, x1, x2 = x[:, 0], x[:, 1], x[:, 2]
        out = (_cos(x0, x1) + _cos(x1, x2) + _cos(x2, x0)) / 3.0
        if norm_term:
            out = out - eps * np.linalg.norm(x, axis=-1).mean(axis=1)
        if l1_term:
            l1 = np.abs(x).sum(axis=-1)
            out = out - eps * l1[:, 0] / (l1[:, 1] + l1[:, 2])
        return out[:, None]

    X = _rng(seed).standard_normal((total, 9))
    Y = truth(X)

    so3_exact = eps == 0.0 or not l1_term
    scale_exact = eps == 0.0 or not norm_term
    exact = []
    if so3_exact and scale_exact:
        exact.append(COSSIM_GROUPS[0])
    if so3_exact:
        exact.append("SO(3)")
    if scale_exact:
        exact.append("Scaling(3)")

    return Dataset(
        name="cossim",
        X=X,
        Y=Y,
        rep_in="3*Vector",
        rep_out="Scalar",
        groups=list(COSSIM_GROUPS),
        split=standard_split(total, sizes, seed=_seed(seed)),
        truth=truth,
        exact=exact,
        info={"variant": v, "eps": eps, "n": sizes, "seed": _seed(seed)},
    )


# --------------------------------------------------------------------------- se3


def se3(
    *,
    variant: str = "exact",
    points: int = 3,
    n: Sizes = (1000, 1000, 1000),
    seed: int = 0,
) -> Dataset:
    """The SE(3) task: a scalar of ``k`` points ``p_i ~ N(0, Id_3)`` in homogeneous form.

    Each point is stored as ``(p_i, 1)`` in R^4 (``rep_in = "k*Vector"`` for SE(3) acting by
    4x4 matrices ``[[R, t], [0, 1]]``); ``rep_out = "Scalar"``. The target reads the first
    three coordinates of each point (the homogeneous 1 is ignored). Base target: the mean
    cyclic pairwise distance ``sum_i |p_i - p_{i+1 mod k}| / k`` (for k = 3,
    ``(|p_0-p_1| + |p_1-p_2| + |p_2-p_0|) / 3``), exactly SE(3)-invariant. Variants:

    * ``"exact"``: base only (all three candidates exact);
    * ``"rotation"``: ``+ 0.5 |p_0|`` (keeps rotations ``"Rot(3)"``, breaks translations);
    * ``"translation"``: ``+ |(p_0 - p_1)_z|``, the distance along the z axis (keeps
      translations ``"Trans(3)"``, breaks rotations; it stays invariant under rotations
      about z, which is not a candidate);
    * ``"none"``: adds both terms (no candidate is exact).
    """
    v = str(variant).strip().lower()
    if v not in SE3_VARIANTS:
        raise InputError(f"se3 variant must be one of {', '.join(SE3_VARIANTS)}, got {variant!r}")
    k = int(_as_number(points, int, "se3 points"))
    if k < 2:
        raise InputError(f"se3 needs at least two points, got points={points!r}")
    sizes = _check_sizes(n)
    total = sum(sizes)
    norm_term = v in ("rotation", "none")
    axis_term = v in ("translation", "none")
    width = 4 * k

    def truth(X: np.ndarray) -> np.ndarray:
        """Noiseless target for homogeneous inputs ``[N, 4k]``, shape ``[N, 1]``."""
        X = _check_x(X, width, "se3")
        p = X.reshape(-1, k, 4)[:, :, :3]
        diff = p - np.roll(p, -1, axis=1)
        out = np.linalg.norm(diff, axis=-1).mean(axis=1)
        if norm_term:
            out = out + 0.5 * np.linalg.norm(p[:, 0], axis=-1)
        if axis_term:
            out = out + np.abs(p[:, 0, 2] - p[:, 1, 2])
        return out[:, None]

    p = _rng(seed).standard_normal((total, k, 3))
    X = np.concatenate([p, np.ones((total, k, 1))], axis=2).reshape(total, width)
    Y = truth(X)

    exact = {
        "exact": list(SE3_GROUPS),
        "rotation": ["Rot(3)"],
        "translation": ["Trans(3)"],
        "none": [],
    }[v]

    return Dataset(
        name="se3",
        X=X,
        Y=Y,
        rep_in=f"{k}*Vector",
        rep_out="Scalar",
        groups=list(SE3_GROUPS),
        split=standard_split(total, sizes, seed=_seed(seed)),
        truth=truth,
        exact=exact,
        info={"variant": v, "points": k, "n": sizes, "seed": _seed(seed)},
    )


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., Dataset]] = {"inertia": inertia, "cossim": cossim, "se3": se3}


def load_builtin(name: str, **kwargs: object) -> Dataset:
    """Build a built-in synthetic dataset by name, e.g. ``load_builtin("inertia", axis="x")``.

    Raises :class:`~softequiv.errors.InputError` (one line) for an unknown name, an
    unknown option, or a bad option value (variant, axis, sizes ...).
    """
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise InputError(
            f"unknown built-in dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}"
        )
    make = DATASETS[key]
    params = inspect.signature(make).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise InputError(
            f"unknown option(s) {', '.join(unknown)} for dataset {key!r}; "
            f"valid options: {', '.join(params)}"
        )
    try:
        return make(**kwargs)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"bad option for dataset {key!r}: {msg}") from None
