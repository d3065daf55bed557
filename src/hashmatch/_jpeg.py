"""A DC-only JPEG decoder: baseline JPEG to its 1/8-scale grey image, without libjpeg.

Used by :mod:`hashmatch._loading` for grey 1/8-scale drafts (PDQ's fast path): the
output is bit for bit what Pillow's ``draft("L", ...)`` gives at scale 1/8 (a test
holds it to that on every kind of file it handles), about twice as fast, because the
Huffman codes are skipped rather than decoded (see :mod:`hashmatch._jpeg_kernels`).

It handles the common case only: 8-bit baseline or extended-sequential Huffman JPEG,
one scan holding every component, grey or YCbCr (luma at full sampling), with or
without restart markers. :func:`decode_dc` returns None for everything else
(progressive, arithmetic coding, 12-bit, CMYK, Adobe-RGB, missing tables, any
irregularity in the data), and the caller decodes with Pillow, which then raises the
project's usual errors for files that are really bad.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ._jit import kernels

_k = kernels("hashmatch._jpeg_kernels")

__all__ = ["DC_SCALE", "DcImage", "JpegHeader", "decode_dc", "read_header", "scan_arguments"]

DC_SCALE = 8
_SOF_SEQUENTIAL = (0xC0, 0xC1)  # baseline, extended sequential (Huffman)
_SOF_OTHER = frozenset({0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_LOOKUP_SIZE = 1 << 11  # _jpeg_kernels.LOOKUP_BITS, without importing numba here
_SKIP_SIZE = 1 << 12  # _jpeg_kernels.SKIP_BITS
_DC_TABLE, _AC_SKIP, _AC_VALUES = 0, 1, 2  # _jpeg_kernels' table kinds
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field


class JpegHeader:
    """What the DC decoder needs from the markers before the first scan."""

    __slots__ = ("width", "height", "components", "sampling", "quant_ids", "quant", "tables",
                 "restart_interval", "scan", "data_start", "adobe")

    def __init__(self) -> None:
        self.width = self.height = 0
        self.components: list[int] = []
        self.sampling: list[tuple[int, int]] = []
        self.quant_ids: list[int] = []
        self.quant: dict[int, tuple[int, int, int]] = {}  # table id -> first 3 quantisers (zig-zag)
        self.tables: dict[int, tuple[bytes, bytes]] = {}  # slot (DC 0-3, AC 4-7) -> counts, symbols
        self.restart_interval = 0
        self.scan: list[tuple[int, int, int]] = []  # (component index, DC slot, AC slot)
        self.data_start = 0
        self.adobe = False


def read_header(data: bytes | memoryview) -> JpegHeader | None:
    """The markers up to the first scan of a JPEG the DC decoder can take, else None."""
    buf = memoryview(data)
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    head = JpegHeader()
    sof = False
    pos = 2
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            return None
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        seg = buf[pos + 4 : pos + 2 + length]
        if length < 2 or len(seg) != length - 2:
            return None
        if marker in _SOF_SEQUENTIAL:
            if sof or not _read_sof(head, seg):
                return None
            sof = True
        elif marker in _SOF_OTHER or marker == 0xD9:
            return None
        elif marker == 0xC4:
            if not _read_dht(head, seg):
                return None
        elif marker == 0xDB:
            if not _read_dqt(head, seg):
                return None
        elif marker == 0xDD:
            if len(seg) != 2:
                return None
            head.restart_interval = (seg[0] << 8) | seg[1]
        elif marker == 0xEE:
            head.adobe = head.adobe or bytes(seg[:5]) == b"Adobe"
        elif marker == 0xDA:
            if not sof or not _read_sos(head, seg):
                return None
            head.data_start = pos + 2 + length
            return head
        pos += 2 + length
    return None


def _read_sof(head: JpegHeader, seg: memoryview) -> bool:
    if len(seg) < 6 or seg[0] != 8:
        return False
    head.height = (seg[1] << 8) | seg[2]
    head.width = (seg[3] << 8) | seg[4]
    count = seg[5]
    if count not in (1, 3) or len(seg) != 6 + 3 * count or head.width == 0 or head.height == 0:
        return False
    for i in range(count):
        cid, hv, tq = seg[6 + 3 * i], seg[7 + 3 * i], seg[8 + 3 * i]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4) or tq > 3:
            return False
        head.components.append(cid)
        head.sampling.append((h, v))
        head.quant_ids.append(tq)
    return True


def _read_dht(head: JpegHeader, seg: memoryview) -> bool:
    pos = 0
    while pos < len(seg):
        if pos + 17 > len(seg):
            return False
        tc, th = seg[pos] >> 4, seg[pos] & 15
        if tc > 1 or th > 3:
            return False
        counts = bytes(seg[pos + 1 : pos + 17])
        total = sum(counts)
        if total > 256 or pos + 17 + total > len(seg):
            return False
        head.tables[th + 4 * tc] = (counts, bytes(seg[pos + 17 : pos + 17 + total]))
        pos += 17 + total
    return True


def _read_dqt(head: JpegHeader, seg: memoryview) -> bool:
    pos = 0
    while pos < len(seg):
        pq, tq = seg[pos] >> 4, seg[pos] & 15
        size = 64 * (2 if pq else 1)
        if pq > 1 or tq > 3 or pos + 1 + size > len(seg):
            return False
        if pq:
            head.quant[tq] = tuple((seg[pos + 1 + 2 * i] << 8) | seg[pos + 2 + 2 * i] for i in range(3))
        else:
            head.quant[tq] = tuple(seg[pos + 1 + i] for i in range(3))
        pos += 1 + size
    return True


def _read_sos(head: JpegHeader, seg: memoryview) -> bool:
    if len(seg) < 1:
        return False
    count = seg[0]
    if count != len(head.components) or len(seg) != 4 + 2 * count:
        return False
    seen = set()
    for i in range(count):
        cid, tables = seg[1 + 2 * i], seg[2 + 2 * i]
        if cid not in head.components or cid in seen:
            return False
        seen.add(cid)
        td, ta = tables >> 4, tables & 15
        if td > 3 or ta > 3:
            return False
        head.scan.append((head.components.index(cid), td, 4 + ta))
    ss, se, a = seg[1 + 2 * count], seg[2 + 2 * count], seg[3 + 2 * count]
    return ss == 0 and se == 63 and a == 0


def _luma_component(head: JpegHeader) -> int | None:
    """Index of the component libjpeg's grey output is, when it is one stored component."""
    if len(head.components) == 1:
        return 0
    if head.adobe or tuple(head.components) in ((82, 71, 66), (1, 34, 35)):
        return None  # RGB or big-gamut YCC: libjpeg's grey output mixes the components
    hmax = max(h for h, _ in head.sampling)
    vmax = max(v for _, v in head.sampling)
    if head.sampling[0] != (hmax, vmax):
        return None  # luma would need upsampling
    return 0


