"""The command line, exit codes, and the promise that no secret reaches any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from unittest import mock

import boto3
import pytest
from confluent_kafka import KafkaException

from kafka_publisher import publisher
from kafka_publisher.errors import EXIT_CONFIG, EXIT_DELIVERY, EXIT_NOT_READY, EXIT_OK
from kafka_publisher.main import main
from tests.support.diffs import make_events, write_day
from tests.support.services import FAKE_AWS, create_topics, moto_server, tansu_broker

D = "2026-11-25"
SECRET_FROM_ARN = "arn-Pa55w0rd-7f3k9q!"
SECRET_FROM_ENV = "env-Pa55w0rd-2x8m4z?"
SECRET_PROP = "key-Pa55w0rd-5t6y7u"


def run(env: dict[str, str], *argv: str) -> int:
    with mock.patch.dict(os.environ, env, clear=True):
        return main(list(argv))


def test_help_has_examples_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "examples:" in out and "--dry-run" in out and "KAFKA_SECRET_ARN" in out
    assert "10 not ready" in out
    assert "PUBLISH_WORKERS" in out and "PUBLISH_WORKERS=2 kafka-publisher" in out


def test_usage_and_configuration_errors_exit_11(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--bogus"]) == EXIT_CONFIG
    assert run({}, "--dry-run") == EXIT_CONFIG  # no DIFFS_LOCATION
    assert "DIFFS_LOCATION is required" in capsys.readouterr().out
    assert run({"DIFFS_LOCATION": str(tmp_path)}, "--run-date", "2026-02-30") == EXIT_CONFIG
    assert run({"DIFFS_LOCATION": str(tmp_path), "TIMEZONE": "Mars/Olympus"}) == EXIT_CONFIG
    assert run({"DIFFS_LOCATION": str(tmp_path), "KAFKA_PROP_ACKS": "1"}) == EXIT_CONFIG
    write_day(str(tmp_path), D, make_events(D, 3))
    # publishing needs a broker and a topic (a dry run does not)
    assert run({"DIFFS_LOCATION": str(tmp_path), "RUN_DATE": D}) == EXIT_CONFIG
    assert "KAFKA_BOOTSTRAP_SERVERS and KAFKA_TOPIC required" in capsys.readouterr().out
    assert run({"DIFFS_LOCATION": str(tmp_path), "RUN_DATE": D}, "--dry-run") == EXIT_OK


def test_run_date_defaults_to_today_in_timezone(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"DIFFS_LOCATION": str(tmp_path), "TIMEZONE": "Pacific/Kiritimati"}  # UTC+14
    assert run(env, "--dry-run") == EXIT_NOT_READY
    start = json.loads(capsys.readouterr().out.splitlines()[0])
    from datetime import datetime
    from zoneinfo import ZoneInfo

    assert start["run_date"] == datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()


def test_a_password_inside_a_client_error_is_redacted(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """librdkafka errors may quote configuration values: they are scrubbed before any output."""
    write_day(str(tmp_path), D, make_events(D, 3))

    def exploding_producer(conf: dict) -> None:
        raise KafkaException(f"Invalid value for sasl.password: {conf['sasl.password']}")

    real = publisher.KafkaSink.__init__

    def init(self, conf, topic, redactor, producer_factory=None):  # type: ignore[no-untyped-def]
        real(self, conf, topic, redactor, exploding_producer)

    monkeypatch.setattr(publisher.KafkaSink, "__init__", init)
    env = {
        "DIFFS_LOCATION": str(tmp_path),
        "RUN_DATE": D,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_TOPIC": "t",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_USERNAME": "svc",
        "KAFKA_PASSWORD": SECRET_FROM_ENV,
    }
    assert run(env) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert "invalid Kafka configuration: Invalid value for sasl.password: ***" in captured.out
    assert SECRET_FROM_ENV not in captured.out + captured.err


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    with moto_server() as endpoint, tansu_broker() as bootstrap:
        yield endpoint, bootstrap


def _aws(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_AWS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_AWS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": FAKE_AWS["region_name"],
    }


def _run_process(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The publisher as its own process: all output, librdkafka's included, at the fd level."""
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from kafka_publisher.main import main; sys.exit(main())",
            *argv,
        ],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_secret_ever_reaches_logs_or_errors(services: tuple[str, str]) -> None:
    endpoint, bootstrap = services
    aws = _aws(endpoint)
    with mock.patch.dict(os.environ, aws):
        bucket = f"diffs-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, **FAKE_AWS).create_bucket(Bucket=bucket)
        # two files: with PUBLISH_WORKERS=2 both workers start (and log through the parent)
        write_day(f"s3://{bucket}", D, make_events(D, 20), records_per_file=10)
        sm = boto3.client("secretsmanager", endpoint_url=endpoint, **FAKE_AWS)
        arn = sm.create_secret(
            Name=f"kafka-{uuid.uuid4().hex[:6]}",
            SecretString=json.dumps(
                {"username": "svc", "password": SECRET_FROM_ARN, "engine": "kafka"}
            ),
        )["ARN"]
        not_json = sm.create_secret(
            Name=f"bad-{uuid.uuid4().hex[:6]}", SecretString=f"pw={SECRET_FROM_ARN}"
        )["ARN"]
    create_topics(bootstrap, {"secrets": 1})
    base = {
        **aws,
        "DIFFS_LOCATION": f"s3://{bucket}",
        "RUN_DATE": D,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": "secrets",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",  # Tansu runs without authentication
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LOG_LEVEL": "DEBUG",
        "KAFKA_PROP_DEBUG": "all",  # librdkafka's most verbose logging, configuration dump included
        "KAFKA_PROP_MESSAGE_TIMEOUT_MS": "3000",
        "KAFKA_PROP_SSL_KEY_PASSWORD": SECRET_PROP,  # a sensitive KAFKA_PROP_* value
    }
    runs = {
        "secret by ARN": _run_process({**base, "KAFKA_SECRET_ARN": arn}),
        "password from env": _run_process(
            {**base, "KAFKA_USERNAME": "svc", "KAFKA_PASSWORD": SECRET_FROM_ENV}
        ),
        "secret not JSON": _run_process({**base, "KAFKA_SECRET_ARN": not_json}),
        "both ways": _run_process(
            {
                **base,
                "KAFKA_SECRET_ARN": arn,
                "KAFKA_USERNAME": "svc",
                "KAFKA_PASSWORD": SECRET_FROM_ENV,
            }
        ),
        "dry run": _run_process({**base, "KAFKA_SECRET_ARN": arn}, "--dry-run"),
        "2 workers, secret by ARN": _run_process(
            {**base, "KAFKA_SECRET_ARN": arn, "PUBLISH_WORKERS": "2"}
        ),
        "2 workers, password from env": _run_process(
            {
                **base,
                "KAFKA_USERNAME": "svc",
                "KAFKA_PASSWORD": SECRET_FROM_ENV,
                "PUBLISH_WORKERS": "2",
            }
        ),
    }
    codes = {name: proc.returncode for name, proc in runs.items()}
    assert codes == {
        "secret by ARN": EXIT_DELIVERY,  # the SASL handshake fails against Tansu
        "password from env": EXIT_DELIVERY,
        "secret not JSON": EXIT_CONFIG,
        "both ways": EXIT_CONFIG,
        "dry run": EXIT_OK,
        "2 workers, secret by ARN": EXIT_DELIVERY,
        "2 workers, password from env": EXIT_DELIVERY,
    }, {name: proc.stdout[-2000:] + proc.stderr[-2000:] for name, proc in runs.items()}
    for name, proc in runs.items():
        text = proc.stdout + proc.stderr
        for secret in (SECRET_FROM_ARN, SECRET_FROM_ENV, SECRET_PROP):
            assert secret not in text, f"{name}: a secret was written"
    # the runs did log a lot (librdkafka debug), and the configuration with redacted values
    assert len(runs["secret by ARN"].stdout.splitlines()) > 50
    start = json.loads(runs["secret by ARN"].stdout.splitlines()[0])
    assert start["config"]["password"] == "***"
    assert start["config"]["kafka_props"]["ssl.key.password"] == "***"
    assert "is not a JSON object" in runs["secret not JSON"].stdout
    # the workers' own logs (librdkafka debug included) were written by the parent, as JSON
    for name in ("2 workers, secret by ARN", "2 workers, password from env"):
        lines = [json.loads(line) for line in runs[name].stdout.splitlines()]
        from_workers = [o for o in lines if o.get("worker") in (1, 2)]
        assert {o["worker"] for o in from_workers} == {1, 2}, name
        assert any(o["logger"] == "kafka_publisher.librdkafka" for o in from_workers), name
        assert lines[-1]["_aws"] and lines[-2]["exit_code"] == EXIT_DELIVERY


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_do_not_outlive_a_killed_parent(tmp_path) -> None:
    """SIGKILL to the task's process (no cleanup runs): its workers stop on their own, silently,
    instead of blocking forever on a pipe nobody reads."""
    write_day(str(tmp_path), D, make_events(D, 20), records_per_file=10)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "DIFFS_LOCATION": str(tmp_path),
        "RUN_DATE": D,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens: the workers keep trying
        "KAFKA_TOPIC": "t",
        "KAFKA_PROP_MESSAGE_TIMEOUT_MS": "4000",
        "KAFKA_PROP_DEBUG": "all",  # a steady stream of log lines to forward to the parent
        "LOG_LEVEL": "DEBUG",
        "PUBLISH_WORKERS": "2",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from kafka_publisher.main import main; sys.exit(main())",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 2
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)
    assert proc.stderr is not None and proc.stderr.read() == b""  # no "Logging error" flood
