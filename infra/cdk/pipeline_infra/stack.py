"""The stack: storage, diff (Glue), announce (S3 -> SQS), publish (ECS -> Kafka) and alarms.

`build_app` is what app.py and the tests call: it reads the context into a `PipelineConfig`,
builds the stack and attaches cdk-nag's AwsSolutions checks (a finding not acknowledged in
nag.py fails the synth with ValidationFailed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import Aws, CfnOutput, Duration, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from pipeline_infra import nag
from pipeline_infra.alarms import Alarms
from pipeline_infra.announce_stage import AnnounceStage
from pipeline_infra.chain_stage import ChainStage
from pipeline_infra.config import PipelineConfig
from pipeline_infra.deploy_mode import check_deployable
from pipeline_infra.diff_stage import DiffStage
from pipeline_infra.pipeline_key import PipelineKey
from pipeline_infra.publish_stage import CONTAINER_NAME, PublishStage
from pipeline_infra.storage import Storage

# Feature flags the stack relies on (set here, so the CDK CLI and a plain `python app.py` / PEX
# synthesize the same template): S3 server access logs and VPC flow logs are granted through the
# log bucket's policy (no ACLs: every bucket has ACLs disabled).
FEATURE_FLAGS: dict[str, Any] = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-s3:createDefaultLoggingPolicy": True,
}


class DiffsPipelineStack(Stack):
    """Attributes: config, key, storage, announce, diff, publish, alarms, scheduler_role,
    scheduler_dlq."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        acknowledge_nag: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Daily JSON diff pipeline: S3 -> Glue -> S3/SQS -> ECS -> Kafka",
            **kwargs,
        )
        self.config = config

        self.key = PipelineKey(
            self,
            "PipelineKey",
            description="Diffs pipeline: Glue logs and bookmarks, publisher logs, alarm topic, "
            "Kafka secret",
            enable_key_rotation=True,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogs",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                # No kms:ReEncrypt*: CloudWatch Logs never re-encrypts under another key.
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                # The log group's ARN in the encryption context is CloudWatch Logs' source
                # condition (its KMS calls carry no aws:SourceArn): this account's groups only.
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"
                    }
                },
            )
        )
        # CloudWatch alarms publish to the encrypted alarm topic: only this account's alarms.
        # (EventBridge rules publish through a role instead, alarms.py: EventBridge's KMS calls
        # carry no aws:SourceArn / aws:SourceAccount, so a key statement for events.amazonaws.com
        # could not be scoped.)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
                    },
                },
            )
        )

        self.storage = Storage(self, "Storage", config=config)

        self.scheduler_dlq = sqs.Queue(
            self,
            "SchedulerDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description="EventBridge Scheduler: starts the diff job and the publisher task",
        )
        self.scheduler_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DeadLetters",
                actions=["sqs:SendMessage"],
                resources=[self.scheduler_dlq.queue_arn],
            )
        )

        self.announce = AnnounceStage(self, "Announce", config=config, storage=self.storage)
        self.diff = DiffStage(
            self,
            "Diff",
            config=config,
            storage=self.storage,
            key=self.key,
            scheduler_role=self.scheduler_role,
            scheduler_dlq=self.scheduler_dlq,
        )
        self.publish = PublishStage(
            self,
            "Publish",
            config=config,
            storage=self.storage,
            key=self.key,
            scheduler_role=self.scheduler_role,
            scheduler_dlq=self.scheduler_dlq,
        )
        # The second publish trigger: the diff job's "diffs ready" event (chain_stage.py).
        self.chain = ChainStage(
            self,
            "Chain",
            config=config,
            diff=self.diff,
            publish=self.publish,
            dead_letter_queue=self.scheduler_dlq,
        )
        self.alarms = Alarms(
            self,
            "Alarms",
            config=config,
            key=self.key,
            job_name=config.job_name,
            cluster_arn=self.publish.cluster.cluster_arn,
            task_definition_arn_prefix=self.publish.task_definition_arn_prefix,
            dead_letter_queues={
                "DiffsEventsDLQ": self.announce.dead_letter_queue,
                "SchedulerDLQ": self.scheduler_dlq,
            },
            events_queue=self.announce.queue,
            events_queue_retention_seconds=self.announce.settings.retention_seconds,
        )
        if not config.kafka_bootstrap_servers:
            cdk.Annotations.of(self).add_warning_v2(
                "diffs-pipeline:no-bootstrap-servers",
                "kafka_bootstrap_servers is empty: the publisher will exit 11 (configuration "
                "error) until it is set (-c kafka_bootstrap_servers=host:9096,...)",
            )
        self._outputs()
        if acknowledge_nag:
            nag.acknowledge(self)
        nag.add_checkov_skips(self)

    def _outputs(self) -> None:
        s, p = self.storage, self.publish
        outputs = {
            "BeforeBucketName": s.before_bucket.bucket_name,
            "AfterBucketName": s.after_bucket.bucket_name,
            "DiffsBucketName": s.diffs_bucket.bucket_name,
            "AccessLogBucketName": s.log_bucket.bucket_name,
            "GlueTempBucketName": s.glue_temp_bucket.bucket_name,
            "QueueUrl": self.announce.queue.queue_url,
            "DeadLetterQueueUrl": self.announce.dead_letter_queue.queue_url,
            "SchedulerDeadLetterQueueUrl": self.scheduler_dlq.queue_url,
            "GlueJobName": self.diff.job.ref,
            "ClusterName": p.cluster.cluster_name,
            "TaskDefinitionFamily": p.family,
            "ContainerName": CONTAINER_NAME,
            "TaskSubnets": Fn.join(",", [sn.subnet_id for sn in p.subnets]),
            "TaskSecurityGroup": p.security_group.security_group_id,
            "TaskAssignPublicIp": "ENABLED" if self.config.public_ip else "DISABLED",
            "PublisherLogGroup": p.log_group.log_group_name,
            "KafkaSecretArn": p.secret.secret_arn if p.secret is not None else "none (no SASL)",
            "AlarmTopicArn": self.alarms.topic.topic_arn,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    env: cdk.Environment | None = None,
    with_nag: bool = True,
    acknowledge_nag: bool = True,
) -> tuple[cdk.App, DiffsPipelineStack]:
    """The CDK app: feature flags + `context` (what `-c` and cdk.json give arrive through the
    CLI's CDK_CONTEXT_JSON and take precedence), the stack, cdk-nag."""
    app = cdk.App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    context_now = app.node.get_all_context()
    config = PipelineConfig.from_mapping(context_now)
    check_deployable(config, given=context_now.keys())  # mode=deploy: nothing missing
    if env is None and config.vpc_id:
        # A VPC lookup needs a concrete environment: the CLI's, from its credentials.
        env = cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        )
    stack = DiffsPipelineStack(
        app, config.stack_name, config=config, env=env, acknowledge_nag=acknowledge_nag
    )
    if with_nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks())
    return app, stack
