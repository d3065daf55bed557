"""Safe image decoding: the one place where bytes become pixels.

Every hasher goes through :func:`load_image`, so limits, modes, frames and EXIF are
handled the same way for every algorithm.

Policy (documented in the README):

* **Limits.** :class:`ImageLimits` caps the pixel count (decompression bombs; checked
  from the header, before any pixel is decoded), the longer side and the file size.
  Over a limit: :class:`~hashmatch.errors.ImageTooLargeError`.
* **Thin images.** A side is at most ``max_side`` pixels (default 65,535, the JPEG and
  WebP maximum). The rule exists because resizing cost grows with the longest side, not
  the pixel count: Pillow's LANCZOS downscale of an 89,000,000 x 1 image to 8 x 8 asks
  for about 4 GB of filter weights. At 65,535 the same resize needs about 3 MB, so any
  image within the limits hashes (an image too small for PDQ is refused by PDQ itself).
* **Files.** Paths are opened non-blocking, checked with ``fstat`` after opening (so a
  FIFO, device, directory or a symlink to one is refused without blocking or reading),
  and read up to the file-size limit plus one byte, never by the size ``stat`` reports.
* **Bad input.** Empty, truncated, non-image and undecodable files raise
  :class:`~hashmatch.errors.UnreadableImageError`. No bare PIL or OS error escapes.
  (Pillow's process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left as the application
  set it: set to True, truncated files decode partially and are hashed.)
* **Frames.** Animated GIF, WebP and APNG: the first frame.
* **EXIF orientation.** Ignored by default: the stored pixels are hashed, as imagehash
  and the PDQ reference do, so hashes agree with lists those tools made. A copy that
  differs only by its EXIF orientation is a rotation or mirror image of the stored one,
  which PDQ's dihedral matching finds. ``exif_transpose=True`` applies it instead.
* **Modes.** Converted with Pillow's own ``convert`` as the reference tools do: alpha
  is dropped (the stored colour of transparent pixels is hashed, not composited), P
  and CMYK go through their palette or inverse, 1-bit becomes 0/255, and 16-bit
  values are clipped to 255 by Pillow (kept for compatibility with existing lists).
* **Fast decode.** With a ``draft`` request, JPEG is decoded at a reduced scale (1/2,
  1/4 or 1/8) that still covers the requested size: the DCT-domain downscale is far
  cheaper than decoding every pixel and resizing afterwards. On request (PDQ's fast
  path), a grey 1/8 draft of a plain baseline JPEG comes from :mod:`hashmatch._jpeg`
  (each block's DC term, the same pixels as Pillow's, about 1.4x as fast); anything
  that decoder does not take goes to Pillow as before.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from collections.abc import Callable
from typing import IO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import _jpeg
from .errors import ImageTooLargeError, UnreadableImageError, UsageError

__all__ = ["DEFAULT_LIMITS", "ImageInput", "ImageLimits", "load_image", "read_regular_file"]

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]

DRAFT_SCALE_KEY = "hashmatch.draft_scale"
"""``Image.info`` key holding n when :func:`load_image` decoded a JPEG at 1/n scale."""
DCT_PLANES_KEY = "hashmatch.dct_planes"
"""``Image.info`` key of a DC-decoded draft: (planes, full height, full width), the luma
blocks' DC and first horizontal and vertical harmonics (see :mod:`hashmatch._jpeg`)."""

