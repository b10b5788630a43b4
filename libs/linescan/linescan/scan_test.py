"""The scanner against the standard library's JSON parser (the contract's exact parser is
`json.loads` with NaN/Infinity rejected): whatever it vouches for must be right; what it
declines, the caller parses. Views are read back with pyarrow."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linescan


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")  # the contract's `duplicate_member`
    return obj


def _has_duplicate_members(text: str) -> bool:
    try:
        exact(text)
    except ValueError:
        return True
    return False


def _has_escaped_name(text: str) -> bool:
    """Whether a member name of the text holds a backslash escape (string tokens in order)."""
    tokens = re.finditer(r'"((?:[^"\\]|\\.)*)"[ \t\r]*(:?)', text)
    return any(m.group(2) and "\\" in m.group(1) for m in tokens)


def exact(text: str) -> Any:
    return json.loads(
        text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_members
    )


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def get_path(obj: Any, path: str) -> Any:
    for step in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


def exact_key(text: str, key: tuple[str, ...]) -> str | None:
    """The key token the engine's exact path gives, or None (no valid record or no key)."""
    try:
        obj = exact(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    tokens = []
    for path in key:
        value = get_path(obj, path)
        if value is None:
            return None
        tokens.append(canonical(value))
    return "\x1f".join(tokens)


def leaf_types(obj: dict, prefix: str = "") -> dict[str, str]:
    """The contract's leaves (null members skipped, objects descended, arrays whole)."""
    out: dict[str, str] = {}
    for name, value in obj.items():
        if value is None:
            continue
        if isinstance(value, dict):
            out.update(leaf_types(value, f"{prefix}{name}."))
        else:
            kind = {str: "string", bool: "boolean", list: "array"}.get(type(value), "number")
            out[prefix + name] = kind
    return out


def scan_all(data: bytes, key: tuple[str, ...]) -> tuple[list[dict[str, Any]], set]:
    """Every line's scan result as a dict (line, key, flags), and the scan's leaf types."""
    steps = [[step.encode() for step in path.split(".")] for path in key]
    n, lv, kv, flags, types, key_data, bad_utf8 = linescan.scan(data, steps)
    text = pa.py_buffer(data)
    kbuf = text if key_data is None else pa.py_buffer(key_data)
    lines = pa.Array.from_buffers(pa.binary_view(), n, [None, pa.py_buffer(lv), text])
    keys = pa.Array.from_buffers(pa.binary_view(), n, [None, pa.py_buffer(kv), kbuf])
    out = []
    for i in range(n):
        f = flags[i]
        out.append(
            {
                "line": lines[i].as_py(),
                "key": keys[i].as_py().decode() if f & linescan.KEY else None,
                "blank": bool(f & linescan.BLANK),
                "valid": bool(f & linescan.VALID),
                "utf8": bool(f & linescan.UTF8),
                "typed": bool(f & linescan.TYPED),
            }
        )
    assert sum(not r["utf8"] for r in out) == bad_utf8
    return out, {(path.decode(), linescan.KINDS[kind]) for path, kind in types}


def scan(data: bytes, key: tuple[str, ...]) -> list[dict[str, Any]]:
    return scan_all(data, key)[0]


# --------------------------------------------------------------------------------------------
# Random records, written with random spacing, escapes and member order

_names = st.sampled_from(["id", "a", "b", "c", "d", "é", 'q"t', "id2", "c.d"])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
_values = st.recursive(
    _scalars,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_names, c, max_size=3)),
    max_leaves=8,
)
_objects = st.dictionaries(_names, _values, max_size=5)
KEYS = (("id",), ("c.d",), ("id", "a"), ("é",), ('q"t',), ("a.b.c",))


def render(obj: Any, rng: random.Random) -> str:
    """JSON text of `obj` with random spacing, escaping, number spelling; same value."""
    ws = lambda: rng.choice(["", "", " ", "\t", " \r "])  # noqa: E731
    if isinstance(obj, dict):
        items = [
            f"{ws()}{json.dumps(k, ensure_ascii=rng.random() < 0.3)}{ws()}:{ws()}{render(v, rng)}{ws()}"
            for k, v in obj.items()
        ]
        if obj and rng.random() < 0.1:  # a duplicated member: a bad record, never vouched for
            k = rng.choice(list(obj))
            items.insert(0, f"{json.dumps(k)}:{render(obj[k], rng)}")
        return "{" + ",".join(items) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(ws() + render(v, rng) + ws() for v in obj) + "]"
    if isinstance(obj, int) and not isinstance(obj, bool) and rng.random() < 0.1:
        return f"{obj}.0" if rng.random() < 0.5 else f"{obj}e0"
    return json.dumps(obj, ensure_ascii=rng.random() < 0.3)


