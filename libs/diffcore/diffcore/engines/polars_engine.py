"""The Polars engine: the diff contract (sections 1-6) on one machine, fast.

How it is fast: it does not parse every record. Most records of a daily snapshot are unchanged,
and an unchanged record is usually byte-for-byte the same line on both days, so:

1. Lines are read as raw text, one String column (`pl.read_csv` with a separator byte that
   cannot occur in valid JSON text, no quoting): multi-threaded, no JSON parsing. A file that
   holds the separator byte anyway is read line by line (`read_csv` fails on it, or its lines
   do not add up to the file's size).
2. The key is cut out of the raw line with an anchored regex over the top-level object (the
   cheap one when each step of the key is its object's first member; else members before the
   key may be any scalars; dotted keys descend into nested objects), and kept as its JSON
   token: `"1"` and `1` stay different keys. The fast path accepts only tokens whose text is
   already canonical JSON (integers, strings without escapes, booleans) and only when the
   member name occurs once in the line (so duplicated members cannot fool it; a line written
   compactly with the key first is checked with one literal search past the key) and is not
   spelled with escapes. Every other line (a key after a nested object, floats, escapes, a
   missing or null key, blank or odd lines) goes through the exact path: `orjson`/`jsonvalue`
   parse, `jsonvalue.get_path`, `jsonvalue.canonical_json`.
3. Before and after are joined on the key (row numbers only, no strings move), and the two
   lines of each pair compared as bytes: equal bytes mean an unchanged record, no parse.
4. Only the records whose bytes differ, and the inserts and deletes, are parsed (orjson, or
   `jsonvalue.loads` for integers beyond 64 bits); `jsonvalue.changed_from_leaves` then says `u` or
   "semantically equal" (member order, `1` vs `1.0`, nulls).
5. Every line is still checked to be valid JSON: the before lines in the same multi-threaded
   pass that cuts their keys (`VALID_RECORD_REGEX`, a lazy DFA over the bytes; the lines it
   does not vouch for are parsed exactly); after lines equal to their before line are valid by
   that check; the other after lines (inserts and the after side of the byte-different pairs)
   by the same regex, before any event is written, so a failing run writes no data file.
   Bad lines fail the run with their file and line, or are quarantined.
6. Schema drift (`leaf path -> set of JSON types` per snapshot) is exact without parsing the
   unchanged lines: an unchanged pair contributes the same leaf types to both snapshots, so a
   drift can only come from the parsed records. For each (path, type) seen on one side only,
   the unchanged lines are searched for it: a regex prefilter (the member name followed by a
   value of that type; lines with `\\u`/`\\/` escapes always pass) picks the few lines to parse,
   and the search stops at the first confirmation.
7. Events are written in key order, payloads spliced as read (`events.event_line`).

How the two cores are kept busy (large inputs): worker processes, forked at the start while
this process is small, parse the byte-different pairs (sorted by key, in 16 jobs) and then the
inserts and deletes for their leaf types, while this process formats the inserts and deletes;
each job's updates then go out with the inserts and deletes whose keys sort before the job's
last key, handed to a writer thread (hashing and writing release the GIL; partitioned mode
keeps them in a spill file instead). In memory, the before side's duplicate check runs in a
thread while the after side is read.

Snapshots larger than `memory_budget` bytes (together) are hash-partitioned by key into spill
files first (one streaming pass per side), then diffed partition by partition, so the peak
memory follows the partition size, not the snapshot size.
"""

from __future__ import annotations

import gzip
import mmap
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

import diffcore
from diffcore import jsonvalue, sources, store
from diffcore import manifest as mf
from diffcore.engine import RunResult
from diffcore.errors import DiffError, ErrorClass, excerpt
from diffcore.output import BadRecord, RunWriter
from diffcore.spec import RunSpec

ENGINE_NAME = "polars"
ENGINE_VERSION = f"{diffcore.__version__}+polars{pl.__version__}"

# Default in-memory budget: both snapshots' raw bytes together. Above it: partitioned mode.
DEFAULT_MEMORY_BUDGET = int(os.environ.get("DIFFCORE_MEMORY_BUDGET", 1_000_000_000))
# Target raw bytes of one partition pair in partitioned mode.
DEFAULT_PARTITION_BYTES = int(os.environ.get("DIFFCORE_PARTITION_BYTES", 384 * 1024 * 1024))

_SEP = "\x1f"  # never occurs raw in valid JSON text (control characters must be escaped)
_LINE = "line"
_KEY = "k"
_FILE = "fi"
_LINENO = "ln"
_HASH = "h"
_KEY_JOIN = "\x1f"  # between the tokens of a composite key (canonical JSON never holds it raw)

ProgressFn = Callable[[str, int, int], None]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# ---------------------------------------------------------------------------------------------
# Exact parsing (the slow path, and the records whose bytes differ)


class _Bad(Exception):
    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


def parse_json(text: str | bytes) -> Any:
    """Parse exactly (`jsonvalue.loads_fast`); raises `_Bad(malformed_json)`."""
    try:
        return jsonvalue.loads_fast(text)
    except RecursionError:
        raise _Bad(ErrorClass.MALFORMED_JSON, "JSON nested too deeply") from None
    except ValueError as exc:
        raise _Bad(ErrorClass.MALFORMED_JSON, f"invalid JSON ({exc})") from None


def parse_record(text: str | bytes) -> dict[str, Any]:
    obj = parse_json(text)
    if not isinstance(obj, dict):
        raise _Bad(
            ErrorClass.NOT_AN_OBJECT, f"record is a JSON {jsonvalue.json_type(obj)}, not an object"
        )
    return obj


def key_token(obj: dict[str, Any], key: Sequence[str]) -> str:
    """The key of a parsed record as text: canonical JSON of each key value, joined."""
    tokens = []
    for path in key:
        value = jsonvalue.get_path(obj, path)
        if value is None:
            raise _Bad(ErrorClass.MISSING_KEY, f"key field {path!r} is missing or null")
        tokens.append(jsonvalue.canonical_json(value))
    return _KEY_JOIN.join(tokens)


