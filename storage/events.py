"""Analytics events: one row per product event, written in the transaction of the change it describes.

``record_event`` only adds an INSERT to the caller's open transaction. The event therefore commits
exactly when the state change commits, and vanishes with it on a rollback: callers record inside
the conditional transition that wins (a payment moved to ``succeeded``, a task moved to
``stored``), so a duplicated notification or a second worker never records twice.

Each committed event is also written as one structured log line (logger ``pinglass.events``)
after the commit, so the log never announces an event that was rolled back.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event as orm_event
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import Event, GenerationJob, utcnow

log = logging.getLogger("pinglass.events")

_PENDING_KEY = "pinglass_pending_events"


class EventName(StrEnum):
    """Every analytics event name; /stats and dashboards read exactly these."""

    USER_STARTED = "user_started"  # {source}: first /start of a new user
    PHOTO_REJECTED = "photo_rejected"  # {reason}: intake refused an uploaded photo
    PAYMENT_CREATED = "payment_created"  # {provider, amount, currency, order_id}
    PAYMENT_SUCCEEDED = "payment_succeeded"  # {provider, amount, currency, order_id}
    PAYMENT_CANCELED = "payment_canceled"  # {provider, amount, currency, order_id}
    PAYMENT_REFUNDED = "payment_refunded"  # {provider, amount, currency, order_id}
    GENERATION_QUEUED = "generation_queued"  # {image_count}: a paid or trial job was queued
    GENERATION_STARTED = "generation_started"  # {provider, model}: the job's first task submission
    # cost: USD, every create of the portrait(s) at its model's price (studio/costs.py).
    GENERATION_COMPLETED = "generation_completed"  # {provider, duration_ms, cost}: one task, submit → stored
    GENERATION_FAILED = "generation_failed"  # {error_type}: a task failed for good, or a whole job failed
    IMAGE_STORED = "image_stored"  # {size_bytes}: one portrait stored
    PACK_COMPLETED = "pack_completed"  # {image_count, total_duration_ms, skipped, cost}: a job delivered
    FAVOURITE_ADDED = "favourite_added"  # {style, position}: a portrait marked by its owner's positive reaction
    REMINDER_SENT = "reminder_sent"  # {cause}: a gentle reminder reached the chat (studio/reminders.py)
    PORTRAIT_REDONE = "portrait_redone"  # {kind, pack_job_id, portraits}: a redo queued (free, paid, guarantee)
    GIFT_BOUGHT = "gift_bought"  # {gift_id, photos, provider, amount, currency}: a gift's payment succeeded
    GIFT_REDEEMED = "gift_redeemed"  # {gift_id, photos}: the first opener got the gift's credits
    PROMO_REDEEMED = "promo_redeemed"  # {code, photos}: a promo code's credits went to a user
    REFERRAL_PAID = "referral_paid"  # {invitee_id, photos}: the inviter's bonus for a delivered paid pack


async def record_event(
    session: AsyncSession,
    name: EventName | str,
    *,
    user_id: int | None = None,
    job_id: int | None = None,
    **properties: Any,
) -> None:
    """Add one event to the caller's transaction (the caller commits).

    Without ``user_id`` but with ``job_id`` the job's owner is filled in by the same INSERT, so the
    engine, which knows only job ids, costs no extra round trip.
    """
    name = EventName(name)
    owner: Any = user_id
    if owner is None and job_id is not None:
        owner = select(GenerationJob.user_id).where(GenerationJob.id == job_id).scalar_subquery()
    result = await session.execute(
        insert(Event)
        .values(name=str(name), user_id=owner, job_id=job_id, properties=properties, created_at=utcnow())
        .returning(Event.user_id)
    )
    _log_after_commit(session, name, result.scalar_one(), job_id, properties)


async def count_recent(session: AsyncSession, name: EventName, *, user_id: int, since: datetime) -> int:
    """How many ``name`` events ``user_id`` caused since ``since`` (per-user budgets read this)."""
    query = select(func.count(Event.id)).where(
        Event.user_id == user_id, Event.name == str(name), Event.created_at >= since
    )
    return int((await session.execute(query)).scalar_one())


def _log_after_commit(
    session: AsyncSession, name: EventName, user_id: int | None, job_id: int | None, properties: dict[str, Any]
) -> None:
    sync_session = session.sync_session
    pending: list[dict[str, Any]] | None = sync_session.info.get(_PENDING_KEY)
    if pending is None:
        pending = sync_session.info[_PENDING_KEY] = []
        # Listeners on this one session object: they go away with it.
        orm_event.listen(sync_session, "after_commit", _flush_log)
        orm_event.listen(sync_session, "after_rollback", _drop_log)
    fields: dict[str, Any] = {"event": str(name)}
    if user_id is not None:
        fields["user_id"] = user_id
    if job_id is not None:
        fields["job_id"] = job_id
    fields.update(properties)
    pending.append(fields)


def _flush_log(sync_session: Session) -> None:
    pending: list[dict[str, Any]] = sync_session.info.get(_PENDING_KEY) or []
    for fields in pending:
        log.info("event %s", fields["event"], extra={"fields": fields})
    pending.clear()


def _drop_log(sync_session: Session) -> None:
    pending: list[dict[str, Any]] | None = sync_session.info.get(_PENDING_KEY)
    if pending is not None:
        pending.clear()
