"""Outputs are never lost: every command writes into a temporary sibling and renames it
into place only when complete (softequiv.atomic), so a failed or interrupted run, with
--overwrite too, leaves the previous run intact and loadable. Also the CLI's outputs:
the "wrote" line, file modes, --version and the help text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import softequiv
from softequiv import atomic
from softequiv.cli import build_parser, main
from softequiv.data.synthetic import inertia
from softequiv.discover import RUN_FILES, load_run

FAST = ["--epochs", "2", "--ch", "16", "--layers", "1", "--quiet"]


def discover(out: Path, *extra: str) -> int:
    return main(["discover", "--dataset", "inertia", "--axis", "z", *FAST, "--out", str(out),
                 *extra])


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert discover(out) == 0
    return out


@pytest.fixture
def run_copy(old_run, tmp_path) -> tuple[Path, dict[str, bytes], np.ndarray]:
    """A fresh copy of a finished run, its bytes, and its predictions on a few inputs."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(old_run, out)
    X = inertia(n=(5, 5, 5)).X
    return out, snapshot(out), load_run(out).predict(X)


def assert_intact(run: Path, before: dict[str, bytes], predictions: np.ndarray) -> None:
    assert snapshot(run) == before
    X = inertia(n=(5, 5, 5)).X
    assert np.array_equal(load_run(run).predict(X), predictions)
    assert leftovers(run.parent) == []


# ----------------------------------------------------------------------------- the helper


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_atomic_directory_keeps_the_old_one_on_failure(tmp_path, error):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(type(error)), atomic.atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("new, half written")
        raise error
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    assert (target / "a.txt").read_text() == "old" and leftovers(tmp_path) == []
    with atomic.atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["b.txt"] and leftovers(tmp_path) == []


def test_a_failed_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new directory into place
            raise OSError("simulated failure")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError), atomic.atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "old" and leftovers(tmp_path) == []


def test_atomic_files_replace_only_when_complete(tmp_path):
    path = tmp_path / "r.json"
    atomic.write_json(path, {"v": 1})
    with pytest.raises(ValueError), atomic.atomic_file(path) as handle:
        handle.write('{"v": 2, "trunc')
        raise ValueError("interrupted")
    assert json.loads(path.read_text()) == {"v": 1} and leftovers(tmp_path) == []
    atomic.write_text(path, "new")
    assert path.read_text() == "new"


def test_outputs_get_ordinary_file_modes(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "f.txt", "x")
        with atomic.atomic_directory(tmp_path / "d") as tmp:
            (tmp / "g.txt").write_text("y")
            os.chmod(tmp / "g.txt", 0o600)  # as safetensors or mkstemp would leave it
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "g.txt").stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------- discover


def test_interrupted_overwrite_keeps_the_old_run(run_copy, monkeypatch, capsys):
    """Ctrl-C while the new run is being written (the worst moment): exit 130 and the
    previous run is still there, byte for byte, and loads."""
    out, before, predictions = run_copy

    def interrupted(report, path):
        Path(path).write_bytes(b"half a png")
        raise KeyboardInterrupt

    monkeypatch.setattr("softequiv.discover.plot_levels", interrupted)
    assert discover(out, "--overwrite", "--seed", "1") == 130
    assert "interrupted" in capsys.readouterr().err
    assert_intact(out, before, predictions)


def test_failed_overwrite_keeps_the_old_run(run_copy, monkeypatch, capsys):
    """An error during training (here: divergence) leaves the previous run as it was."""
    from softequiv.errors import InputError

    out, before, predictions = run_copy

    def diverged(problem, config):
        raise InputError("training diverged at epoch 3 (loss nan); try a smaller --lr")

    monkeypatch.setattr("softequiv.discover.fit", diverged)
    assert discover(out, "--overwrite") == 2
    assert "diverged" in capsys.readouterr().err
    assert_intact(out, before, predictions)


