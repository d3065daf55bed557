"""numba kernels for the DC-only JPEG decoder (:mod:`hashmatch._jpeg`).

A 1/8-scale JPEG decode is each 8x8 block's DC term, but a baseline JPEG must still
have every Huffman code parsed to find where the next block starts: that parse is the
whole cost of a 1/8 decode. libjpeg-turbo parses every coefficient through its general
decoder (and stores them); here each AC code is skipped with one table lookup that
gives the bits to drop (code and magnitude together) and how far the zig-zag index
moves, and only the luma DC terms are kept.

The pixels are exactly libjpeg's 1/8-scale grey output: the DC prediction stored as a
16-bit coefficient, dequantised, ``DESCALE(x, 3)`` and libjpeg's range-limit table.

Hostile input: every read is bounds-checked (past the data, zero bits are fed, as
libjpeg does, and counted); anything unusual (a code that is in no table, a
truncated stream, a missing or out-of-order restart marker) returns a status other
than 0, and the caller decodes the file with Pillow instead. Work is bounded by the
block count from the (limit-checked) header: at most 64 codes per block.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit

LOOKUP_BITS = 11
"""Codes up to this long resolve in one table lookup; longer ones walk the code lengths."""

OK = 0
BAD_TABLE = 1
BAD_CODE = 2
TRUNCATED = 3
BAD_RESTART = 4

DC_TABLE = 0
AC_SKIP = 1
AC_VALUES = 2


@njit(cache=True, nogil=True)
def build_table(counts, symbols, kind, lut, maxcode, valptr):
    """Canonical Huffman tables from a DHT's 16 counts and its symbols (JPEG Annex C).

    ``lut[prefix]``: 0 when the code under the next LOOKUP_BITS bits is longer; else for
    ``kind`` DC_TABLE and AC_VALUES ``length | symbol << 5``; for AC_SKIP
    ``(length + magnitude bits) | zig-zag advance << 5`` (advance 64 for an end of
    block, 16 for a run of 16 zeros).
    ``maxcode[l]`` / ``valptr[l]``: the slow path for lengths over LOOKUP_BITS (-1: none).
    Returns BAD_TABLE for tables libjpeg refuses (over-full code space, more than 256
    symbols, a DC category over 15).
    """
    total = 0
    for l in range(16):
        total += counts[l]
    if total > 256 or total > symbols.shape[0]:
        return BAD_TABLE
    for i in range(lut.shape[0]):
        lut[i] = 0
    code = 0
    k = 0
    for l in range(1, 17):
        n = counts[l - 1]
        if n == 0:
            maxcode[l] = -1
            valptr[l] = 0
        else:
            valptr[l] = k - code  # symbols[valptr[l] + code] for a code of this length
            maxcode[l] = code + n - 1
        for _ in range(n):
            if code >= (1 << l) - 1:  # over-full, or the all-ones code: libjpeg refuses both
                return BAD_TABLE
            sym = symbols[k]
            if kind == DC_TABLE and sym > 15:
                return BAD_TABLE
            if l <= LOOKUP_BITS:
                if kind != AC_SKIP:
                    entry = l | (sym << 5)
                else:
                    run = sym >> 4
                    size = sym & 15
                    if size != 0:
                        advance = run + 1
                    elif run == 15:
                        advance = 16
                    else:
                        advance = 64  # end of block (libjpeg also ends on other run/0 codes)
                    entry = (l + size) | (advance << 5)
                shift = LOOKUP_BITS - l
                start = code << shift
                for p in range(start, start + (1 << shift)):
                    lut[p] = entry
            code += 1
            k += 1
        code <<= 1
    return OK


@njit(cache=True, nogil=True)
def _range_limit(x):
    """libjpeg's post-IDCT range-limit table, indexed by ``x & 1023``."""
    i = x & 1023
    if i < 128:
        return i + 128
    if i < 512:
        return 255
    if i < 896:
        return 0
    return i - 896


