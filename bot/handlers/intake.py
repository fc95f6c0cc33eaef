"""The intake conversation: 5–8 selfies in, a style and a pack chosen, an order saved.

Handlers only translate between the chat and the rules: photo checks live in storage.images,
counts in studio.intake, durable state (photos, avatars, orders) in the database.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from io import BytesIO

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, Update
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards
from bot.album import AlbumCollector, UserLocks
from bot.callbacks import AgainCb, MenuCb, OrderCb, PackCb, SpendCb, StyleCb, UploadCb
from bot.handlers.chat import ChatTarget
from bot.i18n import counted
from bot.middlewares.replay import step_update
from bot.settings import Settings
from scheduler.credits import CreditService, CreditsUnavailable, picker_spend_key
from storage import avatars as avatar_queries
from storage import faces as face_queries
from storage import jobs as job_queries
from storage import ledger
from storage import orders as order_queries
from storage.events import EventName, count_recent, record_event
from storage.faces import FaceAnalyser, SetReview
from storage.files import FileStore
from storage.images import ImageRejected, validate_and_normalize
from storage.models import Avatar, User, utcnow
from studio.catalogue import Catalogue, Pack
from studio.credits import Currency, format_price, price_for
from studio.intake import MAX_PHOTOS, MIN_PHOTOS, can_finish, is_full
from studio.states import AvatarStatus

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
RESUME_WINDOW = timedelta(days=7)
# Sentinel reason: a photo arrived outside the upload step (nothing to say about the photo itself).
NOT_NOW = "upload.not_now"
TOO_MANY = "photo.rejected.too_many"
# Beyond the hourly budget of rejected photos nothing is downloaded or checked.
OVER_BUDGET = "photo.rejected.over_budget"
# Our own failure while taking a photo: the user is told, and it never counts against them.
FAILED = "photo.rejected.failed"
NOT_RECORDED = (NOT_NOW, OVER_BUDGET, FAILED)
REJECTION_WINDOW = timedelta(hours=1)


class Intake(StatesGroup):
    uploading = State()
    style = State()
    pack = State()
    summary = State()


AFTER_UPLOAD = (Intake.style, Intake.pack, Intake.summary)


@dataclass(frozen=True, slots=True)
class PhotoOutcome:
    accepted: bool
    count: int
    reason_key: str | None = None


# ---------------------------------------------------------------- helpers


def offered_currencies(settings: Settings) -> tuple[Currency, ...]:
    currencies: list[Currency] = []
    if settings.yookassa_enabled:
        currencies.append(Currency.RUB)
    if settings.STARS_ENABLED:
        currencies.append(Currency.STARS)
    return tuple(currencies) or (Currency.STARS,)


async def _begin_upload(state: FSMContext, session: AsyncSession, user: User) -> Avatar:
    avatar = await avatar_queries.create_avatar(session, user.id)
    await session.commit()  # the set must exist before the first photo, which may come at once
    # The data first: once the step says "uploading", it names this set (a kill in between is
    # repaired by the update's second delivery, bot/middlewares/replay.py).
    await state.set_data({"avatar_id": avatar.id})
    await state.set_state(Intake.uploading)
    return avatar


async def _current_avatar(state: FSMContext, session: AsyncSession, user: User) -> Avatar | None:
    avatar_id = (await state.get_data()).get("avatar_id")
    if avatar_id is None:
        return None
    return await avatar_queries.get_avatar(session, int(avatar_id), user.id)


async def ask_for_style(
    message: ChatTarget, state: FSMContext, catalogue: Catalogue, user: User, avatar_id: int
) -> None:
    await state.set_state(Intake.style)
    await state.update_data(avatar_id=avatar_id, style=None, pack=None, order_id=None)
    lines = [_("style.prompt")]
    for style in catalogue.styles:
        lines.append(f"\n<b>{style.name.get(user.language)}</b> — {style.description.get(user.language)}")
    await message.answer("".join(lines), reply_markup=keyboards.styles(catalogue, avatar_id, user.language))


def _upload_progress_text(count: int) -> str:
    text = _("upload.progress").format(count=count, min=MIN_PHOTOS, max=MAX_PHOTOS)
    if count < MIN_PHOTOS:
        return f"{text}\n{_('upload.need_more').format(need=MIN_PHOTOS - count)}"
    return f"{text}\n{_('upload.can_finish').format(max=MAX_PHOTOS)}"


async def show_current_step(
    message: ChatTarget, state: FSMContext, session: AsyncSession, user: User, catalogue: Catalogue
) -> None:
    """Tell the user where they are (after a stale button, stray input, or /status)."""
    current = await state.get_state()
    data = await state.get_data()
    if current == Intake.uploading.state and data.get("avatar_id"):
        count = await avatar_queries.photo_count(session, int(data["avatar_id"]))
        markup = keyboards.upload_done(int(data["avatar_id"]), count) if can_finish(count) else None
        await message.answer(f"{_('step.uploading')}\n{_upload_progress_text(count)}", reply_markup=markup)
    elif current == Intake.style.state and data.get("avatar_id"):
        await ask_for_style(message, state, catalogue, user, int(data["avatar_id"]))
    elif current == Intake.pack.state and data.get("avatar_id") and data.get("style"):
        await message.answer(_("step.pack"))
    elif current == Intake.summary.state and data.get("order_id"):
        await message.answer(_("step.summary"))
    else:
        await message.answer(_("step.none"))


# ---------------------------------------------------------------- menu


async def new_session(
    query: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    user_locks: UserLocks,
    event_update: Update,
) -> None:
    assert query.message is not None  # the root router admits only queries from a private chat's message
    # Under the user's lock, as photos are taken: a tap and the photos sent after it can arrive together
    # (Telegram re-posts what a killed process never answered), and neither may start a set the other
    # is not going into.
    async with user_locks.lock(user.id):
        latest = step_update(await state.get_data())
        # The same tap again, once its set is open, only repeats its answer: starting over would abandon
        # the set the photos sent on seeing that answer are going into. So does a tap older than the
        # current step (photos sent after it opened a set before the tap was handled).
        started = latest == event_update.update_id and await state.get_state() == Intake.uploading.state
        if not started and (latest is None or event_update.update_id >= latest):
            await _leave_current_step(state, session)
            await _begin_upload(state, session, user)
    await query.answer()
    await query.message.answer(_("upload.instructions").format(min=MIN_PHOTOS, max=MAX_PHOTOS))


async def reuse_photos(
    query: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, catalogue: Catalogue
) -> None:
    avatar = await avatar_queries.latest_ready_avatar(session, user.id)
    await _new_pack_with(query, state, session, user, catalogue, avatar, missing_key="reuse.none")


async def reuse_set(
    query: CallbackQuery,
    callback_data: AgainCb,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    catalogue: Catalogue,
) -> None:
    """ "New pack with the same photos" under a finished pack: that pack's set, if it is still kept."""
    avatar = await avatar_queries.get_avatar(session, callback_data.avatar_id, user.id)
    if avatar is not None and avatar.status != AvatarStatus.READY:
        avatar = None  # deleted by retention or /forget
    await _new_pack_with(query, state, session, user, catalogue, avatar, missing_key="reuse.gone")


