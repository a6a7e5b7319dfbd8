"""The shared SQLite store: one file, WAL mode, a busy timeout, versioned schema.

Every service opens the same file (``<state_dir>/trading.db``). The schema is the ordered SQL
files in ``trading/migrations`` (``0001_core.sql``, ``0002_bars.sql``, ...); ``PRAGMA
user_version`` records the last one applied, and :meth:`Store.migrate` applies the rest inside
one ``BEGIN IMMEDIATE`` transaction, so two processes starting at once cannot both migrate.

Connections are per thread (the runtime serves each connection on its own thread). Writes go
through :meth:`Store.transaction`, which takes the write lock up front (``BEGIN IMMEDIATE``)
so a busy database is waited for, not discovered halfway; a lock held past the busy timeout
becomes :class:`trading.errors.Busy`.

Every other SQLite failure that is the store's state, not the caller's SQL, is translated
here, at the edge, into :class:`trading.errors.StoreUnavailable` with its ``cause``
(``disk-full``, ``read-only``, ``corrupt``, ``unavailable``) and a recovery ``hint``; a
ROLLBACK after a failed statement or COMMIT never hides that cause. The last such failure is
kept, and :meth:`Store.health` reports ``ok`` or ``degraded`` from it and a cheap check (the
first page readable, free space on the filesystem), memoized for :data:`HEALTH_TTL_S`.

``Store(path, readonly=True)`` is a reader that cannot write (SQLite's ``mode=ro``): it
creates nothing, migrates nothing, and a missing file is a :class:`~trading.errors.StoreUnavailable` (the dashboard
reads the store this way, so a page view can never change it).

Space comes back: a store is created with ``auto_vacuum = INCREMENTAL``, and
:meth:`Store.reclaim` gives the pages a large deletion freed (the bar cache's eviction) back
to the filesystem; SQLite alone keeps them in the file for reuse, so the file never shrank.

The module is long because the store's every failure is translated here, at one edge:
opening, migrating, transactions, readers and the causes and hints belong together.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

from trading.errors import Busy, StoreUnavailable, TradingError

# The trading.migrations package. Paths here are strings: pathlib costs every cold start
# that opens the store about 5 ms (it imports re and urllib.parse).
MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
BUSY_TIMEOUT_MS = 10_000
HEALTH_TTL_S = 5.0          # a health check's store verdict is reused this long
RECENT_ERROR_S = 60.0       # a store failure this recent makes the store "degraded"
LOW_SPACE_BYTES = 1 << 20   # less free space than this on the store's filesystem: degraded
RECLAIM_BYTES = 16 << 20    # free pages below this stay in the file for the next writes



def _to_wal(conn: sqlite3.Connection, timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """Put the database in WAL mode. The switch needs an exclusive lock, and SQLite answers
    "database is locked" at once, without its busy handler, when waiting could deadlock: as
    when several handlers open a new store together (one of four failed so in a CI run). So
    a locked switch is tried again, for up to the busy timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def migrations() -> list[tuple[int, str]]:
    # os.listdir rather than Path.glob and a regex: both compile a pattern on every cold
    # start that opens the store.
    found = []
    for name in os.listdir(MIGRATIONS):
        number, sep, _ = name.partition("_")
        if sep and number.isdecimal() and name.endswith(".sql"):
            found.append((int(number), os.path.join(MIGRATIONS, name)))
    return sorted(found)


