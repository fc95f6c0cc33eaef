"""Photo-credit accounting and prices.

A balance is the sum of ledger lines, never a counter updated in place. Each line carries a
(reason, reference) pair that the ledger table keeps UNIQUE, so the reference names the one event
that may produce the line: a duplicate payment notification or a second release of the same task
collides with the first line instead of crediting twice.

The invariant, for one user, with every term a non-negative magnitude:

    balance == purchased + trial + granted - reserved + released - refunded
    balance >= 0 and released <= reserved

Callers keep it by checking ``can_apply`` before writing a debit (reserve, refund).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from studio.catalogue import Pack
from studio.states import LedgerReason

REFERENCE_MAX_CHARS = 128  # ledger.reference column
NOTE_MAX_CHARS = 255  # ledger.note column
# Credits given, not bought: an admin's grant, an opened gift, a promo code, a referral bonus.
GIVEN_REASONS = frozenset({LedgerReason.GRANT, LedgerReason.GIFT, LedgerReason.PROMO, LedgerReason.REFERRAL})
CREDITING_REASONS = frozenset({LedgerReason.PURCHASE, LedgerReason.TRIAL, LedgerReason.RELEASE}) | GIVEN_REASONS
DEBITING_REASONS = frozenset({LedgerReason.RESERVE, LedgerReason.REFUND})


class Currency(StrEnum):
    RUB = "RUB"  # amounts in kopecks
    STARS = "XTR"  # Telegram Stars, whole stars; XTR is the currency code the Bot API uses


@dataclass(frozen=True, slots=True)
class LedgerLine:
    reason: LedgerReason
    reference: str
    delta: int
    note: str | None = None

    def __post_init__(self) -> None:
        if not self.reference or len(self.reference) > REFERENCE_MAX_CHARS:
            raise ValueError(f"a ledger reference has 1..{REFERENCE_MAX_CHARS} characters: {self.reference!r}")
        if self.note is not None and len(self.note) > NOTE_MAX_CHARS:
            raise ValueError(f"a ledger note has at most {NOTE_MAX_CHARS} characters")
        if self.reason in CREDITING_REASONS and self.delta <= 0:
            raise ValueError(f"a {self.reason} line must add credits, got {self.delta}")
        if self.reason in DEBITING_REASONS and self.delta >= 0:
            raise ValueError(f"a {self.reason} line must take credits, got {self.delta}")


def purchase_line(payment_id: int | str, photos: int) -> LedgerLine:
    return LedgerLine(LedgerReason.PURCHASE, f"payment:{payment_id}", _positive(photos))


def trial_line(user_id: int, photos: int) -> LedgerLine:
    # The reference names only the user, so the UNIQUE key itself enforces "once per user".
    return LedgerLine(LedgerReason.TRIAL, f"trial:user:{user_id}", _positive(photos))


def grant_line(grant_id: int | str, photos: int, note: str | None) -> LedgerLine:
    return LedgerLine(LedgerReason.GRANT, f"grant:{grant_id}", _positive(photos), note)


def gift_line(gift_id: int, photos: int) -> LedgerLine:
    """A gift's credits for the one who opened it: the reference names only the gift, so it pays once."""
    return LedgerLine(LedgerReason.GIFT, f"gift:{gift_id}", _positive(photos))


def promo_line(code: str, user_id: int, photos: int) -> LedgerLine:
    """A promo code's credits: once per code and user (the UNIQUE key is the "once per user" rule)."""
    return LedgerLine(LedgerReason.PROMO, f"promo:{code}:{user_id}", _positive(photos))


def referral_line(invitee_id: int, photos: int) -> LedgerLine:
    """The inviter's bonus: the reference names only the invitee, so it is paid once per invited user."""
    return LedgerLine(LedgerReason.REFERRAL, f"referral:{invitee_id}", _positive(photos))


def reserve_line(job_id: int, photos: int) -> LedgerLine:
    return LedgerLine(LedgerReason.RESERVE, f"job:{job_id}", -_positive(photos))


def release_line_for_task(task_id: int) -> LedgerLine:
    """One credit back for one skipped task; a second release of the same task collides."""
    return LedgerLine(LedgerReason.RELEASE, f"task:{task_id}", 1)


