"""The whole stack: cdk-nag AwsSolutions passes with exactly the documented acknowledgments,
the outputs the runbook uses exist, the stack is environment-agnostic."""

from __future__ import annotations

import json

import pytest

from pipeline_infra.nag import acknowledgments
from pipeline_infra.stack import build_app
from pipeline_infra.testing import Synth, default_synth, fixture_paths


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def test_cdk_nag_passes(synth: Synth) -> None:
    report = synth.outdir / "validation-report.json"
    if report.exists():  # written even on success; then it lists no failing plugin
        data = json.loads(report.read_text())
        assert all(p.get("conclusion") != "failure" for p in data["pluginReports"]), data


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
    assert outputs["TaskAssignPublicIp"]["Value"] == "ENABLED"


def test_resource_inventory(synth: Synth) -> None:
    counts: dict[str, int] = {}
    for resource in synth.raw["Resources"].values():
        counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    assert counts["AWS::S3::Bucket"] == 5
    assert counts["AWS::SQS::Queue"] == 3
    assert counts["AWS::Scheduler::Schedule"] == 2
    assert counts["AWS::Events::Rule"] == 4
    assert counts["AWS::CloudWatch::Alarm"] == 2
    assert counts["AWS::Glue::Job"] == 1
    assert counts["AWS::ECS::TaskDefinition"] == 1
    assert "AWS::Lambda::Function" not in counts  # no custom resources
    assert "AWS::IAM::ManagedPolicy" not in counts
