"""The announce stage as plain data: the one definition of the S3 -> SQS announce wiring.

No `aws_cdk` import: the CDK app (`announce_stage.py`) and the local pipeline
(`tests/e2e/local_pipeline.py`, against moto) both build the queue, its dead-letter queue, the
queue policy and the diffs bucket's notification from these functions, so the two can't drift.

* Notification rules are in the S3 API's shape (`PutBucketNotificationConfiguration`'s
  `QueueConfigurations`): one rule per suffix of `diffcore.layout.DATA_FILE_SUFFIXES`, for
  `s3:ObjectCreated:*`. The CDK app turns each into a `CfnBucket.QueueConfigurationProperty`.
* Queue policy statements are IAM JSON: only the diffs bucket (`aws:SourceArn`) of this account
  (`aws:SourceAccount`) may send, and every non-TLS request is denied. Values may be CDK tokens
  (the CDK app passes `queue.queue_arn`, `Aws.ACCOUNT_ID`) or literal strings (the local run).
* Queue settings: names (`<queue>` and `<queue>-dlq`), max receive count, retention, visibility.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from diffcore.layout import DATA_FILE_SUFFIXES

NOTIFIED_EVENT = "s3:ObjectCreated:*"
DEAD_LETTER_SUFFIX = "-dlq"
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
VISIBILITY_TIMEOUT_SECONDS = 5 * 60
SEND_SID = "OnlyTheDiffsBucketSends"
TLS_SID = "DenyInsecureTransport"


@dataclass(frozen=True)
class QueueSettings:
    """The announce queue and its dead-letter queue (both SSE-SQS)."""

    name: str
    max_receive_count: int
    dead_letter_suffix: str = DEAD_LETTER_SUFFIX
    retention_seconds: int = QUEUE_RETENTION_SECONDS
    dead_letter_retention_seconds: int = DEAD_LETTER_RETENTION_SECONDS
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS
    sqs_managed_sse: bool = True

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}{self.dead_letter_suffix}"

    def redrive_policy(self, dead_letter_arn: str) -> dict[str, Any]:
        return {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": self.max_receive_count}

    def dead_letter_attributes(self) -> dict[str, str]:
        """`CreateQueue` attributes (SQS API) of the dead-letter queue."""
        return {
            "MessageRetentionPeriod": str(self.dead_letter_retention_seconds),
            "SqsManagedSseEnabled": str(self.sqs_managed_sse).lower(),
        }

    def queue_attributes(self, dead_letter_arn: str) -> dict[str, str]:
        """`CreateQueue` attributes (SQS API) of the queue, redriving to `dead_letter_arn`."""
        return {
            "MessageRetentionPeriod": str(self.retention_seconds),
            "VisibilityTimeout": str(self.visibility_timeout_seconds),
            "SqsManagedSseEnabled": str(self.sqs_managed_sse).lower(),
            "RedrivePolicy": json.dumps(self.redrive_policy(dead_letter_arn)),
        }


def queue_settings(queue_name: str, max_receive_count: int) -> QueueSettings:
    """From `PipelineConfig.queue_name` / `.queue_max_receive_count`."""
    return QueueSettings(name=queue_name, max_receive_count=max_receive_count)


def notification_rules(queue_arn: str) -> list[dict[str, Any]]:
    """One S3 queue configuration per data-file suffix (S3 API shape)."""
    return [
        {
            "QueueArn": queue_arn,
            "Events": [NOTIFIED_EVENT],
            "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": suffix}]}},
        }
        for suffix in DATA_FILE_SUFFIXES
    ]


def notification_configuration(queue_arn: str) -> dict[str, Any]:
    """The diffs bucket's whole `NotificationConfiguration` (only the queue rules)."""
    return {"QueueConfigurations": notification_rules(queue_arn)}


def send_statement(queue_arn: str, diffs_bucket_arn: str, account_id: str) -> dict[str, Any]:
    """S3 may send, only for the diffs bucket of this account."""
    return {
        "Sid": SEND_SID,
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {
            "ArnEquals": {"aws:SourceArn": diffs_bucket_arn},
            "StringEquals": {"aws:SourceAccount": account_id},
        },
    }


def tls_only_statement(queue_arn: str) -> dict[str, Any]:
    """Deny every request to the queue that is not made over TLS."""
    return {
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "sqs:*",
        "Resource": queue_arn,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def queue_policy_statements(
    queue_arn: str, diffs_bucket_arn: str, account_id: str
) -> list[dict[str, Any]]:
    """The announce queue's policy statements (the dead-letter queue gets the TLS one only)."""
    return [send_statement(queue_arn, diffs_bucket_arn, account_id), tls_only_statement(queue_arn)]


def policy_document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def bucket_arn(bucket_name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:s3:::{bucket_name}"


def queue_arn(queue_name: str, account_id: str, region: str, partition: str = "aws") -> str:
    return f"arn:{partition}:sqs:{region}:{account_id}:{queue_name}"


def default_bucket_name(name_prefix: str, role: str, account_id: str, region: str) -> str:
    """`<name_prefix>-<role>-<account>-<region>`, the names `storage.bucket_name_for` gives buckets
    with no configured name (there over CloudFormation pseudo parameters)."""
    return f"{name_prefix}-{role}-{account_id}-{region}"


__all__ = [
    "DEAD_LETTER_SUFFIX",
    "NOTIFIED_EVENT",
    "QueueSettings",
    "bucket_arn",
    "default_bucket_name",
    "notification_configuration",
    "notification_rules",
    "policy_document",
    "queue_arn",
    "queue_policy_statements",
    "queue_settings",
    "send_statement",
    "tls_only_statement",
]
