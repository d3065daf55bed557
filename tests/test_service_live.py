"""Live lists across processes: a change made by another process, or through another
server's API, reaches every worker of a running server without a restart."""

from __future__ import annotations

import httpx

from hashmatch import ReferenceStore, compute_hashes

from ._serve_helpers import Server, add_image, jpeg, poll


def _matches(url: str, data: bytes) -> list[int]:
    body = httpx.post(url + "/v1/match", content=data, timeout=60).json()
    return [m["entry_id"] for m in body["matches"]]


def test_changes_reach_every_worker_of_every_server(tmp_path):
    store = tmp_path / "refs.db"
    add_image(store, "seed", jpeg(31), "seed")
    a = Server(store, tmp_path / "a.log")
    b = Server(store, tmp_path / "b.log", "--workers", "2")
    try:
        a.wait_ready()
        b.wait_ready(workers=2)
        upload = jpeg(32)
        assert _matches(a.url, upload) == [] and _matches(b.url, upload) == []

        # 1. Another process (this test) adds to the store: both servers pick it up.
        ids = add_image(store, "later", upload, "later")
        assert poll(lambda: set(ids.values()) <= set(_matches(a.url, upload)))
        assert poll(lambda: set(ids.values()) <= set(_matches(b.url, upload)))
        with ReferenceStore(store) as s:
            generation = s.generation

        # Every worker of b serves that generation (each refreshes by itself).
        seen: dict[int, int] = {}

        def both_workers_caught_up() -> bool:
            ready = httpx.get(b.url + "/ready", timeout=60).json()
            seen[ready["worker"]] = ready["generation"]
            return len(seen) == 2 and min(seen.values()) >= generation

        assert poll(both_workers_caught_up, timeout=60, interval=0.01), seen

        # 2. A retraction through a's API stops the match on b too.
        out = httpx.post(f"{a.url}/v1/entries/{ids['pdq']}/retract", json={"reason": "test"}, timeout=60).json()
        assert out["retracted"] is True
        assert ids["pdq"] not in _matches(a.url, upload)  # a refreshed before answering
        assert poll(lambda: ids["pdq"] not in _matches(b.url, upload))
        assert ids["phash"] in _matches(b.url, upload)

        # Metrics aggregate over b's workers: one generation gauge per worker.
        text = httpx.get(b.url + "/metrics", timeout=60).text
        assert text.count("hashmatch_store_generation{pid=") == 2
        r = compute_hashes(upload, ["pdq"])["pdq"][0]
        query = {"hashes": [{"algorithm": "pdq", "hash": r.hash.hex(), "quality": r.quality}]}
        # Either worker may answer; each stops matching once it has refreshed (0.25 s).
        assert poll(lambda: all(httpx.post(b.url + "/v1/lookup", timeout=60, json=query).json()["matched"] is False
                                for _ in range(10)))
    finally:
        a.stop()
        b.stop()
    assert "Traceback" not in a.log() and "Traceback" not in b.log()
