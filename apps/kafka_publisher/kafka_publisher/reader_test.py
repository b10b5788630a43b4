from __future__ import annotations

import gzip
import hashlib
import json
import tracemalloc
from dataclasses import replace
from typing import NamedTuple

import pytest

from diffcore import layout, store
from diffcore.events import EVENT_FIELDS, InvalidEvent, event_id, event_line, kafka_key
from diffcore.manifest import DataFile
from kafka_publisher import reader
from kafka_publisher.errors import BadData, NotReady
from tests.support.diffs import iter_events, make_events, write_day

D = "2026-11-25"


def _file(tmp_path, name: str, body: bytes, records: int) -> DataFile:
    store.write_bytes(store.join(layout.run_folder(str(tmp_path), D), name), body)
    return DataFile(
        name=name, records=records, bytes=len(body), sha256=hashlib.sha256(body).hexdigest()
    )


class Event(NamedTuple):
    line: bytes
    line_no: int
    op: str
    key: bytes
    event_id: str


def _events(content, ids_path: str) -> list[Event]:
    """What publishing hands out: the verified copy's lines with their ids records."""
    with content, open(ids_path, "rb") as ids:
        return [
            Event(line, n, rec[:1].decode(), rec[reader.ID_KEY :], rec[1 : reader.ID_KEY].decode())
            for n, (line, rec) in enumerate(reader.paired_lines(content, ids, "x"), 1)
            if rec
        ]


def _read(tmp_path, data_file: DataFile) -> tuple[reader.FileStats, list[Event]]:
    """Both steps: verify (writing the ids file), then the verified copy."""
    ids_path = str(tmp_path / "ids")
    stats = reader.verify_file(str(tmp_path), D, data_file, ids_path)
    return stats, _events(reader.copy_verified(str(tmp_path), D, data_file), ids_path)


def test_no_manifest_is_not_ready(tmp_path) -> None:
    with pytest.raises(NotReady, match=f"diffs for {D} are not ready"):
        reader.read_manifest(str(tmp_path), D)


def test_unusable_manifests_are_bad_data(tmp_path) -> None:
    write_day(str(tmp_path), D, make_events(D, 3))
    assert reader.read_manifest(str(tmp_path), D).counts.changes == 3
    with pytest.raises(BadData, match="is for run date 2026-11-25"):
        store.write_bytes(
            store.join(str(tmp_path), "2026-11-26", layout.MANIFEST_NAME),
            store.read_bytes(layout.manifest_location(str(tmp_path), D)),
        )
        reader.read_manifest(str(tmp_path), "2026-11-26")
    store.write_text(layout.manifest_location(str(tmp_path), D), "{not json")
    with pytest.raises(BadData, match="not a valid manifest"):
        reader.read_manifest(str(tmp_path), D)


def test_values_are_the_lines_byte_for_byte_and_keys_canonical(tmp_path) -> None:
    lines = [
        event_line(
            "c", {"b": "é", "a": 2**70}, None, '{"a":1180591620717411303424,"b":"é"}', None, D
        ),
        event_line("u", {"id": 1}, '{"id":1,"x":1.0}', '{"id":1,"x":2.5}', ["x"], D),
    ]
    body = "".join(line + "\n" for line in lines).encode()
    stats, events = _read(tmp_path, _file(tmp_path, "part-00000.jsonl", body, 2))
    assert [e.line for e in events] == [line.encode() for line in lines]
    assert (
        events[0].key
        == kafka_key({"b": "é", "a": 2**70})
        == '{"a":1180591620717411303424,"b":"é"}'.encode()
    )
    assert [e.op for e in events] == ["c", "u"] and stats.per_op == {"c": 1, "u": 1, "d": 0}
    assert stats.value_bytes == len(body) - 2


def test_gzip_multi_member_and_content_hash(tmp_path) -> None:
    lines = make_events(D, 10)
    part1 = gzip.compress("".join(f"{x}\n" for x in lines[:4]).encode())
    part2 = gzip.compress("".join(f"{x}\n" for x in lines[4:]).encode())
    body = part1 + part2
    data_file = _file(tmp_path, "part-00000.jsonl.gz", body, 10)
    stats, events = _read(tmp_path, data_file)
    assert [e.line.decode() for e in events] == lines
    # a manifest holding the hash of the uncompressed content is accepted too
    content = "".join(f"{x}\n" for x in lines).encode()
    _read(tmp_path, replace(data_file, sha256=hashlib.sha256(content).hexdigest()))


