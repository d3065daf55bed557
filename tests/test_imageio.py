"""Every bad input gets its documented error; every odd mode its documented handling."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import hashmatch
from hashmatch.errors import HashmatchError, ImageTooLargeError, UnreadableImageError
from hashmatch._loading import ImageLimits, load_image, to_mode

from .conftest import encode, photo_like


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; the pixel data is one tiny compressed row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, not an image", "not a recognised image format"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "cannot open|not a recognised"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 10, "cannot|not a recognised"),
    ],
)
def test_load_rejects_garbage_with_unreadable_image_error(data, message):
    with pytest.raises(UnreadableImageError, match=message):
        hashmatch.hash_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_load_rejects_truncated_files(fmt, rng):
    img = Image.fromarray(photo_like(rng, 300, 200))
    data = encode(img.convert("P") if fmt == "GIF" else img, fmt)
    with pytest.raises(UnreadableImageError):
        hashmatch.hash_image(data[: len(data) // 2], fast=False)


def test_load_rejects_decompression_bomb_from_header_before_decoding():
    bomb = _png_header_only(40_000, 40_000)  # 1.6 gigapixels claimed in a few bytes
    with pytest.raises(ImageTooLargeError, match="pixels|limit|exceeds"):
        hashmatch.hash_image(bomb)


def test_pixel_limit_is_configurable(rng):
    data = encode(Image.fromarray(photo_like(rng, 100, 100)), "PNG")
    with pytest.raises(ImageTooLargeError, match="10000 pixels, over the limit of 9999"):
        hashmatch.hash_image(data, limits=ImageLimits(max_pixels=9_999))
    assert isinstance(hashmatch.hash_image(data, limits=ImageLimits(max_pixels=10_000)), hashmatch.Hash)
    with pytest.raises(ImageTooLargeError):
        hashmatch.hash_image(photo_like(rng, 100, 100), limits=ImageLimits(max_pixels=9_999))


def test_file_size_limit_applies_to_paths_bytes_and_streams(tmp_path, rng):
    data = encode(Image.fromarray(photo_like(rng, 64, 64)), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    small = ImageLimits(max_file_bytes=len(data) - 1)
    for source in (path, data, io.BytesIO(data)):
        with pytest.raises(ImageTooLargeError, match="limit"):
            hashmatch.hash_image(source, limits=small)


def test_limits_reject_nonsense_values():
    for bad in ({"max_pixels": 0}, {"max_file_bytes": -5}, {"max_side": True}, {"max_pixels": 1.5}):
        with pytest.raises(hashmatch.errors.UsageError, match="positive integer"):
            ImageLimits(**bad)


def test_missing_file_and_directory_are_unreadable(tmp_path):
    with pytest.raises(UnreadableImageError, match="cannot read"):
        hashmatch.hash_image(tmp_path / "missing.jpg")
    with pytest.raises(UnreadableImageError, match="cannot read"):
        hashmatch.hash_image(tmp_path)


def test_unsupported_source_types_and_arrays_are_rejected():
    with pytest.raises(UnreadableImageError, match="cannot load an image from int"):
        hashmatch.hash_image(42)  # type: ignore[arg-type]
    with pytest.raises(UnreadableImageError, match="shape"):
        hashmatch.hash_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(UnreadableImageError, match="float"):
        hashmatch.hash_image(np.zeros((4, 4), np.float32))
    with pytest.raises(UnreadableImageError, match="no pixels"):
        hashmatch.hash_image(np.zeros((0, 4), np.uint8))
    with pytest.raises(UnreadableImageError, match="text mode|binary"):
        hashmatch.hash_image(io.StringIO("abc"))  # type: ignore[arg-type]


def test_errors_are_project_errors_and_builtin_value_errors():
    with pytest.raises(HashmatchError):
        hashmatch.hash_image(b"junk")
    with pytest.raises(ValueError):
        hashmatch.hash_image(b"junk")


def test_one_pixel_images_hash_in_every_algorithm():
    img = Image.new("RGB", (1, 1), (10, 200, 30))
    for algorithm in ("ahash", "dhash", "phash", "whash"):
        assert hashmatch.hash_image(img, algorithm).bits == 64


def _animated(fmt: str, rng: np.random.Generator) -> tuple[bytes, Image.Image]:
    frames = [Image.fromarray(photo_like(rng, 80, 60)) for _ in range(3)]
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    return buf.getvalue(), frames[0]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_images_hash_their_first_frame(fmt, rng):
    data, first = _animated(fmt, rng)
    img = Image.open(io.BytesIO(data))
    assert getattr(img, "n_frames", 1) == 3
    expected = hashmatch.hash_image(first, "phash")
    assert hashmatch.hash_image(data, "phash", fast=False) - expected <= 2
    img.seek(2)
    third = hashmatch.hash_image(img.convert("RGB"), "phash")
    assert hashmatch.hash_image(data, "phash", fast=False) - third > 10


def test_exif_orientation_is_ignored_by_default_and_applied_on_request(rng):
    img = Image.fromarray(photo_like(rng, 200, 120))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    data = encode(img, "JPEG", quality=95, exif=exif.tobytes())
    stored = hashmatch.hash_image(data, "phash", fast=False)
    upright = hashmatch.hash_image(data, "phash", fast=False, exif_transpose=True)
    assert stored == hashmatch.hash_image(Image.open(io.BytesIO(data)), "phash")
    rotated = hashmatch.hash_image(Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_270), "phash")
    assert upright == rotated
    assert stored - upright > 10


def test_alpha_is_dropped_not_composited(rng):
    rgb = Image.fromarray(photo_like(rng, 64, 64))
    rgba = rgb.copy()
    rgba.putalpha(0)  # fully transparent: the stored colours still define the hash
    assert hashmatch.hash_image(rgba) == hashmatch.hash_image(rgb)


def test_sixteen_bit_values_follow_pillow_conversion(rng):
    gray16 = (photo_like(rng, 64, 48)[:, :, 0].astype(np.uint16)) * 257
    img = load_image(gray16)
    assert img.mode == "I;16"
    assert np.array_equal(np.asarray(to_mode(img, "L")), np.minimum(gray16, 255).astype(np.uint8))


def test_cmyk_jpeg_and_one_bit_png_decode(rng):
    rgb = Image.fromarray(photo_like(rng, 64, 48))
    for img, fmt in [(rgb.convert("CMYK"), "JPEG"), (rgb.convert("1"), "PNG"), (rgb.convert("LA"), "PNG")]:
        h = hashmatch.hash_image(encode(img, fmt), "dhash")
        assert h == hashmatch.hash_image(Image.open(io.BytesIO(encode(img, fmt))), "dhash", fast=False)


def test_fast_decode_reduces_jpeg_scale_only_when_it_still_covers_the_request(rng):
    data = encode(Image.fromarray(photo_like(rng, 1024, 768)), "JPEG")
    assert load_image(data, draft=("L", (32, 32))).size == (128, 96)
    assert load_image(data, draft=("L", (300, 300))).size == (512, 384)
    assert load_image(data, draft=("L", (400, 400))).size == (1024, 768)
    assert load_image(data).size == (1024, 768)
    png = encode(Image.fromarray(photo_like(rng, 64, 64)), "PNG")
    assert load_image(png, draft=("L", (8, 8))).size == (64, 64)
