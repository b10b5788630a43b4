"""Reading a run date's output: the manifest, then each data file as a stream of event lines.

Memory is bounded whatever the file size: a file is read in `CHUNK_BYTES` chunks (gunzipped on
the fly for `.gz` names) and split into lines; only the current chunk and one partial line are
held. A line longer than `MAX_LINE_BYTES` is bad data.

What is validated on the publishing path, per line (cheap, see `parse_line`): the line is JSON
(orjson; `diffcore.jsonvalue.loads` where orjson refuses it), a JSON object holding every field
of `diffcore.events.EVENT_FIELDS`; `op` is c/u/d; `key` is a non-empty object; `run_date` is the
run date; `event_id` is a string of 64 characters. Not checked per line when publishing: that
`event_id` is lowercase hex and equals the SHA-256 of its content, and that before/after/changed
fit the op; a dry run (`full=True`) checks those too, with `diffcore.events.parse_event`.
A blank line is skipped (not counted).

Per file: the number of event lines must equal the manifest's `records`, and the SHA-256 of the
bytes read must equal the manifest's `sha256` (of the stored object; for a `.gz` file the hash of
the uncompressed content is accepted too). A mismatch is bad data.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import orjson

from diffcore import layout, store
from diffcore.errors import excerpt
from diffcore.events import EVENT_FIELDS, OPS, InvalidEvent, kafka_key, parse_event
from diffcore.jsonvalue import loads as exact_loads
from diffcore.manifest import DataFile, Manifest
from kafka_publisher.errors import BadData, NotReady

CHUNK_BYTES = 1024 * 1024
MAX_LINE_BYTES = layout.MAX_EVENT_BYTES  # one limit: the diff refuses to write a longer event
_EVENT_ID = re.compile(r"[0-9a-f]{64}")


def manifest_location(diffs_location: str, run_date: str) -> str:
    return store.join(layout.run_folder(diffs_location, run_date), layout.MANIFEST_NAME)


def data_file_location(diffs_location: str, run_date: str, name: str) -> str:
    return store.join(layout.run_folder(diffs_location, run_date), name)


def read_manifest(diffs_location: str, run_date: str) -> Manifest:
    """The run date's manifest; `NotReady` if there is none, `BadData` if it is unusable."""
    location = manifest_location(diffs_location, run_date)
    try:
        text = store.read_bytes(location)
    except FileNotFoundError:
        raise NotReady(
            f"diffs for {run_date} are not ready: no {layout.MANIFEST_NAME} in "
            f"{layout.run_folder(diffs_location, run_date)}",
            run_date=run_date,
        ) from None
    try:
        manifest = Manifest.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadData(f"manifest {location} is not a valid manifest: {exc}") from None
    if manifest.run_date != run_date:
        raise BadData(f"manifest {location} is for run date {manifest.run_date}, not {run_date}")
    for f in manifest.files:
        if not layout.is_data_file(f.name):
            raise BadData(f"manifest {location} lists {f.name!r}, which is not a data file name")
    names = [f.name for f in manifest.files]
    if len(set(names)) != len(names):
        raise BadData(f"manifest {location} lists a data file twice")
    return manifest


class Event(NamedTuple):
    """The shape of what `read_events` yields (as plain tuples, for speed)."""

    line: bytes  # the event exactly as in the file, without the newline
    line_no: int
    op: str
    key: bytes  # diffcore.events.kafka_key: canonical JSON of `key`
    event_id: str


_FIELDS = frozenset(EVENT_FIELDS)
# The fast checks name the fields one by one (a set comparison per line costs ~0.2 us): they
# must stay the contract's fields.
if _FIELDS != {"op", "key", "before", "after", "changed", "run_date", "event_id"}:
    raise ImportError("diffcore.events.EVENT_FIELDS changed: update the checks in reader.py")
_OPS = frozenset(OPS)
_SORT_KEYS = orjson.OPT_SORT_KEYS
# Key value types orjson writes exactly as `kafka_key` does (integers beyond 64 bits make
# orjson.dumps raise, which falls back to `kafka_key`; a bool is not an int here: type() is exact).
_SIMPLE_KEY_TYPES = frozenset({str, int, bool, type(None)})
# What indexing a parsed line can raise when it is not a well-formed event object (not JSON,
# not an object, a field missing, an unhashable op): all of them go to the careful path.
_NOT_AN_EVENT = (ValueError, KeyError, TypeError)


