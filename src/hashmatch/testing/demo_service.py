"""The service half of ``make demo``: ``python -m hashmatch.testing.demo_service OUT_DIR``.

Runs after :mod:`hashmatch.testing.demo` (which leaves a store and uploads in OUT_DIR):

1. start ``hashmatch serve`` on a free loopback port (no keys: loopback only);
2. match an altered copy over HTTP with httpx;
3. retract the entries it matched through the curation API;
4. match it again: it no longer matches; stop the server.

No hash values are printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

UPLOAD_PREFIX = "copy-01-"  # original-01 is still listed after the library demo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            r = httpx.get(url + "/ready", timeout=5)
            if r.status_code == 200:
                return r.json()  # type: ignore[no-any-return]
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:.0f} s")


def _show(body: dict[str, object]) -> str:
    matches = body["matches"]
    assert isinstance(matches, list)
    if not matches:
        return "no match"
    return "; ".join(f"entry {m['entry_id']} {m['list']}/{m['label']} {m['algorithm']} distance {m['distance']}"
                     for m in matches)


def run(out_dir: Path) -> int:
    store = out_dir / "refs.db"
    uploads = sorted((out_dir / "uploads").glob(UPLOAD_PREFIX + "*.jpg"))
    if not store.is_file() or not uploads:
        print(f"run `python -m hashmatch.testing.demo {out_dir}` first", file=sys.stderr)
        return 2
    upload = uploads[0]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"5. service: hashmatch serve --store {store} --port {port} (loopback, no keys)")
    proc = subprocess.Popen([sys.executable, "-m", "hashmatch", "serve", "--store", str(store), "--port", str(port)],
                            env=dict(os.environ))
    try:
        ready = _wait_ready(url, proc)
        print(f"   ready: generation {ready['generation']}, {ready['entries']} references in {ready['lists']} list(s)")
        with httpx.Client(base_url=url, timeout=60) as client:
            data = upload.read_bytes()
            first = client.post("/v1/match", content=data, headers={"Content-Type": "image/jpeg"}).json()
            print(f"   POST /v1/match {upload.name}: {_show(first)}")
            ids = sorted({m["entry_id"] for m in first["matches"]})
            for entry_id in ids:
                out = client.post(f"/v1/entries/{entry_id}/retract", json={"reason": "demo: appeal upheld"}).json()
                print(f"   POST /v1/entries/{entry_id}/retract: retracted={out['retracted']} "
                      f"(generation {out['generation']})")
            second = client.post("/v1/match", content=data, headers={"Content-Type": "image/jpeg"}).json()
            print(f"   POST /v1/match {upload.name} again: {_show(second)}")
        ok = bool(ids) and not second["matched"]
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"   server stopped; {'as expected' if ok else 'NOT as expected'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run(Path(args[0] if args else "demo-out"))


if __name__ == "__main__":
    sys.exit(main())
