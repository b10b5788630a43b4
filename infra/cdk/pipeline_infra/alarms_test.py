"""Alarms: the encrypted topic, the EventBridge rules and the dead-letter queue alarms."""

from __future__ import annotations

import pytest

from pipeline_infra.alarms import PUBLISHER_EXIT_CONCURRENT, PUBLISHER_EXIT_NOT_READY
from pipeline_infra.testing import Synth, default_synth, imports_synth, render

TASK_DEF_PREFIX = (
    "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:"
    "task-definition/diffs-pipeline-publisher:"
)


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def _rule(synth: Synth, rule) -> dict:
    return synth.raw["Resources"][synth.logical_id(rule)]["Properties"]


def _targets_topic(synth: Synth, props: dict) -> None:
    (target,) = props["Targets"]
    assert target["Arn"] == {"Ref": synth.logical_id(synth.stack.alarms.topic)}


def test_topic_is_encrypted_and_tls_only(synth: Synth) -> None:
    topic_id, topic = synth.one("AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == {
        "Fn::GetAtt": [synth.logical_id(synth.stack.key), "Arn"]
    }
    policy = synth.one("AWS::SNS::TopicPolicy")[1]["Properties"]
    statements = policy["PolicyDocument"]["Statement"]
    assert any(
        st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for st in statements
    )
    publishers = {st["Principal"]["Service"] for st in statements if st["Effect"] == "Allow"}
    assert publishers == {"cloudwatch.amazonaws.com"}  # EventBridge rules publish via a role
    assert not synth.resources("AWS::SNS::Subscription")  # no e-mail configured


def test_key_lets_the_publishers_use_it(synth: Synth) -> None:
    key = synth.raw["Resources"][synth.logical_id(synth.stack.key)]["Properties"]
    assert key["EnableKeyRotation"] is True
    by_sid = {st.get("Sid"): st for st in key["KeyPolicy"]["Statement"]}
    assert by_sid["CloudWatchAlarms"]["Principal"]["Service"] == "cloudwatch.amazonaws.com"
    assert (
        render(by_sid["CloudWatchLogs"]["Principal"]["Service"])
        == "logs.${AWS::Region}.amazonaws.com"
    )


def test_email_subscription_when_configured() -> None:
    variant = imports_synth()
    sub = variant.one("AWS::SNS::Subscription")[1]["Properties"]
    assert sub["Protocol"] == "email" and sub["Endpoint"] == "data-oncall@example.com"


def test_glue_failure_rule(synth: Synth) -> None:
    props = _rule(synth, synth.stack.alarms.glue_failed_rule)
    assert props["EventPattern"] == {
        "source": ["aws.glue"],
        "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": ["diffs-pipeline-diff"], "state": ["FAILED", "TIMEOUT", "ERROR"]},
    }
    _targets_topic(synth, props)


def _ecs_detail(synth: Synth, rule) -> dict:
    props = _rule(synth, rule)
    pattern = props["EventPattern"]
    assert pattern["source"] == ["aws.ecs"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    detail = dict(pattern["detail"])
    assert detail.pop("lastStatus") == ["STOPPED"]
    assert detail.pop("clusterArn") == [
        {"Fn::GetAtt": [synth.logical_id(synth.stack.publish.cluster), "Arn"]}
    ]
    (prefix,) = detail.pop("taskDefinitionArn")
    assert render(prefix["prefix"]) == TASK_DEF_PREFIX
    _targets_topic(synth, props)
    return detail


def test_publisher_nonzero_exit_rule(synth: Synth) -> None:
    detail = _ecs_detail(synth, synth.stack.alarms.publisher_failed_rule)
    assert detail == {
        "containers": {
            "exitCode": [{"anything-but": [0, PUBLISHER_EXIT_NOT_READY, PUBLISHER_EXIT_CONCURRENT]}]
        }
    }


def test_publisher_failed_to_start_rule(synth: Synth) -> None:
    detail = _ecs_detail(synth, synth.stack.alarms.publisher_start_failed_rule)
    assert detail == {"stopCode": ["TaskFailedToStart"]}


def test_diffs_not_ready_rule(synth: Synth) -> None:
    assert PUBLISHER_EXIT_NOT_READY == 10  # docs/decisions.md
    assert PUBLISHER_EXIT_CONCURRENT == 15  # another publisher holds the date: not a failure
    detail = _ecs_detail(synth, synth.stack.alarms.not_ready_rule)
    assert detail == {"containers": {"exitCode": [10]}}
    (target,) = _rule(synth, synth.stack.alarms.not_ready_rule)["Targets"]
    assert "DIFFS NOT READY" in target["InputTransformer"]["InputTemplate"]


def test_every_dead_letter_queue_has_an_alarm(synth: Synth) -> None:
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    queues = {
        synth.logical_id(synth.stack.announce.dead_letter_queue),
        synth.logical_id(synth.stack.scheduler_dlq),
    }
    watched = set()
    topic = {"Ref": synth.logical_id(synth.stack.alarms.topic)}
    for alarm in alarms.values():
        props = alarm["Properties"]
        if props["MetricName"] == "ApproximateAgeOfOldestMessage":
            continue  # the events queue's age alarm (invariants_test.py)
        assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert props["Namespace"] == "AWS/SQS"
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["Threshold"] == 0
        assert props["TreatMissingData"] == "notBreaching"
        assert props["AlarmActions"] == [topic]
        (dimension,) = props["Dimensions"]
        watched.add(dimension["Value"]["Fn::GetAtt"][0])
    assert watched == queues
    # every queue that is a DLQ (redrive target or scheduler DLQ) is watched
    redrive_targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in synth.resources("AWS::SQS::Queue").values()
        if "RedrivePolicy" in q["Properties"]
    }
    assert redrive_targets <= watched
