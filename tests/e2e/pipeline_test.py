"""The pipeline end to end on moto (S3, SQS) and Tansu (Kafka): diff -> announce -> publish -> consume.

One moto server per module (reset before each test: a clean account), one Tansu broker per test
(memory-only, ~20 ms to start). Every test provisions what the CDK app deploys, with its names and
the shared announce definition (`tests/e2e/harness.py`). The Polars engine everywhere except one
test, which runs the Glue job's entry point on local Spark.
"""

from __future__ import annotations

import io
import json
import os
import signal
from collections import Counter

import pytest

from diffcore import ready
from diffcore.events import parse_event
from tests.e2e import data
from tests.e2e import harness as h
from tests.support.services import aws_env, moto_server, tansu_process

D1, D2 = "2026-11-25", "2026-11-26"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url, aws_env(url):
        yield url


@pytest.fixture()
def broker():
    with tansu_process() as (proc, bootstrap):
        yield proc, bootstrap
        # A memory-only test broker: no need for the 5 s SIGTERM grace while a client that the
        # test left behind (a producer awaiting garbage collection) still holds a connection.
        proc.stop(grace=0.5)


@pytest.fixture()
def pipeline(endpoint, broker) -> h.LocalPipeline:
    h.reset_moto(endpoint)
    p = h.LocalPipeline(endpoint, broker[1])
    p.provision()
    assert p.provision_test_events == 1  # the s3:TestEvent, skipped by parse_message
    return p


# ------------------------------------------------------------------------------ data


def snapshots() -> tuple[list[str], list[str], list[str]]:
    """Yesterday, today (day 1) and the day after (day 2, with a schema change)."""
    base = data.generate_snapshot(150, seed=11)
    today = data.evolve(base, seed=12, run_date=D1, inserts=10, updates=25, deletes=6)
    day2 = data.evolve(
        today, seed=13, run_date=D2, inserts=15, updates=30, deletes=8, schema_change=True
    )
    return base, today, day2


def reference_ops(before: list[str], after: list[str]) -> dict[str, int]:
    """c/u/d by id, from parsed records (the generator makes no 1-vs-1.0 or null-member cases)."""
    b = {r["id"]: r for r in map(json.loads, before)}
    a = {r["id"]: r for r in map(json.loads, after)}
    return {
        "c": len(a.keys() - b.keys()),
        "u": sum(1 for k in a.keys() & b.keys() if a[k] != b[k]),
        "d": len(b.keys() - a.keys()),
    }


def counts(diff: h.DiffOutcome) -> dict[str, int]:
    assert diff.manifest is not None, (
        diff.exit_code,
        diff.error_class,
        diff.message,
        diff.log[-2000:],
    )
    m = diff.manifest.counts
    return {"c": m.c, "u": m.u, "d": m.d}


def run_day(
    p: h.LocalPipeline, run_date: str, engine: str = "polars", rerun: bool = False, **extra: str
) -> tuple[h.DiffOutcome, h.AnnounceOutcome, h.PublishOutcome]:
    """Diff, announce, publish one date, asserting that each stage agrees with the one before."""
    diff = p.run_diff(run_date, engine, extra={f"--{k}": v for k, v in extra.items()})
    assert h.check_diff(diff) == []
    ann = p.announced()
    assert h.check_announce(p, diff, ann) == []
    for f in ann.files:  # each message gives path and date
        assert f.run_date == run_date and f.key.startswith(f"{run_date}/part-")
        assert f.bucket == p.names.diffs_bucket
    pub = p.publish(run_date)
    assert h.check_publish(diff, pub, rerun) == [], pub.log[-3000:]
    return diff, ann, pub


# ------------------------------------------------------------------------------ happy path


def test_two_days_and_a_rerun(pipeline: h.LocalPipeline) -> None:
    p = pipeline
    base, today, day2 = snapshots()

    p.load_snapshot(
        "before",
        data.as_files(base[:70], "part-a.jsonl") | data.as_files(base[70:], "part-b.jsonl"),
    )
    p.load_snapshot("after", data.as_files(today))
    diff1, ann1, _ = run_day(p, D1, max_records_per_file="15")
    assert counts(diff1) == reference_ops(base, today) == {"c": 10, "u": 25, "d": 6}
    assert len(diff1.manifest.files) == 3 and len(ann1.for_date(D1)) == 3

    p.roll_day(data.as_files(day2))  # today becomes yesterday
    diff2, ann2, _ = run_day(p, D2, max_records_per_file="20", gzip="true")
    assert counts(diff2) == reference_ops(today, day2)
    assert all(f.name.endswith(".jsonl.gz") for f in diff2.manifest.files)
    assert sorted(f.key for f in ann2.files) == sorted(
        f"{D2}/{f.name}" for f in diff2.manifest.files
    )
    drift = diff2.manifest.schema_drift
    assert "preferences.channel" in drift.added and "legacy" in drift.removed
    assert [t.path for t in drift.type_changed] == ["active"]

    messages = p.consume(expected=diff1.manifest.counts.changes + diff2.manifest.counts.changes)
    assert h.check_consume(p, diff1, messages) == []  # event by event: value, key, headers
    assert h.check_consume(p, diff2, messages) == []

    # Rerun of day 2: same files (same SHA-256), announced again, nothing published again.
    rerun, ann3, pub3 = run_day(p, D2, rerun=True, max_records_per_file="20", gzip="true")
    assert [f.sha256 for f in rerun.manifest.files] == [f.sha256 for f in diff2.manifest.files]
    assert len(ann3.for_date(D2)) == len(rerun.manifest.files)
    assert pub3.published == 0 and pub3.summary["files_skipped"] == len(rerun.manifest.files)
    after = p.consume(expected=len(messages))
    assert len(after) == len(messages)
    ids = Counter(h.headers_of(m)["event_id"] for m in after)
    assert max(ids.values()) == 1  # nothing duplicated on the topic
    assert h.check_consume(p, rerun, after) == []


