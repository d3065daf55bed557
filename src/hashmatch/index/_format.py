"""The index file format: the one place that reads and writes index files.

Version 1, all integers little-endian::

    offset  size  field
         0     8  magic  b"\\x89HMIDX\\r\\n"  (the \\r\\n catches text-mode mangling)
         8     2  format version (1)
        10     2  header size (128)
        12     4  flags (0)
        16    16  index kind, ASCII, NUL-padded: "flat", "bktree" or "mih"
        32    48  hash algorithm, UTF-8, NUL-padded (e.g. "phash", "pdq")
        80     4  bit length (a positive multiple of 64)
        84     4  words per hash (bit length / 64)
        88     8  row count n
        96     4  kind parameter (mih: number of substrings; otherwise 0)
       100    12  reserved, zero
       112    16  hashmatch version that wrote the file, ASCII, NUL-padded
       128  8·n·w  hash words, uint64, row-major (n rows of w words, word 0 most significant)
         …   8·n  ids, int64, in the same row order
         …    32  SHA-256 of every byte before it

Rows and ids are read through a private copy-on-write memory map (checksummed before
use); the mapping outlives a later ``save`` to the same path (which renames a new file
into place), but a file truncated in place by another program while loaded would fault.

The file holds the rows only (live rows: removed ones are compacted away before
writing), never the search structure: every kind rebuilds its tables from the rows
on load in linear time, so nothing structural in a file is trusted and a file
cannot steer a kernel out of bounds. Nothing is pickled. Files are written to a
temporary name and renamed, so a crash never leaves a half-written index.

Loading checks the size first (a truncated file fails before any big read), then
every header field, then the checksum, and raises
:class:`~hashmatch.errors.CorruptIndexError` saying what it expected.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import CorruptIndexError, IndexArgumentError

MAGIC = b"\x89HMIDX\r\n"
FORMAT_VERSION = 1
HEADER_SIZE = 128
CHECKSUM_SIZE = 32
KINDS = ("flat", "bktree", "mih")
# magic, version, header size, flags, kind, algorithm, bits, words, n, parameter, reserved, library
_HEADER = struct.Struct("<8sHHI16s48sIIQI12s16s")
_CHUNK = 64 << 20  # hash and copy in 64 MiB pieces to bound extra memory


@dataclass(frozen=True, slots=True)
class IndexFile:
    kind: str
    algorithm: str
    bits: int
    parameter: int
    words: npt.NDArray[np.uint64]
    ids: npt.NDArray[np.int64]


def _library_version() -> str:
    from .._version import __version__

    return __version__


def write_index(
    path: str | os.PathLike[str], *, kind: str, algorithm: str, bits: int, parameter: int,
    words: npt.NDArray[np.uint64], ids: npt.NDArray[np.int64],
) -> None:
    n, nw = words.shape
    if len(algorithm.encode("utf-8")) > 48:
        raise IndexArgumentError(f"algorithm name {algorithm!r} is longer than 48 bytes")
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, HEADER_SIZE, 0, kind.encode("ascii"), algorithm.encode("utf-8"),
        bits, nw, n, parameter, b"", _library_version().encode("ascii", "replace")[:16],
    )
    digest = hashlib.sha256(header)
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".hmidx-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            for arr in (words.astype("<u8", copy=False), ids.astype("<i8", copy=False)):
                raw = memoryview(np.ascontiguousarray(arr)).cast("B")
                for s in range(0, len(raw), _CHUNK):
                    piece = raw[s : s + _CHUNK]
                    digest.update(piece)
                    f.write(piece)
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _text(raw: bytes, field: str, encoding: str) -> str:
    body = raw.rstrip(b"\x00")
    if b"\x00" in body:
        raise CorruptIndexError(f"index file: {field} field has bytes after its padding")
    try:
        return body.decode(encoding)
    except UnicodeDecodeError:
        raise CorruptIndexError(f"index file: {field} field is not {encoding}") from None


def read_index(path: str | os.PathLike[str], *, expected_kind: str | None = None) -> IndexFile:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CorruptIndexError(f"cannot open index file {os.fspath(path)!r}: {exc.strerror}") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            raw_header = f.read(HEADER_SIZE)
        except OSError as exc:
            raise CorruptIndexError(f"cannot read index file: {exc.strerror}") from None
        if not MAGIC.startswith(raw_header[:8]):
            raise CorruptIndexError("not a hashmatch index file (bad magic)")
        if len(raw_header) < HEADER_SIZE:
            raise CorruptIndexError(f"index file truncated: {size} bytes, the header alone is {HEADER_SIZE}")
        (magic, version, header_size, flags, kind_raw, algo_raw, bits, nw, n, parameter, reserved,
         lib_raw) = _HEADER.unpack(raw_header)
        if version != FORMAT_VERSION:
            newer = " (written by a newer hashmatch)" if version > FORMAT_VERSION else ""
            raise CorruptIndexError(
                f"index file format version {version}{newer}; this hashmatch reads version {FORMAT_VERSION}"
            )
        if header_size != HEADER_SIZE:
            raise CorruptIndexError(f"index file header size {header_size}, expected {HEADER_SIZE}")
        if flags != 0 or reserved != bytes(12):
            raise CorruptIndexError("index file: unknown flags or non-zero reserved bytes")
        kind = _text(kind_raw, "kind", "ascii")
        if kind not in KINDS:
            raise CorruptIndexError(f"index file: unknown index kind {kind!r}, expected one of {KINDS}")
        if expected_kind is not None and kind != expected_kind:
            raise CorruptIndexError(f"index file holds a {kind!r} index, expected {expected_kind!r}")
        algorithm = _text(algo_raw, "algorithm", "utf-8")
        if not algorithm:
            raise CorruptIndexError("index file: empty algorithm name")
        _text(lib_raw, "library version", "ascii")
        if bits == 0 or bits % 64 or nw != bits // 64:
            raise CorruptIndexError(f"index file: bit length {bits} with {nw} words per hash")
        expected = HEADER_SIZE + n * (nw * 8 + 8) + CHECKSUM_SIZE
        if size != expected:
            what = "truncated" if size < expected else "has trailing bytes"
            raise CorruptIndexError(f"index file {what}: {size} bytes, expected {expected} for {n} rows")
        digest = hashlib.sha256(raw_header)
        try:
            if n == 0:
                words = np.zeros((0, nw), dtype=np.uint64)
                ids = np.zeros(0, dtype=np.int64)
            else:
                # A private copy-on-write mapping: the rows come straight from the page
                # cache instead of being copied into fresh memory (on VMs, first-touch
                # faults of fresh memory cost more than reading the file).
                words = np.memmap(f, dtype="<u8", mode="c", offset=HEADER_SIZE, shape=(n, nw))
                ids = np.memmap(f, dtype="<i8", mode="c", offset=HEADER_SIZE + n * nw * 8, shape=(n,))
            for arr in (words, ids):
                raw = memoryview(arr).cast("B")
                for s in range(0, len(raw), _CHUNK):
                    digest.update(raw[s : s + _CHUNK])
            f.seek(HEADER_SIZE + n * (nw * 8 + 8))
            stored = f.read(CHECKSUM_SIZE)
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"cannot read index file: {exc}") from None
    if stored != digest.digest():
        raise CorruptIndexError("index file checksum mismatch: the file is corrupt")
    if not np.little_endian:  # pragma: no cover - the file is little-endian
        words = words.astype(np.uint64)
        ids = ids.astype(np.int64)
    return IndexFile(kind, algorithm, bits, parameter, np.asarray(words), np.asarray(ids))


def peek_kind(path: str | os.PathLike[str]) -> str:
    """The kind named in a file's header (fully checked later by :func:`read_index`)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_SIZE)
    except OSError as exc:
        raise CorruptIndexError(f"cannot open index file {os.fspath(path)!r}: {exc.strerror}") from None
    if len(raw) < HEADER_SIZE or raw[:8] != MAGIC:
        raise CorruptIndexError("not a hashmatch index file (bad magic or truncated header)")
    kind = _text(_HEADER.unpack(raw)[4], "kind", "ascii")
    if kind not in KINDS:
        raise CorruptIndexError(f"index file: unknown index kind {kind!r}, expected one of {KINDS}")
    return kind
