"""The fake Bot API server, exercised by the real aiogram Bot over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    LabeledPrice,
    Message,
    ReplyParameters,
)
from aiogram.utils.media_group import MediaGroupBuilder
from PIL import Image

from tests.fakes.telegram import TELEGRAM_FLOOD_LIMITS, FakeTelegram, FakeUser
from tests.support.capture import OutgoingRequestCapture

USER_ID = 5001


def make_jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_png(width: int, height: int) -> bytes:
    # 1-bit PNGs stay tiny and fast even at thousands of pixels a side.
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def album(count: int) -> list[Any]:
    builder = MediaGroupBuilder(caption="Your portraits")
    for index in range(count):
        photo = make_jpeg(color=(index * 20 % 256, 100, 150))
        builder.add_photo(media=BufferedInputFile(photo, filename=f"portrait_{index}.jpg"))
    return builder.build()


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(text=text, callback_data=data)] for text, data in buttons]
    return InlineKeyboardMarkup(inline_keyboard=rows)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def bot(fake: FakeTelegram) -> Bot:
    return fake.create_bot()


@pytest.fixture
def user(fake: FakeTelegram) -> FakeUser:
    return fake.user(user_id=USER_ID, first_name="Анна", username="anna", language_code="ru")


async def test_get_me_describes_the_bot_of_the_token(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()

    assert me.id == 123456789
    assert me.is_bot
    assert me.username == "pinglass_test_bot"
    assert fake.calls("getMe")[0].response_ok


async def test_wrong_token_and_unknown_method_are_refused(fake: FakeTelegram) -> None:
    other = Bot("987654321:WrongToken", session=fake.create_bot().session)
    with pytest.raises(TelegramUnauthorizedError):
        await other.get_me()

    async with aiohttp.ClientSession() as client:
        async with client.post(f"{fake.base_url}/bot{fake.token}/sendTelepathy") as response:
            body = await response.json()
    assert response.status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


async def test_sending_to_a_chat_no_user_opened_fails(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(777, "hello")

    fake.user(user_id=777)
    sent = await bot.send_message(777, "hello")

    assert sent.chat.id == 777
    assert [m.text for m in fake.sent_messages(777)] == ["hello"]


async def test_text_length_is_checked_on_the_visible_text(bot: Bot, user: FakeUser) -> None:
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(user.id, "я" * 4097)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(user.id, "   ")
    # Tags are not text: 4096 visible characters inside <b> are fine.
    sent = await bot.send_message(user.id, "<b>" + "я" * 4096 + "</b>", parse_mode="HTML")

    assert sent.text == "я" * 4096
    assert sent.entities is not None and sent.entities[0].type == "bold"


async def test_bad_html_is_refused_like_telegram(bot: Bot, user: FakeUser) -> None:
    with pytest.raises(TelegramBadRequest, match='Can\'t find end tag corresponding to start tag "b"'):
        await bot.send_message(user.id, "<b>bold", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "br"'):
        await bot.send_message(user.id, "line<br>line", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match=r"Character '\.' is reserved"):
        await bot.send_message(user.id, "Done.", parse_mode="MarkdownV2")


async def test_caption_over_1024_characters_is_refused(bot: Bot, user: FakeUser) -> None:
    photo = BufferedInputFile(make_jpeg(), filename="p.jpg")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(user.id, photo, caption="x" * 1025)


async def test_albums_must_hold_2_to_10_items(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    with pytest.raises(TelegramBadRequest, match="too few messages"):
        await bot.send_media_group(user.id, album(1))
    eleven = [InputMediaPhoto(media=BufferedInputFile(make_jpeg(), filename=f"{i}.jpg")) for i in range(11)]
    with pytest.raises(TelegramBadRequest, match="too many messages to send as an album"):
        await bot.send_media_group(user.id, eleven)
    assert fake.sent_messages(user.id) == []

    pair = await bot.send_media_group(user.id, album(2))
    ten = await bot.send_media_group(user.id, album(10))

    assert len(pair) == 2 and len(ten) == 10
    assert pair[0].caption == "Your portraits" and pair[1].caption is None
    items = fake.sent_messages(user.id)
    assert len(items) == 12
    assert len({m.media_group_id for m in items[:2]}) == 1
    assert items[2].media_group_id not in (None, items[0].media_group_id)
    assert items[5].data == make_jpeg(color=(60, 100, 150))  # the uploaded bytes are kept per item
    assert ten[-1].photo[-1].file_id == items[-1].file_id


async def test_documents_cannot_be_mixed_with_photos(bot: Bot, user: FakeUser) -> None:
    builder = MediaGroupBuilder()
    builder.add_photo(media=BufferedInputFile(make_jpeg(), filename="a.jpg"))
    builder.add_document(media=BufferedInputFile(b"%PDF-1.4", filename="b.pdf"))
    with pytest.raises(TelegramBadRequest, match="document can't be mixed"):
        await bot.send_media_group(user.id, builder.build())


async def test_photo_dimensions_and_content_are_checked(bot: Bot, user: FakeUser) -> None:
    for image in (make_png(2100, 100), make_png(5001, 5000)):  # ratio 21; width + height 10001
        with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
            await bot.send_photo(user.id, BufferedInputFile(image, filename="wide.png"))
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(user.id, BufferedInputFile(b"not an image", filename="x.jpg"))
    accepted = await bot.send_photo(user.id, BufferedInputFile(make_png(2000, 100), filename="ok.png"))

    assert (accepted.photo[-1].width, accepted.photo[-1].height) == (2000, 100)


async def test_a_bot_photo_can_be_resent_by_file_id_and_downloaded(
    fake: FakeTelegram, bot: Bot, user: FakeUser
) -> None:
    image = make_jpeg(1200, 900)
    first = await bot.send_photo(user.id, BufferedInputFile(image, filename="p.jpg"))
    file_id = first.photo[-1].file_id

    again = await bot.send_photo(user.id, file_id)
    file = await bot.get_file(file_id)
    downloaded = await bot.download_file(file.file_path)

    assert again.photo[-1].file_unique_id == first.photo[-1].file_unique_id
    assert [size.width for size in first.photo] == [90, 320, 800, 1200]
    assert downloaded is not None and downloaded.read() == image
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(user.id, "AgACunknownfileid")


async def test_injected_429_surfaces_as_retry_after(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    rule = fake.inject("sendMessage", status=429, retry_after=7)

    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(user.id, "first")
    await bot.send_message(user.id, "second")  # the rule fired once

    assert caught.value.retry_after == 7
    assert rule.fired == 1
    assert [call.response_ok for call in fake.calls("sendMessage")] == [False, True]
    assert [m.text for m in fake.sent_messages(user.id)] == ["second"]


async def test_flood_control_is_on_by_default_with_telegrams_limits(
    fake: FakeTelegram, bot: Bot, user: FakeUser
) -> None:
    assert fake.flood_limits == TELEGRAM_FLOOD_LIMITS == (30, 1.0, 40, 30.0)
    other = fake.user(user_id=6003)
    album = [InputMediaPhoto(media=BufferedInputFile(make_jpeg(), filename=f"{i}.jpg")) for i in range(10)]
    for _ in range(3):  # album items count one by one: 30 in this chat
        await bot.send_media_group(user.id, album)
    # Well within 1 s of the first album, the overall limit (30 per second) would refuse anything more;
    # wait that second out, so the per-chat window (40 per 30 s) is the one this test meets.
    await asyncio.sleep(1.05)
    for number in range(10):
        await bot.send_message(user.id, f"message {number}")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(user.id, "the 41st")
    # As Telegram does, the answer says how long until it fits: until the first album leaves the 30 s window.
    assert 2 <= caught.value.retry_after <= 29
    await bot.send_message(other.id, "another chat is not limited by this one")
    assert fake.flood_429s == 1


async def test_injected_faults_every_third_call_and_per_chat(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    fake.inject("sendChatAction", status=502, every=3)
    outcomes = []
    for _ in range(6):
        try:
            await bot.send_chat_action(user.id, "typing")
            outcomes.append("ok")
        except TelegramServerError:
            outcomes.append("5xx")
    assert outcomes == ["ok", "ok", "5xx", "ok", "ok", "5xx"]

    other = fake.user(user_id=6002)
    fake.inject(None, status=403, chat_id=other.id)
    await bot.send_message(user.id, "not this chat")
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(other.id, "this chat")


async def test_a_user_who_blocked_the_bot_cannot_be_messaged(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    update = await user.block_bot()
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(user.id, "come back")
    await user.unblock_bot()
    await bot.send_message(user.id, "welcome back")

    assert update["my_chat_member"]["new_chat_member"]["status"] == "kicked"


async def test_callback_data_over_64_bytes_is_refused(bot: Bot, user: FakeUser) -> None:
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(user.id, "pick", reply_markup=keyboard(("Style", "s" * 65)))
    # 64 bytes is the limit in bytes, not characters: 33 Cyrillic letters are 66 bytes.
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(user.id, "pick", reply_markup=keyboard(("Style", "я" * 33)))
    await bot.send_message(user.id, "pick", reply_markup=keyboard(("Style", "s" * 64)))


async def test_a_user_photo_downloads_with_the_same_bytes(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    selfie = make_jpeg(1600, 1200, color=(10, 200, 90))
    update = await user.send_photo(selfie, caption="me")
    resent = await user.send_photo(selfie)

    largest = update["message"]["photo"][-1]
    file = await bot.get_file(largest["file_id"])
    downloaded = await bot.download_file(file.file_path)
    thumbnail = await bot.download_file((await bot.get_file(update["message"]["photo"][0]["file_id"])).file_path)

    assert downloaded is not None and downloaded.read() == selfie
    assert thumbnail is not None and Image.open(thumbnail).size == (90, 68)
    assert resent["message"]["photo"][-1]["file_unique_id"] == largest["file_unique_id"]
    assert resent["message"]["photo"][-1]["file_id"] != largest["file_id"]
    assert fake.downloads[0] == file.file_path


async def test_files_over_20_mb_cannot_be_fetched(bot: Bot, user: FakeUser) -> None:
    update = await user.send_document(b"%PDF-1.4 big", "scan.pdf", file_size=21 * 1024 * 1024)
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(update["message"]["document"]["file_id"])


async def test_get_updates_long_poll_returns_a_user_update(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_until(lambda: fake.waiting_polls == 1)  # the long poll is waiting on the server
    sent = await user.send_command("/start", args="ref_42")

    updates = await asyncio.wait_for(poll, timeout=3)
    assert [u.update_id for u in updates] == [sent["update_id"]]
    message = updates[0].message
    assert message is not None and message.text == "/start ref_42"
    assert message.entities is not None and message.entities[0].type == "bot_command"
    assert message.from_user is not None and message.from_user.language_code == "ru"

    # Unconfirmed updates come again; an offset past them confirms them.
    assert len(await bot.get_updates(timeout=0)) == 1
    assert await bot.get_updates(offset=sent["update_id"] + 1, timeout=0) == []


async def test_a_second_poller_terminates_the_first(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_until(lambda: fake.waiting_polls == 1)
    second = asyncio.create_task(bot.get_updates(timeout=0))

    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await first
    assert await second == []


async def test_webhook_delivery_posts_with_the_secret_header(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    """What the fake Telegram posts in webhook mode, captured as sent (our webhook route is the app's,
    tested in the webhook-mode app tests)."""
    async with OutgoingRequestCapture() as capture:
        await bot.set_webhook(capture.url, secret_token="s3cret_token")
        with pytest.raises(TelegramConflictError):
            await bot.get_updates()
        updates = await user.send_album([make_jpeg(), make_jpeg(color=(1, 2, 3))])
        received = await capture.wait_for(2)

    assert [request.path for request in received] == ["/captured", "/captured"]
    assert sorted(json.loads(request.body)["update_id"] for request in received) == [u["update_id"] for u in updates]
    assert {request.headers.get("X-Telegram-Bot-Api-Secret-Token") for request in received} == {"s3cret_token"}
    assert len({json.loads(request.body)["message"]["media_group_id"] for request in received}) == 1
    assert [d.status for d in fake.webhook_deliveries] == [200, 200]
    info = await bot.get_webhook_info()
    assert info.url == capture.url and info.pending_update_count == 0


async def test_a_failed_webhook_delivery_stays_pending(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    await bot.set_webhook("http://127.0.0.1:9/unreachable")  # port 9 (discard) refuses connections
    await user.send_text("hello")

    info = await bot.get_webhook_info()
    assert info.pending_update_count == 1
    assert info.last_error_message is not None
    assert fake.webhook_deliveries[0].status is None


async def test_editing_without_changes_is_refused(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    markup = keyboard(("Next", "page:2"))
    sent = await bot.send_message(user.id, "<b>Page 1</b>", parse_mode="HTML", reply_markup=markup)

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "<b>Page 1</b>", chat_id=user.id, message_id=sent.message_id, parse_mode="HTML", reply_markup=markup
        )
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("Page 2", chat_id=user.id, message_id=999)
    await bot.edit_message_text("Page 2", chat_id=user.id, message_id=sent.message_id, reply_markup=markup)

    current = fake.chat_messages(user.id)[0]
    assert current.text == "Page 2" and current.edits == 1
    assert fake.sent_messages(user.id)[0].text == "Page 1"  # the snapshot as delivered


async def test_a_partial_album_failure_delivers_the_items_before_it(
    fake: FakeTelegram, bot: Bot, user: FakeUser
) -> None:
    fake.inject_album_failure(failed_item=4, retry_after=9)

    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_media_group(user.id, album(6))

    assert 'failed to send message #4 with the error message "Too Many Requests: retry after 9"' in str(caught.value)
    delivered = fake.sent_messages(user.id)
    assert len(delivered) == 3
    assert len({m.media_group_id for m in delivered}) == 1
    assert len(await bot.send_media_group(user.id, album(6))) == 6  # the failure was injected once


async def test_buttons_and_callback_answers(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    await bot.send_message(user.id, "Choose a style", reply_markup=keyboard(("Профессиональный", "style:pro")))
    message_id, data = fake.find_button(user.id, "професс")
    query_id = await user.press_button(message_id, data)

    assert data == "style:pro"
    assert await bot.answer_callback_query(query_id, text="Saved")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)
    assert fake.callback_answers[query_id]["text"] == "Saved"
    with pytest.raises(LookupError):
        fake.find_button(user.id, "Creative")


async def test_stars_invoice_payment_and_refund(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    two_prices = [LabeledPrice(label="a", amount=100), LabeledPrice(label="b", amount=50)]
    with pytest.raises(TelegramBadRequest, match="STARS_INVOICE_INVALID"):
        await bot.send_invoice(user.id, "Pack", "23 portraits", "order:1", currency="XTR", prices=two_prices)
    one_price = [LabeledPrice(label="Pack", amount=150)]
    with pytest.raises(TelegramBadRequest, match="INVOICE_PAYLOAD_INVALID"):
        await bot.send_invoice(user.id, "Pack", "23 portraits", "x" * 129, currency="XTR", prices=one_price)
    await bot.send_invoice(user.id, "Pack", "23 portraits", "order:1", currency="XTR", prices=one_price)

    paying = asyncio.create_task(user.pay())
    updates = await bot.get_updates(timeout=5)
    query = updates[0].pre_checkout_query
    assert query is not None and (query.invoice_payload, query.total_amount) == ("order:1", 150)
    await bot.answer_pre_checkout_query(query.id, ok=True)
    payment = await paying

    assert payment is not None
    charge_id = payment["message"]["successful_payment"]["telegram_payment_charge_id"]
    assert await bot.refund_star_payment(user.id, charge_id)
    assert fake.is_refunded(charge_id)
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(user.id, charge_id)
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(user.id, "stxUnknown")


async def test_commands_are_stored_per_language_and_validated(fake: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand(command="start", description="Начать")], language_code="ru")
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start!", description="x")])

    assert fake.commands(language_code="ru") == [{"command": "start", "description": "Начать"}]
    assert fake.commands() == []
    assert [c.command for c in await bot.get_my_commands(language_code="ru")] == ["start"]


async def test_an_aiogram_dispatcher_polls_the_fake(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Привет! Пришлите 5–8 селфи.", reply_markup=keyboard(("Готово", "done")))

    @router.callback_query(F.data == "done")
    async def done(query: CallbackQuery) -> None:
        await query.answer()
        assert isinstance(query.message, Message)
        await query.message.edit_text("Принято")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    polling = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=1)
    )
    try:
        await user.send_command("/start")
        reply = await user.wait_reply()
        await user.click("Готово")
        await fake.wait_until(lambda: user.messages[0].text == "Принято")
    finally:
        await dispatcher.stop_polling()
        await polling

    assert "селфи" in (reply.text or "")
    assert user.messages[0].buttons == []  # an edit without reply_markup drops the keyboard
    assert fake.calls("answerCallbackQuery")[0].response_ok
    assert set(fake.calls("getUpdates")[0].params["allowed_updates"]) == {"message", "callback_query"}


async def test_reactions_reach_only_a_bot_that_asked_for_them(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    sent = await bot.send_message(USER_ID, "портрет")
    assert await bot.get_updates(timeout=0) == []
    dropped = await user.react(sent.message_id, "❤")  # allowed_updates left at the default: not sent
    assert fake.dropped_updates[-1] == dropped and await bot.get_updates(timeout=0) == []

    assert await bot.get_updates(allowed_updates=["message", "message_reaction"], timeout=0) == []
    await user.react(sent.message_id, "👍")
    await user.react(sent.message_id)
    changes = [update.message_reaction for update in await bot.get_updates(timeout=0)]
    assert [(change.message_id, change.user.id) for change in changes if change and change.user] == [
        (sent.message_id, USER_ID)
    ] * 2
    first, second = (change for change in changes if change is not None)
    assert [r.emoji for r in first.old_reaction] == ["❤"] and [r.emoji for r in first.new_reaction] == ["👍"]
    assert [r.emoji for r in second.old_reaction] == ["👍"] and second.new_reaction == []

    with pytest.raises(ValueError, match="not a reaction"):
        await user.react(sent.message_id, "🍕")
    with pytest.raises(ValueError, match="at most one"):
        await user.react(sent.message_id, "❤", "🔥")  # three only with Premium
    with pytest.raises(ValueError, match="no message"):
        await user.react(sent.message_id + 100, "❤")


async def test_replies_name_a_message_of_the_chat_both_ways(fake: FakeTelegram, bot: Bot, user: FakeUser) -> None:
    photo = await bot.send_photo(USER_ID, BufferedInputFile(make_jpeg(), filename="p.jpg"))
    # The user's reply carries the message it answers, as Telegram sends it.
    update = await user.send_text("🔁", reply_to=photo.message_id)
    assert update["message"]["reply_to_message"]["message_id"] == photo.message_id
    assert "photo" in update["message"]["reply_to_message"]
    with pytest.raises(ValueError, match="not in chat"):
        await user.send_text("🔁", reply_to=999_999)
    # The bot's reply must name a message of the chat, unless it allows sending without one.
    answer = await bot.send_photo(
        USER_ID,
        BufferedInputFile(make_jpeg(), filename="q.jpg"),
        reply_parameters=ReplyParameters(message_id=photo.message_id),
    )
    assert answer.reply_to_message is not None and answer.reply_to_message.message_id == photo.message_id
    assert fake.sent_messages(USER_ID)[-1].reply_to == photo.message_id
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(USER_ID, "x", reply_parameters=ReplyParameters(message_id=999_999))
    loose = await bot.send_message(
        USER_ID, "x", reply_parameters=ReplyParameters(message_id=999_999, allow_sending_without_reply=True)
    )
    assert loose.reply_to_message is None
    items = album(2)
    group = await bot.send_media_group(
        USER_ID, media=items, reply_parameters=ReplyParameters(message_id=photo.message_id)
    )
    assert all(message.reply_to_message is not None for message in group)
