"""DuckDB: `read_json_auto` of both snapshots, a full outer join on the key, the whole row
compared (`b IS DISTINCT FROM a`, row structs), the changed rows (op, key, before row, after row)
materialised in a temporary table, then `COPY ... (FORMAT JSON)` to one file.

DuckDB's defaults: all cores, memory limit 80% of RAM (spills to disk beyond).
Note: read_json_auto types `updated_at` as TIMESTAMPTZ and `created_on` as DATE, so the written
payloads do not keep the input's text of those fields (`2025-08-16 10:03:35+00`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from bench.diff.tools.common import Phases, emit, parse_args


def main() -> None:
    a = parse_args(__doc__)
    k = a.key
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{Path(a.out, 'duckdb.tmp')}'")
    ph = Phases()
    with ph("diff"):
        con.execute(f"CREATE TEMP VIEW b AS SELECT * FROM read_json_auto('{a.before}/*.ndjson')")
        con.execute(f"CREATE TEMP VIEW a AS SELECT * FROM read_json_auto('{a.after}/*.ndjson')")
        con.execute(f"""
            CREATE TEMP TABLE changes AS
            SELECT CASE WHEN b.{k} IS NULL THEN 'c' WHEN a.{k} IS NULL THEN 'd' ELSE 'u' END AS op,
                   coalesce(a.{k}, b.{k}) AS key,
                   CASE WHEN b.{k} IS NULL THEN NULL ELSE b END AS before,
                   CASE WHEN a.{k} IS NULL THEN NULL ELSE a END AS after
            FROM b FULL OUTER JOIN a ON b.{k} = a.{k}
            WHERE b.{k} IS NULL OR a.{k} IS NULL OR b IS DISTINCT FROM a
            """)
    with ph("write"):
        con.execute(f"COPY changes TO '{Path(a.out, 'changes.json')}' (FORMAT JSON)")
    rows = dict(con.execute("SELECT op, count(*) FROM changes GROUP BY op").fetchall())
    emit(
        {"inserted": rows.get("c", 0), "deleted": rows.get("d", 0), "updated": rows.get("u", 0)},
        ph,
        threads=con.execute("SELECT current_setting('threads')").fetchone()[0],
    )


if __name__ == "__main__":
    main()