def key_values(token: str, key: Sequence[str]) -> dict[str, Any]:
    """`{path: value}` of a key token (the event's `key` object)."""
    out = {}
    for path, text in zip(key, token.split(_KEY_JOIN), strict=False):
        out[path] = parse_json(text)
    return out


def _display_key(token: str, key: Sequence[str]) -> str:
    return jsonvalue.compact_json(key_values(token, key))


# ---------------------------------------------------------------------------------------------
# Regexes over raw lines (Rust regex syntax)


_STR = r'"(?:[^"\\]|\\.)*"'
_SCALAR = rf"(?:{_STR}|-?[0-9][0-9.eE+\-]*|true|false|null)"
_SKIP = rf"(?:\s*{_STR}\s*:\s*{_SCALAR}\s*,)*?"
# Key tokens whose text is canonical JSON as written (see module doc).
_TOKEN = r'("[^"\\]*"|-?(?:0|[1-9][0-9]*)|true|false)'


def key_regex(path: str) -> str:
    """Anchored regex capturing the raw token of a (dotted) key path, when it is reachable
    through scalar-valued members only."""
    steps = path.split(".")
    rx = r"^\s*\{"
    for i, step in enumerate(steps):
        name = jsonvalue.regex_escape(jsonvalue.compact_json(step))
        rx += rf"{_SKIP}\s*{name}\s*:\s*"
        if i < len(steps) - 1:
            rx += r"\{"
    return rx + _TOKEN + r"\s*[,}]"


def _first_member_regex(path: str) -> str:
    """The common case, cheaper to match: each step of the key is its object's first member."""
    rx = r"^\s*"
    for step in path.split("."):
        rx += r"\{\s*" + jsonvalue.regex_escape(jsonvalue.compact_json(step)) + r"\s*:\s*"
    return rx + _TOKEN + r"\s*[,}]"


def _compact_prefix(key: Sequence[str]) -> str | None:
    """`{"a":{"b":` for the key `a.b`: how a line whose key is its first member starts when
    written compactly; None when the fast uniqueness check does not apply (composite keys,
    a name repeated or occurring inside another)."""
    if len(key) != 1:
        return None
    quoted = [jsonvalue.compact_json(step) for step in key[0].split(".")]
    prefix = "".join("{" + q + ":" for q in quoted)
    if any(prefix.count(q) != 1 for q in quoted):
        return None
    return prefix


_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _escaped_names_regex(names: Sequence[str]) -> tuple[str, str]:
    """A literal that every escaped spelling of a character of `names` contains, and a regex
    matching those spellings (`\\u0069` for `i`, ...). A member name written with such an escape
    may be a key name the literal search does not see: such lines take the exact path."""
    spellings: set[str] = set()
    literal = "\\u"
    for ch in set("".join(names)):
        code = ord(ch) if ord(ch) < 0x10000 else 0xD800 + ((ord(ch) - 0x10000) >> 10)
        spellings.add("\\\\u" + "".join(f"[{d.lower()}{d.upper()}]" for d in f"{code:04x}"))
        if ch in _SHORT_ESCAPES:
            spellings.add(jsonvalue.regex_escape(_SHORT_ESCAPES[ch]))
            literal = "\\"
    return literal, "|".join(sorted(spellings))


def _names_once(quoted: Sequence[str]) -> pl.Expr:
    """Each (JSON-quoted) name occurs exactly once in the line."""
    return pl.all_horizontal(
        [pl.col(_LINE).str.count_matches(q, literal=True) == 1 for q in quoted]
    )


def _streaming(frame: pl.DataFrame, exprs: Sequence[pl.Expr]) -> pl.DataFrame:
    """`frame.select(exprs)` on Polars' streaming engine: the rows are cut into morsels that
    all threads work on (the eager engine runs a string kernel over a column on one thread)."""
    return frame.lazy().select(exprs).collect(engine="streaming")


def _fast_keys(
    lines: pl.Series, key: Sequence[str], validate: bool = False
) -> tuple[pl.Series, pl.Series | None]:
    """Key tokens cut out of raw lines (null where the fast path does not apply), and, when
    asked, whether `VALID_RECORD_REGEX` vouches for each line."""
    if lines.len() == 0:
        empty = pl.Series(_KEY, [], dtype=pl.String)
        return empty, (pl.Series("_ok", [], dtype=pl.Boolean) if validate else None)
    names = sorted({step for path in key for step in path.split(".")})
    quoted = [jsonvalue.compact_json(n) for n in names]
    line = pl.col(_LINE)
    exprs = [line.str.extract(_first_member_regex(p), 1).alias(f"t{i}") for i, p in enumerate(key)]
    prefix = _compact_prefix(key)
    if prefix is not None:
        # The common case, cheaper than counting: the line starts with the key's members
        # written compactly (so each name's first occurrence is there) and no name occurs in
        # the rest of the line. Other lines with a token are counted below.
        exprs.append(
            (
                line.str.starts_with(prefix)
                & ~pl.any_horizontal(
                    [line.str.slice(len(prefix)).str.contains(q, literal=True) for q in quoted]
                )
            ).alias("_u")
        )
    else:
        exprs.append(_names_once(quoted).alias("_u"))
    if validate:
        exprs.append(line.str.contains(VALID_RECORD_REGEX).alias("_ok"))
    out = _streaming(pl.DataFrame({_LINE: lines}), exprs)
    for i, p in enumerate(key):
        col = out[f"t{i}"]
        if col.null_count():  # the general regex, on the lines the cheap one missed
            idx = col.is_null().arg_true()
            found = lines.gather(idx).str.extract(key_regex(p), 1)
            out = out.with_columns(col.scatter(idx, found))
    if prefix is not None:
        recount = (~out["_u"] & out["t0"].is_not_null()).arg_true()
        if recount.len():
            once = _streaming(pl.DataFrame({_LINE: lines.gather(recount)}), [_names_once(quoted)])
            out = out.with_columns(out["_u"].scatter(recount, once.to_series()))
    # A key name spelled with escapes (`{"id":1,"\\u0069d":2}`) is invisible to the literal
    # searches above: lines with such an escape lose their fast key.
    literal, escaped = _escaped_names_regex(names)
    suspects = (out["_u"] & lines.str.contains(literal, literal=True)).arg_true()
    if suspects.len():
        hit = lines.gather(suspects).str.contains(escaped)
        out = out.with_columns(out["_u"].scatter(suspects, ~hit & out["_u"].gather(suspects)))
    tokens = (
        pl.col("t0")
        if len(key) == 1
        else pl.concat_str([pl.col(f"t{i}") for i in range(len(key))], separator=_KEY_JOIN)
    )
    keys = out.select(pl.when(pl.col("_u")).then(tokens).otherwise(None).alias(_KEY))[_KEY]
    return keys, (out["_ok"] if validate else None)


