"""Writing a run date's diff output (data files + manifest last) for tests and benches.

    lines = make_events("2026-11-25", 1000)                 # event lines (diffcore.events.event_line)
    manifest = write_day("s3://diffs", "2026-11-25", lines, records_per_file=400, gzip=True)

Files are named and placed as the Glue job does (`diffcore.layout`), written with
`diffcore.store` (local folder or s3://, AWS_ENDPOINT_URL honoured), and described by a
`diffcore.manifest.Manifest` written last. The manifest's `sha256`/`bytes` are those of the
stored object (compressed for `.gz`).
"""

from __future__ import annotations

import gzip as gzip_module
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from diffcore import layout, store
from diffcore.events import event_line
from diffcore.manifest import Counts, DataFile, Engine, InputSide, Manifest, SchemaDrift


def make_events(
    run_date: str, n: int, payload_bytes: int = 0, key_field: str = "id", start: int = 0
) -> list[str]:
    """`n` event lines cycling c, u, d over distinct keys `start..start+n-1`.

    `payload_bytes` pads each record with a `note` string so lines reach roughly that size.
    """
    return list(iter_events(run_date, n, payload_bytes, key_field, start))


def iter_events(
    run_date: str, n: int, payload_bytes: int = 0, key_field: str = "id", start: int = 0
) -> Iterator[str]:
    pad = "x" * max(0, payload_bytes - 260) if payload_bytes else ""
    for i in range(start, start + n):
        key = {key_field: i}
        before = json.dumps(
            {key_field: i, "name": f"before-{i}", "v": i, "note": pad}, separators=(",", ":")
        )
        after = json.dumps(
            {key_field: i, "name": f"after-{i}", "v": i + 1, "note": pad}, separators=(",", ":")
        )
        op = "cud"[i % 3]
        if op == "c":
            yield event_line("c", key, None, after, None, run_date)
        elif op == "u":
            yield event_line("u", key, before, after, ["name", "v"], run_date)
        else:
            yield event_line("d", key, before, None, None, run_date)


def op_of(line: str | bytes) -> str:
    text = line.decode() if isinstance(line, bytes) else line
    return text[7]  # event_line starts with {"op":"X"


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_file(diffs_location: str, run_date: str, name: str, lines: Sequence[str]) -> DataFile:
    """One data file (gzip if the name ends with .gz); returns its manifest entry."""
    body = "".join(f"{line}\n" for line in lines).encode("utf-8")
    if name.endswith(".gz"):
        body = gzip_module.compress(body, compresslevel=1)
    store.write_bytes(store.join(layout.run_folder(diffs_location, run_date), name), body)
    return DataFile(
        name=name, records=len(lines), bytes=len(body), sha256=hashlib.sha256(body).hexdigest()
    )


def write_manifest(
    diffs_location: str, run_date: str, files: Sequence[DataFile], counts: Counts
) -> Manifest:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    side = InputSide(location="test://snapshot", files=(), records=0)
    manifest = Manifest(
        run_date=run_date,
        engine=Engine("tests.support.diffs", "1"),
        key=("id",),
        ignored=(),
        before=side,
        after=side,
        counts=counts,
        files=tuple(files),
        schema_drift=SchemaDrift(),
        started_at=now,
        finished_at=now,
    )
    store.write_text(
        layout.manifest_location(diffs_location, run_date),
        manifest.to_json(),
    )
    return manifest


def write_day(
    diffs_location: str,
    run_date: str,
    lines: Iterable[str],
    records_per_file: int = layout.DEFAULT_MAX_RECORDS_PER_FILE,
    gzip: bool = False,
    manifest: bool = True,
) -> Manifest | list[DataFile]:
    """Data files of `records_per_file` lines, then (unless `manifest=False`) the manifest."""
    files: list[DataFile] = []
    per_op = {"c": 0, "u": 0, "d": 0}
    for index, batch in enumerate(_chunks(lines, records_per_file)):
        for line in batch:
            per_op[op_of(line)] += 1
        files.append(
            write_file(diffs_location, run_date, layout.data_file_name(index, gzip), batch)
        )
    if not manifest:
        return files
    return write_manifest(diffs_location, run_date, files, Counts(**per_op))
