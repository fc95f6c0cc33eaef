"""Seeding paid jobs straight into the database and settings for the fake providers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import avatars, jobs, ledger, payments
from storage.files import FileStore
from storage.models import GenerationJob, GenerationTask, Order, User
from storage.orders import create_order
from storage.users import TelegramProfile, register_user
from studio.catalogue import Catalogue
from studio.credits import Currency, trial_line
from studio.states import PaymentStatus, TaskStatus
from tests.image_corpus import selfie_like_jpeg

FAST_POLICY: dict[str, Any] = {
    "providers": [
        {
            "name": "kie",
            "max_attempts": 2,
            "backoff_seconds": [0.05, 0.1],
            "stuck_after_seconds": 5.0,
            "first_poll_after_seconds": 0.1,
            "poll_every_seconds": 0.1,
        },
        {
            "name": "replicate",
            "max_attempts": 2,
            "backoff_seconds": [0.05, 0.1],
            "stuck_after_seconds": 5.0,
            "first_poll_after_seconds": 0.1,
            "poll_every_seconds": 0.1,
        },
    ]
}


# For tests that kill a process mid-job: its claims come back within seconds.
CRASH_LEASE = {"TASK_LEASE_SECONDS": 3}


def provider_settings(kie: Any = None, replicate: Any = None, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "FALLBACK_POLICY": json.dumps(FAST_POLICY),
        # Production's tick (events wake the loops; the tick is their backstop). At 0.5 s, and recovery
        # every second, an idle app cost 0.03 CPU s per second: 14 % of these tests' CPU.
        "DISPATCH_TICK_SECONDS": 2.0,
        # Long enough that no claim lapses while a busy machine (four workers on two cores) stalls the
        # loop for seconds: a lapsed claim is created again, and tests count creates exactly. Tests of
        # a killed process's claims coming back set a short one (CRASH_LEASE). Production's is 90 s.
        "TASK_LEASE_SECONDS": 30,
        "RECOVER_INTERVAL_SECONDS": 5,
        # The fakes serve results over http on 127.0.0.1.
        "DOWNLOAD_ALLOW_LOOPBACK": True,
    }
    if kie is not None:
        values |= {
            "KIE_API_KEY": kie.api_key,
            "KIE_API_URL": kie.url,
            "KIE_UPLOAD_URL": kie.url,
            "KIE_CREATE_LIMIT": f"{kie.create_limit}/{kie.create_window_seconds}",
        }
        if kie.hmac_key:
            values["KIE_WEBHOOK_HMAC_KEY"] = kie.hmac_key
    if replicate is not None:
        values |= {
            "REPLICATE_API_TOKEN": replicate.api_token,
            "REPLICATE_API_URL": replicate.base_url,
            "REPLICATE_WEBHOOK_SECRET": replicate.webhook_secret,
        }
    return values | extra


async def seed_unpaid_order(
    sessionmaker: async_sessionmaker[AsyncSession],
    files: FileStore,
    catalogue: Catalogue,
    *,
    telegram_id: int,
    pack: str = "p7",
    style: str = "professional",
    selfies: int = 5,
    selfie_images: Sequence[bytes] | None = None,
) -> int:
    """A user with a ready photo set and an order awaiting payment; returns the order id.
    ``selfie_images``: the set's photos (real faces, for tests with face checks); else synthetic ones."""
    async with sessionmaker() as session:
        user, _ = await register_user(session, TelegramProfile(telegram_id, None, "Test", "en"))
        avatar = await avatars.create_avatar(session, user.id)
        for index in range(len(selfie_images) if selfie_images is not None else selfies):
            # The same few photos for every user: built once, cached.
            data = selfie_images[index] if selfie_images is not None else selfie_like_jpeg(seed=index)
            key = f"refs/{user.id}/{avatar.id}/{index}.jpg"
            await files.put(key, data)
            await avatars.add_photo(
                session,
                avatar,
                avatars.NewPhoto(key, len(data), 1024, 1280, f"{telegram_id}-{index}".ljust(64, "0"), None),
            )
        await avatars.mark_ready(session, avatar.id)
        order = await create_order(
            session, user_id=user.id, avatar_id=avatar.id, style=style, pack=catalogue.pack(pack)
        )
        await session.commit()
        return order.id


async def seed_paid_job(
    sessionmaker: async_sessionmaker[AsyncSession],
    files: FileStore,
    catalogue: Catalogue,
    *,
    telegram_id: int,
    pack: str = "p23",
    style: str = "professional",
    selfies: int = 5,
    selfie_images: Sequence[bytes] | None = None,
) -> int:
    """A user with a ready photo set and a paid order turned into a queued job; returns the job id."""
    order_id = await seed_unpaid_order(
        sessionmaker,
        files,
        catalogue,
        telegram_id=telegram_id,
        pack=pack,
        style=style,
        selfies=selfies,
        selfie_images=selfie_images,
    )
    async with sessionmaker() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        job = await pay_with_stars(session, order) if order.price_stars else await start_trial(session, order)
        await session.commit()
        return job.id


async def start_trial(session: AsyncSession, order: Order) -> GenerationJob:
    """A free order started on the user's trial credits (its one trial line), queued like a paid one."""
    user = await session.get(User, order.user_id)
    assert user is not None
    assert await ledger.record(session, user.id, trial_line(user.id, order.photos), order_id=order.id)
    job = await jobs.create_job_for_order(session, order, user, priority=jobs.PRIORITY_PAID)
    assert job is not None
    return job


async def pay_with_stars(session: AsyncSession, order: Order) -> GenerationJob:
    """The order paid the way a Telegram Stars payment is applied (credited and queued), so the seeded
    job is one the money invariants recognise: a succeeded payment behind every purchase."""
    payment = await payments.record_stars_payment(
        session, order, f"stxSEED{order.id}", order.price_stars, Currency.STARS
    )
    result = await payments.apply_status(
        session, payment, PaymentStatus.SUCCEEDED, amount=order.price_stars, currency=Currency.STARS
    )
    assert result.credited and result.job is not None, result
    return result.job


async def task_statuses(sessionmaker: async_sessionmaker[AsyncSession], job_id: int) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(GenerationTask.status, func.count())
            .where(GenerationTask.job_id == job_id)
            .group_by(GenerationTask.status)
        )
        return {status: count for status, count in rows.all()}


async def job_row(sessionmaker: async_sessionmaker[AsyncSession], job_id: int) -> GenerationJob:
    async with sessionmaker() as session:
        job = await session.get(GenerationJob, job_id)
        assert job is not None
        return job


async def wait_until_stored(
    sessionmaker: async_sessionmaker[AsyncSession], job_ids: Sequence[int], per_job: int, within_seconds: float = 60
) -> None:
    """Until every job has ``per_job`` portraits stored or delivered (TimeoutError after ``within_seconds``)."""
    async with asyncio.timeout(within_seconds):
        while True:
            done = 0
            for job_id in job_ids:
                counts = await task_statuses(sessionmaker, job_id)
                done += counts.get(TaskStatus.STORED, 0) + counts.get(TaskStatus.DELIVERED, 0)
            if done == per_job * len(job_ids):
                return
            await asyncio.sleep(0.05)


__all__ = ["Order", "User", "job_row", "provider_settings", "seed_paid_job", "task_statuses", "wait_until_stored"]
