"""Publishing a run date: manifest -> verify every file -> day totals -> publish -> checkpoints.

Nothing of a file is produced before all of it was checked, and nothing of the day before every
file to publish was checked and the day's totals add up:

1. Files to publish: those without a checkpoint matching the manifest's SHA-256 and the topic
   (the others are skipped). Nothing to publish: done, Kafka not contacted.
2. Verify (`reader.verify_file`): each file to publish is read whole once: size, SHA-256 and
   event count against the manifest, every line against the contract (op, key, before/after/
   changed, run_date, `event_id` recomputed with `diffcore.events`). It writes the file's ids
   file (op, event_id and Kafka key per line) into a local temporary folder.
3. Day totals: the events per op of the verified files plus those of the skipped files (from
   their checkpoints; a checkpoint without them has its file verified in step 2 too, counted
   but not published) must equal the manifest's counts.
4. Publish, per file (`_publish_file`): a fresh copy of the object (`reader.copy_verified`)
   whose size and SHA-256 must match the manifest again, so it is exactly what step 2 checked
   (an object replaced in between is refused, unpublished); then one message per event from that
   copy and the ids file, without parsing again (key = canonical JSON of `key`, value = the line
   byte for byte, headers `op`, `run_date`, `event_id`, `source_file`), plus a tombstone (same
   key and headers, null value) after each `d` when tombstones are on; then flush and check the
   delivery reports: only when every message was acknowledged is the checkpoint written (with
   the file's counts per op).

A failure in steps 2-3, or a copy that differs in step 4, is `BadData` (exit 13) naming the file
(and line): nothing of that file was produced (in steps 2-3 nothing of the day). A failed
delivery stops the run (`DeliveryError`, exit 12). Neither leaves a checkpoint for the file: a
rerun publishes it again, whole (at-least-once; consumers deduplicate on `event_id`).

Delivery reports: the producer runs with `delivery.report.only.error=true` and a default
`on_delivery` callback, so every failed report reaches Python (counted, first ones logged) while
successful ones cost nothing; `flush()` returning 0 outstanding messages with no failed report
means every message was acknowledged (acks=all, idempotent producer).

With `PUBLISH_WORKERS` > 1, steps 2 and 4 run in worker processes with a producer each
(`parallel`), step 3 in the parent between them; the run fails as described above on the first
failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from diffcore import layout
from diffcore.errors import DiffError
from diffcore.events import OPS
from diffcore.manifest import DataFile, Manifest
from diffcore.runlock import RunLock, new_run_id
from kafka_publisher import checkpoints, parallel, reader
from kafka_publisher.errors import (
    BadData,
    ConcurrentRun,
    ConfigError,
    DeliveryError,
    UnreadableKeys,
)
from kafka_publisher.logs import Redactor, get_logger

POLL_EVERY = 1000  # messages between two poll(0) calls (serves error reports and logs)
# A killed publisher's S3 lease (no cleanup ran) blocks the date this long: longer than a day's
# publish takes (minutes), short enough for the next day's floor and a manual rerun.
LEASE_TTL = timedelta(hours=2)
_MAX_LOGGED_FAILURES = 5


@dataclass
class Summary:
    run_date: str
    dry_run: bool
    files: int = 0
    files_published: int = 0
    files_skipped: int = 0
    events: int = 0
    tombstones: int = 0
    per_op: dict[str, int] = field(default_factory=lambda: {op: 0 for op in OPS})
    value_bytes: int = 0
    raw_bytes: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    duration_s: float = 0.0

    @property
    def messages(self) -> int:
        return self.events + self.tombstones

    def finish(self) -> None:
        self.duration_s = time.monotonic() - self.started

    def as_fields(self) -> dict[str, Any]:
        rate = self.messages / self.duration_s if self.duration_s > 0 else 0.0
        return {
            "run_date": self.run_date,
            "dry_run": self.dry_run,
            "files": self.files,
            "files_published": self.files_published,
            "files_skipped": self.files_skipped,
            "events": self.events,
            "tombstones": self.tombstones,
            "messages": self.messages,
            "per_op": dict(self.per_op),
            "bytes": self.value_bytes,
            "bytes_read": self.raw_bytes,
            "failed": self.failed,
            "duration_s": round(self.duration_s, 3),
            "messages_per_s": round(rate, 1),
        }


class KafkaSink:
    """A confluent-kafka Producer with failures collected from delivery reports and error_cb."""

    def __init__(
        self,
        conf: dict[str, Any],
        topic: str,
        redactor: Redactor,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.topic = topic
        self.redactor = redactor
        self.log = get_logger("kafka")
        self.failed = 0
        self.fatal: str | None = None
        self.first_errors: list[str] = []
        self.message_timeout_s = int(conf.get("message.timeout.ms", 300_000)) / 1000
        conf = dict(conf)
        conf["logger"] = get_logger("librdkafka")
        conf["error_cb"] = self._on_error
        conf["on_delivery"] = self._on_delivery
        conf["delivery.report.only.error"] = True
        if producer_factory is None:
            from confluent_kafka import Producer

            producer_factory = Producer
        try:
            self.producer = producer_factory(conf)
        except Exception as exc:  # KafkaException, ValueError, TypeError from bad properties
            raise ConfigError(f"invalid Kafka configuration: {redactor.scrub(str(exc))}") from None

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        self.failed += 1
        if len(self.first_errors) < _MAX_LOGGED_FAILURES:
            text = self.redactor.scrub(str(err))
            self.first_errors.append(text)
            self.log.error("delivery failed", extra={"error": text, "topic": self.topic})

    def _on_error(self, err: Any) -> None:
        text = self.redactor.scrub(str(err))
        fatal = getattr(err, "fatal", lambda: False)()
        if fatal:
            self.fatal = text
            self.log.error("fatal Kafka error", extra={"error": text})
        else:
            self.log.warning("Kafka client error", extra={"error": text})

    @property
    def broken(self) -> bool:
        return self.failed > 0 or self.fatal is not None

    def check_topic(self) -> int:
        """Reach a broker and check the topic exists; returns its partition count."""
        from confluent_kafka import KafkaException

        timeout = max(1.0, min(30.0, self.message_timeout_s))
        try:
            meta = self.producer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            raise DeliveryError(
                f"cannot reach the Kafka brokers within {timeout:.0f}s: "
                f"{self.redactor.scrub(str(exc.args[0] if exc.args else exc))}"
            ) from None
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            why = topic.error if topic is not None and topic.error is not None else "no partitions"
            raise ConfigError(f"Kafka topic {self.topic!r} is not usable: {why}")
        return len(topic.partitions)

    def drain(self) -> int:
        """Flush until nothing is outstanding, a fatal error, or the message timeout passed."""
        deadline = time.monotonic() + self.message_timeout_s + 30
        remaining = len(self.producer)
        while remaining and time.monotonic() < deadline and self.fatal is None:
            remaining = self.producer.flush(1.0)
        return remaining

    def close(self) -> None:
        self.drain()


@dataclass
class FileResult:
    """What publishing one file did (also what a worker process reports for it)."""

    stats: reader.FileStats
    tombstones: int
    duration_s: float

    @property
    def messages(self) -> int:
        return self.stats.events + self.tombstones


def _ids_path(spool_dir: str, name: str) -> str:
    return os.path.join(spool_dir, f"{name}.ids")


def _publish_file(
    sink: KafkaSink,
    run_date: str,
    data_file: DataFile,
    verified: reader.FileStats,
    diffs_location: str,
    spool_dir: str,
    tombstones: bool,
    summary: Summary,
) -> FileResult:
    """Produce every event of a verified file from a fresh copy that must match the manifest,
    flush, check the delivery reports, write the checkpoint. On failure, `summary.failed` gets
    the failed messages and the error is raised (the file gets no checkpoint)."""
    started = time.monotonic()
    location = reader.data_file_location(diffs_location, run_date, data_file.name)
    ids_path = _ids_path(spool_dir, data_file.name)
    producer = sink.producer
    produce, poll = producer.produce, producer.poll
    topic = sink.topic
    # Header tuples built once per file: only the event_id one is new per message. An ids
    # record is op (1 byte), event_id (64 bytes), Kafka key.
    op_headers = {ord(op): ("op", op.encode()) for op in OPS}
    delete = ord("d")
    run_date_header = ("run_date", run_date.encode())
    source_header = ("source_file", data_file.name.encode())
    key_at = reader.ID_KEY
    produced = 0
    n_tombstones = 0
    next_poll = POLL_EVERY
    from confluent_kafka import KafkaException

    line_no = 0
    # BadData here (the object changed since it was verified) comes before any message.
    with (
        reader.copy_verified(diffs_location, run_date, data_file, spool_dir) as content,
        open(ids_path, "rb") as ids,
    ):
        try:
            for line_no, (value, record) in enumerate(  # noqa: B007 (line_no: errors)
                reader.paired_lines(content, ids, location), 1
            ):
                if not record:  # a blank line
                    continue
                key = record[key_at:]
                headers = [
                    op_headers[record[0]],
                    run_date_header,
                    ("event_id", record[1:key_at]),
                    source_header,
                ]
                try:
                    produce(topic, value, key, headers=headers)
                except BufferError:  # local queue full: serve delivery reports until there is room
                    _produce_blocking(producer, topic, value, key, headers)
                produced += 1
                if tombstones and record[0] == delete:
                    try:
                        produce(topic, None, key, headers=headers)
                    except BufferError:
                        _produce_blocking(producer, topic, None, key, headers)
                    n_tombstones += 1
                if produced == next_poll:  # cheaper than a modulo per message
                    next_poll += POLL_EVERY
                    poll(0)
                    if sink.broken:
                        break
        except KafkaException as exc:
            sink.drain()
            raise DeliveryError(
                f"{data_file.name}, line {line_no}: the producer refused the message: "
                f"{sink.redactor.scrub(str(exc.args[0] if exc.args else exc))}",
                file=data_file.name,
            ) from None
    remaining = sink.drain()
    if sink.broken or remaining:
        summary.failed += sink.failed + remaining
        reason = sink.fatal or (sink.first_errors[0] if sink.first_errors else "timed out")
        raise DeliveryError(
            f"{data_file.name}: {sink.failed + remaining} message(s) not acknowledged by Kafka "
            f"({reason}); the file is not recorded as published",
            file=data_file.name,
        )
    if produced != verified.events or line_no != verified.lines:  # the copy is the verified one
        raise RuntimeError(
            f"{data_file.name}: {produced} events on {line_no} lines produced, but "
            f"{verified.events} on {verified.lines} were verified"
        )
    checkpoints.save(
        diffs_location, run_date, data_file, produced + n_tombstones, topic, verified.per_op
    )
    os.remove(ids_path)
    return FileResult(verified, n_tombstones, time.monotonic() - started)


def _record(summary: Summary, result: FileResult, log: logging.Logger, **extra: Any) -> None:
    """Count a published file in the summary and log it."""
    summary.files_published += 1
    stats, took = result.stats, result.duration_s
    _add(summary, stats, result.tombstones)
    log.info(
        "file published",
        extra={
            "file": stats.name,
            "events": stats.events,
            "tombstones": result.tombstones,
            "per_op": dict(stats.per_op),
            "bytes": stats.value_bytes,
            "bytes_read": stats.raw_bytes,
            "duration_s": round(took, 3),
            "messages_per_s": round(result.messages / took, 1) if took > 0 else None,
            **extra,
        },
    )


class _WorkerPublisher:
    """`parallel.FilePublisher`: what a worker process runs (and what `publish_day` runs in its
    own process with one worker). Built in the parent, but the producer is created only in
    `connect()`, in the worker, after the fork: a librdkafka producer (its threads, its
    connections) must never be inherited across a fork."""

    def __init__(
        self,
        run_date: str,
        diffs_location: str,
        tombstones: bool,
        sink_factory: Callable[[], KafkaSink],
        spool_dir: str,
        to_publish: frozenset[str],
        summary: Summary | None = None,
    ) -> None:
        self.run_date = run_date
        self.diffs_location = diffs_location
        self.tombstones = tombstones
        self.sink_factory = sink_factory
        self.spool_dir = spool_dir
        self.to_publish = to_publish  # files verified to be published (the others: counted)
        self.sink: KafkaSink | None = None
        # Collects `failed` only (the run's own summary when publishing in this process).
        self.summary = summary if summary is not None else Summary(run_date=run_date, dry_run=False)

    def connect(self) -> int:
        self.sink = self.sink_factory()
        return self.sink.check_topic()

    def verify(self, data_file: DataFile) -> _Verified:
        started = time.monotonic()
        ids = (
            _ids_path(self.spool_dir, data_file.name) if data_file.name in self.to_publish else None
        )
        stats = reader.verify_file(self.diffs_location, self.run_date, data_file, ids)
        return _Verified(stats, time.monotonic() - started)

    def publish(self, data_file: DataFile, verified: reader.FileStats) -> FileResult:
        assert self.sink is not None, "connect() first"
        return _publish_file(
            self.sink,
            self.run_date,
            data_file,
            verified,
            self.diffs_location,
            self.spool_dir,
            self.tombstones,
            self.summary,
        )

    def failed_messages(self) -> int:
        return self.summary.failed

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


@dataclass
class _Verified:
    """What verifying one file found (also what a worker process reports for it)."""

    stats: reader.FileStats
    duration_s: float


def _produce_blocking(producer: Any, topic: str, value: Any, key: bytes, headers: Any) -> None:
    while True:
        producer.poll(0.05)
        try:
            producer.produce(topic, value, key, headers=headers)
            return
        except BufferError:
            continue


def _add(summary: Summary, stats: reader.FileStats, tombstones: int) -> None:
    summary.events += stats.events
    summary.tombstones += tombstones
    summary.value_bytes += stats.value_bytes
    summary.raw_bytes += stats.raw_bytes
    for op, n in stats.per_op.items():
        summary.per_op[op] += n


def _check_day_counts(manifest: Manifest, per_op: dict[str, int], where: str) -> None:
    expected = {"c": manifest.counts.c, "u": manifest.counts.u, "d": manifest.counts.d}
    if per_op != expected:
        raise BadData(
            f"events per op in {where} {per_op} differ from the manifest's counts {expected}"
        )


def _log_verified(log: logging.Logger, verified: _Verified, **extra: Any) -> None:
    stats = verified.stats
    log.info(
        "file verified",
        extra={
            "file": stats.name,
            "events": stats.events,
            "per_op": dict(stats.per_op),
            "bytes_read": stats.raw_bytes,
            "duration_s": round(verified.duration_s, 3),
            **extra,
        },
    )


def check_unreadable_keys(manifest: Manifest, accept: bool) -> None:
    """Contract §6: a quarantined after-side line whose key could not be read may be a record
    that still exists with no event for it (or a false `d` downstream of a rebuild): refuse
    the day (`UnreadableKeys`) unless the operator accepts it."""
    n = manifest.after.unreadable_keys
    if not n:
        return
    if not accept:
        raise UnreadableKeys(
            f"diffs for {manifest.run_date}: the after snapshot had {n} bad record(s) whose key "
            f"could not be read (see {manifest.bad_records_file or 'the bad-records file'}); "
            "refusing to publish the day (set ACCEPT_UNREADABLE_KEYS=true to publish it anyway)",
            unreadable_keys=n,
        )
    get_logger("publisher").warning(
        "publishing a day with unreadable keys (ACCEPT_UNREADABLE_KEYS=true)",
        extra={"unreadable_keys": n, "run_date": manifest.run_date},
    )


def validate_day(
    diffs_location: str,
    run_date: str,
    topic: str | None,
    summary: Summary | None = None,
    accept_unreadable_keys: bool = False,
) -> Summary:
    """`--dry-run`: read and check every file as publishing does (step 2 and the day's totals),
    publish nothing."""
    log = get_logger("publisher")
    summary = summary if summary is not None else Summary(run_date=run_date, dry_run=True)
    manifest = reader.read_manifest(diffs_location, run_date)
    check_unreadable_keys(manifest, accept_unreadable_keys)
    summary.files = len(manifest.files)
    for data_file in manifest.files:
        checkpoint = checkpoints.load(diffs_location, run_date, data_file.name)
        would_skip = (
            checkpoint is not None and topic is not None and checkpoint.matches(data_file, topic)
        )
        stats = reader.verify_file(diffs_location, run_date, data_file)
        _add(summary, stats, 0)
        if would_skip:
            summary.files_skipped += 1
        log.info(
            "file valid",
            extra={
                "file": data_file.name,
                "events": stats.events,
                "per_op": dict(stats.per_op),
                "bytes": stats.value_bytes,
                "bytes_read": stats.raw_bytes,
                "would_publish": not would_skip,
            },
        )
    _check_day_counts(manifest, summary.per_op, "the files")
    summary.finish()
    return summary


def publish_day(
    diffs_location: str,
    run_date: str,
    topic: str,
    sink_factory: Callable[[], KafkaSink],
    tombstones: bool,
    summary: Summary | None = None,
    workers: int = 1,
    accept_unreadable_keys: bool = False,
) -> Summary:
    """Publish every file of the run date that has no matching checkpoint (module docstring).

    Kafka is contacted only if there is something to publish (a rerun after success reads the
    manifest and the checkpoints, and stops). With `workers` > 1 (and more than one file to
    verify), files are verified and then published by that many worker processes
    (`parallel.publish_files`), each with its own producer; otherwise in this process, one file
    after the other. One publisher at a time holds the date (`publishing_lease`).
    """
    summary = summary if summary is not None else Summary(run_date=run_date, dry_run=False)
    manifest = reader.read_manifest(diffs_location, run_date)
    check_unreadable_keys(manifest, accept_unreadable_keys)
    with publishing_lease(diffs_location, run_date):
        return _publish_day(
            diffs_location, run_date, topic, sink_factory, tombstones, summary, workers, manifest
        )


@contextmanager
def publishing_lease(diffs_location: str, run_date: str) -> Iterator[None]:
    """One publisher per date at a time (`diffcore.runlock` on `<diffs>/_published/<D>/`):
    the 02:00 floor, the chained run and a redelivered event may start together; the second
    fails at once with `ConcurrentRun` (exit 15) and publishes nothing. A publisher killed
    without cleaning up leaves an S3 lease that expires after `LEASE_TTL`."""
    lock = RunLock(layout.published_folder(diffs_location, run_date), new_run_id(), LEASE_TTL)
    try:
        lock.acquire()
    except DiffError as exc:
        raise ConcurrentRun(exc.message, run_date=run_date) from None
    try:
        yield
    finally:
        lock.release()


def _publish_day(
    diffs_location: str,
    run_date: str,
    topic: str,
    sink_factory: Callable[[], KafkaSink],
    tombstones: bool,
    summary: Summary,
    workers: int,
    manifest: Manifest,
) -> Summary:
    log = get_logger("publisher")
    summary.files = len(manifest.files)
    todo: list[DataFile] = []
    to_verify: list[DataFile] = []  # todo, and skipped files whose checkpoint has no counts
    day_per_op = {op: 0 for op in OPS}
    for data_file in manifest.files:
        checkpoint = checkpoints.load(diffs_location, run_date, data_file.name)
        if checkpoint is not None and checkpoint.matches(data_file, topic):
            summary.files_skipped += 1
            log.info(
                "file skipped: already published",
                extra={"file": data_file.name, "published_at": checkpoint.published_at},
            )
            counts = checkpoint.counts(data_file)
            if counts is None:
                to_verify.append(data_file)  # counted for the day's totals, not published
            else:
                for op, n in counts.items():
                    day_per_op[op] += n
            continue
        if checkpoint is not None:
            log.info(
                "file to republish: its checkpoint does not match the manifest or topic",
                extra={
                    "file": data_file.name,
                    "checkpoint_sha256": checkpoint.sha256,
                    "checkpoint_topic": checkpoint.topic,
                },
            )
        todo.append(data_file)
        to_verify.append(data_file)
    if not todo:
        summary.finish()
        return summary

    verified: dict[str, reader.FileStats] = {}

    def on_verified(result: _Verified, worker: int | None = None) -> None:
        verified[result.stats.name] = result.stats
        for op, n in result.stats.per_op.items():
            day_per_op[op] += n
        _log_verified(log, result, **({} if worker is None else {"worker": worker}))

    def check_day() -> None:
        _check_day_counts(manifest, day_per_op, "the day's files")

    spool_dir = tempfile.mkdtemp(prefix="kafka-publisher-")
    names = frozenset(f.name for f in todo)
    try:
        if workers > 1 and len(to_verify) > 1:
            worker_publisher = _WorkerPublisher(
                run_date, diffs_location, tombstones, sink_factory, spool_dir, names
            )

            def record(result: FileResult, worker: int) -> None:
                _record(summary, result, log, worker=worker)

            def add_failed(n: int) -> None:
                summary.failed += n

            phases = [
                parallel.Phase("verify", to_verify, on_verified, after=check_day),
                parallel.Phase("publish", todo, record, args=lambda f: (verified[f.name],)),
            ]
            parallel.publish_files(
                phases, min(workers, len(to_verify)), worker_publisher, add_failed, log, topic
            )
        else:
            publisher = _WorkerPublisher(
                run_date, diffs_location, tombstones, sink_factory, spool_dir, names, summary
            )
            try:
                partitions = publisher.connect()
                log.info("connected", extra={"topic": topic, "partitions": partitions})
                for data_file in to_verify:
                    on_verified(publisher.verify(data_file))
                check_day()
                for data_file in todo:
                    _record(summary, publisher.publish(data_file, verified[data_file.name]), log)
            finally:
                publisher.close()
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    summary.finish()
    return summary
