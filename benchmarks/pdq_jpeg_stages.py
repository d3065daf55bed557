"""Where PDQ's JPEG fast path spends a file: each stage of ``compute_hashes`` with
``PDQ_FAST_OPTIONS``, thread CPU, best of ``--rounds`` passes over the files (us a file).

    PYTHONPATH=src python benchmarks/pdq_jpeg_stages.py [--count 20] [--rounds 15] [--seed 7]

Same synthetic 1024x768 quality-90 JPEGs as ``bench_quick``'s pdqjpeg job. Stages nest:
``compute_hashes`` = ``load_image`` (``read_header`` + ``decode_dc`` + ``Image.fromarray``
+ checks) + ``_hash_loaded`` (``pdq._compute``: the block model, the median bits) + the
API's own steps. For the AVX2 build run it with ``NUMBA_CPU_NAME=haswell``,
``NUMBA_CPU_FEATURES`` = ``bench_quick.HASWELL_FEATURES`` and its own ``NUMBA_CACHE_DIR``.
Prints the load average with every line: the machine is shared.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_label, pin_malloc  # noqa: E402
from jpeg_dc_ab import _arguments, _files, _run, _scan_fn  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    pin_malloc()
    from PIL import Image

    from hashmatch import _jit, _jpeg, _loading
    from hashmatch.hashers import _api, _registry, compute_hashes
    from hashmatch.hashers.pdq import PDQ_FAST_OPTIONS

    pdq = importlib.import_module("hashmatch.hashers.pdq")  # the package re-exports a function of that name
    files = _files(args.count, args.seed)
    options = {"pdq": dict(PDQ_FAST_OPTIONS)}
    alg = _registry.get_algorithm("pdq")
    chosen = [(alg, alg.check_options(dict(PDQ_FAST_OPTIONS)))]
    draft = _api._draft_request(chosen)
    assert draft is not None
    scan = _scan_fn(_jit.kernels("hashmatch._jpeg_kernels"))
    calls = [_arguments(f) for f in files]
    heads = [_jpeg.read_header(f) for f in files]
    decoded = [_jpeg.decode_dc(f) for f in files]
    images = [_loading.load_image(f, draft=draft, dc_decoder=True) for f in files]
    assert all(d is not None for d in decoded) and all(_loading.DRAFT_SCALE_KEY in i.info for i in images)
    coeffs = [pdq._model_coefficients(d.planes, d.height, d.width) for d in decoded]  # type: ignore[union-attr]
    stages: dict[str, Callable[[int], Any]] = {
        "compute_hashes (PDQ_FAST_OPTIONS)": lambda i: compute_hashes(files[i], ("pdq",), options=options),
        "  load_image (DC decoder)": lambda i: _loading.load_image(files[i], draft=draft, dc_decoder=True),
        "    read_header": lambda i: _jpeg.read_header(files[i]),
        "    decode_dc (header given)": lambda i: _jpeg.decode_dc(files[i], heads[i]),
        "      scan kernel alone": lambda i: _run(scan, calls[i]),
        "    Image.fromarray": lambda i: Image.fromarray(decoded[i].pixels),  # type: ignore[union-attr]
        "  _hash_loaded": lambda i: _api._hash_loaded(images[i], chosen, False),
        "    pdq._compute": lambda i: pdq._compute(images[i], **PDQ_FAST_OPTIONS),
        "      _model_coefficients": lambda i: pdq._model_coefficients(
            decoded[i].planes, decoded[i].height, decoded[i].width),  # type: ignore[union-attr]
        "      _result (median bits, Hash)": lambda i: pdq._result(coeffs[i][0], coeffs[i][1], fast=True),
    }
    print(f"{len(files)} files, {os.environ.get('NUMBA_CPU_NAME', 'host')} build, {cpu_label()}")
    for name, fn in stages.items():
        for i in range(len(files)):
            fn(i)
        best = float("inf")
        for _ in range(args.rounds):
            t = time.thread_time_ns()
            for i in range(len(files)):
                fn(i)
            best = min(best, (time.thread_time_ns() - t) / 1e3 / len(files))
        print(f"{name:38s} {best:8.1f} us  (load {os.getloadavg()[0]:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
