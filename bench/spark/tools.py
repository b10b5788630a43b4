"""One bench tool run per process: `python -m bench.spark.tools TOOL --before B --after A --out O`.

Prints one JSON line on stdout: the tool's counts (checked against truth.json by run.py) and
its in-process phase times (`session_s`: Spark session start; `diff_s`: the diff itself).

Tools:
- `spark_engine`: diffcore's Spark engine (`SparkEngine.run`): reads the files, checks every
  record, joins, computes changed paths and event ids, writes part files + manifest.
- `gresearch`: G-Research spark-extension `df1.diff(df2, "id")` over `spark.read.json` (schema
  inferred once over both snapshots, then both read with it), the diff persisted, its counts
  collected and its non-`N` rows written as JSON: the same work shape (count everything, write
  the changes), with a poorer result (no changed paths, no event ids; Spark's typed view of the
  JSON: inferred types, a null member equal to an absent one only because both read as null).
- `polars_engine`: diffcore's Polars engine (`PolarsEngine.run`), if present.

All Spark tools: local[2], driver memory 6g, shuffle partitions 8, UI off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

RUN_DATE = "2026-11-25"


def _jar() -> str:
    import pyspark

    jar = Path(pyspark.__file__).parent / "jars" / "spark-extension_2.12-2.15.0-3.5.jar"
    if not jar.is_file():
        raise SystemExit(
            f"spark-extension jar not found at {jar} (pip install pyspark-extension==2.15.0.3.5)"
        )
    return str(jar)


def _session(extra: dict[str, str] | None = None):
    from diffcore.engines.spark_engine import local_session

    conf = {"spark__sql__adaptive__enabled": "true"}
    conf.update(extra or {})
    return local_session("bench", cores=2, shuffle_partitions=8, driver_memory="6g", **conf)


def spark_engine(before: str, after: str, out: str) -> dict:
    t0 = time.monotonic()
    spark = _session()
    spark.range(1).count()
    t1 = time.monotonic()
    from diffcore.engines.spark_engine import SparkEngine
    from diffcore.spec import RunSpec

    engine = SparkEngine(spark, staging=str(Path(out).parent / (Path(out).name + "-staging")))
    result = engine.run(
        RunSpec(before=before, after=after, key=("id",), out=out, run_date=RUN_DATE)
    )
    t2 = time.monotonic()
    return {
        **_counts(result.manifest),
        "session_s": t1 - t0,
        "diff_s": t2 - t1,
        "engine_stats": engine.last_stats,
    }


def _counts(manifest: Any) -> dict:
    """A diffcore run's counts and data files, as the bench reports them."""
    c = manifest.counts
    return {
        "inserted": c.c,
        "deleted": c.d,
        "updated": c.u,
        "unchanged": c.unchanged,
        "files": len(manifest.files),
    }


def gresearch(before: str, after: str, out: str) -> dict:
    t0 = time.monotonic()
    spark = _session({"spark__jars": _jar()})
    spark.range(1).count()
    t1 = time.monotonic()
    from gresearch.spark.diff import DiffOptions  # noqa: F401 - registers DataFrame.diff
    from pyspark import StorageLevel

    schema = spark.read.json([before, after]).schema  # one inference pass over both
    df1 = spark.read.schema(schema).json(before)
    df2 = spark.read.schema(schema).json(after)
    diff = df1.diff(df2, "id").persist(StorageLevel.MEMORY_AND_DISK)
    counts = {r["diff"]: r["count"] for r in diff.groupBy("diff").count().collect()}
    diff.where("diff != 'N'").write.mode("overwrite").json(out)
    t2 = time.monotonic()
    return {
        "inserted": counts.get("I", 0),
        "deleted": counts.get("D", 0),
        "updated": counts.get("C", 0),
        "unchanged": counts.get("N", 0),
        "session_s": t1 - t0,
        "diff_s": t2 - t1,
    }


def polars_engine(before: str, after: str, out: str) -> dict:
    t0 = time.monotonic()
    from diffcore.engines.polars_engine import PolarsEngine
    from diffcore.spec import RunSpec

    result = PolarsEngine().run(
        RunSpec(before=before, after=after, key=("id",), out=out, run_date=RUN_DATE)
    )
    return {**_counts(result.manifest), "session_s": 0.0, "diff_s": time.monotonic() - t0}


TOOLS = {"spark_engine": spark_engine, "gresearch": gresearch, "polars_engine": polars_engine}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("tool", choices=sorted(TOOLS))
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--out", required=True, help="output folder (emptied first)")
    a = ap.parse_args(argv)
    shutil.rmtree(a.out, ignore_errors=True)
    result = TOOLS[a.tool](a.before, a.after, a.out)
    print(json.dumps({"tool": a.tool, **result}), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    sys.exit(main())
