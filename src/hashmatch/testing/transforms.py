"""Seeded, parameterised image alterations: the copies a matcher must still find.

Each transform is a pure function of an image and keyword parameters; the ones that
draw anything random take a ``seed`` parameter, so a :class:`TransformSpec` (name
plus parameters) always gives the same pixels. :func:`apply_transform` runs one,
:func:`make_variants` runs many and records each :class:`Variant` with its original,
transform, family and parameters. :func:`standard_suite` is the fixed grid the
robustness benchmark measures; :func:`sample_specs` draws random parameters from a
seed for demos and fuzzing.

Families group transforms for reporting: resize, aspect, jpeg, crop, pad, rotate
(small angles), rotate90, mirror, color, blur, sharpen, noise, overlay, screenshot.
Undoing padding is product code (:func:`hashmatch._loading.trim_borders`, re-exported
here for the benchmark). About 500 lines: a catalogue of 21 small transforms and their
registry, read one function at a time; splitting it would only scatter the catalogue.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from .. import trim_borders
from ..errors import UsageError
from .synthetic import generate_image

__all__ = [
    "FAMILIES",
    "HARD_FAMILIES",
    "TRANSFORMS",
    "Transform",
    "TransformSpec",
    "Variant",
    "apply_chain",
    "apply_transform",
    "hard_suite",
    "make_variants",
    "sample_specs",
    "standard_suite",
    "trim_borders",
]

Colour = tuple[int, int, int]


# -- helpers -----------------------------------------------------------------------------
def _rgb(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_range(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not low <= float(value) <= high:
        raise UsageError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)


def _check_colour(colour: object) -> Colour:
    if (
        not isinstance(colour, (tuple, list))
        or len(colour) != 3
        or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in colour)
    ):
        raise UsageError(f"colour must be three integers 0-255, got {colour!r}")
    return (int(colour[0]), int(colour[1]), int(colour[2]))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, int(size)))


# -- geometry ----------------------------------------------------------------------------
def resize(image: Image.Image, *, scale: float) -> Image.Image:
    """Scale both sides by ``scale`` (0.05-8; below 1 shrinks), bicubic."""
    image = _rgb(image)
    scale = _check_range("scale", scale, 0.05, 8.0)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def aspect(image: Image.Image, *, x: float = 1.0, y: float = 1.0) -> Image.Image:
    """Stretch width by ``x`` and height by ``y`` independently (0.2-5 each)."""
    image = _rgb(image)
    x = _check_range("x", x, 0.2, 5.0)
    y = _check_range("y", y, 0.2, 5.0)
    return image.resize((max(1, round(image.width * x)), max(1, round(image.height * y))), Image.Resampling.BICUBIC)


def crop(image: Image.Image, *, fraction: float, x: float = 0.5, y: float = 0.5) -> Image.Image:
    """Remove ``fraction`` (0-0.9) of the width and of the height.

    ``x`` and ``y`` (0-1) place the kept window: 0.5 is centred, 0 keeps the left or
    top edge, 1 the right or bottom edge.
    """
    image = _rgb(image)
    fraction = _check_range("fraction", fraction, 0.0, 0.9)
    x = _check_range("x", x, 0.0, 1.0)
    y = _check_range("y", y, 0.0, 1.0)
    kw, kh = max(1, round(image.width * (1 - fraction))), max(1, round(image.height * (1 - fraction)))
    left, top = round((image.width - kw) * x), round((image.height - kh) * y)
    return image.crop((left, top, left + kw, top + kh))


def pad(image: Image.Image, *, fraction: float, colour: Colour = (0, 0, 0)) -> Image.Image:
    """Add a border of ``fraction`` (0-2) of the width and height on every side."""
    image = _rgb(image)
    fraction = _check_range("fraction", fraction, 0.0, 2.0)
    bx, by = round(image.width * fraction), round(image.height * fraction)
    return ImageOps.expand(image, border=(bx, by, bx, by), fill=_check_colour(colour))


def letterbox(image: Image.Image, *, ratio: float = 16 / 9, colour: Colour = (0, 0, 0)) -> Image.Image:
    """Pad to width/height ``ratio`` with bars (pillarbox if narrower, letterbox if wider)."""
    image = _rgb(image)
    ratio = _check_range("ratio", ratio, 0.1, 10.0)
    w, h = image.size
    if w / h < ratio:
        new_w, new_h = round(h * ratio), h
    else:
        new_w, new_h = w, round(w / ratio)
    canvas = Image.new("RGB", (new_w, new_h), _check_colour(colour))
    canvas.paste(image, ((new_w - w) // 2, (new_h - h) // 2))
    return canvas


def rotate(image: Image.Image, *, degrees: float, colour: Colour = (0, 0, 0)) -> Image.Image:
    """Rotate counter-clockwise by ``degrees`` about the centre, same size, corners filled."""
    image = _rgb(image)
    degrees = _check_range("degrees", degrees, -360.0, 360.0)
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=_check_colour(colour))


def turn(image: Image.Image, *, quarter_turns: int) -> Image.Image:
    """Rotate counter-clockwise by a multiple of 90 degrees, losslessly."""
    image = _rgb(image)
    if isinstance(quarter_turns, bool) or not isinstance(quarter_turns, (int, np.integer)):
        raise TypeError(f"quarter_turns must be an int, got {type(quarter_turns).__name__}")
    ops = {0: None, 1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}
    op = ops[int(quarter_turns) % 4]
    return image.copy() if op is None else image.transpose(op)


def mirror(image: Image.Image, *, axis: str = "horizontal") -> Image.Image:
    """Mirror left-right (``"horizontal"``) or top-bottom (``"vertical"``)."""
    image = _rgb(image)
    ops = {"horizontal": Image.Transpose.FLIP_LEFT_RIGHT, "vertical": Image.Transpose.FLIP_TOP_BOTTOM}
    if axis not in ops:
        raise UsageError(f"axis must be 'horizontal' or 'vertical', got {axis!r}")
    return image.transpose(ops[axis])


# -- encoding and colour -------------------------------------------------------------------
def jpeg(image: Image.Image, *, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (1-100) and decode again."""
    image = _rgb(image)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise UsageError(f"quality must be an integer in [1, 100], got {quality!r}")
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def brightness(image: Image.Image, *, factor: float) -> Image.Image:
    """Scale brightness (1 unchanged, 0 black)."""
    return ImageEnhance.Brightness(_rgb(image)).enhance(_check_range("factor", factor, 0.0, 5.0))


