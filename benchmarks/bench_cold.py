"""Cold start: `import hashmatch`, `hashmatch --version`, and the first-ever CLI calls.

Each first-ever call runs in a fresh interpreter with its own empty NUMBA_CACHE_DIR
(so it compiles every kernel it needs), then once more with that cache filled.
Import figures are the median of ``--repeats`` fresh interpreters (hyperfine-style),
with `python -c "import numpy"` measured alongside as the floor.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import add_record_option, cpu_label, machine, table, write_results

SRC = str(Path(__file__).resolve().parents[1] / "src")
TARGETS = {"import hashmatch": 0.3, "hashmatch --version": 0.3, "hash": 10.0, "hash -a pdq": 10.0, "match": 10.0,
           "scan": 10.0, "warmup": 40.0}


def _env(cache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    if cache:
        env["NUMBA_CACHE_DIR"] = cache
    return env


def _time(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): on a shared machine the CPU time is the
    steadier figure, since waiting for a core does not count."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{args} failed: {proc.stderr[-2000:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-first-calls", action="store_true", help="only the import figures")
    parser.add_argument("--calls", default="hash,hash -a pdq,match,scan,warmup",
                        help="which first-ever calls to time (comma-separated, of the default list)")
    add_record_option(parser)
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()
    rows, result = [], {"machine": machine(), "cpu": cpu_label(), "figures": {}}
    with tempfile.TemporaryDirectory() as tmp:
        warm_cache = os.path.join(tmp, "warm")
        warm = _env(warm_cache)
        imports = {
            "import numpy (floor)": ["-c", "import numpy"],
            "import hashmatch": ["-c", "import hashmatch"],
            "hashmatch --version": ["-m", "hashmatch", "--version"],
        }
        for name, cmd in imports.items():
            runs = [_time(cmd, warm) for _ in range(args.repeats)]
            times = [w for w, _ in runs]
            med = statistics.median(times)
            cpu = statistics.median(c for _, c in runs)
            result["figures"][name] = {"median_s": med, "min_s": min(times), "cpu_median_s": cpu, "runs": runs}
            rows.append([name, f"{med:.3f} s (min {min(times):.3f}, CPU {cpu:.3f})", TARGETS.get(name, "")])
        if not args.skip_first_calls:
            images = Path(tmp, "img")
            images.mkdir()
            rng = np.random.default_rng(0)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(images / f"{i}.jpg")
            store = os.path.join(tmp, "refs.db")
            prep = _env(os.path.join(tmp, "prep"))
            subprocess.run([sys.executable, "-m", "hashmatch", "refs", "add", "--store", store, "--list", "demo",
                            "-a", "phash,pdq", *[str(p) for p in sorted(images.iterdir())[:2]]],
                           env=prep, check=True, capture_output=True)
            one = str(images / "0.jpg")
            calls = {
                "hash": ["-m", "hashmatch", "hash", one],
                "hash -a pdq": ["-m", "hashmatch", "hash", "-a", "pdq", one],
                "match": ["-m", "hashmatch", "match", "--store", store, "--no-cache", one],
                "scan": ["-m", "hashmatch", "scan", "--store", store, "-q", "-o", os.path.join(tmp, "r.jsonl"), str(images)],
                "warmup": ["-m", "hashmatch", "warmup"],
            }
            chosen = args.calls.split(",")
            for name, cmd in calls.items():
                if name not in chosen:
                    continue
                cache = tempfile.mkdtemp(dir=tmp)
                cold, cold_cpu = _time(cmd, _env(cache))
                if name == "scan":
                    os.remove(os.path.join(tmp, "r.jsonl"))
                again, _ = _time(cmd, _env(cache))
                if name == "scan":
                    os.remove(os.path.join(tmp, "r.jsonl"))
                result["figures"][name] = {"first_s": cold, "first_cpu_s": cold_cpu, "cached_s": again}
                rows.append([f"first `hashmatch {name}` (empty cache)",
                             f"{cold:.1f} s (CPU {cold_cpu:.1f} s; then {again:.2f} s)", TARGETS[name]])
    result["load_average_at_start"] = load_at_start
    result["load_average_at_end"] = os.getloadavg()
    print(f"CPU: {cpu_label()}; load average at start {load_at_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}")
    print(table(rows, ["job", "measured", "target (s)"]))
    write_results("cold", result, record=args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
