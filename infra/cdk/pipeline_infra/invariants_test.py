"""Rules of the synthesized template, asserted as invariants (computed from the template, not
pinned numbers), for the default and the "imports" configurations and two with DST zones
(America/New_York, Europe/Berlin):

* both schedules happen exactly once on every day of 2026-2030 in their time zone, and the diff
  job, started as late as Scheduler may (flexible window + retry window) and running to its
  timeout, ends before the publisher's schedule fires, on every one of those days;
* no `kms:ReEncrypt*` anywhere; every key-policy and topic-policy statement for an AWS service
  is scoped by aws:SourceArn / aws:SourceAccount (CloudWatch Logs: its encryption context);
* the task: read-only root filesystem, a non-root user, every path it writes on a writable
  volume; a created Kafka secret on the stack's key and retained;
* the Glue job's log groups exist with retention and the key; every log group has retention;
* an alarm on the age of the oldest message of the events queue, below its retention;
* every bucket is versioned unless a checkov acknowledgment (nag.py) says why not;
* customer-managed keys named in the context (inputs, imported secret) get kms:Decrypt.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from pipeline_infra.nag import CHECKOV_SKIPS, _find
from pipeline_infra.schedules import days_of, dst_problems, utc_instant
from pipeline_infra.testing import Synth, as_list, default_synth, imports_synth, render
from pipeline_infra.testing import synth as synth_with

YEARS = range(2026, 2031)
_CRON_RE = re.compile(r"^cron\((\d{1,2}) (\d{1,2}) \* \* \? \*\)$")


# Zones with DST (the ones the docs name), at times that are valid every day there.
DST_CONTEXTS = {
    "new_york": {"timezone": "America/New_York", "glue_time": "00:30", "publisher_time": "03:00"},
    "berlin": {"timezone": "Europe/Berlin", "glue_time": "00:45", "publisher_time": "04:00"},
}


@pytest.fixture(scope="module", params=["default", "imports", *DST_CONTEXTS])
def synth(request: pytest.FixtureRequest) -> Synth:
    if request.param in DST_CONTEXTS:
        return synth_with(DST_CONTEXTS[request.param])
    return default_synth() if request.param == "default" else imports_synth()


def _schedule(synth: Synth, construct) -> dict:
    return synth.raw["Resources"][synth.logical_id(construct)]["Properties"]


def _daily_time(props: dict) -> str:
    """HH:MM of a daily `cron(M H * * ? *)` expression."""
    match = _CRON_RE.match(props["ScheduleExpression"])
    assert match, props["ScheduleExpression"]
    return f"{int(match[2]):02d}:{int(match[1]):02d}"


def _latest_start_delay(props: dict) -> timedelta:
    """How late Scheduler may start the target: flexible window, then retries within the
    maximum event age."""
    window = props["FlexibleTimeWindow"]
    flexible = 0 if window["Mode"] == "OFF" else window["MaximumWindowInMinutes"]
    max_age = props["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"]
    return timedelta(minutes=flexible, seconds=max_age)


def test_each_schedule_fires_once_on_every_day(synth: Synth) -> None:
    for construct in (synth.stack.diff.schedule, synth.stack.publish.schedule):
        props = _schedule(synth, construct)
        zone = props["ScheduleExpressionTimezone"]
        assert dst_problems(_daily_time(props), zone, YEARS) == [], (zone, props)


def test_diff_job_ends_before_the_publisher_starts_on_every_day(synth: Synth) -> None:
    diff = _schedule(synth, synth.stack.diff.schedule)
    publish = _schedule(synth, synth.stack.publish.schedule)
    (job,) = (r["Properties"] for r in synth.resources("AWS::Glue::Job").values())
    timeout = timedelta(minutes=job["Timeout"])
    assert job["MaxRetries"] == 0  # a Glue retry would run past the timeout above
    glue_zone, publish_zone = (
        diff["ScheduleExpressionTimezone"],
        publish["ScheduleExpressionTimezone"],
    )
    for day in days_of(YEARS):
        latest_glue_end = (
            utc_instant(day, _daily_time(diff), glue_zone) + _latest_start_delay(diff) + timeout
        )
        publisher_start = utc_instant(day, _daily_time(publish), publish_zone)
        assert latest_glue_end < publisher_start, (day, latest_glue_end, publisher_start)


# ---- KMS and resource policies ---------------------------------------------------------------
def test_no_reencrypt_anywhere(synth: Synth) -> None:
    assert "kms:ReEncrypt" not in json.dumps(synth.raw)


def _service_statements(synth: Synth) -> list[tuple[str, str, dict]]:
    """(resource type, service, statement) for every key-, topic- and queue-policy statement
    whose principal is an AWS service."""
    found = []
    for resource in synth.raw["Resources"].values():
        props = resource["Properties"]
        document = {
            "AWS::KMS::Key": props.get("KeyPolicy"),
            "AWS::SNS::TopicPolicy": props.get("PolicyDocument"),
            "AWS::SQS::QueuePolicy": props.get("PolicyDocument"),
        }.get(resource["Type"])
        for statement in (document or {}).get("Statement", []):
            principal = statement.get("Principal")
            services = principal.get("Service", []) if isinstance(principal, dict) else []
            for service in as_list(services):
                found.append((resource["Type"], render(service), statement))
    return found


def test_service_principals_are_scoped_by_source(synth: Synth) -> None:
    statements = _service_statements(synth)
    on_key_or_topic = {
        service for kind, service, _ in statements if kind != "AWS::SQS::QueuePolicy"
    }
    assert "cloudwatch.amazonaws.com" in on_key_or_topic  # the check sees real statements
    # alarm rules publish through a scoped role: EventBridge's KMS calls carry no source keys
    assert "events.amazonaws.com" not in on_key_or_topic
    for kind, service, statement in statements:
        keys = {key for test in statement.get("Condition", {}).values() for key in test}
        if service.startswith("logs."):
            assert "kms:EncryptionContext:aws:logs:arn" in keys, (kind, statement)
        else:
            assert keys & {"aws:SourceArn", "aws:SourceAccount"}, (kind, service, statement)


def test_alarm_rules_publish_through_a_role_only_their_account_may_pass(synth: Synth) -> None:
    rules = synth.resources("AWS::Events::Rule")
    topic = synth.logical_id(synth.stack.alarms.topic)
    role_id = synth.logical_id(synth.stack.alarms.events_role)
    alarm_targets = [
        t for r in rules.values() for t in r["Properties"]["Targets"] if t["Arn"] == {"Ref": topic}
    ]
    assert alarm_targets and all(
        t["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]} for t in alarm_targets
    )
    (trust,) = synth.raw["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"][
        "Statement"
    ]
    assert set(trust["Condition"]["StringEquals"]) == {"aws:SourceAccount"}
    assert set(trust["Condition"]["ArnLike"]) == {"aws:SourceArn"}


# ---- the publisher task ----------------------------------------------------------------------
def _task(synth: Synth) -> dict:
    (task,) = (r["Properties"] for r in synth.resources("AWS::ECS::TaskDefinition").values())
    return task


def test_task_is_read_only_and_not_root(synth: Synth) -> None:
    task = _task(synth)
    for container in task["ContainerDefinitions"]:
        assert container["ReadonlyRootFilesystem"] is True
        user = container["User"]
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0, user


def test_every_path_the_publisher_writes_is_on_a_writable_volume(synth: Synth) -> None:
    task = _task(synth)
    volumes = {v["Name"] for v in task["Volumes"]}
    (container,) = task["ContainerDefinitions"]
    writable = [
        m["ContainerPath"]
        for m in container["MountPoints"]
        if m["SourceVolume"] in volumes and not m["ReadOnly"]
    ]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    # tempfile (the verified spool copies) writes under TMPDIR; the PEX unpacks under PEX_ROOT
    for name in ("TMPDIR", "PEX_ROOT"):
        path = env[name]
        assert any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable), path


def test_created_kafka_secret_is_on_the_stack_key_and_retained() -> None:
    synth = default_synth()
    (secret,) = synth.resources("AWS::SecretsManager::Secret").values()
    key_arn = {"Fn::GetAtt": [synth.logical_id(synth.stack.key), "Arn"]}
    assert secret["Properties"]["KmsKeyId"] == key_arn
    assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Retain"
    # the role that resolves it for the container may decrypt with that key (key policy)
    role = {"Fn::GetAtt": [synth.logical_id(synth.stack.publish.execution_role), "Arn"]}
    key_policy = synth.raw["Resources"][synth.logical_id(synth.stack.key)]["Properties"]
    assert any(
        st["Principal"] == {"AWS": role} and "kms:Decrypt" in as_list(st["Action"])
        for st in key_policy["KeyPolicy"]["Statement"]
    )


# ---- logs and alarms -----------------------------------------------------------------------
def test_glue_log_groups_are_created_with_retention_and_the_key(synth: Synth) -> None:
    (job,) = (r["Properties"] for r in synth.resources("AWS::Glue::Job").values())
    prefix = job["DefaultArguments"]["--custom-logGroup-prefix"]
    groups = {
        g["Properties"].get("LogGroupName"): g
        for g in synth.resources("AWS::Logs::LogGroup").values()
    }
    key_arn = {"Fn::GetAtt": [synth.logical_id(synth.stack.key), "Arn"]}
    for stream in ("output", "error"):
        group = groups[f"{prefix}/{stream}"]
        assert group["Properties"]["KmsKeyId"] == key_arn
        assert group["DeletionPolicy"] == "Retain"
    # the job's role may write there (its log statement covers the prefix)
    (logs_statement,) = (
        st for st in synth.statements(synth.stack.diff.role) if st.get("Sid") == "WriteLogs"
    )
    scope = render(logs_statement["Resource"]).split(":log-group:")[1]
    assert prefix.startswith(scope.rstrip("*"))
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] >= 1


def test_events_queue_age_alarm_fires_before_messages_expire(synth: Synth) -> None:
    queue = synth.stack.announce.queue
    queue_id = synth.logical_id(queue)
    retention = synth.raw["Resources"][queue_id]["Properties"]["MessageRetentionPeriod"]
    topic = {"Ref": synth.logical_id(synth.stack.alarms.topic)}
    (alarm,) = (
        a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    )
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    ]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    # it fires with time to act: the threshold plus one evaluation is still inside retention
    assert alarm["Threshold"] + alarm["Period"] * alarm["EvaluationPeriods"] < retention
    assert alarm["AlarmActions"] == [topic]


# ---- buckets and customer-managed keys -------------------------------------------------------
def test_every_bucket_is_versioned_or_acknowledged(synth: Synth) -> None:
    acknowledged = {
        synth.stack.get_logical_id(_find(synth.stack, skip.path))
        for skip in CHECKOV_SKIPS
        if skip.rule == "CKV_AWS_21"
    }
    buckets = synth.resources("AWS::S3::Bucket")
    assert acknowledged < set(buckets)
    for logical_id, bucket in buckets.items():
        versioning = bucket["Properties"].get("VersioningConfiguration", {})
        assert versioning.get("Status") == "Enabled" or logical_id in acknowledged, logical_id


def test_customer_managed_keys_in_the_context_get_decrypt() -> None:
    synth = imports_synth()
    config = synth.stack.config
    glue = synth.grants(synth.stack.diff.role)
    for key_arn in (config.before_kms_key_arn, config.after_kms_key_arn):
        assert key_arn and ("kms:Decrypt", key_arn) in glue
    execution = synth.grants(synth.stack.publish.execution_role)
    assert config.kafka_secret_kms_key_arn
    assert ("kms:Decrypt", config.kafka_secret_kms_key_arn) in execution
    # through their services only
    decrypts = [
        st
        for role in (synth.stack.diff.role, synth.stack.publish.execution_role)
        for st in synth.statements(role)
        if st["Action"] == "kms:Decrypt" and "key/" in json.dumps(st["Resource"])
    ]
    assert len(decrypts) == 2
    assert all("kms:ViaService" in st["Condition"]["StringEquals"] for st in decrypts)
    assert not any("kms:" in a for a, _ in synth.grants(synth.stack.publish.task_role))


def test_checkov_acknowledgments_reach_the_template(synth: Synth) -> None:
    """checkov reads its skips from each resource's Metadata (`checkov.skip`): every
    acknowledgment of nag.CHECKOV_SKIPS is there, on its resource, with its reason, and no skip
    is there that nag.py does not list (checkov itself is run by hand: infra/cdk/README.md)."""
    want = {
        (synth.stack.get_logical_id(_find(synth.stack, skip.path)), skip.rule, skip.reason)
        for skip in CHECKOV_SKIPS
    }
    got = {
        (logical_id, item["id"], item["comment"])
        for logical_id, resource in synth.raw["Resources"].items()
        for item in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert got == want
    assert all(reason.strip() for _, _, reason in got)
