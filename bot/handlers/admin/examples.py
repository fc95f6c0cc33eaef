"""/examples: an admin sends selfies of a consenting model, and every style gets example portraits.

The selfies go through the intake's checks (scheduler.examples.ExampleService); the conversation step
(which set the photos go into) lives here. While a set is being made, /examples shows its progress.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.album import UserLocks
from bot.handlers.intake.upload import incoming_photo, is_image_document
from bot.i18n import counted
from scheduler.examples import NOT_COLLECTING, ExamplePhoto, ExampleProgress, ExampleService
from storage.models import User
from studio.examples import EXAMPLE_SELFIES, EXAMPLES_PER_STYLE, ExampleSetStatus
from studio.intake import MAX_PHOTOS, MIN_PHOTOS


class ExampleUpload(StatesGroup):  # its name is in stored conversation steps: keep it
    selfies = State()


async def examples_command(message: Message, state: FSMContext, user: User, examples: ExampleService) -> None:
    start = await examples.begin(user)
    if start.set_id is None:
        assert start.generating is not None
        await message.answer(_progress_text(start.generating))
        return
    await state.set_state(ExampleUpload.selfies)
    await state.set_data({"example_set": start.set_id})
    lines = [_("examples.send_selfies").format(count=EXAMPLE_SELFIES, per_style=EXAMPLES_PER_STYLE)]
    lines.append(_progress_text(start.current) if start.current else _("examples.none_yet"))
    if start.current and start.current.status == ExampleSetStatus.LIVE:
        lines.append(_("examples.replaces"))
    await message.answer("\n\n".join(lines))


def _progress_text(progress: ExampleProgress) -> str:
    if progress.status == ExampleSetStatus.LIVE:
        return counted("examples.live", progress.ready)
    if progress.status == ExampleSetStatus.FAILED:
        return _("examples.last_failed")
    return counted("examples.progress", progress.ready, total=progress.total)


async def example_selfie(
    message: Message, state: FSMContext, user: User, bot: Bot, examples: ExampleService, user_locks: UserLocks
) -> None:
    set_id = int((await state.get_data()).get("example_set") or 0)
    async with user_locks.lock(user.id):  # an album's photos one at a time, as the intake takes them
        taken = await examples.take_photo(user, set_id, incoming_photo(message, bot))
    if taken.started or taken.reason_key == NOT_COLLECTING:
        await state.clear()
    await message.answer(_photo_text(taken))


def _photo_text(taken: ExamplePhoto) -> str:
    if taken.started:
        return _("examples.started").format(count=taken.count, per_style=EXAMPLES_PER_STYLE)
    if taken.review_failed:
        return _("examples.review_failed")
    if taken.reason_key is not None:
        return _(taken.reason_key).format(max=MAX_PHOTOS, min=MIN_PHOTOS)
    return _("examples.taken").format(count=taken.count, total=EXAMPLE_SELFIES)


def build_router() -> Router:
    router = Router(name="admin.examples")
    router.message.register(examples_command, Command("examples"))
    router.message.register(example_selfie, StateFilter(ExampleUpload.selfies), F.photo | F.func(is_image_document))
    return router
