"""Money is never lost: the payment rails, end to end over real HTTP.

The real application against the fake Telegram and the fake YooKassa, driven through the bot's own
buttons (``tests.integration.test_payments`` has the shared steps). Each test ends with the ledger
re-derived from payments and jobs (``assert_ledger_balanced``, run by ``payment_app``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import Application
from storage.models import Payment, Refund
from studio.states import LedgerReason, OrderStatus, PaymentProviderName, PaymentStatus
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.integration.test_payments import (
    P7_STARS,
    REPLY_TIMEOUT,
    assert_one_paid_job,
    books,
    choose,
    has_text,
    paid_message,
    payment_app,
    pre_checkout_answer,
    tap,
    texts,
    to_summary,
    until,
)

ADMIN_ID = 900_777
REFUNDS_ROUTE = "POST /refunds"
TWICE = "You paid twice"


async def refunds_of(app: Application, payment_id: int) -> list[Refund]:
    async with app.sessionmaker() as session:
        rows = await session.execute(select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.id))
        return list(rows.scalars())


async def approved(fake: FakeTelegram, user: FakeUser, order_id: int, amount: int = P7_STARS) -> None:
    """The user confirms a Stars invoice: the pre-checkout is answered ok (the money is not taken yet)."""
    answer = await pre_checkout_answer(fake, await user.pre_checkout(f"order:{order_id}", "XTR", amount))
    assert answer["ok"] is True, answer


async def refusal(fake: FakeTelegram, user: FakeUser, order_id: int) -> dict[str, object]:
    """The user confirms a Stars invoice and the pre-checkout is refused (no money is taken)."""
    answer = await pre_checkout_answer(fake, await user.pre_checkout(f"order:{order_id}", "XTR", P7_STARS))
    assert answer["ok"] is False, answer
    return answer


def assert_returned(state: object, kept: Payment, returned: Payment, order_id: int) -> None:
    """One pack, bought by ``kept``; ``returned`` is booked as purchase + refund (balance unchanged)."""
    assert_one_paid_job_with_return(state, order_id)
    assert kept.status == PaymentStatus.SUCCEEDED
    assert returned.status == PaymentStatus.REFUNDED


def assert_one_paid_job_with_return(state: object, order_id: int) -> None:
    assert [job.order_id for job in state.jobs] == [order_id]  # type: ignore[attr-defined]
    assert sorted(state.lines(LedgerReason.PURCHASE)) == [7, 7]  # type: ignore[attr-defined]
    assert state.lines(LedgerReason.REFUND) == [-7]  # type: ignore[attr-defined]
    assert state.lines(LedgerReason.RESERVE) == [-7]  # type: ignore[attr-defined]
    assert sum(entry.delta for entry in state.ledger) == 0  # type: ignore[attr-defined]


# ---------------------------------------------------------------- one order, one payment


async def test_card_then_stars_returns_the_card_payment_once(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")  # the card page is opened, not finished
        await tap(user, "Telegram Stars")
        assert await user.pay() is not None  # the card payment is still pending: Stars is accepted
        await paid_message(user)
        [card] = kassa.payments

        with caplog.at_level(logging.ERROR, logger="scheduler.payments"):
            await kassa.pay(card)  # the user finishes the card page
            told = await user.wait_reply(has_text(TWICE), timeout=REPLY_TIMEOUT)
        assert "490 ₽" in told.content
        await kassa.notify(card)  # a repeated notification returns nothing more
        await kassa.wait_notifications()

        state = await books(app, user.id)
        stars, card_row = (
            next(p for p in state.payments if p.provider == PaymentProviderName.STARS),
            next(p for p in state.payments if p.provider == PaymentProviderName.YOOKASSA),
        )
        assert_returned(state, stars, card_row, order_id)
        [refund] = kassa.refunds.values()
        assert (refund["payment_id"], refund["amount"]["value"], refund["status"]) == (card, "490.00", "succeeded")
        [request] = kassa.requests_to(REFUNDS_ROUTE)
        assert request.idempotence_key == f"pg-return-{card_row.id}"
        [row] = await refunds_of(app, card_row.id)
        assert (row.status, row.provider_refund_id, row.reason) == ("succeeded", refund["id"], "duplicate")
        assert len(texts(fake_telegram, user, TWICE)) == 1
        assert len(texts(fake_telegram, user, "Payment received!")) == 1
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "returned" in r.getMessage()]
        assert len(logged) == 1 and str(card_row.id) in logged[0] and str(stars.id) in logged[0]


async def test_stars_then_card_returns_the_stars_payment_once(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        invoice = await choose(user, "Telegram Stars")
        await tap(user, "By card")
        # Offering the card retires the invoice in the chat; a payment form already open still works.
        await fake_telegram.wait_until(
            lambda: all(m.message_id != invoice.message_id for m in user.messages), timeout=REPLY_TIMEOUT
        )
        await approved(fake_telegram, user, order_id)  # Stars confirmed first ...
        await kassa.pay(next(iter(kassa.payments)))  # ... the card completes first
        await paid_message(user)
        charge = "stxSECOND"
        await user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, charge)
        told = await user.wait_reply(has_text(TWICE), timeout=REPLY_TIMEOUT)
        assert "250 ⭐" in told.content
        await fake_telegram.wait_until(lambda: fake_telegram.is_refunded(charge), timeout=REPLY_TIMEOUT)
        await user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, charge)  # redelivered
        await user.send_command("/paysupport")  # a round trip: the repeat is handled by now
        await user.wait_reply(has_text("Payment questions"), timeout=REPLY_TIMEOUT)

        state = await books(app, user.id)
        card = next(p for p in state.payments if p.provider == PaymentProviderName.YOOKASSA)
        stars = next(p for p in state.payments if p.provider_payment_id == charge)
        assert_returned(state, card, stars, order_id)
        assert len(fake_telegram.calls("refundStarPayment")) == 1
        assert len(texts(fake_telegram, user, TWICE)) == 1


async def test_two_stars_invoices_of_one_order_return_the_second_payment(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        await tap(user, "Telegram Stars")  # a second invoice for the same order
        await approved(fake_telegram, user, order_id)
        await approved(fake_telegram, user, order_id)  # both confirmed before either is paid
        # Updates are handled concurrently: whichever payment is settled first buys the order.
        await user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, "stxFIRST")
        await user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, "stxSECOND")
        await user.wait_reply(has_text(TWICE), timeout=REPLY_TIMEOUT)
        refunded = lambda: [c for c in ("stxFIRST", "stxSECOND") if fake_telegram.is_refunded(c)]  # noqa: E731
        await fake_telegram.wait_until(lambda: len(refunded()) == 1, timeout=REPLY_TIMEOUT)
        [returned_charge] = refunded()

        state = await books(app, user.id)
        returned = next(p for p in state.payments if p.provider_payment_id == returned_charge)
        kept = next(p for p in state.payments if p.provider_payment_id != returned_charge)
        assert_returned(state, kept, returned, order_id)
        assert len(fake_telegram.calls("refundStarPayment")) == 1
        assert len(texts(fake_telegram, user, TWICE)) == 1


async def test_pre_checkout_refuses_an_order_whose_card_payment_succeeded_unnoticed(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        await tap(user, "Telegram Stars")
        kassa.lose_notifications = True
        await kassa.pay(next(iter(kassa.payments)))  # paid, but the bot has not heard of it

        answer = await refusal(fake_telegram, user, order_id)
        assert "already paid" in answer["error_message"]
        await paid_message(user)  # the look at the card payment credited it
        assert_one_paid_job(await books(app, user.id), order_id)


# ---------------------------------------------------------------- Stars payments are durable


async def test_payment_right_after_a_burst_of_updates_is_credited(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, THROTTLE_UPDATES_PER_SECOND=3) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        for number in range(12):  # the whole burst allowance, spent at once
            await user.send_text(f"hello {number}")
        assert await user.pay() is not None  # pre-checkout and payment, both after the burst
        await paid_message(user)
        assert_one_paid_job(await books(app, user.id), order_id)


async def test_banned_payer_is_refused_at_pre_checkout_and_a_payment_is_returned(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, ADMIN_IDS=str(ADMIN_ID)) as (app, _kassa):
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        await approved(fake_telegram, user, order_id)  # confirmed before the ban
        await admin.send_command("/ban", str(user.id))
        await admin.wait_reply(has_text("is banned"), timeout=REPLY_TIMEOUT)

        refused = await refusal(fake_telegram, user, order_id)
        assert refused["ok"] is False and "restricted" in refused["error_message"]
        await user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, "stxBANNED")
        await user.wait_reply(has_text("being returned"), timeout=REPLY_TIMEOUT)
        await fake_telegram.wait_until(lambda: fake_telegram.is_refunded("stxBANNED"), timeout=REPLY_TIMEOUT)
        state = await books(app, user.id)
        [payment] = state.payments
        assert payment.status == PaymentStatus.REFUNDED and state.jobs == []
        assert (state.lines(LedgerReason.PURCHASE), state.lines(LedgerReason.REFUND)) == ([7], [-7])


async def test_a_payment_the_app_never_handled_is_credited_by_the_stars_reconcile(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, POLL_INTERVAL_SECONDS=0.5) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        await approved(fake_telegram, user, order_id)
        [intent] = (await books(app, user.id)).payments  # recorded at pre-checkout
        assert (intent.provider, intent.status, intent.provider_payment_id) == ("stars", "pending", None)
        assert intent.amount == P7_STARS

        charge = user.charge(f"order:{order_id}", "XTR", P7_STARS)  # taken; the update never arrives
        await paid_message(user)
        state = await books(app, user.id)
        assert_one_paid_job(state, order_id)
        [payment] = state.payments
        assert (payment.id, payment.provider_payment_id, payment.status) == (intent.id, charge, "succeeded")
        assert not fake_telegram.is_refunded(charge)


async def test_a_wrong_amount_is_returned_and_told_never_left_pending(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, POLL_INTERVAL_SECONDS=0.5) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "Telegram Stars")
        charge = user.charge(f"order:{order_id}", "XTR", P7_STARS - 50)  # seen only by the reconcile
        told = await user.wait_reply(has_text("does not match"), timeout=REPLY_TIMEOUT)
        assert "200 ⭐" in told.content
        await fake_telegram.wait_until(lambda: fake_telegram.is_refunded(charge), timeout=REPLY_TIMEOUT)
        state = await books(app, user.id)
        assert [p.status for p in state.payments] == [PaymentStatus.REFUNDED]
        assert state.jobs == [] and sum(entry.delta for entry in state.ledger) == 0
        assert next(o for o in state.orders if o.id == order_id).status == OrderStatus.AWAITING_PAYMENT


# ---------------------------------------------------------------- selfies gone


async def test_forget_cancels_unpaid_orders_and_a_late_payment_is_returned(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        await tap(user, "Telegram Stars")
        await approved(fake_telegram, user, order_id)  # an invoice confirmed before /forget

        await user.send_command("/forget")
        await user.wait_reply(has_text("Delete all your selfies"), timeout=REPLY_TIMEOUT)
        await user.click("Yes, delete them")
        await fake_telegram.wait_until(
            lambda: any("unpaid orders are cancelled" in m.content for m in user.messages), timeout=REPLY_TIMEOUT
        )
        refused = await refusal(fake_telegram, user, order_id)
        assert refused["ok"] is False

        await kassa.pay(next(iter(kassa.payments)))  # the card page finished anyway
        await user.wait_reply(has_text("were deleted, so the payment of 490 ₽"), timeout=REPLY_TIMEOUT)
        await user.successful_payment(f"order:{order_id}", "XTR", P7_STARS, "stxLATE")  # and the old invoice
        await fake_telegram.wait_until(lambda: fake_telegram.is_refunded("stxLATE"), timeout=REPLY_TIMEOUT)

        state = await books(app, user.id)
        assert state.jobs == []
        assert sorted(p.status for p in state.payments) == [PaymentStatus.REFUNDED, PaymentStatus.REFUNDED]
        assert sorted(state.lines(LedgerReason.REFUND)) == [-7, -7] and sum(e.delta for e in state.ledger) == 0
        assert len(kassa.refunds) == 1


# ---------------------------------------------------------------- refunds


async def test_admin_refund_keeps_its_id_and_a_later_notification_takes_the_credits(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, ADMIN_IDS=str(ADMIN_ID)) as (app, kassa):
        admin = fake_telegram.user(ADMIN_ID, language_code="en")
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        await kassa.pay(next(iter(kassa.payments)))
        await paid_message(user)
        await user.click("Cancel the order")  # the 7 credits are on the balance again
        await user.wait_reply(has_text("credits are back"), timeout=REPLY_TIMEOUT)
        payment_id = (await books(app, user.id)).payments[0].id

        kassa.refund_outcome = "pending"
        await admin.send_command("/refund", str(payment_id))
        await admin.wait_reply(has_text("in progress (pending)"), timeout=REPLY_TIMEOUT)
        kassa.forget_idempotence_keys()  # a day later: the key would now make a second refund
        await admin.send_command("/refund", str(payment_id))
        await admin.wait_reply(has_text("in progress (pending)"), timeout=REPLY_TIMEOUT)
        assert len(kassa.requests_to(REFUNDS_ROUTE)) == 1 and len(kassa.refunds) == 1
        [refund_id] = kassa.refunds
        [row] = await refunds_of(app, payment_id)
        assert (row.provider_refund_id, row.status) == (refund_id, "pending")

        await kassa.settle_refund(refund_id, "succeeded")  # refund.succeeded reaches the bot
        await kassa.wait_notifications()

        async def taken_back() -> bool:
            return (await books(app, user.id)).lines(LedgerReason.REFUND) == [-7]

        await until(taken_back, what="the refund's credits taken back")
        state = await books(app, user.id)
        assert state.payments[0].status == PaymentStatus.REFUNDED
        assert sum(entry.delta for entry in state.ledger) == 0
        assert (await refunds_of(app, payment_id))[0].status == "succeeded"
        assert next(o for o in state.orders if o.id == order_id).status == OrderStatus.PAID


async def test_a_refund_notification_yookassa_does_not_know_is_answered_200_and_changes_nothing(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    # Found by the endpoint fuzz test: the re-fetch's 404 was answered 500, so the sender retried.
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        await to_summary(app, user)
        await choose(user, "By card")
        await kassa.pay(next(iter(kassa.payments)))
        await paid_message(user)
        before = await books(app, user.id)
        [card] = kassa.payments
        unknown_refund = "d95bafc8-f2a4-d27b-dcf4-bb99f4bea973"
        calls_before = len(kassa.requests)
        async with aiohttp.ClientSession() as client:
            # A refund of a payment we never created is not even fetched...
            strangers = {
                "id": unknown_refund,
                "status": "succeeded",
                "payment_id": "2419a771-000f-5000-9000-000000000000",
            }
            body = {"type": "notification", "event": "refund.succeeded", "object": strangers}
            async with client.post(kassa.webhook_url or "", json=body) as response:
                assert response.status == 200
            assert len(kassa.requests) == calls_before
            body["object"] = {"id": unknown_refund, "status": "succeeded"}  # nor one naming no payment
            async with client.post(kassa.webhook_url or "", json=body) as response:
                assert response.status == 200
            assert len(kassa.requests) == calls_before
            # ... and one YooKassa does not know, naming our payment, is fetched once and ignored.
            body["object"] = {"id": unknown_refund, "status": "succeeded", "payment_id": card}
            async with client.post(kassa.webhook_url or "", json=body) as response:
                assert response.status == 200
        assert len(kassa.requests) == calls_before + 1
        after = await books(app, user.id)
        assert [(e.id, e.delta) for e in after.ledger] == [(e.id, e.delta) for e in before.ledger]
        assert [(p.id, p.status) for p in after.payments] == [(p.id, p.status) for p in before.payments]
        assert not await refunds_of(app, before.payments[0].id)


async def test_dashboard_refund_seen_by_reconcile_takes_the_credits_back(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path, POLL_INTERVAL_SECONDS=0.5) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        await to_summary(app, user)
        await choose(user, "By card")
        [card] = kassa.payments
        await kassa.pay(card)
        await paid_message(user)
        await user.click("Cancel the order")
        await user.wait_reply(has_text("credits are back"), timeout=REPLY_TIMEOUT)

        kassa.lose_notifications = True  # only the reconcile can see it
        await kassa.dashboard_refund(card)

        async def taken_back() -> bool:
            state = await books(app, user.id)
            return state.lines(LedgerReason.REFUND) == [-7] and state.payments[0].status == PaymentStatus.REFUNDED

        await until(taken_back, what="the dashboard refund taken in")
        [row] = await refunds_of(app, (await books(app, user.id)).payments[0].id)
        assert (row.reason, row.status) == ("provider", "succeeded")


async def test_dashboard_refund_notification_stops_the_queued_pack_and_takes_its_credits(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    async with payment_app(fake_telegram, database_url, tmp_path) as (app, kassa):
        user = fake_telegram.user(language_code="en")
        await to_summary(app, user)
        await choose(user, "By card")
        [card] = kassa.payments
        await kassa.pay(card)
        await paid_message(user)  # the job holds all 7 credits
        await kassa.dashboard_refund(card)
        await kassa.wait_notifications()

        async def refunded() -> bool:
            return (await books(app, user.id)).payments[0].status == PaymentStatus.REFUNDED

        await until(refunded, what="the dashboard refund notification handled")
        # Money back never comes with the pack too: the queued job gives its credits back first.
        state = await books(app, user.id)
        assert state.lines(LedgerReason.REFUND) == [-7] and sum(e.delta for e in state.ledger) == 0


async def test_canceled_refund_is_reported_to_admins(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = {"ADMIN_IDS": str(ADMIN_ID), "POLL_INTERVAL_SECONDS": 0.5}
    async with payment_app(fake_telegram, database_url, tmp_path, **overrides) as (app, kassa):
        fake_telegram.user(ADMIN_ID, language_code="en")
        user = fake_telegram.user(language_code="en")
        order_id = await to_summary(app, user)
        await choose(user, "By card")
        await tap(user, "Telegram Stars")
        assert await user.pay() is not None
        await paid_message(user)
        kassa.refund_outcome = "pending"
        [card] = kassa.payments
        await kassa.pay(card)  # a second payment: returned, and the refund stays pending
        await user.wait_reply(has_text(TWICE), timeout=REPLY_TIMEOUT)
        [refund_id] = kassa.refunds

        with caplog.at_level(logging.ERROR, logger="scheduler.payments"):
            await kassa.settle_refund(refund_id, "canceled")  # no event for this: the poll finds it
            await fake_telegram.wait_for_message(ADMIN_ID, has_text("CANCELED"), timeout=REPLY_TIMEOUT)
        assert any("REFUND CANCELED" in record.getMessage() for record in caplog.records)
        card_row = next(p for p in (await books(app, user.id)).payments if p.provider == "yookassa")
        [row] = await refunds_of(app, card_row.id)
        assert (row.status, row.provider_refund_id) == ("canceled", refund_id)
        assert len(kassa.refunds) == 1  # one refund at YooKassa: looked up since, never made again
        assert {r.idempotence_key for r in kassa.requests_to(REFUNDS_ROUTE)} == {f"pg-return-{card_row.id}"}
        assert_one_paid_job_with_return(await books(app, user.id), order_id)
