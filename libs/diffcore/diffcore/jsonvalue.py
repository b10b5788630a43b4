"""JSON values as the contract sees them (section 3): leaves, equality, types, canonical JSON.

A record is the set of its non-null leaves, `dotted path -> value`, where a leaf is a scalar or an
array. This module is the reference every engine is checked against, and the code the engines
call for the few records whose bytes differ.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

JSONValue = Any  # dict | list | str | int | float | bool | None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


class Number(Decimal):
    """A JSON number with a fraction or an exponent, as read: it compares (and hashes) by its
    exact decimal value (`1e400` is not `2e400`, `0.1` is not `0.10000000000000001`, `1.0` is
    `1`), and is written back as its own text (`number_text`), never through a float."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> Number:
        try:
            self = super().__new__(cls, text)
        except InvalidOperation:  # an exponent beyond what a Decimal holds (~10**18)
            return _huge_number(text)
        self.text = text
        return self


_NUMBER_PARTS = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?[eE]([-+]?[0-9]+)")


class HugeNumber(Number):
    """A number whose exponent is beyond a Decimal's (`1e<400 digits>`): compared and hashed
    by its exact value, kept as (sign, significant digits, exponent), never equal to a number
    of another size (none can be: it is not zero, and every other number fits a Decimal)."""

    __slots__ = ("key",)
    key: tuple[str, str, int]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HugeNumber) and self.key == other.key

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("HugeNumber", self.key))


def _huge_number(text: str) -> Number:
    match = _NUMBER_PARTS.fullmatch(text)
    if match is None:
        raise ValueError(f"not a JSON number: {text[:40]}")
    sign, whole, fraction, exponent = match.groups()
    digits = (whole + (fraction or "")).lstrip("0")
    if not digits:  # zero, whatever its exponent
        zero = Decimal.__new__(Number, f"{sign}0")
        zero.text = text
        return zero
    trailing = len(digits) - len(digits.rstrip("0"))
    huge = Decimal.__new__(HugeNumber, f"{sign}Infinity")  # (a stand-in: eq/hash use `key`)
    huge.text = text
    huge.key = (sign, digits.rstrip("0"), int(exponent) - len(fraction or "") + trailing)
    return huge


# The declared nesting limit (contract §1: at least 256): a record with more levels of arrays
# and objects is bad (`malformed_json`, "nested too deeply") in every engine. Checked on the
# text before any recursive walk, so no depth ends in a RecursionError (Python's parser and
# walkers recurse; orjson writes at most 254 levels and `_same_json_text` falls back then).
MAX_DEPTH = 256
_STRING_S = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_STRING_B = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET_S = re.compile(r"[\[\]{}]")
_BRACKET_B = re.compile(rb"[\[\]{}]")
_OPENERS = frozenset("[{") | frozenset(b"[{")