# A regex of RFC 8259 JSON objects nested up to `_VALID_DEPTH` levels (Rust regex, compiled to a
# lazy DFA: one pass over the bytes, multi-threaded by Polars). A line it matches is a valid JSON
# object; a line it does not match (deeper nesting, or bad) goes through the exact parser.
_WS = r"[ \t\n\r]*"
_JSTR = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_JNUM = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+\-]?[0-9]+)?"
_JSCALAR = rf"(?:{_JSTR}|{_JNUM}|true|false|null)"
_VALID_DEPTH = 4


def _members(value: str) -> str:
    return (
        rf"\{{{_WS}(?:{_JSTR}{_WS}:{_WS}{value}{_WS}(?:,{_WS}{_JSTR}{_WS}:{_WS}{value}{_WS})*)?\}}"
    )


def _json_value_regex(depth: int) -> str:
    if depth == 0:
        return _JSCALAR
    inner = _json_value_regex(depth - 1)
    array = rf"\[{_WS}(?:{inner}{_WS}(?:,{_WS}{inner}{_WS})*)?\]"
    return rf"(?:{_JSCALAR}|{_members(inner)}|{array})"


VALID_RECORD_REGEX = rf"^{_WS}{_members(_json_value_regex(_VALID_DEPTH - 1))}{_WS}$"


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
    valid_records: int = 0
    hash_unique: bool = False  # the 64-bit hashes of the keys are unique (see _check_duplicates)

    @property
    def records(self) -> int:
        return sum(self.records_per_file)


def _read_csv_lines(path: str) -> pl.DataFrame:
    df = pl.read_csv(
        path,
        has_header=False,
        separator=_SEP,
        quote_char=None,
        new_columns=[_LINE],
        schema={_LINE: pl.String},
        raise_if_empty=False,
        comment_prefix=None,
    )
    if df.width == 0:
        return pl.DataFrame({_LINE: []}, schema={_LINE: pl.String})
    return df


def _contains_byte(path: str, byte: bytes) -> bool:
    with open(path, "rb") as f:
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return mm.find(byte) != -1
        except ValueError:  # empty file
            return False


def _every_byte_read(df: pl.DataFrame, path: str) -> bool:
    """Whether the lines of `df` (one per row, a newline after each but maybe the last) add up
    to the size of the file exactly (cheap: string lengths are stored)."""
    size = os.path.getsize(path)
    if size == 0:
        return df.height == 0
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        newline_at_end = f.read(1) == b"\n"
    counted = (df[_LINE].str.len_bytes().sum() or 0) + df.height
    return counted == size + (0 if newline_at_end else 1)


def _empty_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {_LINE: [], _FILE: [], _LINENO: []},
        schema={_LINE: pl.String, _FILE: pl.UInt32, _LINENO: pl.UInt32},
    )


