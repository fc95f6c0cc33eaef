"""Old buttons, over real HTTP: for a message older than ~48 h Telegram sends the callback query with
an InaccessibleMessage (date 0; the fake does the same for a message the bot cannot see). Every
button must still answer its query and do its work, replying with a new message instead of an edit."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from bot.app import Application
from bot.callbacks import ForgetCb, JobCb, OrderCb, PayCb, ResultsCb, SpendCb
from storage import jobs as job_queries
from storage.models import GenerationJob, Order, ReferencePhoto
from studio.states import JobStatus
from tests.engine_support import seed_paid_job, seed_unpaid_order
from tests.fakes.telegram import FakeTelegram, FakeUser
from tests.harness import app_settings, callback_answer, running_app
from tests.integration.test_payments import payment_app

OLD_MESSAGE_ID = 424_242  # a message the bot can no longer see


async def _press_old(fake: FakeTelegram, user: FakeUser, data: str) -> None:
    query_id = await user.press_button(OLD_MESSAGE_ID, data)
    await callback_answer(fake, query_id)  # answered, whatever else happens


async def _order_of(app: Application, order_id: int) -> Order:
    async with app.sessionmaker() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        return order


async def test_old_pay_and_pay_again_buttons_work(fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path) -> None:
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
        await _press_old(fake_telegram, user, OrderCb(order_id=order_id, action="pay").pack())
        choice = await user.wait_reply(lambda m: "How would you like to pay" in m.content, timeout=10)
        assert any("Stars" in b["text"] for b in choice.buttons)
        await _press_old(fake_telegram, user, PayCb(order_id=order_id, method="stars").pack())
        await fake_telegram.wait_for(lambda call: call.method == "sendInvoice", timeout=10)
        await _press_old(fake_telegram, user, PayCb(order_id=order_id, method="yookassa").pack())
        await user.wait_reply(lambda m: any(b.get("url") for b in m.buttons), timeout=10)


async def test_old_cancel_and_use_credits_buttons_work(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    # No image provider: the paid job waits in the queue until it is cancelled.
    async with running_app(app_settings(fake_telegram, sqlite_url, tmp_path / "files")) as app:
        user = fake_telegram.user(language_code="en")
        job_id = await seed_paid_job(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id, pack="p7")
        await _press_old(fake_telegram, user, JobCb(job_id=job_id, action="cancel").pack())
        notice = await user.wait_reply(lambda m: "order is cancelled" in m.content, timeout=10)
        assert [b["text"] for b in notice.buttons] == ["🎁 Use 7 credits"]
        await _press_old(fake_telegram, user, ResultsCb(job_id=job_id, action="credits").pack())
        await user.wait_reply(lambda m: "7 portraits are queued" in m.content, timeout=10)
        async with app.sessionmaker() as session:
            source = await session.get(GenerationJob, job_id)
            assert source is not None and source.status == JobStatus.CANCELLED
            jobs = await session.scalar(select(func.count()).where(GenerationJob.user_id == source.user_id))
            assert jobs == 2
            # The new pack is cancelled too, so the old picker's spend button has credits to spend.
            newest = await session.scalar(select(func.max(GenerationJob.id)))
            assert newest is not None and await job_queries.cancel_queued_job(session, newest)
            await session.commit()
        data = SpendCb(avatar_id=source.avatar_id or 0, style="professional", photos=7).pack()
        await _press_old(fake_telegram, user, data)
        await user.wait_reply(lambda m: "7 portraits are queued" in m.content, timeout=10)


async def test_an_old_forget_button_works(fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path) -> None:
    async with running_app(app_settings(fake_telegram, sqlite_url, tmp_path / "files")) as app:
        user = fake_telegram.user(language_code="en")
        order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
        avatar_id = (await _order_of(app, order_id)).avatar_id
        await _press_old(fake_telegram, user, ForgetCb(confirm=True).pack())
        await user.wait_reply(lambda m: "have been deleted" in m.content, timeout=10)
        async with app.sessionmaker() as session:
            left = await session.scalar(select(func.count()).where(ReferencePhoto.avatar_id == avatar_id))
        assert left == 0
        await _press_old(fake_telegram, user, ForgetCb(confirm=False).pack())
        await user.wait_reply(lambda m: "nothing was deleted" in m.content, timeout=10)


async def test_a_tap_whose_answer_telegram_refuses_still_does_its_work(
    fake_telegram: FakeTelegram, sqlite_url: str, tmp_path: Path
) -> None:
    """A process killed after answering a tap but before finishing it: Telegram sends the update again
    and refuses the second answer ("query is too old"). The step must still happen."""
    async with payment_app(fake_telegram, sqlite_url, tmp_path) as (app, _kassa):
        user = fake_telegram.user(language_code="en")
        order_id = await seed_unpaid_order(app.sessionmaker, app.files, app.catalogue, telegram_id=user.id)
        await user.press_button(OLD_MESSAGE_ID, OrderCb(order_id=order_id, action="pay").pack(), answered=True)
        choice = await user.wait_reply(lambda m: "How would you like to pay" in m.content, timeout=10)
        assert any("Stars" in b["text"] for b in choice.buttons)
        refused = [call for call in fake_telegram.calls("answerCallbackQuery") if not call.response_ok]
        assert len(refused) == 1
