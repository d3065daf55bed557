"""``Flat``: a blocked brute-force popcount scan; the oracle, and the right index for small sets."""

from __future__ import annotations




from .._jit import kernels
from ._base import Index

_kernels = kernels("hashmatch.index._kernels")  # numba loads on first use, not at import

__all__ = ["Flat"]


class Flat(Index):
    """Compares every query with every row, in cache-sized blocks of rows.

    No build cost and no memory beyond the rows and ids; exact for any distance.
    """

    kind = "flat"

    def _rebuild(self) -> None:
        if not self._words.flags.writeable:  # one kernel signature for every source of rows
            self._words = self._words.copy()
        # Hashes longer than 64 bits are scanned from a word-major copy (unit-stride
        # loads that vectorise); 64-bit rows already are one unit-stride run.
        self._blocks = _kernels.flat_blocks(self._words) if self.bits > 64 else None

    def _search(self, queries, r, bounds, parallel, out, cap, counts) -> None:  # type: ignore[no-untyped-def]
        if self._blocks is None:
            kernel = _kernels.flat_query_parallel if parallel else _kernels.flat_query
            kernel(self._words, self._alive, queries, bounds, r, out[0], out[1], out[2], cap, counts)
            return
        kernel = _kernels.flat_query_blocked_parallel if parallel else _kernels.flat_query_blocked
        kernel(self._blocks, self._words, self._alive, queries, bounds, r, out[0], out[1], out[2], cap, counts)

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays: rows, ids, the removal marks and the word-major copy."""
        blocks = 0 if self._blocks is None else self._blocks.nbytes
        return int(self._words.nbytes + self._ids.nbytes + self._alive.nbytes + blocks)


