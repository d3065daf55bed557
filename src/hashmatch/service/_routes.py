"""Core and ``/v1`` matching routes: small functions over the library."""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from .._match import Match, Matcher
from .._rematch import entries_added_since, new_matches
from ..errors import HashmatchError, UsageError
from ..hashers import ALGORITHMS, compute_hashes
from ._common import (
    Endpoint,
    ServiceState,
    json_response,
    match_json,
    match_upload,
    parse_hash_list,
    read_json,
    read_upload,
    run_blocking,
    upload_hashes_json,
)
from ._errors import ServiceError, classify
from ._metrics import CONTENT_TYPE_LATEST

__all__ = ["endpoints"]


def _state(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "1", "false", "0"):
        raise ServiceError(400, "invalid_request", f"{name} must be true or false")
    return value in ("true", "1")


def _matched(state: ServiceState, matcher: Matcher, matches: list[Match], g0: int) -> dict[str, Any]:
    for m in matches:
        state.metrics.matches.labels(m.list_name or "").inc()
    out: dict[str, Any] = {"matched": bool(matches), "matches": [match_json(m) for m in matches],
                           "generation": matcher.generation}
    if out["generation"] != g0:  # a refresh landed during the query: it ran on one of these
        out["generation_from"] = g0
    return out


# -- core ------------------------------------------------------------------------------
async def health(request: Request) -> Response:
    return json_response({"status": "alive"})


async def ready(request: Request) -> Response:
    state = _state(request)
    matcher = state.matcher
    if matcher is None:
        return json_response({"ready": False, "worker": state.pid, "error": state.load_error}, 503)
    return json_response({
        "ready": True,
        "worker": state.pid,
        "generation": matcher.generation,
        "lists": state.list_count,
        "entries": len(matcher),
        "algorithms": list(matcher.algorithms),
        "refresh_age_seconds": round(state.metrics.refresh_age_seconds, 3),
        "loaded_in_seconds": round(state.loaded_in or 0.0, 3),
    })


