"""Alarms: everything that needs a human goes to one SNS topic (KMS-encrypted, TLS-only, with an
e-mail subscription when `alarm_email` is set).

| what | how |
|---|---|
| the diff job failed or timed out | EventBridge rule: "Glue Job State Change", this job, state FAILED / TIMEOUT / ERROR |
| the publisher failed | EventBridge rule: "ECS Task State Change", this cluster and task family, STOPPED, a container exit code other than 0 and 10 (numeric `anything-but`) |
| the publisher could not start | EventBridge rule: same, `stopCode` TaskFailedToStart (image pull, secret, network: no exit code) |
| the diffs of the day were not ready | EventBridge rule: same, exit code 10 (the publisher's "not ready": no manifest for D at start) |
| a message is stuck in a dead-letter queue | CloudWatch alarm per DLQ: ApproximateNumberOfMessagesVisible > 0 |

Exit code 10 gets its own rule and message ("diffs not ready") rather than the generic failure:
it means the diff for D never completed (the Glue alarm usually fired already) or finished after
`publisher_time`; the remedy is a backfill, not a publisher fix (README "When an alarm fires").
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from pipeline_infra.config import PipelineConfig

# The publisher's exit codes (docs/decisions.md, "Exit codes").
PUBLISHER_EXIT_OK = 0
PUBLISHER_EXIT_NOT_READY = 10
GLUE_FAILED_STATES = ("FAILED", "TIMEOUT", "ERROR")


class Alarms(Construct):
    """Attributes: topic, glue_failed_rule, publisher_failed_rule, publisher_start_failed_rule,
    not_ready_rule, dlq_alarms (name -> Alarm)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        key: kms.IKey,
        job_name: str,
        cluster_arn: str,
        task_definition_arn_prefix: str,
        dead_letter_queues: Mapping[str, sqs.IQueue],
    ) -> None:
        super().__init__(scope, construct_id)

        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="Diffs pipeline alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        # CloudWatch alarms publish as cloudwatch.amazonaws.com once the topic has a policy.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )

        path = events.EventField.from_path
        self.glue_failed_rule = self._rule(
            "GlueJobFailed",
            "The diff job failed, timed out or errored",
            events.EventPattern(
                source=["aws.glue"],
                detail_type=["Glue Job State Change"],
                detail={"jobName": [job_name], "state": list(GLUE_FAILED_STATES)},
            ),
            f"[diffs-pipeline] Glue job {path('$.detail.jobName')} run {path('$.detail.jobRunId')} "
            f"ended {path('$.detail.state')}: {path('$.detail.message')}. No diffs for that day "
            f"until it is rerun (README: backfill).",
        )

        task_stopped = {
            "clusterArn": [cluster_arn],
            "taskDefinitionArn": [{"prefix": task_definition_arn_prefix}],
            "lastStatus": ["STOPPED"],
        }
        ecs_source = {"source": ["aws.ecs"], "detail_type": ["ECS Task State Change"]}
        self.publisher_failed_rule = self._rule(
            "PublisherFailed",
            "The Kafka publisher stopped with a non-zero exit code (other than 10, not ready)",
            events.EventPattern(
                **ecs_source,
                detail={
                    **task_stopped,
                    "containers": {
                        "exitCode": [
                            {"anything-but": [PUBLISHER_EXIT_OK, PUBLISHER_EXIT_NOT_READY]}
                        ]
                    },
                },
            ),
            f"[diffs-pipeline] Kafka publisher task {path('$.detail.taskArn')} stopped with a "
            f"failing exit code ({path('$.detail.stoppedReason')}). Exit codes: 11 configuration, "
            f"12 delivery, 13 bad data (docs/decisions.md); the task's log stream says which.",
        )
        self.publisher_start_failed_rule = self._rule(
            "PublisherFailedToStart",
            "The Kafka publisher task could not start (image, secret or network)",
            events.EventPattern(
                **ecs_source,
                detail={
                    **task_stopped,
                    "stopCode": ["TaskFailedToStart"],
                },
            ),
            f"[diffs-pipeline] Kafka publisher task {path('$.detail.taskArn')} failed to start: "
            f"{path('$.detail.stoppedReason')}",
        )
        self.not_ready_rule = self._rule(
            "DiffsNotReady",
            "The Kafka publisher found no manifest for the day (exit code 10): diffs not ready",
            events.EventPattern(
                **ecs_source,
                detail={
                    **task_stopped,
                    "containers": {"exitCode": [PUBLISHER_EXIT_NOT_READY]},
                },
            ),
            f"[diffs-pipeline] DIFFS NOT READY: the publisher task {path('$.detail.taskArn')} "
            f"found no manifest for the day at {path('$.time')} and published nothing (exit 10). "
            f"Check the Glue job run of the day, then backfill (README).",
        )

        self.dlq_alarms: dict[str, cloudwatch.Alarm] = {}
        for name, queue in dead_letter_queues.items():
            alarm = cloudwatch.Alarm(
                self,
                f"{name}MessagesAlarm",
                alarm_description=f"Messages in the dead-letter queue {name}: something was not "
                "delivered (README: when an alarm fires)",
                metric=queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(5), statistic="Maximum"
                ),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
            self.dlq_alarms[name] = alarm

    def _rule(
        self, construct_id: str, description: str, pattern: events.EventPattern, message: str
    ) -> events.Rule:
        rule = events.Rule(self, construct_id, description=description, event_pattern=pattern)
        rule.add_target(
            targets.SnsTopic(self.topic, message=events.RuleTargetInput.from_text(message))
        )
        return rule
