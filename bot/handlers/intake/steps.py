"""The intake's conversation steps, and what every part of it says about where the user is."""

from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.examples import show_examples
from bot.handlers.chat import ChatTarget
from bot.settings import Settings
from scheduler.examples import ExampleService
from scheduler.intake import IntakeService, Leaving
from storage.models import User
from studio.catalogue import Catalogue
from studio.credits import Currency
from studio.intake import MAX_PHOTOS, MIN_PHOTOS, can_finish


class Intake(StatesGroup):  # its name is in stored conversation steps: keep it
    uploading = State()
    style = State()
    pack = State()
    summary = State()


AFTER_UPLOAD = (Intake.style, Intake.pack, Intake.summary)
AFTER_UPLOAD_STATES = frozenset(step.state for step in AFTER_UPLOAD)


def offered_currencies(settings: Settings) -> tuple[Currency, ...]:
    """The prices the pack picker shows: what can be paid in (Stars when nothing is set up yet)."""
    return settings.payable_currencies or (Currency.STARS,)


async def leaving(state: FSMContext) -> Leaving:
    """What leaving the current step gives up: its unpaid order, and the set it is still collecting."""
    data = await state.get_data()
    order_id = data.get("order_id")
    collecting = data.get("avatar_id") if await state.get_state() == Intake.uploading.state else None
    return Leaving(
        order_id=int(order_id) if order_id else None,
        collecting_avatar_id=int(collecting) if collecting else None,
    )


async def open_set(state: FSMContext, avatar_id: int) -> None:
    """The upload step, collecting into ``avatar_id``."""
    # The data first: once the step says "uploading", it names this set (a kill in between is
    # repaired by the update's second delivery, bot/middlewares/replay.py).
    await state.set_data({"avatar_id": avatar_id})
    await state.set_state(Intake.uploading)


async def ask_for_style(
    message: ChatTarget,
    state: FSMContext,
    catalogue: Catalogue,
    user: User,
    avatar_id: int,
    examples: ExampleService | None = None,
) -> None:
    """The style picker; with ``examples``, each style's example albums first (once there are any).
    Reminders of the step (stray input, /status) pass none: the albums are not sent again for them."""
    await state.set_state(Intake.style)
    await state.update_data(avatar_id=avatar_id, style=None, pack=None, order_id=None)
    if examples is not None:
        await show_examples(message, examples, catalogue, user.language)
    lines = [_("style.prompt")]
    for style in catalogue.styles:
        lines.append(f"\n<b>{style.name.get(user.language)}</b> — {style.description.get(user.language)}")
    await message.answer("".join(lines), reply_markup=keyboards.styles(catalogue, avatar_id, user.language))


def upload_progress_text(count: int) -> str:
    text = _("upload.progress").format(count=count, min=MIN_PHOTOS, max=MAX_PHOTOS)
    if count < MIN_PHOTOS:
        return f"{text}\n{_('upload.need_more').format(need=MIN_PHOTOS - count)}"
    return f"{text}\n{_('upload.can_finish').format(max=MAX_PHOTOS)}"


def done_button(avatar_id: int, count: int) -> InlineKeyboardMarkup | None:
    """Done, once the set holds enough photos."""
    return keyboards.upload_done(avatar_id, count) if can_finish(count) else None


async def show_current_step(
    message: ChatTarget, state: FSMContext, user: User, catalogue: Catalogue, intake: IntakeService
) -> None:
    """Tell the user where they are (after a stale button, stray input, or /status)."""
    current = await state.get_state()
    data = await state.get_data()
    if current == Intake.uploading.state and data.get("avatar_id"):
        count = await intake.photos_in(int(data["avatar_id"]))
        text = f"{_('step.uploading')}\n{upload_progress_text(count)}"
        await message.answer(text, reply_markup=done_button(int(data["avatar_id"]), count))
    elif current == Intake.style.state and data.get("avatar_id"):
        await ask_for_style(message, state, catalogue, user, int(data["avatar_id"]))
    elif current == Intake.pack.state and data.get("avatar_id") and data.get("style"):
        await message.answer(_("step.pack"))
    elif current == Intake.summary.state and data.get("order_id"):
        await message.answer(_("step.summary"))
    else:
        await message.answer(_("step.none"))


async def stale_button(
    query: CallbackQuery, state: FSMContext, user: User, catalogue: Catalogue, intake: IntakeService
) -> None:
    """Buttons from an earlier step, an abandoned session, or forged data: say so, show the way."""
    await query.answer(_("stale.button"), show_alert=False)
    if query.message is not None:
        await show_current_step(query.message, state, user, catalogue, intake)