def test_truncated_gzip_is_bad_data(tmp_path) -> None:
    body = gzip.compress("".join(f"{x}\n" for x in make_events(D, 50)).encode())[:-20]
    with pytest.raises(BadData, match="cannot read/decompress"):
        _read(tmp_path, _file(tmp_path, "part-00000.jsonl.gz", body, 50))


def test_count_and_hash_mismatches_are_bad_data(tmp_path) -> None:
    body = "".join(f"{x}\n" for x in make_events(D, 5)).encode()
    data_file = _file(tmp_path, "part-00000.jsonl", body, 5)
    with pytest.raises(BadData, match="5 events, but the manifest says 6"):
        _read(tmp_path, replace(data_file, records=6))
    with pytest.raises(BadData, match=f"but the manifest says {len(body)} bytes with SHA-256 0000"):
        _read(tmp_path, replace(data_file, sha256="0" * 64))
    with pytest.raises(BadData, match=f"but the manifest says {len(body) + 1} bytes"):
        _read(tmp_path, replace(data_file, bytes=len(body) + 1))
    with pytest.raises(BadData, match="does not exist"):
        _read(tmp_path, replace(data_file, name="part-00009.jsonl"))


def test_a_copy_that_differs_from_the_verified_file_is_refused(tmp_path) -> None:
    """Step 2 hands out nothing of an object replaced after step 1 (same size, a byte changed)."""
    body = "".join(f"{x}\n" for x in make_events(D, 5)).encode()
    data_file = _file(tmp_path, "part-00000.jsonl", body, 5)
    reader.verify_file(str(tmp_path), D, data_file, str(tmp_path / "ids"))
    _file(tmp_path, "part-00000.jsonl", body.replace(b"after-0", b"after-9"), 5)
    with pytest.raises(BadData, match="changed after it was verified") as info:
        reader.copy_verified(str(tmp_path), D, data_file)
    assert info.value.fields["file"].endswith(f"{D}/part-00000.jsonl")


def test_blank_lines_are_skipped_and_not_counted(tmp_path) -> None:
    a, b = make_events(D, 2)
    body = f"{a}\n\n  \n{b}".encode()  # blank lines, and no final newline
    stats, events = _read(tmp_path, _file(tmp_path, "part-00000.jsonl", body, 2))
    assert [e.line_no for e in events] == [1, 4] and stats.events == 2


def test_fast_kafka_key_equals_the_reference_for_every_code_point() -> None:
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        key = {"k": chr(cp), chr(cp): cp, "z": None, "b": True}
        raw = json.dumps({"key": key}).encode()
        assert reader.key_bytes(key, raw) == kafka_key(key), cp


@pytest.mark.parametrize(
    "key",
    [
        {"id": 2**63 - 1},
        {"id": -(2**63)},
        {"id": 2**64 - 1},
        {"id": 2**64},
        {"id": -(2**63) - 1},
        {"id": 10**30},
        {"x": 1.5, "a": 1.0},
        {"x": 1e16},
        {"c": {"b": 1, "a": [1, 2.0]}},
        {"s": "\u2028\x7f\x00"},
    ],
)
def test_fast_kafka_key_falls_back_exactly(tmp_path, key) -> None:
    line = event_line("c", key, None, "{}", None, D)
    stats, events = _read(tmp_path, _file(tmp_path, "part-00000.jsonl", (line + "\n").encode(), 1))
    assert events[0].key == kafka_key(json.loads(line)["key"])


GOOD = json.loads(make_events(D, 1)[0])


