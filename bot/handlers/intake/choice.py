"""Style, pack and summary: the set chosen for, what it becomes, and the order it makes.

The buttons here name what they act on; bot/middlewares/intake_buttons.py has checked them against
the current step and hands the handlers what they name (``avatar_id``, ``style``, ``pack``).
"""

from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot import keyboards
from bot.callbacks import OrderCb, SpendCb
from bot.handlers.intake.steps import Intake, ask_for_style, offered_currencies, show_current_step
from bot.handlers.redo import picker_promise
from bot.i18n import counted
from bot.settings import Settings
from scheduler.credits import CreditService, CreditsUnavailable, picker_spend_key
from scheduler.examples import ExampleService
from scheduler.intake import IntakeService
from storage.models import User
from studio.catalogue import Catalogue, Pack, Style
from studio.credits import format_price, price_for


async def pick_style(
    query: CallbackQuery,
    state: FSMContext,
    user: User,
    settings: Settings,
    intake: IntakeService,
    avatar_id: int,
    style: Style,
) -> None:
    assert query.message is not None  # the root router admits only queries from a private chat's message
    await query.answer()
    await state.set_state(Intake.pack)
    await state.update_data(style=style.id)
    offer = await intake.pack_offer(user.id)
    prompt = _("pack.prompt").format(style=style.name.get(user.language))
    if offer.balance > 0:
        prompt += "\n" + counted("pack.balance", offer.balance)
    currencies = offered_currencies(settings)
    await query.message.answer(
        "\n\n".join(filter(None, [prompt, picker_promise(settings)])),
        reply_markup=keyboards.packs(offer.packs, avatar_id, style.id, user.language, currencies, offer.balance),
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


async def pick_pack(
    query: CallbackQuery,
    state: FSMContext,
    user: User,
    settings: Settings,
    intake: IntakeService,
    avatar_id: int,
    style: Style,
    pack: Pack,
) -> None:
    assert query.message is not None  # the root router admits only queries from a private chat's message
    draft = await intake.create_order(user.id, avatar_id, style, pack, tap=query.id)
    await query.answer()
    await state.set_state(Intake.summary)
    await state.update_data(pack=pack.id, order_id=draft.order_id)
    text = _("summary.text").format(
        selfies=draft.selfies,
        style=style.name.get(user.language),
        photos=pack.photos,
        price=_price(pack, settings, user.language),
    )
    await query.message.answer(text, reply_markup=keyboards.summary(draft.order_id, free=pack.is_free))


def _price(pack: Pack, settings: Settings, language: str) -> str:
    if pack.is_free:
        return _("summary.free")
    return " / ".join(
        format_price(price_for(pack, currency), currency, language) for currency in offered_currencies(settings)
    )


async def order_change(
    query: CallbackQuery,
    callback_data: OrderCb,
    state: FSMContext,
    user: User,
    catalogue: Catalogue,
    intake: IntakeService,
    examples: ExampleService,
    avatar_id: int,
) -> None:
    """Change on the summary: its order is withdrawn, and the style is asked again."""
    assert query.message is not None  # the root router admits only queries from a private chat's message
    await intake.withdraw_order(callback_data.order_id)
    await query.answer()
    await ask_for_style(query.message, state, catalogue, user, avatar_id, examples)


async def order_cancel(query: CallbackQuery, callback_data: OrderCb, state: FSMContext, intake: IntakeService) -> None:
    """Cancel on the summary: its order is withdrawn, and the intake is over."""
    assert query.message is not None  # the root router admits only queries from a private chat's message
    await intake.withdraw_order(callback_data.order_id)
    await query.answer()
    await state.clear()
    await query.message.answer(_("cancel.done"))


async def stray_input(
    message: Message, state: FSMContext, user: User, catalogue: Catalogue, intake: IntakeService
) -> None:
    await message.answer(_("stray.use_buttons"))
    await show_current_step(message, state, user, catalogue, intake)
