from datetime import UTC, datetime, timedelta, timezone

import pytest

from providers.base import provider_time

MOMENT = datetime(2026, 12, 8, 1, 30, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        1796693400250,  # Kie: Unix milliseconds
        "1796693400250",
        "2026-12-08T01:30:00.250000Z",  # Replicate, Kie's legacy APIs: ISO 8601
        "2026-12-08T04:30:00.250+03:00",
        "2026-12-08T01:30:00.250",  # no zone: taken as UTC
    ],
)
def test_a_provider_time_is_read_as_utc(value: object) -> None:
    moment = provider_time(value)
    assert moment == MOMENT
    assert moment is not None and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [None, "", "soon", 0, -5, True, 10**20, [1], {"ms": 1}])
def test_anything_else_is_no_time_rather_than_a_refused_result(value: object) -> None:
    assert provider_time(value) is None


def test_an_offset_is_kept_as_the_same_moment() -> None:
    moscow = timezone(timedelta(hours=3))
    assert provider_time(MOMENT.astimezone(moscow).isoformat()) == MOMENT
