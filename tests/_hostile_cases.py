"""Hostile image files, generated (nothing large is committed): mutations, truncations,
header size fields set to extremes, bombs, thin images, many frames, special paths.

Each generator returns ``[(case_id, bytes)]``; :func:`write_cases` puts them in a folder.
Everything is seeded, so a failing case id names the same bytes on every run.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "ICO")
_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp", "ICO": "ico"}

Case = tuple[str, bytes]


def _picture(seed: int, width: int = 64, height: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (xx * 3 + yy * 2)[:, :, None] + rng.integers(0, 40, (height, width, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def encoded(fmt: str, seed: int = 0, width: int = 64, height: int = 48) -> bytes:
    image = _picture(seed, width, height)
    buf = io.BytesIO()
    if fmt == "GIF":
        image = image.convert("P")
    image.save(buf, fmt)
    return buf.getvalue()


def mutated(count: int, seed: int = 1) -> list[Case]:
    """Random byte changes: single bit flips, byte overwrites and short random runs."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for fmt in FORMATS:
        data = encoded(fmt)
        for i in range(count):
            buf = bytearray(data)
            kind = i % 3
            pos = int(rng.integers(0, len(buf)))
            if kind == 0:
                buf[pos] ^= 1 << int(rng.integers(0, 8))
            elif kind == 1:
                buf[pos] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80]))
            else:
                run = rng.integers(0, 256, size=min(16, len(buf) - pos), dtype=np.uint8).tobytes()
                buf[pos : pos + len(run)] = run
            cases.append((f"mut-{fmt.lower()}-{i}", bytes(buf)))
    return cases


