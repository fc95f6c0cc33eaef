"""Generation rules: how a job fans out into tasks, what each task asks for, and how a job ends.

Pure functions of plain data: the scheduler stores what ``plan_tasks`` returns, sends what
``build_prompt`` returns, and asks ``settle_job`` whether a job is finished.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from studio.catalogue import GRID_PANELS, Catalogue, Medium, Prompt, Style
from studio.states import JobStatus

SEED_MODULUS = 2**31 - 1  # seeds live in 1..2**31-1: positive and safe for any provider's int32
# The user's free-text description goes into every prompt; a cap keeps it from drowning the style.
AVATAR_CONTEXT_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class PlannedTask:
    position: int  # delivery order, 0..N-1
    prompt_index: int
    variant: int  # 0 for the first use of a prompt in the job, 1 for the second, ...
    seed: int
    # Grid packs: the tasks of one grid share a group (0, 1, ... within the job) and each is one
    # panel of it (slot 0..3, row-major); the slot-0 task's create makes the whole grid.
    grid_group: int | None = None
    grid_slot: int | None = None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    status: JobStatus  # COMPLETED, PARTIAL or FAILED
    succeeded: int
    skipped: int


def task_seed(job_id: int, prompt_index: int, variant: int) -> int:
    """A seed that is the same in every process and distinct for every task of one job.

    A job-wide base comes from SHA-256 (Python's ``hash`` is salted per process); the task offset
    is the Cantor pairing of (prompt_index, variant), which is injective, so two tasks of one job
    can only share a seed once that offset reaches 2**31 - far beyond any real pack.
    """
    if prompt_index < 0 or variant < 0:
        raise ValueError("prompt_index and variant must not be negative")
    digest = hashlib.sha256(f"pinglass:job:{job_id}".encode()).digest()
    base = int.from_bytes(digest[:8], "big")
    diagonal = prompt_index + variant
    offset = diagonal * (diagonal + 1) // 2 + variant
    return (base + offset) % SEED_MODULUS + 1


def plan_tasks(style: Style, photos: int, job_id: int) -> list[PlannedTask]:
    """Fan a job of ``photos`` out over the style's prompts, in the style's order, cycling.

    Position i uses prompt ``order[i % len(order)]`` as its ``i // len(order)``-th repeat, so
    (prompt_index, variant) is unique within the job, as the tasks table requires.
    """
    if photos < 1:
        raise ValueError(f"a job needs at least one photo, got {photos}")
    order = style.prompt_indices
    if not order:
        raise ValueError(f"style {style.id!r} has no prompts")
    planned: list[PlannedTask] = []
    for position in range(photos):
        prompt_index = order[position % len(order)]
        variant = position // len(order)
        planned.append(
            PlannedTask(
                position=position,
                prompt_index=prompt_index,
                variant=variant,
                seed=task_seed(job_id, prompt_index, variant),
            )
        )
    return planned


def plan_grid_tasks(style: Style, photos: int, job_id: int) -> list[PlannedTask]:
    """Fan a grid pack of ``photos`` out into groups of four tasks, one group per create.

    Group g uses the style's prompt ``order[g % len(order)]`` for all four panels (one scene, one
    coherent image), each panel its own repeat of it: variants ``4r .. 4r + 3`` where ``r`` is how
    often the prompt was used by earlier groups. So each panel asks for its own pose phrase, and
    (prompt_index, variant) stays unique within the job, as the tasks table requires.
    """
    if photos < GRID_PANELS or photos % GRID_PANELS:
        raise ValueError(f"a grid job needs a multiple of {GRID_PANELS} photos, got {photos}")
    order = style.prompt_indices
    if not order:
        raise ValueError(f"style {style.id!r} has no prompts")
    planned: list[PlannedTask] = []
    for group in range(photos // GRID_PANELS):
        prompt_index = order[group % len(order)]
        first_variant = (group // len(order)) * GRID_PANELS
        for slot in range(GRID_PANELS):
            variant = first_variant + slot
            planned.append(
                PlannedTask(
                    position=group * GRID_PANELS + slot,
                    prompt_index=prompt_index,
                    variant=variant,
                    seed=task_seed(job_id, prompt_index, variant),
                    grid_group=group,
                    grid_slot=slot,
                )
            )
    return planned


# The claim key: one fixed-width string of digits per task, the queue's whole order in one column,
# so "the next n due tasks" is a walk along an index instead of a sort of the backlog.
# A string, not an integer: a 64-bit integer cannot hold a microsecond timestamp and a job id
# besides the priority; and digits of one width compare the same way on SQLite and PostgreSQL
# under any collation. The parts, in order:
#   priority   6 digits, inverted (999999 - priority): higher priority first
#   first      1 digit, 0 for the job's first portrait, 1 for the rest: every job's first portrait
#              goes before later portraits of older jobs, so a new payer sees work start at once
#   created_at 20 digits, the job's creation in UTC, YYYYMMDDHHMMSS + microseconds: older jobs first
#   job_id     10 digits (any 32-bit id): ties between jobs created in the same microsecond
#   position   5 digits: the job's own delivery order
# migrations/versions/0007 computes the same string in SQL for rows that existed before it.
CLAIM_KEY_PRIORITY_DIGITS = 6
CLAIM_KEY_JOB_ID_DIGITS = 10
CLAIM_KEY_POSITION_DIGITS = 5
CLAIM_KEY_LENGTH = CLAIM_KEY_PRIORITY_DIGITS + 1 + 20 + CLAIM_KEY_JOB_ID_DIGITS + CLAIM_KEY_POSITION_DIGITS
MAX_PRIORITY = 10**CLAIM_KEY_PRIORITY_DIGITS - 1


def claim_key(priority: int, job_created_at: datetime, job_id: int, position: int) -> str:
    """Where a task stands in the queue: tasks are claimed in ascending order of this string.

    Higher job priority first; then every job's first portrait (position 0) before the later
    portraits of any job of that priority; then older jobs first, then lower job id, then position.
    """
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be within 0..{MAX_PRIORITY}, got {priority}")
    if not 0 <= job_id < 10**CLAIM_KEY_JOB_ID_DIGITS:
        raise ValueError(f"job id out of range: {job_id}")
    if not 0 <= position < 10**CLAIM_KEY_POSITION_DIGITS:
        raise ValueError(f"position out of range: {position}")
    if job_created_at.tzinfo is None:
        raise ValueError("naive datetime given; use aware UTC datetimes")
    created = job_created_at.astimezone(UTC)
    return (
        f"{MAX_PRIORITY - priority:0{CLAIM_KEY_PRIORITY_DIGITS}d}"
        f"{0 if position == 0 else 1}"
        f"{created.year:04d}{created.month:02d}{created.day:02d}"
        f"{created.hour:02d}{created.minute:02d}{created.second:02d}{created.microsecond:06d}"
        f"{job_id:0{CLAIM_KEY_JOB_ID_DIGITS}d}"
        f"{position:0{CLAIM_KEY_POSITION_DIGITS}d}"
    )


def is_first_portrait_key(key: str) -> bool:
    """Is this claim key a job's first portrait (the one its payer is waiting for)?"""
    return key[CLAIM_KEY_PRIORITY_DIGITS] == "0"


