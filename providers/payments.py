"""Provider-neutral payment types shared by the YooKassa and Telegram Stars rails.

Money is always an integer number of minor units (kopecks for RUB, whole Stars for XTR): floats
never carry an amount anywhere in PinGlass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ProviderPaymentStatus(StrEnum):
    """A payment's status as the provider reports it (YooKassa's vocabulary, §1.4)."""

    PENDING = "pending"
    WAITING_FOR_CAPTURE = "waiting_for_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


FINAL_PAYMENT_STATUSES = frozenset({ProviderPaymentStatus.SUCCEEDED, ProviderPaymentStatus.CANCELED})


@dataclass(frozen=True, slots=True)
class PaymentInfo:
    """What the provider says about one payment. Only a re-fetched PaymentInfo may credit an order."""

    id: str
    status: str
    paid: bool
    amount_kopecks: int
    currency: str
    confirmation_url: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    test: bool = False
    cancellation_party: str | None = None
    cancellation_reason: str | None = None
    refunded_kopecks: int = 0
    # Net of the provider's fee; informative only: orders are matched against amount_kopecks.
    income_kopecks: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == ProviderPaymentStatus.SUCCEEDED

    @property
    def canceled(self) -> bool:
        return self.status == ProviderPaymentStatus.CANCELED

    @property
    def final(self) -> bool:
        return self.status in FINAL_PAYMENT_STATUSES


@dataclass(frozen=True, slots=True)
class RefundInfo:
    id: str
    payment_id: str
    status: str  # pending | succeeded | canceled
    amount_kopecks: int
    currency: str = "RUB"


class PaymentProviderError(Exception):
    """Base of every payment-provider failure.

    ``retryable`` tells the caller whether repeating the *same* call (with the same idempotence key)
    may succeed: true for timeouts, network errors, 429 and 5xx; false for rejected requests.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, retryable={self.retryable}, "
            f"status={self.status}, code={self.code!r})"
        )
