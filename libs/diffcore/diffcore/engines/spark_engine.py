"""The Spark engine (PySpark 3.5, AWS Glue 5): the diff contract on a cluster.

Spark is the scheduler and the shuffle; the contract's record rules run in Python on the
executors, in `mapInArrow` functions that call the shared contract code (`diffcore.jsonvalue`
for parsing, leaves, equality and changed paths; `diffcore.events` for the event line and its
id). Nothing of the contract is rewritten in Spark SQL, so this engine cannot drift from the
Polars engine or the reference. Importing this module imports neither Polars nor PySpark;
PySpark is imported when an engine is built.

Pipeline (one run): one Spark job does the work (parse -> shuffle -> join, output cached),
a second writes the events; the driver only ever holds task lists and small stats rows.

1. Driver: resolve each snapshot to its files (`diffcore.sources`), HEAD their sizes, and cut
   them into *read tasks*: one per file, or, for an uncompressed file larger than
   `split_bytes`, one per byte range (gzip is not splittable; an array file is read whole by
   its first range). The number of join partitions follows the input size
   (`partition_bytes`, gzip weighted).
2. Parse stage (`mapInArrow`, one task per read task): read the bytes with `diffcore.store`
   (local or `s3://`; ranged GET on S3), split lines, check each record is JSON, an object,
   with its key, and emit `(key, side, text, file, range, line)` with the key's canonical
   JSON. Fast path (`fast_record_key`): orjson on the undecoded line and a key of strings,
   booleans or integers; every other line takes the careful path (exact parse, the error
   class and message). Bad records become error rows; each task also emits one *stats* row
   (records, lines and the first errors of its range). No leaf types here: see 6.
3. Shuffle: every row is hash-partitioned by the key (stats rows have a null key, bad rows a
   key no record can have).
4. Join stage (`join_partition`): the partition (bounded by `partition_bytes` of input) is
   sorted by (key, side) with Arrow - cheaper than Spark's row sort on these long binary
   rows - and joined by hand, a sort-merge full outer join, so that a duplicate key is
   *detected* (two rows of one side in a group), never multiplied. Unchanged pairs (two
   rows, equal bytes) are found and counted with Arrow compute, with no Python step per row;
   the other groups are parsed (`jsonvalue.loads_fast`, exact) and compared
   (`jsonvalue.changed_from_leaves`), and events formatted (`events.event_line_of_key_text`).
   Bad and stats rows pass through; each partition adds a stats row (counts per op,
   duplicate samples, the leaf types of the records it parsed). The output is persisted and
   only the stats rows are collected.
5. Line numbers: a record's line is its index within its range plus the number of lines of
   the earlier ranges of the same file (known from the stats rows). This is exact, needs no
   second pass and no global `zipWithIndex`, and works for files of any size. (Spark's
   `monotonically_increasing_id` is not a line number; `wholeTextFiles`/`binaryFile` would
   hold whole files in memory.)
6. Schema drift (`SparkEngine._schema_drift`) without parsing the byte-identical unchanged
   pairs: they give both snapshots the same leaf types, so only a path whose parsed types
   differ between the sides can drift; for those paths a small search job (regex prefilter,
   stops at the first hit) looks for the missing types in the unchanged records.
7. Write stage: the events are coalesced into ceil(changes / max_records_per_file)
   partitions; each task writes bounded part files (records and uncompressed bytes) to the
   staging location, named `*.staged` (no notified suffix), and returns name, records, bytes,
   SHA-256. The driver promotes them to `part-NNNNN.jsonl[.gz]` in (partition, sequence)
   order, removes parts of an earlier run, and writes the manifest last.

Skew (what can be skewed here, and what handles it):
- key frequency: by contract a key occurs at most once per side, so a join group has at most
  two rows (a duplicate fails the run after reading a bounded sample); missing/null keys, the
  classic join hot spot, never enter the shuffle (they are bad records);
- key hashing: keys are hashed with Murmur3 over their canonical JSON text, and the number of
  shuffle partitions follows the input size, so partitions stay even (bad records get
  distinct keys, so quarantine does not pile them into one partition);
- file sizes: big uncompressed files are split into byte ranges; a big gzip file is one task
  (not splittable - prefer many gzip parts); an array file is parsed whole by one task;
- record sizes: Arrow batches are cut by bytes as well as rows (`_BATCH_BYTES`), so a huge
  record does not make a huge batch with it;
- changes: the output is re-partitioned by the change count, and part files roll over by
  records and bytes, so one partition with many changes still writes bounded files.

Mixed types: records are parsed with Python's JSON (orjson when it is exact, the standard
library otherwise), never with `spark.read.json`, whose schema inference coerces a field that
is a number here and a string there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import diffcore
from diffcore import childpython, jsonvalue, layout, records, sources, store
from diffcore import manifest as mf
from diffcore.engine import RunResult
from diffcore.errors import DiffError, ErrorClass, excerpt
from diffcore.events import event_line_of_key_text
from diffcore.jsonvalue import canonical_json, get_path, json_type
from diffcore.output import GZIP_LEVEL, BadRecord, RunWriter, refuse_oversized_event
from diffcore.spec import SIDES, RunSpec

try:  # optional accelerator (the `orjson` extra); the standard library is the reference
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised on installs without the extra
    _orjson = None

ENGINE_NAME = "spark"
DEFAULT_SPLIT_BYTES = 128 * 1024 * 1024
# Input bytes per join partition (a gzip file counts `_GZIP_RATIO` times its size).
DEFAULT_PARTITION_BYTES = 64 * 1024 * 1024
_GZIP_RATIO = 5
# Arrow batches handed back to Spark: cut at this many rows or bytes, whichever comes first.
_BATCH_ROWS = 4096
_BATCH_BYTES = 16 * 1024 * 1024
_ERROR_SAMPLE = 5

# Row kinds. The parse stage emits records, bad records and one stats row per read task; all
# three go through the shuffle (stats with a null key, bad records with a spread-out key that
# no record can have), so that one job parses, joins and reports: the join stage passes bad
# and stats rows through and adds events and one stats row per partition.
KIND_RECORD, KIND_BAD, KIND_STATS, KIND_JOIN_STATS = 0, 1, 2, 3
# The key column of a bad row whose key cannot be read: no record's key starts so.
_UNREADABLE_KEY = "\x00bad "
KIND_EVENT = 0
PARSED_SCHEMA = (
    "kind tinyint, side tinyint, key string, text binary, file int, rng int, line bigint, "
    "info string"
)
JOINED_SCHEMA = (
    "kind tinyint, op string, line binary, info string, side tinyint, file int, rng int, "
    "lno bigint"
)
PARTS_SCHEMA = "partition int, seq int, path string, records bigint, bytes bigint, sha256 string"


class _Clock:
    """Wall time per phase, for the run's stats (logs, bench)."""

    def __init__(self) -> None:
        import time

        self._time = time.monotonic
        self._last = self._time()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = self._time()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------
