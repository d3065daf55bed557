"""``hashmatch serve``: matching over HTTP (the ``hashmatch[serve]`` extra).

:func:`create_app` builds a Starlette app from :class:`ServiceSettings`; uvicorn runs
it (``hashmatch serve``), or a platform mounts it in its own ASGI server. The service
holds no matching logic: routes are small functions over :class:`hashmatch.Matcher`
and :class:`hashmatch.ReferenceStore`. Errors: :mod:`hashmatch.service._errors`;
keys: :mod:`hashmatch.service._auth`.
"""

from __future__ import annotations

from ..errors import MissingDependencyError

try:
    import python_multipart  # noqa: F401  (Starlette needs it for forms)
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise MissingDependencyError(
        f"the service needs the serve extra ({exc.name} is missing): pip install 'hashmatch[serve]'"
    ) from None

from ._app import app_from_env, create_app
from ._auth import KeyRing, make_key
from ._settings import SETTINGS_ENV, ServiceSettings, is_loopback

__all__ = ["SETTINGS_ENV", "KeyRing", "ServiceSettings", "app_from_env", "create_app", "is_loopback", "make_key"]
