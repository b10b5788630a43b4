"""datacompy 1.1.0's `datacompy.PolarsCompare`, loading included.

datacompy compares flat columns: its comparators report every row of a struct column as a
mismatch, so the frames are flattened first (`customer.address.city` etc., recursively;
list columns such as `tags` and `orders` stay lists, which its array comparator handles).
Steps: `pl.read_ndjson` both; flatten; `PolarsCompare(before, after, join_columns=key)`
(exact: abs_tol = rel_tol = 0); then the output: `all_mismatch()` (the differing rows of
both sides) and the rows only in before / only in after, written with `write_ndjson`.

Counts: deleted = rows only in df1, inserted = rows only in df2, updated = rows in both
minus `count_matching_rows()`.
"""

from __future__ import annotations

from pathlib import Path

import datacompy
import polars as pl

from bench.diff.tools.common import Phases, emit, parse_args, snapshot_files


def flatten(df: pl.DataFrame) -> pl.DataFrame:
    while structs := [c for c, t in df.schema.items() if isinstance(t, pl.Struct)]:
        df = df.with_columns(
            pl.col(c).struct.rename_fields([f"{c}.{f.name}" for f in df.schema[c].fields])
            for c in structs
        ).unnest(structs)
    return df


def main() -> None:
    a = parse_args(__doc__)
    ph = Phases()
    with ph("read"):
        before = flatten(pl.read_ndjson(snapshot_files(a.before)))
        after = flatten(pl.read_ndjson(snapshot_files(a.after)))
    with ph("compare"):
        cmp = datacompy.PolarsCompare(
            before,
            after,
            join_columns=a.key,
            df1_name="before",
            df2_name="after",
            cast_column_names_lower=False,
        )
        updated = len(cmp.intersect_rows) - cmp.count_matching_rows()
    with ph("write"):
        cmp.all_mismatch().write_ndjson(Path(a.out, "mismatch.ndjson"))
        cmp.df1_unq_rows.write_ndjson(Path(a.out, "deleted.ndjson"))
        cmp.df2_unq_rows.write_ndjson(Path(a.out, "inserted.ndjson"))
    emit(
        {"inserted": len(cmp.df2_unq_rows), "deleted": len(cmp.df1_unq_rows), "updated": updated},
        ph,
        mismatched_columns={
            s["column"]: s["unequal_cnt"] for s in cmp.column_stats if s["unequal_cnt"]
        },
    )


if __name__ == "__main__":
    main()
