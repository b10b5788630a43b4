"""The whole stack: cdk-nag AwsSolutions passes with exactly the documented acknowledgments,
the outputs the runbook uses exist, the stack is environment-agnostic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import aws_s3 as s3

from pipeline_infra.nag import acknowledgments
from pipeline_infra.stack import build_app
from pipeline_infra.testing import Synth, default_synth, fixture_paths


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def _nag_findings(outdir: Path) -> set[tuple[str, str]]:
    """(construct path, rule) of every violation, whatever its severity, in cdk-nag's report."""
    report = json.loads((outdir / "validation-report.json").read_text())
    return {
        (c["constructPath"], v["ruleName"])
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }


def test_cdk_nag_checks_the_stack_and_finds_only_a_planted_violation(tmp_path: Path) -> None:
    """build_app's cdk-nag runs over the real stack: a bucket planted in it without access logs
    or a TLS-only policy is reported (so the checks ran), and it is the only finding: the stack
    itself has no unacknowledged error or warning."""
    app, stack = build_app(fixture_paths(), outdir=str(tmp_path))
    s3.Bucket(stack, "NagCanary")
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    canary = f"{stack.stack_name}/NagCanary/Resource"
    assert _nag_findings(tmp_path) == {
        (canary, "AwsSolutions-S1"),  # server access logs disabled
        (canary, "AwsSolutions-S10"),  # no TLS-only bucket policy
    }


def test_the_real_stack_synthesizes_with_an_empty_nag_report(synth: Synth) -> None:
    # The report is written on success too; the canary test above shows findings do land in it.
    assert _nag_findings(synth.outdir) == set()


def test_acknowledgments_match_the_findings_exactly(synth: Synth, tmp_path) -> None:
    """Without the acknowledgments, cdk-nag reports exactly the acknowledged findings: none is
    unused (stale) and none is missing."""
    app, stack = build_app(fixture_paths(), outdir=str(tmp_path), acknowledge_nag=False)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    findings = {
        (c["constructPath"], v["ruleName"])
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
    }
    acked = {(f"{synth.stack.stack_name}/{a.path}", a.rule) for a in acknowledgments(synth.stack)}
    assert findings == acked
    for ack in acknowledgments(synth.stack):
        assert len(ack.reason) > 60, ack


def test_environment_agnostic(synth: Synth) -> None:
    assert synth.stack.account.startswith("${Token")
    assert synth.stack.region.startswith("${Token")
    text = json.dumps(synth.raw)
    assert "123456789012" not in text and "us-east-1" not in text


def test_outputs_for_the_runbook(synth: Synth) -> None:
    outputs = synth.raw["Outputs"]
    for name in (
        "GlueJobName",
        "ClusterName",
        "TaskDefinitionFamily",
        "ContainerName",
        "TaskSubnets",
        "TaskSecurityGroup",
        "TaskAssignPublicIp",
        "DiffsBucketName",
        "QueueUrl",
        "PublisherLogGroup",
        "KafkaSecretArn",
        "AlarmTopicArn",
    ):
        assert name in outputs, name
    assert outputs["ContainerName"]["Value"] == "publisher"
    assert outputs["TaskAssignPublicIp"]["Value"] == "DISABLED"  # only when asked


def test_resource_inventory(synth: Synth) -> None:
    counts: dict[str, int] = {}
    for resource in synth.raw["Resources"].values():
        counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    assert counts["AWS::S3::Bucket"] == 5
    assert counts["AWS::SQS::Queue"] == 3
    assert counts["AWS::Scheduler::Schedule"] == 2
    assert counts["AWS::Events::Rule"] == 5  # 4 alarm rules + the chained publish (chain_stage)
    assert counts["AWS::CloudWatch::Alarm"] == 3  # two DLQs, the events queue's age
    assert counts["AWS::Glue::Job"] == 1
    assert counts["AWS::ECS::TaskDefinition"] == 1
    assert "AWS::Lambda::Function" not in counts  # no custom resources
    assert "AWS::IAM::ManagedPolicy" not in counts
