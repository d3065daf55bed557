"""The soak of ``bench_service.py``: mixed traffic with a brute-force oracle.

One writer adds PDQ references near the probes (some within the threshold, some not)
and retracts them, through the curation API, recording the active set after every
change (generation by generation: it is the only writer). Readers look up probe hashes
and match small probe images; every answer must equal the brute-force answer of a
state the server may have served: any generation from the one the answer names (or
``generation_from``) to the newest one written by the time the answer arrived.
Disconnectors open requests and drop them half-sent or unanswered. Worker RSS is
sampled throughout.
"""

from __future__ import annotations

import asyncio
import io
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLD, MIN_QUALITY = 31, 50


def _words(hex_text: str) -> np.ndarray:
    return np.array([int(hex_text[i:i + 16], 16) for i in range(0, 64, 16)], dtype=np.uint64)


def _near(words: np.ndarray, rng: random.Random, flips: int) -> np.ndarray:
    out = words.copy()
    for bit in rng.sample(range(256), flips):
        out[bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return out


def _hex(words: np.ndarray) -> str:
    return "".join(f"{int(w):016x}" for w in words)


def _matched(queries: np.ndarray, refs: dict[int, np.ndarray]) -> frozenset[int]:
    """Brute force: ids of refs within THRESHOLD of any query row."""
    if not refs or not len(queries):
        return frozenset()
    ids = np.fromiter(refs, dtype=np.int64)
    table = np.stack([refs[i] for i in ids])
    d = np.bitwise_count(table[:, None, :] ^ queries[None, :, :]).sum(axis=2).min(axis=1)
    return frozenset(ids[d <= THRESHOLD].tolist())


def _probe_images(seed: int, count: int) -> list[tuple[bytes, np.ndarray]]:
    from hashmatch.hashers import compute_query_hashes
    from hashmatch.testing.synthetic import generate_image

    out = []
    for i in range(count):
        buf = io.BytesIO()
        generate_image(seed + i, size=(320, 240)).save(buf, "JPEG", quality=88)
        data = buf.getvalue()
        views = compute_query_hashes(data, ["pdq"], dihedral=True, trim_borders=True)
        rows = [_words(r.hash.hex()) for view in views for r in view["pdq"]
                if r.quality is None or r.quality >= MIN_QUALITY]
        out.append((data, np.stack(rows) if rows else np.zeros((0, 4), np.uint64)))
    return out


def soak(store: Path, workers: int, seconds: float, rng: random.Random, probe_hexes: list[str]) -> dict[str, Any]:
    from bench_service import Served
    from hashmatch import ReferenceStore

    work = store.parent / "soak"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    copy = work / "soak.db"
    shutil.copy(store, copy)
    if Path(str(store) + ".snapshots").is_dir():
        shutil.copytree(str(store) + ".snapshots", str(copy) + ".snapshots")
    with ReferenceStore(copy) as s:
        batch, base_ids, generation = s.read_active("pdq")
    base = batch.words
    lookups = [_words(h)[None, :] for h in probe_hexes]
    images = _probe_images(rng.randrange(1 << 30), 8)

    def base_matched(queries: np.ndarray) -> frozenset[int]:
        hits = set()
        for q in queries:
            d = np.bitwise_count(base ^ q[None, :]).sum(axis=1)
            hits.update(base_ids[d <= THRESHOLD].tolist())
        return frozenset(hits)

    base_of_lookup = [base_matched(q) for q in lookups]
    base_of_image = [base_matched(q) for _, q in images]
    server = Served(copy, workers)
    try:
        server.wait_ready()
        return asyncio.run(_run(server, seconds, rng, generation, lookups, images, base_of_lookup, base_of_image))
    finally:
        server.stop()
        log = Path(server.log.name).read_text(errors="replace")
        if "Traceback" in log:
            print(log[-3000:])


async def _run(server: Any, seconds: float, rng: random.Random, generation: int, lookups: list[np.ndarray],
               images: list[tuple[bytes, np.ndarray]], base_of_lookup: list[frozenset[int]],
               base_of_image: list[frozenset[int]]) -> dict[str, Any]:
    import httpx

    history: dict[int, dict[int, np.ndarray]] = {generation: {}}
    state = {"gen": generation, "started": 0, "done": 0}
    gen_after_op = {0: generation}
    stats = {"checked": 0, "wrong": 0, "errors": 0, "adds": 0, "retractions": 0, "disconnects": 0,
             "lookups": 0, "image_matches": 0, "answers_with_matches": 0}
    problems: list[str] = []
    end = time.perf_counter() + seconds
    targets = [q[0] for q in lookups] + [q[0] for _, q in images if len(q)]

    def fail(kind: str, text: str) -> None:
        stats[kind] += 1
        if sum(p.startswith(kind) for p in problems) < 10:
            problems.append(f"{kind}: {text[:300]}")

    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=32)) as client:
        async def writer() -> None:
            while time.perf_counter() < end:
                active = dict(history[state["gen"]])
                state["started"] += 1
                op = state["started"]
                try:
                    if active and rng.random() < 0.4:
                        entry_id = rng.choice(list(active))
                        r = await client.post(f"/v1/entries/{entry_id}/retract", json={"reason": "soak"})
                        changed = r.status_code == 200 and r.json()["retracted"]
                        del active[entry_id]
                        stats["retractions"] += changed
                    else:
                        words = _near(rng.choice(targets), rng, rng.randrange(0, 48))
                        r = await client.post("/v1/lists/soak/entries", json={"entries": [
                            {"algorithm": "pdq", "hash": _hex(words), "quality": 100}]})
                        body = r.json()
                        changed = r.status_code == 200 and body["added"] == 1
                        if changed:
                            active[body["entry_ids"][0]] = words
                            stats["adds"] += 1
                    if r.status_code != 200:
                        fail("errors", f"writer {r.status_code} {r.text}")
                    elif changed:
                        history[state["gen"] + 1] = active
                        state["gen"] += 1
                        if r.json()["generation"] < state["gen"]:
                            fail("wrong", f"write answered generation {r.json()['generation']} < {state['gen']}")
                except httpx.HTTPError as exc:
                    fail("errors", f"writer {exc!r}")
                gen_after_op[op] = state["gen"]
                state["done"] = op
                await asyncio.sleep(rng.uniform(0.02, 0.15))

        async def check(body: dict[str, Any], base_hits: frozenset[int], queries: np.ndarray) -> None:
            got = frozenset(m["entry_id"] for m in body["matches"])
            hi = body["generation"]
            lo = body.get("generation_from", hi)
            # A write committed before this answer is recorded already or is the writer's one
            # request in flight when the answer came: wait for it, then every state the server can
            # have read is known.
            # (The Matcher labels a state with the generation it read first; its change reads
            # may include later writes, so the label is a lower bound.)
            issued = state["started"]
            deadline = time.perf_counter() + 30
            while state["done"] < issued and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            newest = gen_after_op.get(issued, state["gen"])
            candidates = [g for g in range(lo, max(hi, newest) + 1) if g in history]
            stats["checked"] += 1
            stats["answers_with_matches"] += bool(got)
            if not any(got == base_hits | _matched(queries, history[g]) for g in candidates):
                want = {g: sorted(base_hits | _matched(queries, history[g])) for g in candidates[:3]}
                fail("wrong", f"got {sorted(got)} at {lo}..{hi} (newest {newest}); oracle {want}")

        async def reader() -> None:
            while time.perf_counter() < end:
                try:
                    if rng.random() < 0.8:
                        i = rng.randrange(len(lookups))
                        r = await client.post("/v1/lookup", json={"hashes": [
                            {"algorithm": "pdq", "hash": _hex(lookups[i][0]), "quality": 100}]})
                        stats["lookups"] += 1
                        base_hits, queries = base_of_lookup[i], lookups[i]
                    else:
                        i = rng.randrange(len(images))
                        r = await client.post("/v1/match", content=images[i][0])
                        stats["image_matches"] += 1
                        base_hits, queries = base_of_image[i], images[i][1]
                    if r.status_code != 200:
                        fail("errors", f"reader {r.status_code} {r.text}")
                        continue
                    await check(r.json(), base_hits, queries)
                except httpx.HTTPError as exc:
                    fail("errors", f"reader {exc!r}")

        async def disconnector() -> None:
            host, port = "127.0.0.1", server.port
            while time.perf_counter() < end:
                how = rng.randrange(3)
                try:
                    if how == 2:
                        # A client of its own: a request cancelled mid-flight can leave httpcore's
                        # pool slot taken, which must not starve the readers' pool.
                        async with httpx.AsyncClient(base_url=server.url, timeout=60) as own:
                            try:
                                await asyncio.wait_for(own.post("/v1/match", content=images[0][0]), 0.003)
                            except asyncio.TimeoutError:
                                pass
                    else:
                        reader_, writer_ = await asyncio.open_connection(host, port)
                        body = images[1][0]
                        head = (f"POST /v1/match HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                                f"Content-Length: {len(body)}\r\n\r\n").encode()
                        writer_.write(head + (body[: len(body) // 2] if how == 0 else body))
                        await writer_.drain()
                        if how == 1:
                            await asyncio.sleep(0.001)
                        writer_.close()
                    stats["disconnects"] += 1
                except (OSError, httpx.HTTPError):
                    stats["disconnects"] += 1
                await asyncio.sleep(0.05)

        rss: list[tuple[float, list[float]]] = []

        async def sampler() -> None:
            t0 = time.perf_counter()
            while time.perf_counter() < end:
                rss.append((round(time.perf_counter() - t0, 1), [round(m["rss_mib"], 1) for m in server.memory()]))
                await asyncio.sleep(5)

        start = time.perf_counter()
        await asyncio.gather(writer(), sampler(), disconnector(), *(reader() for _ in range(6)))
        elapsed = time.perf_counter() - start
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as fresh:
        try:
            ready = (await fresh.get("/ready")).status_code
        except httpx.HTTPError as exc:
            ready = repr(exc)
    if ready != 200:
        fail("errors", f"/ready answered {ready} after the soak")
    warm = rss[min(2, len(rss) - 1)][1] if rss else []
    return {**stats, "seconds": elapsed, "generations": len(history), "problems": problems,
            "rss_samples": rss, "rss_start_mib": warm, "rss_end_mib": rss[-1][1] if rss else [],
            "rss_max_mib": [max(s[1][k] for s in rss if len(s[1]) > k) for k in range(len(warm))]}
