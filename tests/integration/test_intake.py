"""Issue 3, the photo session intake, end to end: the real application over real HTTP against the fake Telegram.

Every test drives the conversation as a user would (commands, photos, albums, files, buttons) and then
checks three things: what the user saw (texts and buttons in their language), what the database holds
(avatars, reference_photos, orders) and what the file store holds (a file for every accepted photo,
nothing for a rejected one).
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from redis.asyncio import Redis
from sqlalchemy import select

from bot.app import Application
from bot.settings import Settings
from storage import orders as order_queries
from storage.files import S3FileStore
from storage.images import register_heif
from storage.models import Avatar, LedgerEntry, Order, ReferencePhoto, User
from tests import image_corpus as corpus
from tests.fakes.telegram import ChatMessage, FakeTelegram, FakeUser
from tests.harness import app_settings, running_app
from tests.moto_server import MotoS3Server, moto_s3_endpoint, unique_bucket_name

__all__ = ["moto_s3_endpoint"]  # the imported fixture is used by name

REPLY_TIMEOUT = 15.0  # generous: PostgreSQL on a busy 2-core machine; never reached when things work
# Longer than the album collector's quiet period (0.8 s): a second reply to one album would be sent by now.
ALBUM_SETTLE_SECONDS = 1.2
MB = 1024 * 1024

STYLE_NAMES = {
    "ru": ("Деловой", "Лайфстайл", "Креатив"),
    "en": ("Professional", "Lifestyle", "Creative"),
}


# ---------------------------------------------------------------- images


def selfies(count: int, first_seed: int) -> list[bytes]:
    """Distinct valid selfies; seeds keep tests independent of each other's photos."""
    return corpus.selfie_set(count, first_seed)


@lru_cache(maxsize=8)
def selfie_as(format_name: str, seed: int) -> bytes:
    """A distinct selfie re-encoded as PNG / WEBP / HEIF, as phones send files."""
    register_heif()
    image = Image.open(io.BytesIO(corpus.selfie_like_jpeg(seed))).convert("RGB")
    if format_name == "HEIF":
        image = image.resize((640, 800))  # HEVC encoding is slow; 640 px is still above the 512 px minimum
    out = io.BytesIO()
    image.save(out, format_name)
    return out.getvalue()


# ---------------------------------------------------------------- what the database and the store hold


@dataclass(frozen=True)
class Snapshot:
    avatars: list[tuple[int, str]]  # (id, status)
    photos: list[tuple[int, int, str, str, str | None]]  # (avatar_id, slot, storage_key, sha256, file_unique_id)
    orders: list[tuple[int, int | None, str, str, int, int, int, str]]
    keys: list[str]  # the file store's keys under this user's prefix

    @property
    def photo_keys(self) -> list[str]:
        return sorted(photo[2] for photo in self.photos)

    def photos_of(self, avatar_id: int) -> list[tuple[int, int, str, str, str | None]]:
        return [photo for photo in self.photos if photo[0] == avatar_id]


async def snapshot(app: Application, user: FakeUser) -> Snapshot:
    async with app.sessionmaker() as session:
        user_id = (await session.execute(select(User.id).where(User.telegram_id == user.id))).scalar_one()
        avatars = (await session.execute(select(Avatar).where(Avatar.user_id == user_id).order_by(Avatar.id))).scalars()
        photos = (
            await session.execute(
                select(ReferencePhoto)
                .where(ReferencePhoto.user_id == user_id)
                .order_by(ReferencePhoto.avatar_id, ReferencePhoto.slot)
            )
        ).scalars()
        orders = (await session.execute(select(Order).where(Order.user_id == user_id).order_by(Order.id))).scalars()
        return Snapshot(
            avatars=[(avatar.id, avatar.status) for avatar in avatars],
            photos=[(p.avatar_id, p.slot, p.storage_key, p.sha256, p.file_unique_id) for p in photos],
            orders=[
                (o.id, o.avatar_id, o.style, o.pack, o.photos, o.price_rub_kopecks, o.price_stars, o.status)
                for o in orders
            ],
            keys=sorted(await app.files.list_keys(f"refs/{user_id}/")),
        )


async def assert_stored_photos_are_jpegs(app: Application, snap: Snapshot) -> None:
    """Every accepted photo is in the store as a normalized JPEG; the store holds nothing but accepted photos."""
    assert snap.keys == snap.photo_keys
    async with app.sessionmaker() as session:
        every_photo = sorted((await session.execute(select(ReferencePhoto.storage_key))).scalars())
    assert sorted(await app.files.list_keys("")) == every_photo  # also no stray file under another prefix
    for _avatar, _slot, key, _sha, _unique in snap.photos:
        data = await app.files.get(key)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
            assert min(image.size) >= 512


