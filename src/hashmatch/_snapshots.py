"""The snapshot cache: index files that spare a Matcher a full read of its store.

A snapshot is one algorithm's base index saved beside the store, in
``<store>.snapshots/``, named ``<algorithm>-<store id>-<generation>-<token>.hmidx``.
It is used only while the store records that token for that generation, and the
:class:`~hashmatch.index.Origin` written inside the file must name the same store,
generation and token: a valid index of another store renamed into place is not
trusted. Any problem with a snapshot (damaged, foreign, a FIFO under its name, an
unreadable folder) costs a rebuild and a warning, never a wrong answer.

The local stage's retrieval index is cached here too, under a name that versions its
layout (:mod:`hashmatch.local._snapshot`). A snapshot of an older file format version is
saved again in the current one when it is loaded.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
from pathlib import Path

from .errors import FileFormatError, StoreError
from .index import Index, Origin, load_index
from .index._format import FORMAT_VERSION, peek_version
from ._store import ReferenceStore

__all__ = ["SNAPSHOT_SUFFIX", "SnapshotCache"]

_log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".hmidx"


class SnapshotCache:
    """Snapshots of one store's indexes, one per algorithm, in one folder."""

    def __init__(self, store: ReferenceStore, directory: str | os.PathLike[str] | None = None) -> None:
        self.store = store
        self.directory = Path(store.path + ".snapshots" if directory is None else directory)
        self._told_readonly = False

    def load(self, algorithm: str, bits: int, *, holds: str | None = None) -> tuple[Index, int] | None:
        """The newest usable snapshot named ``algorithm`` and its generation, or None.

        ``holds``: the algorithm its rows must be, when the name is not one (the local
        stage's snapshot, :mod:`hashmatch.local._snapshot`). A snapshot of an older
        file format version is saved again in the current one (same generation), so
        its next load maps what this one had to rebuild.
        """
        store = self.store
        for generation, token, path in self._listed(algorithm):
            if store.snapshot_token(algorithm, generation) != token:
                continue  # not (or no longer) vouched for by the store
            try:
                version = peek_version(path)
                index = load_index(path, origin=Origin(store.store_id, generation, token))
            except (FileFormatError, OSError, ValueError, MemoryError) as exc:
                _log.warning("ignoring snapshot %s: %s", path.name, exc)
                continue
            if index.algorithm != (holds or algorithm) or index.bits != bits:
                _log.warning("ignoring snapshot %s: it holds %s/%d", path.name, index.algorithm, index.bits)
                continue
            if version < FORMAT_VERSION:
                _log.info("snapshot %s is format version %d: saving it as version %d", path.name, version, FORMAT_VERSION)
                self.save(algorithm, index, generation)
            return index, generation
        return None

    def save(self, algorithm: str, index: Index, generation: int) -> None:
        """Write ``index`` as the snapshot of ``generation`` and drop older ones.

        Never raises for the cache's sake: a read-only store or folder only costs the
        next start its build time (logged).
        """
        store = self.store
        if store.readonly:
            if not self._told_readonly:
                self._told_readonly = True
                _log.warning("not caching index snapshots: %s was opened read-only", store.path)
            return
        token = secrets.token_hex(8)
        try:
            self.directory.mkdir(exist_ok=True)
            final = self.directory / f"{algorithm}-{store.store_id}-{generation}-{token}{SNAPSHOT_SUFFIX}"
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=SNAPSHOT_SUFFIX)
            os.close(fd)
            try:
                index.save(tmp, origin=Origin(store.store_id, generation, token))
                os.replace(tmp, final)  # readers see the whole file or none
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            store.record_snapshot(algorithm, generation, token)
            for _, _, old in self._listed(algorithm):
                if old != final:
                    old.unlink(missing_ok=True)
        except (OSError, StoreError) as exc:
            _log.warning("not caching the %s snapshot: %s", algorithm, exc)

    def _listed(self, algorithm: str) -> list[tuple[int, str, Path]]:
        """(generation, token, path) of this store's snapshots of ``algorithm``, newest first."""
        if not self.directory.is_dir():
            return []
        pattern = re.compile(
            re.escape(f"{algorithm}-{self.store.store_id}-") + r"(\d+)-([0-9a-f]{16})" + re.escape(SNAPSHOT_SUFFIX) + "$"
        )
        found = []
        try:
            for path in self.directory.iterdir():
                match = pattern.match(path.name)
                if match:
                    found.append((int(match.group(1)), match.group(2), path))
        except OSError as exc:  # an unreadable cache only costs a rebuild
            _log.warning("not reading snapshots in %s: %s", self.directory, exc)
            return []
        return sorted(found, reverse=True)
