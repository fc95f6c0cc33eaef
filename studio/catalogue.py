"""The product catalogue: prompts, styles, packs and the identity-preserving instructions.

The content lives in ``catalogue.json`` so that copy and prices change without code changes; this
module turns it into frozen dataclasses and refuses to load anything inconsistent, because a bad
catalogue would otherwise surface only when a paying user hits the broken style or pack.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")
PROMPT_COUNT = 23
LANGUAGES = ("ru", "en")
# A grid create draws this many portraits in one image: a 2×2 grid (studio.generation.plan_grid_tasks).
GRID_PANELS = 4
# Providers receive English prompts only (Kie: "English only"); Cyrillic here is a copy-paste slip.
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")

EnumT = TypeVar("EnumT", bound=StrEnum)


class CatalogueError(ValueError):
    """The catalogue data is inconsistent; the message names the offending field."""


class Medium(StrEnum):
    PHOTO = "photo"
    PAINTING = "painting"


@dataclass(frozen=True, slots=True)
class LocalizedText:
    ru: str
    en: str

    def get(self, language: str | None) -> str:
        # Telegram sends codes such as "en" or "en-US"; only the primary subtag matters here.
        primary = (language or "").split("-")[0].lower()
        if primary == "en":
            return self.en
        if primary == "ru":
            return self.ru
        # Russian first: the audience pays in roubles, so an unknown language falls back to ru.
        return self.ru


@dataclass(frozen=True, slots=True)
class Prompt:
    index: int
    id: str
    title: LocalizedText
    medium: Medium
    text: str


@dataclass(frozen=True, slots=True)
class Style:
    id: str
    name: LocalizedText
    description: LocalizedText
    prompt_indices: tuple[int, ...]
    example_image_key: str | None


@dataclass(frozen=True, slots=True)
class Pack:
    id: str
    title: LocalizedText
    photos: int
    price_rub_kopecks: int
    price_stars: int
    is_trial: bool
    # A grid pack: each create asks for a 2×2 grid of four poses, split into four portraits.
    grid: bool = False

    @property
    def is_free(self) -> bool:
        return self.price_rub_kopecks == 0 and self.price_stars == 0

    @property
    def once_per_user(self) -> bool:
        return self.is_trial

    @property
    def low_priority(self) -> bool:
        # Paid jobs go before free ones in the queue (DESIGN.md, "Queue").
        return self.is_trial


@dataclass(frozen=True, slots=True)
class IdentityInstructions:
    preamble: str
    suffix: str
    photo_suffix: str  # only for photographic prompts: "photorealistic" would fight a painting
    negative: tuple[str, ...]
    photo_negative: tuple[str, ...]  # only for photographic prompts, for the same reason

    def avoid_list(self, medium: Medium) -> tuple[str, ...]:
        return self.negative + (self.photo_negative if medium is Medium.PHOTO else ())


@dataclass(frozen=True, slots=True)
class GridInstructions:
    """How a grid create is asked for: prompt text is data, like every other prompt."""

    instruction: str  # the whole image: one 2×2 grid of four poses, thin white gutters
    panel_labels: tuple[str, ...]  # where each panel sits, in row-major order (one per GRID_PANELS)
    negative: tuple[str, ...]  # added to the avoid list of a grid prompt


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: int
    prompts: tuple[Prompt, ...]  # prompts[i].index == i
    styles: tuple[Style, ...]  # display order
    packs: tuple[Pack, ...]  # display order
    identity: IdentityInstructions
    variations: tuple[str, ...]  # pose/expression phrases; repeat n of a prompt uses variations[n]
    grid: GridInstructions | None = None  # required when any pack is a grid pack

    def prompt(self, index: int) -> Prompt:
        if not 0 <= index < len(self.prompts):
            raise KeyError(f"no prompt with index {index}")
        return self.prompts[index]

    def find_style(self, style_id: str) -> Style | None:
        return next((style for style in self.styles if style.id == style_id), None)

    def style(self, style_id: str) -> Style:
        style = self.find_style(style_id)
        if style is None:
            raise KeyError(f"no style {style_id!r}")
        return style

    def find_pack(self, pack_id: str) -> Pack | None:
        return next((pack for pack in self.packs if pack.id == pack_id), None)

    def pack(self, pack_id: str) -> Pack:
        pack = self.find_pack(pack_id)
        if pack is None:
            raise KeyError(f"no pack {pack_id!r}")
        return pack

    def paid_packs(self) -> tuple[Pack, ...]:
        return tuple(pack for pack in self.packs if not pack.is_trial)

    def trial_pack(self) -> Pack | None:
        return next((pack for pack in self.packs if pack.is_trial), None)

    def offered_packs(self, *, grid_capable: bool) -> tuple[Pack, ...]:
        """The packs to show: grid packs only when the model new work goes to can draw a grid."""
        return tuple(pack for pack in self.packs if grid_capable or not pack.grid)


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read and validate the catalogue; ``path`` defaults to the ``catalogue.json`` shipped here."""
    source = path or DEFAULT_CATALOGUE_PATH
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CatalogueError(f"{source}: not valid JSON: {error}") from error
    return parse_catalogue(data)


