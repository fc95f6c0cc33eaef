"""What background work tells a user, as data: the scheduler says what happened, the bot decides the
words and the buttons (bot/notifier.py renders each notice with ``match``).

Each notice carries what its message and its buttons need, no more; amounts are in the currency's
minor unit (kopecks, Stars) so the bot formats them in the reader's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from storage.payments import ReturnReason
from studio.credits import Currency


@dataclass(frozen=True, slots=True)
class JobQueued:
    """A pack is in the queue; ``paid`` says it was a payment that put it there (not credits or a trial)."""

    job_id: int
    photos: int
    position: int
    paid: bool = False


@dataclass(frozen=True, slots=True)
class PaymentCanceled:
    """A payment for an order still waiting for one was cancelled: the user may pay again."""

    order_id: int
    expired: bool  # the user did not confirm in time (YooKassa's expired_on_confirmation)


@dataclass(frozen=True, slots=True)
class PaymentReturned:
    """Money that arrived could not buy its order and is being sent back."""

    order_id: int
    reason: ReturnReason
    amount: int
    currency: Currency


@dataclass(frozen=True, slots=True)
class RefundCanceled:
    """For admins: YooKassa refused a refund, so the money was not returned."""

    refund_id: int
    provider_refund_id: str
    payment_id: str
    amount_kopecks: int


@dataclass(frozen=True, slots=True)
class GiftPaid:
    """The buyer's gift is paid: its code and link to forward, and its refund button."""

    gift_id: int
    code: str
    photos: int


@dataclass(frozen=True, slots=True)
class ReferralPaid:
    """The inviter's bonus for an invited user's first delivered paid pack."""

    photos: int


@dataclass(frozen=True, slots=True)
class JobFailed:
    """No portrait of the pack could be made; ``returned`` credits are back on the balance."""

    job_id: int
    returned: int


@dataclass(frozen=True, slots=True)
class SelfiesMissing:
    """The pack's selfies were gone before anything was generated; ``released`` credits are back."""

    job_id: int
    released: int


@dataclass(frozen=True, slots=True)
class ProgressShown:
    """The pack's progress message (its text is already rendered by delivery, which edits it later)."""

    job_id: int
    text: str
    cancellable: bool


@dataclass(frozen=True, slots=True)
class DeliveryUncertain:
    """An album may or may not have arrived: offer to send it again instead of sending it twice."""

    job_id: int
    chunk_index: int
    portraits: int


@dataclass(frozen=True, slots=True)
class PackFinished:
    """Every portrait of the pack is delivered or skipped; ``credited`` of them were credited back;
    ``guarantee`` unlike ones are being redone free (the likeness guarantee, which promises
    ``promised`` like the person; 0: off); ``free_redos``: how many redos by reply the pack includes."""

    job_id: int
    avatar_id: int | None
    delivered: int
    credited: int
    guarantee: int = 0
    promised: int = 0
    free_redos: int = 0


@dataclass(frozen=True, slots=True)
class RedoFailed:
    """A redo asked for by a reply could not be made; ``paid``: its credit is back on the balance,
    otherwise the free redo is back in the pack's allowance."""

    job_id: int
    paid: bool


@dataclass(frozen=True, slots=True)
class GuaranteeSettled:
    """The likeness guarantee's redo of a pack is over: ``delivered`` new takes were sent, ``credited``
    portraits still unlike the person were credited back."""

    job_id: int
    delivered: int
    credited: int


@dataclass(frozen=True, slots=True)
class OriginalsGone:
    """The originals asked for were deleted by retention."""


@dataclass(frozen=True, slots=True)
class OriginalsNotSent:
    """Telegram refused the originals or could not be reached: the user may ask again."""


@dataclass(frozen=True, slots=True)
class BroadcastReport:
    """For the admin who started it: how a broadcast ended."""

    broadcast_id: int
    sent: int
    blocked: int
    failed: int
    total: int


class ProviderCondition(StrEnum):
    BALANCE_LOW = "balance_low"
    MODEL_MISSING = "model_missing"


@dataclass(frozen=True, slots=True)
class ProviderAlert:
    """For admins: a provider's ``condition`` started (``active``) or ended (scheduler/provider_health.py)."""

    provider: str
    condition: ProviderCondition
    active: bool
    balance: float | None = None
    threshold: float | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentReminder:
    """A gentle reminder: the order chosen an hour ago still waits for its payment."""

    order_id: int
    photos: int


@dataclass(frozen=True, slots=True)
class CreditsReminder:
    """A gentle reminder: ``credits`` on the balance and no pack for days; ``avatar_id`` is a ready
    photo set to start from, if the user has one."""

    credits: int
    avatar_id: int | None


@dataclass(frozen=True, slots=True)
class OriginalsReminder:
    """A gentle reminder: the pack's originals are deleted by retention in ``days`` days."""

    job_id: int
    days: int


Reminder = PaymentReminder | CreditsReminder | OriginalsReminder

Notice = (
    JobQueued
    | PaymentCanceled
    | PaymentReturned
    | RefundCanceled
    | GiftPaid
    | ReferralPaid
    | JobFailed
    | SelfiesMissing
    | ProgressShown
    | DeliveryUncertain
    | PackFinished
    | RedoFailed
    | GuaranteeSettled
    | OriginalsGone
    | OriginalsNotSent
    | BroadcastReport
    | ProviderAlert
    | PaymentReminder
    | CreditsReminder
    | OriginalsReminder
)
