"""A real ``hashmatch serve`` process on a free loopback port, for the service tests."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

from hashmatch import ReferenceStore, compute_hashes
from hashmatch.testing.synthetic import generate_image

_START_TIMEOUT = 120.0  # a shared 2-core box compiling numba kernels can be slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jpeg(seed: int, size: tuple[int, int] = (480, 360), quality: int = 90) -> bytes:
    buf = io.BytesIO()
    generate_image(seed, size=size).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def resized(data: bytes, scale: float) -> bytes:
    img = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    img.resize((int(img.width * scale), int(img.height * scale))).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def add_image(store_path: Path, list_name: str, data: bytes, label: str) -> dict[str, int]:
    """Add an image's PDQ and phash to a list; {algorithm: entry id}."""
    results = compute_hashes(data, ["pdq", "phash"])
    with ReferenceStore(store_path) as store:
        out = {}
        for name in ("pdq", "phash"):
            r = results[name][0]
            out[name] = store.add(list_name, r.hash, quality=r.quality, label=label, external_id=f"{label}-x")
    return out  # type: ignore[return-value]


def reference_hexes(data: bytes) -> list[str]:
    results = compute_hashes(data, ["pdq", "phash"])
    return [results[n][0].hash.hex() for n in ("pdq", "phash")]


class Server:
    """``python -m hashmatch serve`` in a child process; stop() ends it."""

    def __init__(self, store: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1] / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashmatch", "serve", "--store", str(store), "--port", str(self.port), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )

    def wait_ready(self, workers: int = 1) -> dict:
        """Wait until ``workers`` distinct worker processes have answered /ready with 200
        (each worker loads on its own; a request may reach any of them)."""
        deadline = time.monotonic() + _START_TIMEOUT
        ready: dict[int, dict] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                r = httpx.get(self.url + "/ready", timeout=5)
                if r.status_code == 200:
                    body = r.json()
                    ready[body["worker"]] = body
                    if len(ready) >= workers:
                        return body
                    continue
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {_START_TIMEOUT} s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def poll(fn, timeout: float = 20.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Call fn until it returns something truthy (a guard against hanging, not a timing test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
