"""Gentle reminders, one clocked pass at a time: an order still unpaid after an hour, credits left on a
balance for three days, a pack's originals a week before retention deletes them.

Each reminder is claimed in the database (UNIQUE user, cause, reference) and committed before it is
sent, so it goes out at most once whatever crashes or how many processes run the pass. Nothing goes
out at night in the user's usual time zone (studio/reminders.py): a reminder due then stays unclaimed
and goes with the first pass of the morning. A user hears at most one reminder a day (REMINDER_GAP),
the most pressing first; the others wait. Messages go through the shared ``Bot`` (bot/reminders.py
implements the port), so the outgoing rate limits pace them with deliveries and broadcasts; a user
found to have blocked the bot is marked blocked and is not written to again.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, assert_never

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.broadcast import Blocked, BroadcastOutcome, Sent
from scheduler.notices import CreditsReminder, OriginalsReminder, PaymentReminder, Reminder
from storage import reminders as queries
from storage.avatars import latest_ready_avatar
from storage.deliveries import mark_user_blocked
from storage.events import EventName, record_event
from storage.models import utcnow
from storage.reminders import Due, ReminderStatus
from studio.reminders import (
    EXPIRY_NOTICE,
    IDLE_CREDITS_AFTER,
    REMINDER_GAP,
    UNPAID_AFTER,
    UNPAID_UNTIL,
    ReminderCause,
    days_left,
    is_quiet,
)

log = logging.getLogger(__name__)


class ReminderSender(Protocol):
    """Sends one reminder to one chat in the user's language and says how Telegram answered."""

    async def remind(self, chat_id: int, language: str, reminder: Reminder) -> BroadcastOutcome: ...


class RecordingReminderSender:
    """The in-process sender (tests, simulations): keeps what it was asked to send, sends nothing;
    ``outcomes`` answers for a chat instead of ``Sent``."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, Reminder]] = []  # (chat, language, reminder)
        self.outcomes: dict[int, BroadcastOutcome] = {}

    async def remind(self, chat_id: int, language: str, reminder: Reminder) -> BroadcastOutcome:
        outcome = self.outcomes.get(chat_id, Sent())
        if isinstance(outcome, Sent):
            self.sent.append((chat_id, language, reminder))
        return outcome


@dataclass
class ReminderReport:
    sent: Counter[str] = field(default_factory=Counter)  # cause → reminders that reached the chat
    waiting: int = 0  # due, but it is night where the user is
    spaced: int = 0  # due, but the user had a reminder within REMINDER_GAP
    blocked: int = 0
    failed: int = 0


class ReminderService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        sender: ReminderSender,
        result_retention: timedelta,
        batch_size: int = 200,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.sender = sender
        self.result_retention = result_retention
        self.batch_size = batch_size

    async def run(self, now: datetime | None = None) -> ReminderReport:
        """One pass; ``now`` is a parameter so tests can move time instead of waiting for it."""
        now = now or utcnow()
        report = ReminderReport()
        due_now = await self._due(now)
        async with self.sessionmaker() as session:
            reminded = await queries.reminded_since(session, (due.user_id for due in due_now), now - REMINDER_GAP)
        for due in due_now:
            if due.user_id in reminded:
                report.spaced += 1
                continue
            if is_quiet(now, due.language):
                report.waiting += 1
                continue
            reminded.add(due.user_id)
            await self._send(due, now, report)
        if report.sent or report.blocked or report.failed:
            log.info(
                "reminders: sent=%s waiting=%s spaced=%s blocked=%s failed=%s",
                dict(report.sent),
                report.waiting,
                report.spaced,
                report.blocked,
                report.failed,
            )
        return report

    async def _due(self, now: datetime) -> list[Due]:
        """Everything due, the most pressing first: a user due several gets the first one today."""
        async with self.sessionmaker() as session:
            return [
                *await queries.unpaid_orders(session, now - UNPAID_AFTER, now - UNPAID_UNTIL, self.batch_size),
                *await queries.expiring_originals(session, now, self.result_retention, EXPIRY_NOTICE, self.batch_size),
                *await queries.idle_credits(session, now - IDLE_CREDITS_AFTER, self.batch_size),
            ]

    async def _send(self, due: Due, now: datetime, report: ReminderReport) -> None:
        async with self.sessionmaker() as session:
            claimed = await queries.claim(session, due, now)
            reminder = await self._reminder(session, due, now) if claimed else None
            await session.commit()
        if reminder is None:
            return  # another process (or an earlier pass) has it
        outcome = await self.sender.remind(due.chat_id, due.language, reminder)
        async with self.sessionmaker() as session:
            if isinstance(outcome, Sent):
                await queries.settle(session, due, ReminderStatus.SENT)
                await record_event(session, EventName.REMINDER_SENT, user_id=due.user_id, cause=str(due.cause))
                report.sent[due.cause] += 1
            elif isinstance(outcome, Blocked):
                await queries.settle(session, due, ReminderStatus.BLOCKED)
                await mark_user_blocked(session, due.user_id, True)
                report.blocked += 1
            else:
                # Not retried: a reminder is worth less than the risk of sending it twice.
                await queries.settle(session, due, ReminderStatus.FAILED)
                log.warning("reminder %s/%s to chat %s failed: %s", due.cause, due.reference, due.chat_id, outcome)
                report.failed += 1
            await session.commit()

    async def _reminder(self, session: AsyncSession, due: Due, now: datetime) -> Reminder:
        match due.cause:
            case ReminderCause.UNPAID_ORDER:
                assert due.subject_id is not None
                return PaymentReminder(order_id=due.subject_id, photos=due.count)
            case ReminderCause.IDLE_CREDITS:
                avatar = await latest_ready_avatar(session, due.user_id)
                return CreditsReminder(credits=due.count, avatar_id=avatar.id if avatar else None)
            case ReminderCause.ORIGINALS_EXPIRING:
                assert due.subject_id is not None and due.deletes_at is not None
                days = days_left(due.deletes_at, now)
                return OriginalsReminder(job_id=due.subject_id, days=days)
            case _:
                assert_never(due.cause)
