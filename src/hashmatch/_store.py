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

Opening is careful, because a store that answers "no match" when it is damaged or
is not a store at all gives a wrong verdict:

* only a path that does not exist is created (built under a temporary name and
  linked into place, so a half-made store is never seen); an existing file is never
  initialised or rewritten, whatever it holds (empty, one byte, another SQLite
  database, garbage): that is a :class:`~hashmatch.errors.StoreError`;
* on open the SQLite header, application id, schema version, tables and meta rows
  are checked, and ``PRAGMA quick_check`` runs when the file is at most
  ``QUICK_CHECK_MAX_BYTES`` (about 0.15 s per 100 MB measured);
* every SQLite error, also while fetching or iterating, becomes a ``StoreError``
  naming the path; :meth:`ReferenceStore.read_active` also checks each active
  hash against its copy in the ``entries_active`` index, so a damaged hash value is
  an error rather than a silent miss;
* ``readonly=True`` opens with ``mode=ro``, and when the folder is read-only too
  (no ``-shm`` can be made) with ``immutable=1``, after checking that no ``-wal``
  file holds changes it could not see.

This module is over 400 lines because the store's SQL, its checks and its
transactions must stay in one place to stay consistent.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import stat
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

import numpy as np
import numpy.typing as npt

from .errors import HashListError, InvalidHashError, StoreError, UnknownAlgorithmError
from .hashes import Hash, HashBatch
from ._hashlists import ParsedRow, RejectedRow, SkippedLine, expected_bits, read_hashlist, write_hashlist

__all__ = ["Entry", "ImportReport", "ListInfo", "ListStats", "LocalChanges", "NewEntry", "ReferenceStore"]

SCHEMA_VERSION = 2  # 2 added local_features (issue 12); version 1 stores are migrated on open
APPLICATION_ID = 0x484D5246  # "HMRF": tells our files from other SQLite databases
_CHUNK = 20_000
QUICK_CHECK_MAX_BYTES = 256 << 20
"""Stores up to this size get ``PRAGMA quick_check`` on every open."""
_TABLES = frozenset({"meta", "lists", "entries", "snapshots"})
_MAX_ENTRY_ID = 2**63 - 1
# What a damaged file can make the sqlite3 module raise: its own errors, and text that
# is not UTF-8 (in a value or in an error message) decoded by Python.
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)

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

