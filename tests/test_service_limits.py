"""Hostile input over HTTP against a real server without keys: size limits, streaming,
pixel limits, timeouts. Bad input never gets a 5xx."""

from __future__ import annotations

import io
import socket

import httpx
import numpy as np
import pytest
from PIL import Image

from ._serve_helpers import Server, add_image, jpeg

MAX_BODY = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    store = tmp / "refs.db"
    add_image(store, "known", jpeg(21), "x")
    srv = Server(store, tmp / "server.log", "--max-body", str(MAX_BODY), "--max-pixels", "4000000")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _kind(r: httpx.Response) -> str:
    return r.json()["kind"]


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(server):
    # Only the headers go out: the 413 must come back without the server waiting for the body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/match HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
                     b"Content-Type: image/jpeg\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b'"kind":"body_too_large"' in reply


def test_a_streamed_body_over_the_limit_is_refused(server):
    def chunks():
        for _ in range(40):
            yield b"\xff" * 65536  # 2.6 MB, no Content-Length: chunked transfer

    r = httpx.post(server.url + "/v1/match", content=chunks(), timeout=60)
    assert r.status_code == 413 and _kind(r) == "body_too_large"


def test_a_multipart_body_over_the_limit_is_refused(server):
    r = httpx.post(server.url + "/v1/match", files={"image": ("x.jpg", b"\0" * (MAX_BODY + 10))}, timeout=60)
    assert r.status_code == 413 and _kind(r) == "body_too_large"


def test_an_image_over_the_pixel_limit_is_413(server):
    buf = io.BytesIO()
    Image.new("L", (2500, 2000)).save(buf, "PNG")  # 5 MP of zeros: a tiny file
    r = httpx.post(server.url + "/v1/match", content=buf.getvalue(), timeout=60)
    assert r.status_code == 413 and _kind(r) == "image_too_large"


@pytest.mark.parametrize("data", [b"GIF89a" + b"\0" * 20, b"\x89PNG\r\n\x1a\n" + b"\0" * 30, b"\xff\xd8\xff" * 10])
def test_corrupt_images_are_415_never_5xx(server, data):
    r = httpx.post(server.url + "/v1/match", content=data, timeout=60)
    assert r.status_code == 415 and _kind(r) == "unreadable_image"


def test_random_bytes_never_give_a_5xx(server, rng):
    for n in (1, 17, 4096):
        r = httpx.post(server.url + "/v1/match", content=rng.integers(0, 256, n, dtype=np.uint8).tobytes(), timeout=60)
        assert 400 <= r.status_code < 500


def test_without_keys_loopback_clients_are_served(server):
    r = httpx.post(server.url + "/v1/match", content=jpeg(22), timeout=60)
    assert r.status_code == 200 and r.json()["matched"] is False


def test_a_request_over_the_timeout_gets_503_timeout(tmp_path):
    store = tmp_path / "refs.db"
    add_image(store, "known", jpeg(23), "x")
    srv = Server(store, tmp_path / "server.log", "--timeout", "0.01")
    try:
        srv.wait_ready()
        big = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)).save(big, "PNG")
        r = httpx.post(srv.url + "/v1/match", content=big.getvalue(), timeout=60)
        assert r.status_code == 503 and _kind(r) == "timeout"
        assert httpx.get(srv.url + "/health", timeout=60).status_code in (200, 503)
    finally:
        srv.stop()