def parse_catalogue(data: Any) -> Catalogue:
    """Build a validated catalogue from already-decoded JSON data."""
    root = _mapping(data, "catalogue")
    version = _integer(root, "version", "catalogue", minimum=1)
    identity = _parse_identity(_mapping(root.get("identity"), "identity"))
    variations = tuple(_string_list(root, "variations", "catalogue"))
    prompts = _parse_prompts(_sequence(root.get("prompts"), "prompts"))
    styles = _parse_styles(_sequence(root.get("styles"), "styles"), prompt_count=len(prompts))
    packs = _parse_packs(_sequence(root.get("packs"), "packs"))
    grid = _parse_grid(root.get("grid"), packs)
    _check_variations_cover_repeats(variations, styles, packs)
    return Catalogue(
        version=version,
        prompts=prompts,
        styles=styles,
        packs=packs,
        identity=identity,
        variations=variations,
        grid=grid,
    )


def _parse_identity(raw: Mapping[str, Any]) -> IdentityInstructions:
    return IdentityInstructions(
        preamble=_string(raw, "preamble", "identity"),
        suffix=_string(raw, "suffix", "identity"),
        photo_suffix=_string(raw, "photo_suffix", "identity"),
        negative=tuple(_string_list(raw, "negative", "identity")),
        photo_negative=tuple(_string_list(raw, "photo_negative", "identity")),
    )


def _parse_grid(raw: Any, packs: Sequence[Pack]) -> GridInstructions | None:
    if raw is None:
        if any(pack.grid for pack in packs):
            raise CatalogueError("grid: a grid pack needs the grid instructions")
        return None
    where = "grid"
    fields = _mapping(raw, where)
    labels = tuple(_string_list(fields, "panel_labels", where))
    if len(labels) != GRID_PANELS:
        raise CatalogueError(f"{where}.panel_labels: expected {GRID_PANELS} labels, found {len(labels)}")
    instruction = _string(fields, "instruction", where)
    negative = tuple(_string_list(fields, "negative", where))
    if any(_CYRILLIC.search(text) for text in (instruction, *labels, *negative)):
        raise CatalogueError(f"{where}: grid prompt text must be English")
    return GridInstructions(instruction=instruction, panel_labels=labels, negative=negative)


def _parse_prompts(raw_prompts: Sequence[Any]) -> tuple[Prompt, ...]:
    if len(raw_prompts) != PROMPT_COUNT:
        raise CatalogueError(f"prompts: expected {PROMPT_COUNT} prompts, found {len(raw_prompts)}")
    by_index: dict[int, Prompt] = {}
    seen_ids: set[str] = set()
    for position, item in enumerate(raw_prompts):
        where = f"prompts[{position}]"
        raw = _mapping(item, where)
        index = _integer(raw, "index", where, minimum=0)
        if index >= PROMPT_COUNT:
            raise CatalogueError(f"{where}.index: {index} is outside 0..{PROMPT_COUNT - 1}")
        if index in by_index:
            raise CatalogueError(f"{where}.index: duplicate prompt index {index}")
        prompt_id = _string(raw, "id", where)
        if prompt_id in seen_ids:
            raise CatalogueError(f"{where}.id: duplicate prompt id {prompt_id!r}")
        seen_ids.add(prompt_id)
        text = _string(raw, "text", where)
        if _CYRILLIC.search(text):
            raise CatalogueError(f"{where}.text: prompt text must be English")
        by_index[index] = Prompt(
            index=index,
            id=prompt_id,
            title=_localized(raw, "title", where),
            medium=_enum(raw, "medium", where, Medium),
            text=text,
        )
    # 23 distinct indices each in 0..22 means every index is present.
    return tuple(by_index[index] for index in range(PROMPT_COUNT))


def _parse_styles(raw_styles: Sequence[Any], prompt_count: int) -> tuple[Style, ...]:
    if not raw_styles:
        raise CatalogueError("styles: at least one style is required")
    styles: list[Style] = []
    for position, item in enumerate(raw_styles):
        where = f"styles[{position}]"
        raw = _mapping(item, where)
        style_id = _string(raw, "id", where)
        if any(style.id == style_id for style in styles):
            raise CatalogueError(f"{where}.id: duplicate style id {style_id!r}")
        indices = _sequence(raw.get("prompt_indices"), f"{where}.prompt_indices")
        if not indices:
            raise CatalogueError(f"{where}.prompt_indices: must not be empty")
        checked: list[int] = []
        for index in indices:
            if not _is_int(index) or not 0 <= index < prompt_count:
                raise CatalogueError(f"{where}.prompt_indices: {index!r} is not a prompt index")
            if index in checked:
                # A repeated index would make plan_tasks reuse a (prompt, variant) pair.
                raise CatalogueError(f"{where}.prompt_indices: index {index} listed twice")
            checked.append(index)
        example = raw.get("example_image_key")
        if example is not None and (not isinstance(example, str) or not example.strip()):
            raise CatalogueError(f"{where}.example_image_key: must be a non-empty string or null")
        styles.append(
            Style(
                id=style_id,
                name=_localized(raw, "name", where),
                description=_localized(raw, "description", where),
                prompt_indices=tuple(checked),
                example_image_key=example,
            )
        )
    return tuple(styles)


