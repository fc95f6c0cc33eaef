"""The face checks' queries: embeddings kept with a set's photos, the set reviewed before it closes,
and a portrait's likeness recorded. The rules are studio.faces; the engine that reads faces is behind
its FaceChecker port."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.files import FileStore
from storage.models import GenerationTask, ReferencePhoto
from storage.sql import rows_changed
from studio.faces import (
    SET_REVIEW_FROM,
    FaceBox,
    FaceChecker,
    FaceReject,
    SelfieCheck,
    embedding_from_bytes,
    embedding_to_bytes,
    review_set,
)
from studio.states import TaskStatus

# ---------------------------------------------------------------- database


async def set_embeddings(session: AsyncSession, avatar_id: int) -> list[tuple[int, np.ndarray]]:
    """(slot, embedding) of the set's photos that have one, in slot order."""
    rows = await session.execute(
        select(ReferencePhoto.slot, ReferencePhoto.face_embedding)
        .where(ReferencePhoto.avatar_id == avatar_id, ReferencePhoto.face_embedding.is_not(None))
        .order_by(ReferencePhoto.slot)
    )
    return [(slot, embedding_from_bytes(blob)) for slot, blob in rows.all() if blob is not None]


async def store_embedding(session: AsyncSession, avatar_id: int, sha256: str, embedding: np.ndarray) -> None:
    await session.execute(
        update(ReferencePhoto)
        .where(ReferencePhoto.avatar_id == avatar_id, ReferencePhoto.sha256 == sha256)
        .values(face_embedding=embedding_to_bytes(embedding))
    )


async def remove_photos(session: AsyncSession, files: FileStore, avatar_id: int, slots: Sequence[int]) -> int:
    """Take photos out of a set and close the gaps in its slots; returns how many are left.

    Slots are renumbered upwards one row at a time, so UNIQUE (avatar_id, slot) holds after every
    statement and the next photo goes into slot count + 1 as the intake expects.
    """
    rows = list(
        (
            await session.execute(
                select(ReferencePhoto).where(ReferencePhoto.avatar_id == avatar_id).order_by(ReferencePhoto.slot)
            )
        ).scalars()
    )
    keys = [row.storage_key for row in rows if row.slot in slots]
    for row in rows:
        if row.slot in slots:
            await session.delete(row)
    await session.flush()
    kept = [row for row in rows if row.slot not in slots]
    for new_slot, row in enumerate(kept, start=1):
        if row.slot != new_slot:
            await session.execute(update(ReferencePhoto).where(ReferencePhoto.id == row.id).values(slot=new_slot))
    for key in keys:
        await files.delete(key)
    return len(kept)


async def reference_embeddings(
    session: AsyncSession, files: FileStore, faces: FaceChecker, avatar_id: int
) -> list[np.ndarray]:
    """The set's embeddings; photos stored while checks were off are embedded now (and remembered)."""
    rows = list(
        (
            await session.execute(
                select(ReferencePhoto).where(ReferencePhoto.avatar_id == avatar_id).order_by(ReferencePhoto.slot)
            )
        ).scalars()
    )
    embeddings: list[np.ndarray] = []
    for row in rows:
        if row.face_embedding is None:
            embedding = await faces.embed_async(await files.get(row.storage_key))
            if embedding is None:
                continue
            row.face_embedding = embedding_to_bytes(embedding)
        embeddings.append(embedding_from_bytes(row.face_embedding))
    await session.flush()
    if len(embeddings) >= 3:
        # A photo that slipped in unlike the rest would pull the centroid away from the person.
        verdict = review_set(embeddings, faces.limits.match_max_distance)
        if verdict.has_majority:
            embeddings = [embeddings[i] for i in verdict.majority]
    return embeddings


async def begin_identity_redo(session: AsyncSession, task_id: int, result_url: str, score: float) -> bool:
    """Claim the task's one regeneration for likeness; False if it was used already (or the task moved on)."""
    result = await session.execute(
        update(GenerationTask)
        .where(
            GenerationTask.id == task_id,
            GenerationTask.status == TaskStatus.SUCCEEDED,
            GenerationTask.result_url == result_url,
            GenerationTask.identity_redos == 0,
        )
        .values(identity_redos=GenerationTask.identity_redos + 1, identity_score=score)
    )
    return bool(rows_changed(result))


async def record_face_box(session: AsyncSession, task_id: int, face: FaceBox) -> None:
    """Where the identity check found the face in the task's current result, [left, top, size] in its
    pixels (a profile photo is cropped around it)."""
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task_id, GenerationTask.status == TaskStatus.SUCCEEDED)
        .values(face_box=[round(face.left, 1), round(face.top, 1), round(face.size, 1)])
    )


async def record_identity(session: AsyncSession, task_id: int, score: float, flagged: bool) -> None:
    await session.execute(
        update(GenerationTask)
        .where(GenerationTask.id == task_id, GenerationTask.status == TaskStatus.SUCCEEDED)
        .values(identity_score=score, flagged=flagged)
    )


# ---------------------------------------------------------------- the intake's questions


async def check_selfie_for_set(session: AsyncSession, faces: FaceChecker, avatar_id: int, jpeg: bytes) -> SelfieCheck:
    """The photo on its own, then (once the set would hold enough photos to judge) against the set."""
    check = await faces.check_selfie_async(jpeg)
    if check.embedding is None:
        return check
    known = [embedding for _slot, embedding in await set_embeddings(session, avatar_id)]
    if len(known) + 1 >= SET_REVIEW_FROM:
        verdict = review_set([*known, check.embedding], faces.limits.match_max_distance)
        # Without a clear majority there is no telling who the odd one is: the review at Done says so.
        if verdict.has_majority and len(known) in verdict.outliers:
            return SelfieCheck(FaceReject.MISMATCH, None, check.face_px, check.sharpness)
    return check


@dataclass(frozen=True, slots=True)
class SetReview:
    removed_slots: tuple[int, ...] = ()
    refused: bool = False  # no one person shows in most photos: nothing to keep or to remove

    @property
    def passed(self) -> bool:
        return not self.removed_slots and not self.refused


async def review_avatar(session: AsyncSession, files: FileStore, faces: FaceChecker, avatar_id: int) -> SetReview:
    """Before the set is closed: drop photos of someone else, or refuse a set with no clear majority.

    Photos taken before the set held enough to judge were checked alone; this is where an early
    odd one out is caught. The caller commits.
    """
    known = await set_embeddings(session, avatar_id)
    if len(known) < 2:
        return SetReview()
    verdict = review_set([embedding for _slot, embedding in known], faces.limits.match_max_distance)
    if not verdict.has_majority:
        return SetReview(refused=True)
    slots = tuple(known[index][0] for index in verdict.outliers)
    if slots:
        await remove_photos(session, files, avatar_id, slots)
    return SetReview(removed_slots=slots)
