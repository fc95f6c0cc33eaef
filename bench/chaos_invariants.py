"""The invariants every chaos scenario ends with, checked over the database, the file store and the fake
Telegram's record of what reached each chat:

- every paid photo was delivered exactly once or credited back exactly once: per job, delivered tasks +
  released credits = photos paid; in each chat, as many portraits as delivered tasks, none twice;
- every succeeded payment became exactly one job; nothing else did;
- the ledger balances (tests/ledger_check.py, derived from payments and jobs, not from itself);
- no job or task is stuck: every job is finished and every task of a finished job is delivered or skipped;
- every delivered portrait's file and thumbnail are in the file store.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    Avatar,
    Delivery,
    GenerationJob,
    GenerationTask,
    LedgerEntry,
    Order,
    Payment,
    ReferencePhoto,
    User,
)
from studio.states import DeliveryStatus, JobStatus, LedgerReason, PaymentStatus, TaskStatus
from tests.fakes.telegram import FakeTelegram
from tests.ledger_check import assert_ledger_balanced

FINISHED_JOBS = frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED})
FINISHED_TASKS = frozenset({TaskStatus.DELIVERED, TaskStatus.SKIPPED})


@dataclass
class Invariants:
    jobs: int = 0
    photos_paid: int = 0
    delivered: int = 0
    credited_back: int = 0
    photos_in_chats: int = 0
    duplicates_in_chats: int = 0
    # Albums a kill left between "handed to Telegram" and "confirmed": offered for resend, never resent.
    uncertain: int = 0
    stuck_jobs: int = 0
    stuck_tasks: int = 0
    missing_files: int = 0
    payments_succeeded: int = 0
    ledger_ok: bool = False
    refused_but_kept: int = 0
    paid_without_job: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        verdict = "OK" if self.ok else f"FAILED ({len(self.problems)} problems)"
        return (
            f"jobs {self.jobs}, photos paid {self.photos_paid}, delivered {self.delivered}, credited back "
            f"{self.credited_back}, in chats {self.photos_in_chats} (duplicates {self.duplicates_in_chats}, "
            f"uncertain offered for resend {self.uncertain}), "
            f"paid without a job {self.paid_without_job}, stuck jobs {self.stuck_jobs}, "
            f"stuck tasks {self.stuck_tasks}, missing files {self.missing_files}, "
            f"ledger {'balanced' if self.ledger_ok else 'UNBALANCED'}; {verdict}"
        )


async def check_invariants(
    sessionmaker: async_sessionmaker[AsyncSession],
    telegram: FakeTelegram,
    files_dir: Path | None,
    *,
    paid: set[int] | frozenset[int] = frozenset(),
    must_not_pay: set[int] | frozenset[int] = frozenset(),
    must_have_nothing: set[int] | frozenset[int] = frozenset(),
) -> Invariants:
    """``paid``: Telegram ids of users who paid (card or Stars) for one pack each: each must have exactly one
    job — a payment the app never recorded would not show in the ledger. ``must_not_pay``: Telegram ids
    that must have no succeeded payment and no job (forged, bad input);
    ``must_have_nothing``: ids whose every input was refused, so no stored photo and no order either."""
    found = Invariants()
    problems = found.problems
    async with sessionmaker() as session:
        jobs = list((await session.execute(select(GenerationJob))).scalars())
        tasks = list((await session.execute(select(GenerationTask))).scalars())
        uncertain_chunks = list(
            (await session.execute(select(Delivery).where(Delivery.status == DeliveryStatus.UNCERTAIN))).scalars()
        )
        payments = list((await session.execute(select(Payment))).scalars())
        releases = list(
            (await session.execute(select(LedgerEntry).where(LedgerEntry.reason == LedgerReason.RELEASE))).scalars()
        )
        telegram_ids = {row[0]: row[1] for row in (await session.execute(select(User.id, User.telegram_id))).all()}
    try:
        await assert_ledger_balanced(sessionmaker)
        found.ledger_ok = True
    except AssertionError as error:
        problems.append(str(error)[:2000])

    tasks_by_job: dict[int, list[GenerationTask]] = defaultdict(list)
    for task in tasks:
        tasks_by_job[task.job_id].append(task)
    released: Counter[int] = Counter()
    for entry in releases:
        if entry.job_id is not None:
            released[entry.job_id] += entry.delta

    found.jobs = len(jobs)
    chat_of_job = {job.id: job.chat_id for job in jobs}
    uncertain_per_chat: Counter[int] = Counter()
    notices_due: Counter[int] = Counter()
    for chunk in uncertain_chunks:
        uncertain_per_chat[chat_of_job[chunk.job_id]] += len(chunk.task_ids)
        notices_due[chat_of_job[chunk.job_id]] += 1
        found.uncertain += len(chunk.task_ids)
    delivered_per_chat: Counter[int] = Counter()
    for job in jobs:
        found.photos_paid += job.photos_total
        job_tasks = tasks_by_job[job.id]
        delivered = [task for task in job_tasks if task.status == TaskStatus.DELIVERED]
        found.delivered += len(delivered)
        found.credited_back += released[job.id]
        delivered_per_chat[job.chat_id] += len(delivered)
        if job.status not in FINISHED_JOBS:
            found.stuck_jobs += 1
            problems.append(f"job {job.id} is still {job.status}")
            continue
        stuck = [task for task in job_tasks if task.status not in FINISHED_TASKS]
        if stuck and job.status != JobStatus.CANCELLED:
            found.stuck_tasks += len(stuck)
            problems.append(f"job {job.id} ({job.status}) has unfinished tasks: {[t.status for t in stuck]}")
        if len(delivered) + released[job.id] != job.photos_total:
            problems.append(
                f"job {job.id}: {len(delivered)} delivered + {released[job.id]} credited back "
                f"!= {job.photos_total} paid"
            )
        if files_dir is not None:
            for task in delivered:
                for key in (task.result_key, task.thumb_key):
                    if not key or not (files_dir / key).is_file():
                        found.missing_files += 1
                        problems.append(f"task {task.id}: file {key!r} is missing from the store")

    # What the users actually got: portraits in each chat, by content (the same portrait twice = same id).
    for chat_id in {job.chat_id for job in jobs} | set(delivered_per_chat):
        photos = [m for m in telegram.sent_messages(chat_id) if m.from_bot and m.kind == "photo"]
        found.photos_in_chats += len(photos)
        repeats = len(photos) - len({m.file_unique_id for m in photos})
        found.duplicates_in_chats += repeats
        if repeats:
            problems.append(f"chat {chat_id}: {repeats} portraits arrived more than once")
        expected = delivered_per_chat[chat_id]
        if not expected - uncertain_per_chat[chat_id] <= len(photos) <= expected:
            problems.append(f"chat {chat_id}: {len(photos)} portraits in the chat, {expected} delivered tasks")
        notices = [m for m in telegram.sent_messages(chat_id) if "may not have arrived" in (m.text or "")]
        if len(notices) != notices_due[chat_id]:
            problems.append(f"chat {chat_id}: {len(notices)} resend offers for {notices_due[chat_id]} uncertain albums")

    jobs_by_order = Counter(job.order_id for job in jobs if job.order_id is not None)
    for payment in payments:
        if payment.status == PaymentStatus.SUCCEEDED:
            found.payments_succeeded += 1
            if jobs_by_order[payment.order_id] != 1:
                problems.append(
                    f"payment {payment.id} succeeded: order {payment.order_id} has "
                    f"{jobs_by_order[payment.order_id]} jobs"
                )
        if telegram_ids.get(payment.user_id) in must_not_pay and payment.status == PaymentStatus.SUCCEEDED:
            problems.append(f"payment {payment.id} of a user who never paid is {payment.status}")
    jobs_per_person = Counter(telegram_ids.get(job.user_id) for job in jobs)
    for telegram_id in paid:
        if jobs_per_person[telegram_id] != 1:
            found.paid_without_job += jobs_per_person[telegram_id] == 0
            problems.append(f"user {telegram_id} paid for one pack and has {jobs_per_person[telegram_id]} jobs")
    for job in jobs:
        if telegram_ids.get(job.user_id) in must_not_pay:
            problems.append(f"job {job.id} belongs to a user who never paid")
    if must_have_nothing:
        async with sessionmaker() as session:
            kept = (
                await session.execute(
                    select(User.telegram_id, ReferencePhoto.id)
                    .join(Avatar, Avatar.user_id == User.id)
                    .join(ReferencePhoto, ReferencePhoto.avatar_id == Avatar.id)
                    .where(User.telegram_id.in_(must_have_nothing))
                )
            ).all()
            ordered = (
                await session.execute(
                    select(User.telegram_id, Order.id)
                    .join(Order, Order.user_id == User.id)
                    .where(User.telegram_id.in_(must_have_nothing))
                )
            ).all()
        found.refused_but_kept = len(kept) + len(ordered)
        if found.refused_but_kept:
            problems.append(f"refused input left {len(kept)} stored photos and {len(ordered)} orders behind")
    return found