# ---------------------------------------------------------------- talking to the bot


async def send_photo(user: FakeUser, image: bytes) -> ChatMessage:
    await user.send_photo(image)
    return await user.wait_reply(timeout=REPLY_TIMEOUT)


async def send_document(user: FakeUser, data: bytes, file_name: str, mime_type: str | None = None) -> ChatMessage:
    await user.send_document(data, file_name, mime_type)
    return await user.wait_reply(timeout=REPLY_TIMEOUT)


async def command(user: FakeUser, text: str) -> ChatMessage:
    await user.send_command(text)
    return await user.wait_reply(timeout=REPLY_TIMEOUT)


async def click(user: FakeUser, button_text: str) -> ChatMessage:
    await user.click(button_text)
    return await user.wait_reply(timeout=REPLY_TIMEOUT)


async def press(fake: FakeTelegram, user: FakeUser, message_id: int, data: str) -> tuple[str, ChatMessage]:
    """Press a button (or forge one); returns the text of the callback answer and the bot's next message."""
    query_id = await user.press_button(message_id, data)
    reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
    answer = await fake.wait_for(
        lambda call: call.method == "answerCallbackQuery" and str(call.params["callback_query_id"]) == query_id,
        timeout=REPLY_TIMEOUT,
    )
    return str(answer.params.get("text", "")), reply


def button_texts(message: ChatMessage) -> list[str]:
    return [button["text"] for button in message.buttons]


async def start_session(user: FakeUser, new_session_button: str) -> ChatMessage:
    greeting = await command(user, "/start")
    assert "PinGlass" in greeting.content
    assert any(new_session_button in text for text in button_texts(greeting))
    return await click(user, new_session_button)


def intake_settings(fake: FakeTelegram, database_url: str, files_dir: Path, **overrides: Any) -> Settings:
    # The conversation here replies far faster than Telegram's ~1 message/s per chat; the outgoing limiter
    # belongs to delivery's tests, and at 1/s these tests would mostly wait for it.
    return app_settings(fake, database_url, files_dir, **({"TELEGRAM_CHAT_RATE": 1000.0} | overrides))


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
async def app_and_fake(
    fake_telegram: FakeTelegram, sqlite_url: str, files_dir: Path
) -> AsyncIterator[tuple[Application, FakeTelegram]]:
    async with running_app(intake_settings(fake_telegram, sqlite_url, files_dir)) as app:
        yield app, fake_telegram


# ---------------------------------------------------------------- happy paths


async def test_single_photos_style_pack_and_summary_in_russian(
    fake_telegram: FakeTelegram, database_url: str, files_dir: Path
) -> None:
    async with running_app(intake_settings(fake_telegram, database_url, files_dir)) as app:
        user = fake_telegram.user(first_name="Анна", language_code="ru")
        greeting = await command(user, "/start")
        assert "Анна" in greeting.content
        # nothing to reuse yet; a gift can always be bought
        assert button_texts(greeting) == ["📸 Новая фотосессия", "🎁 Подарить фотосессию"]

        instructions = await click(user, "Новая фотосессия")
        assert "Пришлите 5–8 селфи" in instructions.content

        photos = selfies(5, first_seed=100)
        for number, photo in enumerate(photos[:4], start=1):
            progress = await send_photo(user, photo)
            assert f"Получено {number} из 5–8 фото" in progress.content
            assert f"Пришлите ещё минимум {5 - number}" in progress.content
            assert progress.buttons == []  # no Done before five
        fifth = await send_photo(user, photos[4])
        assert "Получено 5 из 5–8 фото" in fifth.content
        assert button_texts(fifth) == ["✅ Готово — продолжить с 5 фото"]

        snap = await snapshot(app, user)
        [(avatar_id, status)] = snap.avatars
        assert status == "collecting"
        assert [slot for _, slot, *_ in snap.photos] == [1, 2, 3, 4, 5]
        assert len({sha for *_, sha, _ in snap.photos}) == 5
        await assert_stored_photos_are_jpegs(app, snap)

        style_prompt = await click(user, "Готово")
        assert "Выберите стиль" in style_prompt.content
        assert button_texts(style_prompt) == list(STYLE_NAMES["ru"])
        assert (await snapshot(app, user)).avatars == [(avatar_id, "ready")]

        pack_prompt = await click(user, "Лайфстайл")
        assert "Стиль: Лайфстайл" in pack_prompt.content
        # Only Stars are configured here (no YooKassa credentials): prices in Stars, and the unused trial first.
        assert button_texts(pack_prompt) == [
            "🎁 Пробный: 3 фото бесплатно",
            "7 фото — 250 ⭐",
            "15 фото — 450 ⭐",
            "23 фото — 650 ⭐",
        ]

        summary = await click(user, "15 фото")
        for line in ("Ваш заказ", "Селфи: 5", "Стиль: Лайфстайл", "Портретов: 15", "Цена: 450 ⭐"):
            assert line in summary.content
        assert button_texts(summary) == ["💳 Оплатить", "✏️ Изменить", "✖️ Отмена"]

        snap = await snapshot(app, user)
        [(order_id, order_avatar, style, pack, photos_count, rub, stars, order_status)] = snap.orders
        assert (order_avatar, style, photos_count, rub, stars, order_status) == (
            avatar_id,
            "lifestyle",
            15,
            89000,
            450,
            "awaiting_payment",
        )
        await assert_stored_photos_are_jpegs(app, snap)

        status = await command(user, "/status")
        assert "Заказ собран" in status.content

        # Change: the unpaid order is withdrawn and the style is asked again, the photos stay.
        again = await click(user, "Изменить")
        assert "Выберите стиль" in again.content
        after_change = await snapshot(app, user)
        assert after_change.orders[0][-1] == "cancelled"
        assert after_change.photos == snap.photos


