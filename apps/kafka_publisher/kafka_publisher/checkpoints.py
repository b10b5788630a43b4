"""Per-file checkpoints: `<diffs>/_published/<D>/<data file>.json` (diffcore.layout).

A checkpoint is written (atomically, via diffcore.store) only after every message of the file was
acknowledged. A rerun skips a file whose checkpoint holds the manifest's SHA-256 for it and the
same topic; a replaced file (new SHA-256) or another topic is published again. The checkpoint
also holds the file's events per op as verified before it was published, which a rerun adds to
the day's totals without reading the file again (a checkpoint without them, written by an
earlier version, makes the rerun read that file to count it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from diffcore import layout, store
from diffcore.events import OPS
from diffcore.manifest import DataFile
from kafka_publisher import __version__


@dataclass(frozen=True)
class Checkpoint:
    run_date: str
    file: str
    sha256: str
    records: int
    messages: int  # records + tombstones
    topic: str
    published_at: str
    publisher_version: str = __version__
    per_op: dict[str, int] | None = None  # events per op (None: written by an earlier version)

    def matches(self, data_file: DataFile, topic: str) -> bool:
        return (
            self.file == data_file.name and self.sha256 == data_file.sha256 and self.topic == topic
        )

    def counts(self, data_file: DataFile) -> dict[str, int] | None:
        """The file's events per op, if the checkpoint holds usable ones for it."""
        per_op = self.per_op
        if (
            not isinstance(per_op, dict)
            or set(per_op) != set(OPS)
            or any(type(n) is not int or n < 0 for n in per_op.values())
            or sum(per_op.values()) != data_file.records
        ):
            return None
        return dict(per_op)


def location(diffs_location: str, run_date: str, name: str) -> str:
    return store.join(diffs_location, layout.checkpoint_key(run_date, name))


def load(diffs_location: str, run_date: str, name: str) -> Checkpoint | None:
    """The checkpoint of a file, or None (missing or unreadable: the file is republished)."""
    try:
        obj = json.loads(store.read_bytes(location(diffs_location, run_date, name)))
        return Checkpoint(**{k: obj[k] for k in Checkpoint.__dataclass_fields__ if k in obj})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None


def save(
    diffs_location: str,
    run_date: str,
    data_file: DataFile,
    messages: int,
    topic: str,
    per_op: dict[str, int] | None = None,
) -> Checkpoint:
    checkpoint = Checkpoint(
        run_date=run_date,
        file=data_file.name,
        sha256=data_file.sha256,
        records=data_file.records,
        messages=messages,
        topic=topic,
        published_at=datetime.now(UTC).isoformat(timespec="seconds"),
        per_op=None if per_op is None else dict(per_op),
    )
    store.write_bytes(
        location(diffs_location, run_date, data_file.name),
        (json.dumps(asdict(checkpoint), indent=2) + "\n").encode("utf-8"),
    )
    return checkpoint
