-- Market-data bar cache (issue 4). One row per bar, keyed by source, symbol, interval and
-- exchange-local session date (synthetic and CSV bars never mix with Yahoo's).
CREATE TABLE IF NOT EXISTS bars (
    source      TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    interval    TEXT NOT NULL,
    session     TEXT NOT NULL,          -- ISO date, Sydney time
    open        REAL,
    high        REAL,
    low         REAL,
    close       REAL NOT NULL,
    volume      REAL,
    final       INTEGER NOT NULL,       -- 1 once the session's bar can no longer change
    fetched_at  REAL NOT NULL,          -- unix time
    PRIMARY KEY (source, symbol, interval, session)
) WITHOUT ROWID;

-- One row per cached series: when it was fetched, how long it stays fresh, and the
-- precomputed summary, so a cold process answers without numpy or the calendar.
CREATE TABLE IF NOT EXISTS bar_series (
    source      TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    interval    TEXT NOT NULL,
    start       TEXT NOT NULL,          -- earliest session asked of the source
    first_session TEXT,
    last_session  TEXT,
    bars        INTEGER NOT NULL,
    fetched_at  REAL NOT NULL,
    fresh_until REAL NOT NULL,
    summary     TEXT,                   -- JSON, see trading.bars
    PRIMARY KEY (source, symbol, interval)
) WITHOUT ROWID;

-- The outcome of the last upstream call per source, and a rate-limit backoff that a fresh
-- process honours too.
CREATE TABLE IF NOT EXISTS upstream (
    source        TEXT PRIMARY KEY,
    at            REAL NOT NULL,
    outcome       TEXT NOT NULL,        -- ok, empty, rate-limit, network, error
    message       TEXT NOT NULL DEFAULT '',
    backoff_until REAL NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0
);
