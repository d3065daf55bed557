"""PDQ, Meta's 256-bit photo hash, bit-exact with ThreatExchange's C++ core.

Same pixels in, same hash and quality out as the reference (``pdqhash``, which wraps
the C++ core, on ``numpy.asarray(image.convert("RGB"))``): luma, two Jarosz box-filter
passes, decimation to 64x64, a 16x16 DCT and the median threshold. ``str(hash)`` is
ThreatExchange's 64-hex-digit form.

Pixel policy (the same as the references'): the stored pixels, converted to 8-bit RGB
by Pillow. Alpha is dropped without compositing, 16-bit images are clipped to 8 bits by
Pillow's ``convert``, grey images become R = G = B, and EXIF orientation is *not*
applied unless the caller asks for it (``exif_transpose=True``), because published hash
lists hash the stored pixels. Images under 5 pixels on a side: the reference hashes
them to all zeros with quality 0, and so does :func:`pdq_from_array`; hashing an image
(``hash_image``, ``compute_hashes``, a Matcher) refuses them with
:class:`~hashmatch.errors.UnreadableImageError` instead, because an all-zero hash is a
real hash value that other too-small or thin images would "match".

Quality (0-100) comes with every hash; upstream discards hashes under
:data:`PDQ_MIN_QUALITY` (flat or nearly blank images), see :func:`is_low_quality`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageError, UnreadableImageError, UsageError
from ..hashes import Hash
from .._loading import DRAFT_SCALE_KEY
from .._jit import kernels
from ._api import compute_hashes
from ._api import warmup as _warm_hashers
from ._pdq_fast import _dct_planes, _model_weights, _resample_weights
from ._registry import Algorithm, HashResult, register

_k = kernels("hashmatch.hashers._pdq_kernels")  # numba loads on the first hash, not at import

__all__ = [
    "DIHEDRAL_METHODS",
    "PDQ_BITS",
    "PDQ_DRAFT_MIN_SIDE",
    "PDQ_FAST_OPTIONS",
    "PDQ_MATCH_DISTANCE",
    "PDQ_MIN_QUALITY",
    "PDQ_PRERESIZE_SIDE",
    "is_low_quality",
    "pdq",
    "pdq_dihedral",
    "pdq_dihedral_from_array",
    "pdq_from_array",
    "pdq_with_quality",
    "warmup",
]

PDQ_BITS = 256
PDQ_MIN_QUALITY = 50
"""Hashes with a lower quality are unreliable; upstream recommends discarding them."""
PDQ_MATCH_DISTANCE = 31
"""Upstream's recommended match threshold (Hamming distance, inclusive)."""
PDQ_PRERESIZE_SIDE = 512
"""The C++ command-line hasher first resizes anything larger to 512x512 (nearest)."""
PDQ_DRAFT_MIN_SIDE = 0
"""Default smallest side for reduced-scale JPEG decoding; 0 decodes at full size.

Full size keeps hashes bit-exact with the reference. See notes/pdq.md for the measured
trade-off of speed against drift for 384, 192 and 96 (192: p95 drift 4 bits of 256)."""
PDQ_FAST_OPTIONS: Mapping[str, Any] = MappingProxyType({"draft_min_side": 96})
"""PDQ's fast path for JPEG files: ``options={"pdq": PDQ_FAST_OPTIONS}``. A baseline JPEG
of at least 768 pixels a side is decoded at 1/8 by :mod:`hashmatch._jpeg` and its PDQ
modelled from the block coefficients; anything else is decoded in full (or at 1/2-1/4
where PDQ's filter is wide enough). Not bit-exact: drift and speed in
notes/issue-14-pdq.md."""
_MIN_SIDE = 5  # the reference hashes smaller images as all zeros, quality 0
# Scratch buffers are kept per thread up to this many pixels (2 x 4 bytes each): fresh
# multi-megabyte buffers cost a page fault per 4 KiB, a third of the hashing time.
_KEEP_SCRATCH_PIXELS = 4096 * 4096
_scratch = threading.local()


def _scratch_buffers(pixels: int) -> tuple[np.ndarray, np.ndarray]:
    buffers = getattr(_scratch, "buffers", None)
    if buffers is not None and buffers[0].size >= pixels:
        return buffers
    buffers = (np.empty(pixels, dtype=np.float32), np.empty(pixels, dtype=np.float32))
    if pixels <= _KEEP_SCRATCH_PIXELS:
        _scratch.buffers = buffers
    return buffers


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """The reference's 16x64 DCT-II rows 1..16: float32(float32(sqrt(2/64)) * cos(...))."""
    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    matrix = np.empty((16, 64), dtype=np.float32)
    for i in range(16):
        for j in range(64):
            matrix[i, j] = scale * math.cos((math.pi / 2.0 / 64.0) * (i + 1) * (2 * j + 1))
    matrix.flags.writeable = False
    return matrix


