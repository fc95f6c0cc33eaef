"""IntakeService on a real SQLite database (migrated once per session, copied per test): photos taken,
rejected and counted against the hourly budget, sets closed and reused, orders made and withdrawn,
/status. Face checks run on the in-process FakeFaceChecker where a test turns them on (dlib's real
models: tests/integration/test_face_checks.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.intake import (
    FAILED,
    NOT_NOW,
    OVER_BUDGET,
    TOO_MANY,
    IncomingPhoto,
    IntakeLimits,
    IntakeService,
    JobStatusView,
    Leaving,
    OrderStatusView,
    PhotoOutcome,
)
from storage import avatars as avatar_queries
from storage.files import LocalFileStore
from storage.models import Avatar, Event, GenerationJob, Order, ReferencePhoto, User
from storage.orders import create_order
from studio.catalogue import load_catalogue
from studio.faces import FaceReject, FakeFaceChecker
from studio.intake import MAX_PHOTOS, MIN_PHOTOS
from studio.states import AvatarStatus, OrderStatus
from tests.engine_support import seed_paid_job, seed_unpaid_order, start_trial
from tests.image_corpus import selfie_like_jpeg

LIMITS = IntakeLimits(max_photo_bytes=20 * 1024 * 1024, min_photo_side=512, rejects_per_hour=20)


class Rig:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], files: LocalFileStore) -> None:
        self.sessionmaker = sessionmaker
        self.files = files
        self.catalogue = load_catalogue()
        self.faces: FakeFaceChecker | None = None  # face checks off unless a test turns them on
        self.intake = self.service(LIMITS)
        self.opened: list[int] = []
        self.photos_when_opened: list[int] = []
        self.fetched: list[str] = []

    def service(self, limits: IntakeLimits) -> IntakeService:
        return IntakeService(
            self.sessionmaker, catalogue=self.catalogue, files=self.files, limits=limits, faces=self.faces
        )

    def check_faces(self) -> FakeFaceChecker:
        self.faces = FakeFaceChecker()
        self.intake = self.service(LIMITS)
        return self.faces

    async def take_each(self, user: User, people: list[str]) -> list[PhotoOutcome]:
        """One photo per name, in order, into the same set; each shows the person it is named after."""
        assert self.faces is not None
        self.faces.next_selfies(people)
        outcomes = []
        for index, person in enumerate(people):
            avatar_id = self.opened[-1] if self.opened else None
            outcomes.append(await self.take(user, f"{person}{index}", avatar_id=avatar_id))
        return outcomes

    async def embedded_photos(self, avatar_id: int) -> int:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(ReferencePhoto.id).where(
                    ReferencePhoto.avatar_id == avatar_id, ReferencePhoto.face_embedding.is_not(None)
                )
            )
            return len(rows.all())

    async def new_user(self, telegram_id: int = 700_001) -> User:
        async with self.sessionmaker() as session:
            user = User(telegram_id=telegram_id, first_name="Anna", language="en")
            session.add(user)
            await session.commit()
            return user

    def photo(self, name: str, data: bytes | None = None, size: int | None = 200_000) -> IncomingPhoto:
        async def fetch() -> bytes:
            self.fetched.append(name)
            return selfie_like_jpeg(seed=sum(map(ord, name))) if data is None else data

        return IncomingPhoto(file_unique_id=f"u{name}", file_size=size, fetch=fetch)

    async def record_opened(self, avatar_id: int) -> None:
        """The ``opened`` port: what the set holds when the step is told to name it (-1: not committed yet)."""
        self.opened.append(avatar_id)
        async with self.sessionmaker() as session:
            committed = await session.get(Avatar, avatar_id) is not None
        self.photos_when_opened.append(await self.photos(avatar_id) if committed else -1)

    async def photos(self, avatar_id: int) -> int:
        async with self.sessionmaker() as session:
            return await avatar_queries.photo_count(session, avatar_id)

    async def take(
        self, user: User, name: str, *, avatar_id: int | None = None, after_upload: bool = False, **photo: object
    ) -> PhotoOutcome:
        incoming = self.photo(name, **photo)  # type: ignore[arg-type]
        return await self.intake.take_photo(
            user.id, incoming, self.record_opened, avatar_id=avatar_id, after_upload=after_upload
        )

    async def fill(self, user: User, count: int) -> int:
        """``count`` accepted photos in a new set; the set's id."""
        for index in range(count):
            outcome = await self.take(user, f"fill{index}", avatar_id=self.opened[-1] if self.opened else None)
            assert outcome.accepted, outcome
        return self.opened[-1]

    async def avatar(self, avatar_id: int) -> Avatar:
        async with self.sessionmaker() as session:
            found = await session.get(Avatar, avatar_id)
            assert found is not None
            return found

    async def order(self, order_id: int) -> Order:
        async with self.sessionmaker() as session:
            found = await session.get(Order, order_id)
            assert found is not None
            return found

    async def rejections(self, user: User) -> list[str]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(Event.properties).where(Event.user_id == user.id, Event.name == "photo_rejected")
            )
            return [properties["reason"] for (properties,) in rows]

    async def stored_photos(self, user: User, avatar_id: int) -> int:
        """The set's photos, checked to be exactly its stored files."""
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(ReferencePhoto.storage_key).where(ReferencePhoto.avatar_id == avatar_id)
            )
            keys = [key for (key,) in rows]
        assert sorted(keys) == sorted(await self.files.list_keys(f"refs/{user.id}/{avatar_id}/"))
        return len(keys)


