"""Every notice background work sends renders in both languages, with the buttons it promises; the
notifier sends it through the Bot API and survives a chat that refuses it."""

from __future__ import annotations

import typing

import pytest
from aiogram.exceptions import TelegramForbiddenError
from aiogram.methods import SendMessage
from aiogram.types import InlineKeyboardMarkup

from bot.callbacks import (
    AgainCb,
    JobAction,
    JobCb,
    MenuAction,
    MenuCb,
    OrderAction,
    OrderCb,
    ResendCb,
    ResultsAction,
    ResultsCb,
)
from bot.i18n import build_i18n
from bot.notifier import TelegramNotifier
from scheduler.notices import (
    BroadcastReport,
    CreditsReminder,
    DeliveryUncertain,
    GiftPaid,
    GuaranteeSettled,
    JobFailed,
    JobQueued,
    Notice,
    OriginalsGone,
    OriginalsNotSent,
    OriginalsReminder,
    PackFinished,
    PaymentCanceled,
    PaymentReminder,
    PaymentReturned,
    ProgressShown,
    ProviderAlert,
    ProviderCondition,
    RedoFailed,
    ReferralPaid,
    RefundCanceled,
    SelfiesMissing,
)
from storage.payments import ReturnReason
from studio.credits import Currency
from tests.support.telegram import MockedBot

EXAMPLES: list[Notice] = [
    JobQueued(job_id=7, photos=23, position=2),
    JobQueued(job_id=7, photos=23, position=1, paid=True),
    PaymentCanceled(order_id=5, expired=True),
    PaymentCanceled(order_id=5, expired=False),
    *(PaymentReturned(5, reason, 99_000, Currency.RUB) for reason in ("duplicate", "banned", "avatar_gone", "amount")),
    PaymentReturned(5, ReturnReason.DUPLICATE, 250, Currency.STARS),
    RefundCanceled(refund_id=3, provider_refund_id="rf-1", payment_id="pay-1", amount_kopecks=99_000),
    JobFailed(job_id=7, returned=23),
    GiftPaid(gift_id=3, code="ABCDEFGHJK", photos=7),
    ReferralPaid(photos=3),
    SelfiesMissing(job_id=7, released=15),
    ProgressShown(job_id=7, text="▓▓░░ 4 / 23", cancellable=True),
    DeliveryUncertain(job_id=7, chunk_index=2, portraits=10),
    PackFinished(job_id=7, avatar_id=4, delivered=23, credited=0),
    PackFinished(job_id=7, avatar_id=None, delivered=21, credited=2),
    PackFinished(job_id=7, avatar_id=4, delivered=23, credited=0, guarantee=2, promised=15, free_redos=3),
    PackFinished(job_id=7, avatar_id=4, delivered=23, credited=0, promised=15, free_redos=3),
    RedoFailed(job_id=9, paid=True),
    RedoFailed(job_id=9, paid=False),
    GuaranteeSettled(job_id=9, delivered=2, credited=1),
    OriginalsGone(),
    OriginalsNotSent(),
    BroadcastReport(broadcast_id=1, sent=90, blocked=8, failed=2, total=100),
    *(ProviderAlert("kie", ProviderCondition.BALANCE_LOW, active, 42.5, 1000.0) for active in (True, False)),
    *(
        ProviderAlert("replicate", ProviderCondition.MODEL_MISSING, active, model="google/nano-banana-pro")
        for active in (True, False)
    ),
    PaymentReminder(order_id=5, photos=23),
    CreditsReminder(credits=3, avatar_id=4),
    CreditsReminder(credits=1, avatar_id=None),
    OriginalsReminder(job_id=7, days=7),
]


def _callbacks(markup: InlineKeyboardMarkup | None) -> list[str]:
    return [button.callback_data or "" for row in (markup.inline_keyboard if markup else []) for button in row]


@pytest.fixture(scope="module")
def notifier() -> TelegramNotifier:
    return TelegramNotifier(MockedBot(), build_i18n())


def test_every_kind_of_notice_has_an_example() -> None:
    assert {type(example) for example in EXAMPLES} == set(typing.get_args(Notice))


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("notice", EXAMPLES, ids=lambda notice: type(notice).__name__)
def test_every_notice_renders_its_values_in_both_languages(
    notifier: TelegramNotifier, notice: Notice, language: str
) -> None:
    text, markup = notifier.render(notice, language)
    assert text and "{" not in text and "." not in text.split()[0]  # a formatted text, not a message key
    for label in (button.text for row in (markup.inline_keyboard if markup else []) for button in row):
        assert label and "{" not in label and not label.startswith("button.")


