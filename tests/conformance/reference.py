"""A small, deliberately naive reference of the diff contract (sections 2-4, schema drift).

Written from the contract text only, without importing `diffcore.jsonvalue`, so that checking an
engine against it is a real, independent check. Speed does not matter here; obviousness does.

- A record is the set of its non-null leaves `dotted path -> value`; a leaf is a scalar or an
  array; objects are walked member by member (so `{}`, an all-null object, `null` and an absent
  member all contribute nothing).
- Numbers compare by exact decimal value: a number with a fraction or exponent is read as a
  `Number` (a `fractions.Fraction` of its text, which keeps the text), ints stay ints, so
  `1 == 1.0`, `2**63 + 1 != 2**63`, `1e400 != 2e400`, `0.1 != 0.10000000000000001`.
- Types never mix: a value is tagged with its JSON type (`bool` is checked before `int`).
- Arrays compare element by element, in order, each element by the same rules.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

MISSING = object()


class Number(Fraction):
    """A JSON number with a fraction or exponent: its exact value, and its text as read."""

    def __new__(cls, text: str) -> Number:
        if _exponent_digits(text) > 4:  # 10**exponent: slow past 10**9999, then no memory
            return HugeNumber(text)
        self = super().__new__(cls, text)
        self.text = text
        return self

    # Fraction builds `cls(num, den)` to compare with a float or Decimal: build a plain one.
    @classmethod
    def from_float(cls, f: float) -> Fraction:  # type: ignore[override]
        return Fraction.from_float(f)

    @classmethod
    def from_decimal(cls, dec: Any) -> Fraction:  # type: ignore[override]
        return Fraction.from_decimal(dec)

    # Immutable: copies are the number itself (Fraction's would call __new__ with two ints).
    def __copy__(self) -> Number:
        return self

    def __deepcopy__(self, memo: Any) -> Number:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Number, (self.text,))


def _exponent_digits(text: str) -> int:
    mark = max(text.find("e"), text.find("E"))
    return 0 if mark < 0 else len(text[mark + 1 :].lstrip("+-").lstrip("0"))


def decimal_key(text: str) -> tuple[str, str, int]:
    """The exact value of a JSON number text as (sign, significant digits, exponent), the
    digits' trailing zeros moved into the exponent: two texts have the same value exactly
    when their keys are equal (zero, of any sign, is ("", "", 0))."""
    mantissa, _, exponent = text.replace("E", "e").partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    whole, _, fraction = mantissa.lstrip("-").partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return ("", "", 0)
    stripped = digits.rstrip("0")
    return (sign, stripped, int(exponent or 0) - len(fraction) + len(digits) - len(stripped))


class HugeNumber(Number):
    """A number with an exponent of more than 4 digits: kept as its text and `decimal_key`,
    never as a Fraction (10**exponent would take seconds, or all memory)."""

    def __new__(cls, text: str) -> Any:
        self = Fraction.__new__(cls, 0)  # (a stand-in: equality and hashing use `key`)
        self.text = text
        self.key = decimal_key(text)
        return self

    def __eq__(self, other: object) -> bool:
        return number_key(self) == number_key(other) if is_number(other) else False

    def __hash__(self) -> int:
        return hash(self.key)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Fraction)) and not isinstance(value, bool)


def number_key(value: Any) -> tuple[str, str, int]:
    """`decimal_key` of any number the reference holds (a float stands for its repr)."""
    if isinstance(value, Number):
        return decimal_key(value.text)
    if isinstance(value, float):
        return decimal_key(repr(value))
    if isinstance(value, int):
        return decimal_key(str(value))
    raise TypeError(f"not a JSON number text: {value!r}")


def loads(text: str | bytes) -> Any:
    """JSON, numbers exact (`Number`), NaN/Infinity refused."""

    def reject(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        for name in names:
            if names.count(name) > 1:
                raise DuplicateMember(name)
        return dict(pairs)

    return json.loads(text, parse_constant=reject, parse_float=Number, object_pairs_hook=members)


class DuplicateMember(ValueError):
    """Contract §1: one object names a member twice (`duplicate_member`)."""


def _dump(value: Any) -> str:
    """Compact JSON with sorted keys; `Number`s as their text."""
    if isinstance(value, Number):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dump(k)}:{_dump(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    text = json.dumps(value, ensure_ascii=False)
    # A lone surrogate (from an escape like "\\udc00") is written as that escape (contract §1).
    return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Fraction)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {value!r}")


def leaves(record: dict, prefix: str = "") -> dict[str, Any]:
    """`dotted path -> value` of every non-null scalar or array of a record."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        path = prefix + name
        if isinstance(value, dict):
            out.update(leaves(value, path + "."))
        elif value is not None:
            out[path] = value
    return out


def norm(value: Any) -> Any:
    """A hashable form that is equal for two values exactly when the contract says so."""
    if value is None:
        return None
    kind = json_type(value)
    if kind == "number":
        if isinstance(value, Fraction) and not isinstance(value, Number):
            return (kind, value)  # (a computed Fraction, never a parsed number)
        return (kind, number_key(value))  # exact decimal value, from the text as read
    if kind == "array":
        return (kind, tuple(norm(item) for item in value))
    if kind == "object":
        members = frozenset((p, norm(v)) for p, v in leaves(value).items())
        return (kind, members) if members else None
    return (kind, value)


def is_ignored(path: str, ignore: tuple[str, ...]) -> bool:
    return any(path == i or path.startswith(i + ".") for i in ignore)