def _rows_frame(texts: list[str], linenos: list[int], fi: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            _LINE: pl.Series(texts, dtype=pl.String),
            _FILE: pl.Series([fi] * len(texts), dtype=pl.UInt32),
            _LINENO: pl.Series(linenos, dtype=pl.UInt32),
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
        self.counts = {"c": 0, "u": 0, "d": 0, "unchanged": 0}
        self.field_counts: Counter[str] = Counter()
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.sides: dict[str, _SideData] = {}
        self.drift = mf.SchemaDrift()
        self.mode = "in-memory"
        self.partitions = 1
        self._types = {"before": {}, "after": {}}  # type: dict[str, dict[str, set[str]]]
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
        from concurrent.futures import ThreadPoolExecutor

        spec = self.spec
        t = _clock()
        before = self.sides["before"] = self._load_side(
            "before", spec.location("before"), files["before"]
        )
        self._timed("read_before", t)
        # The before side's duplicate check (single-threaded) runs while the after side is
        # read; its error, if any, is raised after the after side's record errors, as if run
        # in turn.
        thread = ThreadPoolExecutor(1)
        before_duplicates = thread.submit(self._check_duplicates, before)
        thread.shutdown(wait=False)
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
            identical_rb = self._diff(before, after, background.put, pool, after_validated=False)
        except BaseException:
            background.close(reraise=False)
            raise
        background.close()
        self._timed("diff", t)
        t = _clock()
        self.drift = self._schema_drift(iter([before.frame[_LINE].gather(identical_rb)]))
        self._timed("drift", t)

    def _write_events(self, writer: RunWriter, events: pl.DataFrame) -> None:
        """Write event lines (a frame with a `line` column) to the data files."""
        total = events.height
        for offset in range(0, total, _FORMAT_BATCH):
            self.engine._tick("write", offset, total)
            lines = events[_LINE].slice(offset, _FORMAT_BATCH)
            writer.write_sized(
                (lines.str.len_bytes() + 1).to_list(),
                lambda i, j, lines=lines: _csv_bytes(lines.slice(i, j - i)),
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
        identical: list[pl.Series] = []
        event_files: list[str] = []
        t = _clock()
        for p in range(n):
            self.engine._tick("diff", p, n)
            bp = self._partition_side(before, spill, p)
            ap = self._partition_side(after, spill, p)
            self._check_duplicates(bp)
            self._check_duplicates(ap)
            blocks: list[pl.DataFrame] = []
            identical_rb = self._diff(bp, ap, blocks.append, pool, after_validated=True)
            identical.append(identical_rb)
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

        def identical_lines() -> Iterator[pl.Series]:
            for p, rows in enumerate(identical):
                if rows.len():
                    yield self._partition_side(before, spill, p, lines_only=True).frame[
                        _LINE
                    ].gather(rows)

        self.drift = self._schema_drift(identical_lines())
        self._timed("drift", t)
        t = _clock()
        for path in event_files:
            self._write_events(writer, pl.read_ipc(path, memory_map=False))
            os.unlink(path)
        self._timed("write", t)

    def _spill_side(self, side: str, location: str, files: list[str], spill: str) -> _SideData:
        data = _SideData(side, location, files, pl.DataFrame(), [0] * len(files))
        n = self.partitions
        seq = 0
        for fi, path in enumerate(files):
            self.engine._tick(f"read {side}", fi, len(files))
            for rows, pre_bad in self._iter_chunks(path, fi):
                rows = self._prepare(
                    data, rows, [(fi, ln, raw, msg) for ln, raw, msg in pre_bad], validate=True
                )
                data.valid_records += rows.height
                if rows.height == 0:
                    continue
                rows = rows.with_columns((pl.col(_KEY).hash() % n).cast(pl.UInt32).alias("_p"))
                for (p,), part in rows.partition_by("_p", as_dict=True).items():
                    part.drop("_p").write_ipc(
                        os.path.join(spill, f"{side}-{p:05d}-{seq:06d}.arrow"),
                        compression="uncompressed",
                    )
                seq += 1
                del rows
        self.engine._tick(f"read {side}", len(files), len(files))
        return data

    def _partition_side(
        self, data: _SideData, spill: str, p: int, lines_only: bool = False
    ) -> _SideData:
        import glob

        paths = sorted(glob.glob(os.path.join(spill, f"{data.side}-{p:05d}-*.arrow")))
        schema = {_KEY: pl.String, _LINE: pl.String, _FILE: pl.UInt32, _LINENO: pl.UInt32}
        if paths:
            frame = pl.concat(
                [
                    pl.read_ipc(path, memory_map=False, columns=[_LINE] if lines_only else None)
                    for path in paths
                ],
                rechunk=True,
            )
        else:
            frame = pl.DataFrame({c: [] for c in schema}, schema=schema).select(
                [_LINE] if lines_only else list(schema)
            )
        part = _SideData(data.side, data.location, data.files, frame, data.records_per_file)
        part.bad = data.bad
        return part

    def _iter_chunks(
        self, path: str, fi: int
    ) -> Iterator[tuple[pl.DataFrame, list[tuple[int, str, str]]]]:
        """An input file as row frames of about `_CHUNK_BYTES` each (line, fi, ln)."""
        try:
            with sources.open_input(path) as f:
                head = f.read(65536)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=path
            ) from None
        if sources.sniff_format(head) == "array":
            yield self._python_rows(sources.iter_records(path), fi, 0)
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
                    yield self._chunk_rows(chunk, fi, offset)
                    offset += chunk.count(b"\n")
                    del chunk
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=path
            ) from None

    def _chunk_rows(
        self, chunk: bytes, fi: int, offset: int
    ) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
        if chunk.find(_SEP.encode()) == -1:
            temp = self._temp_path()
            with open(temp, "wb") as f:
                f.write(chunk)
            try:
                df = _read_csv_lines(temp)
            except pl.exceptions.ComputeError:
                df = None  # invalid UTF-8 somewhere: read line by line
            finally:
                os.unlink(temp)
            if df is not None:
                return (
                    df.with_row_index(_LINENO, offset=offset + 1)
                    .filter(pl.col(_LINE).is_not_null())
                    .select(
                        pl.col(_LINE),
                        pl.lit(fi, dtype=pl.UInt32).alias(_FILE),
                        pl.col(_LINENO).cast(pl.UInt32),
                    ),
                    [],
                )
        import io

        return self._python_rows(sources.iter_ndjson_lines("", io.BytesIO(chunk)), fi, offset)

    @staticmethod
    def _python_rows(
        records: Iterable[sources.RawRecord], fi: int, offset: int
    ) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
        texts: list[str] = []
        linenos: list[int] = []
        pre_bad: list[tuple[int, str, str]] = []
        for rec in records:
            if rec.error is not None:
                pre_bad.append((rec.line + offset, rec.text, rec.error))
            else:
                texts.append(rec.text)
                linenos.append(rec.line + offset)
        return _rows_frame(texts, linenos, fi), pre_bad

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

    def _read_file(
        self, path: str, fi: int
    ) -> tuple[pl.DataFrame, list[tuple[int, str, str]], str | None]:
        """Rows (line, fi, ln) of one file, records that could not even be cut out as text
        (line, raw, message), and the local plain NDJSON path (None: read record by record)."""
        local = self._local_plain(path)
        try:
            with open(local, "rb") as f:
                head = f.read(65536)
        except OSError as exc:
            raise DiffError(
                ErrorClass.IO_ERROR, f"cannot read input file: {exc}", file=path
            ) from None
        fmt = sources.sniff_format(head)
        pre_bad: list[tuple[int, str, str]] = []
        if fmt == "ndjson" and not head.startswith(b"\xef\xbb\xbf"):
            # A file holding the separator byte is read line by line. `read_csv` fails on most
            # such files, but drops a trailing field of the last line silently: when the lines
            # read do not account for every byte of the file, the file is searched for it.
            t = _clock()
            df: pl.DataFrame | None
            try:
                df = _read_csv_lines(local)
            except pl.exceptions.PolarsError as exc:
                # a ComputeError: invalid UTF-8 or the separator somewhere: line by line
                if not isinstance(exc, pl.exceptions.ComputeError) and not _contains_byte(
                    local, _SEP.encode()
                ):
                    raise
                df = None
            if (
                df is not None
                and not _every_byte_read(df, local)
                and _contains_byte(local, _SEP.encode())
            ):
                df = None
            self._timed("read_csv", t)
            if df is not None:
                df = (
                    df.with_row_index(_LINENO, offset=1)
                    .filter(pl.col(_LINE).is_not_null())
                    .select(
                        pl.col(_LINE),
                        pl.lit(fi, dtype=pl.UInt32).alias(_FILE),
                        pl.col(_LINENO).cast(pl.UInt32),
                    )
                )
                return df, pre_bad, local
        texts: list[str] = []
        linenos: list[int] = []
        for rec in sources.iter_records(local):
            if rec.error is not None:
                pre_bad.append((rec.line, rec.text, rec.error))
            else:
                texts.append(rec.text)
                linenos.append(rec.line)
        return _rows_frame(texts, linenos, fi), pre_bad, None

    def _bad(
        self,
        data: _SideData,
        error_class: ErrorClass,
        message: str,
        fi: int,
        ln: int | None,
        raw: str,
    ) -> None:
        """A bad record: the run fails, or (quarantine) it is set aside."""
        file = data.files[fi]
        if not self.quarantine or error_class not in (
            ErrorClass.MALFORMED_JSON,
            ErrorClass.NOT_AN_OBJECT,
            ErrorClass.MISSING_KEY,
        ):
            raise DiffError(error_class, message, file=file, line=ln, excerpt=excerpt(raw))
        data.bad.append(BadRecord(error_class.value, message, data.side, file, ln, raw))

    def _load_side(self, side: str, location: str, files: list[str]) -> _SideData:
        data = _SideData(side, location, files, pl.DataFrame(), [0] * len(files))
        frames = []
        pre_bad_all: list[tuple[int, int, str, str]] = []
        for fi, path in enumerate(files):
            self.engine._tick(f"read {side}", fi, len(files))
            df, pre_bad, _plain = self._read_file(path, fi)
            frames.append(df)
            pre_bad_all.extend((fi, ln, raw, msg) for ln, raw, msg in pre_bad)
        self.engine._tick(f"read {side}", len(files), len(files))
        if frames:
            rows = pl.concat(frames, how="vertical", rechunk=True)
        else:
            rows = _empty_rows()
        # The after side is validated lazily (see the module doc).
        data.frame = self._prepare(data, rows, pre_bad_all, validate=side == "before")
        data.valid_records = data.frame.height
        return data

    def _prepare(
        self,
        data: _SideData,
        rows: pl.DataFrame,
        pre_bad: Sequence[tuple[int, int, str, str]],
        validate: bool,
    ) -> pl.DataFrame:
        """Rows (line, fi, ln) -> valid records (k, line, fi, ln): keys cut out, blank lines
        dropped, bad records reported (fail) or set aside (quarantine); record counts added to
        `data.records_per_file`. `pre_bad`: (fi, ln, raw, message) of lines that could not even
        be read as text."""
        t = _clock()
        keys, valid = _fast_keys(rows[_LINE], self.spec.key, validate)
        self._timed("keys", t)
        rows = rows.with_columns(keys.alias(_KEY))
        # The exact path: lines without a fast key and, when validating, lines the validity
        # regex does not vouch for.
        slow_mask = pl.col(_KEY).is_null()
        if valid is not None:
            slow_mask = slow_mask | ~valid
        slow = rows.with_row_index("_r").filter(slow_mask).select("_r", _LINE, _FILE, _LINENO)
        errors: list[tuple[int, int, ErrorClass, str, str]] = []
        for fi, ln, raw, msg in pre_bad:
            errors.append((fi, ln, ErrorClass.MALFORMED_JSON, f"invalid JSON ({msg})", raw))
        drop: list[int] = []
        fixed_idx: list[int] = []
        fixed_keys: list[str] = []
        if slow.height:
            for r, text, fi, ln in slow.iter_rows():
                if not text.strip():
                    drop.append(r)  # a blank line
                    continue
                try:
                    obj = parse_record(text)
                    token = key_token(obj, self.spec.key)
                except _Bad as bad:
                    errors.append((fi, ln, bad.error_class, bad.message, text))
                    drop.append(r)
                    continue
                fixed_idx.append(r)
                fixed_keys.append(token)
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
        if frame.height < 2:
            return
        maybe = frame.filter(pl.col(_HASH).is_duplicated())
        if maybe.height == 0:
            return
        data.hash_unique = False
        dups = maybe.filter(pl.col(_KEY).is_duplicated())
        if dups.height == 0:
            return
        if data.side == "after":
            # After lines are validated lazily: a duplicate may be a bad record in disguise.
            bad_rows = []
            for text, fi, ln in dups.select(_LINE, _FILE, _LINENO).iter_rows():
                try:
                    parse_record(text)
                except _Bad as bad:
                    bad_rows.append((fi, ln, bad, text))
            bad_rows.sort(key=lambda b: (b[0], b[1]))
            for fi, ln, bad, text in bad_rows:
                self._bad(data, bad.error_class, bad.message, fi, ln, text)
            if bad_rows:
                gone = pl.DataFrame(
                    {_FILE: [b[0] for b in bad_rows], _LINENO: [b[1] for b in bad_rows]},
                    schema={_FILE: pl.UInt32, _LINENO: pl.UInt32},
                )
                data.frame = frame = frame.join(gone, on=[_FILE, _LINENO], how="anti")
                dups = frame.filter(pl.col(_KEY).is_duplicated())
                data.hash_unique = frame[_HASH].n_unique() == frame.height
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

    def _diff(
        self,
        before: _SideData,
        after: _SideData,
        emit: Callable[[pl.DataFrame], None],
        pool: Any = None,
        after_validated: bool = False,
    ) -> pl.Series:
        """Join, classify and compare; hands the event lines (k, line) to `emit` in key order,
        block after block, and returns the before rows that are byte-identical to their after
        row (for schema drift).

        Every after line is known to be a valid record before the first block (a failing run
        writes no data file). The byte-different pairs, sorted by key, are parsed by the worker
        processes chunk by chunk while this process formats the inserts and deletes; then each
        chunk's updates go out with the inserts and deletes whose keys sort before the chunk's
        last key, so that writing overlaps parsing. The leaf types of the inserts and deletes
        are collected meanwhile (`_start_types`)."""
        spec = self.spec
        bf, af = before.frame, after.frame
        t = _clock()
        joined = _join_keys(bf, af, before.hash_unique and after.hash_unique)
        self._timed("join", t)
        t = _clock()
        matched = joined.filter(pl.col("rb").is_not_null() & pl.col("ra").is_not_null())
        same = bf[_LINE].gather(matched["rb"]) == af[_LINE].gather(matched["ra"])
        self._timed("compare_bytes", t)
        identical_rb = matched["rb"].filter(same)
        self.counts["unchanged"] += identical_rb.len()
        cand = matched.filter(~same).sort(_KEY)
        ins = joined.filter(pl.col("rb").is_null()).select(_KEY, "ra")
        dels = joined.filter(pl.col("ra").is_null()).select(_KEY, "rb")
        del joined, matched, same
        self.engine._tick("diff", 0, 2)

        # 1. Byte-different pairs: parse both, compare leaf by leaf (in the workers, meanwhile).
        t = _clock()
        chunks = iter_pairs(
            bf[_LINE].gather(cand["rb"]), af[_LINE].gather(cand["ra"]), spec.ignore, pool
        )
        self._timed("parse", t)
        # 2. After lines never checked (see the module doc): inserts and byte-different pairs.
        #    A pair whose after record is bad (quarantined) is a delete: the record left.
        t = _clock()
        bad_pairs = None
        if not after_validated:
            ins, bad_pairs = self._check_after(after, ins, cand)
        gone = cand.clear() if bad_pairs is None else cand.filter(bad_pairs)
        self._timed("validate_after", t)
        # 3. Leaf types of the inserts and deletes, meanwhile: in the workers after the pairs
        #    (they are otherwise idle then), or in a thread (one parse per distinct skeleton).
        types_b = _start_types(bf[_LINE].gather(pl.concat([dels["rb"], gone["rb"]])), pool)
        types_a = _start_types(af[_LINE].gather(ins["ra"]), pool)
        # 4. Inserts and deletes as event lines, in key order.
        t = _clock()
        null = pl.lit(None, dtype=pl.String)
        parts = []
        if ins.height:
            parts.append(
                format_events(
                    pl.DataFrame({_KEY: ins[_KEY], "a": af[_LINE].gather(ins["ra"])}).select(
                        _KEY, pl.lit("c").alias("op"), null.alias("b"), "a", null.alias("ch")
                    ),
                    spec.key,
                    spec.run_date,
                )
            )
        for rows in (dels, gone):
            if rows.height:
                parts.append(_delete_events(rows, bf, spec))
        self.counts["c"] += ins.height
        self.counts["d"] += dels.height + gone.height
        others = (
            pl.concat(parts).sort(_KEY)
            if parts
            else pl.DataFrame({_KEY: [], _LINE: []}, schema={_KEY: pl.String, _LINE: pl.String})
        )
        del parts
        self._timed("format", t)
        self.engine._tick("diff", 1, 2)

        # 5. Chunk by chunk: updates (semantically equal pairs count as unchanged), merged with
        #    the inserts and deletes up to the chunk's last key.
        sig_b: set = set()
        sig_a: set = set()
        done = 0  # rows of `others` handed out
        while True:
            t = _clock()
            item = next(chunks, None)
            self._timed("parse", t)
            if item is None:
                break
            lo, hi, (pairs, sb, sa, field_counts) = item
            t = _clock()
            sig_b |= sb
            sig_a |= sa
            self.field_counts.update(field_counts)
            changed_json: list[str | None] = []
            for i, res in enumerate(pairs, lo):
                if res[0] == "u":
                    changed_json.append(res[1])
                elif res[0] == "=":
                    changed_json.append(None)
                elif bad_pairs is not None and bad_pairs[i]:  # `gone` (step 2)
                    changed_json.append(None)
                else:  # every after line was checked in step 2
                    raise RuntimeError(f"after record failed to parse after its check: {res}")
            chunk = cand.slice(lo, hi - lo).with_columns(
                pl.Series("ch", changed_json, dtype=pl.String)
            )
            if bad_pairs is not None:
                chunk = chunk.filter(~bad_pairs.slice(lo, hi - lo))
            updates = chunk.filter(pl.col("ch").is_not_null())
            self.counts["u"] += updates.height
            self.counts["unchanged"] += chunk.height - updates.height
            end = (
                others.height
                if hi == cand.height
                else others[_KEY].search_sorted(cand[_KEY][hi - 1], side="right")
            )
            block = [others.slice(done, end - done)]
            done = end
            if updates.height:
                block.append(
                    format_events(
                        pl.DataFrame(
                            {
                                _KEY: updates[_KEY],
                                "op": pl.Series(["u"] * updates.height, dtype=pl.String),
                                "b": bf[_LINE].gather(updates["rb"]),
                                "a": af[_LINE].gather(updates["ra"]),
                                "ch": updates["ch"],
                            }
                        ),
                        spec.key,
                        spec.run_date,
                    )
                )
            lines = pl.concat(block).sort(_KEY)
            self._timed("format", t)
            emit(lines)
        if done < others.height:
            emit(others.slice(done))
        t = _clock()
        self._types["before"] = _merge_types(
            self._types["before"], _types_from_signatures(sig_b), types_b()
        )
        self._types["after"] = _merge_types(
            self._types["after"], _types_from_signatures(sig_a), types_a()
        )
        self._timed("types", t)
        self.engine._tick("diff", 2, 2)
        return identical_rb

    def _check_after(
        self, after: _SideData, ins: pl.DataFrame, cand: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.Series | None]:
        """Check the after lines of the inserts and pairs (the validity regex, then the exact
        parser for the lines it does not vouch for): bad records fail the run or are
        quarantined. Returns the valid inserts and which pairs have a bad after record (None:
        none)."""
        af = after.frame
        rows = pl.concat([ins["ra"], cand["ra"]])
        errors = check_records(af[_LINE].gather(rows))
        if not errors:
            return ins, None
        bad = [False] * rows.len()
        after_errors: list[tuple[int, int, _Bad, str]] = []
        for i, error_class, message in errors:
            bad[i] = True
            ra = rows[i]
            after_errors.append(
                (
                    af[_FILE][ra],
                    af[_LINENO][ra],
                    _Bad(ErrorClass(error_class), message),
                    af[_LINE][ra],
                )
            )
        after_errors.sort(key=lambda e: (e[0], e[1]))
        for fi, ln, b, text in after_errors:
            self._bad(after, b.error_class, b.message, fi, ln, text)
        self._check_empty_after_quarantine(after, len(after_errors))
        mask = pl.Series(bad, dtype=pl.Boolean)
        return ins.filter(~mask.slice(0, ins.height)), mask.slice(ins.height)

    def _check_empty_after_quarantine(self, after: _SideData, n_bad: int) -> None:
        if after.frame.height - n_bad <= 0 and "after" not in self.spec.allow_empty:
            raise DiffError(
                ErrorClass.EMPTY_SNAPSHOT,
                "after snapshot has no records (allow it with --allow-empty after)",
                file=after.location,
            )

    # -----------------------------------------------------------------------------------------
    # Schema drift

    def _schema_drift(self, identical: Iterator[pl.Series]) -> mf.SchemaDrift:
        """Exact drift; see step 6 of the module doc. `identical`: the unchanged lines, in
        chunks (read only when some path's types differ between the parsed records)."""
        tb, ta = self._types["before"], self._types["after"]
        paths = sorted(p for p in tb.keys() | ta.keys() if tb.get(p, set()) != ta.get(p, set()))
        if not paths:
            return mf.SchemaDrift()
        # Types of these paths among the unchanged lines (they count on both sides).
        known = {p: tb.get(p, set()) & ta.get(p, set()) for p in paths}
        found: dict[str, set[str]] = {p: set() for p in paths}
        for lines in identical:
            chunk = _types_in_lines(lines, paths, {p: known[p] | found[p] for p in paths})
            for p, types in chunk.items():
                found[p] |= types
        before = {p: tb.get(p, set()) | found.get(p, set()) for p in tb.keys() | found.keys()}
        after = {p: ta.get(p, set()) | found.get(p, set()) for p in ta.keys() | found.keys()}
        before = {p: t for p, t in before.items() if t}
        after = {p: t for p, t in after.items() if t}
        return mf.schema_drift(before, after)


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


