"""A real S3-protocol server for tests: moto's server mode, in this process, on 127.0.0.1:<ephemeral>.

Tests talk to it over HTTP through boto3 exactly as production talks to S3. Use the
``moto_s3_endpoint`` fixture (import it into a test module or a conftest) or, outside pytest,
:func:`running_moto_s3_server`. Buckets persist for the server's lifetime, so give each test
its own bucket (:func:`unique_bucket_name`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from moto.server import ThreadedMotoServer

# moto accepts any credentials; fixed ones keep presigned URLs and logs readable.
TEST_ACCESS_KEY = "testing-access-key"
TEST_SECRET_KEY = "testing-secret-key"
TEST_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class MotoS3Server:
    endpoint_url: str
    access_key: str = TEST_ACCESS_KEY
    secret_key: str = TEST_SECRET_KEY
    region: str = TEST_REGION


@contextmanager
def running_moto_s3_server() -> Iterator[MotoS3Server]:
    # Port 0: the OS picks a free port, so parallel test runs never collide.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


def unique_bucket_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[MotoS3Server]:
    with running_moto_s3_server() as server:
        yield server
