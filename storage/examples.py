"""Style previews: example sets, their free jobs, and each style's example portraits (studio/examples.py).

Every status change of a set is a conditional UPDATE, so two processes settling the same set make it
live (and write its examples) once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.events import EventName, record_event
from storage.models import ExampleJob, ExampleSet, GenerationJob, GenerationTask, StyleExample, User, utcnow
from storage.sql import rows_changed
from studio.examples import OPEN_SET_STATUSES, ExampleSetStatus
from studio.states import JobStatus, TaskStatus

STORED_PORTRAIT_STATUSES = (TaskStatus.STORED, TaskStatus.DELIVERED)


@dataclass(frozen=True, slots=True)
class LiveExample:
    example_id: int
    style: str
    file_id: str | None
    result_key: str | None


async def create_set(session: AsyncSession, user: User, avatar_id: int) -> ExampleSet:
    """A new set collecting into ``avatar_id``; a set the admin was still collecting is given up."""
    await session.execute(
        update(ExampleSet)
        .where(ExampleSet.status == ExampleSetStatus.COLLECTING)
        .values(status=ExampleSetStatus.ABANDONED)
    )
    example_set = ExampleSet(
        created_by=user.telegram_id, user_id=user.id, avatar_id=avatar_id, status=ExampleSetStatus.COLLECTING
    )
    session.add(example_set)
    await session.flush()
    return example_set


async def get_set(session: AsyncSession, set_id: int) -> ExampleSet | None:
    return await session.get(ExampleSet, set_id, populate_existing=True)


async def latest_set(session: AsyncSession, statuses: Sequence[str] = tuple(OPEN_SET_STATUSES)) -> ExampleSet | None:
    return (
        await session.execute(
            select(ExampleSet).where(ExampleSet.status.in_(list(statuses))).order_by(ExampleSet.id.desc()).limit(1)
        )
    ).scalar_one_or_none()


async def sets_in(session: AsyncSession, status: ExampleSetStatus) -> list[int]:
    return list((await session.execute(select(ExampleSet.id).where(ExampleSet.status == status))).scalars())


async def move_set(session: AsyncSession, set_id: int, source: ExampleSetStatus, target: ExampleSetStatus) -> bool:
    result = await session.execute(
        update(ExampleSet).where(ExampleSet.id == set_id, ExampleSet.status == source).values(status=target)
    )
    return bool(rows_changed(result))


async def queue_example_job(
    session: AsyncSession, example_set: ExampleSet, user: User, style: str, photos: int, priority: int
) -> GenerationJob:
    """A free job of the set: no order, and nothing reserved (an example job never moves credits)."""
    job = GenerationJob(
        user_id=user.id,
        avatar_id=example_set.avatar_id,
        chat_id=user.telegram_id,
        language=user.language,
        style=style,
        priority=priority,
        status=JobStatus.QUEUED,
        photos_total=photos,
        created_at=utcnow(),
    )
    session.add(job)
    await session.flush()
    session.add(ExampleJob(job_id=job.id, set_id=example_set.id))
    await record_event(session, EventName.GENERATION_QUEUED, user_id=user.id, job_id=job.id, image_count=photos)
    return job


async def is_example_job(session: AsyncSession, job_id: int) -> bool:
    return (await session.get(ExampleJob, job_id)) is not None


async def job_statuses(session: AsyncSession, set_id: int) -> list[str]:
    return list(
        (
            await session.execute(
                select(GenerationJob.status)
                .join(ExampleJob, ExampleJob.job_id == GenerationJob.id)
                .where(ExampleJob.set_id == set_id)
            )
        ).scalars()
    )


async def progress(session: AsyncSession, set_id: int) -> tuple[int, int]:
    """Portraits of the set stored so far, of how many its jobs make."""
    total = (
        await session.execute(
            select(func.coalesce(func.sum(GenerationJob.photos_total), 0))
            .join(ExampleJob, ExampleJob.job_id == GenerationJob.id)
            .where(ExampleJob.set_id == set_id)
        )
    ).scalar_one()
    ready = (
        await session.execute(
            select(func.count())
            .select_from(GenerationTask)
            .join(ExampleJob, ExampleJob.job_id == GenerationTask.job_id)
            .where(ExampleJob.set_id == set_id, GenerationTask.status.in_(STORED_PORTRAIT_STATUSES))
        )
    ).scalar_one()
    return int(ready), int(total)


async def portraits_by_style(session: AsyncSession, set_id: int) -> dict[str, list[int]]:
    """The set's stored portraits (task ids), per style, in the order of their tasks."""
    rows = await session.execute(
        select(GenerationJob.style, GenerationTask.id)
        .join(ExampleJob, ExampleJob.job_id == GenerationJob.id)
        .join(GenerationTask, GenerationTask.job_id == GenerationJob.id)
        .where(
            ExampleJob.set_id == set_id,
            GenerationTask.status.in_(STORED_PORTRAIT_STATUSES),
            GenerationTask.result_key.is_not(None),
        )
        .order_by(GenerationJob.id, GenerationTask.position)
    )
    found: dict[str, list[int]] = defaultdict(list)
    for style, task_id in rows.all():
        found[style].append(task_id)
    return dict(found)


async def go_live(session: AsyncSession, set_id: int, chosen: Mapping[str, Sequence[int]]) -> bool:
    """generating → live with ``chosen`` as its examples; the set live before is replaced. False when
    another process got there first (nothing written)."""
    if not await move_set(session, set_id, ExampleSetStatus.GENERATING, ExampleSetStatus.LIVE):
        return False
    await session.execute(
        update(ExampleSet)
        .where(ExampleSet.status == ExampleSetStatus.LIVE, ExampleSet.id != set_id)
        .values(status=ExampleSetStatus.REPLACED)
    )
    await session.execute(update(ExampleSet).where(ExampleSet.id == set_id).values(live_at=utcnow()))
    for style, ids in chosen.items():
        for position, task_id in enumerate(ids):
            # No file id yet, even for a portrait the admin's preview showed: that one may have gone as
            # a document (too big for a photo), and an album of photos cannot name a document.
            session.add(StyleExample(set_id=set_id, style=style, position=position, task_id=task_id))
    await session.flush()
    return True


async def live_examples(session: AsyncSession) -> list[LiveExample]:
    """The live set's examples, by style then position (empty before any set went live)."""
    rows = await session.execute(
        select(StyleExample.id, StyleExample.style, StyleExample.file_id, GenerationTask.result_key)
        .join(ExampleSet, ExampleSet.id == StyleExample.set_id)
        .join(GenerationTask, GenerationTask.id == StyleExample.task_id)
        .where(ExampleSet.status == ExampleSetStatus.LIVE)
        .order_by(StyleExample.style, StyleExample.position)
    )
    return [LiveExample(*row) for row in rows.all()]


async def remember_file_ids(session: AsyncSession, file_ids: Mapping[int, str]) -> None:
    """Each example's Telegram file id after its first send; a known one is kept (the first wins)."""
    for example_id, file_id in file_ids.items():
        await session.execute(
            update(StyleExample)
            .where(StyleExample.id == example_id, StyleExample.file_id.is_(None))
            .values(file_id=file_id)
        )


async def forget_file_ids(session: AsyncSession, example_ids: Sequence[int]) -> None:
    """File ids Telegram no longer takes: the pictures are uploaded again on their next send."""
    await session.execute(update(StyleExample).where(StyleExample.id.in_(list(example_ids))).values(file_id=None))
