"""Snapshot inputs (contract section 1): which files a snapshot is, and the raw records in them.

A snapshot location is a file, a directory, a glob, or an S3 prefix (`s3://bucket/prefix/`, which
may also hold a glob). A directory or prefix means every file under it (recursively) whose name
ends in `.json`, `.jsonl` or `.ndjson`, each optionally `.gz`; names starting with `_` or `.`
(and files inside folders named so) are skipped. A file named explicitly is read whatever its
name. Files are read in sorted order.

Each file is either newline-delimited JSON (one record per line, blank lines ignored) or a single
JSON array of records; the format is detected per file from its first non-blank byte (`[` means
an array, provided the whole file is one JSON array; anything else is NDJSON).

Records come out as raw text plus the file and line they came from, so that the engines can
compare bytes before parsing and splice payloads into change events as they were read. This
module imports only the standard library (and boto3 through `store` for S3).
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import gzip
import io
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from diffcore import store
from diffcore.errors import DiffError, ErrorClass

INPUT_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".ndjson")
GZIP_SUFFIX = ".gz"
Format = Literal["ndjson", "array"]

_GLOB_CHARS = re.compile(r"[*?\[]")
_WS = b" \t\r\n"


def is_input_name(name: str) -> bool:
    """Whether a file name (basename) is a snapshot data file: right suffix, not hidden."""
    if not name or name[0] in "_.":
        return False
    base = name[: -len(GZIP_SUFFIX)] if name.endswith(GZIP_SUFFIX) else name
    return base.endswith(INPUT_SUFFIXES)


def _visible(relative: str) -> bool:
    """No path component (folder or file) of a relative path starts with `_` or `.`."""
    return all(part and part[0] not in "_." for part in relative.split("/") if part)


def is_glob(location: str) -> bool:
    return _GLOB_CHARS.search(location) is not None


def resolve(location: str) -> list[str]:
    """The ordered input files of a snapshot location (possibly none).

    - an existing file (local, or an S3 object whose key is exactly the location): itself;
    - a directory or S3 prefix: the data files under it, recursively (see `is_input_name`);
    - a glob (`dir/*.jsonl`, `dir/**/part-*`, `s3://b/p/2026-*/x.json`): the matching data files.

    A location that does not exist yields no files; the engines report that as an empty snapshot
    (it may be allowed for a side, e.g. the first day's "before").
    """
    if is_glob(location):
        return _resolve_glob(location)
    if store.is_s3(location):
        bucket, key = store.split_s3(location)
        if key and not key.endswith("/") and store.exists(location):
            return [location]
        prefix = store.join(f"s3://{bucket}", key) if key else f"s3://{bucket}"
        out = []
        for uri in store.list_files(location):
            rel = uri[len(prefix) :].lstrip("/")
            if _visible(rel) and is_input_name(store.basename(uri)):
                out.append(uri)
        return sorted(out)
    if os.path.isdir(location):
        out = []
        for path in store.list_files(location):
            rel = os.path.relpath(path, location).replace(os.sep, "/")
            if _visible(rel) and is_input_name(os.path.basename(path)):
                out.append(_regular_file(path))
        return sorted(out)
    if os.path.lexists(location):
        return [_regular_file(location)]
    return []


def _regular_file(path: str) -> str:
    """`path` if it is a regular file (through symlinks); else `DiffError(io_error)` naming it.

    A FIFO would hang the run, a device or socket would give garbage, and a broken symlink is a
    snapshot file that is missing: none of them may be skipped silently or read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DiffError(
            ErrorClass.IO_ERROR, "a broken symlink (its target does not exist)", file=path
        ) from None
    except OSError as exc:
        raise DiffError(ErrorClass.IO_ERROR, f"cannot read: {exc.strerror}", file=path) from None
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )  # fmt: skip
        raise DiffError(ErrorClass.IO_ERROR, f"{kind}, not a regular file: refused", file=path)
    return path


def _resolve_glob(pattern: str) -> list[str]:
    if store.is_s3(pattern):
        match = _GLOB_CHARS.search(pattern)
        assert match is not None
        fixed = pattern[: match.start()]
        base = fixed if fixed.endswith("/") else fixed.rpartition("/")[0] + "/"
        candidates = store.list_files(base)
        regex = re.compile(_glob_regex(pattern))
        return sorted(
            uri
            for uri in candidates
            if regex.match(uri)
            and _visible(uri[len(base) :])
            and is_input_name(store.basename(uri))
        )
    return sorted(
        _regular_file(path)
        for path in globlib.glob(pattern, recursive=True)
        if not os.path.isdir(path) and is_input_name(os.path.basename(path))
    )


