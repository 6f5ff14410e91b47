"""The one exception type users see for bad input."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (a shape, a name, a file, a value), described in one line.

    The CLI prints the message alone and exits with code 2; library callers can catch it
    like any ``ValueError``.
    """


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong kind (e.g. an entry that is not a number): both an
    :class:`InputError` and a ``TypeError``, so either ``except`` clause catches it."""
