"""ORB keypoints and 256-bit binary descriptors, and their compact stored form.

A reference is scaled to :data:`REFERENCE_LONG_SIDE` pixels on its long side before
detection, so every reference yields features at the same scale whatever its file
size; an upload is scaled down to :data:`QUERY_LONG_SIDE` at most (never up), since
what it shows may be a small part of it (a collage, a screenshot). ORB's own
8-level pyramid (factor 1.2) then covers relative scales of about 1/3.6 to 3.6.

Stored form (one row per reference, format version :data:`FORMAT_VERSION`): the
descriptors as ``n × 32`` bytes, and the keypoints as ``n × 3`` little-endian
uint16 (x and y in 1/8 pixel of the scaled reference, the pyramid level), 38 bytes
per feature. Features are stored *retrieval order first*: the first
:data:`RETRIEVAL_FEATURES` are the ones held in memory and indexed; all take part
in verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..errors import FileFormatError, UsageError
from .._loading import DEFAULT_LIMITS, DRAFT_SCALE_KEY, ImageInput, ImageLimits, _read_source, load_image, to_mode
from ._lowtexture import retry_threshold
from ._opencv import opencv
from ._regions import propose_regions
from ._resize import resize
from ._stability import stability

__all__ = [
    "FORMAT_VERSION",
    "QUERY_FEATURES",
    "QUERY_LONG_SIDE",
    "REFERENCE_FEATURES",
    "REFERENCE_LONG_SIDE",
    "RETRIEVAL_FEATURES",
    "LocalFeatures",
    "extract_features",
    "extract_views",
    "reference_features",
    "region_views",
]

FORMAT_VERSION = 1
REFERENCE_LONG_SIDE = 512
QUERY_LONG_SIDE = 1024
REFERENCE_FEATURES = 256  # stored per reference, 38 bytes each, on disk only (512 measured: notes/issue-12.md)
RETRIEVAL_FEATURES = 20  # held in memory and indexed per reference (~95 bytes each; 16 until round 5: 2 KB allows 20)
QUERY_FEATURES = 1000
REGION_FEATURES = 400  # per proposed region (extract_views)
REGION_LONG_SIDE = REFERENCE_LONG_SIDE  # a region is examined at the references' scale
REGION_LIMIT = 4  # regions examined per upload: the four tiles of a 2 x 2 collage
RESCALED: tuple[float, ...] = (0.7, 0.8)  # the whole upload is examined again at these scales (region_views) ...
RESCALE_WITH_REGIONS = False  # ... only when it proposed no regions
LEVEL_BANDS = np.array([1, 4], dtype=np.uint8)  # pyramid levels 0-1, 2-4, 5-7: scales 1-1.2, 1.4-2.1, 2.5-3.6
_OVERDETECT = 2  # upload features detected per feature kept (3 in round 2)
QUERY_PYRAMID = (1.2, 8)  # ORB scale factor and levels
REFERENCE_PYRAMID = (1.2, 8)
_GRID = 4  # retrieval features are spread over a GRID x GRID partition of the reference
_XY_STEP = 8.0  # stored coordinates are in 1/8 pixel
_FAST_THRESHOLD = 7  # references: low, so smooth images (skies, gradients) still get keypoints
QUERY_FAST_THRESHOLD = 12  # uploads (over-detected: a higher threshold mostly drops corners not kept anyway; 7 -> 12: -25 % ORB time)
RESCALED_LEVELS = 3  # pyramid levels of a rescaled view: its coarser levels repeat the whole view's
_STRETCH_TO = 128  # detection sees a grey range (10th-90th percentile) at least this wide ...
_STRETCH_QUANTILE = 0.1  # a rotation's black corners or a thin border do not hide a hazy picture
_STRETCH_GAIN = 8.0  # ... stretched by at most this: beyond it JPEG noise, not the picture, makes the corners


@dataclass(frozen=True, slots=True, eq=False)
class LocalFeatures:
    """Keypoints and descriptors of one image, in the pixels of its scaled copy.

    ``xy`` is ``(n, 2)`` float32, ``level`` ``(n,)`` uint8 (ORB pyramid level),
    ``descriptors`` ``(n, 32)`` uint8. ``width``/``height`` are the image's own size and
    ``scale`` the factor from it to the scaled copy the keypoints live in.
    """

    xy: npt.NDArray[np.float32]
    level: npt.NDArray[np.uint8]
    descriptors: npt.NDArray[np.uint8]
    width: int
    height: int
    scale: float

    def __len__(self) -> int:
        return int(self.descriptors.shape[0])

    def __repr__(self) -> str:  # descriptors of known material stay out of logs
        return f"LocalFeatures(n={len(self)}, width={self.width}, height={self.height})"

    @property
    def scaled_size(self) -> tuple[int, int]:
        return (max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale)))

    # -- stored form ----------------------------------------------------------------
    def to_blobs(self) -> tuple[bytes, bytes]:
        """``(keypoints, descriptors)`` as stored (see the module docstring)."""
        geo = np.empty((len(self), 3), dtype="<u2")
        geo[:, :2] = np.clip(np.rint(self.xy * _XY_STEP), 0, 65535)
        geo[:, 2] = self.level
        return geo.tobytes(), np.ascontiguousarray(self.descriptors, dtype=np.uint8).tobytes()

    def to_row(self) -> tuple[int, int, int, bytes, bytes]:
        """``(format, width, height, keypoints, descriptors)``: what the store keeps."""
        return (FORMAT_VERSION, self.width, self.height, *self.to_blobs())

    @classmethod
    def from_blobs(
        cls, version: int, width: int, height: int, keypoints: bytes, descriptors: bytes
    ) -> LocalFeatures:
        """Read the stored form back; :class:`FileFormatError` when it does not add up."""
        if version != FORMAT_VERSION:
            raise FileFormatError(f"local features of format {version}; this hashmatch reads {FORMAT_VERSION}")
        n, rest = divmod(len(descriptors), 32)
        if rest or len(keypoints) != 6 * n or width <= 0 or height <= 0:
            raise FileFormatError("stored local features are truncated or inconsistent")
        geo = np.frombuffer(keypoints, dtype="<u2").reshape(n, 3)
        xy = (geo[:, :2].astype(np.float32) / _XY_STEP).astype(np.float32)
        level = geo[:, 2].astype(np.uint8)
        desc = np.frombuffer(descriptors, dtype=np.uint8).reshape(n, 32)
        return cls(xy, level, desc, int(width), int(height), _scale_to(width, height, REFERENCE_LONG_SIDE, upscale=True))


def _scale_to(width: int, height: int, long_side: int, *, upscale: bool) -> float:
    factor = long_side / max(width, height)
    return factor if upscale or factor < 1.0 else 1.0


def _grey(image: ImageInput, limits: ImageLimits, draft: bool) -> tuple[Image.Image, int]:
    """The image in grey, and the JPEG reduced-decode factor (1 for a full decode)."""
    # For uploads a reduced-scale JPEG decode is enough (nothing finer than
    # QUERY_LONG_SIDE is used); references are decoded in full, once.
    request = ("L", (QUERY_LONG_SIDE, QUERY_LONG_SIDE)) if draft else None
    img = load_image(image, limits=limits, draft=request)
    factor = int(img.info.get(DRAFT_SCALE_KEY, 1))
    return to_mode(img, "L"), factor


def _detect(grey: npt.NDArray[np.uint8], nfeatures: int, pyramid: tuple[float, int], fast: int = _FAST_THRESHOLD) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    grey = _stretched(grey)
    found = _orb(grey, nfeatures, pyramid, fast)
    lower = retry_threshold(found[3].shape[0], fast, pyramid[1])  # a near-featureless image: ._lowtexture
    if lower is not None:
        again = _orb(grey, nfeatures, pyramid, lower)
        if again[3].shape[0] > found[3].shape[0]:
            return again
    return found


def _orb(grey: npt.NDArray[np.uint8], nfeatures: int, pyramid: tuple[float, int], fast: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    cv2 = opencv()
    orb = cv2.ORB_create(
        nfeatures=nfeatures, scaleFactor=pyramid[0], nlevels=pyramid[1], edgeThreshold=15, patchSize=31,
        fastThreshold=fast,
    )
    keypoints, desc = orb.detectAndCompute(grey, None)
    if desc is None or not keypoints:
        return (np.zeros((0, 2), np.float32), np.zeros(0, np.uint8), np.zeros(0, np.float32), np.zeros((0, 32), np.uint8))
    xy = np.asarray(cv2.KeyPoint_convert(keypoints), dtype=np.float32).reshape(-1, 2)  # in C++, not a list
    # map + fromiter: a third of a list comprehension's time over ~2 000 keypoints
    level = np.fromiter(map(attrgetter("octave"), keypoints), np.int64, len(keypoints)).astype(np.uint8)
    response = np.fromiter(map(attrgetter("response"), keypoints), np.float32, len(keypoints))
    return xy, level, response, np.ascontiguousarray(desc, dtype=np.uint8)


def _stretched(grey: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``grey`` with its 10th-90th percentile range stretched to :data:`_STRETCH_TO` levels
    when it is narrower (the gain grows smoothly as the range shrinks, so a crop of a
    picture is stretched about as much as the picture).

    A hazy or dark photo offers FAST too few corners above its threshold. ORB's
    descriptors compare pixel pairs, so an increasing affine map of the intensities
    leaves them as they were: only *which* corners are found changes, and a copy of
    the same low-contrast picture (a crop, a region of a screenshot) is stretched alike.
    """
    if grey.size == 0:
        return grey
    cv2 = opencv()
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / grey.size
    lo, hi = int(np.searchsorted(cdf, _STRETCH_QUANTILE)), int(np.searchsorted(cdf, 1 - _STRETCH_QUANTILE))
    gain = min(_STRETCH_TO / max(hi - lo, 1), _STRETCH_GAIN)
    if gain <= 1.0:
        return grey
    lut = np.clip((np.arange(256, dtype=np.float32) - (lo + hi) / 2) * gain + 127.5, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(grey), lut)


