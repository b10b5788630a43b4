"""Diff stage: the Glue 5.0 job that writes `<diffs>/<D>/`, and its daily schedule.

* Job: glue_version 5.0, `glueetl` (Spark, Python 3), job bookmarks disabled (they would hide
  yesterday's files from today's run), continuous CloudWatch logging, metrics, a security
  configuration (S3 SSE-S3, CloudWatch logs and bookmarks encrypted with the pipeline's KMS key),
  a timeout that stops the job before the publisher starts.
* Code: the script (`glue_script_path`) and diffcore as S3 assets. diffcore goes through
  `--extra-py-files` as a `.zip`: CDK renames a file asset to `<hash>.<ext>`, and pip refuses a
  wheel whose file name is not `name-version-tags.whl` (aws/aws-cdk#20481), so
  `--additional-python-modules s3://.../<hash>.whl` can't work. A pure-Python wheel is a zip of the
  package: it is staged as `diffcore.zip` when `diffcore_wheel_path` exists, else the package
  folder `diffcore_source_path` is zipped (deterministically, so the asset hash is stable). Third
  party modules, if any, go in `glue_additional_python_modules` (pip specs).
* Role: reads only the two input buckets (their configured prefixes), writes only date folders of
  the diffs bucket (`????-??-??/*`) and the Glue temp prefix, reads its own two assets, writes its
  logs and metrics. No managed policy.
* Schedule: EventBridge Scheduler (time zone aware), universal target
  `arn:aws:scheduler:::aws-sdk:glue:startJobRun`, passing `--run_date` =
  `<aws.scheduler.scheduled-time>` (an ISO-8601 UTC timestamp, e.g. 2026-11-26T03:30:00Z: the job
  converts it into `--timezone` to get the local date D), with retries and a dead-letter queue.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from pathlib import Path

from aws_cdk import ArnFormat, CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from pipeline_infra.config import SCHEDULER_MAX_EVENT_AGE_SECONDS, ConfigError, PipelineConfig
from pipeline_infra.storage import GLUE_TEMP_PREFIX, Storage

GLUE_START_JOB_RUN_TARGET = "arn:aws:scheduler:::aws-sdk:glue:startJobRun"
# The job's log groups: <root>/<job name>/output (stdout, stderr) and .../error (system, Spark).
GLUE_LOG_GROUP_ROOT = "/aws-glue/jobs"
GLUE_LOG_STREAMS = ("output", "error")
# What Glue does with the pipeline key (security configuration): encrypt its CloudWatch logs
# (SSE-KMS) and job bookmarks (CSE-KMS). No kms:ReEncrypt*, no wildcard.
PIPELINE_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
# Object keys the job may write in the diffs bucket: date folders only (never _published/).
DATE_FOLDER_PATTERN = "????-??-??/*"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def zip_python_package(package_dir: Path, out_dir: Path) -> Path:
    """Zip a pure-Python package folder as `<out_dir>/<hash>/<name>.zip`, deterministically (sorted
    entries, fixed timestamps, no caches or tests), so equal sources give an equal asset hash."""
    if not (package_dir / "__init__.py").is_file():
        raise ConfigError(f"diffcore_source_path={package_dir} is not a Python package folder")
    files = sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix != ".pyc"
        and not p.name.endswith("_test.py")
        and p.name not in ("BUILD", "conftest.py")
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(package_dir.parent).as_posix().encode())
        digest.update(path.read_bytes())
    target = out_dir / digest.hexdigest()[:16] / f"{package_dir.name}.zip"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".zip.tmp")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                info = zipfile.ZipInfo(path.relative_to(package_dir.parent).as_posix(), _ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
        partial.replace(target)
    return target


def stage_wheel_as_zip(wheel: Path, out_dir: Path) -> Path:
    """Copy a pure-Python wheel to `<out_dir>/<hash>/diffcore.zip` (a wheel is a zip whose root
    holds the package; a `.zip` on --extra-py-files goes on Spark's and Python's path)."""
    data = wheel.read_bytes()
    if not zipfile.is_zipfile(wheel):
        raise ConfigError(f"diffcore_wheel_path={wheel} is not a wheel (zip) file")
    if not wheel.name.endswith("-none-any.whl"):
        raise ConfigError(
            f"diffcore_wheel_path={wheel}: only a pure-Python wheel "
            "(*-none-any.whl) can run from --extra-py-files"
        )
    target = out_dir / hashlib.sha256(data).hexdigest()[:16] / "diffcore.zip"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return target


def role_policy(role: iam.Role) -> CfnResource:
    """The CloudFormation resource of a role's default (inline) policy, for an explicit
    DependsOn: a GetAtt on the role orders only the role, not the policy CDK attaches to it."""
    policy = role.node.find_child("DefaultPolicy").node.default_child
    assert isinstance(policy, CfnResource), policy
    return policy


def staging_dir() -> Path:
    return Path(tempfile.gettempdir()) / "diffs-pipeline-cdk-staging"


class DiffStage(Construct):
    """Attributes: job (CfnJob), role, security_configuration, schedule, script_asset,
    diffcore_asset, diffcore_source ("wheel" or "source")."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        storage: Storage,
        key: kms.IKey,
        scheduler_role: iam.Role,
        scheduler_dlq: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        script = config.resolve(config.glue_script_path)
        if not script.is_file():
            raise ConfigError(
                f"glue_script_path: the Glue job script {script} does not exist (it is written by "
                "apps/glue_job; pass -c glue_script_path=<file> to use another one)"
            )
        self.script_asset = s3_assets.Asset(self, "ScriptAsset", path=str(script))

        wheel = config.resolve(config.diffcore_wheel_path)
        if wheel.is_file():
            self.diffcore_source = "wheel"
            diffcore_zip = stage_wheel_as_zip(wheel, staging_dir())
        else:
            self.diffcore_source = "source"
            diffcore_zip = zip_python_package(
                config.resolve(config.diffcore_source_path), staging_dir()
            )
        self.diffcore_asset = s3_assets.Asset(self, "DiffcoreAsset", path=str(diffcore_zip))

        # ---- role -------------------------------------------------------------------------
        self.role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description="Diff job: reads the two input buckets, writes the diffs bucket's date "
            "folders and the Glue temp prefix",
        )
        for sid, bucket, prefix in (
            # a date-templated prefix (exports/{yesterday}/) is read up to its first placeholder
            ("ReadBefore", storage.before_bucket, config.read_prefix("before")),
            ("ReadAfter", storage.after_bucket, config.read_prefix("after")),
        ):
            self._allow(f"{sid}Objects", ["s3:GetObject"], [bucket.arn_for_objects(f"{prefix}*")])
            self._allow(f"{sid}List", ["s3:ListBucket"], [bucket.bucket_arn])
        self._allow(
            "WriteDiffs",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            [f"{storage.diffs_bucket_arn}/{DATE_FOLDER_PATTERN}"],
        )
        self._allow(
            "ListDiffs",
            ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
            [storage.diffs_bucket_arn],
        )
        self._allow(
            "UseTempDir",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            [storage.glue_temp_bucket.arn_for_objects(f"{GLUE_TEMP_PREFIX}/*")],
        )
        self._allow(
            "ListTempDir",
            ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
            [storage.glue_temp_bucket.bucket_arn],
        )
        self._allow(
            "ReadCode",
            ["s3:GetObject"],
            [
                self.script_asset.bucket.arn_for_objects(self.script_asset.s3_object_key),
                self.diffcore_asset.bucket.arn_for_objects(self.diffcore_asset.s3_object_key),
            ],
        )
        self.log_groups_arn = log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws-glue/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self._allow(
            "WriteLogs",
            [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:AssociateKmsKey",
            ],
            [log_groups],
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PutGlueMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            )
        )
        # Named actions, not key.grant_encrypt_decrypt: that adds kms:ReEncrypt* and
        # kms:GenerateDataKey*, which log and bookmark encryption never use.
        self._allow("UsePipelineKey", list(PIPELINE_KEY_ACTIONS), [key.key_arn])
        # Input objects encrypted with customer-managed keys (SSE-KMS): decrypt through S3 only.
        input_keys = [k for k in (config.before_kms_key_arn, config.after_kms_key_arn) if k]
        if input_keys:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="DecryptInputs",
                    actions=["kms:Decrypt"],
                    resources=sorted(set(input_keys)),
                    conditions={
                        "StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}
                    },
                )
            )

        # ---- security configuration and job ------------------------------------------------
        self.security_configuration = glue.CfnSecurityConfiguration(
            self,
            "SecurityConfiguration",
            name=f"{config.job_name}-security",
            encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
                s3_encryptions=[
                    glue.CfnSecurityConfiguration.S3EncryptionProperty(s3_encryption_mode="SSE-S3")
                ],
                cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                    cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=key.key_arn
                ),
                job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                    job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=key.key_arn
                ),
            ),
        )

        # Glue 5.0 writes the driver's and executors' logs to <prefix>/output and <prefix>/error
        # (--custom-logGroup-prefix). The stack creates both, with retention and the pipeline key,
        # instead of leaving Glue to create /aws-glue/jobs/output and /error with no expiry.
        self.log_group_prefix = f"{GLUE_LOG_GROUP_ROOT}/{config.job_name}"
        self.log_groups: dict[str, logs.CfnLogGroup] = {}
        for stream in GLUE_LOG_STREAMS:
            group = logs.CfnLogGroup(
                self,
                f"{stream.capitalize()}LogGroup",
                log_group_name=f"{self.log_group_prefix}/{stream}",
                retention_in_days=config.log_retention_days,
                kms_key_id=key.key_arn,
            )
            group.apply_removal_policy(RemovalPolicy.RETAIN)
            self.log_groups[stream] = group

        arguments = {
            "--before": f"s3://{storage.before_bucket.bucket_name}/{config.before_prefix}",
            "--after": f"s3://{storage.after_bucket.bucket_name}/{config.after_prefix}",
            "--diffs": storage.diffs_location,
            "--key": ",".join(config.key_fields),
            "--ignore": ",".join(config.ignore_fields),
            "--bad_records": config.bad_records,
            "--allow_empty": config.allow_empty,
            "--timezone": config.timezone,
            "--extra-py-files": self.diffcore_asset.s3_object_url,
            "--TempDir": storage.glue_temp_location,
            "--job-language": "python",
            "--job-bookmark-option": "job-bookmark-disable",
            "--enable-continuous-cloudwatch-log": "true",
            "--enable-continuous-log-filter": "true",
            "--enable-metrics": "true",
            "--custom-logGroup-prefix": self.log_group_prefix,
        }
        if config.glue_additional_python_modules:
            arguments["--additional-python-modules"] = config.glue_additional_python_modules
        self.default_arguments = arguments

        self.job = glue.CfnJob(
            self,
            "Job",
            name=config.job_name,
            description="Daily diff of the before/after snapshots into <diffs>/<D>/ "
            "(contract: shared/spec/diff-contract.md)",
            role=self.role.role_arn,
            glue_version="5.0",
            command=glue.CfnJob.JobCommandProperty(
                name="glueetl",
                python_version="3",
                script_location=self.script_asset.s3_object_url,
            ),
            default_arguments=arguments,
            execution_property=glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=1),
            max_retries=0,
            timeout=config.effective_glue_timeout,
            worker_type=config.glue_worker_type,
            number_of_workers=config.glue_number_of_workers,
            security_configuration=self.security_configuration.ref,
        )
        # The role itself is already a dependency (GetAtt Arn); its inline policy is not, and the
        # job must not start a run before its permissions exist (cfn-lint W3005 on the role).
        self.job.node.add_dependency(role_policy(self.role))
        self.job_arn = stack.format_arn(
            service="glue", resource="job", resource_name=config.job_name
        )

        # ---- schedule ----------------------------------------------------------------------
        scheduler_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="StartDiffJob",
                actions=["glue:StartJobRun"],
                resources=[self.job_arn],
            )
        )
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description=f"Daily diff at {config.glue_time} {config.timezone}",
            schedule_expression=config.cron(config.glue_time),
            schedule_expression_timezone=config.timezone,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=GLUE_START_JOB_RUN_TARGET,
                role_arn=scheduler_role.role_arn,
                input=json.dumps(
                    {
                        "JobName": config.job_name,
                        "Arguments": {"--run_date": SCHEDULED_TIME},
                    }
                ),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=config.schedule_retry_attempts,
                    maximum_event_age_in_seconds=SCHEDULER_MAX_EVENT_AGE_SECONDS,
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=scheduler_dlq.queue_arn
                ),
            ),
        )
        self.schedule.node.add_dependency(self.job)

    def _allow(self, sid: str, actions: list[str], resources: list[str]) -> None:
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid=sid, actions=actions, resources=resources)
        )
