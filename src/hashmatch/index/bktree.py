"""``BKTree``: a Burkhard-Keller tree in flat arrays, searched by numba kernels."""

from __future__ import annotations

from .._jit import kernels
from ._base import Index

_kernels = kernels("hashmatch.index._kernels")  # numba loads on first use, not at import

__all__ = ["BKTree"]


class BKTree(Index):
    """A BK-tree with nodes in breadth-first order and rows stored in node order.

    A node's children are contiguous and sorted by their distance to it, so the
    children a range query must visit (edge in ``[d - r, d + r]``) are one slice.
    Built in bulk (each subtree split by distance to its root row), so ``add``
    rebuilds; removed rows stay in the tree as routing nodes until compaction.
    Beats a flat scan for small radii on small and medium sets; see the chooser.
    """

    kind = "bktree"

    def _rebuild(self) -> None:
        words = self._words if self._words.flags.writeable else self._words.copy()
        order, first_child, n_children, edge = _kernels.bktree_build(words)
        self._words = words[order]
        self._ids = self._ids[order]
        self._first_child = first_child
        self._n_children = n_children
        self._edge = edge

    def _search(self, queries, r, bounds, parallel, out, cap, counts) -> None:  # type: ignore[no-untyped-def]
        kernel = _kernels.bktree_query_parallel if parallel else _kernels.bktree_query
        kernel(
            self._words, self._alive, self._first_child, self._n_children, self._edge,
            queries, bounds, r, out[0], out[1], out[2], cap, counts,
        )

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays: rows, ids, removal marks and the tree links."""
        return int(
            self._words.nbytes + self._ids.nbytes + self._alive.nbytes
            + self._first_child.nbytes + self._n_children.nbytes + self._edge.nbytes
        )