def _join_keys(bf: pl.DataFrame, af: pl.DataFrame, hashes_unique: bool) -> pl.DataFrame:
    """Full join of the two sides' keys: (k, rb, ra), rb/ra the row numbers (null: absent).

    When the 64-bit key hashes are unique on each side, the join runs on them (cheaper than
    on text) and every matched pair's keys are then compared as text; any mismatch (a hash
    collision across the sides) falls back to the join on the text."""
    if hashes_unique and bf.height and af.height:
        joined = (  # the streaming engine joins on every thread; row order is not needed
            bf.lazy()
            .select(_HASH)
            .with_row_index("rb")
            .join(af.lazy().select(_HASH).with_row_index("ra"), on=_HASH, how="full", coalesce=True)
            .collect(engine="streaming")
        )
        kb = bf[_KEY].gather(joined["rb"])
        ka = af[_KEY].gather(joined["ra"])
        if bool(((kb == ka) | kb.is_null() | ka.is_null()).all()):
            return joined.select(kb.fill_null(ka).alias(_KEY), "rb", "ra")
    jb = bf.select(_KEY).with_row_index("rb")
    ja = af.select(_KEY).with_row_index("ra")
    return jb.join(ja, on=_KEY, how="full", coalesce=True).select(_KEY, "rb", "ra")


