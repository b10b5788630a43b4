from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcore import jsonvalue as jv


def test_loads_exact_and_strict() -> None:
    assert jv.loads("123456789012345678901234567890") == 123456789012345678901234567890
    assert jv.loads(b'{"a":1.0}') == {"a": 1.0}
    for bad in ("NaN", "[Infinity]", '{"a":-Infinity}', "{", "[1,]", "'a'"):
        with pytest.raises(ValueError):
            jv.loads(bad)


def test_canonical_and_compact() -> None:
    value = {"b": 1, "a": ["é", {"d": None, "c": True}]}
    assert jv.canonical_json(value) == '{"a":["é",{"c":true,"d":null}],"b":1}'
    assert jv.compact_json(value) == '{"b":1,"a":["é",{"d":null,"c":true}]}'


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, "null"),
        (True, "boolean"),
        (0, "number"),
        (1.5, "number"),
        ("", "string"),
        ([], "array"),
        ({}, "object"),
    ],
)
def test_json_type(value: object, expected: str) -> None:
    assert jv.json_type(value) == expected
    assert jv.is_number(value) is (expected == "number")


@pytest.mark.parametrize(
    "a,b,equal",
    [
        (1, 1.0, True),
        (2**53 + 1, float(2**53), False),
        (2**64, 2**64, True),
        # A float stands for the JSON text of its repr ("9.223372036854776e+18"): that
        # decimal is not 2**63 (contract §3: exact decimal values, never through a float).
        (2**63, 2.0**63, False),
        (9223372036854776000, 2.0**63, True),
        ("1", 1, False),
        (True, 1, False),
        (False, 0, False),
        ([], None, False),
        ({}, None, True),
        ({"a": None}, None, True),
        ({"a": None}, {}, True),
        ([1, 2], [2, 1], False),
        ([{"a": 1, "b": None}], [{"a": 1.0}], True),
        ("é", "e\u0301", False),
        (" a", "a", False),
        (jv.loads("1e400"), jv.loads("2e400"), False),  # both inf as doubles
        (jv.loads("-1e400"), jv.loads("1e400"), False),
        (jv.loads("1e400"), jv.loads("10e399"), True),
        (jv.loads("0.1"), jv.loads("0.10000000000000001"), False),  # one double
        (jv.loads("0.1"), 0.1, True),  # orjson's float of the literal "0.1"
        (jv.loads("1.50"), jv.loads("1.5"), True),
        (jv.loads("1e2"), 100, True),
        (jv.loads("123e-10000000"), jv.loads("0"), False),  # underflows to 0 as a double
        (0.1 + 0.2, 0.3, False),
    ],
)
def test_values_equal(a: object, b: object, equal: bool) -> None:
    assert jv.values_equal(a, b) is equal
    assert jv.values_equal(b, a) is equal


def test_leaves_and_changed_paths() -> None:
    before = {"id": 1, "a": {"b": {"c": 1}, "z": None}, "arr": [1, {"x": 1}], "gone": {"k": 1}}
    after = {"arr": [1, {"x": 1.0}], "id": 1.0, "a": {"b": {"c": 2}}, "new": {"p": {"q": "s"}}}
    assert jv.leaves(before) == {"id": 1, "a.b.c": 1, "arr": [1, {"x": 1}], "gone.k": 1}
    assert jv.changed_paths(before, after) == ["a.b.c", "gone.k", "new.p.q"]
    assert jv.changed_paths(before, after, ["a", "new"]) == ["gone.k"]
    assert jv.changed_paths(before, before) == []
    assert jv.leaf_types(after) == {
        "arr": "array",
        "id": "number",
        "a.b.c": "number",
        "new.p.q": "string",
    }


def test_is_ignored_and_get_path() -> None:
    assert jv.is_ignored("meta.etag", ["meta"]) and jv.is_ignored("meta", ["meta"])
    assert not jv.is_ignored("metadata", ["meta"])
    record = {"customer": {"id": 7, "tags": ["a"]}, "x": 1}
    assert jv.get_path(record, "customer.id") == 7
    assert jv.get_path(record, "customer.id.deeper") is None
    assert jv.get_path(record, "x.y") is None and jv.get_path(record, "nope") is None


