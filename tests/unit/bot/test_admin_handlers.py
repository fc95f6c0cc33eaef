"""The admin router through ``Dispatcher.feed_update``: a mocked Bot, and an ``AdminService`` stand-in
that records its calls and answers as each test scripts it (``create_autospec``: a call the real
service would refuse by signature fails here too). No database, no server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from unittest.mock import AsyncMock, create_autospec

import pytest
from aiogram import Dispatcher
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import InlineKeyboardMarkup, Update

from bot.callbacks import (
    AdminBroadcastAction,
    AdminBroadcastCb,
    AdminJobAction,
    AdminJobCb,
    AdminProviderAction,
    AdminProviderCb,
    AdminUserAction,
    AdminUserCb,
    BroadcastSegment,
)
from bot.handlers import admin as admin_handlers
from bot.settings import Settings
from providers.payments import PaymentProviderError
from scheduler.admin import (
    AdminService,
    BroadcastCounts,
    CancelOutcome,
    JobDetail,
    ProviderHealth,
    QueueSnapshot,
    RefundOutcome,
    RefundResult,
    StatsReport,
    UserDetail,
)
from scheduler.payments import OrderNotPayable
from scheduler.provider_health import ProbeReport
from storage.models import GenerationJob, GenerationTask, Order, User
from storage.stats import Stats
from tests.support.telegram import TOKEN, MockedBot, Updates, chat_user, handler_dispatcher

ADMIN_ID = 900_001
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def fake_admin() -> Any:
    admin = create_autospec(AdminService, instance=True)
    admin.provider_names.return_value = ["kie", "replicate"]
    admin.provider_health.return_value = [
        ProviderHealth("kie", primary=True, paused=False, breaker="closed", tried=4, succeeded=3, latency_p50=42.0),
        ProviderHealth("replicate", primary=False, paused=True, breaker="open", tried=0, succeeded=0, latency_p50=None),
    ]
    return admin


class Chat:
    """One admin (or a stranger) talking to the admin router."""

    def __init__(self, admin: Any, user_id: int = ADMIN_ID) -> None:
        settings = Settings(BOT_TOKEN=TOKEN, ADMIN_IDS=str(ADMIN_ID), _env_file=None)  # type: ignore[call-arg]  # pydantic-settings init kwarg
        self.dispatcher: Dispatcher = handler_dispatcher(admin_handlers.build_router(), settings=settings, admin=admin)
        self.bot = MockedBot()
        self.updates = Updates(user_id=user_id, language="en")
        self.user = chat_user(self.updates, user_id=7)
        self.admin = admin

    async def feed(self, update: Update) -> Any:
        return await self.dispatcher.feed_update(self.bot, update, user=self.user)

    async def command(self, command: str, args: str = "") -> Any:
        return await self.feed(self.updates.command(command, args))

    async def tap(self, data: str) -> Any:
        return await self.feed(self.updates.tap(data))

    def texts(self) -> list[str]:
        return [request.text for request in self.bot.sent("sendMessage")]

    def last_markup(self) -> InlineKeyboardMarkup:
        markup = self.bot.sent("sendMessage")[-1].reply_markup
        assert isinstance(markup, InlineKeyboardMarkup)
        return markup

    def buttons(self) -> list[str]:
        return [button.callback_data or "" for row in self.last_markup().inline_keyboard for button in row]

    def callback_answers(self) -> list[Any]:
        return self.bot.sent("answerCallbackQuery")


@pytest.fixture
def chat() -> Chat:
    return Chat(fake_admin())


def usage(text: str) -> str:
    return f"Usage: {escape(text)}"  # the answers are HTML


def some_user(**fields: Any) -> User:
    values: dict[str, Any] = {
        "id": 31,
        "telegram_id": 500_031,
        "first_name": "Ivan",
        "username": "ivan",
        "language": "en",
        "source": "ads",
        "is_banned": False,
        "is_blocked": False,
        "created_at": NOW,
    }
    return User(**(values | fields))


# ---------------------------------------------------------------- who the router is for


@pytest.mark.parametrize(
    ("command", "args"),
    [("admin", ""), ("stats", ""), ("queue", ""), ("job", "5"), ("user", "1"), ("grant", "1 5"), ("refund", "1")]
    + [("retry", "5"), ("cancel", "5"), ("ban", "1"), ("provider", "pause kie"), ("broadcast", "")],
)
async def test_for_anyone_else_the_admin_commands_do_not_exist(command: str, args: str) -> None:
    stranger = Chat(fake_admin(), user_id=500_001)

    assert await stranger.command(command, args) is UNHANDLED
    assert stranger.bot.requests == []
    assert stranger.admin.mock_calls == []


@pytest.mark.parametrize(
    "data",
    [
        AdminUserCb(action=AdminUserAction.GRANT, user_id=1, photos=10).pack(),
        AdminJobCb(action=AdminJobAction.CANCEL, job_id=5).pack(),
        AdminProviderCb(action=AdminProviderAction.PAUSE, name="kie").pack(),
        AdminBroadcastCb(action=AdminBroadcastAction.SEND, broadcast_id=3).pack(),
    ],
)
async def test_a_strangers_admin_button_is_not_handled(data: str) -> None:
    stranger = Chat(fake_admin(), user_id=500_001)

    assert await stranger.tap(data) is UNHANDLED
    assert stranger.admin.mock_calls == []


@pytest.mark.parametrize(
    "data",
    [
        "aj:explode:5",  # no such action
        "aj:retry:five",  # not an id
        "au:grant:1",  # a field short
        "au:grant:1:x",  # photos not a number
        "ap:reboot:kie",
        "ab:seg:3:martians",  # no such segment
        "adm:grant:1:10",  # the single factory of earlier versions
    ],
)
async def test_forged_or_stale_admin_data_is_not_handled(chat: Chat, data: str) -> None:
    assert await chat.tap(data) is UNHANDLED
    assert chat.admin.mock_calls == []


async def test_a_bare_cancel_is_left_to_the_user_level_command(chat: Chat) -> None:
    assert await chat.command("cancel") is UNHANDLED


async def test_admin_lists_the_commands(chat: Chat) -> None:
    await chat.command("admin")

    assert chat.texts()[0].startswith("Commands: /stats")


# ---------------------------------------------------------------- /stats /queue


async def test_stats_answers_the_period_asked(chat: Chat) -> None:
    stats = Stats(since=NOW - timedelta(days=7), until=NOW, new_users=3, paid_orders=2, revenue={"RUB": 149_000})
    chat.admin.stats.return_value = StatsReport(stats, 12.0, 30.0, None, None)

    await chat.command("stats", "7D")

    chat.admin.stats.assert_awaited_once_with(ADMIN_ID, "7d")
    [text] = chat.texts()
    assert "Stats: 7d" in text and "New users: 3" in text and "revenue: 1,490 ₽" in text


async def test_stats_refuses_an_unknown_period(chat: Chat) -> None:
    await chat.command("stats", "year")

    assert chat.texts() == [usage("/stats [today|7d|30d]")]
    chat.admin.stats.assert_not_awaited()


async def test_queue_shows_jobs_tasks_and_providers(chat: Chat) -> None:
    chat.admin.queue.return_value = QueueSnapshot(
        jobs={("queued", 10): 2}, oldest_queued_at=datetime.now(UTC) - timedelta(minutes=3), tasks={}
    )

    await chat.command("queue")

    chat.admin.queue.assert_awaited_once_with(ADMIN_ID)
    [text] = chat.texts()
    assert "queued/p10 2" in text and "Tasks at providers: empty" in text
    assert "kie" in text and "replicate" in text


# ---------------------------------------------------------------- /job /retry /cancel


def job_detail() -> JobDetail:
    job = GenerationJob(
        id=5,
        user_id=31,
        status="partial",
        style="professional",
        photos_total=7,
        photos_completed=6,
        photos_failed=1,
        created_at=NOW,
    )
    tasks = [
        GenerationTask(position=0, status="delivered", provider="kie", attempts=1),
        GenerationTask(position=1, status="skipped", provider="replicate", attempts=2, error="<nsfw>"),
    ]
    return JobDetail(job=job, user=some_user(), order=Order(pack="p7"), tasks=tasks)


async def test_job_shows_the_job_and_its_buttons(chat: Chat) -> None:
    chat.admin.job.return_value = job_detail()

    await chat.command("job", "5")

    chat.admin.job.assert_awaited_once_with(ADMIN_ID, 5)
    [text] = chat.texts()
    assert "Job #5" in text and "&lt;nsfw&gt;" in text and "@ivan" in text
    assert chat.buttons() == [AdminJobCb(action=action, job_id=5).pack() for action in AdminJobAction]


async def test_job_says_when_there_is_no_such_job(chat: Chat) -> None:
    chat.admin.job.return_value = None

    await chat.command("job", "404")

    assert chat.texts() == ["Job #404 not found."]


@pytest.mark.parametrize("args", ["", "x", "1 2"])
async def test_job_commands_want_one_id(chat: Chat, args: str) -> None:
    for command in ("job", "retry"):
        await chat.command(command, args)

    assert chat.texts() == [usage("/job <id>"), usage("/retry <job id>")]
    assert chat.admin.mock_calls == []


async def test_retry_by_command_and_by_button(chat: Chat) -> None:
    chat.admin.retry.side_effect = [2, 0]

    await chat.command("retry", "5")
    await chat.tap(AdminJobCb(action=AdminJobAction.RETRY, job_id=5).pack())

    assert chat.admin.retry.await_args_list == [((ADMIN_ID, 5),), ((ADMIN_ID, 5),)]
    assert chat.texts()[0].startswith("Job #5: 2 photos queued again")
    assert chat.texts()[1] == "Job #5: nothing to retry."
    assert len(chat.callback_answers()) == 1


@pytest.mark.parametrize(
    ("outcome", "said"),
    [
        (CancelOutcome(cancelled=True, stopped=0, status="queued"), "Job #5 cancelled, credits returned."),
        (CancelOutcome(cancelled=False, stopped=3, status="processing"), "Job #5: 3 photos stopped"),
        (CancelOutcome(cancelled=False, stopped=0, status="completed"), "Job #5 (completed) cannot be cancelled."),
        (LookupError(5), "Job #5 not found."),
    ],
)
async def test_cancel_with_a_job_id(chat: Chat, outcome: Any, said: str) -> None:
    chat.admin.cancel.side_effect = [outcome]

    await chat.command("cancel", "5")

    chat.admin.cancel.assert_awaited_once_with(ADMIN_ID, 5)
    assert chat.texts()[0].startswith(said)


async def test_cancel_and_resend_buttons(chat: Chat) -> None:
    chat.admin.cancel.return_value = CancelOutcome(cancelled=True, stopped=0, status="queued")
    chat.admin.resend.return_value = 6

    await chat.tap(AdminJobCb(action=AdminJobAction.CANCEL, job_id=5).pack())
    await chat.tap(AdminJobCb(action=AdminJobAction.RESEND, job_id=5).pack())

    chat.admin.cancel.assert_awaited_once_with(ADMIN_ID, 5)
    chat.admin.resend.assert_awaited_once_with(ADMIN_ID, 5)
    assert chat.texts() == ["Job #5 cancelled, credits returned.", "Job #5: 6 photos resent."]


# ---------------------------------------------------------------- /user /grant /ban


def user_detail(**fields: Any) -> UserDetail:
    return UserDetail(user=some_user(**fields), balance=12, ledger=[], orders=[], payments=[], jobs=[])


async def test_user_shows_the_user_with_grant_and_ban_buttons(chat: Chat) -> None:
    chat.admin.user.return_value = user_detail()

    await chat.command("user", "@ivan")

    chat.admin.user.assert_awaited_once_with(ADMIN_ID, "@ivan")
    assert "500031" in chat.texts()[0]
    assert chat.buttons() == [
        *(AdminUserCb(action=AdminUserAction.GRANT, user_id=31, photos=photos).pack() for photos in (1, 5, 10)),
        AdminUserCb(action=AdminUserAction.BAN, user_id=31).pack(),
    ]


async def test_a_banned_users_card_offers_unban(chat: Chat) -> None:
    chat.admin.user.return_value = user_detail(is_banned=True)

    await chat.command("user", "500031")

    assert chat.buttons()[-1] == AdminUserCb(action=AdminUserAction.UNBAN, user_id=31).pack()


async def test_user_not_found_and_bad_arguments(chat: Chat) -> None:
    chat.admin.user.return_value = None

    await chat.command("user", "<nobody>")
    await chat.command("user")

    assert chat.texts() == ["User &lt;nobody&gt; not found.", usage("/user <telegram id | @username>")]


async def test_grant_is_named_by_the_admins_message(chat: Chat) -> None:
    target = some_user()
    chat.admin.find_user.return_value = target
    chat.admin.grant.side_effect = [(True, 17), (False, 17)]
    update = chat.updates.command("grant", "@ivan 5 sorry for the wait")

    await chat.feed(update)
    await chat.feed(update)  # the same message delivered again

    key = f"msg:{chat.updates.chat.id}:{update.message.message_id}"  # type: ignore[union-attr]
    call = ((ADMIN_ID, 31, 5, "sorry for the wait", key),)
    assert chat.admin.grant.await_args_list == [call, call]
    assert chat.texts() == [
        "Granted 5 photos to Ivan (@ivan). Balance: 17.",
        "This grant was already made. Balance of Ivan (@ivan): 17.",
    ]


@pytest.mark.parametrize("args", ["@ivan", "@ivan 0", "@ivan 1001", "@ivan many"])
async def test_grant_wants_a_user_and_a_sane_number(chat: Chat, args: str) -> None:
    await chat.command("grant", args)

    assert chat.texts() == [usage("/grant <user> <photos 1..1000> [reason]")]
    assert chat.admin.mock_calls == []


async def test_grant_to_an_unknown_user(chat: Chat) -> None:
    chat.admin.find_user.return_value = None

    await chat.command("grant", "@nobody 5")

    assert chat.texts() == ["User @nobody not found."]
    chat.admin.grant.assert_not_awaited()


async def test_ban_and_unban(chat: Chat) -> None:
    chat.admin.find_user.return_value = some_user()
    chat.admin.set_banned.side_effect = [True, True, False]

    await chat.command("ban", "@ivan")
    await chat.command("unban", "@ivan")
    await chat.command("unban", "@ivan")
    await chat.command("ban")

    assert chat.admin.set_banned.await_args_list == [
        ((ADMIN_ID, 31, True),),
        ((ADMIN_ID, 31, False),),
        ((ADMIN_ID, 31, False),),
    ]
    assert chat.texts() == [
        "User Ivan (@ivan) is banned.",
        "User Ivan (@ivan) is unbanned.",
        "User Ivan (@ivan) already is in that state.",
        usage("/ban <telegram id | @username>"),
    ]


async def test_user_buttons_grant_once_per_button_and_ban(chat: Chat) -> None:
    chat.admin.get_user.return_value = some_user()
    chat.admin.grant.return_value = (True, 10)
    chat.admin.set_banned.return_value = True

    await chat.tap(AdminUserCb(action=AdminUserAction.GRANT, user_id=31, photos=10).pack())
    await chat.tap(AdminUserCb(action=AdminUserAction.BAN, user_id=31).pack())

    key = f"btn:{chat.updates.chat.id}:9000:10"  # the /user answer's message and the button's photos
    chat.admin.grant.assert_awaited_once_with(ADMIN_ID, 31, 10, None, key)
    chat.admin.set_banned.assert_awaited_once_with(ADMIN_ID, 31, True)
    assert len(chat.callback_answers()) == 2


@pytest.mark.parametrize("photos", [0, 5000])
async def test_a_grant_button_outside_the_limits_grants_nothing(chat: Chat, photos: int) -> None:
    chat.admin.get_user.return_value = some_user()

    await chat.tap(AdminUserCb(action=AdminUserAction.GRANT, user_id=31, photos=photos).pack())

    chat.admin.grant.assert_not_awaited()
    assert len(chat.callback_answers()) == 1 and chat.texts() == []


async def test_a_button_for_a_user_that_is_gone_does_nothing(chat: Chat) -> None:
    chat.admin.get_user.return_value = None

    await chat.tap(AdminUserCb(action=AdminUserAction.UNBAN, user_id=99).pack())

    chat.admin.set_banned.assert_not_awaited()
    assert len(chat.callback_answers()) == 1 and chat.texts() == []


# ---------------------------------------------------------------- /refund


@pytest.mark.parametrize(
    ("outcome", "said"),
    [
        (RefundOutcome(RefundResult.REFUNDED, 250, "XTR", photos=7), "Payment #3 refunded"),
        (RefundOutcome(RefundResult.REFUNDED, 250, "XTR", photos=4, spent=3), "3 more were already"),
        (RefundOutcome(RefundResult.REPEATED, 250, "XTR"), "Payment #3 was already refunded"),
        (RefundOutcome(RefundResult.PENDING, 100, "RUB", status="pending"), "The refund of payment #3 is in progress"),
        (OrderNotPayable("3"), "Payment #3 not found or cannot be refunded."),
        (PaymentProviderError("<boom>", retryable=True), "Failed: &lt;boom&gt;"),
    ],
)
async def test_refund_answers(chat: Chat, outcome: Any, said: str) -> None:
    chat.admin.refund.side_effect = [outcome]

    await chat.command("refund", "3 4")

    chat.admin.refund.assert_awaited_once_with(ADMIN_ID, 3, 4)
    assert said in chat.texts()[0]


@pytest.mark.parametrize("args", ["", "x", "3 0", "3 4 5"])
async def test_refund_wants_a_payment_and_maybe_photos(chat: Chat, args: str) -> None:
    await chat.command("refund", args)

    assert chat.texts() == [usage("/refund <payment id> [photos]")]
    chat.admin.refund.assert_not_awaited()


# ---------------------------------------------------------------- /provider


async def test_provider_lists_health_with_switches(chat: Chat) -> None:
    await chat.command("provider")

    chat.admin.audit.assert_awaited_once_with(ADMIN_ID, "provider")
    assert "kie" in chat.texts()[0]
    assert chat.buttons() == [
        AdminProviderCb(action=AdminProviderAction.PAUSE, name="kie").pack(),
        AdminProviderCb(action=AdminProviderAction.RESUME, name="replicate").pack(),
        AdminProviderCb(action=AdminProviderAction.PRIMARY, name="replicate").pack(),
    ]


async def test_provider_shows_the_last_probe_under_each_provider(chat: Chat) -> None:
    checked = NOW - timedelta(minutes=3)
    kie, replicate = chat.admin.provider_health.return_value
    chat.admin.provider_health.return_value = [
        replace(kie, probe=ProbeReport("kie", checked, balance=42.5, balance_alert_below=1000.0)),
        replace(replicate, probe=ProbeReport("replicate", checked, model="google/nano-banana-pro", model_exists=False)),
    ]

    await chat.command("provider")

    text = chat.texts()[0]
    assert "⚠️ balance 42.5, below 1000 (checked 2026-12-07 11:57 UTC)" in text
    assert "⚠️ model google/nano-banana-pro is gone" in text
    assert text.index("balance 42.5") < text.index("<b>replicate</b>")  # under its own provider

    chat.admin.provider_health.return_value = [replace(kie, probe=ProbeReport("kie", checked, error="<timeout>"))]
    await chat.command("provider")
    assert "probe failed: &lt;timeout&gt;" in chat.texts()[1]


async def test_provider_switches_by_command(chat: Chat) -> None:
    await chat.command("provider", "pause KIE")
    await chat.command("provider", "resume replicate")
    await chat.command("provider", "primary replicate")

    assert chat.admin.set_paused.await_args_list == [((ADMIN_ID, "kie", True),), ((ADMIN_ID, "replicate", False),)]
    chat.admin.set_primary.assert_awaited_once_with(ADMIN_ID, "replicate")
    assert len(chat.texts()) == 3


async def test_provider_by_button_and_an_unknown_name(chat: Chat) -> None:
    await chat.tap(AdminProviderCb(action=AdminProviderAction.PRIMARY, name="replicate").pack())
    await chat.tap(AdminProviderCb(action=AdminProviderAction.PAUSE, name="<dall-e>").pack())

    chat.admin.set_primary.assert_awaited_once_with(ADMIN_ID, "replicate")
    chat.admin.set_paused.assert_not_awaited()
    assert chat.texts()[-1] == "No provider named “&lt;dall-e&gt;”."


@pytest.mark.parametrize("args", ["pause", "stop kie", "pause kie now"])
async def test_provider_usage(chat: Chat, args: str) -> None:
    await chat.command("provider", args)

    assert chat.texts() == [usage("/provider [pause|resume|primary <name>]")]


async def test_no_provider_means_no_keyboard(chat: Chat) -> None:
    chat.admin.provider_health.return_value = []

    await chat.command("provider")

    [sent] = chat.bot.sent("sendMessage")
    assert "No provider is configured." in sent.text and sent.reply_markup is None


# ---------------------------------------------------------------- /broadcast


async def test_broadcast_composes_previews_and_offers_segments(chat: Chat) -> None:
    chat.admin.draft_broadcast.return_value = 3

    await chat.command("broadcast")
    message = chat.updates.text("Sale <today>")
    await chat.feed(message)

    # As HTML: what the admin typed is text, exactly as the preview and the recipients show it.
    draft = ("Sale &lt;today&gt;", None, message.message.message_id)  # type: ignore[union-attr]
    chat.admin.draft_broadcast.assert_awaited_once_with(ADMIN_ID, *draft)
    assert chat.texts()[0].startswith("Send the broadcast text")
    assert chat.texts()[1:] == ["Sale &lt;today&gt;", "This is how the broadcast will look ↑. Who should get it?"]
    assert (
        chat.buttons()[0]
        == AdminBroadcastCb(action=AdminBroadcastAction.SEGMENT, broadcast_id=3, segment=BroadcastSegment.ALL).pack()
    )
    assert chat.buttons()[-1] == AdminBroadcastCb(action=AdminBroadcastAction.DISCARD, broadcast_id=3).pack()
    assert await chat.feed(chat.updates.text("a second text")) is UNHANDLED  # the composing step is over


async def test_a_photo_broadcast_is_previewed_as_a_photo(chat: Chat) -> None:
    chat.admin.draft_broadcast.return_value = 4

    await chat.command("broadcast")
    await chat.feed(chat.updates.photo("PHOTO", caption="New styles"))

    chat.admin.draft_broadcast.assert_awaited_once_with(ADMIN_ID, "New styles", "PHOTO", 2)
    [photo] = chat.bot.sent("sendPhoto")
    assert photo.photo == "PHOTO" and photo.caption == "New styles"


async def test_a_command_while_composing_is_the_command(chat: Chat) -> None:
    await chat.command("broadcast")
    await chat.command("admin")

    chat.admin.draft_broadcast.assert_not_awaited()
    assert chat.texts()[-1].startswith("Commands: /stats")


async def test_segment_send_discard_and_stop_buttons(chat: Chat) -> None:
    chat.admin.choose_segment.return_value = 120
    chat.admin.start_broadcast.return_value = True
    chat.admin.discard_broadcast.return_value = False
    chat.admin.stop_broadcasts.return_value = [BroadcastCounts(3, sent=50, blocked=2, failed=1)]

    await chat.tap(
        AdminBroadcastCb(action=AdminBroadcastAction.SEGMENT, broadcast_id=3, segment=BroadcastSegment.PAID).pack()
    )
    await chat.tap(AdminBroadcastCb(action=AdminBroadcastAction.SEND, broadcast_id=3).pack())
    await chat.tap(AdminBroadcastCb(action=AdminBroadcastAction.DISCARD, broadcast_id=3).pack())
    await chat.tap(AdminBroadcastCb(action=AdminBroadcastAction.STOP, broadcast_id=3).pack())

    chat.admin.choose_segment.assert_awaited_once_with(3, BroadcastSegment.PAID)
    chat.admin.start_broadcast.assert_awaited_once_with(ADMIN_ID, 3)
    chat.admin.discard_broadcast.assert_awaited_once_with(3)
    chat.admin.stop_broadcasts.assert_awaited_once_with(ADMIN_ID, 3)
    assert chat.texts() == [
        "Broadcast #3: Paid, 120 recipients. Send it?",
        "Broadcast #3 is on its way. I'll report when it is done.",
        "This broadcast was already started or discarded.",
        "Broadcast #3 stopped: sent 50, blocked 2, failed 1.",
    ]
    assert len(chat.callback_answers()) == 4


async def test_buttons_of_a_broadcast_that_is_no_draft_any_more(chat: Chat) -> None:
    chat.admin.choose_segment.return_value = None
    chat.admin.start_broadcast.return_value = False

    await chat.tap(
        AdminBroadcastCb(action=AdminBroadcastAction.SEGMENT, broadcast_id=3, segment=BroadcastSegment.ALL).pack()
    )
    await chat.tap(AdminBroadcastCb(action=AdminBroadcastAction.SEND, broadcast_id=3).pack())
    await chat.tap(AdminBroadcastCb(action=AdminBroadcastAction.SEGMENT, broadcast_id=3).pack())  # no segment

    assert chat.texts() == ["This broadcast was already started or discarded."] * 2
    chat.admin.choose_segment.assert_awaited_once()


async def test_broadcast_stop_by_command(chat: Chat) -> None:
    chat.admin.stop_broadcasts.side_effect = [[], [BroadcastCounts(1, 5, 0, 0), BroadcastCounts(2, 9, 1, 0)]]

    await chat.command("broadcast", "stop")
    await chat.command("broadcast", "stop")
    await chat.command("broadcast", "now")

    assert chat.admin.stop_broadcasts.await_args_list == [((ADMIN_ID, None),)] * 2
    assert chat.texts() == [
        "No broadcast is running.",
        "Broadcast #1 stopped: sent 5, blocked 0, failed 0.",
        "Broadcast #2 stopped: sent 9, blocked 1, failed 0.",
        usage("/broadcast [stop]"),
    ]


def test_the_fake_is_the_real_services_shape() -> None:
    admin = fake_admin()
    assert isinstance(admin.retry, AsyncMock)
    with pytest.raises(AttributeError):
        admin.engine  # noqa: B018  # the handlers never reach past the service
