"""Redos: a new take of one delivered portrait (same prompt, new seed), asked for by replying to it,
and the likeness guarantee that redoes a pack's unlike portraits by itself.

Pure rules of plain data: what a reply asks for, what a redo costs, how many portraits of a pack
the guarantee promises, and which of them it redoes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum

from studio.generation import PlannedTask, task_seed

# What a reply says to ask for a redo: the emoji, the words in both languages, the command. The
# whole message, in any case, with a trailing "!" or "." forgiven ("Ещё!", "Redo.").
_TRIGGER = re.compile(r"^\s*(?:🔁|redo|ещё|еще|/redo(?:@\w+)?)\s*[!.]*\s*$", re.IGNORECASE)


class RedoKind(StrEnum):
    FREE = "free"  # one of the pack's free redos
    PAID = "paid"  # one credit from the balance
    GUARANTEE = "guarantee"  # the likeness guarantee's own, free


def is_redo_trigger(text: str | None) -> bool:
    return bool(text) and _TRIGGER.match(text or "") is not None


def redo_kind(free_used: int, free_per_pack: int) -> RedoKind:
    """A reply's redo is free while the pack has free redos left, otherwise it costs one credit."""
    return RedoKind.FREE if free_used < max(free_per_pack, 0) else RedoKind.PAID


def guaranteed(photos: int, share: float) -> int:
    """How many portraits of a pack of ``photos`` the guarantee promises pass the likeness check:
    ``share`` of the pack, rounded up (0.65 of 23 → 15, of 7 → 5); 0 turns the guarantee off."""
    if photos < 1 or share <= 0:
        return 0
    return min(photos, math.ceil(round(photos * min(share, 1.0), 6)))


def guarantee_redos(promised: int, passed: int, unlike: Sequence[int]) -> list[int]:
    """Which unlike portraits (task ids, in delivery order) the guarantee redoes: as many as the pack
    falls short of ``promised``, from the first unlike one on."""
    missing = max(promised - passed, 0)
    return list(unlike[:missing])


def plan_redo_tasks(job_id: int, sources: Sequence[tuple[int, int]]) -> list[PlannedTask]:
    """The tasks of a redo job: one per redone portrait (its ``(prompt_index, variant)``), the same
    prompt and pose, a seed of the new job (so a new take). A pack's portraits never share a
    (prompt, variant), so neither do the tasks of one redo."""
    return [
        PlannedTask(position=position, prompt_index=prompt, variant=variant, seed=task_seed(job_id, prompt, variant))
        for position, (prompt, variant) in enumerate(sources)
    ]
