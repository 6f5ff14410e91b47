"""One-line checks of scalar arguments, shared by the Python API and the CLI's flags.

Each check returns the value in its canonical type or raises
:class:`~softequiv.errors.InputError` naming the argument, what it must be, and what it
got: ``epochs must be an integer >= 1, got 0``. :func:`flag` turns a check into an
argparse ``type``, so a bad flag fails before any data is read, with exit code 2:
``argument --epochs: must be an integer >= 1, got '0'``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from softequiv.errors import InputError

__all__ = ["boolean", "choice", "flag", "integer", "number", "resolve_device"]

DEVICES = "auto, cpu, cuda or cuda:N"


def _fail(name: str, requirement: str, value: Any) -> InputError:
    subject = f"{name} " if name else ""
    return InputError(f"{subject}must be {requirement}, got {value!r}")


def integer(name: str, value: Any, *, minimum: int | None = None,
            maximum: int | None = None, optional: bool = False) -> int | None:
    """``value`` as an int in ``[minimum, maximum]`` (None allowed when ``optional``).

    Integral floats (``5.0``) and numpy integers are accepted; bools and text are not.
    """
    return _in_range(name, value, "an integer", minimum, maximum, open_low=False,
                     open_high=False, optional=optional)


def number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
           open_low: bool = False, open_high: bool = False,
           optional: bool = False) -> float | None:
    """``value`` as a finite float within the bounds (``open_*``: the bound excluded)."""
    return _in_range(name, value, "a finite number", low, high, open_low=open_low,
                     open_high=open_high, optional=optional)


def _in_range(name: str, value: Any, kind: str, low: float | None, high: float | None, *,
              open_low: bool, open_high: bool, optional: bool) -> Any:
    if value is None and optional:
        return None
    bounds = _bounds_text(low, high, open_low=open_low, open_high=open_high)
    error = _fail(name, kind + (f" {bounds}" if bounds else ""), value)
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)):
        raise error
    if kind == "an integer":
        if not isinstance(value, numbers.Integral) and not float(value).is_integer():
            raise error
        result: float = int(value)
    else:
        result = float(value)
    if low is not None and (result < low or (open_low and result == low)):
        raise error
    if high is not None and (result > high or (open_high and result == high)):
        raise error
    return result


def choice(name: str, value: Any, choices: Sequence[str], *, optional: bool = False) -> str | None:
    """``value``, which must be one of ``choices``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, "one of " + ", ".join(choices), value)
    return value


def boolean(name: str, value: Any) -> bool:
    """``value`` as a bool (True/False or a numpy bool; not 0/1 or text)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise _fail(name, "True or False", value)


def _bounds_text(low: float | None, high: float | None, *, open_low: bool,
                 open_high: bool) -> str:
    if low is not None and high is not None:
        return (f"in {'(' if open_low else '['}{_num(low)}, {_num(high)}"
                f"{')' if open_high else ']'}")
    if low is not None:
        return f"{'>' if open_low else '>='} {_num(low)}"
    if high is not None:
        return f"{'<' if open_high else '<='} {_num(high)}"
    return ""


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def flag(check: Callable[..., Any], **bounds: Any) -> Callable[[str], Any]:
    """An argparse ``type`` parsing the flag's text as ``check`` expects (int or float)
    and applying it; argparse prefixes its error with the flag's name."""
    import argparse

    wants_int = check is integer

    def parse(text: str) -> Any:
        try:
            value = int(text) if wants_int else float(text)
        except ValueError:
            kind = "an integer" if wants_int else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        try:
            return check("", value, **bounds)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "integer" if wants_int else "number"
    return parse


def resolve_device(name: Any) -> Any:
    """The ``torch.device`` that ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)
    stands for on this machine; an unknown name or a device this PyTorch build or machine
    does not have raises InputError. ``auto`` is the first CUDA GPU when there is one."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise _fail("device", DEVICES, name)
    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        hint = " (did you mean cuda?)" if text.startswith("gpu") else ""
        raise InputError(f"unknown device {name!r}; use {DEVICES}{hint}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this PyTorch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise InputError(f"device {name!r} is not available: {why} (torch "
                             f"{torch.__version__}); use cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {name!r} is not available: this machine has {count} "
                             f"CUDA GPU{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device {name!r} is not available on this machine; use cpu")
        return device
    raise InputError(f"device {name!r} is not supported; use {DEVICES}")