def test_spark_engine_through_the_glue_entry_point(pipeline: h.LocalPipeline) -> None:
    """The one Spark test: `glue_job.main.run` (local Spark, S3 on moto), then the same stages."""
    p = pipeline
    base, today, _ = snapshots()
    p.load_snapshot("before", data.as_files(base))
    p.load_snapshot("after", data.as_files(today))
    try:
        diff, ann, pub = run_day(p, D1, engine="spark", max_records_per_file="25")
    finally:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()
    assert diff.manifest.engine.name == "spark"
    assert counts(diff) == reference_ops(base, today)
    assert len(ann.for_date(D1)) == len(diff.manifest.files) == 2
    assert pub.published == diff.manifest.counts.changes
    messages = p.consume(expected=diff.manifest.counts.changes)
    assert h.check_consume(p, diff, messages) == []


def test_the_command_runs_two_days_and_a_rerun_on_the_samples() -> None:
    """`local-pipeline --engine polars`: its own services, the bundled samples, exit 0."""
    from tests.e2e import local_pipeline

    out = io.StringIO()
    assert local_pipeline.run_pipeline("polars", out=out) == 0, out.getvalue()
    report = out.getvalue()
    assert "every stage agrees" in report and "FAIL" not in report
    assert report.count("  ok") == 3


# ------------------------------------------------------------------------------ faults


