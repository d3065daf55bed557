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

__all__ = ["resize"]

_kernels = kernels("hashmatch.local._resize_kernels")

_FILTERS = {Image.Resampling.BILINEAR: 2, Image.Resampling.BICUBIC: 3}


def resize(grey: npt.NDArray[np.uint8], size: tuple[int, int], resample: Image.Resampling) -> npt.NDArray[np.uint8]:
    """``grey`` (``(h, w)`` uint8) resized to ``size`` = ``(width, height)``, exactly as
    ``Image.fromarray(grey).resize(size, resample)`` would."""
    if resample not in _FILTERS:
        raise UsageError(f"resample must be BILINEAR or BICUBIC, got {resample!r}")
    arr = np.ascontiguousarray(grey, dtype=np.uint8)
    width, height = int(size[0]), int(size[1])
    if arr.ndim != 2 or min(arr.shape) < 1 or width < 1 or height < 1:
        raise UsageError(f"need a non-empty 2-D image and a positive size, got {arr.shape} -> {size}")
    return _kernels.resize(arr, width, height, _FILTERS[resample])
