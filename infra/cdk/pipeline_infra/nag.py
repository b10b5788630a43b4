"""cdk-nag (AwsSolutions) acknowledgments: each one names the finding exactly (IAM5 per wildcard),
sits on the one construct it concerns, and says why the finding is accepted.

`ACKNOWLEDGMENTS` is also the list the README and the report quote; nag_test.py checks that the
synth passes with them and that none is left unused.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from constructs import IConstruct

from pipeline_infra.storage import GLUE_TEMP_PREFIX


@dataclass(frozen=True)
class Ack:
    path: str  # construct path below the stack
    rule: str  # finding id, e.g. AwsSolutions-IAM5[Resource::*]
    reason: str


def _render(text: str) -> str:
    """Text as cdk-nag prints it in a finding id: pseudo parameters as <AWS::Name>."""
    for token, name in (
        (cdk.Aws.ACCOUNT_ID, "AccountId"),
        (cdk.Aws.REGION, "Region"),
        (cdk.Aws.PARTITION, "Partition"),
    ):
        text = text.replace(token, f"<AWS::{name}>")
    return text


def _diffs_objects(stack: cdk.Stack, suffix: str) -> str:
    return _render(f"{stack.storage.diffs_bucket_arn}/{suffix}")  # type: ignore[attr-defined]


def acknowledgments(stack: cdk.Stack) -> list[Ack]:
    """The acknowledgments that apply to this stack's configuration."""
    config = stack.config  # type: ignore[attr-defined]
    storage = stack.storage  # type: ignore[attr-defined]
    glue_policy = "Diff/JobRole/DefaultPolicy/Resource"
    task_policy = "Publish/TaskRole/DefaultPolicy/Resource"
    acks = [
        Ack(
            "SchedulerDeadLetterQueue/Resource",
            "AwsSolutions-SQS3",
            "This queue is itself a dead-letter queue: EventBridge Scheduler's, for both "
            "schedules (SQS3 only recognises DLQs named in another queue's redrive policy).",
        ),
        Ack(
            "Publish/TaskDefinition/Resource",
            "AwsSolutions-ECS2",
            "The environment holds only non-secret settings whose names the publisher reads "
            "(DIFFS_LOCATION, KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, KAFKA_SECURITY_PROTOCOL, "
            "KAFKA_SASL_MECHANISM, TIMEZONE, PUBLISH_WORKERS) and the scratch paths (TMPDIR, "
            "PEX_ROOT); the Kafka credentials are ECS secrets from Secrets Manager.",
        ),
        Ack(
            glue_policy,
            f"AwsSolutions-IAM5[Resource::{_render(stack.diff.log_groups_arn)}]",  # type: ignore[attr-defined]
            "Glue names its log groups after the security configuration and the role "
            "(/aws-glue/jobs/<config>-role/<role>/...) and creates them at run time: the "
            "/aws-glue/ prefix of this account and region is the narrowest stable scope.",
        ),
        Ack(
            glue_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; it is restricted by "
            "the condition cloudwatch:namespace = Glue.",
        ),
        Ack(
            "Alarms/EventsPublishRole/DefaultPolicy/Resource",
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
            "Added by CDK's SnsTopic target (topic.grant_publish) on the alarm topic's key only "
            "(one key ARN): publishing to an encrypted topic needs a data key; the wildcard "
            "covers GenerateDataKey and GenerateDataKeyWithoutPlaintext.",
        ),
        Ack(
            glue_policy,
            f"AwsSolutions-IAM5[Resource::{_diffs_objects(stack, '????-??-??/*')}]",
            "The job writes a run's files under the date folder <D>/ of the diffs bucket only "
            "(????-??-??/*): never _published/ (the publisher's checkpoints) nor the root.",
        ),
        Ack(
            glue_policy,
            "AwsSolutions-IAM5[Resource::<"
            f"{_logical_id(stack, 'Storage/GlueTempBucket/Resource')}.Arn>/"
            f"{GLUE_TEMP_PREFIX}/*]",
            "Spark's scratch space (--TempDir) is a prefix of a dedicated bucket; object names "
            "are chosen by Spark at run time.",
        ),
        Ack(
            task_policy,
            f"AwsSolutions-IAM5[Resource::{_diffs_objects(stack, '*')}]",
            "s3:GetObject only: the publisher reads any date's data files and manifest "
            "(backfills read past dates); the bucket holds nothing else than diffs.",
        ),
        Ack(
            task_policy,
            f"AwsSolutions-IAM5[Resource::{_diffs_objects(stack, '_published/*')}]",
            "s3:PutObject only, under _published/ (the publisher's checkpoints, one per data "
            "file, named at run time; diffcore.layout.PUBLISHED_PREFIX).",
        ),
        Ack(
            "Publish/TaskDefinition/ExecutionRole/DefaultPolicy/Resource",
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions (added by CDK for the "
            "image pull); the pull itself is scoped to the one repository.",
        ),
    ]
    for role, bucket, construct in (
        ("before", storage.before_bucket, "BeforeBucket"),
        ("after", storage.after_bucket, "AfterBucket"),
    ):
        prefix = config.read_prefix(role)  # a date template is read up to its placeholder
        if getattr(config, f"import_{role}_bucket"):
            arn = _render(bucket.bucket_arn)
        else:
            arn = f"<{_logical_id(stack, f'Storage/{construct}/Resource')}.Arn>"
        acks.append(
            Ack(
                glue_policy,
                f"AwsSolutions-IAM5[Resource::{arn}/{prefix}*]",
                f"s3:GetObject only, on the {role} snapshot ({'prefix ' + prefix if prefix else 'the whole bucket'}): "
                "the job reads every file of the snapshot, whose names it learns by listing.",
            )
        )
    if config.uses_sasl and not config.kafka_secret_arn:
        acks.append(
            Ack(
                "Publish/KafkaSecret/Resource",
                "AwsSolutions-SMG4",
                "The Kafka SASL credentials are issued by the Kafka cluster's owner (SCRAM users on "
                "the brokers); Secrets Manager can't rotate them without a broker-side rotation "
                "function. Rotate on the Kafka side, then put-secret-value (README).",
            )
        )
    return acks


def _logical_id(stack: cdk.Stack, path: str) -> str:
    resource = stack.node.find_child(path.split("/")[0])
    for part in path.split("/")[1:]:
        resource = resource.node.find_child(part)
    return stack.get_logical_id(resource)  # type: ignore[arg-type]


def _find(stack: cdk.Stack, path: str) -> IConstruct:
    node: IConstruct = stack
    for part in path.split("/"):
        node = node.node.find_child(part)
    return node


def acknowledge(stack: cdk.Stack) -> None:
    for ack in acknowledgments(stack):
        cdk.Validations.of(_find(stack, ack.path)).acknowledge(
            cdk.Acknowledgment(id=ack.rule, reason=ack.reason)
        )


# ---- checkov -----------------------------------------------------------------------------
# checkov (run by hand on the synthesized template, README "checkov") reads skips from a
# resource's Metadata: {"checkov": {"skip": [{"id": ..., "comment": ...}]}}. Each one here is a
# finding checked and accepted, with its reason; real findings were fixed instead (versioned
# input buckets, the Kafka secret on the stack's key).
_SSE_SQS = (
    "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled: true); CKV_AWS_27 only recognises "
    "KmsMasterKeyId. S3 event notifications can't use aws/sqs, and a customer-managed key "
    "would protect nothing more (messages hold object keys, no data): see README, Encryption."
)
CHECKOV_SKIPS: tuple[Ack, ...] = (
    Ack(
        "Storage/AccessLogBucket/Resource",
        "CKV_AWS_18",
        "This is the access-log bucket: logging its own accesses into itself would loop; the "
        "other buckets and the VPC flow logs log here.",
    ),
    Ack(
        "Storage/AccessLogBucket/Resource",
        "CKV_AWS_21",
        "Access logs and flow logs are written once by AWS and expire by lifecycle; versions "
        "would only keep deleted logs longer.",
    ),
    Ack(
        "Storage/GlueTempBucket/Resource",
        "CKV_AWS_21",
        "Spark's scratch objects (--TempDir), expired after glue_temp_expiration_days: nothing "
        "in it needs recovering.",
    ),
    Ack("Announce/Queue/Resource", "CKV_AWS_27", _SSE_SQS),
    Ack("Announce/DeadLetterQueue/Resource", "CKV_AWS_27", _SSE_SQS),
    Ack("SchedulerDeadLetterQueue/Resource", "CKV_AWS_27", _SSE_SQS),
)


def add_checkov_skips(stack: cdk.Stack) -> None:
    by_path: dict[str, list[dict[str, str]]] = {}
    for skip in CHECKOV_SKIPS:
        by_path.setdefault(skip.path, []).append({"id": skip.rule, "comment": skip.reason})
    for path, skips in by_path.items():
        resource = _find(stack, path)
        assert isinstance(resource, cdk.CfnResource), path
        resource.add_metadata("checkov", {"skip": skips})
