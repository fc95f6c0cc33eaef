"""storage.images.split_grid: a 2×2 grid becomes four panels, row-major, borders and gutters trimmed."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image, ImageChops

from storage.images import split_grid

PANEL = (100, 120)


def noise_panel(seed: int, size: tuple[int, int] = PANEL) -> Image.Image:
    """A panel no row or column of which is near white (channels within 0..199), distinct per seed."""
    channels = [
        Image.effect_noise(size, 40).point(lambda v, s=seed, c=c: (v + 17 * s + 31 * c) % 200) for c in range(3)
    ]
    return Image.merge("RGB", channels)


def grid(panels: list[Image.Image], *, gutter: int = 0, margin: int = 0) -> Image.Image:
    width, height = panels[0].size
    canvas = Image.new("RGB", (2 * width + gutter + 2 * margin, 2 * height + gutter + 2 * margin), (255, 255, 255))
    for index, panel in enumerate(panels):
        row, column = divmod(index, 2)
        canvas.paste(panel, (margin + column * (width + gutter), margin + row * (height + gutter)))
    return canvas


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def same_pixels(data: bytes, expected: Image.Image) -> bool:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return image.size == expected.size and ImageChops.difference(image, expected).getbbox() is None


def test_white_gutters_and_margin_are_trimmed_from_every_panel_in_row_major_order() -> None:
    panels = [noise_panel(seed) for seed in range(4)]
    quarters = split_grid(png(grid(panels, gutter=8, margin=5)))
    assert len(quarters) == 4
    for quarter, panel in zip(quarters, panels, strict=True):
        assert quarter[:8] == b"\x89PNG\r\n\x1a\n"  # a PNG grid gives PNG panels
        assert same_pixels(quarter, panel)


def test_a_grid_without_gutters_splits_into_its_exact_panels() -> None:
    panels = [noise_panel(seed) for seed in range(10, 14)]
    quarters = split_grid(png(grid(panels)))
    assert all(same_pixels(quarter, panel) for quarter, panel in zip(quarters, panels, strict=True))
    assert len({hashlib.sha256(quarter).hexdigest() for quarter in quarters}) == 4


def test_odd_sizes_give_the_extra_column_and_row_to_the_right_and_bottom_panels() -> None:
    image = noise_panel(20, (201, 241))
    sizes = [Image.open(io.BytesIO(quarter)).size for quarter in split_grid(png(image))]
    assert sizes == [(100, 120), (101, 120), (100, 121), (101, 121)]


def test_a_jpeg_grid_with_off_white_gutters_gives_jpeg_panels_of_the_panel_size() -> None:
    panels = [noise_panel(seed) for seed in range(30, 34)]
    image = grid(panels, gutter=10, margin=6)
    # A model's gutters are rarely pure white, and JPEG rings around them.
    image.paste((245, 247, 250), (0, 0, image.width, 6))
    quarters = split_grid(jpeg(image))
    for quarter in quarters:
        assert quarter[:2] == b"\xff\xd8"
        width, height = Image.open(io.BytesIO(quarter)).size
        assert abs(width - PANEL[0]) <= 2 and abs(height - PANEL[1]) <= 2, (width, height)


def test_a_plain_backdrop_is_not_cropped_down_to_the_subject() -> None:
    # A white studio backdrop around a small subject: the trim stops at a fifth of each side.
    panel = Image.new("RGB", PANEL, (255, 255, 255))
    panel.paste(noise_panel(40, (20, 20)), (40, 50))
    quarters = split_grid(png(grid([panel, *[noise_panel(seed) for seed in range(41, 44)]], gutter=6)))
    width, height = Image.open(io.BytesIO(quarters[0])).size
    assert width >= PANEL[0] * 0.6 and height >= PANEL[1] * 0.6


def test_something_too_small_to_be_a_grid_is_refused() -> None:
    with pytest.raises(ValueError):
        split_grid(png(Image.new("RGB", (1, 1))))
