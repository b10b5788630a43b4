"""Deploy mode (the default): a synth that would deploy a broken pipeline stops, naming every
missing piece; a complete configuration synthesizes, its image context holding the PEX."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline_infra.config import ConfigError, PipelineConfig
from pipeline_infra.deploy_mode import check_deployable, deploy_problems
from pipeline_infra.stack import build_app
from pipeline_infra.testing import fixture_paths

COMPLETE = {
    "kafka_bootstrap_servers": "b-1.kafka.example.com:9096",
    "kafka_broker_cidr": "10.20.0.0/16",
    "nat_gateways": "1",  # the created VPC's way to brokers on the Internet
    "kafka_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf",
    "alarm_email": "data-oncall@example.com",
}


def _deploy_context(**overrides: Any) -> dict[str, Any]:
    context = {**fixture_paths(), **COMPLETE, **overrides}
    del context["mode"]  # the default: deploy
    return {k: v for k, v in context.items() if v is not None}


def _problems(context: dict[str, Any]) -> list[str]:
    return deploy_problems(PipelineConfig.from_mapping(context), given=context.keys())


def test_deploy_is_the_default_mode() -> None:
    assert PipelineConfig.from_mapping({}).mode == "deploy"
    with pytest.raises(ConfigError, match="mode='dry': one of deploy, placeholder"):
        PipelineConfig.from_mapping({"mode": "dry"})


def test_a_complete_configuration_has_no_problem() -> None:
    assert _problems(_deploy_context()) == []
    # The brokers' VPC instead of their CIDR; an existing image instead of the PEX.
    imported = _deploy_context(
        kafka_broker_cidr=None, nat_gateways=None, vpc_id="vpc-0123456789abcdef0"
    )
    assert _problems(imported) == []
    # MSK IAM: no secret needed.
    iam = _deploy_context(
        kafka_secret_arn=None,
        kafka_auth="iam",
        msk_cluster_arn="arn:aws:kafka:us-east-1:123456789012:cluster/events/0a1b2c3d-1",
        kafka_ports="9098",
    )
    assert _problems(iam) == []
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/diffs/publisher:1.0"
    assert (
        _problems(_deploy_context(publisher_pex_path="/nope.pex", publisher_image_uri=image)) == []
    )


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ({"publisher_pex_path": "/nowhere/kafka_publisher.pex"}, "publisher_pex_path: /nowhere"),
        ({"kafka_bootstrap_servers": None}, "kafka_bootstrap_servers is empty"),
        ({"kafka_broker_cidr": None}, "no broker network"),
        ({"alarm_email": None}, "alarm_email is empty"),
        ({"nat_gateways": None}, "the created VPC is isolated"),
        ({"kafka_secret_arn": None}, "SASL credentials but no kafka_secret_arn"),
    ],
)
def test_each_missing_piece_is_named(missing: dict[str, Any], named: str) -> None:
    (problem,) = _problems(_deploy_context(**missing))
    assert problem.startswith(named)


def test_deploy_mode_synth_fails_naming_everything_missing(tmp_path: Path) -> None:
    context = _deploy_context(
        publisher_pex_path=str(tmp_path / "missing.pex"),
        kafka_bootstrap_servers=None,
        kafka_broker_cidr=None,
        alarm_email=None,
    )
    with pytest.raises(ConfigError) as failure:
        build_app(context, outdir=str(tmp_path / "cdk.out"))
    message = str(failure.value)
    for named in ("publisher_pex_path", "kafka_bootstrap_servers", "broker network", "alarm_email"):
        assert named in message
    assert "mode=placeholder" in message
    # Placeholder mode (what the other tests pass) is not checked.
    check_deployable(PipelineConfig.from_mapping({**context, "mode": "placeholder"}), context)


def test_deploy_mode_synth_stages_the_pex_in_the_image_context(tmp_path: Path) -> None:
    context = _deploy_context()
    # cdk-nag is stack_test.py's business: this test is about what the image build gets.
    app, stack = build_app(context, outdir=str(tmp_path / "cdk.out"), with_nag=False)
    assembly = app.synth()
    manifest = json.loads(
        (Path(assembly.directory) / f"{stack.artifact_id}.assets.json").read_text("utf-8")
    )
    (image,) = manifest["dockerImages"].values()
    folder = Path(assembly.directory) / image["source"]["directory"]
    staged = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert staged == ["Dockerfile", "apps.kafka_publisher/kafka_publisher.pex"]
    pex = Path(context["publisher_pex_path"])
    assert (
        folder / "apps.kafka_publisher" / "kafka_publisher.pex"
    ).read_bytes() == pex.read_bytes()
    # The Dockerfile COPYs exactly the staged path.
    assert "COPY apps.kafka_publisher/kafka_publisher.pex" in (folder / "Dockerfile").read_text()


BROKER_SG = "sg-0123456789abcdef0"


def test_the_brokers_security_group_lets_the_task_in() -> None:
    from pipeline_infra.testing import VPC_ENV, render, synth

    s = synth(
        {
            "vpc_id": "vpc-0123456789abcdef0",
            "subnet_ids": "subnet-0aaaaaaaaaaaaaaa1,subnet-0bbbbbbbbbbbbbbb2",
            "kafka_ports": "9096,9098",
            "kafka_broker_security_group_id": BROKER_SG,
        },
        env=VPC_ENV,
    )
    task_sg = s.logical_id(s.stack.publish.security_group)
    ingress = sorted(
        (r["Properties"]["FromPort"], r["Properties"]["ToPort"])
        for r in s.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == BROKER_SG
        and render(r["Properties"]["SourceSecurityGroupId"]) == f"${{{task_sg}.GroupId}}"
        and r["Properties"]["IpProtocol"] == "tcp"
    )
    assert ingress == [(9096, 9096), (9098, 9098)]
    to_brokers = sorted(
        r["Properties"]["FromPort"]
        for r in s.resources("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"].get("DestinationSecurityGroupId") == BROKER_SG
        and render(r["Properties"]["GroupId"]) == f"${{{task_sg}.GroupId}}"
    )
    assert to_brokers == [9096, 9098]


def test_the_brokers_security_group_needs_the_vpc() -> None:
    with pytest.raises(ConfigError, match="kafka_broker_security_group_id='sg-0123456789abcdef0'"):
        PipelineConfig.from_mapping({"kafka_broker_security_group_id": BROKER_SG})
    with pytest.raises(ConfigError, match="kafka_broker_security_group_id='sg-x'"):
        PipelineConfig.from_mapping(
            {"vpc_id": "vpc-0123456789abcdef0", "kafka_broker_security_group_id": "sg-x"}
        )
