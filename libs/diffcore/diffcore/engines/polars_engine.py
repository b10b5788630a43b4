"""The Polars engine: the diff contract (sections 1-6) on one machine, fast.

How it is fast: it does not parse every record. Most records of a daily snapshot are unchanged,
and an unchanged record is usually byte-for-byte the same line on both days, so:

1. Each file is memory-mapped and cut into lines by `linescan.scan`, a small C scanner (one
   pass, parts of the file on every core, the GIL released): per line, whether it is certainly
   a valid JSON object (RFC 8259, UTF-8) and the raw text of its key; per file part, the
   distinct (leaf path, JSON type) pairs of its lines (one walk per distinct shape). Lines and
   keys are Arrow string views into the mapping, so they become Polars String columns without
   a copy or a Python object per line. The key is kept as its JSON token (`"1"` and `1` stay
   different keys) and only when its text is canonical JSON as written (integers, strings
   without escapes, booleans) and its member names occur once, unescaped. Every line the
   scanner does not vouch for, or whose key it cannot cut out (floats, escapes, a missing or
   null key, deep nesting, lone surrogates, not UTF-8...), goes through the exact path:
   `orjson`/`jsonvalue` parse, `jsonvalue.get_path`, `jsonvalue.canonical_json`, with the
   contract's error, and gives its leaf types from the parsed record.
2. Before and after are joined on the key (row numbers only, no strings move), and the two
   lines of each pair compared as bytes: equal bytes mean an unchanged record, no parse.
3. The byte-different pairs are compared by `linescan.changed` from their texts where that is
   certain (different unescaped strings, integers, numbers as doubles, booleans, arrays of
   other lengths, leaves on one side); the others are parsed (orjson, or `jsonvalue.loads` for
   integers beyond 64 bits) and `jsonvalue.changed_from_leaves` says `u` or "semantically
   equal" (member order, `1` vs `1.0`, nulls). Inserts and deletes are not parsed.
4. Every line of both sides is checked when read (step 1), so bad lines fail the run with
   their file and line, or are quarantined, before any event is written.
5. Schema drift (`leaf path -> set of JSON types` per snapshot) is exact from step 1's pairs
   (lines of the same shape, a 128-bit hash of member names, nesting and leaf types, have the
   same leaf paths and types) and the records of the exact path.
6. Events are written in key order, payloads spliced as read (`events.event_line`).

How the two cores are kept busy: files are scanned on every core; worker processes, forked
at the start while this process is small, compare the byte-different pairs (sorted by key, in
16 jobs); each job's updates are formatted with the inserts and deletes whose keys fall in its
range and handed to a writer thread (hashing and writing release the GIL; partitioned mode
keeps them in a spill file instead). In memory, the before side's duplicate check runs in a
thread while the after side is read.

Snapshots larger than `memory_budget` bytes (together) are hash-partitioned by key into spill
files first (one streaming pass per side: chunks scanned from the mapped file, or from a gzip
or S3 stream, and spilled in a thread while the next is scanned), then diffed partition by
partition, so the peak memory follows the partition size, not the snapshot size.
"""

from __future__ import annotations

import gzip
import mmap
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

import diffcore
import linescan
from diffcore import jsonvalue, records, sources, store
from diffcore import manifest as mf
from diffcore.engine import RunResult
from diffcore.errors import RECORD_ERRORS, DiffError, ErrorClass, excerpt
from diffcore.output import BadRecord, RunWriter
from diffcore.spec import RunSpec

ENGINE_NAME = "polars"
ENGINE_VERSION = f"{diffcore.__version__}+polars{pl.__version__}"

# Default in-memory budget: both snapshots' raw bytes together. Above it: partitioned mode.
DEFAULT_MEMORY_BUDGET = int(os.environ.get("DIFFCORE_MEMORY_BUDGET", 1_000_000_000))
# Target raw bytes of one partition pair in partitioned mode.
DEFAULT_PARTITION_BYTES = int(os.environ.get("DIFFCORE_PARTITION_BYTES", 384 * 1024 * 1024))

_LINE = "line"
_KEY = "k"
_FILE = "fi"
_LINENO = "ln"
_HASH = "h"
_OK = "ok"  # the scanner vouches that the line is a valid JSON object
_KEY_JOIN = "\x1f"  # between the tokens of a composite key (canonical JSON never holds it raw)

ProgressFn = Callable[[str, int, int], None]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# ---------------------------------------------------------------------------------------------
# Exact parsing (the slow path, and the records whose bytes differ)


def parse_json(text: str | bytes) -> Any:
    """Parse a text known to be valid (a key token, a record the scanner or `_prepare`
    vouched for) exactly: `jsonvalue.loads_fast`, members already checked."""
    return jsonvalue.loads_fast(text, members_checked=True)


def key_token(obj: dict[str, Any], key: Sequence[str]) -> str:
    """The key of a parsed record as text: canonical JSON of each key value, joined; raises
    `records.RecordError(missing_key)`."""
    return key_token_of(records.key_values(obj, key))


def key_token_of(values: Sequence[Any]) -> str:
    return _KEY_JOIN.join(jsonvalue.canonical_json(value) for value in values)


def key_values(token: str, key: Sequence[str]) -> dict[str, Any]:
    """`{path: value}` of a key token (the event's `key` object)."""
    out = {}
    for path, text in zip(key, token.split(_KEY_JOIN), strict=False):
        out[path] = parse_json(text)
    return out


def _display_key(token: str, key: Sequence[str]) -> str:
    return jsonvalue.compact_json(key_values(token, key))


# ---------------------------------------------------------------------------------------------
# Cutting raw text into lines, keys and validity (`linescan`, a small C scanner)

_SCAN_PART_BYTES = 16 * 1024 * 1024  # text per scanner call; the calls run on every core


def _streaming(frame: pl.DataFrame, exprs: Sequence[pl.Expr]) -> pl.DataFrame:
    """`frame.select(exprs)` on Polars' streaming engine: the rows are cut into morsels that
    all threads work on (the eager engine runs a string kernel over a column on one thread)."""
    return frame.lazy().select(exprs).collect(engine="streaming")


def key_steps(key: Sequence[str]) -> list[list[bytes]]:
    """The scanner's form of the key: each path's member names as UTF-8 bytes."""
    return [[step.encode() for step in path.split(".")] for path in key]


