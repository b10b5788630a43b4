"""End to end, with real components: moto_server (S3) and a Tansu broker, both on loopback."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import boto3
import pytest

from diffcore import layout, store
from diffcore.events import event_id, kafka_key, parse_event
from kafka_publisher import checkpoints
from kafka_publisher.errors import (
    EXIT_BAD_DATA,
    EXIT_CONCURRENT,
    EXIT_DELIVERY,
    EXIT_NOT_READY,
    EXIT_OK,
    EXIT_UNREADABLE_KEYS,
)
from kafka_publisher.main import main
from tests.support.diffs import make_events, write_day, write_file, write_manifest
from tests.support.services import (
    FAKE_AWS,
    consume_all,
    create_topics,
    free_port,
    moto_server,
    tansu_broker,
)

D1 = "2026-11-25"
D2 = "2026-11-26"
PARTITIONS = 3


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    with moto_server() as endpoint, tansu_broker() as bootstrap:
        aws_env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": FAKE_AWS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_AWS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": FAKE_AWS["region_name"],
        }
        with mock.patch.dict(os.environ, aws_env):
            yield endpoint, bootstrap


@pytest.fixture()
def day(services: tuple[str, str]) -> dict[str, str]:
    """A fresh bucket and topic; the publisher's environment for them."""
    endpoint, bootstrap = services
    bucket = f"diffs-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, **FAKE_AWS).create_bucket(Bucket=bucket)
    topic = f"changes-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {topic: PARTITIONS})
    return {
        "DIFFS_LOCATION": f"s3://{bucket}/diffs",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": topic,
        "KAFKA_PROP_MESSAGE_TIMEOUT_MS": "5000",
        "RUN_DATE": D1,
    }


def run(env: dict[str, str], *argv: str) -> int:
    with mock.patch.dict(os.environ, env):
        return main(list(argv))


def lines_of(diffs: str, run_date: str, name: str) -> list[bytes]:
    body = store.read_bytes(store.join(layout.run_folder(diffs, run_date), name))
    if name.endswith(".gz"):
        body = gzip.decompress(body)
    return body.split(b"\n")[:-1]


def consume(env: dict[str, str], expected: int) -> list[Any]:
    return consume_all(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_TOPIC"], expected=expected, idle_timeout=1.0
    )


OTHER_DAY_EVENTS = 12


def publish_other_day(env: dict[str, str]) -> None:
    """A good day (D2) published to the topic first: `messages_of` must read its messages, so
    that "nothing of D1" is observed on the topic, not assumed from an empty read."""
    write_day(env["DIFFS_LOCATION"], D2, make_events(D2, OTHER_DAY_EVENTS, start=5000), 6)
    assert run({**env, "RUN_DATE": D2}) == EXIT_OK


def messages_of(env: dict[str, str], run_date: str, expected_total: int) -> list[Any]:
    """The messages of `run_date` among all messages on the topic (counted, not watermarks),
    once `expected_total` messages have been read (and an idle second more for extras)."""
    messages = consume(env, expected_total)
    assert len(messages) >= expected_total
    return [m for m in messages if dict(m.headers())["run_date"] == run_date.encode()]


def checkpoint_names(env: dict[str, str], run_date: str) -> list[str]:
    folder = store.join(env["DIFFS_LOCATION"], layout.PUBLISHED_PREFIX, run_date)
    return [store.basename(p) for p in store.list_files(folder)]


def test_publishes_every_event_once_with_key_value_headers_and_order(day: dict[str, str]) -> None:
    diffs = day["DIFFS_LOCATION"]
    # the same 300 keys change on two days: per-key order must hold across the days too
    m1 = write_day(diffs, D1, make_events(D1, 300), records_per_file=120)
    m2 = write_day(diffs, D2, make_events(D2, 300), records_per_file=120, gzip=True)
    assert run(day) == EXIT_OK
    assert run({**day, "RUN_DATE": ""}, "--run-date", D2) == EXIT_OK

    expected: dict[tuple[str, str], list[bytes]] = {}
    for m in (m1, m2):
        for f in m.files:
            expected[(m.run_date, f.name)] = lines_of(diffs, m.run_date, f.name)
    total = sum(len(v) for v in expected.values())
    messages = consume(day, total)
    assert len(messages) == total  # every event once (no duplicate arrived within the idle wait)

    by_partition: dict[int, list[Any]] = defaultdict(list)
    seen_values = []
    for msg in messages:
        headers = dict(msg.headers())
        assert [h for h, _ in msg.headers()] == ["op", "run_date", "event_id", "source_file"]
        event = parse_event(msg.value())  # a valid change event, byte-identical to a file line
        assert msg.key() == kafka_key(event.key)
        assert headers == {
            "op": event.op.encode(),
            "run_date": event.run_date.encode(),
            "event_id": event.event_id.encode(),
            "source_file": headers["source_file"],
        }
        file_lines = expected[(event.run_date, headers["source_file"].decode())]
        assert msg.value() in file_lines
        seen_values.append(msg.value())
        by_partition[msg.partition()].append(msg)
    assert sorted(seen_values) == sorted(v for vs in expected.values() for v in vs)
    assert len(by_partition) == PARTITIONS

    # order: within a partition, (run date, file, line) only goes forward; a key's changes
    # follow the days
    for msgs in by_partition.values():
        positions = []
        for msg in msgs:
            h = dict(msg.headers())
            rd, src = h["run_date"].decode(), h["source_file"].decode()
            positions.append((rd, src, expected[(rd, src)].index(msg.value())))
        assert positions == sorted(positions)
    per_key: dict[bytes, list[str]] = defaultdict(list)
    for msg in messages:
        per_key[msg.key()].append(dict(msg.headers())["run_date"].decode())
    assert all(days == [D1, D2] for days in per_key.values())
    assert len({m.partition() for m in messages if m.key() == messages[0].key()}) == 1

    cps = [checkpoints.load(diffs, D1, f.name) for f in m1.files]
    assert [c.sha256 for c in cps if c] == [f.sha256 for f in m1.files]
    assert [c.messages for c in cps if c] == [f.records for f in m1.files]