def _glob_regex(pattern: str) -> str:
    """A glob over `/`-separated keys: `*` and `?` stay inside one segment, `**` crosses them."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                out.append(fnmatch.translate(pattern[i : end + 1])[4:-3])
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


# --------------------------------------------------------------------------------------------
# Reading


def is_gzip(path: str) -> bool:
    return path.endswith(GZIP_SUFFIX)


def open_input(path: str) -> BinaryIO:
    """A streaming binary reader of a file's content, decompressed when it ends in `.gz`."""
    raw = store.open_read(path)
    if is_gzip(path):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def sniff_format(head: bytes) -> Format:
    """`array` when the first non-blank byte is `[`, else `ndjson` (a UTF-8 BOM is skipped)."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip(_WS)
    return "array" if text[:1] == b"[" else "ndjson"


def detect_format(path: str) -> Format:
    """Peek at the start of a file: `array` or `ndjson` (see `sniff_format`)."""
    with open_input(path) as f:
        head = f.read(4096)
        while head and not head.lstrip(b"\xef\xbb\xbf").lstrip(_WS):
            more = f.read(65536)
            if not more:
                break
            head += more
    return sniff_format(head)


# Names the bad record that holds the rest of an array file that could not be cut into
# records: it may hold many records, so no key can be read from it (contract §6).
ARRAY_REST = "the rest of the array file from this line is one bad record"


def is_array_rest(message: str) -> bool:
    return message.endswith(f"({ARRAY_REST})")


@dataclass(frozen=True)
class RawRecord:
    """One record as read: its text (one line, no newline), file and 1-based line number.

    `error` is set when the record could not even be cut out as text: invalid UTF-8
    (`malformed_json`), or the unparseable rest of a JSON-array file.
    """

    file: str
    line: int
    text: str
    error: str | None = None


def iter_ndjson_raw(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without the newline and `\\r`) of every non-blank line;
    a UTF-8 BOM on the first line is dropped. Not decoded: `ndjson_record` does that (an
    engine may first try a parser that validates UTF-8 itself)."""
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip(_WS):
            continue
        yield number, raw.rstrip(b"\r\n")


def ndjson_record(path: str, number: int, raw: bytes) -> RawRecord:
    """One line of `iter_ndjson_raw` as a record; invalid UTF-8 is a record with `error`."""
    try:
        return RawRecord(path, number, raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return RawRecord(
            path, number, raw.decode("utf-8", "replace"), f"invalid UTF-8: {exc.reason}"
        )


def iter_ndjson_lines(path: str, stream: BinaryIO | None = None) -> Iterator[RawRecord]:
    """Every non-blank line of an NDJSON file, trailing `\\r` removed, with its line number."""
    f = stream or open_input(path)
    try:
        for number, raw in iter_ndjson_raw(f):
            yield ndjson_record(path, number, raw)
    finally:
        if stream is None:
            f.close()


def split_json_array(text: str) -> Iterator[tuple[int, str]] | None:
    """Cut a JSON array text into `(line number, element text)`, or None if it is not one array.

    Element texts are kept as written, with the (insignificant) line breaks of pretty-printed
    JSON replaced by spaces so that each element fits on one line. Raises `ValueError` with the
    line number (`args[1]`) of the first element that is not valid JSON.
    """
    decoder = json.JSONDecoder()
    start = len(text) - len(text.lstrip("\ufeff \t\r\n"))
    if text[start : start + 1] != "[":
        return None
    # Whole-text check first: a file such as `[1]\n[2]` is NDJSON of arrays, not one array.
    try:
        _, end = decoder.raw_decode(text, start)
    except (ValueError, RecursionError):  # too deep for Python's parser: cut element-wise
        end = None
    if end is not None and text[end:].strip(" \t\r\n"):
        return None

    def elements() -> Iterator[tuple[int, str]]:
        pos = start + 1
        n = len(text)
        line = text.count("\n", 0, pos) + 1
        last = pos
        first = True
        while True:
            while pos < n and text[pos] in " \t\r\n":
                pos += 1
            if pos < n and text[pos] == "]" and first:
                return
            if not first:
                if pos < n and text[pos] == "]":
                    return
                if pos >= n or text[pos] != ",":
                    line += text.count("\n", last, pos)
                    raise ValueError("expected ',' or ']' in JSON array", line)
                pos += 1
                while pos < n and text[pos] in " \t\r\n":
                    pos += 1
            first = False
            line += text.count("\n", last, pos)
            last = pos
            try:
                _, stop = decoder.raw_decode(text, pos)
            except (ValueError, RecursionError):
                raise ValueError("malformed JSON in array element", line) from None
            element = text[pos:stop]
            if "\n" in element or "\r" in element:
                element = element.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
            yield line, element
            pos = stop

    return elements()


def iter_records(path: str) -> Iterator[RawRecord]:
    """Every record of one input file, NDJSON or JSON array, with its line number.

    A JSON-array file that cannot be parsed yields its records up to the problem and then one
    record with `error` set, carrying the rest of the file from that line on (so that quarantine
    mode keeps it: nothing is dropped silently).
    """
    if detect_format(path) == "ndjson":
        yield from iter_ndjson_lines(path)
        return
    with open_input(path) as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield RawRecord(
            path,
            1,
            data[:200].decode("utf-8", "replace"),
            f"invalid UTF-8: {exc.reason} ({ARRAY_REST})",
        )
        return
    elements = split_json_array(text)
    if elements is None:
        yield from iter_ndjson_lines(path, io.BytesIO(data))
        return
    try:
        for line, element in elements:
            yield RawRecord(path, line, element)
    except ValueError as exc:
        line = exc.args[1] if len(exc.args) > 1 else 1
        rest = "\n".join(text.split("\n")[line - 1 :]).replace("\n", " ")
        yield RawRecord(path, line, rest, f"{exc.args[0]} ({ARRAY_REST})")