def _parse_packs(raw_packs: Sequence[Any]) -> tuple[Pack, ...]:
    packs: list[Pack] = []
    for position, item in enumerate(raw_packs):
        where = f"packs[{position}]"
        raw = _mapping(item, where)
        pack_id = _string(raw, "id", where)
        if any(pack.id == pack_id for pack in packs):
            raise CatalogueError(f"{where}.id: duplicate pack id {pack_id!r}")
        is_trial = raw.get("is_trial")
        if not isinstance(is_trial, bool):
            raise CatalogueError(f"{where}.is_trial: must be true or false")
        grid = raw.get("grid", False)
        if not isinstance(grid, bool):
            raise CatalogueError(f"{where}.grid: must be true or false")
        pack = Pack(
            id=pack_id,
            title=_localized(raw, "title", where),
            photos=_integer(raw, "photos", where, minimum=1),
            price_rub_kopecks=_integer(raw, "price_rub_kopecks", where, minimum=0),
            price_stars=_integer(raw, "price_stars", where, minimum=0),
            is_trial=is_trial,
            grid=grid,
        )
        if grid and pack.photos % GRID_PANELS:
            raise CatalogueError(f"{where}.photos: a grid pack's count must be divisible by {GRID_PANELS}")
        if grid and is_trial:
            # The trial is offered whatever the model; a grid needs a grid-capable one.
            raise CatalogueError(f"{where}: the trial pack cannot be a grid pack")
        if is_trial and not pack.is_free:
            raise CatalogueError(f"{where}: a trial pack must be free (both prices 0)")
        if not is_trial and (pack.price_rub_kopecks <= 0 or pack.price_stars <= 0):
            raise CatalogueError(f"{where}: a paid pack needs positive RUB and Stars prices")
        packs.append(pack)
    if not any(not pack.is_trial for pack in packs):
        raise CatalogueError("packs: at least one paid pack is required")
    if sum(pack.is_trial for pack in packs) > 1:
        raise CatalogueError("packs: at most one trial pack (it is granted once per user)")
    return tuple(packs)


def _check_variations_cover_repeats(variations: Sequence[str], styles: Sequence[Style], packs: Sequence[Pack]) -> None:
    # The biggest pack in the shortest style repeats each prompt this many times; each repeat
    # needs its own pose phrase or two photos of the pack would be asked for identically.
    needed = max(_repeats_needed(pack, style) for pack in packs for style in styles)
    if len(variations) < needed:
        raise CatalogueError(f"variations: {len(variations)} phrases, but packs need {needed} repeats")


def _repeats_needed(pack: Pack, style: Style) -> int:
    if not pack.grid:
        return math.ceil(pack.photos / len(style.prompt_indices))
    # A grid's four panels are four repeats of one prompt (studio.generation.plan_grid_tasks).
    groups = pack.photos // GRID_PANELS
    return math.ceil(groups / len(style.prompt_indices)) * GRID_PANELS


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CatalogueError(f"{where}: expected an object")
    return value


def _sequence(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise CatalogueError(f"{where}: expected a list")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(raw: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CatalogueError(f"{where}.{key}: expected an integer")
    if value < minimum:
        raise CatalogueError(f"{where}.{key}: must be at least {minimum}")
    return value


def _string(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{where}.{key}: expected a non-empty string")
    return value.strip()


def _string_list(raw: Mapping[str, Any], key: str, where: str) -> list[str]:
    values = _sequence(raw.get(key), f"{where}.{key}")
    if not values:
        raise CatalogueError(f"{where}.{key}: must not be empty")
    if not all(isinstance(value, str) and value.strip() for value in values):
        raise CatalogueError(f"{where}.{key}: every entry must be a non-empty string")
    return [value.strip() for value in values]


def _localized(raw: Mapping[str, Any], key: str, where: str) -> LocalizedText:
    texts = _mapping(raw.get(key), f"{where}.{key}")
    ru, en = (_string(texts, language, f"{where}.{key}") for language in LANGUAGES)
    return LocalizedText(ru=ru, en=en)


def _enum(raw: Mapping[str, Any], key: str, where: str, kind: type[EnumT]) -> EnumT:
    value = _string(raw, key, where)
    try:
        return kind(value)
    except ValueError as error:
        allowed = ", ".join(member.value for member in kind)
        raise CatalogueError(f"{where}.{key}: {value!r} is not one of {allowed}") from error
