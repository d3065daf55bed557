"""Seeded, photo-like synthetic images for tests, demos and benchmarks.

Every image is a function of one integer seed: layered colour gradients, smooth noise
at several scales (the low frequencies that perceptual hashes read), translucent
shapes, lines, a little text in Pillow's bundled font, a mild blur and sensor-like
grain. Each layer's orientation, colours and positions are drawn from the seed, so
two seeds give images whose hashes are unrelated (phash distances centre near 32 of
64), while one seed gives the same pixels and, for a fixed Pillow build, the same
encoded bytes.

``hashmatch synth --out DIR --count N --seed S`` writes a folder with a manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from ..errors import UsageError

__all__ = ["MANIFEST_NAME", "generate_image", "image_seed", "write_dataset"]

MANIFEST_NAME = "manifest.json"
_MANIFEST_VERSION = 1
_FORMATS = {"jpeg": ".jpg", "png": ".png"}
_LONG_SIDES = (320, 384, 480, 512, 640, 768, 800, 1024)
_ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9, 2.0, 5 / 4)
_WORDS = (
    "SALE", "Hello", "open", "2026", "cafe", "NO ENTRY", "river", "photo", "IMG", "beach",
    "city", "Mon-Fri", "exit", "#42", "love", "summer", "STOP", "north", "shop", "ok",
)  # fmt: skip


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**63:
        raise UsageError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


def _check_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"size must be (width, height) or None, got {size!r}")
    w, h = size
    for v in (w, h):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 16 <= v <= 8192:
            raise UsageError(f"width and height must be integers in [16, 8192], got {size!r}")
    return int(w), int(h)


def _check_long_side(long_side: object) -> int | None:
    if long_side is None:
        return None
    if isinstance(long_side, bool) or not isinstance(long_side, (int, np.integer)) or not 32 <= long_side <= 8192:
        raise UsageError(f"long_side must be an integer in [32, 8192], got {long_side!r}")
    return int(long_side)


def _random_size(rng: np.random.Generator, long_side: int | None = None) -> tuple[int, int]:
    drawn = int(rng.choice(_LONG_SIDES))  # drawn even when fixed, so the rest of the image is the same
    long_side = drawn if long_side is None else long_side
    short_side = int(round(long_side / float(rng.choice(_ASPECTS))))
    return (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)


def _upsample_image(grid: np.ndarray, w: int, h: int) -> Image.Image:
    """Bicubic upsampling of a small (gh, gw, 3) float grid in [0, 255] to a w x h image."""
    small = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8), "RGB")
    return small.resize((w, h), Image.Resampling.BICUBIC)


def _upsample(grid: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(_upsample_image(grid, w, h), dtype=np.float32)


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Linear and radial gradients plus smooth noise at several scales, as an RGB image."""
    # Built at a reduced scale and upsampled once: the content is smooth by design.
    sw, sh = max(8, w // 4), max(8, h // 4)
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    x = x / sw * 2 - 1
    y = y / sh * 2 - 1
    theta = rng.uniform(0, 2 * np.pi)
    t = (np.cos(theta) * x + np.sin(theta) * y) * 0.5 + 0.5
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    img = c0 + (c1 - c0) * t[..., None]
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(-1, 1, 2)
        radius = rng.uniform(0.2, 1.2)
        weight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius * radius))
        img += weight[..., None] * rng.uniform(-120, 120, 3).astype(np.float32)
    # Octaves of value noise, amplitude falling with frequency as in natural images.
    amplitude = rng.uniform(35, 70)
    for cells in (2, 4, 8, 16, 32):
        gh, gw = max(2, int(cells * sh / max(sw, sh)) + 1), max(2, int(cells * sw / max(sw, sh)) + 1)
        tint = rng.uniform(0.4, 1.0, 3)  # partly shared across channels: colourful, not grey
        grid = rng.normal(0, 1, (gh, gw, 1)) * tint + rng.normal(0, 1, (gh, gw, 3)) * (1 - tint)
        img += (_upsample(128 + 40 * grid, sw, sh) - 128) * np.float32(amplitude / 40)
        amplitude *= rng.uniform(0.45, 0.7)
    return _upsample_image(img, w, h)


