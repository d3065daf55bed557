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


@njit(cache=True, nogil=True)
def build_table(counts, symbols, is_dc, lut, maxcode, valptr):
    """Canonical Huffman tables from a DHT's 16 counts and its symbols (JPEG Annex C).

    ``lut[prefix]``: 0 when the code under the next LOOKUP_BITS bits is longer; for a
    DC table ``length | category << 5``; for an AC table ``(length + magnitude bits) |
    zig-zag advance << 5`` (advance 64 for an end of block, 16 for a run of 16 zeros).
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
            sym = symbols[k]
            if is_dc and sym > 15:
                return BAD_TABLE
            if l <= LOOKUP_BITS:
                if is_dc:
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
        if code > (1 << l):  # the code space is over-full
            return BAD_TABLE
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
def dc_scan(data, pos, nmcux, nmcuy, comp_h, comp_v, comp_dc, comp_ac, luma_comp, restart_interval,
            luts, maxcodes, valptrs, symbols, quant_dc, out):
    """Decode one baseline scan, keeping component ``luma_comp``'s DC as 1/8-scale pixels.

    ``data`` is the whole file, ``pos`` the first entropy-coded byte after the SOS
    header. Components are in scan order; one component means a non-interleaved scan
    (one block per MCU). ``out`` is (rows, cols) uint8, the visible block grid; blocks
    beyond it (MCU padding) are parsed and dropped. Returns a status (OK = 0).
    """
    n = data.shape[0]
    ncomp = comp_h.shape[0]
    rows, cols = out.shape
    acc = 0  # bit buffer, right-aligned; bits above nbits are stale
    nbits = 0
    fake = 0  # zero bytes fed past the data or a marker
    stopped = False
    preds = np.zeros(ncomp, dtype=np.int64)
    mcus_left = restart_interval
    next_rst = 0
    for my in range(nmcuy):
        for mx in range(nmcux):
            if restart_interval > 0:
                if mcus_left == 0:
                    if fake * 8 > nbits:
                        return TRUNCATED
                    # Drop the partial byte; the marker must follow.
                    if pos + 1 >= n or data[pos] != 0xFF or data[pos + 1] != 0xD0 + next_rst:
                        return BAD_RESTART
                    pos += 2
                    next_rst = (next_rst + 1) & 7
                    acc = 0
                    nbits = 0
                    fake = 0
                    stopped = False
                    for c in range(ncomp):
                        preds[c] = 0
                    mcus_left = restart_interval
                mcus_left -= 1
            for c in range(ncomp):
                dc_lut = luts[comp_dc[c]]
                ac_lut = luts[comp_ac[c]]
                for by in range(comp_v[c]):
                    for bx in range(comp_h[c]):
                        # ---- DC
                        if nbits < 32:
                            while nbits <= 48:
                                b = 0
                                if not stopped and pos < n:
                                    b = data[pos]
                                    if b == 0xFF:
                                        if pos + 1 < n and data[pos + 1] == 0:
                                            pos += 2
                                        else:
                                            stopped = True  # a marker: the segment ends here
                                            b = 0
                                            fake += 1
                                    else:
                                        pos += 1
                                else:
                                    fake += 1
                                acc = ((acc & ((1 << nbits) - 1)) << 8) | b
                                nbits += 8
                        e = dc_lut[(acc >> (nbits - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]
                        if e != 0:
                            nbits -= e & 31
                            s = e >> 5
                        else:
                            s = -1
                            t = comp_dc[c]
                            for l in range(LOOKUP_BITS + 1, 17):
                                code = (acc >> (nbits - l)) & ((1 << l) - 1)
                                if code <= maxcodes[t, l]:
                                    s = symbols[t, valptrs[t, l] + code]
                                    nbits -= l
                                    break
                            if s < 0:
                                return BAD_CODE
                        diff = 0
                        if s > 0:
                            v = (acc >> (nbits - s)) & ((1 << s) - 1)
                            nbits -= s
                            diff = v if v >= (1 << (s - 1)) else v - (1 << s) + 1
                        preds[c] += diff
                        if c == luma_comp:
                            y = my * comp_v[c] + by if ncomp > 1 else my
                            x = mx * comp_h[c] + bx if ncomp > 1 else mx
                            if y < rows and x < cols:
                                coef = ((preds[c] + 32768) & 0xFFFF) - 32768  # stored as JCOEF
                                dq = coef * quant_dc
                                out[y, x] = _range_limit((dq + 4) >> 3)
                        # ---- AC: parsed and dropped
                        k = 1
                        while k < 64:
                            if nbits < 32:
                                while nbits <= 48:
                                    b = 0
                                    if not stopped and pos < n:
                                        b = data[pos]
                                        if b == 0xFF:
                                            if pos + 1 < n and data[pos + 1] == 0:
                                                pos += 2
                                            else:
                                                stopped = True
                                                b = 0
                                                fake += 1
                                        else:
                                            pos += 1
                                    else:
                                        fake += 1
                                    acc = ((acc & ((1 << nbits) - 1)) << 8) | b
                                    nbits += 8
                            e = ac_lut[(acc >> (nbits - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]
                            if e != 0:
                                nbits -= e & 31
                                k += e >> 5
                            else:
                                rs = -1
                                t = comp_ac[c]
                                for l in range(LOOKUP_BITS + 1, 17):
                                    code = (acc >> (nbits - l)) & ((1 << l) - 1)
                                    if code <= maxcodes[t, l]:
                                        rs = symbols[t, valptrs[t, l] + code]
                                        nbits -= l
                                        break
                                if rs < 0:
                                    return BAD_CODE
                                size = rs & 15
                                if size != 0:
                                    nbits -= size
                                    k += (rs >> 4) + 1
                                elif (rs >> 4) == 15:
                                    k += 16
                                else:
                                    k = 64
    if fake * 8 > nbits:
        return TRUNCATED
    return OK
