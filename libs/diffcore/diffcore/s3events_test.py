from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcore import layout, s3events


def _message(*keys: str, event: str = "ObjectCreated:Put", etag: str = "e1") -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventName": event,
                    "eventTime": "2026-11-25T03:00:00.000Z",
                    "s3": {
                        "bucket": {"name": "diffs"},
                        "object": {"key": k, "size": 10, "eTag": etag},
                    },
                }
                for k in keys
            ]
        }
    )


def test_parse_message() -> None:
    [ev] = s3events.parse_message(_message("2026-11-25/part-00000.jsonl"))
    assert (ev.bucket, ev.key, ev.run_date, ev.size) == (
        "diffs",
        "2026-11-25/part-00000.jsonl",
        "2026-11-25",
        10,
    )
    assert ev.uri == "s3://diffs/2026-11-25/part-00000.jsonl"
    [ev] = s3events.parse_message(_message("prefix/with+space/2026-11-25/part-00001.jsonl.gz"))
    assert ev.key == "prefix/with space/2026-11-25/part-00001.jsonl.gz"


def test_ignored_messages() -> None:
    assert s3events.parse_message(json.dumps({"Event": "s3:TestEvent", "Bucket": "diffs"})) == []
    assert s3events.parse_message(_message("2026-11-25/_manifest.json")) == []
    assert s3events.parse_message(_message("not-a-date/part-00000.jsonl")) == []
    assert (
        s3events.parse_message(
            _message("2026-11-25/part-00000.jsonl", event="ObjectRemoved:Delete")
        )
        == []
    )
    for bad in ("nope", "[1]", json.dumps({"x": 1})):
        with pytest.raises(s3events.NotAnS3Event):
            s3events.parse_message(bad)


def test_unique_drops_duplicates() -> None:
    events = s3events.parse_message(
        _message("2026-11-25/part-00000.jsonl", "2026-11-25/part-00000.jsonl")
    )
    events += s3events.parse_message(_message("2026-11-25/part-00000.jsonl", etag="e2"))
    assert len(list(s3events.unique(events))) == 2


