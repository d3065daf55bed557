"""The OpenAPI document and a self-contained docs page, both built from the route table.

The docs page is plain HTML rendered here (no JavaScript from a CDN), so it works
offline and under a strict Content-Security-Policy.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ._common import Endpoint

__all__ = ["docs_html", "openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["kind", "message", "status"],
    "properties": {"kind": {"type": "string"}, "message": {"type": "string"}, "status": {"type": "integer"}},
}
_HASH = {
    "type": "object",
    "required": ["algorithm", "hash"],
    "properties": {"algorithm": {"type": "string", "example": "pdq"}, "hash": {"type": "string"},
                   "quality": {"type": ["integer", "null"], "minimum": 0, "maximum": 100}},
}
_BODIES: dict[str, dict[str, Any]] = {
    "image": {"image/*": {"schema": {"type": "string", "format": "binary"}},
              "multipart/form-data": {"schema": {"type": "object", "properties": {
                  "image": {"type": "string", "format": "binary"}}}}},
    "photo": {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "photo": {"type": "string", "format": "binary"}}}}},
    "images": {"multipart/form-data": {"schema": {"type": "object", "additionalProperties": {
        "type": "string", "format": "binary"}}}},
    "hashlist": {"text/plain": {"schema": {"type": "string"}},
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}}},
    "json": {"application/json": {"schema": {"type": "object"}}},
}
_ERRORS_BY_BODY = {
    "image": ("413", "415", "422"), "photo": ("400", "413", "415"), "images": ("413", "415", "422"),
    "hashlist": ("413", "422"), "json": ("413", "422"), None: (),
}


def openapi_document(endpoints: Sequence[Endpoint], *, keys: bool) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op: dict[str, Any] = {
            "summary": e.summary,
            "tags": [e.tag],
            "operationId": f"{e.method.lower()}_{e.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
            "responses": {"200": {"description": "OK"}},
            "x-role": e.role,
        }
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in _path_params(e.path)]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in e.query]
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": _BODIES[e.body]}
        codes = list(_ERRORS_BY_BODY[e.body])
        if e.role is not None:
            op["security"] = [{"bearer": [e.role]}] if keys else []
            op["description"] = f"Needs a key with the `{e.role}` role."
            codes += ["401", "403"]
        if e.role is not None or e.path == "/ready":
            codes.append("503")
        for code in codes:
            op["responses"][code] = {"description": "error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "hashmatch", "version": __version__,
                 "description": "Perceptual-hash matching against reference lists. Errors: "
                                "{kind, message, status}; reference hash values never appear in any response."},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, "Hash": _HASH},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def docs_html(document: dict[str, Any]) -> str:
    rows = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            role = op.get("x-role") or "open"
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(role)}</td><td>{html.escape(params)}</td><td>{html.escape(op['summary'])}</td></tr>"
            )
    info = document["info"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>hashmatch API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:left;"
        "border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>hashmatch API {html.escape(info['version'])}</h1><p>{html.escape(info['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Keys: "
        "<code>Authorization: Bearer &lt;key&gt;</code>.</p>"
        "<table><tr><th>method</th><th>path</th><th>role</th><th>parameters</th><th>what</th></tr>"
        + "".join(rows) + "</table></body></html>"
    )
