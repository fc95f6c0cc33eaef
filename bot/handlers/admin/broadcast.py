"""/broadcast: compose (text or photo), preview, choose the audience, send, stop; /broadcast stop."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import AdminBroadcastAction, AdminBroadcastCb
from bot.handlers.admin.texts import args_of, usage
from bot.handlers.chat import ChatTarget
from scheduler.admin import AdminService
from storage.models import User


class BroadcastCompose(StatesGroup):  # its name is in stored conversation steps: keep it
    text = State()


async def broadcast_command(
    message: Message, command: CommandObject, state: FSMContext, admin: AdminService, user: User
) -> None:
    args = args_of(command)
    if args[:1] == ["stop"]:
        await _stop(message, admin, user.telegram_id)
        return
    if args:
        await usage(message, "/broadcast [stop]")
        return
    await state.set_state(BroadcastCompose.text)
    await message.answer(_("admin.broadcast.prompt"))


async def broadcast_text(message: Message, state: FSMContext, admin: AdminService, user: User) -> None:
    photo = message.photo[-1].file_id if message.photo else None
    text = message.html_text if (message.text or message.caption) else ""
    if not text and photo is None:
        await message.answer(_("admin.broadcast.prompt"))
        return
    await state.clear()
    # The same message delivered again shows the same draft's preview again.
    draft_id = await admin.draft_broadcast(user.telegram_id, text, photo, message.message_id)
    # The preview is the message exactly as recipients will get it.
    if photo:
        await message.answer_photo(photo, caption=text or None)
    else:
        await message.answer(text)
    await message.answer(_("admin.broadcast.preview"), reply_markup=keyboards.broadcast_segments(draft_id))


async def broadcast_button(
    query: CallbackQuery, callback_data: AdminBroadcastCb, admin: AdminService, user: User
) -> None:
    await query.answer()
    message, broadcast_id = query.message, callback_data.broadcast_id
    if message is None:
        return
    if callback_data.action == AdminBroadcastAction.SEGMENT:
        await _choose_segment(message, admin, callback_data)
    elif callback_data.action == AdminBroadcastAction.SEND:
        await _send(message, admin, user.telegram_id, broadcast_id)
    elif callback_data.action == AdminBroadcastAction.DISCARD:
        discarded = await admin.discard_broadcast(broadcast_id)
        await message.answer(_("admin.broadcast.discarded" if discarded else "admin.broadcast.not_draft"))
    else:
        await _stop(message, admin, user.telegram_id, broadcast_id)


async def _choose_segment(message: ChatTarget, admin: AdminService, callback_data: AdminBroadcastCb) -> None:
    segment, broadcast_id = callback_data.segment, callback_data.broadcast_id
    if segment is None:
        return
    total = await admin.choose_segment(broadcast_id, segment)
    if total is None:
        await message.answer(_("admin.broadcast.not_draft"))
        return
    await message.answer(
        _("admin.broadcast.confirm").format(
            broadcast_id=broadcast_id, segment=keyboards.segment_label(segment), total=total
        ),
        reply_markup=keyboards.broadcast_confirm(broadcast_id),
    )


async def _send(message: ChatTarget, admin: AdminService, admin_id: int, broadcast_id: int) -> None:
    if not await admin.start_broadcast(admin_id, broadcast_id):
        await message.answer(_("admin.broadcast.not_draft"))
        return
    await message.answer(
        _("admin.broadcast.started").format(broadcast_id=broadcast_id),
        reply_markup=keyboards.broadcast_running(broadcast_id),
    )


async def _stop(message: ChatTarget, admin: AdminService, admin_id: int, broadcast_id: int | None = None) -> None:
    stopped = await admin.stop_broadcasts(admin_id, broadcast_id)
    if not stopped:
        await message.answer(_("admin.broadcast.nothing_running"))
    for counts in stopped:
        await message.answer(
            _("admin.broadcast.stopped").format(
                broadcast_id=counts.broadcast_id, sent=counts.sent, blocked=counts.blocked, failed=counts.failed
            )
        )


def build_router() -> Router:
    router = Router(name="admin.broadcast")
    router.message.register(broadcast_command, Command("broadcast"))
    router.message.register(broadcast_text, StateFilter(BroadcastCompose.text), F.text.regexp(r"^(?!/)") | F.photo)
    router.callback_query.register(broadcast_button, AdminBroadcastCb.filter())
    return router
