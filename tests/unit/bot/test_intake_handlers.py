"""The intake router (and the fallback after it) through ``Dispatcher.feed_update``: a mocked Bot, a
stand-in IntakeService and CreditService (``create_autospec``: calls recorded, answers scripted per
test), conversation steps in memory."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import create_autospec

from aiogram import Dispatcher
from aiogram.types import InlineKeyboardMarkup, Update

from bot.album import AlbumCollector, UserLocks
from bot.callbacks import AgainCb, MenuCb, OrderCb, PackCb, SpendCb, StyleCb, UploadCb
from bot.handlers import intake
from bot.handlers.intake import Intake
from bot.locales.catalogue import all_messages
from bot.settings import Settings
from scheduler.credits import CreditService, CreditsUnavailable, Spent
from scheduler.examples import ExampleService
from scheduler.intake import (
    NOT_NOW,
    DraftOrder,
    IncomingPhoto,
    IntakeService,
    JobStatusView,
    Leaving,
    OrderStatusView,
    PackOffer,
    PhotoOutcome,
    SetState,
)
from studio.catalogue import load_catalogue
from tests.support.telegram import TOKEN, MockedBot, Updates, chat_user, handler_dispatcher

AVATAR_ID = 5
ORDER_ID = 11
CATALOGUE = load_catalogue()


def en(key: str, **values: Any) -> str:
    text = all_messages()[key][1]
    return text.format(**values) if values else text


class Chat:
    def __init__(self) -> None:
        self.intake = create_autospec(IntakeService, instance=True)
        self.credits = create_autospec(CreditService, instance=True)
        self.intake.offered_packs.return_value = list(CATALOGUE.packs)
        self.intake.pack_offer.return_value = PackOffer(list(CATALOGUE.packs), 0)
        self.intake.photos_in.return_value = 0
        self.examples = create_autospec(ExampleService, instance=True)
        self.examples.showcase.return_value = []  # no example set is live: the picker is text only
        self.dispatcher: Dispatcher = handler_dispatcher(
            intake.build_router(),
            intake.build_fallback_router(),
            settings=Settings(BOT_TOKEN=TOKEN, STARS_ENABLED=True, _env_file=None),  # type: ignore[call-arg]
            catalogue=CATALOGUE,
            intake=self.intake,
            examples=self.examples,
            credits=self.credits,
            album_collector=AlbumCollector[PhotoOutcome](quiet_seconds=0.05),
            user_locks=UserLocks(),
        )
        self.bot = MockedBot()
        self.updates = Updates(language="en")
        self.user = chat_user(self.updates)

    async def feed(self, update: Update) -> Any:
        return await self.dispatcher.feed_update(self.bot, update, user=self.user)

    async def tap(self, data: str) -> Any:
        return await self.feed(self.updates.tap(data))

    async def at(self, step: Any, **data: Any) -> None:
        context = self.dispatcher.fsm.get_context(self.bot, self.updates.chat.id, self.updates.user.id)
        await context.set_state(step)
        await context.set_data(data)

    async def step(self) -> tuple[str | None, dict[str, Any]]:
        context = self.dispatcher.fsm.get_context(self.bot, self.updates.chat.id, self.updates.user.id)
        return await context.get_state(), await context.get_data()

    def texts(self) -> list[str]:
        return [request.text for request in self.bot.sent("sendMessage")]

    def answers(self) -> list[tuple[str | None, bool | None]]:
        return [(answer.text, answer.show_alert) for answer in self.bot.sent("answerCallbackQuery")]

    def buttons(self) -> list[str]:
        markup = self.bot.sent("sendMessage")[-1].reply_markup
        if markup is None:
            return []
        assert isinstance(markup, InlineKeyboardMarkup)
        return [str(button.callback_data) for row in markup.inline_keyboard for button in row]

    def service_calls(self) -> list[str]:
        return [name for name, _args, _kwargs in self.intake.method_calls]


def upload_progress(count: int) -> str:
    text = en("upload.progress", count=count, min=5, max=8)
    more = en("upload.need_more", need=5 - count) if count < 5 else en("upload.can_finish", max=8)
    return f"{text}\n{more}"


# ---------------------------------------------------------------- starting


async def test_new_session_opens_a_set_and_asks_for_selfies() -> None:
    chat = Chat()
    chat.intake.start_over.return_value = AVATAR_ID

    await chat.tap(MenuCb(action="new").pack())

    chat.intake.start_over.assert_awaited_once_with(chat.user.id, Leaving())
    state, data = await chat.step()
    assert (state, data["avatar_id"]) == (Intake.uploading.state, AVATAR_ID)
    assert chat.texts() == [en("upload.instructions", min=5, max=8)]


async def test_new_session_leaves_the_summary_it_was_tapped_on() -> None:
    chat = Chat()
    chat.intake.start_over.return_value = AVATAR_ID + 1
    await chat.at(Intake.summary, avatar_id=AVATAR_ID, style="professional", order_id=ORDER_ID)

    await chat.tap(MenuCb(action="new").pack())

    chat.intake.start_over.assert_awaited_once_with(chat.user.id, Leaving(order_id=ORDER_ID))
    assert (await chat.step())[1]["avatar_id"] == AVATAR_ID + 1


async def test_reuse_photos_goes_to_the_style() -> None:
    chat = Chat()
    chat.intake.reuse.return_value = AVATAR_ID

    await chat.tap(MenuCb(action="reuse").pack())

    chat.intake.reuse.assert_awaited_once_with(chat.user.id, Leaving())
    assert (await chat.step())[0] == Intake.style.state
    assert chat.texts()[0].startswith(en("style.prompt"))
    assert chat.buttons() == [StyleCb(avatar_id=AVATAR_ID, style=style.id).pack() for style in CATALOGUE.styles]


async def test_reuse_photos_without_a_finished_set() -> None:
    chat = Chat()
    chat.intake.reuse.return_value = None

    await chat.tap(MenuCb(action="reuse").pack())

    assert chat.texts() == [en("reuse.none")]
    assert await chat.step() == (None, {})


async def test_reuse_a_set_under_a_finished_pack_that_is_gone() -> None:
    chat = Chat()
    chat.intake.reuse.return_value = None

    await chat.tap(AgainCb(avatar_id=AVATAR_ID).pack())

    chat.intake.reuse.assert_awaited_once_with(chat.user.id, Leaving(), AVATAR_ID)
    assert chat.texts() == [en("reuse.gone")]


# ---------------------------------------------------------------- upload


async def test_a_photo_is_taken_and_counted() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.take_photo.return_value = PhotoOutcome(True, 3)
    chat.intake.settle_upload.return_value = SetState(3)

    await chat.feed(chat.updates.photo("f1"))

    call = chat.intake.take_photo.await_args
    assert call is not None and call.kwargs == {"avatar_id": AVATAR_ID, "after_upload": False}
    incoming = call.args[1]
    assert isinstance(incoming, IncomingPhoto) and incoming.file_unique_id == "uf1"
    assert chat.texts() == [upload_progress(3)]
    assert chat.buttons() == []


async def test_the_photo_is_downloaded_only_when_the_service_asks() -> None:
    chat = Chat()
    chat.bot.files["f1"] = b"jpeg bytes"
    fetched: list[bytes] = []

    async def take(user_id: int, photo: IncomingPhoto, opened: Any, **_: Any) -> PhotoOutcome:
        await opened(AVATAR_ID)  # no step yet: the service opened a set
        fetched.append(await photo.fetch())
        return PhotoOutcome(True, 5)

    chat.intake.take_photo.side_effect = take
    chat.intake.settle_upload.return_value = SetState(5)

    await chat.feed(chat.updates.photo("f1"))

    assert fetched == [b"jpeg bytes"]
    assert await chat.step() == (Intake.uploading.state, {"avatar_id": AVATAR_ID})
    assert chat.texts() == [upload_progress(5)]
    assert chat.buttons() == [UploadCb(action="done", avatar_id=AVATAR_ID).pack()]


async def test_an_album_gets_one_reply() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.take_photo.side_effect = [PhotoOutcome(True, 1), PhotoOutcome(False, 1, "photo.rejected.duplicate")]
    chat.intake.settle_upload.return_value = SetState(1)

    await asyncio.gather(
        chat.feed(chat.updates.photo("a1", media_group_id="g")),
        chat.feed(chat.updates.photo("a2", media_group_id="g")),
    )

    album = en("upload.album_received", accepted=1, total=2)
    assert chat.texts() == [f"{album}\n{en('photo.rejected.duplicate')}\n{upload_progress(1)}"]


async def test_the_eighth_photo_closes_the_set_and_asks_for_the_style() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.take_photo.return_value = PhotoOutcome(True, 8)
    chat.intake.settle_upload.return_value = SetState(8, closed=True)

    await chat.feed(chat.updates.photo("f8"))

    assert chat.texts()[0] == en("upload.full", max=8)
    assert chat.texts()[1].startswith(en("style.prompt"))
    assert (await chat.step())[0] == Intake.style.state


async def test_a_full_set_that_fails_the_face_review() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.take_photo.return_value = PhotoOutcome(True, 8)
    chat.intake.settle_upload.return_value = SetState(7, removed_slots=(2,))

    await chat.feed(chat.updates.photo("f8"))

    assert chat.texts() == [
        "⚠️ 1 photo (no. 2) seems to show a different person from the others, so I took it out of the set.\n"
        + upload_progress(7)
    ]
    assert (await chat.step())[0] == Intake.uploading.state


async def test_two_photos_taken_out_of_the_set_are_named_in_the_plural() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.take_photo.return_value = PhotoOutcome(True, 8)
    chat.intake.settle_upload.return_value = SetState(6, removed_slots=(2, 5))

    await chat.feed(chat.updates.photo("f8"))

    assert chat.texts()[0].startswith(
        "⚠️ 2 photos (nos. 2, 5) seem to show a different person from the others, so I took them out of the set."
    )


async def test_a_photo_after_the_set_was_closed_is_not_taken() -> None:
    chat = Chat()
    await chat.at(Intake.pack, avatar_id=AVATAR_ID, style="professional")
    chat.intake.take_photo.return_value = PhotoOutcome(False, 6, NOT_NOW)

    await chat.feed(chat.updates.photo("late"))

    call = chat.intake.take_photo.await_args
    assert call is not None and call.kwargs == {"avatar_id": AVATAR_ID, "after_upload": True}
    assert chat.texts() == [en("stray.use_buttons"), en("step.pack")]
    chat.intake.settle_upload.assert_not_awaited()


async def test_a_document_that_is_no_image_is_refused_and_changes_nothing() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)

    await chat.feed(chat.updates.document("pdf", mime_type="application/pdf", file_name="cv.pdf"))

    assert chat.texts() == [en("photo.rejected.not_an_image")]
    assert chat.service_calls() == []
    assert await chat.step() == (Intake.uploading.state, {"avatar_id": AVATAR_ID})


async def test_an_image_file_is_taken_like_a_photo() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.take_photo.return_value = PhotoOutcome(True, 1)
    chat.intake.settle_upload.return_value = SetState(1)

    await chat.feed(chat.updates.document("heic", mime_type="application/octet-stream", file_name="IMG_1.HEIC"))

    assert chat.texts() == [upload_progress(1)]


async def test_text_in_the_upload_step_asks_for_photos_and_changes_nothing() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)

    await chat.feed(chat.updates.text("here you go"))

    assert chat.texts() == [en("upload.wrong.text", min=5, max=8)]
    assert chat.service_calls() == []
    assert await chat.step() == (Intake.uploading.state, {"avatar_id": AVATAR_ID})


async def test_done_closes_the_set() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.close_set.return_value = SetState(6, closed=True)

    await chat.tap(UploadCb(action="done", avatar_id=AVATAR_ID).pack())

    chat.intake.close_set.assert_awaited_once_with(chat.user.id, AVATAR_ID)
    assert chat.answers() == [(None, None)]
    assert (await chat.step())[0] == Intake.style.state


async def test_done_with_too_few_photos() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.close_set.return_value = SetState(4)

    await chat.tap(UploadCb(action="done", avatar_id=AVATAR_ID).pack())

    assert chat.answers() == [(en("upload.need_more", need=1), True)]
    assert (await chat.step())[0] == Intake.uploading.state


async def test_done_on_a_set_of_several_people() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.close_set.return_value = SetState(6, refused=True)

    await chat.tap(UploadCb(action="done", avatar_id=AVATAR_ID).pack())

    assert chat.texts() == [en("faces.set.no_majority", min=5, max=8)]
    assert (await chat.step())[0] == Intake.uploading.state


async def test_done_of_an_earlier_set_is_stale_and_changes_nothing() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.photos_in.return_value = 2

    await chat.tap(UploadCb(action="done", avatar_id=AVATAR_ID - 1).pack())

    assert chat.answers() == [(en("stale.button"), False)]
    assert chat.texts() == [f"{en('step.uploading')}\n{upload_progress(2)}"]
    assert chat.service_calls() == ["photos_in"]


# ---------------------------------------------------------------- style, pack, summary


async def test_a_style_leads_to_the_packs_with_the_balance() -> None:
    chat = Chat()
    await chat.at(Intake.style, avatar_id=AVATAR_ID)
    chat.intake.pack_offer.return_value = PackOffer(list(CATALOGUE.packs), 1)

    await chat.tap(StyleCb(avatar_id=AVATAR_ID, style="lifestyle").pack())

    state, data = await chat.step()
    assert (state, data["style"]) == (Intake.pack.state, "lifestyle")
    lifestyle = CATALOGUE.find_style("lifestyle")
    assert lifestyle is not None
    prompt = en("pack.prompt", style=lifestyle.name.get("en"))
    balance = "You have 1 credit: a pack it covers starts without payment."
    # The likeness guarantee and the free redos are stated with the packs (settings' defaults).
    assert chat.texts() == [f"{prompt}\n{balance}\n\n{en('redo.picker', share=65, free=3)}"]
    assert SpendCb(avatar_id=AVATAR_ID, style="lifestyle", photos=1).pack() in chat.buttons()


async def test_a_forged_style_is_stale() -> None:
    chat = Chat()
    await chat.at(Intake.style, avatar_id=AVATAR_ID)

    await chat.tap(StyleCb(avatar_id=AVATAR_ID, style="nope").pack())

    assert chat.answers() == [(en("stale.button"), False)]
    assert (await chat.step())[0] == Intake.style.state
    chat.intake.pack_offer.assert_not_awaited()


async def test_a_pack_makes_the_order_the_summary_shows() -> None:
    chat = Chat()
    await chat.at(Intake.pack, avatar_id=AVATAR_ID, style="professional")
    chat.intake.create_order.return_value = DraftOrder(ORDER_ID, 6)

    await chat.tap(PackCb(avatar_id=AVATAR_ID, style="professional", pack_id="p7").pack())

    style, pack = CATALOGUE.find_style("professional"), CATALOGUE.pack("p7")
    assert style is not None
    call = chat.intake.create_order.await_args
    assert call is not None and call.args == (chat.user.id, AVATAR_ID, style, pack)
    state, data = await chat.step()
    assert (state, data["order_id"], data["pack"]) == (Intake.summary.state, ORDER_ID, "p7")
    assert "Selfies: 6" in chat.texts()[0] and "Portraits: 7" in chat.texts()[0]
    assert OrderCb(order_id=ORDER_ID, action="pay").pack() in chat.buttons()


async def test_the_trial_once_taken_is_a_stale_button() -> None:
    chat = Chat()
    await chat.at(Intake.pack, avatar_id=AVATAR_ID, style="professional")
    chat.intake.offered_packs.return_value = [pack for pack in CATALOGUE.packs if not pack.is_trial]

    await chat.tap(PackCb(avatar_id=AVATAR_ID, style="professional", pack_id="trial").pack())

    assert chat.answers() == [(en("stale.button"), False)]
    chat.intake.create_order.assert_not_awaited()
    assert (await chat.step())[0] == Intake.pack.state


async def test_a_pack_for_another_style_is_stale() -> None:
    chat = Chat()
    await chat.at(Intake.pack, avatar_id=AVATAR_ID, style="professional")

    await chat.tap(PackCb(avatar_id=AVATAR_ID, style="creative", pack_id="p7").pack())

    assert chat.answers() == [(en("stale.button"), False)]
    assert chat.texts() == [en("step.pack")]
    chat.intake.create_order.assert_not_awaited()


async def test_spending_credits_from_the_picker() -> None:
    chat = Chat()
    await chat.at(Intake.pack, avatar_id=AVATAR_ID, style="professional")
    chat.credits.spend.return_value = Spent(job_id=3, photos=7, balance_left=0)

    await chat.tap(SpendCb(avatar_id=AVATAR_ID, style="professional", photos=7).pack())

    call = chat.credits.spend.await_args
    assert call is not None and call.kwargs["spend_key"] == "picker:9000" and call.kwargs["photos"] == 7
    assert await chat.step() == (None, {})


async def test_spending_credits_the_balance_no_longer_has() -> None:
    chat = Chat()
    await chat.at(Intake.pack, avatar_id=AVATAR_ID, style="professional")
    chat.credits.spend.side_effect = CreditsUnavailable("not_enough")

    await chat.tap(SpendCb(avatar_id=AVATAR_ID, style="professional", photos=7).pack())

    assert chat.answers() == [(en("credits.not_enough"), True)]
    assert (await chat.step())[0] == Intake.pack.state


async def test_change_withdraws_the_order_and_asks_the_style_again() -> None:
    chat = Chat()
    await chat.at(Intake.summary, avatar_id=AVATAR_ID, style="professional", pack="p7", order_id=ORDER_ID)

    await chat.tap(OrderCb(order_id=ORDER_ID, action="change").pack())

    chat.intake.withdraw_order.assert_awaited_once_with(ORDER_ID)
    state, data = await chat.step()
    assert (state, data["avatar_id"], data["order_id"]) == (Intake.style.state, AVATAR_ID, None)


async def test_cancel_on_the_summary_withdraws_the_order_and_ends_the_intake() -> None:
    chat = Chat()
    await chat.at(Intake.summary, avatar_id=AVATAR_ID, style="professional", pack="p7", order_id=ORDER_ID)

    await chat.tap(OrderCb(order_id=ORDER_ID, action="cancel").pack())

    chat.intake.withdraw_order.assert_awaited_once_with(ORDER_ID)
    assert chat.texts() == [en("cancel.done")]
    assert await chat.step() == (None, {})


async def test_change_on_an_earlier_summary_is_stale_and_withdraws_nothing() -> None:
    chat = Chat()
    await chat.at(Intake.summary, avatar_id=AVATAR_ID, style="professional", pack="p7", order_id=ORDER_ID)

    await chat.tap(OrderCb(order_id=ORDER_ID - 1, action="change").pack())

    assert chat.answers() == [(en("stale.button"), False)]
    assert chat.texts() == [en("step.summary")]
    chat.intake.withdraw_order.assert_not_awaited()


async def test_forged_button_data_is_stale() -> None:
    chat = Chat()
    await chat.at(Intake.summary, avatar_id=AVATAR_ID, order_id=ORDER_ID)

    await chat.tap(f"o:{ORDER_ID}:refund")

    assert chat.answers() == [(en("stale.button"), False)]
    assert chat.service_calls() == []


async def test_text_where_buttons_are_expected() -> None:
    chat = Chat()
    await chat.at(Intake.summary, avatar_id=AVATAR_ID, order_id=ORDER_ID)

    await chat.feed(chat.updates.text("yes please"))

    assert chat.texts() == [en("stray.use_buttons"), en("step.summary")]


# ---------------------------------------------------------------- anywhere


async def test_cancel_gives_up_the_set_being_collected() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)

    await chat.feed(chat.updates.command("cancel"))

    chat.intake.leave.assert_awaited_once_with(Leaving(collecting_avatar_id=AVATAR_ID))
    assert chat.texts() == [en("cancel.done")]
    assert await chat.step() == (None, {})


async def test_cancel_with_nothing_to_cancel() -> None:
    chat = Chat()

    await chat.feed(chat.updates.command("cancel"))

    assert chat.texts() == [en("cancel.nothing")]
    assert chat.service_calls() == []


async def test_status_in_a_step_says_where_the_user_is() -> None:
    chat = Chat()
    await chat.at(Intake.uploading, avatar_id=AVATAR_ID)
    chat.intake.photos_in.return_value = 5

    await chat.feed(chat.updates.command("status"))

    assert chat.texts() == [f"{en('step.uploading')}\n{upload_progress(5)}"]
    assert chat.buttons() == [UploadCb(action="done", avatar_id=AVATAR_ID).pack()]


async def test_status_of_a_queued_pack_an_order_and_nothing() -> None:
    chat = Chat()
    chat.intake.status.side_effect = [
        JobStatusView(ORDER_ID, 7, queued=True, position=2),
        OrderStatusView(ORDER_ID, 15, "creative", "awaiting_payment"),
        None,
    ]

    for _ in range(3):
        await chat.feed(chat.updates.command("status"))

    creative = CATALOGUE.find_style("creative")
    assert creative is not None
    assert chat.texts() == [
        f"Order #{ORDER_ID}: 7 portraits queued, position 2.",
        en("status.order", order_id=ORDER_ID, photos=15, style=creative.name.get("en"), status="awaiting payment"),
        en("status.nothing"),
    ]


async def test_anything_else_outside_a_step() -> None:
    chat = Chat()

    await chat.feed(chat.updates.text("hello?"))

    assert chat.texts() == [en("unknown.message")]


async def test_status_counts_portraits_in_the_users_language() -> None:
    chat = Chat()
    chat.user.language = "ru"
    chat.intake.status.side_effect = [
        JobStatusView(ORDER_ID, 21, queued=True, position=1),
        JobStatusView(ORDER_ID, 3, queued=False, done=2),
        JobStatusView(ORDER_ID, 21, queued=False, done=20),
    ]

    for _ in range(3):
        await chat.feed(chat.updates.command("status"))

    assert chat.texts() == [
        f"Заказ №{ORDER_ID}: 21 портрет в очереди, место 1.",
        f"Заказ №{ORDER_ID}: готово 2 из 3 портретов.",
        f"Заказ №{ORDER_ID}: готово 20 из 21 портрета.",
    ]