# Record rules shared by every task (pure Python, unit-tested without Spark)


parse_record = jsonvalue.loads_fast  # exact, with orjson where it gives the same value


def record_key(obj: Any, key: tuple[str, ...]) -> tuple[ErrorClass | None, str]:
    """(None, canonical JSON of the key object) or (error class, message)."""
    if not isinstance(obj, dict):
        return ErrorClass.NOT_AN_OBJECT, f"record is a JSON {json_type(obj)}, not an object"
    try:
        return None, key_text(records.key_values(obj, key), key)
    except records.RecordError as bad:
        return bad.error_class, bad.message


def key_text(values: tuple[Any, ...], key: tuple[str, ...]) -> str:
    """The key column: canonical JSON of the key object (`{path: value}`)."""
    return canonical_json(dict(zip(key, values, strict=True)))


def fast_record_key(raw: bytes, key: tuple[str, ...]) -> str | None:
    """The canonical JSON of a valid record's key, on the fast path; None when the careful path
    (`parse_record` + `record_key`, exact error messages) must decide.

    Fast: orjson parses the bytes (validating UTF-8 and JSON) unless they may hold an integer
    beyond 64 bits, and the key values are strings, booleans or integers, for which orjson with
    sorted keys writes exactly `canonical_json` (the publisher's Kafka key relies on the same
    equivalence and tests it for every code point). Anything else (not JSON for orjson, not an
    object, a missing/null key, a float or nested key value) returns None.
    """
    if _orjson is None or jsonvalue.may_hold_inexact_number(raw) or jsonvalue.too_deep(raw):
        return None
    try:
        obj = _orjson.loads(raw)
    except _orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or jsonvalue.hides_duplicate_members(raw, obj):
        return None
    values = {}
    for path in key:
        value = obj.get(path) if "." not in path else get_path(obj, path)
        kind = type(value)
        # orjson gives an int only in [-2**63, 2**64) (a float beyond): always exact here.
        if kind is str or kind is bool or kind is int:
            values[path] = value
        else:
            return None
    return _orjson.dumps(values, option=_orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class ReadTask:
    side: int  # 0 before, 1 after
    file: int  # index into the side's file list
    path: str
    start: int
    end: int  # -1: to the end of the file
    rng: int  # range index within the file
    gz: bool


class _RangeLines:
    """The lines (bytes, with their newline) that a byte range [start, end) of a file owns.

    A range owns the lines that *start* inside it (Hadoop's convention): it skips the rest of
    a line begun before `start` and finishes the line under way at `end`. `count` is the
    number of lines it produced (blank ones included), which the driver turns into the line
    offsets of the later ranges of the file.
    """

    def __init__(self, stream: Any, start: int, end: int) -> None:
        self.stream, self.start, self.end, self.count = stream, start, end, 0

    def __iter__(self) -> Iterator[bytes]:
        pos = self.start
        if self.start > 0:  # the stream was opened at start - 1
            pos = self.start - 1 + len(self.stream.readline())
        while self.end < 0 or pos < self.end:
            line = self.stream.readline()
            if not line:
                return
            pos += len(line)
            self.count += 1
            yield line


def iter_task_lines(
    task: ReadTask, counter: list[int]
) -> Iterator[tuple[int, bytes] | sources.RawRecord]:
    """The records of one read task, cut by `diffcore.sources` (the rules every engine uses:
    NDJSON or JSON array per file, BOM, blank lines, 1-based lines): NDJSON lines as
    `(line, bytes)`, not yet decoded (`sources.iter_ndjson_raw`), array elements as
    `RawRecord`s. `counter[0]` receives the number of lines the task read (for the line offsets
    of later ranges of the same file)."""
    whole = task.start == 0 and task.end < 0  # a whole file (gzip, array or small)
    if sources.detect_format(task.path) == "array":
        if whole or task.rng == 0:  # an array file is read whole by its first range
            for record in sources.iter_records(task.path):
                counter[0] = max(counter[0], record.line)
                yield record
        return
    if whole:
        with sources.open_input(task.path) as f:
            for item in sources.iter_ndjson_raw(f):
                counter[0] = item[0]
                yield item
        return
    with store.open_read(task.path, max(task.start - 1, 0)) as raw:  # S3: a ranged GET
        lines = _RangeLines(raw, task.start, task.end)
        try:
            yield from sources.iter_ndjson_raw(lines)
        finally:
            counter[0] = lines.count


# ------------------------------------------------------------------------------------------
# Stage functions (run on executors inside mapInArrow)


class _BatchBuilder:
    """Collects rows column by column and cuts Arrow record batches by rows and bytes."""

    def __init__(self, schema: Any, names: tuple[str, ...]) -> None:
        self.schema = schema
        self.names = names
        self.columns: list[list[Any]] = [[] for _ in names]
        self.nbytes = 0

    def add(self, row: tuple[Any, ...], size: int = 0) -> Any:
        for column, value in zip(self.columns, row, strict=False):
            column.append(value)
        self.nbytes += size
        if len(self.columns[0]) >= _BATCH_ROWS or self.nbytes >= _BATCH_BYTES:
            return self.flush()
        return None

    def flush(self) -> Any:
        import pyarrow as pa

        if not self.columns[0]:
            return None
        batch = pa.RecordBatch.from_arrays(
            [pa.array(col, type=self.schema.field(i).type) for i, col in enumerate(self.columns)],
            schema=self.schema,
        )
        self.columns = [[] for _ in self.names]
        self.nbytes = 0
        return batch


def _arrow_schema(ddl: str) -> Any:
    import pyarrow as pa

    types = {
        "tinyint": pa.int8(),
        "string": pa.string(),
        "binary": pa.binary(),
        "int": pa.int32(),
        "bigint": pa.int64(),
    }
    fields = []
    for part in ddl.split(","):
        name, kind = part.split()
        fields.append(pa.field(name, types[kind]))
    return pa.schema(fields)


def parse_tasks(batches: Iterable[Any], key: tuple[str, ...], keep_bad: bool) -> Iterator[Any]:
    """Parse stage: read tasks in, record / bad-record / stats rows out (see PARSED_SCHEMA)."""
    schema = _arrow_schema(PARSED_SCHEMA)
    out = _BatchBuilder(schema, tuple(schema.names))
    for batch in batches:
        for t in batch.to_pylist():
            task = ReadTask(**t)  # the columns of `_tasks_df` are its fields
            yield from _parse_one(task, key, keep_bad, out, schema)
    last = out.flush()
    if last is not None:
        yield last


_JSON_WS = b" \t\r\n"


class _RecordRows:
    """The record rows of one read task, column by column: only key, text and line vary, so
    a row costs three appends (the per-row cost of the parse stage is what bounds it)."""

    def __init__(self, task: ReadTask, schema: Any) -> None:
        self.task, self.schema = task, schema
        self.keys: list[str] = []
        self.texts: list[bytes] = []
        self.lines: list[int] = []
        self.nbytes = 0

    def add(self, key: str, text: bytes, line: int) -> Any:
        """Add a row; the batch when it is full (the fast path in `_parse_one` inlines this)."""
        self.keys.append(key)
        self.texts.append(text)
        self.lines.append(line)
        self.nbytes += len(text)
        if len(self.keys) >= _BATCH_ROWS or self.nbytes >= _BATCH_BYTES:
            return self.flush()
        return None

    def flush(self) -> Any:
        import pyarrow as pa

        n = len(self.keys)
        if not n:
            return None
        t = self.task
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array([KIND_RECORD] * n, pa.int8()),
                pa.array([t.side] * n, pa.int8()),
                pa.array(self.keys, pa.string()),
                pa.array(self.texts, pa.binary()),
                pa.array([t.file] * n, pa.int32()),
                pa.array([t.rng] * n, pa.int32()),
                pa.array(self.lines, pa.int64()),
                pa.nulls(n, pa.string()),
            ],
            schema=self.schema,
        )
        # Cleared in place: `_parse_one` holds these lists (Arrow copied them into the batch).
        self.keys.clear()
        self.texts.clear()
        self.lines.clear()
        self.nbytes = 0
        return batch


