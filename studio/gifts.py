"""Gifts, promo codes and referrals: the rules, free of I/O.

A gift is a pack paid by one user for whoever opens its link first; a promo code is an admin's
offer of credits, once per user, to a limited number of users until a date; a referral bonus goes
to the inviter when the invited user's first paid pack is delivered. The codes people type or
forward are short, upper-case and unguessable.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from studio.catalogue import Pack

# No 0/O, 1/I/L: a code read aloud or typed from a screenshot survives. 31 symbols, 10 of them:
# about 2^49 codes, so guessing one of a few thousand live gifts is hopeless.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
CODE_PATTERN = re.compile(rf"^[{CODE_ALPHABET}]{{{CODE_LENGTH}}}$")
GIFT_REFUND_WINDOW = timedelta(days=14)
GIFT_STYLE = "gift"  # orders.style of a gift's order: it buys credits for someone, not a style

# Deep links: t.me/<bot>?start=gift_<code> | promo_<code> | ref_<telegram id>.
GIFT_LINK = re.compile(r"^gift_([A-Za-z0-9]{1,32})$")
PROMO_LINK = re.compile(r"^promo_([A-Za-z0-9]{1,32})$")
REF_LINK = re.compile(r"^ref_([0-9]{1,18})$")

PROMO_MAX_PHOTOS = 100
PROMO_MAX_USES = 100_000
PROMO_MAX_DAYS = 366


class GiftStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"  # the buyer chose a pack; no payment yet
    OPEN = "open"  # paid: the link works for the first opener
    REDEEMED = "redeemed"  # opened: its credits are on the opener's balance
    REFUNDED = "refunded"  # the buyer took the money back: the link is dead


class GiftRefusal(StrEnum):
    """Why opening a gift link credited nothing (each has its own text)."""

    UNKNOWN = "unknown"  # no such code (mistyped, forged)
    NOT_PAID = "not_paid"  # the buyer has not paid yet
    OWN = "own"  # the buyer opened their own gift
    TAKEN = "taken"  # someone else opened it first
    ALREADY_YOURS = "already_yours"  # this user opened it before
    REFUNDED = "refunded"


class GiftRefundRefusal(StrEnum):
    """Why the buyer's refund of a gift was not made."""

    UNKNOWN = "unknown"  # not their gift, or a forged button
    NOT_PAID = "not_paid"
    REDEEMED = "redeemed"  # opened already: the credits are someone's
    REFUNDED = "refunded"  # refunded before (a second tap)
    TOO_LATE = "too_late"  # the refund window has passed


class PromoRefusal(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"  # this user redeemed it before
    EXHAUSTED = "exhausted"  # all its uses are taken
    EXPIRED = "expired"


def giftable(pack: Pack) -> bool:
    """A paid, ordinary pack. Not the trial (free), not a grid pack (cheaper per photo, and a gift
    becomes credits that any pack can spend)."""
    return not pack.is_free and not pack.grid


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str | None) -> str | None:
    """A code as the user typed or forwarded it (any case, spaces around); None if it cannot be one."""
    if not text:
        return None
    code = text.strip().upper()
    return code if CODE_PATTERN.match(code) else None


def link_code(pattern: re.Pattern[str], args: str | None) -> str | None:
    """The code of a deep link's start parameter (``gift_<code>``, ``promo_<code>``), or None."""
    match = pattern.match(args) if args else None
    return match.group(1) if match else None


def referrer_telegram_id(args: str | None) -> int | None:
    """The inviter's Telegram id from ``ref_<id>``; None for anything else."""
    match = REF_LINK.match(args) if args else None
    return int(match.group(1)) if match else None


def gift_refundable(paid_at: datetime | None, now: datetime) -> bool:
    """The buyer may take the money back while the gift is unopened and no older than the window."""
    return paid_at is not None and now - paid_at <= GIFT_REFUND_WINDOW


def gift_refund_refusal(status: str, paid_at: datetime | None, now: datetime) -> GiftRefundRefusal | None:
    """None when the gift may be refunded now; else why not."""
    match GiftStatus(status):
        case GiftStatus.AWAITING_PAYMENT:
            return GiftRefundRefusal.NOT_PAID
        case GiftStatus.REDEEMED:
            return GiftRefundRefusal.REDEEMED
        case GiftStatus.REFUNDED:
            return GiftRefundRefusal.REFUNDED
        case GiftStatus.OPEN:
            return None if gift_refundable(paid_at, now) else GiftRefundRefusal.TOO_LATE


def gift_refusal(status: str, *, buyer: bool, opener_is_user: bool) -> GiftRefusal:
    """Why a gift link credited nothing, from the state the conditional UPDATE did not find."""
    match GiftStatus(status):
        case GiftStatus.AWAITING_PAYMENT:
            return GiftRefusal.NOT_PAID
        case GiftStatus.REFUNDED:
            return GiftRefusal.REFUNDED
        case GiftStatus.REDEEMED:
            return GiftRefusal.ALREADY_YOURS if opener_is_user else GiftRefusal.TAKEN
        case GiftStatus.OPEN:
            return GiftRefusal.OWN if buyer else GiftRefusal.TAKEN


@dataclass(frozen=True, slots=True)
class PromoTerms:
    photos: int
    uses: int
    days: int


def parse_promo_terms(args: list[str]) -> PromoTerms | None:
    """``<photos> <uses> <days>`` of ``/promo new``, each a positive integer within its bound."""
    if len(args) != 3 or not all(arg.isascii() and arg.isdigit() and len(arg) <= 6 for arg in args):
        return None
    photos, uses, days = (int(arg) for arg in args)
    if not (1 <= photos <= PROMO_MAX_PHOTOS and 1 <= uses <= PROMO_MAX_USES and 1 <= days <= PROMO_MAX_DAYS):
        return None
    return PromoTerms(photos, uses, days)


def promo_refusal(used: int, max_uses: int, expires_at: datetime, now: datetime) -> PromoRefusal | None:
    """None while the code has uses left and has not expired."""
    if now >= expires_at:
        return PromoRefusal.EXPIRED
    if used >= max_uses:
        return PromoRefusal.EXHAUSTED
    return None


def referral_allowed(invitee_id: int, inviter_id: int | None) -> bool:
    """Never a self-invite, never an unknown inviter."""
    return inviter_id is not None and inviter_id != invitee_id
