from __future__ import annotations

import copy
import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from studio.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    Catalogue,
    CatalogueError,
    LocalizedText,
    Medium,
    load_catalogue,
    parse_catalogue,
)

EXPECTED_STYLE_ORDERS = {
    "professional": (3, 4, 11, 6, 18, 21, 0, 19, 7),
    "lifestyle": (0, 1, 2, 5, 8, 12, 15, 20, 22),
    "creative": (7, 9, 10, 13, 14, 16, 17, 19, 21),
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture()
def raw() -> dict[str, Any]:
    return json.loads(DEFAULT_CATALOGUE_PATH.read_text(encoding="utf-8"))


def test_shipped_catalogue_has_23_prompts_indexed_0_to_22(catalogue: Catalogue) -> None:
    assert [prompt.index for prompt in catalogue.prompts] == list(range(23))
    assert len({prompt.id for prompt in catalogue.prompts}) == 23
    assert len({prompt.text for prompt in catalogue.prompts}) == 23


def test_style_orders_are_exactly_the_product_orders(catalogue: Catalogue) -> None:
    assert {style.id: style.prompt_indices for style in catalogue.styles} == EXPECTED_STYLE_ORDERS
    assert [style.id for style in catalogue.styles] == ["professional", "lifestyle", "creative"]


def test_packs_sizes_prices_and_trial(catalogue: Catalogue) -> None:
    paid = {pack.id: pack for pack in catalogue.paid_packs() if not pack.grid}
    assert {pack_id: pack.photos for pack_id, pack in paid.items()} == {"p7": 7, "p15": 15, "p23": 23}
    for pack in paid.values():
        assert pack.price_rub_kopecks > 0 and pack.price_stars > 0
        assert not pack.is_trial and not pack.is_free and not pack.low_priority
    # A bigger pack costs more in total but less per photo, or nobody would buy it.
    ordered = [paid["p7"], paid["p15"], paid["p23"]]
    for smaller, bigger in pairwise(ordered):
        assert bigger.price_rub_kopecks > smaller.price_rub_kopecks
        assert bigger.price_rub_kopecks / bigger.photos < smaller.price_rub_kopecks / smaller.photos
        assert bigger.price_stars / bigger.photos < smaller.price_stars / smaller.photos
    trial = catalogue.trial_pack()
    assert trial is not None and trial.id == "trial"
    assert trial.photos == 3 and trial.is_free and trial.once_per_user and trial.low_priority


def test_every_user_visible_text_has_russian_and_english(catalogue: Catalogue) -> None:
    texts: list[LocalizedText] = [prompt.title for prompt in catalogue.prompts]
    texts += [style.name for style in catalogue.styles] + [style.description for style in catalogue.styles]
    texts += [pack.title for pack in catalogue.packs]
    for text in texts:
        assert text.ru.strip() and text.en.strip()
        assert any("а" <= char.lower() <= "я" for char in text.ru), text.ru


def test_painting_prompts_are_only_used_by_the_creative_style(catalogue: Catalogue) -> None:
    paintings = {prompt.index for prompt in catalogue.prompts if prompt.medium is Medium.PAINTING}
    assert paintings == {14}
    assert paintings <= set(catalogue.style("creative").prompt_indices)


def test_lookups(catalogue: Catalogue) -> None:
    assert catalogue.style("lifestyle").id == "lifestyle"
    assert catalogue.pack("p15").photos == 15
    assert catalogue.prompt(22).index == 22
    assert catalogue.find_style("forged") is None
    assert catalogue.find_pack("p999") is None
    with pytest.raises(KeyError):
        catalogue.style("forged")
    with pytest.raises(KeyError):
        catalogue.pack("p999")
    with pytest.raises(KeyError):
        catalogue.prompt(23)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ru", "Деловой"),
        ("en", "Professional"),
        ("en-US", "Professional"),
        ("de", "Деловой"),
        (None, "Деловой"),
    ],
)
def test_localized_text_language_choice(catalogue: Catalogue, language: str | None, expected: str) -> None:
    assert catalogue.style("professional").name.get(language) == expected


