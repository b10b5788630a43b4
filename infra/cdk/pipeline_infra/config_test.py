"""PipelineConfig: defaults, coercion of `-c` strings and cdk.json JSON, validation messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from diffcore.layout import DEFAULT_QUEUE_NAME
from pipeline_infra.config import FIELDS, ConfigError, PipelineConfig, find_repo_root

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_need_no_context() -> None:
    config = PipelineConfig.from_mapping({})
    assert config.queue_name == DEFAULT_QUEUE_NAME
    assert config.key_fields == ("id",)
    assert config.ignore_fields == ()
    assert config.timezone == "UTC"
    assert (config.glue_time, config.publisher_time) == ("00:30", "02:00")
    assert config.cron(config.publisher_time) == "cron(0 2 * * ? *)"
    assert config.cron(config.glue_time) == "cron(30 0 * * ? *)"
    # 90 minutes of gap minus Scheduler's 15-minute retry window minus a 5-minute margin
    assert config.effective_glue_timeout == 70
    assert config.job_name == "diffs-pipeline-diff"
    assert config.creates_vpc and not config.public_ip  # a public IP only when asked
    assert config.kafka_ports == (9092, 9094, 9096)


def test_strings_from_the_command_line_and_json_from_cdk_json() -> None:
    from_cli = PipelineConfig.from_mapping(
        {
            "key_fields": "tenant, customer.id",
            "ignore_fields": "",
            "kafka_ports": "9096",
            "import_before_bucket": "true",
            "before_bucket_name": "acme-ontem",
            "publisher_cpu": "1024",
            "publisher_memory_mib": "2048",
            "assign_public_ip": "auto",
        }
    )
    from_json = PipelineConfig.from_mapping(
        {
            "key_fields": ["tenant", "customer.id"],
            "ignore_fields": [],
            "kafka_ports": [9096],
            "import_before_bucket": True,
            "before_bucket_name": "acme-ontem",
            "publisher_cpu": 1024,
            "publisher_memory_mib": 2048,
            "assign_public_ip": None,
        }
    )
    assert from_cli == from_json
    assert from_cli.key_fields == ("tenant", "customer.id")
    assert from_cli.kafka_ports == (9096,)
    assert from_cli.import_before_bucket is True


def test_cdk_own_context_keys_are_ignored() -> None:
    PipelineConfig.from_mapping(
        {
            "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
            "aws:cdk:enable-path-metadata": True,
            "vpc-provider:account=1:filter.vpc-id=vpc-1:region=x": {},
            "acknowledged-issue-numbers": [1],
        }
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"kafka_topicz": "x"}, "unknown context key(s): kafka_topicz"),
        ({"glue_time": "02:30"}, "must precede publisher_time"),
        ({"glue_time": "01:50"}, "by at least 30 minutes of real time"),
        ({"glue_time": "24:00"}, "glue_time='24:00': a time of day HH:MM"),
        ({"glue_timeout_minutes": 120}, "glue_timeout_minutes=120: between 1 and 75"),
        ({"timezone": "Mars/Olympus"}, "an IANA time zone"),
        ({"before_bucket_name": "bucket_ontem"}, "is not a valid S3 bucket name"),
        ({"import_after_bucket": True}, "import_after_bucket=true needs after_bucket_name"),
        ({"before_bucket_name": "same", "after_bucket_name": "same"}, "three different buckets"),
        ({"key_fields": ""}, "at least one key field"),
        ({"key_fields": "id", "ignore_fields": "id"}, "may not hold key fields: id"),
        ({"bad_records": "skip"}, "bad_records='skip': one of fail, quarantine"),
        ({"allow_empty": "all"}, "allow_empty='all'"),
        ({"kafka_bootstrap_servers": "broker"}, "'broker' is not host:port"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol='TLS'"),
        ({"kafka_sasl_mechanism": ""}, "kafka_sasl_mechanism is required"),
        ({"kafka_ports": "0"}, "one or more TCP ports"),
        ({"kafka_broker_cidr": "10.0.0.0/33"}, "an IPv4 CIDR"),
        ({"kafka_secret_arn": "kafka/diffs"}, "the complete ARN"),
        ({"before_kms_key_arn": "alias/exports"}, "before_kms_key_arn='alias/exports'"),
        (
            {"kafka_secret_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/" + "1" * 36},
            "kafka_secret_kms_key_arn needs kafka_secret_arn",
        ),
        ({"input_noncurrent_expiration_days": 0}, "input_noncurrent_expiration_days: at least"),
        ({"publisher_memory_mib": 512}, "is not valid with publisher_cpu=512"),
        ({"vpc_id": "default"}, "vpc_id='default'"),
        ({"subnet_ids": "subnet-0123456789abcdef0"}, "subnet_ids needs vpc_id"),
        ({"vpc_id": "vpc-0123456789abcdef0", "nat_gateways": 1}, "created VPC only"),
        ({"alarm_email": "oncall"}, "an e-mail address"),
        ({"log_retention_days": 31}, "log_retention_days=31"),
        ({"publisher_cpu": "lots"}, "context publisher_cpu='lots'"),
        ({"publisher_workers": 0}, "publisher_workers=0: from 1 to 64"),
        ({"publisher_workers": "65"}, "publisher_workers=65"),
        ({"import_before_bucket": "maybe"}, "expected true or false"),
        ({"name_prefix": "Diffs_Pipeline"}, "name_prefix='Diffs_Pipeline'"),
    ],
)
def test_invalid_context_names_the_key(context: dict, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        PipelineConfig.from_mapping(context)
    assert message in str(excinfo.value)


def test_all_errors_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        PipelineConfig.from_mapping({"bad_records": "x", "allow_empty": "y"})
    assert "bad_records" in str(excinfo.value) and "allow_empty" in str(excinfo.value)


def test_ecr_image_uri_is_parsed() -> None:
    config = PipelineConfig.from_mapping(
        {"publisher_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/pub:2.0"}
    )
    assert config.ecr_image is not None
    assert (config.ecr_image.account, config.ecr_image.region) == ("123456789012", "eu-west-1")
    assert (config.ecr_image.repository, config.ecr_image.tag_or_digest) == ("team/pub", "2.0")
    assert (
        PipelineConfig.from_mapping({"publisher_image_uri": "public.ecr.aws/acme/pub:1"}).ecr_image
        is None
    )


def test_relative_paths_resolve_against_the_repository_root() -> None:
    root = find_repo_root()
    assert (root / "libs" / "diffcore").is_dir()
    config = PipelineConfig()
    assert config.resolve("libs/diffcore/diffcore") == root / "libs/diffcore/diffcore"
    assert config.resolve("/abs/main.py") == Path("/abs/main.py")


def test_readme_documents_every_context_key() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [name for name in FIELDS if f"| `{name}` |" not in text]
    assert not missing, f"README context table lacks: {missing}"
    assert len(FIELDS) == len(dataclasses.fields(PipelineConfig))