def _preresize_512(rgb: np.ndarray) -> np.ndarray:
    """What pdq-photo-hasher does first: over 512 on either side -> 512x512, nearest.

    CImg's nearest-neighbour resize reads source index floor(x * size / 512).
    """
    h, w = rgb.shape[:2]
    if h <= PDQ_PRERESIZE_SIDE and w <= PDQ_PRERESIZE_SIDE:
        return rgb
    side = np.arange(PDQ_PRERESIZE_SIDE)
    rows = side * h // PDQ_PRERESIZE_SIDE
    cols = side * w // PDQ_PRERESIZE_SIDE
    return np.ascontiguousarray(rgb[rows[:, None], cols[None, :]])


def _check_rgb(rgb: object) -> np.ndarray:
    try:
        arr = np.asarray(rgb)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise ImageError(f"PDQ needs an (height, width, 3) uint8 RGB array: {exc}") from exc
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"PDQ needs an (height, width, 3) uint8 RGB array, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def _model_coefficients(planes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int]:
    rows = _model_weights(height, planes.shape[1])
    cols = _model_weights(width, planes.shape[2])
    coeffs, quality = _k.pdq_coeffs_dct_model(planes, _dct_matrix(), *rows, *cols)
    return coeffs, int(quality)


def _coefficients(rgb: np.ndarray, preresize_512: bool, decode_scale: int = 1) -> tuple[np.ndarray | None, int]:
    """DCT and quality of ``rgb``: (h, w, 3) RGB, or (h, w) luma from a reduced decode."""
    if preresize_512:
        rgb = _preresize_512(rgb)
    h, w = rgb.shape[:2]
    if h < _MIN_SIDE or w < _MIN_SIDE:
        return None, 0
    if decode_scale > 1 and not preresize_512:
        # Pixels from a 1/scale JPEG decode: model the full-resolution filter instead of
        # running the exact one at the wrong scale (p95 drift 22 bits -> 4 at 1/4).
        row_first, row_weights = _resample_weights(h, decode_scale)
        col_first, col_weights = _resample_weights(w, decode_scale)
        a, _ = _scratch_buffers(h * w)
        resampled = _k.pdq_coeffs_resampled_grey if rgb.ndim == 2 else _k.pdq_coeffs_resampled
        coeffs, quality = resampled(rgb, _dct_matrix(), a, row_first, row_weights, col_first, col_weights)
    else:
        coeffs, quality = _k.pdq_coeffs(rgb, _dct_matrix(), *_scratch_buffers(h * w))
    return coeffs, int(quality)


def _result(coeffs: np.ndarray | None, quality: int, fast: bool = False) -> HashResult:
    if coeffs is None:
        return HashResult(Hash(0, "pdq", PDQ_BITS), quality)
    # The same bits either way; the counting kernel is faster but compiles only for the fast path.
    bits = _k.bits_above_median_counted(coeffs) if fast else _k.bits_above_median(coeffs)
    return HashResult(Hash.from_bool_array(bits, algorithm="pdq"), quality)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be True or False, got {value!r}")
    return value


def pdq_from_array(rgb: np.ndarray, *, preresize_512: bool = False) -> HashResult:
    """PDQ hash and quality of an (height, width, 3) uint8 RGB array, no decoding step."""
    coeffs, quality = _coefficients(_check_rgb(rgb), _check_bool("preresize_512", preresize_512))
    return _result(coeffs, quality)


DIHEDRAL_METHODS = ("dct", "pixels")


def _turned(rgb: np.ndarray) -> tuple[np.ndarray, ...]:
    """The image under each of DIHEDRAL_NAMES, as the DCT sign flips define them."""
    return (
        rgb,
        np.rot90(rgb, 1),  # rot90: counter-clockwise (PIL's rotate(90))
        np.rot90(rgb, 2),
        np.rot90(rgb, 3),
        rgb[::-1],  # flipx: top-bottom
        rgb[:, ::-1],  # flipy: left-right
        rgb.swapaxes(0, 1),  # flipp: transpose (RGB or a grey draft)
        np.rot90(rgb, 2).swapaxes(0, 1),  # flipm: anti-transpose
    )


def _dihedral_results(rgb: np.ndarray, preresize_512: bool, scale: int, method: str) -> tuple[HashResult, ...]:
    if method not in DIHEDRAL_METHODS:
        raise UsageError(f"dihedral_method must be one of {DIHEDRAL_METHODS}, got {method!r}")
    preresize = _check_bool("preresize_512", preresize_512)
    if method == "pixels":
        # Eight full hashes: exact for losslessly turned copies, 8x the time.
        return tuple(
            _result(*_coefficients(np.ascontiguousarray(view), preresize, scale)) for view in _turned(rgb)
        )
    coeffs, quality = _coefficients(rgb, preresize, scale)
    if coeffs is None:
        return tuple(_result(None, quality) for _ in range(8))
    return tuple(_result(c, quality) for c in _k.dihedral_coeffs(coeffs))