class Store:
    """The shared store at ``path``; cheap to create, connects on first use."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self._local = threading.local()
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            return self._open_readonly()
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Before the switch to WAL, which writes the first page: auto_vacuum can only be
            # chosen for an empty file (on an existing one it waits for a VACUUM; reclaim).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            _to_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._failed(exc, "cannot open the store") from exc
        except OSError as exc:
            raise self._failed(exc, "cannot open the store") from exc
        with self._lock:
            if not self._migrated:
                self._migrate(conn)
                self._migrated = True
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        from urllib.parse import quote

        try:
            conn = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True,
                                   timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA user_version").fetchone()  # fails now if the file is missing
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the store {self.path}: {exc}") from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        pending = migrations()
        try:
            # The first read of the file may be here (SQLite opens lazily): its failure is
            # the store's, as the rest of the migration's is.
            if not pending or conn.execute("PRAGMA user_version").fetchone()[0] >= \
                    pending[-1][0]:
                return
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, path in pending:
                if number > version:
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
                    for statement in _statements(text):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._failed(exc, "migrating the store failed") from exc
            raise

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def transaction(self) -> _Transaction:
        """``with store.transaction() as db:``: one write transaction, all or nothing."""
        return _Transaction(self)

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            if _cause(exc) is None:
                raise  # the caller's SQL is wrong: a bug, not the store's state
            raise self._translate(exc) from exc

    def tuples(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        """The rows of ``sql`` as plain tuples, read as they are iterated: what
        ``numpy.fromiter`` takes, without a list of :class:`sqlite3.Row` in between."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        try:
            return cursor.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            if _cause(exc) is None:
                raise
            raise self._translate(exc) from exc

    # -- failures and health -----------------------------------------------------------------
    def _translate(self, exc: sqlite3.DatabaseError) -> TradingError:
        cause = _cause(exc)
        if cause == "busy":
            return Busy(f"the store is busy (locked longer than {BUSY_TIMEOUT_MS // 1000}s); "
                        "try again")
        return self._failed(exc, "the store failed")

    def _failed(self, exc: BaseException, what: str) -> StoreUnavailable:
        """A StoreUnavailable for ``exc`` with its cause and hint; remembered for health."""
        cause, why = _cause(exc) or "unavailable", _why(exc)
        if cause == "busy":
            cause = "unavailable"
        elif cause == "unavailable":
            found = _filesystem_cause(self.path)
            if found is not None:
                cause, seen = found
                why += f" ({seen})"
        err = StoreUnavailable(f"{what}: {self.path}: {why}; {hint(cause, self.path)}",
                               cause=cause, path=str(self.path), hint=hint(cause, self.path))
        self.last_error = (time.monotonic(), err)
        self._health = None
        return err

    last_error: tuple[float, StoreUnavailable] | None = None
    _health: tuple[float, dict] | None = None

    def health(self) -> dict:
        """``{"store": "ok"}`` or ``{"store": "degraded", "store_cause": ..., "store_error":
        ...}``: a failure in the last :data:`RECENT_ERROR_S`, an unreadable first page, or
        under :data:`LOW_SPACE_BYTES` free. Cheap (no table is scanned) and memoized."""
        now = time.monotonic()
        memo = self._health
        if memo is not None and now - memo[0] < HEALTH_TTL_S:
            return memo[1]
        verdict = {"store": "ok"}
        try:
            self.conn.execute("PRAGMA schema_version").fetchone()  # reads and checks page 1
            free = os.statvfs(os.path.dirname(self.path) or ".")
            if free.f_bavail * free.f_frsize < LOW_SPACE_BYTES:
                raise sqlite3.OperationalError("database or disk is full (under 1 MB free)")
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc, "the store failed")
        except StoreUnavailable:
            pass  # opening it failed, and said why (last_error)
        last = self.last_error
        if last is not None and now - last[0] < RECENT_ERROR_S:
            err = last[1]
            verdict = {"store": "degraded", "store_cause": err.data["cause"],
                       "store_error": err.message}
        self._health = (now, verdict)
        return verdict

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(self.path + suffix).st_size
            except OSError:
                pass
        return total

    def reclaim(self, min_free_bytes: int | None = None) -> int:
        """Give the pages deletions freed back to the filesystem when more than
        ``min_free_bytes`` (:data:`RECLAIM_BYTES`) are free; returns the bytes the file and
        its WAL shrank by (0: nothing worth doing, or no room to do it).

        A store created with ``auto_vacuum = INCREMENTAL`` (every store since issue 26) does
        it with ``PRAGMA incremental_vacuum``: work in proportion to the pages freed (0.7 s
        for 50 MB). An older store is converted by one ``VACUUM``, whose work is the whole
        file and which copies it into the WAL: done only when a quarter of the file is free
        and the filesystem has room for the copy. The WAL is then checkpointed and
        truncated, since it holds the moved pages. Errors are the store's as usual (Busy,
        StoreUnavailable); the caller decides whether maintenance may fail."""
        limit = RECLAIM_BYTES if min_free_bytes is None else min_free_bytes
        conn = self.conn
        try:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free * page < max(limit, 1):
                return 0
            before = self.size_bytes()
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
                room = os.statvfs(os.path.dirname(self.path) or ".")
                if free * 4 < pages or room.f_bavail * room.f_frsize < 2 * pages * page:
                    return 0
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("VACUUM")
            else:
                # executescript, not execute: each step of this pragma frees one page, and
                # execute() steps a statement that returns no rows only once.
                conn.executescript("BEGIN IMMEDIATE; PRAGMA incremental_vacuum; COMMIT;")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.DatabaseError as exc:
            _rollback(conn)
            if _cause(exc) is None:
                raise
            raise self._translate(exc) from exc
        except OSError as exc:
            raise self._failed(exc, "reclaiming free space failed") from exc
        return max(0, before - self.size_bytes())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open. SQLite ends one itself on some errors (disk
    full, I/O): a ROLLBACK then raises "no transaction is active" and would hide the cause."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable; the original error says why