# Pillow's own threshold at import time: our default never rejects what Pillow accepts silently.
_PILLOW_DEFAULT_MAX_PIXELS = 89_478_485


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Upper bounds on what :func:`load_image` accepts.

    ``max_pixels`` is width × height from the header (default 89,478,485: Pillow's
    own decompression-bomb threshold). ``max_side`` bounds the longer side (default
    65,535; see the module notes on thin images). ``max_file_bytes`` bounds the encoded
    size (default 256 MiB). Pillow's separate bomb check still refuses images over twice
    ``PIL.Image.MAX_IMAGE_PIXELS``; raise that too for larger limits.
    """

    max_pixels: int = _PILLOW_DEFAULT_MAX_PIXELS
    max_file_bytes: int = 256 * 1024 * 1024
    max_side: int = 65_535

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_file_bytes", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = ImageLimits()


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{type(source).__name__}>"


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    Opened non-blocking (a FIFO cannot hang the open) and checked with ``fstat`` on the
    open descriptor (no race with a swap after a ``stat``); reads stop at
    ``max_bytes + 1`` whatever size the file claims. Raises
    :class:`~hashmatch.errors.UnreadableImageError` for anything that is not a regular
    file or cannot be read (chained to the ``OSError`` when there was one),
    :class:`~hashmatch.errors.ImageTooLargeError` over the limit.
    """
    return read_regular_file_stat(path, max_bytes)[0]


