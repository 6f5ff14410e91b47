"""Loading, validating and saving user data files (softequiv.data.files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import fails
from hypothesis import given, settings
from hypothesis import strategies as st

from softequiv.data.files import (
    LoadedTable,
    load_table,
    parse_split,
    resolve_columns,
    save_predictions,
    split_rows,
    validate_arrays,
)
from softequiv.errors import InputError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")




def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sample(n: int = 12, dx: int = 4, dy: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dx)), rng.standard_normal((n, dy))


def write_numeric_csv(path: Path, A: np.ndarray, names: list[str], extra: dict | None = None):
    """A CSV of ``A`` with full-precision values (repr round-trips float64 exactly)."""
    extra = extra or {}
    lines = [",".join(names + list(extra))]
    for i, row in enumerate(A):
        lines.append(",".join([repr(float(v)) for v in row] + [str(extra[k][i]) for k in extra]))
    return write_text(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- round trips


def test_npz_round_trip_with_int_split(tmp_path):
    X, Y = sample()
    split = np.array([0, 1, 2] * 4)
    np.savez(tmp_path / "d.npz", X=X, Y=Y, split=split)
    t = load_table(tmp_path / "d.npz")
    assert isinstance(t, LoadedTable)
    assert np.array_equal(t.X, X) and np.array_equal(t.Y, Y)
    assert t.X.dtype == np.float64 and t.split.dtype == np.int8
    assert np.array_equal(t.split, split)
    assert t.x_names == ["x0", "x1", "x2", "x3"] and t.y_names == ["y0", "y1"]


def test_npz_one_d_arrays_string_split_and_int_values(tmp_path):
    X = np.arange(6, dtype=np.int32)
    Y = np.linspace(0, 1, 6)
    split = np.array(["train", "Train", " valid", "test", "train", "test"])
    np.savez(tmp_path / "d.npz", X=X, Y=Y, split=split)
    t = load_table(str(tmp_path / "d.npz"))
    assert t.X.shape == (6, 1) and t.Y.shape == (6, 1) and t.X.dtype == np.float64
    assert t.split.tolist() == [0, 0, 1, 2, 0, 2]


def test_npz_without_split(tmp_path):
    X, Y = sample()
    np.savez(tmp_path / "d.npz", X=X, Y=Y)
    assert load_table(tmp_path / "d.npz").split is None


def test_csv_round_trip_with_ranges_and_split(tmp_path):
    X, Y = sample(n=9, dx=5, dy=2)
    names = [f"x{j}" for j in range(5)] + ["y0", "y1"]
    split = ["train", "valid", "test"] * 3
    path = write_numeric_csv(tmp_path / "d.csv", np.hstack([X, Y]), names, {"split": split})
    t = load_table(path, x_cols="x0:x4", y_cols="5:7")
    assert np.array_equal(t.X, X) and np.array_equal(t.Y, Y)
    assert t.x_names == names[:5] and t.y_names == ["y0", "y1"]
    assert t.split.tolist() == [0, 1, 2] * 3
    # Mixed items keep the order given; a bare integer is a position.
    t = load_table(path, x_cols="x3, 0:2 ,4", y_cols="y1,y0")
    assert np.array_equal(t.X, X[:, [3, 0, 1, 4]]) and np.array_equal(t.Y, Y[:, [1, 0]])
    t = load_table(path, x_cols=":5", y_cols="5:")  # 5: reaches the split column, skipped
    assert np.array_equal(t.X, X) and np.array_equal(t.Y, Y)


def test_csv_split_column_in_the_middle_numeric_split_and_bom(tmp_path):
    text = "\ufeffa,split,b,c\n1,0,2,3\n4,1,5,6\n7,2,8,9\n"
    path = write_text(tmp_path / "d.csv", text)
    t = load_table(path, x_cols="a", y_cols="b:c")
    assert t.X.tolist() == [[1], [4], [7]] and t.Y.tolist() == [[2, 3], [5, 6], [8, 9]]
    assert t.split.tolist() == [0, 1, 2]


def test_csv_without_split_and_ignored_text_column(tmp_path):
    path = write_text(tmp_path / "d.csv", "id,a,b\nfoo,1,2\nbar,3,4\n")
    t = load_table(path, x_cols="a", y_cols="b")
    assert t.split is None and t.X.tolist() == [[1], [3]]


def test_parquet_round_trip(tmp_path):
    X, Y = sample(n=6, dx=3, dy=1)
    table = pa.table(
        {
            "p": X[:, 0],
            "q": X[:, 1],
            "r": X[:, 2],
            "n": np.arange(6, dtype=np.int64),
            "split": ["train", "train", "valid", "valid", "test", "test"],
            "target": Y[:, 0],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    t = load_table(tmp_path / "d.parquet", x_cols="p:r,n", y_cols="target")
    assert np.array_equal(t.X[:, :3], X) and t.X[:, 3].tolist() == list(range(6))
    assert np.array_equal(t.Y, Y) and t.split.tolist() == [0, 0, 1, 1, 2, 2]
    assert t.x_names == ["p", "q", "r", "n"]


def test_parquet_integer_split_and_numeric_text(tmp_path):
    table = pa.table({"a": ["1.5", "2", "3"], "b": [1.0, 2.0, 3.0], "split": [0, 1, 2]})
    pq.write_table(table, tmp_path / "d.parquet")
    t = load_table(tmp_path / "d.parquet", x_cols="0", y_cols="1")
    assert t.X.tolist() == [[1.5], [2.0], [3.0]] and t.split.tolist() == [0, 1, 2]


def test_save_predictions_round_trip(tmp_path):
    Y = np.random.default_rng(1).standard_normal((7, 3))
    save_predictions(tmp_path / "p.npz", Y)
    assert np.array_equal(np.load(tmp_path / "p.npz")["Y"], Y)
    save_predictions(tmp_path / "p.csv", Y)
    t = load_table(tmp_path / "p.csv", x_cols="y0", y_cols="y1:y2")
    assert np.array_equal(np.hstack([t.X, t.Y]), Y)
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "y0,y1,y2"
    save_predictions(tmp_path / "n.csv", Y[:, :2], names=["a,b", "c"])
    assert (tmp_path / "n.csv").read_text().splitlines()[0] == '"a,b",c'
    t = load_table(tmp_path / "n.csv", x_cols="a,b", y_cols="c")  # whole spec is a name
    assert np.array_equal(t.X[:, 0], Y[:, 0]) and np.array_equal(t.Y[:, 0], Y[:, 1])
    save_predictions(tmp_path / "one.npz", Y[:, 0])
    assert np.load(tmp_path / "one.npz")["Y"].shape == (7, 1)


def test_save_predictions_errors(tmp_path):
    Y = np.zeros((3, 2))
    fails(lambda: save_predictions(tmp_path / "p.txt", Y), ".npz", ".csv")
    fails(lambda: save_predictions(tmp_path / "p.csv", Y, names=["a"]), "1 names", "2")
    fails(lambda: save_predictions(tmp_path / "nodir" / "p.csv", Y), "does not exist")
    fails(lambda: save_predictions(tmp_path / "p.npz", np.zeros((2, 2, 2))), "2-D")


# ----------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path):
    fails(lambda: load_table(tmp_path / "nope.csv", x_cols="a", y_cols="b"), "not found")


def test_unreadable_file(tmp_path):
    (tmp_path / "dir.npz").mkdir()
    fails(lambda: load_table(tmp_path / "dir.npz"), "not a file")
    write_text(tmp_path / "junk.npz", "this is not a zip archive")
    fails(lambda: load_table(tmp_path / "junk.npz"), "junk.npz", "not a .npz")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04broken")
    fails(lambda: load_table(tmp_path / "cut.npz"), "cut.npz", "cannot read")
    write_text(tmp_path / "junk.parquet", "not parquet either")
    fails(lambda: load_table(tmp_path / "junk.parquet", x_cols="a", y_cols="b"), "Parquet")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81garbage\n")
    fails(lambda: load_table(tmp_path / "bin.csv", x_cols="a", y_cols="b"), "UTF-8")
    if os.name == "posix" and os.geteuid() != 0:
        locked = write_text(tmp_path / "locked.csv", "a,b\n1,2\n")
        locked.chmod(0)
        fails(lambda: load_table(locked, x_cols="a", y_cols="b"), "cannot read")


def test_wrong_extension(tmp_path):
    path = write_text(tmp_path / "d.txt", "a,b\n1,2\n")
    fails(lambda: load_table(path), "'.txt'", ".npz, .csv, .parquet")


def test_empty_files(tmp_path):
    path = write_text(tmp_path / "e.csv", "")
    fails(lambda: load_table(path, x_cols="a", y_cols="b"), "empty")
    path = write_text(tmp_path / "h.csv", "a,b\n")
    fails(lambda: load_table(path, x_cols="a", y_cols="b"), "no data rows")
    path = write_text(tmp_path / "blank.csv", "\n\n")
    fails(lambda: load_table(path, x_cols="a", y_cols="b"), "no header")
    np.savez(tmp_path / "z.npz", X=np.zeros((0, 2)), Y=np.zeros((0, 1)))
    fails(lambda: load_table(tmp_path / "z.npz"), "no rows")


def test_ragged_csv(tmp_path):
    path = write_text(tmp_path / "r.csv", "a,b\n1,2\n3\n")
    fails(lambda: load_table(path, x_cols="a", y_cols="b"), "cannot parse", "columns")


def test_unknown_column_and_out_of_range(tmp_path):
    path = write_text(tmp_path / "d.csv", "a,b,c\n1,2,3\n")
    fails(lambda: load_table(path, x_cols="a,zz", y_cols="c"), "unknown column 'zz'", "x_cols")
    fails(lambda: load_table(path, x_cols="a", y_cols="a:zz"), "unknown column 'zz'", "y_cols")
    fails(lambda: load_table(path, x_cols="0:4", y_cols="c"), "'0:4'", "out of range", "3 columns")
    fails(lambda: load_table(path, x_cols="7", y_cols="c"), "position 7", "out of range")
    pq.write_table(pa.table({"a": [1.0], "b": [2.0]}), tmp_path / "d.parquet")
    fails(lambda: load_table(tmp_path / "d.parquet", x_cols="a", y_cols="q"), "unknown column 'q'")


def test_selection_mistakes(tmp_path):
    path = write_text(tmp_path / "d.csv", "a,b,c,split\n1,2,3,train\n")
    fails(lambda: load_table(path, x_cols="a,a", y_cols="c"), "'a'", "twice")
    fails(lambda: load_table(path, x_cols="a:b", y_cols="b"), "'b'", "both")
    fails(lambda: load_table(path, x_cols="a", y_cols="split"), "split", "y_cols")
    t = load_table(path, x_cols="a", y_cols="c:split")  # ranges skip the split column
    assert t.y_names == ["c"] and t.split.tolist() == [0]
    fails(lambda: load_table(path, x_cols="c:a", y_cols="b"), "ends before")
    fails(lambda: load_table(path, x_cols="2:1", y_cols="b"), "no columns")
    fails(lambda: load_table(path, x_cols="a,,b", y_cols="c"), "empty item")
    fails(lambda: load_table(path, x_cols="a", y_cols=None), "y_cols", "required")
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 1)), Y=np.zeros((3, 1)))
    fails(lambda: load_table(tmp_path / "d.npz", x_cols="a"), "x_cols", ".csv")


def test_non_numeric_csv_column(tmp_path):
    path = write_text(tmp_path / "d.csv", "a,b,c\n1,2,3\n4,5,6\n7,8,abc\n9,1,2\n")
    fails(
        lambda: load_table(path, x_cols="a,b", y_cols="c"), "'c'", "not numeric", "'abc'", "line 4"
    )


def test_non_numeric_parquet_and_npz(tmp_path):
    table = pa.table({"a": [1.0, 2.0, 3.0], "b": ["1", "x2", "3"]})
    pq.write_table(table, tmp_path / "d.parquet")
    fails(
        lambda: load_table(tmp_path / "d.parquet", x_cols="a", y_cols="b"), "'b'", "'x2'", "row 1"
    )
    table = pa.table({"a": [1.0], "t": pa.array([0], pa.timestamp("s"))})
    pq.write_table(table, tmp_path / "t.parquet")
    fails(lambda: load_table(tmp_path / "t.parquet", x_cols="a", y_cols="t"), "'t'", "timestamp")
    np.savez(tmp_path / "s.npz", X=np.array([["1", "2"], ["3", "oops"]]), Y=np.zeros(2))
    fails(lambda: load_table(tmp_path / "s.npz"), "'X'", "column 1", "'oops'", "row 1")
    np.savez(tmp_path / "c.npz", X=np.zeros((2, 2), complex), Y=np.zeros(2))
    fails(lambda: load_table(tmp_path / "c.npz"), "'X'", "complex")


def test_nan_and_inf(tmp_path):
    path = write_text(tmp_path / "d.csv", "a,b,c\n1,2,3\n4,,6\n7,inf,NaN\n1,2,3\n")
    fails(
        lambda: load_table(path, x_cols="a:b", y_cols="c"),
        "X",
        "2 rows",
        "'b' (2 values, first at line 3)",
    )
    fails(
        lambda: load_table(path, x_cols="a", y_cols="c"), "Y", "in 1 row:", "'c' (1 value", "line 4"
    )
    X, Y = sample()
    Y[3, 1] = np.inf
    np.savez(tmp_path / "d.npz", X=X, Y=Y)
    fails(lambda: load_table(tmp_path / "d.npz"), "Y has NaN, inf", "1 row", "'y1'", "row 3")


def test_npz_row_counts_differ(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((5, 2)), Y=np.zeros((4, 1)))
    fails(lambda: load_table(tmp_path / "d.npz"), "X has 5 rows but Y has 4")


def test_npz_wrong_dimensionality(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3, 4)), Y=np.zeros(2))
    fails(lambda: load_table(tmp_path / "d.npz"), "'X'", "1-D, 2-D or 4-D", "(2, 3, 4)")


def test_npz_missing_array(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3)), y=np.zeros(2))
    fails(lambda: load_table(tmp_path / "d.npz"), "no array 'Y'", "X, y")
    np.savez(tmp_path / "e.npz", inputs=np.zeros((2, 3)))
    fails(lambda: load_table(tmp_path / "e.npz"), "no array 'X'")
    np.save(tmp_path / "f.npy", np.zeros(3))
    os.replace(tmp_path / "f.npy", tmp_path / "f.npz")
    fails(lambda: load_table(tmp_path / "f.npz"), "single array")
    np.savez(tmp_path / "o.npz", X=np.array([{"a": 1}], dtype=object), Y=np.zeros(1))
    fails(lambda: load_table(tmp_path / "o.npz"), "'X'", "cannot read")


def test_bad_split_values(tmp_path):
    X, Y = sample(n=4)
    np.savez(tmp_path / "d.npz", X=X, Y=Y, split=np.array([0, 1, 5, 2]))
    fails(lambda: load_table(tmp_path / "d.npz"), "bad split value 5", "row 2", "train/valid/test")
    np.savez(tmp_path / "e.npz", X=X, Y=Y, split=np.array([0, 1, 2]))
    fails(lambda: load_table(tmp_path / "e.npz"), "split has 3 entries", "4 rows")
    path = write_text(tmp_path / "d.csv", "a,b,split\n1,2,train\n3,4,foo\n5,6,test\n")
    fails(lambda: load_table(path, x_cols="a", y_cols="b"), "'foo'", "line 3")
    path = write_text(tmp_path / "m.csv", "a,b,split\n1,2,train\n3,4,\n5,6,test\n")
    fails(lambda: load_table(path, x_cols="a", y_cols="b"), "split is missing", "line 3")
    fails(lambda: parse_split(np.array([0.0, 1.5])), "1.5")
    fails(lambda: parse_split(np.zeros((2, 2), dtype=int)), "1-D")


# ----------------------------------------------------------------------------- validate_arrays


def test_validate_arrays_accepts_good_input():
    X, Y = sample()
    assert validate_arrays(X, Y, size_in=4, size_out=2) is None


def test_validate_arrays_width_messages():
    X, Y = sample(dx=19, dy=3)
    fails(
        lambda: validate_arrays(X, Y, size_in=20, rep_in_name="5*Scalar+5*Vector"),
        "rep_in '5*Scalar+5*Vector' has size 20 but X has 19 columns",
    )
    fails(lambda: validate_arrays(X, Y, size_out=1), "rep_out has size 1 but Y has 3 columns")


def test_validate_arrays_shape_rows_and_values():
    X, Y = sample()
    fails(lambda: validate_arrays(X[:, 0], Y), "X must be 2-D", "(12,)")
    fails(lambda: validate_arrays(X, Y[:5]), "X has 12 rows but Y has 5")
    fails(lambda: validate_arrays(X[:2], Y[:2]), "2 rows", "at least 3")
    fails(lambda: validate_arrays(X.astype(str), Y), "X", "real numbers")
    fails(lambda: validate_arrays(X[:, :0], Y), "X has no columns")
    X = X.copy()
    X[[1, 4], 2] = np.nan
    fails(lambda: validate_arrays(X, Y), "X has NaN, inf", "2 rows", "column 2", "row 1")


# ----------------------------------------------------------------------------- split_rows


def test_split_rows_given_split():
    split = np.array([0, 0, 1, 2], dtype=np.int8)
    assert split_rows(4, split, seed=0).tolist() == [0, 0, 1, 2]
    assert split_rows(3, np.array(["test", "valid", "train"]), seed=0).tolist() == [2, 1, 0]
    fails(lambda: split_rows(4, np.array([0, 0, 2, 2]), seed=0), "no valid rows")
    fails(lambda: split_rows(5, split, seed=0), "4 entries", "5 rows")


def test_split_rows_random():
    a = split_rows(100, None, seed=3)
    assert a.dtype == np.int8 and np.bincount(a).tolist() == [60, 20, 20]
    assert np.array_equal(a, split_rows(100, None, seed=3))
    assert not np.array_equal(a, split_rows(100, None, seed=4))
    for n in (3, 4, 5, 7):
        assert (np.bincount(split_rows(n, None, seed=0), minlength=3) >= 1).all()
    counts = np.bincount(split_rows(4, None, seed=0, fractions=(0.02, 0.49, 0.49)))
    assert counts.min() >= 1


def test_split_rows_too_few_rows():
    fails(lambda: split_rows(2, None, seed=0), "2 rows", "at least 3")
    fails(lambda: split_rows(10, None, seed=0, fractions=(0.5, 0.5, 0.0)), "fractions")


# ----------------------------------------------------------------------------- grammar

NAMES = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,4}", fullmatch=True), min_size=1, max_size=12, unique=True
)


@st.composite
def selections(draw):
    """A header, a selection string over it and the positions it should select."""
    header = draw(NAMES)
    n = len(header)
    items, expected = [], []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["name", "names", "positions", "position"]))
        i = draw(st.integers(0, n - 1))
        j = draw(st.integers(i, n - 1))
        if kind == "name":
            items.append(header[i])
            expected.append(i)
        elif kind == "names":
            items.append(f"{header[i]}:{header[j]}")
            expected.extend(range(i, j + 1))
        elif kind == "positions":
            start = "" if i == 0 and draw(st.booleans()) else str(i)
            stop = "" if j == n - 1 and draw(st.booleans()) else str(j + 1)
            items.append(f"{start}:{stop}")
            expected.extend(range(i, j + 1))
        else:
            items.append(str(i))
            expected.append(i)
    spaced = [draw(st.sampled_from(["", " "])) + item for item in items]
    return header, ",".join(spaced), expected


@settings(max_examples=200, deadline=None)
@given(selections())
def test_resolve_columns_matches_the_grammar(case):
    header, spec, expected = case
    if len(set(expected)) == len(expected):
        assert resolve_columns(spec, header) == expected
    else:
        fails(lambda: resolve_columns(spec, header), "twice")


@settings(max_examples=200, deadline=None)
@given(NAMES, st.text(alphabet="abxyz019:, _-", max_size=12))
def test_resolve_columns_only_ever_raises_input_error(header, spec):
    try:
        positions = resolve_columns(spec, header, option="y_cols")
    except InputError as e:
        assert "\n" not in str(e)
    else:
        assert positions and all(0 <= i < len(header) for i in positions)
        assert len(set(positions)) == len(positions)