def too_deep(text: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects more than `limit` levels deep (brackets
    inside strings do not count). Cheap unless the text holds more than `limit` brackets."""
    if type(text) is bytes:
        if text.count(b"[") + text.count(b"{") <= limit:
            return False
        brackets = _BRACKET_B.finditer(_STRING_B.sub(b"", text))
    else:
        if text.count("[") + text.count("{") <= limit:  # type: ignore[arg-type]
            return False
        brackets = _BRACKET_S.finditer(_STRING_S.sub("", text))  # type: ignore[arg-type]
    depth = 0
    for match in brackets:
        if match.group()[0] in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _check_depth(text: str | bytes) -> None:
    if too_deep(text):
        raise ValueError(f"nested too deeply: more than {MAX_DEPTH} levels of arrays and objects")


class DuplicateMember(ValueError):
    """Contract §1: one object holds two members of the same name (readers disagree on which
    value wins, so the record is bad: `duplicate_member`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        quoted = escape_lone_surrogates(json.dumps(name, ensure_ascii=False))
        super().__init__(f"member {quoted} occurs twice in one object")


def _object(pairs: list[tuple[str, JSONValue]]) -> dict[str, JSONValue]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateMember(name)
            seen.add(name)
    return obj


def loads(text: str | bytes) -> JSONValue:
    """Parse JSON exactly: integers of any size stay `int`, other numbers become `Number`s
    (exact decimal values that keep their text); NaN/Infinity are rejected, so is a text
    nested more than `MAX_DEPTH` levels (ValueError, never a RecursionError), and an object
    with two members of one name (`DuplicateMember`, a ValueError)."""
    _check_depth(text)
    return json.loads(
        text, parse_constant=_reject_constant, parse_float=Number, object_pairs_hook=_object
    )


try:  # optional accelerator (the `polars`/`spark` extras); the standard library is the reference
    import orjson as _orjson
except ImportError:  # pragma: no cover - installs without the extra
    _orjson = None

# orjson reads numbers as 64-bit integers or doubles. That is exact (as the contract's decimal
# equality needs) for integers of at most 15 digits and for other numbers of at most 15
# significant digits with an exponent of at most 2 digits: distinct such decimals are distinct
# doubles, and a double's shortest repr is its decimal value. A text holding a run of 16
# characters among `0123456789.`, or an exponent of 3 digits or more (a cheap, conservative
# superset of every other number) takes the exact standard-library path.
_INEXACT_NUMBER_B = re.compile(rb"[0-9.]{16}|[eE][-+]?[0-9]{3}").search
_INEXACT_NUMBER_S = re.compile(r"[0-9.]{16}|[eE][-+]?[0-9]{3}").search


def may_hold_inexact_number(text: str | bytes) -> bool:
    """Whether the text may hold a number that a double (or orjson's 64-bit integer) would not
    hold exactly (cheap, conservative: strings with long digit runs count too)."""
    if type(text) is bytes:
        return _INEXACT_NUMBER_B(text) is not None
    return _INEXACT_NUMBER_S(text) is not None


# Member names in a JSON text: every string token (`_STRING_B`) collapsed to one quote (outside
# strings JSON has none), then a quote followed by a colon is a name.
_NAME_B = re.compile(rb'"[ \t\r\n]*:')
_NAME_S = re.compile(r'"[ \t\r\n]*:')
_CONTAINERS = (dict, list)


def _members(value: JSONValue) -> int:
    """How many members the objects of a parsed value hold, in all."""
    n = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            n += len(item)
            stack.extend(v for v in item.values() if type(v) in _CONTAINERS)
        elif type(item) is list:
            stack.extend(v for v in item if type(v) in _CONTAINERS)
    return n


def _compact_names(value: JSONValue) -> int:
    """`":` in orjson's compact output of a value (-1 past the 254 levels orjson writes)."""
    try:
        return _orjson.dumps(value).count(b'":')
    except TypeError:
        return -1


def hides_duplicate_members(text: str | bytes, value: JSONValue) -> bool:
    """Whether `value`, read from the valid JSON `text` by a reader that keeps one of two
    members of the same name (orjson keeps the last), lost a member: the text names more
    members than the value holds.

    Quick count, for a text with no backslash and no space before a colon: each `":` of the
    text closes a member name or opens a string that starts with a colon, so it counts at
    least the names; orjson's compact output of the value (no escapes either) counts its
    members exactly. Equal counts prove no member was lost; otherwise (or for other texts)
    every string token is collapsed and the names and members are counted exactly."""
    if isinstance(text, bytes):
        quick = b"\\" not in text and not (
            b" :" in text or b"\t:" in text or b"\n:" in text or b"\r:" in text
        )
        if quick and text.count(b'":') == _compact_names(value):
            return False
        names = len(_NAME_B.findall(_STRING_B.sub(b'"', text)))
    else:
        quick = "\\" not in text and not (
            " :" in text or "\t:" in text or "\n:" in text or "\r:" in text
        )
        if quick and text.count('":') == _compact_names(value):
            return False
        names = len(_NAME_S.findall(_STRING_S.sub('"', text)))
    if type(value) is dict and names == len(value):  # a flat object: nothing more to count
        return False
    return names != _members(value)


def loads_fast(text: str | bytes, members_checked: bool = False) -> JSONValue:
    """`loads`, with orjson where it gives the same value: for the engines' and the publisher's
    hot paths. Raises ValueError (`DuplicateMember` too) for text that is not a valid record.
    `members_checked`: the caller knows the text has no duplicate member names (the scanner
    or an earlier parse checked it), so orjson's answer needs no recount."""
    if _orjson is not None and not may_hold_inexact_number(text):
        _check_depth(text)  # orjson itself goes to 1024 levels
        try:
            value = _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass  # let the reference decide (it accepts 1e400, lone surrogates, ...)
        else:
            if members_checked or not hides_duplicate_members(text, value):
                return value
    return loads(text)


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def escape_lone_surrogates(text: str) -> str:
    """Contract §1: a lone surrogate (read from an escape like `"\\ud800"`; a valid pair is
    one code point once read) is written back as its `\\uXXXX` escape, so the text is UTF-8."""
    if text.isascii() or _LONE_SURROGATE.search(text) is None:
        return text
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def canonical_json(value: JSONValue) -> str:
    """Sorted keys, no spaces, UTF-8 text: the form behind `event_id` and the Kafka key."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError:  # a Decimal inside: numbers json cannot write
        text = "".join(_write(value, True))
    return escape_lone_surrogates(text)


def compact_json(value: JSONValue) -> str:
    """Member order kept, no spaces: how payloads re-serialised by an engine are written."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except TypeError:
        text = "".join(_write(value, False))
    return escape_lone_surrogates(text)


def number_text(value: Decimal) -> str:
    """A Decimal as JSON: a `Number`'s text as read (`1e400`), else its exact value (`1E+400`)."""
    text = getattr(value, "text", None)
    if text is not None:
        return text
    if not value.is_finite():
        raise ValueError(f"not a JSON number: {value}")
    return str(value)


def _write(value: JSONValue, sort_keys: bool) -> Iterator[str]:
    """`json.dumps` (compact, UTF-8) that also writes `Decimal`s, as `number_text`."""
    if isinstance(value, Decimal):
        yield number_text(value)
    elif isinstance(value, dict):
        yield "{"
        items = sorted(value.items()) if sort_keys else value.items()
        for i, (name, item) in enumerate(items):
            yield ("," if i else "") + json.dumps(name, ensure_ascii=False) + ":"
            yield from _write(item, sort_keys)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _write(item, sort_keys)
        yield "]"
    else:
        yield json.dumps(value, ensure_ascii=False)


def is_number(value: JSONValue) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def exact_number(value: int | float | Decimal) -> int | Decimal:
    """A number as its exact decimal value: a float (read by orjson from a literal of at most
    15 significant digits, see `may_hold_inexact_number`) becomes the Decimal of its shortest
    repr, which is that literal's value; ints and Decimals stay."""
    if type(value) is float and math.isfinite(value):  # (no reader here makes inf or nan)
        return Decimal(repr(value))  # (for 1e17 too: int(1.2e99) is not 1.2e99's value)
    return value  # type: ignore[return-value]


def json_type(value: JSONValue) -> str:
    """`string`, `number`, `boolean`, `array`, `object` or `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if is_number(value):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def normalize(value: JSONValue) -> Any:
    """A hashable form in which two values are equal exactly when the contract says so.

    Objects lose their null members and member order (an all-null object becomes None),
    numbers compare by value with integers kept exact, and no type equals another.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (int, float, Decimal)):
        # Exact decimal values; equal ints, Decimals and floats hash alike (Python's rule).
        return ("n", exact_number(value))
    if isinstance(value, list):
        return ("a", tuple(normalize(item) for item in value))
    if isinstance(value, dict):
        members = tuple(sorted((k, n) for k, v in value.items() if (n := normalize(v)) is not None))
        return ("o", members) if members else None
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def values_equal(a: JSONValue, b: JSONValue) -> bool:
    return normalize(a) == normalize(b)


def leaves(record: Mapping[str, JSONValue], prefix: str = "") -> dict[str, JSONValue]:
    """`dotted path -> value` for every non-null leaf (scalar or array) of a record."""
    out: dict[str, JSONValue] = {}
    for name, value in record.items():
        path = f"{prefix}{name}"
        if value is None:
            continue
        if isinstance(value, dict):
            out.update(leaves(value, path + "."))
        else:
            out[path] = value
    return out


def is_ignored(path: str, ignored: Iterable[str]) -> bool:
    """A leaf is ignored when its path is an ignored path or lies under one."""
    return any(path == p or path.startswith(p + ".") for p in ignored)


def comparable_leaves(
    record: Mapping[str, JSONValue], ignored: Iterable[str] = ()
) -> dict[str, Any]:
    """Normalised leaves, ignored fields left out: equal records give equal dicts."""
    ignored = tuple(ignored)
    return {
        path: normalize(value)
        for path, value in leaves(record).items()
        if not (ignored and is_ignored(path, ignored))
    }


def changed_paths(
    before: Mapping[str, JSONValue], after: Mapping[str, JSONValue], ignored: Iterable[str] = ()
) -> list[str]:
    """Sorted dotted paths of the leaves that differ; empty when the records are equal."""
    a = comparable_leaves(before, ignored)
    b = comparable_leaves(after, ignored)
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


def leaf_types(record: Mapping[str, JSONValue]) -> dict[str, str]:
    """`dotted path -> JSON type` of every non-null leaf (for schema drift)."""
    return {path: json_type(value) for path, value in leaves(record).items()}


# ---------------------------------------------------------------------------------------
# The same rules, fast: for the engines' per-record hot paths (property-tested against the
# reference functions above).

_NUMBER_TYPES = (int, float, Decimal)
LEAF_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "number",
    float: "number",
    Decimal: "number",
    bool: "boolean",
    list: "array",
}


