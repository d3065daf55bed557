"""What the routes share: the per-app state, reading uploads, JSON shapes, threads.

The one place where the service turns an upload into hashes is :func:`query_views`;
everything about matching stays in :class:`hashmatch.Matcher`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._hashlists import expected_bits
from .._loading import ImageLimits
from .._match import Match, Matcher
from .._store import ReferenceStore
from ..errors import InvalidHashError
from .._query import View
from ..hashers import HashResult
from ..hashes import Hash
from ._auth import KeyRing
from ._errors import ServiceError
from ._metrics import ServiceMetrics
from ._settings import ServiceSettings, is_loopback

__all__ = ["Endpoint", "ServiceState", "match_json", "match_upload", "parse_hash_list", "query_views", "read_upload", "run_blocking"]

_log = logging.getLogger("hashmatch.service")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: what it answers, who may call it, what the OpenAPI document says."""

    method: str
    path: str
    handler: Callable[[Request], Awaitable[Response]]
    role: str | None  # None: open to anyone (liveness, readiness, docs)
    summary: str
    body: str | None = None  # "image", "images", "json", "hashlist"
    query: tuple[str, ...] = ()
    tag: str = "hashmatch"


class ServiceState:
    """Everything one worker's app holds: settings, keys, matcher, store, metrics."""

    def __init__(self, settings: ServiceSettings, keys: KeyRing) -> None:
        self.settings = settings
        self.keys = keys
        self.metrics = ServiceMetrics()
        self.limits = ImageLimits(max_pixels=settings.max_pixels, max_file_bytes=settings.max_body_bytes)
        self.matcher: Matcher | None = None
        self.store: ReferenceStore | None = None
        self.list_count = 0
        self.load_error: str | None = None
        self.loaded_in: float | None = None
        self.pid = os.getpid()

    # -- readiness and auth -------------------------------------------------------------
    def ready_matcher(self) -> Matcher:
        if self.matcher is None:
            raise ServiceError(503, "not_ready", self.load_error or "the indexes are still loading")
        return self.matcher

    def ready_store(self) -> ReferenceStore:
        self.ready_matcher()
        if self.store is None:  # pragma: no cover - set together with the matcher
            raise ServiceError(503, "not_ready", "the store is not open")
        return self.store

    def authorize(self, request: Request, role: str | None) -> None:
        if role is None:
            return
        if not self.keys:
            client = request.client.host if request.client is not None else None
            if not self.settings.insecure_no_auth and not is_loopback(client):
                raise ServiceError(403, "forbidden", "no keys are configured: only loopback clients are served")
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ServiceError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
        key = self.keys.find(token.strip())
        if key is None:
            raise ServiceError(401, "unauthorized", "unknown API key")
        if role not in key.roles:
            raise ServiceError(403, "forbidden", f"this key does not have the {role!r} role")

    # -- loading and refreshing ------------------------------------------------------------
    def load(self) -> None:
        start = time.perf_counter()
        s = self.settings
        # Matching workers never write the store; `hashmatch serve` cached the index
        # snapshots once before starting them, so each loads those instead of rebuilding.
        matcher = Matcher.from_store(
            s.store, algorithms=s.algorithms, dihedral=s.dihedral, trim_borders=s.trim_borders, limits=self.limits,
            readonly=False,
        )
        matcher.warmup()
        self.store = ReferenceStore(s.store, create=False)  # curation writes and list names
        self.matcher = matcher
        self.loaded_in = time.perf_counter() - start
        self._after_refresh()
        self.metrics.ready.set(1)
        _log.info("ready: generation %d, %d references, loaded in %.2f s",
                  matcher.generation, len(matcher), self.loaded_in)

    def refresh(self) -> bool:
        matcher = self.ready_matcher()
        start = time.perf_counter()
        changed = matcher.refresh()
        if changed:
            self.metrics.stage.labels("refresh").observe(time.perf_counter() - start)
        self._after_refresh(changed)
        return changed

    def _after_refresh(self, changed: bool = True) -> None:
        matcher = self.matcher
        if matcher is None:
            return
        if changed and self.store is not None:
            self.list_count = len(self.store.lists())
        self.metrics.refreshed(matcher.generation, index_sizes(matcher))

    def close(self) -> None:
        if self.matcher is not None:
            self.matcher.close()
        if self.store is not None:
            self.store.close()


