"""The record rules (contract §1, §2, §6), one home for every engine's careful path.

A line of a snapshot is a record when it is JSON (RFC 8259, the contract's answers to what the
RFC leaves open: `jsonvalue.loads`), an object with no two members of one name, and holds a
scalar at every key path. Each failure has one error class and one message, the same text in
every engine. `readable_key` decides what a bad line still says about its key (§6: a bad
record is never a change).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from diffcore import jsonvalue, sources
from diffcore.errors import ErrorClass
from diffcore.spec import key_value_problem


class RecordError(Exception):
    """A bad record: its class (`ErrorClass`) and the message every engine gives."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


def parse_object(text: str | bytes) -> dict[str, Any]:
    """The record a line holds, parsed exactly (`jsonvalue.loads_fast`), or RecordError:
    `malformed_json` (not JSON, not UTF-8, nested too deeply), `duplicate_member`,
    `not_an_object`."""
    try:
        value = jsonvalue.loads_fast(text)
    except jsonvalue.DuplicateMember as exc:
        raise RecordError(ErrorClass.DUPLICATE_MEMBER, str(exc)) from None
    except RecursionError:  # (`loads` checks the depth first; a guard, not a path)
        raise RecordError(ErrorClass.MALFORMED_JSON, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise RecordError(ErrorClass.MALFORMED_JSON, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = jsonvalue.json_type(value)
        raise RecordError(ErrorClass.NOT_AN_OBJECT, f"record is a JSON {kind}, not an object")
    return value


def key_values(record: dict[str, Any], key: Sequence[str]) -> tuple[Any, ...]:
    """The record's value at each key path, or RecordError(`missing_key`): missing, null, an
    object or an array (`spec.key_value_problem`)."""
    values = []
    for path in key:
        value = jsonvalue.get_path(record, path)
        problem = key_value_problem(path, value)
        if problem is not None:
            raise RecordError(ErrorClass.MISSING_KEY, problem)
        values.append(value)
    return tuple(values)


# ---------------------------------------------------------------------------------------------
# What a bad line still says about its key

# One token per match: whitespace, a structural byte, a string (quotes included), a bare word
# (a number, a literal, or junk), or a lone quote (an unterminated string: the tokens end).
_TOKEN = re.compile(rb'[ \t\r\n]+|[{}\[\]:,]|"(?:[^"\\]|\\.)*"|[^{}\[\]:," \t\r\n]+|"', re.S)
_SPACE = frozenset(b" \t\r\n")


def _tokens(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """A lenient tokenizer: (kind, bytes), kind one of `{}[]:,` (their byte), `"` (a string
    token, quotes included) or 0 (a bare word). It never fails: an unterminated string ends
    the tokens."""
    for match in _TOKEN.finditer(raw):
        text = match.group()
        c = text[0]
        if c in _SPACE:
            continue
        if c == 0x22:  # "
            if len(text) == 1:
                return
            yield 0x22, text
        elif len(text) == 1 and c in b"{}[]:,":
            yield c, text
        else:
            yield 0, text


def key_of_bad_record(raw: str | bytes, message: str, key: Sequence[str]) -> tuple[Any, ...] | None:
    """`readable_key` of a quarantined record, None for the rest of an array file that could
    not be cut into records (`sources.ARRAY_REST`: it may hold many records)."""
    if sources.is_array_rest(message):
        return None
    return readable_key(raw, key)


def _decode(token: bytes) -> Any:
    """A string or bare-word token as its JSON value (strict), or raise ValueError."""
    return jsonvalue.loads(token.decode("utf-8"))


def readable_key(raw: str | bytes, key: Sequence[str]) -> tuple[Any, ...] | None:
    """The key a bad line still names, or None when it cannot be read with certainty.

    Read leniently (the line is bad: a trailing comma, a cut-off end, a duplicate member
    elsewhere, an invalid byte elsewhere), but certainly: the line is an object (`{` first);
    each key path is reached through objects by member names, occurs exactly once at its
    place, and holds one scalar token that is valid JSON on its own (a string, a number,
    `true`/`false`), and the names on the way are valid strings; brackets close in order and
    nothing follows the object (a line holds one record). A key named twice, a null,
    object or array key value, or any doubt: None (the manifest counts the line as one whose
    key could not be read)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    wanted = {tuple(p.split(".")): i for i, p in enumerate(key)}
    prefixes = {path[:n] for path in wanted for n in range(1, len(path))}
    found: list[list[bytes]] = [[] for _ in key]
    # The containers open at the current point: for an object, its path (None when it is not
    # on any key path, or lies inside an array) and the member name just read.
    stack: list[list[Any]] = []
    expect_name = False
    tokens = _tokens(raw)
    first = next(tokens, None)
    if first is None or first[0] != 0x7B:  # {
        return None
    stack.append(["{", (), None])
    expect_name = True
    pending_value_of: int | None = None  # the key path whose value comes next
    for kind, text in tokens:
        if not stack:
            return None  # more after the record's object: more than one value
        top = stack[-1]
        if pending_value_of is not None:
            i, pending_value_of = pending_value_of, None
            if kind in (0x22, 0):
                found[i].append(text)
                continue
            found[i].append(b"")  # an object, array or junk: no scalar key value
        if kind in (0x7B, 0x5B):  # { [
            if top[0] == "{" and top[1] is not None and top[2] is not None:
                path = top[1] + (top[2],)
                inner = path if kind == 0x7B and path in prefixes else None
            else:
                inner = None
            stack.append(["{" if kind == 0x7B else "[", inner, None])
            expect_name = kind == 0x7B
        elif kind in (0x7D, 0x5D):  # } ]
            if top[0] != ("{" if kind == 0x7D else "["):
                return None  # a closer that does not match its opener
            stack.pop()
            expect_name = False
        elif kind == 0x2C:  # ,
            expect_name = top[0] == "{"
        elif kind == 0x3A:  # :
            if top[0] == "{" and top[1] is not None and top[2] is not None:
                i = wanted.get(top[1] + (top[2],))
                if i is not None:
                    pending_value_of = i
            expect_name = False
        elif top[0] == "{" and expect_name:
            try:
                name = _decode(text) if kind == 0x22 else None
            except ValueError:
                name = None
            if not isinstance(name, str):
                if top[1] is not None and any(p[: len(top[1])] == top[1] for p in wanted):
                    return None  # an unreadable name where a key path could be: doubt
                name = None
            top[2] = name
            expect_name = False
    if pending_value_of is not None:
        found[pending_value_of].append(b"")
    values = []
    for path, tokens_found in zip(key, found, strict=True):
        if len(tokens_found) != 1 or not tokens_found[0]:
            return None
        try:
            value = _decode(tokens_found[0])
        except ValueError:
            return None
        if key_value_problem(path, value) is not None:
            return None
        values.append(value)
    return tuple(values)
