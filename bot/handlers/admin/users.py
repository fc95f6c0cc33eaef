"""/user, /grant, /ban, /unban and the buttons under /user's answer."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import AdminUserAction, AdminUserCb
from bot.handlers.admin.texts import MAX_GRANT, args_of, no_user, to_int, usage, user_label, user_text
from bot.handlers.chat import ChatTarget
from bot.html_split import answer_html
from scheduler.admin import AdminService
from storage.models import User


async def user_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = args_of(command)
    if len(args) != 1:
        await usage(message, "/user <telegram id | @username>")
        return
    detail = await admin.user(user.telegram_id, args[0])
    if detail is None:
        await no_user(message, args[0])
        return
    markup = keyboards.admin_user(detail.user.id, detail.user.is_banned)
    await answer_html(message, user_text(detail, user.language), reply_markup=markup)


async def grant_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = args_of(command)
    photos = to_int(args[1]) if len(args) >= 2 else None
    if photos is None or not 1 <= photos <= MAX_GRANT:
        await usage(message, f"/grant <user> <photos 1..{MAX_GRANT}> [reason]")
        return
    target = await admin.find_user(args[0])
    if target is None:
        await no_user(message, args[0])
        return
    reason = " ".join(args[2:]) or None
    # The admin's message names the grant: a redelivered update grants nothing more.
    key = f"msg:{message.chat.id}:{message.message_id}"
    await _grant(message, admin, user.telegram_id, target, photos, reason, key)


async def ban_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = args_of(command)
    if len(args) != 1:
        await usage(message, f"/{command.command} <telegram id | @username>")
        return
    target = await admin.find_user(args[0])
    if target is None:
        await no_user(message, args[0])
        return
    await _ban(message, admin, user.telegram_id, target, command.command == "ban")


async def user_button(query: CallbackQuery, callback_data: AdminUserCb, admin: AdminService, user: User) -> None:
    await query.answer()
    message = query.message
    target = await admin.get_user(callback_data.user_id)
    if message is None or target is None:
        return
    if callback_data.action != AdminUserAction.GRANT:
        await _ban(message, admin, user.telegram_id, target, callback_data.action == AdminUserAction.BAN)
        return
    photos = callback_data.photos
    if not 1 <= photos <= MAX_GRANT:
        return
    # One grant per button of one /user answer, however often it is tapped.
    key = f"btn:{message.chat.id}:{message.message_id}:{photos}"
    await _grant(message, admin, user.telegram_id, target, photos, None, key)


async def _grant(
    message: ChatTarget, admin: AdminService, admin_id: int, target: User, photos: int, reason: str | None, key: str
) -> None:
    granted, balance = await admin.grant(admin_id, target.id, photos, reason, key)
    text_key = "admin.granted" if granted else "admin.grant_repeated"
    await message.answer(_(text_key).format(photos=photos, user=user_label(target), balance=balance))


async def _ban(message: ChatTarget, admin: AdminService, admin_id: int, target: User, banned: bool) -> None:
    changed = await admin.set_banned(admin_id, target.id, banned)
    key = ("admin.banned" if banned else "admin.unbanned") if changed else "admin.ban_unchanged"
    await message.answer(_(key).format(user=user_label(target)))


def build_router() -> Router:
    router = Router(name="admin.users")
    router.message.register(user_command, Command("user"))
    router.message.register(grant_command, Command("grant"))
    router.message.register(ban_command, Command("ban", "unban"))
    router.callback_query.register(user_button, AdminUserCb.filter())
    return router
