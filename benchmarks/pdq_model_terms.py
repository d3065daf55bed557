"""How many DCT terms per JPEG block PDQ's fast-path model needs: drift from exact PDQ.

    PYTHONPATH=src python benchmarks/pdq_model_terms.py [--count 20]

The coefficients here come from an orthonormal 8x8 DCT of Pillow's full luma decode (what
the DC decoder reads from the file, up to the decoder's rounding). Each block is modelled
by its lowest terms; the exact filter rows (_pdq_fast._exact_row) weigh them, as the fast path
does with DC and the two first harmonics. Drift is the Hamming distance to pdqhash on the
full RGB decode, over synthetic 1024x768 JPEGs and the real photos on this machine
(bench_quick._real_photos) of at least 768 pixels a side with quality >= 50.
"""

from __future__ import annotations

import argparse
import importlib
import io
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TERMS = {
    "DC only": [(0, 0)],
    "DC + 2 first harmonics (the fast path)": [(0, 0), (0, 1), (1, 0)],
    "+ (1,1)": [(0, 0), (0, 1), (1, 0), (1, 1)],
    "+ (0,2), (2,0)": [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (2, 0)],
    "all 64": [(v, u) for v in range(8) for u in range(8)],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args(argv)

    import numpy as np
    import pdqhash
    from PIL import Image

    from bench_quick import _real_photos
    from hashmatch.hashers import _pdq_kernels as K
    from hashmatch.testing.synthetic import generate_image

    pdq = importlib.import_module("hashmatch.hashers.pdq")
    fast = importlib.import_module("hashmatch.hashers._pdq_fast")
    k = np.arange(8)
    alpha = np.where(k == 0, math.sqrt(1 / 8), 0.5)
    dct = np.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * alpha[:, None]  # [u, x]

    def rows(n: int) -> np.ndarray:
        out = np.zeros((64, n))
        for i in range(64):
            first, w = fast._exact_row(n, i)
            out[i, first : first + len(w)] = w
        return out

    def model_bits(luma: np.ndarray, terms: list[tuple[int, int]]) -> np.ndarray:
        h, w = luma.shape
        hb, wb = -(-h // 8) * 8, -(-w // 8) * 8
        padded = np.pad(luma - 128.0, ((0, hb - h), (0, wb - w)), mode="edge")
        coeffs = np.einsum("vy,rcyx,ux->rcvu", dct, padded.reshape(hb // 8, 8, wb // 8, 8).transpose(0, 2, 1, 3), dct)
        mr, mc = rows(h), rows(w)
        y, x = np.arange(h), np.arange(w)
        block = np.zeros((64, 64)) + 128
        for v, u in terms:
            basis_r = np.zeros((h, hb // 8))
            basis_r[y, y // 8] = dct[v, y % 8]
            basis_c = np.zeros((w, wb // 8))
            basis_c[x, x // 8] = dct[u, x % 8]
            block += (mr @ basis_r) @ coeffs[:, :, v, u] @ (mc @ basis_c).T
        return K.bits_above_median(K.dct_16(block.astype(np.float32), pdq._dct_matrix()))

    synthetic = []
    for i in range(args.count):
        buf = io.BytesIO()
        generate_image(7 * 1_000_003 + i, size=(1024, 768)).save(buf, format="JPEG", quality=90)
        synthetic.append(buf.getvalue())
    real = [d for d in _real_photos() if min(Image.open(io.BytesIO(d)).size) >= 768]
    for label, files in (("synthetic 1024x768 q90", synthetic), ("real photos >= 768 px", real)):
        drift: dict[str, list[int]] = {name: [] for name in TERMS}
        for data in files:
            bits, quality = pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            if quality < 50:
                continue
            luma = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
            for name, terms in TERMS.items():
                drift[name].append(int((model_bits(luma, terms) != bits.astype(bool)).sum()))
        print(f"\n{label}")
        for name, d in drift.items():
            a = np.array(d)
            print(f"  {name:42s} n={len(a)} mean {a.mean():.2f} p95 {np.percentile(a, 95):.1f} max {a.max()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
