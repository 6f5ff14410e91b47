"""Spec strings: the documented examples parse, errors are one-line InputErrors naming the
offending token, and no input makes the parser raise anything else."""

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softequiv import groups as G
from softequiv.cli import main
from softequiv.errors import InputError
from softequiv.reps import Scalar, T, Vector
from softequiv.spec import parse_group, parse_groups, parse_rep


@pytest.mark.parametrize("text,cls,d", [
    ("O(3)", G.O, 3), ("SO(3)", G.SO, 3), ("Embed(O(2), 3, [0, 1])", G.Embed, 3),
    ("O2xy", G.Embed, 3), ("Union(SO(3), Scaling(3))", G.Union, 3),
    ("SO(3)*S(4)", G.DirectProduct, 7), ("SE(3)", G.SE, 4), ("Lorentz", G.Lorentz, 4),
    ("O(1,3)", G.Lorentz, 4), ("SO+(1,3)", G.SO13p, 4), ("Sp(2)", G.Sp, 4), ("Z(5)", G.Z, 5),
    ("GL(2)", G.GL, 2), ("Trivial(3)", G.Trivial, 3), (" Rot(3) ", G.Rot, 4),
])
def test_group_examples(text, cls, d):
    group = parse_group(text)
    assert isinstance(group, cls) and group.d == d and group.name == text.strip()


def test_embedded_plane_equals_shorthand():
    assert parse_group("Embed(O(2), 3, [0, 1])").key == G.O2xy().key


@pytest.mark.parametrize("text,expected", [
    ("5*Scalar + 5*Vector", 5 * Scalar + 5 * Vector), ("T(2)", T(2)), ("T(1,1)", T(1, 1)),
    ("3*Vector + T(2)", 3 * Vector + T(2)), ("V*V", T(2)), ("(V + Scalar)**2", T(2) + 2 * Vector
                                                              + Scalar),
    ("2*3*Vector", 6 * Vector), ("Dual", T(0, 1)),
])
def test_rep_examples(text, expected):
    assert parse_rep(text) == expected


@pytest.mark.parametrize("text,token", [
    ("Foo(3)", "'Foo'"), ("O(3", "end of input"), ("O(3))", "')'"), ("O(x)", "'x'"),
    ("O(0)", "'0'"), ("Embed(O(2), 3, [0, 7])", "axes"), ("Union(O(3), O(2))", "same dimension"),
    ("O", "needs arguments"), ("SO(3) $", "'$'"),
])
def test_group_errors_name_the_token(text, token):
    with pytest.raises(InputError, match=None) as info:
        parse_group(text)
    message = str(info.value)
    assert token in message and "\n" not in message


@pytest.mark.parametrize("text,token", [
    ("5*Scalr", "'Scalr'"), ("5*", "end of input"), ("T(2", "end of input"), ("2*3", "'2'"),
    ("Vector @ V", "'@'"), ("", "empty"), ("T(9)", "ranks"), ("V**x", "'x'"),
])
def test_rep_errors_name_the_token(text, token):
    with pytest.raises(InputError) as info:
        parse_rep(text)
    assert token in str(info.value) and "\n" not in str(info.value)


def test_group_lists_split_at_top_level_and_check_dimensions():
    groups = parse_groups("O(3), O2xy, Embed(O(2), 3, [1, 2])")
    assert [g.name for g in groups] == ["O(3)", "O2xy", "Embed(O(2), 3, [1, 2])"]
    with pytest.raises(InputError, match="same dimension"):
        parse_groups("O(3), SE(3)")


ALPHABET = st.sampled_from(list("OSETVZ()[],*+ 0123456789") + ["Scalar", "Vector", "Union",
                                                               "Embed", "O2xy", "**", "SO+"])


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=14).map("".join))
def test_parsers_never_crash(text):
    for parse in (parse_group, parse_rep):
        try:
            parse(text)
        except InputError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.sampled_from(["Scalar", "Vector", "T(2)",
                                                                "T(1,1)"])), min_size=1,
                max_size=5))
def test_rep_round_trips_through_its_string(parts):
    rep = parse_rep(" + ".join(f"{m}*{name}" for m, name in parts))
    assert parse_rep(str(rep)) == rep


def test_cli_basis_json(capsys):
    assert main(["basis", "--group", "SO(3)", "--rep-in", "5*Scalar+5*Vector", "--rep-out",
                 "T(2)", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dim"] == 10 and out["size"] == 180 and out["seconds"] >= 0


def test_cli_bad_arguments_exit_2_with_one_line():
    run = subprocess.run([sys.executable, "-m", "softequiv.cli", "basis", "--group", "Foo(3)",
                          "--rep-in", "V", "--rep-out", "V"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "'Foo'" in run.stderr