async def test_album_of_six_gets_one_reply_then_trial_pack_in_english(
    app_and_fake: tuple[Application, FakeTelegram],
) -> None:
    app, fake = app_and_fake
    user = fake.user(first_name="Bob", language_code="en")
    instructions = await start_session(user, "New photo session")
    assert "Send 5–8 selfies" in instructions.content

    before = len(fake.sent_messages(user.id))
    await user.send_album(selfies(6, first_seed=200))
    reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
    await asyncio.sleep(ALBUM_SETTLE_SECONDS)
    assert len(fake.sent_messages(user.id)) == before + 1  # one reply for the whole album
    assert "6 of the 6 photos in the album were accepted" in reply.content
    assert "6 of 5–8 photos received" in reply.content
    assert button_texts(reply) == ["✅ Done — continue with 6 photos"]

    snap = await snapshot(app, user)
    assert [slot for _, slot, *_ in snap.photos] == [1, 2, 3, 4, 5, 6]
    await assert_stored_photos_are_jpegs(app, snap)

    style_prompt = await click(user, "Done")
    assert "Choose the style" in style_prompt.content
    assert button_texts(style_prompt) == list(STYLE_NAMES["en"])
    pack_prompt = await click(user, "Creative")
    assert "Style: Creative" in pack_prompt.content
    assert button_texts(pack_prompt)[0] == "🎁 Trial: 3 photos for free"
    summary = await click(user, "Trial")
    for line in ("Your order", "Selfies: 6", "Style: Creative", "Portraits: 3", "Price: free"):
        assert line in summary.content
    assert button_texts(summary) == ["🎁 Start for free", "✏️ Change", "✖️ Cancel"]
    [(trial_order_id, avatar_id, style, pack, photos, rub, stars, status)] = (await snapshot(app, user)).orders
    assert (avatar_id, style, pack, photos, rub, stars, status) == (
        snap.avatars[0][0],
        "creative",
        "trial",
        3,
        0,
        0,
        "ready",
    )

    # Starting the trial queues it and uses the trial up.
    await user.click("Start for free")
    queued = await user.wait_reply(timeout=REPLY_TIMEOUT)
    assert "Here we go! 3 portraits are queued" in queued.content
    async with app.sessionmaker() as session:
        assert "trial" in (await session.execute(select(LedgerEntry.reason))).scalars().all()
        # A started trial keeps its READY order: withdrawing it now would orphan the queued job.
        assert not await order_queries.cancel_unpaid_order(session, trial_order_id)

    greeting = await command(user, "/start")
    assert button_texts(greeting) == ["📸 New photo session", "🔁 Use my previous photos", "🎁 Gift a photo session"]
    style_again = await click(user, "Use my previous photos")
    assert button_texts(style_again) == list(STYLE_NAMES["en"])
    packs = await click(user, "Professional")
    assert [text.split(" —")[0] for text in button_texts(packs)] == ["7 photos", "15 photos", "23 photos"]
    summary = await click(user, "23 photos")
    assert "Selfies: 6" in summary.content and "Portraits: 23" in summary.content and "Price: 650 ⭐" in summary.content
    final = await snapshot(app, user)
    assert [(o[1], o[3], o[-1]) for o in final.orders] == [
        (avatar_id, "trial", "ready"),
        (avatar_id, "p23", "awaiting_payment"),
    ]
    assert [a[0] for a in final.avatars] == [avatar_id] and final.photos == snap.photos  # reused, not copied


