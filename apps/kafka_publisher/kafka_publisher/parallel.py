"""File-level parallelism (`PUBLISH_WORKERS` > 1): worker processes, each with its own producer.

Why processes: the publisher's own per-message work (parse, checks, key, headers, `produce()`)
runs under the GIL, so one Python process tops out well below what librdkafka and the broker
can take; a second process uses the machine's other core(s).

How:
- The parent forks the workers (`fork`, before any producer exists in the parent) and hands them
  the files to publish one at a time, in manifest order, each to the next idle worker.
- A worker creates its OWN producer after the fork (`FilePublisher.connect`, which also checks
  the topic), then publishes each file it is given whole, exactly as the single-process path
  does (every line parsed and checked, flush + delivery check, then the file's checkpoint), and
  reports the file's result.
- Order: within a file, messages go out in file order from one producer; a key has one event per
  run date (a tombstone follows its `d` in the same file, same producer), so no key's order
  depends on which worker publishes which file.
- On the first failure (bad data, delivery, configuration, a crash) the parent hands out no
  more files, lets the other workers finish their current file (each still gets its checkpoint
  only if all its messages were acknowledged), then raises the first failure as the
  single-process path would (same error class, exit code and message).
- Logs: a worker's log records (its own and librdkafka's) are sent to the parent, which writes
  them through its own handler: one whole JSON line each, redacted like every other line.
- A killed parent (SIGKILL, no cleanup): a worker's next write to its pipe fails (it closed its
  inherited copies of the parent's ends), so it drops its logs and exits after its current
  step, without closing its producer (an unfinished file has no checkpoint anyway).
- Memory: each worker streams its file as the single-process path does and has its own capped
  librdkafka queue, so the bound is per worker (times `PUBLISH_WORKERS`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from diffcore.manifest import DataFile
from kafka_publisher import errors
from kafka_publisher.logs import forward_logging, replay_record

_JOIN_TIMEOUT_S = 30.0


class FilePublisher(Protocol):
    """What a worker process runs (built in the parent, used only in the worker after fork)."""

    def connect(self) -> int:
        """Create the producer, check the topic; the topic's partition count."""
        ...

    def publish(self, data_file: DataFile) -> Any:
        """Publish one whole file (checkpoint included); a picklable result for `record`."""
        ...

    def failed_messages(self) -> int:
        """Messages whose delivery failed so far (reported with a failure)."""
        ...

    def close(self) -> None: ...


class WorkerCrashed(Exception):
    """A worker failed in an unexpected way (not a `PublisherError`), or died."""


@dataclass
class _Worker:
    number: int
    process: Any  # multiprocessing.Process (fork context)
    conn: Connection
    file_index: int | None = None  # the file it is publishing, None when idle


def publish_files(
    files: Sequence[DataFile],
    workers: int,
    publisher: FilePublisher,
    record: Callable[[Any, int], None],
    add_failed: Callable[[int], None],
    log: logging.Logger,
    topic: str,
) -> None:
    """Publish `files` with `workers` processes; `record(result, worker_number)` for each file
    published (in completion order), `add_failed(n)` for the failed messages of a failed file.
    Raises the first failure after every worker has stopped."""
    ctx = multiprocessing.get_context("fork")
    # Anything buffered now would be written twice (by the parent and by a child).
    sys.stdout.flush()
    sys.stderr.flush()
    pool: list[_Worker] = []
    try:
        for number in range(1, workers + 1):
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=_worker_main,
                # The parent's pipe ends (this worker's and the earlier workers') are inherited by
                # the fork: the child closes them, so that its writes fail (EPIPE) rather than
                # block forever once the parent is gone.
                args=(child_end, files, publisher, [parent_end, *(w.conn for w in pool)]),
                name=f"kafka-publisher-worker-{number}",
                daemon=True,  # multiprocessing terminates it if the parent exits first
            )
            process.start()
            child_end.close()
            pool.append(_Worker(number, process, parent_end))
        _schedule(files, pool, record, add_failed, log, topic)
    finally:
        _stop(pool)


