"""Curation routes (the ``curate`` role): lists, adds, retractions, imports.

Each write is one store transaction; this worker then refreshes its Matcher before
answering, so the caller's next request here sees the change, and every other
worker or process sees it within its refresh interval.
"""

from __future__ import annotations

import io
import time
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from .._hashlists import FORMATS
from .._store import NewEntry
from ..errors import UsageError
from ._common import Endpoint, ServiceState, json_response, parse_hash_list, read_json, run_blocking
from ._errors import ServiceError

__all__ = ["endpoints"]

_TEXT_MAX_LABEL = 1000


def _state(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]


def _list_name(request: Request) -> str:
    name = request.path_params["name"]
    if not name.strip() or len(name) > 200:
        raise ServiceError(422, "invalid_request", "a list name is 1 to 200 characters, not all spaces")
    return name


def _optional_text(item: dict[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > _TEXT_MAX_LABEL):
        raise ServiceError(422, "invalid_request", f"{where}.{key} must be a string of at most {_TEXT_MAX_LABEL} characters")
    return value


def _write(state: ServiceState, fn: Any) -> Any:
    """One store write, then this worker's refresh; both timed."""
    start = time.perf_counter()
    result = fn()
    state.metrics.stage.labels("store").observe(time.perf_counter() - start)
    state.refresh()
    return result


async def list_lists(request: Request) -> Response:
    state = _state(request)
    store = state.ready_store()

    def run() -> list[dict[str, Any]]:
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for row in store.stats():
            if row.algorithm:
                counts.setdefault(row.list_name, {})[row.algorithm] = {"active": row.active, "retracted": row.retracted}
        return [{"name": i.name, "source": i.source, "description": i.description, "created": i.created,
                 "algorithms": counts.get(i.name, {})} for i in store.lists()]

    return json_response({"lists": await run_blocking(run)})


async def add_entries(request: Request) -> Response:
    state = _state(request)
    store = state.ready_store()
    name = _list_name(request)
    body = await read_json(request)
    items = body.get("entries") if isinstance(body, dict) else None
    results = parse_hash_list(items, state.settings.max_batch * 16, "entries")
    entries = []
    for i, (item, result) in enumerate(zip(items, results)):  # type: ignore[arg-type]
        where = f"entries[{i}]"
        entries.append(NewEntry(result.hash, result.quality, _optional_text(item, "label", where),
                                _optional_text(item, "external_id", where)))

    def run() -> dict[str, Any]:
        report = _write(state, lambda: store.add_entries(name, entries))
        return {"list": name, "added": report.added, "duplicates": report.duplicates,
                "entry_ids": list(report.entry_ids), "generation": state.ready_matcher().generation}

    return json_response(await run_blocking(run))


async def retract(request: Request) -> Response:
    state = _state(request)
    store = state.ready_store()
    try:
        entry_id = int(request.path_params["entry_id"])
    except ValueError:
        raise ServiceError(404, "not_found", "an entry id is an integer") from None
    body = await read_json(request) if await request.body() else {}
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason is not None and (not isinstance(reason, str) or len(reason) > _TEXT_MAX_LABEL):
        raise ServiceError(422, "invalid_request", f"reason must be a string of at most {_TEXT_MAX_LABEL} characters")

    def run() -> dict[str, Any]:
        entry = store.get(entry_id)
        if entry is None:
            raise ServiceError(404, "not_found", f"no entry {entry_id}")
        count = _write(state, lambda: store.retract([entry_id], reason=reason))
        return {"entry_id": entry_id, "retracted": bool(count), "was_active": entry.retracted is None,
                "generation": state.ready_matcher().generation}

    return json_response(await run_blocking(run))


async def import_list(request: Request) -> Response:
    state = _state(request)
    store = state.ready_store()
    name = _list_name(request)
    params = request.query_params
    fmt = params.get("format", "auto")
    if fmt not in ("auto", *FORMATS):
        raise ServiceError(400, "invalid_request", f"format must be one of auto, {', '.join(FORMATS)}")
    strict = params.get("strict", "false").lower() in ("true", "1")
    algorithm = params.get("algorithm")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=8) as form:
            item = form.get("file")
            if not isinstance(item, UploadFile):
                raise ServiceError(422, "invalid_request", "the multipart body has no file field 'file'")
            raw = await item.read()
    else:
        raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ServiceError(422, "invalid_hash_list", "a hash list is UTF-8 text") from None

    def run() -> dict[str, Any]:
        report = _write(state, lambda: store.import_file(
            io.StringIO(text), name, algorithm=algorithm, format=fmt, strict=strict,
            source_name=params.get("source"), description=params.get("description"),
        ))
        return {"list": name, "added": report.added, "duplicates": report.duplicates,
                "rejected": [{"line": r.line, "reason": r.reason} for r in report.rejected],
                "generation": state.ready_matcher().generation}

    try:
        return json_response(await run_blocking(run))
    except UsageError as exc:
        raise ServiceError(422, "invalid_hash_list", str(exc)) from None


def endpoints() -> list[Endpoint]:
    return [
        Endpoint("GET", "/v1/lists", list_lists, "curate", "Lists with active and retracted counts per algorithm",
                 tag="curation"),
        Endpoint("POST", "/v1/lists/{name}/entries", add_entries, "curate", "Add hashes (with labels and "
                 "external ids) to a list, created when missing", body="json", tag="curation"),
        Endpoint("POST", "/v1/entries/{entry_id}/retract", retract, "curate", "Retract an entry (kept for "
                 "audit, never matched again), with a reason", body="json", tag="curation"),
        Endpoint("POST", "/v1/lists/{name}/import", import_list, "curate", "Import a hash-list file (raw body "
                 "or multipart field 'file'); bad rows come back with their line numbers", body="hashlist",
                 query=("format", "algorithm", "strict", "source", "description"), tag="curation"),
    ]
