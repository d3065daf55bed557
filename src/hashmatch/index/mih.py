"""``MultiIndexHash``: exact multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012).

Each hash is cut into ``m`` contiguous substrings, and each substring position gets a
table: a counting-sorted array of row numbers with CSR offsets, one bucket per
substring value. If two hashes are within ``r`` and substring ``t`` is probed within
radius ``r_t``, then by the generalised pigeonhole principle ``sum(r_t + 1) >= r + 1``
guarantees that at least one substring ``t`` differs by at most ``r_t`` bits, so
probing every table's ball and verifying each candidate with a full popcount finds
every match. Radii: ``r + 1 = m * a + b`` gives ``b`` tables radius ``a`` and the
rest ``a - 1`` (radius ``-1`` means the table is not probed at all for small ``r``).

A candidate seen in several tables is reported once: on a match found in table ``t``
the kernel checks whether an earlier table's ball also holds it (cheap, and only paid
on true matches). Rows are kept in table 0's bucket order, so table 0's candidates
are contiguous in memory.

The tables of 64-bit hashes hold, instead of row numbers, each row's 32-bit partial
word (the row without the table's substring, top 32 bits; ``_kernels64``): a probe
bounds its candidates' distances from one contiguous run of them; table 0's are in
row order, and the few candidates of other tables that pass are found in table 0
through substring 0, which their partial words begin with. That is 4 bytes per row
and table (37 B per reference at m = 5, against 65 B with row numbers and row
copies), and faster at 1M rows (notes/issue-14-index64.md). Longer hashes keep a
16-byte filter record per entry of tables 1 .. m-1 (``_wide_kernels``): a probe
checks its bucket from one contiguous run and reads a row only when 96 of its bits
are already within the radius. Records cost 16 bytes per row and table (285 B per
256-bit reference at 1M rows, against 105 B with row numbers), so above
:data:`RECORDS_MAX_ROWS` rows, and with ``filter_records=False``, the tables keep plain
row numbers (slower probes): a 10M PDQ list then stays within a service worker's 2 GB,
and the local stage's 16 descriptors per reference within its 2 KB.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ..errors import CorruptIndexError, IndexArgumentError
from ..hashes import HashBatch
from .._jit import kernels, vector_popcount
from ._base import Index, check_batch, use_parallel
from ._format import MIH_SUBSTRING_BITS, mih_layout, mih_substrings_ok
from .flat import scan, scans_sliced

_kernels = kernels("hashmatch.index._kernels")  # numba loads on first use, not at import
_kernels64 = kernels("hashmatch.index._kernels64")
_wide = kernels("hashmatch.index._wide_kernels")

__all__ = ["RECORDS_MAX_ROWS", "MultiIndexHash", "default_substrings", "probe_radii"]

RECORDS_MAX_ROWS = 4_000_000
"""Wide multi-indexes of more rows keep row numbers, not filter records (memory)."""

_MIN_SUBSTRING_BITS, _MAX_SUBSTRING_BITS = MIH_SUBSTRING_BITS


# Cost model (nanoseconds per query, fitted to bench_index.py on the benchmark machine):
# a probe is a cache miss into a table once the tables outgrow the caches (a few 100k
# rows), a candidate is a popcount on a contiguous run of partial words for 64-bit
# hashes and a random-access row read for longer ones. The flat scan's vectorised popcount makes
# its cost depend on the CPU numba compiles for (decided at run time, never at
# install): about 0.05 ns per word with AVX-512 VPOPCNTDQ, 0.3 ns with AVX2's nibble
# table (benchmarks/bench_quick.py, both measured on the AMD EPYC of notes/issue-14.md).
_PROBE_NS_LARGE = 100.0
_PROBE_NS_SMALL = 20.0
_LARGE_ROWS = 300_000
_CANDIDATE_NS = {True: 2.0, False: 40.0}
# Longer hashes check candidates from the filter records of _wide_kernels (one run of
# 16-byte records per bucket, a row read only for the rare survivors).
_WIDE_CANDIDATE_NS = 2.0
_SCAN_NS_PER_WORD = {True: 0.06, False: 0.3}  # keyed by "has a vector popcount"
# 64-bit rows scanned bit-sliced (Flat on AVX2 and Intel's AVX-512): 0.09-0.11 ns a row
# at 100k rows, 0.12-0.18 at 1M (r = 10-11, round 7 of notes/issue-14-flat.md). The
# 100k figure: with it the model's choice matches every measured case at both sizes.
_SLICED64_SCAN_NS = 0.10
# Past a radius the 64-bit model undercounts: at 1M pHash-shaped rows the multi-index
# costs grow 2.0-2.5x a radius from r = 10 (the model's: 1.3-1.5x) while the scans
# barely move; the model alone picked the multi-index at the policy's r = 14 on AVX2
# (issue 12, round 2), where it is 4.7-23x slower than Flat on every build. So 64-bit
# queries past the cap scan whatever the model says (at r = 12 it would probe from a
# few million rows: modelled 1.07x the scan at 1M, 0.85x at 4M).
# Round 7 of notes/issue-14-flat.md (benchmarks/fastpath_radius.py, the kernel of
# 4db70cf, 1M and 100k rows, pHash-shaped and uniform): where Flat scans 64-bit rows
# bit-sliced (AVX2, AVX-512 without VPOPCNTDQ, Intel's AVX-512) the multi-index still
# wins at r = 11 at 1M rows (0.61-0.94x Flat's time) and loses from r = 12 (1.3-2.1x);
# where Flat scans them in row order with 512-bit VPOPCNTQ (AMD Zen 4/5) it loses from
# r = 11 (1.7-2.0x). Keyed by ``scans_sliced(64)``; was 10 for every build (issue 12, round 2).
MIH64_MAX_RADIUS = {True: 11, False: 10}


def mih64_max_radius() -> int:
    """The largest radius a 64-bit multi-index query probes at, for the CPU numba compiles for."""
    return MIH64_MAX_RADIUS[scans_sliced(64)]


def expected_cost_ns(bits: int, n: int, m: int, r: int, records: bool = True) -> float:
    """Modelled time of one multi-index query at radius ``r`` over ``n`` uniform rows
    (``records``: longer hashes check candidates through filter records)."""
    _, lengths = _layout(bits, m)
    radii = probe_radii(r, m)
    probes = 0
    candidates = 0.0
    for length, rt in zip(lengths.tolist(), radii.tolist()):
        p = sum(math.comb(length, k) for k in range(min(rt, length) + 1)) if rt >= 0 else 0
        probes += p
        candidates += n * p / 2.0**length
    probe_ns = _PROBE_NS_LARGE if n >= _LARGE_ROWS else _PROBE_NS_SMALL
    if bits == 64:
        candidate_ns = _CANDIDATE_NS[True]
    else:
        candidate_ns = _WIDE_CANDIDATE_NS if records else _CANDIDATE_NS[False]
    return probes * probe_ns + candidates * candidate_ns


def scan_cost_ns(bits: int, n: int) -> float:
    """Modelled time of one flat-scan query over ``n`` rows."""
    if bits == 64 and scans_sliced(64):
        return n * _SLICED64_SCAN_NS
    return n * (bits // 64) * _SCAN_NS_PER_WORD[vector_popcount()]


def scan_wins(bits: int, n: int, m: int, r: int) -> bool:
    """Whether scanning ``n`` rows beats probing ``m`` tables at radius ``r`` (exact either
    way): always past the 64-bit cap (:func:`mih64_max_radius`), else by the cost model."""
    if bits == 64 and r > mih64_max_radius():
        return True
    return expected_cost_ns(bits, n, m, r) >= scan_cost_ns(bits, n)


def default_substrings(bits: int, n: int, r: int | None = None, records: bool = True) -> int:
    """The substring count ``m`` with the lowest modelled query cost at radius ``r``.

    Norouzi et al. take substrings of about ``log2(n)`` bits; here a probe (a cache
    miss) costs far more than checking a candidate from a contiguous copy, so for
    64-bit hashes shorter substrings with bigger buckets win (13 bits at 1M rows,
    measured). Substrings stay within 16 bits so each table's offsets fit in L2 and
    cost at most a few bytes per row. ``r`` defaults to an eighth of the bit length for
    64-bit hashes (8) and one less for longer ones (31 for PDQ, upstream's threshold:
    ``r + 1 = 32`` splits into 16 tables of radius 1, measured 1.15x faster than the
    17 tables that r = 32 picks, and 16 B per row smaller).
    """
    radius = (bits // 8 if bits == 64 or not records else bits // 8 - 1) if r is None else r
    lo = max(1, math.ceil(bits / _MAX_SUBSTRING_BITS))
    hi = max(lo, bits // _MIN_SUBSTRING_BITS)
    return min(range(lo, hi + 1), key=lambda m: (expected_cost_ns(bits, max(n, 1), m, radius, records), m))


def probe_radii(r: int, m: int) -> npt.NDArray[np.int64]:
    """Per-table probe radii with ``sum(radius + 1) == r + 1`` (the tight pigeonhole split)."""
    a, b = divmod(r + 1, m)
    radii = np.full(m, a - 1, dtype=np.int64)
    radii[:b] = a
    return radii


def _layout(bits: int, m: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    lengths = np.array(mih_layout(bits, m), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return starts, lengths


def filter_chunks(bits: int, starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The three 32-bit chunks of each table's filter records (see ``_wide_kernels``): the
    ones after the chunk holding the substring's last bit, so they avoid its bits."""
    nchunks = bits // 32
    last = (starts + lengths - 1) // 32
    return np.ascontiguousarray(((last[:, None] + np.arange(1, 4)[None, :]) % nchunks).astype(np.int64))


