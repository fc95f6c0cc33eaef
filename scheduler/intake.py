"""The intake use case: 5–8 selfies in, a style and a pack chosen, an order saved.

Every change is a short transaction of this service's own, committed before the caller answers in the
chat. The conversation step itself stays with the caller (bot/): what the service needs of it comes
in as plain values (``Leaving``, the set's id), and where a set is opened before its first photo is
taken the caller is told through ``opened`` so it can name the set in the step first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import avatars as avatar_queries
from storage import faces as face_queries
from storage import jobs as job_queries
from storage import ledger
from storage import orders as order_queries
from storage.events import EventName, count_recent, record_event
from storage.files import FileStore
from storage.images import ImageRejected, validate_and_normalize
from storage.models import Avatar, utcnow
from studio.catalogue import Catalogue, Pack, Style
from studio.faces import FaceChecker
from studio.intake import MAX_PHOTOS, can_finish, is_full
from studio.states import AvatarStatus, JobStatus

log = logging.getLogger(__name__)

RESUME_WINDOW = timedelta(days=7)
# Sentinel reason: a photo arrived outside the upload step (nothing to say about the photo itself).
NOT_NOW = "intake.not_now"  # no text: the reply says where the user is instead
TOO_MANY = "photo.rejected.too_many"
# Beyond the hourly budget of rejected photos nothing is downloaded or checked.
OVER_BUDGET = "photo.rejected.over_budget"
# Our own failure while taking a photo: the user is told, and it never counts against them.
FAILED = "photo.rejected.failed"
NOT_RECORDED = (NOT_NOW, OVER_BUDGET, FAILED)
REJECTION_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    max_photo_bytes: int
    min_photo_side: int
    rejects_per_hour: int


@dataclass(frozen=True, slots=True)
class PhotoOutcome:
    accepted: bool
    count: int
    reason_key: str | None = None  # a text key: why the photo was not taken


@dataclass(frozen=True, slots=True)
class IncomingPhoto:
    """A photo (or image file) as Telegram announced it; ``fetch`` downloads its bytes, and is called
    only once the cheap checks passed."""

    file_unique_id: str
    file_size: int | None
    fetch: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Leaving:
    """What the conversation's current step holds that leaving it gives up: the unpaid order on the
    summary, and the set still being collected (a finished set stays reusable)."""

    order_id: int | None = None
    collecting_avatar_id: int | None = None


@dataclass(frozen=True, slots=True)
class SetState:
    """A set after its photos were looked at: how many it holds, and whether it is now closed (ready:
    on to the style) or failed the face review (photos removed, or no one person in most of them)."""

    count: int
    closed: bool = False
    refused: bool = False
    removed_slots: tuple[int, ...] = ()

    @property
    def reviewed_out(self) -> bool:
        return self.refused or bool(self.removed_slots)


@dataclass(frozen=True, slots=True)
class PackOffer:
    packs: list[Pack]
    balance: int  # photo credits: a pack the balance covers starts without payment


@dataclass(frozen=True, slots=True)
class DraftOrder:
    order_id: int
    selfies: int  # photos in the set the order uses


@dataclass(frozen=True, slots=True)
class JobStatusView:
    order_id: int | None
    photos: int
    queued: bool
    position: int = 0  # in the queue, when queued
    done: int = 0  # portraits made, when running


@dataclass(frozen=True, slots=True)
class OrderStatusView:
    order_id: int
    photos: int
    style: str
    status: str


class IntakeService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        catalogue: Catalogue,
        files: FileStore,
        limits: IntakeLimits,
        faces: FaceChecker | None = None,
        grid_capable: Callable[[], bool] = lambda: False,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.catalogue = catalogue
        self.files = files
        self.limits = limits
        self.faces = faces
        # Whether the primary provider's model can draw a grid now (the engine's answer: an admin may
        # switch the primary at run time); grid packs are offered only then.
        self.grid_capable = grid_capable

    # ------------------------------------------------------------ starting, reusing, leaving

    async def start_over(self, user_id: int, leaving: Leaving) -> int:
        """A new set, after leaving the current step; the new set's id."""
        async with self.sessionmaker() as session:
            await _leave(session, leaving)
            avatar = await avatar_queries.create_avatar(session, user_id)
            await session.commit()  # the set must exist before the first photo, which may come at once
            return avatar.id

    async def reuse(self, user_id: int, leaving: Leaving, avatar_id: int | None = None) -> int | None:
        """A new pack with a finished set: ``avatar_id``'s if it is still kept, else the latest one.
        None (and nothing left) when there is no such set."""
        async with self.sessionmaker() as session:
            avatar: Avatar | None
            if avatar_id is None:
                avatar = await avatar_queries.latest_ready_avatar(session, user_id)
            else:
                avatar = await avatar_queries.get_avatar(session, avatar_id, user_id)
                if avatar is not None and avatar.status != AvatarStatus.READY:
                    avatar = None  # deleted by retention or /forget
            if avatar is None:
                return None
            await _leave(session, leaving)
            await session.commit()
            return avatar.id

    async def leave(self, leaving: Leaving) -> None:
        """/cancel: the current step is given up."""
        async with self.sessionmaker() as session:
            await _leave(session, leaving)
            await session.commit()

    # ------------------------------------------------------------ photos

    async def take_photo(
        self,
        user_id: int,
        photo: IncomingPhoto,
        opened: Callable[[int], Awaitable[None]],
        *,
        avatar_id: int | None,
        after_upload: bool = False,
    ) -> PhotoOutcome:
        """One photo into the set being collected (``avatar_id``, the set the step names, if it is the
        user's). Without one the user keeps collecting into a recent set, or a new one; the caller
        names it in the conversation (``opened``) before the photo is taken. After the upload step
        (style, pack, summary) no photo is taken.

        The caller holds the user's lock. Never raises: every album item must report an outcome, or
        its album never gets its one reply (and the album collector keeps it forever)."""
        try:
            async with self.sessionmaker() as session:
                if after_upload:
                    outcome = await _photo_after_upload(session, avatar_id)
                else:
                    outcome = await self._take(session, user_id, avatar_id, photo, opened)
                if outcome.reason_key and outcome.reason_key not in NOT_RECORDED:  # every rejection passes here
                    reason = outcome.reason_key.removeprefix("photo.rejected.")
                    await record_event(session, EventName.PHOTO_REJECTED, user_id=user_id, reason=reason)
                await session.commit()  # never hold a write transaction while waiting for album siblings
        except Exception:
            log.exception("taking a photo of user %s failed", user_id)
            return PhotoOutcome(False, 0, FAILED)
        return outcome

    async def _take(
        self,
        session: AsyncSession,
        user_id: int,
        collecting: int | None,
        photo: IncomingPhoto,
        opened: Callable[[int], Awaitable[None]],
    ) -> PhotoOutcome:
        avatar = await avatar_queries.get_avatar(session, collecting, user_id) if collecting is not None else None
        if avatar is None:
            # The conversation state was lost (or never started): keep collecting into a recent set.
            avatar = await avatar_queries.resumable_avatar(session, user_id, RESUME_WINDOW)
            if avatar is None:
                avatar = await avatar_queries.create_avatar(session, user_id)
                await session.commit()  # the set must exist before the first photo, which may come at once
            # The step names the set before its photo is taken (a kill in between is repaired by the
            # update's second delivery, bot/middlewares/replay.py).
            await opened(avatar.id)

        count = await avatar_queries.photo_count(session, avatar.id)
        if is_full(count):
            return PhotoOutcome(False, count, TOO_MANY)
        if photo.file_size is not None and photo.file_size > self.limits.max_photo_bytes:
            return PhotoOutcome(False, count, "photo.rejected.too_large_file")
        if await avatar_queries.is_known_photo(session, avatar.id, file_unique_id=photo.file_unique_id):
            return PhotoOutcome(False, count, "photo.rejected.duplicate")

        since = utcnow() - REJECTION_WINDOW
        rejected = await count_recent(session, EventName.PHOTO_REJECTED, user_id=user_id, since=since)
        if rejected >= self.limits.rejects_per_hour:
            return PhotoOutcome(False, count, OVER_BUDGET)
        try:
            data = await photo.fetch()
        except Exception:
            log.warning("download failed for user %s", user_id, exc_info=True)
            return PhotoOutcome(False, count, "photo.rejected.download_failed")
        return await self._check_and_store(session, user_id, avatar, count, photo, data)

    async def _check_and_store(
        self, session: AsyncSession, user_id: int, avatar: Avatar, count: int, photo: IncomingPhoto, data: bytes
    ) -> PhotoOutcome:
        try:
            normal = await asyncio.to_thread(
                validate_and_normalize,
                data,
                max_bytes=self.limits.max_photo_bytes,
                min_side=self.limits.min_photo_side,
            )
        except ImageRejected as rejected:
            return PhotoOutcome(False, count, f"photo.rejected.{rejected.reason.value}")
        faces = self.faces
        face = await face_queries.check_selfie_for_set(session, faces, avatar.id, normal.jpeg) if faces else None
        if face is not None and face.reason is not None:
            return PhotoOutcome(False, count, f"photo.rejected.{face.reason.value}")

        key = f"refs/{user_id}/{avatar.id}/{uuid.uuid4().hex}.jpg"
        await self.files.put(key, normal.jpeg, "image/jpeg")
        new = avatar_queries.NewPhoto(
            storage_key=key,
            size_bytes=len(normal.jpeg),
            width=normal.width,
            height=normal.height,
            sha256=normal.sha256,
            file_unique_id=photo.file_unique_id,
        )
        try:
            count = await avatar_queries.add_photo(session, avatar, new)
        except avatar_queries.DuplicatePhoto:
            await self.files.delete(key)
            return PhotoOutcome(False, count, "photo.rejected.duplicate")
        except avatar_queries.AvatarFull:
            await self.files.delete(key)
            return PhotoOutcome(False, MAX_PHOTOS, TOO_MANY)
        if face is not None and face.embedding is not None:
            await face_queries.store_embedding(session, avatar.id, normal.sha256, face.embedding)
        return PhotoOutcome(True, count)

    async def photos_in(self, avatar_id: int) -> int:
        async with self.sessionmaker() as session:
            return await avatar_queries.photo_count(session, avatar_id)

    # ------------------------------------------------------------ closing a set

    async def settle_upload(self, user_id: int, avatar_id: int) -> SetState | None:
        """After photos were taken: a full set is reviewed and closed. None when the set is not the user's."""
        async with self.sessionmaker() as session:
            if await avatar_queries.get_avatar(session, avatar_id, user_id) is None:
                return None
            count = await avatar_queries.photo_count(session, avatar_id)
            if not is_full(count):
                return SetState(count)
            return await self._review_and_close(session, user_id, avatar_id, count)

    async def close_set(self, user_id: int, avatar_id: int) -> SetState:
        """Done: a set of enough photos is reviewed and closed; a set of too few stays open."""
        async with self.sessionmaker() as session:
            count = await avatar_queries.photo_count(session, avatar_id)
            if not can_finish(count):
                return SetState(count)
            return await self._review_and_close(session, user_id, avatar_id, count)

    async def _review_and_close(self, session: AsyncSession, user_id: int, avatar_id: int, count: int) -> SetState:
        if self.faces is not None:
            review = await face_queries.review_avatar(session, self.files, self.faces, avatar_id)
            if review.refused:
                await session.commit()
                return SetState(count, refused=True)
            if review.removed_slots:
                for _slot in review.removed_slots:
                    await record_event(session, EventName.PHOTO_REJECTED, user_id=user_id, reason="face_mismatch")
                await session.commit()  # the photos are gone before the user is told so
                left = await avatar_queries.photo_count(session, avatar_id)
                return SetState(left, removed_slots=review.removed_slots)
        await avatar_queries.mark_ready(session, avatar_id)
        await session.commit()  # what the replies announce is durable before the user can act on them
        return SetState(count, closed=True)

    # ------------------------------------------------------------ style, pack, order

    async def pack_offer(self, user_id: int) -> PackOffer:
        """The packs this user may pick, and their credit balance."""
        packs = await self.offered_packs(user_id)
        async with self.sessionmaker() as session:
            return PackOffer(packs, await ledger.balance(session, user_id))

    async def offered_packs(self, user_id: int) -> list[Pack]:
        """The catalogue's packs, the trial only until the user has taken it, grid packs only while the
        primary model can draw a grid."""
        async with self.sessionmaker() as session:
            trial_taken = await order_queries.trial_used(session, user_id)
        offered = self.catalogue.offered_packs(grid_capable=self.grid_capable())
        return [pack for pack in offered if not (pack.is_trial and trial_taken)]

    async def create_order(self, user_id: int, avatar_id: int, style: Style, pack: Pack, tap: str) -> DraftOrder:
        """The order the summary shows, keyed by the tap (callback query id) that picked the pack."""
        async with self.sessionmaker() as session:
            photos = await avatar_queries.photo_count(session, avatar_id)
            order = await order_queries.create_order(
                session, user_id=user_id, avatar_id=avatar_id, style=style.id, pack=pack, created_by=tap
            )
            await session.commit()  # a quick Pay must find the order the summary shows
            return DraftOrder(order.id, photos)

    async def withdraw_order(self, order_id: int) -> None:
        """Change and Cancel on the summary both withdraw its order."""
        async with self.sessionmaker() as session:
            await order_queries.cancel_unpaid_order(session, order_id)
            await session.commit()

    # ------------------------------------------------------------ /status

    async def status(self, user_id: int) -> JobStatusView | OrderStatusView | None:
        """The user's active pack, else their last order, else nothing."""
        async with self.sessionmaker() as session:
            for job in await job_queries.active_jobs(session, user_id):
                if job.status == JobStatus.QUEUED:
                    position = await job_queries.queue_position(session, job)
                    return JobStatusView(job.order_id, job.photos_total, queued=True, position=position)
                return JobStatusView(job.order_id, job.photos_total, queued=False, done=job.photos_completed)
            order = await order_queries.last_order(session, user_id)
        if order is None:
            return None
        return OrderStatusView(order.id, order.photos, order.style, order.status)


async def _leave(session: AsyncSession, leaving: Leaving) -> None:
    """Withdraw the unpaid order, and give up a set still being collected (a finished set stays reusable)."""
    if leaving.order_id:
        await order_queries.cancel_unpaid_order(session, leaving.order_id)
    if leaving.collecting_avatar_id:
        await avatar_queries.abandon_avatar(session, leaving.collecting_avatar_id)


async def _photo_after_upload(session: AsyncSession, avatar_id: int | None) -> PhotoOutcome:
    """The set is closed: a photo beyond eight is "too many", any other one is simply not expected now."""
    count = await avatar_queries.photo_count(session, avatar_id) if avatar_id else 0
    return PhotoOutcome(False, count, TOO_MANY if is_full(count) else NOT_NOW)