def test_rerun_after_success_publishes_nothing(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 50), records_per_file=20)
    assert run(day) == EXIT_OK
    assert len(consume(day, 50)) == 50
    capsys.readouterr()
    # the rerun does not even need Kafka: every file has a matching checkpoint
    assert run({**day, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}) == EXIT_OK
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(1 for o in out if o.get("msg") == "file skipped: already published") == 3
    done = next(o for o in out if o.get("msg") == "done")
    assert done["messages"] == 0 and done["files_skipped"] == 3
    assert len(consume(day, 50)) == 50


def test_interrupted_and_replaced_files_are_republished_whole(day: dict[str, str]) -> None:
    diffs = day["DIFFS_LOCATION"]
    manifest = write_day(diffs, D1, make_events(D1, 60), records_per_file=20)
    assert run(day) == EXIT_OK
    # file 1: its checkpoint is gone (the run was interrupted before it was written)
    store.delete(checkpoints.location(diffs, D1, manifest.files[1].name))
    # file 2: a diff rerun replaced it (new content, new sha256 in the new manifest)
    new2 = write_file(diffs, D1, manifest.files[2].name, make_events(D1, 20, start=1000))
    write_manifest(diffs, D1, [manifest.files[0], manifest.files[1], new2], manifest.counts)
    assert run(day) == EXIT_OK
    messages = consume(day, 100)
    per_file: dict[str, int] = defaultdict(int)
    for msg in messages:
        per_file[dict(msg.headers())["source_file"].decode()] += 1
    assert per_file == {manifest.files[0].name: 20, manifest.files[1].name: 40, new2.name: 40}
    assert checkpoints.load(diffs, D1, new2.name).sha256 == new2.sha256


def test_gzip_files_and_tombstones_after_deletes(day: dict[str, str]) -> None:
    diffs = day["DIFFS_LOCATION"]
    manifest = write_day(diffs, D1, make_events(D1, 90), records_per_file=40, gzip=True)
    assert all(f.name.endswith(".jsonl.gz") for f in manifest.files)
    assert run({**day, "PUBLISH_TOMBSTONES": "true"}) == EXIT_OK
    deletes = manifest.counts.d
    messages = consume(day, 90 + deletes)
    assert len(messages) == 90 + deletes
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for msg in messages:
        by_partition[msg.partition()].append(msg)
    tombstones = 0
    for msgs in by_partition.values():
        for i, msg in enumerate(msgs):
            if msg.value() is None:
                tombstones += 1
                previous = msgs[i - 1]
                assert previous.key() == msg.key() and dict(previous.headers())["op"] == b"d"
                assert msg.headers() == previous.headers()
            elif dict(msg.headers())["op"] == b"d":
                assert msgs[i + 1].value() is None and msgs[i + 1].key() == msg.key()
    assert tombstones == deletes
    assert checkpoints.load(diffs, D1, manifest.files[0].name).messages == 40 + sum(
        1 for line in lines_of(diffs, D1, manifest.files[0].name) if b'"op":"d"' in line
    )


def test_missing_manifest_is_not_ready(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 10), manifest=False)
    assert run(day) == EXIT_NOT_READY
    out = capsys.readouterr().out
    assert f"diffs for {D1} are not ready" in out
    assert consume_all(day["KAFKA_BOOTSTRAP_SERVERS"], day["KAFKA_TOPIC"], idle_timeout=1.0) == []
    assert checkpoint_names(day, D1) == []


