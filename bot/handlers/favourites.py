"""Favourites: a reaction on a portrait marks or unmarks it, /favourites sends them again, and the
closing message's "Make a profile photo" button."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message, MessageReactionUpdated, ReactionTypeEmoji
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ResultsAction, ResultsCb
from scheduler.favourites import FavouritesService
from storage.models import User


async def on_reaction(update: MessageReactionUpdated, user: User, favourites: FavouritesService) -> None:
    # Custom and paid reactions carry no emoji of ours to judge: they count as no reaction.
    emojis = [reaction.emoji for reaction in update.new_reaction if isinstance(reaction, ReactionTypeEmoji)]
    await favourites.react(user.id, update.chat.id, update.message_id, emojis)


async def favourites_command(message: Message, user: User, favourites: FavouritesService) -> None:
    found = await favourites.resend(user.id, message.chat.id)
    await message.answer(_("favourites.sending") if found else _("favourites.none"))


async def profile_photo(
    query: CallbackQuery, callback_data: ResultsCb, user: User, favourites: FavouritesService
) -> None:
    chat_id = query.message.chat.id if query.message is not None else user.telegram_id
    request = await favourites.request_profile_photo(callback_data.job_id, user.id, chat_id, user.language)
    if not request.started:
        await query.answer(_("profile.gone"), show_alert=True)
        return
    await query.answer(_("profile.busy") if request.busy else _("profile.preparing"))


def build_router() -> Router:
    router = Router(name="favourites")
    router.message_reaction.register(on_reaction, F.user)
    router.message.register(favourites_command, Command("favourites"))
    router.callback_query.register(profile_photo, ResultsCb.filter(F.action == ResultsAction.PROFILE_PHOTO))
    return router