def _colour(rng: np.random.Generator, alpha: tuple[int, int] = (255, 256)) -> tuple[int, int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b, int(rng.integers(*alpha))


def _draw_overlay(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Translucent shapes, lines and text on a transparent RGBA layer."""
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = max(w, h)
    for _ in range(int(rng.integers(3, 14))):
        kind = rng.integers(0, 3)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.03, 0.25, 2) * scale
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        fill = _colour(rng, (90, 256))
        outline = _colour(rng) if rng.random() < 0.3 else None
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=outline, width=int(rng.integers(1, 6)))
        elif kind == 1:
            draw.rectangle(box, fill=fill, outline=outline, width=int(rng.integers(1, 6)))
        else:
            n = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(0.4, 1.0, n)
            pts = [(float(cx + rx * r * np.cos(a)), float(cy + ry * r * np.sin(a))) for a, r in zip(angles, radii)]
            draw.polygon(pts, fill=fill, outline=outline)
    for _ in range(int(rng.integers(0, 8))):
        x0, x1 = rng.uniform(-0.1, 1.1, 2) * w
        y0, y1 = rng.uniform(-0.1, 1.1, 2) * h
        draw.line([(x0, y0), (x1, y1)], fill=_colour(rng, (120, 256)), width=int(rng.integers(1, max(2, scale // 60))))
    for _ in range(int(rng.integers(0, 4))):
        text = " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 4))))
        font = ImageFont.load_default(size=int(rng.integers(max(10, scale // 40), max(11, scale // 8))))
        draw.text((float(rng.uniform(0, 0.8) * w), float(rng.uniform(0, 0.9) * h)), text, fill=_colour(rng, (160, 256)), font=font)
    return layer


def generate_image(seed: int, *, size: tuple[int, int] | None = None, long_side: int | None = None) -> Image.Image:
    """A photo-like RGB image determined by ``seed``.

    ``size`` is (width, height); by default the seed also picks a size between 320 and
    1024 pixels on the long side, in landscape or portrait, at one of several aspect
    ratios. ``long_side`` fixes only the long side and keeps the seed's aspect and
    orientation. The same seed and size always give the same pixels.
    """
    seed = _check_seed(seed)
    fixed = _check_size(size)
    long_side = _check_long_side(long_side)
    rng = np.random.default_rng(seed)
    w, h = _random_size(rng, long_side) if fixed is None else fixed
    image = _background(rng, w, h).convert("RGBA")
    image = Image.alpha_composite(image, _draw_overlay(rng, w, h)).convert("RGB")
    blur = rng.uniform(0.0, 1.0)
    if blur > 0.6:  # soften drawn edges like a lens; a box blur is 5x cheaper than Gaussian
        image = image.filter(ImageFilter.BoxBlur(blur))
    # Sensor-like grain: small, zero-mean, so it adds texture without moving the hashes.
    # ImageChops.add computes clip(a + b - 6) in C, without full-size numpy temporaries.
    grain = Image.fromarray(rng.integers(0, 13, (h, w), dtype=np.uint8), "L").convert("RGB")
    return ImageChops.add(image, grain, offset=-6)


def image_seed(dataset_seed: int, index: int) -> int:
    """The seed of image ``index`` in the dataset made with ``dataset_seed``.

    Derived through numpy's SeedSequence so that datasets of nearby seeds share no
    images; 63 bits make collisions within a dataset vanishingly unlikely.
    """
    state = np.random.SeedSequence([_check_seed(dataset_seed), int(index)]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def _write_one(job: tuple[str, int, int, tuple[int, int] | None, int | None, str, int]) -> dict[str, object]:
    out, seed, index, fixed, long_side, format, quality = job
    s = image_seed(seed, index)
    image = generate_image(s, size=fixed, long_side=long_side)
    name = f"synth_{index:06d}{_FORMATS[format]}"
    buf = io.BytesIO()
    params = {"quality": quality, "optimize": False} if format == "jpeg" else {"compress_level": 6}
    image.save(buf, format=format.upper(), **params)
    data = buf.getvalue()
    Path(out, name).write_bytes(data)
    return {"file": name, "seed": s, "width": image.width, "height": image.height, "sha256": hashlib.sha256(data).hexdigest()}


def write_dataset(
    out_dir: str | os.PathLike[str],
    count: int,
    seed: int,
    *,
    size: tuple[int, int] | None = None,
    format: str = "jpeg",
    quality: int = 90,
    long_side: int | None = None,
    workers: int = 1,
) -> Path:
    """Write ``count`` images to ``out_dir`` and return the path of the manifest.

    The manifest (``manifest.json``) records the generator version, the dataset seed
    and, per image, its file name, own seed, width, height and SHA-256, so that any
    single image can be regenerated with :func:`generate_image` and checked.
    Files are named ``synth_000000.jpg`` and so on; existing files are overwritten.
    ``long_side`` is as in :func:`generate_image`; ``workers`` > 1 uses that many
    processes (the files are the same either way).
    """
    seed = _check_seed(seed)
    fixed = _check_size(size)
    long_side = _check_long_side(long_side)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise UsageError(f"count must be a non-negative integer, got {count!r}")
    if format not in _FORMATS:
        raise UsageError(f"format must be one of {', '.join(_FORMATS)}, got {format!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise UsageError(f"quality must be an integer in [1, 100], got {quality!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), seed, index, fixed, long_side, format, quality) for index in range(int(count))]
    if workers > 1 and len(jobs) > 16:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            entries = list(pool.map(_write_one, jobs, chunksize=8))
    else:
        entries = [_write_one(job) for job in jobs]
    manifest = {
        "generator": "hashmatch.testing.synthetic",
        "version": _MANIFEST_VERSION,
        "seed": seed,
        "count": int(count),
        "size": list(fixed) if fixed else None,
        "long_side": long_side,
        "format": format,
        "quality": quality if format == "jpeg" else None,
        "images": entries,
    }
    path = out / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path
