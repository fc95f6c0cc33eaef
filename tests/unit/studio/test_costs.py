"""Provider cost arithmetic: micros are exact, revenue is converted only at a rate the operator set."""

from __future__ import annotations

from decimal import Decimal

import pytest

from studio.costs import Margin, format_usd, margin, micros_to_usd, provider_margin, split_micros, usd_to_micros
from studio.credits import Currency


def test_prices_round_trip_through_micros_exactly() -> None:
    assert usd_to_micros(Decimal("0.0325")) == 32_500
    assert usd_to_micros(Decimal("0.0000005")) == 1  # half a micro rounds up, never to nothing
    assert micros_to_usd(23 * 40_000) == Decimal("0.92")


@pytest.mark.parametrize(
    ("value", "text"),
    [("0.04", "$0.04"), ("0.0325", "$0.0325"), ("1.5", "$1.50"), ("-1.2", "-$1.20"), ("0.066667", "$0.0667")],
)
def test_usd_is_shown_in_cents_with_more_digits_only_when_they_matter(value: str, text: str) -> None:
    assert format_usd(Decimal(value)) == text


def test_margin_converts_net_revenue_and_names_currencies_without_a_rate() -> None:
    rates = {Currency.RUB: Decimal(100), Currency.STARS: Decimal(0)}
    result = margin({"RUB": 49_000, "XTR": 250}, {"RUB": 9_000}, 350_000, rates)
    assert result == Margin(Decimal("4"), Decimal("0.35"), ("XTR",))
    assert result.usd == Decimal("3.65")
    # Refunded in full: nothing to convert, so nothing is missing.
    assert margin({"XTR": 250}, {"XTR": 250}, 0, rates).unconverted == ()


def test_a_providers_share_of_revenue_follows_the_portraits_it_delivered() -> None:
    total = Margin(Decimal("5"), Decimal("0.5"), ())
    assert provider_margin(total, 3, 5, 200_000).usd == Decimal("2.8")
    assert provider_margin(total, 0, 0, 0).usd == 0


def test_a_grid_creates_price_is_shared_exactly_the_first_share_taking_the_remainder() -> None:
    assert split_micros(40_000, 4) == [10_000] * 4
    assert split_micros(40_003, 4) == [10_003, 10_000, 10_000, 10_000]
    assert split_micros(3, 4) == [3, 0, 0, 0]
    assert split_micros(7, 1) == [7]
    assert sum(split_micros(32_501, 4)) == 32_501
    with pytest.raises(ValueError):
        split_micros(1, 0)
