"""Reading a run date's output: the manifest, then each data file, checked whole before any of
it is published.

A data file goes through two steps (`publisher` runs them; the day's per-op totals are checked
between them):

1. `verify_file`: one streaming pass over the stored object (`CHUNK_BYTES` at a time, gunzipped
   on the fly for `.gz` names). It counts and hashes the stored bytes, checks every line against
   the contract (`parse_line`), counts the events per op, and at the end compares the size, the
   SHA-256 and the event count with the manifest. With `ids_path` it also writes the file's
   *ids file*: one line per line of the data file, `<op><event_id><Kafka key>` (empty for a
   blank line), so that publishing needs no second parse.
2. `copy_verified`: a fresh copy of the object, uncompressed, into a memory-bounded spool
   (`SPOOL_MEMORY_BYTES` in memory, the rest in a local temporary file), whose size and SHA-256
   must again match the manifest. Equal hashes mean the copy is byte for byte what step 1
   checked, so `paired_lines` can hand out its lines with the ids file's records: what is
   produced is exactly what was verified, even if the object was replaced in between.

The checks per line (`parse_line`; `_check_lines` inlines them for speed and reader_test holds
the two to the same answers): the line is JSON (orjson; `diffcore.jsonvalue.loads` where orjson
refuses it), an object with every field of `diffcore.events.EVENT_FIELDS`; `op` is c/u/d; `key`
is a non-empty object; `before`/`after` are objects or null as the op says, `changed` a list for
`u` and null otherwise; `run_date` is the run date; `event_id` is the contract's id of
`[run_date, op, key]` (`diffcore.events.event_id_of_key_text` of the key's canonical JSON, which
is also the Kafka key). A blank line is skipped (not counted); a line longer than
`MAX_LINE_BYTES` is bad data.

The manifest's `bytes` and `sha256` describe the object as stored; for a `.gz` file a manifest
holding the hash of the uncompressed content (with the stored or the uncompressed size) is
accepted too (the contract does not say which). Any mismatch is `BadData` (exit 13) naming the file, and the line for a bad line.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, BinaryIO

import orjson

from diffcore import layout, store
from diffcore.errors import excerpt
from diffcore.events import EVENT_FIELDS, OPS, InvalidEvent, event_id_of_key_text, kafka_key
from diffcore.jsonvalue import loads as exact_loads
from diffcore.manifest import DataFile, Manifest
from kafka_publisher.errors import BadData, NotReady

CHUNK_BYTES = 1024 * 1024
MAX_LINE_BYTES = layout.MAX_EVENT_BYTES  # one limit: the diff refuses to write a longer event
# A verified copy stays in memory up to this size, then goes to a local temporary file.
SPOOL_MEMORY_BYTES = 4 * 1024 * 1024
_EVENT_ID = re.compile(r"[0-9a-f]{64}")
# An ids file record: op (1 byte), event_id (64 bytes), then the Kafka key (canonical JSON,
# which never holds a raw newline). `publisher` slices it at these offsets.
ID_OP, ID_KEY = 0, 65


def data_file_location(diffs_location: str, run_date: str, name: str) -> str:
    return store.join(layout.run_folder(diffs_location, run_date), name)


def read_manifest(diffs_location: str, run_date: str) -> Manifest:
    """The run date's manifest; `NotReady` if there is none, `BadData` if it is unusable."""
    location = layout.manifest_location(diffs_location, run_date)
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
    """(op, Kafka key, event_id) of one line after the contract's checks; None for a blank line.

    The Kafka key is the canonical JSON of `key`, so it is also the key text of `event_id`.
    Raises InvalidEvent saying what is wrong. `_check_lines` inlines the same checks (the
    publishing path); reader_test holds the two to the same answers.
    """
    try:
        obj = orjson.loads(raw)
        op = obj["op"]
        key = obj["key"]
        eid = obj["event_id"]
        before = obj["before"]
        after = obj["after"]
        changed = obj["changed"]
        ok = (
            op in _OPS
            and type(key) is dict
            and key
            and obj["run_date"] == run_date
            and (before is None if op == "c" else type(before) is dict)
            and (after is None if op == "d" else type(after) is dict)
            and (type(changed) is list if op == "u" else changed is None)
        )
    except _NOT_AN_EVENT:
        ok = False
    if ok:
        kafka_key_bytes = key_bytes(key, raw)
        if eid == event_id_of_key_text(run_date, op, kafka_key_bytes.decode()):
            return op, kafka_key_bytes, eid
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
    if (obj["before"] is None) != (op == "c") or type(obj["before"]) not in (dict, type(None)):
        raise InvalidEvent(f"before must be {'null' if op == 'c' else 'an object'} for op {op!r}")
    if (obj["after"] is None) != (op == "d") or type(obj["after"]) not in (dict, type(None)):
        raise InvalidEvent(f"after must be {'null' if op == 'd' else 'an object'} for op {op!r}")
    if (type(obj["changed"]) is list) != (op == "u") or (op != "u" and obj["changed"] is not None):
        raise InvalidEvent(f"changed must be {'a list' if op == 'u' else 'null'} for op {op!r}")
    eid = obj["event_id"]
    if type(eid) is not str or _EVENT_ID.fullmatch(eid) is None:
        raise InvalidEvent("event_id must be 64 lowercase hex digits")
    kafka_key_bytes = kafka_key(exact_loads(raw)["key"])
    expected = event_id_of_key_text(run_date, op, kafka_key_bytes.decode())
    if eid != expected:
        raise InvalidEvent(
            f"event_id {eid} is not the id of its [run_date, op, key] (that is {expected})"
        )
    return op, kafka_key_bytes, eid


