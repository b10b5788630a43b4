"""Storage: the before ("ontem") and after ("hoje") input buckets, the diffs bucket, the Glue temp
bucket and the server-access-log bucket.

Every bucket created here blocks public access, denies non-TLS requests, is encrypted (SSE-S3:
S3 server access log delivery supports no other encryption on the log bucket, and SSE-S3 keeps
readers free of KMS grants) and logs its accesses to the log bucket. The diffs bucket and the
created input buckets are versioned (old versions expire); the diffs bucket expires old diffs.
Imported input buckets are only referenced: their policies stay with their owners.

Default bucket names are `<name_prefix>-<role>-<account>-<region>` (S3 names can't hold the
underscores of the epic's `bucket_ontem` / `bucket_hoje` / `bucket_diffs`). The diffs bucket's
name is known without a `Ref` to the bucket, so the queue policy can name the bucket's ARN and the
bucket can depend on that policy (see announce_stage.py): no notification custom resource needed.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pipeline_infra.config import PipelineConfig

ACCESS_LOG_PREFIX = "s3-access-logs"
FLOW_LOG_PREFIX = "vpc-flow-logs"
GLUE_TEMP_PREFIX = "glue-temp"


def bucket_name_for(config: PipelineConfig, role: str) -> str:
    """The configured name of a bucket role, or the default `<prefix>-<role>-<account>-<region>`
    (a CloudFormation expression over pseudo parameters: it references no resource)."""
    return config.bucket_name(role) or f"{config.name_prefix}-{role}-{Aws.ACCOUNT_ID}-{Aws.REGION}"


class Storage(Construct):
    """The five buckets. Attributes: before_bucket, after_bucket, diffs_bucket, glue_temp_bucket,
    log_bucket, and diffs_bucket_name / diffs_bucket_arn (free of references to the bucket)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config

        self.log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            bucket_name=bucket_name_for(config, "logs"),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.access_log_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.before_bucket = self._input_bucket(
            "BeforeBucket", "ontem", config.before_bucket_name, config.import_before_bucket
        )
        self.after_bucket = self._input_bucket(
            "AfterBucket", "hoje", config.after_bucket_name, config.import_after_bucket
        )

        self.diffs_bucket_name = bucket_name_for(config, "diffs")
        self.diffs_bucket_arn = Stack.of(self).format_arn(
            service="s3", region="", account="", resource=self.diffs_bucket_name
        )
        self.diffs_bucket = s3.Bucket(
            self,
            "DiffsBucket",
            bucket_name=self.diffs_bucket_name,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-diffs",
                    expiration=Duration.days(config.diffs_expiration_days),
                    noncurrent_version_expiration=Duration.days(
                        config.diffs_noncurrent_expiration_days
                    ),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="remove-expired-delete-markers", expired_object_delete_marker=True
                ),
            ],
            **self._common("diffs"),
        )

        # Glue's --TempDir: a bucket of its own, so nothing Spark stages there can ever reach
        # the diffs bucket's notification (whatever the suffix of its temporary objects).
        self.glue_temp_bucket = s3.Bucket(
            self,
            "GlueTempBucket",
            bucket_name=bucket_name_for(config, "glue-temp"),
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-glue-temp",
                    expiration=Duration.days(config.glue_temp_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            **self._common("glue-temp"),
        )

    @property
    def glue_temp_location(self) -> str:
        return f"s3://{self.glue_temp_bucket.bucket_name}/{GLUE_TEMP_PREFIX}/"

    @property
    def diffs_location(self) -> str:
        return f"s3://{self.diffs_bucket_name}"

    def _common(self, role: str) -> dict:
        return dict(
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix=f"{ACCESS_LOG_PREFIX}/{role}/",
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _input_bucket(self, construct_id: str, role: str, name: str, imported: bool) -> s3.IBucket:
        if imported:
            return s3.Bucket.from_bucket_name(self, construct_id, name)
        # Versioned: an overwritten or deleted snapshot can be recovered (and a run can name the
        # versions it read); the old versions expire after input_noncurrent_expiration_days.
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=bucket_name_for(self.config, role),
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-snapshot-versions",
                    noncurrent_version_expiration=Duration.days(
                        self.config.input_noncurrent_expiration_days
                    ),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="remove-expired-delete-markers", expired_object_delete_marker=True
                ),
            ],
            **self._common(role),
        )