def _load(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson rejects a few inputs json accepts: parse exactly (NaN/Infinity still rejected).
        return exact_loads(raw)


def key_bytes(key: dict[str, Any], raw: bytes) -> bytes:
    """`diffcore.events.kafka_key` of the line's key, with a fast path for flat simple keys.

    For a key whose values are all strings, booleans, nulls or integers within 64 bits, orjson
    with sorted keys writes exactly the bytes of `kafka_key` (compact, sorted, UTF-8, same
    escapes; checked for every code point and these types in reader_test) about 30x faster.
    Anything else (floats, nested values, integers orjson could not hold) goes through
    `kafka_key` itself, on the key parsed again exactly: orjson 3.13 silently turns integers
    beyond 64 bits into floats (it does not fail), so a float may be a big integer in the line.
    An integer beyond 64 bits handed in directly makes orjson.dumps raise: `kafka_key` too.
    """
    for value in key.values():
        if type(value) not in _SIMPLE_KEY_TYPES:
            return kafka_key(exact_loads(raw)["key"])
    try:
        return orjson.dumps(key, option=_SORT_KEYS)
    except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits
        return kafka_key(key)


def parse_line(raw: bytes, run_date: str) -> tuple[str, bytes, str] | None:
    """(op, kafka key, event_id) of one line, with the cheap checks; None for a blank line.

    Raises InvalidEvent saying what is wrong. `_events` inlines the same checks (the
    publishing path); reader_test holds the two to the same answers.
    """
    try:
        obj = orjson.loads(raw)
        op = obj["op"]
        key = obj["key"]
        eid = obj["event_id"]
        ok = (
            op in _OPS
            and type(key) is dict
            and key
            and obj["run_date"] == run_date
            and type(eid) is str
            and len(eid) == 64
            and "before" in obj
            and "after" in obj
            and "changed" in obj
        )
    except _NOT_AN_EVENT:
        ok = False
    if ok:
        return op, key_bytes(key, raw), eid
    return _parse_slow(raw, run_date)


def _bad_line(location: str, line_no: int, raw: bytes, exc: Exception) -> BadData:
    return BadData(
        f"{location}, line {line_no}: {exc}: {excerpt(raw)}", file=location, line=line_no
    )


def _parse_slow(raw: bytes, run_date: str) -> tuple[str, bytes, str] | None:
    """The careful path: a blank line, orjson's rare refusals, or a precise error message."""
    if not raw.strip():
        return None
    try:
        obj = _load(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"malformed JSON ({exc})") from None
    if type(obj) is not dict:
        raise InvalidEvent("not a JSON object")
    for name in EVENT_FIELDS:
        if name not in obj:
            raise InvalidEvent(f"missing field {name!r}")
    op = obj["op"]
    if op not in OPS:
        raise InvalidEvent(f"op must be one of {'/'.join(OPS)}, got {op!r}")
    key = obj["key"]
    if type(key) is not dict or not key:
        raise InvalidEvent("key must be a non-empty object")
    if obj["run_date"] != run_date:
        raise InvalidEvent(f"run_date is {obj['run_date']!r}, not {run_date}")
    eid = obj["event_id"]
    if type(eid) is not str or _EVENT_ID.fullmatch(eid) is None:
        raise InvalidEvent("event_id must be 64 lowercase hex digits")
    return op, kafka_key(exact_loads(raw)["key"]), eid


def parse_line_full(raw: bytes, run_date: str) -> tuple[str, bytes, str] | None:
    """Like `parse_line`, plus the whole contract check (`diffcore.events.parse_event`)."""
    result = parse_line(raw, run_date)
    if result is not None:
        if _EVENT_ID.fullmatch(result[2]) is None:
            raise InvalidEvent("event_id must be 64 lowercase hex digits")
        parse_event(raw)  # event_id recomputed, before/after/changed consistent with op
    return result


@dataclass
class FileStats:
    """Filled while a file is read; complete when the iterator is exhausted."""

    name: str
    events: int = 0
    raw_bytes: int = 0  # bytes read from storage (compressed for .gz)
    value_bytes: int = 0  # bytes of the event lines (message values)
    per_op: dict[str, int] = field(default_factory=lambda: {op: 0 for op in OPS})
    sha256_stored: str = ""
    sha256_content: str | None = None


class _HashingReader:
    """Counts and hashes the bytes read from a stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.hash.update(data)
        self.count += len(data)
        return data


def _chunks(stream: BinaryIO, gz: bool, stats: FileStats) -> Iterator[bytes]:
    """Chunks of content (gunzipped for .gz, multi-member included; a truncated gzip raises
    EOFError); records the hashes of the stored bytes and of the content."""
    hashing = _HashingReader(stream)
    if gz:
        content = hashlib.sha256()
        with gzip.GzipFile(fileobj=hashing, mode="rb") as unzipped:  # type: ignore[arg-type]
            while chunk := unzipped.read(CHUNK_BYTES):
                content.update(chunk)
                yield chunk
        stats.sha256_content = content.hexdigest()
    else:
        while chunk := hashing.read(CHUNK_BYTES):
            yield chunk
    stats.sha256_stored = hashing.hash.hexdigest()
    stats.raw_bytes = hashing.count


def read_events(
    diffs_location: str, run_date: str, data_file: DataFile, full: bool = False
) -> tuple[FileStats, Iterator[Event]]:
    """Stream the events of one data file, checking it against the manifest at the end.

    Returns the stats object (complete once the iterator is exhausted) and the iterator. The
    iterator raises `BadData` naming the file and line on a bad line, and at the end if the
    record count or the SHA-256 differs from the manifest.
    """
    stats = FileStats(name=data_file.name)
    location = data_file_location(diffs_location, run_date, data_file.name)
    events = _events_full if full else _events
    return stats, events(location, run_date, data_file, stats)


def _check_file(location: str, data_file: DataFile, stats: FileStats) -> None:
    """The file's checks against the manifest once it is read whole (count, SHA-256)."""
    if stats.events != data_file.records:
        raise BadData(
            f"{location}: {stats.events} events, but the manifest says {data_file.records}",
            file=location,
        )
    if data_file.sha256 not in (stats.sha256_stored, stats.sha256_content):
        raise BadData(
            f"{location}: SHA-256 {stats.sha256_stored} does not match the manifest's "
            f"{data_file.sha256} (file replaced after the manifest was written?)",
            file=location,
        )


def _line_lists(location: str, stats: FileStats) -> Iterator[list[bytes]]:
    """The file's lines (without newlines), a list per chunk read; the last list is the final
    line without a newline, if any. BadData for an unreadable file or an overlong line."""
    gz = location.endswith(".gz")
    try:
        stream = store.open_read(location)
    except FileNotFoundError:
        raise BadData(f"{location} is listed in the manifest but does not exist") from None
    line_no = 0
    with stream:
        pending = b""
        try:
            for chunk in _chunks(stream, gz, stats):
                if pending:
                    chunk = pending + chunk
                lines = chunk.split(b"\n")
                pending = lines.pop()
                line_no += len(lines)
                if len(pending) > MAX_LINE_BYTES:
                    raise BadData(
                        f"{location}, line {line_no + 1}: longer than {MAX_LINE_BYTES} bytes",
                        file=location,
                        line=line_no + 1,
                    )
                yield lines
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            raise BadData(f"{location}: cannot read/decompress ({exc})", file=location) from None
    if pending:
        yield [pending]


def _events(location: str, run_date: str, data_file: DataFile, stats: FileStats) -> Iterator[Event]:
    """The publishing path: `parse_line`'s checks inlined, one generator step per event.

    This loop is most of the publisher's own CPU time per message, hence the local names and
    no function call per line on the common path (`parse_line` is the readable version of the
    same checks; reader_test holds them to the same answers).
    """
    loads, dumps, simple_types, ops = orjson.loads, orjson.dumps, _SIMPLE_KEY_TYPES, _OPS
    per_op = stats.per_op
    line_no = 0
    value_bytes = 0
    raw = b""
    try:
        for lines in _line_lists(location, stats):
            for raw in lines:
                line_no += 1
                try:
                    obj = loads(raw)
                    op = obj["op"]
                    key = obj["key"]
                    eid = obj["event_id"]
                    ok = (
                        op in ops
                        and type(key) is dict
                        and key
                        and obj["run_date"] == run_date
                        and type(eid) is str
                        and len(eid) == 64
                        and "before" in obj
                        and "after" in obj
                        and "changed" in obj
                    )
                except _NOT_AN_EVENT:
                    ok = False
                if ok:
                    for value in key.values():
                        if type(value) not in simple_types:
                            kafka_key_bytes = key_bytes(key, raw)
                            break
                    else:
                        try:
                            kafka_key_bytes = dumps(key, option=_SORT_KEYS)
                        except orjson.JSONEncodeError:
                            kafka_key_bytes = key_bytes(key, raw)
                    per_op[op] += 1
                    value_bytes += len(raw)
                    yield raw, line_no, op, kafka_key_bytes, eid  # type: ignore[misc]
                    continue
                parsed = _parse_slow(raw, run_date)  # a blank line, or a precise error
                if parsed is not None:
                    per_op[parsed[0]] += 1
                    value_bytes += len(raw)
                    yield raw, line_no, *parsed  # type: ignore[misc]
    except InvalidEvent as exc:
        raise _bad_line(location, line_no, raw, exc) from None
    finally:
        stats.events = sum(per_op.values())
        stats.value_bytes = value_bytes
    _check_file(location, data_file, stats)


def _events_full(
    location: str, run_date: str, data_file: DataFile, stats: FileStats
) -> Iterator[Event]:
    """`--dry-run`: every line through `parse_line_full` (the whole contract check)."""
    per_op = stats.per_op
    line_no = 0
    value_bytes = 0
    try:
        for lines in _line_lists(location, stats):
            for raw in lines:
                line_no += 1
                try:
                    parsed = parse_line_full(raw, run_date)
                except InvalidEvent as exc:
                    raise _bad_line(location, line_no, raw, exc) from None
                if parsed is not None:
                    per_op[parsed[0]] += 1
                    value_bytes += len(raw)
                    yield raw, line_no, *parsed  # type: ignore[misc]
    finally:
        stats.events = sum(per_op.values())
        stats.value_bytes = value_bytes
    _check_file(location, data_file, stats)