def _map_file(local: str, name: str) -> mmap.mmap | bytes:
    """The bytes of the local file `local` (the input `name`, for errors), memory-mapped
    (read-only, pages loaded at once): no copy, the page cache is the buffer. The lines'
    strings point into it, so it stays mapped as long as they live. (A file truncated by
    someone else during the run would kill the process with SIGBUS; nothing it wrote would
    look complete: see docs/decisions.md.)"""
    try:
        with open(local, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return mmap.mmap(
                f.fileno(),
                0,
                flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                prot=mmap.PROT_READ,
            )
    except OSError as exc:
        raise DiffError(ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=name) from None


def _nothing() -> None:
    pass


def _page_release(text: bytes | mmap.mmap, start: int, stop: int) -> Callable[[], None]:
    """A function that drops the pages of `text[start:stop]` from this process's memory, when
    `text` is a mapping (they stay in the page cache; touching them again reads them back)."""
    if not isinstance(text, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return _nothing
    aligned = start - start % mmap.PAGESIZE
    return lambda: text.madvise(mmap.MADV_DONTNEED, aligned, stop - aligned)


def _line_parts(text: bytes | mmap.mmap, begin: int, n: int, size: int) -> list[memoryview]:
    """`text[begin:n]` cut after newlines into parts of about `size` bytes (the last may lack
    one), as views (no copy)."""
    view = memoryview(text)
    parts = []
    start = begin
    while start < n:
        stop = min(start + size, n)
        if stop < n:
            nl = text.find(b"\n", stop - 1, n)
            stop = n if nl == -1 else nl + 1
        parts.append(view[start:stop])
        start = stop
    return parts


def _scan_part(
    part: memoryview, steps: list[list[bytes]]
) -> tuple[pl.DataFrame, int, set[tuple[str, str]]] | None:
    """(line, k, ok, _blank) of every line of `part`, its number of lines and the leaf types of
    the lines with a key; None when a line is not UTF-8 (a Polars String column cannot hold it).
    `k` is null where the exact path must see the line (it then collects the line's types)."""
    import pyarrow as pa

    n, line_views, key_views, flags, types, key_data, bad_utf8 = linescan.scan(part, steps)
    if bad_utf8:
        return None
    text = pa.py_buffer(part)
    keys_buffer = text if key_data is None else pa.py_buffer(key_data)

    def views(raw: bytes, data: Any) -> pl.Series:
        return pl.from_arrow(
            pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(raw), data])
        )

    def numbers(raw: bytes, dtype: Any) -> pl.Series:
        return pl.from_arrow(pa.Array.from_buffers(dtype, n, [None, pa.py_buffer(raw)]))

    fast = linescan.KEY | linescan.TYPED
    frame = pl.DataFrame(
        {
            _LINE: views(line_views, text),
            _KEY: views(key_views, keys_buffer),
            "_f": numbers(flags, pa.uint8()),
        }
    ).select(
        _LINE,
        pl.when((pl.col("_f") & fast) == fast).then(pl.col(_KEY)).alias(_KEY),
        ((pl.col("_f") & linescan.VALID) != 0).alias(_OK),
        ((pl.col("_f") & linescan.BLANK) != 0).alias("_blank"),
    )
    return frame, n, {(path.decode(), linescan.KINDS[kind]) for path, kind in types}


def scan_lines(
    text: bytes | mmap.mmap,
    key: Sequence[str],
    fi: int,
    first_line: int = 1,
    threads: int | None = None,
    begin: int = 0,
    end: int | None = None,
) -> tuple[pl.DataFrame, set[tuple[str, str]], int] | None:
    """The records of an NDJSON text as rows (line, fi, ln, k, ok), and the (leaf path, JSON
    type) pairs of the rows with a key. `k` is the key's canonical text where the scanner cut
    it out and took the line's leaf types (else null: the exact path parses the line); `ok`
    whether the scanner vouches that the line is a valid JSON object (else the exact parser
    decides); blank lines dropped; `ln` counted from `first_line`; and the number of lines
    (blank ones too). Only `text[begin:end]` is read. None when some line is not UTF-8. Parts
    are scanned on `threads` threads (default: every core; the scanner releases the GIL)."""
    end = len(text) if end is None else end
    if begin == 0 and first_line == 1 and text[:3] == b"\xef\xbb\xbf":
        begin = 3  # a UTF-8 byte order mark: skipped
    steps = key_steps(key)
    parts = _line_parts(text, begin, end, _SCAN_PART_BYTES)
    threads = min(len(parts), threads or _workers())
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            scanned = list(pool.map(lambda part: _scan_part(part, steps), parts))
    else:
        scanned = [_scan_part(part, steps) for part in parts]
    frames = []
    types: set[tuple[str, str]] = set()
    ln = first_line
    for result in scanned:
        if result is None:
            return None
        frame, n, part_types = result
        types |= part_types
        frames.append(
            frame.with_columns(
                pl.lit(fi, dtype=pl.UInt32).alias(_FILE),
                pl.int_range(ln, ln + n, dtype=pl.UInt32).alias(_LINENO),
            )
            .filter(~pl.col("_blank"))
            .select(_ROW_COLUMNS)
        )
        ln += n
    return (pl.concat(frames, how="vertical") if frames else _empty_rows()), types, ln - first_line


# ---------------------------------------------------------------------------------------------
# Reading one snapshot


@dataclass
class _SideData:
    side: str
    location: str
    files: list[str]
    frame: pl.DataFrame  # k, line, fi, ln (valid records only, after load)
    records_per_file: list[int]
    bad: list[BadRecord] = field(default_factory=list)
    unreadable_keys: int = 0  # bad records whose key could not be read (contract §6)
    valid_records: int = 0
    hash_unique: bool = False  # the 64-bit hashes of the keys are unique (see _check_duplicates)
    # Schema drift: `leaf path -> JSON types` over every valid record, from the scanner (the
    # records with a fast key) and from the exact path (the others).
    types: dict[str, set[str]] = field(default_factory=dict)

    def add_types(self, pairs: Iterable[tuple[str, str]]) -> None:
        for path, type_name in pairs:
            self.types.setdefault(path, set()).add(type_name)

    @property
    def records(self) -> int:
        return sum(self.records_per_file)


_ROW_SCHEMA = {
    _LINE: pl.String,
    _FILE: pl.UInt32,
    _LINENO: pl.UInt32,
    _KEY: pl.String,
    _OK: pl.Boolean,
}
_ROW_COLUMNS = list(_ROW_SCHEMA)
# Rows read from a file or chunk; (line number, raw, message) of lines not even text; the
# (leaf path, JSON type) pairs the scanner took.
_Rows = tuple[pl.DataFrame, list[tuple[int, str, str]], set[tuple[str, str]]]
# ... and, in partitioned mode, a function to call once the rows are spilled.
_Chunk = tuple[pl.DataFrame, list[tuple[int, str, str]], set[tuple[str, str]], Callable[[], None]]


