"""announce_spec: the announce wiring as plain data (no CDK), shared by the CDK app and tests/e2e."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from diffcore.layout import DATA_FILE_SUFFIXES, DEFAULT_QUEUE_NAME, MANIFEST_NAME, data_file_name
from pipeline_infra import announce_spec as spec
from pipeline_infra.config import PipelineConfig

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:diffs-events-queue"
BUCKET_ARN = "arn:aws:s3:::diffs-pipeline-diffs-123456789012-us-east-1"


def test_module_imports_no_cdk() -> None:
    tree = ast.parse(Path(spec.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not [m for m in imported if m.startswith(("aws_cdk", "constructs"))]


def test_one_rule_per_data_suffix_for_object_created() -> None:
    rules = spec.notification_rules(QUEUE_ARN)
    assert len(rules) == len(DATA_FILE_SUFFIXES) == 2
    suffixes = []
    for rule in rules:
        assert rule["QueueArn"] == QUEUE_ARN and rule["Events"] == ["s3:ObjectCreated:*"]
        (only,) = rule["Filter"]["Key"]["FilterRules"]
        assert only["Name"] == "suffix"
        suffixes.append(only["Value"])
    assert tuple(suffixes) == DATA_FILE_SUFFIXES
    assert f"2026-11-25/{data_file_name(0)}".endswith(tuple(suffixes))
    assert not f"2026-11-25/{MANIFEST_NAME}".endswith(tuple(suffixes))
    assert spec.notification_configuration(QUEUE_ARN) == {"QueueConfigurations": rules}


def test_policy_lets_only_the_diffs_bucket_of_the_account_send_over_tls() -> None:
    allow, deny = spec.queue_policy_statements(QUEUE_ARN, BUCKET_ARN, "123456789012")
    assert allow["Effect"] == "Allow" and allow["Action"] == "sqs:SendMessage"
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Resource"] == QUEUE_ARN
    assert allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": BUCKET_ARN},
        "StringEquals": {"aws:SourceAccount": "123456789012"},
    }
    assert deny == spec.tls_only_statement(QUEUE_ARN)
    assert deny["Effect"] == "Deny" and deny["Action"] == "sqs:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    json.dumps(spec.policy_document([allow, deny]))  # plain JSON


def test_queue_settings_from_the_config_defaults() -> None:
    config = PipelineConfig.from_mapping({})
    settings = spec.queue_settings(config.queue_name, config.queue_max_receive_count)
    assert settings.name == DEFAULT_QUEUE_NAME
    assert settings.dead_letter_name == f"{DEFAULT_QUEUE_NAME}-dlq"
    attrs = settings.queue_attributes("arn:dlq")
    assert attrs["MessageRetentionPeriod"] == str(4 * 24 * 3600)
    assert attrs["VisibilityTimeout"] == "300" and attrs["SqsManagedSseEnabled"] == "true"
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:dlq",
        "maxReceiveCount": 5,
    }
    assert settings.dead_letter_attributes()["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert spec.default_bucket_name("diffs-pipeline", "diffs", "123456789012", "us-east-1") == (
        "diffs-pipeline-diffs-123456789012-us-east-1"
    )
