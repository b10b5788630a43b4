"""File-level parallelism (`PUBLISH_WORKERS` > 1): worker processes, each with its own producer.

Why processes: the publisher's own per-message work (parse, checks, key, headers, `produce()`)
runs under the GIL, so one Python process tops out well below what librdkafka and the broker
can take; a second process uses the machine's other core(s).

How:
- The parent forks the workers (`fork`, before any producer exists in the parent). A worker
  creates its OWN producer after the fork (`FilePublisher.connect`, which also checks the
  topic) when it gets its first task.
- The parent runs phases with the same workers (`Phase`): first "verify" (every file read and
  checked whole, nothing produced), then, once every file passed and the parent's check between
  the phases (the day's per-op totals) passed, "publish". In each phase it hands the files out
  one at a time, in manifest order, each to the next idle worker. A worker publishes a file
  whole, exactly as the single-process path does (from a fresh copy that must match the
  manifest, flush + delivery check, then the file's checkpoint), and reports its result.
- Order: within a file, messages go out in file order from one producer; a key has one event per
  run date (a tombstone follows its `d` in the same file, same producer), so no key's order
  depends on which worker publishes which file.
- On the first failure (bad data, delivery, configuration, a crash) the parent hands out no
  more files and starts no further phase, lets the other workers finish their current file
  (each still gets its checkpoint only if all its messages were acknowledged), then raises the
  first failure as the single-process path would (same error class, exit code and message). A
  failure in the verify phase therefore means nothing of the day was produced.
- Logs: a worker's log records (its own and librdkafka's) are sent to the parent, which writes
  them through its own handler: one whole JSON line each, redacted like every other line.
- A killed parent (SIGKILL, no cleanup): a worker's next write to its pipe fails (it closed its
  inherited copies of the parent's ends), so it drops its logs and exits after its current
  step, without closing its producer (an unfinished file has no checkpoint anyway).
- Memory: each worker streams its file as the single-process path does (a verified copy holds
  at most `reader.SPOOL_MEMORY_BYTES` in memory) and has its own capped librdkafka queue, so
  the bound is per worker (times `PUBLISH_WORKERS`).
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

    def verify(self, data_file: DataFile) -> Any:
        """Read and check one whole file, produce nothing; a picklable result."""
        ...

    def publish(self, data_file: DataFile, *args: Any) -> Any:
        """Publish one whole file (checkpoint included); a picklable result."""
        ...

    def failed_messages(self) -> int:
        """Messages whose delivery failed so far (reported with a failure)."""
        ...

    def close(self) -> None: ...


@dataclass
class Phase:
    """One pass over files: each file is handed to an idle worker, which calls
    `publisher.<action>(data_file, *args(data_file))`; `on_result(result, worker_number)` in the
    parent for each file done (in completion order); `after()` in the parent once every file of
    the phase is done, before the next phase starts (it may raise a `PublisherError`)."""

    action: str  # "verify" or "publish"
    files: Sequence[DataFile]
    on_result: Callable[[Any, int], None]
    args: Callable[[DataFile], tuple[Any, ...]] = lambda data_file: ()
    after: Callable[[], None] = lambda: None


class WorkerCrashed(Exception):
    """A worker failed in an unexpected way (not a `PublisherError`), or died."""


@dataclass
class _Worker:
    number: int
    process: Any  # multiprocessing.Process (fork context)
    conn: Connection
    task: tuple[str, str] | None = None  # (action, file name) it is working on, None when idle


def publish_files(
    phases: Sequence[Phase],
    workers: int,
    publisher: FilePublisher,
    add_failed: Callable[[int], None],
    log: logging.Logger,
    topic: str,
) -> None:
    """Run the phases one after the other with `workers` processes (the same processes for
    every phase); `add_failed(n)` for the failed messages of a failed file. Raises the first
    failure after every worker has stopped; a phase after a failure is not started."""
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
                args=(child_end, publisher, [parent_end, *(w.conn for w in pool)]),
                name=f"kafka-publisher-worker-{number}",
                daemon=True,  # multiprocessing terminates it if the parent exits first
            )
            process.start()
            child_end.close()
            pool.append(_Worker(number, process, parent_end))
        _schedule(phases, pool, add_failed, log, topic)
    finally:
        _stop(pool)


def _schedule(
    phases: Sequence[Phase],
    pool: list[_Worker],
    add_failed: Callable[[int], None],
    log: logging.Logger,
    topic: str,
) -> None:
    """Hand out each phase's files and collect the workers' messages; then stop the workers and
    read their pipes until every worker has exited.

    A worker's pipe is read until it closes (the worker exited), not only until its last file
    is settled: it still logs while it stops (flush, librdkafka), and a full pipe would block it.
    """
    failure: BaseException | None = None
    connected = False
    active = {worker.conn: worker for worker in pool}

    def handle(worker: _Worker, message: tuple[Any, ...] | None, phase: Phase | None) -> None:
        """One message of a worker (None: its pipe closed, the worker exited)."""
        nonlocal failure, connected
        if message is None:
            del active[worker.conn]
            worker.process.join(_JOIN_TIMEOUT_S)
            if worker.task is not None and failure is None:
                action, name = worker.task
                doing = "publishing" if action == "publish" else "verifying"
                failure = WorkerCrashed(
                    f"worker {worker.number} died (exit code {worker.process.exitcode}) "
                    f"while {doing} {name}; the file is not recorded as published"
                )
            worker.task = None
            return
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
        elif kind == "done":
            worker.task = None
            if phase is not None:
                phase.on_result(message[1], worker.number)
        elif kind == "failed":
            _, error, failed = message
            add_failed(failed)
            if failure is None:
                failure = error  # pickled whole: class, message, fields (exit code)
            worker.task = None  # it stops by itself
        elif kind == "crashed":
            _, text, trace, failed = message
            add_failed(failed)
            if failure is None:
                log.error("worker failed", extra={"worker": worker.number, "traceback": trace})
                failure = WorkerCrashed(f"worker {worker.number}: {text}")
            worker.task = None

    def hand_out(worker: _Worker, phase: Phase, pending: list[DataFile]) -> None:
        """The next file of the phase to an idle worker (none after a failure)."""
        if failure is None and pending and worker.task is None:
            data_file = pending.pop()
            worker.task = (phase.action, data_file.name)
            try:
                worker.conn.send((phase.action, data_file, *phase.args(data_file)))
            except OSError:  # it died: its pipe closes, which `handle` reports
                pass

    for phase in phases:
        pending = list(phase.files)
        pending.reverse()  # popped from the end: handed out in order
        for worker in list(active.values()):
            hand_out(worker, phase, pending)
        while any(w.task is not None for w in active.values()):
            for ready in wait(list(active)):
                worker = active[ready]  # type: ignore[index]
                handle(worker, _receive(worker), phase)
                if worker.conn in active:
                    hand_out(worker, phase, pending)
        if failure is None and pending:
            failure = WorkerCrashed(f"no worker left to {phase.action} {pending[-1].name}")
        if failure is not None:
            break
        try:
            phase.after()
        except Exception as exc:  # noqa: BLE001 - raised after the workers have stopped
            failure = exc
            break
    for worker in active.values():
        _send_stop(worker)
    while active:
        for ready in wait(list(active)):
            worker = active[ready]  # type: ignore[index]
            handle(worker, _receive(worker), None)
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
    publisher: FilePublisher,
    inherited: Sequence[Connection] = (),
) -> None:
    """A worker process: run the tasks the parent hands out until told to stop."""
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
                task = conn.recv()
            except EOFError:  # the parent is gone
                parent_gone = True
                return
            if task is None:
                return
            action, data_file, *args = task
            try:
                if not connected:
                    # The producer first, whatever the task: a broker or topic problem shows
                    # before any file is read.
                    connected = True
                    send(("connected", publisher.connect()))
                if action == "verify":
                    result = publisher.verify(data_file)
                else:
                    result = publisher.publish(data_file, *args)
                send(("done", result))
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
