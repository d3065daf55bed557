"""The DC-only JPEG decoder (hashmatch._jpeg) and PDQ's fast path built on it.

Oracles: Pillow's own 1/8-scale grey draft (libjpeg) for the pixels, a forward DCT of
Pillow's full decode for the block coefficients, naive canonical Huffman codes for the
lookup tables, dense matrices for the filter model, and exact PDQ (pdqhash on the full
decode) for the fast path's drift. Bad input: every malformed file gives None from the
decoder (the caller then decodes with Pillow) or a project error from the API.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hashmatch import _jpeg
from hashmatch import _jpeg_kernels as K
from hashmatch._loading import DCT_PLANES_KEY, DRAFT_SCALE_KEY, load_image
from hashmatch.errors import HashmatchError, UnreadableImageError
from hashmatch.hashers import compute_hashes
from hashmatch.hashers import _pdq_kernels as PK
from hashmatch.hashers._pdq_fast import _model_weights
from hashmatch.hashers.pdq import PDQ_FAST_OPTIONS, _dct_matrix, pdq_from_array

from .conftest import SHARED_PDQ, encode, photo_like

pdqhash = pytest.importorskip("pdqhash")


def _pillow_eighth(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.draft("L", (img.width // 8, img.height // 8))
    img.load()
    assert img.size == (-(-Image.open(io.BytesIO(data)).width // 8), -(-Image.open(io.BytesIO(data)).height // 8))
    return np.asarray(img)


def _jpeg_bytes(rng: np.random.Generator, width: int, height: int, grey: bool = False, **params: object) -> bytes:
    image = Image.fromarray(photo_like(rng, width, height))
    return encode(image.convert("L") if grey else image, "JPEG", **params)


ENCODINGS = {
    "420-q90": dict(quality=90),
    "444-q95": dict(quality=95, subsampling=0),
    "422-q50": dict(quality=50, subsampling=1),
    "grey-q75": dict(quality=75, grey=True),
    "optimized-tables": dict(quality=90, optimize=True),
    "restart-every-3-blocks": dict(quality=90, restart_marker_blocks=3),
    "restart-every-row": dict(quality=85, restart_marker_rows=1, subsampling=0),
    "grey-restarts": dict(quality=90, grey=True, restart_marker_blocks=5),
}


@pytest.mark.parametrize("size", [(203, 133), (64, 8), (9, 300)])
@pytest.mark.parametrize("name", list(ENCODINGS))
def test_dc_pixels_equal_pillow_eighth_draft(rng, name, size):
    params = dict(ENCODINGS[name])
    data = _jpeg_bytes(rng, *size, **params)
    decoded = _jpeg.decode_dc(data)
    assert decoded is not None
    assert decoded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(decoded.pixels, _pillow_eighth(data))
    assert (decoded.height, decoded.width) == (size[1], size[0])


@settings(max_examples=25)
@given(
    width=st.integers(8, 260),  # Pillow gives 1/8 (the oracle) from 8 pixels a side
    height=st.integers(8, 140),
    quality=st.integers(1, 100),
    subsampling=st.sampled_from([0, 1, 2]),
    seed=st.integers(0, 2**32 - 1),
    noise=st.sampled_from([0, 40, 255]),
)
def test_dc_pixels_equal_pillow_on_random_images(width, height, quality, subsampling, seed, noise):
    rng = np.random.default_rng(seed)
    pixels = photo_like(rng, width, height).astype(np.int16) + rng.integers(-noise, noise + 1, (height, width, 3))
    data = encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=quality,
                  subsampling=subsampling)
    decoded = _jpeg.decode_dc(data)
    assert decoded is not None
    np.testing.assert_array_equal(decoded.pixels, _pillow_eighth(data))


@pytest.mark.parametrize("name", ["420-q90", "444-q95", "grey-q75", "restart-every-3-blocks"])
def test_dc_planes_are_the_blocks_low_coefficients(rng, name):
    # Forward DCT (orthonormal, as JPEG stores them) of Pillow's full luma decode: equal
    # to the dequantised coefficients up to the decoder's rounding of each pixel.
    params = dict(ENCODINGS[name])
    data = _jpeg_bytes(rng, 160, 96, **params)
    decoded = _jpeg.decode_dc(data)
    luma = np.asarray(Image.open(io.BytesIO(data)).convert("L") if not params.get("grey") else
                      Image.open(io.BytesIO(data)), dtype=np.float64) - 128
    k = np.arange(8)
    basis = np.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * np.where(k == 0, math.sqrt(1 / 8), 0.5)[:, None]
    blocks = luma.reshape(12, 8, 20, 8).transpose(0, 2, 1, 3)
    coeffs = np.einsum("vy,rcyx,ux->rcvu", basis, blocks, basis)
    for plane, (v, u) in zip(decoded.planes, [(0, 0), (0, 1), (1, 0)]):
        # Pillow's RGB->L and the rounding of each decoded pixel move a coefficient by a few units
        assert np.abs(plane - coeffs[:, :, v, u]).max() <= 6


def _naive_codes(counts: list[int], symbols: list[int]) -> list[tuple[int, int, int]]:
    """(code, length, symbol) in canonical order (JPEG Annex C, written out)."""
    out, code, k = [], 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            out.append((code, length, symbols[k]))
            code += 1
            k += 1
        code <<= 1
    return out


@st.composite
def _huffman_tables(draw):  # type: ignore[no-untyped-def]
    counts, room = [], 2  # codes still free at this length
    for _length in range(16):
        n = draw(st.integers(0, max(0, min(room - 1, 12))))  # never all ones (libjpeg's rule)
        counts.append(n)
        room = (room - n) * 2
    total = sum(counts)
    symbols = draw(st.lists(st.integers(0, 255), min_size=total, max_size=total))
    return counts, symbols


@settings(max_examples=60)
@given(_huffman_tables(), st.sampled_from([K.AC_SKIP, K.AC_VALUES]))
def test_build_table_resolves_every_prefix_like_the_naive_codes(table, kind):
    counts, symbols = table
    lut = np.zeros(1 << K.LOOKUP_BITS, np.int32)
    maxcode = np.full(18, -1, np.int64)
    valptr = np.zeros(18, np.int64)
    syms = np.zeros(256, np.int64)
    syms[: len(symbols)] = symbols
    assert K.build_table(np.array(counts, np.int64), syms, kind, lut, maxcode, valptr) == K.OK
    codes = _naive_codes(counts, symbols)
    bits = K.LOOKUP_BITS
    for prefix in range(0, 1 << bits, 7):
        match = [(c, n, s) for c, n, s in codes if n <= bits and prefix >> (bits - n) == c]
        if not match:
            assert lut[prefix] == 0
            continue
        _, length, symbol = match[0]
        if kind == K.AC_VALUES:
            assert lut[prefix] == length | symbol << 5
        else:
            run, size = symbol >> 4, symbol & 15
            advance = run + 1 if size else (16 if run == 15 else 64)
            assert lut[prefix] == (length + size) | advance << 5
    for code, length, symbol in codes:  # the slow path finds the long codes
        if length > bits:
            assert code <= maxcode[length] and syms[valptr[length] + code] == symbol


def _naive_skip(codes: list[tuple[int, int, int]], prefix: int, bits: int) -> tuple[int, int, int] | None:
    """What one multi-code lookup over ``prefix`` (``bits`` long) must drop, walked code
    by code: (bits used, advance capped at 64, advance before the last code), or None
    when the first code is longer than the lookup."""
    used, advance, before_last, first = 0, 0, 0, True
    while first or (advance < 64 and used < bits):
        rest = bits - used
        match = [(n, s) for c, n, s in codes if n <= rest and (prefix >> (rest - n)) & ((1 << n) - 1) == c]
        if not match:
            break
        length, symbol = match[0]
        run, size = symbol >> 4, symbol & 15
        if not first and length + size > rest:
            break
        step = run + 1 if size else (16 if run == 15 else 64)
        if not first:
            before_last = advance
        advance, used, first = min(advance + step, 64), used + length + size, False
    return None if first else (used, advance, before_last)


@settings(max_examples=40)
@given(_huffman_tables(), st.lists(st.integers(0, (1 << K.SKIP_BITS) - 1), min_size=1, max_size=64))
def test_multi_table_skips_the_codes_a_naive_walk_finds(table, prefixes):
    counts, symbols = table
    syms = np.zeros(256, np.int64)
    syms[: len(symbols)] = symbols
    single = np.zeros(1 << K.SKIP_BITS, np.int32)
    assert K.build_table(np.array(counts, np.int64), syms, K.AC_SKIP, single, np.full(18, -1, np.int64),
                         np.zeros(18, np.int64)) == K.OK
    multi = np.zeros_like(single)
    K.multi_table(single, multi)
    codes = _naive_codes(counts, symbols)
    for prefix in prefixes:
        expect = _naive_skip(codes, prefix, K.SKIP_BITS)
        entry = int(multi[prefix])
        if expect is None:
            assert entry == K.SLOW_ENTRY
        else:
            assert (entry & 63, (entry >> 6) & 127, entry >> 13) == expect
            assert entry & 63 <= 27  # two lookups fit in a refilled buffer (56 bits)


def _naive_extend(bits: int, size: int) -> int:
    """JPEG's signed value of ``size`` magnitude bits (F.2.2.1), written out."""
    return 0 if size == 0 else bits if bits >= 1 << (size - 1) else bits - (1 << size) + 1