def check_line(result: dict[str, Any], text: str, key: tuple[str, ...]) -> None:
    """What the scanner says of one line is what the exact parser says."""
    assert result["line"] == text.rstrip("\r").encode()
    if result["blank"]:
        assert not text.strip(" \t\r\n")
        return
    if result["valid"]:
        assert isinstance(exact(text), dict), text
    if result["key"] is not None:
        assert result["valid"]
        assert result["key"] == exact_key(text, key), (text, key)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_objects, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_valid_records_vouched_for_and_keys_exact(objs: list[dict], rng: random.Random) -> None:
    lines = [render(o, rng) for o in objs]
    data = "\n".join(lines).encode()
    for key in KEYS:
        results = scan(data, key)
        assert len(results) == len(lines)
        for result, text in zip(results, lines, strict=True):
            check_line(result, text, key)
            # Every record without lone surrogates, duplicate or escaped member names (the
            # exact parser decides those) is vouched for.
            decided_by_parser = _has_duplicate_members(text) or _has_escaped_name(text)
            assert result["valid"] or decided_by_parser, text
    # A key that is an integer, a string without escapes or a boolean, written once: cut out.
    simple = [f'{{"x":[1,{{"id":0}}],"id":{v},"y":{{"id":"z"}}}}' for v in ("12", '"k"', "true")]
    assert [r["key"] for r in scan("\n".join(simple).encode(), ("id",))] == ["12", '"k"', "true"]


@settings(max_examples=400, deadline=None)
@given(
    _objects,
    st.randoms(use_true_random=False),
    st.integers(0, 60),
    st.sampled_from(
        ["", ",", "}", "{", "]", "x", "\\", '"', "[", "1e", "\x01", " ", "\\ud800", "\u2028", ":"]
    ),
)
def test_bad_text_never_vouched_for(obj: dict, rng: random.Random, cut: int, noise: str) -> None:
    text = render(obj, rng)
    for candidate in (text[:cut] + noise + text[cut:], text[:cut], noise + text, text + noise):
        for key in KEYS[:3]:
            for result in scan(candidate.encode(), key):  # no line for empty text
                check_line(result, candidate, key)


