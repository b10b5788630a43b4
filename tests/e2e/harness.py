"""The whole pipeline on one machine: moto (S3, SQS) and Tansu (Kafka) on loopback.

    with moto_server() as endpoint, tansu_process() as (broker, bootstrap), aws_env(endpoint):
        p = LocalPipeline(endpoint, bootstrap)
        p.provision()                                  # buckets, queue + DLQ, policy, notification, topic
        p.load_snapshot("before", files); p.load_snapshot("after", files2)
        diff = p.run_diff("2026-11-25", engine="polars")     # the diff stage
        ann = p.announced()                            # drain the queue: parse_message + unique
        pub = p.publish("2026-11-25")                  # kafka_publisher.main.main
        msgs = p.consume()
        problems = check_day(p, diff, ann, pub, msgs)  # [] when every stage agrees
        chained = p.chained_publishes()                # the publisher runs the diff job started

Names and settings come from `PipelineConfig` (defaults + infra/cdk/cdk.json's context) and the
announce wiring from `pipeline_infra.announce_spec`, the module the CDK app builds it from.
Buckets without a configured name get `<name_prefix>-<role>-<account>-<region>` with a made-up
account id (moto's default, 123456789012).

The diff stage: `--engine spark` runs the Glue job's entry point (`glue_job.main.run`, local
Spark); `--engine polars` builds the same `RunSpec` from the same job arguments
(`glue_job.main.resolve_args` / `build_spec`) and runs diffcore's Polars engine: the same stage
with the fast engine, the same layout.

The chained publish (infra/cdk/pipeline_infra/chain_stage.py): the diff stage runs with
`--ready_event_bus default --JOB_NAME <job>` as the CDK app configures it, so a complete run puts
the "Diffs Ready" event (`diffcore.ready`, sent by the job's own `announce_ready`) on moto's
EventBridge. `provision` creates the chain rule there with the CDK's pattern and input
transformer; its target is an SQS queue standing in for ECS RunTask (moto runs no tasks), so
the queue receives exactly the task overrides ECS would. `chained_publishes` plays ECS: for
each, it starts the publisher with the overrides' `RUN_DATE` in its environment (no other
argument, as the task gets it).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from diffcore import layout, ready, s3events, store
from diffcore.events import kafka_key, parse_event
from diffcore.manifest import Manifest
from pipeline_infra import announce_spec
from pipeline_infra.announce_spec import QueueSettings
from pipeline_infra.config import PipelineConfig, find_repo_root
from tests.support.services import FAKE_AWS, consume_all, create_topics, patched_environ

LOCAL_ACCOUNT = "123456789012"  # made up (moto's default account)
LOCAL_REGION = FAKE_AWS["region_name"]
GLUE_TEMP_PREFIX = "glue-temp"  # as infra/cdk/pipeline_infra/storage.py's --TempDir
TOPIC_PARTITIONS = 3
# The publisher's container the chain's overrides name (= publish_stage.CONTAINER_NAME, checked
# in chain_stage_test; importing publish_stage here would start jsii).
PUBLISHER_CONTAINER = ready.PUBLISHER_CONTAINER
ENGINES = ("spark", "polars")


# ------------------------------------------------------------------------------ config, names


def load_config(overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """`PipelineConfig` from infra/cdk/cdk.json's context (if found) plus `overrides`."""
    context: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        cdk_json = find_repo_root() / "infra" / "cdk" / "cdk.json"
        context.update(json.loads(cdk_json.read_text(encoding="utf-8")).get("context", {}))
    context.update(overrides or {})
    return PipelineConfig.from_mapping(context)


@dataclass(frozen=True)
class Names:
    before_bucket: str
    after_bucket: str
    diffs_bucket: str
    temp_bucket: str
    before_prefix: str
    after_prefix: str
    queue: QueueSettings
    topic: str
    account: str
    region: str

    @classmethod
    def from_config(
        cls, config: PipelineConfig, account: str = LOCAL_ACCOUNT, region: str = LOCAL_REGION
    ) -> Names:
        def bucket(role: str) -> str:
            return config.bucket_name(role) or announce_spec.default_bucket_name(
                config.name_prefix, role, account, region
            )

        return cls(
            before_bucket=bucket("ontem"),
            after_bucket=bucket("hoje"),
            diffs_bucket=bucket("diffs"),
            temp_bucket=bucket("glue-temp"),
            before_prefix=config.before_prefix,
            after_prefix=config.after_prefix,
            queue=announce_spec.queue_settings(config.queue_name, config.queue_max_receive_count),
            topic=config.kafka_topic,
            account=account,
            region=region,
        )

    @property
    def diffs_location(self) -> str:
        return f"s3://{self.diffs_bucket}"

    def snapshot_location(self, side: str) -> str:
        if side == "before":
            return f"s3://{self.before_bucket}/{self.before_prefix}"
        return f"s3://{self.after_bucket}/{self.after_prefix}"