def test_each_notice_carries_the_buttons_it_promises(notifier: TelegramNotifier) -> None:
    def buttons(notice: Notice) -> list[str]:
        return _callbacks(notifier.render(notice, "en")[1])

    assert buttons(JobQueued(7, 23, 2)) == [JobCb(job_id=7, action=JobAction.CANCEL).pack()]
    assert buttons(PaymentCanceled(5, expired=False)) == [OrderCb(order_id=5, action=OrderAction.PAY).pack()]
    assert buttons(JobFailed(7, returned=23)) == [ResultsCb(job_id=7, action=ResultsAction.CREDITS).pack()]
    assert buttons(JobFailed(7, returned=0)) == []  # nothing came back, nothing to spend
    assert buttons(SelfiesMissing(7, released=15)) == [MenuCb(action=MenuAction.NEW).pack()]
    assert buttons(ProgressShown(7, "…", cancellable=False)) == []
    assert buttons(DeliveryUncertain(7, chunk_index=2, portraits=10)) == [ResendCb(job_id=7, chunk=2).pack()]
    originals, profile, new_photos = (
        ResultsCb(job_id=7, action=ResultsAction.ORIGINALS).pack(),
        ResultsCb(job_id=7, action=ResultsAction.PROFILE_PHOTO).pack(),
        MenuCb(action=MenuAction.NEW).pack(),
    )
    assert buttons(PackFinished(7, avatar_id=4, delivered=23, credited=0)) == [
        originals,
        profile,
        AgainCb(avatar_id=4).pack(),
        new_photos,
    ]
    assert buttons(PackFinished(7, avatar_id=None, delivered=21, credited=2)) == [
        originals,
        profile,
        new_photos,
        ResultsCb(job_id=7, action=ResultsAction.CREDITS).pack(),
    ]
    # Reminders reuse the buttons the conversation already answers: pay, a pack from the same photos, originals.
    assert buttons(PaymentReminder(5, photos=23)) == [OrderCb(order_id=5, action=OrderAction.PAY).pack()]
    assert buttons(CreditsReminder(3, avatar_id=4)) == [AgainCb(avatar_id=4).pack()]
    assert buttons(CreditsReminder(3, avatar_id=None)) == [new_photos]
    assert buttons(OriginalsReminder(7, days=7)) == [originals]


def test_counts_meet_their_nouns_and_amounts_are_formatted(notifier: TelegramNotifier) -> None:
    assert "23 портрета" in notifier.render(PackFinished(7, 4, delivered=23, credited=0), "ru")[0]
    assert "All 23 portraits" in notifier.render(PackFinished(7, 4, delivered=23, credited=0), "en")[0]
    assert "23 портрета ждёт оплаты" in notifier.render(PaymentReminder(5, photos=23), "ru")[0]
    assert "1 credit on your balance" in notifier.render(CreditsReminder(1, None), "en")[0]
    assert "через 7 дней" in notifier.render(OriginalsReminder(7, days=7), "ru")[0]
    assert "in 1 day," in notifier.render(OriginalsReminder(7, days=1), "en")[0]
    returned = notifier.render(PaymentReturned(5, ReturnReason.AMOUNT, 99_000, Currency.RUB), "en")[0]
    assert "990" in returned and "#5" in returned
    low = notifier.render(ProviderAlert("kie", ProviderCondition.BALANCE_LOW, True, 42.5, 1000.0), "en")[0]
    assert "kie balance is 42.5, below 1000" in low


async def test_tell_sends_the_rendered_text_with_its_buttons_and_survives_a_refusal() -> None:
    bot = MockedBot()
    notifier = TelegramNotifier(bot, build_i18n())

    message_id = await notifier.tell(42, "en", JobQueued(7, 23, 2))

    (sent,) = bot.sent("sendMessage")
    assert sent.chat_id == 42 and message_id is not None
    assert _callbacks(typing.cast(InlineKeyboardMarkup, sent.reply_markup)) == [
        JobCb(job_id=7, action=JobAction.CANCEL).pack()
    ]
    bot.answer("sendMessage", TelegramForbiddenError(SendMessage(chat_id=42, text="…"), "bot was blocked by the user"))
    assert await notifier.tell(42, "en", OriginalsGone()) is None
