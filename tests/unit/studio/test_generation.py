from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from studio import generation
from studio.catalogue import Catalogue, load_catalogue
from studio.generation import (
    AVATAR_CONTEXT_MAX_CHARS,
    JobOutcome,
    build_grid_prompt,
    build_prompt,
    credits_to_release,
    plan_grid_tasks,
    plan_tasks,
    settle_job,
    task_seed,
)
from studio.states import JobStatus

STYLE_IDS = ("professional", "lifestyle", "creative")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.mark.parametrize("style_id", STYLE_IDS)
@pytest.mark.parametrize("photos", [3, 7, 9, 15, 23])
def test_plan_cycles_through_the_style_order(catalogue: Catalogue, style_id: str, photos: int) -> None:
    style = catalogue.style(style_id)
    order = style.prompt_indices
    plan = plan_tasks(style, photos, job_id=42)

    assert [task.position for task in plan] == list(range(photos))
    assert [task.prompt_index for task in plan] == [order[i % len(order)] for i in range(photos)]
    assert [task.variant for task in plan] == [i // len(order) for i in range(photos)]
    assert len({(task.prompt_index, task.variant) for task in plan}) == photos
    seeds = [task.seed for task in plan]
    assert len(set(seeds)) == photos
    assert all(1 <= seed <= 2**31 - 1 for seed in seeds)


def test_plan_for_23_photos_repeats_each_prompt_with_next_variant(catalogue: Catalogue) -> None:
    plan = plan_tasks(catalogue.style("professional"), 23, job_id=7)
    first_round = [(task.prompt_index, task.variant) for task in plan[:9]]
    assert first_round == [(index, 0) for index in (3, 4, 11, 6, 18, 21, 0, 19, 7)]
    assert [(task.prompt_index, task.variant) for task in plan[9:11]] == [(3, 1), (4, 1)]
    assert [(task.prompt_index, task.variant) for task in plan[18:]] == [
        (3, 2),
        (4, 2),
        (11, 2),
        (6, 2),
        (18, 2),
    ]


def test_plan_is_deterministic_and_seeds_depend_on_the_job(catalogue: Catalogue) -> None:
    style = catalogue.style("creative")
    assert plan_tasks(style, 15, job_id=1) == plan_tasks(style, 15, job_id=1)
    seeds_job_1 = {task.seed for task in plan_tasks(style, 15, job_id=1)}
    seeds_job_2 = {task.seed for task in plan_tasks(style, 15, job_id=2)}
    assert seeds_job_1 != seeds_job_2


def test_seed_is_the_same_in_another_process_with_another_hash_salt() -> None:
    code = "from studio.generation import task_seed; print(task_seed(123, 14, 2))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert int(result.stdout) == task_seed(123, 14, 2)


def test_seeds_are_distinct_for_every_prompt_and_many_variants() -> None:
    seeds = {task_seed(99, prompt_index, variant) for prompt_index in range(23) for variant in range(50)}
    assert len(seeds) == 23 * 50


@pytest.mark.parametrize("photos", [0, -1])
def test_plan_refuses_empty_jobs(catalogue: Catalogue, photos: int) -> None:
    with pytest.raises(ValueError):
        plan_tasks(catalogue.style("lifestyle"), photos, job_id=1)


def test_prompt_combines_style_identity_pose_and_avatar_context(catalogue: Catalogue) -> None:
    text = build_prompt(catalogue, 3, 0, "a woman in her 30s")
    prompt = catalogue.prompt(3)
    identity = catalogue.identity
    assert prompt.text in text
    assert text.startswith(identity.preamble)
    assert identity.suffix in text
    assert identity.photo_suffix in text
    assert "The person is a woman in her 30s." in text
    assert catalogue.variations[0] in text
    assert all(item in text for item in identity.negative + identity.photo_negative)


def test_prompt_variants_differ_and_are_stable(catalogue: Catalogue) -> None:
    texts = [build_prompt(catalogue, 0, variant, None) for variant in range(3)]
    assert len(set(texts)) == 3
    assert texts[1] == build_prompt(catalogue, 0, 1, None)
    assert catalogue.variations[1] in texts[1]


def test_prompt_without_avatar_context_has_no_subject_sentence(catalogue: Catalogue) -> None:
    assert "The person is" not in build_prompt(catalogue, 1, 0, None)
    assert "The person is" not in build_prompt(catalogue, 1, 0, "   ")


def test_painting_prompt_does_not_ask_for_a_photograph(catalogue: Catalogue) -> None:
    text = build_prompt(catalogue, 14, 0, None)
    assert catalogue.identity.photo_suffix not in text
    assert "Photorealistic" not in text
    assert "illustration" not in text  # a photo-only avoid term would fight the painting
    assert catalogue.identity.suffix in text


def test_avatar_context_is_one_bounded_line(catalogue: Catalogue) -> None:
    context = "a man\nin his 40s.\n\nwith a beard " + "x" * 500
    text = build_prompt(catalogue, 2, 0, context)
    expected_subject = ("a man in his 40s. with a beard " + "x" * 500)[:AVATAR_CONTEXT_MAX_CHARS]
    assert f"The person is {expected_subject}. " in text
    assert "\n" not in text
    assert "x" * (AVATAR_CONTEXT_MAX_CHARS + 1) not in text


def test_prompt_rejects_unknown_index_and_negative_variant(catalogue: Catalogue) -> None:
    with pytest.raises(KeyError):
        build_prompt(catalogue, 23, 0, None)
    with pytest.raises(ValueError):
        build_prompt(catalogue, 0, -1, None)


@pytest.mark.parametrize(
    ("total", "succeeded", "skipped"),
    [(23, 0, 0), (23, 22, 0), (7, 3, 3), (3, 0, 2)],
)
def test_job_is_unsettled_while_tasks_remain(total: int, succeeded: int, skipped: int) -> None:
    assert settle_job(total, succeeded, skipped) is None


@pytest.mark.parametrize(
    ("total", "succeeded", "skipped", "status"),
    [
        (23, 23, 0, JobStatus.COMPLETED),
        (23, 20, 3, JobStatus.PARTIAL),
        (7, 1, 6, JobStatus.PARTIAL),
        (3, 0, 3, JobStatus.FAILED),
    ],
)
def test_job_outcome_and_credits_released(total: int, succeeded: int, skipped: int, status: JobStatus) -> None:
    outcome = settle_job(total, succeeded, skipped)
    assert outcome == JobOutcome(status=status, succeeded=succeeded, skipped=skipped)
    assert credits_to_release(outcome) == skipped


@pytest.mark.parametrize(
    ("total", "succeeded", "skipped"),
    [(0, 0, 0), (5, 4, 2), (5, -1, 1), (5, 1, -1)],
)
def test_impossible_counts_are_refused(total: int, succeeded: int, skipped: int) -> None:
    with pytest.raises(ValueError):
        settle_job(total, succeeded, skipped)


def test_seeds_are_pinned_values_because_stored_tasks_and_providers_keep_them() -> None:
    """A retried or resumed task must ask for the very seed it was planned with, in any release."""
    assert [task_seed(42, 0, 0), task_seed(42, 3, 1), task_seed(7, 0, 2)] == [169800639, 169800650, 167846806]
    assert task_seed(2**40, 5, 0) == 1673029763


@pytest.mark.parametrize(("prompt_index", "variant"), [(-1, 0), (0, -1)])
def test_a_seed_for_a_negative_index_or_variant_is_refused(prompt_index: int, variant: int) -> None:
    with pytest.raises(ValueError, match=r"^prompt_index and variant must not be negative$"):
        task_seed(1, prompt_index, variant)


def test_a_one_photo_job_is_planned_and_an_empty_one_refused_with_the_count(catalogue: Catalogue) -> None:
    assert [task.position for task in plan_tasks(catalogue.style("professional"), 1, job_id=1)] == [0]
    with pytest.raises(ValueError, match=r"^a job needs at least one photo, got 0$"):
        plan_tasks(catalogue.style("professional"), 0, job_id=1)


def test_a_prompt_ends_with_its_avoid_list_as_one_sentence(catalogue: Catalogue) -> None:
    prompt = catalogue.prompt(3)
    avoid = "; ".join(catalogue.identity.avoid_list(prompt.medium))
    text = build_prompt(catalogue, 3, 0, None)
    assert text.endswith(f" Avoid: {avoid.rstrip('.')}.")
    with pytest.raises(ValueError, match=r"^variant must not be negative, got -1$"):
        build_prompt(catalogue, 3, -1, None)


@pytest.mark.parametrize(
    ("context", "subject"),
    [
        ("a woman in her 30s;", "a woman in her 30s"),
        ("a man with a beard, ", "a man with a beard"),
        ("a fan of Malcolm X.", "a fan of Malcolm X"),
        (". a painter", ". a painter"),
    ],
)
def test_trailing_punctuation_of_the_avatar_context_is_dropped_not_leading(
    catalogue: Catalogue, context: str, subject: str
) -> None:
    assert f"The person is {subject}. " in build_prompt(catalogue, 3, 0, context)


@pytest.mark.parametrize(("text", "sentence"), [("Done.", "Done."), ("Go!", "Go!"), ("Why?", "Why?"), (" Hi ", "Hi.")])
def test_a_sentence_keeps_its_own_end_mark_or_gets_a_full_stop(text: str, sentence: str) -> None:
    assert generation._sentence(text) == sentence


def test_a_one_task_job_settles_and_bad_counts_say_what_is_wrong() -> None:
    assert settle_job(1, 1, 0) == JobOutcome(JobStatus.COMPLETED, 1, 0)
    with pytest.raises(ValueError, match=r"^a job has at least one task, got total=0$"):
        settle_job(0, 0, 0)
    with pytest.raises(ValueError, match=r"^task counts must not be negative$"):
        settle_job(3, -1, 0)
    with pytest.raises(ValueError, match=r"^4 finished tasks exceed the job's 3$"):
        settle_job(3, 2, 2)


def test_a_style_without_prompts_is_refused_by_name(catalogue: Catalogue) -> None:
    empty = dataclasses.replace(catalogue.style("professional"), prompt_indices=())
    with pytest.raises(ValueError, match=r"^style 'professional' has no prompts$"):
        plan_tasks(empty, 3, job_id=1)


# ---------------------------------------------------------------- grid packs


@pytest.mark.parametrize("style_id", STYLE_IDS)
@pytest.mark.parametrize("photos", [4, 24, 40, 72])
def test_a_grid_plan_is_groups_of_four_panels_of_one_prompt_each_its_own_pose(
    catalogue: Catalogue, style_id: str, photos: int
) -> None:
    style = catalogue.style(style_id)
    order = style.prompt_indices
    plan = plan_grid_tasks(style, photos, job_id=7)
    assert [task.position for task in plan] == list(range(photos))
    assert [task.grid_group for task in plan] == [i // 4 for i in range(photos)]
    assert [task.grid_slot for task in plan] == [i % 4 for i in range(photos)]
    for group in range(photos // 4):
        panels = plan[group * 4 : group * 4 + 4]
        assert {task.prompt_index for task in panels} == {order[group % len(order)]}
        first = (group // len(order)) * 4
        assert [task.variant for task in panels] == [first, first + 1, first + 2, first + 3]
    # The tasks table's UNIQUE (job, prompt_index, variant), and a seed of its own per task.
    assert len({(task.prompt_index, task.variant) for task in plan}) == photos
    assert [task.seed for task in plan] == [task_seed(7, task.prompt_index, task.variant) for task in plan]
    assert len({task.seed for task in plan}) == photos


def test_the_lite_pack_plans_six_grids(catalogue: Catalogue) -> None:
    plan = plan_grid_tasks(catalogue.style("professional"), catalogue.pack("lite").photos, job_id=1)
    assert len(plan) == 24 and len({task.grid_group for task in plan}) == 6


@pytest.mark.parametrize("photos", [0, 3, 5, 23])
def test_a_grid_plan_refuses_a_count_that_is_not_whole_grids(catalogue: Catalogue, photos: int) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_grid_tasks(catalogue.style("professional"), photos, job_id=1)


def test_ordinary_plans_carry_no_grid(catalogue: Catalogue) -> None:
    plan = plan_tasks(catalogue.style("professional"), 7, job_id=1)
    assert all(task.grid_group is None and task.grid_slot is None for task in plan)


def test_a_grid_prompt_asks_for_one_grid_with_each_panel_its_own_pose(catalogue: Catalogue) -> None:
    assert catalogue.grid is not None
    prompt = build_grid_prompt(catalogue, 3, [4, 5, 6, 7], "a tall woman with red hair.")
    assert catalogue.grid.instruction in prompt
    assert "2×2 grid" in prompt  # what the fake Kie draws a grid for
    assert catalogue.prompt(3).text in prompt and prompt.count(catalogue.prompt(3).text) == 1
    for label, variant in zip(catalogue.grid.panel_labels, [4, 5, 6, 7], strict=True):
        assert f"Panel {label}: {catalogue.variations[variant]}." in prompt
    assert "The person is a tall woman with red hair." in prompt
    assert catalogue.identity.suffix in prompt
    assert all(item in prompt for item in catalogue.grid.negative)
    # Panels in slot order: the top-left pose comes first.
    assert prompt.index(catalogue.variations[4]) < prompt.index(catalogue.variations[7])


@pytest.mark.parametrize("variants", [[0, 1, 2], [0, 1, 2, 3, 4], [0, -1, 2, 3]])
def test_a_grid_prompt_needs_four_panels(catalogue: Catalogue, variants: list[int]) -> None:
    with pytest.raises(ValueError):
        build_grid_prompt(catalogue, 0, variants, None)


def test_a_grid_prompt_needs_the_catalogues_grid_instructions(catalogue: Catalogue) -> None:
    with pytest.raises(ValueError, match="no grid instructions"):
        build_grid_prompt(dataclasses.replace(catalogue, grid=None), 0, [0, 1, 2, 3], None)
