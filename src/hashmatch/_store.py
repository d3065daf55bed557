"""Reference lists of known material, kept in one SQLite file.

A store holds named lists and their entries: one hash each, with its algorithm,
quality, label, external id, when it was added and, once retracted, when and why.
Retracted entries stay for audit and are never matched again.

Every write is one transaction, so an import that is killed leaves the store as it
was before it or after it, never half-way. The store runs in WAL mode so that readers
(a Matcher refreshing, ``refs stats``) never wait for a writer. A *generation*
counter goes up with every change; each entry records the generation that added it
and the one that retracted it, so a Matcher can take in just the changes since the
snapshot it holds.

Schema version is ``PRAGMA user_version``; a file of another application or a newer
version is refused on open.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np
import numpy.typing as npt

from .errors import HashListError, InvalidHashError, StoreError, UnknownAlgorithmError
from .hashes import Hash, HashBatch
from ._hashlists import ParsedRow, RejectedRow, expected_bits, read_hashlist, write_hashlist

__all__ = ["Entry", "ImportReport", "ListInfo", "ListStats", "NewEntry", "ReferenceStore"]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x484D5246  # "HMRF": tells our files from other SQLite databases
_CHUNK = 20_000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE lists (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    source TEXT,
    description TEXT,
    created REAL NOT NULL
);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    list_id INTEGER NOT NULL REFERENCES lists(id),
    algorithm TEXT NOT NULL,
    bits INTEGER NOT NULL,
    hash BLOB NOT NULL,
    quality INTEGER,
    label TEXT,
    external_id TEXT,
    added REAL NOT NULL,
    added_gen INTEGER NOT NULL,
    retracted REAL,
    retracted_gen INTEGER,
    retract_reason TEXT
);
-- One active entry per hash in a list (a retracted hash may be added again as a new entry).
CREATE UNIQUE INDEX entries_active ON entries(hash, algorithm, list_id) WHERE retracted IS NULL;
CREATE INDEX entries_added ON entries(algorithm, added_gen);
CREATE INDEX entries_retracted ON entries(algorithm, retracted_gen) WHERE retracted_gen IS NOT NULL;
-- Index snapshots a Matcher cached beside the store: a file counts only while its token is
-- recorded here, so a store restored from a backup never trusts a snapshot of its "future".
CREATE TABLE snapshots (
    algorithm TEXT NOT NULL,
    generation INTEGER NOT NULL,
    token TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (algorithm, generation)
);
"""


@dataclass(frozen=True, slots=True)
class ListInfo:
    """A named reference list."""

    name: str
    source: str | None
    description: str | None
    created: float


@dataclass(frozen=True, slots=True)
class ListStats:
    """Counts for one list and algorithm."""

    list_name: str
    algorithm: str
    active: int
    retracted: int


@dataclass(frozen=True, slots=True)
class NewEntry:
    """What to add: a hash and what is known about it."""

    hash: Hash
    quality: int | None = None
    label: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored entry. ``retracted`` is None while it can match."""

    entry_id: int
    list_name: str
    hash: Hash
    quality: int | None
    label: str | None
    external_id: str | None
    added: float
    retracted: float | None
    retract_reason: str | None

    def __repr__(self) -> str:  # the hash of known material stays out of logs and tracebacks
        return (
            f"Entry(entry_id={self.entry_id}, list_name={self.list_name!r}, "
            f"algorithm={self.hash.algorithm!r}, retracted={self.retracted is not None})"
        )


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import or an add did: counts, and the rows that were refused."""

    list_name: str
    added: int
    duplicates: int
    rejected: tuple[RejectedRow, ...] = field(default=())
    entry_ids: tuple[int, ...] = field(default=(), repr=False)

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    def __str__(self) -> str:
        return (
            f"{self.list_name}: {self.added} added, {self.duplicates} duplicates skipped, "
            f"{len(self.rejected)} rejected"
        )


def _now() -> float:
    return time.time()


def _words_from_blobs(blobs: Sequence[bytes], bits: int) -> npt.NDArray[np.uint64]:
    """Pack big-endian hash blobs into HashBatch words without a Python int per row."""
    nwords = (bits + 63) // 64
    width = nwords * 8
    if not blobs:
        return np.zeros((0, nwords), np.uint64)
    nbytes = (bits + 7) // 8
    if nbytes == width:
        raw = b"".join(blobs)
    else:
        pad = bytes(width - nbytes)
        raw = b"".join(pad + b for b in blobs)
    if len(raw) != width * len(blobs):
        raise StoreError("the store holds a hash of the wrong length")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, nwords)


