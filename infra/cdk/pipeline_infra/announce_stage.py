"""Announce stage: every data file written to the diffs bucket sends one message to the SQS queue.

* The queue (`diffs-events-queue` by default, `diffcore.layout.DEFAULT_QUEUE_NAME`) and its
  dead-letter queue are encrypted with SQS-managed keys (SSE-SQS). S3 event notifications can't
  use the AWS-managed `aws/sqs` KMS key, and a customer-managed key would need a key policy for
  s3.amazonaws.com, a grant for every consumer and $1/month, for no gain here: the messages hold
  object keys and dates, no data. SSE-SQS encrypts at rest with no key policy to keep right.
* Settings, policy statements and notification rules are plain data from `announce_spec.py`
  (no CDK import), which the local pipeline (tests/e2e) applies to moto: one definition.
* The queue policy denies non-TLS access and lets only the diffs bucket of this account send
  (`aws:SourceArn` + `aws:SourceAccount`).
* The notification is written on the bucket itself (its `NotificationConfiguration`): one queue
  configuration per suffix of `diffcore.layout.DATA_FILE_SUFFIXES`, for `s3:ObjectCreated:*`, so
  a manifest (`_manifest.json`), a checkpoint or a temporary name never makes a message. The bucket
  depends on the queue policy (S3 checks the permission when the configuration is set); the
  policy names the bucket through its literal ARN, hence no cycle and no custom resource.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from pipeline_infra import announce_spec
from pipeline_infra.announce_spec import NOTIFIED_EVENT
from pipeline_infra.config import PipelineConfig
from pipeline_infra.storage import Storage

__all__ = ["NOTIFIED_EVENT", "AnnounceStage"]


class AnnounceStage(Construct):
    """Attributes: queue, dead_letter_queue, settings (`announce_spec.QueueSettings`)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, storage: Storage
    ) -> None:
        super().__init__(scope, construct_id)
        # Names, retention, visibility, redrive, policy statements and notification rules all
        # come from announce_spec (plain data, shared with the local pipeline in tests/e2e).
        self.settings = settings = announce_spec.queue_settings(
            config.queue_name, config.queue_max_receive_count
        )

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=settings.dead_letter_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=Duration.seconds(settings.dead_letter_retention_seconds),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=settings.name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=Duration.seconds(settings.retention_seconds),
            visibility_timeout=Duration.seconds(settings.visibility_timeout_seconds),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=settings.max_receive_count
            ),
        )
        # TLS only (what `enforce_ssl=True` would add, from the shared definition instead).
        self.dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement.from_json(
                announce_spec.tls_only_statement(self.dead_letter_queue.queue_arn)
            )
        )
        for statement in announce_spec.queue_policy_statements(
            self.queue.queue_arn, storage.diffs_bucket_arn, Aws.ACCOUNT_ID
        ):
            self.queue.add_to_resource_policy(iam.PolicyStatement.from_json(statement))

        cfn_bucket: s3.CfnBucket = storage.diffs_bucket.node.default_child  # type: ignore[assignment]
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            queue_configurations=[
                s3.CfnBucket.QueueConfigurationProperty(
                    event=event,
                    queue=rule["QueueArn"],
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(
                            rules=[
                                s3.CfnBucket.FilterRuleProperty(name=r["Name"], value=r["Value"])
                                for r in rule["Filter"]["Key"]["FilterRules"]
                            ]
                        )
                    ),
                )
                for rule in announce_spec.notification_rules(self.queue.queue_arn)
                for event in rule["Events"]
            ]
        )
        # S3 validates that it may send when the configuration is written.
        self.queue_policy = self.queue.node.find_child("Policy")  # the QueuePolicy construct
        storage.diffs_bucket.node.add_dependency(self.queue_policy)