async def _new_pack_with(
    query: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    catalogue: Catalogue,
    avatar: Avatar | None,
    *,
    missing_key: str,
) -> None:
    assert query.message is not None  # the root router admits only queries from a private chat's message
    await query.answer()
    if avatar is None:
        await query.message.answer(_(missing_key))
        return
    await _leave_current_step(state, session)
    await session.commit()
    await ask_for_style(query.message, state, catalogue, user, avatar.id)


# ---------------------------------------------------------------- upload


async def receive_image(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    bot: Bot,
    settings: Settings,
    files: FileStore,
    catalogue: Catalogue,
    album_collector: AlbumCollector[PhotoOutcome],
    user_locks: UserLocks,
    faces: FaceAnalyser | None = None,
) -> None:
    album_key = (message.chat.id, message.media_group_id) if message.media_group_id else None
    if album_key is not None:
        album_collector.begin(album_key)
    outcome = await _take_and_record(message, state, session, user, bot, settings, files, user_locks, faces)
    if album_key is not None:
        outcomes = await album_collector.finish(album_key, message.message_id, outcome)
        if outcomes is None:
            return
    else:
        outcomes = [outcome]
    await _reply_to_upload(message, state, session, user, catalogue, outcomes, files, faces)


async def _take_and_record(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    bot: Bot,
    settings: Settings,
    files: FileStore,
    user_locks: UserLocks,
    faces: FaceAnalyser | None,
) -> PhotoOutcome:
    try:
        async with user_locks.lock(user.id):
            outcome = await _take_photo(message, state, session, user, bot, settings, files, faces)
            if outcome.reason_key and outcome.reason_key not in NOT_RECORDED:  # every rejection passes here
                reason = outcome.reason_key.removeprefix("photo.rejected.")
                await record_event(session, EventName.PHOTO_REJECTED, user_id=user.id, reason=reason)
            await session.commit()  # never hold a write transaction while waiting for album siblings
    except Exception:
        # Every item must report an outcome, or its album never gets its one reply (and the
        # collector keeps the album forever): a failure is an outcome too.
        log.exception("taking a photo of user %s failed", user.id)
        await session.rollback()
        return PhotoOutcome(False, 0, FAILED)
    return outcome


