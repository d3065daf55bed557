"""The result record of a match: :class:`Match`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Match"]


@dataclass(frozen=True, slots=True)
class Match:
    """One reference entry that an image matched.

    ``orientation`` names the dihedral variant of the upload that matched
    (``"rot90"``, ``"flipx"``, …) or is None for the image as it is. The hash of the
    reference is deliberately not part of a Match: reports must not spread it.

    ``stage`` says which stage found it: ``"global"`` (a whole-image hash within its
    threshold) or ``"local"`` (keypoints verified geometrically, see
    :mod:`hashmatch.local`; ``algorithm`` is then ``"orb"`` and ``distance`` the median
    descriptor distance of the inliers). A local match carries its evidence:
    ``inliers``, ``coverage`` (share of the reference's area spanned by the inliers),
    ``scale`` (upload pixels per reference pixel), ``rotation`` (degrees,
    counter-clockwise) and ``crop_box`` (the part of the reference the upload shows,
    in reference pixels: left, top, right, bottom).
    """

    entry_id: int
    list_name: str | None
    label: str | None
    external_id: str | None
    algorithm: str
    distance: int
    orientation: str | None = None
    stage: str = "global"
    inliers: int | None = None
    coverage: float | None = None
    scale: float | None = None
    rotation: float | None = None
    crop_box: tuple[float, float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field; the local-stage evidence only for local matches."""
        out = asdict(self)
        if self.stage == "global":
            for name in ("inliers", "coverage", "scale", "rotation", "crop_box"):
                del out[name]
        return out
