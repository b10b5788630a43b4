"""Chained publish: the diff job's "diffs ready" event starts the publisher for that date."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from diffcore import ready
from pipeline_infra.publish_stage import CONTAINER_NAME
from pipeline_infra.testing import Synth, as_list, default_synth, imports_synth, render


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def _rule(synth: Synth) -> dict:
    return synth.raw["Resources"][synth.logical_id(synth.stack.chain.rule)]["Properties"]


def test_the_rule_matches_only_this_jobs_diffs_ready_events(synth: Synth) -> None:
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "State": "ENABLED",
            "EventPattern": {
                "source": [ready.SOURCE],
                "detail-type": [ready.DETAIL_TYPE],
                "detail": {"job_name": ["diffs-pipeline-diff"]},
            },
        },
    )
    assert _rule(synth)["EventPattern"] == ready.rule_pattern(synth.stack.config.job_name)


def test_the_target_is_the_scheduled_task_with_the_events_run_date(synth: Synth) -> None:
    """Same cluster, task definition and network as the 02:00 schedule; RUN_DATE from the event."""
    publish = synth.stack.publish
    (target,) = _rule(synth)["Targets"]
    schedule = synth.raw["Resources"][synth.logical_id(publish.schedule)]["Properties"]["Target"]
    assert target["Arn"] == schedule["Arn"]
    ecs, scheduled = target["EcsParameters"], schedule["EcsParameters"]
    assert ecs["TaskDefinitionArn"] == {"Ref": synth.logical_id(publish.task_definition)}
    assert ecs["TaskDefinitionArn"] == scheduled["TaskDefinitionArn"]
    for key in ("LaunchType", "TaskCount", "PlatformVersion"):
        assert ecs[key] == scheduled[key], key
    # the same awsvpc settings (CloudFormation spells the key AwsVpcConfiguration for rules)
    assert ecs["NetworkConfiguration"]["AwsVpcConfiguration"] == (
        scheduled["NetworkConfiguration"]["AwsvpcConfiguration"]
    )
    assert target["RoleArn"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.chain.role), "Arn"]}
    assert target["RetryPolicy"] == schedule["RetryPolicy"]
    assert target["DeadLetterConfig"] == schedule["DeadLetterConfig"]
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {"run_date": "$.detail.run_date"}
    # what ECS receives for an event of 2026-11-20 (EventBridge fills the quoted placeholder)
    overrides = json.loads(transformer["InputTemplate"].replace("<run_date>", "2026-11-20"))
    assert overrides == {
        "containerOverrides": [
            {"name": "publisher", "environment": [{"name": "RUN_DATE", "value": "2026-11-20"}]}
        ]
    }
    assert ready.run_date_from_overrides(overrides, CONTAINER_NAME) == "2026-11-20"
    # ... and the container it names is the task definition's
    containers = synth.raw["Resources"][synth.logical_id(publish.task_definition)]["Properties"]
    assert [c["Name"] for c in containers["ContainerDefinitions"]] == [CONTAINER_NAME]
    assert CONTAINER_NAME == ready.PUBLISHER_CONTAINER  # the name the local pipeline's ECS uses


def test_the_rule_role_runs_only_that_task_and_passes_only_its_two_roles(synth: Synth) -> None:
    publish, chain = synth.stack.publish, synth.stack.chain
    statements = synth.statements(chain.role)
    assert sorted(s["Sid"] for s in statements) == ["PassPublisherRoles", "RunPublisherTask"]
    by_sid = {s["Sid"]: s for s in statements}
    run = by_sid["RunPublisherTask"]
    assert run["Action"] == "ecs:RunTask"
    assert run["Resource"] == {"Ref": synth.logical_id(publish.task_definition)}
    assert run["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [synth.logical_id(publish.cluster), "Arn"]}}
    }
    passed = by_sid["PassPublisherRoles"]
    assert passed["Action"] == "iam:PassRole"
    assert sorted(render(r) for r in as_list(passed["Resource"])) == sorted(
        [
            f"${{{synth.logical_id(publish.task_role)}.Arn}}",
            f"${{{synth.logical_id(publish.execution_role)}.Arn}}",
        ]
    )
    assert passed["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    trust = synth.raw["Resources"][synth.logical_id(chain.role)]["Properties"]
    (stmt,) = trust["AssumeRolePolicyDocument"]["Statement"]
    assert stmt["Principal"] == {"Service": "events.amazonaws.com"}
    assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    # the rule starts only after the role's policy exists
    assert synth.logical_id(chain.role.node.find_child("DefaultPolicy")) in as_list(
        synth.raw["Resources"][synth.logical_id(chain.rule)].get("DependsOn", [])
    )


def test_the_glue_job_announces_to_the_default_bus_and_may_put_only_that_event(
    synth: Synth,
) -> None:
    job = synth.one("AWS::Glue::Job")[1]["Properties"]
    assert job["DefaultArguments"]["--ready_event_bus"] == "default"
    assert synth.stack.diff.default_arguments["--ready_event_bus"] == "default"
    puts = [
        s
        for s in synth.statements(synth.stack.diff.role)
        if "events:PutEvents" in as_list(s["Action"])
    ]
    assert len(puts) == 1 and puts[0]["Action"] == "events:PutEvents"
    assert render(puts[0]["Resource"]) == (
        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"
    )
    assert puts[0]["Condition"] == {
        "StringEquals": {"events:source": ready.SOURCE, "events:detail-type": ready.DETAIL_TYPE}
    }
    assert not [
        a
        for s in synth.statements(synth.stack.diff.role)
        for a in as_list(s["Action"])
        if a.startswith("events:") and a != "events:PutEvents"
    ]


def test_only_this_rule_may_send_its_failed_starts_to_the_scheduler_dlq(synth: Synth) -> None:
    dlq = synth.logical_id(synth.stack.scheduler_dlq)
    synth.template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [{"Ref": dlq}],
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "ChainRuleDeadLetters",
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": [dlq, "Arn"]},
                            "Condition": {
                                "ArnEquals": {
                                    "aws:SourceArn": {
                                        "Fn::GetAtt": [
                                            synth.logical_id(synth.stack.chain.rule),
                                            "Arn",
                                        ]
                                    }
                                }
                            },
                        }
                    ]
                )
            },
        },
    )


def test_private_subnets_without_a_public_ip_follow_the_schedule() -> None:
    variant = imports_synth()
    (target,) = _rule(variant)["Targets"]
    schedule = variant.raw["Resources"][variant.logical_id(variant.stack.publish.schedule)]
    assert target["EcsParameters"]["NetworkConfiguration"]["AwsVpcConfiguration"] == (
        schedule["Properties"]["Target"]["EcsParameters"]["NetworkConfiguration"][
            "AwsvpcConfiguration"
        ]
    )
    assert _rule(variant)["EventPattern"]["detail"] == {"job_name": [variant.stack.config.job_name]}
