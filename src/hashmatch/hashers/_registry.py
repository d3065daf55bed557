"""The registry of hashing algorithms by name.

Each algorithm module builds one :class:`Algorithm` and calls :func:`register`. The
CLI, the Matcher and the benchmarks read :data:`ALGORITHMS`; nothing else needs to
know which algorithms exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import UsageError, unknown_algorithm
from ..hashes import Hash, record_default_bits

__all__ = ["ALGORITHMS", "Algorithm", "HashResult", "get_algorithm", "register"]

DIHEDRAL_NAMES = ("orig", "rot90", "rot180", "rot270", "flipx", "flipy", "flipp", "flipm")
"""Order of the eight dihedral variants, as the PDQ reference emits them."""


@dataclass(frozen=True, slots=True)
class HashResult:
    """A hash and what the algorithm says about it (PDQ's quality, 0-100)."""

    hash: Hash
    quality: int | None = None

    def passes(self, min_quality: int | None) -> bool:
        """The one quality-gate rule: a result with a quality under ``min_quality`` is
        not matched; one without a quality (the algorithm gives none) always is."""
        return min_quality is None or self.quality is None or self.quality >= min_quality


@dataclass(frozen=True, slots=True)
class Algorithm:
    """How to compute one algorithm from a decoded image.

    ``compute(image, **options)`` receives a loaded PIL image already converted to
    ``mode``. ``draft_size(**options)`` is the smallest (width, height) the algorithm
    can work from without noticeable drift, for reduced-scale JPEG decoding, or None
    when it needs full resolution. ``dihedral(image, **options)`` returns the eight
    :data:`DIHEDRAL_NAMES` variants, or is None when the algorithm has none.
    ``compute_rgb`` and ``dihedral_rgb``, where given, take a C-contiguous
    ``(height, width, 3)`` uint8 array with the same options and give the same result.
    ``draft_mode``, where given, is the mode a reduced-scale decode may use instead of
    ``mode`` ("L": luma alone, which JPEG stores apart); ``compute`` then receives the
    draft in that mode. ``draft_ok(image, **options)``, where given, sees a reduced
    decode first and may refuse it (False: the file is decoded again at full size).
    """

    name: str
    mode: str
    bits: Callable[..., int]
    compute: Callable[..., HashResult]
    draft_size: Callable[..., tuple[int, int] | None]
    options: Mapping[str, Any] = field(default_factory=dict)  # name -> default
    dihedral: Callable[..., tuple[HashResult, ...]] | None = None
    description: str = ""
    # Optional lanes for (height, width, 3) uint8 arrays, which skip a round trip through
    # PIL (two full-image copies, most of PDQ's time on a decoded 1024x768 array).
    compute_rgb: Callable[..., HashResult] | None = None
    dihedral_rgb: Callable[..., tuple[HashResult, ...]] | None = None
    draft_mode: str | None = None
    draft_ok: Callable[..., bool] | None = None

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(self.options)
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UsageError(f"{self.name} takes no option {sorted(unknown)}; its options: {known}")
        return {**self.options, **options}


_ALGORITHMS: dict[str, Algorithm] = {}
ALGORITHMS: Mapping[str, Algorithm] = MappingProxyType(_ALGORITHMS)


def register(algorithm: Algorithm) -> Algorithm:
    if algorithm.name in _ALGORITHMS:
        raise UsageError(f"algorithm {algorithm.name!r} is already registered")
    record_default_bits(algorithm.name, int(algorithm.bits(**algorithm.options)))
    _ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get_algorithm(name: str) -> Algorithm:
    try:
        return _ALGORITHMS[name]
    except (KeyError, TypeError):
        raise unknown_algorithm(name, _ALGORITHMS) from None