async def metrics(request: Request) -> Response:
    return Response(_state(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# -- matching --------------------------------------------------------------------------
async def match(request: Request) -> Response:
    state = _state(request)
    matcher = state.ready_matcher()
    include = _flag(request, "include_hashes")
    data = await read_upload(request, state, "image")
    matches, views, g0 = await run_blocking(match_upload, state, matcher, data)
    out = _matched(state, matcher, matches, g0)
    if include:
        out["hashes"] = upload_hashes_json(views)
    return json_response(out)


async def match_batch(request: Request) -> Response:
    state = _state(request)
    matcher = state.ready_matcher()
    include = _flag(request, "include_hashes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ServiceError(415, "unreadable_image", "send the images as multipart/form-data file fields")
    limit = state.settings.max_batch
    async with request.form(max_files=limit, max_fields=limit) as form:
        uploads = [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise ServiceError(422, "invalid_request", "the multipart body holds no file fields")
        items = [(value.filename or key, await value.read()) for key, value in uploads]

    def run() -> list[dict[str, Any]]:
        results = []
        for name, data in items:
            try:
                matches, views, g0 = match_upload(state, matcher, data)
            except HashmatchError as exc:  # one bad image: reported in its place, the rest go on
                error = classify(exc)
                results.append({"name": name, "error": {"kind": error.kind, "message": error.message,
                                                        "status": error.status}})
                continue
            row = {"name": name, **_matched(state, matcher, matches, g0)}
            if include:
                row["hashes"] = upload_hashes_json(views)
            results.append(row)
        return results

    return json_response({"results": await run_blocking(run)})


async def lookup(request: Request) -> Response:
    state = _state(request)
    matcher = state.ready_matcher()
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ServiceError(422, "invalid_request", 'the body must be {"hashes": [...]}')
    hashes = parse_hash_list(body.get("hashes"), state.settings.max_batch)

    def run() -> tuple[list[Match], int]:
        g0 = matcher.generation
        start = time.perf_counter()
        found = matcher.match_hashes(hashes)
        state.metrics.stage.labels("match").observe(time.perf_counter() - start)
        return found, g0

    matches, g0 = await run_blocking(run)
    return json_response(_matched(state, matcher, matches, g0))


async def hash_image(request: Request) -> Response:
    state = _state(request)
    matcher = state.ready_matcher()
    asked = request.query_params.get("algorithms")
    if asked is not None:
        names = [n.strip() for n in asked.split(",") if n.strip()]
        unknown = [n for n in names if n not in ALGORITHMS]
        if not names or unknown:
            raise ServiceError(400, "invalid_request", f"unknown algorithm(s) {unknown or '(none)'}; "
                               f"known: {', '.join(sorted(ALGORITHMS))}")
    else:
        names = list(matcher.algorithms) or [n for n in ("pdq", "phash") if n in ALGORITHMS]
    data = await read_upload(request, state, "image")

    def run() -> dict[str, Any]:
        start = time.perf_counter()
        results = compute_hashes(data, names, limits=state.limits)
        state.metrics.stage.labels("hash").observe(time.perf_counter() - start)
        return {name: {"hash": r[0].hash.hex(), "quality": r[0].quality} for name, r in results.items()}

    return json_response({"hashes": await run_blocking(run)})


async def rematch(request: Request) -> Response:
    state = _state(request)
    matcher = state.ready_matcher()
    store = state.ready_store()
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("uploads"), list) or not body["uploads"]:
        raise ServiceError(422, "invalid_request", 'the body must be {"uploads": [{"id": …, "hashes": […]}, …]}')
    uploads = body["uploads"]
    since = body.get("since_generation")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise ServiceError(422, "invalid_request", "since_generation must be a non-negative integer")
    if len(uploads) > state.settings.max_batch:
        raise ServiceError(422, "invalid_request", f"at most {state.settings.max_batch} uploads per request")

    def run() -> dict[str, Any]:
        only = None if since is None else entries_added_since(store, since)
        results = []
        for i, upload in enumerate(uploads):
            key = upload.get("id") if isinstance(upload, dict) else None
            try:
                if not isinstance(upload, dict):
                    raise UsageError(f"uploads[{i}] must be an object")
                known = upload.get("known_entry_ids", [])
                if not isinstance(known, list) or not all(isinstance(k, int) for k in known):
                    raise UsageError(f"uploads[{i}].known_entry_ids must be a list of integers")
                hashes = parse_hash_list(upload.get("hashes"), state.settings.max_batch, f"uploads[{i}].hashes")
                found = new_matches(matcher, hashes, known_ids=known, only_ids=only)
            except (HashmatchError, ServiceError) as exc:
                error = classify(exc)
                results.append({"id": key, "error": {"kind": error.kind, "message": error.message,
                                                     "status": error.status}})
                continue
            if found:
                results.append({"id": key, "matches": [match_json(m) for m in found]})
        return {"generation": matcher.generation, "uploads": len(uploads), "results": results}

    return json_response(await run_blocking(run))


def endpoints() -> list[Endpoint]:
    return [
        Endpoint("GET", "/health", health, None, "Liveness: 200 while the process serves HTTP", tag="core"),
        Endpoint("GET", "/ready", ready, None, "Readiness: 200 once the indexes are loaded, with counts and "
                 "the store generation this worker serves; 503 before", tag="core"),
        Endpoint("GET", "/metrics", metrics, "match", "Prometheus metrics", tag="core"),
        Endpoint("POST", "/v1/match", match, "match", "Match an image (raw body or multipart field 'image')",
                 body="image", query=("include_hashes",)),
        Endpoint("POST", "/v1/match/batch", match_batch, "match", "Match several images (multipart file "
                 "fields); a bad image gets its error in its place", body="images", query=("include_hashes",)),
        Endpoint("POST", "/v1/lookup", lookup, "match", "Match precomputed hashes", body="json"),
        Endpoint("POST", "/v1/hash", hash_image, "match", "Hash an image, match nothing", body="image",
                 query=("algorithms",)),
        Endpoint("POST", "/v1/rematch", rematch, "match", "Re-match hashes a platform logged; only new "
                 "matches (entries added after since_generation, not in known_entry_ids)", body="json"),
    ]