@settings(max_examples=200, deadline=None)
@given(st.lists(_objects, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_types_are_the_leaf_types_of_the_typed_lines(objs: list[dict], rng: random.Random) -> None:
    """Taken once per shape, the types are still exactly those of every typed line."""
    lines = [render(o, rng) for o in objs for _ in range(2)]  # each shape at least twice
    results, types = scan_all("\n".join(lines).encode(), ("id",))
    want = set()
    for result, text in zip(results, lines, strict=True):
        assert not result["typed"] or result["key"] is not None
        if result["typed"]:
            want |= set(leaf_types(exact(text)).items())
    assert types == want


def test_types_names_nesting_arrays_and_declines() -> None:
    lines = [
        '{"id":1,"a":1,"b":"x"}',
        '{"id":2,"a":2.5e3,"b":"yy"}',  # same shape
        '{"id":3,"a":"1","o":{"p":true,"q":null}}',
        '{"id":4,"a":[1,{"z":"q"}],"a.b":{}}',  # an array is one leaf; {} has none
        '{"id":5,"\\u0061":1}',  # an escaped member name: left to the exact path
        '{"id":6,"a":1,"a":"s"}',  # a repeated member: left to the exact path
        '{"id":7,"t":true}',
        '{"id":8,"t":"x"}',  # the same names, another type: another shape
        '{"id":9,"t":[]}',
        '{"id":10,"t":{}}',  # no leaf at all under t
    ]
    results, types = scan_all("\n".join(lines).encode(), ("id",))
    assert [r["typed"] for r in results] == [True] * 4 + [False] * 2 + [True] * 4
    assert types == {
        ("id", "number"),
        ("a", "number"),
        ("b", "string"),
        ("a", "string"),
        ("o.p", "boolean"),
        ("a", "array"),
        ("t", "boolean"),
        ("t", "string"),
        ("t", "array"),
    }


def test_lines_blank_lines_crlf_and_last_line() -> None:
    data = b'{"id":1}\r\n\n  \t\n{"id":2}\r\r\n{"id":3}'
    results = scan(data, ("id",))
    assert [r["line"] for r in results] == [b'{"id":1}', b"", b"  \t", b'{"id":2}', b'{"id":3}']
    assert [r["blank"] for r in results] == [False, True, True, False, False]
    assert [r["key"] for r in results] == ["1", None, None, "2", "3"]
    assert scan(b"", ("id",)) == []
    assert len(scan(b'{"id":1}\n', ("id",))) == 1  # a final newline ends the last line


@pytest.mark.parametrize(
    ("text", "valid", "key"),
    [
        ('{"id":1}', True, "1"),
        ('{"id":-0}', True, None),  # the integer 0: canonically "0", left to the parser
        ('{"id":1.0}', True, None),
        ('{"id":"a\\u0062"}', True, None),  # escapes: left to the parser
        ('{"i\\u0064":1}', False, None),  # an escaped name may repeat another: the parser decides
        ('{"id":1,"id":2}', False, None),  # a duplicated member: a bad record (the parser names it)
        ('{"id":null}', True, None),
        ('{"id":{"x":1}}', True, None),
        ('{"x":1}', True, None),
        ('{"id":"\\ud800"}', False, None),  # lone surrogate: the exact parser decides
        ('{"id":"\\udc00\\ud800"}', False, None),
        ('{"id":"\\ud83d\\ude00"}', True, None),  # a pair is fine (escaped: no fast key)
        ('{"id":1', False, None),
        ('{"id":01}', False, None),
        ('{"id":1,}', False, None),
        ("[1]", False, None),
        ('{"id":NaN}', False, None),
        ('{"a":"\x01"}', False, None),
        ('{"id":1} x', False, None),
        ("[" * 70 + "]" * 70, False, None),
    ],
)
def test_cases(text: str, valid: bool, key: str | None) -> None:
    (result,) = scan(text.encode(), ("id",))
    assert (result["valid"], result["key"]) == (valid, key)
    check_line(result, text, ("id",))


def test_depth_limit_declines_not_rejects() -> None:
    deep = '{"id":1,"a":' + "[" * 80 + "]" * 80 + "}"
    (result,) = scan(deep.encode(), ("id",))
    assert not result["valid"] and result["utf8"]
    assert isinstance(exact(deep), dict)  # valid: the caller's exact parse says so


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80"],
)
def test_invalid_utf8_counted(raw: bytes) -> None:
    for data in (b'{"id":1,"s":"' + raw + b'"}', b"x" + raw, b'{"id":"' + raw + b'"}'):
        (result,) = scan(data, ("id",))
        assert not result["utf8"] and not result["valid"] and result["key"] is None
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")


def test_composite_and_nested_keys() -> None:
    data = '{"t":"日本","o":{"id":"7"},"v":1}\n{"o":{"id":7},"t":"ção"}\n{"o":{"x":1},"t":"a"}'
    results = scan(data.encode(), ("t", "o.id"))
    assert [r["key"] for r in results] == ['"日本"\x1f"7"', '"ção"\x1f7', None]
    long = '{"t":"' + "x" * 40 + '","o":{"id":123456789012345}}'
    assert scan(long.encode(), ("t", "o.id"))[0]["key"] == '"' + "x" * 40 + '"\x1f123456789012345'


def test_arguments_checked() -> None:
    with pytest.raises(ValueError):
        linescan.scan(b"{}", [])
    with pytest.raises(TypeError):
        linescan.scan(b"{}", [["id"]])  # names are bytes


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        ('{"a":1,"b":"x"}', '{"b":"x","a":1}', []),  # member order
        ('{"a":1}', '{"a":1.0}', []),  # numbers by value
        ('{"a":1500}', '{"a":15e2}', []),
        ('{"a":0.1}', '{"a":0.10}', []),
        ('{"a":-0}', '{"a":0}', []),
        ('{"a":1,"n":null}', '{"a":1}', []),  # a null member is no leaf
        ('{"o":{}}', '{"o":null}', []),
        ('{"a":1}', '{"a":2}', ["a"]),
        ('{"a":1152921504606846977}', '{"a":1152921504606846978}', ["a"]),  # beyond 2**53
        ('{"a":1}', '{"a":"1"}', ["a"]),  # type-strict
        ('{"a":true}', '{"a":1}', ["a"]),
        ('{"a":true}', '{"a":false}', ["a"]),
        ('{"a":"é"}', '{"a":"e"}', ["a"]),
        ('{"a":[1,2]}', '{"a":[1,2,3]}', ["a"]),  # arrays of other lengths
        ('{"o":{"x":1,"y":2}}', '{"o":{"x":1},"z":[]}', ["o.y", "z"]),
        ('{"é":1,"b":1}', '{"é":2,"b":2}', ["b", "é"]),  # code point order
        ('{"a":"\\u00e9"}', '{"a":"é"}', None),  # escapes: the parsed values decide
        ('{"a":[1,2]}', '{"a":[1,3]}', None),  # same length: element by element
        ('{"a":1152921504606846977}', '{"a":1.0}', None),  # no exact double
        ('{"a":1,"a":2}', '{"a":2}', None),  # a repeated member
        ('{"a.b":1}', '{"a":{"b":1}}', []),  # the same leaf path
        ('{"a.b":1,"a":{"b":1}}', '{"a":{"b":1}}', None),  # one path twice
        ('{"a":1}', "[1]", None),
        ('{"a":1}', '{"a":1', None),
    ],
)
def test_changed_from_text(before: str, after: str, changed: list[str] | None) -> None:
    assert linescan.changed(before.encode(), after.encode()) == changed


