"""Chained publish: when the diff job has written a date, the publisher runs for that date.

The 02:00 schedule (publish_stage.py) stays as the floor; this adds the second trigger:

* the Glue job gets `--ready_event_bus default` and may put exactly one kind of event on the
  default bus (`events:PutEvents`, conditioned on the source and detail-type of
  `diffcore.ready`): after a complete run, "Diffs Ready" with `detail.run_date` = D;
* an EventBridge rule matches this job's events (`diffcore.ready.rule_pattern`) and starts the
  publisher's ECS task: the same task definition, cluster, subnets, security group and public IP
  setting as the schedule, with the input transformer setting `RUN_DATE` = D in the container's
  overrides, so the date the job wrote is published (a backfill too), not "today";
* the rule's role may only run that task definition (revision) in that cluster and pass the
  task's two roles to ECS; failed starts go, after retries, to the scheduler's dead-letter queue
  (already alarmed), which accepts messages from this rule only.

Why not a rule on "Glue Job State Change" SUCCEEDED: that event carries no job arguments, so it
cannot say which date was written. The publisher is idempotent (checkpoints under `_published/`),
so the chained run and the 02:00 run may both happen: the second publishes nothing. A chained run
is watched by the same ECS task alarms as a scheduled one (same task definition family).
"""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from diffcore import ready
from pipeline_infra.config import SCHEDULER_MAX_EVENT_AGE_SECONDS, PipelineConfig
from pipeline_infra.diff_stage import DiffStage, role_policy
from pipeline_infra.publish_stage import CONTAINER_NAME, PublishStage


class ChainStage(Construct):
    """Attributes: rule (CfnRule), role (the rule's role), bus_arn (the default bus)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        diff: DiffStage,
        publish: PublishStage,
        dead_letter_queue: sqs.Queue,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.bus_arn = stack.format_arn(
            service="events", resource="event-bus", resource_name=ready.DEFAULT_BUS
        )

        # ---- the sender: the Glue job announces each complete date -------------------------
        # The job was built with its arguments already: override its copy, and keep the stage's
        # `default_arguments` attribute telling the truth.
        diff.job.add_property_override("DefaultArguments.--ready_event_bus", ready.DEFAULT_BUS)
        diff.default_arguments["--ready_event_bus"] = ready.DEFAULT_BUS
        diff.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="AnnounceDiffsReady",
                actions=["events:PutEvents"],
                resources=[self.bus_arn],
                conditions={
                    "StringEquals": {
                        "events:source": ready.SOURCE,
                        "events:detail-type": ready.DETAIL_TYPE,
                    }
                },
            )
        )

        # ---- the rule's role: run that task definition, pass its two roles -----------------
        self.role = iam.Role(
            self,
            "RuleRole",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description="EventBridge rule: starts the publisher task when the diff job is done",
        )
        publish.grant_run_task(self.role)

        # ---- the rule ------------------------------------------------------------------------
        self.rule = events.CfnRule(
            self,
            "Rule",
            description=f"Publish the date {config.job_name} has just written (RUN_DATE)",
            event_pattern=ready.rule_pattern(config.job_name),
            state="ENABLED",
            targets=[
                events.CfnRule.TargetProperty(
                    id="Publisher",
                    arn=publish.cluster.cluster_arn,
                    role_arn=self.role.role_arn,
                    ecs_parameters=events.CfnRule.EcsParametersProperty(
                        task_definition_arn=publish.task_definition.task_definition_arn,
                        task_count=1,
                        launch_type="FARGATE",
                        platform_version="LATEST",
                        network_configuration=events.CfnRule.NetworkConfigurationProperty(
                            aws_vpc_configuration=events.CfnRule.AwsVpcConfigurationProperty(
                                **publish.task_network(config)
                            )
                        ),
                    ),
                    input_transformer=events.CfnRule.InputTransformerProperty(
                        input_paths_map=ready.INPUT_PATHS,
                        input_template=ready.ecs_overrides_template(CONTAINER_NAME),
                    ),
                    retry_policy=events.CfnRule.RetryPolicyProperty(
                        maximum_retry_attempts=config.schedule_retry_attempts,
                        maximum_event_age_in_seconds=SCHEDULER_MAX_EVENT_AGE_SECONDS,
                    ),
                    dead_letter_config=events.CfnRule.DeadLetterConfigProperty(
                        arn=dead_letter_queue.queue_arn
                    ),
                )
            ],
        )
        # A start before the role's policy exists would fail (cfn-lint W3005 spirit, as the
        # schedules do).
        self.rule.add_dependency(role_policy(self.role))
        dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ChainRuleDeadLetters",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[dead_letter_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.rule.attr_arn}},
            )
        )
