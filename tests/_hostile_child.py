"""Runs hostile cases through every entry point, in a child process with an address-space
limit; prints one JSON line per (case, entry point) so the parent sees how far it got.

Usage: python _hostile_child.py SPEC.json  (written by tests/test_hostile_inputs.py)

An outcome is ``ok`` (a result), ``error`` (a HashmatchError: the contract) or ``crash``
(anything else, including MemoryError). The CLI entry points also record their exit
code and whether a traceback was printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
from typing import Any


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _emit(record: dict[str, Any]) -> None:
    record["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _call(case_id: str, entry: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from hashmatch.errors import HashmatchError

    _emit({"case": case_id, "entry": entry, "event": "start"})
    start = time.perf_counter()
    result, outcome, detail = None, "ok", ""
    try:
        result = fn(*args, **kwargs)
    except HashmatchError as exc:
        outcome, detail = "error", type(exc).__name__
    except BaseException as exc:  # noqa: BLE001 - recorded: the parent fails the test
        outcome, detail = "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
    _emit({"case": case_id, "entry": entry, "event": "end", "outcome": outcome, "detail": detail,
           "seconds": round(time.perf_counter() - start, 4)})
    return result


def _cli(case_id: str, entry: str, argv: list[str]) -> None:
    from hashmatch.cli import main

    out, err = io.StringIO(), io.StringIO()
    _emit({"case": case_id, "entry": entry, "event": "start"})
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        outcome, detail = "ok", ""
    except BaseException as exc:  # noqa: BLE001
        code, outcome, detail = -1, "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
    text = err.getvalue()
    _emit({"case": case_id, "entry": entry, "event": "end", "outcome": outcome, "detail": detail, "exit": code,
           "traceback": "Traceback (most recent call last)" in text + out.getvalue(),
           "stderr_tail": text[-300:], "seconds": round(time.perf_counter() - start, 4)})


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    import numpy as np

    import hashmatch
    from hashmatch import Matcher
    from hashmatch.hashers import compute_hashes
    from hashmatch.hashers.pdq import PDQ_FAST_OPTIONS
    from hashmatch.hashes import Hash

    algorithms = ["ahash", "dhash", "phash", "whash", "pdq"]
    rng = np.random.default_rng(7)
    refs = [Hash(int(v), "phash", 64) for v in rng.integers(0, 2**63, 50)]
    refs += [Hash(int.from_bytes(rng.bytes(32), "big"), "pdq", 256) for _ in range(50)]
    matcher = Matcher.from_hashes(refs)
    hashmatch.hash_image(spec["good"], "phash")  # compile or load kernels before the limit
    compute_hashes(spec["good"], algorithms, dihedral=True)
    hashmatch.warmup()  # also the JPEG kernels (DC decoder, PDQ's fast path)
    matcher.match(spec["good"])
    baseline = _vm_size()
    limit = baseline + int(spec["budget_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _emit({"case": "-", "entry": "setup", "event": "limit", "baseline": baseline, "limit": limit})

    cases: list[list[str]] = spec["cases"]
    for case_id, path in cases:
        for name in algorithms:
            _call(case_id, f"hash_image:{name}", hashmatch.hash_image, path, name)
        _call(case_id, "compute_hashes:dihedral", compute_hashes, path, algorithms, dihedral=True)
        _call(case_id, "compute_hashes:pdq-fast", compute_hashes, path, ["pdq"], options={"pdq": PDQ_FAST_OPTIONS})
        result = _call(case_id, "Matcher.match", matcher.match, path)
        if result:  # random references: any match is a wrong verdict
            _emit({"case": case_id, "entry": "Matcher.match", "event": "wrong", "detail": "matched"})
    paths = [p for _, p in cases]
    good = spec["good"]
    batch = _call("batch", "match_many", matcher.match_many, [*paths, good])
    if batch is not None and not isinstance(batch[-1], list):
        _emit({"case": "batch", "entry": "match_many", "event": "wrong", "detail": "good image lost"})
    batch = _call("batch", "hash_images", hashmatch.hash_images, [*paths, good], "phash")
    if batch is not None and not isinstance(batch[-1], Hash):
        _emit({"case": "batch", "entry": "hash_images", "event": "wrong", "detail": "good image lost"})
    store = spec["store"]
    for i in range(0, len(paths), 200):
        part = paths[i : i + 200]
        _cli(f"cli[{i}]", "cli:hash", ["hash", "-a", "phash,pdq", *part])
        _cli(f"cli[{i}]", "cli:match", ["match", *part, "--store", store, "--no-cache"])
        _cli(f"cli[{i}]", "cli:refs-add", ["refs", "add", *part, "--store", spec["add_store"], "--list", "x",
                                          "-a", "phash"])
    _cli("scan", "cli:scan", ["scan", spec["folder"], "--store", store, "--workers", "0", "-q",
                              "-o", spec["report"]])
    _emit({"case": "-", "entry": "done", "event": "done"})


if __name__ == "__main__":
    main()