async def _take_photo(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    bot: Bot,
    settings: Settings,
    files: FileStore,
    faces: FaceAnalyser | None = None,
) -> PhotoOutcome:
    current = await state.get_state()
    if current in {step.state for step in AFTER_UPLOAD}:
        return await _photo_after_upload(state, session)
    avatar = await _current_avatar(state, session, user) if current == Intake.uploading.state else None
    if avatar is None:
        # The conversation state was lost (or never started): keep collecting into a recent set.
        avatar = await avatar_queries.resumable_avatar(session, user.id, RESUME_WINDOW)
        if avatar is None:
            avatar = await _begin_upload(state, session, user)
        else:
            await state.set_data({"avatar_id": avatar.id})
            await state.set_state(Intake.uploading)

    count = await avatar_queries.photo_count(session, avatar.id)
    if is_full(count):
        return PhotoOutcome(False, count, TOO_MANY)

    file_id, file_unique_id, file_size = _file_of(message)
    if file_size is not None and file_size > settings.MAX_PHOTO_BYTES:
        return PhotoOutcome(False, count, "photo.rejected.too_large_file")
    if await avatar_queries.is_known_photo(session, avatar.id, file_unique_id=file_unique_id):
        return PhotoOutcome(False, count, "photo.rejected.duplicate")

    since = utcnow() - REJECTION_WINDOW
    rejected = await count_recent(session, EventName.PHOTO_REJECTED, user_id=user.id, since=since)
    if rejected >= settings.INTAKE_REJECTS_PER_HOUR:
        return PhotoOutcome(False, count, OVER_BUDGET)
    buffer = BytesIO()
    try:
        await bot.download(file_id, destination=buffer, timeout=60)
    except Exception:
        log.warning("download failed for user %s", user.id, exc_info=True)
        return PhotoOutcome(False, count, "photo.rejected.download_failed")
    data = buffer.getvalue()
    try:
        photo = await asyncio.to_thread(
            validate_and_normalize, data, max_bytes=settings.MAX_PHOTO_BYTES, min_side=settings.MIN_PHOTO_SIDE
        )
    except ImageRejected as rejected:
        return PhotoOutcome(False, count, f"photo.rejected.{rejected.reason.value}")
    face = await face_queries.check_selfie_for_set(session, faces, avatar.id, photo.jpeg) if faces else None
    if face is not None and face.reason is not None:
        return PhotoOutcome(False, count, f"photo.rejected.{face.reason.value}")

    key = f"refs/{user.id}/{avatar.id}/{uuid.uuid4().hex}.jpg"
    await files.put(key, photo.jpeg, "image/jpeg")
    try:
        count = await avatar_queries.add_photo(
            session,
            avatar,
            avatar_queries.NewPhoto(
                storage_key=key,
                size_bytes=len(photo.jpeg),
                width=photo.width,
                height=photo.height,
                sha256=photo.sha256,
                file_unique_id=file_unique_id,
            ),
        )
    except avatar_queries.DuplicatePhoto:
        await files.delete(key)
        return PhotoOutcome(False, count, "photo.rejected.duplicate")
    except avatar_queries.AvatarFull:
        await files.delete(key)
        return PhotoOutcome(False, MAX_PHOTOS, TOO_MANY)
    if face is not None and face.embedding is not None:
        await face_queries.store_embedding(session, avatar.id, photo.sha256, face.embedding)
    return PhotoOutcome(True, count)


