"""``Flat``: a blocked brute-force popcount scan; the oracle, and the right index for small sets."""

from __future__ import annotations




import numpy as np
import numpy.typing as npt

from .._jit import kernels, vector_popcount, wide_vectors
from ._base import Index

_kernels = kernels("hashmatch.index._kernels")  # numba loads on first use, not at import
_sliced = kernels("hashmatch.index._sliced_kernels")

__all__ = ["Flat", "scan", "scans_sliced"]


def scans_sliced(bits: int) -> bool:
    """Whether :class:`Flat` scans ``bits``-bit rows bit-sliced on the CPU numba compiles for
    (see ``Flat._rebuild``); the multi-index's 64-bit radius cap depends on it too."""
    return not vector_popcount() or (bits == 64 and not wide_vectors())


def scan(
    words: npt.NDArray[np.uint64], blocks: npt.NDArray[np.uint64] | None, alive: npt.NDArray[np.uint8],
    queries: npt.NDArray[np.uint64], r: int, bounds: npt.NDArray[np.int64], parallel: bool,
    out: tuple[np.ndarray, np.ndarray, np.ndarray], cap: int, counts: npt.NDArray[np.int64],
) -> None:
    """Flat range query of ``queries`` over every row (``blocks``: the word-major copy, or None).

    Serial queries call the one chunk kernel for their word count and layout straight
    from here, so a first call compiles only that kernel (one numba entry point that
    dispatched on the word count compiled all five, 2 s more on a first ``match``).
    """
    if parallel:
        if blocks is None:
            _kernels.flat_query_parallel(words, alive, queries, bounds, r, out[0], out[1], out[2], cap, counts)
        else:
            _kernels.flat_query_blocked_parallel(
                blocks, words, alive, queries, bounds, r, out[0], out[1], out[2], cap, counts
            )
        return
    nw = words.shape[1]
    for c in range(bounds.shape[0] - 1):
        q0, q1 = int(bounds[c]), int(bounds[c + 1])
        if blocks is not None:
            kernel = _kernels.blocked_chunk_4 if nw == 4 else _kernels.blocked_chunk_n
            counts[c] = kernel(blocks, words, alive, queries, q0, q1, r, out[0], out[1], out[2], c * cap, cap)
        else:
            kernel = {1: _kernels.flat_chunk_1, 4: _kernels.flat_chunk_4}.get(nw, _kernels.flat_chunk_n)
            counts[c] = kernel(words, alive, queries, q0, q1, r, out[0], out[1], out[2], c * cap, cap)


class Flat(Index):
    """Compares every query with every row, in cache-sized blocks of rows.

    No build cost and no memory beyond the rows and ids; exact for any distance.
    """

    kind = "flat"

    def _rebuild(self) -> None:
        if not self._words.flags.writeable:  # one kernel signature for every source of rows
            self._words = self._words.copy()
        # Chosen from the CPU numba compiles for, at run time (A/B figures in
        # notes/issue-14-flat.md). Without a vector popcount (AVX2; AVX-512 without
        # VPOPCNTDQ) rows are scanned bit-sliced, from a copy of pair planes (see
        # _sliced_kernels): 2.2x to 3.5x the row-order scan. With VPOPCNTDQ, longer rows
        # are counted one by one from a word-major copy (unit-stride loads that
        # vectorise), and so are 64-bit rows in row order where LLVM uses 512-bit
        # registers (AMD Zen 4/5); Intel's AVX-512, which it vectorises in 256-bit
        # registers, scans 64-bit rows 1.5x faster bit-sliced. The row-order scan also
        # serves the radii where the sliced bound prunes too little (sliced_plan is None).
        sliced = scans_sliced(self.bits)
        self._planes = _sliced.sliced_planes(self._words) if sliced else None
        self._blocks = _kernels.flat_blocks(self._words) if self.bits > 64 and not sliced else None

    def _search(self, queries, r, bounds, parallel, out, cap, counts) -> None:  # type: ignore[no-untyped-def]
        plan = None if self._planes is None else _sliced.sliced_plan(r, self._words.shape[1])
        if plan is not None:
            kernel = _sliced.sliced_query_parallel if parallel else _sliced.sliced_query
            kernel(self._planes, self._words, self._alive, queries, bounds, r, plan[0], plan[1],
                   out[0], out[1], out[2], cap, counts)
            return
        scan(self._words, self._blocks, self._alive, queries, r, bounds, parallel, out, cap, counts)

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays: rows, ids, the removal marks and the word-major or pair-plane copy."""
        blocks = sum(0 if a is None else a.nbytes for a in (self._blocks, self._planes))
        return int(self._words.nbytes + self._ids.nbytes + self._alive.nbytes + blocks)


