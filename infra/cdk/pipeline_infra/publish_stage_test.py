"""Publish stage: cluster, Fargate task, roles (positive and negative), secrets, logs, network,
schedule."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Annotations, Match

from diffcore.layout import PUBLISHED_PREFIX
from pipeline_infra.publish_stage import CONTAINER_NAME, ISOLATED_NETWORK_WARNING
from pipeline_infra.testing import (
    Synth,
    as_list,
    default_synth,
    imported_vpc_synth,
    imports_synth,
    render,
)

ENV_NAMES = {
    "DIFFS_LOCATION",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "TIMEZONE",
    "PUBLISH_WORKERS",
    "ACCEPT_UNREADABLE_KEYS",  # false by default: a day with unreadable keys is refused
    "TMPDIR",  # the scratch volume: the root filesystem is read-only
    "PEX_ROOT",
}
DIFFS_ARN = "arn:${AWS::Partition}:s3:::diffs-pipeline-diffs-${AWS::AccountId}-${AWS::Region}"


@pytest.fixture(scope="module")
def synth() -> Synth:
    return default_synth()


def _container(synth: Synth) -> dict:
    task = synth.one("AWS::ECS::TaskDefinition")[1]["Properties"]
    (container,) = task["ContainerDefinitions"]
    return container


def test_fargate_task_definition(synth: Synth) -> None:
    task = synth.one("AWS::ECS::TaskDefinition")[1]["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"
    assert (task["Cpu"], task["Memory"]) == ("512", "1024")
    assert task["Family"] == "diffs-pipeline-publisher"
    # The platform the PEX is built for (complete_platforms: linux x86_64, CPython 3.11).
    assert task["RuntimePlatform"] == {
        "CpuArchitecture": "X86_64",
        "OperatingSystemFamily": "LINUX",
    }
    publish = synth.stack.publish
    assert task["TaskRoleArn"] == {"Fn::GetAtt": [synth.logical_id(publish.task_role), "Arn"]}
    assert task["ExecutionRoleArn"] == {
        "Fn::GetAtt": [synth.logical_id(publish.execution_role), "Arn"]
    }
    container = _container(synth)
    assert container["Name"] == CONTAINER_NAME
    assert "cdk-hnb659fds-container-assets" in render(container["Image"])  # built from context
    synth.one("AWS::ECS::Cluster")


def test_environment_names_and_values(synth: Synth) -> None:
    env = {e["Name"]: e["Value"] for e in _container(synth)["Environment"]}
    assert set(env) == ENV_NAMES
    assert (
        render(env["DIFFS_LOCATION"])
        == "s3://diffs-pipeline-diffs-${AWS::AccountId}-${AWS::Region}"
    )
    assert env["KAFKA_TOPIC"] == "diffs-events"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["TIMEZONE"] == "UTC"
    assert env["PUBLISH_WORKERS"] == "1"  # publisher_workers: files one after the other
    assert env["ACCEPT_UNREADABLE_KEYS"] == "false"  # contract §6: refused unless asked


def test_credentials_are_ecs_secrets_never_environment(synth: Synth) -> None:
    container = _container(synth)
    secret_id = synth.logical_id(synth.stack.publish.secret)
    secrets = {s["Name"]: render(s["ValueFrom"]) for s in container["Secrets"]}
    assert secrets == {
        "KAFKA_USERNAME": f"${{{secret_id}}}:username::",
        "KAFKA_PASSWORD": f"${{{secret_id}}}:password::",
    }
    names = {e["Name"] for e in container["Environment"]}
    assert not names & {"KAFKA_USERNAME", "KAFKA_PASSWORD"}
    assert not any("PASSWORD" in n or "SECRET" in n for n in names)
    secret = synth.raw["Resources"][secret_id]["Properties"]
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "password"
    assert '"username"' in secret["GenerateSecretString"]["SecretStringTemplate"]


def test_task_role_reads_diffs_and_writes_only_checkpoints(synth: Synth) -> None:
    grants = synth.grants(synth.stack.publish.task_role)
    assert sorted(grants) == sorted(
        [
            ("s3:GetObject", f"{DIFFS_ARN}/*"),
            ("s3:ListBucket", DIFFS_ARN),
            ("s3:PutObject", f"{DIFFS_ARN}/{PUBLISHED_PREFIX}/*"),
        ]
    )


def test_task_role_cannot_touch_inputs_or_secrets(synth: Synth) -> None:
    storage = synth.stack.storage
    forbidden = [
        synth.logical_id(b)
        for b in (storage.before_bucket, storage.after_bucket, storage.glue_temp_bucket)
    ]
    for action, resource in synth.grants(synth.stack.publish.task_role):
        assert not any(f in resource for f in forbidden), (action, resource)
        assert not action.startswith(("secretsmanager:", "kms:", "sqs:", "glue:")), action
        if action != "s3:GetObject" and action != "s3:ListBucket":
            assert resource == f"{DIFFS_ARN}/{PUBLISHED_PREFIX}/*", (action, resource)


def test_execution_role_reads_only_the_kafka_secret(synth: Synth) -> None:
    publish = synth.stack.publish
    secret_ref = f"${{{synth.logical_id(publish.secret)}}}"
    grants = synth.grants(publish.execution_role)
    secret_grants = [(a, r) for a, r in grants if a.startswith("secretsmanager:")]
    assert secret_grants and all(r == secret_ref for _, r in secret_grants)
    assert {a for a, _ in secret_grants} <= {
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    }
    assert not any(a.startswith("s3:") for a, _ in grants)


def test_imported_secret_image_and_cluster() -> None:
    variant = imports_synth()
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka/diffs-AbCdEf"
    assert not variant.resources("AWS::SecretsManager::Secret")
    assert not variant.resources("AWS::ECS::Cluster")
    container = _container(variant)
    assert {s["Name"]: s["ValueFrom"] for s in container["Secrets"]} == {
        "KAFKA_USERNAME": f"{arn}:username::",
        "KAFKA_PASSWORD": f"{arn}:password::",
    }
    assert render(container["Image"]).startswith("123456789012.dkr.ecr.us-east-1.") and render(
        container["Image"]
    ).endswith("/diffs/publisher:1.2.3")
    grants = variant.grants(variant.stack.publish.execution_role)
    assert {r for a, r in grants if a.startswith("secretsmanager:")} == {arn}
    assert (
        "ecr:BatchGetImage",
        "arn:${AWS::Partition}:ecr:us-east-1:123456789012:repository/diffs/publisher",
    ) in grants
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096"
    assert env["KAFKA_TOPIC"] == "customers.diffs"
    assert env["TIMEZONE"] == "America/Sao_Paulo"
    assert render(env["DIFFS_LOCATION"]) == "s3://acme-diffs"
    # publisher_workers=2 on a 2 vCPU task: two publishing processes, one producer each
    assert env["PUBLISH_WORKERS"] == "2"
    assert env["ACCEPT_UNREADABLE_KEYS"] == "true"  # publisher_accept_unreadable_keys=true
    task = variant.one("AWS::ECS::TaskDefinition")[1]["Properties"]
    assert (task["Cpu"], task["Memory"]) == ("2048", "4096")
    schedule = variant.raw["Resources"][variant.logical_id(variant.stack.publish.schedule)]
    assert "cluster/shared-batch" in render(schedule["Properties"]["Target"]["Arn"])


def test_no_secret_without_sasl() -> None:
    from pipeline_infra.testing import synth as synth_for

    variant = synth_for(
        {
            "kafka_security_protocol": "SSL",
            "kafka_sasl_mechanism": "",
            "kafka_bootstrap_servers": "b-1.kafka.example.com:9094",
        }
    )
    assert not variant.resources("AWS::SecretsManager::Secret")
    container = _container(variant)
    assert "Secrets" not in container
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == ("SSL", "")
    assert not any(
        a.startswith("secretsmanager:")
        for a, _ in variant.grants(variant.stack.publish.execution_role)
    )


def test_log_group_with_retention(synth: Synth) -> None:
    publish = synth.stack.publish
    group = synth.raw["Resources"][synth.logical_id(publish.log_group)]["Properties"]
    assert group["RetentionInDays"] == 30
    assert group["KmsKeyId"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.key), "Arn"]}
    logging = _container(synth)["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert logging["Options"]["awslogs-group"] == {"Ref": synth.logical_id(publish.log_group)}


def test_schedule_at_two_in_the_time_zone_runs_the_fargate_task(synth: Synth) -> None:
    publish = synth.stack.publish
    props = synth.raw["Resources"][synth.logical_id(publish.schedule)]["Properties"]
    assert props["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert props["ScheduleExpressionTimezone"] == "UTC"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [synth.logical_id(publish.cluster), "Arn"]}
    ecs = target["EcsParameters"]
    assert ecs["TaskDefinitionArn"] == {"Ref": synth.logical_id(publish.task_definition)}
    assert ecs["LaunchType"] == "FARGATE" and ecs["TaskCount"] == 1
    vpc_config = ecs["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert vpc_config["AssignPublicIp"] == "DISABLED"  # only when asked (assign_public_ip)
    assert vpc_config["SecurityGroups"] == [
        {"Fn::GetAtt": [synth.logical_id(publish.security_group), "GroupId"]}
    ]
    assert len(vpc_config["Subnets"]) == 2
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 900}
    assert target["DeadLetterConfig"]["Arn"] == {
        "Fn::GetAtt": [synth.logical_id(synth.stack.scheduler_dlq), "Arn"]
    }


def test_scheduler_role_runs_only_this_task_and_passes_only_its_roles(synth: Synth) -> None:
    publish = synth.stack.publish
    statements = {st["Sid"]: st for st in synth.statements(synth.stack.scheduler_role)}
    run = statements["RunPublisherTask"]
    assert run["Action"] == "ecs:RunTask"
    assert run["Resource"] == {"Ref": synth.logical_id(publish.task_definition)}
    assert run["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [synth.logical_id(publish.cluster), "Arn"]}}
    }
    passed = statements["PassPublisherRoles"]
    assert sorted(render(r) for r in passed["Resource"]) == sorted(
        [
            f"${{{synth.logical_id(publish.task_role)}.Arn}}",
            f"${{{synth.logical_id(publish.execution_role)}.Arn}}",
        ]
    )
    assert passed["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert statements["DeadLetters"]["Action"] == "sqs:SendMessage"
    trust = synth.raw["Resources"][synth.logical_id(synth.stack.scheduler_role)]["Properties"]
    (stmt,) = trust["AssumeRolePolicyDocument"]["Statement"]
    assert stmt["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_security_group_egress_to_brokers_and_https_only(synth: Synth) -> None:
    sg = synth.raw["Resources"][synth.logical_id(synth.stack.publish.security_group)]
    props = sg["Properties"]
    assert "SecurityGroupIngress" not in props
    egress = {(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in props["SecurityGroupEgress"]}
    assert egress == {
        (443, 443, "0.0.0.0/0"),
        (9092, 9092, "0.0.0.0/0"),
        (9094, 9094, "0.0.0.0/0"),
        (9096, 9096, "0.0.0.0/0"),
    }
    assert all(r["IpProtocol"] == "tcp" for r in props["SecurityGroupEgress"])


def test_configured_broker_ports_and_cidr() -> None:
    variant = imports_synth()
    sg = variant.raw["Resources"][variant.logical_id(variant.stack.publish.security_group)]
    egress = {(r["FromPort"], r["CidrIp"]) for r in sg["Properties"]["SecurityGroupEgress"]}
    assert egress == {(443, "0.0.0.0/0"), (9096, "10.20.0.0/16")}


def test_created_vpc_private_isolated_with_endpoints_and_flow_logs(synth: Synth) -> None:
    """No NAT, no public IP asked: two private isolated subnets (no route to the internet) and
    the endpoints the task needs to start and run: S3 (gateway), ECR API and registry,
    CloudWatch Logs, Secrets Manager (interface, private DNS, open only to the task)."""
    synth.one("AWS::EC2::VPC")
    subnets = synth.resources("AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert not any(s["Properties"].get("MapPublicIpOnLaunch") for s in subnets.values())
    assert not synth.resources("AWS::EC2::NatGateway")
    assert not synth.resources("AWS::EC2::InternetGateway")
    assert not any(
        "GatewayId" in r["Properties"] or "NatGatewayId" in r["Properties"]
        for r in synth.resources("AWS::EC2::Route").values()
    )
    endpoints = [e["Properties"] for e in synth.resources("AWS::EC2::VPCEndpoint").values()]
    services = {render(e["ServiceName"]).rsplit(".", 1)[-1]: e for e in endpoints}
    assert set(services) == {"s3", "api", "dkr", "logs", "secretsmanager"}
    assert services["s3"]["VpcEndpointType"] == "Gateway"
    task_sg = synth.logical_id(synth.stack.publish.security_group)
    subnet_ids = {f"${{{k}}}" for k in subnets}
    for name in ("api", "dkr", "logs", "secretsmanager"):
        endpoint = services[name]
        assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"]
        assert {render(s) for s in endpoint["SubnetIds"]} == subnet_ids
        (group,) = endpoint["SecurityGroupIds"]
        group_props = synth.raw["Resources"][group["Fn::GetAtt"][0]]["Properties"]
        ingress = [
            r["Properties"]
            for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()
            if r["Properties"]["GroupId"] == group
        ] + group_props.get("SecurityGroupIngress", [])
        assert [(i["FromPort"], i["SourceSecurityGroupId"]) for i in ingress] == [
            (443, {"Fn::GetAtt": [task_sg, "GroupId"]})
        ]
    flow = synth.one("AWS::EC2::FlowLog")[1]["Properties"]
    assert flow["LogDestinationType"] == "s3" and flow["TrafficType"] == "ALL"
    assert "vpc-flow-logs/" in render(flow["LogDestination"])


def _warnings(synth: Synth) -> str:
    found = Annotations.from_stack(synth.stack).find_warning("*", Match.any_value())
    return json.dumps([str(m.entry.data) for m in found])


def test_isolated_network_is_said_at_synth(synth: Synth) -> None:
    assert ISOLATED_NETWORK_WARNING in _warnings(synth)
    assert "nat_gateways=1" in _warnings(synth)


def test_public_ip_only_when_asked() -> None:
    from pipeline_infra.testing import synth as synth_for

    variant = synth_for({"assign_public_ip": "true"})
    assert ISOLATED_NETWORK_WARNING not in _warnings(variant)
    publish = variant.stack.publish
    props = variant.raw["Resources"][variant.logical_id(publish.schedule)]["Properties"]
    vpc_config = props["Target"]["EcsParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert vpc_config["AssignPublicIp"] == "ENABLED"
    public = {
        k
        for k, s in variant.resources("AWS::EC2::Subnet").items()
        if s["Properties"].get("MapPublicIpOnLaunch")
    }
    assert len(public) == 2 and {render(s)[2:-1] for s in vpc_config["Subnets"]} == public
    variant.one("AWS::EC2::InternetGateway")


def test_imported_vpc_uses_the_given_subnets_without_public_ip() -> None:
    variant = imported_vpc_synth()
    assert not variant.resources("AWS::EC2::VPC")
    assert not variant.resources("AWS::EC2::Subnet")
    props = variant.raw["Resources"][variant.logical_id(variant.stack.publish.schedule)]
    vpc_config = props["Properties"]["Target"]["EcsParameters"]["NetworkConfiguration"][
        "AwsvpcConfiguration"
    ]
    assert vpc_config["Subnets"] == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
    assert vpc_config["AssignPublicIp"] == "DISABLED"


def test_no_plaintext_credentials_anywhere(synth: Synth) -> None:
    for st in as_list(_container(synth)["Environment"]):
        assert "password" not in str(st["Value"]).lower()


def test_docker_context_is_staged_as_pants_lays_it_out(tmp_path) -> None:
    from pipeline_infra.publish_stage import stage_docker_context

    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    pex = tmp_path / "dist" / "apps.kafka_publisher" / "kafka_publisher.pex"
    pex.parent.mkdir(parents=True)
    pex.write_bytes(b"pex")
    context = stage_docker_context(dockerfile, pex, tmp_path / "stage")
    assert (context / "Dockerfile").read_text() == "FROM scratch\n"
    assert (context / "apps.kafka_publisher" / "kafka_publisher.pex").read_bytes() == b"pex"
    assert stage_docker_context(dockerfile, pex, tmp_path / "stage") == context
    pex.write_bytes(b"pex v2")
    assert stage_docker_context(dockerfile, pex, tmp_path / "stage") != context
    without = stage_docker_context(dockerfile, None, tmp_path / "stage")
    assert sorted(p.name for p in without.iterdir()) == ["Dockerfile"]