def test_changed_arguments_checked() -> None:
    with pytest.raises(TypeError):
        linescan.changed("{}", b"{}")  # bytes only


_json_bytes = st.sampled_from(
    [b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b" ", b"\n", b"\r", b"0", b"-", b"1e", b".5"]
    + [b"true", b"null", b'"id"', b"\\u00e9", b"\\ud800", b"\xc3\xa9", b"\xff", b"\x00", b"\t"]
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.lists(_json_bytes, max_size=60).map(b"".join)))
def test_any_bytes_never_vouched_for_wrongly(data: bytes) -> None:
    """Nasty input: no crash, and whatever the scanner vouches for, the exact parser accepts."""
    for key in KEYS[:3]:
        results, types = scan_all(data, key)
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        assert len(results) == len(lines)
        for result, raw in zip(results, lines, strict=True):
            assert result["line"] == raw.rstrip(b"\r")
            if result["valid"]:
                check_line(result, raw.decode(), key)
    for cut in range(0, len(data), 7):
        before, after = data[:cut], data[cut:]
        got = linescan.changed(before, after)
        if got is not None:  # only for two valid records
            assert isinstance(exact(before.decode()), dict) and isinstance(
                exact(after.decode()), dict
            )


@pytest.mark.parametrize(
    "x, y",
    [
        ("0.1", "0.10000000000000001"),  # one double, two numbers
        ("1e400", "2e400"),  # both overflow to inf
        ("-1e400", "-2e400"),
        ("1e-400", "2e-400"),  # both underflow to 0
        ("123456789.1234567", "123456789.12345671"),
        ("4.9e-324", "5e-324"),  # subnormals
    ],
)
def test_changed_never_calls_different_numbers_equal(x: str, y: str) -> None:
    """Numbers compare by exact decimal value: where a double cannot tell, decline (None)."""
    got = linescan.changed(f'{{"id":1,"v":{x}}}'.encode(), f'{{"id":1,"v":{y}}}'.encode())
    assert got in (None, ["v"])


def test_changed_still_answers_for_numbers_doubles_tell_apart() -> None:
    assert linescan.changed(b'{"v":1.5}', b'{"v":1.50}') == []
    assert linescan.changed(b'{"v":1.5}', b'{"v":2.5e0}') == ["v"]
    assert linescan.changed(b'{"v":0.0}', b'{"v":-0}') == []


@pytest.mark.parametrize("width", [1, 2, 63, 64, 65, 300, 2000])
def test_duplicate_member_names_never_vouched_for(width: int) -> None:
    """Contract §1: two members of one name in one object, at any depth and in objects of any
    width, make the line bad; the same names in different objects do not."""
    names = [f"m{i}" for i in range(width)]
    members = ",".join(f'"{n}":{i}' for i, n in enumerate(names))
    good = [
        f'{{"id":1,{members}}}',
        f'{{"id":1,"x":{{{members}}},"y":{{{members}}}}}',  # the same names in two objects
        f'{{"id":1,"a":[{{{members}}},{{{members}}}],{members}}}',
    ]
    bad = [
        f'{{"id":1,{members},"{names[0]}":0}}',
        f'{{"id":1,"x":{{{members},"{names[-1]}":0}}}}',
        f'{{"id":1,"a":[1,{{"b":[{{{members},"{names[width // 2]}":0}}]}}]}}',
        f'{{"id":1,{members},"id":2}}',
        f'{{"id":1,"\\u006d0":9,{members}}}',  # m0 spelled with an escape
    ]
    for text in good:
        (result,) = scan(text.encode(), ("id",))
        assert result["valid"] and result["key"] == "1", text[:80]
    for text in bad:
        (result,) = scan(text.encode(), ("id",))
        assert not result["valid"] and result["key"] is None, text[:80]
        with pytest.raises(ValueError):
            exact(text)
