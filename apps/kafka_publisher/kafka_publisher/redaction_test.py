"""No secret reaches a log line: librdkafka's sensitive properties and the Kafka credentials.

Every run goes through the command line (`main`) in this process, with the logging it sets up
writing to stdout as in the ECS task (captured by pytest): the real `start` line and whatever
else is logged, not a mocked logger. The run date has no manifest, so each run logs `start` and
stops (exit 10) without contacting Kafka.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from confluent_kafka import Producer

from kafka_publisher.config import PROP_PREFIX, REDACTED, SENSITIVE_PROPERTIES
from kafka_publisher.errors import EXIT_CONFIG, EXIT_NOT_READY
from kafka_publisher.logs import LOGGER_NAME, Redactor, emit_metrics, get_logger, setup_logging
from kafka_publisher.main import main

D = "2026-11-25"
# Quote, backslash, newline and non-ASCII: a secret must not survive in its JSON-escaped form.
AWKWARD = 'q"b\\n\nö'
# Properties with their own variable: refused as KAFKA_PROP_* (exit 11), never echoed.
OWN_VARIABLE = {"sasl.username", "sasl.password"}


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logging.getLogger(LOGGER_NAME).handlers.clear()


def _base(tmp_path: Path) -> dict[str, str]:
    return {
        "DIFFS_LOCATION": str(tmp_path),  # empty: no manifest
        "RUN_DATE": D,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_TOPIC": "changes",
        "LOG_LEVEL": "DEBUG",
    }


def _run(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and everything written to stdout and stderr."""
    with mock.patch.dict(os.environ, env, clear=True):
        code = main([])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _start_line(output: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return next(line for line in lines if line["msg"] == "start")


def _assert_absent(secret: str, output: str) -> None:
    for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
        assert form not in output, f"secret written: {form!r}"


def _variable(prop: str) -> str:
    return PROP_PREFIX + prop.upper().replace(".", "_")


@pytest.mark.parametrize("prop", sorted(SENSITIVE_PROPERTIES))
def test_every_sensitive_kafka_prop_is_redacted_in_the_start_line(
    prop: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = f"{uuid.uuid4().hex}-{AWKWARD}"
    code, output = _run({**_base(tmp_path), _variable(prop): secret}, capsys)
    _assert_absent(secret, output)
    if prop in OWN_VARIABLE:
        assert code == EXIT_CONFIG and f"set {prop} with KAFKA_" in output
        return
    assert code == EXIT_NOT_READY, output
    assert _start_line(output)["config"]["kafka_props"][prop] == REDACTED


def test_whole_list_at_once_and_other_props_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = {
        prop: f"{uuid.uuid4().hex}-{AWKWARD}" for prop in SENSITIVE_PROPERTIES - OWN_VARIABLE
    }
    env = {**_base(tmp_path), **{_variable(p): v for p, v in secrets.items()}}
    code, output = _run({**env, "KAFKA_PROP_SSL_CA_LOCATION": "/etc/ca.pem"}, capsys)
    assert code == EXIT_NOT_READY, output
    for secret in secrets.values():
        _assert_absent(secret, output)
    props = _start_line(output)["config"]["kafka_props"]
    assert {p for p, v in props.items() if v == REDACTED} == set(secrets)
    assert props["ssl.ca.location"] == "/etc/ca.pem"  # not a secret: still logged


class _FakeSecretsManager:
    """Stands in for boto3's Secrets Manager client (only the AWS call is faked)."""

    def __init__(self, secret: dict[str, str]) -> None:
        self._secret = secret

    def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803 - boto3's name
        return {"SecretString": json.dumps(self._secret)}


@pytest.mark.parametrize("source", ["KAFKA_SECRET_ARN", "KAFKA_USERNAME/KAFKA_PASSWORD"])
def test_kafka_credentials_never_reach_a_log(
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user, password = f"svc-{uuid.uuid4().hex}", f"{uuid.uuid4().hex}-{AWKWARD}"
    fake = _FakeSecretsManager({"username": user, "password": password})
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: fake)
    env = {
        **_base(tmp_path),
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    }
    if source == "KAFKA_SECRET_ARN":
        env["KAFKA_SECRET_ARN"] = "arn:aws:secretsmanager:sa-east-1:123456789012:secret:kafka"
    else:  # ECS injects them from Secrets Manager
        env.update({"KAFKA_USERNAME": user, "KAFKA_PASSWORD": password})
    code, output = _run(env, capsys)
    assert code == EXIT_NOT_READY, output
    _assert_absent(user, output)
    _assert_absent(password, output)
    config = _start_line(output)["config"]
    assert config["username"] == REDACTED and config["password"] == REDACTED


def test_a_refused_configuration_does_not_echo_the_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**_base(tmp_path), "KAFKA_USERNAME": "svc-7f3k9q", "KAFKA_PASSWORD": AWKWARD}
    code, output = _run(env, capsys)  # no SASL security protocol: refused before `start`
    assert code == EXIT_CONFIG and "KAFKA_SECURITY_PROTOCOL" in output
    _assert_absent("svc-7f3k9q", output)
    _assert_absent(AWKWARD, output)


def test_escaped_forms_of_a_secret_are_scrubbed_from_logs_and_metrics() -> None:
    stream = io.StringIO()
    redactor = Redactor([AWKWARD])
    setup_logging("INFO", redactor, stream)
    get_logger("x").info("value %s", AWKWARD, extra={"conf": {"k": AWKWARD}})
    emit_metrics({"M": (1, "Count")}, {"Topic": AWKWARD}, redactor=redactor, stream=stream)
    _assert_absent(AWKWARD, stream.getvalue())
    assert json.loads(stream.getvalue().splitlines()[0])["msg"] == f"value {REDACTED}"


def test_librdkafka_itself_counts_every_listed_property_as_sensitive() -> None:
    """The installed librdkafka's configuration dump (debug=conf) redacts each listed property:
    a property dropped from its list, or renamed, fails here."""
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    rdkafka_log = logging.getLogger("kafka_publisher.test.librdkafka")
    rdkafka_log.addHandler(_Collect())
    rdkafka_log.setLevel(logging.DEBUG)
    values = {p: f"v-{uuid.uuid4().hex}" for p in SENSITIVE_PROPERTIES}
    conf: dict[str, Any] = {"bootstrap.servers": "127.0.0.1:1", "debug": "conf"}
    producer = Producer({**conf, **values, "logger": rdkafka_log})
    producer.poll(0.2)  # delivers librdkafka's log lines to the logger
    text = "\n".join(records)
    # the alias is dumped under the property it sets
    for prop in SENSITIVE_PROPERTIES - {"sasl.oauthbearer.client.credentials.client.secret"}:
        assert f"  {prop} = [redacted]" in text, f"librdkafka does not redact {prop}"
    assert not any(value in text for value in values.values())
