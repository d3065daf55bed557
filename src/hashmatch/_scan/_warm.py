"""A scan's start-up when numba's disk cache is empty: compile once, on two cores, before workers start.

Workers are forked from the scanning process once it has loaded the hashing kernels
(or, from a forkserver, load them from the disk cache), so no two processes compile
the same kernel. With an empty cache the parent used to compile everything one kernel
at a time (numba compiles one function at a time per process): the hashers, then, on
the first result, the matching kernels. :func:`prepare` instead splits that work:

* a forked helper process compiles the largest hasher family (PDQ's kernels when the
  spec has PDQ, else the imagehash kernels) into the disk cache;
* meanwhile this process compiles the rest: the other hashers, and the matching
  kernels, warmed with random hashes of the right lengths (and, with a local stage, a
  noise image's local features) through the matcher's own ``match_views`` /
  ``match_with_local``, so exactly the kernels matching will call;
* then it waits for the helper and loads its kernels from the cache.

With a warm cache (the usual case) none of this runs: it costs one small file read
per algorithm to find out. The helper is used only when a core is idle (see
:data:`HELPER_ENV`); otherwise this process compiles everything before workers start.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from .. import _jit
from .._query import QuerySpec, View
from ..hashers import HashResult, get_algorithm
from ..hashes import Hash
from ..local import extract_views
from ._worker import available_cores, die_with_parent, warm_up

__all__ = ["HELPER_ENV", "announce", "estimate", "prepare", "probe_views", "warm_matching"]

_PDQ = "hashmatch.hashers._pdq_kernels"
_IMAGEHASH = "hashmatch.hashers._kernels"
_INDEX = "hashmatch.index._kernels"
# Per algorithm, a kernel that every first call of it compiles, with or without dihedral
# variants: when it is in the cache, the algorithm's kernels were compiled before (by
# `hashmatch warmup` or an earlier run). Other algorithms (plugins) count as cached.
_SENTINELS = {
    "pdq": (_PDQ, "bits_above_median"),
    "phash": (_IMAGEHASH, "dct_basis"),
    "ahash": (_IMAGEHASH, "above_mean"),
    "dhash": (_IMAGEHASH, "right_brighter"),
    "whash": (_IMAGEHASH, "above_median"),
}


def _family(algorithm: str) -> str:
    return _PDQ if algorithm == "pdq" else _IMAGEHASH


def probe_views(spec: QuerySpec, seed: int = 0) -> list[View]:
    """Views shaped as ``spec.hash`` gives them (random hashes of each algorithm's length,
    every dihedral variant, both views): what matching a real upload queries with."""
    rng = np.random.default_rng(seed)
    variants = 8 if spec.dihedral else 1
    view: View = {}
    for name in spec.algorithms:
        algorithm = get_algorithm(name)
        bits = int(algorithm.bits(**{**algorithm.options, **spec.options_for(name)}))
        quality = 100 if name == "pdq" else None  # above any quality gate
        view[name] = tuple(
            HashResult(Hash(int.from_bytes(rng.bytes((bits + 7) // 8), "big") >> (-bits % 8), name, bits), quality)
            for _ in range(variants)
        )
    return [view, view] if spec.trim_borders else [view]


def _noise_jpeg() -> bytes:
    """A noisy image with plenty of keypoints, so the local stage runs its usual path."""
    pixels = np.random.default_rng(0).integers(0, 256, (384, 512, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def warm_matching(matcher: Any, spec: QuerySpec) -> None:
    """Run probe views (and local features) through ``matcher`` as a scan's results are."""
    views = probe_views(spec)
    if spec.local_features:
        matcher.match_with_local(views, extract_views(_noise_jpeg(), limits=spec.limits))
    else:
        matcher.match_views(views)


def _cold(algorithms: tuple[str, ...]) -> set[str]:
    """The hasher families of ``algorithms`` not in numba's cache yet. (The matching
    kernels are not checked: which ones a matcher calls depends on its index; they are
    taken to be cold with the hashers, as on a first run.)"""
    cold = set()
    for name in algorithms:
        sentinel = _SENTINELS.get(name)
        if sentinel is not None and not _jit.cached(*sentinel):
            cold.add(sentinel[0])
    return cold