class DcImage(NamedTuple):
    """A JPEG's luma at 1/8 scale: libjpeg's pixels, and per block the dequantised DCT
    coefficients DC, horizontal and vertical first harmonic (``planes``, float32)."""

    pixels: np.ndarray  # (ceil(height / 8), ceil(width / 8)) uint8
    planes: np.ndarray  # (3, ceil(height / 8), ceil(width / 8)) float32
    height: int  # of the full image
    width: int


def decode_dc(data: bytes | memoryview, header: JpegHeader | None = None) -> DcImage | None:
    """The 1/8-scale grey image of a JPEG and its low coefficients, or None.

    None means "decode this one another way": a kind of JPEG this decoder does not
    handle, or anything irregular in it. ``header``, if given, is ``read_header(data)``.
    """
    head = header if header is not None else read_header(data)
    if head is None:
        return None
    call = scan_arguments(data, head)
    if call is None:
        return None
    arguments, shape = call
    out = np.empty(shape, dtype=np.uint8)
    planes = np.empty((3, *shape), dtype=np.float32)
    status = _k.decode_scan(*arguments, out, planes)
    if status != 0:
        return None
    rows, cols = -(-head.height // 8), -(-head.width // 8)
    return DcImage(np.ascontiguousarray(out[:rows, :cols]), np.ascontiguousarray(planes[:, :rows, :cols]),
                   head.height, head.width)


def scan_arguments(data: bytes | memoryview, head: JpegHeader) -> tuple[tuple[object, ...], tuple[int, int]] | None:
    """The scan kernel's arguments for ``data`` (all but its two outputs) and the shape
    of its pixel output (whole MCUs), or None for a JPEG this decoder does not take.
    :func:`decode_dc`'s set-up, also what ``benchmarks/jpeg_dc_ab.py`` times kernels with."""
    luma = _luma_component(head)
    if luma is None:
        return None
    used = sorted({slot for _, dc, ac in head.scan for slot in (dc, ac)})
    if not set(used) <= set(head.tables) or head.quant_ids[luma] not in head.quant:
        return None  # libjpeg would fill in standard tables; Pillow does that
    tables = _tables(tuple((slot, *head.tables[slot]) for slot in used))
    if tables is None:
        return None
    if len(head.scan) == 1:
        nmcux, nmcuy = -(-head.width // 8), -(-head.height // 8)
    else:
        hmax = max(h for h, _ in head.sampling)
        vmax = max(v for _, v in head.sampling)
        nmcux, nmcuy = -(-head.width // (8 * hmax)), -(-head.height // (8 * vmax))
    plan, mcu_rows, mcu_cols = _plan(tuple(head.scan), tuple(head.sampling), luma)
    # A scan needs at most 209 bytes a block (63 codes of 16 + 10 bits and a DC), twice
    # that if every byte were a stuffed 0xFF, plus the restart markers: bytes past that
    # are not read, so junk after the scan cannot make the work arrays grow.
    intervals = -(-nmcux * nmcuy // head.restart_interval) if head.restart_interval else 1
    most = head.data_start + 512 * nmcux * nmcuy * len(plan) + 2 * intervals + 1024
    raw = np.frombuffer(data, dtype=np.uint8)[:most]
    arguments = (raw, head.data_start, intervals, nmcux, nmcuy, plan, head.restart_interval, *tables,
                 np.array(head.quant[head.quant_ids[luma]], dtype=np.int64), _limit_table())
    return arguments, (nmcuy * mcu_rows, nmcux * mcu_cols)


@lru_cache(maxsize=1)
def _limit_table() -> np.ndarray:
    return _k.range_limit_table()


@lru_cache(maxsize=32)  # files from one encoder share their tables: built once
def _tables(spec: tuple[tuple[int, bytes, bytes], ...]) -> tuple[np.ndarray, ...] | None:
    """Lookup tables for the Huffman tables in ``spec`` ((slot, counts, symbols) each):
    value tables per slot, multi-code skip tables per AC slot, and the slow path's."""
    vals = np.zeros((8, _LOOKUP_SIZE), dtype=np.int32)
    skips = np.zeros((4, _SKIP_SIZE), dtype=np.int32)
    maxcodes = np.full((8, 18), -1, dtype=np.int64)
    valptrs = np.zeros((8, 18), dtype=np.int64)
    symbols = np.zeros((8, 256), dtype=np.int64)
    for slot, counts, syms in spec:
        symbols[slot, : len(syms)] = np.frombuffer(syms, dtype=np.uint8)
        counts_array = np.frombuffer(counts, dtype=np.uint8).astype(np.int64)
        status = _k.build_table(counts_array, symbols[slot], _DC_TABLE if slot < 4 else _AC_VALUES,
                                vals[slot], maxcodes[slot], valptrs[slot])
        if status != 0:
            return None
        if slot >= 4:
            single = np.zeros(_SKIP_SIZE, dtype=np.int32)
            _k.build_table(counts_array, symbols[slot], _AC_SKIP, single, maxcodes[slot], valptrs[slot])
            _k.multi_table(single, skips[slot - 4])
    for table in (vals, skips, maxcodes, valptrs, symbols):
        table.flags.writeable = False
    return vals, skips, maxcodes, valptrs, symbols


@lru_cache(maxsize=32)
def _plan(scan: tuple[tuple[int, int, int], ...], sampling: tuple[tuple[int, int], ...],
          luma: int) -> tuple[np.ndarray, int, int]:
    """Per block of an MCU, in scan order: component, DC table, AC table, and the block's
    row and column among the MCU's luma blocks (-1 when not luma); and the MCU's luma
    rows and columns."""
    if len(scan) == 1:
        plan = [(0, scan[0][1], scan[0][2], 0, 0)]
    else:
        plan = []
        for i, (c, dc, ac) in enumerate(scan):
            h, v = sampling[c]
            plan += [(i, dc, ac, y if c == luma else -1, x if c == luma else -1) for y in range(v) for x in range(h)]
    out = np.array(plan, dtype=np.int64)
    out.flags.writeable = False
    return out, int(out[:, 3].max()) + 1, int(out[:, 4].max()) + 1
