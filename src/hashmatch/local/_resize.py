"""Resizing of grey uploads for the local stage: Pillow's result, at a fraction of its cost.

The region views of an upload (:func:`~._features.region_views`) resize the decoded grey
upload once per view (the whole of it at 0.7 and 0.8 of its scale when no region is
proposed); Pillow's resize took ~1.9 ms of an upload's ~22 ms there (issue 12, round 6).
:func:`resize` returns the very bytes Pillow's ``Image.resize`` returns for a grey image
with the bilinear or bicubic filter (no ``box``, no ``reducing_gap``), so the keypoints,
descriptors and verdicts downstream are unchanged: ``tests/test_local_resize.py``
compares the two on random images and sizes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from .._jit import kernels
from ..errors import UsageError
from ._opencv import opencv

__all__ = ["resize"]

_kernels = kernels("hashmatch.local._resize_kernels")

_FILTERS = {Image.Resampling.BILINEAR: 2, Image.Resampling.BICUBIC: 3}


def resize(grey: npt.NDArray[np.uint8], size: tuple[int, int], resample: Image.Resampling) -> npt.NDArray[np.uint8]:
    """``grey`` (``(h, w)`` uint8) resized to ``size`` = ``(width, height)``, exactly as
    ``Image.fromarray(grey).resize(size, resample)`` would (Pillow 13's passes, in its order).

    Both passes run as one vectorised kernel over whole rows (:func:`convolve_rows`): the
    horizontal one on the transposed image (OpenCV transposes 0.8 MB in ~0.05 ms; a
    pixel-by-pixel horizontal pass took ~0.9 ms of a 1024 x 768 view's ~1 ms).
    """
    if resample not in _FILTERS:
        raise UsageError(f"resample must be BILINEAR or BICUBIC, got {resample!r}")
    arr = np.ascontiguousarray(grey, dtype=np.uint8)
    width, height = int(size[0]), int(size[1])
    if arr.ndim != 2 or min(arr.shape) < 1 or width < 1 or height < 1:
        raise UsageError(f"need a non-empty 2-D image and a positive size, got {arr.shape} -> {size}")
    h, w = arr.shape
    kind = _FILTERS[resample]
    if (width, height) == (w, h):
        return arr.copy()
    transpose = opencv().transpose

    def columns(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        bounds, weights = _kernels.coefficients(w, 0.0, float(w), width, kind)
        return transpose(_kernels.convolve_rows(transpose(image), bounds, weights, 0))

    if height == h:
        return columns(arr)
    ybounds, yweights = _kernels.coefficients(h, 0.0, float(h), height, kind)
    if width == w:
        return _kernels.convolve_rows(arr, ybounds, yweights, 0)
    if 0 < h - height and h - height > 2 * (w - width):  # Pillow: vertical first when the height shrinks much more
        return columns(_kernels.convolve_rows(arr, ybounds, yweights, 0))
    first, last = int(ybounds[0, 0]), int(ybounds[-1, 0] + ybounds[-1, 1])  # the source rows used
    return _kernels.convolve_rows(columns(arr[first:last]), ybounds, yweights, first)
