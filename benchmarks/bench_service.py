"""Load benchmark of ``hashmatch serve`` (issue 13).

Server and load generator are separate processes on loopback. Parts (``--parts``):

* ``ready``:  start the server on a store of N random PDQ references; time to /ready
  (snapshot cached, the usual restart) and RSS / PSS per worker.
* ``lookup``: POST /v1/lookup (one PDQ hash per request) with ``wrk``; req/s and
  latency percentiles. Peer: the library's ``Matcher.match_hashes`` on the same
  hashes with the same number of processes.
* ``match``:  POST /v1/match with 1024x768 JPEGs (``wrk``, 2 connections per worker). Peer:
  the library's ``Matcher.match`` on the same JPEG bytes with the same number of
  processes; the target is service >= 80% of the peer.
* ``soak``:   mixed matching (lookups and small images), adds and retractions through
  the API, and clients that disconnect mid-request; every answer is checked against a
  brute-force oracle of the state it claims (any generation published between the
  request and the answer); RSS of the workers sampled throughout.

    python benchmarks/bench_service.py --sizes 1000000 --workers 2 --soak-seconds 120
    python benchmarks/bench_service.py --sizes 1000000 --parts soak --soak-seconds 600   # the 10-minute soak

Results: ``benchmarks/results/service.json`` (``--output`` to rename).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import resource
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, pin_malloc, table, write_results  # noqa: E402

THRESHOLD = 31  # PDQ's default in hashmatch
MIN_QUALITY = 50


# -- store ----------------------------------------------------------------------------
def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**63, (n, 4), dtype=np.int64).astype(np.uint64) ^ (
        rng.integers(0, 2, (n, 4), dtype=np.int64).astype(np.uint64) << np.uint64(63))


def words_hex(row: np.ndarray) -> str:
    return "".join(f"{int(w):016x}" for w in row)


def build_store(path: Path, n: int, seed: int) -> None:
    """N random PDQ references in list 'base' (kept and reused across runs)."""
    from hashmatch import Hash, Matcher, ReferenceStore
    from hashmatch._store import NewEntry

    if path.exists():
        return
    tmp = path.with_suffix(".building")
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with ReferenceStore(tmp) as store:
        for lo in range(0, n, 200_000):
            words = random_words(rng, min(200_000, n - lo))
            entries = (NewEntry(Hash(int(words_hex(w), 16), "pdq", 256), 100) for w in words)
            store.add_entries("base", entries, return_ids=False)
    print(f"store: {n} rows in {time.perf_counter() - start:.0f} s", flush=True)
    tmp.rename(path)
    start = time.perf_counter()
    Matcher.from_store(path).close()  # writes the snapshot the server then loads
    print(f"store: first index build and snapshot {time.perf_counter() - start:.0f} s", flush=True)


# -- server -----------------------------------------------------------------------------
def server_env() -> dict[str, str]:
    """The server's environment: this one, with glibc's malloc settings as --server-malloc says."""
    env = dict(os.environ)
    for name, value in json.loads(os.environ.get("HM_BENCH_SERVER_MALLOC", "{}")).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, store: Path, workers: int, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tempfile.mktemp(prefix="hm-serve-", suffix=".log"), "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashmatch", "serve", "--store", str(store), "--port", str(self.port),
             "--workers", str(workers), *args], stdout=self.log, stderr=subprocess.STDOUT, env=server_env())
        self.workers = workers

    def wait_ready(self) -> float:
        import httpx

        seen: set[int] = set()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {Path(self.log.name).read_text()}")
            try:
                r = httpx.get(self.url + "/ready", timeout=5)
                if r.status_code == 200:
                    seen.add(r.json()["worker"])
                    if len(seen) >= self.workers or len(self.worker_pids()) <= len(seen):
                        return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        """uvicorn's workers (children) or the server itself with one worker."""
        kids = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            m = re.search(r"^PPid:\s+(\d+)", text, re.M)
            if m and int(m.group(1)) == self.proc.pid and "resource_tracker" not in _cmdline(status.parent):
                kids.append(int(status.parent.name))
        return kids or [self.proc.pid]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its workers so far."""
        total = 0
        for pid in {self.proc.pid, *self.worker_pids()}:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def memory(self) -> list[dict[str, float]]:
        out = []
        for pid in self.worker_pids():
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            vals = {k: int(v) / 1024 for k, v in re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.M)}
            out.append({"pid": pid, "rss_mib": vals["Rss"], "pss_mib": vals["Pss"]})
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


# -- peers (the library in plain processes) --------------------------------------------
def _peer_worker(store: str, kind: str, items: list[Any], seconds: float, barrier: Any, out: Any) -> None:
    from hashmatch import HashResult, Matcher
    from hashmatch.hashes import Hash

    matcher = Matcher.from_store(store)
    matcher.warmup()
    if kind == "lookup":
        items = [[HashResult(Hash(int(h, 16), "pdq", 256), 100)] for h in items]
        fn = matcher.match_hashes
    else:
        fn = matcher.match
    fn(items[0])
    barrier.wait()  # every process loaded: none is timed while another still loads
    done, end, cpu = 0, time.perf_counter() + seconds, time.process_time()
    while time.perf_counter() < end:
        fn(items[done % len(items)])
        done += 1
    out.put((done, time.process_time() - cpu))


def peer_rate(store: Path, kind: str, items: list[Any], processes: int, seconds: float) -> tuple[float, float]:
    """Calls per second of the library with ``processes`` processes (load time excluded),
    and CPU milliseconds per call."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_peer_worker, args=(str(store), kind, items, seconds, barrier, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    got = [out.get() for _ in procs]
    for p in procs:
        p.join()
    calls = sum(n for n, _ in got)
    return calls / seconds, 1e3 * sum(c for _, c in got) / max(calls, 1)


