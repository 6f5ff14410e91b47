"""The CLI on bad input: one line on stderr, exit code 2, no run directory that looks valid.

Each case runs ``softequiv.cli.main`` in-process (fast); one runs the real command in a
subprocess to check the process exit code. The happy path (discover on a CSV, then
predict to .csv and .npz) is here too, to show the same commands do work.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from softequiv.cli import main
from softequiv.data.synthetic import inertia
from softequiv.discover import RUN_FILES, load_run

pytest.importorskip("pyarrow")

X_NAMES = [f"m{i}" for i in range(5)] + [f"r{i}{c}" for i in range(5) for c in "xyz"]
Y_NAMES = [f"I{a}{b}" for a in range(3) for b in range(3)]
REP_IN, REP_OUT, GROUPS = "5*Scalar + 5*Vector", "T(2)", "O(3), O2xy, O2yz, O2xz"


def write_csv(path: Path, A: np.ndarray, names: list[str] | None = None,
              edit: dict[tuple[int, int], str] | None = None) -> Path:
    """A CSV of ``A`` with full-precision values; ``edit`` replaces cells by text."""
    names = names or X_NAMES + Y_NAMES
    rows = [[repr(float(v)) for v in row] for row in A]
    for (i, j), text in (edit or {}).items():
        rows[i][j] = text
    path.write_text("\n".join([",".join(names)] + [",".join(r) for r in rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    data = inertia(n=(60, 30, 30))
    return np.hstack([data.X, data.Y])


@pytest.fixture
def csv_file(tmp_path, table) -> Path:
    return write_csv(tmp_path / "inertia.csv", table)


def discover_args(data: Path | str, out: Path, *extra: str, rep_in: str = REP_IN,
                  rep_out: str = REP_OUT, groups: str = GROUPS, cols: bool = True) -> list[str]:
    args = ["discover", "--data", str(data), "--rep-in", rep_in, "--rep-out", rep_out,
            "--groups", groups, "--epochs", "2", "--ch", "16", "--quiet", "--out", str(out)]
    if cols:
        args += ["--x-cols", "m0:r4z", "--y-cols", "I00:I22"]
    return args + list(extra)


def fails(capsys, args: list[str], *words: str, out: Path | None = None) -> str:
    """``main(args)`` exits 2 with one ``error:`` line naming ``words``, leaving no run."""
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, (code, captured.err)
    lines = captured.err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    if out is not None:
        assert not (out / "report.json").exists()
        assert not out.exists() or not any(out.iterdir()) or (out / "keep.txt").exists()
    return lines[0]


# ----------------------------------------------------------------------------- discover errors


def test_missing_file(capsys, tmp_path):
    fails(capsys, discover_args(tmp_path / "nope.csv", tmp_path / "run"), "file not found",
          "nope.csv", out=tmp_path / "run")


def test_unreadable_directory_path(capsys, tmp_path):
    (tmp_path / "data.csv").mkdir()
    fails(capsys, discover_args(tmp_path / "data.csv", tmp_path / "run"), "not a file",
          out=tmp_path / "run")


@pytest.mark.parametrize("name, content, words", [
    ("data.npz", b"\x00\x01garbage bytes\xff" * 10, ["data.npz", "not a .npz archive"]),
    ("data.npz", b"PK\x03\x04 truncated zip", ["data.npz", "cannot read as .npz"]),
    ("data.csv", b"\xff\xfe\x00garbage\x00\x81", ["data.csv", "not UTF-8"]),
    ("data.csv", b"", ["file is empty"]),
])
def test_unreadable_file_contents(capsys, tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    fails(capsys, discover_args(path, tmp_path / "run", cols=name.endswith(".csv")), *words,
          out=tmp_path / "run")


def test_wrong_extension(capsys, tmp_path, table):
    path = write_csv(tmp_path / "data.txt", table)
    fails(capsys, discover_args(path, tmp_path / "run"), "unsupported file type '.txt'",
          ".npz, .csv, .parquet", out=tmp_path / "run")


def test_non_numeric_column(capsys, tmp_path, table):
    path = write_csv(tmp_path / "d.csv", table, edit={(4, 3): "heavy"})
    fails(capsys, discover_args(path, tmp_path / "run"), "column 'm3' is not numeric",
          "'heavy'", "line 6", out=tmp_path / "run")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", ""])
def test_nan_inf_and_missing_values(capsys, tmp_path, table, text):
    path = write_csv(tmp_path / "d.csv", table, edit={(9, 22): text})
    fails(capsys, discover_args(path, tmp_path / "run"), "Y has NaN, inf or missing values",
          "'I02'", "line 11", out=tmp_path / "run")


def test_nan_in_npz(capsys, tmp_path, table):
    X = table[:, :20].copy()
    X[5, 0] = np.nan
    np.savez(tmp_path / "d.npz", X=X, Y=table[:, 20:])
    fails(capsys, discover_args(tmp_path / "d.npz", tmp_path / "run", cols=False),
          "X has NaN", "row 5", out=tmp_path / "run")


def test_row_counts_differ(capsys, tmp_path, table):
    np.savez(tmp_path / "d.npz", X=table[:, :20], Y=table[:-1, 20:])
    fails(capsys, discover_args(tmp_path / "d.npz", tmp_path / "run", cols=False),
          "X has 120 rows but Y has 119", out=tmp_path / "run")


def test_rep_sizes_do_not_match_width(capsys, tmp_path, csv_file):
    fails(capsys, discover_args(csv_file, tmp_path / "run", rep_in="4*Scalar + 5*Vector"),
          "'4*Scalar + 5*Vector' has size 19 but X has 20 columns", out=tmp_path / "run")
    fails(capsys, discover_args(csv_file, tmp_path / "run", rep_out="T(1)"),
          "has size 3 but Y has 9 columns", out=tmp_path / "run")


def test_unknown_group(capsys, tmp_path, csv_file):
    fails(capsys, discover_args(csv_file, tmp_path / "run", groups="O(3), O2ab"),
          "unknown group 'O2ab'", out=tmp_path / "run")


def test_unknown_rep(capsys, tmp_path, csv_file):
    fails(capsys, discover_args(csv_file, tmp_path / "run", rep_out="Matrix"),
          "unknown rep 'Matrix'", out=tmp_path / "run")


def test_groups_of_different_dimension(capsys, tmp_path, csv_file):
    fails(capsys, discover_args(csv_file, tmp_path / "run", groups="O(3), SE(3)"),
          "same dimension", "R^3", "R^4", out=tmp_path / "run")


def test_too_few_rows_to_split(capsys, tmp_path, table):
    path = write_csv(tmp_path / "d.csv", table[:2])
    fails(capsys, discover_args(path, tmp_path / "run"), "2 rows", "at least 3",
          out=tmp_path / "run")


def test_zero_epochs(capsys, tmp_path, csv_file):
    fails(capsys, discover_args(csv_file, tmp_path / "run", "--epochs", "0"),
          "--epochs", "must be an integer >= 1, got 0", out=tmp_path / "run")


# One bad value per numeric or device flag: one line, exit 2, checked when parsed (before
# any data is read: the data file here does not even exist).
BAD_DISCOVER_FLAGS = [
    ("--epochs", "-3", "integer >= 1"), ("--epochs", "2.5", "must be an integer"),
    ("--lr", "0", "> 0"), ("--lr", "nan", "finite"), ("--batch-size", "0", ">= 1"),
    ("--ch", "0", ">= 1"), ("--layers", "0", ">= 1"), ("--wd", "-1", ">= 0"),
    ("--lambda-init", "-5", ">= 0"), ("--lambda-init", "inf", "finite"),
    ("--t-adj", "0", ">= 1"), ("--window", "0", ">= 1"), ("--p", "-2", ">= 0"),
    ("--patience", "0", ">= 1"), ("--seed", "-1", "in [0, 4294967295]"),
    ("--threads", "0", ">= 1"), ("--threads", "two", "must be an integer"),
    ("--masses", "0", ">= 1"), ("--trajectories", "0", ">= 1"), ("--seconds", "0", "> 0"),
    ("--noise", "inf", "finite"), ("--rule", "best", "invalid choice"),
    ("--method", "svm", "invalid choice"), ("--penalty", "both", "invalid choice"),
    ("--device", "gpu", "unknown device 'gpu'"), ("--device", "tpu", "unknown device"),
]


@pytest.mark.parametrize("flag, value, words", BAD_DISCOVER_FLAGS)
def test_bad_discover_flag(capsys, tmp_path, flag, value, words):
    args = discover_args(tmp_path / "never-read.csv", tmp_path / "run", f"{flag}={value}")
    fails(capsys, args, f"argument {flag}", words, out=tmp_path / "run")


def test_device_cuda_without_cuda(capsys, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = discover_args(tmp_path / "never-read.csv", tmp_path / "run", "--device", "cuda")
    fails(capsys, args, "--device", "'cuda' is not available", "use cpu or auto")
    args = discover_args(tmp_path / "never-read.csv", tmp_path / "run", "--device", "cuda:1")
    fails(capsys, args, "--device", "'cuda:1' is not available")


@pytest.mark.parametrize("extra, words", [
    (["--epochs", "4", "--t-adj", "9"], ["--t-adj", "in [1, 4], got 9"]),
    (["--epochs", "8", "--t-adj", "2", "--window", "3"], ["--window", "in [1, 2], got 3"]),
])
def test_settings_that_depend_on_each_other(capsys, tmp_path, csv_file, extra, words):
    fails(capsys, discover_args(csv_file, tmp_path / "run", *extra), *words,
          out=tmp_path / "run")


@pytest.mark.parametrize("args, words", [
    (["basis", "--group", "O(3)", "--rep-in", "Vector", "--rep-out", "Scalar", "--tol=1"],
     ["argument --tol", "in (0, 1), got 1.0"]),
    (["basis", "--group", "O(3)", "--rep-in", "Vector", "--rep-out", "Scalar", "--tol=-1"],
     ["argument --tol", "in (0, 1)"]),
    (["bench", "--task", "inertia", "--seeds", "0"], ["argument --seeds", ">= 1"]),
    (["bench", "--task", "inertia", "--epochs", "0"], ["argument --epochs", ">= 1"]),
    (["bench", "--task", "inertia", "--workers", "0"], ["argument --workers", ">= 1"]),
    (["bench", "--task", "inertia", "--first-seed", "-1"], ["argument --first-seed", ">= 0"]),
    (["data", "mujoco", "--trajectories", "0"], ["argument --trajectories", ">= 1"]),
    (["data", "mujoco", "--seconds", "-1"], ["argument --seconds", "> 0"]),
    (["data", "mujoco", "--seed", "-1"], ["argument --seed", "in [0, "]),
    (["data", "mujoco", "--env", "cheetah"], ["argument --env", "invalid choice"]),
    (["data", "smoke", "--grid", "4", "--out", "s.npz"], ["argument --grid", ">= 8"]),
    (["data", "smoke", "--steps", "2", "--out", "s.npz"], ["argument --steps", ">= 4"]),
    (["data", "smoke", "--k", "0", "--out", "s.npz"], ["argument --k", ">= 1"]),
    (["data", "smoke", "--level", "5", "--out", "s.npz"], ["argument --level", "in [0, 4]"]),
    (["data", "smoke", "--asymmetry", "nan", "--out", "s.npz"], ["argument --asymmetry",
                                                                   "finite"]),
    (["data", "smoke", "--seed", "-2", "--out", "s.npz"], ["argument --seed"]),
])
def test_bad_flags_of_other_commands(capsys, args, words):
    fails(capsys, args, *words)


def test_basis_tol_in_range_is_correct(capsys):
    assert main(["basis", "--group", "O(3)", "--rep-in", "Vector", "--rep-out", "Scalar",
                 "--json", "--tol", "0.5"]) == 0
    assert '"dim": 0' in capsys.readouterr().out  # O(3) has no invariant linear functional


def test_zero_refit_steps(capsys, tmp_path, csv_file):
    fails(capsys, discover_args(csv_file, tmp_path / "run", "--refit-steps", "0"),
          "--refit-steps", "must be an integer >= 1, got 0", out=tmp_path / "run")


def test_existing_output_directory(capsys, tmp_path, csv_file):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    fails(capsys, discover_args(csv_file, out), "not empty", "--overwrite", out=out)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_bad_arguments(capsys, tmp_path, csv_file):
    fails(capsys, ["discover", "--data", str(csv_file)], "required", "--out")
    fails(capsys, ["discover", "--dataset", "inertia", "--out", str(tmp_path / "r"),
                   "--bogus"], "unrecognized arguments")
    fails(capsys, discover_args(csv_file, tmp_path / "run", "--epochs", "three"), "--epochs")
    fails(capsys, discover_args(csv_file, tmp_path / "run", cols=False), "x_cols is required")


def test_real_exit_code_in_subprocess(tmp_path):
    args = discover_args(tmp_path / "missing.csv", tmp_path / "run")
    proc = subprocess.run([sys.executable, "-m", "softequiv.cli", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: file not found")
    assert proc.stdout == "" and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- happy path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, table):
    """discover on a CSV (tiny: 3 epochs, ch 16), shared by the predict tests."""
    root = tmp_path_factory.mktemp("run")
    csv_path = write_csv(root / "inertia.csv", table)
    out = root / "run"
    code = main(discover_args(csv_path, out, "--epochs", "3"))
    assert code == 0
    return csv_path, out


def test_discover_on_csv(trained_run):
    _, out = trained_run
    assert all((out / name).is_file() for name in RUN_FILES)
    config = load_run(out).config
    assert config["dataset_info"]["y_names"] == Y_NAMES
    assert config["dataset_info"]["x_names"] == X_NAMES


def test_discover_prints_the_table(capsys, tmp_path, csv_file):
    assert main(discover_args(csv_file, tmp_path / "run", "--epochs", "1")) == 0
    printed = capsys.readouterr().out
    assert "O2xy" in printed and "ranking (most respected first)" in printed
    assert "wrote" in printed and (tmp_path / "run" / "report.json").is_file()


def test_predict_to_csv_and_npz(capsys, tmp_path, trained_run, table):
    csv_path, run = trained_run
    expected = load_run(run).predict(table[:, :20])
    assert main(["predict", "--model", str(run), "--data", str(csv_path),
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert "wrote 120 predictions of 9 columns" in capsys.readouterr().out
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == ",".join(Y_NAMES) and len(lines) == 121
    from_csv = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert np.array_equal(from_csv, expected)
    # .npz input: X only (Y, if present, is ignored); explicit --x-cols on a CSV
    np.savez(tmp_path / "x.npz", X=table[:, :20])
    assert main(["predict", "--model", str(run), "--data", str(tmp_path / "x.npz"),
                 "--out", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz") as archive:
        assert np.array_equal(archive["Y"], expected)
    assert main(["predict", "--model", str(run), "--data", str(csv_path), "--x-cols",
                 "m0:r4z", "--out", str(tmp_path / "p.npz"), "--overwrite"]) == 0
    with np.load(tmp_path / "p.npz") as archive:
        assert np.array_equal(archive["Y"], expected)


def test_predict_errors(capsys, tmp_path, trained_run, table):
    csv_path, run = trained_run
    out = tmp_path / "p.csv"

    def predict(*args: str) -> list[str]:
        return ["predict", "--model", str(run), "--data", str(csv_path), "--out", str(out),
                *args]

    fails(capsys, ["predict", "--model", str(tmp_path), "--data", str(csv_path), "--out",
                   str(out)], "not a softequiv run directory")
    fails(capsys, predict("--x-cols", "m0:r4y"), "expects 20 input columns", "X has 19")
    fails(capsys, predict("--x-cols", "m0:q9"), "unknown column 'q9'")
    fails(capsys, ["predict", "--model", str(run), "--data", str(csv_path), "--out",
                   str(tmp_path / "p.txt")], ".npz or .csv")
    np.savez(tmp_path / "x.npz", Y=table[:, 20:])
    fails(capsys, ["predict", "--model", str(run), "--data", str(tmp_path / "x.npz"),
                   "--out", str(out)], "no array 'X'")
    np.savez(tmp_path / "x.npz", X=table[:, :20])
    fails(capsys, ["predict", "--model", str(run), "--data", str(tmp_path / "x.npz"),
                   "--x-cols", "0:20", "--out", str(out)], "x_cols applies to .csv")
    bad = write_csv(tmp_path / "bad.csv", table, edit={(0, 0): "inf"})
    fails(capsys, ["predict", "--model", str(run), "--data", str(bad), "--out", str(out)],
          "X has NaN, inf", "'m0'", "line 2")
    other = write_csv(tmp_path / "other.csv", table, names=[f"c{j}" for j in range(29)])
    fails(capsys, ["predict", "--model", str(run), "--data", str(other), "--out", str(out)],
          "unknown column 'm0'", "pass --x-cols")
    assert not out.exists()
    out.write_text("old")
    fails(capsys, predict(), "exists", "--overwrite")
    assert out.read_text() == "old"


def test_data_mujoco_writes_a_file(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mujoco")
    monkeypatch.setenv("SOFTEQUIV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ant.npz"
    assert main(["data", "mujoco", "--trajectories", "3", "--seconds", "1.2", "--out",
                 str(out)]) == 0
    with np.load(out) as data:
        assert data["positions"].shape[:2] == (3, 13)


def test_bench_rejects_unknown_task(capsys):
    assert main(["bench", "--task", "nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_discover_uses_one_default_rule_unless_the_user_sets_one(tmp_path):
    from softequiv.cli import _train_config, build_parser

    data = inertia(n=(10, 5, 5))
    parser = build_parser()
    base = ["discover", "--dataset", "inertia", "--out", str(tmp_path / "run")]
    config = _train_config(parser.parse_args(base), data).resolved()
    assert (config.rule, config.p) == ("error", 2.0)
    config = _train_config(parser.parse_args(base + ["--rule", "gradient", "--p", "3"]),
                           data).resolved()
    assert (config.rule, config.p) == ("gradient", 3.0)


def test_a_cli_run_on_a_csv_loads_as_an_estimator_with_column_names(trained_run, table):
    pd = pytest.importorskip("pandas")
    from softequiv import SymmetryRegressor

    _, run = trained_run
    est = SymmetryRegressor.load(run)
    assert list(est.feature_names_in_) == X_NAMES
    frame = pd.DataFrame(table[:, :20], columns=X_NAMES)
    expected = load_run(run).predict(table[:, :20])
    assert np.array_equal(est.predict(frame[X_NAMES[::-1]]), expected)