def _parse_one(
    task: ReadTask, key: tuple[str, ...], keep_bad: bool, out: _BatchBuilder, schema: Any
) -> Iterator[Any]:
    n_records = bad = unreadable = 0
    counter = [0]
    errors: list[dict[str, Any]] = []
    side = SIDES[task.side]
    rows = _RecordRows(task, schema)
    keys, texts, lines = rows.keys, rows.texts, rows.lines
    fast_key = fast_record_key

    def bad_row(line: int, cls: ErrorClass, message: str, text: str) -> Any:
        nonlocal bad, unreadable
        bad += 1
        if len(errors) < _ERROR_SAMPLE:
            errors.append(
                {"line": line, "class": cls.value, "message": message, "excerpt": excerpt(text)}
            )
        if keep_bad:
            info = json.dumps({"class": cls.value, "message": message})
            raw = text.encode("utf-8", "surrogatepass")
            values = records.key_of_bad_record(raw, message, key)
            if values is None:  # a key no record has (records' keys are JSON objects), spread
                unreadable += 1
                row_key = f"{_UNREADABLE_KEY}{task.side}/{task.file}/{task.rng}/{line}"
            else:  # the key it names: the join stage withholds that key's event (§6)
                row_key = key_text(values, key)
            return out.add(
                (KIND_BAD, task.side, row_key, raw, task.file, task.rng, line, info), len(raw)
            )
        return None

    try:
        for item in iter_task_lines(task, counter):
            if type(item) is tuple:  # an NDJSON line: the fast path first
                text = item[1].strip(_JSON_WS)
                found = fast_key(text, key)
                if found is not None:
                    n_records += 1
                    keys.append(found)
                    texts.append(text)
                    lines.append(item[0])
                    rows.nbytes += len(text)
                    if len(keys) >= _BATCH_ROWS or rows.nbytes >= _BATCH_BYTES:
                        yield rows.flush()
                    continue
                rec = sources.ndjson_record(task.path, item[0], item[1])
            else:
                rec = item
            # The careful path: exact parse, and the error message of the record's problem
            # (`diffcore.records`, the same text in every engine).
            if rec.error is not None:
                message = f"invalid JSON: {rec.error}"
                b = bad_row(rec.line, ErrorClass.MALFORMED_JSON, message, rec.text)
            else:
                try:
                    value = records.parse_object(rec.text)
                    found = key_text(records.key_values(value, key), key)
                except records.RecordError as problem:
                    b = bad_row(rec.line, problem.error_class, problem.message, rec.text)
                else:
                    n_records += 1
                    b = rows.add(found, rec.text.strip().encode("utf-8"), rec.line)
            if b is not None:
                yield b
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        errors.insert(
            0,
            {
                "line": None,
                "class": ErrorClass.IO_ERROR.value,
                "message": f"cannot read the {side} file: {exc}",
                "excerpt": None,
            },
        )
    b = rows.flush()
    if b is not None:
        yield b
    stats = {
        "records": n_records,
        "bad": bad,
        "unreadable_keys": unreadable,
        "lines": counter[0],
        "errors": errors,
    }
    b = out.add((KIND_STATS, task.side, None, None, task.file, task.rng, None, json.dumps(stats)))
    if b is not None:
        yield b


