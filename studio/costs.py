"""What portraits cost the service, and what is left of the revenue: plain arithmetic, no I/O.

Every provider price is in USD (the unit of the model tables in ``providers/``). Costs are kept as
whole millionths of a USD ("micros"): exact sums on SQLite and PostgreSQL alike, where a float
column would drift and SQLite has no decimal type. Revenue is in roubles (kopecks) and Telegram
Stars, so the margin converts revenue to USD with rates the operator sets (RUB_PER_USD,
STARS_PER_USD): the provider bills in USD, and a margin in one currency is the one an operator can
compare across periods. A currency without a rate is left out of the margin and named, rather than
guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from studio.credits import Currency

MICROS_PER_USD = 1_000_000
# Minor units per whole unit of each revenue currency (orders keep kopecks and whole Stars).
MINOR_UNITS = {Currency.RUB: 100, Currency.STARS: 1}


def usd_to_micros(usd: Decimal) -> int:
    return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def split_micros(micros: int, parts: int) -> list[int]:
    """A cost shared by ``parts`` portraits (a grid create's four panels): equal shares, the first
    taking the remainder, so the shares add up to the whole exactly."""
    if parts < 1:
        raise ValueError(f"a cost is shared by at least one part, got {parts}")
    share = micros // parts
    return [micros - share * (parts - 1)] + [share] * (parts - 1)


def micros_to_usd(micros: int) -> Decimal:
    return Decimal(micros) / MICROS_PER_USD


@dataclass(frozen=True, slots=True)
class Margin:
    """Net revenue in USD minus provider cost; ``unconverted``: currencies left out (no rate)."""

    revenue_usd: Decimal
    cost_usd: Decimal
    unconverted: tuple[str, ...]

    @property
    def usd(self) -> Decimal:
        return self.revenue_usd - self.cost_usd


def margin(
    revenue: Mapping[str, int],
    refunded: Mapping[str, int],
    cost_micros: int,
    rates: Mapping[Currency, Decimal],
) -> Margin:
    """Revenue minus refunds (minor units per currency), converted at ``rates`` (units per USD),
    minus the provider cost."""
    total = Decimal(0)
    unconverted: list[str] = []
    for code in sorted(set(revenue) | set(refunded)):
        net = revenue.get(code, 0) - refunded.get(code, 0)
        try:
            currency = Currency(code)
        except ValueError:
            unconverted.append(code)
            continue
        rate = rates.get(currency, Decimal(0))
        if not rate:
            if net:
                unconverted.append(code)
            continue
        total += Decimal(net) / MINOR_UNITS[currency] / rate
    return Margin(total, micros_to_usd(cost_micros), tuple(unconverted))


def provider_margin(total: Margin, done: int, done_total: int, cost_micros: int) -> Margin:
    """One provider's part: the revenue shared out by the portraits each delivered (a pack's price
    does not depend on who drew it), minus what its own creates cost."""
    revenue = total.revenue_usd * done / done_total if done_total else Decimal(0)
    return Margin(revenue, micros_to_usd(cost_micros), total.unconverted)


def format_usd(value: Decimal) -> str:
    """ "$0.04", "$0.0325", "-$1.20": cents always, more digits only when they carry a value."""
    quantised = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    text = f"{abs(quantised):.4f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    text = f"{whole}.{fraction.ljust(2, '0')}"
    return f"-${text}" if quantised < 0 else f"${text}"
