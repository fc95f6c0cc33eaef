"""Admin commands. The router is filtered on ADMIN_IDS as a whole, so for anyone else these
commands do not exist: their updates fall through to the rest of the tree exactly like an unknown
command (same fallback, same answer). Handlers parse and answer; ``AdminService`` acts and audits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, Filter, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, TelegramObject
from aiogram.types import User as TelegramUser
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from bot.admin_service import AdminService, RefundResult
from bot.broadcast import BroadcastService
from bot.handlers.chat import ChatTarget
from bot.html_split import answer_html, fit_lines
from bot.settings import Settings
from providers.payments import PaymentProviderError
from scheduler.payments import OrderNotPayable, PaymentUnavailable
from storage import admin as queries
from storage import broadcasts as broadcast_queries
from storage.models import Broadcast, User
from storage.stats import PERIODS, compute_stats, percentile, period_start
from studio.credits import Currency, format_price

GRANT_BUTTON_PHOTOS = (1, 5, 10)
MAX_GRANT = 1000
SEGMENT_KEYS = {
    "all": "admin.broadcast.segment.all",
    "paid": "admin.broadcast.segment.paid",
    "never_paid": "admin.broadcast.segment.never_paid",
    "lang_ru": "admin.broadcast.segment.lang_ru",
    "lang_en": "admin.broadcast.segment.lang_en",
}


class AdminCb(CallbackData, prefix="adm"):
    action: str  # retry | cancel | resend | grant | ban | unban | pause | resume | primary | seg | send | drop | stop
    target: int = 0
    value: str = ""


class BroadcastCompose(StatesGroup):
    text = State()


class IsAdmin(Filter):
    """True for the Telegram ids in ADMIN_IDS (read from settings in the workflow data)."""

    async def __call__(
        self, event: TelegramObject, settings: Settings, event_from_user: TelegramUser | None = None
    ) -> bool:
        return event_from_user is not None and event_from_user.id in settings.ADMIN_IDS


# ---------------------------------------------------------------- formatting


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else _("admin.none")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _("admin.none")
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _share(value: float | None) -> str:
    return _("admin.none") if value is None else f"{value * 100:.1f}%"


def _money(amounts: Mapping[str, int], language: str) -> str:
    parts = []
    for currency, amount in sorted(amounts.items()):
        try:
            parts.append(format_price(amount, Currency(currency), language))
        except ValueError:
            parts.append(f"{amount} {escape(currency)}")
    return ", ".join(parts) or "0"


def _counts(counts: Mapping[str, int]) -> str:
    items = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{escape(str(name))} {count}" for name, count in items) or _("admin.none")


def _args(command: CommandObject) -> list[str]:
    return (command.args or "").split()


def _int(value: str) -> int | None:
    return int(value) if value.lstrip("-").isdigit() and len(value) < 19 else None


async def _usage(message: Message, usage: str) -> None:
    await message.answer(_("admin.bad_args").format(usage=escape(usage)))


def _user_label(user: User) -> str:
    name = escape(user.first_name or "")
    return f"{name} (@{escape(user.username)})" if user.username else f"{name} (tg {user.telegram_id})"


# ---------------------------------------------------------------- /stats /queue


async def stats_command(
    message: Message, command: CommandObject, session: AsyncSession, admin: AdminService, user: User
) -> None:
    period = (_args(command) or ["today"])[0].lower()
    if period not in PERIODS:
        await _usage(message, "/stats [today|7d|30d]")
        return
    await admin.audit(user.telegram_id, "stats", period)  # first: the request is the action
    now = datetime.now(UTC)
    stats = await compute_stats(session, period_start(period, now), now)
    done_total = sum(figures.done for figures in stats.providers.values())
    providers = [
        _("admin.stats.provider").format(
            name=escape(name),
            done=figures.done,
            share=_share(figures.done / done_total if done_total else None),
            failure_rate=_share(figures.failure_rate),
            retried=figures.retried,
            fell_back=figures.fell_back,
        )
        for name, figures in sorted(stats.providers.items())
    ]
    await answer_html(
        message,
        _("admin.stats").format(
            period=period,
            since=_when(stats.since),
            new_users=stats.new_users,
            paid_orders=stats.paid_orders,
            revenue=_money(stats.revenue, user.language),
            refunded=_money(stats.refunded, user.language),
            jobs=_counts(stats.jobs_by_status),
            photos_done=stats.photos_done,
            photos_skipped=stats.photos_skipped,
            success_rate=_share(stats.success_rate),
            first_p50=_duration(percentile(stats.first_image_seconds, 0.5)),
            first_p95=_duration(percentile(stats.first_image_seconds, 0.95)),
            pack_p50=_duration(percentile(stats.full_pack_seconds, 0.5)),
            pack_p95=_duration(percentile(stats.full_pack_seconds, 0.95)),
            providers="; ".join(providers) or _("admin.none"),
            started=_counts(stats.jobs_started_by_provider),
            failures=_counts(stats.failures_by_type),
            rejected=_counts(stats.rejected_by_reason),
            granted=stats.credits_granted,
            returned=stats.credits_returned,
            refund_credits=stats.credits_refunded,
            cost=_admin_number(stats.provider_cost),
            identity=_admin_number(stats.identity_average, 3),
            redo_share=_share(stats.redo_share),
        ),
    )


def _admin_number(value: float | None, digits: int = 2) -> str:
    return _("admin.none") if value is None else f"{value:.{digits}f}"


async def queue_command(message: Message, session: AsyncSession, admin: AdminService, user: User) -> None:
    await admin.audit(user.telegram_id, "queue")
    snapshot = await queries.queue_snapshot(session)
    jobs = _counts({f"{status}/p{priority}": count for (status, priority), count in snapshot.jobs.items()})
    tasks = _counts({f"{status}@{provider}": count for (status, provider), count in snapshot.tasks.items()})
    oldest = None
    if snapshot.oldest_queued_at is not None:
        oldest = (datetime.now(UTC) - snapshot.oldest_queued_at).total_seconds()
    await answer_html(
        message,
        _("admin.queue").format(
            jobs=jobs if snapshot.jobs else _("admin.queue.empty"),
            oldest=_duration(oldest),
            tasks=tasks if snapshot.tasks else _("admin.queue.empty"),
            providers=await _provider_lines(admin),
        ),
    )


# ---------------------------------------------------------------- /job


def _job_keyboard(job_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("admin.button.retry"), callback_data=AdminCb(action="retry", target=job_id))
    builder.button(text=_("admin.button.cancel"), callback_data=AdminCb(action="cancel", target=job_id))
    builder.button(text=_("admin.button.resend"), callback_data=AdminCb(action="resend", target=job_id))
    builder.adjust(1)
    return builder.as_markup()


async def job_command(
    message: Message, command: CommandObject, session: AsyncSession, admin: AdminService, user: User
) -> None:
    args = _args(command)
    job_id = _int(args[0]) if len(args) == 1 else None
    if job_id is None:
        await _usage(message, "/job <id>")
        return
    await admin.audit(user.telegram_id, "job", f"job:{job_id}")
    detail = await queries.job_detail(session, job_id)
    if detail is None:
        await message.answer(_("admin.no_job").format(job_id=job_id))
        return
    job, lines = detail.job, []
    for task in detail.tasks:
        error = f" — {escape(task.error[:60])}" if task.error else ""
        lines.append(f"{task.position + 1}. {task.status} @{escape(task.provider or '-')} ×{task.attempts}{error}")
    await message.answer(
        _("admin.job").format(
            job_id=job.id,
            status=job.status,
            user=_user_label(detail.user),
            telegram_id=detail.user.telegram_id,
            style=escape(job.style),
            pack=escape(detail.order.pack) if detail.order else _("admin.none"),
            done=job.photos_completed,
            total=job.photos_total,
            failed=job.photos_failed,
            created=_when(job.created_at),
            started=_when(job.started_at),
            first_image=_when(job.first_image_at),
            finished=_when(job.finished_at),
            tasks=fit_lines(lines, 2500),
        ),
        reply_markup=_job_keyboard(job.id),
    )


async def _retry(message: ChatTarget, admin: AdminService, admin_id: int, job_id: int) -> None:
    count = await admin.retry(admin_id, job_id)
    key = "admin.retried" if count else "admin.retry_nothing"
    await message.answer(_(key).format(job_id=job_id, count=count))


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


async def job_action_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = _args(command)
    job_id = _int(args[0]) if len(args) == 1 else None
    if job_id is None:
        await _usage(message, f"/{command.command} <job id>")
        return
    if command.command == "retry":
        await _retry(message, admin, user.telegram_id, job_id)
    else:
        await _cancel(message, admin, user.telegram_id, job_id)


async def job_button(query: CallbackQuery, callback_data: AdminCb, admin: AdminService, user: User) -> None:
    await query.answer()
    message = query.message
    if message is None:
        return
    if callback_data.action == "retry":
        await _retry(message, admin, user.telegram_id, callback_data.target)
    elif callback_data.action == "cancel":
        await _cancel(message, admin, user.telegram_id, callback_data.target)
    else:
        count = await admin.resend(user.telegram_id, callback_data.target)
        await message.answer(_("admin.resent").format(job_id=callback_data.target, count=count))


# ---------------------------------------------------------------- /user /grant /ban /unban


def _user_keyboard(target: User) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for photos in GRANT_BUTTON_PHOTOS:
        builder.button(
            text=_("admin.button.grant").format(photos=photos),
            callback_data=AdminCb(action="grant", target=target.id, value=str(photos)),
        )
    if target.is_banned:
        builder.button(text=_("admin.button.unban"), callback_data=AdminCb(action="unban", target=target.id))
    else:
        builder.button(text=_("admin.button.ban"), callback_data=AdminCb(action="ban", target=target.id))
    builder.adjust(len(GRANT_BUTTON_PHOTOS), 1)
    return builder.as_markup()


def _lines(items: Iterable[str]) -> str:
    text = "\n  ".join(items)
    return f"\n  {text}" if text else _("admin.none")


async def user_command(
    message: Message, command: CommandObject, session: AsyncSession, admin: AdminService, user: User
) -> None:
    args = _args(command)
    if len(args) != 1:
        await _usage(message, "/user <telegram id | @username>")
        return
    target = await queries.find_user(session, args[0])
    if target is None:
        await message.answer(_("admin.no_user").format(ref=escape(args[0])))
        return
    await admin.audit(user.telegram_id, "user", f"user:{target.id}")
    detail = await queries.user_detail(session, target)
    yes, no = _("admin.yes"), _("admin.no")
    await answer_html(
        message,
        _("admin.user").format(
            name=escape(target.first_name or ""),
            username=escape(target.username or "-"),
            telegram_id=target.telegram_id,
            user_id=target.id,
            language=target.language,
            source=escape(target.source or "-"),
            created=_when(target.created_at),
            blocked=yes if target.is_blocked else no,
            banned=yes if target.is_banned else no,
            balance=detail.balance,
            ledger=_lines(
                f"{entry.delta:+d} {entry.reason} {escape(entry.reference)} {_when(entry.created_at)}"
                for entry in detail.ledger
            ),
            orders=_lines(
                f"#{order.id} {escape(order.pack)} {order.status} {_when(order.created_at)}" for order in detail.orders
            ),
            payments=_lines(
                f"#{payment.id} {payment.provider} {_money({payment.currency: payment.amount}, user.language)} "
                f"{payment.status}"
                for payment in detail.payments
            ),
            jobs=_lines(
                f"#{job.id} {job.status} {job.photos_completed}/{job.photos_total} {_when(job.created_at)}"
                for job in detail.jobs
            ),
        ),
        reply_markup=_user_keyboard(target),
    )


async def _grant(
    message: ChatTarget, admin: AdminService, admin_id: int, target: User, photos: int, reason: str | None, key: str
) -> None:
    granted, balance = await admin.grant(admin_id, target.id, photos, reason, key)
    text_key = "admin.granted" if granted else "admin.grant_repeated"
    await message.answer(_(text_key).format(photos=photos, user=_user_label(target), balance=balance))


async def grant_command(
    message: Message, command: CommandObject, session: AsyncSession, admin: AdminService, user: User
) -> None:
    args = _args(command)
    photos = _int(args[1]) if len(args) >= 2 else None
    if photos is None or not 1 <= photos <= MAX_GRANT:
        await _usage(message, f"/grant <user> <photos 1..{MAX_GRANT}> [reason]")
        return
    target = await queries.find_user(session, args[0])
    if target is None:
        await message.answer(_("admin.no_user").format(ref=escape(args[0])))
        return
    reason = " ".join(args[2:]) or None
    # The admin's message names the grant: a redelivered update grants nothing more.
    await _grant(
        message, admin, user.telegram_id, target, photos, reason, f"msg:{message.chat.id}:{message.message_id}"
    )


async def ban_command(
    message: Message, command: CommandObject, session: AsyncSession, admin: AdminService, user: User
) -> None:
    args = _args(command)
    if len(args) != 1:
        await _usage(message, f"/{command.command} <telegram id | @username>")
        return
    target = await queries.find_user(session, args[0])
    if target is None:
        await message.answer(_("admin.no_user").format(ref=escape(args[0])))
        return
    await _ban(message, admin, user.telegram_id, target, command.command == "ban")


async def _ban(message: ChatTarget, admin: AdminService, admin_id: int, target: User, banned: bool) -> None:
    changed = await admin.set_banned(admin_id, target.id, banned)
    key = ("admin.banned" if banned else "admin.unbanned") if changed else "admin.ban_unchanged"
    await message.answer(_(key).format(user=_user_label(target)))


async def user_button(
    query: CallbackQuery, callback_data: AdminCb, session: AsyncSession, admin: AdminService, user: User
) -> None:
    await query.answer()
    message = query.message
    target = await session.get(User, callback_data.target)
    if message is None or target is None:
        return
    if callback_data.action == "grant":
        photos = _int(callback_data.value)
        if photos is None or not 1 <= photos <= MAX_GRANT:
            return
        # One grant per button of one /user answer, however often it is tapped.
        key = f"btn:{message.chat.id}:{message.message_id}:{photos}"
        await _grant(message, admin, user.telegram_id, target, photos, None, key)
    else:
        await _ban(message, admin, user.telegram_id, target, callback_data.action == "ban")


# ---------------------------------------------------------------- /refund


async def refund_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = _args(command)
    payment_id = _int(args[0]) if args else None
    photos = _int(args[1]) if len(args) == 2 else None
    if payment_id is None or len(args) > 2 or (len(args) == 2 and (photos is None or photos < 1)):
        await _usage(message, "/refund <payment id> [photos]")
        return
    try:
        outcome = await admin.refund(user.telegram_id, payment_id, photos)
    except OrderNotPayable:
        await message.answer(_("admin.no_payment").format(payment_id=payment_id))
        return
    except (PaymentProviderError, PaymentUnavailable) as error:
        await message.answer(_("admin.error").format(error=escape(str(error))[:500]))
        return
    if outcome.result == RefundResult.REPEATED:
        await message.answer(_("admin.refund_repeated").format(payment_id=payment_id))
    elif outcome.result == RefundResult.PENDING:
        await message.answer(_("admin.refund_pending").format(payment_id=payment_id, status=escape(outcome.status)))
    else:
        await message.answer(
            _("admin.refunded_short" if outcome.spent else "admin.refunded").format(
                payment_id=payment_id,
                amount=_money({outcome.currency: outcome.amount}, user.language),
                photos=outcome.photos,
                spent=outcome.spent,
            )
        )


# ---------------------------------------------------------------- /provider


async def _provider_lines(admin: AdminService) -> str:
    lines = []
    for health in await admin.provider_health():
        state = _("admin.provider.primary") if health.primary else _("admin.provider.fallback")
        if health.paused:
            state += f", {_('admin.provider.paused')}"
        lines.append(
            _("admin.provider.line").format(
                marker="⏸" if health.paused else ("⭐" if health.primary else "•"),
                name=escape(health.name),
                state=state,
                breaker=health.breaker,
                success=health.succeeded,
                tried=health.tried,
                latency=_duration(health.latency_p50),
            )
        )
    return "\n".join(lines) or _("admin.provider.none")


def _provider_keyboard(admin: AdminService) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for index, name in enumerate(admin.provider_names()):
        if name in admin.engine.paused:
            builder.button(
                text=_("admin.button.resume").format(name=name), callback_data=AdminCb(action="resume", value=name)
            )
        else:
            builder.button(
                text=_("admin.button.pause").format(name=name), callback_data=AdminCb(action="pause", value=name)
            )
        if index:
            builder.button(
                text=_("admin.button.primary").format(name=name), callback_data=AdminCb(action="primary", value=name)
            )
    builder.adjust(2)
    return builder.as_markup()


async def _show_providers(message: ChatTarget, admin: AdminService, prefix: str = "") -> None:
    text = _("admin.providers").format(lines=await _provider_lines(admin))
    await message.answer(f"{prefix}{text}", reply_markup=_provider_keyboard(admin) if admin.provider_names() else None)


async def _switch(message: ChatTarget, admin: AdminService, admin_id: int, action: str, name: str) -> None:
    if name not in admin.provider_names():
        await message.answer(_("admin.provider.unknown").format(name=escape(name)))
        return
    if action == "primary":
        await admin.set_primary(admin_id, name)
    else:
        await admin.set_paused(admin_id, name, action == "pause")
    await _show_providers(message, admin)


async def provider_command(message: Message, command: CommandObject, admin: AdminService, user: User) -> None:
    args = _args(command)
    if not args:
        await admin.audit(user.telegram_id, "provider")
        await _show_providers(message, admin)
        return
    if len(args) != 2 or args[0] not in ("pause", "resume", "primary"):
        await _usage(message, "/provider [pause|resume|primary <name>]")
        return
    await _switch(message, admin, user.telegram_id, args[0], args[1].lower())


async def provider_button(query: CallbackQuery, callback_data: AdminCb, admin: AdminService, user: User) -> None:
    await query.answer()
    if query.message is not None:
        await _switch(query.message, admin, user.telegram_id, callback_data.action, callback_data.value)


# ---------------------------------------------------------------- /broadcast


async def broadcast_command(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    admin: AdminService,
    broadcasts: BroadcastService,
    session: AsyncSession,
    user: User,
) -> None:
    args = _args(command)
    if args[:1] == ["stop"]:
        await _stop_broadcasts(message, admin, broadcasts, session, user.telegram_id)
        return
    if args:
        await _usage(message, "/broadcast [stop]")
        return
    await state.set_state(BroadcastCompose.text)
    await message.answer(_("admin.broadcast.prompt"))


async def _stop_broadcasts(
    message: ChatTarget,
    admin: AdminService,
    broadcasts: BroadcastService,
    session: AsyncSession,
    admin_id: int,
    one: int | None = None,
) -> None:
    stopped = await broadcasts.stop(one)
    if not stopped:
        await message.answer(_("admin.broadcast.nothing_running"))
        return
    for broadcast_id in stopped:
        broadcast = await session.get(Broadcast, broadcast_id, populate_existing=True)
        assert broadcast is not None
        await admin.audit(admin_id, "broadcast_stop", f"broadcast:{broadcast_id}", sent=broadcast.sent)
        await message.answer(
            _("admin.broadcast.stopped").format(
                broadcast_id=broadcast_id, sent=broadcast.sent, blocked=broadcast.blocked, failed=broadcast.failed
            )
        )


async def broadcast_text(
    message: Message, state: FSMContext, session: AsyncSession, admin: AdminService, user: User
) -> None:
    photo = message.photo[-1].file_id if message.photo else None
    text = message.html_text if (message.text or message.caption) else ""
    if not text and photo is None:
        await message.answer(_("admin.broadcast.prompt"))
        return
    await state.clear()
    draft, created = await broadcast_queries.create_draft(
        session, user.telegram_id, text, photo, source_message_id=message.message_id
    )
    if created:  # the same message delivered again shows the same draft's preview again
        await queries.audit(session, user.telegram_id, "broadcast_draft", f"broadcast:{draft.id}", photo=bool(photo))
    await session.commit()
    # The preview is the message exactly as recipients will get it.
    if photo:
        await message.answer_photo(photo, caption=text or None)
    else:
        await message.answer(text)
    builder = InlineKeyboardBuilder()
    for segment, key in SEGMENT_KEYS.items():
        builder.button(text=_(key), callback_data=AdminCb(action="seg", target=draft.id, value=segment))
    builder.button(text=_("admin.button.discard"), callback_data=AdminCb(action="drop", target=draft.id))
    builder.adjust(1, 2, 2, 1)
    await message.answer(_("admin.broadcast.preview"), reply_markup=builder.as_markup())


async def broadcast_button(
    query: CallbackQuery,
    callback_data: AdminCb,
    session: AsyncSession,
    admin: AdminService,
    broadcasts: BroadcastService,
    user: User,
) -> None:
    await query.answer()
    message = query.message
    if message is None:
        return
    broadcast_id = callback_data.target
    if callback_data.action == "seg":
        if callback_data.value not in SEGMENT_KEYS:
            return
        total = await broadcast_queries.set_segment(session, broadcast_id, callback_data.value)
        await session.commit()
        if total is None:
            await message.answer(_("admin.broadcast.not_draft"))
            return
        builder = InlineKeyboardBuilder()
        builder.button(text=_("admin.button.send"), callback_data=AdminCb(action="send", target=broadcast_id))
        builder.button(text=_("admin.button.discard"), callback_data=AdminCb(action="drop", target=broadcast_id))
        await message.answer(
            _("admin.broadcast.confirm").format(
                broadcast_id=broadcast_id, segment=_(SEGMENT_KEYS[callback_data.value]), total=total
            ),
            reply_markup=builder.as_markup(),
        )
    elif callback_data.action == "send":
        if not await broadcasts.start(broadcast_id):
            await message.answer(_("admin.broadcast.not_draft"))
            return
        await admin.audit(user.telegram_id, "broadcast_start", f"broadcast:{broadcast_id}")
        builder = InlineKeyboardBuilder()
        builder.button(text=_("admin.button.stop"), callback_data=AdminCb(action="stop", target=broadcast_id))
        await message.answer(
            _("admin.broadcast.started").format(broadcast_id=broadcast_id), reply_markup=builder.as_markup()
        )
    elif callback_data.action == "drop":
        moved = await broadcast_queries.move(
            session,
            broadcast_id,
            (broadcast_queries.BroadcastStatus.DRAFT,),
            broadcast_queries.BroadcastStatus.CANCELLED,
        )
        await session.commit()
        await message.answer(_("admin.broadcast.discarded" if moved else "admin.broadcast.not_draft"))
    else:
        await _stop_broadcasts(message, admin, broadcasts, session, user.telegram_id, broadcast_id)


# ---------------------------------------------------------------- the router


async def admin_help(message: Message) -> None:
    await message.answer(_("admin.usage"))


def build_router() -> Router:
    router = Router(name="admin")
    # Filters on the router itself: for a non-admin nothing in here matches, and the update
    # propagates to the rest of the tree as if these commands did not exist.
    router.message.filter(IsAdmin())
    router.callback_query.filter(IsAdmin())
    router.message.register(admin_help, Command("admin"))
    router.message.register(stats_command, Command("stats"))
    router.message.register(queue_command, Command("queue"))
    router.message.register(job_command, Command("job"))
    router.message.register(job_action_command, Command("retry"))
    # A bare /cancel is the user-level command (admins are users too); with a job id it is ours.
    router.message.register(job_action_command, Command("cancel", magic=F.args))
    router.message.register(user_command, Command("user"))
    router.message.register(grant_command, Command("grant"))
    router.message.register(refund_command, Command("refund"))
    router.message.register(ban_command, Command("ban", "unban"))
    router.message.register(provider_command, Command("provider"))
    router.message.register(broadcast_command, Command("broadcast"))
    router.message.register(broadcast_text, StateFilter(BroadcastCompose.text), F.text.regexp(r"^(?!/)") | F.photo)
    router.callback_query.register(job_button, AdminCb.filter(F.action.in_({"retry", "cancel", "resend"})))
    router.callback_query.register(user_button, AdminCb.filter(F.action.in_({"grant", "ban", "unban"})))
    router.callback_query.register(provider_button, AdminCb.filter(F.action.in_({"pause", "resume", "primary"})))
    router.callback_query.register(broadcast_button, AdminCb.filter(F.action.in_({"seg", "send", "drop", "stop"})))
    return router