def test_broker_down_during_publishing_then_the_rerun_completes_the_day(
    pipeline: h.LocalPipeline, broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tansu is stopped (SIGSTOP by PID) right after the first file is acknowledged: the
    publisher fails with 12, that file keeps its checkpoint; after SIGCONT the rerun publishes
    the rest and every event of the day is on the topic (an interrupted file may repeat)."""
    import kafka_publisher.checkpoints as checkpoints

    p = pipeline
    proc, _ = broker
    base, today, _ = snapshots()
    p.load_snapshot("before", data.as_files(base))
    p.load_snapshot("after", data.as_files(today))
    diff = p.run_diff(D1, extra={"--max_records_per_file": "10"})
    assert h.check_diff(diff) == [] and len(diff.manifest.files) == 5
    assert h.check_announce(p, diff, p.announced()) == []

    original = checkpoints.save
    saved: list[str] = []

    def save_then_stop_broker(diffs, run_date, data_file, *rest, **kwargs):
        result = original(diffs, run_date, data_file, *rest, **kwargs)
        saved.append(data_file.name)
        if len(saved) == 1:
            os.kill(proc.pid, signal.SIGSTOP)
        return result

    monkeypatch.setattr(checkpoints, "save", save_then_stop_broker)
    try:
        down = p.publish(D1, extra_env={"KAFKA_PROP_MESSAGE_TIMEOUT_MS": "1500"})
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    monkeypatch.setattr(checkpoints, "save", original)
    assert down.exit_code == 12, down.log[-3000:]
    assert saved == [diff.manifest.files[0].name]

    again = p.publish(D1)
    assert again.exit_code == 0, again.log[-3000:]
    assert again.summary["files_skipped"] == 1
    assert again.summary["files_published"] == len(diff.manifest.files) - 1

    lines = p.data_lines(D1, diff.manifest)
    expected = {parse_event(line).event_id.encode(): (name, line) for name, line in lines}
    day = h.messages_for(p.consume(expected=len(expected)), D1)
    got = Counter(h.headers_of(m)["event_id"] for m in day)
    assert set(got) == set(expected)  # every event present
    for m in day:
        name, line = expected[h.headers_of(m)["event_id"]]
        assert m.value() == line and h.headers_of(m)["source_file"] == name.encode()
    repeated = {expected[i][0] for i, n in got.items() if n > 1}
    assert repeated <= {diff.manifest.files[1].name}  # only the interrupted file may repeat


def test_publisher_started_before_the_diff_finished_is_not_ready(pipeline: h.LocalPipeline) -> None:
    p = pipeline
    base, today, _ = snapshots()
    p.load_snapshot("before", data.as_files(base))
    p.load_snapshot("after", data.as_files(today))

    early = p.publish(D1)  # the diff stage has not started
    assert early.exit_code == 10 and "not ready" in early.log, early.log[-2000:]

    during: list[h.PublishOutcome] = []

    def progress(stage: str, done: int, total: int) -> None:
        # Every event written, the manifest not yet: the publisher starts right now.
        if stage == "write" and done == total and not during:
            during.append(p.publish(D1))

    diff = p.run_diff(D1, extra={"--max_records_per_file": "15"}, progress=progress)
    assert h.check_diff(diff) == []
    assert len(during) == 1 and during[0].exit_code == 10, during and during[0].log[-2000:]
    assert during[0].published == 0
    assert h.check_announce(p, diff, p.announced()) == []

    after = p.publish(D1)
    assert h.check_publish(diff, after, rerun=False) == []
    messages = p.consume(expected=diff.manifest.counts.changes)
    assert len(messages) == diff.manifest.counts.changes
    assert h.check_consume(p, diff, messages) == []


def test_bad_input_on_day_two_announces_and_publishes_nothing(pipeline: h.LocalPipeline) -> None:
    p = pipeline
    base, today, day2 = snapshots()
    p.load_snapshot("before", data.as_files(base))
    p.load_snapshot("after", data.as_files(today))
    diff1, _, _ = run_day(p, D1)

    broken = list(day2)
    broken[40] = broken[40][: len(broken[40]) // 2]  # a truncated record: malformed JSON
    p.roll_day(data.as_files(broken, "customers.jsonl"))
    diff2 = p.run_diff(D2)
    assert (diff2.exit_code, diff2.error_class) == (3, "malformed_json"), diff2.message
    assert "customers.jsonl" in diff2.message and "line 41" in diff2.message
    assert diff2.manifest is None and p.manifest(D2) is None

    ann = p.announced()
    assert ann.messages == 0 and ann.for_date(D2) == []  # nothing announced for the date
    pub = p.publish(D2)
    assert pub.exit_code == 10 and pub.published == 0
    messages = p.consume(expected=diff1.manifest.counts.changes)
    assert h.messages_for(messages, D2) == []
    assert len(messages) == diff1.manifest.counts.changes
    assert h.check_consume(p, diff1, messages) == []


def test_chained_publish_after_a_late_diff_publishes_the_day_once(
    pipeline: h.LocalPipeline,
) -> None:
    """The 02:00 publisher runs before the diff: not ready (exit 10). The diff finishes, its
    "Diffs Ready" event goes through EventBridge (moto) to the chain rule, whose task overrides
    start the publisher for that date: the day is published. The next scheduled run and a
    duplicate delivery publish nothing; the topic holds every event once. A backfill of an older
    date is published for that date, not for today."""
    p = pipeline
    base, today, _ = snapshots()
    p.load_snapshot("before", data.as_files(base))
    p.load_snapshot("after", data.as_files(today))

    floor = p.publish(D1)  # 02:00: the diff has not finished
    assert floor.exit_code == 10 and "not ready" in floor.log and floor.published == 0
    assert p.chained_publishes() == []  # nothing announced a ready date yet

    diff = p.run_diff(D1, extra={"--max_records_per_file": "15"})
    assert h.check_diff(diff) == [] and len(diff.manifest.files) > 1
    assert h.check_announce(p, diff, p.announced()) == []
    (chained,) = p.chained_publishes()  # exactly one start, for the date the job wrote
    assert chained.run_date == D1 and chained.exit_code == 0, chained.log[-2000:]
    assert h.check_publish(diff, chained, rerun=False) == []

    again = p.publish(D1)  # the floor again (or the schedule's retry): already published
    assert h.check_publish(diff, again, rerun=True) == []
    # EventBridge delivers at least once: the same event again starts a run that publishes nothing
    entry = ready.put_events_entry(
        ready.DEFAULT_BUS, p.config.job_name, D1, "s3://x/", diff.manifest.counts.changes
    )
    assert p.events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    (redelivered,) = p.chained_publishes()
    assert redelivered.exit_code == 0 and redelivered.published == 0

    changes = diff.manifest.counts.changes
    messages = p.consume(expected=changes)
    ids = Counter(h.headers_of(m)["event_id"] for m in messages if m.value() is not None)
    assert len(ids) == changes and set(ids.values()) == {1}  # every event once, none twice
    assert h.check_consume(p, diff, messages) == []

    # a backfill of an older date: the chained run publishes that date (RUN_DATE from the event)
    backfill = p.run_diff("2026-11-20")
    assert h.check_diff(backfill) == []
    (chained_backfill,) = p.chained_publishes()
    assert chained_backfill.run_date == "2026-11-20" and chained_backfill.exit_code == 0
    assert chained_backfill.published == backfill.manifest.counts.changes
    messages = p.consume(expected=2 * changes)
    assert len(h.messages_for(messages, "2026-11-20")) == backfill.manifest.counts.changes
    assert len(h.messages_for(messages, D1)) == changes
