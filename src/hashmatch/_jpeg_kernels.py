"""numba kernels for the DC-only JPEG decoder (:mod:`hashmatch._jpeg`).

A 1/8-scale JPEG decode is each 8x8 block's DC term, but a baseline JPEG must still
have every Huffman code parsed to find where the next block starts: that parse is the
whole cost of a 1/8 decode. libjpeg-turbo parses every coefficient through its general
decoder (and stores them); here the AC codes are skipped, as many as fit in the next
SKIP_BITS bits per table lookup (the entry gives the bits to drop, code and magnitude
together, and how far the zig-zag index moves), and only the luma DC terms and first
two AC terms are kept. The cost is the chain of dependent lookups (about 170,000 for a
1024x768 photo at quality 90), so the loop is written to keep that chain short.

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

from ._jit import load_word, njit, store_word

LOOKUP_BITS = 11
"""Codes up to this long resolve in one table lookup; longer ones walk the code lengths."""
SKIP_BITS = 12
"""The AC codes to drop are skipped in lookups of this many bits (several codes each)."""
SLOW_ENTRY = 127 << 13
"""A :func:`multi_table` entry for a code longer than SKIP_BITS."""

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

    ``lut`` has ``1 << bits`` entries (LOOKUP_BITS for DC_TABLE and AC_VALUES, SKIP_BITS
    for the AC_SKIP table that :func:`multi_table` reads). ``lut[prefix]``: 0 when the
    code under the next ``bits`` bits is longer; else for
    ``kind`` DC_TABLE and AC_VALUES ``length | symbol << 5``; for AC_SKIP
    ``(length + magnitude bits) | zig-zag advance << 5`` (advance 64 for an end of
    block, 16 for a run of 16 zeros).
    ``maxcode[l]`` / ``valptr[l]``: the slow path for lengths over LOOKUP_BITS (-1: none).
    Returns BAD_TABLE for tables libjpeg refuses (over-full code space, more than 256
    symbols, a DC category over 15).
    """
    bits = 0
    while (1 << bits) < lut.shape[0]:
        bits += 1
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
            if l <= bits:
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
                shift = bits - l
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


_LOW_SEVEN = np.uint64(0x7F7F7F7F7F7F7F7F)


@njit(cache=True, nogil=True, inline="always")
def _first_ff(word):
    """Index (0-7) of the first 0xFF byte of a little-endian word, 8 when there is none.

    The complement's zero bytes are flagged exactly, with no carry between bytes (so no
    wrapping arithmetic either); the lowest flag is isolated and its byte index counted
    by comparisons, without a branch or a bit scan."""
    x = ~word
    found = ~(((x & _LOW_SEVEN) + _LOW_SEVEN) | x | _LOW_SEVEN)
    if found == 0:
        return 8
    low = found & (~found + np.uint64(1))
    index = 0
    for b in range(1, 8):
        index += low > (np.uint64(0x80) << np.uint64(8 * (b - 1)))
    return index