def _csv_bytes(lines: pl.Series) -> bytes:
    """The lines as UTF-8 bytes, one per line, without a round trip through Python strings."""
    import io

    buffer = io.BytesIO()
    pl.DataFrame({_LINE: lines}).write_csv(buffer, include_header=False, quote_style="never")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The records whose bytes differ

_PARALLEL_MIN = 20_000  # records to parse before the work is worth sending to workers
_PAIR_CHUNK_MIN = 1000  # pairs per worker job, at least (16 jobs otherwise)
_POOL_MIN_BYTES = 64 * 1024 * 1024  # input bytes (both sides) before worker processes start
_FORMAT_BATCH = 50_000  # events formatted at a time
_CHUNK_BYTES = int(os.environ.get("DIFFCORE_CHUNK_BYTES", 256 * 1024 * 1024))  # partitioned mode


def _signature(leaves: dict[str, Any]) -> tuple:
    """What a record contributes to schema drift, cheap to make and to deduplicate."""
    return (tuple(leaves), tuple(map(type, leaves.values())))


def _work_chunk(
    job: tuple[list[str], list[str], tuple[str, ...]],
) -> tuple[list[tuple], set, set, dict[str, int]]:
    """Parse and compare one chunk of pairs (runs in a worker process or inline)."""
    b_texts, a_texts, ignore = job
    pairs: list[tuple] = []
    sig_b: set = set()
    sig_a: set = set()
    counts: dict[str, int] = {}
    dumps = jsonvalue.compact_json
    # Hot loop: names bound locally; the same changed lists recur, so their JSON is cached.
    changed_json: dict[tuple[str, ...], tuple[str, str]] = {}
    append = pairs.append
    add_b = sig_b.add
    add_a = sig_a.add
    leaves_into = jsonvalue.leaves_into
    changed_from = jsonvalue.changed_from_leaves
    equal = ("=",)
    for b_text, a_text in zip(b_texts, a_texts, strict=False):
        lb: dict[str, Any] = {}
        leaves_into(parse_json(b_text), "", lb)
        add_b((tuple(lb), tuple(map(type, lb.values()))))
        try:
            a = parse_record(a_text)
        except _Bad as bad:
            append(("bad", bad.error_class.value, bad.message))
            continue
        la: dict[str, Any] = {}
        leaves_into(a, "", la)
        add_a((tuple(la), tuple(map(type, la.values()))))
        changed = changed_from(lb, la, ignore)
        if changed:
            signature = tuple(changed)
            result = changed_json.get(signature)
            if result is None:
                result = changed_json[signature] = ("u", dumps(changed))
            append(result)
            for path in changed:
                counts[path] = counts.get(path, 0) + 1
        else:
            append(equal)
    return pairs, sig_b, sig_a, counts


