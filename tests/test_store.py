"""The shared store: migrations once and in order, all-or-nothing transactions, busy errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from trading.errors import Busy
from trading.runtime.store import Store, _statements, migrations


def test_migrations_apply_once_in_order_and_set_the_version(tmp_path):
    store = Store(tmp_path / "t.db")
    assert store.schema_version() == migrations()[-1][0]
    tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "events" in tables
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    store.close()
    again = Store(tmp_path / "t.db")  # a second open finds nothing to do
    assert again.schema_version() == migrations()[-1][0]


def test_processes_migrating_at_once_do_not_collide(tmp_path):
    path = tmp_path / "race.db"
    # Plain interpreters, not multiprocessing: its spawn context starts a resource tracker
    # process that would outlive the test (and every test after it).
    opener = "import sys; from trading.runtime.store import Store; Store(sys.argv[1]).schema_version()"
    procs = [subprocess.Popen([sys.executable, "-c", opener, str(path)]) for _ in range(4)]
    try:
        codes = [p.wait(60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0, 0, 0]
    assert Store(path).schema_version() == migrations()[-1][0]


def test_a_locked_switch_to_wal_is_tried_again_not_failed():
    """SQLite refuses the WAL switch at once, without waiting, when waiting could deadlock
    (several handlers opening a new store together): it is retried, and gives up with the
    same error only after the busy timeout."""
    from trading.runtime.store import _to_wal

    class Locked:
        def __init__(self, refusals):
            self.refusals, self.calls = refusals, []

        def execute(self, sql):
            self.calls.append(sql)
            if sql == "PRAGMA journal_mode = WAL" and self.refusals:
                self.refusals -= 1
                raise sqlite3.OperationalError("database is locked")
            return self

        def fetchone(self):
            return ("delete",)

    conn = Locked(refusals=3)
    _to_wal(conn)
    assert conn.calls.count("PRAGMA journal_mode = WAL") == 4
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _to_wal(Locked(refusals=10**6), timeout=0.05)


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path / "t.db")
    with pytest.raises(RuntimeError):
        with store.transaction() as db:
            db.execute("INSERT INTO events (type, created_at, payload) VALUES ('a', 'now', '{}')")
            raise RuntimeError("half-way")
    assert store.query("SELECT count(*) FROM events")[0][0] == 0


def test_a_lock_held_too_long_is_busy_not_a_crash(tmp_path, monkeypatch):
    import trading.runtime.store as store_mod

    monkeypatch.setattr(store_mod, "BUSY_TIMEOUT_MS", 100)
    store = Store(tmp_path / "t.db")
    store.schema_version()
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Busy, match="busy"):
            with store.transaction():
                pass
    finally:
        holder.execute("ROLLBACK")


def test_statement_splitter_respects_comments_and_literals():
    sql = "-- one; two\nCREATE TABLE t (a TEXT DEFAULT 'x;y');\n\n-- only a comment;\nCREATE INDEX i ON t(a);\n"
    assert _statements(sql) == ["-- one; two\nCREATE TABLE t (a TEXT DEFAULT 'x;y');",
                                "-- only a comment;\nCREATE INDEX i ON t(a);"]


def test_a_readonly_store_reads_and_cannot_write_or_create(tmp_path):
    from trading.errors import StoreUnavailable
    from trading.runtime.store import Store

    missing = Store(tmp_path / "none.db", readonly=True)
    with pytest.raises(StoreUnavailable, match="cannot open"):
        missing.query("SELECT 1")
    assert not (tmp_path / "none.db").exists()
    writer = Store(tmp_path / "t.db")
    with writer.transaction() as db:
        db.execute("INSERT INTO events (type, created_at, payload) VALUES ('x', 'now', '{}')")
    reader = Store(tmp_path / "t.db", readonly=True)
    assert reader.query("SELECT count(*) AS n FROM events")[0]["n"] == 1
    with pytest.raises(Exception, match="readonly|read-only|query_only"):
        reader.conn.execute("DELETE FROM events")
    reader.close()
    writer.close()
