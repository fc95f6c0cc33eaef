"""Status vocabularies and the allowed transitions of PinGlass's state machines.

Plain data: the database stores these values as strings, and every transition in storage is a
conditional UPDATE whose expected source states come from the tables below.
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
    FAILED = "failed"
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


class AvatarStatus(StrEnum):
    COLLECTING = "collecting"
    READY = "ready"
    DELETED = "deleted"


JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
    # Cancelling a processing job is allowed only while nothing has been generated (see storage.jobs).
    JobStatus.PROCESSING: frozenset(
        {JobStatus.DELIVERING, JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.DELIVERING: frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.PARTIAL: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.SUBMITTED, TaskStatus.SKIPPED}),
    TaskStatus.SUBMITTED: frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.PENDING}),
    TaskStatus.SUCCEEDED: frozenset({TaskStatus.STORED, TaskStatus.FAILED}),
    # stored → skipped: a portrait Telegram refuses even as a file, or whose file is gone, is credited.
    TaskStatus.STORED: frozenset({TaskStatus.DELIVERED, TaskStatus.SKIPPED}),
    TaskStatus.DELIVERED: frozenset(),
    TaskStatus.FAILED: frozenset({TaskStatus.PENDING, TaskStatus.SKIPPED}),
    TaskStatus.SKIPPED: frozenset(),
}

ACTIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.DELIVERING})
FINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED})


def sources_of(target: JobStatus | TaskStatus) -> frozenset[str]:
    """The states from which ``target`` may be entered (the WHERE of a conditional UPDATE)."""
    table = JOB_TRANSITIONS if isinstance(target, JobStatus) else TASK_TRANSITIONS
    return frozenset(str(src) for src, targets in table.items() if target in targets)


def can_move(source: JobStatus | TaskStatus, target: JobStatus | TaskStatus) -> bool:
    table = JOB_TRANSITIONS if isinstance(source, JobStatus) else TASK_TRANSITIONS
    return target in table[source]  # type: ignore[index]
