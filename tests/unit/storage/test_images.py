"""The intake's photo checks and conversions (storage.images) against the generated corpus."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from storage import images
from storage.images import (
    ImageRejected,
    NormalizedPhoto,
    RejectReason,
    SourceFormat,
    fit_for_telegram_photo,
    image_size,
    make_thumbnail,
    register_heif,
    to_jpeg,
    validate_and_normalize,
)
from tests import image_corpus as corpus

REPO_ROOT = Path(__file__).resolve().parents[3]
MEBIBYTE = 1024 * 1024


def jpeg_segment_markers(data: bytes) -> list[int]:
    """The markers of a JPEG's header segments (up to the scan), e.g. 0xE0 for APP0."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    markers: list[int] = []
    position = 2
    while position < len(data):
        assert data[position] == 0xFF
        marker = data[position + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        length = int.from_bytes(data[position + 2 : position + 4])
        position += 2 + length
    return markers


METADATA_MARKERS = {0xE1: "APP1 (EXIF/XMP)", 0xE2: "APP2 (ICC)", 0xED: "APP13 (IPTC)", 0xFE: "COM"}


def assert_clean_jpeg(data: bytes) -> None:
    markers = jpeg_segment_markers(data)
    found = [METADATA_MARKERS[marker] for marker in markers if marker in METADATA_MARKERS]
    assert found == [], f"metadata left in the normalized JPEG: {found}"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.mode == "RGB"
        assert not image.getexif()
        assert "icc_profile" not in image.info


def reason_of(data: bytes, **options: int) -> RejectReason:
    with pytest.raises(ImageRejected) as raised:
        validate_and_normalize(data, **options)
    return raised.value.reason


# --- accepted photos --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "source_format", "size"),
    [
        (corpus.valid_jpeg, SourceFormat.JPEG, (1024, 1280)),
        (corpus.valid_png, SourceFormat.PNG, (1024, 1280)),
        (corpus.valid_webp, SourceFormat.WEBP, (1024, 1280)),
        (corpus.valid_heic, SourceFormat.HEIF, (640, 800)),
        (corpus.mpo_jpeg, SourceFormat.JPEG, (640, 800)),
        (corpus.photo_12mp_jpeg, SourceFormat.JPEG, (4000, 3000)),
    ],
)
def test_accepted_formats_come_back_as_clean_jpeg(
    builder: Callable[[], bytes], source_format: SourceFormat, size: tuple[int, int]
) -> None:
    data = builder()
    photo = validate_and_normalize(data)
    assert isinstance(photo, NormalizedPhoto)
    assert photo.source_format == source_format
    assert (photo.width, photo.height) == size
    assert_clean_jpeg(photo.jpeg)
    with Image.open(io.BytesIO(photo.jpeg)) as decoded:
        assert decoded.size == size
    assert photo.sha256 == hashlib.sha256(photo.jpeg).hexdigest()
    assert photo.original_sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("with_icc_profile", [True, False])
def test_all_metadata_is_stripped(with_icc_profile: bool) -> None:
    data = corpus.jpeg_with_metadata(with_icc_profile)
    assert b"PinGlassTestCamera" in data and b"secret comment" in data  # the sample does carry it
    photo = validate_and_normalize(data)
    assert_clean_jpeg(photo.jpeg)
    assert b"PinGlassTestCamera" not in photo.jpeg
    assert b"secret comment" not in photo.jpeg
    assert b"xmpmeta" not in photo.jpeg


def test_exif_orientation_is_applied() -> None:
    stored_width, stored_height = corpus.ROTATED_STORED_SIZE
    photo = validate_and_normalize(corpus.exif_rotated_jpeg())
    assert (photo.width, photo.height) == (stored_height, stored_width)
    assert_clean_jpeg(photo.jpeg)
    with Image.open(io.BytesIO(photo.jpeg)) as upright:
        top_right = upright.getpixel((upright.width - 20, 20))
        top_left = upright.getpixel((20, 20))
        bottom_left = upright.getpixel((20, upright.height - 20))
    assert is_close(top_right, corpus.ROTATION_MARKER_COLOUR), top_right
    assert is_close(top_left, (0, 0, 255)), top_left
    assert is_close(bottom_left, (0, 0, 255)), bottom_left