JOIN_COLUMNS = ("kind", "key", "side", "text", "file", "rng", "line", "info")


def join_partition(batches: Iterable[Any], run_date: str, ignore: tuple[str, ...]) -> Iterator[Any]:
    """Join stage: the rows of one shuffle partition in (see JOIN_COLUMNS); events, the bad and
    stats rows passed through, and one stats row of the partition out (see JOINED_SCHEMA).

    The partition (bounded by `partition_bytes` of input) is gathered and sorted by (key,
    side) with Arrow, which is cheaper than Spark's row sort on these long binary rows.
    Unchanged pairs (same key, one row per side, equal bytes) are then found and counted with
    Arrow compute, without a Python step per row: they are ~90% of a daily snapshot. The rest
    goes through `_Joiner` in Python.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = _arrow_schema(JOINED_SCHEMA)
    out = _BatchBuilder(schema, tuple(schema.names))
    joiner = _Joiner(run_date, ignore, out)
    batches_kept = []
    withheld: set[str] = set()  # keys a bad row still names: no event for them (§6)
    for batch in batches:
        is_record = pc.equal(batch.column("kind"), KIND_RECORD)
        if not pc.all(is_record).as_py():
            for r in batch.filter(pc.invert(is_record)).to_pylist():
                k = r["key"]
                if r["kind"] == KIND_BAD and not k.startswith(_UNREADABLE_KEY):
                    withheld.add(k)
                b = out.add(_passed_through(r), 0 if r["text"] is None else len(r["text"]))
                if b is not None:
                    yield b
            batch = batch.filter(is_record)
        if batch.num_rows:
            batches_kept.append(batch)
    if batches_kept:
        table = pa.Table.from_batches(batches_kept)
        del batches_kept
        if withheld:  # the records of a withheld key leave the join (each key counted once)
            held = pc.is_in(table.column("key"), value_set=pa.array(sorted(withheld), pa.string()))
            gone = table.filter(held)
            joiner.counts["withheld"] += len(pc.unique(gone.column("key")))
            for text, side in zip(
                gone.column("text").to_pylist(), gone.column("side").to_pylist(), strict=True
            ):
                joiner.leaves(text, side)  # still valid records: their types count (drift)
            table = table.filter(pc.invert(held))
        table = table.take(pc.sort_indices(table, [("key", "ascending"), ("side", "ascending")]))
        yield from joiner.rows(_without_unchanged_pairs(table.combine_chunks(), joiner.counts))
    b = out.add((KIND_JOIN_STATS, None, None, json.dumps(joiner.stats()), None, None, None, None))
    if b is not None:
        yield b
    last = out.flush()
    if last is not None:
        yield last


def _passed_through(r: dict[str, Any]) -> tuple[Any, ...]:
    """A bad-record or stats row of the parse stage, in the join stage's schema."""
    return (r["kind"], None, r["text"], r["info"], r["side"], r["file"], r["rng"], r["line"])


