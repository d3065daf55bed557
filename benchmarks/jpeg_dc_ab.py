"""The DC-only JPEG decoder's scan kernel against another revision's, in one process.

    PYTHONPATH=src python benchmarks/jpeg_dc_ab.py [--base main] [--count 20] [--rounds 12]
        [--alternations 3] [--isa native|avx2] [--mutants 0] [--seed 7]

The base revision's ``hashmatch/_jpeg_kernels.py`` (``git show BASE:...``) is loaded as a
second module beside this tree's; both decode the same synthetic 1024x768 quality-90
JPEGs (4:2:0, as ``bench_quick``'s pdqjpeg job), from the same header, tables and plan.
Outputs are compared first; then, per alternation, each kernel runs ``--rounds`` passes
over the files and keeps its best pass (thread CPU, us per file); the ratio is base over
this tree. ``--isa avx2`` reruns the script with the kernels compiled for Haswell
(``bench_quick.BUILDS``) in a private numba cache. ``--mutants N`` also decodes N
corrupted copies (bytes set, spans cut or inserted, markers planted, files cut) with
both kernels and counts any file where they disagree (decoded or not, and the pixels).
The load average is printed with every figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import cpu_label, pin_malloc  # noqa: E402
from bench_quick import BUILDS  # noqa: E402


def _base_module(ref: str) -> Any:
    """``ref``'s kernel module, loaded as ``hashmatch._jpeg_kernels_base`` (its relative
    import of ``_jit`` resolves to this tree's)."""
    source = subprocess.run(["git", "show", f"{ref}:src/hashmatch/_jpeg_kernels.py"], check=True,
                            capture_output=True, text=True, cwd=HERE).stdout
    folder = Path(tempfile.mkdtemp(prefix="jpeg_dc_ab_"))
    path = folder / "_jpeg_kernels_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("hashmatch._jpeg_kernels_base", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _scan_fn(module: Any) -> Any:
    """The one-call scan entry point: ``dc_scan`` reading stuffed bytes, or the older
    ``decode_scan`` (unstuff + scan); both take the same arguments."""
    return getattr(module, "decode_scan", None) or module.dc_scan


def _arguments(data: bytes) -> tuple[Any, ...] | None:
    """What ``_jpeg.decode_dc`` passes to the scan kernel, then its output shape."""
    from hashmatch import _jpeg

    head = _jpeg.read_header(data)
    call = None if head is None else _jpeg.scan_arguments(data, head)
    return None if call is None else (*call[0], call[1])


def _run(fn: Any, args: tuple[Any, ...]) -> tuple[int, Any, Any]:
    import numpy as np

    shape = args[-1]
    out = np.zeros(shape, dtype=np.uint8)
    planes = np.zeros((3, *shape), dtype=np.float32)
    status = fn(*args[:-1], out, planes)
    return int(status), out, planes


def _files(count: int, seed: int) -> list[bytes]:
    from hashmatch.testing.synthetic import generate_image

    files = []
    for i in range(count):
        buf = io.BytesIO()
        generate_image(seed * 1_000_003 + i, size=(1024, 768)).save(buf, format="JPEG", quality=90)
        files.append(buf.getvalue())
    return files