def index_sizes(matcher: Matcher) -> dict[str, int]:
    """References that can match, per algorithm."""
    return dict(matcher.counts)


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU or SQLite work in a worker thread; on timeout the thread is abandoned."""
    return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


async def read_upload(request: Request, state: ServiceState, field: str) -> bytes:
    """The upload: the multipart field ``field``, or else the raw body."""
    start = time.perf_counter()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=16) as form:
            item = form.get(field)
            if not isinstance(item, UploadFile):
                raise ServiceError(422, "invalid_request", f"the multipart body has no file field {field!r}")
            data = await item.read()
    else:
        data = await request.body()
    state.metrics.stage.labels("read_body").observe(time.perf_counter() - start)
    return data


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ServiceError(422, "invalid_request", f"the body is not JSON: {exc}") from None


def query_views(matcher: Matcher, data: bytes) -> list[View]:
    """The upload's hashes, by the Matcher's query spec (the one owner of how an upload
    becomes hashes, so the service gives the verdict ``Matcher.match`` gives)."""
    if not matcher.algorithms:
        return [{}]
    return matcher.spec.hash(data)


def match_json(match: Match) -> dict[str, Any]:
    """A Match for a response: no hash values, ever (a Match holds none)."""
    return {
        "entry_id": match.entry_id,
        "list": match.list_name,
        "label": match.label,
        "external_id": match.external_id,
        "algorithm": match.algorithm,
        "distance": match.distance,
        "orientation": match.orientation,
        "stage": match.stage,
        **({"evidence": {"inliers": match.inliers, "coverage": match.coverage, "scale": match.scale,
                         "rotation": match.rotation, "crop_box": match.crop_box}} if match.stage == "local" else {}),
    }


def upload_hashes_json(views: Sequence[Mapping[str, Sequence[HashResult]]]) -> dict[str, Any]:
    """The upload's own hashes (the image as it is, unrotated): only on request."""
    if not views:
        return {}
    return {name: {"hash": results[0].hash.hex(), "quality": results[0].quality}
            for name, results in views[0].items() if results}


def parse_hash_list(items: object, limit: int, where: str = "hashes") -> list[HashResult]:
    """``[{"algorithm": "pdq", "hash": "…", "quality": 90}, …]`` as HashResults."""
    if not isinstance(items, list) or not items:
        raise ServiceError(422, "invalid_request", f"{where} must be a non-empty list")
    if len(items) > limit:
        raise ServiceError(422, "invalid_request", f"{where} holds {len(items)} items; the limit is {limit}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("algorithm"), str):
            raise ServiceError(422, "invalid_hashes", f"{where}[{i}] must be an object with 'algorithm' and 'hash'")
        name = item["algorithm"]
        quality = item.get("quality")
        if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100):
            raise ServiceError(422, "invalid_hashes", f"{where}[{i}]: quality must be an integer 0-100 or null")
        bits = expected_bits(name)  # UnknownAlgorithmError for a name nobody knows
        try:
            h = Hash.from_hex(item.get("hash"), algorithm=name, bits=bits)  # type: ignore[arg-type]
        except InvalidHashError:
            # The library's message quotes the text; a curator's text may be a reference hash.
            raise InvalidHashError(
                f"{where}[{i}]: not a {name} hash (expected {(bits + 3) // 4} hexadecimal digits)"
            ) from None
        out.append(HashResult(h, quality))
    return out


def json_response(payload: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(dict(payload), status_code=status)


def match_upload(state: ServiceState, matcher: Matcher, data: bytes) -> tuple[list[Match], Any, int]:
    """Hash and match one upload: (matches, the upload's views, generation before)."""
    g0 = matcher.generation
    start = time.perf_counter()
    views = query_views(matcher, data)
    hashed = time.perf_counter()
    matches = matcher.match_views(views) if views[0] else []
    matched = time.perf_counter()
    local = matcher.match_local(data, matches)
    state.metrics.stage.labels("hash").observe(hashed - start)
    state.metrics.stage.labels("match").observe(matched - hashed)
    if matcher.has_local_stage:  # timed whether or not it found anything
        state.metrics.stage.labels("local").observe(time.perf_counter() - matched)
    matches += local
    return matches, views, g0
