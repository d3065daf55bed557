"""Region proposals: the picture-like rectangles of a screenshot, a collage or a meme.

A reference copied into a screenshot or a collage is a small part of the upload, and
at a smaller scale than the reference's own features: its descriptors drift too far
for retrieval. Such layouts separate their parts with runs of flat rows or columns
(the window's background between text and picture, the white gap between tiles, the
caption bar's margins), so a recursive XY cut along flat lines finds the rectangles;
the large ones are re-examined at the reference's scale (see ``extract_views``).

Pure numpy on a grey copy at most :data:`ANALYSIS_SIDE` pixels long; no OpenCV.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ANALYSIS_SIDE", "propose_regions"]

ANALYSIS_SIDE = 512
_FLAT = 6  # grey levels a flat row or column may vary by (JPEG noise)
_MIN_SIDE = 0.08  # a proposal's short side, as a fraction of the image's long side
_MIN_AREA = 0.02  # and its area, as a fraction of the image's
_MAX_AREA = 0.85  # larger is (nearly) the whole upload, which is looked at anyway
_DEPTH = 8

Box = tuple[int, int, int, int]


def propose_regions(grey: npt.NDArray[np.uint8], limit: int = 4) -> list[Box]:
    """Up to ``limit`` boxes ``(left, top, right, bottom)`` in ``grey``'s pixels, largest
    first: rectangles bounded by flat lines that are large enough to hold a picture."""
    h, w = grey.shape
    if h < 16 or w < 16:
        return []
    step = max(1, int(np.ceil(max(h, w) / ANALYSIS_SIDE)))
    small = grey[::step, ::step].astype(np.int16)
    leaves: list[Box] = []
    _cut(small, (0, 0, small.shape[1], small.shape[0]), 0, leaves)
    sh, sw = small.shape
    long_side = max(sh, sw)
    out = []
    for x0, y0, x1, y1 in leaves:
        bw, bh = x1 - x0, y1 - y0
        area = bw * bh / float(sh * sw)
        if min(bw, bh) >= _MIN_SIDE * long_side and _MIN_AREA <= area <= _MAX_AREA:
            out.append((x0 * step, y0 * step, min(w, x1 * step), min(h, y1 * step)))
    out.sort(key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b))
    return out[:limit]


def _runs(flat: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[start, end)`` of the non-flat runs."""
    edges = np.flatnonzero(np.diff(np.r_[0, (~flat).astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _cut(img: npt.NDArray[np.int16], box: Box, depth: int, leaves: list[Box]) -> None:
    x0, y0, x1, y1 = box
    seg = img[y0:y1, x0:x1]
    rows = _runs((seg.max(axis=1) - seg.min(axis=1)) <= _FLAT)
    if not rows:
        return
    # Trim flat margins, then split along flat rows; a box with no flat row inside is
    # tried along columns. A box that splits neither way is a leaf.
    if len(rows) == 1:
        ry0, ry1 = rows[0]
        seg = seg[ry0:ry1]
        cols = _runs((seg.max(axis=0) - seg.min(axis=0)) <= _FLAT)
        if not cols:
            return
        if len(cols) == 1 or depth >= _DEPTH:
            cx0, cx1 = cols[0][0], cols[-1][1]
            inner = (x0 + cx0, y0 + ry0, x0 + cx1, y0 + ry1)
            if len(cols) == 1 and (cx0, ry0, cx1, ry1) != (0, 0, x1 - x0, y1 - y0) and depth < _DEPTH:
                _cut(img, inner, depth + 1, leaves)  # trimmed: its rows may split now
            else:
                leaves.append(inner)
            return
        for a, b in cols:
            _cut(img, (x0 + a, y0 + ry0, x0 + b, y0 + ry1), depth + 1, leaves)
        return
    if depth >= _DEPTH:
        leaves.append((x0, y0 + rows[0][0], x1, y0 + rows[-1][1]))
        return
    for a, b in rows:
        _cut(img, (x0, y0 + a, x1, y0 + b), depth + 1, leaves)