_CAUSES = (  # (SQLite error name prefix, words in the message, cause), most specific first
    ("SQLITE_BUSY", ("locked", "busy"), "busy"),
    ("SQLITE_LOCKED", (), "busy"),
    ("SQLITE_FULL", ("disk is full",), "disk-full"),
    ("SQLITE_READONLY", ("readonly database", "read-only"), "read-only"),
    ("SQLITE_CORRUPT", ("malformed",), "corrupt"),
    ("SQLITE_NOTADB", ("not a database",), "corrupt"),
    ("SQLITE_IOERR", ("disk i/o error",), "unavailable"),
    ("SQLITE_CANTOPEN", ("unable to open",), "unavailable"),
)


def _cause(exc: BaseException) -> str | None:
    """Which state of the store ``exc`` reports; None for an error in the SQL itself."""
    if isinstance(exc, OSError):
        import errno

        return {errno.ENOSPC: "disk-full", errno.EDQUOT: "disk-full", errno.EROFS: "read-only",
                errno.EACCES: "read-only", errno.EPERM: "read-only"}.get(exc.errno,
                                                                        "unavailable")
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    for prefix, words, cause in _CAUSES:
        if name.startswith(prefix) or any(w in text for w in words):
            return cause
    return None


def _filesystem_cause(path: str) -> tuple[str, str] | None:
    """``(cause, what was seen)`` when the file system of ``path`` explains a failure SQLite
    reports only as "unable to open database file" or "disk I/O error": mounted read-only, a
    folder or file the process may not write, no space or no inodes left. Opening is where
    this happens (SQLite creates the file, its ``-wal`` and ``-shm``, and grows the
    ``-shm``, before any statement could say "readonly" or "full"). None: nothing seen."""
    folder = os.path.dirname(path) or "."
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # the store's folder may not exist yet
    try:
        fs = os.statvfs(folder)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return "read-only", f"{folder} is on a file system mounted read-only"
    for name in (path, path + "-wal", path + "-shm", folder):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            return "read-only", f"{name} is not writable by this user"
    if fs.f_bavail == 0 or (fs.f_files and fs.f_favail == 0):
        what = "space" if fs.f_bavail == 0 else "inodes"
        return "disk-full", f"no {what} left on the file system of {folder}"
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def hint(cause: str, path: Path | str) -> str:
    """What an administrator does about a store that failed with ``cause``."""
    path = os.fspath(path)
    parent = os.path.dirname(path) or "."
    if cause == "disk-full":
        return (f"free space on the filesystem of {parent} (df -h {parent}); "
                "nothing was written")
    if cause == "read-only":
        return (f"check that {path} and {parent} are writable by the services' user "
                "(trading) and that the filesystem is mounted read-write")
    if cause == "corrupt":
        return (f"stop the services (systemctl stop trading.target), then recover it: "
                f"sqlite3 {path} .recover | sqlite3 {path}.recovered, and move {path} aside "
                f"(mv {path} {path}.corrupt; also its -wal and -shm), putting the recovered "
                "file in its place or starting empty; bars and news are fetched again, "
                "predictions and models only come back from the recovered file")
    return f"check that {path} can be opened (its directory exists and is accessible)"


class _Transaction:
    """:meth:`Store.transaction`: ``BEGIN IMMEDIATE`` on entry; ``COMMIT`` on a clean exit,
    else a rollback and the error (translated when it is the store's: disk full, read-only,
    corrupt). A class rather than ``contextlib.contextmanager``: contextlib is about 1 ms of
    every cold start that opens the store."""

    __slots__ = ("store", "conn")

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        conn = self.conn = self.store.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self.store._translate(exc) from exc
        return conn

    def __exit__(self, kind, exc, tb) -> bool:
        conn = self.conn
        if exc is not None:
            _rollback(conn)  # SQLite may have rolled back already (disk full): never mask exc
            if isinstance(exc, sqlite3.DatabaseError) and _cause(exc) is not None:
                raise self.store._translate(exc) from exc
            return False
        try:
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as error:
            _rollback(conn)
            raise self.store._translate(error) from error
        return False


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements, as SQLite itself would (comments and string
    literals may contain semicolons). ``executescript`` would do it, but it commits first."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if not _only_comments(buf):
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not _only_comments(buf):
        out.append(buf.strip())
    return out


def _only_comments(s: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in s.splitlines())