@njit(cache=True, nogil=True)
def unstuff(data, pos, ff, max_segments, clean, seg_start, seg_end):
    """Entropy-coded bytes from ``pos`` with stuffed zeros dropped, split at RSTn markers.

    ``ff``: the positions of the 0xFF bytes counted from ``pos``, ascending (the bytes
    between are copied in runs). Writes segment ``i`` to
    ``clean[seg_start[i]:seg_end[i]]`` and returns the number of segments (-1 when a
    restart marker is out of order or there are more than ``max_segments``). Stops at
    any other marker or at the end of the data. ``clean`` needs ``len(data) - pos`` bytes.
    """
    n = data.shape[0]
    j = 0
    seg = 0
    seg_start[0] = 0
    cursor = pos
    for f in range(ff.shape[0]):
        p = ff[f] + pos
        if p < cursor:  # consumed already (the second 0xFF of a pair)
            continue
        run = p - cursor
        src = data[cursor:p]
        dst = clean[j : j + run]
        for i in range(np.uint64(run)):  # unsigned: no negative-index check, so it vectorises (8x)
            dst[i] = src[i]
        j += run
        if p + 1 >= n:
            cursor = n
            break
        nxt = data[p + 1]
        if nxt == 0:
            clean[j] = 0xFF
            j += 1
            cursor = p + 2
        elif nxt == 0xFF:  # fill byte before a marker
            cursor = p + 1
        elif 0xD0 <= nxt <= 0xD7:
            if nxt != 0xD0 + (seg & 7) or seg + 1 >= max_segments:
                return -1
            seg_end[seg] = j
            seg += 1
            seg_start[seg] = j
            cursor = p + 2
        else:
            cursor = -1  # a marker: the scan ends here
            break
    if cursor >= 0 and cursor < n:  # no marker after the data: keep what there is
        run = n - cursor
        clean[j : j + run] = data[cursor:n]
        j += run
    seg_end[seg] = j
    return seg + 1


@njit(cache=True, nogil=True)
def big_endian_words(clean, length, words):
    """``words[i]``: the 32 bits starting at byte i of ``clean`` (zeros past ``length``)."""
    for i in range(length, clean.shape[0]):
        clean[i] = 0
    for i in range(words.shape[0]):
        words[i] = (
            (np.uint32(clean[i]) << 24) | (np.uint32(clean[i + 1]) << 16)
            | (np.uint32(clean[i + 2]) << 8) | np.uint32(clean[i + 3])
        )


@njit(cache=True, nogil=True)
def pair_table(single, out):
    """AC lookups that skip two codes at once when both fit in the LOOKUP_BITS bits.

    Entry: total bits | total advance << 5 | first code's bits << 12 | its advance << 17
    (the first alone applies when it ends the block). 0: the slow path.
    """
    mask = (1 << LOOKUP_BITS) - 1
    for p in range(single.shape[0]):
        e1 = single[p]
        if e1 == 0:
            out[p] = 0
            continue
        c1 = e1 & 31
        a1 = e1 >> 5
        c = c1
        a = a1
        if a1 < 64 and c1 < LOOKUP_BITS:
            e2 = single[(p << c1) & mask]
            if e2 != 0 and (e2 & 31) <= LOOKUP_BITS - c1:
                c = c1 + (e2 & 31)
                a = min(a1 + (e2 >> 5), 64)
        out[p] = c | (a << 5) | (c1 << 12) | (a1 << 17)


@njit(cache=True, nogil=True)
def range_limit_table():
    """libjpeg's post-IDCT range-limit table, indexed by ``x & 1023``."""
    table = np.empty(1024, dtype=np.uint8)
    for i in range(1024):
        table[i] = _range_limit(i)
    return table


@njit(cache=True, nogil=True)
def _long_code(acc, maxcode, valptr, symbols):
    """(symbol, length) of a code longer than LOOKUP_BITS at the top of ``acc`` (uint64,
    left-aligned), by the canonical code ranges; (-1, 0) when no table code matches."""
    peek = np.int64(acc >> np.uint64(48))
    for l in range(LOOKUP_BITS + 1, 17):
        code = peek >> (16 - l)
        if code <= maxcode[l]:
            return symbols[valptr[l] + code], l
    return -1, 0