# -- load generators ----------------------------------------------------------------------
def wrk_load(server: Served, path: str, bodies: list[bytes], content_type: str, seconds: int, connections: int,
             threads: int = 1) -> dict[str, Any]:
    """``wrk`` POSTing the bodies in turn; requests/s and latency percentiles."""
    tmp = Path(tempfile.mkdtemp(prefix="hm-wrk-"))
    files = []
    for i, body in enumerate(bodies):
        (tmp / f"{i}.bin").write_bytes(body)
        files.append(str(tmp / f"{i}.bin"))
    script = tmp / "load.lua"
    script.write_text(
        f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = '{content_type}'\nlocal bodies = {{}}\n"
        "for _, name in ipairs({" + ", ".join(json.dumps(f) for f in files) + "}) do\n"
        "  local fh = io.open(name, 'rb'); table.insert(bodies, fh:read('*all')); fh:close()\nend\n"
        f"local i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
        f"  return wrk.format(nil, '{path}', nil, bodies[i])\nend\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('JSON {\"requests\": %d, \"seconds\": %f, \"errors\": %d, \"non2xx\": %d, "
        "\"p50_ms\": %f, \"p90_ms\": %f, \"p99_ms\": %f, \"max_ms\": %f}\\n', summary.requests, "
        "summary.duration / 1e6, summary.errors.connect + summary.errors.read + summary.errors.write + "
        "summary.errors.timeout, summary.errors.status, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, "
        "latency:percentile(99) / 1e3, latency.max / 1e3))\nend\n"
    )
    cpu0, kids0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s",
                           "-s", str(script), server.url], capture_output=True, text=True, check=True)
    server_cpu, kids = server.cpu_seconds() - cpu0, resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(tmp)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("JSON "))
    out = json.loads(line[5:])
    out["req_per_s"] = out["requests"] / out["seconds"]
    out["server_cpu_ms_per_request"] = 1e3 * server_cpu / max(out["requests"], 1)
    out["wrk_cpu_seconds"] = (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    return out


def lookup_bodies(hashes: list[str]) -> list[bytes]:
    return [json.dumps({"hashes": [{"algorithm": "pdq", "hash": h, "quality": 100}]}).encode() for h in hashes]


def compare_with_peer(run: dict[str, Any], part: str, store: Path, kind: str, items: list[Any], workers: int,
                      seconds: float, call: str) -> None:
    """The library peer for one part, and the service/peer ratios (wall rate, CPU per call)."""
    run[f"{part}_peer_per_s"], run[f"{part}_peer_cpu_ms"] = peer_rate(store, kind, items, workers, seconds)
    run[f"{part}_ratio"] = run[part]["req_per_s"] / run[f"{part}_peer_per_s"]
    run[f"{part}_cpu_ratio"] = run[f"{part}_peer_cpu_ms"] / run[part]["server_cpu_ms_per_request"]
    print(f"[{run['references']}] peer Matcher.{call} x{workers}: {run[f'{part}_peer_per_s']:.1f}/s; "
          f"service/peer {run[f'{part}_ratio']:.2f}; CPU ms per call: service "
          f"{run[part]['server_cpu_ms_per_request']:.3f}, peer {run[f'{part}_peer_cpu_ms']:.3f} "
          f"(peer/service {run[f'{part}_cpu_ratio']:.2f})", flush=True)


def jpegs(seed: int, count: int, size: tuple[int, int]) -> list[bytes]:
    from hashmatch.testing.synthetic import generate_image

    out = []
    for i in range(count):
        buf = io.BytesIO()
        generate_image(seed + i, size=size).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


from _soak import soak  # noqa: E402  (the soak and its oracle live apart: this file stays short)


def main(argv: list[str] | None = None) -> int:
    pin_malloc()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="1000000", help="references in the store (comma-separated)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parts", default="ready,lookup,match,soak")
    ap.add_argument("--seconds", type=int, default=20, help="per throughput measurement")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--soak-seconds", type=float, default=120)
    ap.add_argument("--workdir", default="/tmp/hashmatch-bench-service")
    ap.add_argument("--output", default="service")
    ap.add_argument("--server-malloc", default="pinned", choices=["pinned", "default", "arena2"],
                    help="glibc malloc settings of the server: the image benchmarks' pinned thresholds, "
                         "glibc's defaults, or pinned with MALLOC_ARENA_MAX=2")
    add_record_option(ap)
    args = ap.parse_args(argv)
    os.environ["HM_BENCH_SERVER_MALLOC"] = json.dumps({
        "pinned": {}, "default": {"MALLOC_MMAP_THRESHOLD_": None, "MALLOC_TRIM_THRESHOLD_": None},
        "arena2": {"MALLOC_ARENA_MAX": "2"}}[args.server_malloc])
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {"machine": machine(), "settings": vars(args), "runs": []}
    rng = random.Random(args.seed)
    for n in [int(s) for s in args.sizes.split(",")]:
        store = work / f"pdq-{n}-seed{args.seed}.db"
        build_store(store, n, args.seed)
        run: dict[str, Any] = {"references": n}
        results["runs"].append(run)
        probes = [words_hex(w) for w in random_words(np.random.default_rng(args.seed + 1), 200)]
        images = jpegs(args.seed + 1000, 16, (1024, 768)) if "match" in parts else []
        if parts & {"ready", "lookup", "match"}:
            server = Served(store, args.workers)
            try:
                run["ready_seconds"] = server.wait_ready()
                time.sleep(1)
                run["memory_after_ready"] = server.memory()
                print(f"[{n}] ready in {run['ready_seconds']:.2f} s; per worker "
                      + ", ".join(f"RSS {m['rss_mib']:.0f} / PSS {m['pss_mib']:.0f} MiB" for m in run["memory_after_ready"]),
                      flush=True)
                if "lookup" in parts:
                    run["lookup"] = wrk_load(server, "/v1/lookup", lookup_bodies(probes), "application/json",
                                             args.seconds, args.connections)
                    run["memory_after_lookup"] = server.memory()
                    print(f"[{n}] /v1/lookup: {run['lookup']['req_per_s']:.0f} req/s, p50 {run['lookup']['p50_ms']:.2f} "
                          f"ms, p99 {run['lookup']['p99_ms']:.2f} ms, errors {run['lookup']['errors']}, "
                          f"non-2xx {run['lookup']['non2xx']}", flush=True)
                if "match" in parts:
                    run["match"] = wrk_load(server, "/v1/match", images, "image/jpeg", args.seconds,
                                            2 * args.workers)
                    print(f"[{n}] /v1/match 1024x768: {run['match']['req_per_s']:.1f} req/s, p50 "
                          f"{run['match']['p50_ms']:.1f} ms, p99 {run['match']['p99_ms']:.1f} ms", flush=True)
            finally:
                server.stop()
            for part, kind, items, call in (("lookup", "lookup", probes, "match_hashes"),
                                            ("match", "match", images, "match")):
                if part in parts:
                    compare_with_peer(run, part, store, kind, items, args.workers, args.seconds, call)
        if "soak" in parts:
            run["soak"] = soak(store, args.workers, args.soak_seconds, rng, probes)
            s = run["soak"]
            print(f"[{n}] soak {s['seconds']:.0f} s: {s['checked']} answers checked, {s['wrong']} wrong, "
                  f"{s['errors']} errors, {s['adds']} adds, {s['retractions']} retractions, "
                  f"{s['disconnects']} disconnecting clients; RSS MiB start {s['rss_start_mib']} end {s['rss_end_mib']}",
                  flush=True)
    path = write_results(args.output, results, record=args.record)
    rows = []
    for r in results["runs"]:
        rows.append([r["references"], r.get("ready_seconds", "-"),
                     max((m["rss_mib"] for m in r.get("memory_after_ready", [])), default="-"),
                     r.get("lookup", {}).get("req_per_s", "-"), r.get("lookup", {}).get("p99_ms", "-"),
                     r.get("lookup_ratio", "-"), r.get("lookup_cpu_ratio", "-"), r.get("match", {}).get("req_per_s", "-"),
                     r.get("match", {}).get("p99_ms", "-"), r.get("match_ratio", "-"), r.get("match_cpu_ratio", "-")])
    print(table(rows, ["refs", "ready s", "RSS MiB/worker", "lookup req/s", "lookup p99 ms", "lookup/peer",
                       "lookup CPU peer/svc", "match req/s", "match p99 ms", "match/peer", "match CPU peer/svc"]))
    print(f"wrote {path}")
    shutil.rmtree(work / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
