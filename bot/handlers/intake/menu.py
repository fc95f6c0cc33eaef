"""Starting (a new set, or a finished one again), /cancel and /status."""

from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, Update
from aiogram.utils.i18n import gettext as _

from bot.album import UserLocks
from bot.callbacks import AgainCb
from bot.handlers.intake.steps import Intake, ask_for_style, leaving, open_set, show_current_step
from bot.i18n import counted
from bot.middlewares.replay import step_update
from scheduler.examples import ExampleService
from scheduler.intake import IntakeService, JobStatusView, OrderStatusView
from storage.models import User
from studio.catalogue import Catalogue
from studio.gifts import GIFT_STYLE
from studio.intake import MAX_PHOTOS, MIN_PHOTOS


async def new_session(
    query: CallbackQuery,
    state: FSMContext,
    user: User,
    intake: IntakeService,
    user_locks: UserLocks,
    event_update: Update,
) -> None:
    assert query.message is not None  # the root router admits only queries from a private chat's message
    # Under the user's lock, as photos are taken: a tap and the photos sent after it can arrive together
    # (Telegram re-posts what a killed process never answered), and neither may start a set the other
    # is not going into.
    async with user_locks.lock(user.id):
        if await _opens_a_set(state, event_update.update_id):
            await open_set(state, await intake.start_over(user.id, await leaving(state)))
    await query.answer()
    await query.message.answer(_("upload.instructions").format(min=MIN_PHOTOS, max=MAX_PHOTOS))


async def _opens_a_set(state: FSMContext, update_id: int) -> bool:
    # The same tap again, once its set is open, only repeats its answer: starting over would abandon
    # the set the photos sent on seeing that answer are going into. So does a tap older than the
    # current step (photos sent after it opened a set before the tap was handled).
    latest = step_update(await state.get_data())
    started = latest == update_id and await state.get_state() == Intake.uploading.state
    return not started and (latest is None or update_id >= latest)


async def reuse_photos(
    query: CallbackQuery,
    state: FSMContext,
    user: User,
    catalogue: Catalogue,
    intake: IntakeService,
    examples: ExampleService,
) -> None:
    """ "Use my previous photos" under /start: the latest finished set."""
    assert query.message is not None  # the root router admits only queries from a private chat's message
    await query.answer()
    avatar_id = await intake.reuse(user.id, await leaving(state))
    if avatar_id is None:
        await query.message.answer(_("reuse.none"))
        return
    await ask_for_style(query.message, state, catalogue, user, avatar_id, examples)


async def reuse_set(
    query: CallbackQuery,
    callback_data: AgainCb,
    state: FSMContext,
    user: User,
    catalogue: Catalogue,
    intake: IntakeService,
    examples: ExampleService,
) -> None:
    """ "New pack with the same photos" under a finished pack: that pack's set, if it is still kept."""
    assert query.message is not None  # the root router admits only queries from a private chat's message
    await query.answer()
    avatar_id = await intake.reuse(user.id, await leaving(state), callback_data.avatar_id)
    if avatar_id is None:
        await query.message.answer(_("reuse.gone"))
        return
    await ask_for_style(query.message, state, catalogue, user, avatar_id, examples)


async def cancel_command(message: Message, state: FSMContext, intake: IntakeService) -> None:
    if await state.get_state() is None:
        await message.answer(_("cancel.nothing"))
        return
    await intake.leave(await leaving(state))
    await state.clear()
    await message.answer(_("cancel.done"))


async def status_command(
    message: Message, state: FSMContext, user: User, catalogue: Catalogue, intake: IntakeService
) -> None:
    if await state.get_state() is not None:
        await show_current_step(message, state, user, catalogue, intake)
        return
    await message.answer(_status_text(await intake.status(user.id), catalogue, user))


def _status_text(found: JobStatusView | OrderStatusView | None, catalogue: Catalogue, user: User) -> str:
    if isinstance(found, JobStatusView) and found.queued:
        return counted("status.job_queued", found.photos, order_id=found.order_id, position=found.position)
    if isinstance(found, JobStatusView):
        return counted("status.job_running", found.photos, order_id=found.order_id, done=found.done)
    if found is None:
        return _("status.nothing")
    if found.style == GIFT_STYLE:
        return _("status.gift_order").format(order_id=found.order_id, photos=found.photos)
    style = catalogue.find_style(found.style)
    return _("status.order").format(
        order_id=found.order_id,
        photos=found.photos,
        style=style.name.get(user.language) if style else found.style,
        status=_(f"order.status.{found.status}"),
    )