async def test_image_files_jpeg_png_webp_heic_are_accepted(app_and_fake: tuple[Application, FakeTelegram]) -> None:
    app, fake = app_and_fake
    user = fake.user(language_code="en")
    await start_session(user, "New photo session")
    files = [
        (corpus.selfie_like_jpeg(300), "IMG_0001.JPG", "image/jpeg"),
        (selfie_as("PNG", 301), "screenshot.png", "image/png"),
        (selfie_as("WEBP", 302), "photo.webp", "image/webp"),
        (selfie_as("HEIF", 303), "IMG_0004.HEIC", "image/heic"),
        # Some clients send no useful MIME type: the extension is enough to try it as an image.
        (selfie_as("HEIF", 304), "IMG_0005.heic", "application/octet-stream"),
    ]
    for number, (data, name, mime) in enumerate(files, start=1):
        reply = await send_document(user, data, name, mime)
        assert f"{number} of 5–8 photos received" in reply.content, (name, reply.content)
    snap = await snapshot(app, user)
    assert len(snap.photos) == 5
    await assert_stored_photos_are_jpegs(app, snap)
    async with app.sessionmaker() as session:
        sizes = (
            await session.execute(select(ReferencePhoto.width, ReferencePhoto.height).order_by(ReferencePhoto.slot))
        ).all()
    assert [tuple(size) for size in sizes] == [(1024, 1280)] * 3 + [(640, 800)] * 2
    style_prompt = await click(user, "Done")
    assert "Choose the style" in style_prompt.content


# ---------------------------------------------------------------- refusals


async def test_wrong_kinds_and_bad_files_are_refused_each_with_its_own_message(
    app_and_fake: tuple[Application, FakeTelegram],
) -> None:
    app, fake = app_and_fake
    user = fake.user(language_code="ru")
    await start_session(user, "Новая фотосессия")
    first = await send_photo(user, selfies(1, first_seed=500)[0])
    assert "Получено 1 из 5–8 фото" in first.content
    baseline = await snapshot(app, user)
    assert len(baseline.photos) == 1 and baseline.keys == baseline.photo_keys

    not_an_image = "Это не изображение"
    wrong_kinds = [
        (user.send_sticker(), "Стикер не подойдёт"),
        (user.send_video(), "Видео не подойдёт"),
        (user.send_voice(), "Голосовые и аудио не подойдут"),
        (user.send_text("вот мои фото"), "Сейчас я жду фотографии: пришлите 5–8 селфи"),
        (user.send_document(b"%PDF-1.7\n%fake pdf", "passport.pdf", "application/pdf"), not_an_image),
    ]
    for send, expected in wrong_kinds:
        await send
        reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
        assert expected in reply.content, (expected, reply.content)
        assert reply.buttons == []

    bad_files = [
        (corpus.text_as_jpg(), "notes.jpg", "image/jpeg", not_an_image),
        (corpus.truncated_jpeg(), "cut.jpg", "image/jpeg", "Не получилось прочитать фото"),
        (corpus.corrupt_png(), "broken.png", "image/png", "Не получилось прочитать фото"),
        (corpus.tiny_png(), "pixel.png", "image/png", "Фото слишком маленькое"),
        (corpus.bomb_png(), "bomb.png", "image/png", "слишком большое для обработки"),
        (corpus.animated_gif(), "funny.gif", "image/gif", "Анимация не подойдёт"),
        (corpus.animated_webp(), "funny.webp", "image/webp", "Анимация не подойдёт"),
    ]
    for data, name, mime, expected in bad_files:
        reply = await send_document(user, data, name, mime)
        assert expected in reply.content, (name, reply.content)
        assert "Получено 1 из 5–8 фото" in reply.content, name  # the count did not move
    small = await send_photo(user, corpus.small_jpeg())
    assert "Фото слишком маленькое (меньше 512 пикселей" in small.content

    # Over 20 MB: refused from the size Telegram reports, before any download (getFile would fail anyway).
    huge = await user.send_document(corpus.valid_jpeg(), "huge.jpg", "image/jpeg", file_size=25 * MB)
    reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
    assert "Файл больше 20 МБ" in reply.content
    huge_file_id = huge["message"]["document"]["file_id"]
    assert [call for call in fake.calls("getFile") if call.params.get("file_id") == huge_file_id] == []

    # Only files that looked like images were fetched from Telegram, and all of them were (so the checks are
    # real image checks, not guesses from the name).
    fetched = len(fake.calls("getFile"))
    assert fetched == 1 + len(bad_files) + 1

    assert await snapshot(app, user) == baseline  # no row, no file, no status change for any refusal


