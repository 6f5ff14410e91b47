"""Which columns of a CSV or Parquet file are X and Y: the selection grammar of
``--x-cols`` / ``--y-cols`` (and ``x_cols`` / ``y_cols`` in Python).

Column selections (``x_cols`` / ``y_cols`` for CSV and Parquet) follow this grammar::

    selection := item ("," item)*
    item      := NAME               the column called NAME
               | NAME ":" NAME      every column from the first NAME through the second,
                                    inclusive, in file order            e.g. x0:x17
               | [INT] ":" [INT]    column positions start..stop-1, 0-based and
                                    half-open like Python; an end left out means the
                                    first / past the last column        e.g. 0:18, 18:
               | INT                the column at that 0-based position (only when no
                                    column is called INT)

Spaces around items are ignored. An item that is exactly a column's name always means
that column, so names containing ``:`` still work on their own, and a whole selection
that is exactly one column's name selects it even if the name contains ``,``. Unlike
Python slicing, a position past the last column is an error (it is almost always a
typo). Selecting the same column twice, or the same column for X and Y, is an error. A
column named ``split`` holds the train/valid/test split (0/1/2 or train/valid/test):
ranges skip it, and naming it on its own in ``x_cols``/``y_cols`` is an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from softequiv.errors import InputError

SPLIT_COLUMN = "split"
_POSITION_RANGE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")
_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "'|'"}


def resolve_columns(
    spec: str, header: Sequence[str], *, option: str = "x_cols", reserved: int | None = None
) -> list[int]:
    """Positions (0-based, in selection order) of the columns ``spec`` selects.

    ``spec`` follows the grammar in this module's docstring; ``option`` names the
    argument in messages. ``reserved`` is a column that may not be selected (the split
    column): ranges skip it, naming it alone is an error. Unknown names, positions past
    the last column, empty or backwards ranges and repeated columns raise InputError.
    """
    lookup = _name_lookup(header)
    if spec.strip() in lookup:  # a whole selection that is one name may contain ','
        items = [spec.strip()]
    else:
        items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise InputError(
            f"{option} {spec!r} has an empty item; list columns like 'a,b' or 'x0:x17'"
        )
    positions: list[int] = []
    for item in items:
        positions.extend(
            _without_reserved(_resolve_item(item, header, lookup, option), reserved, option)
        )
    _check_no_repeats(positions, header, option)
    return positions


def _without_reserved(positions: list[int], reserved: int | None, option: str) -> list[int]:
    """One item's positions minus the reserved column; selecting only it is an error."""
    if reserved is None or reserved not in positions:
        return positions
    if len(positions) == 1:
        raise InputError(
            f"column {SPLIT_COLUMN!r} holds the train/valid/test split and cannot be in {option}"
        )
    return [i for i in positions if i != reserved]


def _name_lookup(header: Sequence[str]) -> dict[str, list[int]]:
    """Column positions by name, also by space-stripped name when that is unambiguous."""
    lookup: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        lookup.setdefault(name, []).append(i)
    for i, name in enumerate(header):
        if name.strip() != name and name.strip() not in lookup:
            lookup[name.strip()] = [i]
    return lookup


def _resolve_item(
    item: str, header: Sequence[str], lookup: dict[str, list[int]], option: str
) -> list[int]:
    """Positions one selection item stands for (see the module docstring's grammar)."""
    if item in lookup:
        return [_unique_position(item, lookup, option)]
    match = _POSITION_RANGE.match(item)
    if match:
        return _position_range(item, match[1], match[2], len(header), option)
    if item.isdigit():
        return [_position(item, len(header), option)]
    if ":" in item:
        return _name_range(item, header, lookup, option)
    raise InputError(f"unknown column {item!r} in {option}; {_columns_hint(header)}")


def _unique_position(name: str, lookup: dict[str, list[int]], option: str) -> int:
    """The position of column ``name``, which must appear once in the header."""
    positions = lookup[name]
    if len(positions) > 1:
        raise InputError(
            f"column {name!r} in {option} appears {len(positions)} times in the header; "
            "select it by position instead"
        )
    return positions[0]