def _without_unchanged_pairs(table: Any, counts: dict[str, int]) -> Any:
    """The rows of whole key groups (sorted by key, side) minus the unchanged pairs, which are
    counted: a group of exactly two rows, before then after, with equal bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    if n < 2:
        return table
    keys = table.column("key").combine_chunks()
    sides = table.column("side").combine_chunks()
    texts = table.column("text").combine_chunks()
    head, tail = slice(0, n - 1), slice(1, n)
    same_key = pc.equal(keys[head], keys[tail])  # row i and row i + 1
    pair = pc.and_(
        pc.and_(same_key, pc.equal(texts[head], texts[tail])),
        pc.and_(pc.equal(sides[head], 0), pc.equal(sides[tail], 1)),
    )
    false = pa.array([False])
    # ... and the group is exactly those two rows (a third row would be a duplicate key).
    alone_before = pc.invert(pa.concat_arrays([false, same_key])[head])
    alone_after = pc.invert(pa.concat_arrays([same_key, false])[tail])
    unchanged = pc.and_(pair, pc.and_(alone_before, alone_after))
    found = pc.sum(unchanged).as_py() or 0
    if not found:
        return table
    counts["unchanged"] += found
    drop = pc.or_(pa.concat_arrays([unchanged, false]), pa.concat_arrays([false, unchanged]))
    return table.filter(pc.invert(drop))


class _Joiner:
    """The Python side of the join: key groups to events (and duplicate-key samples), with the
    leaf types of every record it parses (schema drift, see `SparkEngine._schema_drift`)."""

    def __init__(self, run_date: str, ignore: tuple[str, ...], out: _BatchBuilder) -> None:
        self.run_date, self.ignore, self.out = run_date, ignore, out
        self.counts = {"c": 0, "u": 0, "d": 0, "unchanged": 0, "withheld": 0}
        self.dups: list[dict[str, Any]] = []
        self.ndups = 0
        self.types: tuple[set[tuple[str, str]], set[tuple[str, str]]] = (set(), set())

    def stats(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "duplicates": self.ndups,
            "dup_sample": self.dups,
            "types": [sorted(t) for t in self.types],
        }

    def rows(self, table: Any) -> Iterator[Any]:
        """Events of the whole key groups of `table` (sorted by key, side)."""
        if table.num_rows == 0:
            return
        cols = [table.column(c).to_pylist() for c in ("key", "side", "text", "file", "rng", "line")]
        keys, sides, texts, files, rngs, lines = cols
        group: list[tuple[int, bytes, int, int, int]] = []
        group_key = keys[0]
        for i, k in enumerate(keys):
            if k != group_key:
                b = self.close(group_key, group)
                if b is not None:
                    yield b
                group_key, group = k, []
            group.append((sides[i], texts[i], files[i], rngs[i], lines[i]))
        b = self.close(group_key, group)
        if b is not None:
            yield b

    def leaves(self, text: bytes, side: int) -> dict[str, Any]:
        """The record's leaves (exact parse), its leaf types added to the side's."""
        out: dict[str, Any] = {}
        # (every row passed `fast_record_key` or the careful path: members checked)
        jsonvalue.leaves_into(jsonvalue.loads_fast(text, members_checked=True), "", out)
        self.types[side].update(jsonvalue.types_of_leaves(out).items())
        return out

    def emit(
        self, op: str, k: str, before: bytes | None, after: bytes | None, changed: list[str] | None
    ) -> Any:
        self.counts[op] += 1
        line = event_line_of_key_text(
            op,
            k,  # the canonical JSON of the key (see `fast_record_key` / `record_key`)
            None if before is None else before.decode("utf-8"),
            None if after is None else after.decode("utf-8"),
            changed,
            self.run_date,
        ).encode("utf-8")
        return self.out.add((KIND_EVENT, op, line, None, None, None, None, None), len(line))

    def close(self, k: str, rows: list[tuple[int, bytes, int, int, int]]) -> Any:
        before = [r for r in rows if r[0] == 0]
        after = [r for r in rows if r[0] == 1]
        if len(before) > 1 or len(after) > 1:
            self.ndups += 1
            if len(self.dups) < _ERROR_SAMPLE:
                side = 0 if len(before) > 1 else 1
                where = [[r[2], r[3], r[4]] for r in (before if side == 0 else after)]
                self.dups.append({"key": k, "side": side, "at": where[:_ERROR_SAMPLE]})
            return None
        if not after:
            self.leaves(before[0][1], 0)
            return self.emit("d", k, before[0][1], None, None)
        if not before:
            self.leaves(after[0][1], 1)
            return self.emit("c", k, None, after[0][1], None)
        b, a = before[0][1], after[0][1]  # byte-equal pairs were counted by Arrow
        changed = jsonvalue.changed_from_leaves(self.leaves(b, 0), self.leaves(a, 1), self.ignore)
        if not changed:
            self.counts["unchanged"] += 1
            return None
        return self.emit("u", k, b, a, changed)


def search_leaf_types(
    batches: Iterable[Any], key: tuple[str, ...], wanted: list[dict[str, list[str]]]
) -> Iterator[Any]:
    """Drift search stage: read tasks in; the `(path, type)` pairs of `wanted[task side]` that
    some valid record of those tasks holds, out. A regex prefilter
    (`jsonvalue.leaf_type_prefilter`; texts with escapes always pass) picks the records to
    parse; a task stops once it found all its pairs."""
    import re

    import pyarrow as pa

    patterns = [re.compile(jsonvalue.leaf_type_prefilter(w).encode("utf-8")) for w in wanted]
    found: set[tuple[str, str]] = set()
    for batch in batches:
        for t in batch.to_pylist():
            task = ReadTask(**t)  # the columns of `_tasks_df` are its fields
            pattern = patterns[task.side]
            missing = {(p, k) for p, kinds in wanted[task.side].items() for k in kinds} - found
            for item in iter_task_lines(task, [0]):
                if not missing:
                    break
                if type(item) is tuple:
                    raw = item[1]
                elif item.error is None:
                    raw = item.text.encode("utf-8", "surrogatepass")
                else:
                    continue
                if pattern.search(raw) is None and b"\\u" not in raw and b"\\/" not in raw:
                    continue
                try:
                    value = parse_record(raw)
                except (ValueError, RecursionError):
                    continue
                if record_key(value, key)[0] is not None:
                    continue  # a bad record's types do not count
                for pair in jsonvalue.leaf_types(value).items():
                    if pair in missing:
                        missing.discard(pair)
                        found.add(pair)
    pairs = sorted(found)
    yield pa.RecordBatch.from_arrays(
        [
            pa.array([p for p, _ in pairs], pa.string()),
            pa.array([k for _, k in pairs], pa.string()),
        ],
        names=["path", "type"],
    )


def _write_staged(
    lines: Iterator[bytes],
    staging: str,
    stem: str,
    suffix: str,
    gz: bool,
    max_records: int,
    max_bytes: int,
) -> Iterator[tuple[int, str, int, int, str]]:
    """Write lines into bounded files `<staging>/<stem>-<seq><suffix>`; yield their metadata."""
    seq = 0
    buf = bytearray()
    n = 0

    def flush() -> tuple[int, str, int, int, str]:
        nonlocal seq, buf, n
        # `buf` itself, not a copy (it is rebound below); mtime=0: the same bytes every run.
        data = gzip.compress(buf, compresslevel=GZIP_LEVEL, mtime=0) if gz else buf
        path = store.join(staging, f"{stem}-{seq:05d}{suffix}")
        store.write_bytes(path, data)
        meta = (seq, path, n, len(data), hashlib.sha256(data).hexdigest())
        seq, buf, n = seq + 1, bytearray(), 0
        return meta

    for line in lines:
        if n and (n >= max_records or len(buf) + len(line) + 1 > max_bytes):
            yield flush()
        buf += line
        buf += b"\n"
        n += 1
    if n:
        yield flush()


def write_partition(
    batches: Iterable[Any], staging: str, gz: bool, max_records: int, max_bytes: int
) -> Iterator[Any]:
    """Write stage: event lines in, one metadata row per staged part file out."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    partition = ctx.partitionId() if ctx else 0
    attempt = ctx.attemptNumber() if ctx else 0

    def lines() -> Iterator[bytes]:
        for batch in batches:
            for line in batch.column(0).to_pylist():
                if len(line) > layout.MAX_EVENT_BYTES:
                    refuse_oversized_event(line)  # the task fails; the driver names the class
                yield line

    # `.staged[.gz]`: not a notified suffix; the attempt number keeps a retried task's files apart.
    suffix = ".staged.gz" if gz else ".staged"
    rows = list(
        _write_staged(
            lines(), staging, f"p{partition:05d}-a{attempt}", suffix, gz, max_records, max_bytes
        )
    )
    if rows:
        yield _parts_batch(partition, rows)