@njit(cache=True, nogil=True)
def unstuff(data, pos, max_segments, clean, seg_start, seg_end):
    """Entropy-coded bytes from ``pos`` with stuffed zeros dropped, split at RSTn markers.

    Writes segment ``i`` to ``clean[seg_start[i]:seg_end[i]]`` and returns the number of
    segments (-1 when a restart marker is out of order or there are more than
    ``max_segments``). Stops at any other marker or at the end of the data. ``clean``
    needs ``len(data) - pos`` bytes. One pass, a word at a time: each word is loaded and
    stored whole with one unaligned 8-byte access each (``_jit.load_word`` /
    ``store_word``; j <= i - pos: clean has room), and where it holds a 0xFF both
    positions jump to it (:func:`_first_ff`), the pair is handled, and the next word
    starts after it. (Round 5's 32-byte chunks found the 0xFF byte by byte after a chunk
    test: 64 us a 163 KB quality-90 scan; round 6's words from eight byte accesses, which
    numba merged only in part, 44 us; single accesses 28 us, notes/issue-14-pdq.md.)
    """
    n = data.shape[0]
    j = 0
    seg = 0
    seg_start[0] = 0
    i = pos
    while i < n:
        if i + 8 <= n:
            word = load_word(data, i)
            store_word(clean, j, word)
            f = _first_ff(word)
            i += f
            j += f
            if f == 8:
                continue
        else:
            x = data[i]
            if x != 0xFF:
                clean[j] = x
                j += 1
                i += 1
                continue
        # data[i] is 0xFF
        if i + 1 >= n:
            break
        nxt = data[i + 1]
        if nxt == 0:
            clean[j] = 0xFF
            j += 1
            i += 2
        elif nxt == 0xFF:  # fill byte before a marker
            i += 1
        elif 0xD0 <= nxt <= 0xD7:
            if nxt != 0xD0 + (seg & 7) or seg + 1 >= max_segments:
                return -1
            seg_end[seg] = j
            seg += 1
            seg_start[seg] = j
            i += 2
        else:  # a marker: the scan ends here
            break
    seg_end[seg] = j
    return seg + 1


@njit(cache=True, nogil=True)
def multi_table(single, out):
    """AC lookups that skip every code that fits in the next SKIP_BITS bits at once.

    ``single``: an AC_SKIP table of :func:`build_table` (SKIP_BITS). Codes are taken one
    after another while the next one (code and magnitude bits) fits, up to an end of
    block or an advance of 64. Entry: total bits | total advance << 6 | the advance
    before the last code << 13. A decoder at zig-zag index ``k`` may take the entry
    whole when ``k`` plus that last field is under 64 (no code but the last can end
    the block); otherwise it decodes one code on the slow path. Codes longer than
    SKIP_BITS get ``SLOW_ENTRY``, which fails that test for every ``k``.
    """
    mask = (1 << SKIP_BITS) - 1
    for p in range(single.shape[0]):
        e = single[p]
        if e == 0:
            out[p] = SLOW_ENTRY
            continue
        used = e & 31
        advance = e >> 5
        before_last = 0
        while advance < 64 and used < SKIP_BITS:
            e = single[(p << used) & mask]
            if e == 0 or (e & 31) > SKIP_BITS - used:
                break
            before_last = advance
            advance = min(advance + (e >> 5), 64)
            used += e & 31
        out[p] = used | (advance << 6) | (before_last << 13)


@njit(cache=True, nogil=True)
def range_limit_table():
    """libjpeg's post-IDCT range-limit table, indexed by ``x & 1023``."""
    table = np.empty(1024, dtype=np.uint8)
    for i in range(1024):
        table[i] = _range_limit(i)
    return table


@njit(cache=True, nogil=True, inline="always")
def _long_code(acc, maxcodes, valptrs, symbols, slot):
    """(symbol, length) of a code longer than LOOKUP_BITS at the top of ``acc`` (uint64,
    left-aligned) in Huffman table ``slot``, by the canonical code ranges; (-1, 0) when
    no table code matches. (Whole tables and a slot, not row views: a view would be
    reference-counted on the hot path once the caller is inlined.)"""
    peek = np.int64(acc >> np.uint64(48))
    for l in range(LOOKUP_BITS + 1, 17):
        code = peek >> (16 - l)
        if code <= maxcodes[slot, l]:
            return symbols[slot, valptrs[slot, l] + code], l
    return -1, 0


