"""Builders of test images: valid photos in every accepted format and every kind of bad upload.

Everything is generated locally and deterministically (seeded ``random.Random``, never
Pillow's unseeded noise), and cached, so tests can call the builders freely. Builders return
``bytes``; :func:`write_corpus` puts the whole set on disk under upload-like names for tests
that need files (e.g. documents sent to the bot).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw

from storage.images import register_heif

EXIF_ORIENTATION_TAG = 0x0112
# The marker patch of the EXIF-rotated photo: pure red in the top-left corner of the pixels
# as stored; after rotating 90° clockwise (orientation 6) it sits in the top-right corner.
ROTATION_MARKER_COLOUR = (255, 0, 0)
ROTATED_STORED_SIZE = (800, 600)


def _jpeg(image: Image.Image, quality: int = 90, **save_options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, **save_options)
    return out.getvalue()


def _png(image: Image.Image, **save_options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **save_options)
    return out.getvalue()


def _seeded_noise(size: tuple[int, int], seed: int, noise_scale: int = 1) -> Image.Image:
    """Deterministic grey noise; ``noise_scale`` > 1 makes blotches instead of single-pixel grain."""
    width, height = size
    small = (max(1, width // noise_scale), max(1, height // noise_scale))
    noise = Image.frombytes("L", small, random.Random(seed).randbytes(small[0] * small[1]))
    return noise if small == size else noise.resize(size, Image.Resampling.BILINEAR)


@lru_cache(maxsize=8)
def _gradient_rgb(size: tuple[int, int]) -> Image.Image:
    horizontal = Image.linear_gradient("L").rotate(90).resize(size, Image.Resampling.BILINEAR)
    vertical = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    diagonal = Image.blend(horizontal, vertical, 0.5)
    return Image.merge("RGB", (horizontal, vertical, diagonal))


@lru_cache(maxsize=256)
def selfie_like_jpeg(seed: int = 0, size: tuple[int, int] = (1024, 1280)) -> bytes:
    """A valid, distinct portrait-shaped photo per seed: gradient background, a 'face', grain.

    Drawn at half size and scaled up (the scaling is the softening a camera gives): a full-size
    Gaussian blur made this 80 ms a photo, which seeding a hundred users paid for seconds on end.
    """
    rng = random.Random(seed)
    width, height = size[0] // 2, size[1] // 2
    half = (width, height)
    background = Image.new("RGB", half, tuple(rng.randrange(40, 200) for _ in range(3)))
    background = Image.blend(background, _gradient_rgb(half), 0.4)
    draw = ImageDraw.Draw(background)
    face_width = width * rng.uniform(0.35, 0.5)
    centre_x = width * rng.uniform(0.4, 0.6)
    centre_y = height * rng.uniform(0.35, 0.5)
    skin = (rng.randrange(170, 240), rng.randrange(120, 190), rng.randrange(90, 160))
    draw.ellipse(
        (
            centre_x - face_width / 2,
            centre_y - face_width * 0.65,
            centre_x + face_width / 2,
            centre_y + face_width * 0.65,
        ),
        fill=skin,
    )
    for eye_offset in (-0.18, 0.18):
        eye_x, eye_y = centre_x + eye_offset * face_width, centre_y - 0.1 * face_width
        draw.ellipse((eye_x - 6, eye_y - 4, eye_x + 6, eye_y + 4), fill=(30, 30, 40))
    draw.rectangle((0, height * 0.8, width, height), fill=tuple(rng.randrange(0, 255) for _ in range(3)))
    grain = _seeded_noise(half, seed).convert("RGB")
    photo = Image.blend(background, grain, 0.08).resize(size, Image.Resampling.BILINEAR)
    return _jpeg(photo, quality=90)


def selfie_set(count: int, first_seed: int = 0) -> list[bytes]:
    """``count`` distinct valid photos (distinct bytes and distinct normalized hashes)."""
    return [selfie_like_jpeg(seed) for seed in range(first_seed, first_seed + count)]


@lru_cache(maxsize=1)
def _selfie_image() -> Image.Image:
    return Image.open(io.BytesIO(selfie_like_jpeg(1))).convert("RGB")


@lru_cache(maxsize=1)
def valid_jpeg() -> bytes:
    return selfie_like_jpeg(1)


@lru_cache(maxsize=1)
def valid_png() -> bytes:
    return _png(_selfie_image())


@lru_cache(maxsize=1)
def valid_webp() -> bytes:
    out = io.BytesIO()
    _selfie_image().save(out, "WEBP", quality=85)
    return out.getvalue()


@lru_cache(maxsize=1)
def valid_heic() -> bytes:
    register_heif()
    out = io.BytesIO()
    # Smaller than the other samples because HEVC encoding is the slowest builder here.
    _selfie_image().resize((640, 800)).save(out, "HEIF", quality=80)
    return out.getvalue()


@lru_cache(maxsize=1)
def photo_12mp_jpeg() -> bytes:
    """A 4000×3000 camera-like photo: smooth gradients with sensor-like grain (several MB)."""
    size = (4000, 3000)
    grain = _seeded_noise(size, seed=12).convert("RGB")
    blotches = _seeded_noise(size, seed=13, noise_scale=40).convert("RGB")
    photo = Image.blend(Image.blend(_gradient_rgb(size), blotches, 0.3), grain, 0.12)
    return _jpeg(photo, quality=92)


@lru_cache(maxsize=1)
def exif_rotated_jpeg() -> bytes:
    """800×600 as stored, EXIF orientation 6: displays as 600×800 with the red patch top-right."""
    image = Image.new("RGB", ROTATED_STORED_SIZE, (0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 0, 199, 149), fill=ROTATION_MARKER_COLOUR)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = 6
    exif[0x010F] = "PinGlassTestCamera"  # Make: a tag a test can look for after stripping
    return _jpeg(image, quality=95, exif=exif.tobytes())


@lru_cache(maxsize=2)
def jpeg_with_metadata(with_icc_profile: bool = True) -> bytes:
    """A valid photo carrying EXIF (with GPS), a comment, XMP and optionally an ICC profile.

    Without the profile the decoder's image object travels through unconverted, which is the
    case where leftover metadata would leak into the output.
    """
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F] = "PinGlassTestCamera"
    exif[0x8825] = {1: "N", 2: (55.0, 45.0, 0.0)}  # GPS IFD
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    options: dict[str, object] = {"exif": exif.tobytes(), "comment": b"secret comment", "xmp": xmp}
    if with_icc_profile:
        options["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _jpeg(_selfie_image(), **options)


@lru_cache(maxsize=1)
def mpo_jpeg() -> bytes:
    """A multi-picture JPEG (MPO, as some cameras write): two frames, yet a still photo, not an animation."""
    first = _selfie_image().resize((640, 800))
    second = Image.new("RGB", first.size, (10, 200, 10))
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[second])
    return out.getvalue()


@lru_cache(maxsize=1)
def truncated_jpeg() -> bytes:
    data = valid_jpeg()
    return data[: len(data) * 6 // 10]


@lru_cache(maxsize=1)
def corrupt_png() -> bytes:
    """A PNG whose pixel data (inside the first IDAT chunk) is overwritten with junk."""
    data = bytearray(valid_png())
    idat = data.index(b"IDAT")
    data[idat + 100 : idat + 400] = bytes(300)
    return bytes(data)


@lru_cache(maxsize=1)
def tiny_png() -> bytes:
    return _png(Image.new("RGB", (1, 1), (128, 128, 128)))


@lru_cache(maxsize=1)
def small_jpeg() -> bytes:
    """A real photo whose short side (400) is under the 512 minimum."""
    return _jpeg(_selfie_image().resize((400, 500)))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@lru_cache(maxsize=8)
def black_bilevel_png(width: int, height: int) -> bytes:
    """A fully valid all-black 1-bit PNG, written without ever holding its pixels in memory.

    Deflate shrinks the zero rows ~1000:1, so huge declared sizes stay small on disk.
    """
    row = b"\x00" + bytes((width + 7) // 8)  # filter type 0, then packed 1-bit pixels
    compressor = zlib.compressobj(9)
    rows_per_block = max(1, (4 * 1024 * 1024) // len(row))
    compressed = bytearray()
    remaining = height
    while remaining:
        rows = min(rows_per_block, remaining)
        compressed += compressor.compress(row * rows)
        remaining -= rows
    compressed += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", bytes(compressed))
        + _png_chunk(b"IEND", b"")
    )


def bomb_png() -> bytes:
    """30000×30000 (900 MP) declared, ~110 KB on disk: Pillow's own guard trips on the header."""
    return black_bilevel_png(30_000, 30_000)