def write_bad_records(
    batches: Iterable[Any], staging: str, paths: list[list[str]], offsets: dict[str, int]
) -> Iterator[Any]:
    """Quarantine: bad rows in (one partition, in input order), one staged file of
    `output.BadRecord` lines out (the format every engine writes to `_bad_records.ndjson`)."""

    def lines() -> Iterator[bytes]:
        for batch in batches:
            for r in batch.to_pylist():
                info = json.loads(r["info"])
                bad = BadRecord(
                    reason=info["class"],
                    message=info["message"],
                    side=SIDES[r["side"]],
                    file=paths[r["side"]][r["file"]],
                    line=r["line"] + offsets.get(f"{r['side']}/{r['file']}/{r['rng']}", 0),
                    raw=r["text"].decode("utf-8", "replace"),
                )
                yield bad.to_line().encode("utf-8")

    rows = list(_write_staged(lines(), staging, "bad-records", ".staged", False, 2**62, 2**62))
    yield _parts_batch(0, rows)


def _parts_batch(partition: int, rows: list[tuple[int, str, int, int, str]]) -> Any:
    """One PARTS_SCHEMA batch: the staged files `_write_staged` reported for a partition."""
    import pyarrow as pa

    return pa.RecordBatch.from_arrays(
        [
            pa.array([partition] * len(rows), pa.int32()),
            pa.array([r[0] for r in rows], pa.int32()),
            pa.array([r[1] for r in rows], pa.string()),
            pa.array([r[2] for r in rows], pa.int64()),
            pa.array([r[3] for r in rows], pa.int64()),
            pa.array([r[4] for r in rows], pa.string()),
        ],
        schema=_arrow_schema(PARTS_SCHEMA),
    )


# ------------------------------------------------------------------------------------------
# Driver side