def contrast(image: Image.Image, *, factor: float) -> Image.Image:
    """Scale contrast about the mean grey (1 unchanged, 0 flat grey)."""
    return ImageEnhance.Contrast(_rgb(image)).enhance(_check_range("factor", factor, 0.0, 5.0))


def saturation(image: Image.Image, *, factor: float) -> Image.Image:
    """Scale colour saturation (1 unchanged, 0 grey)."""
    return ImageEnhance.Color(_rgb(image)).enhance(_check_range("factor", factor, 0.0, 5.0))


def gamma(image: Image.Image, *, gamma: float) -> Image.Image:
    """Apply ``out = 255 * (in / 255) ** gamma`` per channel."""
    g = _check_range("gamma", gamma, 0.1, 10.0)
    lut = [min(255, round(255 * (i / 255) ** g)) for i in range(256)] * 3
    return _rgb(image).point(lut)


def grayscale(image: Image.Image) -> Image.Image:
    """Convert to grey (kept as RGB so every hasher sees the same mode)."""
    return _rgb(image).convert("L").convert("RGB")


# -- filters and noise ------------------------------------------------------------------------
def blur(image: Image.Image, *, radius: float) -> Image.Image:
    """Gaussian blur of ``radius`` pixels (0-50)."""
    return _rgb(image).filter(ImageFilter.GaussianBlur(_check_range("radius", radius, 0.0, 50.0)))


def sharpen(image: Image.Image, *, radius: float = 2.0, percent: int = 150) -> Image.Image:
    """Unsharp mask with ``radius`` pixels and ``percent`` strength."""
    radius = _check_range("radius", radius, 0.1, 50.0)
    percent = int(_check_range("percent", percent, 1, 1000))
    return _rgb(image).filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=0))