@njit(cache=True, nogil=True, inline="always")
def _refill(data, pos, acc, nbits):
    """Top the bit buffer up to 56-63 bits without a branch: whole bytes from ``pos`` on
    (re-reading part of a byte ORs the same bits in again). The load's address was known
    one step earlier, so only the shift and the OR wait for the last code's length. The
    eight byte loads, unsigned and in order, compile to one load and a byte swap (bswap
    in the assembly)."""
    p = np.uint64(pos)
    word = (
        (np.uint64(data[p]) << np.uint64(56)) | (np.uint64(data[p + np.uint64(1)]) << np.uint64(48))
        | (np.uint64(data[p + np.uint64(2)]) << np.uint64(40)) | (np.uint64(data[p + np.uint64(3)]) << np.uint64(32))
        | (np.uint64(data[p + np.uint64(4)]) << np.uint64(24)) | (np.uint64(data[p + np.uint64(5)]) << np.uint64(16))
        | (np.uint64(data[p + np.uint64(6)]) << np.uint64(8)) | np.uint64(data[p + np.uint64(7)])
    )
    acc |= word >> np.uint64(nbits)
    return acc, pos + ((63 - nbits) >> 3), nbits | 56


@njit(cache=True, nogil=True, inline="always")
def _extend(x, size):
    """JPEG's signed value of the top ``size`` (0-15) bits of ``x``; 0 for size 0. No
    branch: the sign test compiles to a conditional move."""
    v = np.int64((x >> np.uint64(1)) >> np.uint64(63 - size))
    return v - (1 << size) + 1 if v < ((1 << size) >> 1) else v


@njit(cache=True, nogil=True, inline="always")
def _advance(rs):
    """How far an AC code moves the zig-zag index: run + 1, 16 for ZRL, 64 for an end of block."""
    if rs & 15:
        return (rs >> 4) + 1
    return 16 if rs >> 4 == 15 else 64


@njit(cache=True, nogil=True, inline="always")
def _ac_code(acc, vals, vbase, maxcodes, valptrs, symbols, slot):
    """(code length, run/size symbol) of the AC code at the top of ``acc``; symbol -1
    when no code of the table matches."""
    e = vals[vbase + (acc >> np.uint64(64 - LOOKUP_BITS))]
    if e != 0:
        return e & 31, e >> 5
    rs, used = _long_code(acc, maxcodes, valptrs, symbols, slot)
    return used, rs


@njit(cache=True, nogil=True)
def _slow_skip(data, pos, acc, nbits, k, vals, vbase, maxcodes, valptrs, symbols, slot):
    """Drop one AC code (the rare case the multi-code lookup cannot take), leaving the
    buffer full. Returns the new state; k = -1 for a code in no table."""
    acc, pos, nbits = _refill(data, pos, acc, nbits)
    used, rs = _ac_code(acc, vals, vbase, maxcodes, valptrs, symbols, slot)
    if rs < 0:
        return acc, pos, nbits, -1
    used += rs & 15
    acc <<= np.uint64(used)
    acc, pos, nbits = _refill(data, pos, acc, nbits - used)
    return acc, pos, nbits, k + _advance(rs)


