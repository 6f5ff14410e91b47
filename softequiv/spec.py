"""Parse group and representation expressions such as ``"O(3)"``, ``"SO(3)*S(4)"`` and
``"5*Scalar + 5*Vector"``, without ``eval``.

Group grammar::

    group   := factor ('*' factor)*                  direct product
    factor  := NAME [ '(' arg (',' arg)* ')' ]
    arg     := group | INT | '[' INT (',' INT)* ']'

Group names: O(n), SO(n), Scaling(n), SE(n), Rot(n), Trans(n), Sp(m), S(n), Z(n), SL(n),
GL(n), Trivial(n), Trans(n, [axes]), Lorentz (also O(1,3)), SO+(1,3) (also SO13p),
Embed(G, d, [axes]),
Union(G, H, ...), O2xy, O2yz, O2xz, SO2xy, and the square lattice's point groups on R^2
(for fields): D4, C4, C2, D2, FlipX, FlipY.

Rep grammar::

    rep     := product ('+' product)*               direct sum
    product := atom ('*' atom)*                      INT * rep is a multiplicity,
    atom    := INT | '(' rep ')' | NAME ['(' INT [',' INT] ')'] ['**' INT]

Rep names: Scalar, Vector (V), Dual (V*), T(p) and T(p, q).
Every error is an :class:`~softequiv.errors.InputError` naming the offending token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from softequiv import groups as G
from softequiv.errors import InputError
from softequiv.reps import Dual, Rep, Scalar, T, Vector

_TOKEN = re.compile(r"\s*(?:(?P<int>-?\d+)|(?P<name>SO\+(?=\s*\()|[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>\*\*|[()\[\],*+]))")


@dataclass
class _Token:
    kind: str
    text: str
    pos: int


def _tokenize(text: str, what: str) -> list[_Token]:
    tokens, pos = [], 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None:
            rest = stripped[pos:].lstrip()
            where = len(stripped) - len(rest)
            raise InputError(f"invalid {what} {text!r}: unexpected character {rest[:1]!r} "
                             f"at position {where}")
        kind = m.lastgroup or "op"
        tokens.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(_Token("end", "", len(stripped)))
    return tokens


class _Parser:
    def __init__(self, text: str, what: str):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"empty {what} expression")
        self.text, self.what = text, what
        self.tokens = _tokenize(text, what)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, message: str, tok: _Token | None = None) -> InputError:
        tok = tok or self.tok
        where = "end of input" if tok.kind == "end" else f"{tok.text!r} at position {tok.pos}"
        return InputError(f"invalid {self.what} {self.text!r}: {message} ({where})")

    def accept(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.fail(f"expected {text!r}")

    def integer(self) -> int:
        if self.tok.kind != "int":
            raise self.fail("expected an integer")
        value = int(self.tok.text)
        self.i += 1
        return value

    def finish(self) -> None:
        if self.tok.kind != "end":
            raise self.fail("unexpected token")


def _positive(p: _Parser, tok: _Token, value: int, limit: int = 64) -> int:
    if not 1 <= value <= limit:
        raise p.fail(f"size must be between 1 and {limit}", tok)
    return value


_SIZED: dict[str, Callable[[int], G.Group]] = {
    "O": G.O, "SO": G.SO, "Scaling": G.Scaling, "SE": G.SE, "Rot": G.Rot, "Trans": G.Trans,
    "Sp": G.Sp, "S": G.S, "Z": G.Z, "SL": G.SL, "GL": G.GL, "Trivial": G.Trivial,
}
_PLAIN: dict[str, Callable[[], G.Group]] = {
    "O2xy": G.O2xy, "O2yz": G.O2yz, "O2xz": G.O2xz, "SO2xy": G.SO2xy, "Lorentz": G.Lorentz,
    "SO13p": G.SO13p, "D4": G.D4, "C4": G.C4, "C2": G.C2, "D2": G.D2, "FlipX": G.FlipX,
    "FlipY": G.FlipY,
}
GROUP_NAMES = sorted([*_SIZED, *_PLAIN, "Embed", "Union", "SO+"])


def _group_args(p: _Parser) -> list:
    args: list = []
    p.expect("(")
    while True:
        if p.tok.kind == "int":
            args.append((p.tok, p.integer()))
        elif p.accept("["):
            items = [p.integer()]
            while p.accept(","):
                items.append(p.integer())
            p.expect("]")
            args.append((None, items))
        else:
            args.append((None, _group_expr(p)))
        if p.accept(")"):
            return args
        p.expect(",")


def _group_factor(p: _Parser) -> G.Group:
    tok = p.tok
    if tok.kind != "name":
        raise p.fail("expected a group name")
    p.i += 1
    name = tok.text
    if name in _PLAIN:
        return _PLAIN[name]()
    if name not in _SIZED and name not in ("Embed", "Union", "SO+"):
        raise InputError(f"unknown group {name!r} in {p.text!r}; known: {', '.join(GROUP_NAMES)}")
    if p.tok.text != "(":
        raise p.fail(f"{name} needs arguments, e.g. {name}(3)")
    args = _group_args(p)
    ints = [v for _, v in args if isinstance(v, int)]
    if name in ("O", "SO+") and ints == [1, 3] and len(args) == 2:
        return G.Lorentz() if name == "O" else G.SO13p()
    if name == "Trans" and len(args) == 2 and isinstance(args[1][1], list):
        try:
            return G.Trans(_positive(p, args[0][0], args[0][1]), args[1][1])
        except (ValueError, TypeError) as exc:
            raise InputError(f"invalid group {p.text!r}: {exc}") from None
    if name in _SIZED:
        if len(args) != 1 or not isinstance(args[0][1], int):
            raise p.fail(f"{name} takes one integer size", tok)
        return _SIZED[name](_positive(p, args[0][0], args[0][1]))
    if name == "Union":
        parts = [v for _, v in args]
        if len(parts) < 2 or not all(isinstance(v, G.Group) for v in parts):
            raise p.fail("Union takes two or more groups", tok)
        if len({g.d for g in parts}) != 1:
            raise p.fail("Union needs groups acting on the same dimension", tok)
        out = parts[0]
        for g in parts[1:]:
            out = G.Union(out, g)
        return out
    if name == "Embed":
        if (len(args) != 3 or not isinstance(args[0][1], G.Group)
                or not isinstance(args[1][1], int) or not isinstance(args[2][1], list)):
            raise p.fail("Embed takes (group, dimension, [axes])", tok)
        try:
            return G.Embed(args[0][1], _positive(p, args[1][0], args[1][1]), args[2][1])
        except ValueError as exc:
            raise InputError(f"invalid group {p.text!r}: {exc}") from None
    raise p.fail("SO+ is written SO+(1,3)", tok)


def _group_expr(p: _Parser) -> G.Group:
    group = _group_factor(p)
    while p.accept("*"):
        group = group * _group_factor(p)
    return group


def _guarded(p: _Parser, parse: Callable[[_Parser], object]):
    if len(p.text) > 2000:
        raise InputError(f"{p.what} expression is too long ({len(p.text)} characters)")
    try:
        return parse(p)
    except RecursionError:
        raise InputError(f"invalid {p.what} {p.text[:40]!r}...: nested too deeply") from None


def parse_group(text: str) -> G.Group:
    """A group from its expression, e.g. ``"Union(SO(3), Scaling(3))"``.

    The returned group is named exactly as the user wrote it (whitespace trimmed), so
    reports echo the user's names.
    """
    p = _Parser(text, "group")
    group = _guarded(p, _group_expr)
    p.finish()
    group.name = text.strip()
    return group


_REPS = {"Scalar": Scalar, "Vector": Vector, "V": Vector, "Dual": Dual}
REP_NAMES = sorted([*_REPS, "T"])


def _rep_atom(p: _Parser) -> Rep | int:
    tok = p.tok
    if tok.kind == "int":
        value = p.integer()
        if value < 0:
            raise p.fail("multiplicity must not be negative", tok)
        return value
    if p.accept("("):
        rep = _rep_sum(p)
        p.expect(")")
    elif tok.kind == "name":
        p.i += 1
        if tok.text == "T":
            p.expect("(")
            ranks = [p.integer()]
            if p.accept(","):
                ranks.append(p.integer())
            p.expect(")")
            if any(r < 0 or r > 8 for r in ranks):
                raise p.fail("tensor ranks must be between 0 and 8", tok)
            rep = T(*ranks)
        elif tok.text in _REPS:
            rep = _REPS[tok.text]
        else:
            known = ", ".join(REP_NAMES)
            raise InputError(f"unknown rep {tok.text!r} in {p.text!r}; known: {known}")
    else:
        raise p.fail("expected a rep (Scalar, Vector, T(p,q), ...)")
    if p.accept("**"):
        power_tok = p.tok
        power = p.integer()
        if not 0 <= power <= 8:
            raise p.fail("tensor power must be between 0 and 8", power_tok)
        rep = rep ** power
    return rep


def _rep_product(p: _Parser) -> Rep:
    start = p.tok
    factors = [_rep_atom(p)]
    while p.accept("*"):
        factors.append(_rep_atom(p))
    mult = 1
    rep: Rep | None = None
    for f in factors:
        if isinstance(f, int):
            mult *= f
        else:
            rep = f if rep is None else rep * f
    if rep is None:
        raise p.fail("a multiplicity needs a rep, e.g. 5*Vector", start)
    return mult * rep


def _rep_sum(p: _Parser) -> Rep:
    rep = _rep_product(p)
    while p.accept("+"):
        rep = rep + _rep_product(p)
    return rep


def parse_rep(text: str) -> Rep:
    """A representation from its expression, e.g. ``"5*Scalar + 5*Vector"`` or ``"T(1,1)"``."""
    p = _Parser(text, "rep")
    rep = _guarded(p, _rep_sum)
    p.finish()
    if not rep.summands:
        raise InputError(f"invalid rep {text!r}: it has no summands")
    return rep


def parse_groups(text: str | list[str]) -> list[G.Group]:
    """A comma-separated list of candidate groups (commas inside brackets do not split),
    all acting on the same dimension; the first is the ambient group."""
    items = _split_top_level(text) if isinstance(text, str) else list(text)
    if not items:
        raise InputError("no candidate groups given")
    parsed = [parse_group(s) for s in items]
    dims = {g.d for g in parsed}
    if len(dims) != 1:
        listing = ", ".join(f"{g.name} on R^{g.d}" for g in parsed)
        raise InputError(f"candidate groups must act on the same dimension: {listing}")
    return parsed


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    return [s for s in items if s]
