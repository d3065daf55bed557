"""Shared fixtures: a seeded rng and small photo-like images made on the fly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

# numba compiles (or loads its cache) on first call and these machines are shared:
# a per-example deadline would measure the machine, not the code.
settings.register_profile("hashmatch", deadline=None, print_blob=True)
settings.load_profile("hashmatch")

SHARED_PDQ = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "pdq"
"""The full PDQ reference vectors, beside the repository where the project keeps them."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_testdata: needs ../shared/testdata/pdq (the full PDQ vectors)")


def pytest_report_header(config: pytest.Config) -> str:
    where = "found" if SHARED_PDQ.is_dir() else "absent: tests marked shared_testdata are deselected"
    return f"PDQ reference vectors {SHARED_PDQ}: {where} (tests/data/golden always runs)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Not a skip: a fresh clone runs everything it has data for and says what it left out.
    if SHARED_PDQ.is_dir():
        return
    left_out = [item for item in items if item.get_closest_marker("shared_testdata")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("shared_testdata")]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261129)


def photo_like(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth gradients plus blobs plus fine noise: enough structure for stable hashes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[:, :, c] = 128 + 60 * np.sin(a * xx / max(width, 1) * 6 + b * yy / max(height, 1) * 6 + p * 3)
    for _ in range(4):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.1, 0.4) * max(width, height)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[:, :, None] * rng.uniform(-90, 90, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()
