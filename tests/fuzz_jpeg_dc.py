"""Mutation fuzzing of the DC-only JPEG decoder with numba's bounds checks on.

numba does not check array bounds by default, so an out-of-range read in
``hashmatch._jpeg_kernels`` would be silent (or a crash) rather than an error. This
script recompiles the kernels with ``NUMBA_BOUNDSCHECK=1`` in a private cache and feeds
the decoder mutated JPEGs (bytes set, bits flipped, spans deleted or inserted, files
cut): any out-of-bounds access raises ``IndexError`` and fails the run. ``make fuzz``
runs it; ``python tests/fuzz_jpeg_dc.py SEED COUNT`` by hand.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageFilter


def _seeds() -> list[bytes]:
    out = []
    for i, (w, h, q, ss) in enumerate([(1024, 768, 90, 0), (640, 480, 75, 2), (333, 517, 50, 1),
                                       (2048, 64, 95, 2), (256, 256, 30, 0)]):
        arr = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(arr).filter(ImageFilter.GaussianBlur(3))
        for extra in ({}, {"restart_marker_blocks": 3}):
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=q, subsampling=ss, **extra)
            out.append(buf.getvalue())
        buf = io.BytesIO()
        img.convert("L").save(buf, "JPEG", quality=q)
        out.append(buf.getvalue())
    return out


def _mutate(rng: random.Random, data: bytearray) -> bytes:
    for _ in range(rng.randint(1, 12)):
        if len(data) < 4:
            data = bytearray(b"\xff\xd8\xff\xd9")
        op, pos = rng.random(), rng.randrange(len(data))
        if op < 0.5:
            data[pos] = rng.randrange(256)
        elif op < 0.7:
            data[pos] ^= 1 << rng.randrange(8)
        elif op < 0.8:
            del data[pos : pos + rng.randint(1, 64)]
        elif op < 0.9:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            data = data[:pos]
    return bytes(data)


def run(seed: int, count: int) -> tuple[int, int]:
    from hashmatch import _jpeg

    rng = random.Random(seed)
    seeds = _seeds()
    decoded = declined = 0
    for _ in range(count):
        data = _mutate(rng, bytearray(rng.choice(seeds)))
        header = _jpeg.read_header(data)
        if header is None or header.width * header.height > 50_000_000:
            declined += 1
            continue
        if _jpeg.decode_dc(data, header) is None:
            declined += 1
        else:
            decoded += 1
    return decoded, declined


def main(argv: list[str]) -> int:
    seed = int(argv[0]) if argv else 1
    count = int(argv[1]) if len(argv) > 1 else 5000
    if os.environ.get("NUMBA_BOUNDSCHECK") != "1":  # the checks only exist in a fresh compile
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": cache}
            return subprocess.run([sys.executable, __file__, str(seed), str(count)], env=env, check=False).returncode
    decoded, declined = run(seed, count)
    print(f"fuzz_jpeg_dc: {count} mutated JPEGs, {decoded} decoded, {declined} declined, no out-of-bounds access")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