def test_malformed_line_names_file_and_line(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    diffs = day["DIFFS_LOCATION"]
    good = make_events(D1, 10)
    first = write_file(diffs, D1, layout.data_file_name(0), good[:5])
    bad_lines = good[5:7] + ['{"op":"c","key":{"id":1},"before":null,'] + good[7:]
    second = write_file(diffs, D1, layout.data_file_name(1), bad_lines)
    from diffcore.manifest import Counts

    write_manifest(diffs, D1, [first, second], Counts(c=4, u=3, d=3))
    publish_other_day(day)
    capsys.readouterr()
    assert run(day) == EXIT_BAD_DATA
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    error = next(o for o in out if o.get("exit_code") == EXIT_BAD_DATA)
    assert f"{D1}/part-00001.jsonl, line 3: malformed JSON" in error["msg"]
    assert error["line"] == 3 and error["file"].endswith("part-00001.jsonl")
    # every file is checked before the first message: nothing of the day was published
    assert checkpoint_names(day, D1) == []
    assert messages_of(day, D1, OTHER_DAY_EVENTS) == []


def test_record_count_mismatch_is_bad_data(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    diffs = day["DIFFS_LOCATION"]
    f = write_file(diffs, D1, layout.data_file_name(0), make_events(D1, 10))
    from dataclasses import replace

    from diffcore.manifest import Counts

    write_manifest(diffs, D1, [replace(f, records=11)], Counts(c=4, u=3, d=3))
    assert run(day) == EXIT_BAD_DATA
    assert "10 events, but the manifest says 11" in capsys.readouterr().out
    assert checkpoint_names(day, D1) == []
    # --dry-run finds the same without contacting Kafka
    assert run({**day, "KAFKA_BOOTSTRAP_SERVERS": ""}, "--dry-run") == EXIT_BAD_DATA


def test_broker_unreachable_fails_then_a_rerun_delivers(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 30), records_per_file=10)
    down = {
        **day,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KAFKA_PROP_MESSAGE_TIMEOUT_MS": "2000",
    }
    assert run(down) == EXIT_DELIVERY
    out = capsys.readouterr().out
    error = next(json.loads(line) for line in out.splitlines() if '"exit_code": 12' in line)
    assert "cannot reach the Kafka brokers" in error["msg"]
    assert checkpoint_names(day, D1) == []
    assert run(day) == EXIT_OK
    assert len(consume(day, 30)) == 30
    assert sorted(checkpoint_names(day, D1)) == [f"{f.name}.json" for f in manifest.files]


def test_dry_run_validates_everything_and_publishes_nothing(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 25), records_per_file=10, gzip=True)
    assert run(day, "--dry-run") == EXIT_OK
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(1 for o in out if o.get("msg") == "file valid") == 3
    assert not any("_aws" in o for o in out)
    assert checkpoint_names(day, D1) == []
    assert consume_all(day["KAFKA_BOOTSTRAP_SERVERS"], day["KAFKA_TOPIC"], idle_timeout=1.0) == []


def test_summary_and_emf_lines(day: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 30), records_per_file=10)
    assert run(day) == EXIT_OK
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    files = [o for o in out if o.get("msg") == "file published"]
    assert [o["file"] for o in files] == [
        "part-00000.jsonl",
        "part-00001.jsonl",
        "part-00002.jsonl",
    ]
    done = next(o for o in out if o.get("msg") == "done")
    assert done["per_op"] == {"c": 10, "u": 10, "d": 10}
    assert done["messages"] == 30 and done["messages_per_s"] > 0 and done["bytes"] > 0
    emf = next(o for o in out if "_aws" in o)
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "DiffsPipeline/Publisher"
    assert directive["Dimensions"] == [["Topic"]]
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"MessagesPublished", "MessagesFailed"} <= names
    assert emf["MessagesPublished"] == 30 and emf["MessagesFailed"] == 0
    assert emf["Topic"] == day["KAFKA_TOPIC"]


# --- Nothing of a day is produced before every file to publish was checked whole (each line
# against the contract, size, SHA-256 and count against the manifest) and the day's totals add
# up; a file is produced from a copy that must still be what was checked. ---