def test_real_sigint_during_an_overwrite(run_copy, tmp_path):
    """A real SIGINT delivered to a real ``softequiv discover --overwrite`` process while
    it writes the new run (the signal is sent from inside the writer, so it lands there
    every time). Python's own Ctrl-C handler is installed first: a process started in the
    background by a shell inherits SIGINT ignored."""
    out, before, predictions = run_copy
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal\n"
        "import softequiv.discover as d\n"
        "from softequiv.cli import main\n"
        "real = d.plot_levels\n"
        "def plot(report, path):\n"
        "    real(report, path)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "d.plot_levels = plot\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["discover", "--dataset", "inertia", *FAST, "--seed", "2", "--out", str(out),
            "--overwrite"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "error: interrupted"
    assert_intact(out, before, predictions)


def test_overwrite_replaces_the_run_once_complete(run_copy, capsys):
    out, before, _ = run_copy
    assert discover(out, "--overwrite", "--seed", "3") == 0
    assert snapshot(out) != before and sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert leftovers(out.parent) == []
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == f"wrote {out}/: {', '.join(RUN_FILES)}" and "history.json" in printed


def test_run_files_have_ordinary_modes(old_run):
    mask = os.umask(0o022)
    os.umask(mask)
    for name in RUN_FILES:
        assert (old_run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert old_run.stat().st_mode & 0o777 == 0o777 & ~mask


# ----------------------------------------------------------------------------- predict


def test_failed_predict_overwrite_keeps_the_old_file(old_run, tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "x.npz", X=inertia(n=(4, 4, 4)).X)
    out = tmp_path / "p.csv"
    out.write_text("old predictions\n")

    def broken(path, Y, names):
        Path(path).write_text("y0\n1.0\n")
        raise OSError("No space left on device")

    monkeypatch.setattr("softequiv.data.files.predictions._write_csv", broken)
    args = ["predict", "--model", str(old_run), "--data", str(tmp_path / "x.npz"), "--out",
            str(out), "--overwrite"]
    assert main(args) == 2
    assert "No space left" in capsys.readouterr().err
    assert out.read_text() == "old predictions\n" and leftovers(tmp_path) == []
    monkeypatch.undo()
    assert main(args) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 13 and lines[0].count(",") == 8 and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- the CLI


def test_version_is_one_source(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"softequiv {softequiv.__version__}"
    assert version("softequiv") == softequiv.__version__


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, subsub in _subparsers(sub):
                    yield f"{name} {inner}", subsub


def test_every_option_has_a_sentence_and_its_default():
    import argparse

    parser = build_parser()
    assert "``" not in parser.format_help()
    commands = dict(_subparsers(parser))
    assert {"basis", "discover", "predict", "data", "bench", "data mujoco"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert "``" not in text, name
        for action in sub._actions:
            if not action.option_strings or action.help in (argparse.SUPPRESS, None):
                assert action.help == argparse.SUPPRESS or action.dest == "kind", (name, action)
                continue
            flag = action.option_strings[0]
            assert len(action.help) > 10, (name, flag)
            if flag == "-h" or action.required or isinstance(
                    action, argparse._StoreTrueAction | argparse._StoreFalseAction):
                continue
            help_text = sub._get_formatter()._get_help_string(action)
            assert "default" in help_text or "required" in help_text, (name, flag, help_text)


def test_old_flag_spellings_still_work(tmp_path):
    parser = build_parser()
    base = ["discover", "--dataset", "inertia", "--out", str(tmp_path / "r")]
    assert parser.parse_args(base + ["--group", "O2xy"]).group == "O2xy"
    assert parser.parse_args(base + ["--baseline-group", "2"]).group == "2"
    assert parser.parse_args(base).group == "0"


@pytest.mark.parametrize("sep, word", [(";", "semicolons"), ("\t", "tabs")])
def test_delimiter_hint(tmp_path, capsys, sep, word):
    pytest.importorskip("pyarrow")
    data = inertia(n=(4, 4, 4))
    names = [f"m{i}" for i in range(5)] + [f"r{i}{a}" for i in range(5) for a in "xyz"]
    names += [f"I{i}{j}" for i in range(3) for j in range(3)]
    path = tmp_path / "d.csv"
    rows = [sep.join(names)] + [sep.join(map(repr, row)) for row in
                                np.hstack([data.X, data.Y]).tolist()]
    path.write_text("\n".join(rows) + "\n")
    code = main(["discover", "--data", str(path), "--x-cols", "m0:r4z", "--y-cols", "I00:I22",
                 "--rep-in", "5*Scalar + 5*Vector", "--rep-out", "T(2)", "--groups",
                 "O(3), O2xy", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown column 'm0'" in err and f"separated by {word}" in err


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_interrupts_are_held_during_the_swap_and_released_after():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with atomic._signals_held():
        assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
