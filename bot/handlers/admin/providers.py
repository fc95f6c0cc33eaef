"""/provider [pause|resume|primary <name>] and its buttons: the image providers' health and switches."""

from __future__ import annotations

from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import AdminProviderAction, AdminProviderCb
from bot.handlers.admin.texts import args_of, provider_lines, usage
from bot.handlers.chat import ChatTarget
from scheduler.admin import AdminService
from storage.models import User


async def provider_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = args_of(command)
    if not args:
        await admin.audit(user.telegram_id, "provider")
        await _show(message, admin)
        return
    actions = {action.value: action for action in AdminProviderAction}
    if len(args) != 2 or args[0] not in actions:
        await usage(message, "/provider [pause|resume|primary <name>]")
        return
    await _switch(message, admin, user.telegram_id, actions[args[0]], args[1].lower())


async def provider_button(
    query: CallbackQuery, callback_data: AdminProviderCb, admin: AdminService, user: User
) -> None:
    await query.answer()
    if query.message is not None:
        await _switch(query.message, admin, user.telegram_id, callback_data.action, callback_data.name)


async def _switch(
    message: ChatTarget, admin: AdminService, admin_id: int, action: AdminProviderAction, name: str
) -> None:
    if name not in admin.provider_names():
        await message.answer(_("admin.provider.unknown").format(name=escape(name)))
        return
    if action == AdminProviderAction.PRIMARY:
        await admin.set_primary(admin_id, name)
    else:
        await admin.set_paused(admin_id, name, action == AdminProviderAction.PAUSE)
    await _show(message, admin)


async def _show(message: ChatTarget, admin: AdminService) -> None:
    providers = await admin.provider_health()
    text = _("admin.providers").format(lines=provider_lines(providers))
    await message.answer(text, reply_markup=keyboards.admin_providers(providers))


def build_router() -> Router:
    router = Router(name="admin.providers")
    router.message.register(provider_command, Command("provider"))
    router.callback_query.register(provider_button, AdminProviderCb.filter())
    return router