@settings(max_examples=60, deadline=None)
@given(_huffman_tables(), st.data())
def test_first_harmonics_match_a_code_by_code_decode(table, data):
    """AC 1 and AC 2 of each block from its buffer (64 stream bits after the DC code):
    one code, and a second only when AC 1 was coded; EOB, ZRL, runs, long codes."""
    counts, symbols = table
    if not symbols:
        return
    built = _jpeg._tables(((4, bytes(counts), bytes(symbols)),))
    assert built is not None
    vals, _, maxcodes, valptrs, syms = built
    codes = _naive_codes(counts, symbols)
    blocks = data.draw(st.integers(1, 8))
    starts = np.zeros(blocks, np.uint64)
    expect_h, expect_v = [], []
    for at in range(blocks):
        stream, used, h, v = 0, 0, 0, 0
        for nth in range(2):
            code, length, symbol = codes[data.draw(st.integers(0, len(codes) - 1))]
            run, size = symbol >> 4, symbol & 15
            magnitude = data.draw(st.integers(0, (1 << size) - 1))
            stream = (stream << (length + size)) | (code << size) | magnitude
            used += length + size
            value = _naive_extend(magnitude, size)
            if nth == 0:
                h = value if run == 0 else 0
                v = value if run == 1 else 0
                if run != 0 or size == 0:  # AC 1 not coded: the next code is not AC 2's
                    break
            elif run == 0:
                v = value
        tail = data.draw(st.integers(0, (1 << (64 - used)) - 1))
        starts[at] = (stream << (64 - used)) | tail
        expect_h.append(h)
        expect_v.append(v)
    quant = np.array([16, 3, 5], np.int64)
    h_plane = np.full(blocks, np.nan, np.float32)
    v_plane = np.full(blocks, np.nan, np.float32)
    K.first_harmonics(starts, vals.reshape(-1), 4, maxcodes, valptrs, syms, quant, h_plane, v_plane)
    np.testing.assert_array_equal(h_plane, np.array(expect_h, np.float32) * 3)
    np.testing.assert_array_equal(v_plane, np.array(expect_v, np.float32) * 5)


