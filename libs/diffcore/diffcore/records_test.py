"""The record rules: one class and one message per problem, and what a bad line still says
about its key (contract §1, §6)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcore import jsonvalue, records
from diffcore.errors import ErrorClass


@pytest.mark.parametrize(
    ("text", "error_class", "message"),
    [
        ('{"a":1,"a":2}', ErrorClass.DUPLICATE_MEMBER, 'member "a" occurs twice in one object'),
        ('{"x":{"b":1,"b":1}}', ErrorClass.DUPLICATE_MEMBER, 'member "b" occurs twice'),
        ('{"x":[{"c":1},{"d":1,"d":1}]}', ErrorClass.DUPLICATE_MEMBER, 'member "d" occurs'),
        ('{"a":1,"\\u0061":2}', ErrorClass.DUPLICATE_MEMBER, 'member "a" occurs twice'),
        ('{"\\ud800":1,"\\ud800":2}', ErrorClass.DUPLICATE_MEMBER, 'member "\\ud800" occurs'),
        ('{"a":1,}', ErrorClass.MALFORMED_JSON, "invalid JSON: Expecting property name"),
        ('{"a":NaN}', ErrorClass.MALFORMED_JSON, "invalid JSON: NaN is not valid JSON"),
        ("[" * 300 + "]" * 300, ErrorClass.MALFORMED_JSON, "invalid JSON: nested too deeply"),
        (b'{"a":"\xff"}', ErrorClass.MALFORMED_JSON, "invalid JSON: 'utf-8' codec"),
        ("[1]", ErrorClass.NOT_AN_OBJECT, "record is a JSON array, not an object"),
        ('"x"', ErrorClass.NOT_AN_OBJECT, "record is a JSON string, not an object"),
    ],
)
def test_each_problem_has_its_class_and_message(
    text: str | bytes, error_class: ErrorClass, message: str
) -> None:
    with pytest.raises(records.RecordError) as err:
        records.parse_object(text)
    assert err.value.error_class is error_class
    assert err.value.message.startswith(message), err.value.message


def test_the_same_names_in_different_objects_are_fine() -> None:
    text = '{"id":1,"a":{"id":2},"b":[{"id":3},{"id":4}],"c":{"a":{"id":5}}}'
    assert records.parse_object(text)["b"] == [{"id": 3}, {"id": 4}]


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"v": 1}, "key field 'id' is missing or null"),
        ({"id": None}, "key field 'id' is missing or null"),
        ({"id": {"a": 1}}, "key field 'id' is an object, not a scalar key value"),
        ({"id": [1]}, "key field 'id' is an array, not a scalar key value"),
    ],
)
def test_key_values_name_the_missing_key(record: dict, problem: str) -> None:
    with pytest.raises(records.RecordError) as err:
        records.key_values(record, ("id",))
    assert (err.value.error_class, err.value.message) == (ErrorClass.MISSING_KEY, problem)


@pytest.mark.parametrize(
    ("line", "key", "values"),
    [
        ('{"id":2,"v":1,}', ("id",), (2,)),  # a trailing comma
        ('{"id":2,"v":', ("id",), (2,)),  # cut off
        ('{"id":"a","v":1,"v":2}', ("id",), ("a",)),  # a duplicate member elsewhere
        ('{"id":1.0,"v":NaN}', ("id",), (jsonvalue.Number("1.0"),)),
        ('{"x":{"id":5},"id":7,}', ("id",), (7,)),  # an id in another object is not it
        ('{"x":{"id":5},"id":7,,}', ("id",), None),  # two commas: out of the grammar
        ('{"a":[{"id":3}],"id":4,}', ("id",), (4,)),
        ('{"c":{"id":1,"t":"x"},"c2":3,}', ("c.id",), (1,)),
        ('{"t":"br","c":{"id":1,}}', ("t", "c.id"), ("br", 1)),
        ('{"id":"\\ud800",}', ("id",), ("\ud800",)),
        (b'{"id":7,"v":"\xff"}', ("id",), (7,)),  # an invalid byte elsewhere
        ('{"id":1,"id":2}', ("id",), None),  # the key itself twice: which one?
        ('{"c":{"id":1},"c":{"id":2},}', ("c.id",), None),
        ("[1]", ("id",), None),
        ('[{"id":1}]', ("id",), None),
        ('{"v":1,}', ("id",), None),
        ('{"id":null,}', ("id",), None),
        ('{"id":{"a":1},}', ("id",), None),
        ('{"id":[1],}', ("id",), None),
        ('{"id":NaN}', ("id",), None),
        ('{"id":"abc', ("id",), None),  # unterminated
        ('{"id":1 "v":1}', ("id",), None),  # the next name is not where a name goes
        ("{id:1}", ("id",), None),  # an unquoted name where the key could be
        (b'{"id":"\xff"}', ("id",), None),
        ("", ("id",), None),
        ('{"id":2,"v":}, {"id":3}]', ("id",), None),  # more than one value
        # A token out of place near the key is doubt, never another key (adversarial review):
        ('{"id":"O"Brien","v":1}', ("id",), None),  # a quote inside the key string
        ('{"v":1,"id":12', ("id",), None),  # a number at a cut-off end may be cut
        ('{"v":1,"id":"ab"', ("id",), ("ab",)),  # a closed string is whole
        ('{"id":1 2,"v":1}', ("id",), None),
        ('{"id":5,"v":1{"id":7,"v":1}', ("id",), None),  # two records glued
        ('{"id":5,"v":"abc{"id":7,"v":1}', ("id",), None),
        ('{"id":"O Brien,"z":true}', ("id",), None),
        ('{"id":true false}', ("id",), None),
        ('{"id"x:1,}', ("id",), None),
        ('{"c":{"id":1},"c":5}', ("c.id",), None),  # a parent on the key path named twice
        ('{"id":2,"v":[1,2,]}', ("id",), (2,)),  # a trailing comma in an array
        ('{"id":2,"v":[1}', ("id",), None),  # brackets out of order
        ('{"id":2}}', ("id",), None),
    ],
)
def test_readable_key(line: str | bytes, key: tuple[str, ...], values: tuple | None) -> None:
    assert records.readable_key(line, key) == values


_scalars = st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=6), st.booleans(), st.just(1.5))
_records = st.fixed_dictionaries(
    {"id": _scalars},
    optional={"v": st.one_of(_scalars, st.lists(_scalars, max_size=3)), "w": st.text()},
)


@settings(max_examples=300, deadline=None)
@given(_records, st.integers(0, 200), st.sampled_from([",", ",}", "}", "x", '"', ":", "]", "{"]))
def test_readable_key_of_a_damaged_line_is_its_key_or_none(
    record: dict, cut: int, junk: str
) -> None:
    """A valid record damaged after its key: the key it reads is the record's key, or None;
    never another key (the event of another record would be withheld)."""
    text = json.dumps(record, ensure_ascii=False)
    damaged = text[: max(cut, text.index(",") if "," in text else len(text) - 1)] + junk
    got = records.readable_key(damaged, ("id",))
    assert got is None or jsonvalue.canonical_json(got[0]) == jsonvalue.canonical_json(
        record["id"]
    ), (damaged, got)


def test_the_rest_of_an_array_file_names_no_key() -> None:
    from diffcore import sources

    message = f"malformed JSON in array element ({sources.ARRAY_REST})"
    assert sources.is_array_rest(message)
    assert records.key_of_bad_record('{"id":2,"v":NaN', message, ("id",)) is None
    assert records.key_of_bad_record('{"id":2,"v":NaN', "invalid JSON: x", ("id",)) == (2,)


_EDIT_BYTES = st.sampled_from(list(b'" ,}{:[]0a.\\'))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_records, min_size=1, max_size=3),
    st.integers(0, 10_000),
    st.sampled_from(["delete", "insert", "replace"]),
    _EDIT_BYTES,
)
def test_a_one_byte_damage_never_reads_another_records_key(
    records_: list[dict], where: int, edit: str, byte: int
) -> None:
    """Damage one byte of a line (or of lines glued together): if the line is then bad, the
    key it reads is the first record's own, or None; never another record's key."""
    line = "".join(json.dumps(r, ensure_ascii=False) for r in records_).encode()
    at = where % (len(line) + 1)
    if edit == "delete":
        damaged = line[:at] + line[at + 1 :]
    elif edit == "insert":
        damaged = line[:at] + bytes([byte]) + line[at:]
    else:
        damaged = line[:at] + bytes([byte]) + line[at + 1 :]
    try:
        jsonvalue.loads(damaged)
        return  # still a valid record (then the engines read it as one)
    except ValueError:
        pass
    got = records.readable_key(damaged, ("id",))
    own = jsonvalue.canonical_json(records_[0]["id"])
    assert got is None or jsonvalue.canonical_json(got[0]) == own, (damaged, got)
