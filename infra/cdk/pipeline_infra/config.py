"""The deployment's configuration: CDK context (cdk.json or `-c key=value`) -> a frozen dataclass.

Every knob has a default, so `cdk synth` works in a fresh clone with no context at all. Values
given on the command line arrive as strings (`-c key_fields=tenant,id`), values in cdk.json may be
JSON lists, numbers or booleans: both are accepted. Anything invalid raises `ConfigError` naming the
context key, the value and what is expected, before a single construct is built.

The table in infra/cdk/README.md documents every key; `FIELDS` below is its source of truth
(config_test.py checks that the README lists each key).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from diffcore import locations
from diffcore.errors import DiffError
from diffcore.layout import DEFAULT_QUEUE_NAME, MAX_PUBLISH_WORKERS
from pipeline_infra.schedules import SKIPPED, dst_problems, min_elapsed_minutes


class ConfigError(ValueError):
    """A context value is missing, malformed or inconsistent with another one."""


BAD_RECORDS_MODES = ("fail", "quarantine")
SYNTH_MODES = ("deploy", "placeholder")
ALLOW_EMPTY_MODES = ("none", "before", "after", "both")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
GLUE_WORKER_TYPES = ("G.1X", "G.2X", "G.4X", "G.8X", "G.025X")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Fargate CPU units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}
# The publisher's PUBLISH_WORKERS range (the bound kafka_publisher.config.MAX_WORKERS is too).
MAX_PUBLISHER_WORKERS = MAX_PUBLISH_WORKERS
# Longest region name (ap-southeast-3, ap-northeast-1, ...) and account id, for default bucket names.
_MAX_REGION_LEN = 14
_ACCOUNT_LEN = 12
# The roles of the buckets, used in their default names: <prefix>-<role>-<account>-<region>.
BUCKET_ROLES = ("ontem", "hoje", "diffs", "logs", "glue-temp")

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
_FIELD_RE = re.compile(r"^[^,\s]+$")
_VPC_RE = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
_SECRET_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
# arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid> (MSK; the uuid may end in -<n>)
_MSK_CLUSTER_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:kafka:(?P<region>[a-z0-9-]+):\d{12}:cluster/[A-Za-z0-9-]{1,64}/[0-9a-f-]+$"
)
# kafka_auth: SASL credentials from a secret, or Amazon MSK IAM (SASL/OAUTHBEARER, no secret).
KAFKA_AUTH_MODES = ("credentials", "iam")
# MSK's IAM listeners: 9098 inside the VPC, 9198 public access.
MSK_IAM_PORTS = (9098, 9198)
_ECR_URI_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[a-z0-9._/-]+?)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CIDR_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/(\d{1,2})$")
_JOB_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_KMS_KEY_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/(?:[0-9a-f-]{36}|mrk-[0-9a-f]{32})$"
)

# ---- schedules (docs: infra/cdk/README.md, "Schedules") ------------------------------------
# Years over which a schedule's local time is checked against the zone's DST rules (tzdata):
# a fixed range, so a synth gives the same answer whatever day it runs on.
SCHEDULE_CHECK_YEARS = range(2026, 2046)
# How late EventBridge Scheduler may start a target: the flexible window (mode OFF: 0) plus the
# retry policy's maximum event age (retries happen within it). Both schedules use these values.
SCHEDULER_FLEXIBLE_WINDOW_MINUTES = 0
SCHEDULER_MAX_EVENT_AGE_SECONDS = 900
# The Glue job's timeout ends this long before the publisher may start, at the latest.
GLUE_TIMEOUT_MARGIN_MINUTES = 5
# The shortest Glue timeout a configuration may leave (a diff of a small day).
MIN_GLUE_TIMEOUT_MINUTES = 10


def _prefix_template_problems(before_prefix: str, after_prefix: str) -> list[str]:
    """Date placeholders in the snapshot prefixes (`exports/{yesterday}/`), checked at synth
    with the function the Glue job resolves them with at run time (diffcore.locations)."""
    problems, templates = [], []
    for key, value in (("before_prefix", before_prefix), ("after_prefix", after_prefix)):
        try:
            templates.append(locations.parse(value, key))
        except DiffError as exc:
            problems.append(exc.message)
    if not problems:
        try:
            locations.check_pair(*templates, options=("before_prefix", "after_prefix"))
        except DiffError as exc:
            problems.append(exc.message)
    return problems


@dataclass(frozen=True)
class EcrImage:
    """An image in ECR, parsed from `publisher_image_uri`."""

    account: str
    region: str
    repository: str
    tag_or_digest: str


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the stack needs to know; see README's context table for each field."""

    # Naming
    stack_name: str = "DiffsPipeline"
    name_prefix: str = "diffs-pipeline"
    # Input buckets: created (with the given or the default name) or imported by name.
    before_bucket_name: str = ""
    import_before_bucket: bool = False
    before_prefix: str = ""
    after_bucket_name: str = ""
    import_after_bucket: bool = False
    after_prefix: str = ""
    # Customer-managed KMS keys the input objects are encrypted with (SSE-KMS), if any: the Glue
    # role gets kms:Decrypt on them. Created input buckets are versioned; old versions expire.
    before_kms_key_arn: str = ""
    after_kms_key_arn: str = ""
    input_noncurrent_expiration_days: int = 30
    # Output
    diffs_bucket_name: str = ""
    diffs_expiration_days: int = 90
    diffs_noncurrent_expiration_days: int = 30
    access_log_expiration_days: int = 365
    glue_temp_expiration_days: int = 7
    # The diff
    key_fields: tuple[str, ...] = ("id",)
    ignore_fields: tuple[str, ...] = ()
    bad_records: str = "fail"
    allow_empty: str = "none"
    # Schedules
    timezone: str = "UTC"
    glue_time: str = "00:30"
    publisher_time: str = "02:00"
    schedule_retry_attempts: int = 2
    # Glue job
    glue_job_name: str = ""  # default: <name_prefix>-diff
    glue_script_path: str = "apps/glue_job/glue_job/main.py"
    diffcore_wheel_path: str = "dist/diffcore-0.1.0-py3-none-any.whl"
    diffcore_source_path: str = "libs/diffcore/diffcore"
    glue_additional_python_modules: str = ""
    glue_worker_type: str = "G.1X"
    glue_number_of_workers: int = 2
    glue_timeout_minutes: int = 0  # 0: the gap between the two schedules minus 5 minutes
    # Queue
    queue_name: str = DEFAULT_QUEUE_NAME
    queue_max_receive_count: int = 5
    # Kafka
    kafka_bootstrap_servers: str = ""
    kafka_topic: str = "diffs-events"
    kafka_security_protocol: str = "SASL_SSL"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_ports: tuple[int, ...] = (9092, 9094, 9096)
    kafka_broker_cidr: str = "0.0.0.0/0"
    # The brokers' security group (in vpc_id): the task may reach it, and it gets an ingress
    # rule from the task's security group on kafka_ports.
    kafka_broker_security_group_id: str = ""
    kafka_secret_arn: str = ""
    # "credentials": KAFKA_USERNAME/KAFKA_PASSWORD from the secret; "iam": MSK IAM, the task role
    # signs SASL/OAUTHBEARER tokens and gets kafka-cluster:* on msk_cluster_arn and kafka_topic.
    kafka_auth: str = "credentials"
    msk_cluster_arn: str = ""
    kafka_secret_kms_key_arn: str = ""  # the imported secret's customer-managed key, if any
    # Publisher task
    publisher_image_uri: str = ""
    publisher_dockerfile: str = "apps/kafka_publisher/Dockerfile"
    publisher_pex_path: str = "dist/apps.kafka_publisher/kafka_publisher.pex"
    publisher_cpu: int = 512
    publisher_memory_mib: int = 1024
    publisher_workers: int = 1  # PUBLISH_WORKERS: processes publishing files side by side
    # ACCEPT_UNREADABLE_KEYS: publish a day whose after snapshot had bad lines with unreadable
    # keys (contract §6; the publisher refuses such a day with exit 14 otherwise).
    publisher_accept_unreadable_keys: bool = False
    cluster_name: str = ""
    # Network
    vpc_id: str = ""
    subnet_ids: tuple[str, ...] = ()
    nat_gateways: int = 0
    assign_public_ip: bool | None = None  # None ("auto"): no; a public IP only when asked
    # Observability
    alarm_email: str = ""
    log_retention_days: int = 30
    # Where relative paths (script, wheel, Docker context) are resolved; "" = found automatically.
    repo_root: str = ""
    # "deploy": the synth refuses a stack that would deploy a broken pipeline (deploy_mode.py:
    # no publisher PEX, no brokers, no broker network, no alarm subscriber); "placeholder": a
    # template with placeholders (tests, reading the template), never for `cdk deploy`.
    mode: str = "deploy"

    # ---- derived values -------------------------------------------------------------------
    @property
    def job_name(self) -> str:
        return self.glue_job_name or f"{self.name_prefix}-diff"

    @property
    def glue_minutes(self) -> int:
        return _minutes(self.glue_time)

    @property
    def publisher_minutes(self) -> int:
        return _minutes(self.publisher_time)

    @property
    def min_schedule_gap(self) -> int:
        """Minutes of real time from the diff job's start to the publisher's, on the day it is
        shortest (a spring-forward day shortens it in zones that switch in between)."""
        return _min_gap(self.glue_time, self.publisher_time, self.timezone)

    @property
    def scheduler_delay_minutes(self) -> int:
        """How late Scheduler may start the diff job: flexible window + retry window."""
        return SCHEDULER_FLEXIBLE_WINDOW_MINUTES + -(-SCHEDULER_MAX_EVENT_AGE_SECONDS // 60)

    @property
    def max_glue_timeout(self) -> int:
        """The longest timeout that still ends a latest-started run before the publisher."""
        return self.min_schedule_gap - self.scheduler_delay_minutes

    @property
    def effective_glue_timeout(self) -> int:
        """Minutes: the job is stopped (TIMEOUT, alarm) before the publisher starts, even when
        Scheduler started it as late as it may, on the shortest day."""
        if self.glue_timeout_minutes:
            return self.glue_timeout_minutes
        return self.max_glue_timeout - GLUE_TIMEOUT_MARGIN_MINUTES

    def cron(self, hhmm: str) -> str:
        """EventBridge Scheduler cron expression for a daily run at HH:MM (in `timezone`)."""
        hours, minutes = hhmm.split(":")
        return f"cron({int(minutes)} {int(hours)} * * ? *)"

    @property
    def uses_sasl(self) -> bool:
        """SASL_SSL / SASL_PLAINTEXT with kafka_auth=credentials: the task gets KAFKA_USERNAME /
        KAFKA_PASSWORD from the secret (with kafka_auth=iam the task role signs, no secret). Other protocols get no credentials (the publisher refuses credentials without
        SASL), and no secret is created."""
        return self.kafka_auth != "iam" and self.kafka_security_protocol.startswith("SASL")

    @property
    def msk_region(self) -> str:
        """The region of `msk_cluster_arn` (the publisher signs its tokens for it)."""
        found = _MSK_CLUSTER_ARN_RE.match(self.msk_cluster_arn)
        return found["region"] if found else ""

    @property
    def msk_topic_arn(self) -> str:
        """`arn:...:topic/<cluster name>/<cluster uuid>/<kafka_topic>` (IAM's topic resource)."""
        return self.msk_cluster_arn.replace(":cluster/", ":topic/", 1) + f"/{self.kafka_topic}"

    @property
    def creates_vpc(self) -> bool:
        return not self.vpc_id

    @property
    def public_ip(self) -> bool:
        """Only when asked (`assign_public_ip=true`): the task otherwise runs in private subnets
        and reaches AWS through VPC endpoints (created VPC) or your routing (imported VPC)."""
        return bool(self.assign_public_ip)

    @property
    def ecr_image(self) -> EcrImage | None:
        match = _ECR_URI_RE.match(self.publisher_image_uri)
        if not match:
            return None
        return EcrImage(
            account=match["account"],
            region=match["region"],
            repository=match["repo"],
            tag_or_digest=match["tag"] or match["digest"] or "latest",
        )

    def read_prefix(self, role: str) -> str:
        """The fixed start of `<role>_prefix` (before its first date placeholder): the Glue role
        reads `<read_prefix>*`, since a template such as `exports/{yesterday}/` names a new
        folder every day."""
        return locations.parse(getattr(self, f"{role}_prefix"), f"{role}_prefix").static_prefix

    def bucket_name(self, role: str) -> str:
        """The literal name configured for a bucket role, or "" (then the stack uses the default
        `<name_prefix>-<role>-<account>-<region>`)."""
        return {
            "ontem": self.before_bucket_name,
            "hoje": self.after_bucket_name,
            "diffs": self.diffs_bucket_name,
        }.get(role, "")

    def resolve(self, path: str) -> Path:
        """A configured path, absolute or relative to the repository root."""
        candidate = Path(path)
        if candidate.is_absolute():
            return candidate
        return Path(self.repo_root or find_repo_root()) / candidate

    def _kafka_auth_errors(self) -> list[str]:
        if self.kafka_auth not in KAFKA_AUTH_MODES:
            return [f"kafka_auth={self.kafka_auth!r}: one of {', '.join(KAFKA_AUTH_MODES)}"]
        if self.kafka_auth != "iam":
            stray = bool(self.msk_cluster_arn)
            return ["msk_cluster_arn is only used with kafka_auth=iam"] if stray else []
        err = []
        if not _MSK_CLUSTER_ARN_RE.match(self.msk_cluster_arn):
            err.append(
                f"kafka_auth=iam needs msk_cluster_arn, the cluster's ARN "
                f"(arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>), got "
                f"{self.msk_cluster_arn!r}"
            )
        if self.kafka_security_protocol != "SASL_SSL":
            err.append("kafka_auth=iam needs kafka_security_protocol=SASL_SSL")
        if self.kafka_secret_arn:
            err.append("kafka_auth=iam takes no kafka_secret_arn (the task role authenticates)")
        if not set(self.kafka_ports) & set(MSK_IAM_PORTS):
            err.append(
                f"kafka_auth=iam: kafka_ports={','.join(map(str, self.kafka_ports))} lacks MSK's "
                "IAM listener (9098, or 9198 for public access)"
            )
        return err

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_context(cls, get: Any) -> PipelineConfig:
        """Build from a context getter: `node.try_get_context` or a mapping's `.get`."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = get(f.name)
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        unknown = [k for k in _known_context_keys(get) if k not in FIELDS and not _is_cdk_key(k)]
        if unknown:
            raise ConfigError(
                f"unknown context key(s): {', '.join(sorted(unknown))}; "
                f"known keys: {', '.join(FIELDS)}"
            )
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def from_mapping(cls, context: Mapping[str, Any]) -> PipelineConfig:
        getter = _MappingGetter(context)
        return cls.from_context(getter)

    def validate(self) -> None:  # noqa: C901 - one flat list of checks reads best
        err: list[str] = []
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]{0,127}$", self.stack_name):
            err.append(f"stack_name={self.stack_name!r}: a CloudFormation stack name")
        if not _PREFIX_RE.match(self.name_prefix) or len(self.name_prefix) > 20:
            err.append(
                f"name_prefix={self.name_prefix!r}: lowercase letters, digits and '-', "
                "at most 20 characters (it starts the default bucket names)"
            )
        for role, name in (
            ("ontem", self.before_bucket_name),
            ("hoje", self.after_bucket_name),
            ("diffs", self.diffs_bucket_name),
        ):
            if name and (not _BUCKET_RE.match(name) or ".." in name):
                err.append(
                    f"bucket name {name!r} ({role}) is not a valid S3 bucket name "
                    "(3-63 characters: lowercase letters, digits, '.', '-'; no '_')"
                )
        if self.import_before_bucket and not self.before_bucket_name:
            err.append("import_before_bucket=true needs before_bucket_name")
        if self.import_after_bucket and not self.after_bucket_name:
            err.append("import_after_bucket=true needs after_bucket_name")
        names = [
            n
            for n in (self.before_bucket_name, self.after_bucket_name, self.diffs_bucket_name)
            if n
        ]
        if len(names) != len(set(names)):
            err.append("before, after and diffs buckets must be three different buckets")
        for key in ("before_prefix", "after_prefix"):
            value = getattr(self, key)
            if value and (value.startswith("/") or "*" in value):
                err.append(
                    f"{key}={value!r}: a key prefix such as 'exports/daily/' (no leading "
                    "'/', no '*')"
                )
        err.extend(_prefix_template_problems(self.before_prefix, self.after_prefix))
        if not self.key_fields:
            err.append("key_fields: at least one key field is required")
        for name in self.key_fields + self.ignore_fields:
            if not _FIELD_RE.match(name):
                err.append(f"field name {name!r}: no commas or spaces")
        clash = set(self.key_fields) & set(self.ignore_fields)
        if clash:
            err.append(f"ignore_fields may not hold key fields: {', '.join(sorted(clash))}")
        if self.bad_records not in BAD_RECORDS_MODES:
            err.append(f"bad_records={self.bad_records!r}: one of {', '.join(BAD_RECORDS_MODES)}")
        if self.allow_empty not in ALLOW_EMPTY_MODES:
            err.append(f"allow_empty={self.allow_empty!r}: one of {', '.join(ALLOW_EMPTY_MODES)}")
        zone_ok = True
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone_ok = False
            err.append(
                f"timezone={self.timezone!r}: an IANA time zone such as 'UTC' or "
                "'America/Sao_Paulo'"
            )
        times_ok = zone_ok
        for key in ("glue_time", "publisher_time"):
            if not _TIME_RE.match(getattr(self, key)):
                err.append(f"{key}={getattr(self, key)!r}: a time of day HH:MM (24 h)")
                times_ok = False
        if times_ok:
            dst_errors = [
                _dst_error(key, getattr(self, key), self.timezone)
                for key in ("glue_time", "publisher_time")
            ]
            err.extend(e for e in dst_errors if e)
            times_ok = not any(dst_errors)
        if times_ok:
            err.extend(self._schedule_gap_errors())
        if not 0 <= self.schedule_retry_attempts <= 185:
            err.append("schedule_retry_attempts: 0..185")
        if not _JOB_NAME_RE.match(self.job_name):
            err.append(f"glue_job_name={self.job_name!r}: letters, digits, '-', '_'")
        if self.glue_worker_type not in GLUE_WORKER_TYPES:
            err.append(
                f"glue_worker_type={self.glue_worker_type!r}: one of "
                f"{', '.join(GLUE_WORKER_TYPES)}"
            )
        if not 2 <= self.glue_number_of_workers <= 299:
            err.append("glue_number_of_workers: 2..299")
        if not re.match(r"^[a-zA-Z0-9_-]{1,75}$", self.queue_name):
            err.append(
                f"queue_name={self.queue_name!r}: letters, digits, '-', '_' (<= 75, the "
                "dead-letter queue adds '-dlq')"
            )
        if not 1 <= self.queue_max_receive_count <= 1000:
            err.append("queue_max_receive_count: 1..1000")
        for server in filter(None, self.kafka_bootstrap_servers.split(",")):
            if not re.match(r"^[A-Za-z0-9.-]+:\d{1,5}$", server.strip()):
                err.append(f"kafka_bootstrap_servers: {server!r} is not host:port")
        if not re.match(r"^[A-Za-z0-9._-]{1,249}$", self.kafka_topic):
            err.append(f"kafka_topic={self.kafka_topic!r}: a Kafka topic name")
        if self.kafka_security_protocol not in SECURITY_PROTOCOLS:
            err.append(
                f"kafka_security_protocol={self.kafka_security_protocol!r}: one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
            err.append(
                f"kafka_sasl_mechanism={self.kafka_sasl_mechanism!r}: one of "
                f"{', '.join(m or '(empty)' for m in SASL_MECHANISMS)}"
            )
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_mechanism:
            err.append("kafka_sasl_mechanism is required with a SASL security protocol")
        if not self.kafka_ports or any(not 1 <= p <= 65535 for p in self.kafka_ports):
            err.append(f"kafka_ports={self.kafka_ports!r}: one or more TCP ports")
        cidr = _CIDR_RE.match(self.kafka_broker_cidr)
        if not cidr or any(int(o) > 255 for o in cidr.groups()[:4]) or int(cidr[5]) > 32:
            err.append(f"kafka_broker_cidr={self.kafka_broker_cidr!r}: an IPv4 CIDR")
        err.extend(self._kafka_auth_errors())
        if self.kafka_secret_arn and not self.kafka_security_protocol.startswith("SASL"):
            err.append("kafka_secret_arn is only used with a SASL kafka_security_protocol")
        for key in ("before_kms_key_arn", "after_kms_key_arn", "kafka_secret_kms_key_arn"):
            value = getattr(self, key)
            if value and not _KMS_KEY_ARN_RE.match(value):
                err.append(
                    f"{key}={value!r}: the ARN of a KMS key "
                    "(arn:aws:kms:<region>:<account>:key/<key id>), not an alias"
                )
        if self.kafka_secret_kms_key_arn and not self.kafka_secret_arn:
            err.append(
                "kafka_secret_kms_key_arn needs kafka_secret_arn (a secret the stack creates is "
                "encrypted with the stack's own key)"
            )
        if self.kafka_secret_arn and not _SECRET_ARN_RE.match(self.kafka_secret_arn):
            err.append(
                f"kafka_secret_arn={self.kafka_secret_arn!r}: the complete ARN of a "
                "Secrets Manager secret"
            )
        if self.publisher_cpu not in FARGATE_SIZES:
            err.append(
                f"publisher_cpu={self.publisher_cpu}: one of "
                f"{', '.join(map(str, FARGATE_SIZES))}"
            )
        elif self.publisher_memory_mib not in FARGATE_SIZES[self.publisher_cpu]:
            err.append(
                f"publisher_memory_mib={self.publisher_memory_mib} is not valid with "
                f"publisher_cpu={self.publisher_cpu}"
            )
        if not 1 <= self.publisher_workers <= MAX_PUBLISHER_WORKERS:
            err.append(
                f"publisher_workers={self.publisher_workers}: from 1 to {MAX_PUBLISHER_WORKERS} "
                "(the publisher's PUBLISH_WORKERS; about one per vCPU of publisher_cpu)"
            )
        if self.cluster_name and not re.match(r"^[A-Za-z0-9_-]{1,255}$", self.cluster_name):
            err.append(f"cluster_name={self.cluster_name!r}: letters, digits, '-', '_'")
        if self.vpc_id and not _VPC_RE.match(self.vpc_id):
            err.append(f"vpc_id={self.vpc_id!r}: vpc-xxxxxxxx")
        if self.subnet_ids and not self.vpc_id:
            err.append("subnet_ids needs vpc_id (a created VPC chooses its own subnets)")
        for subnet in self.subnet_ids:
            if not _SUBNET_RE.match(subnet):
                err.append(f"subnet_ids: {subnet!r} is not subnet-xxxxxxxx")
        if not 0 <= self.nat_gateways <= 2:
            err.append("nat_gateways: 0, 1 or 2 (used only when the VPC is created)")
        if self.kafka_broker_security_group_id and not (
            _SECURITY_GROUP_RE.match(self.kafka_broker_security_group_id) and self.vpc_id
        ):
            err.append(
                f"kafka_broker_security_group_id={self.kafka_broker_security_group_id!r}: the "
                "brokers' security group (sg-...), in the VPC given by vpc_id"
            )
        if self.vpc_id and self.nat_gateways:
            err.append("nat_gateways applies to a created VPC only; drop it with vpc_id")
        if self.alarm_email and not _EMAIL_RE.match(self.alarm_email):
            err.append(f"alarm_email={self.alarm_email!r}: an e-mail address")
        for key in ("log_retention_days",):
            if getattr(self, key) not in LOG_RETENTION_DAYS:
                err.append(
                    f"{key}={getattr(self, key)}: one of CloudWatch's retention periods "
                    f"({', '.join(map(str, LOG_RETENTION_DAYS))})"
                )
        for key in (
            "diffs_expiration_days",
            "access_log_expiration_days",
            "glue_temp_expiration_days",
            "diffs_noncurrent_expiration_days",
            "input_noncurrent_expiration_days",
        ):
            if getattr(self, key) < 1:
                err.append(f"{key}: at least 1 day")
        if self.mode not in SYNTH_MODES:
            err.append(f"mode={self.mode!r}: one of {', '.join(SYNTH_MODES)}")
        if err:
            raise ConfigError("invalid CDK context:\n  - " + "\n  - ".join(err))

    def _schedule_gap_errors(self) -> list[str]:
        """The diff job, started as late as Scheduler may, must be able to finish (or time out)
        before the publisher starts, on every day (real minutes, DST days included)."""
        if self.publisher_minutes <= self.glue_minutes:
            return [
                f"glue_time={self.glue_time} must precede publisher_time={self.publisher_time} "
                "on the same day"
            ]
        shortest = self.min_schedule_gap
        needed = (
            self.scheduler_delay_minutes + GLUE_TIMEOUT_MARGIN_MINUTES + MIN_GLUE_TIMEOUT_MINUTES
        )
        if shortest < needed:
            return [
                f"glue_time={self.glue_time} must precede publisher_time={self.publisher_time} "
                f"by at least {needed} minutes of real time in {self.timezone} (Scheduler may "
                f"start the job {self.scheduler_delay_minutes} min late, then a "
                f"{MIN_GLUE_TIMEOUT_MINUTES}-min job and a {GLUE_TIMEOUT_MARGIN_MINUTES}-min "
                f"margin); it is {shortest} min on the shortest day"
            ]
        if self.glue_timeout_minutes and not (
            1 <= self.glue_timeout_minutes <= self.max_glue_timeout
        ):
            return [
                f"glue_timeout_minutes={self.glue_timeout_minutes}: between 1 and "
                f"{self.max_glue_timeout} (the shortest real gap from glue_time to "
                f"publisher_time, {shortest} min, minus Scheduler's "
                f"{self.scheduler_delay_minutes}-min delay), so the job ends before the "
                "publisher starts"
            ]
        return []


# The context keys, in the dataclass' order (the README's table follows it).
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PipelineConfig))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@functools.lru_cache(maxsize=64)
def _min_gap(start: str, end: str, zone: str) -> int:
    return min_elapsed_minutes(start, end, zone, SCHEDULE_CHECK_YEARS)[0]


@functools.lru_cache(maxsize=64)
def _dst_error(key: str, hhmm: str, zone: str) -> str:
    """ "" when `hhmm` happens exactly once a day in `zone` over SCHEDULE_CHECK_YEARS, else an
    error naming the zone, the time, an example date and a time that would be safe."""
    problems = dst_problems(hhmm, zone, SCHEDULE_CHECK_YEARS)
    if not problems:
        return ""
    years = f"{SCHEDULE_CHECK_YEARS[0]}-{SCHEDULE_CHECK_YEARS[-1]}"
    skipped = sum(p.kind == SKIPPED for p in problems)
    doubled = len(problems) - skipped
    return (
        f"{key}={hhmm} in timezone={zone}: {problems[0].describe(hhmm, zone)}; in {years} "
        f"EventBridge Scheduler would skip the run on {skipped} day(s) and start it twice on "
        f"{doubled} day(s). Pick a time that exists once every day (e.g. "
        f"{_safe_time_near(hhmm, zone)}) or timezone=UTC"
    )


def _safe_time_near(hhmm: str, zone: str) -> str:
    """The first whole or half hour after `hhmm` (same day) that happens once every day."""
    start = _minutes(hhmm)
    for candidate in range(start - start % 30 + 30, 24 * 60, 30):
        text = f"{candidate // 60:02d}:{candidate % 60:02d}"
        if not dst_problems(text, zone, SCHEDULE_CHECK_YEARS):
            return text
    return "a time in UTC"


def _is_cdk_key(key: str) -> bool:
    # CDK's own context: feature flags (@aws-cdk/...), aws:cdk:*, lookups (vpc-provider:...).
    return (
        key.startswith(("@", "aws:", "aws-cdk:", "cdk", "cli-"))
        or ":" in key
        or key == "acknowledged-issue-numbers"
    )


def _known_context_keys(get: Any) -> list[str]:
    keys = getattr(get, "keys", None)
    return list(keys()) if callable(keys) else []


class _MappingGetter:
    def __init__(self, context: Mapping[str, Any]) -> None:
        self._context = context

    def __call__(self, key: str) -> Any:
        return self._context.get(key)

    def keys(self) -> list[str]:
        return list(self._context)


def _coerce(name: str, annotation: Any, raw: Any) -> Any:
    """Turn a context value (string from `-c`, or JSON from cdk.json) into the field's type."""
    kind = str(annotation)
    try:
        if kind == "bool":
            return _to_bool(raw)
        if kind == "bool | None":
            if raw in ("", "auto"):
                return None
            return _to_bool(raw)
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError("a boolean is not a number")
            return int(raw)
        if kind == "tuple[str, ...]":
            return _to_list(raw)
        if kind == "tuple[int, ...]":
            return tuple(int(v) for v in _to_list(raw))
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        return raw.strip()
    except ValueError as exc:
        raise ConfigError(f"context {name}={raw!r}: {exc} (expected {kind})") from exc


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError("expected true or false")


def _to_list(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, (list, tuple)):
        items = [str(v).strip() for v in raw]
    else:
        items = [part.strip() for part in str(raw).split(",")]
    return tuple(item for item in items if item)


def find_repo_root() -> Path:
    """The monorepo's root: the nearest folder holding pants.toml or libs/diffcore, looking up
    from the working directory first (the CDK CLI runs in infra/cdk; `pants run` in the build
    root; a PEX unpacks its sources elsewhere), then from this file."""
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / "pants.toml").is_file() or (folder / "libs" / "diffcore").is_dir():
                return folder
    raise ConfigError(
        "cannot find the repository root (a folder with pants.toml or "
        "libs/diffcore) above the working directory; set the context key repo_root"
    )


__all__ = [
    "ConfigError",
    "EcrImage",
    "FIELDS",
    "PipelineConfig",
    "find_repo_root",
]