def _table_at(lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Where each table's offsets start in the one offsets array."""
    return np.concatenate([[0], np.cumsum((1 << lengths) + 1)]).astype(np.int64)


class MultiIndexHash(Index):
    """Exact multi-index hashing; the fastest index at scale for small radii."""

    kind: ClassVar[str] = "mih"

    def __init__(
        self, *, algorithm: str, bits: int, substrings: int | None = None, filter_records: bool | None = None
    ) -> None:
        self._fixed_m = substrings
        self._records_wanted = filter_records  # None: by size (RECORDS_MAX_ROWS)
        self._use_records = bits > 64 and filter_records is not False
        self._records = np.zeros((0, 2), dtype=np.uint64)
        super().__init__(algorithm=algorithm, bits=bits)

    @classmethod
    def build(  # type: ignore[override]
        cls, batch: HashBatch, ids: npt.ArrayLike | None = None, *, substrings: int | None = None,
        filter_records: bool | None = None,
    ) -> MultiIndexHash:
        """Index ``batch``; ``substrings`` overrides the number of tables ``m``;
        ``filter_records`` chooses filter records (True) or row numbers (False) for hashes
        over 64 bits, by default records up to :data:`RECORDS_MAX_ROWS` rows."""
        batch = check_batch(batch, "batch")
        bits = batch.bits
        if substrings is not None and (
            isinstance(substrings, bool)
            or not isinstance(substrings, (int, np.integer))
            or not math.ceil(bits / _MAX_SUBSTRING_BITS) <= substrings <= bits // _MIN_SUBSTRING_BITS
        ):
            raise IndexArgumentError(
                f"substrings must be an integer from {math.ceil(bits / _MAX_SUBSTRING_BITS)} to "
                f"{bits // _MIN_SUBSTRING_BITS} for {bits}-bit hashes, got {substrings!r}"
            )
        index = cls(algorithm=batch.algorithm, bits=bits, substrings=substrings, filter_records=filter_records)
        index._fill(batch, ids)
        return index

    def _rebuild(self) -> None:
        n = self._words.shape[0]
        wanted = self._records_wanted
        self._use_records = self.bits > 64 and (n <= RECORDS_MAX_ROWS if wanted is None else bool(wanted))
        m = int(self._fixed_m or default_substrings(self.bits, n, records=self._use_records))
        self._m = m
        self._starts, self._lengths = _layout(self.bits, m)
        words = self._words if self._words.flags.writeable else self._words.copy()
        # Rows in table 0's order: table 0's buckets become contiguous runs of rows.
        keys = _kernels.substring_keys(words, self._starts[0], self._lengths[0])
        if n > 1 and not bool(np.all(keys[1:] >= keys[:-1])):  # saved files are already in order
            order, _ = _kernels.bucket_order(keys, 1 << int(self._lengths[0]))
            words = np.ascontiguousarray(words[order])
            self._ids = self._ids[order]
        del keys
        self._words = words
        self._table_at = _table_at(self._lengths)
        # Tables are independent: big builds (loads of saved indexes) use every core.
        parallel = use_parallel(n // 1000)
        if self.bits == 64:
            # 64-bit tables hold 32-bit partial words, not row numbers (_kernels64).
            build64 = _kernels64.mih64_tables_parallel if parallel else _kernels64.mih64_tables
            self._offsets, self._entries = build64(self._words, self._starts, self._lengths, self._table_at)
            self._table_words = np.zeros((0, 1), dtype=np.uint64)
            self._set_records(parallel)
            return
        build = _kernels.mih_tables_parallel if parallel else _kernels.mih_tables
        self._offsets, self._entries, self._table_words = build(
            self._words, self._starts, self._lengths, self._table_at, False
        )
        self._set_records(parallel)

    def _set_records(self, parallel: bool) -> None:
        """Longer hashes: the row numbers move into filter records (``_wide_kernels``)."""
        self._chunks = filter_chunks(self.bits, self._starts, self._lengths)
        if not self._use_records:
            self._records = np.zeros((0, 2), dtype=np.uint64)
            return
        build = _wide.wide_records_parallel if parallel else _wide.wide_records
        entries = np.ascontiguousarray(self._entries, dtype=np.uint32)
        self._records = np.empty((entries.shape[0], 2), dtype=np.uint64)
        build(self._words, entries, self._chunks, self._records)
        self._entries = np.zeros(0, dtype=np.uint32)

    def _file_parameter(self) -> int:
        return int(self._m)

    def _file_tables(self) -> tuple[np.ndarray, ...]:
        return (self._offsets, self._entries, self._table_words, self._records)

    def _file_row_numbers(self) -> bool:
        return self.bits > 64 and not self._use_records

    @classmethod
    def _from_file(cls, algorithm, bits, parameter, words, ids, tables=()):  # type: ignore[no-untyped-def,override]
        if not mih_substrings_ok(bits, parameter):
            raise CorruptIndexError(f"index file: {parameter} substrings for {bits}-bit hashes")
        index = cls(algorithm=algorithm, bits=bits, substrings=parameter)
        if not tables:  # a version 1 file: rows only
            index._set_rows(words, ids)
            return index
        # The file's tables (bounds-checked by _format) are used as they are mapped:
        # no build, and the pages stay shared with other processes loading the file.
        index._words, index._ids = words, ids
        index._alive = np.ones(words.shape[0], dtype=np.uint8)
        index._n_dead = 0
        index._m = parameter
        index._starts, index._lengths = _layout(bits, parameter)
        index._table_at = _table_at(index._lengths)
        index._offsets, index._entries, index._table_words, *records = tables
        # A file of a wide index holds row numbers either because it predates the
        # records (versions 2-3: derive them) or because it was written without them.
        index._use_records = bits > 64 and not (records and index._entries.shape[0] > 0)
        if records:
            index._chunks = filter_chunks(bits, index._starts, index._lengths)
            index._records = records[0]
        else:  # a version 2 file: longer hashes derive their records from the entries
            index._set_records(use_parallel(words.shape[0] // 1000))
        return index

    def probe_cost(self, r: int) -> tuple[int, float]:  # for benchmarks and notes
        """(bucket probes, expected candidates for uniform random rows) per query at radius ``r``."""
        n = self._words.shape[0]
        radii = probe_radii(r, self._m)
        probes = 0
        candidates = 0.0
        for length, rt in zip(self._lengths.tolist(), radii.tolist()):
            if rt < 0:
                continue
            p = sum(math.comb(length, k) for k in range(min(rt, length) + 1))
            probes += p
            candidates += n * p / 2.0**length
        return probes, candidates

    def scans_at(self, r: int) -> bool:
        """Whether a query at radius ``r`` is modelled cheaper as a scan of every row.

        Then :meth:`query` scans (still exactly) and :func:`build_index` picks ``Flat``.
        """
        return scan_wins(self.bits, int(self._words.shape[0]), self._m, r)

    def _search(self, queries, r, bounds, parallel, out, cap, counts) -> None:  # type: ignore[no-untyped-def]
        if self.scans_at(r):
            # The balls cover the tables: a straight scan of the same rows is cheaper.
            scan(self._words, None, self._alive, queries, r, bounds, parallel, out, cap, counts)
            return
        if self.bits == 64:
            kernel64 = _kernels64.mih64_query_parallel if parallel else _kernels64.mih64_query
            kernel64(
                self._words, self._alive, self._entries, self._offsets, self._table_at, self._starts, self._lengths,
                probe_radii(r, self._m), queries, bounds, r, out[0], out[1], out[2], cap, counts,
            )
            return
        if self._use_records:
            wide = _wide.wide_query_parallel if parallel else _wide.wide_query
            wide(
                self._words, self._alive, self._records, self._chunks, self._offsets, self._table_at,
                self._starts, self._lengths, probe_radii(r, self._m), queries, bounds, r,
                out[0], out[1], out[2], cap, counts,
            )
            return
        kernel = _kernels.mih_query_parallel if parallel else _kernels.mih_query
        kernel(
            self._words, self._alive, self._entries, self._table_words, self._offsets, self._table_at,
            self._starts,
            self._lengths, probe_radii(r, self._m), queries, bounds, r,
            out[0], out[1], out[2], cap, counts,
        )

    @property
    def substrings(self) -> int:
        return int(self._m)

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays: rows, ids, removal marks and the substring tables."""
        return int(
            self._words.nbytes + self._ids.nbytes + self._alive.nbytes
            + self._entries.nbytes + self._table_words.nbytes + self._offsets.nbytes + self._records.nbytes
        )