async def _photo_after_upload(state: FSMContext, session: AsyncSession) -> PhotoOutcome:
    """The set is closed: a photo beyond eight is "too many", any other one is simply not expected now."""
    avatar_id = (await state.get_data()).get("avatar_id")
    count = await avatar_queries.photo_count(session, int(avatar_id)) if avatar_id else 0
    return PhotoOutcome(False, count, TOO_MANY if is_full(count) else NOT_NOW)


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
    session: AsyncSession,
    user: User,
    catalogue: Catalogue,
    outcomes: list[PhotoOutcome],
    files: FileStore,
    faces: FaceAnalyser | None = None,
) -> None:
    rejections = [outcome.reason_key for outcome in outcomes if outcome.reason_key]
    if await state.get_state() != Intake.uploading.state:
        # Photos after the set was closed: say why they were not taken, then where the user is.
        await message.answer(_(TOO_MANY).format(max=MAX_PHOTOS) if TOO_MANY in rejections else _("stray.use_buttons"))
        await show_current_step(message, state, session, user, catalogue)
        return
    avatar = await _current_avatar(state, session, user)
    if avatar is None:
        return
    count = await avatar_queries.photo_count(session, avatar.id)
    accepted = sum(1 for outcome in outcomes if outcome.accepted)
    lines: list[str] = []
    if len(outcomes) > 1 and accepted:
        lines.append(_("upload.album_received").format(accepted=accepted, total=len(outcomes)))
    for reason in dict.fromkeys(rejections):  # one line per distinct reason, in order
        lines.append(_(reason).format(max=MAX_PHOTOS, min=MIN_PHOTOS))
    review = await face_queries.review_avatar(session, files, faces, avatar.id) if faces and is_full(count) else None
    if review is not None and not review.passed:
        if lines:
            await message.answer("\n".join(lines))
        await _answer_set_review(message, session, user, avatar.id, review)
        return
    if is_full(count):
        lines.append(_("upload.full").format(max=MAX_PHOTOS))
        await avatar_queries.mark_ready(session, avatar.id)
        await session.commit()  # what the replies announce is durable before the user can act on them
        await message.answer("\n".join(lines))
        await ask_for_style(message, state, catalogue, user, avatar.id)
        return
    lines.append(_upload_progress_text(count))
    markup = keyboards.upload_done(avatar.id, count) if can_finish(count) else None
    await message.answer("\n".join(lines), reply_markup=markup)


async def upload_done(
    query: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    catalogue: Catalogue,
    callback_data: UploadCb,
    files: FileStore,
    faces: FaceAnalyser | None = None,
) -> None:
    assert query.message is not None
    data = await state.get_data()
    if data.get("avatar_id") != callback_data.avatar_id:
        await stale_button(query, state, session, user, catalogue)
        return
    count = await avatar_queries.photo_count(session, callback_data.avatar_id)
    if not can_finish(count):
        await query.answer(_("upload.need_more").format(need=MIN_PHOTOS - count), show_alert=True)
        return
    if faces is not None:
        review = await face_queries.review_avatar(session, files, faces, callback_data.avatar_id)
        if not review.passed:
            await query.answer()
            await _answer_set_review(query.message, session, user, callback_data.avatar_id, review)
            return
    await avatar_queries.mark_ready(session, callback_data.avatar_id)
    await session.commit()
    await query.answer()
    await ask_for_style(query.message, state, catalogue, user, callback_data.avatar_id)


async def _answer_set_review(
    message: ChatTarget, session: AsyncSession, user: User, avatar_id: int, review: SetReview
) -> None:
    """The set failed the face review: say which photos went (or that it cannot be used), then where we are."""
    if review.refused:
        await session.commit()
        await message.answer(_("faces.set.no_majority").format(min=MIN_PHOTOS, max=MAX_PHOTOS))
        return
    for _slot in review.removed_slots:
        await record_event(session, EventName.PHOTO_REJECTED, user_id=user.id, reason="face_mismatch")
    await session.commit()  # the photos are gone before the user is told so
    count = await avatar_queries.photo_count(session, avatar_id)
    removed = _("faces.set.removed").format(slots=", ".join(str(slot) for slot in review.removed_slots))
    markup = keyboards.upload_done(avatar_id, count) if can_finish(count) else None
    await message.answer(f"{removed}\n{_upload_progress_text(count)}", reply_markup=markup)


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


# ---------------------------------------------------------------- style, pack, summary


