"""The index file format: the one place that reads and writes index files.

Version 4, all integers little-endian::

    offset  size  field
         0     8  magic  b"\\x89HMIDX\\r\\n"  (the \\r\\n catches text-mode mangling)
         8     2  format version (4; versions 1 to 3 still load, see below)
        10     2  header size (128)
        12     4  flags: 1 an origin block follows the header; 2 a multi-index of hashes
                  longer than 64 bits holds row numbers, not filter records (below)
        16    16  index kind, ASCII, NUL-padded: "flat", "bktree" or "mih"
        32    48  hash algorithm, UTF-8, NUL-padded (e.g. "phash", "pdq")
        80     4  bit length (a positive multiple of 64)
        84     4  words per hash (bit length / 64)
        88     8  row count n
        96     4  kind parameter (mih: number of substrings; otherwise 0)
       100    12  reserved, zero
       112    16  hashmatch version that wrote the file, ASCII, NUL-padded
      (flag 1 only: the origin block of a Matcher snapshot, 48 bytes, header size 176)
       128    16  store id, ASCII, NUL-padded
       144     8  store generation the rows were read at
       152    16  snapshot token, ASCII, NUL-padded
       168     8  reserved, zero
       H  8·n·w  hash words, uint64, row-major (n rows of w words, word 0 most significant)
         …   8·n  ids, int64, in the same row order
      (kind "mih" only: the built tables; m substrings of lengths bits // m, the
      first bits % m one bit longer; T = sum(2**length + 1))
         …   4·T  bucket offsets, int32, then zero bytes up to a multiple of 8
         … 4·k·n  the tables, uint32, then zero bytes up to a multiple of 8: for 64-bit
                  hashes every table's 32-bit partial words (k = m,
                  ``_kernels64.mih64_tables``); for longer ones the row numbers of
                  tables 1 .. m-1 with flag 2 (k = m - 1), else empty (k = 0: the
                  records hold the row numbers)
         … 16·(m-1)·n  filter records of tables 1 .. m-1, two uint64 each (hashes longer
                  than 64 bits without flag 2 only; else empty; ``_wide_kernels``: the low 32 bits of
                  the second word are the row number)
         …    32  SHA-256 of every byte before it

Older versions: version 1 holds the rows and ids only. Version 2 holds row numbers
for tables 1 .. m-1 (k = m - 1) for every bit length, a section of per-table row
copies after them (8·(m-1)·n bytes, 64-bit hashes only, else empty) and no records.
Version 3 is version 2 with version 4's 64-bit partial-word tables and no row copies.
All load: their rows are checked and checksummed as usual; a multi-index rebuilds
the 64-bit tables of versions 1-2 from the rows, and derives the records of longer
hashes from the row numbers of versions 2-3.

Every section's size follows from the header (nothing else is a size), so the file size
is checked exactly before anything is mapped. Rows, ids and tables are read through a
private copy-on-write memory map: pages come from the page cache and stay shared between
processes that load the same file (nothing writes to them). All of it is checksummed
before use (one SHA-256 over the whole file: 0.5 s per GB with SHA-NI, measured in
notes/issue-13.md; a checksum per section verified lazily would let unverified tables
reach a kernel). The mapping outlives a later ``save`` to the same path (which renames
a new file into place), but a file truncated in place by another program while loaded
would fault.

The file holds live rows only (removed ones are compacted away before writing). Stored
tables spare the multi-index its build on load; they are trusted for exactness only
through the checksum, but never for memory safety: every table's offsets must run
from 0 to n without decreasing and every row number must be below n (a 64-bit
table's partial words can hold any value: they only ever name a bucket), so a
forged file with a valid checksum cannot steer a kernel out of bounds (it can only give
wrong answers, as forged rows could). Nothing is pickled. Files are written to a
temporary name and renamed, so a crash never leaves a half-written index.

Loading opens regular files only (non-blocking, checked with ``fstat``: a FIFO or
device under an index's name fails at once), checks the size first (a truncated file
fails before any big read), then every header field with bounds before anything is
allocated (at most ``MAX_BITS`` bits per hash, under 2**31 rows, a kind parameter
in range), then the checksum, and raises :class:`~hashmatch.errors.CorruptIndexError`
saying what it expected. A snapshot's origin block binds it to one store and
generation: loading with ``expected_origin`` refuses a valid file of another store
or generation placed under the snapshot's name.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import struct
import tempfile
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import CorruptIndexError, IndexArgumentError
from .._version import __version__

MAGIC = b"\x89HMIDX\r\n"
FORMAT_VERSION = 4
_OLDEST_VERSION = 1  # rows only: the multi-index rebuilds its tables on load
_COPIES_VERSION = 2  # the last version with per-table row copies of 64-bit hashes
_RECORDS_VERSION = 4  # the first version with filter records for longer hashes
HEADER_SIZE = 128
CHECKSUM_SIZE = 32
KINDS = ("flat", "bktree", "mih")
# magic, version, header size, flags, kind, algorithm, bits, words, n, parameter, reserved, library
_HEADER = struct.Struct("<8sHHI16s48sIIQI12s16s")
# store id, generation, token, reserved
_ORIGIN = struct.Struct("<16sQ16s8s")
FLAG_ORIGIN = 1
FLAG_ROW_NUMBERS = 2  # a wide multi-index without filter records
MAX_BITS = 4096
"""Longest hash an index file may hold: bounds every table a load builds (the longest
hash the project makes is 1,024 bits)."""
_MAX_ROWS = 2**31 - 1
_CHUNK = 64 << 20  # hash and copy in 64 MiB pieces to bound extra memory
MIH_SUBSTRING_BITS = (4, 16)
"""Shortest and longest substring of a multi-index: 2**16 int32 offsets per table stay in
L2, and shorter than 4 bits a table's buckets hold too many rows to be worth a probe."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a snapshot's rows came from: a store, its generation, the snapshot's token."""

    store_id: str
    generation: int
    token: str