def test_load_from_explicit_path(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["packs"][1]["price_stars"] = 300
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert load_catalogue(path).pack("p7").price_stars == 300


def test_broken_json_file_is_a_catalogue_error(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid JSON"):
        load_catalogue(path)


def _without_prompt(data: dict[str, Any]) -> None:
    data["prompts"].pop()


def _duplicate_prompt_index(data: dict[str, Any]) -> None:
    data["prompts"][5]["index"] = 4


def _prompt_index_out_of_range(data: dict[str, Any]) -> None:
    data["prompts"][22]["index"] = 23


def _style_index_missing(data: dict[str, Any]) -> None:
    data["styles"][0]["prompt_indices"].append(23)


def _style_index_repeated(data: dict[str, Any]) -> None:
    data["styles"][1]["prompt_indices"].append(0)


def _style_index_is_text(data: dict[str, Any]) -> None:
    data["styles"][2]["prompt_indices"][0] = "7"


def _style_without_english_name(data: dict[str, Any]) -> None:
    del data["styles"][0]["name"]["en"]


def _style_with_blank_russian_description(data: dict[str, Any]) -> None:
    data["styles"][2]["description"]["ru"] = "  "


def _prompt_without_russian_title(data: dict[str, Any]) -> None:
    del data["prompts"][3]["title"]["ru"]


def _pack_without_title(data: dict[str, Any]) -> None:
    del data["packs"][2]["title"]


def _paid_pack_free(data: dict[str, Any]) -> None:
    data["packs"][1]["price_rub_kopecks"] = 0


def _paid_pack_negative_stars(data: dict[str, Any]) -> None:
    data["packs"][3]["price_stars"] = -5


def _trial_with_price(data: dict[str, Any]) -> None:
    data["packs"][0]["price_stars"] = 10


def _two_trials(data: dict[str, Any]) -> None:
    data["packs"].append({**data["packs"][0], "id": "trial2"})


def _duplicate_style_id(data: dict[str, Any]) -> None:
    data["styles"][1]["id"] = "professional"


def _duplicate_pack_id(data: dict[str, Any]) -> None:
    data["packs"][2]["id"] = "p7"


def _photos_as_bool(data: dict[str, Any]) -> None:
    data["packs"][1]["photos"] = True


def _russian_prompt_text(data: dict[str, Any]) -> None:
    data["prompts"][0]["text"] = "Деловой портрет в офисе"


def _unknown_medium(data: dict[str, Any]) -> None:
    data["prompts"][0]["medium"] = "sculpture"


def _too_few_variations(data: dict[str, Any]) -> None:
    # p23 over a 9-prompt style repeats each prompt 3 times, which needs 3 phrases; Lite's grids
    # (6 of four panels) use a prompt for four panels, which needs 4.
    data["variations"] = data["variations"][:2]


def _grid_pack_not_divisible_by_four(data: dict[str, Any]) -> None:
    _lite(data)["photos"] = 22


def _grid_without_instructions(data: dict[str, Any]) -> None:
    del data["grid"]


def _grid_with_three_panel_labels(data: dict[str, Any]) -> None:
    data["grid"]["panel_labels"] = data["grid"]["panel_labels"][:3]


def _grid_flag_as_string(data: dict[str, Any]) -> None:
    _lite(data)["grid"] = "yes"


def _grid_trial(data: dict[str, Any]) -> None:
    trial = next(pack for pack in data["packs"] if pack["is_trial"])
    trial["grid"] = True
    trial["photos"] = 4


def _lite(data: dict[str, Any]) -> dict[str, Any]:
    pack: dict[str, Any] = next(pack for pack in data["packs"] if pack["id"] == "lite")
    return pack


def _empty_negative_list(data: dict[str, Any]) -> None:
    data["identity"]["negative"] = []


def _missing_preamble(data: dict[str, Any]) -> None:
    del data["identity"]["preamble"]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_without_prompt, "expected 23 prompts"),
        (_duplicate_prompt_index, "duplicate prompt index 4"),
        (_prompt_index_out_of_range, "outside 0..22"),
        (_style_index_missing, "23 is not a prompt index"),
        (_style_index_repeated, "listed twice"),
        (_style_index_is_text, "is not a prompt index"),
        (_style_without_english_name, r"styles\[0\].name.en"),
        (_style_with_blank_russian_description, r"styles\[2\].description.ru"),
        (_prompt_without_russian_title, r"prompts\[3\].title.ru"),
        (_pack_without_title, r"packs\[2\].title"),
        (_paid_pack_free, "positive RUB and Stars prices"),
        (_paid_pack_negative_stars, "price_stars: must be at least 0"),
        (_trial_with_price, "trial pack must be free"),
        (_two_trials, "at most one trial pack"),
        (_duplicate_style_id, "duplicate style id"),
        (_duplicate_pack_id, "duplicate pack id"),
        (_photos_as_bool, "photos: expected an integer"),
        (_russian_prompt_text, "must be English"),
        (_unknown_medium, "not one of photo, painting"),
        (_too_few_variations, "need 4 repeats"),
        (_grid_pack_not_divisible_by_four, "divisible by 4"),
        (_grid_without_instructions, "needs the grid instructions"),
        (_grid_with_three_panel_labels, "expected 4 labels"),
        (_grid_flag_as_string, "grid: must be true or false"),
        (_grid_trial, "trial pack cannot be a grid pack"),
        (_empty_negative_list, "identity.negative: must not be empty"),
        (_missing_preamble, "identity.preamble"),
    ],
)
def test_invalid_catalogue_is_refused_with_a_clear_error(raw: dict[str, Any], breakage: Any, message: str) -> None:
    broken = copy.deepcopy(raw)
    breakage(broken)
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(broken)


def test_the_unbroken_fixture_parses(raw: dict[str, Any]) -> None:
    # Guards the parametrised test above: its failures must come from the breakage alone.
    assert parse_catalogue(raw) == load_catalogue()


def test_lite_is_the_one_grid_pack_cheaper_per_photo_than_every_other(catalogue: Catalogue) -> None:
    lite = catalogue.pack("lite")
    assert [pack.id for pack in catalogue.packs if pack.grid] == ["lite"]
    assert (lite.photos, lite.price_rub_kopecks, lite.price_stars) == (24, 79000, 400)
    assert not lite.is_trial and not lite.low_priority
    for pack in catalogue.paid_packs():
        if pack is not lite:
            assert lite.price_rub_kopecks / lite.photos < pack.price_rub_kopecks / pack.photos
            assert lite.price_stars / lite.photos < pack.price_stars / pack.photos
    assert catalogue.grid is not None and len(catalogue.grid.panel_labels) == 4


def test_grid_packs_are_offered_only_with_a_grid_capable_model(catalogue: Catalogue) -> None:
    assert catalogue.offered_packs(grid_capable=True) == catalogue.packs
    assert [pack.id for pack in catalogue.offered_packs(grid_capable=False)] == ["trial", "p7", "p15", "p23"]
