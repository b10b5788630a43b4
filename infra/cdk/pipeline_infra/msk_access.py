"""Amazon MSK IAM access of the publisher (`kafka_auth=iam`): what its task role may do.

The publisher is an idempotent producer (`enable.idempotence=true`, fixed by the contract) that
checks its topic exists (metadata) and writes to it: on the cluster it connects, describes the
cluster and writes idempotently; on the one topic it describes and writes. Nothing else: no other
topic, no group, no transactional id, no admin action. Resources are the cluster ARN from the
context and the topic ARN derived from it (`PipelineConfig.msk_topic_arn`).

The container gets `KAFKA_AUTH=iam` and `KAFKA_IAM_REGION` (the cluster's region): it signs
SASL/OAUTHBEARER tokens with the task role (apps/kafka_publisher/kafka_publisher/msk_iam.py).
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from pipeline_infra.config import PipelineConfig

CLUSTER_ACTIONS = (
    "kafka-cluster:Connect",
    "kafka-cluster:DescribeCluster",
    "kafka-cluster:WriteDataIdempotently",
)
TOPIC_ACTIONS = ("kafka-cluster:DescribeTopic", "kafka-cluster:WriteData")


def task_role_statements(config: PipelineConfig) -> list[iam.PolicyStatement]:
    """The task role's kafka-cluster statements (none unless `kafka_auth=iam`)."""
    if config.kafka_auth != "iam":
        return []
    return [
        iam.PolicyStatement(
            sid="MskConnect",
            actions=list(CLUSTER_ACTIONS),
            resources=[config.msk_cluster_arn],
        ),
        iam.PolicyStatement(
            sid="MskWriteTopic",
            actions=list(TOPIC_ACTIONS),
            resources=[config.msk_topic_arn],
        ),
    ]


def container_environment(config: PipelineConfig) -> dict[str, str]:
    """What the publisher reads to use IAM auth (none unless `kafka_auth=iam`)."""
    if config.kafka_auth != "iam":
        return {}
    return {
        "KAFKA_AUTH": "iam",
        "KAFKA_IAM_REGION": config.msk_region,
        "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
    }


__all__ = ["CLUSTER_ACTIONS", "TOPIC_ACTIONS", "container_environment", "task_role_statements"]
