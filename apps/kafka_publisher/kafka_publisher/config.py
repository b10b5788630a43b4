"""Configuration from the environment: one frozen dataclass, validated up front.

Every variable is documented in ../README.md. Kafka credentials come either from
`KAFKA_USERNAME`/`KAFKA_PASSWORD` (ECS injects them from Secrets Manager) or from a JSON secret
fetched by ARN (`KAFKA_SECRET_ARN`), never both. Any other librdkafka property is set with
`KAFKA_PROP_<NAME>`: the name lowercased, `_` turned into `.` (`KAFKA_PROP_SSL_CA_LOCATION` ->
`ssl.ca.location`).

Secrets (the SASL username and password, and the value of every sensitive `KAFKA_PROP_*`:
librdkafka's own list, `SENSITIVE_PROPERTIES`) are kept out of `repr()` and of
`Config.redacted()`, and are handed to the log redactor (`Config.secrets()`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from diffcore import layout
from kafka_publisher import msk_iam
from kafka_publisher.errors import ConfigError

PROP_PREFIX = "KAFKA_PROP_"
REDACTED = "***"

# Producer settings the contract fixes (section 8): not overridable.
FIXED_PRODUCER_CONFIG: Mapping[str, str] = {"acks": "all", "enable.idempotence": "true"}
# Tuned defaults; each can be overridden with KAFKA_PROP_<NAME>.
DEFAULT_PRODUCER_CONFIG: Mapping[str, Any] = {
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    # Bounds the producer's memory whatever the day's volume (produce() waits when full).
    "queue.buffering.max.kbytes": 65_536,
    "queue.buffering.max.messages": 100_000,
    "message.timeout.ms": 300_000,
    "client.id": "diffs-kafka-publisher",
}
# Properties with their own variable: KAFKA_PROP_* must not set them a second way.
_OWN_VARIABLE = {
    "bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "security.protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.mechanisms": "KAFKA_SASL_MECHANISM",
    "sasl.username": "KAFKA_USERNAME",
    "sasl.password": "KAFKA_PASSWORD",
}
# librdkafka's own list of sensitive properties: those flagged `_RK_SENSITIVE` in its
# src/rdkafka_conf.c (confluentinc/librdkafka v2.15.0), which it prints as "[redacted]" in its
# own configuration dump (debug=conf). CONFIGURATION.md does not mark them (the `*` in its C/P
# column means "consumer and producer"). Checked against the installed librdkafka 2.16.0
# (confluent-kafka 2.16.1): the same property names, and its debug=conf dump, every global
# property set, redacts exactly these. Left out: `ssl_key`, internal (set only through
# rd_kafka_conf_set_ssl_cert(), no KAFKA_PROP_* name maps to it). Re-check on a librdkafka upgrade.
SENSITIVE_PROPERTIES: frozenset[str] = frozenset(
    {
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl.ca.pem",
        # an alias (not flagged itself): setting it sets sasl.oauthbearer.client.secret
        "sasl.oauthbearer.client.credentials.client.secret",
    }
)
# Defensive, for properties a later librdkafka (or a plugin) adds before the list is updated.
_SENSITIVE_WORDS = re.compile(
    r"password|secret|passphrase|private\.key|sasl\.oauthbearer\.config|ssl\.key|jaas", re.I
)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
# KAFKA_AUTH: "credentials" (a SASL username/password from the environment or KAFKA_SECRET_ARN,
# or none) or "iam" (Amazon MSK IAM: SASL/OAUTHBEARER tokens signed with the task role, msk_iam.py).
AUTH_MODES = ("credentials", "iam")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_WORKERS = layout.MAX_PUBLISH_WORKERS  # PUBLISH_WORKERS: processes publishing files side by side
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def is_sensitive(prop: str) -> bool:
    """Whether a librdkafka property's value is a secret (never logged)."""
    return prop in SENSITIVE_PROPERTIES or _SENSITIVE_WORDS.search(prop) is not None


def prop_name(variable: str) -> str:
    """The librdkafka property of a `KAFKA_PROP_<NAME>` variable (`<name>` lowercased, `_` -> `.`)."""
    return variable[len(PROP_PREFIX) :].lower().replace("_", ".")