@pytest.mark.parametrize(
    "line, message",
    [
        (b"[1,2]", "not a JSON object"),
        (b'{"op":"c",', "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (json.dumps({**GOOD, "op": "x"}).encode(), "op must be one of"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "event_id"}).encode(),
            "missing field 'event_id'",
        ),
        (json.dumps({**GOOD, "key": {}}).encode(), "key must be a non-empty object"),
        (json.dumps({**GOOD, "run_date": "2026-11-24"}).encode(), "run_date is '2026-11-24'"),
        (json.dumps({**GOOD, "event_id": "abc"}).encode(), "event_id must be 64"),
        (
            b'{"op":"c","key":{"id":1},"before":null,"after":{"id":1},"changed":null,"run_date":"2026-11-25","event_id":NaN}',
            "malformed JSON",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line: bytes, message: str) -> None:
    good = make_events(D, 2)
    body = (good[0] + "\n").encode() + line + b"\n" + (good[1] + "\n").encode()
    with pytest.raises(BadData, match=message) as info:
        _read(tmp_path, _file(tmp_path, "part-00003.jsonl", body, 3))
    assert f"{D}/part-00003.jsonl, line 2:" in info.value.message
    assert info.value.fields["line"] == 2


def test_event_id_is_always_recomputed(tmp_path) -> None:
    for key in ({"id": 1}, {"id": 2**70}, {"x": 1.5}, {"s": "\u00e9"}):
        good = json.loads(event_line("u", key, '{"a":1}', '{"a":2}', ["a"], D))
        forged = {**good, "event_id": event_id(D, "u", {"id": "other"})}  # a valid id, not its own
        wrong = json.dumps(forged, separators=(",", ":")).encode() + b"\n"
        data_file = _file(tmp_path, "part-00000.jsonl", wrong, 1)
        with pytest.raises(BadData, match="line 1: event_id .* is not the id of its"):
            _read(tmp_path, data_file)
        with pytest.raises(InvalidEvent, match="is not the id of its"):
            reader.parse_line(wrong.rstrip(), D)


def test_memory_is_bounded_whatever_the_file_size(tmp_path) -> None:
    n = 60_000  # ~24 MB of ~400-byte lines, gzip
    body = gzip.compress(
        "".join(f"{x}\n" for x in iter_events(D, n, payload_bytes=400)).encode(), 1
    )
    data_file = _file(tmp_path, "part-00000.jsonl.gz", body, n)
    del body
    ids_path = str(tmp_path / "ids")
    tracemalloc.start()
    try:
        stats = reader.verify_file(str(tmp_path), D, data_file, ids_path)
        with (
            reader.copy_verified(str(tmp_path), D, data_file, str(tmp_path)) as content,
            open(ids_path, "rb") as ids,
        ):
            count = sum(1 for _, rec in reader.paired_lines(content, ids, "x") if rec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n and stats.value_bytes > 20_000_000
    assert peak < 8 * 1024 * 1024 + reader.SPOOL_MEMORY_BYTES, peak


def _lines_for_agreement() -> list[bytes]:
    good = json.loads(make_events(D, 3)[1])
    variants: list[object] = [
        good,
        {**good, "extra": 1},  # extra fields are allowed
        {**good, "op": ["c"]},  # unhashable op
        {**good, "op": None},
        {**good, "key": []},
        {**good, "key": {"a": 1.5, "b": [1]}},  # not a simple key: the reference path
        {**good, "key": {"a": 1.5, "b": [1]}, "event_id": event_id(D, "u", {"a": 1.5, "b": [1]})},
        {**good, "event_id": 7},
        {**good, "event_id": "A" * 64},
        {**good, "event_id": good["event_id"].upper()},
        {**good, "event_id": event_id(D, "c", good["key"])},  # the id of another op
        {**good, "run_date": "2026-11-26"},
        {**good, "before": None},  # before/after/changed must fit the op (u)
        {**good, "after": [1]},
        {**good, "changed": None},
        {**good, "op": "c"},
        {**good, "op": "d"},
        {**good, "run_date": None},
        [good],
        "text",
        17,
        None,
    ]
    variants += [{k: v for k, v in good.items() if k != name} for name in EVENT_FIELDS]
    out = [json.dumps(v).encode() for v in variants]
    out += [b"", b"  ", b"{", b'{"op":"c"', b"\xff", json.dumps(good).encode() + b" x"]
    return out


def _outcome(parse, raw: bytes) -> object:
    try:
        return parse(raw)
    except (InvalidEvent, BadData) as exc:
        return type(exc).__name__, str(exc)


def test_the_inlined_publishing_checks_agree_with_parse_line(tmp_path) -> None:
    """`verify_file` inlines `parse_line`'s checks: same events, same refusals, every field."""
    for raw in _lines_for_agreement():
        expected = _outcome(lambda r: reader.parse_line(r, D), raw)
        data_file = _file(tmp_path, "part-00000.jsonl", raw + b"\n", 0 if expected is None else 1)

        def via_reader(r: bytes, data_file: DataFile = data_file) -> object:
            events = _read(tmp_path, data_file)[1]
            return None if not events else (events[0].op, events[0].key, events[0].event_id)

        got = _outcome(via_reader, raw)
        if isinstance(expected, tuple) and expected[0] == "InvalidEvent":
            assert got[0] == "BadData", raw  # type: ignore[index]
            assert f"part-00000.jsonl, line 1: {expected[1]}: " in got[1], raw  # type: ignore[index]
        else:
            assert got == expected, raw
    for name in EVENT_FIELDS:  # a line missing any contract field is refused by both
        line = json.dumps({k: v for k, v in GOOD.items() if k != name}).encode()
        with pytest.raises(InvalidEvent, match=f"missing field '{name}'"):
            reader.parse_line(line, D)
