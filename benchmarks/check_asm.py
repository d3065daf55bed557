"""Which popcount the index scan kernels compile to on this CPU (or on NUMBA_CPU_NAME's).

Prints, per kernel, how often the vector popcount instructions appear in the generated
assembly: ``vpopcntq`` (AVX-512 VPOPCNTDQ), ``vpshufb`` (AVX2 nibble-table popcount),
scalar ``popcnt``, and whether it uses 512-bit (zmm) or 256-bit (ymm) registers.
Compiles in a throw-away numba cache, because numba cannot inspect cached code.
    python benchmarks/check_asm.py
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=<see bench_quick.HASWELL_FEATURES> python benchmarks/check_asm.py
    (likewise icelake-server / skylake-avx512 with bench_quick.BUILDS' feature lists)
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp()  # a fresh compile, so the asm can be inspected

import numpy as np  # noqa: E402

from hashmatch.index import _kernels as K  # noqa: E402
from hashmatch.index import _kernels64 as K64  # noqa: E402
from hashmatch.index import _sliced_kernels as S  # noqa: E402

INSTR = ("vpopcntq", "vpshufb", "popcnt", "vpternlogq", "vpand", "zmm", "ymm", "(%rsp)")


def main() -> int:
    cpu = os.environ.get("NUMBA_CPU_NAME", "host")
    for nw in (1, 4, 3):
        words = np.zeros((16, nw), np.uint64)
        alive = np.ones(16, np.uint8)
        bounds = np.array([0, 2], np.int64)
        out = (np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64, np.int32))
        counts = np.zeros(1, np.int64)
        K.flat_query(words, alive, words[:2], bounds, 3, *out, 32, counts)
        K.flat_query_blocked(K.flat_blocks(words), words, alive, words[:2], bounds, 3, *out, 32, counts)
    words = np.zeros((16, 1), np.uint64)
    S.sliced_chunk(S.sliced_planes(words), words, alive, words[:2], 0, 2, 3, 2, 2, *out, 0, 32)
    starts, lengths = np.array([0, 13, 26, 39, 52]), np.array([13, 13, 13, 13, 12])
    table_at = np.concatenate([[0], np.cumsum((1 << lengths) + 1)]).astype(np.int64)
    offsets, parts = K64.mih64_tables(words, starts, lengths, table_at)
    K64.mih64_chunk(words, alive, parts, offsets, table_at, starts, lengths, np.array([1, 1, 1, 1, 0]), words[:2], 0, 2,
                    8, *out, 0, 32)
    kernels = {"flat_chunk_1 (64-bit)": K.flat_chunk_1, "flat_chunk_4 (256-bit, row order)": K.flat_chunk_4,
               "flat_chunk_n (other)": K.flat_chunk_n, "blocked_chunk_4 (256-bit, word-major)": K.blocked_chunk_4,
               "blocked_chunk_n (other, word-major)": K.blocked_chunk_n,
               "sliced_chunk (bit-sliced, any word count)": S.sliced_chunk,
               "mih64_chunk (64-bit multi-index probes)": K64.mih64_chunk}
    for name, fn in kernels.items():
        asm = "\n".join(fn.inspect_asm().values())
        counts_txt = ", ".join(f"{i} {asm.count(i)}" for i in INSTR)
        print(f"[{cpu}] {name}: {counts_txt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