@pytest_asyncio.fixture
async def rig(sqlite_sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> AsyncIterator[Rig]:
    yield Rig(sqlite_sessionmaker, LocalFileStore(tmp_path / "files"))


# ---------------------------------------------------------------- taking photos


async def test_a_first_photo_opens_a_set_named_before_the_photo_is_taken(rig: Rig) -> None:
    user = await rig.new_user()

    outcome = await rig.take(user, "a")

    assert outcome == PhotoOutcome(True, 1)
    assert rig.photos_when_opened == [0]
    assert (await rig.avatar(rig.opened[0])).status == AvatarStatus.COLLECTING
    assert await rig.stored_photos(user, rig.opened[0]) == 1


async def test_a_lost_step_keeps_collecting_into_the_recent_set(rig: Rig) -> None:
    user = await rig.new_user()
    await rig.take(user, "a")

    outcome = await rig.take(user, "b", avatar_id=None)

    assert outcome == PhotoOutcome(True, 2)
    assert rig.opened == [rig.opened[0], rig.opened[0]]
    assert rig.photos_when_opened == [0, 1]


async def test_the_steps_own_set_is_used_without_naming_it_again(rig: Rig) -> None:
    user = await rig.new_user()
    await rig.take(user, "a")

    await rig.take(user, "b", avatar_id=rig.opened[0])

    assert len(rig.opened) == 1


async def test_someone_elses_set_is_not_collected_into(rig: Rig) -> None:
    owner, other = await rig.new_user(700_001), await rig.new_user(700_002)
    await rig.take(owner, "a")
    theirs = rig.opened[0]

    outcome = await rig.take(other, "b", avatar_id=theirs)

    assert outcome.accepted and rig.opened[-1] != theirs
    assert await rig.photos(theirs) == 1


async def test_a_duplicate_is_rejected_without_a_download_and_counted(rig: Rig) -> None:
    user = await rig.new_user()
    await rig.take(user, "a")

    outcome = await rig.take(user, "a", avatar_id=rig.opened[0])

    assert outcome == PhotoOutcome(False, 1, "photo.rejected.duplicate")
    assert rig.fetched == ["a"]
    assert await rig.rejections(user) == ["duplicate"]


async def test_a_file_announced_too_large_is_never_downloaded(rig: Rig) -> None:
    user = await rig.new_user()

    outcome = await rig.take(user, "big", size=LIMITS.max_photo_bytes + 1)

    assert outcome.reason_key == "photo.rejected.too_large_file"
    assert rig.fetched == []
    assert await rig.rejections(user) == ["too_large_file"]


async def test_bytes_that_are_no_image_are_rejected_and_nothing_is_stored(rig: Rig) -> None:
    user = await rig.new_user()

    outcome = await rig.take(user, "doc", data=b"%PDF-1.7 not a picture at all" * 20)

    assert not outcome.accepted and outcome.reason_key == "photo.rejected.not_an_image"
    assert await rig.stored_photos(user, rig.opened[0]) == 0
    assert await rig.rejections(user) == ["not_an_image"]


async def test_beyond_the_hourly_budget_nothing_is_downloaded_or_counted(rig: Rig) -> None:
    rig.intake = rig.service(IntakeLimits(LIMITS.max_photo_bytes, LIMITS.min_photo_side, rejects_per_hour=1))
    user = await rig.new_user()
    await rig.take(user, "doc", data=b"not an image" * 50)

    outcome = await rig.take(user, "good", avatar_id=rig.opened[0])

    assert outcome == PhotoOutcome(False, 0, OVER_BUDGET)
    assert rig.fetched == ["doc"]
    assert await rig.rejections(user) == ["not_an_image"]


async def test_a_failed_download_is_said_and_counted(rig: Rig) -> None:
    user = await rig.new_user()

    async def broken() -> bytes:
        raise OSError("Telegram said no")

    outcome = await rig.intake.take_photo(user.id, IncomingPhoto("ux", 1000, broken), rig.record_opened, avatar_id=None)

    assert outcome.reason_key == "photo.rejected.download_failed"
    assert await rig.rejections(user) == ["download_failed"]


async def test_our_own_failure_is_an_outcome_and_not_counted_against_the_user(rig: Rig) -> None:
    user = await rig.new_user()

    async def step_store_down(avatar_id: int) -> None:
        raise ConnectionError("the conversation store is down")

    outcome = await rig.intake.take_photo(user.id, rig.photo("a"), step_store_down, avatar_id=None)

    assert outcome == PhotoOutcome(False, 0, FAILED)
    assert await rig.rejections(user) == []


async def test_a_full_set_takes_no_more(rig: Rig) -> None:
    user = await rig.new_user()
    avatar_id = await rig.fill(user, MAX_PHOTOS)

    outcome = await rig.take(user, "extra", avatar_id=avatar_id)

    assert outcome == PhotoOutcome(False, MAX_PHOTOS, TOO_MANY)
    assert "extra" not in rig.fetched
    assert await rig.rejections(user) == ["too_many"]


async def test_after_the_upload_step_a_photo_is_not_taken(rig: Rig) -> None:
    user = await rig.new_user()
    avatar_id = await rig.fill(user, MIN_PHOTOS)

    outcome = await rig.take(user, "late", avatar_id=avatar_id, after_upload=True)

    assert outcome == PhotoOutcome(False, MIN_PHOTOS, NOT_NOW)
    assert "late" not in rig.fetched
    assert await rig.rejections(user) == []  # not the photo's fault


async def test_after_the_upload_step_a_full_set_says_too_many(rig: Rig) -> None:
    user = await rig.new_user()
    avatar_id = await rig.fill(user, MAX_PHOTOS)

    outcome = await rig.take(user, "late", avatar_id=avatar_id, after_upload=True)

    assert outcome == PhotoOutcome(False, MAX_PHOTOS, TOO_MANY)
    assert await rig.rejections(user) == ["too_many"]


# ---------------------------------------------------------------- closing a set


async def test_settle_closes_a_full_set_only(rig: Rig) -> None:
    user = await rig.new_user()
    avatar_id = await rig.fill(user, MAX_PHOTOS - 1)

    open_set = await rig.intake.settle_upload(user.id, avatar_id)
    assert open_set is not None and (open_set.count, open_set.closed) == (MAX_PHOTOS - 1, False)
    assert (await rig.avatar(avatar_id)).status == AvatarStatus.COLLECTING

    await rig.take(user, "last", avatar_id=avatar_id)
    full = await rig.intake.settle_upload(user.id, avatar_id)
    assert full is not None and (full.count, full.closed) == (MAX_PHOTOS, True)
    assert (await rig.avatar(avatar_id)).status == AvatarStatus.READY


async def test_settle_ignores_someone_elses_set(rig: Rig) -> None:
    owner, other = await rig.new_user(700_001), await rig.new_user(700_002)
    avatar_id = await rig.fill(owner, MAX_PHOTOS)

    assert await rig.intake.settle_upload(other.id, avatar_id) is None
    assert (await rig.avatar(avatar_id)).status == AvatarStatus.COLLECTING


async def test_done_needs_enough_photos(rig: Rig) -> None:
    user = await rig.new_user()
    avatar_id = await rig.fill(user, MIN_PHOTOS - 1)

    too_few = await rig.intake.close_set(user.id, avatar_id)
    assert (too_few.count, too_few.closed, too_few.reviewed_out) == (MIN_PHOTOS - 1, False, False)
    assert (await rig.avatar(avatar_id)).status == AvatarStatus.COLLECTING

    await rig.take(user, "fifth", avatar_id=avatar_id)
    enough = await rig.intake.close_set(user.id, avatar_id)
    assert (enough.count, enough.closed) == (MIN_PHOTOS, True)
    assert (await rig.avatar(avatar_id)).status == AvatarStatus.READY


# ---------------------------------------------------------------- face checks


async def test_a_selfie_the_face_check_refuses_is_not_stored_and_is_counted_with_its_reason(rig: Rig) -> None:
    faces = rig.check_faces()
    faces.next_selfies([FaceReject.BLURRY])
    user = await rig.new_user()

    outcome = await rig.take(user, "blurry")

    assert outcome == PhotoOutcome(False, 0, "photo.rejected.face_blurry")
    assert len(faces.asked) == 1
    assert await rig.stored_photos(user, rig.opened[0]) == 0
    assert await rig.rejections(user) == ["face_blurry"]


async def test_someone_else_is_refused_once_the_set_can_be_judged_and_faces_are_kept(rig: Rig) -> None:
    rig.check_faces()
    user = await rig.new_user()

    outcomes = await rig.take_each(user, ["anna"] * (MIN_PHOTOS - 1) + ["boris", "anna"])

    assert [outcome.reason_key for outcome in outcomes] == [None] * (MIN_PHOTOS - 1) + [
        "photo.rejected.face_mismatch",
        None,
    ]
    assert outcomes[-1] == PhotoOutcome(True, MIN_PHOTOS)
    assert await rig.embedded_photos(rig.opened[0]) == MIN_PHOTOS
    assert await rig.rejections(user) == ["face_mismatch"]


async def test_an_early_photo_of_someone_else_is_taken_out_at_done(rig: Rig) -> None:
    rig.check_faces()
    user = await rig.new_user()
    # The first photo is checked alone; the fifth is like the majority, so it is taken.
    outcomes = await rig.take_each(user, ["boris"] + ["anna"] * (MIN_PHOTOS - 1))
    assert all(outcome.accepted for outcome in outcomes)
    avatar_id = rig.opened[0]

    state = await rig.intake.close_set(user.id, avatar_id)

    assert (state.count, state.closed, state.removed_slots) == (MIN_PHOTOS - 1, False, (1,))
    assert await rig.stored_photos(user, avatar_id) == MIN_PHOTOS - 1
    assert (await rig.avatar(avatar_id)).status == AvatarStatus.COLLECTING
    assert await rig.rejections(user) == ["face_mismatch"]
    outcome = await rig.take_each(user, ["anna"])  # the freed slot is the next one filled
    assert outcome == [PhotoOutcome(True, MIN_PHOTOS)]


async def test_a_set_with_no_one_person_in_most_photos_is_refused_at_done(rig: Rig) -> None:
    rig.check_faces()
    user = await rig.new_user()
    people = ["anna", "anna", "boris", "boris", "vera"]
    assert len(people) == MIN_PHOTOS
    await rig.take_each(user, people)
    avatar_id = rig.opened[0]

    state = await rig.intake.close_set(user.id, avatar_id)

    assert (state.count, state.closed, state.refused, state.removed_slots) == (MIN_PHOTOS, False, True, ())
    assert await rig.stored_photos(user, avatar_id) == MIN_PHOTOS
    assert (await rig.avatar(avatar_id)).status == AvatarStatus.COLLECTING


# ---------------------------------------------------------------- starting over, reusing, leaving


async def test_starting_over_withdraws_the_order_and_gives_up_the_set_being_collected(rig: Rig) -> None:
    order_id = await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_010)
    user_id = (await rig.order(order_id)).user_id
    collecting = await rig.intake.start_over(user_id, Leaving())

    new = await rig.intake.start_over(user_id, Leaving(order_id=order_id, collecting_avatar_id=collecting))

    assert new != collecting
    assert (await rig.order(order_id)).status == OrderStatus.CANCELLED
    assert (await rig.avatar(collecting)).status != AvatarStatus.COLLECTING
    assert (await rig.avatar(new)).status == AvatarStatus.COLLECTING


