"""Write outputs so that a failed or interrupted command never destroys an earlier result.

Everything softequiv writes (run directories, predictions, benchmark results, the README
tables, generated data) is first written to a hidden temporary sibling of its final path
(same directory, hence same file system) and moved into place only once complete. A
crash, an exception or Ctrl-C before that point leaves the previous file or directory
exactly as it was and removes the partial sibling; a process killed outright (SIGKILL)
may leave a hidden ``.NAME.partial-*`` sibling behind, never a damaged output.

Files are replaced with one ``os.replace`` (atomic on POSIX and Windows). A directory
cannot be replaced by a rename while the old one is non-empty, so the old directory is
first renamed aside, the new one renamed into place, and only then the old one deleted;
interrupt signals are held back during those two renames, and a failed second rename
puts the old directory back. Outputs get ordinary permissions (0666/0777 minus the
umask) rather than the private 0600/0700 of temporary files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_directory", "atomic_file", "atomic_path", "write_json", "write_text"]

_SIGNALS = {getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
            if hasattr(signal, name)}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _partial_name(path: Path) -> str:
    return f".{path.name}.partial-"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file path next to ``path``; on success it replaces ``path``.

    For writers that want a file name (``np.savez``, ``savefig``, safetensors). On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_partial_name(path), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` that only replaces ``path`` once the block completes."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | Path, value: Any, **kwargs: Any) -> None:
    """Replace ``path`` by ``value`` as JSON atomically (``kwargs`` go to ``json.dumps``)."""
    write_text(path, json.dumps(value, **kwargs))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A fresh temporary directory next to ``path``; on success it replaces ``path``.

    Whatever ``path`` held before (an earlier run) stays intact and readable until the
    new directory is complete; on any exception (Ctrl-C included) the temporary
    directory is deleted and ``path`` is untouched. The parent directory is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_partial_name(path), dir=path.parent))
    try:
        yield tmp
        _normalize_modes(tmp)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _normalize_modes(directory: Path) -> None:
    """Ordinary permissions for a finished output directory and its files."""
    mask = _umask()
    os.chmod(directory, 0o777 & ~mask)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGINT/SIGTERM/SIGHUP (delivered right after the block) where possible."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _swap_into_place(new: Path, path: Path) -> None:
    """Rename ``new`` to ``path``; an existing ``path`` is moved aside, then deleted."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    old.rmdir()
    with _signals_held():
        os.replace(path, old)
        try:
            os.replace(new, path)
        except BaseException:
            os.replace(old, path)
            raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
