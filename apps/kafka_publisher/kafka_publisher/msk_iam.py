"""Amazon MSK IAM authentication: SASL/OAUTHBEARER tokens signed with the task's AWS credentials.

With `KAFKA_AUTH=iam` the producer authenticates as the ECS task role, no username or password:
librdkafka calls `oauth_cb` at connect time and again before the token expires (tokens live
15 minutes); the callback returns `aws-msk-iam-sasl-signer-python`'s token, a base64url
SigV4-presigned `kafka-cluster:Connect` request for the cluster's region, signed with the default
credential chain (on ECS: the task role's temporary credentials), and its expiry in seconds.
The broker checks the signature and then the role's `kafka-cluster:*` permissions
(infra/cdk: `kafka_auth=iam`).

The token embeds the temporary session token: it is a secret. It goes only to librdkafka (which
does not log it: msk_iam_test.py checks with debug=all); the callback never logs it and hands
every new token to `on_token`, by default the redactor of this process' log lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafka_publisher.logs import LOGGER_NAME

# MSK IAM is SASL/OAUTHBEARER over TLS (the cluster's IAM listener, port 9098).
SECURITY_PROTOCOL = "SASL_SSL"
SASL_MECHANISM = "OAUTHBEARER"

TokenGenerator = Callable[[str], tuple[str, int]]


class NoCredentials(RuntimeError):
    """The default credential chain found no AWS credentials to sign a token with."""


def default_generator(region: str) -> tuple[str, int]:
    """(token, expiry in ms since the epoch) from the signer, default credential chain."""
    import botocore.session
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    # The signer would fail on None with an AttributeError: say what is missing instead.
    if botocore.session.Session().get_credentials() is None:
        raise NoCredentials(
            "KAFKA_AUTH=iam: no AWS credentials to sign the MSK token with (on ECS: the task role)"
        )
    return MSKAuthTokenProvider.generate_auth_token(region)


def redact_in_logs(token: str) -> None:
    """Register a token with the redactor of this process' `kafka_publisher` log handlers
    (logs.setup_logging), so that no line they write can show it."""
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        redactor = getattr(handler.formatter, "redactor", None)
        if redactor is not None:
            redactor.add(token)


def token_callback(
    region: str,
    generate: TokenGenerator = default_generator,
    on_token: Callable[[str], Any] | None = redact_in_logs,
) -> Callable[[str | None], tuple[str, float]]:
    """confluent-kafka's `oauth_cb`: called with `sasl.oauthbearer.config` (unused), returns
    (token, expiry as seconds since the epoch). An exception (no credentials) fails the
    authentication; librdkafka reports it through error_cb and retries."""

    def oauth_cb(_oauthbearer_config: str | None) -> tuple[str, float]:
        token, expiry_ms = generate(region)
        if on_token is not None:
            on_token(token)
        return token, expiry_ms / 1000.0

    return oauth_cb


def producer_settings(
    region: str,
    generate: TokenGenerator = default_generator,
    on_token: Callable[[str], Any] | None = redact_in_logs,
) -> dict[str, Any]:
    """The librdkafka settings of IAM authentication."""
    return {
        "security.protocol": SECURITY_PROTOCOL,
        "sasl.mechanism": SASL_MECHANISM,
        "oauth_cb": token_callback(region, generate, on_token),
    }


__all__ = [
    "NoCredentials",
    "SASL_MECHANISM",
    "SECURITY_PROTOCOL",
    "producer_settings",
    "redact_in_logs",
    "token_callback",
]