async def test_duplicates_and_a_ninth_photo_are_refused(app_and_fake: tuple[Application, FakeTelegram]) -> None:
    app, fake = app_and_fake
    user = fake.user(language_code="en")
    await start_session(user, "New photo session")
    assert "1 of 5–8" in (await send_photo(user, corpus.valid_jpeg())).content
    baseline = await snapshot(app, user)

    # The same photo again: Telegram gives it the same file_unique_id, so it is refused without a download.
    downloads = len(fake.calls("getFile"))
    resent = await user.send_photo(corpus.valid_jpeg())
    reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
    assert "That photo is already in your set" in reply.content and "1 of 5–8" in reply.content
    assert len(fake.calls("getFile")) == downloads
    assert resent["message"]["photo"][-1]["file_unique_id"] == baseline.photos[0][4]

    # The same picture as a PNG file: another file for Telegram, the same photo by content.
    reply = await send_document(user, corpus.valid_png(), "same.png", "image/png")
    assert "That photo is already in your set" in reply.content and "1 of 5–8" in reply.content
    assert len(fake.calls("getFile")) == downloads + 1
    assert await snapshot(app, user) == baseline

    photos = selfies(7, first_seed=600)
    for number, photo in enumerate(photos[:6], start=2):
        reply = await send_photo(user, photo)
        assert f"{number} of 5–8 photos received" in reply.content
    await user.send_photo(photos[6])
    full = await user.wait_reply(timeout=REPLY_TIMEOUT)
    assert "All 8 photos received" in full.content
    style_prompt = await user.wait_reply(lambda message: bool(message.buttons), timeout=REPLY_TIMEOUT)
    assert "Choose the style" in style_prompt.content  # at eight the intake moves on by itself
    snap = await snapshot(app, user)
    assert [slot for _, slot, *_ in snap.photos] == list(range(1, 9))
    assert snap.avatars == [(baseline.avatars[0][0], "ready")]

    ninth = await send_photo(user, selfies(1, first_seed=700)[0])
    assert "Your set already has 8 photos" in ninth.content
    assert await snapshot(app, user) == snap
    await assert_stored_photos_are_jpegs(app, snap)


async def test_album_with_a_bad_photo_and_an_album_past_eight(app_and_fake: tuple[Application, FakeTelegram]) -> None:
    app, fake = app_and_fake
    user = fake.user(language_code="en")
    await start_session(user, "New photo session")
    good = selfies(8, first_seed=800)

    before = len(fake.sent_messages(user.id))
    await user.send_album([good[0], corpus.small_jpeg(), good[1], good[0]])
    reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
    assert "2 of the 4 photos in the album were accepted" in reply.content
    assert "The photo is too small" in reply.content and "already in your set" in reply.content
    assert "2 of 5–8 photos received" in reply.content

    assert "3 of 5–8" in (await send_photo(user, good[2])).content

    # Six more make nine: five fit, one is refused, and the intake moves on to the style.
    await user.send_album(good[3:8] + [selfies(1, first_seed=900)[0]])
    reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
    assert "5 of the 6 photos in the album were accepted" in reply.content
    assert "Your set already has 8 photos" in reply.content
    assert "All 8 photos received" in reply.content
    style_prompt = await user.wait_reply(lambda message: bool(message.buttons), timeout=REPLY_TIMEOUT)
    assert "Choose the style" in style_prompt.content
    await asyncio.sleep(ALBUM_SETTLE_SECONDS)
    # Per album one reply (plus, the second time, the style question): never one reply per photo.
    assert len(fake.sent_messages(user.id)) == before + 4

    snap = await snapshot(app, user)
    assert len(snap.photos) == 8 and snap.avatars[0][1] == "ready"
    await assert_stored_photos_are_jpegs(app, snap)


