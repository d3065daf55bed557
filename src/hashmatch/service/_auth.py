"""API keys: the keys file, hashing at rest, and the role check.

The keys file is UTF-8 text, one key per line, three fields separated by whitespace::

    # name      roles          digest of the key
    edge-eu     match          sha256:5d41402abc4b2a76b9719d911017c592...
    curators    match,curate   sha256:7c222fb2927d828af22f592134e89324...

``roles`` is ``match`` (matching, hashing, lookup, HMA routes, metrics), ``curate``
(lists, adds, retractions, imports) or both, comma-separated. Blank lines and lines
starting with ``#`` are ignored. ``hashmatch serve --make-key NAME:ROLES`` prints a
fresh key once (stderr) and its line for the file (stdout).

Only SHA-256 digests of keys are stored: a stolen keys file does not give the keys
away. A slow password hash (scrypt) is not used because keys are 256-bit random
tokens, which no dictionary attack can guess, and a slow hash on every request
would cost more than matching. Clients send ``Authorization: Bearer <key>``. Keys
and digests are never logged or echoed in errors; errors name the line number only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["ROLES", "ApiKey", "KeyRing", "make_key"]

ROLES = ("match", "curate")
_PREFIX = "sha256:"


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    roles: frozenset[str]
    digest: bytes

    def __repr__(self) -> str:  # the digest stays out of logs and tracebacks
        return f"ApiKey(name={self.name!r}, roles={sorted(self.roles)!r})"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _parse_roles(text: str, where: str) -> frozenset[str]:
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = sorted(roles - set(ROLES))
    if not roles or unknown:
        raise UsageError(f"{where}: roles must be {' or '.join(ROLES)} (comma-separated), got {text!r}")
    return roles


class KeyRing:
    """The keys a service accepts; empty means no authentication (loopback only)."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_digest = {k.digest: k for k in keys}
        if len(self._by_digest) != len(keys):
            raise UsageError("the keys file lists the same key twice")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> KeyRing:
        if path is None:
            return cls([])
        where = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read keys file {where}: {getattr(exc, 'strerror', None) or exc}") from None
        keys = []
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            at = f"{where} line {number}"
            if len(parts) != 3 or not parts[2].startswith(_PREFIX):
                raise UsageError(f"{at}: expected NAME ROLES sha256:HEX")
            hex_digest = parts[2][len(_PREFIX):]
            try:
                digest = bytes.fromhex(hex_digest)
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise UsageError(f"{at}: the digest must be 64 hex digits after 'sha256:'")
            keys.append(ApiKey(parts[0], _parse_roles(parts[1], at), digest))
        if not keys:
            raise UsageError(f"{where} holds no keys")
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    def find(self, token: str) -> ApiKey | None:
        """The key whose digest is the token's, or None."""
        digest = _digest(token)
        key = self._by_digest.get(digest)
        # The dict lookup is on a digest the caller cannot steer; compare again in
        # constant time so no byte-by-byte timing of the stored digest leaks.
        if key is not None and hmac.compare_digest(key.digest, digest):
            return key
        return None


def make_key(spec: str) -> tuple[str, str]:
    """A fresh key for ``NAME:ROLES``: ``(key, line for the keys file)``."""
    name, sep, roles_text = spec.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise UsageError(f"--make-key takes NAME:ROLES (e.g. edge:match), got {spec!r}")
    roles = _parse_roles(roles_text, "--make-key")
    token = "hmk_" + secrets.token_urlsafe(32)
    ordered = ",".join(r for r in ROLES if r in roles)
    return token, f"{name.strip()} {ordered} {_PREFIX}{_digest(token).hex()}"
