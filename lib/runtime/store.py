"""The shared SQLite store: one file, WAL mode, a busy timeout, versioned schema.

Every service opens the same file (``<state_dir>/trading.db``). The schema is the ordered SQL
files in ``trading/migrations`` (``0001_core.sql``, ``0002_bars.sql``, ...); ``PRAGMA
user_version`` records the last one applied, and :meth:`Store.migrate` applies the rest inside
one ``BEGIN IMMEDIATE`` transaction, so two processes starting at once cannot both migrate.

Connections are per thread (the runtime serves each connection on its own thread). Writes go
through :meth:`Store.transaction`, which takes the write lock up front (``BEGIN IMMEDIATE``)
so a busy database is waited for, not discovered halfway; a lock held past the busy timeout
becomes :class:`trading.errors.Busy`.

``Store(path, readonly=True)`` is a reader that cannot write (SQLite's ``mode=ro``): it
creates nothing, migrates nothing, and a missing file is a :class:`StoreError` (the dashboard
reads the store this way, so a page view can never change it).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trading.errors import Busy, TradingError

MIGRATIONS = Path(__file__).parent.parent / "migrations"  # the trading.migrations package
BUSY_TIMEOUT_MS = 10_000


class StoreError(TradingError):
    """The store cannot be opened or is damaged."""


def migrations() -> list[tuple[int, Path]]:
    found = []
    for p in MIGRATIONS.glob("*.sql"):
        m = re.match(r"(\d+)_", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


class Store:
    """The shared store at ``path``; cheap to create, connects on first use."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        with self._lock:
            if not self._migrated:
                self._migrate(conn)
                self._migrated = True
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        from urllib.parse import quote

        try:
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True,
                                   timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA user_version").fetchone()  # fails now if the file is missing
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        pending = migrations()
        if not pending or conn.execute("PRAGMA user_version").fetchone()[0] >= pending[-1][0]:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, path in pending:
                if number > version:
                    for statement in _statements(path.read_text()):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"migrating {self.path} failed: {exc}") from exc
            raise

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``with store.transaction() as db:``: one write transaction, all or nothing."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _translate(exc, self.path) from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            raise _translate(exc, self.path) from exc

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise _translate(exc, self.path) from exc

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += Path(str(self.path) + suffix).stat().st_size
            except OSError:
                pass
        return total

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _translate(exc: sqlite3.OperationalError, path: Path) -> TradingError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return Busy(f"the store is busy (locked longer than {BUSY_TIMEOUT_MS // 1000}s); try again")
    return StoreError(f"store {path}: {text}")


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
