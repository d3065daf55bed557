"""Where PDQ's time goes on one 1024x768 image: each kernel stage, best of 20 (ms).

    PYTHONPATH=src python benchmarks/pdq_stages.py
"""

from __future__ import annotations

import time

import numpy as np
import pdqhash

from hashmatch.hashers import _pdq_kernels as K
from hashmatch.hashers.pdq import _dct_matrix, pdq_from_array
from hashmatch.testing.synthetic import generate_image


def main() -> None:
    rgb = np.ascontiguousarray(np.asarray(generate_image(3, long_side=1024).convert("RGB").resize((1024, 768))))
    h, w, _ = rgb.shape
    a = np.empty(h * w, np.float32)
    b = np.empty(h * w, np.float32)
    gray = K.luma(rgb, a).copy()
    spare = np.empty(h * w, np.float32)
    stages = {
        "luma": lambda: K.luma(rgb, a),
        "transpose (full image)": lambda: K.transpose(gray, spare.reshape(w, h)),
        "one box pass (full image)": lambda: K._box_axis0(gray, spare.reshape(h, w), K.jarosz_window(h, 64), np.arange(h)),
        "jarosz_64 (all filtering)": lambda: K.jarosz_64(gray, a, b),
        "pdq_coeffs (luma + filter + DCT + quality)": lambda: K.pdq_coeffs(rgb, _dct_matrix(), a, b),
        "pdq_from_array (hashmatch)": lambda: pdq_from_array(rgb),
        "pdqhash.compute (peer)": lambda: pdqhash.compute(rgb),
    }
    for name, fn in stages.items():
        fn()
        best = min(_timed(fn) for _ in range(20))
        print(f"{name:44s} {best * 1e3:8.3f} ms")


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