def leaves_into(obj: Mapping[str, JSONValue], prefix: str, out: dict[str, JSONValue]) -> None:
    """`leaves(obj, prefix)` written into `out`, without intermediate dicts."""
    for name, value in obj.items():
        if value is None:
            continue
        if type(value) is dict:
            leaves_into(value, f"{prefix}{name}.", out)
        else:
            out[prefix + name] = value


def types_of_leaves(leaves_: Mapping[str, JSONValue]) -> dict[str, str]:
    """`leaf_types` from the output of `leaves` / `leaves_into`."""
    return {p: LEAF_TYPE_NAMES.get(type(v)) or json_type(v) for p, v in leaves_.items()}


def leaf_equal(x: JSONValue, y: JSONValue) -> bool:
    """`values_equal(x, y)`, fast for the common cases."""
    tx = type(x)
    if tx is not type(y):
        if tx in _NUMBER_TYPES and type(y) in _NUMBER_TYPES:
            return exact_number(x) == exact_number(y)  # by exact decimal value
        return normalize(x) == normalize(y)
    if tx is list:
        if len(x) != len(y):
            return False
        for u, v in zip(x, y, strict=False):
            if not leaf_equal(u, v):
                return False
        return True
    if tx is dict:
        if x.keys() != y.keys():
            return normalize(x) == normalize(y)
        for name, u in x.items():
            if not leaf_equal(u, y[name]):
                return False
        return True
    return x == y  # same-type scalars (or both None): Python equality is the contract's


