"""The app factory: routes, middleware, one exception handler, and the lifespan that
loads the Matcher and keeps it fresh."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import HashmatchError
from . import _curation, _hma, _routes
from ._auth import KeyRing
from ._common import Endpoint, ServiceState, run_blocking
from ._errors import ServiceError, handle_exception
from ._middleware import BodyLimitMiddleware, MetricsMiddleware, TimeoutMiddleware
from ._openapi import docs_html, openapi_document
from ._settings import ServiceSettings

__all__ = ["app_from_env", "create_app"]

_log = logging.getLogger("hashmatch.service")


def _guarded(endpoint: Endpoint, state: ServiceState) -> Route:
    role, handler = endpoint.role, endpoint.handler

    async def guarded(request: Request) -> Response:
        state.authorize(request, role)
        return await handler(request)

    return Route(endpoint.path, guarded, methods=[endpoint.method], name=f"{endpoint.method} {endpoint.path}")


async def _keep_fresh(state: ServiceState) -> None:
    """Load the indexes, then check the store for changes every refresh interval."""
    try:
        await run_blocking(state.load)
    except HashmatchError as exc:
        state.load_error = f"loading the indexes failed: {exc}"
        _log.error("%s", state.load_error)
        return
    interval = state.settings.refresh_interval
    while True:
        await anyio.sleep(interval)
        try:
            await run_blocking(state.refresh)
        except HashmatchError as exc:  # a locked or vanished store: keep serving what we have
            _log.warning("refresh failed (still serving generation %s): %s",
                         state.matcher.generation if state.matcher else "-", exc)


def create_app(settings: ServiceSettings) -> Starlette:
    """The service as an ASGI app, for uvicorn or to mount in another server.

    The indexes load in the background after start-up: ``/health`` answers at once,
    ``/ready`` (and matching) once they are loaded. Keys are read here, so a bad
    keys file fails at once.
    """
    keys = KeyRing.load(settings.keys_file)
    state = ServiceState(settings, keys)
    endpoints = [*_routes.endpoints(), *_curation.endpoints(), *_hma.endpoints()]
    document = openapi_document(endpoints, keys=bool(keys))
    page = docs_html(document)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not keys:
            _log.warning("no API keys configured: serving %s clients without authentication",
                         "all" if settings.insecure_no_auth else "loopback")
        # CPU-bound work gains nothing from more threads than a few per core, and each
        # thread holds a malloc arena and an SQLite connection: bound them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        async with anyio.create_task_group() as group:
            group.start_soon(_keep_fresh, state)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
        state.close()

    routes = [_guarded(e, state) for e in endpoints]
    routes += [Route("/openapi.json", openapi, methods=["GET"]), Route("/docs", docs, methods=["GET"])]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(MetricsMiddleware, metrics=state.metrics),
            Middleware(BodyLimitMiddleware, limit=settings.max_body_bytes),
            Middleware(TimeoutMiddleware, seconds=settings.request_timeout),
        ],
        exception_handlers={
            ServiceError: handle_exception,
            HTTPException: handle_exception,
            HashmatchError: handle_exception,
            ClientDisconnect: handle_exception,
            Exception: handle_exception,
        },
        lifespan=lifespan,
    )
    app.state.service = state
    return app


def app_from_env() -> Starlette:
    """uvicorn's factory for ``hashmatch serve``: settings from the environment."""
    return create_app(ServiceSettings.from_env())