def release_line_for_cancel(job_id: int, photos: int) -> LedgerLine:
    """Credits back for a job cancelled before any portrait existed: what it still holds, not its size
    (portraits skipped earlier were released one by one already)."""
    return LedgerLine(LedgerReason.RELEASE, f"cancel:job:{job_id}", _positive(photos))


def release_line_for_stop(job_id: int, photos: int) -> LedgerLine:
    """Credits back for the unstarted work of a job stopped as a whole (missing selfies, a refund):
    what it still holds minus the portraits that already exist. Once per job."""
    return LedgerLine(LedgerReason.RELEASE, f"stop:job:{job_id}", _positive(photos))


def refund_line(payment_id: int | str, photos: int) -> LedgerLine:
    """Takes back the credits of a refunded payment; one refund per payment."""
    return LedgerLine(LedgerReason.REFUND, f"refund:payment:{payment_id}", -_positive(photos))


def balance(lines: Iterable[LedgerLine]) -> int:
    return sum(line.delta for line in lines)


def can_apply(current_balance: int, line: LedgerLine) -> bool:
    """Whether writing ``line`` keeps the balance non-negative (check before a reserve or refund)."""
    return current_balance + line.delta >= 0


def totals_by_reason(lines: Iterable[LedgerLine]) -> dict[LedgerReason, int]:
    """The magnitude moved for each reason (all values non-negative)."""
    totals = dict.fromkeys(LedgerReason, 0)
    for line in lines:
        totals[line.reason] += abs(line.delta)
    return totals


def check_invariant(
    purchased: int,
    trial: int,
    granted: int,
    reserved: int,
    released: int,
    refunded: int,
    balance: int,
) -> bool:
    """The ledger invariant (see the module docstring); every total is a non-negative magnitude."""
    totals = (purchased, trial, granted, reserved, released, refunded)
    if any(total < 0 for total in totals):
        return False
    expected = purchased + trial + granted - reserved + released - refunded
    # More released than reserved would mean a credit came back that was never taken.
    return balance == expected and balance >= 0 and released <= reserved


def invariant_holds(lines: Iterable[LedgerLine]) -> bool:
    materialised = list(lines)
    totals = totals_by_reason(materialised)
    return check_invariant(
        purchased=totals[LedgerReason.PURCHASE],
        trial=totals[LedgerReason.TRIAL],
        granted=sum(totals[reason] for reason in GIVEN_REASONS),
        reserved=totals[LedgerReason.RESERVE],
        released=totals[LedgerReason.RELEASE],
        refunded=totals[LedgerReason.REFUND],
        balance=balance(materialised),
    )


def price_for(pack: Pack, currency: Currency | str) -> int:
    """The pack's price in minor units: kopecks for RUB, whole stars for Stars. 0 for the trial."""
    match Currency(currency):
        case Currency.RUB:
            return pack.price_rub_kopecks
        case Currency.STARS:
            return pack.price_stars


def format_price(amount: int, currency: Currency | str, lang: str | None) -> str:
    """ "490 ₽", "490,50 ₽" (ru) / "490.50 ₽" (en), "250 ⭐". ``amount`` is in minor units."""
    if amount < 0:
        raise ValueError(f"a price is never negative, got {amount}")
    english = (lang or "").split("-")[0].lower() == "en"
    match Currency(currency):
        case Currency.RUB:
            roubles, kopecks = divmod(amount, 100)
            number = _group_thousands(roubles, english)
            if kopecks:
                number += f"{'.' if english else ','}{kopecks:02d}"
            return f"{number} ₽"
        case Currency.STARS:
            return f"{_group_thousands(amount, english)} ⭐"


def _group_thousands(value: int, english: bool) -> str:
    if english:
        return f"{value:,}"
    # Russian typography leaves four-digit numbers whole ("1290") and groups from 10 000 on.
    return f"{value:,}".replace(",", " ") if value >= 10_000 else str(value)


def _positive(photos: int) -> int:
    if isinstance(photos, bool) or not isinstance(photos, int) or photos < 1:
        raise ValueError(f"a number of photos is a positive integer, got {photos!r}")
    return photos
