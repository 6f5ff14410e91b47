"""Checks of built-in dataset options: a bad value is one line naming the option."""

from __future__ import annotations

from collections.abc import Sequence

from softequiv.errors import InputError

__all__ = ["choice_option", "integer_option"]


def integer_option(value: object, what: str, low: int) -> int:
    """``value`` as an int of at least ``low`` (whole floats and digit strings accepted)."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be an integer, got {value!r}")
    try:
        out = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be an integer, got {value!r}") from None
    if isinstance(value, float) and out != value:
        raise InputError(f"{what} must be an integer, got {value!r}")
    if out < low:
        raise InputError(f"{what} must be at least {low}, got {value!r}")
    return out


def choice_option(value: object, choices: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise InputError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)