def comparable(record: dict, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    return {p: norm(v) for p, v in leaves(record).items() if not is_ignored(p, ignore)}


def changed_paths(before: dict, after: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    a, b = comparable(before, ignore), comparable(after, ignore)
    return sorted(p for p in set(a) | set(b) if a.get(p, MISSING) != b.get(p, MISSING))


def canonical(value: Any) -> str:
    return _dump(value)


def event_id(run_date: str, op: str, key: dict) -> str:
    return hashlib.sha256(canonical([run_date, op, key]).encode("utf-8")).hexdigest()


def get_path(record: dict, path: str) -> Any:
    value: Any = record
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


class BadRecord(Exception):
    def __init__(self, error_class: str, detail: str) -> None:
        super().__init__(f"{error_class}: {detail}")
        self.error_class = error_class


def key_of(record: Any, key: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise BadRecord("not_an_object", repr(record))
    out = {}
    for path in key:
        value = get_path(record, path)
        if value is None or isinstance(value, (dict, list)):  # a key value is a scalar
            raise BadRecord("missing_key", path)
        out[path] = value
    return out


def index(records: list[dict], key: tuple[str, ...]) -> dict[str, tuple[dict, dict]]:
    """canonical key -> (key object, record); a duplicate key raises."""
    out: dict[str, tuple[dict, dict]] = {}
    for record in records:
        k = key_of(record, key)
        ck = canonical(k)
        if ck in out:
            raise BadRecord("duplicate_key", ck)
        out[ck] = (k, record)
    return out


def type_sets(records: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for record in records:
        for path, value in leaves(record).items():
            out.setdefault(path, set()).add(json_type(value))
    return out


def schema_drift(before: list[dict], after: list[dict]) -> dict[str, Any]:
    b, a = type_sets(before), type_sets(after)
    return {
        "added": sorted(set(a) - set(b)),
        "removed": sorted(set(b) - set(a)),
        "type_changed": [
            {"path": p, "before": sorted(b[p]), "after": sorted(a[p])}
            for p in sorted(set(a) & set(b))
            if a[p] != b[p]
        ],
    }


@dataclass
class Diff:
    events: list[dict] = field(default_factory=list)  # op, key, before, after, changed
    counts: dict[str, int] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)


def diff(
    before: list[dict], after: list[dict], key: tuple[str, ...], ignore: tuple[str, ...] = ()
) -> Diff:
    b, a = index(before, key), index(after, key)
    events = []
    unchanged = 0
    for ck in sorted(set(b) | set(a)):
        if ck not in a:
            k, rec = b[ck]
            events.append({"op": "d", "key": k, "before": rec, "after": None, "changed": None})
        elif ck not in b:
            k, rec = a[ck]
            events.append({"op": "c", "key": k, "before": None, "after": rec, "changed": None})
        else:
            k, old = b[ck]
            new = a[ck][1]
            changed = changed_paths(old, new, ignore)
            if changed:
                events.append(
                    {"op": "u", "key": k, "before": old, "after": new, "changed": changed}
                )
            else:
                unchanged += 1
    counts = {op: sum(e["op"] == op for e in events) for op in ("c", "u", "d")}
    counts.update(unchanged=unchanged, bad_records=0)
    return Diff(events=events, counts=counts, drift=schema_drift(before, after))


# ---------------------------------------------------------------------------------------------
# Reading a snapshot (contract §1, §6) — used to check the case files' own expectations.

DATA_SUFFIXES = (".json", ".jsonl", ".ndjson")


def is_data_name(name: str) -> bool:
    base = name[:-3] if name.endswith(".gz") else name
    return base.endswith(DATA_SUFFIXES) and not name.startswith(("_", "."))


def list_files(location: str) -> list[Path]:
    """A file, a glob, or a directory (every data file under it; `_`/`.` names skipped)."""
    if any(ch in location for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(location, recursive=True) if Path(p).is_file())
    root = Path(location)
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if (
            path.is_file()
            and is_data_name(path.name)
            and not any(p.startswith(("_", ".")) for p in parts)
        ):
            out.append(path)
    return out


@dataclass
class Item:
    """One record of a snapshot, or one bad record (error_class set)."""

    file: Path
    line: int | None
    record: Any = None
    error_class: str | None = None
    raw: str | None = None  # the line's text (NDJSON only)


def _loads(text: str) -> Any:
    return loads(text)


def read_file(path: Path) -> list[Item]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    if raw.lstrip().startswith(b"["):
        try:
            values = _loads(raw.decode("utf-8"))
        except DuplicateMember:  # (a duplicate inside one element: the element is bad)
            return [Item(path, None, error_class="duplicate_member")]
        except (ValueError, RecursionError):  # UnicodeDecodeError included
            return [Item(path, None, error_class="malformed_json")]
        return [
            (
                Item(path, None, v)
                if isinstance(v, dict)
                else Item(path, None, error_class="not_an_object")
            )
            for v in values
        ]
    items = []
    for number, raw_line in enumerate(raw.split(b"\n"), 1):
        line = raw_line.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        try:
            value = _loads(raw_line.decode("utf-8"))
        except DuplicateMember:
            items.append(Item(path, number, error_class="duplicate_member", raw=line.strip()))
            continue
        except (ValueError, RecursionError):  # UnicodeDecodeError included
            items.append(Item(path, number, error_class="malformed_json", raw=line.strip()))
            continue
        if not isinstance(value, dict):
            items.append(Item(path, number, error_class="not_an_object", raw=line.strip()))
        else:
            items.append(Item(path, number, value, raw=line.strip()))
    return items


def read_snapshot(location: str, key: tuple[str, ...]) -> tuple[list[Path], list[Item]]:
    """The snapshot's files and items; records with a missing/null key become bad items."""
    files = list_files(location)
    items = []
    for path in files:
        for item in read_file(path):
            if item.error_class is None:
                try:
                    key_of(item.record, key)
                except BadRecord as exc:
                    item.error_class = exc.error_class
            items.append(item)
    return files, items
