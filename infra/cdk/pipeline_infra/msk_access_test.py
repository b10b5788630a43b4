"""kafka_auth=iam: the task role may connect to the one MSK cluster and write the one topic,
the container is told to sign OAUTHBEARER tokens for the cluster's region, and no Kafka secret
is created or passed."""

from __future__ import annotations

import pytest

from pipeline_infra.config import ConfigError, PipelineConfig
from pipeline_infra.msk_access import CLUSTER_ACTIONS, TOPIC_ACTIONS
from pipeline_infra.testing import default_synth, synth

CLUSTER = (
    "arn:aws:kafka:sa-east-1:123456789012:cluster/diffs-msk/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5"
)
TOPIC = "arn:aws:kafka:sa-east-1:123456789012:topic/diffs-msk/6357e0b2-0e6a-4b86-a0b4-70df934c2e31-5/customers.diffs"
IAM_CONTEXT = {
    "kafka_auth": "iam",
    "msk_cluster_arn": CLUSTER,
    "kafka_topic": "customers.diffs",
    "kafka_ports": "9098",
    "kafka_bootstrap_servers": "b-1.diffsmsk.abc123.c2.kafka.sa-east-1.amazonaws.com:9098",
}


def _container(s) -> dict:
    _, task_definition = s.one("AWS::ECS::TaskDefinition")
    (container,) = task_definition["Properties"]["ContainerDefinitions"]
    return container


def test_iam_auth_grants_the_cluster_and_the_topic_only() -> None:
    s = synth(IAM_CONTEXT)
    kafka = sorted(
        (action, resource)
        for action, resource in s.grants(s.stack.publish.task_role)
        if action.startswith("kafka-cluster:")
    )
    expected = [(a, CLUSTER) for a in CLUSTER_ACTIONS] + [(a, TOPIC) for a in TOPIC_ACTIONS]
    assert kafka == sorted(expected)
    assert not s.resources("AWS::SecretsManager::Secret")
    container = _container(s)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["KAFKA_AUTH"] == "iam"
    assert env["KAFKA_IAM_REGION"] == "sa-east-1"
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == (
        "SASL_SSL",
        "OAUTHBEARER",
    )
    assert "Secrets" not in container
    # Nobody else may act on the cluster: no kafka-cluster action on any other role.
    for role in (s.stack.publish.execution_role, s.stack.diff.role):
        assert not [a for a, _ in s.grants(role) if a.startswith("kafka")]


def test_credentials_stay_the_default_with_no_kafka_cluster_grant() -> None:
    s = default_synth()
    assert not [a for a, _ in s.grants(s.stack.publish.task_role) if a.startswith("kafka")]
    env = {e["Name"] for e in _container(s)["Environment"]}
    assert "KAFKA_AUTH" not in env
    assert {x["Name"] for x in _container(s)["Secrets"]} == {"KAFKA_USERNAME", "KAFKA_PASSWORD"}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"kafka_auth": "sasl"}, "kafka_auth='sasl': one of credentials, iam"),
        ({"kafka_auth": "iam", "kafka_ports": "9098"}, "needs msk_cluster_arn"),
        ({**IAM_CONTEXT, "msk_cluster_arn": "arn:aws:kafka:x"}, "needs msk_cluster_arn"),
        ({**IAM_CONTEXT, "kafka_ports": "9096"}, "lacks MSK's IAM listener"),
        ({**IAM_CONTEXT, "kafka_security_protocol": "SSL"}, "kafka_security_protocol=SASL_SSL"),
        (
            {
                **IAM_CONTEXT,
                "kafka_secret_arn": "arn:aws:secretsmanager:sa-east-1:123456789012:secret:k-AbCdEf",
            },
            "takes no kafka_secret_arn",
        ),
        ({"msk_cluster_arn": CLUSTER}, "only used with kafka_auth=iam"),
    ],
)
def test_iam_context_is_checked(context: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_mapping(context)


def test_topic_arn_follows_the_cluster_arn() -> None:
    config = PipelineConfig.from_mapping(IAM_CONTEXT)
    assert (config.msk_region, config.msk_topic_arn) == ("sa-east-1", TOPIC)
    assert not config.uses_sasl  # no secret with IAM