def noise(image: Image.Image, *, sigma: float, seed: int = 0) -> Image.Image:
    """Add Gaussian noise of standard deviation ``sigma`` (grey levels) per pixel and channel."""
    sigma = _check_range("sigma", sigma, 0.0, 255.0)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(_rgb(image), dtype=np.float32)
    pixels = pixels + rng.normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


# -- overlays ----------------------------------------------------------------------------------
def caption(image: Image.Image, *, text: str = "WHEN THE CODE WORKS", size: float = 0.1, position: str = "bottom") -> Image.Image:
    """Meme-style caption: white text with a black outline, ``size`` of the height, at top or bottom."""
    image = _rgb(image).copy()
    size = _check_range("size", size, 0.01, 0.5)
    if position not in ("top", "bottom"):
        raise UsageError(f"position must be 'top' or 'bottom', got {position!r}")
    font = _font(image.height * size)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=2)
    x = (image.width - (right - left)) / 2 - left
    y = image.height * 0.03 if position == "top" else image.height * 0.97 - (bottom - top) - top
    draw.text((x, y), text, font=font, fill=(255, 255, 255), stroke_width=max(1, round(image.height * size / 12)), stroke_fill=(0, 0, 0))
    return image


def logo(image: Image.Image, *, size: float = 0.15, corner: str = "bottom-right", seed: int = 0) -> Image.Image:
    """An opaque badge (rounded box, disc, letters) of ``size`` of the width in a corner."""
    image = _rgb(image).copy()
    size = _check_range("size", size, 0.01, 0.9)
    corners = {"top-left": (0, 0), "top-right": (1, 0), "bottom-left": (0, 1), "bottom-right": (1, 1)}
    if corner not in corners:
        raise UsageError(f"corner must be one of {', '.join(corners)}, got {corner!r}")
    rng = np.random.default_rng(seed)
    bw = max(4, round(image.width * size))
    bh = max(4, round(bw * 0.45))
    margin = round(image.width * 0.02)
    cx, cy = corners[corner]
    x0 = margin if cx == 0 else image.width - margin - bw
    y0 = margin if cy == 0 else image.height - margin - bh
    draw = ImageDraw.Draw(image)
    fg, bg = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    draw.rounded_rectangle([x0, y0, x0 + bw, y0 + bh], radius=bh // 4, fill=bg)
    draw.ellipse([x0 + bh * 0.15, y0 + bh * 0.15, x0 + bh * 0.85, y0 + bh * 0.85], fill=fg)
    letters = "".join(chr(int(c)) for c in rng.integers(65, 91, 3))
    draw.text((x0 + bh, y0 + bh * 0.2), letters, font=_font(bh * 0.6), fill=fg)
    return image


def watermark(image: Image.Image, *, text: str = "© SAMPLE", opacity: float = 0.3, angle: float = 30.0) -> Image.Image:
    """Semi-transparent white text tiled over the whole image at ``angle`` degrees."""
    image = _rgb(image)
    opacity = _check_range("opacity", opacity, 0.0, 1.0)
    angle = _check_range("angle", angle, -90.0, 90.0)
    side = math.ceil(math.hypot(image.width, image.height))
    layer = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(max(image.width, image.height) / 14)
    step_x, step_y = max(image.width, image.height) / 3, max(image.width, image.height) / 7
    alpha = round(255 * opacity)
    for row, yy in enumerate(np.arange(0, side, step_y)):
        for xx in np.arange(-(row % 2) * step_x / 2, side, step_x):
            draw.text((float(xx), float(yy)), text, font=font, fill=(255, 255, 255, alpha))
    layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC)
    left, top = (side - image.width) // 2, (side - image.height) // 2
    layer = layer.crop((left, top, left + image.width, top + image.height))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def screenshot(image: Image.Image, *, fill: float = 0.7, seed: int = 0) -> Image.Image:
    """Embed the image, unscaled, in a larger app-like canvas of which it spans ``fill`` of the width.

    The canvas has a title bar, a side panel and lines of text, as a screenshot of a
    post or a photo viewer would.
    """
    image = _rgb(image)
    fill = _check_range("fill", fill, 0.1, 1.0)
    rng = np.random.default_rng(seed)
    cw = max(image.width, round(image.width / fill))
    bar = max(8, round(cw * 0.05))
    ch = max(image.height + 2 * bar, round(image.height / fill) + bar)
    light = bool(rng.random() < 0.5)
    base = (245, 245, 245) if light else (24, 26, 30)
    ink = (40, 40, 40) if light else (220, 220, 220)
    canvas = Image.new("RGB", (cw, ch), base)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, cw, bar], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    x = int(rng.integers(0, cw - image.width + 1))
    y = bar + int(rng.integers(0, max(1, ch - bar - image.height) + 1))
    y = min(y, ch - image.height)
    font = _font(bar * 0.6)
    for line in range(int(rng.integers(2, 6))):
        ty = bar + 4 + line * bar * 0.8
        draw.text((4, ty), "lorem ipsum dolor sit amet"[: int(rng.integers(8, 27))], font=font, fill=ink)
    for line in range(3):
        draw.text((4, ch - (line + 1) * bar * 0.8), "@user · 2h · reply", font=font, fill=ink)
    canvas.paste(image, (x, y))
    return canvas


