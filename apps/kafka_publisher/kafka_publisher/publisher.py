"""Publishing a run date: manifest -> files -> one Kafka message per change event -> checkpoints.

Per file, in manifest order: skip it if its checkpoint matches (same SHA-256, same topic);
otherwise stream its events and produce each (key = canonical JSON of `key`, value = the line
byte for byte, headers `op`, `run_date`, `event_id`, `source_file`), plus a tombstone (same key
and headers, null value) after each `d` when tombstones are on; then flush and check the delivery
reports: only when every message was acknowledged is the checkpoint written. Any failed delivery
stops the run (`DeliveryError`, exit 12); a bad line or a file that does not match the manifest
stops it too (`BadData`, exit 13). Neither leaves a checkpoint for the file: a rerun publishes it
again, whole (at-least-once; consumers deduplicate on `event_id`).

Delivery reports: the producer runs with `delivery.report.only.error=true` and a default
`on_delivery` callback, so every failed report reaches Python (counted, first ones logged) while
successful ones cost nothing; `flush()` returning 0 outstanding messages with no failed report
means every message was acknowledged (acks=all, idempotent producer).

With `PUBLISH_WORKERS` > 1, files are published the same way, file by file, by worker processes
with a producer each (`parallel`); the run fails as described above on the first failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from diffcore.events import OPS
from diffcore.manifest import DataFile, Manifest
from kafka_publisher import checkpoints, parallel, reader
from kafka_publisher.errors import BadData, ConfigError, DeliveryError
from kafka_publisher.logs import Redactor, get_logger

POLL_EVERY = 1000  # messages between two poll(0) calls (serves error reports and logs)
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


def _publish_file(
    sink: KafkaSink,
    run_date: str,
    data_file: DataFile,
    diffs_location: str,
    tombstones: bool,
    summary: Summary,
) -> FileResult:
    """Produce every event of the file, flush, check the delivery reports, write the
    checkpoint. On failure, `summary.failed` gets the failed messages and the error is raised
    (the file gets no checkpoint)."""
    started = time.monotonic()
    stats, events = reader.read_events(diffs_location, run_date, data_file)
    producer = sink.producer
    produce, poll = producer.produce, producer.poll
    topic = sink.topic
    # Header tuples built once per file: only the event_id one is new per message.
    op_headers = {op: ("op", op.encode()) for op in OPS}
    run_date_header = ("run_date", run_date.encode())
    source_header = ("source_file", data_file.name.encode())
    produced = 0
    n_tombstones = 0
    next_poll = POLL_EVERY
    from confluent_kafka import KafkaException

    line_no = 0
    try:
        for value, line_no, op, key, event_id in events:  # noqa: B007 (line_no: errors)
            headers = [op_headers[op], run_date_header, ("event_id", event_id), source_header]
            try:
                produce(topic, value, key, headers=headers)
            except BufferError:  # local queue full: serve delivery reports until there is room
                _produce_blocking(producer, topic, value, key, headers)
            produced += 1
            if tombstones and op == "d":
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
    except BadData:
        sink.drain()  # settle what was produced; the file gets no checkpoint
        summary.failed += sink.failed
        raise
    remaining = sink.drain()
    if sink.broken or remaining:
        summary.failed += sink.failed + remaining
        reason = sink.fatal or (sink.first_errors[0] if sink.first_errors else "timed out")
        raise DeliveryError(
            f"{data_file.name}: {sink.failed + remaining} message(s) not acknowledged by Kafka "
            f"({reason}); the file is not recorded as published",
            file=data_file.name,
        )
    checkpoints.save(diffs_location, run_date, data_file, produced + n_tombstones, topic)
    return FileResult(stats, n_tombstones, time.monotonic() - started)


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
        summary: Summary | None = None,
    ) -> None:
        self.run_date = run_date
        self.diffs_location = diffs_location
        self.tombstones = tombstones
        self.sink_factory = sink_factory
        self.sink: KafkaSink | None = None
        # Collects `failed` only (the run's own summary when publishing in this process).
        self.summary = summary if summary is not None else Summary(run_date=run_date, dry_run=False)

    def connect(self) -> int:
        self.sink = self.sink_factory()
        return self.sink.check_topic()

    def publish(self, data_file: DataFile) -> FileResult:
        assert self.sink is not None, "connect() first"
        return _publish_file(
            self.sink, self.run_date, data_file, self.diffs_location, self.tombstones, self.summary
        )

    def failed_messages(self) -> int:
        return self.summary.failed

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


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


def _check_day_counts(manifest: Manifest, summary: Summary) -> None:
    expected = {"c": manifest.counts.c, "u": manifest.counts.u, "d": manifest.counts.d}
    if summary.per_op != expected:
        raise BadData(
            f"events per op in the files {summary.per_op} differ from the manifest's counts "
            f"{expected}"
        )


def validate_day(
    diffs_location: str, run_date: str, topic: str | None, summary: Summary | None = None
) -> Summary:
    """`--dry-run`: read and fully validate every file (contract check per line), publish nothing."""
    log = get_logger("publisher")
    summary = summary if summary is not None else Summary(run_date=run_date, dry_run=True)
    manifest = reader.read_manifest(diffs_location, run_date)
    summary.files = len(manifest.files)
    for data_file in manifest.files:
        checkpoint = checkpoints.load(diffs_location, run_date, data_file.name)
        would_skip = (
            checkpoint is not None and topic is not None and checkpoint.matches(data_file, topic)
        )
        stats, events = reader.read_events(diffs_location, run_date, data_file, full=True)
        for _ in events:
            pass
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
    _check_day_counts(manifest, summary)
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
) -> Summary:
    """Publish every file of the run date that has no matching checkpoint.

    Kafka is contacted only if there is something to publish (a rerun after success reads the
    manifest and the checkpoints, and stops). With `workers` > 1 (and more than one file to
    publish), files are published by that many worker processes (`parallel.publish_files`),
    each with its own producer; otherwise in this process, one file after the other.
    """
    log = get_logger("publisher")
    summary = summary if summary is not None else Summary(run_date=run_date, dry_run=False)
    manifest = reader.read_manifest(diffs_location, run_date)
    summary.files = len(manifest.files)
    todo: list[DataFile] = []
    for data_file in manifest.files:
        checkpoint = checkpoints.load(diffs_location, run_date, data_file.name)
        if checkpoint is not None and checkpoint.matches(data_file, topic):
            summary.files_skipped += 1
            log.info(
                "file skipped: already published",
                extra={"file": data_file.name, "published_at": checkpoint.published_at},
            )
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
    if workers > 1 and len(todo) > 1:
        worker_publisher = _WorkerPublisher(run_date, diffs_location, tombstones, sink_factory)

        def record(result: FileResult, worker: int) -> None:
            _record(summary, result, log, worker=worker)

        def add_failed(n: int) -> None:
            summary.failed += n

        parallel.publish_files(
            todo, min(workers, len(todo)), worker_publisher, record, add_failed, log, topic
        )
    elif todo:
        publisher = _WorkerPublisher(run_date, diffs_location, tombstones, sink_factory, summary)
        try:
            partitions = publisher.connect()
            log.info("connected", extra={"topic": topic, "partitions": partitions})
            for data_file in todo:
                _record(summary, publisher.publish(data_file), log)
        finally:
            publisher.close()
    if summary.files_skipped == 0:
        try:
            _check_day_counts(manifest, summary)
        except BadData as exc:  # every file matched its own count: published, but say so
            log.warning(
                "manifest counts per op disagree with the files", extra={"detail": exc.message}
            )
    summary.finish()
    return summary
