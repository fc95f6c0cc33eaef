"""Gifts and promo codes over real HTTP (fake Telegram): a gift bought with Stars, opened once by
someone else; its buyer and later openers get a clear answer; a gift taken back is refunded with
refundStarPayment and cannot be opened; two openers at the same moment: exactly one wins."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bot.app import Application
from bot.callbacks import GiftAction, GiftCb
from bot.web import YOOKASSA_PATH
from providers.stars import StarsPayments
from storage import ledger
from storage.models import Event, Gift, Payment, Refund, User
from studio.gifts import GiftRefundRefusal, GiftRefusal, GiftStatus, PromoRefusal, PromoTerms
from studio.states import PaymentStatus
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.fakes.yookassa import FakeYooKassa
from tests.harness import app_settings, callback_answer, running_app

GIFT_LINK = re.compile(r"start=gift_([A-Z0-9]+)")


async def _user_row(app: Application, telegram_id: int) -> User:
    async with app.sessionmaker() as session:
        return (await session.execute(select(User).where(User.telegram_id == telegram_id))).scalar_one()


async def _balance(app: Application, telegram_id: int) -> int:
    user = await _user_row(app, telegram_id)
    async with app.sessionmaker() as session:
        return await ledger.balance(session, user.id)


async def _buy_gift(fake: FakeTelegram, buyer: FakeUser, *, update_lost: bool = False) -> str:
    """/gift → the 7-photo pack → Stars → pay the invoice; returns the code from the paid message.
    ``update_lost``: Telegram takes the Stars but the ``successful_payment`` update never arrives."""
    invoices = sum(m.kind == "invoice" for m in buyer.messages)
    await buyer.send_command("gift")
    await buyer.wait_reply(lambda m: "Which pack" in m.content)
    await buyer.click("7 photos")
    await buyer.wait_reply(lambda m: "A gift of 7 photos" in m.content)
    await buyer.click("Telegram Stars")
    await fake.wait_until(lambda: sum(m.kind == "invoice" for m in buyer.messages) > invoices)
    if update_lost:
        invoice = [m for m in buyer.messages if m.kind == "invoice"][-1]
        buyer.charge(invoice.invoice_payload or "", "XTR", invoice.raw["invoice"]["total_amount"])
    else:
        assert await buyer.pay() is not None
    paid = await buyer.wait_reply(lambda m: "gift of 7 photos is paid" in m.content, timeout=10)
    match = GIFT_LINK.search(paid.content)
    assert match is not None, paid.content
    assert any("Refund" in button["text"] for button in paid.buttons)
    return match.group(1)


async def test_a_gift_bought_with_stars_credits_its_first_opener_once_and_a_refunded_one_nobody(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    buyer = fake_telegram.user(language_code="en")
    # A poll interval of 1 s: the Stars reconcile looks at charges older than half of it, every second.
    settings = app_settings(
        fake_telegram, sqlite_url, tmp_path / "files", ADMIN_IDS=str(buyer.id), POLL_INTERVAL_SECONDS=1
    )
    async with running_app(settings) as app:
        friend, stranger = fake_telegram.user(language_code="en"), fake_telegram.user(language_code="ru")
        code = await _buy_gift(fake_telegram, buyer)
        assert f"t.me/{fake_telegram.me['username']}?start=gift_{code}" in buyer.messages[-1].content

        # The buyer's own link: explained, nothing moves (and the refund stays possible).
        await buyer.send_command("start", f"gift_{code}")
        await buyer.wait_reply(lambda m: "your own gift" in m.content)
        assert await _balance(app, buyer.id) == 0

        await friend.send_command("start", f"gift_{code}")
        await friend.wait_reply(lambda m: "7 credits are on your balance" in m.content)
        assert await _balance(app, friend.id) == 7
        # Again, by the opener or by anyone else: nothing more.
        await friend.send_command("start", f"gift_{code}")
        await friend.wait_reply(lambda m: "already opened this gift" in m.content)
        await stranger.send_command("start", f"gift_{code.lower()}")  # typed in lower case: the same code
        await stranger.wait_reply(lambda m: "уже открыл другой" in m.content)
        await stranger.send_command("start", "gift_NOSUCHCODE")
        await stranger.wait_reply(lambda m: "Такого подарка нет" in m.content)
        assert await _balance(app, friend.id) == 7 and await _balance(app, stranger.id) == 0

        # An opened gift cannot be taken back.
        refund_query = await buyer.click("Refund")
        assert "already been opened" in (await callback_answer(fake_telegram, refund_query))["text"]

        # A second gift, taken back before anyone opens it: Stars refunded, the link is dead.
        second = await _buy_gift(fake_telegram, buyer)
        # /gift lists what is still unopened (the paid message may have been lost): this one only.
        await buyer.send_command("gift")
        waiting = await buyer.wait_reply(lambda m: "not opened yet" in m.content)
        assert second in waiting.content and code not in waiting.content
        await buyer.click("Refund")
        await buyer.wait_reply(lambda m: "The gift is cancelled" in m.content)
        async with app.sessionmaker() as session:
            gift = (await session.execute(select(Gift).where(Gift.code == second))).scalar_one()
            payment = await session.get(Payment, gift.payment_id)
            assert gift.status == GiftStatus.REFUNDED and payment is not None
            assert payment.status == PaymentStatus.REFUNDED
        assert fake_telegram.is_refunded(payment.provider_payment_id or "")
        await stranger.send_command("start", f"gift_{second}")
        await stranger.wait_reply(lambda m: "отменил этот подарок" in m.content)
        assert await _balance(app, stranger.id) == 0 and await _balance(app, buyer.id) == 0
        # The refund button again (its message lost its buttons; a stale copy of it): nothing moves twice.
        stale = GiftCb(action=GiftAction.REFUND, gift_id=gift.id).pack()
        again = await buyer.press_button(buyer.messages[-1].message_id, stale)
        assert "already been refunded" in (await callback_answer(fake_telegram, again))["text"]

        # A gift whose successful_payment update was lost: the Stars reconcile opens it all the same.
        third = await _buy_gift(fake_telegram, buyer, update_lost=True)
        await friend.send_command("start", f"gift_{third}")
        await friend.wait_reply(lambda m: "(14 in all)" in m.content)

        # An admin's promo code for two users, by command and by link, each once.
        await buyer.send_command("promo", "new 0 2 30")
        await buyer.wait_reply(lambda m: "Usage: /promo new" in m.content)
        await buyer.send_command("promo", "new 5 2 30")
        minted = await buyer.wait_reply(lambda m: "Promo code" in m.content)
        promo = re.search(r"start=promo_([A-Z0-9]+)", minted.content)
        assert promo is not None
        await friend.send_command("promo", promo.group(1).lower())
        await friend.wait_reply(lambda m: "+5 credits (19 on your balance)" in m.content)
        await friend.send_command("promo", promo.group(1))
        await friend.wait_reply(lambda m: "already used this promo code" in m.content)
        await stranger.send_command("start", f"promo_{promo.group(1)}")
        await stranger.wait_reply(lambda m: "Промокод принят: +5 кредитов" in m.content)
        await buyer.send_command("promo", promo.group(1))
        await buyer.wait_reply(lambda m: "has been used up" in m.content)
        await buyer.send_command("promo", "nonsense!")
        await buyer.wait_reply(lambda m: "no such promo code" in m.content)

        async with app.sessionmaker() as session:
            names = dict((await session.execute(select(Event.name, func.count()).group_by(Event.name))).all())
            started = await session.execute(
                select(Event.properties).where(
                    Event.name == "user_started", Event.user_id == (await _user_row(app, friend.id)).id
                )
            )
            assert [properties["source"] for properties in started.scalars()] == ["gift"]
        assert names.get("gift_bought") == 3 and names.get("gift_redeemed") == 2 and names.get("promo_redeemed") == 2


async def test_two_openers_at_once_one_wins_and_promo_codes_count_per_user(
    fake_telegram: FakeTelegram, database_url: str, tmp_path: Path
) -> None:
    """Through the service the handlers call, on SQLite and PostgreSQL: the conditional UPDATE decides."""
    settings = app_settings(fake_telegram, database_url, tmp_path / "files")
    async with running_app(settings) as app:
        buyer = fake_telegram.user(language_code="en")
        code = await _buy_gift(fake_telegram, buyer)
        openers = [fake_telegram.user(language_code="en") for _ in range(4)]
        for opener in openers:
            await opener.send_command("start")
            await opener.wait_reply(lambda m: "New photo session" in str(m.buttons))
        rows = [await _user_row(app, opener.id) for opener in openers]
        outcomes = await asyncio.gather(*(app.gifts.redeem(row, code) for row in rows))
        assert sorted(outcome.photos for outcome in outcomes) == [0, 0, 0, 7]
        assert sorted(str(outcome.refusal) for outcome in outcomes if outcome.refusal) == [GiftRefusal.TAKEN] * 3
        # The buyer's refund racing an opener of a fresh gift: one of them, never both.
        fresh = await _buy_gift(fake_telegram, buyer)
        buyer_row = await _user_row(app, buyer.id)
        async with app.sessionmaker() as session:
            gift_id = (await session.execute(select(Gift.id).where(Gift.code == fresh))).scalar_one()
        opened, refused = await asyncio.gather(app.gifts.redeem(rows[0], fresh), app.gifts.refund(buyer_row, gift_id))
        assert (opened.photos == 7) != (refused is None), (opened, refused)

        # 14 days to take a gift back, counted in the database; only by its buyer.
        late = await _buy_gift(fake_telegram, buyer)
        async with app.sessionmaker() as session:
            late_id = (await session.execute(select(Gift.id).where(Gift.code == late))).scalar_one()
        now = datetime.now(UTC)
        assert await app.gifts.refund(rows[1], late_id) == GiftRefundRefusal.UNKNOWN
        assert (
            await app.gifts.refund(buyer_row, late_id, now + timedelta(days=14, minutes=1))
            == GiftRefundRefusal.TOO_LATE
        )
        assert await app.gifts.refund(buyer_row, late_id, now + timedelta(days=13)) is None

        # An admin's refund of an opened gift's payment takes the credits back from the opener, not the buyer.
        winner_row = rows[[outcome.photos for outcome in outcomes].index(7)]
        async with app.sessionmaker() as session:
            payment_id = (await session.execute(select(Gift.payment_id).where(Gift.code == code))).scalar_one()
        assert payment_id is not None
        before = await _balance(app, winner_row.telegram_id)  # 7, or 14 if they also won the race above
        assert await app.payments.refund_stars(payment_id, StarsPayments(app.bot)) is True
        assert await _balance(app, winner_row.telegram_id) == before - 7 and await _balance(app, buyer.id) == 0

        # A promo code for 2 users: once per user, then used up.
        admin = await _user_row(app, buyer.id)
        minted = await app.gifts.mint_promo(admin.telegram_id, PromoTerms(photos=5, uses=2, days=30))
        first = await asyncio.gather(*(app.gifts.redeem_promo(row, minted.code) for row in rows[1:4]))
        assert sorted(outcome.photos for outcome in first) == [0, 5, 5]
        assert [o.refusal for o in first if o.refusal] == [PromoRefusal.EXHAUSTED]
        winner = next(row for row, outcome in zip(rows[1:4], first, strict=True) if outcome.photos)
        assert (await app.gifts.redeem_promo(winner, minted.code)).refusal == PromoRefusal.USED
        # Expired: refused with nothing kept, so the same user can still use it while it lasts.
        short = await app.gifts.mint_promo(admin.telegram_id, PromoTerms(photos=2, uses=5, days=1))
        expired = await app.gifts.redeem_promo(winner, short.code, now + timedelta(days=1, minutes=1))
        assert expired.refusal == PromoRefusal.EXPIRED
        assert (await app.gifts.redeem_promo(winner, short.code)).photos == 2


async def test_a_gift_paid_by_card_is_refunded_at_yookassa_and_its_link_dies(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """The card rail: the same order, payment and notification path as a pack; the refund is a YooKassa
    refund of the whole payment, recorded once (its notification changes nothing more)."""
    async with FakeYooKassa() as kassa:
        settings = app_settings(
            fake_telegram,
            sqlite_url,
            tmp_path / "files",
            **kassa.app_settings(),
        )
        kassa.webhook_url = f"http://127.0.0.1:{settings.WEB_PORT}{YOOKASSA_PATH}"
        async with running_app(settings) as app:
            buyer, friend = fake_telegram.user(language_code="ru"), fake_telegram.user(language_code="en")
            await buyer.send_command("gift")
            await buyer.wait_reply(lambda m: "Какой пакет подарить" in m.content)
            await buyer.click("7 фото")
            await buyer.wait_reply(lambda m: "Telegram Stars" in str(m.buttons) and "Картой" in str(m.buttons))
            await buyer.click("Картой")
            await buyer.wait_reply(lambda m: "Проверить оплату" in str(m.buttons))
            [provider_id] = list(kassa.payments)
            await kassa.pay(provider_id)
            paid = await buyer.wait_reply(lambda m: "Подарок оплачен" in m.content, timeout=10)
            match = GIFT_LINK.search(paid.content)
            assert match is not None
            await buyer.send_command("status")
            await buyer.wait_reply(lambda m: "Подарок №" in m.content and "/gift" in m.content)
            await buyer.click("Вернуть деньги")
            await buyer.wait_reply(lambda m: "Подарок отменён" in m.content)
            [refund] = kassa.refunds.values()
            assert refund["payment_id"] == provider_id and refund["amount"]["value"] == "490.00"
            await kassa.wait_notifications()
            await friend.send_command("start", f"gift_{match.group(1)}")
            await friend.wait_reply(lambda m: "The sender has cancelled this gift" in m.content)
            assert await _balance(app, friend.id) == 0 and await _balance(app, buyer.id) == 0
            async with app.sessionmaker() as session:
                [row] = (await session.execute(select(Refund))).scalars().all()
                assert (row.status, row.reason, row.provider_refund_id) == ("succeeded", "gift", refund["id"])
