"""Seconds numba spends compiling each kernel during one CLI command (cache misses only).

Run with an empty cache to see what a first-ever command compiles:
    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=src python benchmarks/compile_times.py match --store refs.db img.jpg
Times are inclusive (a kernel's time contains the first compile of the kernels it calls).
With ``--timeline`` first, also prints each compile's start (seconds, process id, kernel) as it
happens, in this process and in any process forked from it (a scan's compile helper):
    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=src python benchmarks/compile_times.py --timeline scan --store refs.db -q img/
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from typing import Any


def main() -> int:
    from numba.core import event

    seconds: dict[str, float] = {}
    timeline = sys.argv[1:2] == ["--timeline"]
    if timeline:
        del sys.argv[1]
    origin = time.perf_counter()

    class Timer(event.Listener):
        def on_start(self, ev: Any) -> None:
            ev.data["started"] = time.perf_counter()
            func = ev.data["dispatcher"].py_func
            if timeline and func.__module__.startswith("hashmatch."):
                print(f"{ev.data['started'] - origin:7.2f} s  pid {os.getpid()}  {func.__module__}.{func.__qualname__}",
                      file=sys.stderr, flush=True)

        def on_end(self, ev: Any) -> None:
            func = ev.data["dispatcher"].py_func
            name = f"{func.__module__}.{func.__qualname__}"
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - ev.data["started"]

    event.register("numba:compile", Timer())
    start = time.perf_counter()
    sys.argv = ["hashmatch", *sys.argv[1:]]
    try:
        runpy.run_module("hashmatch", run_name="__main__")
    except SystemExit:
        pass
    print(f"command took {time.perf_counter() - start:.1f} s", file=sys.stderr)
    top = [(s, n) for n, s in seconds.items() if n.startswith("hashmatch.")]
    print(f"hashmatch kernels compiled: {len(top)}", file=sys.stderr)
    for s, n in sorted(top, reverse=True):
        print(f"{s:7.2f} s  {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
