"""Change events (contract section 4): the op codes, `event_id`, and the line format."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from diffcore.jsonvalue import JSONValue, canonical_json, compact_json

Op = Literal["c", "u", "d"]
OPS: tuple[Op, ...] = ("c", "u", "d")
# Field order of an event line, fixed so that every engine writes the same shape.
EVENT_FIELDS = ("op", "key", "before", "after", "changed", "run_date", "event_id")


def event_id(run_date: str, op: str, key: Mapping[str, JSONValue]) -> str:
    """Lowercase hex SHA-256 of the canonical JSON of `[run_date, op, key]`."""
    return event_id_of_key_text(run_date, op, canonical_json(dict(key)))


def event_id_of_key_text(run_date: str, op: str, key_text: str) -> str:
    """`event_id` from the key's canonical JSON text (what an engine joins on): the canonical
    JSON of a list is its items' canonical JSON, comma-separated, in brackets."""
    return hashlib.sha256(f"{_id_prefix(run_date, op)}{key_text}]".encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def _id_prefix(run_date: str, op: str) -> str:
    """`[<run_date>,<op>,` as canonical JSON: the same for every event of a day and op (cached:
    the publisher recomputes every event's id)."""
    return f"[{canonical_json(run_date)},{canonical_json(op)},"


def kafka_key(key: Mapping[str, JSONValue]) -> bytes:
    """The Kafka message key: canonical JSON of the event's `key` object."""
    return canonical_json(dict(key)).encode("utf-8")


def event_line(
    op: str,
    key: Mapping[str, JSONValue],
    before: str | None,
    after: str | None,
    changed: Sequence[str] | None,
    run_date: str,
) -> str:
    """One event as a JSON line (no newline). `before`/`after` are JSON texts, spliced as they are.

    Splicing the input's own text keeps payloads exact (big integers, member order) and saves
    a parse-and-serialise of every changed record.
    """
    return event_line_of_key_text(
        op, compact_json(dict(key)), before, after, changed, run_date, event_id(run_date, op, key)
    )


def event_line_of_key_text(
    op: str,
    key_text: str,
    before: str | None,
    after: str | None,
    changed: Sequence[str] | None,
    run_date: str,
    eid: str | None = None,
) -> str:
    """`event_line` for a key given as JSON text (an engine's canonical join key: then the id
    is `event_id_of_key_text` of it, the default)."""
    changed_text = "null" if changed is None else compact_json(list(changed))
    if eid is None:
        eid = event_id_of_key_text(run_date, op, key_text)
    return (
        f'{{"op":"{op}","key":{key_text},"before":{before or "null"},'
        f'"after":{after or "null"},"changed":{changed_text},'
        f'"run_date":"{run_date}","event_id":"{eid}"}}'
    )


@dataclass(frozen=True)
class ChangeEvent:
    op: Op
    key: Mapping[str, JSONValue]
    before: Mapping[str, JSONValue] | None
    after: Mapping[str, JSONValue] | None
    changed: tuple[str, ...] | None
    run_date: str
    event_id: str

    def to_line(self) -> str:
        return event_line(
            self.op,
            self.key,
            None if self.before is None else compact_json(self.before),
            None if self.after is None else compact_json(self.after),
            self.changed,
            self.run_date,
        )


class InvalidEvent(ValueError):
    """A line of a data file that is not a valid change event."""


def parse_event(line: str | bytes) -> ChangeEvent:
    """Parse and validate one event line (what the publisher and the tests read back)."""
    try:
        obj: Any = json.loads(line)
    except ValueError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent("not a JSON object")
    missing = [f for f in EVENT_FIELDS if f not in obj]
    if missing:
        raise InvalidEvent(f"missing fields {missing}")
    op = obj["op"]
    if op not in OPS:
        raise InvalidEvent(f"op must be one of {OPS}, got {op!r}")
    if not isinstance(obj["key"], dict) or not obj["key"]:
        raise InvalidEvent("key must be a non-empty object")
    if (op == "c") != (obj["before"] is None) or (op == "d") != (obj["after"] is None):
        raise InvalidEvent(f"before/after do not fit op {op!r}")
    changed = obj["changed"]
    if (op == "u") != isinstance(changed, list):
        raise InvalidEvent("changed must be a list for u and null otherwise")
    expected = event_id(obj["run_date"], op, obj["key"])
    if obj["event_id"] != expected:
        raise InvalidEvent(f"event_id {obj['event_id']!r} does not match its content")
    return ChangeEvent(
        op=op,
        key=obj["key"],
        before=obj["before"],
        after=obj["after"],
        changed=None if changed is None else tuple(changed),
        run_date=obj["run_date"],
        event_id=obj["event_id"],
    )