def truncated(count: int) -> list[Case]:
    """Each format cut at ``count`` offsets spread over the file (the first bytes densely)."""
    cases: list[Case] = []
    for fmt in FORMATS:
        data = encoded(fmt)
        offsets = sorted({*range(0, min(40, len(data))), *np.linspace(0, len(data) - 1, count).astype(int).tolist()})
        cases += [(f"cut-{fmt.lower()}-{off}", data[:off]) for off in offsets]
    return cases


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def grey_png(width: int, height: int, *, rows: int | None = None) -> bytes:
    """A valid 8-bit grey PNG (or one whose data stops after ``rows`` rows)."""
    n = height if rows is None else rows
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * width
    parts = [comp.compress(row) for _ in range(n)] if width * n < 50_000_000 else _rows_stream(comp, row, n)
    data = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _rows_stream(comp: zlib._Compress, row: bytes, n: int) -> list[bytes]:
    block = row * max(1, (1 << 22) // len(row))
    per = len(block) // len(row)
    out, left = [], n
    while left > 0:
        take = min(left, per)
        out.append(comp.compress(block[: take * len(row)]))
        left -= take
    return out


def _patch_png_ihdr(data: bytes, width: int, height: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(">II", buf, 16, width, height)
    struct.pack_into(">I", buf, 29, zlib.crc32(bytes(buf[12:29])))
    return bytes(buf)


def _tiff_patch(data: bytes, width: int, height: int) -> bytes:
    buf = bytearray(data)
    endian = "<" if buf[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(endian + "I", buf, 4)
    (count,) = struct.unpack_from(endian + "H", buf, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, typ = struct.unpack_from(endian + "HH", buf, at)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if typ == 3:  # SHORT
                struct.pack_into(endian + "HH", buf, at + 8, min(value, 0xFFFF), 0)
            else:
                struct.pack_into(endian + "I", buf, at + 8, value)
    return bytes(buf)


def _jpeg_patch(data: bytes, width: int, height: int) -> bytes:
    buf = bytearray(data)
    at = 2
    while at + 4 < len(buf):
        marker, length = buf[at + 1], struct.unpack_from(">H", buf, at + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", buf, at + 5, height, width)
            break
        at += 2 + length
    return bytes(buf)


def header_extremes() -> list[Case]:
    """Size fields in headers set to 0, 1, 65535 and 2**31-1 (and the like), checksums fixed."""
    cases: list[Case] = []
    sizes = [(0, 0), (1, 1), (0xFFFF, 0xFFFF), (0x7FFFFFFF, 1), (1, 0x7FFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF)]
    png, gif, bmp = encoded("PNG"), encoded("GIF"), encoded("BMP")
    jpeg, tiff, webp, ico = encoded("JPEG"), encoded("TIFF"), encoded("WEBP"), encoded("ICO")
    for w, h in sizes:
        cases.append((f"hdr-png-{w}x{h}", _patch_png_ihdr(png, w, h)))
        cases.append((f"hdr-tiff-{w}x{h}", _tiff_patch(tiff, w, h)))
        g = bytearray(gif)
        struct.pack_into("<HH", g, 6, w & 0xFFFF, h & 0xFFFF)
        cases.append((f"hdr-gif-screen-{w}x{h}", bytes(g)))
        frame = g.find(b"\x2c")  # image descriptor
        if frame > 0:
            struct.pack_into("<HH", g, frame + 5, w & 0xFFFF, h & 0xFFFF)
            cases.append((f"hdr-gif-frame-{w}x{h}", bytes(g)))
        b = bytearray(bmp)
        struct.pack_into("<ii", b, 18, min(w, 0x7FFFFFFF), -min(h, 0x7FFFFFFF))
        cases.append((f"hdr-bmp-{w}x{h}", bytes(b)))
        cases.append((f"hdr-jpeg-{w}x{h}", _jpeg_patch(jpeg, w & 0xFFFF, h & 0xFFFF)))
        i = bytearray(ico)
        struct.pack_into("<II", i, 6 + 8, min(w, 0xFFFFFFFF), min(h, 0xFFFFFFFF))  # bytes in res, offset
        cases.append((f"hdr-ico-{w}x{h}", bytes(i)))
    w = bytearray(webp)
    if w[12:16] == b"VP8 ":
        for dims in (b"\xff\x3f\xff\x3f", b"\x00\x00\x00\x00"):
            w2 = bytearray(w)
            w2[26:30] = dims
            cases.append((f"hdr-webp-{dims.hex()}", bytes(w2)))
    bmp_bits = bytearray(bmp)
    for bpp in (0, 3, 33, 0xFFFF):
        struct.pack_into("<H", bmp_bits, 28, bpp)
        cases.append((f"hdr-bmp-bpp{bpp}", bytes(bmp_bits)))
    return cases


# The in-limit bomb decodes fully through every entry point, so its side sets the suite's
# run time: 3000 (9 Mpx) in the normal tests, 9000 (81 Mpx, just under the default limit
# of 89,478,485) with HASHMATCH_HOSTILE_BOMB_SIDE=9000 (make fuzz, and the closing note).
BOMB_SIDE = int(os.environ.get("HASHMATCH_HOSTILE_BOMB_SIDE", "3000"))


def bombs() -> list[Case]:
    """Pixel bombs within the limits (decoded) and over them (refused from the header)."""
    return [
        (f"bomb-png-within-{BOMB_SIDE}x{BOMB_SIDE}", grey_png(BOMB_SIDE, BOMB_SIDE)),
        ("bomb-png-over-20000x20000", _patch_png_ihdr(grey_png(100, 100), 20000, 20000)),
        ("bomb-png-over-100000x100000", _patch_png_ihdr(grey_png(100, 100), 100_000, 100_000)),
        ("bomb-png-rows-missing-8000x8000", grey_png(8000, 8000, rows=10)),
        ("bomb-gif-over-65535x65535", _gif_screen(encoded("GIF"), 0xFFFF, 0xFFFF)),
        ("bomb-idat-50mb-for-100x100", _png_with_extra_idat(100, 100, 50_000_000)),
    ]


def _gif_screen(gif: bytes, w: int, h: int) -> bytes:
    g = bytearray(gif)
    struct.pack_into("<HH", g, 6, w, h)
    frame = g.find(b"\x2c")
    struct.pack_into("<HH", g, frame + 5, w, h)
    return bytes(g)


def _png_with_extra_idat(width: int, height: int, extra: int) -> bytes:
    comp = zlib.compressobj(9)
    data = comp.compress(b"\x00" * (extra + height * (width + 1))) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def thin() -> list[Case]:
    return [
        ("thin-89000000x1", grey_png(89_000_000, 1)),
        ("thin-65535x1", grey_png(65535, 1)),
        ("thin-65536x1", grey_png(65536, 1)),
        ("thin-1x65535", grey_png(1, 65535)),
        ("thin-1x1", grey_png(1, 1)),
        ("thin-4x100", grey_png(4, 100)),
        ("thin-6000x5", grey_png(6000, 5)),
    ]


def many_frames(frames: int) -> list[Case]:
    """Animated files with thousands of frames (only the first is hashed)."""
    tiles = [_picture(i % 7, 16, 16).convert("P") for i in range(frames)]
    out: list[Case] = []
    for fmt, kwargs in (("GIF", {"duration": 10}), ("PNG", {"duration": 10}), ("WEBP", {"duration": 10}),
                        ("TIFF", {})):
        buf = io.BytesIO()
        images = tiles if fmt == "GIF" else [t.convert("RGB") for t in tiles[: frames if fmt != "WEBP" else frames // 4]]
        images[0].save(buf, fmt, save_all=True, append_images=images[1:], **kwargs)
        out.append((f"frames-{fmt.lower()}-{len(images)}", buf.getvalue()))
    return out


def write_cases(folder: Path, cases: list[Case]) -> list[tuple[str, str]]:
    """Write each case to ``folder``; returns ``[(case_id, path)]``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for case_id, data in cases:
        fmt = case_id.split("-")[1]
        ext = _EXT.get(fmt.upper(), "bin")
        path = folder / f"{case_id}.{ext}"
        path.write_bytes(data)
        out.append((case_id, str(path)))
    return out


def special_paths(folder: Path) -> list[tuple[str, str]]:
    """Paths that are not regular image files: FIFO, devices, directories, NUL, bad names."""
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "fifo.jpg"
    os.mkfifo(fifo)
    (folder / "to-zero.png").symlink_to("/dev/zero")
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    (folder / "a-directory.jpg").mkdir()
    bad_name = os.fsencode(str(folder)) + b"/\xff\xfe-bad-utf8.png"
    with open(bad_name, "wb") as f:
        f.write(encoded("PNG"))
    (folder / "empty.jpg").write_bytes(b"")
    return [
        ("path-fifo", str(fifo)),
        ("path-dev-zero", "/dev/zero"),
        ("path-dev-urandom", "/dev/urandom"),
        ("path-symlink-to-zero", str(folder / "to-zero.png")),
        ("path-dangling-symlink", str(folder / "dangling.png")),
        ("path-directory", str(folder / "a-directory.jpg")),
        ("path-nul", str(folder / "a\0b.png")),
        ("path-invalid-utf8", os.fsdecode(bad_name)),
        ("path-empty-file", str(folder / "empty.jpg")),
        ("path-missing", str(folder / "missing.png")),
    ]


CLASSES: dict[str, Callable[[], list[Case]]] = {
    "mutated": lambda: mutated(40),
    "truncated": lambda: truncated(30),
    "header": header_extremes,
    "bombs": bombs,
    "thin": thin,
    "frames": lambda: many_frames(2000),
}