def naive_unstuff(data: bytes, pos: int, max_segments: int) -> tuple[int, list[bytes]]:
    """The entropy-coded bytes from ``pos``, byte by byte: 0xFF 0x00 is 0xFF, 0xFF 0xFF a
    fill byte, RSTn (in order) ends a segment, any other marker or the end ends the scan."""
    segments: list[bytes] = []
    current = bytearray()
    i = pos
    while i < len(data):
        if data[i] != 0xFF:
            current.append(data[i])
            i += 1
            continue
        if i + 1 >= len(data):
            break
        nxt = data[i + 1]
        if nxt == 0:
            current.append(0xFF)
            i += 2
        elif nxt == 0xFF:
            i += 1
        elif 0xD0 <= nxt <= 0xD7:
            if nxt != 0xD0 + (len(segments) & 7) or len(segments) + 1 >= max_segments:
                return -1, []
            segments.append(bytes(current))
            current = bytearray()
            i += 2
        else:
            break
    segments.append(bytes(current))
    return len(segments), segments


_STUFFING = st.lists(st.one_of(st.integers(0, 255), st.sampled_from([0xFF, 0x00, 0xD0, 0xD1, 0xD2, 0xD9])),
                     max_size=120)


@settings(max_examples=300, deadline=None)
@given(body=_STUFFING, pos=st.integers(0, 3), max_segments=st.integers(1, 4))
def test_unstuff_matches_a_byte_by_byte_walk(body: list[int], pos: int, max_segments: int) -> None:
    """Words with a 0xFF at every offset, pairs across word edges, fill bytes, restart
    markers in and out of order, other markers, a 0xFF as the last byte."""
    data = np.array(body, dtype=np.uint8)
    pos = min(pos, len(body))
    clean = np.full(len(body) + 8, 0xAA, dtype=np.uint8)
    seg_start = np.zeros(max_segments, dtype=np.int64)
    seg_end = np.zeros(max_segments, dtype=np.int64)
    count = K.unstuff(data, pos, max_segments, clean, seg_start, seg_end)
    expected_count, expected = naive_unstuff(bytes(body), pos, max_segments)
    assert count == expected_count
    if count > 0:
        assert [clean[seg_start[k] : seg_end[k]].tobytes() for k in range(count)] == expected