def _empty_rows() -> pl.DataFrame:
    return pl.DataFrame({c: [] for c in _ROW_SCHEMA}, schema=_ROW_SCHEMA)


def _rows_frame(texts: list[str], linenos: list[int], fi: int) -> pl.DataFrame:
    """Rows of lines read one by one: no key cut out, none vouched for (the exact path)."""
    n = len(texts)
    return pl.DataFrame(
        {
            _LINE: pl.Series(texts, dtype=pl.String),
            _FILE: pl.Series([fi] * n, dtype=pl.UInt32),
            _LINENO: pl.Series(linenos, dtype=pl.UInt32),
            _KEY: pl.Series([None] * n, dtype=pl.String),
            _OK: pl.Series([False] * n, dtype=pl.Boolean),
        }
    )


class PolarsEngine:
    """The contract on Polars. `PolarsEngine().run(spec)` writes `spec.out/<run_date>/`."""

    name = ENGINE_NAME
    version = ENGINE_VERSION

    def __init__(
        self,
        progress: ProgressFn | None = None,
        memory_budget: int | None = None,
        partition_bytes: int | None = None,
        tmp_dir: str | None = None,
        parallel: bool | None = None,
    ) -> None:
        """`progress(stage, done, total)` is called as the run goes; `memory_budget`: input
        bytes (both sides) above which the run is partitioned, into partitions of about
        `partition_bytes`; `tmp_dir`: where spill files go (default: the system's);
        `parallel`: parse in worker processes (None: when the input is large enough)."""
        self.parallel = parallel
        self.progress = progress
        self.memory_budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
        self.partition_bytes = partition_bytes or DEFAULT_PARTITION_BYTES
        self.tmp_dir = tmp_dir

    # -- progress
    def _tick(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    # -----------------------------------------------------------------------------------------
    def run(self, spec: RunSpec) -> RunResult:
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        folder = spec.run_folder
        writer = RunWriter(folder, spec.output)
        tmp = tempfile.mkdtemp(prefix="diffcore-", dir=self.tmp_dir)
        try:
            try:
                writer.begin()
            except OSError as exc:
                raise DiffError(ErrorClass.IO_ERROR, f"cannot write {folder}: {exc}") from None
            run = _Run(self, spec, tmp)
            run.execute(writer)
            timings.update(run.timings)
            t_write = time.perf_counter()
            files, bad_name = writer.finish()
            counts = mf.Counts(
                c=run.counts["c"],
                u=run.counts["u"],
                d=run.counts["d"],
                unchanged=run.counts["unchanged"],
                bad_records=len(writer.bad_records),
                withheld=run.counts["withheld"],
            )
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t_write
            timings["total"] = time.perf_counter() - t0
            manifest = mf.Manifest(
                run_date=spec.run_date,
                engine=mf.Engine(ENGINE_NAME, ENGINE_VERSION),
                key=spec.key,
                ignored=spec.ignore,
                before=run.input_side("before"),
                after=run.input_side("after"),
                counts=counts,
                files=files,
                schema_drift=run.drift,
                started_at=started.isoformat(timespec="milliseconds"),
                finished_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                bad_records_file=bad_name,
                extra={
                    "changed_fields": dict(run.field_counts.most_common(50)),
                    "mode": run.mode,
                    "partitions": run.partitions,
                    "timings_s": {k: round(v, 3) for k, v in timings.items()},
                    "cpu_s": {k: round(v, 3) for k, v in run.cpu.items()},
                },
            )
            writer.write_manifest(manifest)
            return RunResult(folder=folder, manifest=manifest)
        except DiffError:
            writer.abort()
            raise
        except (OSError, pl.exceptions.ComputeError) as exc:
            writer.abort()
            raise DiffError(ErrorClass.IO_ERROR, f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            writer.abort()
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# One run


class _Run:
    def __init__(self, engine: PolarsEngine, spec: RunSpec, tmp: str) -> None:
        from collections import Counter

        self.engine = engine
        self.spec = spec
        self.tmp = tmp
        self.quarantine = spec.bad_records == "quarantine"
        self.counts = {"c": 0, "u": 0, "d": 0, "unchanged": 0, "withheld": 0}
        # Key tokens that a quarantined line of either side still names: no event (§6).
        self.withheld_keys: set[str] = set()
        self._held: set[str] = set()  # the withheld keys that a valid record holds
        self.field_counts: Counter[str] = Counter()
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.sides: dict[str, _SideData] = {}
        self.drift = mf.SchemaDrift()
        self.mode = "in-memory"
        self.partitions = 1
        self._tmp_seq = 0

    # -- timing helper
    def _timed(self, name: str, start: tuple[float, float]) -> None:
        """Add the wall and CPU (all threads) seconds since `start` (`_clock()`) to a stage."""
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - start[1]
        if os.environ.get("DIFFCORE_DEBUG_RSS"):
            import resource
            import sys

            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
            print(f"[diffcore] {name}: rss {rss} MB, peak {peak} MB", file=sys.stderr)

    def input_side(self, side: str) -> mf.InputSide:
        data = self.sides[side]
        return mf.InputSide(
            location=data.location,
            files=tuple(
                mf.InputFile(p, n) for p, n in zip(data.files, data.records_per_file, strict=False)
            ),
            records=data.records,
            bad_records=len(data.bad),
            unreadable_keys=data.unreadable_keys,
        )

    # -----------------------------------------------------------------------------------------
    def execute(self, writer: RunWriter) -> None:
        spec = self.spec
        files = {side: self._resolve(side, spec.location(side)) for side in ("before", "after")}
        total = self._input_bytes(files)
        pool = self._start_pool(total)
        try:
            if total <= self.engine.memory_budget:
                self._execute_in_memory(writer, files, pool)
            else:
                self.partitions = max(2, -(-total // self.engine.partition_bytes))
                self.mode = "partitioned"
                self._execute_partitioned(writer, files, pool)
        finally:
            if pool is not None:
                pool.terminate()
        for side in ("before", "after"):
            data = self.sides[side]
            position = {path: i for i, path in enumerate(data.files)}
            for bad in sorted(data.bad, key=lambda b: (position.get(b.file, 0), b.line or 0)):
                writer.add_bad_record(bad)

    def _execute_in_memory(self, writer: RunWriter, files: dict[str, list[str]], pool: Any) -> None:
        spec = self.spec
        t = _clock()
        before = self.sides["before"] = self._load_side(
            "before", spec.location("before"), files["before"]
        )
        self._timed("read_before", t)
        # The before side's duplicate check runs while the after side is read; its error, if
        # any, is raised after the after side's record errors, as if run in turn.
        with ThreadPoolExecutor(1) as thread:
            before_duplicates = thread.submit(self._check_duplicates, before)
            t = _clock()
            after = self.sides["after"] = self._load_side(
                "after", spec.location("after"), files["after"]
            )
            self._timed("read_after", t)
        t = _clock()
        before_duplicates.result()
        self._check_duplicates(after)
        self._timed("duplicates", t)
        for data in (before, after):
            self._check_empty(data, data.frame.height)
        t = _clock()

        def write(lines: pl.DataFrame) -> None:
            t = _clock()
            self._write_events(writer, lines)
            self._timed("write", t)

        # The events are written as the diff goes, in a thread: making a block's bytes,
        # hashing and writing them release the GIL, so this thread formats the next block.
        background = _BackgroundWriter(write)
        try:
            self._diff(before, after, background.put, pool)
        except BaseException:
            background.close(reraise=False)
            raise
        background.close()
        self._timed("diff", t)
        t = _clock()
        self.drift = mf.schema_drift(before.types, after.types)
        self._timed("drift", t)

    def _write_events(self, writer: RunWriter, events: pl.DataFrame) -> None:
        """Write event lines (a frame with a `line` column) to the data files."""
        total = events.height
        for offset in range(0, total, _FORMAT_BATCH):
            self.engine._tick("write", offset, total)
            lines = events[_LINE].slice(offset, _FORMAT_BATCH)
            writer.write_sized(
                (lines.str.len_bytes() + 1).to_list(),
                lambda i, j, lines=lines: _lines_bytes(lines.slice(i, j - i)),
            )
        self.engine._tick("write", total, total)

    # -----------------------------------------------------------------------------------------
    # Partitioned mode: snapshots larger than the memory budget

    def _execute_partitioned(
        self, writer: RunWriter, files: dict[str, list[str]], pool: Any
    ) -> None:
        """Spill both sides hash-partitioned by key, then diff partition by partition.

        Both sides are fully validated while spilling, so a partition's diff cannot meet a bad
        record; events go to spill files too and are written only when every partition is
        done (a duplicate key found in the last partition still fails the run before any data
        file is written). Events are in key order within a partition."""
        spec = self.spec
        n = self.partitions
        spill = os.path.join(self.tmp, "spill")
        os.makedirs(spill, exist_ok=True)
        for side in ("before", "after"):
            t = _clock()
            self.sides[side] = self._spill_side(side, spec.location(side), files[side], spill)
            self._timed(f"read_{side}", t)
        before, after = self.sides["before"], self.sides["after"]
        for data in (before, after):
            self._check_empty(data, data.valid_records)
        event_files: list[str] = []
        t = _clock()
        for p in range(n):
            self.engine._tick("diff", p, n)
            bp = self._partition_side(before, spill, p)
            ap = self._partition_side(after, spill, p)
            self._check_duplicates(bp)
            self._check_duplicates(ap)
            blocks: list[pl.DataFrame] = []
            self._diff(bp, ap, blocks.append, pool)
            events = pl.concat(blocks) if blocks else pl.DataFrame()
            del blocks
            if events.height:
                path = os.path.join(spill, f"events-{p:05d}.arrow")
                events.write_ipc(path, compression="uncompressed")
                event_files.append(path)
            del bp, ap, events
        self.engine._tick("diff", n, n)
        self._timed("diff", t)
        t = _clock()

        self.drift = mf.schema_drift(before.types, after.types)
        self._timed("drift", t)
        t = _clock()
        for path in event_files:
            self._write_events(writer, pl.read_ipc(path, memory_map=False))
            os.unlink(path)
        self._timed("write", t)

    def _spill_side(self, side: str, location: str, files: list[str], spill: str) -> _SideData:
        data = _SideData(side, location, files, pl.DataFrame(), [0] * len(files))
        n = self.partitions

        def write(rows: pl.DataFrame, seq: int, release: Callable[[], None]) -> None:
            rows = rows.with_columns((pl.col(_KEY).hash() % n).cast(pl.UInt32).alias("_p"))
            for (p,), part in rows.partition_by("_p", as_dict=True).items():
                part.drop("_p").write_ipc(
                    os.path.join(spill, f"{side}-{p:05d}-{seq:06d}.arrow"),
                    compression="uncompressed",
                )
            del rows
            release()

        # A chunk is partitioned and written in a thread while the next one is scanned (one
        # chunk in flight: memory stays bounded).
        seq = 0
        pending: Any = None
        with ThreadPoolExecutor(1) as writer:
            for fi, path in enumerate(files):
                self.engine._tick(f"read {side}", fi, len(files))
                for rows, pre_bad, types, release in self._iter_chunks(path, fi):
                    data.add_types(types)
                    rows = self._prepare(
                        data, rows, [(fi, ln, raw, msg) for ln, raw, msg in pre_bad]
                    )
                    data.valid_records += rows.height
                    if rows.height == 0:
                        continue
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(write, rows, seq, release)
                    seq += 1
                    del rows
            if pending is not None:
                pending.result()
        self.engine._tick(f"read {side}", len(files), len(files))
        return data

    def _partition_side(self, data: _SideData, spill: str, p: int) -> _SideData:
        import glob

        paths = sorted(glob.glob(os.path.join(spill, f"{data.side}-{p:05d}-*.arrow")))
        schema = {_KEY: pl.String, _LINE: pl.String, _FILE: pl.UInt32, _LINENO: pl.UInt32}
        if paths:
            frame = pl.concat([pl.read_ipc(path, memory_map=False) for path in paths], rechunk=True)
        else:
            frame = pl.DataFrame({c: [] for c in schema}, schema=schema)
        part = _SideData(data.side, data.location, data.files, frame, data.records_per_file)
        part.bad = data.bad
        return part

    def _iter_chunks(self, path: str, fi: int) -> Iterator[_Chunk]:
        """An input file as row frames of about `_CHUNK_BYTES` each: `_read_file`'s triple and
        a function to call once the rows are spilled (see `_mapped_chunks`)."""
        try:
            with sources.open_input(path) as f:
                head = f.read(65536)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=path
            ) from None
        if sources.sniff_format(head) == "array":
            yield (*self._python_rows(sources.iter_records(path), fi, 0), _nothing)
            return
        if not store.is_s3(path) and not sources.is_gzip(path):
            yield from self._mapped_chunks(path, fi)
            return
        offset = 0
        carry = b""
        try:
            with sources.open_input(path) as f:
                while True:
                    block = f.read(_CHUNK_BYTES)
                    data = carry + block if carry else block
                    if not data:
                        break
                    if block:
                        cut = data.rfind(b"\n") + 1
                        if cut == 0:  # one line longer than a chunk: keep reading
                            carry = data
                            continue
                        chunk, carry = data[:cut], data[cut:]
                    else:
                        chunk, carry = data, b""
                    del data
                    if offset == 0 and chunk.startswith(b"\xef\xbb\xbf"):
                        chunk = chunk[3:]
                    rows, lines = self._chunk_rows(chunk, fi, offset)
                    yield (*rows, _nothing)
                    offset += lines
                    del chunk, rows
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=path
            ) from None

    def _mapped_chunks(self, path: str, fi: int) -> Iterator[_Chunk]:
        """A local plain file as chunks of about `_CHUNK_BYTES`, scanned straight from its
        mapping, each with a function that takes the chunk's pages out of this process's memory
        (they stay in the page cache) once its rows are spilled: the mapping does not grow with
        the file."""
        text = _map_file(path, path)
        start, offset, n = 0, 0, len(text)
        while start < n:
            stop = min(start + _CHUNK_BYTES, n)
            if stop < n:
                nl = text.find(b"\n", stop - 1)
                stop = n if nl == -1 else nl + 1
            rows, lines = self._chunk_rows(text, fi, offset, start, stop)
            yield (*rows, _page_release(text, start, stop))
            offset += lines
            start = stop

    def _chunk_rows(
        self, text: bytes | mmap.mmap, fi: int, offset: int, begin: int = 0, end: int | None = None
    ) -> tuple[_Rows, int]:
        """The rows of `text[begin:end]` (its lines numbered from `offset + 1`) and its number of
        lines: scanned, or line by line when a line is not UTF-8 (to report it)."""
        scanned = scan_lines(text, self.spec.key, fi, offset + 1, begin=begin, end=end)
        if scanned is not None:
            return (scanned[0], [], scanned[1]), scanned[2]
        import io

        chunk = text[begin:end]
        rows = self._python_rows(sources.iter_ndjson_lines("", io.BytesIO(chunk)), fi, offset)
        return rows, chunk.count(b"\n")

    @staticmethod
    def _python_rows(records: Iterable[sources.RawRecord], fi: int, offset: int) -> _Rows:
        texts: list[str] = []
        linenos: list[int] = []
        pre_bad: list[tuple[int, str, str]] = []
        for rec in records:
            if rec.error is not None:
                pre_bad.append((rec.line + offset, rec.text, rec.error))
            else:
                texts.append(rec.text)
                linenos.append(rec.line + offset)
        return _rows_frame(texts, linenos, fi), pre_bad, set()

    # -----------------------------------------------------------------------------------------
    def _input_bytes(self, files: dict[str, list[str]]) -> int:
        """Total input size (uncompressed size is estimated: 5x a .gz file)."""
        total = 0
        for paths in files.values():
            for path in paths:
                try:
                    size = store.size(path)
                except Exception:
                    size = 0
                total += size * 5 if sources.is_gzip(path) else size
        return total

    def _resolve(self, side: str, location: str) -> list[str]:
        try:
            return sources.resolve(location)
        except DiffError:
            raise
        except Exception as exc:  # OSError, botocore errors (no such bucket, access denied)
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot list the {side} snapshot {location}: {exc}"
            ) from None

    def _start_pool(self, total: int) -> Any:
        """Worker processes for the parse phase, forked now, while this process is small (a
        child's RSS starts as a copy of its parent's), and before Polars starts threads."""
        workers = _workers()
        if self.engine.parallel is False or os.environ.get("DIFFCORE_NO_FORK"):
            return None
        if self.engine.parallel is None and (workers < 2 or total < _POOL_MIN_BYTES):
            return None
        import multiprocessing

        return multiprocessing.get_context("fork").Pool(max(2, workers))

    # -----------------------------------------------------------------------------------------
    # Loading

    def _temp_path(self, suffix: str = ".jsonl") -> str:
        self._tmp_seq += 1
        return os.path.join(self.tmp, f"in-{self._tmp_seq:05d}{suffix}")

    def _local_plain(self, path: str) -> str:
        """A local, uncompressed copy of an input file (the file itself when it is one)."""
        if not store.is_s3(path) and not sources.is_gzip(path):
            return path
        target = self._temp_path()
        try:
            with sources.open_input(path) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout, 8 * 1024 * 1024)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=path
            ) from None
        return target

    def _read_file(self, path: str, fi: int, threads: int = 1) -> _Rows:
        """Rows (line, fi, ln, k, ok) of one file (`scan_lines` on `threads` threads, else
        record by record), the records that could not even be cut out as text (line, raw,
        message), and the leaf types the scanner took (`scan_lines`)."""
        local = self._local_plain(path)
        try:
            with open(local, "rb") as f:
                head = f.read(65536)
        except OSError as exc:
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=path
            ) from None
        if sources.sniff_format(head) == "ndjson":
            text = _map_file(local, path)
            scanned = scan_lines(text, self.spec.key, fi, threads=threads)
            del text  # the rows hold it (their strings are views into it)
            if scanned is not None:
                return scanned[0], [], scanned[1]
        # a JSON array, or a line that is not UTF-8 (to report it): record by record
        return self._python_rows(sources.iter_records(local), fi, 0)

    def _bad(
        self,
        data: _SideData,
        error_class: ErrorClass,
        message: str,
        fi: int,
        ln: int | None,
        raw: str,
    ) -> None:
        """A bad record: the run fails, or (quarantine) it is set aside, and the key it still
        names (`records.readable_key`) gets no event (contract §6)."""
        file = data.files[fi]
        if not self.quarantine or error_class not in RECORD_ERRORS:
            raise DiffError(error_class, message, file=file, line=ln, excerpt=excerpt(raw))
        data.bad.append(BadRecord(error_class.value, message, data.side, file, ln, raw))
        values = records.key_of_bad_record(raw, message, self.spec.key)
        if values is None:
            data.unreadable_keys += 1
        else:
            self.withheld_keys.add(key_token_of(values))

    def _load_side(self, side: str, location: str, files: list[str]) -> _SideData:
        data = _SideData(side, location, files, pl.DataFrame(), [0] * len(files))
        frames = []
        pre_bad_all: list[tuple[int, int, str, str]] = []
        # Files are read and scanned on every core (reading and scanning release the GIL); a
        # file gets the cores the other files leave it.
        workers = _workers()
        threads = max(1, workers // max(1, len(files)))
        with ThreadPoolExecutor(min(workers, len(files)) or 1) as pool:
            loaded = pool.map(lambda fi: self._read_file(files[fi], fi, threads), range(len(files)))
            for fi, (df, pre_bad, types) in enumerate(loaded):
                self.engine._tick(f"read {side}", fi + 1, len(files))
                frames.append(df)
                data.add_types(types)
                pre_bad_all.extend((fi, ln, raw, msg) for ln, raw, msg in pre_bad)
        if frames:
            rows = pl.concat(frames, how="vertical", rechunk=True)
        else:
            rows = _empty_rows()
        data.frame = self._prepare(data, rows, pre_bad_all)
        data.valid_records = data.frame.height
        return data

    def _prepare(
        self,
        data: _SideData,
        rows: pl.DataFrame,
        pre_bad: Sequence[tuple[int, int, str, str]],
    ) -> pl.DataFrame:
        """Rows (line, fi, ln, k, ok) -> valid records (k, line, fi, ln): the lines the scanner
        did not vouch for, or whose key it did not cut out, parsed exactly; blank lines dropped;
        bad records reported (fail) or set aside (quarantine); record counts added to
        `data.records_per_file`. `pre_bad`: (fi, ln, raw, message) of lines that could not even
        be read as text."""
        t = _clock()
        slow = (
            rows.with_row_index("_r")
            .filter(pl.col(_KEY).is_null() | ~pl.col(_OK))
            .select("_r", _LINE, _FILE, _LINENO)
        )
        errors: list[tuple[int, int, ErrorClass, str, str]] = []
        for fi, ln, raw, msg in pre_bad:
            errors.append((fi, ln, ErrorClass.MALFORMED_JSON, f"invalid JSON: {msg}", raw))
        drop: list[int] = []
        fixed_idx: list[int] = []
        fixed_keys: list[str] = []
        if slow.height:
            for r, text, fi, ln in slow.iter_rows():
                if not text.strip():
                    drop.append(r)  # a blank line
                    continue
                try:
                    obj = records.parse_object(text)
                    token = key_token(obj, self.spec.key)
                except records.RecordError as bad:
                    errors.append((fi, ln, bad.error_class, bad.message, text))
                    drop.append(r)
                    continue
                fixed_idx.append(r)
                fixed_keys.append(token)
                data.add_types(jsonvalue.leaf_types(obj).items())
        if fixed_idx:
            rows = rows.with_columns(
                rows[_KEY].scatter(
                    pl.Series(fixed_idx, dtype=pl.UInt32), pl.Series(fixed_keys, dtype=pl.String)
                )
            )
        if drop:
            drop_s = pl.Series(drop, dtype=pl.UInt32)
            rows = (
                rows.with_row_index("_r").filter(~pl.col("_r").is_in(drop_s.implode())).drop("_r")
            )
        # Records per file: every non-blank line (bad records included).
        per_file = rows.group_by(_FILE).len()
        for fi, n in zip(per_file[_FILE].to_list(), per_file["len"].to_list(), strict=False):
            data.records_per_file[fi] += n
        errors.sort(key=lambda e: (e[0], e[1]))
        for fi, _ln, _cls, _msg, _raw in errors:
            data.records_per_file[fi] += 1
        for fi, ln, cls, msg, raw in errors:
            self._bad(data, cls, msg, fi, ln, raw)
        self._timed("exact", t)
        return rows.select(_KEY, _LINE, _FILE, _LINENO)

    # -----------------------------------------------------------------------------------------
    def _check_empty(self, data: _SideData, records: int) -> None:
        if records == 0 and data.side not in self.spec.allow_empty:
            what = "no input files" if not data.files else "no records"
            raise DiffError(
                ErrorClass.EMPTY_SNAPSHOT,
                f"{data.side} snapshot has {what} (allow it with --allow-empty {data.side})",
                file=data.location,
            )

    def _check_duplicates(self, data: _SideData) -> None:
        """Fail on a key that occurs twice. Keys are hashed to 64 bits first (cheap); only the
        rows whose hash repeats are compared as text. Records whether the hashes are unique
        (then the join can use them)."""
        frame = data.frame = data.frame.with_columns(pl.col(_KEY).hash().alias(_HASH))
        data.hash_unique = True
        if frame.height < 2 or frame[_HASH].n_unique() == frame.height:  # the common case, cheap
            return
        data.hash_unique = False
        dups = frame.filter(pl.col(_HASH).is_duplicated()).filter(pl.col(_KEY).is_duplicated())
        if dups.height == 0:
            return
        dups = dups.sort(_FILE, _LINENO)
        k = dups[_KEY][0]
        where = dups.filter(pl.col(_KEY) == k).head(2)
        (f1, l1), (f2, l2) = (
            (data.files[r[0]], r[1]) for r in where.select(_FILE, _LINENO).iter_rows()
        )
        raise DiffError(
            ErrorClass.DUPLICATE_KEY,
            f"key {_display_key(k, self.spec.key)} occurs more than once in the {data.side} "
            f"snapshot: {f1} line {l1} and {f2} line {l2}",
            file=f1,
            line=l1,
            excerpt=excerpt(where[_LINE][0]),
        )

    # -----------------------------------------------------------------------------------------
    # The diff

    def _withhold(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The side's records minus those whose key a quarantined line names (contract §6: a
        bad record is never a change); `withheld` counts those keys (each once)."""
        if not self.withheld_keys or frame.height == 0:
            return frame
        held = pl.Series(sorted(self.withheld_keys), dtype=pl.String).implode()
        hit = frame[_KEY].is_in(held)
        if not hit.any():
            return frame
        self._held.update(frame.filter(hit)[_KEY].to_list())
        self.counts["withheld"] = len(self._held)
        return frame.filter(~hit)

    def _diff(
        self,
        before: _SideData,
        after: _SideData,
        emit: Callable[[pl.DataFrame], None],
        pool: Any = None,
    ) -> None:
        """Join, classify and compare; hands the event lines (k, line) to `emit` in key order,
        block after block.

        Every line of both sides is a valid record (checked when read, so a failing run writes
        no data file). The byte-different pairs, sorted by key, are compared by the worker
        processes chunk by chunk; each chunk's updates go out with the inserts and deletes whose
        keys sort up to the chunk's last key, so that writing overlaps the comparison."""
        spec = self.spec
        bf, af = self._withhold(before.frame), self._withhold(after.frame)
        t = _clock()
        pairing = _pair_rows(bf, af, before.hash_unique and after.hash_unique)
        self._timed("join", t)
        self.counts["unchanged"] += pairing.unchanged
        cand, ins, dels = pairing.cand, pairing.ins, pairing.dels
        del pairing
        self.engine._tick("diff", 0, 2)

        # 1. Byte-different pairs: compared in the workers, meanwhile (`_work_chunk`).
        t = _clock()
        chunks = iter_pairs(
            bf[_LINE].gather(cand["rb"]), af[_LINE].gather(cand["ra"]), spec.ignore, pool
        )
        self._timed("parse", t)
        # 2. Inserts and deletes, in key order: formatted with the updates of the block their
        #    keys fall in, so that the first block goes to the writer early.
        ins, dels = ins.sort(_KEY), dels.sort(_KEY)
        self.counts["c"] += ins.height
        self.counts["d"] += dels.height
        taken = [0, 0]  # rows of ins, dels handed out

        def block(bound: str | None, updates: pl.DataFrame | None = None) -> pl.DataFrame:
            """Event lines, sorted by key: the inserts and deletes not handed out yet with a key
            up to `bound` (None: all), and the `updates` (k, rb, ra, ch)."""
            t = _clock()
            frames = []
            sides = ((ins, "c", af, "ra"), (dels, "d", bf, "rb"))
            for side, (rows, op, source, row) in enumerate(sides):
                start = taken[side]
                end = rows.height
                if bound is not None:
                    end = int(rows[_KEY].search_sorted(bound, side="right"))
                taken[side] = end
                if end > start:
                    rows = rows.slice(start, end - start)
                    frames.append(_event_rows(rows[_KEY], op, source[_LINE].gather(rows[row])))
            if updates is not None and updates.height:
                frames.append(
                    _event_rows(
                        updates[_KEY],
                        "u",
                        bf[_LINE].gather(updates["rb"]),
                        af[_LINE].gather(updates["ra"]),
                        updates["ch"],
                    )
                )
            lines = (
                format_events(pl.concat(frames), spec.key, spec.run_date).sort(_KEY)
                if frames
                else pl.DataFrame({_KEY: [], _LINE: []}, schema={_KEY: pl.String, _LINE: pl.String})
            )
            self._timed("format", t)
            return lines

        self.engine._tick("diff", 1, 2)

        # 3. Chunk by chunk: updates (semantically equal pairs count as unchanged), merged with
        #    the inserts and deletes up to the chunk's last key.
        while True:
            t = _clock()
            item = next(chunks, None)
            self._timed("parse", t)
            if item is None:
                break
            lo, hi, (pairs, field_counts) = item
            self.field_counts.update(field_counts)
            chunk = cand.slice(lo, hi - lo).with_columns(pl.Series("ch", pairs, dtype=pl.String))
            updates = chunk.filter(pl.col("ch").is_not_null())
            self.counts["u"] += updates.height
            self.counts["unchanged"] += chunk.height - updates.height
            emit(block(None if hi == cand.height else cand[_KEY][hi - 1], updates))
        if taken != [ins.height, dels.height]:
            emit(block(None))
        self.engine._tick("diff", 2, 2)


class _BackgroundWriter:
    """Calls `write(block)` for each block `put`, in order, in a thread; `close()` waits for
    the last one and re-raises the first failure (later blocks are then dropped)."""

    def __init__(self, write: Callable[[pl.DataFrame], None]) -> None:
        import queue
        import threading

        self._write = write
        self._queue: queue.Queue[pl.DataFrame | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="diffcore-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            block = self._queue.get()
            if block is None:
                return
            if self._error is None:
                try:
                    self._write(block)
                except BaseException as exc:  # handed to the caller by put/close
                    self._error = exc

    def put(self, block: pl.DataFrame) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(block)

    def close(self, reraise: bool = True) -> None:
        self._queue.put(None)
        self._thread.join()
        if reraise and self._error is not None:
            raise self._error


def _pair_rows(bf: pl.DataFrame, af: pl.DataFrame, hashes_unique: bool) -> _Pairing:
    """The records of both sides paired by key: `unchanged` (how many pairs have the same
    bytes), `cand` (k, rb, ra) the pairs whose bytes differ, sorted by key, `ins` (k, ra) and
    `dels` (k, rb), rb/ra being row numbers.

    When the 64-bit key hashes are unique on each side, the join runs on them (cheaper than
    on text). A pair of equal lines has equal keys (the key comes from the line), so only the
    pairs whose bytes differ have their keys compared as text; a mismatch (a hash collision
    across the sides) falls back to the join on the text."""
    if hashes_unique and bf.height and af.height:
        joined = (  # the streaming engine joins on every thread; row order is not needed
            bf.lazy()
            .select(_HASH)
            .with_row_index("rb")
            .join(af.lazy().select(_HASH).with_row_index("ra"), on=_HASH, how="full", coalesce=True)
            .collect(engine="streaming")
            .select("rb", "ra")
        )
        pairing = _classify(bf, af, joined)
        if (pairing.cand[_KEY] == af[_KEY].gather(pairing.cand["ra"])).all():
            return pairing
    jb = bf.select(_KEY).with_row_index("rb")
    ja = af.select(_KEY).with_row_index("ra")
    return _classify(bf, af, jb.join(ja, on=_KEY, how="full", coalesce=True).select("rb", "ra"))


@dataclass(frozen=True)
class _Pairing:
    unchanged: int
    cand: pl.DataFrame
    ins: pl.DataFrame
    dels: pl.DataFrame


def _classify(bf: pl.DataFrame, af: pl.DataFrame, joined: pl.DataFrame) -> _Pairing:
    """`_pair_rows` from the full join's row numbers (rb, ra); keys taken from the before side
    for pairs (the caller checks them when the join was on hashes)."""
    both = pl.col("rb").is_not_null() & pl.col("ra").is_not_null()
    matched = joined.filter(both)
    same = _streaming(  # compared on every thread
        pl.DataFrame({"b": bf[_LINE].gather(matched["rb"]), "a": af[_LINE].gather(matched["ra"])}),
        [pl.col("b") == pl.col("a")],
    ).to_series()
    cand = matched.filter(~same)
    cand = cand.select(bf[_KEY].gather(cand["rb"]).alias(_KEY), "rb", "ra").sort(_KEY)
    ins = joined.filter(pl.col("rb").is_null())
    dels = joined.filter(pl.col("ra").is_null())
    return _Pairing(
        unchanged=int(same.sum()),
        cand=cand,
        ins=ins.select(af[_KEY].gather(ins["ra"]).alias(_KEY), "ra"),
        dels=dels.select(bf[_KEY].gather(dels["rb"]).alias(_KEY), "rb"),
    )


def _lines_bytes(lines: pl.Series) -> bytes:
    """The lines as UTF-8 bytes, a newline after each (one join of the lines' bytes)."""
    return b"\n".join([*lines.cast(pl.Binary).to_list(), b""])


# ---------------------------------------------------------------------------------------------
# The records whose bytes differ

_PARALLEL_MIN = 20_000  # records to parse before the work is worth sending to workers
_PAIR_CHUNK_MIN = 1000  # pairs per worker job, at least (16 jobs otherwise)
_POOL_MIN_BYTES = 64 * 1024 * 1024  # input bytes (both sides) before worker processes start
_FORMAT_BATCH = 50_000  # events formatted at a time
_CHUNK_BYTES = int(os.environ.get("DIFFCORE_CHUNK_BYTES", 256 * 1024 * 1024))  # partitioned mode


def _work_chunk(
    job: tuple[list[bytes], list[bytes], tuple[str, ...]],
) -> tuple[list[str | None], dict[str, int]]:
    """Parse and compare one chunk of pairs (runs in a worker process or inline). Both texts
    are valid records (checked when read)."""
    b_texts, a_texts, ignore = job
    pairs: list[str | None] = []
    counts: dict[str, int] = {}
    dumps = jsonvalue.compact_json
    # Hot loop: names bound locally; the same changed lists recur, so their JSON is cached.
    changed_json: dict[tuple[str, ...], str] = {}
    append = pairs.append
    leaves_into = jsonvalue.leaves_into
    changed_from = jsonvalue.changed_from_leaves
    from_text = linescan.changed
    for b_text, a_text in zip(b_texts, a_texts, strict=False):
        changed = from_text(b_text, a_text)  # most pairs: told from the texts, in C
        if changed is None:  # the others: parsed and compared leaf by leaf
            lb: dict[str, Any] = {}
            leaves_into(parse_json(b_text), "", lb)
            la: dict[str, Any] = {}
            leaves_into(parse_json(a_text), "", la)
            changed = changed_from(lb, la, ignore)
        elif ignore:
            changed = [p for p in changed if not jsonvalue.is_ignored(p, ignore)]
        if changed:
            signature = tuple(changed)
            result = changed_json.get(signature)
            if result is None:
                result = changed_json[signature] = dumps(changed)
            append(result)
            for path in changed:
                counts[path] = counts.get(path, 0) + 1
        else:
            append(None)
    return pairs, counts


def _workers() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def _texts(lines: pl.Series) -> list[bytes]:
    """Lines as bytes: cheaper to make and to send than str, and orjson reads them as fast."""
    return lines.cast(pl.Binary).to_list()


def iter_pairs(
    b_lines: pl.Series,
    a_lines: pl.Series,
    ignore: Sequence[str] = (),
    pool: Any = None,
) -> Iterator[tuple[int, int, tuple[list[str | None], dict[str, int]]]]:
    """Parse and compare the byte-different pairs in chunks: yields `(lo, hi, result)` in
    order, `result` being `_work_chunk` of pairs lo..hi-1: per pair the changed paths as JSON,
    or None (equal by contract), and how often each path changed.

    With a `multiprocessing` pool every chunk is handed to the workers now, and parsed while the
    caller goes on (the caller can use the first chunks while the workers parse the next); a
    chunk's texts are made only when the pool sends it (never all of them at once, to spare
    memory). Without a pool, the work is done when the iterator is read.
    """
    ignore = tuple(ignore)
    n = b_lines.len()
    if n == 0:
        return iter(())
    if pool is None or n < _PARALLEL_MIN:
        return ((0, n, _work_chunk((_texts(b_lines), _texts(a_lines), ignore))) for _ in (0,))
    step = max(_PAIR_CHUNK_MIN, -(-n // 16))
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    jobs = (
        (_texts(b_lines.slice(lo, hi - lo)), _texts(a_lines.slice(lo, hi - lo)), ignore)
        for lo, hi in bounds
    )
    results = pool.imap(_work_chunk, jobs, chunksize=1)
    return ((lo, hi, r) for (lo, hi), r in zip(bounds, results, strict=True))


_EVENT_TAIL = '"run_date":"{run_date}","event_id":"'


def _event_rows(
    keys: pl.Series,
    op: str,
    first: pl.Series,
    after: pl.Series | None = None,
    changed: pl.Series | None = None,
) -> pl.DataFrame:
    """The (k, op, b, a, ch) frame of `format_events`: `first` is the after record of a `c`,
    the before record of a `d` or `u` (`after` and `changed` then given)."""
    none = pl.Series([None] * keys.len(), dtype=pl.String)
    b, a = (none, first) if op == "c" else (first, none if after is None else after)
    return pl.DataFrame(
        {
            _KEY: keys,
            "op": pl.Series([op] * keys.len(), dtype=pl.String),
            "b": b,
            "a": a,
            "ch": none if changed is None else changed,
        }
    )


def format_events(events: pl.DataFrame, key: Sequence[str], run_date: str) -> pl.DataFrame:
    """Event lines (k, line) for a frame of (k, op, b, a, ch), byte for byte as
    `events.event_line` writes them (checked by tests); the event ids are computed in one
    batch."""
    import hashlib

    n = len(key)
    split = pl.col(_KEY).str.split(_KEY_JOIN)

    def token(i: int) -> pl.Expr:  # a single key's token is the key text itself
        return pl.col(_KEY) if n == 1 else split.list.get(i)

    names = [jsonvalue.compact_json(p) for p in key]
    compact = [pl.lit("{")]
    for i, name in enumerate(names):
        compact += [pl.lit(("," if i else "") + name + ":"), token(i)]
    compact.append(pl.lit("}"))
    order = sorted(range(n), key=lambda i: key[i])
    canonical = [pl.lit(f'["{run_date}","'), pl.col("op"), pl.lit('",{')]
    for j, i in enumerate(order):
        canonical += [pl.lit(("," if j else "") + names[i] + ":"), token(i)]
    canonical.append(pl.lit("}]"))
    ws = " \t\r\n"
    frame = _streaming(
        events,
        [
            pl.col(_KEY),
            pl.col("op"),
            pl.concat_str(compact).alias("key"),
            pl.concat_str(canonical).alias("canon"),
            pl.col("b").str.strip_chars(ws).fill_null("null").alias("b"),
            pl.col("a").str.strip_chars(ws).fill_null("null").alias("a"),
            pl.col("ch").fill_null("null").alias("ch"),
        ],
    )
    sha = hashlib.sha256
    ids = [sha(c).hexdigest() for c in frame["canon"].cast(pl.Binary).to_list()]
    frame = frame.with_columns(pl.Series("eid", ids, dtype=pl.String))
    return _streaming(
        frame,
        [
            pl.col(_KEY),
            pl.concat_str(
                [
                    pl.lit('{"op":"'),
                    pl.col("op"),
                    pl.lit('","key":'),
                    pl.col("key"),
                    pl.lit(',"before":'),
                    pl.col("b"),
                    pl.lit(',"after":'),
                    pl.col("a"),
                    pl.lit(',"changed":'),
                    pl.col("ch"),
                    pl.lit(f',"run_date":"{run_date}","event_id":"'),
                    pl.col("eid"),
                    pl.lit('"}'),
                ]
            ).alias(_LINE),
        ],
    )
