"""ahash, dhash, phash and whash, bit-identical to imagehash 4.3 on the same image.

Each resizes with the same Pillow call imagehash makes (grayscale, LANCZOS), then a
numba kernel does the arithmetic. phash falls back to scipy's DCT when a coefficient
ties the median within rounding (flat images), and whash uses PyWavelets as imagehash
does: in both cases the bits then come from the very same floating-point sequence.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..hashes import Hash
from .._jit import kernels, lazy_import
from ._api import hash_image
from ._registry import DIHEDRAL_NAMES, Algorithm, HashResult, register

_k = kernels("hashmatch.hashers._kernels")  # numba loads on the first hash, not at import
# imagehash's wavelet transform (whash bits identical to imagehash's), loaded on first use.
pywt = lazy_import("pywt")

__all__ = ["ahash", "dhash", "phash", "whash"]

_LANCZOS = Image.Resampling.LANCZOS
# A reduced-scale JPEG decode must still cover twice the resize target and at least
# 64 px: at exactly the target (1/8 scale of a 256 px image), ahash drifts by up to
# 10 bits; with this margin 1024x768 still decodes at 1/8. See benchmarks/bench_hashing.py.
DRAFT_MARGIN = 2
DRAFT_MIN_SIDE = 64


def _check_size(name: str, value: object, minimum: int = 2) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return value


def _reduce(image: Image.Image, width: int, height: int) -> np.ndarray:
    return np.asarray(image.resize((width, height), _LANCZOS), dtype=np.uint8)


def _draft_square(size: int) -> tuple[int, int]:
    side = max(size * DRAFT_MARGIN, DRAFT_MIN_SIDE)
    return (side, side)


# -- ahash ---------------------------------------------------------------------------
def _ahash(image: Image.Image, *, hash_size: int = 8) -> HashResult:
    _check_size("hash_size", hash_size)
    pixels = _reduce(image, hash_size, hash_size)
    return HashResult(Hash.from_bool_array(_k.above_mean(pixels), algorithm="ahash"))


# -- dhash ---------------------------------------------------------------------------
def _dhash(image: Image.Image, *, hash_size: int = 8) -> HashResult:
    _check_size("hash_size", hash_size)
    pixels = _reduce(image, hash_size + 1, hash_size)
    return HashResult(Hash.from_bool_array(_k.right_brighter(pixels), algorithm="dhash"))


# -- phash ---------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _basis(n: int, k: int) -> np.ndarray:
    basis = _k.dct_basis(n, k)
    basis.flags.writeable = False
    return basis


def _phash_bits(pixels: np.ndarray, hash_size: int) -> np.ndarray:
    n = pixels.shape[0]
    bits, ambiguous = _k.dct_low_above_median(pixels, _basis(n, hash_size))
    if ambiguous:
        # imagehash's own computation, for the rare tie at the median. Imported here, not
        # at the top: it adds ~0.17 s to `import hashmatch` (python -X importtime) for a
        # path few images take.
        import scipy.fftpack

        dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
        low = dct[:hash_size, :hash_size]
        bits = low > np.median(low)
    return bits


def _phash(image: Image.Image, *, hash_size: int = 8, highfreq_factor: int = 4) -> HashResult:
    _check_size("hash_size", hash_size)
    _check_size("highfreq_factor", highfreq_factor, 1)
    size = hash_size * highfreq_factor
    pixels = _reduce(image, size, size)
    return HashResult(Hash.from_bool_array(_phash_bits(pixels, hash_size), algorithm="phash"))


def _dihedral_views(pixels: np.ndarray) -> tuple[np.ndarray, ...]:
    """The reduced image under each of :data:`DIHEDRAL_NAMES` (PDQ's convention)."""
    return (
        pixels,
        np.rot90(pixels, 1),  # rot90: counter-clockwise, as PDQ's reference and PIL's rotate(90)
        np.rot90(pixels, 2),
        np.rot90(pixels, -1),
        pixels[::-1, :],  # flipx: top-bottom
        pixels[:, ::-1],  # flipy: left-right
        pixels.T,  # flipp: transpose
        np.rot90(pixels, 2).T,  # flipm: anti-transpose
    )


def _phash_dihedral(image: Image.Image, *, hash_size: int = 8, highfreq_factor: int = 4) -> tuple[HashResult, ...]:
    """phash of each dihedral view of the reduced square image, from one DCT.

    Equal, bit for bit, to hashing each turned copy of the reduced image (the DCT
    sign identities are exact; a near-tie falls back to scipy on the turned pixels).
    Resizing commutes with the square's symmetries up to rounding, so this is within
    a bit or two of hashing a rotated or mirrored file.
    """
    _check_size("hash_size", hash_size)
    _check_size("highfreq_factor", highfreq_factor, 1)
    size = hash_size * highfreq_factor
    pixels = _reduce(image, size, size)
    bits, ambiguous = _k.dihedral_above_median(pixels, _basis(size, hash_size))
    if ambiguous.any():
        views = _dihedral_views(pixels)
        bits = bits.copy()
        for i in np.flatnonzero(ambiguous):
            bits[i] = _phash_bits(np.ascontiguousarray(views[i]), hash_size)
    return tuple(HashResult(Hash(value, "phash", nbits)) for value, nbits in _pack_rows(bits))


def _pack_rows(bits: np.ndarray) -> list[tuple[int, int]]:
    """(value, bit length) of each row's bits, as :meth:`Hash.from_bool_array` reads them.

    One ``packbits`` for all eight variants instead of eight: this is per scanned file,
    and the eight separate packings cost about a third of phash's non-decode time.
    """
    flat = bits.reshape(bits.shape[0], -1)
    nbits = flat.shape[1]
    packed = np.packbits(flat, axis=1)  # MSB first, rows padded to whole bytes
    shift = packed.shape[1] * 8 - nbits
    return [(int.from_bytes(row.tobytes(), "big") >> shift, nbits) for row in packed]


# -- whash ---------------------------------------------------------------------------
def _whash(
    image: Image.Image,
    *,
    hash_size: int = 8,
    image_scale: int | None = None,
    mode: str = "haar",
    remove_max_haar_ll: bool = True,
) -> HashResult:
    _check_size("hash_size", hash_size)
    if hash_size & (hash_size - 1):
        raise UsageError(f"hash_size must be a power of 2 for whash, got {hash_size}")
    if image_scale is not None:
        _check_size("image_scale", image_scale)
        if image_scale & (image_scale - 1):
            raise UsageError(f"image_scale must be a power of 2, got {image_scale}")
    else:
        natural = 2 ** int(math.log2(min(image.size)))
        image_scale = max(natural, hash_size)
    ll_max_level = int(math.log2(image_scale))
    level = int(math.log2(hash_size))
    if level > ll_max_level:
        raise UsageError(f"hash_size {hash_size} is larger than image_scale {image_scale}")
    pixels = _reduce(image, image_scale, image_scale) / 255.0
    if remove_max_haar_ll:
        coeffs = list(pywt.wavedec2(pixels, "haar", level=ll_max_level))
        coeffs[0] *= 0
        pixels = pywt.waverec2(coeffs, "haar")
    low = np.ascontiguousarray(pywt.wavedec2(pixels, mode, level=ll_max_level - level)[0])
    return HashResult(Hash.from_bool_array(_k.above_median(low), algorithm="whash"))


def _square_bits(hash_size: int = 8, **_: object) -> int:
    return hash_size * hash_size


register(
    Algorithm(
        name="ahash",
        mode="L",
        bits=_square_bits,
        compute=_ahash,
        draft_size=lambda hash_size=8: _draft_square(hash_size),
        options={"hash_size": 8},
        description="average hash (imagehash.average_hash)",
    )
)
register(
    Algorithm(
        name="dhash",
        mode="L",
        bits=_square_bits,
        compute=_dhash,
        draft_size=lambda hash_size=8: _draft_square(hash_size + 1),
        options={"hash_size": 8},
        description="difference hash (imagehash.dhash)",
    )
)
register(
    Algorithm(
        name="phash",
        mode="L",
        bits=_square_bits,
        compute=_phash,
        draft_size=lambda hash_size=8, highfreq_factor=4: _draft_square(hash_size * highfreq_factor),
        options={"hash_size": 8, "highfreq_factor": 4},
        dihedral=_phash_dihedral,
        description="DCT perceptual hash (imagehash.phash)",
    )
)
register(
    Algorithm(
        name="whash",
        mode="L",
        bits=_square_bits,
        compute=_whash,
        # Its scale comes from the stored size: a reduced decode would change the hash.
        draft_size=lambda **_: None,
        options={"hash_size": 8, "image_scale": None, "mode": "haar", "remove_max_haar_ll": True},
        description="wavelet hash (imagehash.whash)",
    )
)



def ahash(image, *, hash_size: int = 8, **kwargs) -> Hash:  # type: ignore[no-untyped-def]
    """imagehash.average_hash of any image input (see :func:`hashmatch.hash_image`)."""
    return hash_image(image, "ahash", hash_size=hash_size, **kwargs)


def dhash(image, *, hash_size: int = 8, **kwargs) -> Hash:  # type: ignore[no-untyped-def]
    """imagehash.dhash of any image input (see :func:`hashmatch.hash_image`)."""
    return hash_image(image, "dhash", hash_size=hash_size, **kwargs)


def phash(image, *, hash_size: int = 8, highfreq_factor: int = 4, **kwargs) -> Hash:  # type: ignore[no-untyped-def]
    """imagehash.phash of any image input (see :func:`hashmatch.hash_image`)."""
    return hash_image(image, "phash", hash_size=hash_size, highfreq_factor=highfreq_factor, **kwargs)


def whash(image, *, hash_size: int = 8, **kwargs) -> Hash:  # type: ignore[no-untyped-def]
    """imagehash.whash of any image input (see :func:`hashmatch.hash_image`)."""
    return hash_image(image, "whash", hash_size=hash_size, **kwargs)
