"""The Glue entry point end to end on local Spark, with S3 (inputs, staging, diffs) on moto.

One moto server and one local Spark session per module: the AWS variables are set before the
session starts, so the Python executors (which read and stage through boto3) reach moto too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from diffcore import layout, ready, s3events
from diffcore.manifest import Manifest
from glue_job import main as job
from tests.support.services import FAKE_AWS, aws_env, moto_server

BUCKET = "diffs-bucket"
DATA = "data-bucket"


# ------------------------------------------------------------------------------ run dates


@pytest.mark.parametrize(
    ("text", "tz", "want"),
    [
        ("2026-11-25", "UTC", "2026-11-25"),
        ("2026-11-25", "Pacific/Auckland", "2026-11-25"),  # a date is taken as it is
        ("2026-11-25T00:30:00Z", "UTC", "2026-11-25"),  # EventBridge Scheduler's scheduled-time
        ("2026-11-25T00:30:00Z", "America/Sao_Paulo", "2026-11-24"),  # 21:30 the day before
        (
            "2026-11-25T23:30:00Z",
            "Pacific/Kiritimati",
            "2026-11-26",
        ),  # UTC+14: across the date line
        (
            "2026-11-25T10:30:00Z",
            "Pacific/Pago_Pago",
            "2026-11-24",
        ),  # UTC-11: same instant, other side
        ("2026-11-25T11:30:00+13:00", "UTC", "2026-11-24"),  # an offset is honoured
        ("2026-11-25T00:30:00", "Pacific/Auckland", "2026-11-25"),  # naive: wall time in --timezone
        ("2026-11-25T00:30:00.123456Z", "UTC", "2026-11-25"),
    ],
)
def test_run_date_parsing(text: str, tz: str, want: str) -> None:
    assert job.parse_run_date(text, tz) == want


def test_run_date_absent_is_today_in_the_time_zone() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert job.parse_run_date(None, "UTC", now) == "2026-11-25"
    assert job.parse_run_date("", "Pacific/Kiritimati", now) == "2026-11-26"
    assert (
        job.parse_run_date(None, "Pacific/Pago_Pago", datetime(2026, 11, 25, 5, 0, tzinfo=UTC))
        == "2026-11-24"
    )
    assert job.parse_run_date(None) == datetime.now(UTC).date().isoformat()


@pytest.mark.parametrize("text", ["2026-02-30", "yesterday", "2026-11-25T25:00:00Z", "25/11/2026"])
def test_run_date_rejects_garbage(text: str) -> None:
    with pytest.raises(job.DiffError) as info:
        job.parse_run_date(text)
    assert info.value.exit_code == 2


def test_unknown_time_zone_is_a_usage_error() -> None:
    with pytest.raises(job.DiffError) as info:
        job.parse_run_date("2026-11-25", "Mars/Olympus")
    assert info.value.exit_code == 2


def test_arguments_defaults_and_glue_extras_ignored() -> None:
    argv = [
        "main.py",
        "--JOB_ID",
        "j_1",
        "--before",
        "b",
        "--after",
        "a",
        "--diffs",
        "d",
        "--key",
        "tenant, id",
        "--job-bookmark-option",
        "job-bookmark-disable",
        "--TempDir",
        "s3://tmp/x",
        "--JOB_RUN_ID",
        "jr_1",
        "--enable-metrics",
        "true",
    ]
    args = job.resolve_args(argv)
    spec, temp = job.build_spec({**args, "run_date": "2026-11-25"})
    assert spec.key == ("tenant", "id") and spec.ignore == () and spec.bad_records == "fail"
    assert spec.allow_empty == frozenset() and spec.output.gzip is False
    assert spec.output.max_records_per_file == layout.DEFAULT_MAX_RECORDS_PER_FILE
    assert temp == "s3://tmp/x" and spec.run_folder == "d/2026-11-25"


def test_arguments_optional_values() -> None:
    argv = [
        "main.py",
        "--before",
        "b",
        "--after",
        "a",
        "--diffs",
        "d",
        "--key",
        "id",
        "--ignore",
        "",
        "--bad_records",
        "quarantine",
        "--allow_empty",
        "before",
        "--gzip",
        "true",
        "--max_records_per_file",
        "10",
        "--run_date",
        "2026-11-25T00:30:00Z",
        "--timezone",
        "America/Sao_Paulo",
    ]
    spec, _ = job.build_spec(job.resolve_args(argv))
    assert spec.ignore == () and spec.bad_records == "quarantine"
    assert spec.allow_empty == frozenset({"before"}) and spec.output.gzip is True
    assert spec.output.max_records_per_file == 10 and spec.run_date == "2026-11-24"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--bad_records", "drop"], 2),
        (["--gzip", "maybe"], 2),
        (["--max_records_per_file", "x"], 2),
        (["--allow_empty", "yesterday"], 2),
        (["--key", ""], 2),
    ],
)
def test_bad_arguments_exit_2(extra: list[str], code: int) -> None:
    argv = ["main.py", "--before", "b", "--after", "a", "--diffs", "d", "--key", "id", *extra]
    assert job.run(argv, spark=object()) == code


def test_location_templates_resolve_from_the_run_date_in_the_time_zone() -> None:
    argv = [
        "main.py",
        "--before",
        "s3://x/e/{yesterday}/",
        "--after",
        "s3://x/e/{run_date:%Y/%m/%d}",
    ]
    argv += ["--diffs", "s3://d", "--key", "id", "--timezone", "America/Sao_Paulo"]
    # 02:30 UTC is 23:30 of the 24th in Sao Paulo: the templates follow the run date, not UTC
    spec, _ = job.build_spec(job.resolve_args([*argv, "--run_date", "2026-11-25T02:30:00Z"]))
    assert (spec.run_date, spec.before, spec.after) == (
        "2026-11-24",
        "s3://x/e/2026-11-23/",
        "s3://x/e/2026/11/24",
    )


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        (
            "s3://x/{today}/",
            "s3://x/{run_date}/",
            "--before 's3://x/{today}/': unknown placeholder",
        ),
        ("s3://x/{yesterday}/", "s3://x/{run_date", "--after 's3://x/{run_date': unbalanced '{'"),
        ("s3://x/{run_date}/", "s3://x/{yesterday}/", "names a later date than --after"),
    ],
)
def test_bad_location_templates_exit_2_naming_the_argument(
    capsys: pytest.CaptureFixture[str], before: str, after: str, message: str
) -> None:
    argv = ["main.py", "--before", before, "--after", after, "--diffs", "s3://d", "--key", "id"]
    assert job.run(argv, spark=object()) == 2
    failed = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "run_failed" in x]
    assert failed[0]["error"] == "config_error" and message in failed[0]["message"]


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url, aws_env(url):
        yield url


@pytest.fixture(scope="module")
def spark(endpoint):
    from diffcore.engines.spark_engine import local_session

    # The Python executors read and stage through boto3: give them moto's endpoint explicitly
    # (a SparkContext started earlier in this process would not see the variables otherwise).
    aws = {
        f"spark__executorEnv__{k}": os.environ[k]
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        )
    }
    from pyspark.sql import SparkSession

    # A session another test module left running (same pytest process) has executors without
    # these variables: start this module's own (under Pants each test file is its own process).
    if (active := SparkSession.getActiveSession()) is not None:
        active.stop()
    session = local_session("glue_job-test", cores=2, shuffle_partitions=4, **aws)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def s3(endpoint):
    client = boto3.client("s3", endpoint_url=endpoint, **FAKE_AWS)
    sqs = boto3.client("sqs", endpoint_url=endpoint, **FAKE_AWS)
    client.create_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket=DATA)
    queue_url = sqs.create_queue(QueueName="diffs-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    client.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": suffix}]}},
                }
                for suffix in layout.DATA_FILE_SUFFIXES
            ]
        },
    )
    client.sqs, client.queue_url = sqs, queue_url  # type: ignore[attr-defined]
    return client


def _put(s3, key: str, lines: list[str]) -> None:
    s3.put_object(Bucket=DATA, Key=key, Body=("\n".join(lines) + "\n").encode())


def _keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def _notified_keys(s3) -> list[str]:
    keys = []
    while True:
        got = s3.sqs.receive_message(
            QueueUrl=s3.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        msgs = got.get("Messages", [])
        if not msgs:
            return keys
        for m in msgs:
            # The project's own parser: URL-decodes keys, skips s3:TestEvent.
            keys += [e.key for e in s3events.parse_message(m["Body"])]
            s3.sqs.delete_message(QueueUrl=s3.queue_url, ReceiptHandle=m["ReceiptHandle"])


def _args(day: str, **extra: str) -> list[str]:
    argv = [
        "main.py",
        "--JOB_ID",
        "j_test",
        "--JOB_RUN_ID",
        "jr_test",
        "--before",
        f"s3://{DATA}/{day}/before/",
        "--after",
        f"s3://{DATA}/{day}/after/",
        "--diffs",
        f"s3://{BUCKET}",
        "--key",
        "id",
        "--TempDir",
        f"s3://{BUCKET}/_glue_tmp/",
        "--run_date",
        "2026-11-25T00:30:00Z",
        "--timezone",
        "UTC",
    ]
    for k, v in extra.items():
        argv += [f"--{k}", v]
    return argv


def _manifest(s3) -> Manifest:
    return Manifest.from_json(
        s3.get_object(Bucket=BUCKET, Key="2026-11-25/_manifest.json")["Body"].read()
    )


def test_end_to_end_on_s3_then_rerun_replaces(s3, spark, capsys) -> None:
    _notified_keys(s3)  # drop the s3:TestEvent
    before = [json.dumps({"id": i, "v": i, "n": {"x": i}}) for i in range(10)]
    after = [json.dumps({"id": i, "v": i + (i % 3 == 0), "n": {"x": i}}) for i in range(2, 14)]
    _put(s3, "d1/before/part-0.jsonl", before[:5])
    _put(s3, "d1/before/part-1.jsonl.gz", [])  # replaced below with real gzip
    import gzip as gz

    s3.put_object(
        Bucket=DATA,
        Key="d1/before/part-1.jsonl.gz",
        Body=gz.compress(("\n".join(before[5:]) + "\n").encode()),
    )
    _put(s3, "d1/before/_SUCCESS", [])
    _put(s3, "d1/after/part-0.ndjson", after)

    assert job.run(_args("d1", max_records_per_file="2", gzip="false"), spark=spark) == 0
    logs = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    done = [entry for entry in logs if entry["event"] == "run_complete"][0]
    # ids 0,1 deleted; 10..13 created; 3,6,9 updated (v + 1)
    assert done["counts"] == {
        "c": 4,
        "u": 3,
        "d": 2,
        "unchanged": 5,
        "bad_records": 0,
        "withheld": 0,
    }
    m = _manifest(s3)
    assert (m.counts.c, m.counts.u, m.counts.d, m.counts.unchanged) == (4, 3, 2, 5)
    assert [f.name for f in m.files] == [layout.data_file_name(i) for i in range(5)]
    assert m.before.records == 10 and len(m.before.files) == 2 and m.after.records == 12
    keys = _keys(s3, BUCKET, "2026-11-25/")
    assert keys == sorted([f"2026-11-25/{f.name}" for f in m.files] + ["2026-11-25/_manifest.json"])
    assert not [
        k for k in _keys(s3, BUCKET) if "_SUCCESS" in k or k.startswith("_glue_tmp/")
    ], "staging left"
    events = [
        json.loads(line)
        for f in m.files
        for line in s3.get_object(Bucket=BUCKET, Key=f"2026-11-25/{f.name}")["Body"]
        .read()
        .splitlines()
    ]
    assert sorted((e["op"], e["key"]["id"]) for e in events) == sorted(
        [
            ("d", 0),
            ("d", 1),
            ("u", 3),
            ("u", 6),
            ("u", 9),
            ("c", 10),
            ("c", 11),
            ("c", 12),
            ("c", 13),
        ]
    )
    assert all(e["changed"] == ["v"] for e in events if e["op"] == "u")
    # Every notification is for a data file: no staging, marker, manifest or temp object.
    notified = _notified_keys(s3)
    assert sorted(set(notified)) == [f"2026-11-25/{f.name}" for f in m.files], notified

    # Rerun for the same date with fewer changes and gzip: replaces the date's output.
    _put(s3, "d2/before/a.jsonl", before)
    _put(s3, "d2/after/a.jsonl", before[:-1])
    assert job.run(_args("d2", gzip="true"), spark=spark) == 0
    m2 = _manifest(s3)
    assert (m2.counts.c, m2.counts.u, m2.counts.d, m2.counts.unchanged) == (0, 0, 1, 9)
    assert _keys(s3, BUCKET, "2026-11-25/") == [
        "2026-11-25/_manifest.json",
        "2026-11-25/part-00000.jsonl.gz",
    ]
    assert not [k for k in _keys(s3, BUCKET) if k.startswith("_glue_tmp/")]
    assert sorted(set(_notified_keys(s3))) == ["2026-11-25/part-00000.jsonl.gz"]


@pytest.mark.parametrize(
    ("before", "after", "code", "error"),
    [
        (['{"id":1}', '{"id":2'], ['{"id":1}'], 3, "malformed_json"),
        (['{"id":1}', "[1,2]"], ['{"id":1}'], 4, "not_an_object"),
        (['{"id":1}'], ['{"id":1}', '{"v":2}'], 5, "missing_key"),
        (['{"id":1}'], ['{"id":1}', '{"id":1,"v":2}'], 6, "duplicate_key"),
        (['{"id":1}'], [""], 7, "empty_snapshot"),
    ],
)
def test_bad_input_fails_with_its_class_and_leaves_no_manifest(
    s3, spark, capsys, before, after, code, error
) -> None:
    day = f"bad-{error}"
    _put(s3, "good/before/a.jsonl", ['{"id":1}'])
    _put(s3, "good/after/a.jsonl", ['{"id":2}'])
    assert job.run(_args("good"), spark=spark) == 0  # a complete earlier run of the date
    _notified_keys(s3)
    capsys.readouterr()
    _put(s3, f"{day}/before/a.jsonl", before)
    _put(s3, f"{day}/after/b.jsonl", after)
    assert job.run(_args(day), spark=spark) == code
    failed = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"run_failed"' in line
    ]
    assert failed and failed[0]["error"] == error and failed[0]["exit_code"] == code
    if error != "empty_snapshot":
        # the bad line; for a duplicate, its first occurrence (the message lists every one)
        assert failed[0]["file"].endswith(("a.jsonl", "b.jsonl"))
        assert failed[0]["line"] == (1 if error == "duplicate_key" else 2)
    if error == "duplicate_key":
        assert "b.jsonl:1" in failed[0]["message"] and "b.jsonl:2" in failed[0]["message"]
    assert "2026-11-25/_manifest.json" not in _keys(s3, BUCKET), "a failed run left a manifest"
    assert not [k for k in _keys(s3, BUCKET) if k.startswith("_glue_tmp/")]
    assert _notified_keys(s3) == []


def test_quarantine_on_local_paths(spark, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "x.jsonl").write_text('{"id":1,"v":1}\n{"id":2,"v":2}\nnot json\n')
    (tmp_path / "a" / "x.jsonl").write_text('{"id":1,"v":1}\n{"v":3}\n{"id":3}\n')
    argv = [
        "main.py",
        "--before",
        str(tmp_path / "b"),
        "--after",
        str(tmp_path / "a"),
        "--diffs",
        str(tmp_path / "diffs"),
        "--key",
        "id",
        "--bad_records",
        "quarantine",
        "--run_date",
        "2026-11-25",
        "--TempDir",
        str(tmp_path / "tmp"),
    ]
    assert job.run(argv, spark=spark) == 0
    folder = tmp_path / "diffs" / "2026-11-25"
    m = Manifest.from_json((folder / layout.MANIFEST_NAME).read_text())
    assert (m.counts.c, m.counts.d, m.counts.unchanged, m.counts.bad_records) == (1, 1, 1, 2)
    bad = [json.loads(x) for x in (folder / layout.BAD_RECORDS_NAME).read_text().splitlines()]
    assert sorted((b["reason"], b["side"], b["line"]) for b in bad) == [
        ("malformed_json", "before", 3),
        ("missing_key", "after", 2),
    ]
    assert sorted(p.name for p in folder.iterdir()) == [
        layout.BAD_RECORDS_NAME,
        layout.MANIFEST_NAME,
        "part-00000.jsonl",
    ]
    assert not any((tmp_path / "tmp").rglob("*.staged"))


def test_script_exits_non_zero_as_a_process(tmp_path: Path) -> None:
    """The real entry point (`python -m glue_job.main`): exit code and JSON log on stdout."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jsonl").write_text('{"id":1}\n{"id":1}\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "glue_job.main",
            "--before",
            str(tmp_path / "b"),
            "--after",
            str(tmp_path / "b"),
            "--diffs",
            str(tmp_path / "diffs"),
            "--key",
            "id",
            "--run_date",
            "2026-11-25",
            "--JOB_ID",
            "x",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 6, proc.stdout + proc.stderr[-3000:]
    failed = [
        json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{") and "run_failed" in x
    ]
    assert failed[0]["error"] == "duplicate_key" and failed[0]["line"] in (1, 2)
    assert not (tmp_path / "diffs" / "2026-11-25" / layout.MANIFEST_NAME).exists()


def test_date_templated_locations_on_s3(s3, spark, capsys) -> None:
    """Dated export prefixes in one bucket: `{yesterday}`/`{run_date}` read exactly the two
    days' folders (not the next day's), the manifest records the resolved locations, the log
    both the templates and what they resolved to."""
    _notified_keys(s3)
    _put(s3, "exports/2026-11-24/part-0.jsonl", ['{"id":1,"v":1}', '{"id":2,"v":1}'])
    _put(s3, "exports/2026-11-25/part-0.jsonl", ['{"id":1,"v":2}', '{"id":3,"v":1}'])
    _put(s3, "exports/2026-11-26/part-0.jsonl", ['{"id":7,"v":7}'])
    argv = _args("unused")
    argv[argv.index("--before") + 1] = f"s3://{DATA}/exports/{{yesterday}}/"
    argv[argv.index("--after") + 1] = f"s3://{DATA}/exports/{{run_date}}/"
    argv[argv.index("--diffs") + 1] = f"s3://{BUCKET}/templated"
    assert job.run(argv, spark=spark) == 0
    logs = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    start = next(e for e in logs if e["event"] == "run_start")
    assert start["before"] == f"s3://{DATA}/exports/2026-11-24/"
    assert start["before_template"] == f"s3://{DATA}/exports/{{yesterday}}/"
    done = next(e for e in logs if e["event"] == "run_complete")
    assert done["counts"] == {
        "c": 1,
        "u": 1,
        "d": 1,
        "unchanged": 0,
        "bad_records": 0,
        "withheld": 0,
    }
    m = Manifest.from_json(
        s3.get_object(Bucket=BUCKET, Key="templated/2026-11-25/_manifest.json")["Body"].read()
    )
    assert m.before.location == f"s3://{DATA}/exports/2026-11-24/"
    assert m.after.location == f"s3://{DATA}/exports/2026-11-25/"
    assert [f.path for f in m.after.files] == [f"s3://{DATA}/exports/2026-11-25/part-0.jsonl"]
    _notified_keys(s3)


def test_announce_ready_puts_the_event_the_chain_rule_matches(endpoint, capsys) -> None:
    """The "diffs ready" event reaches a rule with the chain's pattern (moto's EventBridge);
    without --ready_event_bus nothing is sent; a failed send is a warning, not a failed run."""
    events = boto3.client("events", endpoint_url=endpoint, **FAKE_AWS)
    sqs = boto3.client("sqs", endpoint_url=endpoint, **FAKE_AWS)
    url = sqs.create_queue(QueueName="ready-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="ready", EventPattern=json.dumps(ready.rule_pattern("diffs-job")))
    events.put_targets(Rule="ready", Targets=[{"Id": "q", "Arn": arn}])
    args = {"ready_event_bus": "default", "JOB_NAME": "diffs-job"}
    job.setup_logging()  # JSON lines on this test's stdout

    assert job.announce_ready({}, "2026-11-25", "s3://d/2026-11-25", 3) is False
    assert job.announce_ready(args, "2026-11-25", "s3://d/2026-11-25", 3) is True
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"])["detail"]["run_date"] for m in got] == ["2026-11-25"]
    assert '"ready_event_sent"' in capsys.readouterr().out

    missing = {**args, "ready_event_bus": "no-such-bus"}
    assert job.announce_ready(missing, "2026-11-25", "s3://d/2026-11-25", 3) is False
    assert job.announce_ready({"ready_event_bus": "default"}, "2026-11-25", "s3://d/", 3) is False
    warnings = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [w["event"] for w in warnings] == ["ready_event_failed"] * 2
    assert all(w["level"] == "WARNING" for w in warnings)