@njit(cache=True, nogil=True)
def dc_scan(words, limit_bytes, seg_start, seg_end, nmcux, nmcuy, plan, restart_interval,
            luts, maxcodes, valptrs, symbols, quant, limit_table, out, planes):
    """Decode one baseline scan, keeping the luma DC terms as 1/8-scale pixels.

    Also keeps each luma block's three lowest coefficients, dequantised by ``quant``
    (its first three entries, zig-zag order), in ``planes`` (3, rows, columns) float32:
    DC, the horizontal and the vertical first harmonic. PDQ's fast path models the
    full-resolution filter from them (notes/issue-14-pdq.md).

    ``words`` from :func:`big_endian_words` over :func:`unstuff`'s bytes. ``luts``
    rows: DC tables (0-3) from :func:`build_table`, AC tables (4-7) from
    :func:`pair_table`, and the same AC tables with their symbols (8-11).
    ``plan`` has one row per block of an MCU, in scan order: (component, DC table, AC
    table, row, column within the MCU's luma blocks or -1 when not luma); one block per
    MCU for a non-interleaved scan. ``out`` is (nmcuy * luma rows per MCU, nmcux * luma
    columns per MCU) uint8; the caller crops the MCU padding. Returns a status (OK = 0).

    Table and buffer indices are unsigned on purpose: numba then drops its
    negative-index fix-up, which sat on the lookup chain (about 8 % of the scan).
    """
    nblocks = plan.shape[0]
    ncomp = 0
    for b in range(nblocks):
        ncomp = max(ncomp, plan[b, 0] + 1)
    mcu_rows = 0
    mcu_cols = 0
    for b in range(nblocks):
        mcu_rows = max(mcu_rows, plan[b, 3] + 1)
        mcu_cols = max(mcu_cols, plan[b, 4] + 1)
    width = out.shape[1]
    flat = out.reshape(out.size)
    dc_plane = planes[0].reshape(out.size)
    h_plane = planes[1].reshape(out.size)
    v_plane = planes[2].reshape(out.size)
    quant_dc = quant[0]
    preds = np.zeros(ncomp, dtype=np.int64)
    mcus_left = restart_interval
    seg = 0
    # Bit buffer: the next nbits bits left-aligned in acc (uint64). A refill after every
    # lookup tops it up to 56-63 bits without a branch (whole bytes from ``pos`` on;
    # re-reading part of a byte ORs the same bits in again), so pos * 8 - nbits bits
    # are consumed.
    top = np.uint64(64 - LOOKUP_BITS)
    acc = np.uint64(0)
    nbits = 0
    pos = 0
    acc |= ((np.uint64(words[np.uint64(pos)]) << np.uint64(32)) | np.uint64(words[np.uint64(pos + 4)])) >> np.uint64(nbits)
    pos += (63 - nbits) >> 3
    nbits |= 56
    end = seg_end[0] * 8
    for my in range(nmcuy):
        for mx in range(nmcux):
            if restart_interval > 0:
                if mcus_left == 0:
                    if pos * 8 - nbits > end:
                        return TRUNCATED
                    seg += 1
                    if seg >= seg_start.shape[0]:
                        return BAD_RESTART
                    pos = seg_start[seg]
                    acc = np.uint64(0)
                    nbits = 0
                    acc |= ((np.uint64(words[np.uint64(pos)]) << np.uint64(32)) | np.uint64(words[np.uint64(pos + 4)])) >> np.uint64(nbits)
                    pos += (63 - nbits) >> 3
                    nbits |= 56
                    end = seg_end[seg] * 8
                    for c in range(ncomp):
                        preds[c] = 0
                    mcus_left = restart_interval
                mcus_left -= 1
            if pos > limit_bytes:  # corrupt data running on past the end
                return TRUNCATED
            origin = my * mcu_rows * width + mx * mcu_cols
            for b in range(nblocks):
                c = plan[b, 0]
                dc_t = plan[b, 1]
                ac_t = plan[b, 2]
                # ---- DC
                e = luts[dc_t, acc >> top]
                if e != 0:
                    used = e & 31
                    s = e >> 5
                else:
                    s, used = _long_code(acc, maxcodes[dc_t], valptrs[dc_t], symbols[dc_t])
                    if s < 0:
                        return BAD_CODE
                acc <<= np.uint64(used)
                nbits -= used
                if s > 0:
                    v = np.int64(acc >> np.uint64(64 - s))
                    acc <<= np.uint64(s)
                    nbits -= s
                    preds[c] += v if v >= (1 << (s - 1)) else v - (1 << s) + 1
                acc |= ((np.uint64(words[np.uint64(pos)]) << np.uint64(32)) | np.uint64(words[np.uint64(pos + 4)])) >> np.uint64(nbits)
                pos += (63 - nbits) >> 3
                nbits |= 56
                k = 1
                if plan[b, 4] >= 0:
                    at = np.uint64(origin + plan[b, 3] * width + plan[b, 4])  # unsigned: no wraparound check
                    coef = ((preds[c] + 32768) & 0xFFFF) - 32768  # stored as a 16-bit JCOEF
                    flat[at] = limit_table[np.uint64(((coef * quant_dc + 4) >> 3) & 1023)]
                    dc_plane[at] = coef * quant_dc
                    h_plane[at] = 0.0
                    v_plane[at] = 0.0
                    # ---- AC 1 (horizontal) and 2 (vertical): decoded one code at a time
                    while k <= 2:
                        e = luts[ac_t + 4, acc >> top]
                        if e != 0:
                            used = e & 31
                            rs = e >> 5
                        else:
                            rs, used = _long_code(acc, maxcodes[ac_t], valptrs[ac_t], symbols[ac_t])
                            if rs < 0:
                                return BAD_CODE
                        acc <<= np.uint64(used)
                        nbits -= used
                        size = rs & 15
                        if size != 0:
                            v = np.int64(acc >> np.uint64(64 - size))
                            acc <<= np.uint64(size)
                            nbits -= size
                            if v < (1 << (size - 1)):
                                v = v - (1 << size) + 1
                            k += rs >> 4
                            if k == 1:
                                h_plane[at] = (((v + 32768) & 0xFFFF) - 32768) * quant[1]
                            elif k == 2:
                                v_plane[at] = (((v + 32768) & 0xFFFF) - 32768) * quant[2]
                            k += 1
                        elif (rs >> 4) == 15:
                            k += 16
                        else:
                            k = 64
                        acc |= ((np.uint64(words[np.uint64(pos)]) << np.uint64(32)) | np.uint64(words[np.uint64(pos + 4)])) >> np.uint64(nbits)
                        pos += (63 - nbits) >> 3
                        nbits |= 56
                # ---- the other AC codes: parsed and dropped
                while k < 64:
                    e = luts[ac_t, acc >> top]
                    if e != 0:
                        first_advance = e >> 17
                        if k + first_advance < 64:
                            used = e & 31
                            k += (e >> 5) & 127
                        else:  # the first code ends the block
                            used = (e >> 12) & 31
                            k += first_advance
                    else:
                        rs, used = _long_code(acc, maxcodes[ac_t], valptrs[ac_t], symbols[ac_t])
                        if rs < 0:
                            return BAD_CODE
                        size = rs & 15
                        used += size
                        if size != 0:
                            k += (rs >> 4) + 1
                        elif (rs >> 4) == 15:
                            k += 16
                        else:
                            k = 64
                    acc <<= np.uint64(used)
                    nbits -= used
                    acc |= ((np.uint64(words[np.uint64(pos)]) << np.uint64(32)) | np.uint64(words[np.uint64(pos + 4)])) >> np.uint64(nbits)
                    pos += (63 - nbits) >> 3
                    nbits |= 56
    if pos * 8 - nbits > end:
        return TRUNCATED
    return OK