# -- local features (issue 12): one additive block; schema version 2 --------------------
# Keypoints and binary descriptors of a reference added from an image, keyed by one of the
# entries that image produced: retracting that entry retires them too. The blobs are
# written and checked by hashmatch.local (format version in ``format``).
_LOCAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_features (
    entry_id INTEGER PRIMARY KEY REFERENCES entries(id),
    format INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    count INTEGER NOT NULL,
    keypoints BLOB NOT NULL,
    descriptors BLOB NOT NULL
)
"""
LocalRow = tuple[int, int, int, bytes, bytes]  # format, width, height, keypoints, descriptors


class LocalChanges(NamedTuple):
    """:meth:`ReferenceStore.read_local_changes`: retrieval rows and their entry ids, the
    ids retracted since, the generation features were last rewritten (-1: never), and
    the generation read."""

    rows: npt.NDArray[np.uint8]
    owners: npt.NDArray[np.int64]
    removed: npt.NDArray[np.int64]
    rewritten: int
    generation: int


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store of an older schema ``version`` up to :data:`SCHEMA_VERSION`, in one
    transaction (a store that cannot be written stays as it is and has no local features)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == version:  # not migrated meanwhile
            if version < 2:
                conn.execute(_LOCAL_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


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
    """What an import or an add did: counts, and the rows that were refused.

    For a file, ``added + duplicates + rejected_count + skipped == lines``: every
    physical line is accounted for (``skipped``: the header, blank and comment lines).
    """

    list_name: str
    added: int
    duplicates: int
    rejected: tuple[RejectedRow, ...] = field(default=())
    entry_ids: tuple[int, ...] = field(default=(), repr=False)
    skipped: int = 0
    lines: int = 0

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


def _words_from_blobs(blobs: Sequence[bytes], bits: int, path: str = "the store") -> npt.NDArray[np.uint64]:
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
    if len(raw) != width * len(blobs) or any(len(b) != nbytes for b in blobs):
        raise StoreError(f"{path} is damaged: it holds a hash of the wrong length")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, nwords)


class ReferenceStore:
    """Named lists of reference hashes in one SQLite file.

    A path that does not exist is created when ``create`` is true (the default);
    an existing file is opened only if it is a hashmatch store. ``readonly=True``
    never writes (works on a read-only file in a read-only folder); writing
    methods then raise :class:`StoreError`.

    One object may be shared by threads: each thread gets its own connection.
    Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False
    ) -> None:
        self.path = os.fspath(path)
        self.readonly = bool(readonly)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._uri = ""
        if "\0" in self.path:
            raise StoreError(f"{self.path!r}: a store path cannot contain a NUL character")
        try:
            if not os.path.lexists(self.path):
                if not create or self.readonly:
                    raise StoreError(f"no reference store at {self.path}")
                self._create_file()
            size = self._check_file()
            self._uri = self._pick_uri()
            conn = self._conn()
            self.store_id: str = self._check_schema(conn, size)
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------------
    def _create_file(self) -> None:
        """Build an empty store under a temporary name, then link it into place."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".hmstore-", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise StoreError(f"cannot create reference store {self.path}: {exc.strerror or exc}") from None
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")  # recorded in the file header
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(_LOCAL_SCHEMA)
                conn.execute("INSERT INTO meta VALUES ('store_id', ?)", (secrets.token_hex(8),))
                conn.execute("INSERT INTO meta VALUES ('generation', '0')")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            finally:
                conn.close()  # the last connection: checkpoints and removes the -wal
            try:
                os.link(tmp, self.path)  # fails if another process created it meanwhile
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                if not os.path.lexists(self.path):
                    os.replace(tmp, self.path)
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot create reference store {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot create reference store {self.path}: {exc.strerror or exc}") from None
        finally:
            for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass

    def _check_file(self) -> int:
        """The file's size, once it is known to be a regular file big enough to be a store.

        Only ``stat``, never ``open``: closing any descriptor of a database file drops
        every POSIX lock this process holds on it, SQLite's included, and another process
        could then checkpoint and delete the ``-wal`` that this process's connections
        still write to (commits lost). SQLite checks the header itself on the first read
        (see :meth:`_check_schema`).
        """
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreError(f"cannot open reference store {self.path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{self.path} is not a reference store: not a regular file")
        if st.st_size < 100:  # smaller than an SQLite header: SQLite would take it as a new database
            what = "empty" if not st.st_size else f"{st.st_size} bytes"
            raise StoreError(f"{self.path} is not a reference store ({what}); it was left as it is")
        return int(st.st_size)

    def _pick_uri(self) -> str:
        base = "file:" + urllib.parse.quote(os.path.abspath(self.path))
        if not self.readonly:
            return base + "?mode=rw"
        uri = base + "?mode=ro"
        try:
            probe = sqlite3.connect(uri, uri=True)
            try:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return uri
            finally:
                probe.close()
        except _DB_ERRORS:
            pass
        # mode=ro on a WAL store needs a -shm it can create; in a read-only folder only
        # immutable=1 opens, and it ignores the -wal: refuse if that holds anything.
        try:
            wal = os.stat(self.path + "-wal").st_size
        except FileNotFoundError:
            wal = 0
        except OSError as exc:
            raise StoreError(f"cannot check {self.path}-wal: {exc.strerror or exc}") from None
        if wal > 0:
            raise StoreError(
                f"{self.path} cannot be read read-only: its -wal file holds changes not yet in the "
                "store (open it once with write access, or copy it with 'sqlite3 .backup')"
            )
        return base + "?immutable=1"

    def _check_schema(self, conn: sqlite3.Connection, size: int) -> str:
        """The store id, once the file is known to be a readable store of ours."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise StoreError(f"{self.path} is an SQLite database but not a hashmatch reference store")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has store schema version {version}; this hashmatch reads up to "
                    f"{SCHEMA_VERSION}: upgrade hashmatch"
                )
            if version < 1:
                raise StoreError(f"{self.path} has an unknown store schema version {version}")
            if version < SCHEMA_VERSION and not self.readonly:
                # Read-only opens leave an older store as it is (it has no local features).
                _migrate(conn, version)
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not _TABLES <= tables:
                missing = ", ".join(sorted(_TABLES - tables))
                raise StoreError(f"{self.path} is damaged: table(s) {missing} missing")
            if size <= QUICK_CHECK_MAX_BYTES:
                problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise StoreError(f"{self.path} is damaged: {'; '.join(map(str, problems))[:300]}")
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'generation')"))
        except _DB_ERRORS as exc:
            if "not a database" in str(exc):
                raise StoreError(f"{self.path} is not a reference store (no SQLite header); it was left as it is") from None
            raise StoreError(f"{self.path} is not a usable reference store: {exc}") from None
        store_id = rows.get("store_id")
        if not isinstance(store_id, str) or not re.fullmatch(r"[0-9a-f]{16}", store_id):
            raise StoreError(f"{self.path} is damaged: its store id is missing or malformed")
        _generation_of(rows.get("generation"), self.path)
        return store_id

    # -- connections ----------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError("the reference store is closed")
        try:
            conn = sqlite3.connect(self._uri, uri=True, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA foreign_keys = ON")
            # Random hashes make index inserts random: a bigger page cache keeps big
            # imports from going to disk per row (64 MiB, allocated only as used).
            conn.execute("PRAGMA cache_size = -65536")
        except _DB_ERRORS as exc:
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
                except _DB_ERRORS:  # pragma: no cover - closing is best effort
                    pass
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> ReferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReferenceStore({self.path!r})"

    def _write(self) -> _WriteTransaction:
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
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
        rows = self._rows("SELECT name, source, description, created FROM lists WHERE name = ?", (name,))
        return ListInfo(*rows[0]) if rows else None

    def lists(self) -> list[ListInfo]:
        rows = self._rows("SELECT name, source, description, created FROM lists ORDER BY name")
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
        rows: Iterable[ParsedRow | RejectedRow | SkippedLine],
        *,
        strict: bool = False,
        keep_ids: bool = False,
        source: str | None = None,
        description: str | None = None,
    ) -> ImportReport:
        _check_list_name(list_name)
        rejected: list[RejectedRow] = []
        valid = added = skipped = lines = 0
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
                lines = max(lines, item.line)
                if isinstance(item, SkippedLine):
                    skipped += 1
                    continue
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
        return ImportReport(list_name, added, valid - added, tuple(rejected), tuple(ids), skipped, lines)

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
    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query; any SQLite error, fetching included, is a StoreError."""
        try:
            return self._conn().execute(sql, params).fetchall()
        except _DB_ERRORS as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    @property
    def generation(self) -> int:
        """Goes up with every change to the entries."""
        return _read_generation(self._conn(), self.path)

    def _entry(self, row: Sequence[Any]) -> Entry:
        (entry_id, list_name, algorithm, bits, blob, quality, label, external_id, added, retracted, reason) = row
        try:
            h = Hash.from_bytes(blob, algorithm=algorithm, bits=bits)
        except (InvalidHashError, TypeError, ValueError):
            raise StoreError(f"{self.path} is damaged: entry {entry_id} holds an unreadable hash") from None
        return Entry(entry_id, list_name, h, quality, label, external_id, added, retracted, reason)

    _ENTRY_SQL = (
        "SELECT e.id, l.name, e.algorithm, e.bits, e.hash, e.quality, e.label, e.external_id, e.added, "
        "e.retracted, e.retract_reason FROM entries e JOIN lists l ON l.id = e.list_id"
    )

    def get(self, entry_id: int) -> Entry | None:
        """One entry by id (retracted ones too), or None."""
        rows = self._rows(self._ENTRY_SQL + " WHERE e.id = ?", (_check_entry_id(entry_id),))
        return self._entry(rows[0]) if rows else None

    def find(self, hash: Hash, *, include_retracted: bool = False) -> list[Entry]:  # noqa: A002
        """Entries holding exactly this hash, in any list."""
        sql = self._ENTRY_SQL + " WHERE e.hash = ? AND e.algorithm = ?"
        if not include_retracted:
            sql += " AND e.retracted IS NULL"
        rows = self._rows(sql + " ORDER BY e.id", (hash.to_bytes(), hash.algorithm))
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
        # Streamed (an export may be millions of rows): fetch errors are wrapped here too.
        try:
            cursor = self._conn().execute(self._ENTRY_SQL + where + " ORDER BY e.id", params)
            while True:
                rows = cursor.fetchmany(1000)
                if not rows:
                    return
                for row in rows:
                    yield self._entry(row)
        except _DB_ERRORS as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    def entry_info(self, entry_ids: Iterable[int]) -> dict[int, tuple[str, str | None, str | None]]:
        """``{entry_id: (list_name, label, external_id)}`` for a Matcher's results."""
        ids = sorted({int(i) for i in entry_ids})
        out: dict[int, tuple[str, str | None, str | None]] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._rows(
                f"SELECT e.id, l.name, e.label, e.external_id FROM entries e JOIN lists l ON l.id = e.list_id "
                f"WHERE e.id IN ({marks})",
                part,
            )
            for entry_id, list_name, label, external_id in rows:
                out[entry_id] = (list_name, label, external_id)
        return out

    def sibling_hashes(self, entry_ids: Iterable[int], algorithm: str) -> dict[int, Hash]:
        """``{entry_id: hash}``: the ``algorithm`` hash of the same image as each entry.

        Entries are hashes of one image when they were added to one list in one write
        (one generation) with the same external id (or both without one), as
        :func:`hashmatch.add_images` and an import of a list that carries several
        hashes per id add them. An entry gets its sibling only when exactly one active
        ``algorithm`` entry qualifies; none or several (an import of many rows without
        ids) give none. The lookup rides the ``(algorithm, added_gen)`` index.
        """
        ids = sorted({int(i) for i in entry_ids})
        found: dict[int, list[tuple[int, bytes]]] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self._rows(
                "SELECT a.id, b.bits, b.hash FROM entries a JOIN entries b INDEXED BY entries_added "
                "ON b.algorithm = ? AND b.added_gen = a.added_gen AND b.list_id = a.list_id "
                "AND b.external_id IS a.external_id AND b.retracted IS NULL "
                f"WHERE a.id IN ({','.join('?' * len(part))}) AND a.retracted IS NULL",
                [algorithm, *part],
            )
            for entry_id, bits, blob in rows:
                found.setdefault(int(entry_id), []).append((bits, blob))
        out: dict[int, Hash] = {}
        for entry_id, hashes in found.items():
            if len(hashes) == 1:
                try:
                    out[entry_id] = Hash.from_bytes(hashes[0][1], algorithm=algorithm, bits=hashes[0][0])
                except (InvalidHashError, TypeError, ValueError):
                    raise StoreError(f"{self.path} is damaged: an entry holds an unreadable hash") from None
        return out

    def image_rows(
        self, algorithm: str, by: str, *, since: int | None = None, generations: Sequence[int] = ()
    ) -> tuple[list[tuple[int, int, int, str | None]], list[tuple[int, int, int, str | None]], npt.NDArray[np.uint64], int]:
        """What :meth:`sibling_hashes` joins on, in bulk, from one transaction:
        ``(rows, by_rows, by_words, generation)``. ``rows`` are the active ``algorithm``
        entries as ``(id, list id, added generation, external id)``, ``by_rows`` the
        active ``by`` entries alike with their hashes in ``by_words``: all of them, those
        added after ``since``, or those added in ``generations``.

        The Matcher links an image's hashes in memory from it (``hashmatch._links``), so
        a query never waits on SQL.
        """
        sql = "SELECT id, list_id, added_gen, external_id{} FROM entries WHERE algorithm = ? AND retracted IS NULL"
        out: list[list[Any]] = [[], []]
        with self._consistent_read() as (conn, gen):
            if not generations and since is None:
                # Everything: one pass over the table serves both algorithms (two passes,
                # one per algorithm, took twice as long at 1M images).
                rows = conn.execute(
                    "SELECT id, list_id, added_gen, external_id, CASE WHEN algorithm = ? THEN hash END, "
                    "algorithm = ? FROM entries WHERE algorithm IN (?, ?) AND retracted IS NULL",
                    (by, by, algorithm, by),
                ).fetchall()
                out = [[r[:4] for r in rows if not r[5]], [r for r in rows if r[5]]]
                del rows
            for k, (name, extra) in enumerate(((algorithm, ""), (by, ", hash"))):
                query = sql.format(extra)
                if generations:
                    for g in sorted(set(generations)):  # each rides the (algorithm, added_gen) index
                        out[k] += conn.execute(query + " AND added_gen = ?", (name, g)).fetchall()
                elif since is not None:
                    out[k] = conn.execute(query + " AND added_gen > ?", (name, since)).fetchall()
        by_rows = out[1]
        words = _words_from_blobs([r[4] for r in by_rows], expected_bits(by), self.path)
        return out[0], [r[:4] for r in by_rows], words, gen

    def retracted_since(self, algorithm: str, since: int) -> list[tuple[int, int]]:
        """``(id, added generation)`` of ``algorithm`` entries added up to generation
        ``since`` and retracted after it."""
        return [
            (int(i), int(g))
            for i, g in self._rows(
                "SELECT id, added_gen FROM entries WHERE algorithm = ? AND retracted_gen > ? AND added_gen <= ?",
                (algorithm, since, since),
            )
        ]

    def algorithms(self) -> list[str]:
        """Algorithms that have at least one active entry."""
        # A skip-scan over the (algorithm, added_gen) index, one probe per algorithm: every
        # Matcher.refresh calls this, and a DISTINCT over the table read every row (0.19 s and
        # a 64 MiB page cache per connection at 1M entries).
        out = []
        name = self._rows("SELECT min(algorithm) FROM entries")[0][0]
        while name is not None:
            if self._rows("SELECT 1 FROM entries WHERE algorithm = ? AND retracted IS NULL LIMIT 1", (name,)):
                out.append(str(name))
            name = self._rows("SELECT min(algorithm) FROM entries WHERE algorithm > ?", (name,))[0][0]
        return out

    def stats(self) -> list[ListStats]:
        """Active and retracted counts per list and algorithm (empty lists included)."""
        # An empty list joins one all-NULL row: count entries by id, not by a NULL retracted.
        rows = self._rows(
            "SELECT l.name, e.algorithm, sum(e.id IS NOT NULL AND e.retracted IS NULL), "
            "sum(e.retracted IS NOT NULL) "
            "FROM lists l LEFT JOIN entries e ON e.list_id = l.id GROUP BY l.name, e.algorithm "
            "ORDER BY l.name, e.algorithm"
        )
        return [ListStats(n, a or "", int(act or 0), int(ret or 0)) for n, a, act, ret in rows]

    def __len__(self) -> int:
        """Number of active entries."""
        return int(self._rows("SELECT count(*) FROM entries WHERE retracted IS NULL")[0][0])

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
            # Every active hash is also in the entries_active index: the two copies must
            # agree, so a damaged hash value is an error, never a silently missed match.
            copies = conn.execute(
                "SELECT rowid, hash FROM entries INDEXED BY entries_active "
                "WHERE algorithm = ? AND retracted IS NULL",
                (algorithm,),
            ).fetchall()
        batch, ids = self._batch(rows, algorithm, bits)
        del rows
        if len(copies) == len(ids):
            copy_batch, copy_ids = self._batch(copies, algorithm, bits)
            order = np.argsort(copy_ids, kind="stable")  # the index holds them in hash order
            if np.array_equal(copy_ids[order], ids) and np.array_equal(copy_batch.words[order], batch.words):
                return batch, ids, gen
        raise StoreError(
            f"{self.path} is damaged: the {algorithm} entries disagree with their index "
            "(restore it from a backup, or rebuild it with 'sqlite3 .recover')"
        )

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
            # As in read_active, each added hash must be found in its index copy (a probe
            # per row, in SQLite: deltas are small).
            unmatched = conn.execute(
                "SELECT count(*) FROM entries e WHERE e.algorithm = ? AND e.added_gen > ? AND e.retracted IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM entries i INDEXED BY entries_active WHERE i.hash = e.hash "
                "AND i.algorithm = e.algorithm AND i.list_id = e.list_id AND i.retracted IS NULL "
                "AND i.rowid = e.rowid)",
                (algorithm, since),
            ).fetchone()[0]
        if unmatched:
            raise StoreError(
                f"{self.path} is damaged: {unmatched} new {algorithm} entries disagree with their index "
                "(restore it from a backup, or rebuild it with 'sqlite3 .recover')"
            )
        batch, ids = self._batch(added, algorithm, bits)
        return batch, ids, np.array([r[0] for r in gone], dtype=np.int64), gen

    @contextmanager
    def _consistent_read(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One read transaction, and the store's generation as of its start."""
        conn = self._conn()
        try:
            conn.execute("BEGIN")
            try:
                yield conn, _read_generation(conn, self.path)
            finally:
                conn.execute("COMMIT")
        except _DB_ERRORS as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    def _batch(self, rows: list[tuple[int, bytes]], algorithm: str, bits: int) -> tuple[HashBatch, npt.NDArray[np.int64]]:
        try:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        except (TypeError, ValueError, OverflowError):
            raise StoreError(f"{self.path} is damaged: an entry id is not an integer") from None
        blobs = [r[1] for r in rows]
        if not all(isinstance(b, bytes) for b in blobs):
            raise StoreError(f"{self.path} is damaged: a hash is not stored as bytes")
        words = _words_from_blobs(blobs, bits, self.path)
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
        rows = self._rows(
            "SELECT token FROM snapshots WHERE algorithm = ? AND generation = ?", (algorithm, generation)
        )
        return str(rows[0][0]) if rows else None

    # -- local features (issue 12) --------------------------------------------------------
    def add_local_features(self, rows: Iterable[tuple[int, LocalRow]]) -> int:
        """Store local features ``(entry_id, (format, width, height, keypoints, descriptors))``
        in one transaction, replacing any an entry had; returns how many were stored.
        Ids of unknown or retracted entries are skipped."""
        with self._write() as tx:
            count = 0
            # Local snapshots take in new feature rows by entry id (those above the newest
            # they hold); a row written at or below the newest already stored (features
            # replaced, or attached late to an older entry) is noted, so they rebuild.
            top = tx.conn.execute("SELECT max(entry_id) FROM local_features").fetchone()[0]
            rewritten = False
            for entry_id, (fmt, width, height, keypoints, descriptors) in rows:
                if len(descriptors) % 32:
                    raise StoreError("local descriptors must be whole 32-byte rows")
                cur = tx.conn.execute(
                    "INSERT OR REPLACE INTO local_features SELECT id, ?, ?, ?, ?, ?, ? FROM entries "
                    "WHERE id = ? AND retracted IS NULL",
                    (int(fmt), int(width), int(height), len(descriptors) // 32, keypoints, descriptors,
                     _check_entry_id(entry_id)),
                )
                count += cur.rowcount
                rewritten = rewritten or (cur.rowcount > 0 and top is not None and int(entry_id) <= top)
            if rewritten:
                tx.conn.execute("INSERT OR REPLACE INTO meta VALUES ('local_rewritten', ?)", (str(tx.generation),))
            tx.changed = count > 0
        return count

    def _has_local(self) -> bool:
        return bool(self._rows("SELECT 1 FROM sqlite_master WHERE name = 'local_features'"))

    def read_local_retrieval(self, per_entry: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """The first ``per_entry`` descriptors of every active entry with local features:
        ``(descriptors (n, 32) uint8, entry id of each row)``, in one consistent read."""
        changes = self.read_local_changes(per_entry, -1, -1)
        return changes.rows, changes.owners

    def read_local_changes(self, per_entry: int, since: int, after_entry: int) -> LocalChanges:
        """What a local snapshot of generation ``since`` whose newest entry is ``after_entry``
        lacks, in one consistent read (``since = after_entry = -1``: everything): the first
        ``per_entry`` descriptors of active entries with local features and an id above
        ``after_entry``, and the entries it holds that were retracted since."""
        empty = np.zeros((0, 32), np.uint8), np.zeros(0, np.int64)
        if not self._has_local():
            return LocalChanges(*empty, np.zeros(0, np.int64), -1, self.generation)
        with self._consistent_read() as (conn, gen):
            rows = conn.execute(
                "SELECT f.entry_id, substr(f.descriptors, 1, ?) FROM local_features f "
                "JOIN entries e ON e.id = f.entry_id WHERE f.entry_id > ? AND e.retracted IS NULL "
                "ORDER BY f.entry_id",
                (32 * int(per_entry), int(after_entry)),
            ).fetchall()
            # Held by the snapshot: features, an id it covers, active at its generation.
            gone = conn.execute(
                "SELECT e.id FROM entries e INDEXED BY entries_retracted JOIN local_features f ON f.entry_id = e.id "
                "WHERE e.retracted_gen > ? AND e.added_gen <= ? AND e.id <= ? ORDER BY e.id",
                (int(since), int(since), int(after_entry)),
            ).fetchall()
            mark = conn.execute("SELECT value FROM meta WHERE key = 'local_rewritten'").fetchone()
        if any(not isinstance(r[1], bytes) or len(r[1]) % 32 for r in rows):
            raise StoreError(f"{self.path} is damaged: local descriptors are not whole 32-byte rows")
        try:
            rewritten = -1 if mark is None else int(mark[0])
            removed = np.array([r[0] for r in gone], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise StoreError(f"{self.path} is damaged: a local-feature record is not an integer") from None
        blob = b"".join(r[1] for r in rows)
        owners = np.repeat(np.array([r[0] for r in rows], np.int64), [len(r[1]) // 32 for r in rows])
        return LocalChanges(np.frombuffer(blob, dtype=np.uint8).reshape(-1, 32), owners, removed, rewritten, gen)

    def read_local_rows(self, entry_ids: Iterable[int]) -> dict[int, LocalRow]:
        """Stored local features of those entries that are still active."""
        ids = sorted({int(i) for i in entry_ids})
        out: dict[int, LocalRow] = {}
        if not ids or not self._has_local():
            return out
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self._rows(
                "SELECT f.entry_id, f.format, f.width, f.height, f.keypoints, f.descriptors FROM local_features f "
                f"JOIN entries e ON e.id = f.entry_id WHERE e.retracted IS NULL AND f.entry_id IN ({','.join('?' * len(part))})",
                part,
            )
            for entry_id, *rest in rows:
                out[int(entry_id)] = tuple(rest)  # type: ignore[assignment]
        return out

    def has_local_features(self) -> bool:
        """Whether any active entry has local features (stops at the first: no count)."""
        return self._has_local() and bool(self._rows(
            "SELECT 1 FROM local_features f JOIN entries e ON e.id = f.entry_id WHERE e.retracted IS NULL LIMIT 1"
        ))

    def local_count(self) -> int:
        """Number of active entries with local features."""
        if not self._has_local():
            return 0
        return int(self._rows(
            "SELECT count(*) FROM local_features f JOIN entries e ON e.id = f.entry_id WHERE e.retracted IS NULL"
        )[0][0])

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
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot write to {self.store.path}: {exc}") from None
        try:
            self.generation = _read_generation(self.conn, self.store.path) + 1
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
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
        except _DB_ERRORS as err:
            try:
                self.conn.execute("ROLLBACK")
            except _DB_ERRORS:
                pass
            raise StoreError(f"writing to {self.store.path} failed: {err}") from None
        if exc_type is not None and issubclass(exc_type, _DB_ERRORS):
            raise StoreError(f"writing to {self.store.path} failed: {exc}") from None


def store_is_writable(path: str | os.PathLike[str]) -> bool:
    """Whether this process may write the store at ``path`` and its folder (for ``-wal``
    and ``-shm``); commands that only read open it with ``readonly=True`` otherwise."""
    target = os.path.abspath(os.fspath(path))
    try:
        return os.access(target, os.W_OK) and os.access(os.path.dirname(target), os.W_OK)
    except (OSError, ValueError):
        return False


def _check_list_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise StoreError(f"a list name must be a non-empty string of at most 200 characters, got {name!r}")
    return name


def _check_entry_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise StoreError(f"an entry id is an integer, got {value!r}")
    if not 0 <= int(value) <= _MAX_ENTRY_ID:
        raise StoreError(f"an entry id is an integer from 0 to {_MAX_ENTRY_ID}, got {value}")
    return int(value)


def _generation_of(value: object, path: str) -> int:
    """The generation from its meta value; a missing or non-integer one means damage."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    what = "missing" if value is None else "not a non-negative integer"
    raise StoreError(f"{path} is damaged: its generation counter is {what}")


def _read_generation(conn: sqlite3.Connection, path: str) -> int:
    try:
        rows = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()
    except _DB_ERRORS as exc:
        raise StoreError(f"reading {path} failed: {exc}") from None
    return _generation_of(rows[0][0] if rows else None, path)
