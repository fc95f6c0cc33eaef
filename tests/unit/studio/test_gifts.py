"""The rules of gifts, promo codes and referrals (studio/gifts.py) and their ledger lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studio.catalogue import load_catalogue
from studio.credits import (
    CREDITING_REASONS,
    LedgerLine,
    gift_line,
    invariant_holds,
    promo_line,
    referral_line,
    reserve_line,
)
from studio.gifts import (
    CODE_ALPHABET,
    CODE_LENGTH,
    GIFT_LINK,
    PROMO_LINK,
    GiftRefundRefusal,
    GiftRefusal,
    PromoRefusal,
    PromoTerms,
    gift_refund_refusal,
    gift_refusal,
    giftable,
    link_code,
    new_code,
    normalise_code,
    parse_promo_terms,
    promo_refusal,
    referral_allowed,
    referrer_telegram_id,
)
from studio.states import LedgerReason

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_codes_are_short_unambiguous_and_unguessable() -> None:
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET) for code in codes)
    assert not set("01OIL") & set(CODE_ALPHABET)
    assert len(CODE_ALPHABET) ** CODE_LENGTH > 2**48


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("ABCDEFGHJK", "ABCDEFGHJK"),
        ("  abcdefghjk \n", "ABCDEFGHJK"),
        ("ABCDEFGHJ", None),  # too short
        ("ABCDEFGHJKM", None),  # too long
        ("ABCDEFGHJ0", None),  # a look-alike the alphabet leaves out
        ("ABCDE FGHJ", None),
        ("", None),
        (None, None),
    ],
)
def test_a_typed_code_is_normalised_or_refused(typed: str | None, code: str | None) -> None:
    assert normalise_code(typed) == code


def test_deep_links_name_their_kind() -> None:
    assert link_code(GIFT_LINK, "gift_ABCDEFGHJK") == "ABCDEFGHJK"
    assert link_code(GIFT_LINK, "promo_ABCDEFGHJK") is None
    assert link_code(PROMO_LINK, "promo_abc") == "abc"
    assert link_code(GIFT_LINK, None) is None
    assert referrer_telegram_id("ref_123456789") == 123456789
    assert referrer_telegram_id("ref_-5") is None
    assert referrer_telegram_id("ref_12a") is None
    assert referrer_telegram_id("src_ads") is None


def test_only_ordinary_paid_packs_can_be_given() -> None:
    catalogue = load_catalogue()
    given = {pack.id for pack in catalogue.packs if giftable(pack)}
    assert given and all(not pack.is_free and not pack.grid for pack in catalogue.packs if pack.id in given)
    assert not any(giftable(pack) for pack in catalogue.packs if pack.is_trial or pack.grid)


@pytest.mark.parametrize(
    ("status", "paid_ago", "refusal"),
    [
        ("open", timedelta(days=1), None),
        ("open", timedelta(days=14), None),
        ("open", timedelta(days=14, seconds=1), GiftRefundRefusal.TOO_LATE),
        ("redeemed", timedelta(days=1), GiftRefundRefusal.REDEEMED),
        ("refunded", timedelta(days=1), GiftRefundRefusal.REFUNDED),
        ("awaiting_payment", None, GiftRefundRefusal.NOT_PAID),
    ],
)
def test_a_gift_is_refundable_while_unopened_for_14_days(
    status: str, paid_ago: timedelta | None, refusal: GiftRefundRefusal | None
) -> None:
    paid_at = NOW - paid_ago if paid_ago is not None else None
    assert gift_refund_refusal(status, paid_at, NOW) == refusal


@pytest.mark.parametrize(
    ("status", "buyer", "opener", "refusal"),
    [
        ("open", True, False, GiftRefusal.OWN),
        ("open", False, False, GiftRefusal.TAKEN),  # open a moment ago, taken by the time we looked
        ("redeemed", False, True, GiftRefusal.ALREADY_YOURS),
        ("redeemed", False, False, GiftRefusal.TAKEN),
        ("redeemed", True, False, GiftRefusal.TAKEN),
        ("refunded", False, False, GiftRefusal.REFUNDED),
        ("awaiting_payment", False, False, GiftRefusal.NOT_PAID),
    ],
)
def test_why_a_gift_link_credited_nothing(status: str, buyer: bool, opener: bool, refusal: GiftRefusal) -> None:
    assert gift_refusal(status, buyer=buyer, opener_is_user=opener) == refusal


@pytest.mark.parametrize(
    ("args", "terms"),
    [
        (["5", "100", "30"], PromoTerms(5, 100, 30)),
        (["1", "1", "1"], PromoTerms(1, 1, 1)),
        (["0", "1", "1"], None),
        (["101", "1", "1"], None),
        (["5", "0", "30"], None),
        (["5", "1", "367"], None),
        (["5", "1"], None),
        (["5", "1", "3", "4"], None),
        (["-5", "1", "3"], None),
        (["²", "1", "3"], None),  # a digit to str.isdigit, not to int()
        (["5", "1e3", "3"], None),
    ],
)
def test_promo_terms_are_three_bounded_positive_integers(args: list[str], terms: PromoTerms | None) -> None:
    assert parse_promo_terms(args) == terms


def test_a_promo_code_lasts_until_its_uses_or_its_date_run_out() -> None:
    expires = NOW + timedelta(days=1)
    assert promo_refusal(0, 2, expires, NOW) is None
    assert promo_refusal(2, 2, expires, NOW) == PromoRefusal.EXHAUSTED
    assert promo_refusal(0, 2, expires, expires) == PromoRefusal.EXPIRED


def test_never_a_self_invite() -> None:
    assert referral_allowed(2, 1)
    assert not referral_allowed(1, 1)
    assert not referral_allowed(1, None)


def test_given_credits_are_keyed_to_pay_once_and_keep_the_invariant() -> None:
    assert gift_line(4, 7) == LedgerLine(LedgerReason.GIFT, "gift:4", 7)
    assert promo_line("ABCDEFGHJK", 9, 5).reference == "promo:ABCDEFGHJK:9"
    assert referral_line(12, 3).reference == "referral:12"
    assert {LedgerReason.GIFT, LedgerReason.PROMO, LedgerReason.REFERRAL} <= CREDITING_REASONS
    with pytest.raises(ValueError, match="must add credits"):
        LedgerLine(LedgerReason.REFERRAL, "referral:1", -3)
    lines = [gift_line(1, 7), promo_line("ABCDEFGHJK", 1, 5), referral_line(2, 3), reserve_line(1, 15)]
    assert invariant_holds(lines)
    assert not invariant_holds([*lines, reserve_line(2, 1)])
