"""The public hashing entry points: one image or many, one algorithm or several."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..errors import HashmatchError, ImageTooLargeError, UsageError
from ..hashes import Hash
from .._loading import (
    DCT_PLANES_KEY,
    DEFAULT_LIMITS,
    DRAFT_SCALE_KEY,
    ImageInput,
    ImageLimits,
    check_pixel_limit,
    load_image,
    to_mode,
    trim_borders as _trim_borders,
)
from ._registry import ALGORITHMS, Algorithm, HashResult, get_algorithm

__all__ = ["compute_hashes", "compute_query_hashes", "hash_image", "hash_images", "probe_images", "warmup"]

View = dict[str, tuple[HashResult, ...]]
"""One view of an upload hashed: ``{algorithm: (result, ...)}``, dihedral variants in
:data:`DIHEDRAL_NAMES` order when asked for."""


def _draft_request(algorithms: Sequence[tuple[Algorithm, dict[str, Any]]]) -> tuple[str, tuple[int, int]] | None:
    """The reduced-scale decode that serves every requested algorithm, or None."""
    width = height = 0
    mode = "L"
    for alg, opts in algorithms:
        size = alg.draft_size(**opts)
        if size is None:
            return None
        width, height = max(width, size[0]), max(height, size[1])
        if (alg.draft_mode or alg.mode) != "L":
            mode = "RGB"
    return mode, (width, height)


def compute_hashes(
    image: ImageInput,
    algorithms: Iterable[str] = ("phash",),
    *,
    fast: bool = True,
    limits: ImageLimits = DEFAULT_LIMITS,
    exif_transpose: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    dihedral: bool = False,
) -> dict[str, tuple[HashResult, ...]]:
    """Decode ``image`` once and hash it with each algorithm.

    Returns ``{name: (result, ...)}``: one :class:`HashResult` per algorithm, or its
    eight dihedral variants (original first) when ``dihedral`` is true and the
    algorithm has them. ``options`` maps an algorithm's name to its keyword options.
    ``fast`` allows reduced-scale JPEG decoding where the algorithm permits it.
    """
    return compute_query_hashes(
        image, algorithms, fast=fast, limits=limits, exif_transpose=exif_transpose,
        options=options, dihedral=dihedral, trim_borders=False,
    )[0]


def compute_query_hashes(
    image: ImageInput,
    algorithms: Iterable[str] = ("phash",),
    *,
    fast: bool = True,
    limits: ImageLimits = DEFAULT_LIMITS,
    exif_transpose: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    dihedral: bool = False,
    trim_borders: bool = False,
) -> list[View]:
    """Hashes of each view of an upload, as :func:`compute_hashes` gives them.

    The first view is the image as it is. With ``trim_borders``, a second view is the
    image with uniform borders cut away (padding, letterbox, pillarbox), when it has
    any: borders move every global hash far from the original's, and trimming them
    took padded copies from about 10% to 100% recall in the robustness benchmark.
    """
    options = options or {}
    chosen = []
    for name in algorithms:
        alg = get_algorithm(name)
        chosen.append((alg, alg.check_options(options.get(name, {}))))
    if not chosen:
        raise UsageError("no algorithm requested")
    out: dict[str, tuple[HashResult, ...]] = {}
    if _is_rgb_array(image) and not exif_transpose and not trim_borders:
        rgb = np.ascontiguousarray(image)
        check_pixel_limit(rgb.shape[1], rgb.shape[0], limits, "<array>")
        rest = []
        for alg, opts in chosen:
            if dihedral and alg.dihedral_rgb is not None:
                out[alg.name] = alg.dihedral_rgb(rgb, **opts)
            elif alg.compute_rgb is not None and not (dihedral and alg.dihedral is not None):
                out[alg.name] = (alg.compute_rgb(rgb, **opts),)
            else:
                rest.append((alg, opts))
        if not rest:
            return [out]
        chosen = rest
    draft = _draft_request(chosen) if fast else None
    checks = [(alg.draft_ok, opts) for alg, opts in chosen if alg.draft_ok is not None]
    draft_check = (lambda img: all(ok(img, **opts) for ok, opts in checks)) if draft and checks else None
    # The DC-only decoder serves the opt-in PDQ fast path only (an algorithm with its own
    # draft mode): default hashing keeps Pillow's decoder, which every upload meets, and
    # compiles nothing for JPEG (about 4 s of first-run compiling, measured).
    dc = draft is not None and any(alg.draft_mode is not None for alg, _ in chosen)
    img = load_image(image, limits=limits, exif_transpose=exif_transpose, draft=draft, draft_check=draft_check,
                     dc_decoder=dc)
    out.update(_hash_loaded(img, chosen, dihedral))
    views = [out]
    if trim_borders:
        trimmed = _trim_borders(img)
        if trimmed is not img and trimmed.size != img.size:
            if DRAFT_SCALE_KEY in img.info:
                trimmed.info[DRAFT_SCALE_KEY] = img.info[DRAFT_SCALE_KEY]
            trimmed.info.pop(DCT_PLANES_KEY, None)  # they describe the whole image
            views.append(_hash_loaded(trimmed, chosen, dihedral))
    return views


def _hash_loaded(
    img: Image.Image, chosen: Sequence[tuple[Algorithm, dict[str, Any]]], dihedral: bool
) -> dict[str, tuple[HashResult, ...]]:
    converted: dict[str, Image.Image] = {}
    out: dict[str, tuple[HashResult, ...]] = {}
    drafted = DRAFT_SCALE_KEY in img.info
    for alg, opts in chosen:
        try:
            mode = alg.draft_mode if drafted and alg.draft_mode == img.mode else alg.mode
            if mode not in converted:
                converted[mode] = to_mode(img, mode)
            pixels = converted[mode]
            if dihedral and alg.dihedral is not None:
                out[alg.name] = alg.dihedral(pixels, **opts)
            else:
                out[alg.name] = (alg.compute(pixels, **opts),)
        except MemoryError:
            # An image within the limits can still need more than this process may take
            # (imagehash's whash works at up to 8192 x 8192 in float64): that image fails,
            # its buffers are freed, and a batch goes on.
            raise ImageTooLargeError(
                f"{img.width}x{img.height} image: out of memory computing {alg.name}; "
                "lower ImageLimits.max_pixels or give the process more memory"
            ) from None
    return out


def _is_rgb_array(image: object) -> bool:
    return (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    )


def hash_image(
    image: ImageInput,
    algorithm: str = "phash",
    *,
    fast: bool = True,
    limits: ImageLimits = DEFAULT_LIMITS,
    exif_transpose: bool = False,
    **options: Any,
) -> Hash:
    """Hash one image (a path, bytes, a binary file, a PIL image or a numpy array).

    ``options`` are the algorithm's own (``hash_size`` for the imagehash family).
    Bad input raises :class:`~hashmatch.errors.UnreadableImageError` or
    :class:`~hashmatch.errors.ImageTooLargeError`.
    """
    results = compute_hashes(
        image,
        (algorithm,),
        fast=fast,
        limits=limits,
        exif_transpose=exif_transpose,
        options={algorithm: options},
    )
    return results[algorithm][0].hash


def hash_images(
    images: Iterable[ImageInput],
    algorithm: str = "phash",
    *,
    fast: bool = True,
    limits: ImageLimits = DEFAULT_LIMITS,
    exif_transpose: bool = False,
    **options: Any,
) -> list[Hash | HashmatchError]:
    """Hash many images; a bad one yields its error in its place and the rest go on."""
    get_algorithm(algorithm).check_options(options)  # fail fast on a usage error
    out: list[Hash | HashmatchError] = []
    for image in images:
        try:
            out.append(
                hash_image(image, algorithm, fast=fast, limits=limits, exif_transpose=exif_transpose, **options)
            )
        except HashmatchError as exc:
            out.append(exc)
    return out


def probe_images() -> tuple[Image.Image, ...]:
    """The images every warm-up hashes: not flat, so each code path runs, and one small
    enough for the hashers' small-image branches (PDQ below 64 pixels)."""
    rng = np.random.default_rng(0)
    return tuple(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in ((80, 96, 3), (20, 30, 3)))


def warmup(algorithms: Iterable[str] | None = None) -> None:
    """Compile (or load from numba's disk cache) the kernels of ``algorithms`` (default:
    every registered hasher)."""
    names = list(ALGORITHMS if algorithms is None else algorithms)
    for image in probe_images():
        compute_hashes(image, names, dihedral=True)
        compute_hashes(image, names, dihedral=False)
    # A JPEG file too: reduced decodes go through the DC decoder's kernels, and PDQ's
    # fast path through its filter model (a 512-pixel probe at 1/8).
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(512, dtype=np.uint8) // 2, (512, 1))).save(buffer, format="JPEG")
    for name in names:  # one at a time: a draft serves only algorithms that all allow one
        options = {"pdq": {"draft_min_side": 64}} if name == "pdq" else None
        for dihedral in (True, False):
            compute_hashes(buffer.getvalue(), (name,), options=options, dihedral=dihedral)
