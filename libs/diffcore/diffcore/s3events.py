"""The SQS message of a new diff file (contract section 7): an S3 event notification."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from diffcore import layout


@dataclass(frozen=True)
class DiffFileEvent:
    """One new data file: where it is, which run date it belongs to, when it was written."""

    bucket: str
    key: str
    run_date: str
    event_time: str | None = None
    size: int | None = None
    etag: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class NotAnS3Event(ValueError):
    """A message body that is neither an S3 event notification nor an S3 test event."""


def parse_message(body: str | bytes) -> list[DiffFileEvent]:
    """Turn one SQS message body into the data files it announces.

    Keys are URL-decoded (S3 encodes them, spaces as `+`); the `s3:TestEvent` sent when the
    notification is configured yields nothing; objects that are not data files of a date folder
    are ignored (the notification filter should never send them).

    Any other body (not JSON, not an object, no `Records` list, a record without a string
    `eventName`, or without `s3.bucket.name` / `s3.object.key` strings, a `size`, `eTag` or
    `eventTime` of the wrong type) raises `NotAnS3Event` naming what is wrong, never anything
    else: every record is checked, also those that are skipped.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotAnS3Event(f"message body is not UTF-8: {exc}") from None
    if not isinstance(body, str):
        raise NotAnS3Event(f"message body is a {type(body).__name__}, not text")
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise NotAnS3Event(f"message body is not JSON: {exc}") from None
    except RecursionError:
        raise NotAnS3Event("message body is not JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise NotAnS3Event("message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    if "Records" not in message:
        raise NotAnS3Event("message has no Records")
    records = message["Records"]
    if not isinstance(records, list):
        raise NotAnS3Event(f"message Records is {_kind(records)}, not an array")
    files = []
    for i, record in enumerate(records):
        event = _parse_record(record, f"Records[{i}]")
        if event is not None:
            files.append(event)
    return files


def _parse_record(record: object, where: str) -> DiffFileEvent | None:
    """One checked record: its data file, or None for an event or object that is not one."""
    if not isinstance(record, dict):
        raise NotAnS3Event(f"{where} is {_kind(record)}, not an object")
    event_name = _member(record, "eventName", where, str)
    event_time = _member(record, "eventTime", where, str, optional=True)
    s3 = _member(record, "s3", where, dict)
    bucket = _member(s3, "bucket", f"{where}.s3", dict)
    bucket_name = _member(bucket, "name", f"{where}.s3.bucket", str)
    obj = _member(s3, "object", f"{where}.s3", dict)
    raw_key = _member(obj, "key", f"{where}.s3.object", str)
    size = _member(obj, "size", f"{where}.s3.object", int, optional=True)
    etag = _member(obj, "eTag", f"{where}.s3.object", str, optional=True)
    _check_text(bucket_name, f"{where}.s3.bucket.name")
    try:  # S3 percent-encodes the UTF-8 bytes of the key
        key = unquote_plus(raw_key, errors="strict")
    except UnicodeDecodeError:
        raise NotAnS3Event(
            f"{where}.s3.object.key {raw_key!r} does not URL-decode to UTF-8"
        ) from None
    _check_text(key, f"{where}.s3.object.key")
    if not event_name.startswith("ObjectCreated:"):
        return None
    folder, _, name = key.rpartition("/")
    run_date = folder.rpartition("/")[2]
    try:
        layout.date_folder(run_date)
    except ValueError:
        return None
    if not layout.is_data_file(name):
        return None
    return DiffFileEvent(
        bucket=bucket_name,
        key=key,
        run_date=run_date,
        event_time=event_time,
        size=size,
        etag=etag,
    )


def _member(obj: dict, name: str, where: str, kind: type, *, optional: bool = False) -> Any:
    """`obj[name]`, checked to be a `kind` (a bool is no int); None when optional and absent
    or null."""
    value = obj.get(name)
    if value is None:
        if optional:
            return None
        raise NotAnS3Event(f"{where} has no {name}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise NotAnS3Event(
            f"{where}.{name} is {_kind(value)}, not {_KIND_NAMES.get(kind, kind.__name__)}"
        )
    return value


def _check_text(text: str, where: str) -> None:
    """A name S3 could hold: valid Unicode (no lone surrogate), not empty."""
    if not text:
        raise NotAnS3Event(f"{where} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotAnS3Event(f"{where} {text!r} is not valid Unicode") from None


_KIND_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return _KIND_NAMES.get(type(value), f"a {type(value).__name__}")


def unique(events: Iterable[DiffFileEvent]) -> Iterator[DiffFileEvent]:
    """Drop duplicate deliveries (SQS is at-least-once; moto sends two for a multipart upload)."""
    seen: set[tuple[str, str, str | None]] = set()
    for event in events:
        ident = (event.bucket, event.key, event.etag)
        if ident not in seen:
            seen.add(ident)
            yield event
