"""``hashmatch warmup``: compile every numba kernel now, e.g. while building a container image."""

from __future__ import annotations

import subprocess
import sys
import time

import click
import numpy as np

from .. import _jit
from .._calibrate import distance_histogram
from ..hashers._api import warmup as warm_hashers
from ..hashes import HashBatch
from ..index import warmup as warm_index
from ..local._tables import warmup as warm_local_tables


@click.command("warmup")
def warmup_command() -> int:
    """Compile (or load from numba's disk cache) every kernel, so no later command waits for it.

    Compiled kernels go to numba's cache: next to the installed package, or to
    NUMBA_CACHE_DIR when set. For a read-only install, set NUMBA_CACHE_DIR to a
    directory the serving user can read, run this once there, and keep it set.
    """
    start = time.perf_counter()
    if not _jit.cached("hashmatch.index._kernels", "flat_chunk_1"):  # else most of it is cached
        # The index process is the longer of the two; then this one loads its kernels.
        index = _jit.compile_seconds("hashmatch.index._kernels:all")
        hashers = sum(_jit.compile_seconds(f"hashmatch.{m}") for m in ("hashers._kernels", "hashers._pdq_kernels", "_calibrate_kernels"))
        _jit.announce_compile(max(index, hashers) + 2.0)
    # The index kernels compile in a second process meanwhile (numba compiles one
    # function at a time per process); both write the same disk cache, then this
    # process loads the index kernels from it.
    # (This process has said how long all of it takes: the helper says nothing.)
    helper = subprocess.Popen(
        [sys.executable, "-c", "import hashmatch._jit as j; j._announced = True; import hashmatch.index as i; i.warmup()"]
    )
    warm_hashers()
    helper.wait()
    warm_index()  # loads what the helper process compiled
    warm_local_tables()
    words = np.random.default_rng(0).integers(0, 2**63, size=(8, 4), dtype=np.uint64)
    for bits in (64, 256):
        batch = HashBatch(np.ascontiguousarray(words[:, : bits // 64]), algorithm="warmup", bits=bits)
        distance_histogram(batch)
        distance_histogram(batch, [batch, batch])
    click.echo(f"kernels ready in {time.perf_counter() - start:.1f} s (numba cache: {_jit.cache_mode()})")
    return 0