def _grey_features(grey_img: Image.Image, factor: int, long_side: int, upscale: bool, nfeatures: int) -> tuple[LocalFeatures, npt.NDArray[np.float32]]:
    feats, response, _ = _scaled_features(grey_img, factor, long_side, upscale, nfeatures)
    return feats, response


def _scaled_features(grey_img: Image.Image, factor: int, long_side: int, upscale: bool, nfeatures: int) -> tuple[LocalFeatures, npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """As :func:`_grey_features`, with the scaled grey copy the keypoints live in."""
    dw, dh = grey_img.size
    width, height = dw * factor, dh * factor  # the image's own size, before any reduced decode
    scale = _scale_to(width, height, long_side, upscale=upscale)
    dscale = scale * factor  # from decoded pixels to the scaled copy
    if abs(dscale - 1.0) > 1e-9:
        size = (max(1, round(dw * dscale)), max(1, round(dh * dscale)))
        resample = Image.Resampling.BILINEAR if dscale < 1 else Image.Resampling.BICUBIC
        # Pillow's bytes either way; its reduce-then-resize path has no twin here.
        grey = (np.asarray(grey_img.resize(size, resample, reducing_gap=2.0)) if dscale < 0.5
                else resize(np.asarray(grey_img), size, resample))
    else:
        grey = np.asarray(grey_img)
    xy, level, response, desc = (_detect(grey, nfeatures, REFERENCE_PYRAMID) if upscale else
                                 _detect(grey, nfeatures, QUERY_PYRAMID, QUERY_FAST_THRESHOLD))
    return LocalFeatures(xy, level, desc, width, height, scale), response, grey


def extract_features(
    image: ImageInput, *, max_features: int = QUERY_FEATURES, limits: ImageLimits = DEFAULT_LIMITS
) -> LocalFeatures:
    """Features of an upload (scaled down to :data:`QUERY_LONG_SIDE`), spread first.

    The order is the same round-robin over grid cells as a reference's, so that the
    first rows (those looked up in the index) are not all on a caption or a UI's text.
    """
    return _whole_view(image, limits, _check_count(max_features))[0]


def _whole_view(image: ImageInput, limits: ImageLimits, max_features: int) -> tuple[LocalFeatures, Image.Image, int]:
    """The upload's features, its decoded grey copy and the reduced-decode factor."""
    grey_img, factor = _grey(image, limits, draft=True)
    # Detect more than kept, then keep a spread: strong corners of UI text or captions
    # would otherwise crowd out the picture's own features.
    whole, response = _grey_features(grey_img, factor, QUERY_LONG_SIDE, False, int(_OVERDETECT * max_features))
    order = retrieval_order(whole.xy, response, whole.scaled_size, whole.level)
    return _reorder(whole, order[:max_features]), grey_img, factor


def extract_views(
    image: ImageInput, *, max_features: int = QUERY_FEATURES, region_features: int = REGION_FEATURES,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> list[LocalFeatures]:
    """The upload's features (as :func:`extract_features`), then those of each proposed
    region (:func:`~._regions.propose_regions`: the picture of a screenshot, the tiles
    of a collage) re-detected with the region scaled to :data:`REGION_LONG_SIDE`.

    Every view shares the first one's frame (its keypoints are in the pixels of the
    upload's scaled copy), so a verification against any of them reads the same way.
    A copy shown at a third of its size keeps too few matching descriptors at the
    upload's scale; at the reference's own scale it keeps many more.
    """
    whole, grey_img, factor = _whole_view(image, limits, _check_count(max_features))
    return [whole, *region_views(grey_img, factor, whole, _check_count(region_features))]


def region_views(grey_img: Image.Image, factor: int, whole: LocalFeatures, region_features: int = REGION_FEATURES) -> list[LocalFeatures]:
    """The features of each region proposed in ``grey_img`` (the decoded upload whose
    features are ``whole``) or, when none is, of the whole upload at each
    :data:`RESCALED` scale; all in ``whole``'s frame."""
    views = []
    dscale = whole.scale * factor  # decoded pixels -> the whole view's scaled copy
    pixels = np.asarray(grey_img)
    boxes = propose_regions(pixels, REGION_LIMIT)
    # The whole upload at each RESCALED scale, as one more region: a crop scaled back
    # up to full size shows the reference enlarged, and ORB's own pyramid, which only
    # ever shrinks, matches it less well than this copy does.
    dw, dh = grey_img.size
    jobs = [(box, REGION_LONG_SIDE / max(box[2] - box[0], box[3] - box[1])) for box in boxes]
    if not boxes or RESCALE_WITH_REGIONS:
        # An upload cut into regions (a screenshot, a collage) is not itself an enlarged
        # crop, and its region views already cost the most (notes/issue-12.md, round 3).
        jobs += [((0, 0, dw, dh), dscale * f) for f in RESCALED]
    levels = [QUERY_PYRAMID[1]] * len(boxes) + [RESCALED_LEVELS] * (len(jobs) - len(boxes))
    for ((x0, y0, x1, y1), s), nlevels in zip(jobs, levels):
        size = (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))
        region = resize(pixels[y0:y1, x0:x1], size, Image.Resampling.BICUBIC if s > 1 else Image.Resampling.BILINEAR)
        xy, level, resp, desc = _detect(region, int(_OVERDETECT * region_features), (QUERY_PYRAMID[0], nlevels),
                                        QUERY_FAST_THRESHOLD)
        if desc.shape[0] == 0:
            continue
        keep = retrieval_order(xy, resp, size, level)[:region_features]
        mapped = ((xy[keep] / np.float32(s)) + np.array([x0, y0], np.float32)) * np.float32(dscale)
        views.append(LocalFeatures(mapped.astype(np.float32), level[keep], np.ascontiguousarray(desc[keep]),
                                   whole.width, whole.height, whole.scale))
    return views


def reference_features(
    image: ImageInput, *, max_features: int = REFERENCE_FEATURES, limits: ImageLimits = DEFAULT_LIMITS
) -> LocalFeatures:
    """Features of a reference (scaled to :data:`REFERENCE_LONG_SIDE`), retrieval order first.

    The retrieval features are spread over the image (alternately the most stable and the
    strongest of each cell of a 4 × 4 grid, then of the rest: :mod:`._stability`) and over scales,
    so that a crop of any part of the reference, or a copy at half size, keeps some of
    them. Descriptors are those of :func:`~._stability.stability` (a consensus over
    altered copies when it is on); stored features of older references stay valid.
    """
    _check_count(max_features)
    grey_img, factor = _grey(image, limits, draft=False)
    feats, response, grey = _scaled_features(grey_img, factor, REFERENCE_LONG_SIDE, True, max_features)
    # Retrieval rows alternate between the features that survive a re-upload best (round 4:
    # most missed copies had none of their reference's rows within the retrieval radius)
    # and the strongest (round 3's): stability alone lost crops and screenshots on half of
    # the originals (notes/issue-12.md).
    strength, descriptors = stability(grey, feats.xy, feats.level, feats.descriptors, response, _query_detect)
    feats = LocalFeatures(feats.xy, feats.level, descriptors, feats.width, feats.height, feats.scale)
    both = np.column_stack([retrieval_order(feats.xy, strength, feats.scaled_size, feats.level),
                            retrieval_order(feats.xy, response, feats.scaled_size, feats.level)]).ravel()
    _, first = np.unique(both, return_index=True)  # each row at its first place
    return _reorder(feats, both[np.sort(first)])


def _query_detect(grey: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """Keypoints and descriptors as an upload's are detected (for :func:`~._stability.stability`)."""
    xy, _, _, desc = _detect(grey, QUERY_FEATURES, QUERY_PYRAMID, QUERY_FAST_THRESHOLD)
    return xy, desc


def retrieval_order(
    xy: npt.NDArray[np.float32], response: npt.NDArray[np.float32], size: tuple[int, int],
    level: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.intp]:
    """Row order that spreads the first rows out: round-robin over grid cells by strength
    and, when ``level`` is given, interleaved over scale bands (:data:`LEVEL_BANDS`).

    Without the bands the strongest features are nearly all from the finest pyramid
    level, which a collage tile or a screenshot at half size no longer shows.
    """
    n = xy.shape[0]
    if n == 0:
        return np.zeros(0, np.intp)
    w, h = size
    cx = np.minimum((xy[:, 0] * _GRID / max(w, 1)).astype(np.int64), _GRID - 1)
    cy = np.minimum((xy[:, 1] * _GRID / max(h, 1)).astype(np.int64), _GRID - 1)
    cell = cy * _GRID + cx
    band = np.zeros(n, np.int64) if level is None else np.searchsorted(LEVEL_BANDS, level, side="left")
    out = []
    for b in np.unique(band):
        rows = np.flatnonzero(band == b)
        out.append(rows[_round_robin(cell[rows], response[rows])])
    # Interleave the bands: position k of every band before position k + 1 of any.
    pos = np.concatenate([np.arange(r.size) for r in out])
    which = np.concatenate([np.full(r.size, k) for k, r in enumerate(out)])
    rows = np.concatenate(out)
    return rows[np.lexsort((which, pos))].astype(np.intp)


def _round_robin(cell: npt.NDArray[np.int64], response: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
    n = cell.size
    by_strength = np.lexsort((-response, cell))  # grouped by cell, strongest first in each
    sorted_cells = cell[by_strength]
    starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank_in_cell = np.empty(n, np.int64)
    rank_in_cell[by_strength] = np.arange(n) - np.repeat(starts, counts)
    return np.lexsort((-response, rank_in_cell)).astype(np.intp)


def _reorder(feats: LocalFeatures, order: npt.NDArray[np.intp]) -> LocalFeatures:
    return LocalFeatures(
        np.ascontiguousarray(feats.xy[order]), np.ascontiguousarray(feats.level[order]),
        np.ascontiguousarray(feats.descriptors[order]), feats.width, feats.height, feats.scale,
    )


def _check_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= int(value) <= 100_000:
        raise UsageError(f"max_features must be an integer from 1 to 100000, got {value!r}")
    return int(value)


def rereadable(image: ImageInput, limits: ImageLimits = DEFAULT_LIMITS) -> ImageInput:
    """``image`` as something that can be decoded twice (a stream becomes its bytes)."""
    if hasattr(image, "read") and not isinstance(image, (Image.Image, np.ndarray)):
        stream, _ = _read_source(image, limits)
        return stream.getvalue()
    return image