@dataclass
class FileStats:
    """What reading a file found; complete once the file was read whole."""

    name: str
    events: int = 0
    lines: int = 0  # physical lines, blank ones included (= records of the ids file)
    raw_bytes: int = 0  # bytes read from storage (compressed for .gz)
    content_bytes: int = 0  # bytes of the content (uncompressed)
    value_bytes: int = 0  # bytes of the event lines (message values)
    per_op: dict[str, int] = field(default_factory=lambda: {op: 0 for op in OPS})
    sha256_stored: str = ""
    sha256_content: str = ""


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


def _open(location: str) -> BinaryIO:
    try:
        return store.open_read(location)
    except FileNotFoundError:
        raise BadData(
            f"{location} is listed in the manifest but does not exist", file=location
        ) from None


def _stored_chunks(location: str, stats: FileStats) -> Iterator[bytes]:
    """The object's content in chunks (gunzipped for .gz, multi-member included), recording the
    size and SHA-256 of the stored bytes and of the content; BadData if it does not gunzip."""
    content = hashlib.sha256()
    size = 0
    with _open(location) as stream:
        hashing = _HashingReader(stream)
        try:
            if location.endswith(".gz"):
                with gzip.GzipFile(fileobj=hashing, mode="rb") as unzipped:  # type: ignore[arg-type]
                    while chunk := unzipped.read(CHUNK_BYTES):
                        content.update(chunk)
                        size += len(chunk)
                        yield chunk
            else:
                while chunk := hashing.read(CHUNK_BYTES):
                    size += len(chunk)
                    yield chunk
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            raise BadData(f"{location}: cannot read/decompress ({exc})", file=location) from None
    stats.raw_bytes = hashing.count
    stats.sha256_stored = hashing.hash.hexdigest()
    stats.content_bytes = size
    stats.sha256_content = content.hexdigest() if location.endswith(".gz") else stats.sha256_stored


def _split(chunks: Iterable[bytes], location: str) -> Iterator[list[bytes]]:
    """The lines (without newlines) of a stream of chunks, a list per chunk; the last list is
    the final line without a newline, if any. BadData for a line over `MAX_LINE_BYTES`."""
    pending = b""
    line_no = 0
    for chunk in chunks:
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
    if pending:
        yield [pending]


def _stored_mismatch(data_file: DataFile, stats: FileStats) -> str | None:
    """Why the object read does not match the manifest's size and SHA-256, or None."""
    if data_file.sha256 == stats.sha256_stored and data_file.bytes == stats.raw_bytes:
        return None
    if data_file.sha256 == stats.sha256_content and data_file.bytes in (
        stats.content_bytes,
        stats.raw_bytes,
    ):
        return None  # a .gz file whose manifest holds the hash of the uncompressed content
    return (
        f"{stats.raw_bytes} bytes with SHA-256 {stats.sha256_stored}, but the manifest says "
        f"{data_file.bytes} bytes with SHA-256 {data_file.sha256}"
    )


