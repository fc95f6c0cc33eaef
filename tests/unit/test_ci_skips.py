"""The CI rule: a PostgreSQL/Redis test that skips although its URL is set fails the run."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import pytest

requires_redis = pytest.mark.skipif(True, reason="Redis tests need TEST_REDIS_URL")

@pytest.fixture
def postgres_url():
    pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")

@requires_redis
def test_redis():
    pass

def test_postgres(postgres_url):
    pass

def test_unrelated():
    pytest.skip("needs Linux /proc")
"""


def test_server_tests_that_skip_fail_when_their_urls_are_set(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("-p", "tests.ci_skips", "-rE")
    result.assert_outcomes(errors=2, skipped=1)  # the skips happen in setup, so they count as errors
    result.stdout.fnmatch_lines(["*skipped although TEST_REDIS_URL is set*"])


def test_without_urls_the_skips_stay_skips(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    pytester.makepyfile(SUITE)
    pytester.runpytest("-p", "tests.ci_skips").assert_outcomes(skipped=3)