def _same_json_text(x: list, y: list) -> bool:
    """Arrays whose JSON texts are the same (so equal by the contract), found cheaply (one C
    call each instead of a Python walk); False means "compare them element by element". A
    text with `null` is not trusted (orjson writes infinities, from `1e400`, as null), nor an
    array orjson cannot write (integers beyond 64 bits)."""
    if _orjson is None:
        return False
    try:
        text = _orjson.dumps(x)
        return text == _orjson.dumps(y) and b"null" not in text
    except TypeError:  # orjson.JSONEncodeError
        return False


def changed_from_leaves(
    lb: Mapping[str, JSONValue], la: Mapping[str, JSONValue], ignored: Sequence[str] = ()
) -> list[str]:
    """`changed_paths` from the two records' `leaves`."""
    if ignored:
        lb = {p: v for p, v in lb.items() if not is_ignored(p, ignored)}
        la = {p: v for p, v in la.items() if not is_ignored(p, ignored)}
    changed = []
    get = la.get
    for p, v in lb.items():
        w = get(p)
        if v is w:
            continue
        tv = type(v)
        if tv is type(w):
            if tv is not list:
                if v != w:  # same-type scalars: Python equality is the contract's
                    changed.append(p)
                continue
            if _same_json_text(v, w):
                continue
            if not leaf_equal(v, w):
                changed.append(p)
        elif w is None or not leaf_equal(v, w):
            changed.append(p)
    if len(la) != len(lb) or changed:  # else every path of la was seen in lb
        changed.extend(p for p in la if p not in lb)
    changed.sort()
    return changed


def changed_paths_fast(
    before: Mapping[str, JSONValue], after: Mapping[str, JSONValue], ignored: Sequence[str] = ()
) -> list[str]:
    """Same result as `changed_paths`, faster."""
    lb: dict[str, JSONValue] = {}
    la: dict[str, JSONValue] = {}
    leaves_into(before, "", lb)
    leaves_into(after, "", la)
    return changed_from_leaves(lb, la, ignored)


# What a value of each leaf type starts with, in JSON text (null leaves do not count).
TYPE_START = {"string": '"', "number": r"[\-0-9]", "boolean": "[tf]", "array": r"\["}
_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~")


def regex_escape(text: str) -> str:
    """Escape regex metacharacters the same way for Python's `re` and Rust's `regex` (Polars)."""
    return "".join("\\" + c if c in _REGEX_META else c for c in text)


def member_name_regex(path: str) -> str:
    """Regex for the member that holds the leaf at `path`: a suffix of the path ("c.d" may be
    member "d" of "c", or a member named "c.d"), spelled as `compact_json` writes it."""
    steps = path.split(".")
    names = (regex_escape(compact_json(".".join(steps[i:]))) for i in range(len(steps)))
    return "(?:" + "|".join(names) + ")"


def leaf_type_prefilter(wanted: Mapping[str, Iterable[str]]) -> str:
    """A regex that every record text holding a leaf of `path` with a type in `wanted[path]`
    matches, unless a member name in it is spelled with escapes (`\\u`, `\\/`): callers let
    such texts through as well, then parse what passes (for schema drift; cheap to scan)."""
    parts = [
        rf"{member_name_regex(path)}\s*:\s*(?:{'|'.join(TYPE_START[t] for t in sorted(types))})"
        for path, types in sorted(wanted.items())
        if types
    ]
    return "|".join(parts) or r"\b\B"  # never matches (Python and Rust)


def get_path(record: Mapping[str, JSONValue], path: str) -> JSONValue:
    """The value at a dotted path, or None when any step is absent or not an object."""
    value: JSONValue = record
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value