# ------------------------------------------------------------------------------ environment


def reset_moto(endpoint_url: str) -> None:
    """Forget every bucket, queue and object (moto's reset API): a clean account per test."""
    import urllib.request

    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        response.read()


# ------------------------------------------------------------------------------ stage results


@dataclass
class DiffOutcome:
    run_date: str
    engine: str
    exit_code: int
    manifest: Manifest | None = None
    error_class: str | None = None
    message: str = ""
    seconds: float = 0.0
    log: str = ""


@dataclass
class AnnounceOutcome:
    messages: int = 0  # SQS messages received (test events included)
    test_events: int = 0
    duplicates: int = 0
    files: list[s3events.DiffFileEvent] = field(default_factory=list)  # unique data files

    def for_date(self, run_date: str) -> list[s3events.DiffFileEvent]:
        return [f for f in self.files if f.run_date == run_date]


@dataclass
class PublishOutcome:
    run_date: str
    exit_code: int
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    log: str = ""

    @property
    def published(self) -> int:
        return int(self.summary.get("events") or 0)


# ------------------------------------------------------------------------------ the pipeline


class LocalPipeline:
    def __init__(
        self,
        endpoint_url: str,
        bootstrap: str,
        config: PipelineConfig | None = None,
        partitions: int = TOPIC_PARTITIONS,
    ) -> None:
        import boto3

        self.endpoint_url = endpoint_url
        self.bootstrap = bootstrap
        self.config = config or load_config()
        self.names = Names.from_config(self.config)
        self.partitions = partitions
        self.s3 = boto3.client("s3", endpoint_url=endpoint_url, **FAKE_AWS)
        self.sqs = boto3.client("sqs", endpoint_url=endpoint_url, **FAKE_AWS)
        self.queue_url = ""
        self.queue_arn = ""
        self.provision_test_events = 0
        self.events = boto3.client("events", endpoint_url=endpoint_url, **FAKE_AWS)
        self.trigger_queue_url = ""

    # -- provisioning ----------------------------------------------------------------------
    def provision(self) -> None:
        """Buckets, DLQ, queue (+ policy), the diffs bucket's notification, the topic."""
        n = self.names
        for bucket in (n.before_bucket, n.after_bucket, n.diffs_bucket, n.temp_bucket):
            self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(
            Bucket=n.diffs_bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        settings = n.queue
        dlq_url = self.sqs.create_queue(
            QueueName=settings.dead_letter_name, Attributes=settings.dead_letter_attributes()
        )["QueueUrl"]
        dlq_arn = announce_spec.queue_arn(settings.dead_letter_name, n.account, n.region)
        self.sqs.set_queue_attributes(
            QueueUrl=dlq_url,
            Attributes={
                "Policy": json.dumps(
                    announce_spec.policy_document([announce_spec.tls_only_statement(dlq_arn)])
                )
            },
        )
        self.queue_arn = announce_spec.queue_arn(settings.name, n.account, n.region)
        self.queue_url = self.sqs.create_queue(
            QueueName=settings.name, Attributes=settings.queue_attributes(dlq_arn)
        )["QueueUrl"]
        actual_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        if actual_arn != self.queue_arn:
            raise RuntimeError(f"queue ARN {actual_arn} != expected {self.queue_arn}")
        statements = announce_spec.queue_policy_statements(
            self.queue_arn, announce_spec.bucket_arn(n.diffs_bucket), n.account
        )
        self.sqs.set_queue_attributes(
            QueueUrl=self.queue_url,
            Attributes={"Policy": json.dumps(announce_spec.policy_document(statements))},
        )
        # Policy first, then the notification (S3 checks the permission when it is set).
        self.s3.put_bucket_notification_configuration(
            Bucket=n.diffs_bucket,
            NotificationConfiguration=announce_spec.notification_configuration(self.queue_arn),
        )
        self._provision_chain()
        create_topics(self.bootstrap, {n.topic: self.partitions})
        # The s3:TestEvent S3 sends when the configuration is set.
        self.provision_test_events = self.announced(settle=0.5).test_events

    def _provision_chain(self) -> None:
        """The chained-publish rule on the default bus, as chain_stage.py defines it (pattern and
        input transformer from `diffcore.ready`); its target, an SQS queue, stands in for ECS."""
        name = f"{self.config.name_prefix}-publisher-runs"
        self.trigger_queue_url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        trigger_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.trigger_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        rule = f"{self.config.name_prefix}-chained-publish"
        self.events.put_rule(
            Name=rule,
            EventPattern=json.dumps(ready.rule_pattern(self.config.job_name)),
            State="ENABLED",
        )
        self.events.put_targets(
            Rule=rule,
            Targets=[
                {
                    "Id": "Publisher",
                    "Arn": trigger_arn,
                    "InputTransformer": {
                        "InputPathsMap": ready.INPUT_PATHS,
                        "InputTemplate": ready.ecs_overrides_template(PUBLISHER_CONTAINER),
                    },
                }
            ],
        )

    # -- snapshots -------------------------------------------------------------------------
    def _clear(self, bucket: str, prefix: str) -> None:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                self.s3.delete_object(Bucket=bucket, Key=obj["Key"])

    def _side(self, side: str) -> tuple[str, str]:
        n = self.names
        if side == "before":
            return n.before_bucket, n.before_prefix
        if side == "after":
            return n.after_bucket, n.after_prefix
        raise ValueError(side)

    def load_snapshot(self, side: str, files: Mapping[str, bytes]) -> None:
        """Replace the snapshot in the before ("ontem") or after ("hoje") bucket."""
        bucket, prefix = self._side(side)
        self._clear(bucket, prefix)
        for name, body in files.items():
            self.s3.put_object(Bucket=bucket, Key=f"{prefix}{name}", Body=body)

    def snapshot_files(self, side: str) -> dict[str, bytes]:
        bucket, prefix = self._side(side)
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                body = self.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                out[obj["Key"][len(prefix) :]] = body
        return out

    def roll_day(self, new_today: Mapping[str, bytes]) -> None:
        """Next day: today's snapshot becomes yesterday's, `new_today` is today's."""
        self.load_snapshot("before", self.snapshot_files("after"))
        self.load_snapshot("after", new_today)

    # -- the diff stage ----------------------------------------------------------------------
    def job_argv(self, run_date: str, extra: Mapping[str, str] | None = None) -> list[str]:
        """The Glue job's arguments, as infra/cdk/pipeline_infra/diff_stage.py passes them."""
        n, c = self.names, self.config
        args = {
            "--before": n.snapshot_location("before"),
            "--after": n.snapshot_location("after"),
            "--diffs": n.diffs_location,
            "--key": ",".join(c.key_fields),
            "--ignore": ",".join(c.ignore_fields),
            "--bad_records": c.bad_records,
            "--allow_empty": c.allow_empty,
            "--timezone": c.timezone,
            "--TempDir": f"s3://{n.temp_bucket}/{GLUE_TEMP_PREFIX}/",
            "--job-bookmark-option": "job-bookmark-disable",
            "--ready_event_bus": ready.DEFAULT_BUS,  # chain_stage.py's default argument
            "--JOB_NAME": c.job_name,  # Glue passes it to every run
            "--run_date": run_date,
            **(extra or {}),
        }
        argv = ["glue_job"]
        for k, v in args.items():
            argv += [k, v]
        return argv

    def run_diff(
        self,
        run_date: str,
        engine: str = "polars",
        extra: Mapping[str, str] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> DiffOutcome:
        from glue_job import main as job

        argv = self.job_argv(run_date, extra)
        out = DiffOutcome(run_date=run_date, engine=engine, exit_code=-1)
        started = time.monotonic()
        buffer = io.StringIO()
        if engine == "spark":
            with contextlib.redirect_stdout(buffer):
                out.exit_code = job.run(argv)
            for line in buffer.getvalue().splitlines():
                with contextlib.suppress(ValueError):
                    obj = json.loads(line)
                    if obj.get("event") == "run_failed":
                        out.error_class = obj.get("error")
                        out.message = obj.get("message") or ""
        elif engine == "polars":
            from diffcore.engines.polars_engine import PolarsEngine
            from diffcore.errors import DiffError

            try:
                args = job.resolve_args(argv)
                spec, _temp = job.build_spec(args)
                result = PolarsEngine(progress=progress, parallel=False).run(spec)
                out.exit_code = 0
                # what the Glue entry point does after a complete run: "diffs ready"
                with contextlib.redirect_stdout(buffer):
                    job.setup_logging()
                    job.announce_ready(
                        args, spec.run_date, result.folder, result.manifest.counts.changes
                    )
            except DiffError as exc:
                out.exit_code, out.error_class, out.message = (
                    exc.exit_code,
                    exc.error_class.value,
                    exc.describe(),
                )
        else:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        out.seconds = time.monotonic() - started
        out.log = buffer.getvalue()
        out.manifest = self.manifest(run_date)
        return out

    def manifest(self, run_date: str) -> Manifest | None:
        location = store.join(
            layout.run_folder(self.names.diffs_location, run_date), layout.MANIFEST_NAME
        )
        try:
            return Manifest.from_json(store.read_bytes(location))
        except FileNotFoundError:
            return None

    def data_lines(self, run_date: str, manifest: Manifest) -> list[tuple[str, bytes]]:
        """(file name, line without newline) of every event of the day, in manifest order."""
        out = []
        folder = layout.run_folder(self.names.diffs_location, run_date)
        for f in manifest.files:
            body = store.read_bytes(store.join(folder, f.name))
            if f.name.endswith(".gz"):
                body = gzip.decompress(body)
            out.extend((f.name, line) for line in body.split(b"\n") if line.strip())
        return out

    # -- announce ------------------------------------------------------------------------------
    def announced(self, settle: float = 0.3) -> AnnounceOutcome:
        """Drain the queue: every message parsed with `s3events.parse_message`, test events
        skipped, duplicates dropped with `s3events.unique`; messages are deleted."""
        out = AnnounceOutcome()
        events: list[s3events.DiffFileEvent] = []
        empty_since: float | None = None
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                now = time.monotonic()
                empty_since = empty_since or now
                if now - empty_since >= settle:
                    break
                time.sleep(0.05)
                continue
            empty_since = None
            for message in got:
                out.messages += 1
                files = s3events.parse_message(message["Body"])
                if not files and '"s3:TestEvent"' in message["Body"]:
                    out.test_events += 1
                events.extend(files)
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        out.files = list(s3events.unique(events))
        out.duplicates = len(events) - len(out.files)
        return out

    # -- publish --------------------------------------------------------------------------------
    def publisher_env(self, run_date: str, bootstrap: str | None = None) -> dict[str, str]:
        return {
            "DIFFS_LOCATION": self.names.diffs_location,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap or self.bootstrap,
            "KAFKA_TOPIC": self.names.topic,
            "RUN_DATE": run_date,
            "TIMEZONE": self.config.timezone,
        }

    def publish(
        self,
        run_date: str,
        bootstrap: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> PublishOutcome:
        """`kafka_publisher.main.main` in this process, configured by environment variables
        (`argv` default: `--run-date run_date`)."""
        from kafka_publisher.main import main as publisher_main

        buffer = io.StringIO()
        env = {**self.publisher_env(run_date, bootstrap), **(extra_env or {})}
        with patched_environ(env), contextlib.redirect_stdout(buffer):
            code = publisher_main(["--run-date", run_date] if argv is None else list(argv))
        out = PublishOutcome(run_date=run_date, exit_code=code, log=buffer.getvalue())
        for line in out.log.splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if obj.get("msg") == "done":
                    out.summary = {
                        k: obj.get(k)
                        for k in ("files", "files_published", "files_skipped", "events", "per_op")
                    }
                elif obj.get("level") == "ERROR":
                    out.error = obj.get("msg", "")
                    out.summary = obj.get("summary") or {}
        return out

    def chained_publishes(self, settle: float = 0.3) -> list[PublishOutcome]:
        """Play ECS for the chain rule: every task start the rule asked for since the last call
        (its SQS stand-in, drained), in order, runs the publisher with the overrides' RUN_DATE
        as its only date input (environment, no argument), as the task would get it."""
        runs: list[PublishOutcome] = []
        empty_since: float | None = None
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.trigger_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                now = time.monotonic()
                empty_since = empty_since or now
                if now - empty_since >= settle:
                    return runs
                time.sleep(0.05)
                continue
            empty_since = None
            for message in got:
                run_date = ready.run_date_from_overrides(message["Body"], PUBLISHER_CONTAINER)
                self.sqs.delete_message(
                    QueueUrl=self.trigger_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                runs.append(self.publish(run_date, extra_env={"RUN_DATE": run_date}, argv=[]))

    # -- consume ---------------------------------------------------------------------------------
    def consume(self, expected: int | None = None, idle_timeout: float = 1.0) -> list[Any]:
        return consume_all(
            self.bootstrap, self.names.topic, expected=expected, idle_timeout=idle_timeout
        )


# ------------------------------------------------------------------------------ checks


def headers_of(message: Any) -> dict[str, bytes]:
    return {k: v for k, v in (message.headers() or [])}


def messages_for(messages: Sequence[Any], run_date: str) -> list[Any]:
    return [m for m in messages if headers_of(m).get("run_date") == run_date.encode()]


def op_counts(messages: Sequence[Any]) -> Counter[str]:
    return Counter(headers_of(m)["op"].decode() for m in messages if m.value() is not None)


def check_diff(diff: DiffOutcome) -> list[str]:
    if diff.exit_code != 0 or diff.manifest is None:
        return [f"diff: exit {diff.exit_code} ({diff.error_class}: {diff.message})"]
    m = diff.manifest
    problems = []
    if sum(f.records for f in m.files) != m.counts.changes:
        problems.append(
            f"diff: data files hold {sum(f.records for f in m.files)} events, manifest counts "
            f"{m.counts.changes}"
        )
    return problems


def check_announce(pipeline: LocalPipeline, diff: DiffOutcome, ann: AnnounceOutcome) -> list[str]:
    m = diff.manifest
    if m is None:
        return []
    got = sorted(f.key for f in ann.for_date(m.run_date))
    want = sorted(f"{m.run_date}/{f.name}" for f in m.files)
    problems = []
    if got != want:
        problems.append(
            f"announce: {len(got)} data file message(s) {got} != {len(want)} data files {want}"
        )
    others = [f.key for f in ann.files if f.run_date != m.run_date]
    if others:
        problems.append(f"announce: messages for other dates: {others}")
    wrong_bucket = [f.uri for f in ann.files if f.bucket != pipeline.names.diffs_bucket]
    if wrong_bucket:
        problems.append(f"announce: messages from another bucket: {wrong_bucket}")
    return problems


def check_publish(diff: DiffOutcome, pub: PublishOutcome, rerun: bool) -> list[str]:
    m = diff.manifest
    if pub.exit_code != 0:
        return [f"publish: exit {pub.exit_code} ({pub.error})"]
    if m is None:
        return []
    want = 0 if rerun else m.counts.changes
    problems = []
    if pub.summary.get("events") != want:
        problems.append(f"publish: published {pub.summary.get('events')} events, expected {want}")
    if rerun and pub.summary.get("files_skipped") != len(m.files):
        problems.append(
            f"publish: rerun skipped {pub.summary.get('files_skipped')} of {len(m.files)} files"
        )
    return problems


def check_consume(
    pipeline: LocalPipeline, diff: DiffOutcome, all_messages: Sequence[Any]
) -> list[str]:
    """The day's messages against the data files, event by event: value bytes, key, headers."""
    m = diff.manifest
    if m is None:
        return []
    problems = []
    day = messages_for(all_messages, m.run_date)
    counts = op_counts(day)
    want = {"c": m.counts.c, "u": m.counts.u, "d": m.counts.d}
    if {op: counts.get(op, 0) for op in "cud"} != want:
        problems.append(f"consume: per op {dict(counts)} != manifest {want}")
    ids = Counter(
        headers_of(msg).get("event_id") for msg in all_messages if msg.value() is not None
    )
    dup = [i.decode() for i, n in ids.items() if n > 1]
    if dup:
        problems.append(
            f"consume: {len(dup)} event_id(s) more than once on the topic, e.g. {dup[0]}"
        )
    expected = {}
    for name, line in pipeline.data_lines(m.run_date, m):
        event = parse_event(line)
        expected[event.event_id] = (name, line, event)
    seen = set()
    for msg in day:
        h = headers_of(msg)
        eid = h.get("event_id", b"").decode()
        if eid not in expected:
            problems.append(f"consume: message with unknown event_id {eid}")
            continue
        seen.add(eid)
        name, line, event = expected[eid]
        if msg.value() != line:
            problems.append(f"consume: value of {eid} differs from its line in {name}")
        if msg.key() != kafka_key(event.key):
            problems.append(f"consume: key of {eid} is {msg.key()!r}")
        want_h = {
            "op": event.op.encode(),
            "run_date": m.run_date.encode(),
            "event_id": eid.encode(),
            "source_file": name.encode(),
        }
        if h != want_h:
            problems.append(f"consume: headers of {eid} are {h}, expected {want_h}")
    missing = len(expected) - len(seen)
    if missing:
        problems.append(f"consume: {missing} event(s) of the data files never consumed")
    return problems[:10]
