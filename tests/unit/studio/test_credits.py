from __future__ import annotations

import pytest

from studio.catalogue import Catalogue, load_catalogue
from studio.credits import (
    REFERENCE_MAX_CHARS,
    Currency,
    LedgerLine,
    balance,
    can_apply,
    check_invariant,
    format_price,
    grant_line,
    invariant_holds,
    price_for,
    purchase_line,
    refund_line,
    release_line_for_cancel,
    release_line_for_stop,
    release_line_for_task,
    reserve_line,
    totals_by_reason,
    trial_line,
)
from studio.states import LedgerReason


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def test_each_line_has_its_reason_reference_and_sign() -> None:
    assert purchase_line(17, 23) == LedgerLine(LedgerReason.PURCHASE, "payment:17", 23)
    assert trial_line(5, 3) == LedgerLine(LedgerReason.TRIAL, "trial:user:5", 3)
    assert grant_line(9, 4, "sorry for the outage") == LedgerLine(
        LedgerReason.GRANT, "grant:9", 4, "sorry for the outage"
    )
    assert reserve_line(101, 23) == LedgerLine(LedgerReason.RESERVE, "job:101", -23)
    assert release_line_for_task(5555) == LedgerLine(LedgerReason.RELEASE, "task:5555", 1)
    assert release_line_for_cancel(101, 23) == LedgerLine(LedgerReason.RELEASE, "cancel:job:101", 23)
    assert refund_line(17, 23) == LedgerLine(LedgerReason.REFUND, "refund:payment:17", -23)


def test_references_are_unique_per_event_and_repeat_for_the_same_event() -> None:
    lines = [
        purchase_line(1, 7),
        purchase_line(2, 7),
        trial_line(1, 3),
        trial_line(2, 3),
        grant_line(1, 2, None),
        reserve_line(1, 7),
        reserve_line(2, 7),
        release_line_for_task(1),
        release_line_for_task(2),
        release_line_for_cancel(1, 7),
        refund_line(1, 7),
    ]
    keys = [(line.reason, line.reference) for line in lines]
    assert len(set(keys)) == len(keys)
    # References alone are distinct too, so a mixed-up reason cannot hide a collision.
    assert len({line.reference for line in lines}) == len(lines)
    # A duplicate notification or a second trial yields the same key, which the UNIQUE index rejects.
    assert (purchase_line(1, 7).reason, purchase_line(1, 7).reference) in keys
    assert trial_line(1, 3).reference == trial_line(1, 5).reference


def test_provider_payment_ids_fit_the_reference_column() -> None:
    yookassa_id = "2d8e3c9a-000f-5000-9000-1b68e7b15f3f"
    assert purchase_line(yookassa_id, 7).reference == f"payment:{yookassa_id}"
    longest = "x" * (REFERENCE_MAX_CHARS - len("refund:payment:"))
    assert len(refund_line(longest, 1).reference) == REFERENCE_MAX_CHARS
    with pytest.raises(ValueError):
        refund_line(longest + "x", 1)


@pytest.mark.parametrize("photos", [0, -3, True])
def test_line_needs_a_positive_number_of_photos(photos: int) -> None:
    with pytest.raises(ValueError):
        purchase_line(1, photos)
    with pytest.raises(ValueError):
        reserve_line(1, photos)


def test_line_sign_must_match_its_reason() -> None:
    with pytest.raises(ValueError):
        LedgerLine(LedgerReason.RESERVE, "job:1", 5)
    with pytest.raises(ValueError):
        LedgerLine(LedgerReason.PURCHASE, "payment:1", -5)
    with pytest.raises(ValueError):
        grant_line(1, 1, "n" * 256)


def test_a_whole_customer_story_keeps_the_invariant() -> None:
    trial, paid_job, skipped_task = 3, 23, 2
    lines = [trial_line(1, trial), reserve_line(10, trial)]
    lines += [purchase_line(50, paid_job), reserve_line(11, paid_job)]
    lines += [release_line_for_task(task_id) for task_id in range(skipped_task)]
    lines += [grant_line(1, 5, "bonus"), reserve_line(12, 5), release_line_for_cancel(12, 5)]
    assert balance(lines) == skipped_task + 5
    totals = totals_by_reason(lines)
    assert totals[LedgerReason.RESERVE] == trial + paid_job + 5
    assert totals[LedgerReason.RELEASE] == skipped_task + 5
    assert invariant_holds(lines)

    refund = refund_line(50, 23)
    assert not can_apply(balance(lines), refund)  # the credits were already spent
    assert not invariant_holds([*lines, refund])
    assert can_apply(balance(lines), refund_line(50, balance(lines)))


