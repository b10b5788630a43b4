"""MSK IAM authentication (KAFKA_AUTH=iam): the token callback with the real signer
(aws-msk-iam-sasl-signer-python) over stubbed environment credentials, its token checked by an
independent SigV4 computation; librdkafka calling it against a real broker with debug=all and
never logging the token; the configuration that selects it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from confluent_kafka import Producer

from kafka_publisher import msk_iam
from kafka_publisher.config import load_config
from kafka_publisher.errors import ConfigError
from tests.support.services import free_port, start_process, tansu_binary

REGION = "eu-west-1"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token"


@pytest.fixture
def task_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials as ECS gives a task (environment here), and nothing else to find."""
    for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


def _decode(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")


def _sigv4_signature(url: str, secret_key: str) -> str:
    """SigV4 of a presigned GET (AWS's documented algorithm, written out here): what the signer
    must have put in X-Amz-Signature. The User-Agent parameter is added after signing."""
    parts = urlsplit(url)
    params = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("X-Amz-Signature", "User-Agent")
    ]
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params))
    empty = hashlib.sha256(b"").hexdigest()
    request = "\n".join(["GET", parts.path or "/", query, f"host:{parts.netloc}\n", "host", empty])
    values = dict(params)
    scope = values["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            values["X-Amz-Date"],
            scope,
            hashlib.sha256(request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_callback_returns_a_signed_connect_token_and_its_expiry(task_role: None) -> None:
    seen: list[str] = []
    callback = msk_iam.token_callback(REGION, on_token=seen.append)
    before = time.time()
    token, expiry = callback("")
    assert seen == [token] and "=" not in token  # base64url, padding removed
    url = _decode(token)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        f"kafka.{REGION}.amazonaws.com",
        "/",
    )
    assert query["Action"] == "kafka-cluster:Connect"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert query["X-Amz-Credential"] == (
        f"{ACCESS_KEY}/{signed_at:%Y%m%d}/{REGION}/kafka-cluster/aws4_request"
    )
    assert query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Security-Token"] == SESSION_TOKEN
    assert query["X-Amz-Expires"] == "900"
    assert query["X-Amz-Signature"] == _sigv4_signature(url, SECRET_KEY)
    assert query["User-Agent"].startswith("aws-msk-iam-sasl-signer-python/")
    # librdkafka wants seconds since the epoch: the signing time plus 15 minutes.
    assert expiry == signed_at.timestamp() + 900
    assert before - 2 <= signed_at.timestamp() <= time.time() + 1
    assert SECRET_KEY not in url


def test_a_token_per_call_in_the_region_given(task_role: None) -> None:
    callback = msk_iam.token_callback("sa-east-1", on_token=None)
    url = _decode(callback(None)[0])
    assert urlsplit(url).netloc == "kafka.sa-east-1.amazonaws.com"
    assert (
        "/sa-east-1/kafka-cluster/aws4_request"
        in dict(parse_qsl(urlsplit(url).query))["X-Amz-Credential"]
    )


def test_no_credentials_is_named(task_role: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(msk_iam.NoCredentials, match="task role"):
        msk_iam.token_callback(REGION)(None)


def test_librdkafka_calls_it_and_never_logs_the_token(task_role: None) -> None:
    """A real broker (Tansu with --authentication): librdkafka asks the callback for a token and
    sends it. Tansu 0.6.0 offers OAUTHBEARER but validates tokens as OpenID JWTs, so it refuses
    MSK's (authentication error, as expected); librdkafka's every log line (debug=all) is kept
    and must not hold the token."""
    tokens: list[str] = []
    lines: list[str] = []
    errors: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"librdkafka-msk-iam-test-{time.monotonic_ns()}")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = start_process(
        "tansu",
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        + ["--storage-engine", "memory://tansu/", "--authentication"],
    )
    try:
        conf = msk_iam.producer_settings(REGION, on_token=tokens.append)
        conf.update(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                # Tansu listens without TLS: the same SASL exchange, in the clear.
                "security.protocol": "SASL_PLAINTEXT",
                "debug": "all",
                "logger": logger,
                "error_cb": lambda err: errors.append(str(err)),
            }
        )
        producer = Producer(conf)
        producer.produce("changes", b"value")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("Authentication" in e for e in errors):
            producer.poll(0.2)
        producer.purge()
        producer.flush(1)
    finally:
        broker.stop()
        broker.remove_log()
    assert tokens, "librdkafka never asked for a token"
    assert any("SASL Authentication failed" in e for e in errors), errors[-5:]
    assert any("OAUTHBEARER" in line for line in lines)
    for token in tokens:
        assert not any(token in text for text in lines + errors)
        assert not any(SESSION_TOKEN in text for text in lines + errors)


# ---------------------------------------------------------------------------- configuration


def _env(**extra: str) -> dict[str, str]:
    return {
        "DIFFS_LOCATION": "/tmp/diffs",
        "KAFKA_BOOTSTRAP_SERVERS": "b-1.msk.example.com:9098",
        "KAFKA_TOPIC": "changes",
        **extra,
    }


def test_kafka_auth_iam_selects_oauthbearer_with_the_callback() -> None:
    config = load_config(_env(KAFKA_AUTH="iam", AWS_REGION=REGION))
    assert (config.auth, config.aws_region) == ("iam", REGION)
    conf = config.producer_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "OAUTHBEARER"
    assert callable(conf["oauth_cb"])
    assert "sasl.username" not in conf and "sasl.password" not in conf
    assert config.redacted()["auth"] == "iam"
    # KAFKA_IAM_REGION wins over the task's own region (a cluster in another region).
    assert (
        load_config(
            _env(KAFKA_AUTH="IAM", KAFKA_IAM_REGION="us-east-2", AWS_REGION=REGION)
        ).aws_region
        == "us-east-2"
    )


def test_credentials_stay_the_default() -> None:
    config = load_config(
        _env(
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            KAFKA_USERNAME="diffs-publisher",
            KAFKA_PASSWORD="pw-from-the-secret",
        )
    )
    conf = config.producer_config()
    assert config.auth == "credentials" and "oauth_cb" not in conf
    assert (conf["sasl.mechanism"], conf["sasl.username"]) == ("SCRAM-SHA-512", "diffs-publisher")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"KAFKA_AUTH": "kerberos"}, "KAFKA_AUTH must be one of credentials, iam"),
        ({"KAFKA_AUTH": "iam"}, "needs the cluster's region"),
        ({"KAFKA_AUTH": "iam", "AWS_REGION": "nowhere"}, "needs the cluster's region"),
        (
            {
                "KAFKA_AUTH": "iam",
                "AWS_REGION": REGION,
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_USERNAME": "u",
                "KAFKA_PASSWORD": "p",
            },
            "unset KAFKA_USERNAME",
        ),
        (
            {"KAFKA_AUTH": "iam", "AWS_REGION": REGION, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            "KAFKA_SASL_MECHANISM=OAUTHBEARER",
        ),
        (
            {"KAFKA_AUTH": "iam", "AWS_REGION": REGION, "KAFKA_SECURITY_PROTOCOL": "SSL"},
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
    ],
)
def test_kafka_auth_is_checked(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_env(**extra))