def test_build_table_refuses_what_libjpeg_refuses():
    syms = np.zeros(256, np.int64)
    over_full = np.array([3] + [0] * 15, np.int64)  # three 1-bit codes
    assert K.build_table(over_full, syms, K.AC_SKIP, np.zeros(1 << K.LOOKUP_BITS, np.int32),
                         np.full(18, -1, np.int64), np.zeros(18, np.int64)) == K.BAD_TABLE
    syms[0] = 16  # a DC category over 15
    one = np.array([1] + [0] * 15, np.int64)
    assert K.build_table(one, syms, K.DC_TABLE, np.zeros(1 << K.LOOKUP_BITS, np.int32),
                         np.full(18, -1, np.int64), np.zeros(18, np.int64)) == K.BAD_TABLE


# -- what the decoder leaves to Pillow -----------------------------------------------------
def test_decoder_declines_progressive_and_non_jpeg(rng):
    image = Image.fromarray(photo_like(rng, 100, 80))
    assert _jpeg.decode_dc(encode(image, "JPEG", quality=90, progressive=True)) is None
    assert _jpeg.decode_dc(encode(image, "PNG")) is None
    assert _jpeg.decode_dc(encode(image.convert("CMYK"), "JPEG")) is None
    assert _jpeg.decode_dc(b"") is None


def _entropy_start(data: bytes) -> int:
    head = _jpeg.read_header(data)
    assert head is not None
    return head.data_start


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.95])
def test_truncated_jpeg_declined_and_api_raises(rng, cut):
    data = _jpeg_bytes(rng, 400, 300, quality=90)
    start = _entropy_start(data)
    short = data[: start + int((len(data) - start) * cut)]
    assert _jpeg.decode_dc(short) is None
    with pytest.raises(UnreadableImageError):
        compute_hashes(short, ("pdq",), options={"pdq": dict(PDQ_FAST_OPTIONS)})


def test_junk_after_the_scan_is_not_read(rng):
    data = _jpeg_bytes(rng, 64, 48, quality=90)
    junk = bytes(rng.integers(0, 255, 4_000_000, dtype=np.uint8))  # no 0xFF: no marker to stop at
    decoded = _jpeg.decode_dc(data[:-2] + junk)  # EOI dropped
    assert decoded is not None
    np.testing.assert_array_equal(decoded.pixels, _jpeg.decode_dc(data).pixels)


def test_restart_markers_out_of_order_declined(rng):
    data = bytearray(_jpeg_bytes(rng, 400, 300, quality=90, restart_marker_blocks=4))
    start = _entropy_start(bytes(data))
    at = data.index(b"\xff\xd1", start)
    data[at + 1] = 0xD3
    assert _jpeg.decode_dc(bytes(data)) is None


def test_over_full_huffman_table_declined(rng):
    data = bytearray(_jpeg_bytes(rng, 64, 64, quality=90))
    at = data.index(b"\xff\xc4")
    data[at + 5] = 0x7F  # DHT counts: 127 one-bit codes
    assert _jpeg.decode_dc(bytes(data)) is None


