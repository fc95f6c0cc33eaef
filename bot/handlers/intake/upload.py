"""The upload step: selfies in (as photos, an album, or image files), Done, and input that is no photo."""

from __future__ import annotations

import logging
from functools import partial
from io import BytesIO

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.album import AlbumCollector, UserLocks
from bot.handlers.chat import ChatTarget
from bot.handlers.intake.steps import (
    AFTER_UPLOAD_STATES,
    Intake,
    ask_for_style,
    done_button,
    open_set,
    show_current_step,
    upload_progress_text,
)
from bot.i18n import counted
from scheduler.examples import ExampleService
from scheduler.intake import FAILED, TOO_MANY, IncomingPhoto, IntakeService, PhotoOutcome, SetState
from storage.models import User
from studio.catalogue import Catalogue
from studio.intake import MAX_PHOTOS, MIN_PHOTOS

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")


async def receive_image(
    message: Message,
    state: FSMContext,
    user: User,
    bot: Bot,
    catalogue: Catalogue,
    intake: IntakeService,
    examples: ExampleService,
    album_collector: AlbumCollector[PhotoOutcome],
    user_locks: UserLocks,
) -> None:
    album_key = (message.chat.id, message.media_group_id) if message.media_group_id else None
    if album_key is not None:
        album_collector.begin(album_key)
    outcome = await _take(message, state, user, bot, intake, user_locks)
    if album_key is not None:
        outcomes = await album_collector.finish(album_key, message.message_id, outcome)
        if outcomes is None:
            return
    else:
        outcomes = [outcome]
    await _reply_to_upload(message, state, user, catalogue, intake, examples, outcomes)


async def _take(
    message: Message, state: FSMContext, user: User, bot: Bot, intake: IntakeService, user_locks: UserLocks
) -> PhotoOutcome:
    photo = incoming_photo(message, bot)
    try:
        async with user_locks.lock(user.id):
            current = await state.get_state()
            after_upload = current in AFTER_UPLOAD_STATES
            named = (
                (await state.get_data()).get("avatar_id") if after_upload or current == Intake.uploading.state else None
            )
            avatar_id = int(named) if named else None
            return await intake.take_photo(
                user.id, photo, partial(open_set, state), avatar_id=avatar_id, after_upload=after_upload
            )
    except Exception:
        # Every item must report an outcome, or its album never gets its one reply (and the
        # collector keeps the album forever): a failure is an outcome too.
        log.exception("taking a photo of user %s failed", user.id)
        return PhotoOutcome(False, 0, FAILED)


def incoming_photo(message: Message, bot: Bot) -> IncomingPhoto:
    """The photo (or image file) of ``message``, downloaded only when its checks ask for the bytes."""
    file_id, file_unique_id, file_size = _file_of(message)

    async def fetch() -> bytes:
        buffer = BytesIO()
        await bot.download(file_id, destination=buffer, timeout=60)
        return buffer.getvalue()

    return IncomingPhoto(file_unique_id, file_size, fetch)


def _file_of(message: Message) -> tuple[str, str, int | None]:
    if message.photo:
        largest = message.photo[-1]
        return largest.file_id, largest.file_unique_id, largest.file_size
    document = message.document
    assert document is not None
    return document.file_id, document.file_unique_id, document.file_size


async def _reply_to_upload(
    message: Message,
    state: FSMContext,
    user: User,
    catalogue: Catalogue,
    intake: IntakeService,
    examples: ExampleService,
    outcomes: list[PhotoOutcome],
) -> None:
    rejections = [outcome.reason_key for outcome in outcomes if outcome.reason_key]
    if await state.get_state() != Intake.uploading.state:
        # Photos after the set was closed: say why they were not taken, then where the user is.
        await message.answer(_(TOO_MANY).format(max=MAX_PHOTOS) if TOO_MANY in rejections else _("stray.use_buttons"))
        await show_current_step(message, state, user, catalogue, intake)
        return
    named = (await state.get_data()).get("avatar_id")
    settled = await intake.settle_upload(user.id, int(named)) if named else None
    if named is None or settled is None:
        return
    avatar_id = int(named)
    accepted = sum(1 for outcome in outcomes if outcome.accepted)
    lines: list[str] = []
    if len(outcomes) > 1 and accepted:
        lines.append(_("upload.album_received").format(accepted=accepted, total=len(outcomes)))
    for reason in dict.fromkeys(rejections):  # one line per distinct reason, in order
        lines.append(_(reason).format(max=MAX_PHOTOS, min=MIN_PHOTOS))
    if settled.reviewed_out:
        if lines:
            await message.answer("\n".join(lines))
        await _answer_set_review(message, avatar_id, settled)
    elif settled.closed:
        lines.append(_("upload.full").format(max=MAX_PHOTOS))
        await message.answer("\n".join(lines))
        await ask_for_style(message, state, catalogue, user, avatar_id, examples)
    else:
        lines.append(upload_progress_text(settled.count))
        await message.answer("\n".join(lines), reply_markup=done_button(avatar_id, settled.count))


async def upload_done(
    query: CallbackQuery,
    state: FSMContext,
    user: User,
    catalogue: Catalogue,
    intake: IntakeService,
    examples: ExampleService,
    avatar_id: int,
) -> None:
    """Done: the set is reviewed and closed, and the style is next (``avatar_id``: the set the step
    collects, which the button named; bot/middlewares/intake_buttons.py checked)."""
    assert query.message is not None  # the root router admits only queries from a private chat's message
    settled = await intake.close_set(user.id, avatar_id)
    if not settled.closed and not settled.reviewed_out:
        await query.answer(_("upload.need_more").format(need=MIN_PHOTOS - settled.count), show_alert=True)
        return
    await query.answer()
    if settled.reviewed_out:
        await _answer_set_review(query.message, avatar_id, settled)
        return
    await ask_for_style(query.message, state, catalogue, user, avatar_id, examples)


async def _answer_set_review(message: ChatTarget, avatar_id: int, settled: SetState) -> None:
    """The set failed the face review: say which photos went (or that it cannot be used), then where we are."""
    if settled.refused:
        await message.answer(_("faces.set.no_majority").format(min=MIN_PHOTOS, max=MAX_PHOTOS))
        return
    slots = ", ".join(str(slot) for slot in settled.removed_slots)
    removed = counted("faces.set.removed", len(settled.removed_slots), slots=slots)
    text = f"{removed}\n{upload_progress_text(settled.count)}"
    await message.answer(text, reply_markup=done_button(avatar_id, settled.count))


async def wrong_upload_input(message: Message) -> None:
    if message.sticker:
        key = "upload.wrong.sticker"
    elif message.video or message.animation or message.video_note:
        key = "upload.wrong.video"
    elif message.voice or message.audio:
        key = "upload.wrong.voice"
    elif message.document:
        key = "photo.rejected.not_an_image"
    else:
        key = "upload.wrong.text"
    await message.answer(_(key).format(min=MIN_PHOTOS, max=MAX_PHOTOS))


def is_image_document(message: Message) -> bool:
    document = message.document
    if document is None:
        return False
    if document.mime_type and document.mime_type.startswith("image/"):
        return True
    return bool(document.file_name and document.file_name.lower().endswith(IMAGE_EXTENSIONS))
