"""What a service instance is configured with; passed to :func:`create_app`.

Settings cross process boundaries (``hashmatch serve --workers N`` starts uvicorn
workers that each build their own app), so they round-trip through JSON in one
environment variable rather than through pickling.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, fields

from ..errors import UsageError

__all__ = ["SETTINGS_ENV", "ServiceSettings", "is_loopback"]

SETTINGS_ENV = "HASHMATCH_SERVE_SETTINGS"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Configuration of one service app.

    Attributes:
        store: the reference store (SQLite file); it must exist.
        keys_file: API keys (see :mod:`hashmatch.service._auth` for the format), or
            None: then the app answers loopback clients only, without keys.
        insecure_no_auth: with no keys, answer clients from any address (a deployment
            whose network already authenticates its callers).
        max_body_bytes: largest request body; a bigger one is refused (413) as soon
            as its ``Content-Length`` or the bytes streamed so far exceed it.
        max_pixels: decoded image size limit (width × height), as in the library.
        request_timeout: seconds before a request is answered 503 ``timeout``.
        refresh_interval: seconds between checks of the store for changes.
        max_batch: most images in one ``/v1/match/batch`` request, most hashes in one
            lookup, most uploads in one rematch.
        stale_after: seconds without a successful refresh before ``/status`` reports
            the index stale (HMA's convention).
        threads: worker threads per process for hashing, matching and SQLite; each
            keeps its own malloc arena and SQLite connection, so this bounds memory.
        algorithms, dihedral, trim_borders: passed to the Matcher.
    """

    store: str
    keys_file: str | None = None
    insecure_no_auth: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 89_478_485
    request_timeout: float = 30.0
    refresh_interval: float = 0.25
    max_batch: int = 64
    stale_after: float = 65.0
    threads: int = 8
    algorithms: tuple[str, ...] | None = None
    dihedral: bool = True
    trim_borders: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.store, str) or not self.store:
            raise UsageError("settings.store must name a reference store file")
        for name in ("max_body_bytes", "max_pixels", "max_batch", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UsageError(f"settings.{name} must be a positive integer, got {value!r}")
        for name in ("request_timeout", "refresh_interval", "stale_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise UsageError(f"settings.{name} must be a positive number of seconds, got {value!r}")
        if self.algorithms is not None:
            object.__setattr__(self, "algorithms", tuple(self.algorithms))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"service settings are not JSON: {exc}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise UsageError(f"service settings hold unknown fields: {sorted(set(data) - known)}")
        return cls(**data)

    @classmethod
    def from_env(cls) -> ServiceSettings:
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise UsageError(f"${SETTINGS_ENV} is not set: start the service with `hashmatch serve`")
        return cls.from_json(text)


def is_loopback(host: str | None) -> bool:
    """True for a loopback address or ``localhost`` (what no-key mode may serve)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