async def pick_style(
    query: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    settings: Settings,
    catalogue: Catalogue,
    callback_data: StyleCb,
) -> None:
    assert query.message is not None
    data = await state.get_data()
    style = catalogue.find_style(callback_data.style)
    if data.get("avatar_id") != callback_data.avatar_id or style is None:
        await stale_button(query, state, session, user, catalogue)
        return
    await query.answer()
    await state.set_state(Intake.pack)
    await state.update_data(style=style.id)
    offered = await _packs_for(session, user, catalogue)
    balance = await ledger.balance(session, user.id)
    prompt = _("pack.prompt").format(style=style.name.get(user.language))
    await query.message.answer(
        f"{prompt}\n{counted('pack.balance', balance)}" if balance > 0 else prompt,
        reply_markup=keyboards.packs(
            offered, callback_data.avatar_id, style.id, user.language, offered_currencies(settings), balance
        ),
    )


async def spend_pack(
    query: CallbackQuery, callback_data: SpendCb, state: FSMContext, user: User, credits: CreditService
) -> None:
    """A pack the balance covers, from the picker: queued at once, no summary and no payment."""
    assert query.message is not None  # the root router admits only queries from a private chat's message
    try:
        await credits.spend(
            user,
            avatar_id=callback_data.avatar_id,
            style=callback_data.style,
            photos=callback_data.photos,
            spend_key=picker_spend_key(query.message.message_id),
            tap=query.id,
        )
    except CreditsUnavailable as refusal:
        await query.answer(_(f"credits.{refusal.reason}"), show_alert=True)
        return
    await state.clear()
    await query.answer()


async def _packs_for(session: AsyncSession, user: User, catalogue: Catalogue) -> list[Pack]:
    trial_taken = await order_queries.trial_used(session, user.id)
    return [pack for pack in catalogue.packs if not (pack.is_trial and trial_taken)]


async def pick_pack(
    query: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    settings: Settings,
    catalogue: Catalogue,
    callback_data: PackCb,
) -> None:
    assert query.message is not None
    data = await state.get_data()
    pack = catalogue.find_pack(callback_data.pack_id)
    style = catalogue.find_style(callback_data.style)
    offered = await _packs_for(session, user, catalogue)
    if (
        data.get("avatar_id") != callback_data.avatar_id
        or data.get("style") != callback_data.style
        or pack is None
        or style is None
        or pack not in offered
    ):
        await stale_button(query, state, session, user, catalogue)
        return
    photos = await avatar_queries.photo_count(session, callback_data.avatar_id)
    order = await order_queries.create_order(
        session, user_id=user.id, avatar_id=callback_data.avatar_id, style=style.id, pack=pack, created_by=query.id
    )
    await session.commit()  # a quick Pay must find the order the summary shows
    await query.answer()
    await state.set_state(Intake.summary)
    await state.update_data(pack=pack.id, order_id=order.id)
    if pack.is_free:
        price = _("summary.free")
    else:
        price = " / ".join(
            format_price(price_for(pack, currency), currency, user.language)
            for currency in offered_currencies(settings)
        )
    text = _("summary.text").format(
        selfies=photos, style=style.name.get(user.language), photos=pack.photos, price=price
    )
    await query.message.answer(text, reply_markup=keyboards.summary(order.id, free=pack.is_free))


async def _withdraw_summary_order(
    query: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, catalogue: Catalogue, order_id: int
) -> dict[str, object] | None:
    """Change and Cancel both withdraw the order on the summary; a stale button gets the usual answer."""
    data = await state.get_data()
    if data.get("order_id") != order_id:
        await stale_button(query, state, session, user, catalogue)
        return None
    await order_queries.cancel_unpaid_order(session, order_id)
    await session.commit()
    await query.answer()
    return data


async def order_change(
    query: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    catalogue: Catalogue,
    callback_data: OrderCb,
) -> None:
    assert query.message is not None
    data = await _withdraw_summary_order(query, state, session, user, catalogue, callback_data.order_id)
    if data is not None:
        await ask_for_style(query.message, state, catalogue, user, int(str(data["avatar_id"])))


async def order_cancel(
    query: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    user: User,
    catalogue: Catalogue,
    callback_data: OrderCb,
) -> None:
    assert query.message is not None
    if await _withdraw_summary_order(query, state, session, user, catalogue, callback_data.order_id) is not None:
        await state.clear()
        await query.message.answer(_("cancel.done"))


