"""HMA-compatible aliases, so clients of Meta's Hasher-Matcher-Actioner work unchanged.

Shapes follow HMA's OpenMediaMatch API: ``GET /status`` answers ``I-AM-ALIVE`` (plain
text; 503 ``INDEX-NOT-LOADED`` or ``INDEX-STALE`` otherwise); ``POST /h/hash`` takes a
multipart ``photo`` and answers ``{"pdq": HEX}``; ``GET /m/lookup?signal_type=pdq&signal=HEX``
answers ``{BANK: [{"bank_content_id": ID, "distance": "N"}]}`` (banks are our lists,
bank content ids our entry ids, distance a string as HMA prints it); ``POST /m/lookup``
with a multipart ``photo`` answers the same per signal type:
``{"pdq": {BANK: [...]}}``. The photo is matched exactly as ``/v1/match`` matches it
(every algorithm in use, rotations and mirrors, border trimming), so an upload gets
one verdict whichever route it came by. Errors keep the one JSON shape, whose
``message`` field is where HMA puts its own.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .._match import Match
from ..hashers import ALGORITHMS, compute_hashes
from ._common import Endpoint, ServiceState, json_response, match_upload, parse_hash_list, read_upload, run_blocking
from ._errors import ServiceError

__all__ = ["endpoints"]


def _state(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]


def _by_bank(matches: list[Match]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in matches:
        out.setdefault(m.list_name or "", []).append({"bank_content_id": m.entry_id, "distance": str(m.distance)})
    return out


async def status(request: Request) -> Response:
    state = _state(request)
    if state.matcher is None:
        return PlainTextResponse("INDEX-NOT-LOADED", 503)
    if state.metrics.refresh_age_seconds > state.settings.stale_after:
        return PlainTextResponse("INDEX-STALE", 503)
    return PlainTextResponse("I-AM-ALIVE")


async def hash_photo(request: Request) -> Response:
    state = _state(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ServiceError(400, "invalid_request", "Missing multipart/form-data file upload")
    data = await read_upload(request, state, "photo")
    names = [n for n in ("pdq",) if n in ALGORITHMS] or ["phash"]

    def run() -> dict[str, str]:
        results = compute_hashes(data, names, limits=state.limits)
        return {name: r[0].hash.hex() for name, r in results.items()}

    return json_response(await run_blocking(run))


async def lookup_get(request: Request) -> Response:
    state = _state(request)
    matcher = state.ready_matcher()
    signal_type = request.query_params.get("signal_type")
    signal = request.query_params.get("signal")
    if not signal_type or not signal:
        raise ServiceError(400, "invalid_request", "both signal and signal_type are required")
    hashes = parse_hash_list([{"algorithm": signal_type, "hash": signal}], 1, "signal")
    matches = await run_blocking(matcher.match_hashes, hashes)
    for m in matches:
        state.metrics.matches.labels(m.list_name or "").inc()
    return json_response(_by_bank(matches))


async def lookup_post(request: Request) -> Response:
    state = _state(request)
    matcher = state.ready_matcher()
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ServiceError(400, "invalid_request", "Missing multipart/form-data file upload")
    data = await read_upload(request, state, "photo")
    matches, _, _ = await run_blocking(match_upload, state, matcher, data)
    for m in matches:
        state.metrics.matches.labels(m.list_name or "").inc()
    out: dict[str, Any] = {name: {} for name in matcher.algorithms}
    for name in out:
        out[name] = _by_bank([m for m in matches if m.algorithm == name])
    return json_response(out)


def endpoints() -> list[Endpoint]:
    return [
        Endpoint("GET", "/status", status, None, "HMA: liveness and readiness as text (I-AM-ALIVE)", tag="hma"),
        Endpoint("POST", "/h/hash", hash_photo, "match", "HMA: hash a multipart 'photo' ({\"pdq\": HEX})",
                 body="photo", tag="hma"),
        Endpoint("GET", "/m/lookup", lookup_get, "match", "HMA: look up one hash, by bank",
                 query=("signal_type", "signal"), tag="hma"),
        Endpoint("POST", "/m/lookup", lookup_post, "match", "HMA: match a multipart 'photo', by signal type and "
                 "bank", body="photo", tag="hma"),
    ]