def local_session(
    app_name: str = "diffcore-spark", cores: int = 2, shuffle_partitions: int = 4, **conf: str
) -> Any:
    """A local SparkSession for tests, benches and local runs (`local[cores]`, no UI).

    Executors run this very interpreter (PYSPARK_PYTHON) with this process's import path
    (`diffcore.childpython`): the Python workers that the JVM starts inherit this process's
    environment, and `sys.executable` alone lacks a PEX's dependencies.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["PYTHONPATH"] = childpython.pythonpath(os.environ.get("PYTHONPATH"))
    # Local means loopback: no "hostname resolves to a loopback address" guess, no open port on
    # the machine's network interface.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(cores))
        .config("spark.driver.memory", conf.pop("driver_memory", "2g"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    for k, v in conf.items():
        builder = builder.config(k.replace("__", "."), v)
    return builder.getOrCreate()


class SparkEngine:
    """`diffcore.engine.Engine` on Spark. See the module docstring for the pipeline."""

    name = ENGINE_NAME

    def __init__(
        self,
        spark: Any = None,
        *,
        staging: str | None = None,
        split_bytes: int = DEFAULT_SPLIT_BYTES,
        shuffle_partitions: int | None = None,
        partition_bytes: int = DEFAULT_PARTITION_BYTES,
    ) -> None:
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession() or local_session()
        self.spark = spark
        self.staging = staging
        self.split_bytes = split_bytes
        self.shuffle_partitions = shuffle_partitions
        self.partition_bytes = partition_bytes
        self.last_stats: dict[str, Any] = {}

    @property
    def version(self) -> str:
        return f"{diffcore.__version__} (spark {self.spark.version})"

    # -- run ---------------------------------------------------------------------------------

    def run(self, spec: RunSpec) -> RunResult:
        started = _now()
        # First write of a run (docs/decisions.md): `begin()` removes the manifest, so D is
        # incomplete from now on and a rerun that fails leaves no manifest behind, old or new.
        writer = RunWriter(spec.run_folder, spec.output)
        try:
            writer.begin()
        except OSError as exc:
            raise DiffError(ErrorClass.IO_ERROR, f"cannot write {spec.run_folder}: {exc}") from None
        token = writer.run_id
        if self.staging:
            staging = store.join(self.staging, f"diffcore-spark-{token}")
        elif store.is_s3(spec.out):
            staging = store.join(spec.out, "_staging", token)
        else:
            staging = tempfile.mkdtemp(prefix=f"diffcore-spark-{token}-")
        cached: list[Any] = []
        try:
            return self._run(spec, writer, started, staging, cached)
        except BaseException as exc:
            writer.abort()  # gives the date back; no manifest
            # A task that died of a contract error (an oversized event) or of I/O keeps that
            # class; anything else stays what it is (for a Spark error, the caller's engine_error).
            if isinstance(exc, Exception) and not isinstance(exc, DiffError):
                named = DiffError.from_unexpected(exc)
                if named.error_class is not ErrorClass.ENGINE_ERROR:
                    raise named from exc
            raise
        finally:
            for df in cached:
                df.unpersist()
            _remove_tree(staging)

    def _run(
        self, spec: RunSpec, writer: RunWriter, started: str, staging: str, cached: list[Any]
    ) -> RunResult:
        from pyspark.sql import functions as F

        spark = self.spark
        clock = _Clock()
        files = [self._files(spec, side) for side in SIDES]
        tasks, input_bytes = self._read_tasks(files)

        # -- one job: parse stage -> shuffle by key -> join stage; only stats reach the driver
        keep_bad = spec.bad_records == "quarantine"
        key = spec.key
        run_date, ignore = spec.run_date, spec.ignore
        partitions = self.shuffle_partitions or max(
            spark.sparkContext.defaultParallelism, math.ceil(input_bytes / self.partition_bytes)
        )
        joined = (
            self._tasks_df(tasks)
            .mapInArrow(lambda it: parse_tasks(it, key, keep_bad), PARSED_SCHEMA)
            .repartition(partitions, "key")  # sorted within partitions by the join stage
            .select(*JOIN_COLUMNS)
            .mapInArrow(lambda it: join_partition(it, run_date, ignore), JOINED_SCHEMA)
            .persist()
        )
        cached.append(joined)
        stats, join_stats = [], []
        for r in (
            joined.where(F.col("kind").isin(KIND_STATS, KIND_JOIN_STATS))
            .select("kind", "side", "file", "rng", "info")
            .collect()
        ):
            if r["kind"] == KIND_STATS:
                stats.append((r["side"], r["file"], r["rng"], json.loads(r["info"])))
            else:
                join_stats.append(json.loads(r["info"]))
        clock.lap("parse_join")
        offsets, per_file, bad_total = self._check_parse(spec, files, stats)
        bad_per_side, unreadable = [0, 0], [0, 0]
        for side, _file, _rng, s in stats:
            bad_per_side[side] += s["bad"]
            unreadable[side] += s["unreadable_keys"]
        counts = {"c": 0, "u": 0, "d": 0, "unchanged": 0, "withheld": 0}
        dups: list[dict[str, Any]] = []
        ndups = 0
        for s in join_stats:
            for k, v in s["counts"].items():
                counts[k] += v
            ndups += s["duplicates"]
            dups += s["dup_sample"]
        if ndups:
            raise self._duplicate_error(dups, ndups, files, offsets)
        drift = self._schema_drift(tasks, key, join_stats)
        clock.lap("drift")

        # -- write stage (staging), then promotion
        changes = counts["c"] + counts["u"] + counts["d"]
        out = spec.output
        staged: list[tuple[int, int, str, int, int, str]] = []
        if changes:
            n_out = max(1, min(partitions, math.ceil(changes / out.max_records_per_file)))
            gz, max_records, max_bytes = out.gzip, out.max_records_per_file, out.max_bytes_per_file
            stage_dir = store.join(staging, "parts")
            staged = sorted(
                (r["partition"], r["seq"], r["path"], r["records"], r["bytes"], r["sha256"])
                for r in joined.where(F.col("kind") == KIND_EVENT)
                .select("line")
                .coalesce(n_out)
                .mapInArrow(
                    lambda it: write_partition(it, stage_dir, gz, max_records, max_bytes),
                    PARTS_SCHEMA,
                )
                .collect()
            )
        bad_staged = None
        if bad_total and keep_bad:
            paths = [list(f) for f in files]
            bad_dir = store.join(staging, "bad")
            meta = (
                joined.where(F.col("kind") == KIND_BAD)
                .select(
                    "side",
                    "file",
                    "rng",
                    F.col("lno").alias("line"),
                    F.col("line").alias("text"),
                    "info",
                )
                .orderBy("side", "file", "rng", "line")
                .coalesce(1)
                .mapInArrow(lambda it: write_bad_records(it, bad_dir, paths, offsets), PARTS_SCHEMA)
                .collect()
            )
            bad_staged = meta[0]["path"] if meta else None

        clock.lap("write")
        data_files, bad_name = self._promote(writer, staged, bad_staged)
        manifest = mf.Manifest(
            run_date=spec.run_date,
            engine=mf.Engine(ENGINE_NAME, self.version),
            key=spec.key,
            ignored=spec.ignore,
            before=self._side(spec.before, files[0], per_file[0], bad_per_side[0], unreadable[0]),
            after=self._side(spec.after, files[1], per_file[1], bad_per_side[1], unreadable[1]),
            counts=mf.Counts(bad_records=bad_total if keep_bad else 0, **counts),
            files=tuple(data_files),
            schema_drift=drift,
            started_at=started,
            finished_at=_now(),
            bad_records_file=bad_name,
        )
        writer.write_manifest(manifest)  # last
        clock.lap("promote")
        self.last_stats = {
            "partitions": partitions,
            "read_tasks": len(tasks),
            "staged": len(staged),
            "seconds": clock.laps,
        }
        return RunResult(folder=spec.run_folder, manifest=manifest)

    # -- driver helpers ----------------------------------------------------------------------

    def _files(self, spec: RunSpec, side: str) -> tuple[str, ...]:
        location = spec.location(side)  # type: ignore[arg-type]
        try:
            found = tuple(sources.resolve(location))  # contract section 1
        except OSError as exc:  # store.StoreError too: no such bucket, access denied
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot list the {side} snapshot {location}: {exc}"
            ) from None
        if not found and side not in spec.allow_empty:
            raise DiffError(
                ErrorClass.EMPTY_SNAPSHOT, f"the {side} snapshot has no data files", file=location
            )
        return found

    def _read_tasks(self, files: list[tuple[str, ...]]) -> tuple[list[ReadTask], int]:
        """The read tasks, and the input size (gzip files weighted) that sizes the join."""
        tasks = []
        total = 0
        for side, paths in enumerate(files):
            for i, path in enumerate(paths):
                gz = sources.is_gzip(path)
                try:
                    size = store.size(path)
                except Exception as exc:  # noqa: BLE001 - OSError, botocore errors too
                    raise DiffError(
                        ErrorClass.IO_ERROR, f"cannot read {path}: {exc}", file=path
                    ) from None
                total += size * (_GZIP_RATIO if gz else 1)
                if gz or size <= self.split_bytes:
                    tasks.append(ReadTask(side, i, path, 0, -1, 0, gz))
                    continue
                for rng, start in enumerate(range(0, size, self.split_bytes)):
                    end = start + self.split_bytes
                    tasks.append(
                        ReadTask(side, i, path, start, -1 if end >= size else end, rng, False)
                    )
        return tasks, total

    def _tasks_df(self, tasks: list[ReadTask]) -> Any:
        rows = [(t.side, t.file, t.path, t.start, t.end, t.rng, t.gz) for t in tasks]
        schema = (
            "side tinyint, file int, path string, start bigint, end bigint, rng int, gz boolean"
        )
        # One read task per partition (the driver holds only the task list, never data).
        rdd = self.spark.sparkContext.parallelize(rows, max(1, len(rows)))
        return self.spark.createDataFrame(rdd, schema)

    def _check_parse(
        self, spec: RunSpec, files: list[tuple[str, ...]], stats: list[tuple[int, int, int, dict]]
    ) -> tuple[dict[str, int], list[list[int]], int]:
        stats.sort(key=lambda s: (s[0], s[1], s[2]))
        offsets: dict[str, int] = {}
        running: dict[tuple[int, int], int] = {}
        per_file = [[0] * len(f) for f in files]
        valid = [0, 0]
        bad_total = 0
        candidates: list[tuple[tuple[int, int, int, int], dict, int, int, int | None]] = []
        for side, file, rng, s in stats:
            base = running.get((side, file), 0)
            offsets[f"{side}/{file}/{rng}"] = base
            running[(side, file)] = base + s["lines"]
            # A file's records: every non-blank line, bad ones included (as every engine).
            per_file[side][file] += s["records"] + s["bad"]
            valid[side] += s["records"]
            bad_total += s["bad"]
            for e in s["errors"]:
                line = None if e["line"] is None else e["line"] + base
                io = e["class"] == ErrorClass.IO_ERROR.value
                # An unreadable file always stops the run; bad records only in fail mode.
                if io or spec.bad_records == "fail":
                    candidates.append(
                        ((0 if io else 1, side, file, line or 0), e, side, file, line)
                    )
        if candidates:
            _, e, side, file, line = min(candidates, key=lambda c: c[0])
            raise DiffError(
                ErrorClass(e["class"]),
                e["message"],
                file=files[side][file],
                line=line,
                excerpt=e["excerpt"],
            )
        for side, name in enumerate(SIDES):
            if files[side] and valid[side] == 0 and name not in spec.allow_empty:
                raise DiffError(
                    ErrorClass.EMPTY_SNAPSHOT,
                    f"the {name} snapshot has no records ({len(files[side])} file(s))",
                    file=spec.location(name),
                )
        return offsets, per_file, bad_total

    def _schema_drift(
        self, tasks: list[ReadTask], key: tuple[str, ...], join_stats: list[dict[str, Any]]
    ) -> mf.SchemaDrift:
        """Schema drift from the leaf types of the records the join parsed (inserts, deletes,
        byte-different pairs: `P_before`, `P_after`), without parsing the byte-identical
        unchanged pairs (`U`), which give the same types to both snapshots.

        A path's full types are `P_side | U`, so only a path whose parsed types differ between
        the sides can drift, and for it only `U`'s types are missing. A valid before record
        holding a type not in `P_before` must be an unchanged one (every other before record
        was parsed), and so must an after record holding a type not in `P_after`: a second
        job (`search_leaf_types`, only when some path differs) looks for the types not in
        `P_before` in the before snapshot, and for those in `P_before` but not in `P_after`
        in the after snapshot; what it finds is in `U`, hence in both snapshots."""
        types: list[dict[str, set[str]]] = [{}, {}]
        for s in join_stats:
            for side in (0, 1):
                for path, kind in s["types"][side]:
                    types[side].setdefault(path, set()).add(kind)
        wanted: list[dict[str, list[str]]] = [{}, {}]
        for path in types[0].keys() | types[1].keys():
            b, a = types[0].get(path, set()), types[1].get(path, set())
            if b != a:
                wanted[0][path] = sorted(set(jsonvalue.TYPE_START) - b)
                wanted[1][path] = sorted(b - a)
        search = [t for t in tasks if any(wanted[t.side].values())]
        if search:
            found = (
                self._tasks_df(search)
                .mapInArrow(
                    lambda it: search_leaf_types(it, key, wanted), "path string, type string"
                )
                .collect()
            )
            for r in found:
                for side in (0, 1):
                    types[side].setdefault(r["path"], set()).add(r["type"])
        return mf.schema_drift(types[0], types[1])

    def _duplicate_error(
        self, dups: list[dict], ndups: int, files: list[tuple[str, ...]], offsets: dict[str, int]
    ) -> DiffError:
        d = min(dups, key=lambda d: (d["side"], d["at"][0]))
        side = d["side"]
        where = [
            f"{files[side][f]}:{line + offsets.get(f'{side}/{f}/{r}', 0)}"
            for f, r, line in sorted(d["at"])
        ]
        f0, r0, l0 = sorted(d["at"])[0]
        return DiffError(
            ErrorClass.DUPLICATE_KEY,
            f"key {d['key']} occurs {len(d['at'])} times in the {SIDES[side]} snapshot "
            f"(at {', '.join(where)}); {ndups} duplicate key(s) in all",
            file=files[side][f0],
            line=l0 + offsets.get(f"{side}/{f0}/{r0}", 0),
            excerpt=d["key"],
        )

    @staticmethod
    def _side(
        location: str, paths: tuple[str, ...], counts: list[int], bad: int, unreadable: int
    ) -> mf.InputSide:
        return mf.InputSide(
            location=location,
            files=tuple(mf.InputFile(p, n) for p, n in zip(paths, counts, strict=False)),
            records=sum(counts),
            bad_records=bad,
            unreadable_keys=unreadable,
        )

    @staticmethod
    def _promote(
        writer: RunWriter,
        staged: list[tuple[int, int, str, int, int, str]],
        bad_staged: str | None,
    ) -> tuple[tuple[mf.DataFile, ...], str | None]:
        """Staged files -> `part-NNNNN` in (partition, sequence) order, and the staged
        bad-records file into place, through `output.RunWriter` (the order of writes of
        docs/decisions.md; `run` began the writer, and writes the manifest last)."""
        # The write tasks hashed and counted what they wrote: the driver does not read it again.
        writer.promote(
            [path for _, _, path, _, _, _ in staged],
            described=[mf.DataFile(path, n, size, sha) for _, _, path, n, size, sha in staged],
        )
        return writer.finish(staged_bad_records=bad_staged)


def _remove_tree(location: str) -> None:
    if store.is_s3(location):
        for f in store.list_files(location):
            store.delete(f)
        return
    import shutil

    shutil.rmtree(location, ignore_errors=True)