def build_prompt(catalogue: Catalogue, prompt_index: int, variant: int, avatar_context: str | None) -> str:
    """The full text sent to the provider for one task.

    The avoid list is written into the prompt because the primary models (nano-banana) take no
    separate negative prompt.
    """
    if variant < 0:
        raise ValueError(f"variant must not be negative, got {variant}")
    prompt = catalogue.prompt(prompt_index)
    # Beyond the phrase list repeats fall back to earlier phrases; the distinct seed still varies
    # the image, and catalogue validation guarantees this never happens within a sold pack.
    pose = catalogue.variations[variant % len(catalogue.variations)]
    scene = [_sentence(prompt.text), _sentence(f"Pose and expression: {pose}")]
    return _with_identity(catalogue, prompt, avatar_context, scene, ())


def build_grid_prompt(
    catalogue: Catalogue, prompt_index: int, variants: Sequence[int], avatar_context: str | None
) -> str:
    """The one text sent for a grid: the scene once, then each panel's pose by its place (variants in
    slot order, row-major). Only the slot-0 task's create sends it."""
    grid = catalogue.grid
    if grid is None:
        raise ValueError("the catalogue has no grid instructions")
    if len(variants) != GRID_PANELS or any(variant < 0 for variant in variants):
        raise ValueError(f"a grid needs {GRID_PANELS} non-negative variants, got {list(variants)}")
    prompt = catalogue.prompt(prompt_index)
    scene = [_sentence(grid.instruction), _sentence(f"The scene of every panel: {prompt.text}")]
    for label, variant in zip(grid.panel_labels, variants, strict=True):
        pose = catalogue.variations[variant % len(catalogue.variations)]
        scene.append(_sentence(f"Panel {label}: {pose}"))
    return _with_identity(catalogue, prompt, avatar_context, scene, grid.negative)