async def test_album_of_ten_without_start_in_webhook_mode(
    fake_telegram: FakeTelegram, sqlite_url: str, files_dir: Path
) -> None:
    # Webhook mode: Telegram POSTs the album's updates concurrently, the hardest case for one reply per album.
    async with running_app(intake_settings(fake_telegram, sqlite_url, files_dir, webhook=True)) as app:
        user = fake_telegram.user(language_code="ru")
        await user.send_album(selfies(10, first_seed=950))  # no /start, no button: the photos start a set
        reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
        assert "Из альбома принято 8 из 10 фото" in reply.content
        assert "В наборе уже 8 фото" in reply.content and "Все 8 фото получены" in reply.content
        style_prompt = await user.wait_reply(lambda message: bool(message.buttons), timeout=REPLY_TIMEOUT)
        assert button_texts(style_prompt) == list(STYLE_NAMES["ru"])
        await asyncio.sleep(ALBUM_SETTLE_SECONDS)
        assert len(fake_telegram.sent_messages(user.id)) == 2
        assert all(delivery.status == 200 for delivery in fake_telegram.webhook_deliveries)
        snap = await snapshot(app, user)
        assert len(snap.avatars) == 1 and snap.avatars[0][1] == "ready"
        assert [slot for _, slot, *_ in snap.photos] == list(range(1, 9))
        await assert_stored_photos_are_jpegs(app, snap)


# ---------------------------------------------------------------- anywhere: /cancel, /status, stale and forged buttons


async def test_cancel_and_status_at_every_step(app_and_fake: tuple[Application, FakeTelegram]) -> None:
    app, fake = app_and_fake
    user = fake.user(language_code="en")
    assert "You have no orders yet" in (await command(user, "/status")).content
    assert "There is nothing to cancel" in (await command(user, "/cancel")).content

    await start_session(user, "New photo session")
    for photo in selfies(2, first_seed=1000):
        await send_photo(user, photo)
    status = await command(user, "/status")
    assert "We are collecting your selfies" in status.content and "2 of 5–8 photos received" in status.content
    # Done forged before five photos: refused with the number still missing, the step stays.
    [(avatar_id, _)] = (await snapshot(app, user)).avatars
    query_id = await user.press_button(status.message_id, f"u:done:{avatar_id}")
    answer = await fake.wait_for(
        lambda call: call.method == "answerCallbackQuery" and str(call.params["callback_query_id"]) == query_id,
        timeout=REPLY_TIMEOUT,
    )
    assert answer.params["text"] == "Send at least 3 more." and answer.params["show_alert"] is True
    cancelled = await command(user, "/cancel")
    assert "OK, cancelled" in cancelled.content
    assert "You have no orders yet" in (await command(user, "/status")).content
    abandoned = await snapshot(app, user)
    assert [status for _, status in abandoned.avatars] == ["deleted"]

    # After /cancel a photo starts a new set instead of quietly continuing the abandoned one.
    photos = selfies(5, first_seed=1100)
    assert "1 of 5–8 photos received" in (await send_photo(user, photos[0])).content
    for photo in photos[1:]:
        await send_photo(user, photo)
    snap = await snapshot(app, user)
    assert [status for _, status in snap.avatars] == ["deleted", "collecting"]
    assert len(snap.photos_of(snap.avatars[1][0])) == 5

    await click(user, "Done")
    assert "Choose the style" in (await command(user, "/status")).content  # shows the step again, with buttons
    # Text or another photo while a button is expected: pointed to the buttons, nothing stored.
    for send in (user.send_text("professional please"), user.send_photo(selfies(1, first_seed=1150)[0])):
        await send
        assert "Please use the buttons" in (await user.wait_reply(timeout=REPLY_TIMEOUT)).content
        assert "Choose the style" in (await user.wait_reply(lambda m: bool(m.buttons), timeout=REPLY_TIMEOUT)).content
    assert (await snapshot(app, user)).photos == snap.photos
    await click(user, "Professional")
    assert "Next: choose a pack" in (await command(user, "/status")).content
    await click(user, "7 photos")
    assert "Your order is ready" in (await command(user, "/status")).content

    # Pay ends the intake; from then on /status reports the order itself.
    await user.click("Pay")
    await user.wait_reply(lambda message: message.kind == "invoice", timeout=REPLY_TIMEOUT)
    [order] = (await snapshot(app, user)).orders
    status = await command(user, "/status")
    assert f"Order #{order[0]}: 7 photos, Professional style — awaiting payment" in status.content

    # /cancel at the summary withdraws the unpaid order; the finished photo set stays for later.
    await command(user, "/start")
    await click(user, "Use my previous photos")
    await click(user, "Creative")
    await click(user, "15 photos")
    assert "OK, cancelled" in (await command(user, "/cancel")).content
    final = await snapshot(app, user)
    assert [(o[3], o[-1]) for o in final.orders] == [("p7", "awaiting_payment"), ("p15", "cancelled")]
    assert [status for _, status in final.avatars] == ["deleted", "ready"]
    assert final.keys == final.photo_keys


