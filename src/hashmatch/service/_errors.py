"""One JSON error shape for every failure, with a stable ``kind``.

Every error response is ``{"kind": KIND, "message": TEXT, "status": CODE}`` (HMA
clients read ``message``, which HMA's own errors carry too). Kinds, by status:

====  ======================  ===================================================
400   ``invalid_request``     malformed multipart, bad query parameter
400   ``client_disconnected`` the client left mid-body (nobody reads this answer)
401   ``unauthorized``        no key, or a key that is not in the keys file
403   ``forbidden``           the key lacks the route's role; a non-loopback
                              client while no keys are configured
404   ``not_found``           no such route or entry
405   ``method_not_allowed``
413   ``body_too_large``      the body is over ``max_body_bytes`` (checked while
                              streaming, before it is all read)
413   ``image_too_large``     the image is over the pixel limit
415   ``unreadable_image``    not an image, truncated, or an unsupported format
422   ``invalid_hashes``      a hash that does not parse, of an unknown algorithm
                              or of the wrong length
422   ``invalid_hash_list``   an import that cannot be read at all (or a bad row
                              with ``strict``)
422   ``invalid_request``     a JSON body of the wrong shape
500   ``internal``            a bug: the message says nothing more
503   ``not_ready``           the indexes are still loading
503   ``store_unavailable``   the reference store cannot be read or written
503   ``timeout``             the request took longer than ``request_timeout``
====  ======================  ===================================================

Bad input never gives a 5xx. Messages come from the library's own errors, which
never quote a reference hash.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from ..errors import (
    HashListError,
    HashmatchError,
    ImageTooLargeError,
    IncompatibleHashError,
    InvalidHashError,
    StoreError,
    UnknownAlgorithmError,
    UnreadableImageError,
)

__all__ = ["ServiceError", "error_response", "handle_exception"]

_log = logging.getLogger("hashmatch.service")

_HTTP_KINDS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "body_too_large", 415: "unreadable_image"}


class ServiceError(Exception):
    """An error the service answers with: status, kind and message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"kind": kind, "message": message, "status": status}, status_code=status, headers=headers)


def classify(exc: BaseException) -> ServiceError:
    """The service's answer to an exception raised while handling a request."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, HTTPException):
        return ServiceError(exc.status_code, _HTTP_KINDS.get(exc.status_code, "invalid_request"), str(exc.detail))
    if isinstance(exc, ClientDisconnect):  # nobody is listening; said for the metrics only
        return ServiceError(400, "client_disconnected", "the client disconnected before sending the whole body")
    if isinstance(exc, ImageTooLargeError):
        return ServiceError(413, "image_too_large", str(exc))
    if isinstance(exc, UnreadableImageError):
        return ServiceError(415, "unreadable_image", str(exc))
    if isinstance(exc, (InvalidHashError, IncompatibleHashError, UnknownAlgorithmError)):
        return ServiceError(422, "invalid_hashes", str(exc))
    if isinstance(exc, HashListError):
        return ServiceError(422, "invalid_hash_list", str(exc))
    if isinstance(exc, StoreError):
        return ServiceError(503, "store_unavailable", str(exc))
    if isinstance(exc, HashmatchError):
        return ServiceError(422, "invalid_request", str(exc))
    return ServiceError(500, "internal", "internal error")


async def handle_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's exception handler for everything: one shape, one place."""
    error = classify(exc)
    if error.status >= 500 and error.kind == "internal":
        # The traceback names code and types, never request bodies or reference hashes.
        _log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return error_response(error.status, error.kind, error.message, headers)