HELPER_ENV = "HASHMATCH_COMPILE_HELPER"
"""``1``: always compile beside a helper when it is safe; ``0``: never; unset: only when the
machine is close to idle (1-minute load average below the cores minus 1.5)."""


def _can_fork() -> bool:
    if not hasattr(os, "fork") or threading.active_count() > 1 or _jit.cache_mode().startswith("none"):
        return False
    choice = os.environ.get(HELPER_ENV)
    if choice in ("0", "1"):
        return choice == "1"
    # Two compiling processes only finish sooner when a second core is free. On a shared
    # 2-core machine (load average 0.8-6) the helper never measured faster than compiling
    # here alone, and cost 0.5 s more CPU (notes/issue-14-scan.md): so only when the
    # machine is close to idle.
    return os.getloadavg()[0] < available_cores() - 1.5


def _split(algorithms: tuple[str, ...], cold: set[str]) -> tuple[list[str], list[str]]:
    """(the helper's algorithms, this process's): the helper takes the costliest cold hasher family."""
    families = sorted(cold, key=_jit.compile_seconds, reverse=True)
    if not families or not _can_fork():
        return [], list(algorithms)
    helper = [name for name in algorithms if _family(name) == families[0]]
    return helper, [name for name in algorithms if name not in helper]


def estimate(algorithms: tuple[str, ...], local: bool) -> float | None:
    """Expected wall seconds :func:`prepare` will compile for a matcher of ``algorithms``
    (with a local stage when ``local``); None when the hashers' kernels are in the cache."""
    cold = _cold(algorithms)
    if not cold:
        return None
    helper, _ = _split(algorithms, cold)
    helper_families = {_family(name) for name in helper}
    here = sum(_jit.compile_seconds(f) for f in cold - helper_families) + _jit.compile_seconds(_INDEX)
    if local:
        here += _jit.compile_seconds("hashmatch.local._kernels")
    loading = 1.0 if helper else 0.0  # this process then loads what the helper compiled
    return max(sum(_jit.compile_seconds(f) for f in helper_families), here) + loading


def announce(algorithms: tuple[str, ...], local: bool) -> None:
    """Say on stderr (once) that kernels will compile and how long it will take, before
    anything compiles (building a matcher's indexes already may)."""
    seconds = estimate(algorithms, local)
    if seconds is not None:
        _jit.announce_compile(seconds)


def prepare(matcher: Any, spec: QuerySpec | None = None) -> None:
    """When kernels must be compiled for ``matcher`` (hashing with ``spec``, by default
    the matcher's, and matching), compile them now, here and in a forked helper at once,
    so that workers and matching only load them from the disk cache.

    Does nothing when the cache is warm. Without a safe fork (other threads alive, no
    ``fork``) or without a disk cache, everything compiles here, one kernel after another.
    Workers forked afterwards inherit the loaded kernels.
    """
    if spec is None:
        spec = matcher.spec
        if getattr(matcher, "has_local_stage", False):
            spec = dataclasses.replace(spec, local_features=True)
    if not spec.algorithms:  # nothing to hash or match: the caller reports that
        return
    cold = _cold(spec.algorithms)
    if not cold:
        return
    announce(spec.algorithms, spec.local_features)
    helper_algorithms, here_algorithms = _split(spec.algorithms, cold)

    def here() -> None:
        if here_algorithms:
            spec.with_algorithms(here_algorithms).warmup()
        warm_matching(matcher, spec)

    if helper_algorithms:
        _beside(lambda: spec.with_algorithms(helper_algorithms).warmup(), here)
    warm_up(spec)  # all of it: loads the helper's kernels from the cache (or compiles them)
    if not helper_algorithms:
        warm_matching(matcher, spec)


def _beside(helper: Callable[[], None], here: Callable[[], None]) -> None:
    """Run ``helper`` in a forked child while ``here`` runs in this process; wait for both.

    The child only compiles into the disk cache: whatever it fails to do, this process
    does later on its own (a slower start, never a different result).
    """
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's exit handlers
        code = 1
        try:
            die_with_parent(parent)
            helper()
            code = 0
        finally:
            os._exit(code)
    try:
        here()
    except BaseException:  # Ctrl-C or an error here: the helper's work is not wanted now
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.waitpid(pid, 0)
