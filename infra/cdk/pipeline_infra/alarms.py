"""Alarms: everything that needs a human goes to one SNS topic (KMS-encrypted, TLS-only, with an
e-mail subscription when `alarm_email` is set).

| what | how |
|---|---|
| the diff job failed or timed out | EventBridge rule: "Glue Job State Change", this job, state FAILED / TIMEOUT / ERROR |
| the publisher failed | EventBridge rule: "ECS Task State Change", this cluster and task family, STOPPED, a container exit code other than 0 and 10 (numeric `anything-but`) |
| the publisher could not start | EventBridge rule: same, `stopCode` TaskFailedToStart (image pull, secret, network: no exit code) |
| the diffs of the day were not ready | EventBridge rule: same, exit code 10 (the publisher's "not ready": no manifest for D at start) |
| a message is stuck in a dead-letter queue | CloudWatch alarm per DLQ: ApproximateNumberOfMessagesVisible > 0 |
| nobody consumes diffs-events-queue | CloudWatch alarm: ApproximateAgeOfOldestMessage > half the queue's retention |

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
# Another publisher held the date (the floor and the chained run at once): not a failure, the
# other run publishes the day (apps/kafka_publisher: publishing_lease).
PUBLISHER_EXIT_CONCURRENT = 15
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
        events_queue: sqs.IQueue | None = None,
        events_queue_retention_seconds: int = 0,
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
        # CloudWatch alarms publish as cloudwatch.amazonaws.com once the topic has a policy:
        # only this account's alarms.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:"
                        f"{Aws.ACCOUNT_ID}:alarm:*"
                    },
                },
            )
        )
        # EventBridge rules publish through this role, not as events.amazonaws.com: the topic
        # policy and the key policy then need no statement for EventBridge (whose KMS calls can't
        # be scoped by source), and the role may be assumed only for this account's rules.
        self.events_role = iam.Role(
            self,
            "EventsPublishRole",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:events:{Aws.REGION}:"
                        f"{Aws.ACCOUNT_ID}:rule/*"
                    },
                },
            ),
            description="EventBridge alarm rules: publish to the alarm topic",
        )
        self.events_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PublishAlarms", actions=["sns:Publish"], resources=[self.topic.topic_arn]
            )
        )
        # (The SnsTopic targets below grant it publishing and kms:Decrypt / GenerateDataKey* on
        # the topic's key: topic.grant_publish.)

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
                            {
                                "anything-but": [
                                    PUBLISHER_EXIT_OK,
                                    PUBLISHER_EXIT_NOT_READY,
                                    PUBLISHER_EXIT_CONCURRENT,
                                ]
                            }
                        ]
                    },
                },
            ),
            f"[diffs-pipeline] Kafka publisher task {path('$.detail.taskArn')} stopped with a "
            f"failing exit code ({path('$.detail.stoppedReason')}). Exit codes: 11 configuration, "
            f"12 delivery, 13 bad data, 14 unreadable keys (docs/decisions.md); the task's log "
            f"stream says which.",
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

        # Events nobody consumes expire silently at the queue's retention: alarm well before.
        self.queue_age_alarm: cloudwatch.Alarm | None = None
        if events_queue is not None:
            threshold = queue_age_threshold_seconds(events_queue_retention_seconds)
            self.queue_age_alarm = cloudwatch.Alarm(
                self,
                "EventsQueueAgeAlarm",
                alarm_description=(
                    f"The oldest message in {events_queue.queue_name} is older than "
                    f"{threshold // 3600} h; messages expire after "
                    f"{events_queue_retention_seconds // 3600} h unread (README: when an alarm fires)"
                ),
                metric=events_queue.metric_approximate_age_of_oldest_message(
                    period=Duration.minutes(5), statistic="Maximum"
                ),
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            self.queue_age_alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))

    def _rule(
        self, construct_id: str, description: str, pattern: events.EventPattern, message: str
    ) -> events.Rule:
        rule = events.Rule(self, construct_id, description=description, event_pattern=pattern)
        rule.add_target(
            targets.SnsTopic(
                self.topic,
                message=events.RuleTargetInput.from_text(message),
                role=self.events_role,
            )
        )
        return rule


def queue_age_threshold_seconds(retention_seconds: int) -> int:
    """Half the queue's retention: the alarm leaves as long again to act before anything
    expires (4 days of retention: an alarm at 2 days)."""
    return retention_seconds // 2