def is_close(pixel: object, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(actual - wanted) <= tolerance for actual, wanted in zip(pixel, expected, strict=True))


def test_normalized_hash_is_deterministic_and_tracks_the_pixels() -> None:
    first = validate_and_normalize(corpus.valid_jpeg())
    again = validate_and_normalize(corpus.valid_jpeg())
    assert first.sha256 == again.sha256
    assert first.jpeg == again.jpeg
    # The PNG sample holds exactly the JPEG sample's decoded pixels: same photo, same hash,
    # although the uploaded bytes differ.
    as_png = validate_and_normalize(corpus.valid_png())
    assert as_png.original_sha256 != first.original_sha256
    assert as_png.sha256 == first.sha256
    distinct = {validate_and_normalize(data).sha256 for data in corpus.selfie_set(6)}
    assert len(distinct) == 6


def test_cmyk_is_converted_to_rgb_colours() -> None:
    photo = validate_and_normalize(corpus.cmyk_jpeg())
    with Image.open(io.BytesIO(photo.jpeg)) as image:
        red, green, blue = image.getpixel((320, 320))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_display_p3_colours_are_moved_into_srgb() -> None:
    # The profile is stripped from the output, so the values themselves must become sRGB:
    # P3 (200, 100, 50) is a more saturated orange, ≈ (216, 93, 25) in sRGB.
    photo = validate_and_normalize(corpus.display_p3_jpeg())
    assert_clean_jpeg(photo.jpeg)
    with Image.open(io.BytesIO(photo.jpeg)) as image:
        red, green, blue = image.getpixel((320, 320))  # type: ignore[misc]
    assert red >= 208 and 85 <= green <= 100 and blue <= 38, (red, green, blue)


def test_a_broken_colour_profile_does_not_refuse_the_photo() -> None:
    image = Image.new("RGB", (640, 640), corpus.P3_SAMPLE_COLOUR)
    out = io.BytesIO()
    image.save(out, "JPEG", icc_profile=b"definitely not an ICC profile")
    photo = validate_and_normalize(out.getvalue())
    assert_clean_jpeg(photo.jpeg)
    with Image.open(io.BytesIO(photo.jpeg)) as decoded:
        assert is_close(decoded.getpixel((320, 320)), corpus.P3_SAMPLE_COLOUR, tolerance=4)


def test_transparency_becomes_white() -> None:
    photo = validate_and_normalize(corpus.transparent_png())
    with Image.open(io.BytesIO(photo.jpeg)) as image:
        assert is_close(image.getpixel((100, 320)), (255, 255, 255), tolerance=5)
        assert is_close(image.getpixel((500, 320)), (0, 0, 255), tolerance=10)


def test_sixteen_bit_grey_keeps_its_brightness() -> None:
    photo = validate_and_normalize(corpus.grey16_png())
    with Image.open(io.BytesIO(photo.jpeg)) as image:
        assert is_close(image.getpixel((320, 320)), (128, 128, 128), tolerance=3)


@pytest.mark.parametrize("builder", [corpus.palette_png, corpus.grey_alpha_png])
def test_other_modes_become_rgb(builder: Callable[[], bytes]) -> None:
    assert_clean_jpeg(validate_and_normalize(builder()).jpeg)


def test_large_jpeg_is_capped_at_4096_on_the_long_side() -> None:
    wide = Image.linear_gradient("L").resize((8200, 2400)).convert("RGB")
    out = io.BytesIO()
    wide.save(out, "JPEG", quality=80)
    photo = validate_and_normalize(out.getvalue())
    assert (photo.width, photo.height) == (4096, 1199)
    assert_clean_jpeg(photo.jpeg)


