"""/job <id> with its buttons, /retry <id>, /cancel <id>: one job's detail and what an admin may do to it."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import AdminJobAction, AdminJobCb
from bot.handlers.admin.texts import job_text, one_id, usage
from bot.handlers.chat import ChatTarget
from scheduler.admin import AdminService
from storage.models import User


async def job_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    job_id = one_id(command)
    if job_id is None:
        await usage(message, "/job <id>")
        return
    detail = await admin.job(user.telegram_id, job_id)
    if detail is None:
        await message.answer(_("admin.no_job").format(job_id=job_id))
        return
    await message.answer(job_text(detail), reply_markup=keyboards.admin_job(detail.job.id))


async def job_action_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    job_id = one_id(command)
    if job_id is None:
        await usage(message, f"/{command.command} <job id>")
        return
    action = AdminJobAction.RETRY if command.command == "retry" else AdminJobAction.CANCEL
    await _act(message, admin, user.telegram_id, action, job_id)


async def job_button(query: CallbackQuery, callback_data: AdminJobCb, admin: AdminService, user: User) -> None:
    await query.answer()
    if query.message is not None:
        await _act(query.message, admin, user.telegram_id, callback_data.action, callback_data.job_id)


async def _act(message: ChatTarget, admin: AdminService, admin_id: int, action: AdminJobAction, job_id: int) -> None:
    if action == AdminJobAction.RETRY:
        count = await admin.retry(admin_id, job_id)
        key = "admin.retried" if count else "admin.retry_nothing"
        await message.answer(_(key).format(job_id=job_id, count=count))
    elif action == AdminJobAction.CANCEL:
        await _cancel(message, admin, admin_id, job_id)
    else:
        count = await admin.resend(admin_id, job_id)
        await message.answer(_("admin.resent").format(job_id=job_id, count=count))


async def _cancel(message: ChatTarget, admin: AdminService, admin_id: int, job_id: int) -> None:
    try:
        outcome = await admin.cancel(admin_id, job_id)
    except LookupError:
        await message.answer(_("admin.no_job").format(job_id=job_id))
        return
    if outcome.cancelled:
        await message.answer(_("admin.cancelled").format(job_id=job_id))
    elif outcome.stopped:
        await message.answer(_("admin.stopped_rest").format(job_id=job_id, count=outcome.stopped))
    else:
        await message.answer(_("admin.cancel_nothing").format(job_id=job_id, status=outcome.status))


def build_router() -> Router:
    router = Router(name="admin.jobs")
    router.message.register(job_command, Command("job"))
    router.message.register(job_action_command, Command("retry"))
    # A bare /cancel is the user-level command (admins are users too); with a job id it is ours.
    router.message.register(job_action_command, Command("cancel", magic=F.args))
    router.callback_query.register(job_button, AdminJobCb.filter())
    return router
