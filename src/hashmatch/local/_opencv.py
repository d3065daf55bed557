"""The one place that imports OpenCV, so a missing extra fails with one clear message."""

from __future__ import annotations

from types import ModuleType

from ..errors import MissingDependencyError

INSTALL_HINT = "pip install 'hashmatch[local]'"


def opencv() -> ModuleType:
    """The ``cv2`` module, single-threaded; :class:`MissingDependencyError` when absent."""
    try:
        import cv2
    except ImportError as exc:
        raise MissingDependencyError(
            f"the local-feature stage needs OpenCV ({exc}): {INSTALL_HINT}"
        ) from None
    # One upload runs on one thread (servers run many uploads side by side); OpenCV's
    # own pool would oversubscribe the cores.
    cv2.setNumThreads(1)
    return cv2


def available() -> bool:
    """Whether the ``local`` extra is installed."""
    try:
        opencv()
    except MissingDependencyError:
        return False
    return True
