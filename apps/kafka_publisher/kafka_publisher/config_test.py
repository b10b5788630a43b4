from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kafka_publisher.config import Config, credentials_from_secret, is_sensitive, load_config
from kafka_publisher.errors import ConfigError

BASE = {
    "DIFFS_LOCATION": "s3://bucket/prefix/",
    "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
    "KAFKA_TOPIC": "changes",
}


def test_defaults_and_producer_config() -> None:
    config = load_config(BASE)
    assert config.diffs_location == "s3://bucket/prefix"
    assert config.timezone == "UTC" and not config.publish_tombstones and config.log_level == "INFO"
    assert config.publish_workers == 1 and config.redacted()["publish_workers"] == 1
    assert load_config({**BASE, "PUBLISH_WORKERS": " 2 "}).publish_workers == 2
    conf = config.producer_config()
    assert conf["acks"] == "all" and conf["enable.idempotence"] == "true"
    assert conf["compression.type"] == "lz4" and conf["bootstrap.servers"] == "b:9092"


def test_kafka_prop_variables_become_librdkafka_properties() -> None:
    config = load_config(
        {
            **BASE,
            "KAFKA_PROP_SSL_CA_LOCATION": "/etc/ca.pem",
            "KAFKA_PROP_COMPRESSION_TYPE": "zstd",
            "KAFKA_PROP_LINGER_MS": "50",
        }
    )
    conf = config.producer_config()
    assert conf["ssl.ca.location"] == "/etc/ca.pem"
    assert conf["compression.type"] == "zstd" and conf["linger.ms"] == "50"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"KAFKA_PROP_ACKS": "1"}, "acks is fixed"),
        ({"KAFKA_PROP_ENABLE_IDEMPOTENCE": "false"}, "enable.idempotence is fixed"),
        ({"KAFKA_PROP_BOOTSTRAP_SERVERS": "x:1"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_PROP_SASL_PASSWORD": "x"}, "KAFKA_PASSWORD"),
        ({"PUBLISH_TOMBSTONES": "maybe"}, "PUBLISH_TOMBSTONES"),
        ({"RUN_DATE": "25/11/2026"}, "RUN_DATE"),
        ({"TIMEZONE": "Nowhere/City"}, "TIMEZONE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSH"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_USERNAME": "u"}, "go together"),
        ({"KAFKA_USERNAME": "u", "KAFKA_PASSWORD": "p"}, "not SASL"),
        ({"DIFFS_LOCATION": "gs://b"}, "DIFFS_LOCATION"),
        ({"DIFFS_LOCATION": "s3://"}, "no bucket"),
        ({"KAFKA_TOPIC": "bad topic"}, "KAFKA_TOPIC"),
        ({"PUBLISH_WORKERS": "0"}, "PUBLISH_WORKERS must be a whole number from 1 to 64"),
        ({"PUBLISH_WORKERS": "65"}, "PUBLISH_WORKERS"),
        ({"PUBLISH_WORKERS": "two"}, "PUBLISH_WORKERS"),
        ({"PUBLISH_WORKERS": "-2"}, "PUBLISH_WORKERS"),
        ({"PUBLISH_WORKERS": "²"}, "PUBLISH_WORKERS"),  # a digit to str.isdigit, not to int()
    ],
)
def test_invalid_configuration(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({**BASE, **env})


def test_secret_by_arn_and_redaction() -> None:
    env = {
        **BASE,
        "KAFKA_SECRET_ARN": "arn:x",
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "scram-sha-512",
        "KAFKA_PROP_SSL_KEY_PASSWORD": "kp",
    }
    config = load_config(
        env, fetch_secret=lambda arn: '{"username": "svc", "password": "s3cr3t", "x": 1}'
    )
    assert (config.username, config.password) == ("svc", "s3cr3t")
    assert config.security_protocol == "SASL_SSL" and config.sasl_mechanism == "SCRAM-SHA-512"
    assert config.producer_config()["sasl.password"] == "s3cr3t"
    assert set(config.secrets()) == {"svc", "s3cr3t", "kp"}  # the username is a secret too
    for text in (repr(config), str(config), str(config.redacted())):
        assert "s3cr3t" not in text and "'kp'" not in text and "svc" not in text
    assert config.redacted()["password"] == "***" and config.redacted()["username"] == "***"


@pytest.mark.parametrize(
    "prop, sensitive",
    [
        ("sasl.oauthbearer.assertion.private.key.passphrase", True),  # librdkafka's list
        ("ssl.ca.pem", True),  # librdkafka's list, though a CA is public
        ("ssl.keystore.location", True),  # defensive: contains ssl.key
        ("my.plugin.jaas.conf", True),  # defensive
        ("ssl.ca.location", False),
        ("ssl.certificate.pem", False),
        ("sasl.oauthbearer.token.endpoint.url", False),
    ],
)
def test_is_sensitive(prop: str, sensitive: bool) -> None:
    assert is_sensitive(prop) is sensitive


def test_secret_content_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        credentials_from_secret("arn:x", "password=hunter2")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="username and password"):
        credentials_from_secret("arn:x", '{"password": "hunter2"}')


def test_run_date_override_and_timezone() -> None:
    assert load_config({**BASE, "RUN_DATE": "2026-11-25"}).resolve_run_date() == "2026-11-25"
    late = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    assert load_config(BASE).resolve_run_date(late) == "2026-11-25"
    assert load_config({**BASE, "TIMEZONE": "Europe/Lisbon"}).resolve_run_date(late) == "2026-11-25"
    assert load_config({**BASE, "TIMEZONE": "Asia/Tokyo"}).resolve_run_date(late) == "2026-11-26"
    assert isinstance(load_config(BASE), Config)
