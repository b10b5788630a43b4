"""The floor: what any Polars-based diff must at least pay, and nothing more.

1. `pl.read_ndjson` of every file of the before snapshot, then of the after snapshot (both
   whole frames in memory, as a join-based diff would hold them);
2. `write_ndjson` of as many after records as the diff's events carry payloads:
   inserted + deleted + 2 x updated (from truth.json), i.e. about the bytes of the change
   events' `before`/`after` payloads, without computing which records they are.

No join, no comparison: a tool faster than this did not parse every record with Polars.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from bench.diff.tools.common import Phases, emit, parse_args, snapshot_files


def main() -> None:
    a = parse_args(__doc__)
    truth = json.loads(Path(a.truth).read_text())["counts"]
    n_out = truth["inserted"] + truth["deleted"] + 2 * truth["updated"]
    ph = Phases()
    with ph("read"):
        before = pl.read_ndjson(snapshot_files(a.before))
        after = pl.read_ndjson(snapshot_files(a.after))
    with ph("write"):
        after.head(n_out).write_ndjson(Path(a.out, "floor.ndjson"))
    emit(None, ph, rows_read=before.height + after.height, rows_written=min(n_out, after.height))


if __name__ == "__main__":
    main()