# -- registry -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Transform:
    """A named alteration, its reporting family and its function."""

    name: str
    family: str
    function: Callable[..., Image.Image]


def _table() -> dict[str, Transform]:
    rows = [
        ("resize", "resize", resize), ("aspect", "aspect", aspect), ("jpeg", "jpeg", jpeg),
        ("crop", "crop", crop), ("pad", "pad", pad), ("letterbox", "pad", letterbox),
        ("rotate", "rotate", rotate), ("turn", "rotate90", turn), ("mirror", "mirror", mirror),
        ("brightness", "color", brightness), ("contrast", "color", contrast), ("gamma", "color", gamma),
        ("saturation", "color", saturation), ("grayscale", "color", grayscale),
        ("blur", "blur", blur), ("sharpen", "sharpen", sharpen), ("noise", "noise", noise),
        ("caption", "overlay", caption), ("logo", "overlay", logo), ("watermark", "overlay", watermark),
        ("screenshot", "screenshot", screenshot),
    ]  # fmt: skip
    return {name: Transform(name, family, fn) for name, family, fn in rows}


TRANSFORMS: Mapping[str, Transform] = MappingProxyType(_table())
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(t.family for t in TRANSFORMS.values()))


def _transform(name: str) -> Transform:
    try:
        return TRANSFORMS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}") from None