def _valid_event() -> dict[str, Any]:
    return json.loads(_message("2026-11-25/part-00000.jsonl", "2026-11-25/part-00001.jsonl.gz"))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[" * 100_000, "not JSON"),
        ("null", "not a JSON object"),
        ('{"Records": null}', "Records is null, not an array"),
        ('{"Records": {"eventName": "ObjectCreated:Put"}}', "Records is an object"),
        ('{"Records": "abc"}', "Records is a string"),
        ('{"Records": [null]}', "Records[0] is null, not an object"),
        ('{"Records": [1]}', "Records[0] is a number"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "Records[0] has no s3"),
        ('{"Records": [{"eventName": 5, "s3": {}}]}', "Records[0].eventName is a number"),
        ('{"Records": [{"eventName": "ObjectCreated:Put", "s3": []}]}', "s3 is an array"),
        ('{"Records": [{"eventName": "ObjectCreated:Put", "s3": {}}]}', "s3 has no bucket"),
    ],
)
def test_malformed_bodies_raise_not_an_s3_event(body: str | bytes, says: str) -> None:
    with pytest.raises(s3events.NotAnS3Event, match=re.escape(says)):
        s3events.parse_message(body)


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("s3", "bucket"), None, "Records[0].s3 has no bucket"),
        (("s3", "bucket"), "diffs", "Records[0].s3.bucket is a string, not an object"),
        (("s3", "bucket", "name"), None, "Records[0].s3.bucket has no name"),
        (("s3", "bucket", "name"), 7, "Records[0].s3.bucket.name is a number, not a string"),
        (("s3", "object"), None, "Records[0].s3 has no object"),
        (("s3", "object", "key"), None, "Records[0].s3.object has no key"),
        (("s3", "object", "key"), ["k"], "Records[0].s3.object.key is an array, not a string"),
        (("s3", "object", "key"), "2026-11-25/%FF.jsonl", "does not URL-decode to UTF-8"),
        (("s3", "object", "key"), "2026-11-25/\ud800.jsonl", "is not valid Unicode"),
        (("s3", "object", "size"), "10", "Records[0].s3.object.size is a string"),
        (("s3", "object", "size"), True, "Records[0].s3.object.size is a boolean"),
        (("s3", "object", "eTag"), {}, "Records[0].s3.object.eTag is an object"),
        (("eventTime",), 3, "Records[0].eventTime is a number, not a string"),
    ],
)
def test_malformed_records_name_what_is_wrong(path: tuple[str, ...], value: Any, says: str) -> None:
    message = _valid_event()
    parent = message["Records"][0]
    for name in path[:-1]:
        parent = parent[name]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(s3events.NotAnS3Event, match=re.escape(says)):
        s3events.parse_message(json.dumps(message))
    # also in a record that would be skipped, and as bytes
    message["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    with pytest.raises(s3events.NotAnS3Event, match=re.escape(says)):
        s3events.parse_message(json.dumps(message).encode("utf-8", "surrogatepass"))


def test_valid_event_as_bytes_and_optional_members() -> None:
    message = _valid_event()
    del message["Records"][0]["s3"]["object"]["size"]
    del message["Records"][0]["s3"]["object"]["eTag"]
    del message["Records"][0]["eventTime"]
    first, second = s3events.parse_message(json.dumps(message).encode())
    assert (first.size, first.etag, first.event_time) == (None, None, None)
    assert second.key == "2026-11-25/part-00001.jsonl.gz"
    assert s3events.parse_message('{"Records": []}') == []


# -- property: parse_message returns a valid result or raises NotAnS3Event, nothing else -------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(
        ["ObjectCreated:Put", "s3:TestEvent", "2026-11-25/part-00000.jsonl", "%FF", "\ud800"]
    )
)
_names = st.text(max_size=8) | st.sampled_from(
    ["Records", "Event", "eventName", "eventTime", "s3", "bucket", "object", "name", "key"]
    + ["size", "eTag"]
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_names, inner, max_size=5),
    max_leaves=25,
)


def _assert_valid_or_not_an_event(body: str | bytes) -> None:
    try:
        files = s3events.parse_message(body)
    except s3events.NotAnS3Event as exc:
        assert str(exc)
        return
    assert isinstance(files, list)
    for f in files:
        assert isinstance(f, s3events.DiffFileEvent)
        assert isinstance(f.bucket, str) and f.bucket
        assert isinstance(f.key, str) and f.key.endswith((".jsonl", ".jsonl.gz"))
        assert f.run_date == layout.date_folder(f.run_date)
        assert f.key.rpartition("/")[0].rpartition("/")[2] == f.run_date
        assert f.event_time is None or isinstance(f.event_time, str)
        assert f.size is None or (isinstance(f.size, int) and not isinstance(f.size, bool))
        assert f.etag is None or isinstance(f.etag, str)
        f.uri.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(_json)
def test_property_arbitrary_json_bodies(value: Any) -> None:
    _assert_valid_or_not_an_event(json.dumps(value))
    _assert_valid_or_not_an_event(json.dumps({"Records": value}))
    _assert_valid_or_not_an_event(json.dumps({"Records": [value]}))


@settings(max_examples=100, deadline=None)
@given(st.text() | st.binary())
def test_property_arbitrary_bodies(body: str | bytes) -> None:
    _assert_valid_or_not_an_event(body)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_property_mutated_valid_events(data: st.DataObject) -> None:
    """Replace or delete one member, at any depth, of a valid event."""
    message: Any = _valid_event()
    parent = message
    while True:
        keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        name = data.draw(st.sampled_from(keys))
        child = parent[name]
        if isinstance(child, (dict, list)) and child and data.draw(st.booleans()):
            parent = child
            continue
        break
    if isinstance(parent, dict) and data.draw(st.booleans()):
        del parent[name]
    else:
        parent[name] = data.draw(_json)
    _assert_valid_or_not_an_event(json.dumps(message))
