"""The ``softequiv`` command line: ``basis``, ``discover``, ``predict``, ``bench`` and ``data``.

Bad arguments or input give one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

from softequiv.errors import InputError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        raise InputError(f"{self.prog}: {message}")


def cmd_basis(args: argparse.Namespace) -> int:
    """Solve for the equivariant basis of rep_in -> rep_out under a group."""
    from softequiv.solver import clear_cache, equivariant_basis
    from softequiv.spec import parse_group, parse_rep

    group = parse_group(args.group)
    rep_in, rep_out = parse_rep(args.rep_in), parse_rep(args.rep_out)
    clear_cache()
    start = time.perf_counter()
    basis = equivariant_basis(rep_in, rep_out, group, tol=args.tol)
    seconds = time.perf_counter() - start
    result = {"dim": int(basis.shape[1]), "size": int(basis.shape[0]), "seconds": seconds}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"group     {group.name} (acts on R^{group.d})")
        print(f"map       {rep_in} -> {rep_out}")
        print(f"dim k     {result['dim']}")
        print(f"size D    {result['size']}")
        print(f"seconds   {seconds:.4f}")
    return 0


def _add_basis(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("basis", help="dimension of the equivariant basis of a linear map")
    p.add_argument("--group", required=True, help='e.g. "O(3)", "O2xy", "SO(3)*S(4)"')
    p.add_argument("--rep-in", required=True, help='e.g. "5*Scalar + 5*Vector"')
    p.add_argument("--rep-out", required=True, help='e.g. "T(2)"')
    p.add_argument("--tol", type=float, default=1e-6, help="null-space singular value tolerance")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_basis)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_basis]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softequiv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
