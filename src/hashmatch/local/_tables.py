"""``DescriptorIndex``: the local stage's exact range index over retrieval descriptors.

A :class:`~hashmatch.index.Flat` (its rows, ids and file form: snapshots stay in the
project's one index format, kind ``"flat"``) with multi-index tables of its own,
shaped for many 256-bit ORB rows at radius ~16 within the stage's 2 KB per reference:

* :data:`TABLES` substrings of ~28 bits (not 16): at radius 16 the pigeonhole split
  gives eight tables radius 1 and one radius 0, and a uniform row falls in a probed
  substring ball with probability ~1e-6 instead of ~5e-4, so a query meets ~1
  candidate row at 1.6M uniform rows instead of ~780, each a cache miss (~10 for real
  ORB lookups, whose bits are biased);
* two-level tables (``_kernels``): a directory over the substring's top ``dbits``
  bits, and per entry its remaining low bits (uint16) beside its row number (uint32),
  so a bucket is checked against the whole substring from one contiguous run.
  6 bytes per row and table: 864 B per reference, plus the directory
  (``4 × 2^dbits`` bytes per table, ``dbits`` ~ log2(rows) - 3, i.e. ~4 bytes per
  row and table at most).

Measured (``benchmarks/bench_local_retrieval.py``: one upload's ~500 lookups at radius
16, one thread; notes/issue-12-latency.md): 0.49× / 0.36× / 0.20× the time of
``MultiIndexHash`` with row-number tables at 10k / 100k / 1M references, at 1 579 /
1 614 / 1 595 bytes per reference (against 2 035 / 1 658 / 1 620). Queries at radii
where the tables would visit too many buckets scan every row instead (still exact).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import numpy.typing as npt

from .._jit import kernels
from ..hashes import HashBatch
from ..index import Flat, Index
from ..index._base import use_parallel
from ..index._format import mih_layout
from ..index.flat import scan
from ..index.mih import probe_radii

__all__ = ["TABLES", "DescriptorIndex", "directory_bits", "warmup"]

_kernels = kernels("hashmatch.local._kernels")
_resize_kernels = kernels("hashmatch.local._resize_kernels")

TABLES = 9  # substrings of 28-29 bits for 256-bit rows (8 and 10 measured slower at 100k, notes)
_MAX_DIRECTORY_BITS = 22  # 16 MB of offsets per table at most
_MAX_VISITS = 20_000  # bucket visits per query above which a scan of every row is cheaper


def directory_bits(rows: int, lengths: npt.NDArray[np.int64]) -> int:
    """Directory bits for ``rows`` rows: about 8 rows per bucket (one more bit measured
    ~15 % faster at 160k and 1.6M rows, at +60-95 bytes per reference), within what the
    substring lengths allow (the low bits fit 16)."""
    want = round(math.log2(max(rows, 1))) - 3
    low, high = int(lengths.max()) - 16, min(int(lengths.min()), _MAX_DIRECTORY_BITS)
    return int(min(max(want, low, 1), high))


class DescriptorIndex(Flat):
    """Exact range queries over 256-bit descriptors through two-level multi-index tables.

    Saved and loaded as a :class:`Flat` (the tables are derived from the rows, as a
    flat index derives its word-major copy); :meth:`from_index` rebuilds the tables
    over an index loaded from a file.
    """

    def _rebuild(self) -> None:
        if not self._words.flags.writeable:  # one kernel signature for every source of rows
            self._words = self._words.copy()
        self._blocks = None  # the scan fallback reads rows in place: no word-major copy
        self._planes = None
        m = TABLES if self.bits == 256 else max(1, math.ceil(self.bits / 28))
        lengths = np.array(mih_layout(self.bits, m), dtype=np.int64)
        self._lengths = lengths
        self._starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self._dbits = directory_bits(self._words.shape[0], lengths)
        self._dlengths = np.full(m, self._dbits, dtype=np.int64)
        # Tables are independent: big builds (loads of snapshots) use every core.
        build = _kernels.tables_build_parallel if use_parallel(self._words.shape[0] // 1000) else _kernels.tables_build
        self._offsets, self._low, self._rows = build(self._words, self._starts, lengths, self._dbits)

    @classmethod
    def from_index(cls, index: Index) -> DescriptorIndex:
        """The same live rows and ids, with tables (e.g. over a loaded snapshot's rows)."""
        if isinstance(index, cls):
            return index
        out = cls(algorithm=index.algorithm, bits=index.bits)
        if index._n_dead:
            batch, ids = index.entries()
            out._set_rows(np.ascontiguousarray(batch.words), ids)
        else:  # a fresh load: its mapped rows, not a copy
            out._set_rows(index._words, index._ids)
        return out

    def visits(self, r: int) -> int:
        """Buckets one query at radius ``r`` visits (for notes and the scan fallback)."""
        return int(_kernels.probe_count(self._dlengths, probe_radii(r, self._lengths.shape[0])))

    def _search(self, queries, r, bounds, parallel, out, cap, counts) -> None:  # type: ignore[no-untyped-def]
        if self.visits(r) > _MAX_VISITS:
            scan(self._words, None, self._alive, queries, r, bounds, parallel, out, cap, counts)
            return
        radii = probe_radii(r, self._lengths.shape[0])
        # One thread: the stage runs an upload per thread (chunks in turn when Index.query
        # split them for threads).
        for c in range(bounds.shape[0] - 1):
            counts[c] = _kernels.tables_query(
                self._words, self._alive, self._offsets, self._low, self._rows, self._starts, self._lengths,
                self._dlengths, radii, queries, bounds[c], bounds[c + 1], r, out[0], out[1], out[2], c * cap, cap,
            )

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays: rows, ids, removal marks and the tables."""
        return int(super().nbytes + self._offsets.nbytes + self._low.nbytes + self._rows.nbytes)


def warmup() -> None:
    """Compile (or load from the disk cache) the local stage's kernels: the tables' two
    builds and queries that probe and that scan, from the main thread and another one
    (``hashmatch.index.warmup`` does not cover the local stage's retrieval), and the
    resize and descriptor-matching kernels of its views and verification (round 6)."""
    words = np.random.default_rng(0).integers(0, 2**63, size=(2048, 4), dtype=np.uint64)
    _kernels.two_nearest(words[:8], np.ascontiguousarray(words[:8].T))
    grey = np.zeros((8, 8), np.uint8)
    for kind in (2, 3):  # bilinear, bicubic
        bounds, weights = _resize_kernels.coefficients(8, 0.0, 8.0, 5, kind)
        _resize_kernels.convolve_rows(grey, bounds, weights, 0)
    index = DescriptorIndex.build(HashBatch(words, algorithm="orb", bits=256))
    _kernels.tables_build_parallel(index._words, index._starts, index._lengths, index._dbits)  # big loads run it
    queries = HashBatch(words[:64], algorithm="orb", bits=256)

    def run() -> None:
        for r in (0, 16, 256):
            index.query(queries, r)

    run()
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