@njit(cache=True, nogil=True)
def dc_scan(data, limit_bytes, seg_start, seg_end, nmcux, nmcuy, plan, restart_interval,
            vals, skips, maxcodes, valptrs, symbols, quant, limit_table, out, planes):
    """Decode one baseline scan, keeping the luma DC terms as 1/8-scale pixels.

    Also keeps each luma block's three lowest coefficients, dequantised by ``quant``
    (its first three entries, zig-zag order; AC 1 and 2 through :func:`first_harmonics`
    after the scan), in ``planes`` (3, rows, columns) float32:
    DC, the horizontal and the vertical first harmonic. PDQ's fast path models the
    full-resolution filter from them (notes/issue-14-pdq.md).

    ``data``: :func:`unstuff`'s bytes, zeros past the end (PAD_BYTES + 8). ``vals``:
    (8, 1 << LOOKUP_BITS) tables of :func:`build_table`, DC tables (slots 0-3, DC_TABLE)
    and AC tables (4-7, AC_VALUES); ``skips``: (4, 1 << SKIP_BITS) :func:`multi_table`
    tables of the AC slots. ``plan`` has one row per block of an MCU, in scan order:
    (component, DC table, AC table, row, column within the MCU's luma blocks or -1 when
    not luma); one block per MCU for a non-interleaved scan. ``out`` is (nmcuy * luma rows
    per MCU, nmcux * luma columns per MCU) uint8; the caller crops the MCU padding.
    Returns a status (OK = 0).

    The time is the chain of dependent table lookups (about 170,000 for a 1024x768
    photo at quality 90), so the loop keeps that chain short: multi-code skips, two of
    them per refill (each takes at most 27 bits of the 56 or more in the buffer; the
    slow path refills itself), values extracted without branches, unsigned indices
    (numba then drops its negative-index fix-up).
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
    vals = vals.reshape(vals.size)
    skips = skips.reshape(skips.size)
    quant_dc = quant[0]
    preds = np.zeros(ncomp, dtype=np.int64)
    starts = np.zeros(out.size, dtype=np.uint64)  # per luma block, for first_harmonics
    luma_ac = 4
    for b in range(nblocks):
        if plan[b, 4] >= 0:
            luma_ac = plan[b, 2]
    mcus_left = restart_interval
    seg = 0
    top = np.uint64(64 - LOOKUP_BITS)
    skip_top = np.uint64(64 - SKIP_BITS)
    # Bit buffer: the next nbits bits left-aligned in acc; pos * 8 - nbits bits consumed.
    acc, pos, nbits = _refill(data, 0, np.uint64(0), 0)
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
                    acc, pos, nbits = _refill(data, seg_start[seg], np.uint64(0), 0)
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
                vbase = np.uint64(ac_t << LOOKUP_BITS)
                sbase = np.uint64((ac_t - 4) << SKIP_BITS)
                # ---- DC (the buffer is full here)
                e = vals[np.uint64(dc_t << LOOKUP_BITS) + (acc >> top)]
                if e != 0:
                    used = e & 31
                    s = e >> 5
                else:
                    s, used = _long_code(acc, maxcodes, valptrs, symbols, dc_t)
                    if s < 0:
                        return BAD_CODE
                acc <<= np.uint64(used)
                preds[c] += _extend(acc, s)
                acc <<= np.uint64(s)
                nbits -= used + s
                k = 1
                acc, pos, nbits = _refill(data, pos, acc, nbits)  # the skips below need it full
                if plan[b, 4] >= 0:
                    at = np.uint64(origin + plan[b, 3] * width + plan[b, 4])  # unsigned: no wraparound check
                    coef = ((preds[c] + 32768) & 0xFFFF) - 32768  # stored as a 16-bit JCOEF
                    flat[at] = limit_table[np.uint64(((coef * quant_dc + 4) >> 3) & 1023)]
                    dc_plane[at] = coef * quant_dc
                    # AC 1 and 2: decoded after the scan from this copy of the refilled
                    # buffer (first_harmonics); the skips below take those codes too.
                    starts[at] = acc
                # ---- the other AC codes: dropped, several a lookup, two lookups a refill.
                # nbits -= e: the entry's upper fields subtract a multiple of 64 and every
                # use masks nbits to 6 bits (free in x86 shifts), which keeps an AND off the
                # lookup chain; so does acc << (e & 63). The two steps are written out:
                # as an inlined helper, numba reference-counts the slow path's table
                # arguments on every lookup (measured 9x slower).
                while k < 64:
                    e = skips[sbase + (acc >> skip_top)]
                    if k + (e >> 13) < 64:
                        k += (e >> 6) & 127
                        acc <<= np.uint64(e & 63)
                        nbits -= e
                    else:
                        acc, pos, nbits, k = _slow_skip(data, pos, acc, nbits & 63, k, vals, vbase, maxcodes,
                                                        valptrs, symbols, ac_t)
                        if k < 0:
                            return BAD_CODE
                    if k < 64:
                        e = skips[sbase + (acc >> skip_top)]
                        if k + (e >> 13) < 64:
                            k += (e >> 6) & 127
                            acc <<= np.uint64(e & 63)
                            nbits -= e
                        else:
                            acc, pos, nbits, k = _slow_skip(data, pos, acc, nbits & 63, k, vals, vbase, maxcodes,
                                                            valptrs, symbols, ac_t)
                            if k < 0:
                                return BAD_CODE
                    acc, pos, nbits = _refill(data, pos, acc, nbits & 63)
    if pos * 8 - nbits > end:
        return TRUNCATED
    first_harmonics(starts, vals, luma_ac, maxcodes, valptrs, symbols, quant, h_plane, v_plane)
    return OK


@njit(cache=True, nogil=True)
def first_harmonics(starts, vals, slot, maxcodes, valptrs, symbols, quant, h_plane, v_plane):
    """Each luma block's AC 1 (horizontal) and AC 2 (vertical) coefficient, dequantised,
    from ``starts``: the bit buffer as :func:`dc_scan` found it after the block's DC
    code, refilled (64 stream bits: two codes take at most 62). ``vals``: flattened
    value tables; ``slot``: the luma AC table's.

    A pass of its own, not in the scan loop: there, decoded on the lookup chain (one
    code, and a second when AC 1 was coded) they cost about as much as all the skipping
    of the other codes; decoded off the chain from a copy of the buffer, still about 70
    us a 1024x768 quality-90 file (their instructions sit between each block's end, a
    mispredicted branch, and the next block's lookups). Here the blocks are independent
    and overlap: about 50 us (notes/issue-14-pdq.md round 7). A code in no table gives
    zeros: the scan refuses the file anyway.
    """
    vbase = np.uint64(slot << LOOKUP_BITS)
    q1 = quant[1]
    q2 = quant[2]
    for at in range(starts.shape[0]):
        acc = starts[at]
        used, rs = _ac_code(acc, vals, vbase, maxcodes, valptrs, symbols, slot)
        rs = max(rs, 0)
        rest = acc << np.uint64(used)
        value = _extend(rest, rs & 15)
        h = value if rs >> 4 == 0 else 0
        v = value if rs >> 4 == 1 else 0
        coded = (rs >> 4 == 0) & (rs & 15 != 0)  # AC 1 coded: the next code is AC 2's
        rest <<= np.uint64(rs & 15)
        used, rs = _ac_code(rest, vals, vbase, maxcodes, valptrs, symbols, slot)
        rs = max(rs, 0)
        value = _extend(rest << np.uint64(used), rs & 15)
        v = value if coded & (rs >> 4 == 0) else v
        h_plane[at] = (((h + 32768) & 0xFFFF) - 32768) * q1
        v_plane[at] = (((v + 32768) & 0xFFFF) - 32768) * q2


PAD_BYTES = 512
"""Zero bytes after the data: dc_scan checks its position once per block, and a block of
corrupt codes (67 codes of at most 31 bits) can read that far past the end."""


@njit(cache=True, nogil=True)
def decode_scan(data, pos, max_segments, nmcux, nmcuy, plan, restart_interval,
                vals, skips, maxcodes, valptrs, symbols, quant, limit_table, out, planes):
    """:func:`unstuff` and :func:`dc_scan` in one call."""
    clean = np.empty(data.shape[0] - pos + PAD_BYTES + 8, dtype=np.uint8)
    seg_start = np.empty(max_segments, dtype=np.int64)
    seg_end = np.empty(max_segments, dtype=np.int64)
    segments = unstuff(data, pos, max_segments, clean, seg_start, seg_end)
    if segments < 1:
        return BAD_RESTART
    used = seg_end[segments - 1]
    data = clean[: used + PAD_BYTES + 8]
    data[used:] = 0  # past the data, zero bits are fed
    return dc_scan(data, used + 8, seg_start[:segments], seg_end[:segments], nmcux, nmcuy, plan,
                   restart_interval, vals, skips, maxcodes, valptrs, symbols, quant, limit_table, out, planes)