@dataclass(frozen=True, slots=True)
class IndexFile:
    kind: str
    algorithm: str
    bits: int
    parameter: int
    words: npt.NDArray[np.uint64]
    ids: npt.NDArray[np.int64]
    origin: Origin | None = None
    tables: tuple[np.ndarray, ...] = ()
    """Multi-index tables as the file holds them: (offsets, entries, row copies) from
    version 2, then (records,) from version 4; empty for other kinds and for files
    whose tables are rebuilt on load."""


def mih_layout(bits: int, m: int) -> list[int]:
    """Substring lengths of a multi-index with ``m`` tables (the first ``bits % m`` longer)."""
    base, extra = divmod(bits, m)
    return [base + (1 if t < extra else 0) for t in range(m)]


def mih_substrings_ok(bits: int, m: int) -> bool:
    lo, hi = MIH_SUBSTRING_BITS
    return -(-bits // hi) <= m <= bits // lo


def _table_specs(
    kind: str, bits: int, m: int, n: int, version: int = FORMAT_VERSION, row_numbers: bool = False
) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """(name, file dtype, shape) of each table section; ``m`` must pass ``mih_substrings_ok``."""
    if kind != "mih" or version < 2:
        return []
    nw = bits // 64
    nbuckets = sum((1 << length) + 1 for length in mih_layout(bits, m))
    copies = (m - 1) * n if bits == 64 and version <= _COPIES_VERSION else 0
    if bits == 64:
        tables = m if version > _COPIES_VERSION else m - 1  # partial words: table 0 too
    else:
        tables = m - 1 if version < _RECORDS_VERSION or row_numbers else 0  # else in the records
    specs = [
        ("offsets", np.dtype("<i4"), (nbuckets,)),
        ("entries", np.dtype("<u4"), (tables * n,)),
        ("table words", np.dtype("<u8"), (copies, nw)),
    ]
    if version >= _RECORDS_VERSION:
        specs.append(("records", np.dtype("<u8"), ((m - 1) * n if bits > 64 and not row_numbers else 0, 2)))
    return specs


def _padded(nbytes: int) -> int:
    return -(-nbytes // 8) * 8


def _spec_bytes(specs: list[tuple[str, np.dtype, tuple[int, ...]]]) -> int:
    return sum(_padded(dtype.itemsize * math.prod(shape)) for _, dtype, shape in specs)


def write_index(
    path: str | os.PathLike[str], *, kind: str, algorithm: str, bits: int, parameter: int,
    words: npt.NDArray[np.uint64], ids: npt.NDArray[np.int64], origin: Origin | None = None,
    tables: tuple[np.ndarray, ...] = (), row_numbers: bool = False,
) -> None:
    n, nw = words.shape
    if row_numbers and (kind != "mih" or bits <= 64):
        raise IndexArgumentError("only a multi-index of hashes over 64 bits can hold row numbers instead of records")
    specs = _table_specs(kind, bits, parameter, n, row_numbers=row_numbers)
    if len(tables) != len(specs) or any(
        np.asarray(arr).shape != shape for arr, (_, _, shape) in zip(tables, specs)
    ):
        raise IndexArgumentError(f"a {kind} index file needs tables shaped {[s for _, _, s in specs]}")
    if len(algorithm.encode("utf-8")) > 48:
        raise IndexArgumentError(f"algorithm name {algorithm!r} is longer than 48 bytes")
    if bits > MAX_BITS:
        raise IndexArgumentError(f"index files hold hashes of at most {MAX_BITS} bits, got {bits}")
    flags, size, block = FLAG_ROW_NUMBERS if row_numbers else 0, HEADER_SIZE, b""
    if origin is not None:
        flags, size = flags | FLAG_ORIGIN, HEADER_SIZE + _ORIGIN.size
        block = _ORIGIN.pack(
            origin.store_id.encode("ascii"), origin.generation, origin.token.encode("ascii"), b""
        )
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, size, flags, kind.encode("ascii"), algorithm.encode("utf-8"),
        bits, nw, n, parameter, b"", __version__.encode("ascii", "replace")[:16],
    ) + block
    digest = hashlib.sha256(header)
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".hmidx-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            sections = [words.astype("<u8", copy=False), ids.astype("<i8", copy=False)]
            sections += [np.asarray(arr).astype(dtype, copy=False) for arr, (_, dtype, _) in zip(tables, specs)]
            for arr in sections:
                raw = memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
                for s in range(0, len(raw), _CHUNK):
                    piece = raw[s : s + _CHUNK]
                    digest.update(piece)
                    f.write(piece)
                pad = bytes(_padded(len(raw)) - len(raw))
                digest.update(pad)
                f.write(pad)
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


def _open_regular(path: str | os.PathLike[str]) -> tuple[int, int]:
    """An open descriptor and size of a regular file; anything else is refused unread."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise CorruptIndexError(f"cannot open index file {os.fspath(path)!r}: {reason}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise CorruptIndexError(f"cannot read index file: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CorruptIndexError(f"index file {os.fspath(path)!r} is not a regular file")
    return fd, int(st.st_size)


def read_index(
    path: str | os.PathLike[str], *, expected_kind: str | None = None, expected_origin: Origin | None = None
) -> IndexFile:
    fd, size = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        try:
            raw_header = f.read(HEADER_SIZE)
        except OSError as exc:
            raise CorruptIndexError(f"cannot read index file: {exc.strerror}") from None
        if not MAGIC.startswith(raw_header[:8]):
            raise CorruptIndexError("not a hashmatch index file (bad magic)")
        if len(raw_header) < HEADER_SIZE:
            raise CorruptIndexError(f"index file truncated: {size} bytes, the header alone is {HEADER_SIZE}")
        (magic, version, header_size, flags, kind_raw, algo_raw, bits, nw, n, parameter, reserved,
         lib_raw) = _HEADER.unpack(raw_header)
        if not _OLDEST_VERSION <= version <= FORMAT_VERSION:
            newer = " (written by a newer hashmatch)" if version > FORMAT_VERSION else ""
            raise CorruptIndexError(
                f"index file format version {version}{newer}; this hashmatch reads version {FORMAT_VERSION}"
            )
        if flags & ~(FLAG_ORIGIN | FLAG_ROW_NUMBERS) or reserved != bytes(12):
            raise CorruptIndexError("index file: unknown flags or non-zero reserved bytes")
        expected_header = HEADER_SIZE + (_ORIGIN.size if flags & FLAG_ORIGIN else 0)
        if header_size != expected_header:
            raise CorruptIndexError(
                f"index file header size {header_size}, expected {expected_header} for flags {flags}"
            )
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
        if bits > MAX_BITS:
            raise CorruptIndexError(f"index file: bit length {bits}, over the limit of {MAX_BITS}")
        if n > _MAX_ROWS:
            raise CorruptIndexError(f"index file truncated or corrupt: it claims {n} rows")
        if kind != "mih" and parameter != 0:
            raise CorruptIndexError(f"index file: a {kind} index has no parameter, got {parameter}")
        if kind == "mih" and not 1 <= parameter <= bits:
            raise CorruptIndexError(f"index file: {parameter} substrings for {bits}-bit hashes")
        row_numbers = bool(flags & FLAG_ROW_NUMBERS)
        if row_numbers and (kind != "mih" or bits <= 64 or version < _RECORDS_VERSION):
            raise CorruptIndexError("index file: flag 2 (row numbers) on an index that has no records")
        specs: list[tuple[str, np.dtype, tuple[int, ...]]] = []
        if version >= 2:
            if kind == "mih" and not mih_substrings_ok(bits, parameter):
                raise CorruptIndexError(f"index file: {parameter} substrings for {bits}-bit hashes")
            specs = _table_specs(kind, bits, parameter, n, version, row_numbers)
        rows_end = header_size + n * (nw * 8 + 8)
        expected = rows_end + _spec_bytes(specs) + CHECKSUM_SIZE
        if size != expected:
            what = "truncated" if size < expected else "has trailing bytes"
            raise CorruptIndexError(f"index file {what}: {size} bytes, expected {expected} for {n} rows")
        digest = hashlib.sha256(raw_header)
        origin = None
        try:
            if flags & FLAG_ORIGIN:
                raw_origin = f.read(_ORIGIN.size)
                digest.update(raw_origin)
                store_raw, generation, token_raw, spare = _ORIGIN.unpack(raw_origin)
                if spare != bytes(8):
                    raise CorruptIndexError("index file: non-zero reserved bytes in the origin block")
                origin = Origin(_text(store_raw, "store id", "ascii"), generation, _text(token_raw, "token", "ascii"))
            # Private copy-on-write mappings: the arrays come straight from the page
            # cache instead of being copied into fresh memory (on VMs, first-touch
            # faults of fresh memory cost more than reading the file), and processes
            # loading the same file share those pages.
            layout = [(np.dtype("<u8"), (n, nw)), (np.dtype("<i8"), (n,))]
            layout += [(dtype, shape) for _, dtype, shape in specs]
            arrays = []
            offset = header_size
            for dtype, shape in layout:
                nbytes = dtype.itemsize * math.prod(shape)
                arr = _mapped(f, dtype, offset, shape, nbytes)
                raw = memoryview(arr.reshape(-1).view(np.uint8))
                for s in range(0, len(raw), _CHUNK):
                    digest.update(raw[s : s + _CHUNK])
                offset += nbytes
                f.seek(offset)
                pad = f.read(_padded(nbytes) - nbytes)
                if pad.strip(b"\x00"):
                    raise CorruptIndexError("index file: non-zero padding after a section")
                digest.update(pad)
                offset += len(pad)
                arrays.append(arr)
            stored = f.read(CHECKSUM_SIZE)
        except (OSError, ValueError) as exc:
            raise CorruptIndexError(f"cannot read index file: {exc}") from None
    if stored != digest.digest():
        raise CorruptIndexError("index file checksum mismatch: the file is corrupt")
    words, ids, *tables = arrays
    if tables and bits == 64 and version <= _COPIES_VERSION:
        tables = []  # row numbers and copies: the multi-index rebuilds its 64-bit tables
    if tables:
        _check_tables(bits, parameter, n, tables[0], tables[1], tables[3] if len(tables) > 3 else None)
    if expected_origin is not None and origin != expected_origin:
        got = "no origin" if origin is None else f"store {origin.store_id} generation {origin.generation}"
        raise CorruptIndexError(
            f"index file was not written as this snapshot ({got}; expected store "
            f"{expected_origin.store_id} generation {expected_origin.generation})"
        )
    if not np.little_endian:  # pragma: no cover - the file is little-endian
        words = words.astype(np.uint64)
        ids = ids.astype(np.int64)
        tables = [t.astype(t.dtype.newbyteorder("=")) for t in tables]
    return IndexFile(
        kind, algorithm, bits, parameter, np.asarray(words), np.asarray(ids), origin,
        tuple(np.asarray(t) for t in tables),
    )


def _mapped(f: object, dtype: np.dtype, offset: int, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
    if nbytes == 0:  # mmap refuses empty mappings
        return np.zeros(shape, dtype=dtype)
    return np.memmap(f, dtype=dtype, mode="c", offset=offset, shape=shape)


def _check_tables(bits: int, m: int, n: int, offsets: np.ndarray, entries: np.ndarray,
                  records: np.ndarray | None) -> None:
    """Bounds that keep the kernels inside the arrays, whatever a file says (see above).

    64-bit partial words need none: any 32-bit value's top bits name a bucket of
    table 0, and the kernel only reads that bucket's rows."""
    at = 0
    for length in mih_layout(bits, m):
        table = offsets[at : at + (1 << length) + 1]
        at += table.shape[0]
        if table[0] != 0 or table[-1] != n or bool(np.any(table[1:] < table[:-1])):
            raise CorruptIndexError("index file: a table's bucket offsets do not run from 0 to the row count")
    if bits == 64:
        return
    for s in range(0, entries.shape[0], _CHUNK):
        if int(entries[s : s + _CHUNK].max()) >= n:
            raise CorruptIndexError("index file: a table entry is not a row number")
    if records is not None:
        rows = records[:, 1]
        for s in range(0, rows.shape[0], _CHUNK):
            if int((rows[s : s + _CHUNK] & np.uint64(0xFFFFFFFF)).max()) >= n:
                raise CorruptIndexError("index file: a table record's entry is not a row number")


def _peek_header(path: str | os.PathLike[str]) -> tuple:  # type: ignore[type-arg]
    fd, _ = _open_regular(path)
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(HEADER_SIZE)
    except OSError as exc:
        raise CorruptIndexError(f"cannot read index file {os.fspath(path)!r}: {exc.strerror}") from None
    if len(raw) < HEADER_SIZE or raw[:8] != MAGIC:
        raise CorruptIndexError("not a hashmatch index file (bad magic or truncated header)")
    return _HEADER.unpack(raw)


def peek_version(path: str | os.PathLike[str]) -> int:
    """The format version named in a file's header (fully checked by :func:`read_index`)."""
    return int(_peek_header(path)[1])


def peek_kind(path: str | os.PathLike[str]) -> str:
    """The kind named in a file's header (fully checked later by :func:`read_index`)."""
    kind = _text(_peek_header(path)[4], "kind", "ascii")
    if kind not in KINDS:
        raise CorruptIndexError(f"index file: unknown index kind {kind!r}, expected one of {KINDS}")
    return kind
