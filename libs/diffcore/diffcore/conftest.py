"""Shared fixtures of the diffcore unit tests: a real S3 API (moto_server on 127.0.0.1).

`moto_endpoint` starts one `moto_server` per test session (tests/support/services.py: a
subprocess on a free port, stopped by its PID at the end) and points boto3 at it through
`AWS_ENDPOINT_URL`; `s3_bucket` gives each test a fresh bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.services import aws_env, moto_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto_server started for this test session."""
    with moto_server() as url, aws_env(url):
        yield url


@pytest.fixture()
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket on the session's moto_server; returns its name."""
    from diffcore import store

    name = f"test-{uuid.uuid4().hex[:12]}"
    store.s3_client().create_bucket(Bucket=name)
    return name