async def test_reuse_finds_the_latest_finished_set_and_leaves_the_step(rig: Rig) -> None:
    order_id = await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_011)
    order = await rig.order(order_id)

    reused = await rig.intake.reuse(order.user_id, Leaving(order_id=order_id))

    assert reused == order.avatar_id
    assert (await rig.order(order_id)).status == OrderStatus.CANCELLED
    assert (await rig.avatar(reused)).status == AvatarStatus.READY  # a finished set stays reusable


async def test_reusing_a_set_that_is_gone_changes_nothing(rig: Rig) -> None:
    order_id = await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_012)
    order = await rig.order(order_id)
    assert order.avatar_id is not None
    async with rig.sessionmaker() as session:
        avatar = await session.get(Avatar, order.avatar_id)
        assert avatar is not None
        avatar.status = AvatarStatus.DELETED
        await session.commit()

    assert await rig.intake.reuse(order.user_id, Leaving(order_id=order_id), order.avatar_id) is None
    assert await rig.intake.reuse(order.user_id, Leaving(order_id=order_id)) is None
    assert (await rig.order(order_id)).status == OrderStatus.AWAITING_PAYMENT


async def test_reuse_never_hands_out_someone_elses_set(rig: Rig) -> None:
    order_id = await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_013)
    stranger = await rig.new_user(700_014)

    assert await rig.intake.reuse(stranger.id, Leaving(), (await rig.order(order_id)).avatar_id) is None


