"""A plain Polars join diff (the naive baseline): `read_ndjson` of both snapshots, a full join
on the key, every other column compared with `ne_missing` (struct and list columns compared
whole; a column absent on one side counts as null), the changed rows (op, key, before struct,
after struct) written with `write_ndjson`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from bench.diff.tools.common import Phases, emit, parse_args, snapshot_files


def main() -> None:
    a = parse_args(__doc__)
    k = a.key
    ph = Phases()
    with ph("read"):
        before = pl.read_ndjson(snapshot_files(a.before))
        after = pl.read_ndjson(snapshot_files(a.after))
    with ph("diff"):
        cols = [c for c in dict.fromkeys(before.columns + after.columns) if c != k]
        for c in cols:  # a column only one side has: null on the other
            if c not in before.columns:
                before = before.with_columns(pl.lit(None, after.schema[c]).alias(c))
            if c not in after.columns:
                after = after.with_columns(pl.lit(None, before.schema[c]).alias(c))
        b = before.select(pl.col(k).alias("_kb"), pl.struct(k, *cols).alias("before"), *cols)
        aa = after.select(
            pl.col(k).alias("_ka"),
            pl.struct(k, *cols).alias("after"),
            *[pl.col(c).alias(c + "__a") for c in cols],
        )
        del before, after
        j = b.join(aa, left_on="_kb", right_on="_ka", how="full", coalesce=False)
        differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c + "__a")) for c in cols])
        op = (
            pl.when(pl.col("_kb").is_null())
            .then(pl.lit("c"))
            .when(pl.col("_ka").is_null())
            .then(pl.lit("d"))
            .when(differs)
            .then(pl.lit("u"))
        )
        changes = j.select(
            op.alias("op"), pl.coalesce("_ka", "_kb").alias("key"), "before", "after"
        ).filter(pl.col("op").is_not_null())
    with ph("write"):
        changes.write_ndjson(Path(a.out, "changes.ndjson"))
    n = dict(changes.group_by("op").len().iter_rows())
    emit({"inserted": n.get("c", 0), "deleted": n.get("d", 0), "updated": n.get("u", 0)}, ph)


if __name__ == "__main__":
    main()
