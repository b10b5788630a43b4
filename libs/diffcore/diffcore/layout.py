"""Names and places of a run's output: the one definition every stage and the infra share.

See docs/decisions.md. The diffs bucket's S3 -> SQS notification filters on
`DATA_FILE_SUFFIXES`, so nothing else a run writes may end with one of them.
"""

from __future__ import annotations

import re
from datetime import date

DATA_FILE_PREFIX = "part-"
DATA_FILE_SUFFIX = ".jsonl"
DATA_FILE_SUFFIX_GZIP = ".jsonl.gz"
# The suffixes the bucket notification filters on (one notification rule per suffix).
DATA_FILE_SUFFIXES: tuple[str, ...] = (DATA_FILE_SUFFIX, DATA_FILE_SUFFIX_GZIP)

MANIFEST_NAME = "_manifest.json"
BAD_RECORDS_NAME = "_bad_records.ndjson"
# Held by the run writing a date (diffcore.runlock); absent when no run is writing it.
LOCK_NAME = "_lock.json"
# Publisher checkpoints live outside the date folders: <diffs>/_published/<D>/<data file>.json
PUBLISHED_PREFIX = "_published"

DEFAULT_QUEUE_NAME = "diffs-events-queue"

# The largest event line (UTF-8 bytes, newline excluded) a run may write and the publisher reads:
# the writers refuse a bigger one at diff time (`event_too_large`), so that no day is written
# that can never be published.
MAX_EVENT_BYTES = 64 * 1024 * 1024

DEFAULT_MAX_RECORDS_PER_FILE = 100_000
DEFAULT_MAX_BYTES_PER_FILE = 128 * 1024 * 1024

# The publisher's PUBLISH_WORKERS upper bound (processes publishing files side by side, each with
# a producer); the infra checks its `publisher_workers` against the same bound.
MAX_PUBLISH_WORKERS = 64

_DATA_FILE_RE = re.compile(r"^part-(\d{5,})\.jsonl(\.gz)?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def data_file_name(index: int, gzip: bool = False) -> str:
    """`part-00000.jsonl` (or `.jsonl.gz`): deterministic, sortable names."""
    return f"{DATA_FILE_PREFIX}{index:05d}{DATA_FILE_SUFFIX_GZIP if gzip else DATA_FILE_SUFFIX}"


def is_data_file(name: str) -> bool:
    """True for a final data file name (basename), never for a manifest, marker or temp file."""
    return _DATA_FILE_RE.match(name) is not None


def is_notified(key: str) -> bool:
    """Whether the diffs bucket notification (suffix filter) fires for this object key."""
    return key.endswith(DATA_FILE_SUFFIXES)


def date_folder(run_date: date | str) -> str:
    """The folder of a run date: `YYYY-MM-DD`."""
    text = run_date.isoformat() if isinstance(run_date, date) else run_date
    if not _DATE_RE.match(text):
        raise ValueError(f"run date must be YYYY-MM-DD, got {text!r}")
    date.fromisoformat(text)  # rejects 2026-02-30
    return text


def is_s3(location: str) -> bool:
    """True for an `s3://` URI."""
    return location.startswith("s3://")


def join(base: str, *parts: str) -> str:
    """Join a local path or s3:// URI with `/`, without doubling separators."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def run_folder(diffs_location: str, run_date: date | str) -> str:
    """`<diffs>/<D>`: where a run writes its data files and manifest."""
    return join(diffs_location, date_folder(run_date))


def manifest_location(diffs_location: str, run_date: date | str) -> str:
    """`<diffs>/<D>/_manifest.json`: written last by a run, read first by the publisher."""
    return join(run_folder(diffs_location, run_date), MANIFEST_NAME)


def published_folder(diffs_location: str, run_date: date | str) -> str:
    """`<diffs>/_published/<D>`: the publisher's checkpoints of a date, and its lock."""
    return join(diffs_location, PUBLISHED_PREFIX, date_folder(run_date))


def checkpoint_key(run_date: date | str, data_file: str) -> str:
    """Relative key of the publisher's checkpoint for one data file of a date."""
    return f"{PUBLISHED_PREFIX}/{date_folder(run_date)}/{data_file}.json"


def temp_name(final_name: str, token: str) -> str:
    """A temporary sibling name no reader picks up (dot prefix) and no notification matches."""
    return f".{final_name}.tmp-{token}"


_TEMP_RE = re.compile(r"^\..+\.tmp-[^/]+$")


def is_temp_name(name: str) -> bool:
    """True for a name made by `temp_name` (a basename)."""
    return _TEMP_RE.match(name) is not None
