"""Run the whole pipeline locally, check that every stage agrees, print a report, tear it down.

    ./pants run tests/e2e:local-pipeline -- [--engine spark|polars] [--keep]
    python -m tests.e2e.local_pipeline [--engine spark|polars] [--keep]     # from the repo root

1. Starts moto (S3, SQS) and a Tansu Kafka broker on 127.0.0.1, then creates what the CDK app
   deploys, with its names and settings (`PipelineConfig` defaults + infra/cdk/cdk.json, and
   `pipeline_infra.announce_spec`): the before ("ontem"), after ("hoje"), diffs and Glue temp
   buckets, the queue and its DLQ, the queue policy, the diffs bucket's notification, the topic.
   Also the chained publish's rule on moto's EventBridge (`diffcore.ready`, as
   infra/cdk/pipeline_infra/chain_stage.py), with an SQS queue standing in for its ECS target.
2. Day 1 (2026-11-25): the bundled samples (libs/diffcore/samples: yesterday, today) into the
   input buckets; the 02:00 publisher first, as when the diff runs late: "not ready" (exit 10),
   nothing published; the diff stage (the Glue job's entry point on local Spark, or `--engine polars`:
   the same stage with diffcore's Polars engine); the queue drained (test event skipped,
   duplicates dropped: one message per data file, each with its path and date); the publisher
   started by the chain (`kafka_publisher.main`, env pointing at moto and Tansu, `RUN_DATE` from
   the diff job's "Diffs Ready" event through the rule's task overrides; exactly one start);
   the topic consumed and every event compared with its line in the data files.
3. Day 2 (2026-11-26): today's snapshot becomes yesterday's, a new today derived from it
   (seeded: more inserts, updates, deletes and a schema change); the same stages.
4. Rerun of day 2: the 02:00 publisher finds day 2 complete and published (0 events); the diff
   stage again, the queue again, the chained publisher publishes nothing (checkpoints match),
   the topic still holds every event_id once.

Exit 0 when every stage agrees; 1 with the stage named otherwise; 2 on a usage error.
`--keep` leaves moto and Tansu running (endpoints printed) until Enter or Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

DAY1 = "2026-11-25"
DAY2 = "2026-11-26"
DAY2_SEED = 20261126


def _ensure_path() -> None:
    """`python tests/e2e/local_pipeline.py` from a checkout: put the packages on sys.path (a PEX
    or PYTHONPATH already does)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for sub in ("", "libs/diffcore", "apps/glue_job", "apps/kafka_publisher", "infra/cdk"):
        folder = str(root / sub) if sub else str(root)
        if (root / sub).is_dir() and folder not in sys.path:
            sys.path.append(folder)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="local-pipeline",
        description="Run the diffs pipeline locally (moto + Tansu), check it, tear it down.",
    )
    parser.add_argument(
        "--engine",
        choices=("spark", "polars"),
        default="spark",
        help="diff engine: spark = the Glue job's entry point on local Spark (default); "
        "polars = the same stage with diffcore's Polars engine (fast)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave moto and Tansu running after the report"
    )
    return parser


class Row:
    def __init__(self, label: str, run_date: str, engine: str) -> None:
        self.label, self.run_date, self.engine = label, run_date, engine
        self.cells: dict[str, str] = {}
        self.problems: list[str] = []


COLUMNS = (
    ("run", 12),
    ("date", 10),
    ("engine", 6),
    ("diff c/u/d", 12),
    ("unchanged", 9),
    ("files", 5),
    ("02:00", 7),
    ("announced", 9),
    ("published", 9),
    ("consumed c/u/d", 14),
    ("check", 5),
)


def _fmt_row(values: Sequence[str]) -> str:
    return "  ".join(str(v).ljust(w) for (_, w), v in zip(COLUMNS, values, strict=True))


def print_report(rows: list[Row], header: list[str], out: Any = sys.stdout) -> None:
    for line in header:
        print(line, file=out)
    print(file=out)
    print(_fmt_row([name for name, _ in COLUMNS]), file=out)
    print(_fmt_row(["-" * w for _, w in COLUMNS]), file=out)
    for row in rows:
        c = row.cells
        print(
            _fmt_row(
                [
                    row.label,
                    row.run_date,
                    row.engine,
                    c.get("diff", "-"),
                    c.get("unchanged", "-"),
                    c.get("files", "-"),
                    c.get("floor", "-"),
                    c.get("announced", "-"),
                    c.get("published", "-"),
                    c.get("consumed", "-"),
                    "ok" if not row.problems else "FAIL",
                ]
            ),
            file=out,
        )
    print(file=out)
    print(
        "diff: counts from the manifest; files: data files in the manifest; 02:00: the scheduled "
        "publisher run before the diff (exit 10 = not ready, else events sent); announced: data "
        "files announced on the queue (test event skipped, duplicates dropped); published: events "
        "the publisher started by the chain (the diff job's Diffs Ready event) sent; consumed: the "
        "date's messages on the topic per op.",
        file=out,
    )


