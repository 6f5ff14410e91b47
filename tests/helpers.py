"""Assertions and loaders shared by the test modules."""

import importlib.util
from pathlib import Path
from types import ModuleType

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


def benchmark_script(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (not a package) imported as a module, to test its parts."""
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
