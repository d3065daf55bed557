"""Pure ASGI middleware: metrics, the body-size limit, the request timeout.

They wrap the app outside Starlette's exception handling, so each answers its own
errors in the one JSON shape (:mod:`._errors`).
"""

from __future__ import annotations

import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import ServiceError, error_response
from ._metrics import ServiceMetrics

__all__ = ["BodyLimitMiddleware", "MetricsMiddleware", "TimeoutMiddleware"]


class MetricsMiddleware:
    """Counts requests and times them per route template (never per raw path)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "(unmatched)"
            self.metrics.requests.labels(label, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)


class BodyLimitMiddleware:
    """Refuses a body over ``limit`` bytes: by its Content-Length before reading any of
    it, or, when streamed without one, as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.limit:
                    message = (f"the body is over the limit of {self.limit} bytes" if declared > self.limit
                               else "Content-Length is not a number")
                    status, kind = (413, "body_too_large") if declared > self.limit else (400, "invalid_request")
                    response = error_response(status, kind, message, {"Connection": "close"})
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ServiceError(413, "body_too_large", f"the body is over the limit of {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


class TimeoutMiddleware:
    """Answers 503 ``timeout`` when a request runs longer than ``seconds``.

    Blocking work runs in threads that are abandoned on cancellation (a thread cannot
    be interrupted): its result is dropped and the client gets its answer on time.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            with anyio.fail_after(self.seconds):
                await self.app(scope, receive, send_wrapper)
        except TimeoutError:
            if started[0]:
                return  # the response is under way: nothing more can be said
            response = error_response(503, "timeout", f"the request took longer than {self.seconds:g} s")
            await response(scope, receive, send)