PAD_BYTES = 512
"""Zero bytes after the data: dc_scan checks its position once per block, and a block of
corrupt codes (67 codes of at most 31 bits) can read that far past the end."""


@njit(cache=True, nogil=True)
def decode_scan(data, pos, ff, max_segments, nmcux, nmcuy, plan, restart_interval,
                luts, maxcodes, valptrs, symbols, quant, limit_table, out, planes):
    """:func:`unstuff`, :func:`big_endian_words` and :func:`dc_scan` in one call."""
    clean = np.empty(data.shape[0] - pos + PAD_BYTES + 4, dtype=np.uint8)
    seg_start = np.empty(max_segments, dtype=np.int64)
    seg_end = np.empty(max_segments, dtype=np.int64)
    segments = unstuff(data, pos, ff, max_segments, clean, seg_start, seg_end)
    if segments < 1:
        return BAD_RESTART
    used = seg_end[segments - 1]
    words = np.empty(used + PAD_BYTES, dtype=np.uint32)
    big_endian_words(clean[: used + PAD_BYTES + 3], used, words)
    return dc_scan(words, used + 8, seg_start[:segments], seg_end[:segments], nmcux, nmcuy, plan,
                   restart_interval, luts, maxcodes, valptrs, symbols, quant, limit_table, out, planes)
