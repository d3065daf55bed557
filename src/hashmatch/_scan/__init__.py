"""Scan folders: hash every file in worker processes, match in this process, report as it goes.

The package's rooms, top down:

* :mod:`._run`: :func:`scan` and :class:`ScanRun` (listing, resume, matching, the report);
* :mod:`._schedule`: the crash-isolating scheduler, over any backend;
* :mod:`._backends`: in-process, process-pool and Dask backends;
* :mod:`._worker`: what a worker runs (read, hash with the spec, plain replies) and
  process hygiene (allocator pin, death with the parent);
* :mod:`._walk`: the one folder walker (also used by ``hashmatch hash -r`` and calibration);
* :mod:`._results`: :class:`ScanResult`, :class:`ScanSummary`, :data:`ERROR_KINDS`.

One bad file never stops a scan: it becomes a result with ``error_kind`` set.
"""

from __future__ import annotations

from ._results import ERROR_KINDS, ScanResult, ScanSummary
from ._run import DEFAULT_TIMEOUT, MatcherLike, ScanRun, scan
from ._worker import DEFAULT_MMAP_THRESHOLD, paused_gc, pin_malloc

__all__ = [
    "DEFAULT_MMAP_THRESHOLD", "DEFAULT_TIMEOUT", "ERROR_KINDS", "MatcherLike", "ScanResult", "ScanRun", "ScanSummary",
    "paused_gc", "pin_malloc", "scan",
]