@dataclass(frozen=True)
class Config:
    diffs_location: str
    bootstrap_servers: str | None
    topic: str | None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    secret_arn: str | None = None
    auth: str = "credentials"
    aws_region: str | None = None  # KAFKA_AUTH=iam: the cluster's region (signs the tokens)
    kafka_props: Mapping[str, str] = field(default_factory=dict, repr=False)
    run_date: str | None = None
    timezone: str = "UTC"
    publish_tombstones: bool = False
    log_level: str = "INFO"
    publish_workers: int = 1
    # Publish a day whose after snapshot had bad lines with unreadable keys (contract §6).
    accept_unreadable_keys: bool = False

    def resolve_run_date(self, now: datetime | None = None) -> str:
        """`RUN_DATE` if set, else today in `TIMEZONE`."""
        if self.run_date:
            return self.run_date
        now = now or datetime.now(UTC)
        return now.astimezone(zone(self.timezone)).date().isoformat()

    def producer_config(self) -> dict[str, Any]:
        """The librdkafka configuration (with credentials: never log this, log `redacted()`)."""
        if not self.bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is required")
        conf: dict[str, Any] = dict(DEFAULT_PRODUCER_CONFIG)
        conf["bootstrap.servers"] = self.bootstrap_servers
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.username is not None:
            conf["sasl.username"] = self.username
        if self.password is not None:
            conf["sasl.password"] = self.password
        if self.auth == "iam":
            conf.update(msk_iam.producer_settings(self.aws_region or ""))
        conf.update(self.kafka_props)
        conf.update(FIXED_PRODUCER_CONFIG)
        return conf

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for the log redactor. The username too: it comes from Secrets
        Manager, librdkafka counts it as sensitive, and its debug logs name it."""
        out = [v for v in (self.username, self.password) if v]
        out += [v for k, v in self.kafka_props.items() if is_sensitive(k) and v]
        return tuple(out)

    def redacted(self) -> dict[str, Any]:
        """The configuration as safe to log: secrets replaced by `***`."""
        return {
            "diffs_location": self.diffs_location,
            "bootstrap_servers": self.bootstrap_servers,
            "topic": self.topic,
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "username": None if self.username is None else REDACTED,
            "password": None if self.password is None else REDACTED,
            "secret_arn": self.secret_arn,
            "auth": self.auth,
            "aws_region": self.aws_region,
            "kafka_props": {
                k: (REDACTED if is_sensitive(k) else v) for k, v in sorted(self.kafka_props.items())
            },
            "run_date": self.run_date,
            "timezone": self.timezone,
            "publish_tombstones": self.publish_tombstones,
            "log_level": self.log_level,
            "publish_workers": self.publish_workers,
        }

    def __repr__(self) -> str:  # never the password, whatever dataclass does
        return f"Config({self.redacted()!r})"

    __str__ = __repr__


def zone(name: str) -> tzinfo:
    """A time zone by IANA name; UTC needs no time zone database."""
    if name.upper() in {"UTC", "Z", "ETC/UTC"}:
        return UTC
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError as exc:  # pragma: no cover
        raise ConfigError(f"cannot load time zones: {exc}") from None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"TIMEZONE {name!r} is not a known IANA time zone "
            "(is the time zone database, system tzdata or the tzdata package, installed?)"
        ) from None


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {environ[name]!r}")


def _workers(environ: Mapping[str, str]) -> int:
    value = environ.get("PUBLISH_WORKERS", "").strip()
    if not value:
        return 1
    workers = int(value) if value.isascii() and value.isdigit() else 0
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(
            f"PUBLISH_WORKERS must be a whole number from 1 to {MAX_WORKERS}, got {value!r}"
        )
    return workers


def _choice(environ: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    if value.upper() not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value.upper()


def _diffs_location(value: str) -> str:
    value = value.strip()
    if not value:
        raise ConfigError("DIFFS_LOCATION is required (s3://bucket[/prefix] or a local folder)")
    if value.startswith("s3://"):
        bucket = value[len("s3://") :].split("/", 1)[0]
        if not bucket:
            raise ConfigError(f"DIFFS_LOCATION {value!r} names no bucket")
        return value.rstrip("/")
    if "://" in value:
        raise ConfigError(f"DIFFS_LOCATION must be s3://... or a local path, got {value!r}")
    return value.rstrip("/") or "/"


def kafka_props(environ: Mapping[str, str]) -> dict[str, str]:
    """`KAFKA_PROP_<NAME>` variables as librdkafka properties (`<name>` lowercased, `_` -> `.`)."""
    props: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(PROP_PREFIX) or len(name) == len(PROP_PREFIX):
            continue
        prop = prop_name(name)
        if prop in _OWN_VARIABLE:
            raise ConfigError(f"set {prop} with {_OWN_VARIABLE[prop]}, not {name}")
        if prop in FIXED_PRODUCER_CONFIG and value.strip().lower() != FIXED_PRODUCER_CONFIG[prop]:
            raise ConfigError(
                f"{prop} is fixed to {FIXED_PRODUCER_CONFIG[prop]} by the contract ({name})"
            )
        props[prop] = value
    return props


SecretFetcher = Callable[[str], str]


def fetch_secret_string(arn: str) -> str:
    """The `SecretString` of a Secrets Manager secret (boto3; honours AWS_ENDPOINT_URL)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.client("secretsmanager")
        return client.get_secret_value(SecretId=arn)["SecretString"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise ConfigError(f"cannot read KAFKA_SECRET_ARN {arn}: {code}") from None
    except (BotoCoreError, KeyError) as exc:
        raise ConfigError(f"cannot read KAFKA_SECRET_ARN {arn}: {type(exc).__name__}") from None


def credentials_from_secret(arn: str, text: str) -> tuple[str, str]:
    """`username` and `password` of a JSON secret (other keys are ignored)."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise ConfigError(f"secret {arn} is not a JSON object")  # never echo its content
    user, password = obj.get("username"), obj.get("password")
    if not isinstance(user, str) or not user or not isinstance(password, str) or not password:
        raise ConfigError(f"secret {arn} must hold non-empty string keys username and password")
    return user, password


def load_config(
    environ: Mapping[str, str], fetch_secret: SecretFetcher = fetch_secret_string
) -> Config:
    """Read and validate the environment (raises ConfigError naming the variable)."""
    env = {k: v for k, v in environ.items()}
    run_date = env.get("RUN_DATE", "").strip() or None
    if run_date:
        try:
            run_date = layout.date_folder(run_date)
        except ValueError:
            raise ConfigError(f"RUN_DATE must be a date YYYY-MM-DD, got {run_date!r}") from None
    tz_name = env.get("TIMEZONE", "").strip() or "UTC"
    zone(tz_name)  # validate now
    log_level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    username = env.get("KAFKA_USERNAME") or None
    password = env.get("KAFKA_PASSWORD") or None
    secret_arn = env.get("KAFKA_SECRET_ARN", "").strip() or None
    if secret_arn and (username or password):
        raise ConfigError("set either KAFKA_SECRET_ARN or KAFKA_USERNAME/KAFKA_PASSWORD, not both")
    if (username is None) != (password is None):
        raise ConfigError("KAFKA_USERNAME and KAFKA_PASSWORD go together")
    if secret_arn:
        username, password = credentials_from_secret(secret_arn, fetch_secret(secret_arn))

    security_protocol = _choice(env, "KAFKA_SECURITY_PROTOCOL", SECURITY_PROTOCOLS)
    sasl_mechanism = _choice(env, "KAFKA_SASL_MECHANISM", SASL_MECHANISMS)
    if username is not None and not (security_protocol or "").startswith("SASL_"):
        raise ConfigError(
            "Kafka credentials are set but KAFKA_SECURITY_PROTOCOL is not SASL_SSL/SASL_PLAINTEXT"
        )
    auth = (env.get("KAFKA_AUTH", "").strip() or "credentials").lower()
    aws_region = None
    if auth not in AUTH_MODES:
        raise ConfigError(f"KAFKA_AUTH must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
    if auth == "iam":
        security_protocol, sasl_mechanism, aws_region = _iam_settings(
            env, security_protocol, sasl_mechanism, credentials=username is not None
        )
    topic = env.get("KAFKA_TOPIC", "").strip() or None
    if topic is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
        raise ConfigError(f"KAFKA_TOPIC {topic!r} is not a valid topic name")

    return Config(
        diffs_location=_diffs_location(env.get("DIFFS_LOCATION", "")),
        bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or None,
        topic=topic,
        security_protocol=security_protocol,
        sasl_mechanism=sasl_mechanism,
        username=username,
        password=password,
        secret_arn=secret_arn,
        auth=auth,
        aws_region=aws_region,
        kafka_props=kafka_props(env),
        run_date=run_date,
        timezone=tz_name,
        publish_tombstones=_flag(env, "PUBLISH_TOMBSTONES"),
        log_level=log_level,
        publish_workers=_workers(env),
        accept_unreadable_keys=_flag(env, "ACCEPT_UNREADABLE_KEYS"),
    )


def _iam_settings(
    env: Mapping[str, str],
    security_protocol: str | None,
    sasl_mechanism: str | None,
    credentials: bool,
) -> tuple[str, str, str]:
    """KAFKA_AUTH=iam: (security protocol, mechanism, region), checked. The region is
    KAFKA_IAM_REGION, else the task's own (AWS_REGION, which ECS sets, or AWS_DEFAULT_REGION)."""
    if credentials:
        raise ConfigError(
            "KAFKA_AUTH=iam authenticates with the task role: unset KAFKA_USERNAME/KAFKA_PASSWORD "
            "and KAFKA_SECRET_ARN"
        )
    if security_protocol not in (None, msk_iam.SECURITY_PROTOCOL):
        raise ConfigError("KAFKA_AUTH=iam needs KAFKA_SECURITY_PROTOCOL=SASL_SSL (or unset)")
    if sasl_mechanism not in (None, msk_iam.SASL_MECHANISM):
        raise ConfigError("KAFKA_AUTH=iam needs KAFKA_SASL_MECHANISM=OAUTHBEARER (or unset)")
    region = next(
        (
            env[name].strip()
            for name in ("KAFKA_IAM_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
            if env.get(name, "").strip()
        ),
        "",
    )
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ConfigError(
            f"KAFKA_AUTH=iam needs the cluster's region (KAFKA_IAM_REGION or AWS_REGION), "
            f"got {region!r}"
        )
    return msk_iam.SECURITY_PROTOCOL, msk_iam.SASL_MECHANISM, region


def require_kafka(config: Config) -> None:
    """Publishing (not a dry run) needs a broker and a topic."""
    missing = [
        name
        for name, value in (
            ("KAFKA_BOOTSTRAP_SERVERS", config.bootstrap_servers),
            ("KAFKA_TOPIC", config.topic),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} required to publish (or use --dry-run)")
