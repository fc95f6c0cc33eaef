"""pytest plugin: with TEST_DATABASE_URL / TEST_REDIS_URL set (as in CI), a PostgreSQL or Redis test
that skips is a failure — a skip there means the server tests silently did not run. Without the URLs
the skips stay, with their reasons visible (`-ra`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def _needs_a_server(item: pytest.Item) -> str | None:
    """The environment variable of the server this test runs against, or None."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if "postgres_url" in names or params.get("database_kind") == "postgresql":
        return "TEST_DATABASE_URL"
    if "redis_url" in names:
        return "TEST_REDIS_URL"
    for marker in item.iter_markers("skipif"):
        reason = str(marker.kwargs.get("reason", ""))
        for variable in ("TEST_DATABASE_URL", "TEST_REDIS_URL"):
            if variable in reason:
                return variable
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]  # pluggy's hookwrapper result object
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    variable = _needs_a_server(item)
    if variable is not None and os.environ.get(variable):
        report.outcome = "failed"
        report.longrepr = f"skipped although {variable} is set (CI must run this test): {report.longrepr}"
