"""``hashmatch serve``: the HTTP matching service under uvicorn (``hashmatch[serve]``)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import click

from .._match import Matcher
from .._store import store_is_writable
from ..errors import MissingDependencyError, StoreError, UsageError

_EXTRA = "pip install 'hashmatch[serve]'"


def _service_modules():  # type: ignore[no-untyped-def]
    try:
        import uvicorn

        from .. import service
    except MissingDependencyError:
        raise
    except ImportError as exc:
        name = getattr(exc, "name", None) or "a dependency"
        raise MissingDependencyError(f"hashmatch serve needs the serve extra ({name} is missing): {_EXTRA}") from None
    return service, uvicorn


def _check_bind(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@click.command("serve")
@click.option("--store", "store_path", default=None, envvar="HASHMATCH_STORE", type=click.Path(dir_okay=False),
              help="The reference store to serve; also $HASHMATCH_STORE.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes; each loads the indexes and refreshes them itself.")
@click.option("--keys", "keys_file", default=None, type=click.Path(dir_okay=False),
              help="API keys file (NAME ROLES sha256:HEX per line). Without it only loopback is served.")
@click.option("--insecure-no-auth", is_flag=True, help="Serve a non-loopback address without keys.")
@click.option("--max-body", default=32 * 1024 * 1024, show_default=True, type=click.IntRange(1),
              help="Largest request body in bytes.")
@click.option("--max-pixels", default=89_478_485, show_default=True, type=click.IntRange(1),
              help="Largest decoded image (width x height).")
@click.option("--timeout", "request_timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds before a request is answered 503 timeout.")
@click.option("--refresh-interval", default=0.25, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds between checks of the store for adds and retractions.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Threads per worker for hashing, matching and the store.")
@click.option("--make-key", "make_key_spec", default=None, metavar="NAME:ROLES",
              help="Print a new key (stderr, shown once) and its keys-file line (stdout), then exit.")
def serve_command(
    store_path: str | None, host: str, port: int, workers: int, keys_file: str | None, insecure_no_auth: bool,
    max_body: int, max_pixels: int, request_timeout: float, refresh_interval: float, threads: int,
    make_key_spec: str | None,
) -> int:
    """Serve matching over HTTP: /v1/match, /v1/lookup, curation, HMA-compatible routes, /metrics.

    Docs at /docs, the OpenAPI document at /openapi.json. Stops on Ctrl-C.
    """
    service, uvicorn = _service_modules()
    if make_key_spec is not None:
        key, line = service.make_key(make_key_spec)
        click.echo(f"new key (shown once, keep it secret): {key}", err=True)
        click.echo(line)
        return 0
    if store_path is None:
        raise UsageError("give the reference store with --store (or $HASHMATCH_STORE)")
    if not os.path.isfile(store_path):
        raise StoreError(f"no reference store at {store_path}")
    # A file that is not a store fails here, in one line. When this process may write,
    # it caches the index snapshots once (the local stage's too): the workers load
    # them, instead of each rebuilding every index at start-up.
    with Matcher.from_store(store_path, readonly=not store_is_writable(store_path)):
        pass
    loopback = service.is_loopback(host)
    if keys_file is None and not loopback and not insecure_no_auth:
        raise UsageError(f"refusing to serve {host} without keys: give --keys FILE, bind 127.0.0.1, "
                         "or pass --insecure-no-auth")
    settings = service.ServiceSettings(
        store=os.path.abspath(store_path), keys_file=None if keys_file is None else os.path.abspath(keys_file),
        insecure_no_auth=insecure_no_auth, max_body_bytes=max_body, max_pixels=max_pixels,
        request_timeout=request_timeout,
        refresh_interval=refresh_interval, threads=threads,
    )
    keys = service.KeyRing.load(settings.keys_file)  # a bad keys file fails before any worker starts
    _check_bind(host, port)
    os.environ[service.SETTINGS_ENV] = settings.to_json()
    metrics_dir = None
    if workers > 1:  # one /metrics over all workers (prometheus_client's multiprocess mode)
        metrics_dir = tempfile.mkdtemp(prefix="hashmatch-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    auth = (f"{len(keys)} key(s) from {keys_file}" if keys else
            "no keys: without authentication, " + ("for every client (--insecure-no-auth)" if insecure_no_auth
                                                    else "for loopback clients only"))
    click.echo(f"hashmatch: serving {store_path} on http://{host}:{port} with {workers} worker(s); {auth}", err=True)
    try:
        uvicorn.run(
            "hashmatch.service:app_from_env", factory=True, host=host, port=port, workers=workers,
            access_log=False, log_level="warning", lifespan="on", timeout_graceful_shutdown=10,
        )
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise click.ClickException(f"the server stopped with status {exc.code} (see the log above)") from None
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
