"""Assertions shared by the test modules."""

import pytest

from softequiv.errors import InputError


def fails(fn, *words: str, kind: type[Exception] = InputError) -> str:
    """``fn`` must raise ``kind`` with a one-line message holding every one of ``words``."""
    with pytest.raises(kind) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message