def test_large_png_is_capped_at_4096_on_the_long_side() -> None:
    photo = validate_and_normalize(corpus.black_bilevel_png(5000, 2000))
    assert (photo.width, photo.height) == (4096, 1638)


def test_validation_is_thread_safe() -> None:
    samples = [*corpus.selfie_set(6), corpus.valid_png(), corpus.valid_webp(), corpus.valid_heic()]
    sequential = [validate_and_normalize(data).sha256 for data in samples]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda data: validate_and_normalize(data).sha256, samples * 3))
    assert parallel == sequential * 3


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "reason"),
    [
        (corpus.text_as_jpg, RejectReason.NOT_AN_IMAGE),
        (lambda: b"", RejectReason.NOT_AN_IMAGE),
        (corpus.truncated_jpeg, RejectReason.UNREADABLE),
        (corpus.corrupt_png, RejectReason.UNREADABLE),
        (lambda: corpus.valid_png()[:200], RejectReason.UNREADABLE),
        (lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 100, RejectReason.UNREADABLE),
        (corpus.huge_noise_png, RejectReason.TOO_LARGE_FILE),
        (corpus.tiny_png, RejectReason.TOO_SMALL),
        (corpus.small_jpeg, RejectReason.TOO_SMALL),
        (corpus.too_wide_png, RejectReason.ABSURD_DIMENSIONS),
        (corpus.too_long_side_png, RejectReason.ABSURD_DIMENSIONS),
        (corpus.bomb_png, RejectReason.DECOMPRESSION_BOMB),
        (corpus.moderate_bomb_png, RejectReason.DECOMPRESSION_BOMB),
        (corpus.animated_gif, RejectReason.ANIMATED),
        (corpus.animated_webp, RejectReason.ANIMATED),
        (corpus.animated_png, RejectReason.ANIMATED),
        (corpus.static_gif, RejectReason.UNSUPPORTED_FORMAT),
        (corpus.bmp_image, RejectReason.UNSUPPORTED_FORMAT),
        (corpus.tiff_image, RejectReason.UNSUPPORTED_FORMAT),
        (lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', RejectReason.UNSUPPORTED_FORMAT),
        (lambda: b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64), RejectReason.UNSUPPORTED_FORMAT),
    ],
)
def test_each_bad_upload_gets_its_reason(builder: Callable[[], bytes], reason: RejectReason) -> None:
    assert reason_of(builder()) == reason


def test_rejection_carries_reason_and_detail() -> None:
    with pytest.raises(ImageRejected) as raised:
        validate_and_normalize(corpus.tiny_png())
    assert raised.value.reason is RejectReason.TOO_SMALL
    assert "1x1" in raised.value.detail
    assert str(raised.value).startswith("too_small")


def test_the_25_mb_file_is_refused_by_size_alone() -> None:
    data = corpus.huge_noise_png()
    assert len(data) > 24 * MEBIBYTE
    assert reason_of(data) == RejectReason.TOO_LARGE_FILE
    # The same file would otherwise be accepted: the size limit is what refuses it.
    assert validate_and_normalize(data, max_bytes=len(data)).width == 2900


def test_limits_are_parameters() -> None:
    assert reason_of(corpus.valid_jpeg(), max_bytes=1000) == RejectReason.TOO_LARGE_FILE
    assert reason_of(corpus.valid_jpeg(), min_side=1100) == RejectReason.TOO_SMALL
    assert reason_of(corpus.valid_jpeg(), max_pixels=1_000_000) == RejectReason.DECOMPRESSION_BOMB
    assert validate_and_normalize(corpus.small_jpeg(), min_side=400).width == 400


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_warning_zone_is_a_bomb_too() -> None:
    # 100 MP: Pillow only warns (limit ~89 MP, error at twice that); we must refuse.
    assert reason_of(corpus.black_bilevel_png(10_000, 10_000), max_pixels=10**9) == RejectReason.DECOMPRESSION_BOMB


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_guard_stays_in_force_when_lower_than_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    assert reason_of(corpus.valid_jpeg()) == RejectReason.DECOMPRESSION_BOMB  # 1.3 MP