def _mutate(rng: random.Random, data: bytes, start: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(start, len(out))
        kind = rng.randrange(6)
        if kind == 0:
            out[at] = rng.randrange(256)
        elif kind == 1:
            out[at : at + 2] = bytes([0xFF, rng.choice([0x00, 0xFF, 0xD9, 0xC4, *range(0xD0, 0xD8)])])
        elif kind == 2:
            del out[at : at + rng.randint(1, 64)]
        elif kind == 3:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == 4:
            del out[at:]
        else:
            out[at:at] = b"\xff" * rng.randint(1, 40)
    return bytes(out)


def _load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--isa", choices=["native", *BUILDS], default="native")
    parser.add_argument("--mutants", type=int, default=0)
    parser.add_argument("--restart-blocks", type=int, default=0,
                        help="also count/4 files with a restart marker every N MCUs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.isa != "native" and os.environ.get("NUMBA_CPU_NAME") is None:
        cpu_name, features = BUILDS[args.isa]
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CPU_NAME": cpu_name, "NUMBA_CPU_FEATURES": features, "NUMBA_CACHE_DIR": cache}
            return subprocess.run([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])],
                                  env=env, check=False).returncode
    pin_malloc()
    import numpy as np

    from hashmatch import _jit

    base_module = _base_module(args.base)
    ours_module = _jit.kernels("hashmatch._jpeg_kernels")
    base, ours = _scan_fn(base_module), _scan_fn(ours_module)
    files = _files(args.count, args.seed)
    if args.restart_blocks:
        from hashmatch.testing.synthetic import generate_image

        for i in range(args.count // 4):
            buf = io.BytesIO()
            generate_image(args.seed * 7 + i, size=(1024, 768)).save(buf, format="JPEG", quality=90,
                                                                       restart_marker_blocks=args.restart_blocks)
            files.append(buf.getvalue())
    calls = [_arguments(f) for f in files]
    for i, call in enumerate(calls):
        assert call is not None, f"file {i} not decodable by the DC decoder"
        a, b = _run(base, call), _run(ours, call)
        assert a[0] == 0 and b[0] == 0, (i, a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])
    print(f"{len(files)} files: same pixels and planes from both kernels [{args.isa}] {cpu_label()}", flush=True)

    if args.mutants:
        rng = random.Random(args.seed)
        disagree = decoded = 0
        for i in range(args.mutants):
            source = files[i % len(files)]
            blob = _mutate(rng, source, calls[i % len(files)][1])
            call = _arguments(blob)
            if call is None:
                assert a[0] == 0 and b[0] == 0, (i, a[0], b[0])
            a, b = _run(base, call), _run(ours, call)
            decoded += a[0] == 0
            if (a[0] == 0) != (b[0] == 0) or (a[0] == 0 and not (np.array_equal(a[1], b[1])
                                                               and np.array_equal(a[2], b[2]))):
                disagree += 1
                print(f"  mutant {i}: base status {a[0]}, this tree {b[0]}", flush=True)
        print(f"{args.mutants} mutants: {decoded} decoded by the base, {disagree} disagreements", flush=True)

    def best(fn: Any) -> float:
        out = []
        for _ in range(args.rounds):
            t = time.thread_time_ns()
            for call in calls:
                _run(fn, call)
            out.append((time.thread_time_ns() - t) / 1e3 / len(calls))
        return min(out)

    unstuffs = [getattr(m, "unstuff", None) for m in (base_module, ours_module)]
    pass_args = []
    for call in calls:
        raw, start = call[0], call[1]
        pass_args.append((raw, start, call[2], np.empty(raw.shape[0] - start + 520, dtype=np.uint8),
                          np.empty(call[2], dtype=np.int64), np.empty(call[2], dtype=np.int64)))

    def best_unstuff(fn: Any) -> float:
        fn(*pass_args[0])  # compiled (or loaded) before the clock starts
        out = []
        for _ in range(args.rounds):
            t = time.thread_time_ns()
            for a in pass_args:
                fn(*a)
            out.append((time.thread_time_ns() - t) / 1e3 / len(pass_args))
        return min(out)

    for k in range(args.alternations):
        tb, to = best(base), best(ours)
        print(f"alternation {k + 1}: scan (one call) base {tb:.1f} us/file, this tree {to:.1f} -> {tb / to:.3f}x "
              f"[{args.isa}] ({_load()})", flush=True)
        if all(u is not None for u in unstuffs):
            ub, uo = best_unstuff(unstuffs[0]), best_unstuff(unstuffs[1])
            print(f"               unstuff alone base {ub:.1f} us/file, this tree {uo:.1f} -> {ub / uo:.3f}x "
                  f"[{args.isa}] ({_load()})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