def _position(text: str, width: int, option: str) -> int:
    """A single 0-based column position, checked against the column count."""
    i = int(text)
    if i >= width:
        raise InputError(
            f"column position {i} in {option} is out of range: "
            f"the file has {width} columns (0..{width - 1})"
        )
    return i


def _position_range(item: str, start: str, stop: str, width: int, option: str) -> list[int]:
    """Positions of a half-open ``start:stop`` range; missing ends mean 0 / the width."""
    lo = int(start) if start else 0
    hi = int(stop) if stop else width
    if hi > width:
        raise InputError(
            f"column range {item!r} in {option} is out of range: the file has {width} columns "
            f"(positions 0..{width - 1}; the range stop is exclusive)"
        )
    if lo >= hi:
        raise InputError(f"column range {item!r} in {option} selects no columns")
    return list(range(lo, hi))


def _name_range(
    item: str, header: Sequence[str], lookup: dict[str, list[int]], option: str
) -> list[int]:
    """Positions of an inclusive ``first:last`` range of column names."""
    parts = [part.strip() for part in item.split(":")]
    if len(parts) != 2:
        raise InputError(f"column range {item!r} in {option} must have one ':' (like x0:x17)")
    for part in parts:
        if part not in lookup:
            raise InputError(f"unknown column {part!r} in {option} range {item!r}; "
                             f"{_columns_hint(header)}")
    lo, hi = (_unique_position(part, lookup, option) for part in parts)
    if lo > hi:
        raise InputError(f"column range {item!r} in {option} ends before it starts (in file order)")
    return list(range(lo, hi + 1))


def _check_no_repeats(positions: list[int], header: Sequence[str], option: str) -> None:
    """Raise when a selection names the same column twice."""
    seen: set[int] = set()
    for i in positions:
        if i in seen:
            raise InputError(f"column {header[i]!r} is selected twice in {option}")
        seen.add(i)


def _columns_hint(header: Sequence[str]) -> str:
    """A short list of the file's columns, for unknown-column messages, with a hint when
    the header looks separated by something other than commas."""
    shown = ", ".join(repr(name) for name in header[:8])
    more = f", ... ({len(header)} in all)" if len(header) > 8 else ""
    return f"the file's columns are {shown}{more}{delimiter_hint(header)}"


def delimiter_hint(header: Sequence[str]) -> str:
    """' (the header looks separated by semicolons, ...)' when a one-column header holds
    another common delimiter, else ''."""
    if len(header) != 1:
        return ""
    found = [name for sep, name in _OTHER_DELIMITERS.items() if sep in header[0]]
    if not found:
        return ""
    return (f" (the header looks separated by {found[0]}: softequiv reads comma-separated "
            "CSV files; re-save the file with commas)")


def _select(
    header: Sequence[str], x_cols: str, y_cols: str
) -> tuple[list[int], list[int], int | None]:
    """X positions, Y positions and the split column's position (None when absent)."""
    split_idx = _split_position(header)
    x_idx = resolve_columns(x_cols, header, option="x_cols", reserved=split_idx)
    y_idx = resolve_columns(y_cols, header, option="y_cols", reserved=split_idx)
    both = sorted(set(x_idx) & set(y_idx))
    if both:
        raise InputError(f"column {header[both[0]]!r} is in both x_cols and y_cols")
    return x_idx, y_idx, split_idx


def _select_inputs(header: Sequence[str], x_cols: str) -> list[int]:
    """X positions of a file read for predictions (the split column may not be chosen)."""
    return resolve_columns(x_cols, header, option="x_cols", reserved=_split_position(header))


def _split_position(header: Sequence[str]) -> int | None:
    """The position of the split column, None when the file has none."""
    return header.index(SPLIT_COLUMN) if SPLIT_COLUMN in header else None