@settings(max_examples=40)
@given(st.data())
def test_corrupt_entropy_data_never_crashes(data_strategy):
    rng = np.random.default_rng(data_strategy.draw(st.integers(0, 1000)))
    data = bytearray(_jpeg_bytes(rng, 800, 776, quality=80))
    start = _entropy_start(bytes(data))
    for _ in range(data_strategy.draw(st.integers(1, 8))):
        at = data_strategy.draw(st.integers(start, len(data) - 3))
        data[at] = data_strategy.draw(st.integers(0, 255))
    blob = bytes(data)
    decoded = _jpeg.decode_dc(blob)
    assert decoded is None or decoded.pixels.shape == (97, 100)
    try:
        result = compute_hashes(blob, ("pdq",), options={"pdq": dict(PDQ_FAST_OPTIONS)})
    except HashmatchError:
        return
    assert result["pdq"][0].hash.bits == 256


# -- the filter model ----------------------------------------------------------------------
def _dense_exact_rows(n: int) -> np.ndarray:
    """The exact path along one side as a (64, n) matrix: box, box, sample."""
    window = (n + 127) // 128
    half = (window + 2) // 2
    box = np.zeros((n, n))
    for o in range(n):
        lo, hi = max(0, o - (window - half)), min(n - 1, o + half - 1)
        box[o, lo : hi + 1] = 1 / (hi - lo + 1)
    rows = np.array([int(((i + 0.5) * n) / 64) for i in range(64)])
    return (box @ box)[rows]