async def test_stale_and_forged_buttons_are_answered_and_change_nothing(
    fake_telegram: FakeTelegram, sqlite_url: str, files_dir: Path
) -> None:
    # No per-user throttle: this test presses buttons far faster than a person could, and a dropped update
    # would look like a handler that failed to answer.
    settings = intake_settings(fake_telegram, sqlite_url, files_dir, THROTTLE_UPDATES_PER_SECOND=0)
    async with running_app(settings) as app:
        await _stale_and_forged_buttons(app, fake_telegram)


async def _stale_and_forged_buttons(app: Application, fake: FakeTelegram) -> None:
    # Another user with an unpaid order, whose ids the first user tries to use.
    other = fake.user(language_code="ru")
    await start_session(other, "Новая фотосессия")
    await other.send_album(selfies(5, first_seed=1200))
    await other.wait_reply(timeout=REPLY_TIMEOUT)
    await click(other, "Готово")
    await click(other, "Деловой")
    await click(other, "7 фото")
    other_before = await snapshot(app, other)
    [(other_order, other_avatar, *_)] = other_before.orders

    user = fake.user(language_code="ru")
    await start_session(user, "Новая фотосессия")
    await user.send_album(selfies(5, first_seed=1300))
    done_message = await user.wait_reply(timeout=REPLY_TIMEOUT)
    [(avatar_id, _)] = (await snapshot(app, user)).avatars
    style_message = await click(user, "Готово")
    await click(user, "Креатив")
    at_pack = await snapshot(app, user)

    stale = "Эта кнопка уже неактивна."
    pack_step = "Сейчас нужно выбрать пакет"
    # Buttons of earlier steps, and forged or malformed data: answered, and the user is shown where they are.
    for message_id, data in [
        (done_message.message_id, done_message.buttons[0]["callback_data"]),
        (style_message.message_id, style_message.buttons[0]["callback_data"]),
        (style_message.message_id, f"p:{avatar_id}:professional:p15"),  # a style other than the chosen one
        (style_message.message_id, f"p:{avatar_id}:creative:p999"),
        (style_message.message_id, f"p:{other_avatar}:creative:p7"),
        (style_message.message_id, f"s:{avatar_id}:nonexistent"),
        (style_message.message_id, "s:not-a-number:creative"),
        (style_message.message_id, f"u:done:{avatar_id}:extra"),
        (style_message.message_id, "garbage"),
        (style_message.message_id, "x" * 64),
    ]:
        answer, reply = await press(fake, user, message_id, data)
        assert answer == stale, data
        assert pack_step in reply.content, data
    assert await snapshot(app, user) == at_pack

    summary = await click(user, "15 фото")
    assert "Портретов: 15" in summary.content
    at_summary = await snapshot(app, user)
    [(order_id, *_)] = at_summary.orders

    # Someone else's order id: never acted upon.
    for data in (f"o:{other_order}:cancel", f"o:{other_order}:change"):
        answer, reply = await press(fake, user, summary.message_id, data)
        assert answer == stale and "Заказ собран" in reply.content
    query_id = await user.press_button(summary.message_id, f"o:{other_order}:pay")
    await fake.wait_for(
        lambda call: call.method == "answerCallbackQuery" and str(call.params["callback_query_id"]) == query_id,
        timeout=REPLY_TIMEOUT,
    )
    assert await snapshot(app, other) == other_before
    assert await snapshot(app, user) == at_summary

    # An abandoned session: after /cancel the summary's buttons are dead.
    await command(user, "/cancel")
    answer, reply = await press(fake, user, summary.message_id, f"o:{order_id}:change")
    assert answer == stale and "Сейчас ничего не происходит" in reply.content
    answer, reply = await press(fake, user, style_message.message_id, style_message.buttons[1]["callback_data"])
    assert answer == stale and "Сейчас ничего не происходит" in reply.content

    # A button on a message the bot can no longer see (Telegram sends an InaccessibleMessage) still works.
    answer, reply = await press(fake, user, 999_999, "m:new")
    assert "Пришлите 5–8 селфи" in reply.content
    answer, reply = await press(fake, user, 999_998, f"s:{avatar_id}:creative")
    assert answer == stale and "Сейчас мы собираем ваши селфи" in reply.content


# ---------------------------------------------------------------- restarts, Redis, S3


def unique_telegram_id() -> int:
    # Redis outlives a test: a fresh id keeps earlier runs' FSM keys out of this one.
    return random.randrange(7_000_000_000, 8_000_000_000)