def _with_identity(
    catalogue: Catalogue, prompt: Prompt, avatar_context: str | None, scene: list[str], avoid: Sequence[str]
) -> str:
    """``scene`` between the identity instructions every portrait carries: who the person is before
    it, how to keep their likeness and what to avoid after it."""
    identity = catalogue.identity
    parts = [_sentence(identity.preamble)]
    subject = _clean_avatar_context(avatar_context)
    if subject:
        parts.append(_sentence(f"The person is {subject}"))
    parts.extend(scene)
    parts.append(_sentence(identity.suffix))
    if prompt.medium is Medium.PHOTO:
        parts.append(_sentence(identity.photo_suffix))
    # Semicolons, because single avoid items contain commas ("text, logos or watermarks").
    parts.append(_sentence("Avoid: " + "; ".join((*identity.avoid_list(prompt.medium), *avoid))))
    return " ".join(parts)


def settle_job(total: int, stored_or_delivered: int, skipped: int) -> JobOutcome | None:
    """The final outcome of a job once every task has ended, or None while some are still running.

    Only stored/delivered and skipped tasks are final: any other task may still become a portrait.
    """
    if total < 1:
        raise ValueError(f"a job has at least one task, got total={total}")
    if stored_or_delivered < 0 or skipped < 0:
        raise ValueError("task counts must not be negative")
    finished = stored_or_delivered + skipped
    if finished > total:
        raise ValueError(f"{finished} finished tasks exceed the job's {total}")
    if finished < total:
        return None
    if skipped == 0:
        status = JobStatus.COMPLETED
    elif stored_or_delivered == 0:
        status = JobStatus.FAILED
    else:
        status = JobStatus.PARTIAL
    return JobOutcome(status=status, succeeded=stored_or_delivered, skipped=skipped)


def credits_to_release(outcome: JobOutcome) -> int:
    """How many photo credits the job gives back: one per skipped photo.

    Releases are written per task (``credits.release_line_for_task``) as each task is skipped,
    so this is the total those lines must add up to, not an extra release to write.
    """
    return outcome.skipped


def _clean_avatar_context(avatar_context: str | None) -> str:
    if not avatar_context:
        return ""
    # Free text from the user: one line, bounded, no trailing punctuation to double up.
    single_line = " ".join(avatar_context.split())
    return single_line[:AVATAR_CONTEXT_MAX_CHARS].rstrip(" .;,")


def _sentence(text: str) -> str:
    stripped = text.strip()
    return stripped if stripped.endswith((".", "!", "?")) else f"{stripped}."