def _plain(value: Any) -> Any:
    """Parameters as JSON-friendly, hashable values (tuples for colours)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


@dataclass(frozen=True, slots=True)
class TransformSpec:
    """One transform with its parameters: hashable, printable, reproducible."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, **params: Any) -> TransformSpec:
        _transform(name)
        return cls(name, tuple(sorted((k, _plain(v)) for k, v in params.items())))

    @property
    def family(self) -> str:
        return _transform(self.name).family

    @property
    def label(self) -> str:
        """``crop(fraction=0.1, x=0)``: short and unique within a suite."""
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params)
        return f"{self.name}({inner})"

    def apply(self, image: Image.Image) -> Image.Image:
        return apply_transform(image, self.name, **dict(self.params))

    def to_dict(self) -> dict[str, Any]:
        return {"transform": self.name, "family": self.family, "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}}


@dataclass(frozen=True, slots=True)
class Variant:
    """An altered copy and what made it: original's id, transform, family, parameters."""

    original: str
    spec: TransformSpec
    image: Image.Image

    def record(self) -> dict[str, Any]:
        return {"original": self.original, **self.spec.to_dict()}


def apply_transform(image: Image.Image, name: str, **params: Any) -> Image.Image:
    """Apply the transform called ``name`` with ``params``; returns a new RGB image.

    Unknown names or parameters raise ValueError or TypeError, never a Pillow error.
    """
    transform = _transform(name)
    try:
        return transform.function(image, **params)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "missing" in str(exc):
            raise TypeError(f"{name}: {exc}") from None
        raise


def make_variants(image: Image.Image, original: str, specs: Iterable[TransformSpec]) -> Iterator[Variant]:
    """Yield one :class:`Variant` of ``image`` per spec, in order."""
    for spec in specs:
        yield Variant(original, spec, spec.apply(image))


def standard_suite(*, seed: int = 0) -> tuple[TransformSpec, ...]:
    """The fixed grid of the robustness benchmark: 55 variants in 14 families.

    ``seed`` only feeds the transforms that draw (noise, logo, screenshot), so a
    suite is reproducible and two suites with different seeds differ only there.
    """
    s = TransformSpec.of
    white = (255, 255, 255)
    return (
        s("resize", scale=0.25), s("resize", scale=0.5), s("resize", scale=0.75), s("resize", scale=1.5), s("resize", scale=2.0),
        s("aspect", x=0.75), s("aspect", y=0.8), s("aspect", x=1.3), s("aspect", y=1.5),
        s("jpeg", quality=10), s("jpeg", quality=20), s("jpeg", quality=35), s("jpeg", quality=50), s("jpeg", quality=75), s("jpeg", quality=95),
        s("crop", fraction=0.01), s("crop", fraction=0.05), s("crop", fraction=0.1), s("crop", fraction=0.2), s("crop", fraction=0.3),
        s("crop", fraction=0.05, x=0.0, y=0.0), s("crop", fraction=0.1, x=1.0, y=0.3), s("crop", fraction=0.2, x=0.2, y=1.0),
        s("pad", fraction=0.05), s("pad", fraction=0.1, colour=white), s("pad", fraction=0.2),
        s("letterbox", ratio=16 / 9), s("letterbox", ratio=1.0, colour=white),
        s("rotate", degrees=1.0), s("rotate", degrees=-2.0), s("rotate", degrees=4.0), s("rotate", degrees=-8.0),
        s("turn", quarter_turns=1), s("turn", quarter_turns=2), s("turn", quarter_turns=3),
        s("mirror", axis="horizontal"), s("mirror", axis="vertical"),
        s("brightness", factor=0.6), s("brightness", factor=1.4), s("contrast", factor=0.6), s("contrast", factor=1.5),
        s("gamma", gamma=0.6), s("gamma", gamma=1.8), s("saturation", factor=1.8), s("grayscale"),
        s("blur", radius=1.0), s("blur", radius=2.5), s("sharpen", radius=2.0, percent=150),
        s("noise", sigma=8.0, seed=seed), s("noise", sigma=20.0, seed=seed + 1),
        s("caption"), s("logo", seed=seed), s("watermark"),
        s("screenshot", fill=0.8, seed=seed), s("screenshot", fill=0.6, seed=seed + 1),
    )  # fmt: skip


def sample_specs(seed: int, count: int, *, families: Iterable[str] | None = None) -> list[TransformSpec]:
    """``count`` transforms with random parameters in the documented ranges, from ``seed``."""
    wanted = set(FAMILIES if families is None else families)
    unknown = wanted - set(FAMILIES)
    if unknown:
        raise UsageError(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    rng = np.random.default_rng(seed)
    names = [t.name for t in TRANSFORMS.values() if t.family in wanted]
    s = TransformSpec.of
    out = []
    for _ in range(count):
        name = str(rng.choice(names))
        u = float(rng.random())
        k = int(rng.integers(0, 2**31))
        if name == "resize":
            spec = s(name, scale=round(0.2 + 1.8 * u, 3))
        elif name == "aspect":
            spec = s(name, x=round(0.7 + 0.6 * u, 3), y=round(float(rng.uniform(0.7, 1.3)), 3))
        elif name == "jpeg":
            spec = s(name, quality=int(10 + 85 * u))
        elif name == "crop":
            spec = s(name, fraction=round(0.01 + 0.29 * u, 3), x=round(float(rng.random()), 3), y=round(float(rng.random()), 3))
        elif name == "pad":
            spec = s(name, fraction=round(0.02 + 0.2 * u, 3))
        elif name == "letterbox":
            spec = s(name, ratio=float(rng.choice([1.0, 4 / 3, 16 / 9, 9 / 16])))
        elif name == "rotate":
            spec = s(name, degrees=round(-10 + 20 * u, 2))
        elif name == "turn":
            spec = s(name, quarter_turns=int(rng.integers(1, 4)))
        elif name == "mirror":
            spec = s(name, axis=str(rng.choice(["horizontal", "vertical"])))
        elif name in ("brightness", "contrast", "saturation"):
            spec = s(name, factor=round(0.5 + u, 3))
        elif name == "gamma":
            spec = s(name, gamma=round(0.5 + 1.5 * u, 3))
        elif name == "blur":
            spec = s(name, radius=round(0.5 + 2.5 * u, 3))
        elif name == "sharpen":
            spec = s(name, radius=round(1 + 2 * u, 3), percent=int(rng.integers(80, 250)))
        elif name == "noise":
            spec = s(name, sigma=round(2 + 20 * u, 3), seed=k)
        elif name == "caption":
            spec = s(name, size=round(0.06 + 0.08 * u, 3), position=str(rng.choice(["top", "bottom"])))
        elif name == "logo":
            spec = s(name, size=round(0.08 + 0.15 * u, 3), corner=str(rng.choice(["top-left", "top-right", "bottom-left", "bottom-right"])), seed=k)
        elif name == "watermark":
            spec = s(name, opacity=round(0.15 + 0.3 * u, 3))
        elif name == "screenshot":
            spec = s(name, fill=round(0.5 + 0.4 * u, 3), seed=k)
        else:
            spec = s(name)
        out.append(spec)
    return out


# -- the hard families (issue 12): what global hashes miss ---------------------------------------
# Appended, not merged into the table above: FAMILIES stays the standard suite's (and
# sample_specs draws only from it: these have families of their own), and hard_suite
# labels each variant with its HARD_FAMILIES family. Every one is a pure function of the image and its parameters.
def _filler(width: int, height: int, seed: int) -> Image.Image:
    """An unrelated photo-like image (another synthetic image) of the given size."""
    return generate_image(int(seed) % (2**31), size=(max(8, width), max(8, height)))


def crop_resize(image: Image.Image, *, fraction: float, x: float = 0.5, y: float = 0.5) -> Image.Image:
    """:func:`crop`, then scaled back to the original size (what re-uploaders do)."""
    image = _rgb(image)
    return crop(image, fraction=fraction, x=x, y=y).resize(image.size, Image.Resampling.BICUBIC)


def rotate_crop(image: Image.Image, *, degrees: float) -> Image.Image:
    """:func:`rotate`, then cropped to the largest centred box free of the filled corners."""
    image = _rgb(image)
    degrees = _check_range("degrees", degrees, -45.0, 45.0)
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
    w, h = image.size
    a = math.radians(abs(degrees))
    # Largest axis-aligned box of the original's aspect inside the rotated rectangle.
    k = 1.0 / (math.cos(a) + math.sin(a) * max(w / h, h / w))
    kw, kh = max(1, int(w * k)), max(1, int(h * k))
    left, top = (w - kw) // 2, (h - kh) // 2
    return turned.crop((left, top, left + kw, top + kh))


def collage(image: Image.Image, *, layout: str = "2x2", cell: int = 0, seed: int = 0) -> Image.Image:
    """The image as one tile of a collage of unrelated images: ``"2x2"`` (tiles at half
    size) or ``"side"`` (two side by side at full height); ``cell`` says which tile."""
    image = _rgb(image)
    w, h = image.size
    if layout == "2x2":
        tw, th, cols, rows = max(1, w // 2), max(1, h // 2), 2, 2
    elif layout == "side":
        tw, th, cols, rows = w, h, 2, 1
    else:
        raise ValueError(f"layout must be '2x2' or 'side', got {layout!r}")
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or not 0 <= cell < cols * rows:
        raise ValueError(f"cell must be an integer from 0 to {cols * rows - 1}, got {cell!r}")
    gap = max(2, round(0.01 * w))
    canvas = Image.new("RGB", (cols * tw + (cols + 1) * gap, rows * th + (rows + 1) * gap), (255, 255, 255))
    for k in range(cols * rows):
        tile = image.resize((tw, th), Image.Resampling.BILINEAR) if k == cell else _filler(tw, th, seed * 7 + k + 1)
        canvas.paste(tile, (gap + (k % cols) * (tw + gap), gap + (k // cols) * (th + gap)))
    return canvas


def meme(image: Image.Image, *, bar: float = 0.15, text: str = "WHEN YOU SEE IT", seed: int = 0) -> Image.Image:
    """White caption bars of ``bar`` of the height above and below, with black text."""
    image = _rgb(image)
    bar = _check_range("bar", bar, 0.02, 1.0)
    w, h = image.size
    bh = max(4, round(h * bar))
    canvas = Image.new("RGB", (w, h + 2 * bh), (255, 255, 255))
    canvas.paste(image, (0, bh))
    draw = ImageDraw.Draw(canvas)
    font = _font(bh * 0.45)
    rng = np.random.default_rng(seed)
    for top, words in ((0, text), (h + bh, "".join(rng.permutation(list(text))))):
        left, t, right, bottom = draw.textbbox((0, 0), words, font=font)
        draw.text(((w - (right - left)) / 2 - left, top + (bh - (bottom - t)) / 2 - t), words, font=font, fill=(0, 0, 0))
    return canvas


def frame(image: Image.Image, *, kind: str = "gradient", fraction: float = 0.15, seed: int = 0) -> Image.Image:
    """A non-uniform border of ``fraction`` of the size on every side: a colour
    ``"gradient"`` or a ``"blur"`` of the image itself stretched behind it."""
    image = _rgb(image)
    fraction = _check_range("fraction", fraction, 0.01, 1.0)
    w, h = image.size
    bx, by = max(1, round(w * fraction)), max(1, round(h * fraction))
    cw, ch = w + 2 * bx, h + 2 * by
    if kind == "gradient":
        rng = np.random.default_rng(seed)
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0.0, 1.0, cw)[None, :, None] * 0.6 + np.linspace(0.0, 1.0, ch)[:, None, None] * 0.4
        canvas = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8), "RGB")
    elif kind == "blur":
        canvas = image.resize((cw, ch), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(max(4, w / 25)))
    else:
        raise ValueError(f"kind must be 'gradient' or 'blur', got {kind!r}")
    canvas.paste(image, (bx, by))
    return canvas


def phone_screenshot(image: Image.Image, *, seed: int = 0) -> Image.Image:
    """The image scaled to the width of a 9:19.5 phone screen (status bar, app header,
    text and buttons around it), as a screenshot of a social-media post."""
    image = _rgb(image)
    rng = np.random.default_rng(seed)
    cw = 540
    ch = round(cw * 19.5 / 9)
    light = bool(rng.random() < 0.5)
    base = (250, 250, 250) if light else (0, 0, 0)
    ink = (20, 20, 20) if light else (235, 235, 235)
    canvas = Image.new("RGB", (cw, ch), base)
    draw = ImageDraw.Draw(canvas)
    font = _font(22)
    draw.text((16, 8), "9:41", font=font, fill=ink)
    draw.rectangle([cw - 60, 12, cw - 20, 26], outline=ink)
    header = 56
    draw.ellipse([16, header + 8, 56, header + 48], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw.text((68, header + 16), "user_" + "".join(chr(int(c)) for c in rng.integers(97, 123, 6)), font=font, fill=ink)
    top = header + 60 + int(rng.integers(0, 40))
    ih = max(1, round(image.height * cw / image.width))
    canvas.paste(image.resize((cw, ih), Image.Resampling.BICUBIC), (0, top))
    y = top + ih + 12
    for line in range(4):
        if y + 24 > ch:
            break
        draw.text((16, y), "liked by friends and others · view all comments"[: int(rng.integers(20, 48))], font=font, fill=ink)
        y += 30
    return canvas


def desktop_screenshot(image: Image.Image, *, scale: float = 0.6, seed: int = 0) -> Image.Image:
    """The image at ``scale`` of its size inside a 1280 × 800 desktop window (title bar,
    side bar, text), as a screenshot of a photo viewer or a web page."""
    image = _rgb(image)
    scale = _check_range("scale", scale, 0.1, 2.0)
    rng = np.random.default_rng(seed)
    cw, ch = 1280, 800
    canvas = Image.new("RGB", (cw, ch), (236, 236, 240))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, cw, 34], fill=(60, 60, 70))
    draw.rectangle([0, 34, 220, ch], fill=(222, 224, 230))
    font = _font(16)
    for k in range(12):
        draw.text((14, 50 + 28 * k), "folder item " + str(int(rng.integers(1, 999))), font=font, fill=(40, 40, 40))
    iw, ih = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    if iw > cw - 240 or ih > ch - 60:
        fit = min((cw - 240) / iw, (ch - 60) / ih)
        iw, ih = max(1, int(iw * fit)), max(1, int(ih * fit))
    x = 230 + int(rng.integers(0, max(1, cw - 240 - iw)))
    y = 44 + int(rng.integers(0, max(1, ch - 54 - ih)))
    canvas.paste(image.resize((iw, ih), Image.Resampling.BICUBIC), (x, y))
    return canvas


def _hard_table() -> dict[str, Transform]:
    rows = [
        ("crop_resize", "crop-resize", crop_resize), ("rotate_crop", "rotate-crop", rotate_crop),
        ("collage", "collage", collage), ("meme", "meme", meme), ("frame", "frame", frame),
        ("phone_screenshot", "phone-screenshot", phone_screenshot),
        ("desktop_screenshot", "desktop-screenshot", desktop_screenshot),
    ]  # fmt: skip
    return {name: Transform(name, family, fn) for name, family, fn in rows}


TRANSFORMS = MappingProxyType({**TRANSFORMS, **_hard_table()})
HARD_FAMILIES: tuple[str, ...] = ("crop", "rotate", "screenshot", "collage", "meme", "frame", "combined")


def hard_suite(*, seed: int = 0) -> tuple[tuple[str, TransformSpec | tuple[TransformSpec, ...]], ...]:
    """The issue-12 grid: ``(family, spec or chain of specs)`` for crops at several sizes
    and positions (with and without rescaling), rotations 1-8° (with and without
    re-cropping), desktop and phone screenshots, collages, memes, frames, combinations."""
    s = TransformSpec.of
    return (
        ("crop", s("crop", fraction=0.1)), ("crop", s("crop", fraction=0.2)), ("crop", s("crop", fraction=0.3)),
        ("crop", s("crop", fraction=0.1, x=0.0, y=0.0)), ("crop", s("crop", fraction=0.2, x=1.0, y=0.2)),
        ("crop", s("crop", fraction=0.3, x=0.1, y=0.9)), ("crop", s("crop_resize", fraction=0.2)),
        ("crop", s("crop_resize", fraction=0.3, x=0.8, y=0.3)),
        ("rotate", s("rotate", degrees=1.0)), ("rotate", s("rotate", degrees=-4.0)), ("rotate", s("rotate", degrees=8.0)),
        ("rotate", s("rotate_crop", degrees=2.0)), ("rotate", s("rotate_crop", degrees=-4.0)), ("rotate", s("rotate_crop", degrees=8.0)),
        ("screenshot", s("screenshot", fill=0.7, seed=seed)), ("screenshot", s("desktop_screenshot", scale=0.8, seed=seed)),
        ("screenshot", s("desktop_screenshot", scale=0.5, seed=seed + 1)), ("screenshot", s("phone_screenshot", seed=seed)),
        ("collage", s("collage", layout="2x2", cell=0, seed=seed)), ("collage", s("collage", layout="2x2", cell=3, seed=seed + 1)),
        ("collage", s("collage", layout="side", cell=1, seed=seed)),
        ("meme", s("meme", bar=0.12, seed=seed)), ("meme", s("meme", bar=0.3, seed=seed)),
        ("frame", s("frame", kind="gradient", fraction=0.1, seed=seed)), ("frame", s("frame", kind="blur", fraction=0.2)),
        ("combined", (s("crop", fraction=0.15, x=0.3, y=0.6), s("rotate", degrees=3.0), s("jpeg", quality=50))),
        ("combined", (s("meme", bar=0.15, seed=seed), s("resize", scale=0.6), s("jpeg", quality=60))),
        ("combined", (s("crop_resize", fraction=0.2), s("phone_screenshot", seed=seed + 2))),
        ("combined", (s("rotate_crop", degrees=-5.0), s("collage", layout="side", cell=0, seed=seed + 3))),
    )  # fmt: skip


def apply_chain(image: Image.Image, spec: TransformSpec | tuple[TransformSpec, ...]) -> Image.Image:
    """Apply one spec or a chain of them, in order."""
    for one in (spec,) if isinstance(spec, TransformSpec) else spec:
        image = one.apply(image)
    return image