async def test_cancel_leaves_the_step(rig: Rig) -> None:
    order_id = await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_015)

    await rig.intake.leave(Leaving(order_id=order_id))

    assert (await rig.order(order_id)).status == OrderStatus.CANCELLED


# ---------------------------------------------------------------- packs and orders


async def test_the_trial_is_offered_until_it_is_taken(rig: Rig) -> None:
    order_id = await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_020)
    order = await rig.order(order_id)
    trial = rig.catalogue.pack("trial")
    assert trial in await rig.intake.offered_packs(order.user_id)

    async with rig.sessionmaker() as session:
        assert order.avatar_id is not None
        taken = await create_order(
            session, user_id=order.user_id, avatar_id=order.avatar_id, style="professional", pack=trial
        )
        await start_trial(session, taken)
        await session.commit()

    offer = await rig.intake.pack_offer(order.user_id)
    assert trial not in offer.packs and rig.catalogue.pack("p7") in offer.packs
    assert offer.balance == 0  # the trial's credits are reserved by its job


@pytest.mark.parametrize("grid_capable", [True, False])
async def test_grid_packs_are_offered_only_while_the_primary_model_can_draw_a_grid(
    rig: Rig, grid_capable: bool
) -> None:
    order = await rig.order(await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_022))
    intake = IntakeService(
        rig.sessionmaker, catalogue=rig.catalogue, files=rig.files, limits=LIMITS, grid_capable=lambda: grid_capable
    )
    lite = rig.catalogue.pack("lite")
    assert (lite in await intake.offered_packs(order.user_id)) is grid_capable
    assert (lite in (await intake.pack_offer(order.user_id)).packs) is grid_capable
    assert rig.catalogue.pack("p7") in await intake.offered_packs(order.user_id)


