"""The run writer (contract section 5; docs/decisions.md, "order of writes").

A run for date D writes into `<diffs>/<D>/`, for a local folder or an `s3://` prefix alike:

1. `begin()`: take D's lock (`diffcore.runlock`: a second run for D fails with
   `concurrent_run`), remove the old manifest of D (from now on D is "not ready") and the
   temporary files that killed runs left behind;
2. data files `part-NNNNN.jsonl[.gz]`, each bounded by records and by uncompressed bytes, each
   written under a temporary name and renamed into place when complete (S3: one PUT or a
   multipart upload, visible only when complete), with SHA-256, bytes and records computed
   while writing;
3. `finish()`: the quarantine file `_bad_records.ndjson` (or the removal of an old one), and the
   removal of data files of an earlier run that this run did not write;
4. `write_manifest()`: `_manifest.json`, last; then the lock is given back.

Before it deletes anything (3) and before the manifest (4) the writer checks that it still holds
the lock. A run that fails calls `abort()` (or leaves the `with` block with an exception): the
part being written is discarded, no manifest is written, and the lock is given back.

The Spark/Glue job reuses the same steps with `promote()`, which moves already-written staging
files to their final names and computes their manifest entries.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from diffcore import layout, store
from diffcore.errors import DiffError, ErrorClass
from diffcore.manifest import DataFile, Manifest
from diffcore.runlock import RunLock, new_run_id
from diffcore.spec import OutputOptions

GZIP_LEVEL = 6  # every gzip data file (with mtime=0: the same input gives the same bytes)
_WRITE_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class BadRecord:
    """A record set aside by quarantine mode: why, where, and its raw text."""

    reason: str  # an ErrorClass value: malformed_json, not_an_object, missing_key
    message: str
    side: str  # before | after
    file: str
    line: int | None
    raw: str

    def to_line(self) -> str:
        return json.dumps(
            {
                "reason": self.reason,
                "message": self.message,
                "side": self.side,
                "file": self.file,
                "line": self.line,
                "raw": self.raw,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


def refuse_oversized_event(line: bytes) -> None:
    """Raise `event_too_large` for an event line (newline excluded) over
    `layout.MAX_EVENT_BYTES`, naming its key and op: written, it could never be published."""
    if len(line) <= layout.MAX_EVENT_BYTES:
        return
    try:
        event = json.loads(line)
        what = f"the {event['op']!r} event of key {json.dumps(event['key'], ensure_ascii=False)}"
    except (ValueError, KeyError, TypeError):
        what = "an event"
    raise DiffError(
        ErrorClass.EVENT_TOO_LARGE,
        f"{what} is {len(line)} bytes, over the limit of {layout.MAX_EVENT_BYTES} bytes for one "
        "event (the publisher's line limit): this run writes no manifest",
    )


class _HashingSink:
    """Counts and hashes the bytes that go to the underlying (atomic) writer."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data: Any) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Part:
    """One data file being written: atomic writer, optional gzip, running counts."""

    def __init__(self, folder: str, index: int, gzip_output: bool) -> None:
        self.name = layout.data_file_name(index, gzip_output)
        self._ctx = store.open_write(store.join(folder, self.name))
        self._sink = _HashingSink(self._ctx.__enter__())
        self._gz = (
            gzip.GzipFile(
                fileobj=self._sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename=""
            )  # type: ignore[arg-type]
            if gzip_output
            else None
        )
        self.records = 0
        self.raw_bytes = 0  # uncompressed
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def add(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.records += 1
        self.raw_bytes += len(data)
        if self._pending_bytes >= _WRITE_CHUNK:
            self._flush()

    def add_block(self, data: bytes, records: int) -> None:
        """Several complete lines at once (`data` ends with a newline)."""
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.records += records
        self.raw_bytes += len(data)
        if self._pending_bytes >= _WRITE_CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            blob = b"".join(self._pending)
            (self._gz or self._sink).write(blob)
            self._pending = []
            self._pending_bytes = 0

    def close(self) -> DataFile:
        self._flush()
        if self._gz is not None:
            self._gz.close()
        self._ctx.__exit__(None, None, None)
        return DataFile(self.name, self.records, self._sink.bytes, self._sink.sha.hexdigest())

    def abort(self) -> None:
        try:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass


def describe_file(location: str) -> DataFile:
    """Manifest entry of an existing data file: records (lines), bytes and SHA-256 as stored."""
    sha = hashlib.sha256()
    size = 0
    tail = b""
    lines = 0
    with store.open_read(location) as f:
        while chunk := f.read(8 * 1024 * 1024):
            sha.update(chunk)
            size += len(chunk)
    name = store.basename(location)
    if name.endswith(".gz"):
        with gzip.GzipFile(fileobj=store.open_read(location), mode="rb") as g:
            while chunk := g.read(8 * 1024 * 1024):
                lines += chunk.count(b"\n")
                tail = chunk[-1:]
    else:
        with store.open_read(location) as f:
            while chunk := f.read(8 * 1024 * 1024):
                lines += chunk.count(b"\n")
                tail = chunk[-1:]
    if tail and tail != b"\n":
        lines += 1
    return DataFile(name, lines, size, sha.hexdigest())


class RunWriter:
    """Writes one run's folder in the contract's order. Use as a context manager or call
    `abort()` on failure.

        with RunWriter(spec.run_folder, spec.output) as w:
            w.begin()
            for line in event_lines: w.write(line)
            files, bad_file = w.finish()
            w.write_manifest(manifest)   # built with `files` and `bad_file`
    """

    def __init__(
        self, folder: str, options: OutputOptions | None = None, run_id: str | None = None
    ) -> None:
        self.folder = folder.rstrip("/")
        self.options = options or OutputOptions()
        self.run_id = run_id or new_run_id()
        self.lock = RunLock(self.folder, self.run_id)
        self.files: list[DataFile] = []
        self.bad_records: list[BadRecord] = []
        self._part: _Part | None = None
        self._finished = False

    # -- context manager: an exception aborts the run
    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.lock.release()

    @property
    def manifest_location(self) -> str:
        return store.join(self.folder, layout.MANIFEST_NAME)

    def begin(self) -> None:
        """Take the date, mark it not ready (remove the manifest of an earlier run first) and
        remove the temporary files of killed runs (no live run can own them: we hold the lock).

        Raises `DiffError(concurrent_run)` when another run holds the date."""
        self.lock.acquire()
        try:
            store.delete(self.manifest_location)
            for location in store.list_files(self.folder):
                rel = location[len(self.folder) :].lstrip("/")
                if "/" not in rel and layout.is_temp_name(rel):
                    store.delete(location)
        except BaseException:
            self.lock.release()
            raise

    # -- data files
    def write(self, line: str) -> None:
        """Append one event line (no newline) to the current part, starting a new one at a bound."""
        data = (line + "\n").encode("utf-8")
        if len(data) > layout.MAX_EVENT_BYTES:
            refuse_oversized_event(data[:-1])
        part = self._part
        if part is not None and (
            part.records >= self.options.max_records_per_file
            or part.raw_bytes + len(data) > self.options.max_bytes_per_file
        ):
            self.files.append(part.close())
            part = None
        if part is None:
            part = self._part = _Part(self.folder, len(self.files), self.options.gzip)
        part.add(data)

    def write_many(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def write_lines(self, lines: Sequence[str], sizes: Sequence[int] | None = None) -> None:
        """Append many event lines (no newlines) in blocks, with the same part bounds as
        `write`. `sizes[i]` is the UTF-8 length of `lines[i]` plus one, when known."""
        if sizes is None:
            sizes = [len(line.encode("utf-8")) + 1 for line in lines]
        self.write_sized(sizes, lambda i, j: ("\n".join(lines[i:j]) + "\n").encode("utf-8"))

    def write_sized(self, sizes: Sequence[int], block: Callable[[int, int], bytes]) -> None:
        """Append `len(sizes)` lines given by their sizes (UTF-8 bytes plus the newline) and a
        function `block(i, j)` returning lines i..j-1 as bytes, newlines included. The parts
        are cut exactly as `write` would cut them; each block is asked for once."""
        max_records = self.options.max_records_per_file
        max_bytes = self.options.max_bytes_per_file
        if sizes and max(sizes) > layout.MAX_EVENT_BYTES:  # sizes include the newline
            big = next(k for k, size in enumerate(sizes) if size > layout.MAX_EVENT_BYTES)
            refuse_oversized_event(block(big, big + 1)[:-1])
        i, n = 0, len(sizes)
        ends = list(itertools.accumulate(sizes, initial=0))  # ends[j] - ends[i]: bytes of i..j-1
        while i < n:
            part = self._part
            if part is None:
                part = self._part = _Part(self.folder, len(self.files), self.options.gzip)
            room_records = max_records - part.records
            room_bytes = max_bytes - part.raw_bytes
            # The most lines from i on that fit both bounds; an empty part takes one line anyway.
            last = min(n, i + max(0, room_records))
            j = max(i, bisect.bisect_right(ends, ends[i] + room_bytes, i, last + 1) - 1)
            if j == i and part.records == 0:
                j = i + 1
            if j == i:  # the part is full
                self._close_part()
                continue
            part.add_block(block(i, j), j - i)
            i = j

    def add_bad_record(self, bad: BadRecord) -> None:
        self.bad_records.append(bad)

    def promote(
        self,
        staged: Sequence[str],
        delete_staged: bool = True,
        described: Sequence[DataFile] | None = None,
    ) -> list[DataFile]:
        """Give already-written staging files (e.g. a Spark job's output, in order) their final
        names `part-NNNNN...` after the parts written so far, with their entries.

        Each staging file must already respect the bounds and compression of the options; an
        empty staging file is dropped. Local files are renamed; S3 objects are copied server-side
        (atomic: the final key appears complete) and the staging object deleted. `described`
        gives each staged file's records, bytes and SHA-256 as its writer computed them (the
        name is not used), so that the files are not read again here; without it they are read
        (`describe_file`).
        """
        self._close_part()
        promoted = []
        for i, src in enumerate(staged):
            entry = describe_file(src) if described is None else described[i]
            if entry.records == 0:
                if delete_staged:
                    store.delete(src)
                continue
            name = layout.data_file_name(len(self.files), self.options.gzip)
            dst = store.join(self.folder, name)
            if delete_staged:
                store.move(src, dst)
            else:
                store.copy(src, dst)
            data_file = DataFile(name, entry.records, entry.bytes, entry.sha256)
            self.files.append(data_file)
            promoted.append(data_file)
        return promoted

    def _close_part(self) -> None:
        if self._part is not None:
            self.files.append(self._part.close())
            self._part = None

    def finish(
        self, staged_bad_records: str | None = None
    ) -> tuple[tuple[DataFile, ...], str | None]:
        """Close the last part, write (or remove) the quarantine file, remove stale data files.

        `staged_bad_records`: an already-written quarantine file (e.g. a Spark job's, lines of
        `BadRecord.to_line()`), moved into place instead of writing `bad_records` (which must
        then be empty).

        Returns the data files of this run and the name of the bad-records file (or None).
        """
        if staged_bad_records is not None and self.bad_records:
            raise ValueError("a staged bad-records file and bad records added: give one")
        self._close_part()
        self.lock.verify()  # nothing is deleted or replaced by a run that lost the date
        bad_location = store.join(self.folder, layout.BAD_RECORDS_NAME)
        bad_name: str | None = None
        if staged_bad_records is not None:
            store.move(staged_bad_records, bad_location)
            bad_name = layout.BAD_RECORDS_NAME
        elif self.bad_records:
            blob = "".join(b.to_line() + "\n" for b in self.bad_records).encode("utf-8")
            store.write_bytes(bad_location, blob)
            bad_name = layout.BAD_RECORDS_NAME
        else:
            store.delete(bad_location)
        written = {f.name for f in self.files}
        for location in store.list_files(self.folder):
            rel = location[len(self.folder) :].lstrip("/")
            if "/" not in rel and layout.is_data_file(rel) and rel not in written:
                store.delete(location)
        self._finished = True
        return tuple(self.files), bad_name

    def write_manifest(self, manifest: Manifest) -> str:
        """Write `_manifest.json`, the last object of a complete run. Returns its location."""
        if not self._finished:
            raise RuntimeError("finish() the data files before writing the manifest")
        self.lock.verify()
        store.write_text(self.manifest_location, manifest.to_json())
        self.lock.release()
        return self.manifest_location

    def abort(self) -> None:
        """Discard the part being written and give the date back. Parts already complete stay
        (a rerun replaces them); without a manifest the date is not ready, whatever is there."""
        try:
            if self._part is not None:
                self._part.abort()
                self._part = None
        finally:
            self.lock.release()


def read_manifest(folder: str) -> Manifest | None:
    """The manifest of a run folder, or None when the run is not complete."""
    location = store.join(folder, layout.MANIFEST_NAME)
    try:
        return Manifest.from_json(store.read_bytes(location))
    except FileNotFoundError:
        return None
