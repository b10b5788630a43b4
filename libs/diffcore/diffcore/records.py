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

    The line is read as JSON's grammar says, token by token, tolerating only damage that
    cannot move a member or hide a record: a value that is not JSON on its own (`NaN`, `01`,
    `'x'`, a string with a bad escape or byte), a trailing comma, a member named twice away
    from the key's path, and a cut-off end. Any other token out of place (a quote inside a
    string, two values in a row, an object glued after a value, a closer that does not match)
    is doubt: None. The key: each key path reached through objects by member names, named
    once at every step, holding one scalar token (a string, a number, `true`/`false`) that is
    valid JSON on its own and that a `,` or `}` ends (a number at a cut-off end may be cut).
    None is counted in the manifest as a line whose key could not be read."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    wanted = {tuple(p.split(".")): i for i, p in enumerate(key)}
    relevant = {path[:n] for path in wanted for n in range(1, len(path) + 1)}
    found: list[list[bytes]] = [[] for _ in key]
    tokens = _tokens(raw)
    first = next(tokens, None)
    if first is None or first[0] != _OPEN_OBJECT:
        return None
    # Open containers: [kind, path (objects on a key path, else None), state, name, names seen]
    stack: list[list[Any]] = [[_OPEN_OBJECT, (), _NAME_OR_CLOSE, None, set()]]
    held: int | None = None  # the key path whose value was just read, until `,` or `}`
    for kind, text in tokens:
        if not stack:
            return None  # more after the record's object: a line holds one record
        top = stack[-1]
        state = top[2]
        if held is not None and kind not in (_COMMA, _CLOSE_OBJECT):
            return None  # the key's value is not ended where a value ends
        held = None
        if state in (_VALUE, _VALUE_OR_CLOSE):
            if (
                kind == _CLOSE_ARRAY
                and state == _VALUE_OR_CLOSE
                or (kind == _CLOSE_ARRAY and top[0] == _OPEN_ARRAY and state == _VALUE)
            ):  # `[]`, or a trailing comma
                stack.pop()
                if stack:
                    stack[-1][2] = _COMMA_OR_CLOSE
                continue
            if kind in (_STRING, _WORD):
                if top[0] == _OPEN_OBJECT and top[1] is not None:
                    i = wanted.get(top[1] + (top[3],))
                    if i is not None:
                        found[i].append(text)
                        held = i
                top[2] = _COMMA_OR_CLOSE
                continue
            if kind in (_OPEN_OBJECT, _OPEN_ARRAY):
                path = None
                if top[0] == _OPEN_OBJECT and top[1] is not None:
                    inner = top[1] + (top[3],)
                    path = inner if kind == _OPEN_OBJECT and inner in relevant else None
                    i = wanted.get(inner)
                    if i is not None:
                        found[i].append(b"")  # an object or array: no scalar key value
                top[2] = _COMMA_OR_CLOSE
                state_in = _NAME_OR_CLOSE if kind == _OPEN_OBJECT else _VALUE_OR_CLOSE
                stack.append([kind, path, state_in, None, set()])
                continue
            return None
        if state == _COMMA_OR_CLOSE:
            if kind == _COMMA:
                top[2] = _NAME if top[0] == _OPEN_OBJECT else _VALUE
            elif kind == (_CLOSE_OBJECT if top[0] == _OPEN_OBJECT else _CLOSE_ARRAY):
                stack.pop()
                if stack:
                    stack[-1][2] = _COMMA_OR_CLOSE
            else:
                return None
            continue
        if state in (_NAME, _NAME_OR_CLOSE):
            if kind == _CLOSE_OBJECT:  # `{}`, or a trailing comma
                stack.pop()
                if stack:
                    stack[-1][2] = _COMMA_OR_CLOSE
                continue
            if kind != _STRING:
                return None  # an unquoted name: where does the member start?
            try:
                name = _decode(text)
            except ValueError:
                name = None
            on_path = top[1] is not None
            if on_path and (name is None or top[1] + (name,) in relevant):
                if name is None or name in top[4]:
                    return None  # a name on the key's path unreadable, or named twice
                top[4].add(name)
            top[3] = name
            top[2] = _COLON
            continue
        if state == _COLON:
            if kind != _COLON_TOKEN:
                return None
            top[2] = _VALUE
            continue
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
    if held is not None and not found[held][0].startswith(b'"'):
        return None  # a number or literal at the cut-off end: it may have been longer
    return tuple(values)


_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = 0x7B, 0x7D, 0x5B, 0x5D
_COMMA, _COLON_TOKEN, _STRING, _WORD = 0x2C, 0x3A, 0x22, 0
# What an open container expects next.
_NAME_OR_CLOSE, _NAME, _COLON, _VALUE, _VALUE_OR_CLOSE, _COMMA_OR_CLOSE = range(6)