async def test_an_order_is_made_for_the_summary_and_can_be_withdrawn(rig: Rig) -> None:
    seeded = await rig.order(await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_021))
    assert seeded.avatar_id is not None
    style, pack = rig.catalogue.styles[1], rig.catalogue.pack("p15")

    draft = await rig.intake.create_order(seeded.user_id, seeded.avatar_id, style, pack, tap="cb77")

    order = await rig.order(draft.order_id)
    assert (draft.selfies, order.status, order.style, order.photos) == (5, OrderStatus.AWAITING_PAYMENT, style.id, 15)
    await rig.intake.withdraw_order(draft.order_id)
    assert (await rig.order(draft.order_id)).status == OrderStatus.CANCELLED


# ---------------------------------------------------------------- /status


async def test_status_shows_the_queued_pack_then_the_last_order_then_nothing(rig: Rig) -> None:
    user = await rig.new_user(700_030)
    assert await rig.intake.status(user.id) is None

    order_id = await seed_unpaid_order(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_031)
    owner = (await rig.order(order_id)).user_id
    assert await rig.intake.status(owner) == OrderStatusView(order_id, 7, "professional", OrderStatus.AWAITING_PAYMENT)

    job_id = await seed_paid_job(rig.sessionmaker, rig.files, rig.catalogue, telegram_id=700_032, pack="p7")
    async with rig.sessionmaker() as session:
        job = await session.get(GenerationJob, job_id)
        assert job is not None
    shown = await rig.intake.status(job.user_id)
    assert shown == JobStatusView(job.order_id, 7, queued=True, position=1)