def _schedule(
    files: Sequence[DataFile],
    pool: list[_Worker],
    record: Callable[[Any, int], None],
    add_failed: Callable[[int], None],
    log: logging.Logger,
    topic: str,
) -> None:
    """Hand out the files and collect the workers' messages until every worker has exited.

    A worker's pipe is read until it closes (the worker exited), not only until its last file
    is settled: it still logs while it stops (flush, librdkafka), and a full pipe would block it.
    """
    next_file = 0
    failure: BaseException | None = None
    connected = False

    def hand_out(worker: _Worker) -> None:
        nonlocal next_file
        if failure is None and next_file < len(files):
            worker.file_index = next_file
            next_file += 1
            worker.conn.send(worker.file_index)
        else:
            worker.file_index = None
            _send_stop(worker)

    for worker in pool:
        hand_out(worker)
    active = {worker.conn: worker for worker in pool}
    while active:
        for ready in wait(list(active)):
            worker = active[ready]  # type: ignore[index]
            message = _receive(worker)
            if message is None:  # its pipe closed: the worker exited
                del active[worker.conn]
                worker.process.join(_JOIN_TIMEOUT_S)
                if worker.file_index is not None and failure is None:
                    failure = WorkerCrashed(
                        f"worker {worker.number} died (exit code {worker.process.exitcode}) "
                        f"while publishing {files[worker.file_index].name}; the file is not "
                        "recorded as published"
                    )
                worker.file_index = None
                continue
            kind = message[0]
            if kind == "log":
                replay_record(message[1], worker=worker.number)
            elif kind == "connected":
                if not connected:
                    connected = True
                    log.info(
                        "connected",
                        extra={"topic": topic, "partitions": message[1], "workers": len(pool)},
                    )
            elif kind == "published":
                record(message[1], worker.number)
                hand_out(worker)
            elif kind == "failed":
                _, error, failed = message
                add_failed(failed)
                if failure is None:
                    failure = error  # pickled whole: class, message, fields (exit code)
                worker.file_index = None  # it stops by itself
            elif kind == "crashed":
                _, text, trace, failed = message
                add_failed(failed)
                if failure is None:
                    log.error("worker failed", extra={"worker": worker.number, "traceback": trace})
                    failure = WorkerCrashed(f"worker {worker.number}: {text}")
                worker.file_index = None
    if failure is not None:
        raise failure


def _receive(worker: _Worker) -> tuple[Any, ...] | None:
    """The next message of a worker (blocking), None once its pipe is closed."""
    try:
        return worker.conn.recv()  # type: ignore[no-any-return]
    except (EOFError, OSError):
        return None


def _send_stop(worker: _Worker) -> None:
    try:
        worker.conn.send(None)
    except OSError:
        pass  # already gone


def _stop(pool: list[_Worker]) -> None:
    """After `_schedule` every worker has exited. If this process failed before (an error of
    its own, an interrupt), the workers still running are terminated: their current files get
    no checkpoint, so a rerun publishes them again."""
    for worker in pool:
        if worker.process.is_alive():
            worker.process.terminate()
    for worker in pool:
        worker.process.join(_JOIN_TIMEOUT_S)
        worker.conn.close()


def _worker_main(
    conn: Connection,
    files: Sequence[DataFile],
    publisher: FilePublisher,
    inherited: Sequence[Connection] = (),
) -> None:
    """A worker process: publish the files the parent hands out until told to stop."""
    for other in inherited:
        other.close()
    lock = threading.Lock()  # librdkafka callbacks may log from another thread
    parent_gone = False

    def send(message: tuple[Any, ...]) -> None:
        nonlocal parent_gone
        if not parent_gone:
            try:
                with lock:
                    conn.send(message)
                return
            except OSError:  # EPIPE: the parent died (killed); nobody reads any more
                parent_gone = True
        if message[0] != "log":  # a log line is dropped; a result ends the worker
            raise _ParentGone()

    forward_logging(lambda fields: send(("log", fields)))
    connected = False
    try:
        while True:
            try:
                index = conn.recv()
            except EOFError:  # the parent is gone
                parent_gone = True
                return
            if index is None:
                return
            try:
                if not connected:
                    connected = True
                    send(("connected", publisher.connect()))
                send(("published", publisher.publish(files[index])))
            except _ParentGone:
                return
            except errors.PublisherError as exc:
                send(("failed", exc, _failed(publisher)))
                return
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
                send(
                    (
                        "crashed",
                        f"{type(exc).__name__}: {exc}",
                        traceback.format_exc(),
                        _failed(publisher),
                    )
                )
                return
    except _ParentGone:
        pass
    finally:
        try:
            # Without a parent nobody would learn the outcome: exit now (the current file has
            # no checkpoint unless all of it was acknowledged, so a rerun publishes it again).
            if not parent_gone:
                publisher.close()
        finally:
            conn.close()
            # Nothing of the parent's (inherited buffers, atexit handlers) runs twice.
            os._exit(0)


class _ParentGone(Exception):
    """The parent process is gone: the worker stops without reporting."""


def _failed(publisher: FilePublisher) -> int:
    try:
        return publisher.failed_messages()
    except Exception:  # noqa: BLE001 - counting must not hide the failure itself
        return 0
