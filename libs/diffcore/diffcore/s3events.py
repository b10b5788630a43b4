"""The SQS message of a new diff file (contract section 7): an S3 event notification."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
    """
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise NotAnS3Event(f"message body is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise NotAnS3Event("message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    if "Records" not in message:
        raise NotAnS3Event("message has no Records")
    files = []
    for record in message["Records"]:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record["s3"]
        key = unquote_plus(s3["object"]["key"])
        folder, _, name = key.rpartition("/")
        run_date = folder.rpartition("/")[2]
        try:
            layout.date_folder(run_date)
        except ValueError:
            continue
        if not layout.is_data_file(name):
            continue
        files.append(
            DiffFileEvent(
                bucket=s3["bucket"]["name"],
                key=key,
                run_date=run_date,
                event_time=record.get("eventTime"),
                size=s3["object"].get("size"),
                etag=s3["object"].get("eTag"),
            )
        )
    return files


def unique(events: Iterable[DiffFileEvent]) -> Iterator[DiffFileEvent]:
    """Drop duplicate deliveries (SQS is at-least-once; moto sends two for a multipart upload)."""
    seen: set[tuple[str, str, str | None]] = set()
    for event in events:
        ident = (event.bucket, event.key, event.etag)
        if ident not in seen:
            seen.add(ident)
            yield event