@pytest.mark.parametrize("n", [64, 100, 768, 1004, 1024])
def test_model_weights_equal_dense_filter_against_block_basis(n):
    blocks = -(-n // 8)
    x = np.arange(n)
    basis0 = np.zeros((n, blocks))
    basis1 = np.zeros((n, blocks))
    basis0[x, x // 8] = math.sqrt(1 / 8)
    basis1[x, x // 8] = 0.5 * np.cos((2 * (x % 8) + 1) * math.pi / 16)
    dense = _dense_exact_rows(n)
    first, w0, w1 = _model_weights(n, blocks)
    for weights, basis in ((w0, basis0), (w1, basis1)):
        full = np.zeros((64, blocks))
        for i in range(64):
            full[i, first[i] : first[i] + weights.shape[1]] = weights[i]
        np.testing.assert_allclose(full, dense @ basis, atol=1e-12)


def test_dct_model_kernel_equals_matrix_products(rng):
    rows, cols = 96, 128
    planes = rng.normal(0, 80, (3, rows, cols)).astype(np.float32)
    r = _model_weights(768, rows)
    c = _model_weights(1024, cols)

    def dense(first, weights, blocks):  # type: ignore[no-untyped-def]
        out = np.zeros((64, blocks))
        for i in range(64):
            out[i, first[i] : first[i] + weights.shape[1]] = weights[i]
        return out

    r0, r1, c0, c1 = dense(r[0], r[1], rows), dense(r[0], r[2], rows), dense(c[0], c[1], cols), dense(c[0], c[2], cols)
    p = planes.astype(np.float64)
    expect = 128 + r0 @ p[0] @ c0.T + r0 @ p[1] @ c1.T + r1 @ p[2] @ c0.T
    np.testing.assert_allclose(PK.dct_model_64(planes, *r, *c), expect, rtol=1e-5, atol=1e-3)


# -- PDQ's fast path -----------------------------------------------------------------------
def _exact_pdq(data: bytes) -> tuple[np.ndarray, int]:
    bits, quality = pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return bits.astype(bool), int(quality)


def _fast_bits(data: bytes) -> np.ndarray:
    return compute_hashes(data, ("pdq",), options={"pdq": dict(PDQ_FAST_OPTIONS)})["pdq"][0].hash.to_bool_array()


def test_fast_path_uses_the_dc_decoder_for_large_baseline_jpegs(rng):
    data = _jpeg_bytes(rng, 1024, 768, quality=90)
    img = load_image(data, draft=("L", (96, 96)), dc_decoder=True)
    assert img.mode == "L" and img.size == (128, 96) and img.info[DRAFT_SCALE_KEY] == 8
    planes, height, width = img.info[DCT_PLANES_KEY]
    assert planes.shape == (3, 96, 128) and (height, width) == (768, 1024)
    # the EXIF path keeps Pillow (the DC image carries no EXIF)
    assert DCT_PLANES_KEY not in load_image(data, draft=("L", (96, 96)), exif_transpose=True, dc_decoder=True).info


def test_only_the_pdq_fast_path_uses_the_dc_decoder(rng, monkeypatch):
    """Default hashing (phash's fast draft, exact PDQ) keeps Pillow's decoder."""
    data = _jpeg_bytes(rng, 1024, 768, quality=90)
    assert DCT_PLANES_KEY not in load_image(data, draft=("L", (96, 96))).info
    calls = []
    real = _jpeg.decode_dc
    monkeypatch.setattr(_jpeg, "decode_dc", lambda *a: calls.append(1) or real(*a))
    compute_hashes(data, ("phash", "ahash", "dhash"))
    compute_hashes(data, ("phash", "pdq"))
    assert calls == []
    compute_hashes(data, ("pdq",), options={"pdq": dict(PDQ_FAST_OPTIONS)})
    assert calls == [1]


def test_fast_path_drift_on_synthetic_photos_within_bound():
    from hashmatch.testing.synthetic import generate_image

    drifts = []
    for i in range(8):
        data = encode(generate_image(7 * 1_000_003 + i, size=(1024, 768)), "JPEG", quality=90)
        bits, quality = _exact_pdq(data)
        assert quality >= 50
        drifts.append(int((_fast_bits(data) != bits).sum()))
    # measured on 40 such images: mean 1.65, p95 4, max 4 (notes/issue-14-pdq.md)
    assert max(drifts) <= 8, drifts


@pytest.mark.shared_testdata
def test_fast_path_drift_on_reference_photos_within_bound():
    drifts = []
    for path in sorted((SHARED_PDQ / "images").glob("**/*.jp*g")):
        data = path.read_bytes()
        bits, quality = _exact_pdq(data)
        if quality >= 50:
            drifts.append(int((_fast_bits(data) != bits).sum()))
    assert len(drifts) >= 20
    assert np.percentile(drifts, 95) <= 8 and max(drifts) <= 12, drifts


def test_fast_path_small_jpeg_is_decoded_in_full_and_exact(rng):
    # 256 px at draft_min_side 96 would be a 1/2 pixel decode: PDQ's window is too
    # narrow for it, so the loader decodes the file again at full size.
    data = _jpeg_bytes(rng, 256, 256, quality=90)
    bits, _ = _exact_pdq(data)
    np.testing.assert_array_equal(_fast_bits(data), bits)


def test_fast_path_progressive_jpeg_is_decoded_in_full_and_exact(rng):
    data = encode(Image.fromarray(photo_like(rng, 1024, 768)), "JPEG", quality=90, progressive=True)
    bits, _ = _exact_pdq(data)
    np.testing.assert_array_equal(_fast_bits(data), bits)


def test_fast_path_dihedral_is_the_sign_flips_of_the_modelled_dct(rng):
    data = _jpeg_bytes(rng, 1024, 768, quality=90)
    options = {"pdq": dict(PDQ_FAST_OPTIONS)}
    plain = compute_hashes(data, ("pdq",), options=options)["pdq"][0]
    variants = compute_hashes(data, ("pdq",), options=options, dihedral=True)["pdq"]
    assert len(variants) == 8 and variants[0] == plain
    img = load_image(data, draft=("L", (96, 96)), dc_decoder=True)
    planes, height, width = img.info[DCT_PLANES_KEY]
    coeffs, _ = PK.pdq_coeffs_dct_model(planes, _dct_matrix(), *_model_weights(height, planes.shape[1]),
                                        *_model_weights(width, planes.shape[2]))
    flipped = PK.dihedral_coeffs(coeffs)
    for variant, c in zip(variants, flipped):
        assert (variant.hash.to_bool_array() == PK.bits_above_median(c)).all()


def test_exact_path_unchanged_by_default(rng):
    data = _jpeg_bytes(rng, 1024, 768, quality=90)
    full = pdq_from_array(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert compute_hashes(data, ("pdq",))["pdq"][0] == full
