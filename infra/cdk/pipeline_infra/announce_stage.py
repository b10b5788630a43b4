"""Announce stage: every data file written to the diffs bucket sends one message to the SQS queue.

* The queue (`diffs-events-queue` by default, `diffcore.layout.DEFAULT_QUEUE_NAME`) and its
  dead-letter queue are encrypted with SQS-managed keys (SSE-SQS). S3 event notifications can't
  use the AWS-managed `aws/sqs` KMS key, and a customer-managed key would need a key policy for
  s3.amazonaws.com, a grant for every consumer and $1/month, for no gain here: the messages hold
  object keys and dates, no data. SSE-SQS encrypts at rest with no key policy to keep right.
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

from diffcore.layout import DATA_FILE_SUFFIXES
from pipeline_infra.config import PipelineConfig
from pipeline_infra.storage import Storage

NOTIFIED_EVENT = "s3:ObjectCreated:*"


class AnnounceStage(Construct):
    """Attributes: queue, dead_letter_queue."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, storage: Storage
    ) -> None:
        super().__init__(scope, construct_id)

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{config.queue_name}-dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=config.queue_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(4),
            visibility_timeout=Duration.minutes(5),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=config.queue_max_receive_count
            ),
        )
        self.queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheDiffsBucketSends",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": storage.diffs_bucket_arn},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )

        cfn_bucket: s3.CfnBucket = storage.diffs_bucket.node.default_child  # type: ignore[assignment]
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            queue_configurations=[
                s3.CfnBucket.QueueConfigurationProperty(
                    event=NOTIFIED_EVENT,
                    queue=self.queue.queue_arn,
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(
                            rules=[s3.CfnBucket.FilterRuleProperty(name="suffix", value=suffix)]
                        )
                    ),
                )
                for suffix in DATA_FILE_SUFFIXES
            ]
        )
        # S3 validates that it may send when the configuration is written.
        self.queue_policy = self.queue.node.find_child("Policy")  # the QueuePolicy construct
        storage.diffs_bucket.node.add_dependency(self.queue_policy)