def moderate_bomb_png() -> bytes:
    """8000×8000 (64 MP): below Pillow's guard (~89 MP), above our 50 MP cap; side and ratio are fine."""
    return black_bilevel_png(8_000, 8_000)


def too_wide_png() -> bytes:
    """3000×600: big enough, but a 5:1 strip."""
    return black_bilevel_png(3_000, 600)


def too_long_side_png() -> bytes:
    """12500×3200 (40 MP, ratio 3.9): under the pixel cap and ratio limit, over the 12000 px side limit."""
    return black_bilevel_png(12_500, 3_200)


@lru_cache(maxsize=1)
def animated_gif() -> bytes:
    frames = [Image.new("P", (600, 600), colour) for colour in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


@lru_cache(maxsize=1)
def static_gif() -> bytes:
    out = io.BytesIO()
    _selfie_image().convert("P").save(out, "GIF")
    return out.getvalue()


@lru_cache(maxsize=1)
def animated_webp() -> bytes:
    frames = [Image.new("RGB", (600, 600), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


@lru_cache(maxsize=1)
def animated_png() -> bytes:
    frames = [Image.new("RGB", (600, 600), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


@lru_cache(maxsize=1)
def bmp_image() -> bytes:
    out = io.BytesIO()
    _selfie_image().save(out, "BMP")
    return out.getvalue()


@lru_cache(maxsize=1)
def tiff_image() -> bytes:
    out = io.BytesIO()
    _selfie_image().save(out, "TIFF")
    return out.getvalue()


def text_as_jpg() -> bytes:
    """The content of a text file that a user renamed to ``.jpg``."""
    return b"These are my holiday notes, not a photo.\nDay 1: beach.\n" * 20


@lru_cache(maxsize=1)
def huge_noise_png() -> bytes:
    """A genuine ~25 MB PNG of random noise (stored uncompressed; noise would not shrink anyway)."""
    size = (2900, 2900)
    noise = Image.frombytes("RGB", size, random.Random(25).randbytes(size[0] * size[1] * 3))
    return _png(noise, compress_level=0)


@lru_cache(maxsize=1)
def cmyk_jpeg() -> bytes:
    """A CMYK JPEG (print workflows) of pure red: C=0, M=255, Y=255, K=0."""
    return _jpeg(Image.new("CMYK", (640, 640), (0, 255, 255, 0)))


@lru_cache(maxsize=1)
def transparent_png() -> bytes:
    """RGBA, left half fully transparent, right half opaque blue."""
    image = Image.new("RGBA", (640, 640), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((320, 0, 639, 639), fill=(0, 0, 255, 255))
    return _png(image)


@lru_cache(maxsize=1)
def palette_png() -> bytes:
    return _png(_selfie_image().convert("P", palette=Image.Palette.ADAPTIVE))


@lru_cache(maxsize=1)
def grey16_png() -> bytes:
    """16-bit greyscale at mid-grey (32768 of 65535): must come out ≈128, not clipped to white."""
    return _png(Image.new("I;16", (640, 640), 32768))


@lru_cache(maxsize=1)
def grey_alpha_png() -> bytes:
    return _png(Image.new("LA", (640, 640), (90, 255)))


def write_corpus(directory: Path) -> dict[str, Path]:
    """Write every sample under an upload-like file name; returns name → path."""
    samples = {
        "selfie.jpg": valid_jpeg(),
        "selfie.png": valid_png(),
        "selfie.webp": valid_webp(),
        "selfie.heic": valid_heic(),
        "rotated.jpg": exif_rotated_jpeg(),
        "photo_12mp.jpg": photo_12mp_jpeg(),
        "truncated.jpg": truncated_jpeg(),
        "pixel.png": tiny_png(),
        "bomb.png": bomb_png(),
        "animated.gif": animated_gif(),
        "notes.jpg": text_as_jpg(),
        "huge.png": huge_noise_png(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, data in samples.items():
        path = directory / name
        path.write_bytes(data)
        paths[name] = path
    return paths


def _s15_fixed16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _icc_xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15_fixed16(x) + _s15_fixed16(y) + _s15_fixed16(z)


@lru_cache(maxsize=1)
def display_p3_icc_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC profile for Display P3 (what iPhones tag photos with).

    No ICC files ship with the test machine and Pillow can only create sRGB/LAB/XYZ, so the
    profile is assembled here: D50-adapted P3 primaries and a 2.2 gamma curve.
    """
    description = b"Display P3 (PinGlass test)"
    gamma_curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\x00\x00"
    tags = [
        (
            b"desc",
            b"desc\x00\x00\x00\x00"
            + struct.pack(">I", len(description) + 1)
            + description
            + b"\x00"
            + bytes(4 + 4 + 2 + 1 + 67),  # empty Unicode and ScriptCode descriptions
        ),
        (b"wtpt", _icc_xyz_tag(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _icc_xyz_tag(0.5151, 0.2412, -0.0011)),
        (b"gXYZ", _icc_xyz_tag(0.2920, 0.6922, 0.0419)),
        (b"bXYZ", _icc_xyz_tag(0.1571, 0.0666, 0.7841)),
        (b"rTRC", gamma_curve),
        (b"gTRC", gamma_curve),
        (b"bTRC", gamma_curve),
        (b"cprt", b"text\x00\x00\x00\x00No copyright, test data\x00"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    payload = b""
    for signature, data in tags:
        padded = data + bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(payload), len(data))
        payload += padded
    size = 128 + table_size + len(payload)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(24)
        + struct.pack(">I", 0)  # rendering intent: perceptual
        + _s15_fixed16(0.9642)
        + _s15_fixed16(1.0)
        + _s15_fixed16(0.8249)
    )
    header += bytes(128 - len(header))
    return header + table + payload


P3_SAMPLE_COLOUR = (200, 100, 50)


@lru_cache(maxsize=1)
def display_p3_jpeg() -> bytes:
    """A flat orange photo whose pixel values are Display P3, tagged with that profile."""
    return _jpeg(Image.new("RGB", (640, 640), P3_SAMPLE_COLOUR), quality=95, icc_profile=display_p3_icc_profile())