def run_pipeline(engine: str, keep: bool = False, out: Any = sys.stdout) -> int:
    from tests.e2e import data
    from tests.e2e import harness as h
    from tests.support.services import aws_env, moto_server, tansu_process

    started = time.monotonic()
    rows: list[Row] = []
    header: list[str] = []
    with moto_server() as endpoint, tansu_process() as (broker, bootstrap), aws_env(endpoint):
        p = h.LocalPipeline(endpoint, bootstrap)
        p.provision()
        n = p.names
        samples = data.sample_snapshots()
        if samples is None:
            base = data.generate_snapshot(300, seed=1)
            yesterday = data.as_files(base)
            today = data.as_files(
                data.evolve(base, seed=2, run_date=DAY1, inserts=12, updates=40, deletes=9)
            )
            source = "generated (libs/diffcore/samples not found)"
        else:
            yesterday, today = samples
            source = f"libs/diffcore/samples ({len(yesterday)} + {len(today)} files)"
        day2 = data.as_files(
            data.evolve(
                data.lines_of(today),
                seed=DAY2_SEED,
                run_date=DAY2,
                inserts=25,
                updates=60,
                deletes=15,
                schema_change=True,
            ),
            name="customers.jsonl",
        )
        header += [
            f"local pipeline: moto {endpoint} (S3, SQS), Tansu {bootstrap} (pid {broker.pid})",
            f"  buckets   ontem={n.before_bucket} hoje={n.after_bucket}",
            f"            diffs={n.diffs_bucket} temp={n.temp_bucket}",
            f"  queue     {n.queue.name} (DLQ {n.queue.dead_letter_name}, max receive "
            f"{n.queue.max_receive_count}); notification on {len(h.announce_spec.notification_rules(p.queue_arn))} "
            f"suffix rule(s); {p.provision_test_events} s3:TestEvent skipped",
            f"  topic     {n.topic} ({p.partitions} partitions)",
            f"  data      {source}; day 2 derived from day 1's today (seed {DAY2_SEED})",
        ]
        plan = [
            (
                "day 1",
                DAY1,
                lambda: (p.load_snapshot("before", yesterday), p.load_snapshot("after", today)),
                False,
            ),
            ("day 2", DAY2, lambda: p.roll_day(day2), False),
            ("rerun day 2", DAY2, lambda: None, True),
        ]
        failed_stage = ""
        for label, run_date, load, rerun in plan:
            row = Row(label, run_date, engine)
            rows.append(row)
            load()
            # The 02:00 schedule fires before the diff has finished (a late diff): not ready on
            # a new date; on the rerun, the date is complete and published already.
            floor = p.publish(run_date)
            row.cells["floor"] = (
                f"exit {floor.exit_code}" if floor.exit_code else str(floor.published)
            )
            floor_ok = (floor.exit_code, floor.published) == ((0, 0) if rerun else (10, 0))
            if not floor_ok:
                row.problems.append(
                    f"publish: the 02:00 run before the diff gave exit {floor.exit_code}, "
                    f"{floor.published} events"
                )
                failed_stage = "publish"
                print(floor.log[-4000:], file=sys.stderr)
                break
            diff = p.run_diff(run_date, engine)
            row.problems += h.check_diff(diff)
            m = diff.manifest
            if m is not None:
                row.cells["diff"] = f"{m.counts.c}/{m.counts.u}/{m.counts.d}"
                row.cells["unchanged"] = str(m.counts.unchanged)
                row.cells["files"] = str(len(m.files))
            if row.problems:
                failed_stage = "diff"
                if diff.log:
                    print(diff.log[-4000:], file=sys.stderr)
                break
            ann = p.announced()
            row.cells["announced"] = str(len(ann.for_date(run_date)))
            if ann.duplicates:
                row.cells["announced"] += f" (+{ann.duplicates} dup)"
            problems = h.check_announce(p, diff, ann)
            if problems:
                row.problems += problems
                failed_stage = "announce"
                break
            chained = p.chained_publishes()  # the rule's task starts, played by the harness
            if [c.run_date for c in chained] != [run_date]:
                row.problems.append(
                    f"publish: the chain started {[c.run_date for c in chained]}, "
                    f"expected one run for {run_date}"
                )
                failed_stage = "publish"
                break
            pub = chained[0]
            row.cells["published"] = str(pub.published)
            problems = h.check_publish(diff, pub, rerun)
            if problems:
                row.problems += problems
                failed_stage = "publish"
                print(pub.log[-4000:], file=sys.stderr)
                break
            messages = p.consume()
            day = h.messages_for(messages, run_date)
            counts = h.op_counts(day)
            row.cells["consumed"] = "/".join(str(counts.get(op, 0)) for op in "cud")
            problems = h.check_consume(p, diff, messages)
            if problems:
                row.problems += problems
                failed_stage = "consume"
                break
        total = len(p.consume()) if not failed_stage else None
        header.append(
            f"  total     {total if total is not None else '?'} messages on {n.topic}, "
            f"{time.monotonic() - started:.1f} s"
        )
        print_report(rows, header, out)
        for row in rows:
            for problem in row.problems:
                print(f"FAIL [{row.label} {row.run_date}] {problem}", file=out)
        if failed_stage:
            print(f"local pipeline FAILED at stage: {failed_stage}", file=out)
        else:
            print("local pipeline OK: every stage agrees", file=out)
        if keep:
            print(
                f"\n--keep: moto at {endpoint}, Kafka at {bootstrap}; "
                f"DIFFS_LOCATION={n.diffs_location} KAFKA_TOPIC={n.topic}. "
                "Press Enter (or Ctrl-C) to tear down.",
                file=out,
            )
            out.flush()
            try:
                if sys.stdin.isatty():
                    input()
                else:
                    while True:
                        time.sleep(3600)
            except (KeyboardInterrupt, EOFError):
                pass
        _stop_spark()
        broker.stop(grace=0.5)  # memory-only: nothing to flush; skip the 5 s SIGTERM grace
    return 1 if failed_stage else 0


def _stop_spark() -> None:
    if "pyspark" not in sys.modules:
        return
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


def main(argv: Sequence[str] | None = None) -> int:
    _ensure_path()
    args = build_parser().parse_args(argv)
    return run_pipeline(args.engine, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
