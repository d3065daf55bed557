"""Property-based fuzzing (hypothesis) of image loading, hex parsing, hash-list import and
index/snapshot loading: every input gives a result or the project's own error.

A bounded run is part of ``make test``; ``make fuzz`` runs the same properties with
``HASHMATCH_FUZZ_EXAMPLES`` examples each (and the atheris harness in
``tests/fuzz_atheris.py``). The image cases start from valid files of every format and
apply hypothesis-chosen edits and cuts, which reaches far more decoder paths than
random bytes do.
"""

from __future__ import annotations

import io
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hashmatch
from hashmatch.errors import CorruptIndexError, HashListError, HashmatchError, InvalidHashError
from hashmatch.hashes import Hash, HashBatch
from hashmatch.index import Flat, MultiIndexHash, load_index
from hashmatch.index import _format
from hashmatch._hashlists import ParsedRow, RejectedRow, SkippedLine, read_hashlist

from . import _hostile_cases as cases

EXAMPLES = int(os.environ.get("HASHMATCH_FUZZ_EXAMPLES", "60"))
_fuzz = settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_SEEDS = {fmt: cases.encoded(fmt, seed=3, width=40, height=30) for fmt in cases.FORMATS}
_ALGORITHMS = ("ahash", "dhash", "phash", "whash", "pdq")


@st.composite
def edited_images(draw: st.DrawFn) -> bytes:
    data = bytearray(_SEEDS[draw(st.sampled_from(cases.FORMATS))])
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data) - 1))
        data[at:at] = draw(st.binary(max_size=64))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data)


@_fuzz
@given(data=edited_images(), algorithm=st.sampled_from(_ALGORITHMS))
def test_fuzz_image_loading_gives_hash_or_image_error(data: bytes, algorithm: str) -> None:
    try:
        result = hashmatch.hash_image(data, algorithm)
    except HashmatchError:
        return
    assert isinstance(result, Hash) and result.algorithm == algorithm


@_fuzz
@given(data=st.binary(max_size=2048))
def test_fuzz_random_bytes_give_hash_or_image_error(data: bytes) -> None:
    try:
        hashmatch.hash_image(data, "phash")
    except HashmatchError:
        pass


_HEX_ALPHABET = st.sampled_from(list("0123456789abcdefABCDEFxX \t\n-g\u0660\uff10"))


@_fuzz
@given(text=st.one_of(st.text(_HEX_ALPHABET, max_size=80), st.text(max_size=80)), bits=st.sampled_from([None, 36, 64, 256]))
def test_fuzz_hex_parsing_round_trips_or_raises(text: str, bits: int | None) -> None:
    try:
        h = Hash.from_hex(text, algorithm="phash", bits=bits)
    except InvalidHashError:
        return
    assert Hash.from_hex(str(h), algorithm="phash", bits=h.bits) == h
    digits = text.strip()
    digits = digits[2:] if digits[:2].lower() == "0x" else digits
    assert re.fullmatch(r"[0-9a-fA-F]+", digits) and int(digits, 16) == h.value


_LIST_PIECES = st.sampled_from([
    "hash", "algorithm", "label", "quality", "id", ",", "\t", '"', "'", "=", "phash", "pdq", "dhash", "100", "-1",
    "#", " ", "\r", "\0", "hash=", "quality=", "ffd7918181c9c3c3", "0x", "\u2028", "é",
])


@st.composite
def hash_lists(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        parts = draw(st.lists(_LIST_PIECES, max_size=10))
        if draw(st.booleans()):
            parts.append(draw(st.sampled_from(["a" * 64, "1" * 16, "f" * 63])))
        lines.append("".join(parts))
    head = draw(st.sampled_from(["", "hash,algorithm,label\n", "hash\talgorithm\n", "# list\n"]))
    return head + "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))


@_fuzz
@given(text=hash_lists(), algorithm=st.sampled_from([None, "phash", "pdq"]), fmt=st.sampled_from(["auto", "csv", "hex", "pdq"]))
def test_fuzz_hashlist_import_accounts_for_every_line(text: str, algorithm: str | None, fmt: str) -> None:
    try:
        rows = list(read_hashlist(io.StringIO(text), algorithm=algorithm, format=fmt))
    except HashListError:
        return
    assert all(isinstance(r, (ParsedRow, RejectedRow, SkippedLine)) for r in rows)
    physical = len(io.StringIO(text).readlines())
    assert [r.line for r in rows] == list(range(1, physical + 1))
    secret = "ffd7918181c9c3c3"
    for r in rows:
        if isinstance(r, RejectedRow):
            assert secret not in r.reason and "a" * 16 not in r.reason and "1" * 16 not in r.reason


def _saved_index(kind: type, origin: _format.Origin | None) -> bytes:
    rng = np.random.default_rng(1)
    words = rng.integers(0, 2**63, size=(40, 4), dtype=np.uint64)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.hmidx"
        kind.build(HashBatch(words, algorithm="pdq", bits=256)).save(path, origin=origin)
        return path.read_bytes()


_ORIGIN = _format.Origin("00112233445566ff", 3, "abcdefabcdef0123")
_INDEX_FILES = [_saved_index(Flat, None), _saved_index(MultiIndexHash, _ORIGIN)]


@_fuzz
@given(
    which=st.integers(0, 1),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_fuzz_index_files_load_only_when_untouched(which: int, edits: list[tuple[int, int]], cut: int | None) -> None:
    original = _INDEX_FILES[which]
    data = bytearray(original)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.hmidx"
        path.write_bytes(bytes(data))
        origin = _ORIGIN if which else None
        try:
            index = load_index(path, origin=origin)
        except CorruptIndexError:
            assert bytes(data) != original
            return
    assert bytes(data) == original and len(index) == 40


@_fuzz
@given(
    kind=st.sampled_from([b"flat", b"mih", b"bktree", b"x"]),
    bits=st.one_of(st.sampled_from([0, 64, 256, 4096, 4160, 131072]), st.integers(0, 2**32 - 1)),
    n=st.integers(0, 3),
    parameter=st.integers(0, 2**32 - 1),
    flags=st.sampled_from([0, 1, 2, 3, 4]),
    version=st.sampled_from([1, 2, 3, 4]),
)
def test_fuzz_forged_headers_with_valid_checksums_are_bounded(
    kind: bytes, bits: int, n: int, parameter: int, flags: int, version: int
) -> None:
    nw = bits // 64
    size = 128 + (48 if flags & 1 else 0)
    header = _format._HEADER.pack(_format.MAGIC, version, size, flags, kind, b"pdq", bits, nw, n, parameter, b"", b"x")
    if flags & 1:
        header += struct.pack("<16sQ16s8s", b"s", 1, b"t", b"")
    tables = 0  # version 2-4 multi-index files: zeroed tables of the size the header implies
    if version >= 2 and kind == b"mih" and 0 < bits <= _format.MAX_BITS and _format.mih_substrings_ok(bits, parameter):
        tables = _format._spec_bytes(_format._table_specs("mih", bits, parameter, n, version, bool(flags & 2)))
    body = header + bytes(min(n * (nw * 8 + 8) + tables, 1 << 22))
    import hashlib

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.hmidx"
        path.write_bytes(body + hashlib.sha256(body).digest())
        try:
            index = load_index(path)
        except CorruptIndexError:
            return
    assert index.bits == bits <= _format.MAX_BITS and len(index) == n