async def _leave_current_step(state: FSMContext, session: AsyncSession) -> None:
    """Withdraw the unpaid order, and give up a set still being collected (a finished set stays reusable)."""
    data = await state.get_data()
    if data.get("order_id"):
        await order_queries.cancel_unpaid_order(session, int(data["order_id"]))
    if await state.get_state() == Intake.uploading.state and data.get("avatar_id"):
        await avatar_queries.abandon_avatar(session, int(data["avatar_id"]))


# ---------------------------------------------------------------- anywhere


async def cancel_command(message: Message, state: FSMContext, session: AsyncSession) -> None:
    if await state.get_state() is None:
        await message.answer(_("cancel.nothing"))
        return
    await _leave_current_step(state, session)
    await session.commit()
    await state.clear()
    await message.answer(_("cancel.done"))


async def status_command(
    message: Message, state: FSMContext, session: AsyncSession, user: User, catalogue: Catalogue
) -> None:
    if await state.get_state() is not None:
        await show_current_step(message, state, session, user, catalogue)
        return
    for job in await job_queries.active_jobs(session, user.id):
        if job.status == "queued":
            text = _("status.job_queued").format(
                order_id=job.order_id, photos=job.photos_total, position=await job_queries.queue_position(session, job)
            )
        else:
            text = _("status.job_running").format(
                order_id=job.order_id, photos=job.photos_total, done=job.photos_completed
            )
        await message.answer(text)
        return
    order = await order_queries.last_order(session, user.id)
    if order is None:
        await message.answer(_("status.nothing"))
        return
    style = catalogue.find_style(order.style)
    await message.answer(
        _("status.order").format(
            order_id=order.id,
            photos=order.photos,
            style=style.name.get(user.language) if style else order.style,
            status=_(f"order.status.{order.status}"),
        )
    )


async def stale_button(
    query: CallbackQuery, state: FSMContext, session: AsyncSession, user: User, catalogue: Catalogue
) -> None:
    """Buttons from an earlier step, an abandoned session, or forged data: say so, show the way."""
    await query.answer(_("stale.button"), show_alert=False)
    if query.message is not None:
        await show_current_step(query.message, state, session, user, catalogue)


async def stray_input(
    message: Message, state: FSMContext, session: AsyncSession, user: User, catalogue: Catalogue
) -> None:
    await message.answer(_("stray.use_buttons"))
    await show_current_step(message, state, session, user, catalogue)


def _is_image_document(message: Message) -> bool:
    document = message.document
    if document is None:
        return False
    if document.mime_type and document.mime_type.startswith("image/"):
        return True
    return bool(document.file_name and document.file_name.lower().endswith(IMAGE_EXTENSIONS))


def build_router() -> Router:
    router = Router(name="intake")
    router.message.register(cancel_command, Command("cancel"))
    router.message.register(status_command, Command("status"))
    router.callback_query.register(new_session, MenuCb.filter(F.action == "new"))
    router.callback_query.register(reuse_photos, MenuCb.filter(F.action == "reuse"))
    router.callback_query.register(reuse_set, AgainCb.filter())
    router.callback_query.register(upload_done, UploadCb.filter(F.action == "done"), StateFilter(Intake.uploading))
    router.callback_query.register(pick_style, StyleCb.filter(), StateFilter(Intake.style))
    router.callback_query.register(pick_pack, PackCb.filter(), StateFilter(Intake.pack))
    # The button carries all it spends on (and the spend is once per picker), so no step is required.
    router.callback_query.register(spend_pack, SpendCb.filter())
    router.callback_query.register(order_change, OrderCb.filter(F.action == "change"), StateFilter(Intake.summary))
    router.callback_query.register(order_cancel, OrderCb.filter(F.action == "cancel"), StateFilter(Intake.summary))

    image_filter = F.photo | F.func(_is_image_document)
    router.message.register(receive_image, image_filter, StateFilter(Intake.uploading, None, *AFTER_UPLOAD))
    router.message.register(wrong_upload_input, StateFilter(Intake.uploading))
    router.message.register(
        stray_input, StateFilter(Intake.style, Intake.pack, Intake.summary), ~F.text.startswith("/")
    )
    return router


def build_fallback_router() -> Router:
    """Registered last: any button no other handler took is stale or forged."""
    router = Router(name="fallback")
    router.callback_query.register(stale_button)
    router.message.register(unknown_message)
    return router


async def unknown_message(message: Message) -> None:
    await message.answer(_("unknown.message"))