def pdq_dihedral_from_array(
    rgb: np.ndarray, *, preresize_512: bool = False, dihedral_method: str = "dct"
) -> tuple[HashResult, ...]:
    """The eight dihedral PDQ hashes and qualities, in DIHEDRAL_NAMES order.

    ``"dct"`` (the reference's way) flips signs in the one DCT: 8 hashes for the price
    of one, within about 10 bits of hashing the turned image for photos of 700 px and
    more, but 30-100 bits off at 256 px. ``"pixels"`` hashes each turned image: 8x the
    time, exact for losslessly rotated or mirrored copies at any size.
    """
    return _dihedral_results(_check_rgb(rgb), preresize_512, 1, dihedral_method)


def _rgb_of(image: Image.Image) -> np.ndarray:
    """The pixels to hash: RGB, or luma alone for a grey reduced-scale JPEG draft."""
    if image.mode == "L" and _decode_scale(image) > 1:
        return _hashable(np.ascontiguousarray(np.asarray(image)))
    if image.mode != "RGB":  # the shared loader converts; direct callers might not
        raise ImageError(f"PDQ's compute expects an RGB image, got mode {image.mode}")
    return _hashable(np.ascontiguousarray(np.asarray(image)))


def _hashable(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` if PDQ can hash it; an image too small or thin for PDQ is refused."""
    h, w = np.shape(rgb)[:2]
    if h < _MIN_SIDE or w < _MIN_SIDE:
        raise UnreadableImageError(
            f"image is {w}x{h}: PDQ needs at least {_MIN_SIDE} pixels on each side"
        )
    return rgb


def _coefficients_of(image: Image.Image, preresize_512: bool) -> tuple[np.ndarray | None, int]:
    planes = None if preresize_512 else _dct_planes(image)
    if planes is not None:
        return _model_coefficients(*planes)
    return _coefficients(_rgb_of(image), preresize_512, _decode_scale(image))


def _decode_scale(image: Image.Image) -> int:
    """1, or the n of a 1/n JPEG draft decode (the loader records it in ``info``)."""
    scale = image.info.get(DRAFT_SCALE_KEY)
    if scale in (2, 4, 8):
        return int(scale)
    config = getattr(image, "decoderconfig", ())
    if isinstance(config, tuple) and config and isinstance(config[0], int) and config[0] in (2, 4, 8):
        return config[0]
    return 1


def _compute(
    image: Image.Image,
    *,
    preresize_512: bool = False,
    draft_min_side: int = PDQ_DRAFT_MIN_SIDE,
    dihedral_method: str = "dct",
) -> HashResult:
    _check_draft(draft_min_side)
    if dihedral_method not in DIHEDRAL_METHODS:
        raise UsageError(f"dihedral_method must be one of {DIHEDRAL_METHODS}, got {dihedral_method!r}")
    preresize = _check_bool("preresize_512", preresize_512)
    coeffs, quality = _coefficients_of(image, preresize)
    return _result(coeffs, quality, fast=not preresize and _dct_planes(image) is not None)


def _dihedral(
    image: Image.Image,
    *,
    preresize_512: bool = False,
    draft_min_side: int = PDQ_DRAFT_MIN_SIDE,
    dihedral_method: str = "dct",
) -> tuple[HashResult, ...]:
    _check_draft(draft_min_side)
    if dihedral_method == "dct" and not _check_bool("preresize_512", preresize_512) and _dct_planes(image) is not None:
        coeffs, quality = _coefficients_of(image, False)
        return tuple(_result(c, quality, fast=True) for c in _k.dihedral_coeffs(coeffs))
    return _dihedral_results(_rgb_of(image), preresize_512, _decode_scale(image), dihedral_method)


def _compute_rgb(
    rgb: np.ndarray, *, preresize_512: bool = False, draft_min_side: int = PDQ_DRAFT_MIN_SIDE, dihedral_method: str = "dct"
) -> HashResult:
    # An array is already decoded: draft_min_side has nothing to reduce.
    _check_draft(draft_min_side)
    if dihedral_method not in DIHEDRAL_METHODS:
        raise UsageError(f"dihedral_method must be one of {DIHEDRAL_METHODS}, got {dihedral_method!r}")
    return pdq_from_array(_hashable(_check_rgb(rgb)), preresize_512=preresize_512)


def _dihedral_rgb(
    rgb: np.ndarray, *, preresize_512: bool = False, draft_min_side: int = PDQ_DRAFT_MIN_SIDE, dihedral_method: str = "dct"
) -> tuple[HashResult, ...]:
    _check_draft(draft_min_side)
    return pdq_dihedral_from_array(_hashable(_check_rgb(rgb)), preresize_512=preresize_512, dihedral_method=dihedral_method)


def _check_draft(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"draft_min_side must be 0 (full decode) or a positive integer, got {value!r}")
    if 0 < value < 64:
        raise UsageError(f"draft_min_side must be 0 or at least 64 (PDQ samples 64x64), got {value}")
    return value


def _draft_ok(image: Image.Image, **_: Any) -> bool:
    """Whether PDQ can hash this reduced decode with little drift.

    A DC-decoded JPEG (its block coefficients at hand) always. A 1/n pixel decode only
    while PDQ's box window on the full image (ceil(side / 128) pixels) stays wider than
    n on both sides: below that the reduced pixels miss the detail the exact filter
    sees (256-pixel photos at 1/2 drifted far past 8 bits).
    The loader then decodes the file at full size instead.
    """
    if _dct_planes(image) is not None:
        return True
    scale = _decode_scale(image)
    full_side = min(image.width, image.height) * scale
    return scale == 1 or (full_side + 127) // 128 > scale


def _draft_size(
    *, preresize_512: bool = False, draft_min_side: int = PDQ_DRAFT_MIN_SIDE, dihedral_method: str = "dct"
) -> tuple[int, int] | None:
    side = _check_draft(draft_min_side)
    if side == 0 or preresize_512:  # the CLI's resize samples full-resolution pixels
        return None
    return (side, side)


PDQ = register(
    Algorithm(
        name="pdq",
        mode="RGB",
        bits=lambda **_: PDQ_BITS,
        compute=_compute,
        draft_size=_draft_size,
        options={"preresize_512": False, "draft_min_side": PDQ_DRAFT_MIN_SIDE, "dihedral_method": "dct"},
        dihedral=_dihedral,
        description="PDQ 256-bit photo hash with quality (ThreatExchange)",
        compute_rgb=_compute_rgb,
        dihedral_rgb=_dihedral_rgb,
        draft_mode="L",  # the fast path hashes JPEG's luma channel: no colour decode
        draft_ok=_draft_ok,
    )
)


def is_low_quality(result: HashResult | int | None) -> bool:
    """True when a PDQ result (or its quality) is under :data:`PDQ_MIN_QUALITY`.

    Matching skips such hashes: flat and nearly blank images all look alike. The rule
    is :meth:`HashResult.passes`, the one the Matcher applies: a missing quality is
    not low (nothing says it is).
    """
    if not isinstance(result, HashResult):
        result = HashResult(Hash(0, "pdq", 256), result)
    return not result.passes(PDQ_MIN_QUALITY)


def _own_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Move PDQ's own options out of ``kwargs`` (the rest go to compute_hashes)."""
    return {name: kwargs.pop(name) for name in ("draft_min_side", "dihedral_method") if name in kwargs}


def pdq_with_quality(image: Any, *, preresize_512: bool = False, fast: bool = True, **kwargs: Any) -> HashResult:
    """PDQ hash and quality of any image input (a path, bytes, file, PIL image, array).

    ``kwargs`` are PDQ's own ``draft_min_side`` (0: full decode, bit-exact; else a
    reduced JPEG decode, see notes/pdq.md) or go to :func:`hashmatch.compute_hashes`
    (``limits``, ``exif_transpose``).
    """
    options = {"preresize_512": preresize_512, **_own_options(kwargs)}
    return compute_hashes(image, ("pdq",), fast=fast, options={"pdq": options}, **kwargs)["pdq"][0]


def pdq(image: Any, *, preresize_512: bool = False, fast: bool = True, **kwargs: Any) -> Hash:
    """PDQ hash of any image input; see :func:`pdq_with_quality` for the quality."""
    return pdq_with_quality(image, preresize_512=preresize_512, fast=fast, **kwargs).hash


def pdq_dihedral(
    image: Any, *, preresize_512: bool = False, dihedral_method: str = "dct", fast: bool = True, **kwargs: Any
) -> tuple[HashResult, ...]:
    """The eight dihedral PDQ hashes of any image input, in DIHEDRAL_NAMES order.

    By default from the one DCT of the stored image, as the reference does; see
    :func:`pdq_dihedral_from_array` for ``dihedral_method="pixels"`` and when it matters.
    """
    options = {"preresize_512": preresize_512, "dihedral_method": dihedral_method, **_own_options(kwargs)}
    return compute_hashes(image, ("pdq",), fast=fast, options={"pdq": options}, dihedral=True, **kwargs)["pdq"]


def warmup() -> None:
    """Compile (or load from numba's cache) every PDQ kernel: PDQ's share of
    :func:`hashmatch.warmup`, on the same probe images."""
    _warm_hashers(("pdq",))