def _types_from_signatures(signatures: Iterable[tuple]) -> dict[str, set[str]]:
    acc: dict[str, set[str]] = {}
    for paths, types in signatures:
        for path, t in zip(paths, types, strict=False):
            acc.setdefault(path, set()).add(jsonvalue.LEAF_TYPE_NAMES[t])
    return acc


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
) -> Iterator[tuple[int, int, tuple[list[tuple], set, set, dict[str, int]]]]:
    """Parse and compare the byte-different pairs in chunks: yields `(lo, hi, result)` in
    order, `result` being `_work_chunk` of pairs lo..hi-1: per pair `("u", changed paths as
    JSON)`, `("=",)` (equal by contract) or `("bad", class, message)` when the after text is not
    a valid record; the signatures of the records parsed (before: all; after: the valid ones);
    how often each path changed.

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


def _types_chunk(texts: list[bytes]) -> set:
    """The signatures of valid records (runs in a worker process)."""
    signatures = set()
    add = signatures.add
    for text in texts:
        leaves: dict[str, Any] = {}
        jsonvalue.leaves_into(parse_json(text), "", leaves)
        add((tuple(leaves), tuple(map(type, leaves.values()))))
    return signatures


def _start_types(lines: pl.Series, pool: Any = None) -> Callable[[], dict[str, set[str]]]:
    """Start collecting the leaf types of valid records; call the result to get them. With a
    pool, the workers parse the records (queued after the work already given to them);
    without one, `skeleton_types` runs in a thread (Polars releases the GIL)."""
    if pool is not None and lines.len() >= _PARALLEL_MIN:
        step = -(-lines.len() // 4)
        jobs = (_texts(lines.slice(lo, step)) for lo in range(0, lines.len(), step))
        pending = pool.imap_unordered(_types_chunk, jobs, chunksize=1)
        return lambda: _types_from_signatures(set().union(*pending))
    from concurrent.futures import ThreadPoolExecutor

    thread = ThreadPoolExecutor(1)
    future = thread.submit(skeleton_types, lines)
    thread.shutdown(wait=False)
    return future.result


def check_records(lines: pl.Series) -> list[tuple[int, str, str]]:
    """`(index, error class, message)` of the lines that are not valid records: the validity
    regex vouches for most; the others are parsed exactly."""
    if lines.len() == 0:
        return []
    ok = _streaming(pl.DataFrame({_LINE: lines}), [pl.col(_LINE).str.contains(VALID_RECORD_REGEX)])
    suspect = (~ok.to_series()).arg_true()
    errors = []
    for i in suspect.to_list():
        try:
            parse_record(lines[i])
        except _Bad as bad:
            errors.append((i, bad.error_class.value, bad.message))
    return errors


_STRING_LITERAL = r'"(?:[^"\\]|\\.)*"'


def skeleton_types(lines: pl.Series) -> dict[str, set[str]]:
    """`leaf path -> set of JSON types` over valid JSON object texts, parsing one text per
    distinct skeleton. The skeleton is the text with every string replaced by `s` and every
    number by `n` (literals and punctuation kept), paired with the sequence of member names:
    two valid texts with the same skeleton and names have the same leaves and leaf types."""
    if lines.len() == 0:
        return {}
    line = pl.col(_LINE)
    reps = (
        pl.DataFrame({_LINE: lines})
        .lazy()
        .with_columns(
            line.str.replace_all(_STRING_LITERAL, "s")
            .str.replace_all(r"-?[0-9][0-9.eE+\-]*", "n")
            .alias("sk"),
            line.str.extract_all(_STRING_LITERAL + r"\s*:").list.join("\x1f").alias("nm"),
        )
        .unique(["sk", "nm"], keep="any")
        .select(_LINE)
        .collect(engine="streaming")[_LINE]
        .to_list()
    )
    signatures = set()
    for text in reps:
        leaves: dict[str, Any] = {}
        jsonvalue.leaves_into(parse_json(text), "", leaves)
        signatures.add(_signature(leaves))
    return _types_from_signatures(signatures)


def _merge_types(*parts: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for part in parts:
        for path, types in part.items():
            out.setdefault(path, set()).update(types)
    return out


_EVENT_TAIL = '"run_date":"{run_date}","event_id":"'


def _delete_events(rows: pl.DataFrame, before: pl.DataFrame, spec: RunSpec) -> pl.DataFrame:
    """`d` event lines for `rows` (key, `rb` = row of the before record in `before`)."""
    null = pl.lit(None, dtype=pl.String)
    return format_events(
        pl.DataFrame({_KEY: rows[_KEY], "b": before[_LINE].gather(rows["rb"])}).select(
            _KEY, pl.lit("d").alias("op"), "b", null.alias("a"), null.alias("ch")
        ),
        spec.key,
        spec.run_date,
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


def _types_in_lines(
    lines: pl.Series, paths: Sequence[str], known: dict[str, set[str]]
) -> dict[str, set[str]]:
    """For each path, the set of JSON types it has in some line of `lines` (exact).

    Only types not in `known[path]` are searched (those are already present on both sides);
    a type is looked for among the lines a regex prefilter lets through, parsing them in
    batches until one confirms it.
    """
    found: dict[str, set[str]] = {p: set() for p in paths}
    if lines.len() == 0:
        return found
    frame = pl.DataFrame({_LINE: lines})
    escaped = frame.filter(pl.col(_LINE).str.contains(r"\\[u/]"))  # names may be escaped
    parsed_escaped = False

    def absorb(texts: Iterable[str]) -> None:
        for text in texts:
            obj = parse_json(text)
            if isinstance(obj, dict):
                for path, value in jsonvalue.leaves(obj).items():
                    if path in found:
                        found[path].add(jsonvalue.json_type(value))

    for path in paths:
        name = jsonvalue.member_name_regex(path)
        for t, start in jsonvalue.TYPE_START.items():
            if t in found[path] or t in known.get(path, set()):
                continue
            if not parsed_escaped and escaped.height:
                absorb(escaped[_LINE].to_list())
                parsed_escaped = True
                if t in found[path]:
                    continue
            hits = frame.filter(pl.col(_LINE).str.contains(rf"{name}\s*:\s*{start}"))[_LINE]
            for offset in range(0, hits.len(), 2000):
                absorb(hits.slice(offset, 2000).to_list())
                if t in found[path]:
                    break
    return found
