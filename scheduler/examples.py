"""Style previews: an admin's selfies of a consenting model become example portraits of every style.

``/examples`` opens a set (an avatar of the admin's), the selfies go through the intake's own checks,
and the fifth starts one free job per style on the normal engine (queued behind paying users, no
credits reserved or released, the portraits delivered to the admin as a preview). Once every job is
over the set goes live and the style picker shows it; the set live before stays until then.
Settling is lazy (whoever asks for the showcase or the progress settles finished sets), so no other
part of the engine needs to know examples exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.intake import IncomingPhoto, IntakeService
from scheduler.signals import WorkSignals
from storage import avatars as avatar_queries
from storage import examples as queries
from storage import jobs as job_queries
from storage.files import FileNotFoundInStore, FileStore
from storage.images import ImageRejected, fit_for_telegram_photo
from storage.models import User
from studio.catalogue import Catalogue
from studio.examples import EXAMPLE_SELFIES, EXAMPLES_PER_STYLE, ExampleSetStatus, choose_examples, is_over
from studio.states import ACTIVE_JOB_STATUSES, JobStatus

log = logging.getLogger(__name__)

NOT_COLLECTING = "examples.not_collecting"
FINISHED_JOB_STATUSES = frozenset(JobStatus) - ACTIVE_JOB_STATUSES


@dataclass(frozen=True, slots=True)
class ExampleProgress:
    status: ExampleSetStatus
    ready: int = 0  # portraits stored so far
    total: int = 0


@dataclass(frozen=True, slots=True)
class ExampleStart:
    """/examples: a new set to send selfies into, or the one still generating (then no new set)."""

    set_id: int | None
    generating: ExampleProgress | None = None
    current: ExampleProgress | None = None  # the newest set that ended: live, or failed


@dataclass(frozen=True, slots=True)
class ExamplePhoto:
    accepted: bool
    count: int
    reason_key: str | None = None
    started: bool = False  # the fifth selfie: the examples are being made
    review_failed: bool = False  # the face review refused the set or removed photos from it


@dataclass(frozen=True, slots=True)
class ExampleImage:
    example_id: int
    file_id: str | None  # known: named, never uploaded again
    data: bytes | None = None  # unknown yet: uploaded once


@dataclass(frozen=True, slots=True)
class StyleShowcase:
    style: str
    images: list[ExampleImage] = field(default_factory=list)


class ExampleService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        catalogue: Catalogue,
        intake: IntakeService,
        files: FileStore,
        signals: WorkSignals,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.catalogue = catalogue
        self.intake = intake
        self.files = files
        self.signals = signals

    # ------------------------------------------------------------ the admin's side

    async def begin(self, admin: User) -> ExampleStart:
        """A new set for the admin's selfies, unless one is still generating (its progress instead)."""
        await self.settle()
        async with self.sessionmaker() as session:
            generating = await queries.latest_set(session, (ExampleSetStatus.GENERATING,))
            if generating is not None:
                return ExampleStart(None, await self._progress(session, generating.id, ExampleSetStatus.GENERATING))
            ended = await queries.latest_set(session, (ExampleSetStatus.LIVE, ExampleSetStatus.FAILED))
            current = await self._progress(session, ended.id, ExampleSetStatus(ended.status)) if ended else None
            avatar = await avatar_queries.create_avatar(session, admin.id)
            example_set = await queries.create_set(session, admin, avatar.id)
            await session.commit()  # the set must exist before the first selfie, which may come at once
            return ExampleStart(example_set.id, current=current)

    async def take_photo(self, admin: User, set_id: int, photo: IncomingPhoto) -> ExamplePhoto:
        """One selfie into the set, through the intake's checks; the fifth starts the examples.
        The caller holds the admin's lock (as for the intake)."""
        async with self.sessionmaker() as session:
            example_set = await queries.get_set(session, set_id)
            if (
                example_set is None
                or example_set.status != ExampleSetStatus.COLLECTING
                or example_set.avatar_id is None
            ):
                return ExamplePhoto(False, 0, NOT_COLLECTING)
            avatar_id = example_set.avatar_id

        async def no_new_set(_avatar_id: int) -> None:
            """Never called: the set names an avatar of the admin's."""

        taken = await self.intake.take_photo(admin.id, photo, no_new_set, avatar_id=avatar_id)
        if not taken.accepted or taken.count < EXAMPLE_SELFIES:
            return ExamplePhoto(taken.accepted, taken.count, taken.reason_key)
        closed = await self.intake.close_set(admin.id, avatar_id)
        if not closed.closed:
            return ExamplePhoto(True, closed.count, review_failed=closed.reviewed_out)
        await self._start(admin, set_id)
        return ExamplePhoto(True, closed.count, started=True)

    async def _start(self, admin: User, set_id: int) -> None:
        async with self.sessionmaker() as session:
            if not await queries.move_set(session, set_id, ExampleSetStatus.COLLECTING, ExampleSetStatus.GENERATING):
                return
            example_set = await queries.get_set(session, set_id)
            assert example_set is not None
            for style in self.catalogue.styles:
                await queries.queue_example_job(
                    session, example_set, admin, style.id, EXAMPLES_PER_STYLE, job_queries.PRIORITY_FREE
                )
            await session.commit()
        log.info("example set %s: %s jobs queued", set_id, len(self.catalogue.styles))
        self.signals.job_queued()

    @staticmethod
    async def _progress(session: AsyncSession, set_id: int, status: ExampleSetStatus) -> ExampleProgress:
        ready, total = await queries.progress(session, set_id)
        return ExampleProgress(status, ready, total)

    async def settle(self) -> None:
        """Every generating set whose jobs are all over goes live, or fails when a style got no
        portrait (the set live before stays then)."""
        async with self.sessionmaker() as session:
            for set_id in await queries.sets_in(session, ExampleSetStatus.GENERATING):
                if not is_over(await queries.job_statuses(session, set_id), FINISHED_JOB_STATUSES):
                    continue
                styles = [style.id for style in self.catalogue.styles]
                chosen = choose_examples(styles, await queries.portraits_by_style(session, set_id))
                if chosen is None:
                    failed = await queries.move_set(
                        session, set_id, ExampleSetStatus.GENERATING, ExampleSetStatus.FAILED
                    )
                    log.warning("example set %s: a style got no portrait (%s)", set_id, failed)
                elif await queries.go_live(session, set_id, chosen):
                    log.info("example set %s is live", set_id)
            await session.commit()

    # ------------------------------------------------------------ the style picker

    async def showcase(self) -> list[StyleShowcase]:
        """The live examples, one entry per style in the catalogue's order (empty before any set went
        live). An image never sent yet carries its bytes (fitted for a photo); a known one only its file id."""
        await self.settle()
        async with self.sessionmaker() as session:
            examples = await queries.live_examples(session)
        by_style: dict[str, list[ExampleImage]] = defaultdict(list)
        for example in examples:
            if example.file_id is not None:
                by_style[example.style].append(ExampleImage(example.example_id, example.file_id))
            elif example.result_key is not None:
                data = await self._photo_bytes(example.result_key)
                if data is not None:
                    by_style[example.style].append(ExampleImage(example.example_id, None, data))
        return [StyleShowcase(style.id, by_style[style.id]) for style in self.catalogue.styles if by_style[style.id]]

    async def _photo_bytes(self, key: str) -> bytes | None:
        """The portrait as Telegram takes a photo (≤ 10 MB, sides ≤ 10000 together); None when it is gone
        or cannot be one (the picker then shows that style without it)."""
        try:
            return await asyncio.to_thread(fit_for_telegram_photo, await self.files.get(key))
        except (FileNotFoundInStore, ImageRejected):
            log.warning("example %s cannot be shown", key, exc_info=True)
            return None

    async def remember(self, file_ids: Mapping[int, str], stale: Sequence[int] = ()) -> None:
        """The file ids Telegram gave the examples on their first send, and the examples whose file id
        it refused (uploaded again next time)."""
        if not file_ids and not stale:
            return
        async with self.sessionmaker() as session:
            await queries.remember_file_ids(session, file_ids)
            if stale:
                await queries.forget_file_ids(session, stale)
            await session.commit()