def bad_data_error(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    out = logged(capsys)
    assert not any(o.get("msg") == "file published" for o in out)
    return next(o for o in out if o.get("exit_code") == EXIT_BAD_DATA)


def edit_stored(diffs: str, run_date: str, name: str, edit: Callable[[bytes], bytes]) -> None:
    location = store.join(layout.run_folder(diffs, run_date), name)
    store.write_bytes(location, edit(store.read_bytes(location)))


def flip_a_payload_byte(body: bytes) -> bytes:
    """Same length, one byte changed, in a payload (key, op and event_id untouched)."""
    edited = body.replace(b'"name":"after-13"', b'"name":"after-93"', 1)
    assert edited != body and len(edited) == len(body)
    return edited


def flip_a_middle_byte(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]


@pytest.mark.parametrize("gz, workers", [(False, "1"), (True, "1"), (False, "2")])
def test_a_file_edited_after_the_manifest_publishes_nothing(
    day: dict[str, str], capsys: pytest.CaptureFixture[str], gz: bool, workers: str
) -> None:
    diffs = day["DIFFS_LOCATION"]
    env = {**day, "PUBLISH_WORKERS": workers}
    manifest = write_day(diffs, D1, make_events(D1, 30), records_per_file=10, gzip=gz)
    name = manifest.files[1].name
    edit_stored(diffs, D1, name, flip_a_middle_byte if gz else flip_a_payload_byte)
    publish_other_day(env)
    capsys.readouterr()
    assert run(env) == EXIT_BAD_DATA
    error = bad_data_error(capsys)
    assert error["file"].endswith(f"{D1}/{name}") and f"{D1}/{name}" in error["msg"]
    if not gz:
        assert "but the manifest says" in error["msg"]
    assert checkpoint_names(day, D1) == []
    assert messages_of(env, D1, OTHER_DAY_EVENTS) == []  # nothing of the day, let alone the file


@pytest.mark.parametrize(
    "kind", ["truncated at a line end", "truncated mid-line", "truncated gzip", "foreign"]
)
def test_a_short_or_foreign_file_publishes_nothing(
    day: dict[str, str], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    diffs = day["DIFFS_LOCATION"]
    gz = kind == "truncated gzip"
    manifest = write_day(diffs, D1, make_events(D1, 30), records_per_file=10, gzip=gz)
    name = manifest.files[1].name
    publish_other_day(day)
    if kind == "truncated at a line end":
        edit_stored(diffs, D1, name, lambda b: b"".join(b.splitlines(keepends=True)[:7]))
    elif kind == "truncated mid-line":
        edit_stored(diffs, D1, name, lambda b: b[: len(b) // 2])
    elif kind == "truncated gzip":
        edit_stored(diffs, D1, name, lambda b: b[:-20])
    else:  # another day's file copied in under this name
        store.copy(
            store.join(layout.run_folder(diffs, D2), name),
            store.join(layout.run_folder(diffs, D1), name),
        )
    capsys.readouterr()
    assert run(day) == EXIT_BAD_DATA
    error = bad_data_error(capsys)
    assert error["file"].endswith(f"{D1}/{name}") and f"{D1}/{name}" in error["msg"]
    if kind == "foreign":
        assert error["line"] == 1 and f"run_date is '{D2}', not {D1}" in error["msg"]
    assert checkpoint_names(day, D1) == []
    assert messages_of(day, D1, OTHER_DAY_EVENTS) == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_forged_event_id_publishes_nothing(
    day: dict[str, str], capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    diffs = day["DIFFS_LOCATION"]
    env = {**day, "PUBLISH_WORKERS": workers}
    events = make_events(D1, 20)
    forged = json.loads(events[13])  # line 4 of the second file
    forged["event_id"] = event_id(D1, forged["op"], {"id": 999})  # well-formed, not its own
    events[13] = json.dumps(forged, separators=(",", ":"))
    write_day(diffs, D1, events, records_per_file=10)  # the manifest matches the files
    publish_other_day(env)
    capsys.readouterr()
    assert run(env) == EXIT_BAD_DATA
    error = bad_data_error(capsys)
    assert error["file"].endswith(f"{D1}/part-00001.jsonl") and error["line"] == 4
    assert f"{D1}/part-00001.jsonl, line 4: event_id {forged['event_id']} is not the id" in (
        error["msg"]
    )
    assert checkpoint_names(day, D1) == []
    assert messages_of(env, D1, OTHER_DAY_EVENTS) == []


def test_an_event_of_another_run_date_publishes_nothing(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    diffs = day["DIFFS_LOCATION"]
    events = make_events(D1, 20)
    events[4] = make_events(D2, 1, start=4)[0]  # same key and op, a valid event of D2 (its id)
    write_day(diffs, D1, events, records_per_file=10)
    publish_other_day(day)
    capsys.readouterr()
    assert run(day) == EXIT_BAD_DATA
    error = bad_data_error(capsys)
    assert error["file"].endswith(f"{D1}/part-00000.jsonl") and error["line"] == 5
    assert f"part-00000.jsonl, line 5: run_date is '{D2}', not {D1}" in error["msg"]
    assert checkpoint_names(day, D1) == []
    assert messages_of(day, D1, OTHER_DAY_EVENTS) == []  # not even lines 1-4 of that file


@pytest.mark.parametrize("workers", ["1", "2"])
def test_manifest_counts_that_do_not_add_up_publish_nothing(
    day: dict[str, str], capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    from diffcore.manifest import Counts

    diffs = day["DIFFS_LOCATION"]
    env = {**day, "PUBLISH_WORKERS": workers}
    manifest = write_day(diffs, D1, make_events(D1, 30), records_per_file=10)
    c = manifest.counts
    write_manifest(diffs, D1, manifest.files, Counts(c=c.c + 1, u=c.u - 1, d=c.d))
    publish_other_day(env)
    capsys.readouterr()
    assert run(env) == EXIT_BAD_DATA
    out = logged(capsys)
    assert not any(o.get("msg") == "file published" for o in out)
    assert sorted(o["file"] for o in out if o.get("msg") == "file verified") == [
        f.name for f in manifest.files
    ]
    error = next(o for o in out if o.get("exit_code") == EXIT_BAD_DATA)
    assert "events per op in the day's files {'c': 10, 'u': 10, 'd': 10} differ from the " in (
        error["msg"]
    )
    assert "manifest's counts {'c': 11, 'u': 9, 'd': 10}" in error["msg"]
    assert checkpoint_names(day, D1) == []
    assert messages_of(env, D1, OTHER_DAY_EVENTS) == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_file_is_verified_before_the_first_message(
    day: dict[str, str], capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    """The happy path: every event once, byte for byte; the files verified first."""
    diffs = day["DIFFS_LOCATION"]
    manifest = write_day(diffs, D1, make_events(D1, 45), records_per_file=10, gzip=True)
    assert run({**day, "PUBLISH_WORKERS": workers}) == EXIT_OK
    out = logged(capsys)
    steps = [o["msg"] for o in out if o.get("msg") in ("file verified", "file published")]
    assert steps == ["file verified"] * 5 + ["file published"] * 5
    done = next(o for o in out if o.get("msg") == "done")
    assert done["events"] == 45 and done["files_published"] == 5
    messages = consume(day, 45)
    assert len(messages) == 45
    expected = {f.name: lines_of(diffs, D1, f.name) for f in manifest.files}
    for msg in messages:
        event = parse_event(msg.value())
        assert msg.value() in expected[dict(msg.headers())["source_file"].decode()]
        assert msg.key() == kafka_key(event.key)
        assert dict(msg.headers())["event_id"] == event.event_id.encode()
    for f in manifest.files:  # the checkpoint holds the file's counts per op
        per_op = {op: 0 for op in "cud"}
        for line in expected[f.name]:
            per_op[parse_event(line).op] += 1
        assert checkpoints.load(diffs, D1, f.name).per_op == per_op


def test_a_file_replaced_after_it_was_verified_is_not_published(
    day: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kafka_publisher import reader

    diffs = day["DIFFS_LOCATION"]
    manifest = write_day(diffs, D1, make_events(D1, 20), records_per_file=10)
    name = manifest.files[1].name
    real_verify = reader.verify_file

    def verify_then_replace(*args: Any, **kwargs: Any) -> Any:
        stats = real_verify(*args, **kwargs)
        if stats.name == name:  # replaced right after its check: same size, one byte changed
            edit_stored(diffs, D1, name, flip_a_payload_byte)
        return stats

    monkeypatch.setattr(reader, "verify_file", verify_then_replace)
    assert run(day) == EXIT_BAD_DATA
    out = logged(capsys)
    error = next(o for o in out if o.get("exit_code") == EXIT_BAD_DATA)
    assert f"{D1}/{name}: changed after it was verified" in error["msg"]
    assert error["file"].endswith(f"{D1}/{name}")
    assert checkpoint_names(day, D1) == [f"{manifest.files[0].name}.json"]
    messages = consume(day, 10)  # the first file, published before the replaced one
    assert [dict(m.headers())["source_file"] for m in messages] == [b"part-00000.jsonl"] * 10


def test_a_rerun_checks_the_day_totals_with_the_published_files_counts(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from diffcore.manifest import Counts

    diffs = day["DIFFS_LOCATION"]
    manifest = write_day(diffs, D1, make_events(D1, 30), records_per_file=10)
    files = manifest.files
    assert run(day) == EXIT_OK
    # file 0: a checkpoint of an earlier version, without counts (the rerun reads the file to
    # count it, and does not publish it); file 1: counted from its checkpoint; file 2: to publish
    first = checkpoints.location(diffs, D1, files[0].name)
    obj = json.loads(store.read_bytes(first))
    del obj["per_op"]
    store.write_bytes(first, json.dumps(obj).encode())
    store.delete(checkpoints.location(diffs, D1, files[2].name))
    c = manifest.counts
    write_manifest(diffs, D1, files, Counts(c=c.c, u=c.u + 1, d=c.d - 1))
    capsys.readouterr()
    assert run(day) == EXIT_BAD_DATA
    out = logged(capsys)
    assert [o["file"] for o in out if o.get("msg") == "file verified"] == [
        files[0].name,
        files[2].name,
    ]
    error = next(o for o in out if o.get("exit_code") == EXIT_BAD_DATA)
    assert "differ from the manifest's counts" in error["msg"]
    assert len(consume(day, 30)) == 30  # nothing more than the first run's

    write_manifest(diffs, D1, files, c)
    assert run(day) == EXIT_OK
    done = next(o for o in logged(capsys) if o.get("msg") == "done")
    assert done["files_published"] == 1 and done["files_skipped"] == 2
    per_file: dict[bytes, int] = defaultdict(int)
    for msg in consume(day, 40):
        per_file[dict(msg.headers())["source_file"]] += 1
    assert per_file == {b"part-00000.jsonl": 10, b"part-00001.jsonl": 10, b"part-00002.jsonl": 20}


class FakeProducer:
    """Stands in for confluent_kafka.Producer: reports the n-th message's delivery as failed."""

    def __init__(
        self,
        conf: dict[str, Any],
        fail_at: int | None = None,
        refuse: bool = False,
        die_at: int | None = None,
    ) -> None:
        self.conf = conf
        self.fail_at = fail_at
        self.refuse = refuse
        self.die_at = die_at  # the process exits there (a worker killed mid-file)
        self.produced: list[tuple[Any, Any, Any]] = []
        self.pending: list[int] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        part = mock.Mock(error=None)
        return mock.Mock(topics={topic: mock.Mock(error=None, partitions={0: part})})

    def produce(self, topic: str, value: Any, key: Any, headers: Any = None) -> None:
        if self.refuse:
            from confluent_kafka import KafkaError, KafkaException

            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.produced.append((key, value, headers))
        self.pending.append(len(self.produced))
        if len(self.produced) == self.die_at:
            os._exit(3)

    def poll(self, timeout: float = 0) -> int:
        return self._serve()

    def flush(self, timeout: float = 0) -> int:
        self._serve()
        return 0

    def _serve(self) -> int:
        served = len(self.pending)
        for n in self.pending:
            if n == self.fail_at:
                self.conf["on_delivery"]("Local: Message timed out", mock.Mock())
        self.pending = []
        return served

    def __len__(self) -> int:
        return len(self.pending)


def _fake_run(
    tmp_path, monkeypatch: pytest.MonkeyPatch, workers: int = 1, **fake: Any
) -> tuple[int, list[FakeProducer]]:
    from kafka_publisher import publisher

    made: list[FakeProducer] = []
    real = publisher.KafkaSink.__init__

    def init(self, conf, topic, redactor, producer_factory=None):  # type: ignore[no-untyped-def]
        def factory(c: dict[str, Any]) -> FakeProducer:
            made.append(FakeProducer(c, **fake))
            return made[-1]

        real(self, conf, topic, redactor, factory)

    monkeypatch.setattr(publisher.KafkaSink, "__init__", init)
    env = {
        "DIFFS_LOCATION": str(tmp_path),
        "RUN_DATE": D1,
        "KAFKA_BOOTSTRAP_SERVERS": "x:1",
        "KAFKA_TOPIC": "t",
        "PUBLISH_WORKERS": str(workers),
    }
    with mock.patch.dict(os.environ, env, clear=True):
        return main([]), made


def test_a_failed_delivery_report_fails_the_file_and_the_run(tmp_path, monkeypatch, capsys) -> None:
    write_day(str(tmp_path), D1, make_events(D1, 30), records_per_file=10)
    code, made = _fake_run(tmp_path, monkeypatch, fail_at=15)  # a message of the 2nd file
    assert code == EXIT_DELIVERY
    out = capsys.readouterr().out
    assert (
        "part-00001.jsonl: 1 message(s) not acknowledged by Kafka (Local: Message timed out)" in out
    )
    assert made[0].conf["delivery.report.only.error"] is True and made[0].conf["acks"] == "all"
    assert [store.basename(p) for p in store.list_files(str(tmp_path / "_published" / D1))] == [
        "part-00000.jsonl.json"
    ]
    emf = next(json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"'))
    assert emf["MessagesFailed"] == 1 and emf["outcome"] == "delivery_failed"
    # the rerun publishes the failed file (whole) and the one after it, not the first
    monkeypatch.undo()
    code, made = _fake_run(tmp_path, monkeypatch)
    assert code == EXIT_OK and len(made[0].produced) == 20


def test_a_message_refused_by_the_producer_is_a_delivery_failure(
    tmp_path, monkeypatch, capsys
) -> None:
    write_day(str(tmp_path), D1, make_events(D1, 3))
    code, _ = _fake_run(tmp_path, monkeypatch, refuse=True)
    assert code == EXIT_DELIVERY
    assert "part-00000.jsonl, line 1: the producer refused the message" in capsys.readouterr().out


# --- PUBLISH_WORKERS > 1: files published by worker processes, each with its own producer ---


def logged(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_two_workers_publish_every_event_once_in_file_order(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    diffs = day["DIFFS_LOCATION"]
    manifest = write_day(diffs, D1, make_events(D1, 500), records_per_file=90)  # 6 files
    env = {**day, "PUBLISH_WORKERS": "2", "PUBLISH_TOMBSTONES": "true"}
    assert run(env) == EXIT_OK
    out = logged(capsys)
    published = [o for o in out if o.get("msg") == "file published"]
    assert sorted(o["file"] for o in published) == [f.name for f in manifest.files]
    assert {o["worker"] for o in published} == {1, 2}  # both workers published files
    done = next(o for o in out if o.get("msg") == "done")
    deletes = manifest.counts.d
    assert done["events"] == 500 and done["tombstones"] == deletes and done["failed"] == 0
    assert done["per_op"] == {"c": manifest.counts.c, "u": manifest.counts.u, "d": deletes}
    assert next(o for o in out if o.get("msg") == "connected")["workers"] == 2

    expected = {f.name: lines_of(diffs, D1, f.name) for f in manifest.files}
    messages = consume(day, 500 + deletes)
    assert len(messages) == 500 + deletes
    values = [m.value() for m in messages if m.value() is not None]
    assert sorted(values) == sorted(v for vs in expected.values() for v in vs)  # each once
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for msg in messages:
        by_partition[msg.partition()].append(msg)
        headers = dict(msg.headers())
        assert [h for h, _ in msg.headers()] == ["op", "run_date", "event_id", "source_file"]
        if msg.value() is None:
            continue
        event = parse_event(msg.value())
        assert msg.key() == kafka_key(event.key)
        assert headers == {
            "op": event.op.encode(),
            "run_date": D1.encode(),
            "event_id": event.event_id.encode(),
            "source_file": headers["source_file"],
        }
        assert msg.value() in expected[headers["source_file"].decode()]
    for msgs in by_partition.values():
        # within each file, a partition sees the file's lines in order; a tombstone right
        # after its delete
        last_line: dict[str, int] = {}
        for i, msg in enumerate(msgs):
            source = dict(msg.headers())["source_file"].decode()
            if msg.value() is None:
                assert msgs[i - 1].key() == msg.key() and msgs[i - 1].value() is not None
                assert dict(msgs[i - 1].headers())["op"] == b"d"
                continue
            line = expected[source].index(msg.value())
            assert line > last_line.get(source, -1)
            last_line[source] = line
    cps = [checkpoints.load(diffs, D1, f.name) for f in manifest.files]
    assert [c.sha256 if c else None for c in cps] == [f.sha256 for f in manifest.files]

    # a rerun after success publishes nothing and does not contact Kafka
    down = {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    assert run(down) == EXIT_OK
    done = next(o for o in logged(capsys) if o.get("msg") == "done")
    assert done["messages"] == 0 and done["files_skipped"] == len(manifest.files)
    assert len(consume(day, 500 + deletes)) == 500 + deletes


def test_two_workers_stop_at_a_bad_line_then_a_rerun_publishes_the_day(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from diffcore.manifest import Counts

    diffs = day["DIFFS_LOCATION"]
    events = make_events(D1, 200)
    good_files = [
        write_file(diffs, D1, layout.data_file_name(i), events[i * 50 : (i + 1) * 50])
        for i in range(4)
    ]
    bad_line = '{"op":"u","key":{"id":51},"before":null,'
    broken = events[50:52] + [bad_line] + events[53:100]  # line 3 of the second file
    files = list(good_files)
    files[1] = write_file(diffs, D1, layout.data_file_name(1), broken)
    counts = Counts(c=67, u=67, d=66)
    write_manifest(diffs, D1, files, counts)
    env = {**day, "PUBLISH_WORKERS": "2"}
    publish_other_day(env)
    capsys.readouterr()
    assert run(env) == EXIT_BAD_DATA
    out = logged(capsys)
    error = next(o for o in out if o.get("exit_code") == EXIT_BAD_DATA)
    assert f"{D1}/part-00001.jsonl, line 3: malformed JSON" in error["msg"]
    assert error["line"] == 3 and error["file"].endswith("part-00001.jsonl")
    assert error["outcome"] == "bad_data"
    # the workers verify every file before any is published: nothing of the day went out
    assert not any(o.get("msg") == "file published" for o in out)
    assert checkpoint_names(day, D1) == []
    assert messages_of(day, D1, OTHER_DAY_EVENTS) == []

    # the diff is fixed (the file rewritten, a new manifest): the rerun publishes the day
    files[1] = write_file(diffs, D1, layout.data_file_name(1), events[50:100])
    write_manifest(diffs, D1, files, counts)
    assert run(env) == EXIT_OK
    done = next(o for o in logged(capsys) if o.get("msg") == "done")
    assert done["files_skipped"] == 0 and done["files_published"] == 4
    assert sorted(checkpoint_names(day, D1)) == [f"{f.name}.json" for f in files]
    messages = messages_of(day, D1, OTHER_DAY_EVENTS + 200)
    assert len(messages) == 200
    per_file: dict[str, set[bytes]] = defaultdict(set)
    for msg in messages:
        per_file[dict(msg.headers())["source_file"].decode()].add(msg.value())
    for f in files:  # every event of the day reached the topic
        assert per_file[f.name] == set(lines_of(diffs, D1, f.name))


def test_two_workers_broker_unreachable_is_a_delivery_failure(
    day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 30), records_per_file=10)
    down = {
        **day,
        "PUBLISH_WORKERS": "2",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KAFKA_PROP_MESSAGE_TIMEOUT_MS": "2000",
    }
    assert run(down) == EXIT_DELIVERY
    error = next(o for o in logged(capsys) if o.get("exit_code") == EXIT_DELIVERY)
    assert "cannot reach the Kafka brokers" in error["msg"]
    assert error["outcome"] == "delivery_failed" and error["summary"]["files_published"] == 0
    assert checkpoint_names(day, D1) == []


def test_two_workers_a_failed_delivery_report_fails_the_run(tmp_path, monkeypatch, capsys) -> None:
    write_day(str(tmp_path), D1, make_events(D1, 30), records_per_file=10)
    # each worker has its own (forked, fake) producer: files 0 and 1 are messages 1-10 of each;
    # file 2, on whichever worker is free first, holds that producer's 15th message
    code, _ = _fake_run(tmp_path, monkeypatch, workers=2, fail_at=15)
    assert code == EXIT_DELIVERY
    out = capsys.readouterr().out
    assert (
        "part-00002.jsonl: 1 message(s) not acknowledged by Kafka (Local: Message timed out)" in out
    )
    names = [store.basename(p) for p in store.list_files(str(tmp_path / "_published" / D1))]
    assert sorted(names) == ["part-00000.jsonl.json", "part-00001.jsonl.json"]
    emf = next(json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"'))
    assert emf["MessagesFailed"] == 1 and emf["outcome"] == "delivery_failed"
    assert emf["exit_code"] == EXIT_DELIVERY


def test_a_worker_that_dies_fails_the_run_naming_its_file(tmp_path, monkeypatch, capsys) -> None:
    write_day(str(tmp_path), D1, make_events(D1, 20), records_per_file=10)
    code, _ = _fake_run(tmp_path, monkeypatch, workers=2, die_at=5)  # in each worker
    assert code == 1
    error = next(o for o in logged(capsys) if o.get("exit_code") == 1)
    assert error["msg"] == "unexpected error"
    assert re.fullmatch(
        r"WorkerCrashed: worker [12] died \(exit code 3\) while publishing "
        r"part-0000[01]\.jsonl; the file is not recorded as published",
        error["error"],
    )
    # No checkpoint (the date's lease was taken and given back: its folder may remain).
    assert not list((tmp_path / "_published").rglob("*.json"))


def test_a_day_with_unreadable_after_keys_is_refused_unless_accepted(
    day: dict[str, str], tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Contract §6: a quarantined after line whose key cannot be read may be a record that
    still exists with no event for it: the day is refused (exit 14, the count named), nothing
    is produced, until ACCEPT_UNREADABLE_KEYS=true."""
    from diffcore.engines.polars_engine import PolarsEngine
    from diffcore.spec import RunSpec

    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "x.jsonl").write_text('{"id":1,"v":1}\n{"id":2,"v":1}\n')
    # id 2's after line lost its key's quotes: unreadable; id 1 changed; id 3 new.
    (tmp_path / "a" / "x.jsonl").write_text('{"id":1,"v":2}\n{id:2,"v":1}\n{"id":3,"v":1}\n')
    spec = RunSpec(
        before=str(tmp_path / "b"),
        after=str(tmp_path / "a"),
        key=("id",),
        out=day["DIFFS_LOCATION"],
        run_date=D1,
        bad_records="quarantine",
    )
    manifest = PolarsEngine().run(spec).manifest
    # The bad line's key cannot be read, so the engine cannot withhold id 2: the day holds a
    # `d` for it that may be false, and the publisher's refusal keeps it off the topic.
    assert manifest.after.unreadable_keys == 1
    assert (manifest.counts.c, manifest.counts.u, manifest.counts.d) == (1, 1, 1)
    assert run(day, "--dry-run") == EXIT_UNREADABLE_KEYS
    capsys.readouterr()
    assert run(day) == EXIT_UNREADABLE_KEYS
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    refusal = [o for o in logged if o.get("outcome") == "unreadable_keys"]
    assert refusal and "1 bad record(s) whose key could not be read" in refusal[0]["msg"]
    assert checkpoint_names(day, D1) == []
    assert consume_all(day["KAFKA_BOOTSTRAP_SERVERS"], day["KAFKA_TOPIC"], idle_timeout=1.0) == []
    assert run({**day, "ACCEPT_UNREADABLE_KEYS": "true"}) == EXIT_OK
    changes = manifest.counts.changes
    assert len(consume(day, changes)) == changes


def test_one_publisher_per_date_a_second_one_publishes_nothing(day: dict[str, str]) -> None:
    """The 02:00 floor and the chained run (or a redelivered event) at once: while one holds
    the date's lease, another exits 15 at once and produces nothing; then the day is published
    once, and the lease is given back."""
    from diffcore.runlock import RunLock

    write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 20), records_per_file=10)
    other = RunLock(layout.published_folder(day["DIFFS_LOCATION"], D1), "other-publisher")
    other.acquire()
    try:
        assert run(day) == EXIT_CONCURRENT
        assert (
            consume_all(day["KAFKA_BOOTSTRAP_SERVERS"], day["KAFKA_TOPIC"], idle_timeout=1.0) == []
        )
    finally:
        other.release()
    assert run(day) == EXIT_OK
    assert run(day) == EXIT_OK  # a rerun: every file checkpointed, nothing produced
    messages = consume(day, 20)
    ids = [dict(m.headers())["event_id"] for m in messages]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert checkpoint_names(day, D1) == ["part-00000.jsonl.json", "part-00001.jsonl.json"]


def test_two_publishers_started_together_publish_the_day_once(day: dict[str, str]) -> None:
    """Two real publisher processes started at the same moment on one date: every event is on
    the topic exactly once; each process exits 0 (it published, or found the day done) or 15
    (the other held the date)."""
    write_day(day["DIFFS_LOCATION"], D1, make_events(D1, 3000), records_per_file=500)
    env = {**os.environ, **day, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = "import sys; from kafka_publisher.main import main; sys.exit(main())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)
        for _ in range(2)
    ]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes in ([EXIT_OK, EXIT_OK], [EXIT_OK, EXIT_CONCURRENT]), codes
    messages = consume(day, 3000)
    ids = [dict(m.headers())["event_id"] for m in messages]
    assert len(ids) == 3000 and len(set(ids)) == 3000
