"""Loading from paths: regular files only, bounded reads, thin images (issue 10, items 2 and 8)."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

import hashmatch
from hashmatch import ImageLimits
from hashmatch.errors import ImageTooLargeError, UnreadableImageError
from hashmatch.hashers import compute_hashes
from hashmatch._loading import read_regular_file

ALGORITHMS = ("ahash", "dhash", "phash", "whash", "pdq")


def grey_png(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of any size, with mid-grey rows (compresses to almost nothing)."""
    raw = (b"\x00" + b"\x80" * width) * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "upload.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(outcome, hashmatch.hash_image, fifo, "phash"), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "hash_image blocked on a FIFO"
    assert isinstance(outcome[0], UnreadableImageError) and "not a regular file" in str(outcome[0])


def _capture(out: list[BaseException], fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        out.append(exc)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_devices_and_symlinks_to_them_are_refused(tmp_path: Path, device: str) -> None:
    link = tmp_path / "looks-like.png"
    link.symlink_to(device)
    for path in (device, link):
        with pytest.raises(UnreadableImageError, match="not a regular file"):
            hashmatch.hash_image(path, "dhash")
        with pytest.raises(UnreadableImageError, match="not a regular file"):
            compute_hashes(path, ["pdq", "phash"], dihedral=True)


def test_directory_and_nul_path_are_unreadable_image_errors(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError, match="directory"):
        hashmatch.hash_image(tmp_path, "phash")
    with pytest.raises(UnreadableImageError, match="NUL"):
        hashmatch.hash_image(str(tmp_path / "a\0b.png"), "phash")


def test_invalid_utf8_file_name_is_read(tmp_path: Path) -> None:
    name = os.fsencode(str(tmp_path)) + b"/\xff\xfe-image.png"
    with open(name, "wb") as f:
        f.write(grey_png(40, 30))
    path = os.fsdecode(name)
    assert hashmatch.hash_image(path, "ahash").bits == 64
    os.unlink(name)
    with pytest.raises(UnreadableImageError) as info:
        hashmatch.hash_image(path, "ahash")
    str(info.value).encode("utf-8")  # the message is printable as UTF-8


def test_read_regular_file_reads_at_most_the_limit_plus_one(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100) == b"x" * 100
    with pytest.raises(ImageTooLargeError):
        read_regular_file(path, 99)


def test_thin_image_over_the_side_limit_is_refused_and_batches_go_on() -> None:
    thin = grey_png(89_000_000, 1)  # under the pixel limit, 87 KB encoded
    assert len(thin) < 100_000
    for name in ALGORITHMS:
        with pytest.raises(ImageTooLargeError, match="side"):
            hashmatch.hash_image(thin, name)
    results = hashmatch.hash_images([thin, grey_png(64, 64)], "phash")
    assert isinstance(results[0], ImageTooLargeError) and isinstance(results[1], hashmatch.Hash)


def test_thin_image_at_the_side_limit_hashes_and_pdq_refuses_it() -> None:
    edge = grey_png(ImageLimits().max_side, 1)
    for name in ("ahash", "dhash", "phash", "whash"):
        assert hashmatch.hash_image(edge, name).bits == 64
    with pytest.raises(UnreadableImageError, match="at least 5 pixels"):
        hashmatch.hash_image(edge, "pdq")


@pytest.mark.parametrize("shape", [(1, 1), (4, 100), (100, 4)])
def test_pdq_never_returns_all_zero_hash_for_a_small_image(shape: tuple[int, int]) -> None:
    array = np.full(shape + (3,), 200, np.uint8)
    with pytest.raises(UnreadableImageError):
        hashmatch.hash_image(array, "pdq")
    with pytest.raises(UnreadableImageError):
        compute_hashes(grey_png(shape[1], shape[0]), ["pdq"], dihedral=True)


def test_max_side_is_configurable_and_checked() -> None:
    with pytest.raises(ValueError):
        ImageLimits(max_side=0)
    with pytest.raises(ImageTooLargeError, match="side"):
        hashmatch.hash_image(grey_png(300, 10), "ahash", limits=ImageLimits(max_side=299))