def verify_file(
    diffs_location: str, run_date: str, data_file: DataFile, ids_path: str | None = None
) -> FileStats:
    """Step 1: read the whole file once and check it (every line, then size, SHA-256 and event
    count against the manifest); with `ids_path`, write its ids file there. Raises BadData
    naming the file (and the line for a bad line)."""
    stats = FileStats(name=data_file.name)
    location = data_file_location(diffs_location, run_date, data_file.name)
    lines = _split(_stored_chunks(location, stats), location)
    if ids_path is None:
        _check_lines(location, run_date, lines, stats, None)
    else:
        with open(ids_path, "wb") as ids:
            _check_lines(location, run_date, lines, stats, ids)
    problem = _stored_mismatch(data_file, stats)
    if problem is not None:
        raise BadData(
            f"{location}: {problem} (changed after the manifest was written?)", file=location
        )
    if stats.events != data_file.records:
        raise BadData(
            f"{location}: {stats.events} events, but the manifest says {data_file.records}",
            file=location,
        )
    return stats


def _check_lines(
    location: str,
    run_date: str,
    line_lists: Iterable[list[bytes]],
    stats: FileStats,
    ids: BinaryIO | None,
) -> None:
    """`parse_line`'s checks inlined, one iteration per line; the ids file written per chunk.

    This loop is most of the publisher's own CPU time per message, hence the local names and
    no function call per line on the common path but `event_id_of_key_text` (the contract's
    one implementation of the id).
    """
    loads, dumps, simple_types, ops = orjson.loads, orjson.dumps, _SIMPLE_KEY_TYPES, _OPS
    event_id_of = event_id_of_key_text
    per_op = stats.per_op
    line_no = 0
    value_bytes = 0
    raw = b""
    records: list[bytes] = []
    append = records.append
    try:
        for lines in line_lists:
            for raw in lines:
                line_no += 1
                try:
                    obj = loads(raw)
                    op = obj["op"]
                    key = obj["key"]
                    eid = obj["event_id"]
                    before = obj["before"]
                    after = obj["after"]
                    changed = obj["changed"]
                    ok = (
                        op in ops
                        and type(key) is dict
                        and key
                        and obj["run_date"] == run_date
                        and (before is None if op == "c" else type(before) is dict)
                        and (after is None if op == "d" else type(after) is dict)
                        and (type(changed) is list if op == "u" else changed is None)
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
                    if eid == event_id_of(run_date, op, kafka_key_bytes.decode()):
                        per_op[op] += 1
                        value_bytes += len(raw)
                        append((op + eid).encode() + kafka_key_bytes)
                        continue
                parsed = _parse_slow(raw, run_date)  # a blank line, or a precise error
                if parsed is None:
                    append(b"")
                else:
                    per_op[parsed[0]] += 1
                    value_bytes += len(raw)
                    append((parsed[0] + parsed[2]).encode() + parsed[1])
            if ids is not None and records:
                ids.write(b"\n".join(records))
                ids.write(b"\n")
            records.clear()
    except InvalidEvent as exc:
        raise _bad_line(location, line_no, raw, exc) from None
    finally:
        stats.lines = line_no
        stats.events = sum(per_op.values())
        stats.value_bytes = value_bytes


def copy_verified(
    diffs_location: str, run_date: str, data_file: DataFile, spool_dir: str | None = None
) -> BinaryIO:
    """Step 2: a fresh copy of the file's content (uncompressed), positioned at its start, in a
    spool that keeps `SPOOL_MEMORY_BYTES` in memory and the rest in a temporary file in
    `spool_dir`. BadData naming the file unless its size and SHA-256 match the manifest, i.e.
    unless it is what `verify_file` checked. The caller closes it."""
    stats = FileStats(name=data_file.name)
    location = data_file_location(diffs_location, run_date, data_file.name)
    spool = tempfile.SpooledTemporaryFile(
        max_size=SPOOL_MEMORY_BYTES, dir=spool_dir
    )  # noqa: SIM115
    try:
        for chunk in _stored_chunks(location, stats):
            spool.write(chunk)
        problem = _stored_mismatch(data_file, stats)
        if problem is not None:
            raise BadData(
                f"{location}: changed after it was verified: {problem}; nothing of it was "
                "published",
                file=location,
            )
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool  # type: ignore[return-value]


def _read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    return iter(lambda: stream.read(CHUNK_BYTES), b"")


def paired_lines(content: BinaryIO, ids: BinaryIO, location: str) -> Iterator[tuple[bytes, bytes]]:
    """(line, ids record) for every physical line of a verified copy and its ids file, in
    order; the record is empty for a blank line (not an event)."""
    return zip(
        chain.from_iterable(_split(_read_chunks(content), location)),
        chain.from_iterable(_split(_read_chunks(ids), location)),
        strict=True,  # the same content as verified: as many lines as ids records
    )