def test_the_bomb_is_small_on_disk_and_declares_30000_squared() -> None:
    data = corpus.bomb_png()
    assert len(data) < 200 * 1024
    assert data[12:16] == b"IHDR"
    assert (int.from_bytes(data[16:20]), int.from_bytes(data[20:24])) == (30_000, 30_000)


@pytest.mark.parametrize("builder", [corpus.bomb_png, corpus.moderate_bomb_png])
def test_bombs_are_refused_without_decoding(builder: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    data = builder()
    pixel_loads: list[object] = []
    original_load = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile) -> object:
        pixel_loads.append(self)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    tracemalloc.start()
    try:
        assert reason_of(data) == RejectReason.DECOMPRESSION_BOMB
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pixel_loads == []
    assert peak < 50 * MEBIBYTE


MEMORY_PROBE = """
import io, json, sys
from PIL import Image
from storage.images import ImageRejected, validate_and_normalize, register_heif


def status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def peak_rss_delta_kib(action):
    # Writing 5 to clear_refs resets this process's peak RSS (VmHWM) to its current RSS.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = status_kib("VmRSS")
    action()
    return status_kib("VmHWM") - before


def validate(data, result, name):
    try:
        validate_and_normalize(data)
        result[name + "_reason"] = "accepted"
    except ImageRejected as rejected:
        result[name + "_reason"] = rejected.reason.value


register_heif()
result = {}
for name, path in (("bomb", sys.argv[1]), ("moderate_bomb", sys.argv[2])):
    data = open(path, "rb").read()
    result[name + "_peak_delta_kib"] = peak_rss_delta_kib(lambda: validate(data, result, name))
# Control: really decoding the 64 MP image must show up, or the measurement proves nothing.
Image.MAX_IMAGE_PIXELS = None
data = open(sys.argv[2], "rb").read()
result["control_decode_peak_delta_kib"] = peak_rss_delta_kib(lambda: Image.open(io.BytesIO(data)).load())
print(json.dumps(result))
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc peak-RSS reset")
def test_bombs_keep_process_memory_low(tmp_path: Path) -> None:
    """Real peak RSS (C allocations included, which tracemalloc cannot see), in a fresh process.

    A fresh process, because in this one freed memory from earlier tests would be reused
    without raising the RSS, hiding an allocation.
    """
    bomb_path = tmp_path / "bomb.png"
    bomb_path.write_bytes(corpus.bomb_png())
    moderate_path = tmp_path / "moderate.png"
    moderate_path.write_bytes(corpus.moderate_bomb_png())
    completed = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(bomb_path), str(moderate_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(completed.stdout)
    assert result["bomb_reason"] == "decompression_bomb"
    assert result["moderate_bomb_reason"] == "decompression_bomb"
    assert result["bomb_peak_delta_kib"] < 50 * 1024
    assert result["moderate_bomb_peak_delta_kib"] < 50 * 1024
    assert result["control_decode_peak_delta_kib"] > 60 * 1024  # 8000×8000 at one byte per pixel


# --- helpers for results and delivery ---------------------------------------------------------


def test_register_heif_is_idempotent() -> None:
    register_heif()
    register_heif()
    assert "HEIF" in Image.OPEN
    assert image_size(corpus.valid_heic()) == (640, 800)


def test_image_size_reads_the_stored_size() -> None:
    assert image_size(corpus.valid_jpeg()) == (1024, 1280)
    assert image_size(corpus.photo_12mp_jpeg()) == (4000, 3000)
    assert image_size(corpus.exif_rotated_jpeg()) == corpus.ROTATED_STORED_SIZE
    with pytest.raises(ImageRejected) as raised:
        image_size(corpus.text_as_jpg())
    assert raised.value.reason is RejectReason.NOT_AN_IMAGE
    with pytest.raises(ImageRejected) as raised:
        image_size(corpus.bomb_png())
    assert raised.value.reason is RejectReason.DECOMPRESSION_BOMB


@pytest.mark.parametrize(
    ("builder", "expected_size"),
    [
        (corpus.photo_12mp_jpeg, (512, 384)),
        (corpus.valid_png, (410, 512)),
        (corpus.exif_rotated_jpeg, (384, 512)),
        (corpus.tiny_png, (1, 1)),  # never upscaled
    ],
)
def test_make_thumbnail(builder: Callable[[], bytes], expected_size: tuple[int, int]) -> None:
    thumbnail = make_thumbnail(builder())
    assert_clean_jpeg(thumbnail)
    with Image.open(io.BytesIO(thumbnail)) as image:
        assert image.size == expected_size


def test_thumbnail_keeps_orientation() -> None:
    with Image.open(io.BytesIO(make_thumbnail(corpus.exif_rotated_jpeg(), max_side=200))) as image:
        assert image.size == (150, 200)
        assert is_close(image.getpixel((image.width - 5, 5)), corpus.ROTATION_MARKER_COLOUR)


def test_to_jpeg_converts_a_provider_png() -> None:
    converted = to_jpeg(corpus.valid_png())
    assert_clean_jpeg(converted)
    assert image_size(converted) == (1024, 1280)
    assert image_size(to_jpeg(corpus.valid_png(), max_side=640)) == (512, 640)
    with pytest.raises(ImageRejected):
        to_jpeg(corpus.truncated_jpeg())


def test_fit_for_telegram_keeps_a_fitting_jpeg_untouched() -> None:
    data = corpus.photo_12mp_jpeg()
    assert fit_for_telegram_photo(data) is data


def test_fit_for_telegram_reencodes_png_and_rotated_jpeg() -> None:
    from_png = fit_for_telegram_photo(corpus.valid_png())
    assert jpeg_segment_markers(from_png)[0] == 0xE0 and image_size(from_png) == (1024, 1280)
    assert image_size(fit_for_telegram_photo(corpus.exif_rotated_jpeg())) == (600, 800)


def test_fit_for_telegram_bounds_dimension_sum() -> None:
    fitted = fit_for_telegram_photo(corpus.black_bilevel_png(9000, 3000))
    width, height = image_size(fitted)
    assert width + height <= images.TELEGRAM_PHOTO_MAX_DIMENSION_SUM
    assert (width, height) == (7500, 2500)


def test_fit_for_telegram_bounds_the_byte_size() -> None:
    noise = corpus.huge_noise_png()
    fitted = fit_for_telegram_photo(noise)
    assert len(fitted) <= 10 * MEBIBYTE
    squeezed = fit_for_telegram_photo(noise, max_bytes=MEBIBYTE)
    assert len(squeezed) <= MEBIBYTE
    assert image_size(squeezed)[0] < 2900  # quality alone cannot get noise this small


def test_fit_for_telegram_refuses_a_strip() -> None:
    with pytest.raises(ImageRejected) as raised:
        fit_for_telegram_photo(corpus.black_bilevel_png(4200, 200))
    assert raised.value.reason is RejectReason.ABSURD_DIMENSIONS


# --- the corpus itself ------------------------------------------------------------------------


def test_corpus_is_deterministic() -> None:
    for builder in (corpus.selfie_like_jpeg, corpus.photo_12mp_jpeg, corpus.exif_rotated_jpeg):
        assert builder.__wrapped__() == builder.__wrapped__()  # type: ignore[attr-defined]
    assert corpus.selfie_like_jpeg(3) != corpus.selfie_like_jpeg(4)


def test_write_corpus_names_files_like_uploads(tmp_path: Path) -> None:
    paths = corpus.write_corpus(tmp_path)
    assert paths["notes.jpg"].read_bytes() == corpus.text_as_jpg()
    assert paths["huge.png"].stat().st_size > 24 * MEBIBYTE
    assert image_size(paths["photo_12mp.jpg"].read_bytes()) == (4000, 3000)