def read_regular_file_stat(path: str | os.PathLike[str], max_bytes: int) -> tuple[bytes, os.stat_result]:
    """:func:`read_regular_file`, with the ``fstat`` of the file read (what a scan reports)."""
    try:
        name = os.fspath(path)
    except TypeError as exc:
        raise UnreadableImageError(f"not a path: {exc}") from None
    shown = printable_path(name)
    if ("\0" if isinstance(name, str) else b"\0") in name:  # type: ignore[operator]
        raise UnreadableImageError(f"{shown}: a path cannot contain a NUL character")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableImageError(f"{shown}: cannot read file: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:  # e.g. an unencodable name
        raise UnreadableImageError(f"{shown}: cannot open: {exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "it is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UnreadableImageError(f"{shown}: cannot read file: {kind}")
        if st.st_size > max_bytes:
            raise ImageTooLargeError(f"{shown}: file is {st.st_size} bytes, over the limit of {max_bytes}")
        # One read sized by fstat (a regular file's size is known), then small reads
        # only while it keeps growing: never more than max_bytes + 1 in total.
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            want = max_bytes + 1
            chunks = [f.read(min(st.st_size + 1, want))]
            got = len(chunks[0])
            while chunks[-1] and got < want and got > st.st_size:
                chunks.append(f.read(min(want - got, 1 << 20)))
                got += len(chunks[-1])
    except OSError as exc:
        raise UnreadableImageError(f"{shown}: cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{shown}: file is over the limit of {max_bytes} bytes")
    return data, st


def printable_path(name: str | bytes) -> str:
    """A path as it can be shown in one line of a message (invalid UTF-8 escaped)."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\0", "\\0").replace("\n", "\\n").replace("\r", "\\r")


def _read_source(source: ImageInput, limits: ImageLimits) -> tuple[IO[bytes], str]:
    """Return a binary stream over the encoded image, with the file-size limit checked."""
    if isinstance(source, (str, os.PathLike)):
        data = read_regular_file(source, limits.max_file_bytes)
        return io.BytesIO(data), printable_path(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > limits.max_file_bytes:
            raise ImageTooLargeError(
                f"image data is {len(source)} bytes, over the limit of {limits.max_file_bytes}"
            )
        return io.BytesIO(bytes(source)), "<bytes>"
    if hasattr(source, "read"):
        try:
            data = source.read(limits.max_file_bytes + 1)
        except OSError as exc:
            raise UnreadableImageError(f"cannot read image stream: {exc}") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise UnreadableImageError("image stream must be opened in binary mode")
        if len(data) > limits.max_file_bytes:
            raise ImageTooLargeError(f"image stream is over the limit of {limits.max_file_bytes} bytes")
        return io.BytesIO(bytes(data)), _describe(source)
    raise UnreadableImageError(
        f"cannot load an image from {type(source).__name__}: give a path, bytes, a binary "
        "file object, a PIL image or a numpy array"
    )


def check_pixel_limit(width: int, height: int, limits: ImageLimits, name: str) -> None:
    if width <= 0 or height <= 0:
        raise UnreadableImageError(f"{name}: image has no pixels ({width}x{height})")
    if max(width, height) > limits.max_side:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} has a side over the limit of {limits.max_side} pixels"
        )
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} is {width * height} pixels, over the limit of {limits.max_pixels}"
        )


def _from_array(array: np.ndarray) -> Image.Image:
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise UnreadableImageError(
            f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}"
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        if arr.ndim == 2 and arr.dtype == np.uint16:
            pass  # Pillow's I;16, handled like a 16-bit file
        elif np.issubdtype(arr.dtype, np.floating):
            raise UnreadableImageError(
                "float image arrays are ambiguous (0-1 or 0-255?): convert to uint8 first"
            )
        else:
            raise UnreadableImageError(f"unsupported image array dtype {arr.dtype}; use uint8")
    try:
        return Image.fromarray(np.ascontiguousarray(arr))
    except (TypeError, ValueError) as exc:
        raise UnreadableImageError(f"cannot make an image from this array: {exc}") from exc


def load_image(
    source: ImageInput,
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    exif_transpose: bool = False,
    draft: tuple[str, tuple[int, int]] | None = None,
    draft_check: Callable[[Image.Image], bool] | None = None,
    dc_decoder: bool = False,
) -> Image.Image:
    """Decode ``source`` into a loaded PIL image (first frame), with limits checked.

    ``draft=(mode, (width, height))`` asks JPEG decoding for the smallest reduced scale
    that still covers that size, in that mode ("L" or "RGB"); other formats ignore it.
    ``draft_check(image)``, if given, sees a reduced decode first: when it returns
    False the file is decoded again at full size. ``dc_decoder=True`` lets a grey 1/8
    draft of a plain baseline JPEG come from :mod:`hashmatch._jpeg` (PDQ's fast path).
    The returned image keeps its own mode; hashers convert it.
    """
    if isinstance(source, Image.Image):
        check_pixel_limit(source.width, source.height, limits, "<PIL image>")
        img = source
        name = "<PIL image>"
        try:
            img.load()
        except Exception as exc:  # a lazily opened, truncated file
            raise UnreadableImageError(f"{name}: cannot decode image: {exc}") from exc
    elif isinstance(source, np.ndarray):
        if source.ndim >= 2:
            check_pixel_limit(int(source.shape[1]), int(source.shape[0]), limits, "<array>")
        return _orient(_from_array(source), exif_transpose, "<array>")
    else:
        stream, name = _read_source(source, limits)
        if not stream.getvalue():  # not getbuffer(): it copies the bytes the stream shares
            raise UnreadableImageError(f"{name}: empty file")
        img = None
        if dc_decoder and draft is not None and draft[0] == "L" and not exif_transpose:  # no EXIF there
            img = _dc_draft(stream.getvalue(), name, limits, draft[1])  # no copy: shares the bytes
        if img is None:
            img = _open_and_decode(stream, name, limits, draft)
        if draft_check is not None and DRAFT_SCALE_KEY in img.info and not draft_check(img):
            stream.seek(0)
            img = _open_and_decode(stream, name, limits, None)
    return _orient(img, exif_transpose, name)


def _dc_draft(data: bytes, name: str, limits: ImageLimits, size: tuple[int, int]) -> Image.Image | None:
    """The grey 1/8-scale draft from :mod:`hashmatch._jpeg`, when Pillow would pick 1/8
    for ``size`` and the decoder takes the file; else None (decode with Pillow)."""
    header = _jpeg.read_header(data)
    if header is None:
        return None
    check_pixel_limit(header.width, header.height, limits, name)
    # Pillow's JpegImageFile.draft rule: the largest of 8, 4, 2 within both ratios.
    if min(header.width // max(size[0], 1), header.height // max(size[1], 1)) < _jpeg.DC_SCALE:
        return None
    decoded = _jpeg.decode_dc(data, header)
    if decoded is None:
        return None
    img = Image.fromarray(decoded.pixels)
    img.info[DRAFT_SCALE_KEY] = _jpeg.DC_SCALE
    img.info[DCT_PLANES_KEY] = (decoded.planes, decoded.height, decoded.width)
    return img


def _open_and_decode(
    stream: IO[bytes], name: str, limits: ImageLimits, draft: tuple[str, tuple[int, int]] | None
) -> Image.Image:
    try:
        # No catch_warnings here: it is not thread-safe. Pillow warns only on images over
        # its threshold, which the default limit rejects anyway.
        img = Image.open(stream)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImageError(f"{name}: not a recognised image format") from exc
    except Exception as exc:  # Pillow raises many kinds for malformed headers
        raise UnreadableImageError(f"{name}: cannot open image: {exc}") from exc
    check_pixel_limit(img.width, img.height, limits, name)
    try:
        if draft is not None and img.format == "JPEG":
            mode, size = draft
            if img.mode in ("RGB", "L", "YCbCr"):
                img.draft(mode if img.mode != "L" else "L", size)
        img.seek(0)
        img.load()
        config = getattr(img, "decoderconfig", ())
        if config and isinstance(config[0], int) and config[0] in (2, 4, 8):
            # In info, so it survives convert(): hashers that model the full-resolution
            # filter (PDQ) need to know the pixels came from a 1/n decode.
            img.info[DRAFT_SCALE_KEY] = config[0]
    except Exception as exc:  # truncated data, corrupt streams, unsupported codecs
        raise UnreadableImageError(f"{name}: cannot decode image: {exc}") from exc
    return img


def _orient(img: Image.Image, exif_transpose: bool, name: str) -> Image.Image:
    if not exif_transpose:
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception as exc:
        raise UnreadableImageError(f"{name}: bad EXIF orientation data: {exc}") from exc


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert with Pillow's semantics (as imagehash and the PDQ references do)."""
    if img.mode == mode:
        return img
    try:
        if img.mode == "P" and "transparency" in img.info:
            # Pillow warns when such images skip RGBA; going through it is the same pixels.
            img = img.convert("RGBA")
        return img.convert(mode)
    except Exception as exc:
        raise UnreadableImageError(f"cannot convert a {img.mode} image to {mode}: {exc}") from exc


def _touches_all_edges(grey: np.ndarray, tolerance: int) -> bool:
    """Whether content (a pixel beyond ``tolerance`` of the top-left one) reaches all four
    edges, so the kept box would be the whole image and there is nothing to trim."""
    corner = int(grey[0, 0])
    return all(
        bool((np.abs(edge.astype(np.int16) - corner) > tolerance).any())
        for edge in (grey[0], grey[-1], grey[:, 0], grey[:, -1])
    )


def trim_borders(image: Image.Image, *, tolerance: int = 12, min_area: float = 0.2) -> Image.Image:
    """Cut away uniform borders (padding, letterbox and pillarbox bars), for matching.

    A row or column is border while every pixel in it stays within ``tolerance`` grey
    levels of the top-left pixel; the bounding box of everything else is kept. The
    image comes back unchanged (the same object) when there is nothing to trim or
    when the kept box would be under ``min_area`` of the image, which guards flat or
    mostly blank images. The query pipeline's trimmed view and the robustness
    benchmark's "undo padding" both use this one rule.
    """
    if not isinstance(image, Image.Image):
        raise UsageError(f"trim_borders needs a PIL image, got {type(image).__name__}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or not 0 <= tolerance <= 255:
        raise UsageError(f"tolerance must be an integer in [0, 255], got {tolerance!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, float)) or not 0.0 <= min_area <= 1.0:
        raise UsageError(f"min_area must be a number in [0, 1], got {min_area!r}")
    image = image if image.mode == "RGB" else image.convert("RGB")
    grey8 = np.asarray(image.convert("L"))
    if _touches_all_edges(grey8, tolerance):
        return image  # the common case, settled from the four edges alone (per scanned file)
    grey = grey8.astype(np.int16)
    content = np.abs(grey - grey[0, 0]) > tolerance
    rows = np.flatnonzero(content.any(axis=1))
    cols = np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return image
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (bottom - top) * (right - left) < min_area * grey.size or (top, left, bottom, right) == (0, 0, *grey.shape):
        return image
    return image.crop((left, top, right, bottom))
