"""Announce stage: the queue, its DLQ and policy, and the diffs bucket's notification."""

from __future__ import annotations

import pytest

from diffcore.layout import (
    BAD_RECORDS_NAME,
    DATA_FILE_SUFFIXES,
    DEFAULT_QUEUE_NAME,
    MANIFEST_NAME,
    PUBLISHED_PREFIX,
    checkpoint_key,
    data_file_name,
    is_notified,
    temp_name,
)
from pipeline_infra.testing import Synth, default_synth, imports_synth, render

TLS_DENY = {
    "Action": "sqs:*",
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def _props(synth: Synth, construct) -> dict:
    return synth.raw["Resources"][synth.logical_id(construct)]["Properties"]


def _policy_statements(synth: Synth, queue) -> list[dict]:
    queue_id = synth.logical_id(queue)
    for policy in synth.resources("AWS::SQS::QueuePolicy").values():
        if policy["Properties"]["Queues"] == [{"Ref": queue_id}]:
            return policy["Properties"]["PolicyDocument"]["Statement"]
    raise AssertionError(f"no policy for {queue_id}")


def test_queue_is_named_from_diffcore_layout_and_encrypted(synth: Synth) -> None:
    announce = synth.stack.announce
    queue = _props(synth, announce.queue)
    dlq = _props(synth, announce.dead_letter_queue)
    assert queue["QueueName"] == DEFAULT_QUEUE_NAME == "diffs-events-queue"
    assert dlq["QueueName"] == f"{DEFAULT_QUEUE_NAME}-dlq"
    for props in (queue, dlq):
        assert props["SqsManagedSseEnabled"] is True  # SSE-SQS: S3 can send (no KMS policy)
        assert "KmsMasterKeyId" not in props
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {
            "Fn::GetAtt": [synth.logical_id(announce.dead_letter_queue), "Arn"]
        },
        "maxReceiveCount": 5,
    }
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_queue_name_is_configurable() -> None:
    variant = imports_synth()
    assert _props(variant, variant.stack.announce.queue)["QueueName"] == "acme-diffs-events"


def test_every_queue_is_tls_only(synth: Synth) -> None:
    for queue_id in synth.resources("AWS::SQS::Queue"):
        policies = [
            p
            for p in synth.resources("AWS::SQS::QueuePolicy").values()
            if p["Properties"]["Queues"] == [{"Ref": queue_id}]
        ]
        assert len(policies) == 1, queue_id
        statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
        assert any({k: st.get(k) for k in TLS_DENY} == TLS_DENY for st in statements), queue_id


def test_only_the_diffs_bucket_of_this_account_may_send(synth: Synth) -> None:
    statements = _policy_statements(synth, synth.stack.announce.queue)
    allows = [st for st in statements if st["Effect"] == "Allow"]
    assert len(allows) == 1
    allow = allows[0]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert render(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == (
        "arn:${AWS::Partition}:s3:::diffs-pipeline-diffs-${AWS::AccountId}-${AWS::Region}"
    )
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


def test_notification_per_data_suffix_only(synth: Synth) -> None:
    storage, announce = synth.stack.storage, synth.stack.announce
    bucket = synth.raw["Resources"][synth.logical_id(storage.diffs_bucket)]
    configs = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert len(configs) == len(DATA_FILE_SUFFIXES) == 2
    queue_arn = {"Fn::GetAtt": [synth.logical_id(announce.queue), "Arn"]}
    suffixes = []
    for config in configs:
        assert config["Event"] == "s3:ObjectCreated:*"
        assert config["Queue"] == queue_arn
        rules = config["Filter"]["S3Key"]["Rules"]
        assert len(rules) == 1 and rules[0]["Name"] == "suffix"
        suffixes.append(rules[0]["Value"])
    assert tuple(suffixes) == DATA_FILE_SUFFIXES
    # no other bucket notifies, and no custom resource / Lambda writes notifications
    others = [
        k
        for k, b in synth.resources("AWS::S3::Bucket").items()
        if "NotificationConfiguration" in b["Properties"]
    ]
    assert others == [synth.logical_id(storage.diffs_bucket)]
    assert not synth.resources("Custom::S3BucketNotifications")
    assert not synth.resources("AWS::Lambda::Function")
    # S3 checks the queue permission when the configuration is set: policy first
    policy_id = synth.stack.get_logical_id(announce.queue_policy.node.default_child)
    assert policy_id in bucket["DependsOn"]


def test_filters_match_data_files_and_nothing_else(synth: Synth) -> None:
    suffixes = tuple(
        c["Filter"]["S3Key"]["Rules"][0]["Value"]
        for c in synth.raw["Resources"][synth.logical_id(synth.stack.storage.diffs_bucket)][
            "Properties"
        ]["NotificationConfiguration"]["QueueConfigurations"]
    )

    def notified(key: str) -> bool:
        return key.endswith(suffixes)

    for key in ("2026-11-25/" + data_file_name(0), "2026-11-25/" + data_file_name(7, gzip=True)):
        assert notified(key) and is_notified(key)
    for key in (
        "2026-11-25/" + MANIFEST_NAME,
        "2026-11-25/" + BAD_RECORDS_NAME,
        checkpoint_key("2026-11-25", data_file_name(0)),
        "2026-11-25/" + temp_name(data_file_name(0), "123"),
        f"{PUBLISHED_PREFIX}/2026-11-25/x.json",
    ):
        assert not notified(key) and not is_notified(key), key


def test_settings_and_statements_come_from_announce_spec(synth: Synth) -> None:
    """The CDK app and the local pipeline (tests/e2e) read one definition: announce_spec."""
    from pipeline_infra import announce_spec

    announce = synth.stack.announce
    settings = announce.settings
    queue, dlq = _props(synth, announce.queue), _props(synth, announce.dead_letter_queue)
    assert queue["VisibilityTimeout"] == settings.visibility_timeout_seconds
    assert queue["MessageRetentionPeriod"] == settings.retention_seconds
    assert dlq["MessageRetentionPeriod"] == settings.dead_letter_retention_seconds
    assert dlq["QueueName"] == settings.dead_letter_name
    sids = [st.get("Sid") for st in _policy_statements(synth, announce.queue)]
    assert sids == [announce_spec.SEND_SID, announce_spec.TLS_SID]
    assert [st.get("Sid") for st in _policy_statements(synth, announce.dead_letter_queue)] == [
        announce_spec.TLS_SID
    ]
