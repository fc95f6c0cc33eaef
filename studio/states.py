"""Status vocabularies and the allowed transitions of PinGlass's state machines.

Plain data: the database stores these values as strings. Every job and task status change is a
named conditional UPDATE in ``storage.transitions`` that takes only edges of the tables below.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    READY = "ready"  # free (trial / granted) order, no payment needed
    CANCELLED = "cancelled"


class PaymentStatus(StrEnum):
    CREATING = "creating"  # row written, provider call not yet confirmed
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    REFUNDED = "refunded"


class PaymentProviderName(StrEnum):
    YOOKASSA = "yookassa"
    STARS = "stars"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DELIVERING = "delivering"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    STORED = "stored"
    DELIVERED = "delivered"
    SKIPPED = "skipped"


class DeliveryStatus(StrEnum):
    OPEN = "open"  # recorded, not yet handed to Telegram: safe to send after a crash
    SENDING = "sending"  # handed to Telegram, not confirmed: after a crash nobody knows if it arrived
    SENT = "sent"
    FAILED = "failed"
    # A crash hid whether it arrived: not sent again by itself (at most once); the user can ask.
    UNCERTAIN = "uncertain"


class LedgerReason(StrEnum):
    PURCHASE = "purchase"
    TRIAL = "trial"
    GRANT = "grant"
    RESERVE = "reserve"
    RELEASE = "release"
    REFUND = "refund"
    GIFT = "gift"  # a gift opened: its pack's credits for whoever opened it first
    PROMO = "promo"  # a promo code redeemed
    REFERRAL = "referral"  # the bonus for an invited user's first delivered paid pack


class AvatarStatus(StrEnum):
    COLLECTING = "collecting"
    READY = "ready"
    DELETED = "deleted"


JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # queued → failed: the selfies are gone before the first create (/forget, retention).
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # processing → cancelled only while no portrait exists; → failed when none can exist any more.
    JobStatus.PROCESSING: frozenset({JobStatus.DELIVERING, JobStatus.FAILED, JobStatus.CANCELLED}),
    # delivering → failed: every stored portrait was refused at delivery and credited back.
    JobStatus.DELIVERING: frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.PARTIAL: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

# Edges only an admin's retry takes: a job's skipped photos go back to the queue, so the job
# leaves its final state (or stays processing) to make them.
ADMIN_JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PROCESSING: frozenset({JobStatus.PROCESSING}),
    JobStatus.PARTIAL: frozenset({JobStatus.PROCESSING}),
    JobStatus.FAILED: frozenset({JobStatus.PROCESSING}),
}

# A failed try goes straight back to pending (retry, or the fallback provider) or to skipped (every
# provider spent): the decision is made before the write, so no row ever rests in between.
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    # pending → pending: a create refused (rate limit) or failed, retried later.
    TaskStatus.PENDING: frozenset({TaskStatus.SUBMITTED, TaskStatus.PENDING, TaskStatus.SKIPPED}),
    TaskStatus.SUBMITTED: frozenset({TaskStatus.SUCCEEDED, TaskStatus.PENDING, TaskStatus.SKIPPED}),
    # succeeded → pending / skipped: the result is unusable (bad image, no face, unlike the person).
    TaskStatus.SUCCEEDED: frozenset({TaskStatus.STORED, TaskStatus.PENDING, TaskStatus.SKIPPED}),
    # stored → skipped: a portrait Telegram refuses even as a file, or whose file is gone, is credited.
    TaskStatus.STORED: frozenset({TaskStatus.DELIVERED, TaskStatus.SKIPPED}),
    TaskStatus.DELIVERED: frozenset(),
    TaskStatus.SKIPPED: frozenset(),
}

# An admin's retry puts a job's skipped photos back in the queue.
ADMIN_TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.SKIPPED: frozenset({TaskStatus.PENDING}),
}

ACTIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.DELIVERING})
FINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED})
# Tasks that hold a portrait: the provider made it (a job with one of them is past cancelling).
PORTRAIT_TASK_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.STORED, TaskStatus.DELIVERED})


def can_move(source: JobStatus | TaskStatus, target: JobStatus | TaskStatus, *, admin_only: bool = False) -> bool:
    """Is ``source → target`` an edge the product takes by itself, or (``admin_only``) one of the
    edges only an admin's action takes?"""
    if isinstance(source, JobStatus) and isinstance(target, JobStatus):
        jobs = ADMIN_JOB_TRANSITIONS if admin_only else JOB_TRANSITIONS
        return target in jobs.get(source, frozenset())
    if isinstance(source, TaskStatus) and isinstance(target, TaskStatus):
        tasks = ADMIN_TASK_TRANSITIONS if admin_only else TASK_TRANSITIONS
        return target in tasks.get(source, frozenset())
    return False  # a job status and a task status are never one machine's edge
