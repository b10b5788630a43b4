from __future__ import annotations

import hashlib
import json

import pytest

from diffcore import events


def test_event_id_formula() -> None:
    key = {"tenant": "br", "customer.id": 7}
    expected = hashlib.sha256(
        json.dumps(
            ["2026-11-25", "u", key], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    ).hexdigest()
    assert events.event_id("2026-11-25", "u", key) == expected
    assert events.event_id("2026-11-25", "u", dict(reversed(list(key.items())))) == expected
    assert events.event_id("2026-11-25", "u", {"id": 1}) != events.event_id(
        "2026-11-25", "u", {"id": "1"}
    )
    assert events.kafka_key({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_event_line_shape_and_roundtrip() -> None:
    line = events.event_line(
        "u",
        {"id": 2**64},
        '{"id":18446744073709551616,"v":1}',
        '{"v":2,"id":18446744073709551616}',
        ["v"],
        "2026-11-25",
    )
    assert list(json.loads(line)) == list(events.EVENT_FIELDS)
    assert '"key":{"id":18446744073709551616}' in line
    ev = events.parse_event(line)
    assert ev.op == "u" and ev.changed == ("v",) and ev.key == {"id": 2**64}
    assert ev.to_line() == events.event_line(
        "u",
        {"id": 2**64},
        '{"id":18446744073709551616,"v":1}',
        '{"v":2,"id":18446744073709551616}',
        ["v"],
        "2026-11-25",
    )
    c = events.parse_event(events.event_line("c", {"id": 1}, None, '{"id":1}', None, "2026-11-25"))
    assert c.before is None and c.changed is None


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda o: "nope", "not JSON"),
        (lambda o: [1], "not a JSON object"),
        (lambda o: {k: v for k, v in o.items() if k != "changed"}, "missing"),
        (lambda o: {**o, "op": "x"}, "op must be"),
        (lambda o: {**o, "key": {}}, "key must be"),
        (lambda o: {**o, "after": None}, "before/after"),
        (lambda o: {**o, "changed": None}, "changed must be"),
        (lambda o: {**o, "event_id": "0" * 64}, "does not match"),
    ],
)
def test_parse_event_rejects(mutate, message: str) -> None:
    line = events.event_line("u", {"id": 1}, '{"id":1}', '{"id":1,"v":1}', ["v"], "2026-11-25")
    obj = mutate(json.loads(line))
    text = obj if isinstance(obj, str) else json.dumps(obj)
    with pytest.raises(events.InvalidEvent, match=message):
        events.parse_event(text)
