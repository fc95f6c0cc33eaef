"""What the admin handlers say: argument parsing and the long answers (/stats, /queue, /job, /user,
the provider list), built from what ``AdminService`` returns. No I/O here but the usage answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from aiogram.filters import CommandObject
from aiogram.utils.i18n import gettext as _

from bot.handlers.chat import ChatTarget
from bot.html_split import fit_lines
from bot.notifier import credits_text
from scheduler.admin import JobDetail, ProviderHealth, QueueSnapshot, StatsReport, UserDetail
from scheduler.provider_health import ProbeReport
from storage.models import User
from studio.costs import Margin, format_usd, micros_to_usd, provider_margin
from studio.credits import Currency, format_price

MAX_GRANT = 1000


# ---------------------------------------------------------------- arguments


def args_of(command: CommandObject) -> list[str]:
    return (command.args or "").split()


def to_int(value: str) -> int | None:
    return int(value) if value.lstrip("-").isdigit() and len(value) < 19 else None


def one_id(command: CommandObject) -> int | None:
    """The single integer argument (a job id), or None."""
    args = args_of(command)
    return to_int(args[0]) if len(args) == 1 else None


async def usage(message: ChatTarget, text: str) -> None:
    await message.answer(_("admin.bad_args").format(usage=escape(text)))


async def no_user(message: ChatTarget, reference: str) -> None:
    await message.answer(_("admin.no_user").format(ref=escape(reference)))


# ---------------------------------------------------------------- pieces


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else _("admin.none")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return _("admin.none")
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def share(value: float | None) -> str:
    return _("admin.none") if value is None else f"{value * 100:.1f}%"


def number(value: float | None, digits: int = 2) -> str:
    return _("admin.none") if value is None else f"{value:.{digits}f}"


def money(amounts: Mapping[str, int], language: str) -> str:
    parts = []
    for currency, amount in sorted(amounts.items()):
        try:
            parts.append(format_price(amount, Currency(currency), language))
        except ValueError:
            parts.append(f"{amount} {escape(currency)}")
    return ", ".join(parts) or "0"


def usd(micros: int | None) -> str:
    return _("admin.none") if micros is None else format_usd(micros_to_usd(micros))


def margin_text(margin: Margin | None) -> str:
    """Revenue minus refunds and provider cost in USD, naming any currency left out for want of a rate."""
    if margin is None:
        return _("admin.none")
    text = format_usd(margin.usd)
    if margin.unconverted:
        text += " " + _("admin.stats.unconverted").format(currencies=", ".join(margin.unconverted))
    return text


def counts(values: Mapping[str, int]) -> str:
    items = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{escape(str(name))} {count}" for name, count in items) or _("admin.none")


def user_label(user: User) -> str:
    name = escape(user.first_name or "")
    return f"{name} (@{escape(user.username)})" if user.username else f"{name} (tg {user.telegram_id})"


def indented(items: Iterable[str]) -> str:
    text = "\n  ".join(items)
    return f"\n  {text}" if text else _("admin.none")


# ---------------------------------------------------------------- whole answers


def stats_text(period: str, report: StatsReport, language: str) -> str:
    stats = report.stats
    done_total = sum(figures.done for figures in stats.providers.values())
    providers = [
        _("admin.stats.provider").format(
            name=escape(name),
            done=figures.done,
            share=share(figures.done / done_total if done_total else None),
            failure_rate=share(figures.failure_rate),
            retried=figures.retried,
            fell_back=figures.fell_back,
            cost=usd(figures.cost_micros),
            cost_per_portrait=usd(round(figures.cost_micros / figures.done) if figures.done else None),
            margin=margin_text(
                provider_margin(report.margin, figures.done, done_total, figures.cost_micros) if report.margin else None
            ),
        )
        for name, figures in sorted(stats.providers.items())
    ]
    text = _("admin.stats").format(
        period=period,
        since=when(stats.since),
        new_users=stats.new_users,
        paid_orders=stats.paid_orders,
        revenue=money(stats.revenue, language),
        refunded=money(stats.refunded, language),
        jobs=counts(stats.jobs_by_status),
        photos_done=stats.photos_done,
        photos_skipped=stats.photos_skipped,
        success_rate=share(stats.success_rate),
        first_p50=duration(report.first_p50),
        first_p95=duration(report.first_p95),
        pack_p50=duration(report.pack_p50),
        pack_p95=duration(report.pack_p95),
        providers="; ".join(providers) or _("admin.none"),
        started=counts(stats.jobs_started_by_provider),
        failures=counts(stats.failures_by_type),
        rejected=counts(stats.rejected_by_reason),
        granted=stats.credits_granted,
        returned=stats.credits_returned,
        refund_credits=stats.credits_refunded,
        cost=usd(stats.cost_micros),
        cost_per_portrait=usd(stats.cost_per_portrait_micros),
        margin=margin_text(report.margin),
        identity=number(stats.identity_average, 3),
        redo_share=share(stats.redo_share),
    )
    extra = [
        _("admin.stats.favourites").format(added=stats.favourites_added, styles=counts(stats.favourites_by_style)),
        _("admin.stats.reminders").format(reminders=counts(stats.reminders_by_cause)),
        _("admin.stats.redos").format(redos=counts(stats.redos_by_kind), credited=stats.guarantee_credits),
        _("admin.stats.gifts").format(
            bought=stats.gifts_bought,
            redeemed=stats.gifts_redeemed,
            promos=stats.promos_redeemed,
            referrals=stats.referrals_paid,
        ),
    ]
    return "\n".join([text, *extra])


def queue_text(snapshot: QueueSnapshot, providers: Sequence[ProviderHealth], now: datetime | None = None) -> str:
    oldest = None
    if snapshot.oldest_queued_at is not None:
        oldest = ((now or datetime.now(UTC)) - snapshot.oldest_queued_at).total_seconds()
    jobs = counts({f"{status}/p{priority}": count for (status, priority), count in snapshot.jobs.items()})
    tasks = counts({f"{status}@{provider}": count for (status, provider), count in snapshot.tasks.items()})
    return _("admin.queue").format(
        jobs=jobs if snapshot.jobs else _("admin.queue.empty"),
        oldest=duration(oldest),
        tasks=tasks if snapshot.tasks else _("admin.queue.empty"),
        providers=provider_lines(providers),
    )


def job_text(detail: JobDetail) -> str:
    job, lines = detail.job, []
    for task in detail.tasks:
        error = f" — {escape(task.error[:60])}" if task.error else ""
        lines.append(f"{task.position + 1}. {task.status} @{escape(task.provider or '-')} ×{task.attempts}{error}")
    return _("admin.job").format(
        job_id=job.id,
        status=job.status,
        user=user_label(detail.user),
        telegram_id=detail.user.telegram_id,
        style=escape(job.style),
        pack=escape(detail.order.pack) if detail.order else _("admin.none"),
        done=job.photos_completed,
        total=job.photos_total,
        failed=job.photos_failed,
        created=when(job.created_at),
        started=when(job.started_at),
        first_image=when(job.first_image_at),
        finished=when(job.finished_at),
        tasks=fit_lines(lines, 2500),
    )


def user_text(detail: UserDetail, language: str) -> str:
    target = detail.user
    yes, no = _("admin.yes"), _("admin.no")
    return _("admin.user").format(
        name=escape(target.first_name or ""),
        username=escape(target.username or "-"),
        telegram_id=target.telegram_id,
        user_id=target.id,
        language=target.language,
        source=escape(target.source or "-"),
        created=when(target.created_at),
        blocked=yes if target.is_blocked else no,
        banned=yes if target.is_banned else no,
        balance=detail.balance,
        ledger=indented(
            f"{entry.delta:+d} {entry.reason} {escape(entry.reference)} {when(entry.created_at)}"
            for entry in detail.ledger
        ),
        orders=indented(
            f"#{order.id} {escape(order.pack)} {order.status} {when(order.created_at)}" for order in detail.orders
        ),
        payments=indented(
            f"#{payment.id} {payment.provider} {money({payment.currency: payment.amount}, language)} {payment.status}"
            for payment in detail.payments
        ),
        jobs=indented(
            f"#{job.id} {job.status} {job.photos_completed}/{job.photos_total} {when(job.created_at)}"
            for job in detail.jobs
        ),
    )


def provider_lines(providers: Sequence[ProviderHealth]) -> str:
    lines = []
    for health in providers:
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
                latency=duration(health.latency_p50),
            )
        )
        if health.probe is not None:
            lines.append(probe_line(health.probe))
    return "\n".join(lines) or _("admin.provider.none")


def probe_line(probe: ProbeReport) -> str:
    """The last balance/model probe of one provider, under its line in /provider and /queue."""
    if probe.error is not None:
        parts = [_("admin.provider.probe_failed").format(error=escape(probe.error[:120]))]
    else:
        parts = []
        if probe.balance is not None:
            key = "admin.provider.balance_low" if probe.balance_low else "admin.provider.balance"
            parts.append(
                _(key).format(balance=credits_text(probe.balance), threshold=credits_text(probe.balance_alert_below))
            )
        if probe.model_exists is not None:
            key = "admin.provider.model_ok" if probe.model_exists else "admin.provider.model_missing"
            parts.append(_(key).format(model=escape(probe.model or "?")))
    return _("admin.provider.probe").format(parts="; ".join(parts) or _("admin.none"), checked=when(probe.checked_at))