_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=4),
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=3), c, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(_json)
def test_roundtrip_is_equal_and_normalize_hashable(value: object) -> None:
    again = jv.loads(json.dumps(value))
    assert jv.values_equal(value, again)
    hash(jv.normalize(value))
    assert jv.loads(jv.canonical_json(value)) == jv.loads(json.dumps(value, sort_keys=True))


# --------------------------------------------------------------------- the fast hot-path forms

_fast_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=4),
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "a.b", "c"]), c, max_size=3),
    ),
    max_leaves=12,
)
_fast_records = st.dictionaries(
    st.sampled_from(["a", "b", "a.b", "c", "d"]), _fast_values, max_size=5
)


@settings(max_examples=500, deadline=None)
@given(record=_fast_records)
def test_leaves_into_and_types_of_leaves_are_leaves_and_leaf_types(record) -> None:
    out: dict = {}
    jv.leaves_into(record, "", out)
    assert out == jv.leaves(record)
    assert jv.types_of_leaves(out) == jv.leaf_types(record)


@settings(max_examples=800, deadline=None)
@given(
    before=_fast_records,
    after=_fast_records,
    ignored=st.lists(st.sampled_from(["a", "b", "a.b", "c.x"]), max_size=2),
)
def test_changed_paths_fast_is_changed_paths(before, after, ignored) -> None:
    want = jv.changed_paths(before, after, ignored)
    assert jv.changed_paths_fast(before, after, tuple(ignored)) == want
    assert jv.changed_paths_fast(before, before, tuple(ignored)) == []


@settings(max_examples=300, deadline=None)
@given(record=_fast_records)
def test_changed_paths_fast_on_copies(record) -> None:
    # Arrays equal as text take the shortcut (`_same_json_text`): a copy must still agree with
    # the reference (no change).
    copy = json.loads(json.dumps(record))
    assert jv.changed_paths_fast(record, copy) == jv.changed_paths(record, copy) == []


@pytest.mark.parametrize(
    "x, y",
    [
        ([float("inf")], [None]),  # orjson writes both as [null]
        ([1, 2], [1, 2]),
        ([1], [1.0]),
        ([True], [1]),
        ([2**70], [2**70]),  # orjson cannot write it
        ([2**70], [2**70 + 1]),
        ([{"a": None}], [{}]),
        ([{"a": 1, "b": 2}], [{"b": 2, "a": 1}]),
        (["null"], ["null"]),
        ([[]], [[None]]),
    ],
)
def test_changed_paths_fast_arrays(x: list, y: list) -> None:
    a, b = {"id": 1, "v": x}, {"id": 1, "v": y}
    assert jv.changed_paths_fast(a, b) == jv.changed_paths(a, b)


def test_numbers_are_written_as_read() -> None:
    """Exact numbers keep their text in every output form: never `Infinity`, never a float."""
    record = jv.loads('{"big":1e400,"neg":-1e400,"long":0.10000000000000001,"int":12}')
    assert (
        jv.compact_json(record) == '{"big":1e400,"neg":-1e400,"long":0.10000000000000001,"int":12}'
    )
    assert jv.canonical_json({"b": record["big"], "a": 1}) == '{"a":1,"b":1e400}'
    assert jv.leaf_types(record) == dict.fromkeys(record, "number")
    assert jv.changed_paths(record, jv.loads('{"big":2e400,"neg":-1e400,"long":0.1,"int":12}')) == [
        "big",
        "long",
    ]


@pytest.mark.parametrize(
    "text",
    ['{"v":0.10000000000000001}', '{"v":1e400}', '{"v":1.2345678901234567}', '{"v":1e-400}'],
)
def test_loads_fast_is_exact_where_a_double_is_not(text: str) -> None:
    assert jv.loads_fast(text.encode()) == jv.loads(text)
    assert jv.compact_json(jv.loads_fast(text)) == text
