from __future__ import annotations

import json

import pytest

from diffcore import s3events


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