class ReferenceStore:
    """Named lists of reference hashes in one SQLite file (created if missing).

    One object may be shared by threads: each thread gets its own connection.
    Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = os.fspath(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        if not create and not os.path.exists(self.path):
            raise StoreError(f"no reference store at {self.path}")
        conn = self._conn()
        try:
            self._init_schema(conn)
            row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"{self.path} is not a usable reference store: {exc}") from None
        self.store_id: str = row[0]

    # -- connections ----------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError("the reference store is closed")
        try:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA foreign_keys = ON")
            # Random hashes make index inserts random: a bigger page cache keeps big
            # imports from going to disk per row (64 MiB, allocated only as used).
            conn.execute("PRAGMA cache_size = -65536")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open reference store {self.path}: {exc}") from None
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover - closing is best effort
                    pass
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> ReferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReferenceStore({self.path!r})"

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has store schema version {version}; this hashmatch reads up to "
                    f"{SCHEMA_VERSION}: upgrade hashmatch"
                )
            if version < 1:
                raise StoreError(f"{self.path} has an unknown store schema version {version}")
            return
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != 0 or tables:
            raise StoreError(f"{self.path} is an SQLite database but not a hashmatch reference store")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('store_id', ?)", (secrets.token_hex(8),))
            conn.execute("INSERT INTO meta VALUES ('generation', '0')")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _write(self) -> _WriteTransaction:
        return _WriteTransaction(self)

    # -- lists --------------------------------------------------------------------------
    def create_list(self, name: str, *, source: str | None = None, description: str | None = None) -> ListInfo:
        """Create a list; raises :class:`StoreError` if the name is taken."""
        _check_list_name(name)
        with self._write() as tx:
            if tx.conn.execute("SELECT 1 FROM lists WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a list named {name!r} already exists")
            created = _now()
            tx.conn.execute(
                "INSERT INTO lists (name, source, description, created) VALUES (?, ?, ?, ?)",
                (name, source, description, created),
            )
        return ListInfo(name, source, description, created)

    def ensure_list(self, name: str, *, source: str | None = None, description: str | None = None) -> ListInfo:
        """The list named ``name``, created when missing."""
        info = self.get_list(name)
        if info is not None:
            return info
        try:
            return self.create_list(name, source=source, description=description)
        except StoreError:  # another writer created it meanwhile
            info = self.get_list(name)
            if info is None:
                raise
            return info

    def get_list(self, name: str) -> ListInfo | None:
        row = self._read("SELECT name, source, description, created FROM lists WHERE name = ?", (name,)).fetchone()
        return None if row is None else ListInfo(*row)

    def lists(self) -> list[ListInfo]:
        rows = self._read("SELECT name, source, description, created FROM lists ORDER BY name").fetchall()
        return [ListInfo(*r) for r in rows]

    # -- adding ------------------------------------------------------------------------
    def add(
        self,
        list_name: str,
        hash: Hash,  # noqa: A002
        *,
        quality: int | None = None,
        label: str | None = None,
        external_id: str | None = None,
    ) -> int | None:
        """Add one hash; returns its entry id, or None when the list already has it."""
        report = self.add_entries(list_name, [NewEntry(hash, quality, label, external_id)])
        return report.entry_ids[0] if report.entry_ids else None

    def add_entries(self, list_name: str, entries: Iterable[NewEntry], *, return_ids: bool = True) -> ImportReport:
        """Add entries in one transaction; the list is created when missing.

        The report lists the new entry ids unless ``return_ids`` is false (bulk adds
        run about twice as fast without them). Raises :class:`InvalidHashError`
        (nothing added) for a hash of an unknown algorithm or the wrong bit length.
        """
        def rows() -> Iterator[ParsedRow | RejectedRow]:
            bits_of: dict[str, int] = {}
            for i, e in enumerate(entries):
                if not isinstance(e, NewEntry) or not isinstance(e.hash, Hash):
                    raise InvalidHashError(f"entry {i} is not a NewEntry with a Hash")
                bits = bits_of.get(e.hash.algorithm)
                if bits is None:
                    try:
                        bits = bits_of[e.hash.algorithm] = expected_bits(e.hash.algorithm)
                    except UnknownAlgorithmError as exc:
                        raise InvalidHashError(f"entry {i}: {exc}") from None
                if e.hash.bits != bits:
                    raise InvalidHashError(
                        f"entry {i}: a {e.hash.algorithm} hash in a store has {bits} bits, got {e.hash.bits}"
                    )
                if e.quality is not None and not (isinstance(e.quality, int) and 0 <= e.quality <= 100):
                    raise InvalidHashError(f"entry {i}: quality must be an integer 0-100, got {e.quality!r}")
                yield ParsedRow(i + 1, e.hash, e.quality, e.label, e.external_id)

        return self._import_rows(list_name, rows(), keep_ids=return_ids)

    def import_file(
        self,
        source: str | os.PathLike[str] | TextIO,
        list_name: str,
        *,
        algorithm: str | None = None,
        format: str = "auto",  # noqa: A002
        strict: bool = False,
        source_name: str | None = None,
        description: str | None = None,
    ) -> ImportReport:
        """Import a hash-list file (see :mod:`hashmatch._hashlists`) in one transaction.

        Bad rows are skipped and listed in the report with their line numbers; with
        ``strict`` any bad row aborts the import and nothing is added
        (:class:`HashListError`). Rows already in the list count as duplicates.
        """
        rows = read_hashlist(source, algorithm=algorithm, format=format)
        return self._import_rows(
            list_name, rows, strict=strict, source=source_name, description=description
        )

    def _import_rows(
        self,
        list_name: str,
        rows: Iterable[ParsedRow | RejectedRow],
        *,
        strict: bool = False,
        keep_ids: bool = False,
        source: str | None = None,
        description: str | None = None,
    ) -> ImportReport:
        _check_list_name(list_name)
        rejected: list[RejectedRow] = []
        valid = added = 0
        ids: list[int] = []
        with self._write() as tx:
            conn = tx.conn
            row = conn.execute("SELECT id FROM lists WHERE name = ?", (list_name,)).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO lists (name, source, description, created) VALUES (?, ?, ?, ?)",
                    (list_name, source, description, _now()),
                )
                list_id = cur.lastrowid
            else:
                list_id = row[0]
            gen, now = tx.generation, _now()
            sql = (
                "INSERT OR IGNORE INTO entries (list_id, algorithm, bits, hash, quality, label, external_id, "
                "added, added_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )
            chunk: list[tuple[object, ...]] = []

            def flush() -> int:
                if keep_ids:  # one by one, to learn each new id (small adds only)
                    n = 0
                    for params in chunk:
                        cur = conn.execute(sql, params)
                        if cur.rowcount:
                            ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
                            n += 1
                    return n
                cur = conn.executemany(sql, chunk)
                return cur.rowcount

            for item in rows:
                if isinstance(item, RejectedRow):
                    if strict:
                        raise HashListError(f"rejected {item}; nothing was imported (strict)")
                    rejected.append(item)
                    continue
                h = item.hash
                chunk.append((list_id, h.algorithm, h.bits, h.to_bytes(), item.quality, item.label,
                              item.external_id, now, gen))
                valid += 1
                if len(chunk) >= _CHUNK:
                    added += flush()
                    chunk.clear()
            if chunk:
                added += flush()
            tx.changed = added > 0
        return ImportReport(list_name, added, valid - added, tuple(rejected), tuple(ids))

    # -- retracting ----------------------------------------------------------------------
    def retract(self, entry_ids: Iterable[int], *, reason: str | None = None) -> int:
        """Retract entries (kept for audit, never matched again); returns how many were
        active. Unknown or already retracted ids are ignored."""
        ids = [_check_entry_id(i) for i in entry_ids]
        with self._write() as tx:
            now, count = _now(), 0
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                cur = tx.conn.execute(
                    f"UPDATE entries SET retracted = ?, retracted_gen = ?, retract_reason = ? "
                    f"WHERE retracted IS NULL AND id IN ({marks})",
                    (now, tx.generation, reason, *part),
                )
                count += cur.rowcount
            tx.changed = count > 0
        return count

    # -- reading -------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    @property
    def generation(self) -> int:
        """Goes up with every change to the entries."""
        return int(self._read("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def _entry(self, row: Sequence[object]) -> Entry:
        (entry_id, list_name, algorithm, bits, blob, quality, label, external_id, added, retracted, reason) = row
        h = Hash.from_bytes(blob, algorithm=algorithm, bits=bits)  # type: ignore[arg-type]
        return Entry(entry_id, list_name, h, quality, label, external_id, added, retracted, reason)  # type: ignore[arg-type]

    _ENTRY_SQL = (
        "SELECT e.id, l.name, e.algorithm, e.bits, e.hash, e.quality, e.label, e.external_id, e.added, "
        "e.retracted, e.retract_reason FROM entries e JOIN lists l ON l.id = e.list_id"
    )

    def get(self, entry_id: int) -> Entry | None:
        """One entry by id (retracted ones too), or None."""
        row = self._read(self._ENTRY_SQL + " WHERE e.id = ?", (_check_entry_id(entry_id),)).fetchone()
        return None if row is None else self._entry(row)

    def find(self, hash: Hash, *, include_retracted: bool = False) -> list[Entry]:  # noqa: A002
        """Entries holding exactly this hash, in any list."""
        sql = self._ENTRY_SQL + " WHERE e.hash = ? AND e.algorithm = ?"
        if not include_retracted:
            sql += " AND e.retracted IS NULL"
        rows = self._read(sql + " ORDER BY e.id", (hash.to_bytes(), hash.algorithm)).fetchall()
        return [self._entry(r) for r in rows]

    def entries(
        self, *, list_name: str | None = None, algorithm: str | None = None, include_retracted: bool = False
    ) -> Iterator[Entry]:
        """Entries in id order, optionally of one list or algorithm."""
        clauses, params = [], []
        if list_name is not None:
            clauses.append("l.name = ?")
            params.append(list_name)
        if algorithm is not None:
            clauses.append("e.algorithm = ?")
            params.append(algorithm)
        if not include_retracted:
            clauses.append("e.retracted IS NULL")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        cursor = self._read(self._ENTRY_SQL + where + " ORDER BY e.id", params)
        for row in cursor:
            yield self._entry(row)

    def entry_info(self, entry_ids: Iterable[int]) -> dict[int, tuple[str, str | None, str | None]]:
        """``{entry_id: (list_name, label, external_id)}`` for a Matcher's results."""
        ids = sorted({int(i) for i in entry_ids})
        out: dict[int, tuple[str, str | None, str | None]] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._read(
                f"SELECT e.id, l.name, e.label, e.external_id FROM entries e JOIN lists l ON l.id = e.list_id "
                f"WHERE e.id IN ({marks})",
                part,
            ).fetchall()
            for entry_id, list_name, label, external_id in rows:
                out[entry_id] = (list_name, label, external_id)
        return out

    def algorithms(self) -> list[str]:
        """Algorithms that have at least one active entry."""
        # A skip-scan over the (algorithm, added_gen) index, one probe per algorithm: every
        # Matcher.refresh calls this, and a DISTINCT over the table read every row (0.19 s and
        # a 64 MiB page cache per connection at 1M entries).
        out = []
        name = self._read("SELECT min(algorithm) FROM entries").fetchone()[0]
        while name is not None:
            if self._read("SELECT 1 FROM entries WHERE algorithm = ? AND retracted IS NULL LIMIT 1", (name,)).fetchone():
                out.append(name)
            name = self._read("SELECT min(algorithm) FROM entries WHERE algorithm > ?", (name,)).fetchone()[0]
        return out

    def stats(self) -> list[ListStats]:
        """Active and retracted counts per list and algorithm (empty lists included)."""
        rows = self._read(
            "SELECT l.name, e.algorithm, sum(e.retracted IS NULL), sum(e.retracted IS NOT NULL) "
            "FROM lists l LEFT JOIN entries e ON e.list_id = l.id GROUP BY l.name, e.algorithm "
            "ORDER BY l.name, e.algorithm"
        ).fetchall()
        return [ListStats(n, a or "", int(act or 0), int(ret or 0)) for n, a, act, ret in rows]

    def __len__(self) -> int:
        """Number of active entries."""
        return int(self._read("SELECT count(*) FROM entries WHERE retracted IS NULL").fetchone()[0])

    # -- snapshots for the Matcher ----------------------------------------------------
    def read_active(self, algorithm: str) -> tuple[HashBatch, npt.NDArray[np.int64], int]:
        """All active entries of one algorithm, as ``(batch, entry_ids, generation)``,
        read in one consistent transaction."""
        bits = expected_bits(algorithm)
        with self._consistent_read() as (conn, gen):
            rows = conn.execute(
                "SELECT id, hash FROM entries WHERE algorithm = ? AND retracted IS NULL ORDER BY id",
                (algorithm,),
            ).fetchall()
        return self._batch(rows, algorithm, bits) + (gen,)

    def read_changes(
        self, algorithm: str, since: int
    ) -> tuple[HashBatch, npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
        """Changes after generation ``since``: ``(added batch, added ids, retracted ids,
        generation)``. Entries both added and retracted since then appear in neither."""
        bits = expected_bits(algorithm)
        with self._consistent_read() as (conn, gen):
            added = conn.execute(
                "SELECT id, hash FROM entries WHERE algorithm = ? AND added_gen > ? AND retracted IS NULL "
                "ORDER BY id",
                (algorithm, since),
            ).fetchall()
            gone = conn.execute(
                "SELECT id FROM entries WHERE algorithm = ? AND retracted_gen > ? AND added_gen <= ? ORDER BY id",
                (algorithm, since, since),
            ).fetchall()
        batch, ids = self._batch(added, algorithm, bits)
        return batch, ids, np.array([r[0] for r in gone], dtype=np.int64), gen

    @contextmanager
    def _consistent_read(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One read transaction, and the store's generation as of its start."""
        conn = self._conn()
        try:
            conn.execute("BEGIN")
            try:
                yield conn, int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    @staticmethod
    def _batch(rows: list[tuple[int, bytes]], algorithm: str, bits: int) -> tuple[HashBatch, npt.NDArray[np.int64]]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        words = _words_from_blobs([r[1] for r in rows], bits)
        return HashBatch(words, algorithm=algorithm, bits=bits), ids

    def record_snapshot(self, algorithm: str, generation: int, token: str) -> None:
        """Note that a snapshot of ``algorithm`` at ``generation`` was written as ``token``."""
        with self._write() as tx:
            tx.conn.execute("DELETE FROM snapshots WHERE algorithm = ?", (algorithm,))
            tx.conn.execute(
                "INSERT INTO snapshots (algorithm, generation, token, created) VALUES (?, ?, ?, ?)",
                (algorithm, generation, token, _now()),
            )

    def snapshot_token(self, algorithm: str, generation: int) -> str | None:
        """The token recorded for a snapshot of ``algorithm`` at ``generation``, if any."""
        row = self._read(
            "SELECT token FROM snapshots WHERE algorithm = ? AND generation = ?", (algorithm, generation)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- export --------------------------------------------------------------------------
    def export_file(
        self,
        dest: str | os.PathLike[str] | TextIO,
        *,
        format: str = "csv",  # noqa: A002
        list_name: str | None = None,
        algorithm: str | None = None,
    ) -> int:
        """Write active entries as a hash-list file; returns how many were written."""
        if list_name is not None and self.get_list(list_name) is None:
            raise StoreError(f"no list named {list_name!r}")
        rows = (
            (e.hash, e.quality, e.label, e.external_id, e.list_name)
            for e in self.entries(list_name=list_name, algorithm=algorithm)
        )
        return write_hashlist(dest, rows, format=format)


class _WriteTransaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, bumping the generation when something changed."""

    def __init__(self, store: ReferenceStore) -> None:
        self.store = store
        self.conn = store._conn()
        self.changed = False
        self.generation = 0

    def __enter__(self) -> _WriteTransaction:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.store.path}: {exc}") from None
        self.generation = int(row[0]) + 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None:
                if self.changed:
                    self.conn.execute(
                        "UPDATE meta SET value = ? WHERE key = 'generation'", (str(self.generation),)
                    )
                self.conn.execute("COMMIT")
                return
            self.conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise StoreError(f"writing to {self.store.path} failed: {err}") from None
        if exc_type is not None and issubclass(exc_type, sqlite3.Error):
            raise StoreError(f"writing to {self.store.path} failed: {exc}") from None


def _check_list_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise StoreError(f"a list name must be a non-empty string of at most 200 characters, got {name!r}")
    return name


def _check_entry_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise StoreError(f"an entry id is an integer, got {value!r}")
    return int(value)