async def test_resume_after_restart_with_fsm_in_redis(
    fake_telegram: FakeTelegram, database_url: str, redis_url: str, files_dir: Path
) -> None:
    def settings() -> Settings:
        return intake_settings(fake_telegram, database_url, files_dir, REDIS_URL=redis_url)

    user = fake_telegram.user(user_id=unique_telegram_id(), language_code="ru")
    photos = selfies(5, first_seed=1400)
    try:
        async with running_app(settings()) as app:
            await start_session(user, "Новая фотосессия")
            for photo in photos[:3]:
                await send_photo(user, photo)
            before = await snapshot(app, user)

        async with running_app(settings()) as app:
            assert await snapshot(app, user) == before  # photos and files survived
            status = await command(user, "/status")
            assert "Сейчас мы собираем ваши селфи" in status.content and "Получено 3 из 5–8" in status.content
            await send_photo(user, photos[3])
            fifth = await send_photo(user, photos[4])
            assert "Получено 5 из 5–8 фото" in fifth.content
            await click(user, "Готово")
            await click(user, "Деловой")

        async with running_app(settings()) as app:
            # The pack step and the chosen style came back from Redis.
            summary = await click(user, "23 фото")
            assert "Стиль: Деловой" in summary.content and "Селфи: 5" in summary.content
            snap = await snapshot(app, user)
            assert len(snap.avatars) == 1 and len(snap.photos) == 5
            assert [(o[2], o[3], o[-1]) for o in snap.orders] == [("professional", "p23", "awaiting_payment")]
            await assert_stored_photos_are_jpegs(app, snap)
    finally:
        redis = Redis.from_url(redis_url)
        try:
            async for key in redis.scan_iter(match=f"fsm:*:{user.id}:*"):
                await redis.delete(key)
        finally:
            await redis.aclose()


async def test_without_redis_a_restart_resumes_the_set_from_the_database(
    fake_telegram: FakeTelegram, sqlite_url: str, files_dir: Path
) -> None:
    user = fake_telegram.user(language_code="en")
    photos = selfies(5, first_seed=1500)
    async with running_app(intake_settings(fake_telegram, sqlite_url, files_dir)) as app:
        await start_session(user, "New photo session")
        for photo in photos[:2]:
            await send_photo(user, photo)
        before = await snapshot(app, user)
    async with running_app(intake_settings(fake_telegram, sqlite_url, files_dir)) as app:
        # The in-memory step is gone, the set is not: the next photo joins it.
        assert "3 of 5–8 photos received" in (await send_photo(user, photos[2])).content
        snap = await snapshot(app, user)
        assert snap.avatars == before.avatars and len(snap.photos) == 3
        await assert_stored_photos_are_jpegs(app, snap)


async def test_happy_path_with_files_in_s3(
    fake_telegram: FakeTelegram, sqlite_url: str, files_dir: Path, moto_s3_endpoint: MotoS3Server
) -> None:
    bucket = unique_bucket_name("intake")
    s3 = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": moto_s3_endpoint.endpoint_url,
        "S3_REGION": moto_s3_endpoint.region,
        "S3_ACCESS_KEY": moto_s3_endpoint.access_key,
        "S3_SECRET_KEY": moto_s3_endpoint.secret_key,
    }
    async with running_app(intake_settings(fake_telegram, sqlite_url, files_dir, **s3)) as app:
        assert isinstance(app.files, S3FileStore)
        await app.files.ensure_bucket()
        user = fake_telegram.user(language_code="ru")
        await start_session(user, "Новая фотосессия")
        assert "Не получилось прочитать" in (await send_document(user, corpus.truncated_jpeg(), "a.jpg")).content
        await user.send_album(selfies(5, first_seed=1600))
        reply = await user.wait_reply(timeout=REPLY_TIMEOUT)
        assert "Получено 5 из 5–8 фото" in reply.content
        await click(user, "Готово")
        await click(user, "Креатив")
        summary = await click(user, "7 фото")
        assert "Селфи: 5" in summary.content and "Цена: 250 ⭐" in summary.content
        snap = await snapshot(app, user)
        assert len(snap.photos) == 5 and [o[-1] for o in snap.orders] == ["awaiting_payment"]
        await assert_stored_photos_are_jpegs(app, snap)  # listed and read back over the S3 protocol

        # Cancel on the summary withdraws the order; the finished set and its files stay for a later pack.
        assert "Хорошо, отменил" in (await click(user, "Отмена")).content
        after = await snapshot(app, user)
        assert [o[-1] for o in after.orders] == ["cancelled"] and after.avatars[0][1] == "ready"
        assert after.keys == snap.keys
    assert not list(files_dir.rglob("*.jpg"))  # nothing went to the local disk