@pytest.mark.parametrize(
    ("totals", "result"),
    [
        ((15, 3, 2, 18, 1, 0, 3), True),
        ((15, 3, 2, 18, 1, 0, 4), False),  # the sum does not match
        ((7, 0, 0, 0, 0, 10, -3), False),  # refunded more than was left
        ((7, 0, 0, 0, 1, 0, 8), False),  # released without a reservation
        ((7, 0, -1, 0, 0, 0, 6), False),  # totals are magnitudes
        ((0, 0, 0, 0, 0, 0, 0), True),
    ],
)
def test_check_invariant(totals: tuple[int, ...], result: bool) -> None:
    purchased, trial, granted, reserved, released, refunded, current = totals
    assert check_invariant(purchased, trial, granted, reserved, released, refunded, current) is result


def test_prices_come_from_the_pack(catalogue: Catalogue) -> None:
    p7, trial = catalogue.pack("p7"), catalogue.pack("trial")
    assert price_for(p7, Currency.RUB) == p7.price_rub_kopecks == 49000
    assert price_for(p7, "XTR") == p7.price_stars == 250
    assert price_for(trial, Currency.RUB) == 0 and price_for(trial, Currency.STARS) == 0
    with pytest.raises(ValueError):
        price_for(p7, "USD")


@pytest.mark.parametrize(
    ("amount", "currency", "lang", "text"),
    [
        (49000, Currency.RUB, "ru", "490 ₽"),
        (49000, Currency.RUB, "en", "490 ₽"),
        (49050, Currency.RUB, "ru", "490,50 ₽"),
        (49005, Currency.RUB, "en", "490.05 ₽"),
        (129000, Currency.RUB, "ru", "1290 ₽"),
        (129000, Currency.RUB, "en", "1,290 ₽"),
        (1500000, Currency.RUB, "ru", "15 000 ₽"),
        (250, Currency.STARS, "ru", "250 ⭐"),
        (1500, "XTR", "en", "1,500 ⭐"),
        (0, Currency.RUB, "ru", "0 ₽"),
    ],
)
def test_format_price(amount: int, currency: Currency | str, lang: str, text: str) -> None:
    assert format_price(amount, currency, lang) == text


def test_format_price_refuses_negative_amounts() -> None:
    with pytest.raises(ValueError):
        format_price(-1, Currency.RUB, "ru")


def test_a_stopped_job_gives_back_its_unstarted_credits_once() -> None:
    assert release_line_for_stop(101, 7) == LedgerLine(LedgerReason.RELEASE, "stop:job:101", 7)
    assert release_line_for_stop(101, 3).reference == release_line_for_stop(101, 7).reference
    with pytest.raises(ValueError, match="positive integer"):
        release_line_for_stop(101, 0)


@pytest.mark.parametrize(
    ("reason", "reference", "delta", "note", "message"),
    [
        (LedgerReason.PURCHASE, "", 1, None, "a ledger reference has 1..128 characters: ''"),
        (LedgerReason.PURCHASE, "payment:1", 1, "n" * 256, "a ledger note has at most 255 characters"),
        (LedgerReason.PURCHASE, "payment:1", 0, None, "a purchase line must add credits, got 0"),
        (LedgerReason.RELEASE, "task:1", 0, None, "a release line must add credits, got 0"),
        (LedgerReason.RESERVE, "job:1", 0, None, "a reserve line must take credits, got 0"),
        (LedgerReason.REFUND, "refund:payment:1", 0, None, "a refund line must take credits, got 0"),
    ],
)
def test_a_line_that_moves_nothing_or_the_wrong_way_is_refused_with_the_reason(
    reason: LedgerReason, reference: str, delta: int, note: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        LedgerLine(reason, reference, delta, note)


def test_a_note_of_exactly_the_column_width_is_kept() -> None:
    assert grant_line(1, 1, "n" * 255).note == "n" * 255


def test_a_refund_counts_against_the_balance_in_the_invariant() -> None:
    assert check_invariant(10, 0, 0, 0, 0, 4, 6)
    assert not check_invariant(10, 0, 0, 0, 0, 4, 14)


def test_a_negative_price_is_refused_with_the_amount() -> None:
    with pytest.raises(ValueError, match=r"^a price is never negative, got -1$"):
        format_price(-1, Currency.RUB, "ru")


@pytest.mark.parametrize(
    ("lang", "text"), [("en-US", "1,290 ₽"), ("EN", "1,290 ₽"), ("ru-RU", "1290 ₽"), (None, "1290 ₽")]
)
def test_the_language_tag_decides_the_number_style(lang: str | None, text: str) -> None:
    assert format_price(129000, Currency.RUB, lang) == text


def test_russian_grouping_starts_at_ten_thousand() -> None:
    assert format_price(999900, Currency.RUB, "ru") == "9999 ₽"
    assert format_price(1000000, Currency.RUB, "ru") == "10 000 ₽"


@pytest.mark.parametrize("photos", [2.5, "3"])
def test_a_number_of_photos_is_a_whole_number(photos: object) -> None:
    with pytest.raises(ValueError, match=f"^a number of photos is a positive integer, got {photos!r}$"):
        purchase_line(1, photos)  # type: ignore[arg-type]  # the wrong type is the point
